//! What firewall text from an image may not say, whatever the image's seal: the text goes to
//! iptables-restore and nft in crhook's mount namespace, as root. nft's `include "FILE"`
//! reads any file (and echoes it into the error when it does not parse: measured with
//! `/etc/shadow`) and `define` builds what an include would use; an iptables-restore line with
//! `-M PROGRAM` / `--modprobe PROGRAM` sets the program libxtables runs, as root, to load a
//! module. Such text is refused by name before anything changes. nf_tables state saved over
//! nfnetlink is structured payloads, replayed without any program, and needs no such check.

use crhook_proto::{FirewallRuleset, FirewallSource};

/// The refusals for `saved`, one sentence each naming the ruleset, the line and the word.
pub fn hostile(saved: &[FirewallRuleset]) -> Vec<String> {
    let mut out = Vec::new();
    for r in saved {
        let nft = r.source == FirewallSource::Nft as i32;
        let label = if r.program.is_empty() {
            format!("firewall ruleset of source {}", r.source)
        } else {
            format!("firewall ruleset from {}", r.program)
        };
        for (n, line) in r.text.lines().enumerate() {
            let bad = if nft { nft_word(line) } else { xt_word(line) };
            if let Some(w) = bad {
                out.push(format!(
                    "{label}: line {} uses {w}, which the image may not (it would read files or run programs on this host)",
                    n + 1
                ));
            }
        }
    }
    out
}

/// `include` or `define` as an nft statement.
fn nft_word(line: &str) -> Option<&'static str> {
    let t = line.trim_start();
    for w in ["include", "define", "redefine", "undefine"] {
        if t.strip_prefix(w)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            return Some(match w {
                "include" => "nft include",
                _ => "nft define",
            });
        }
    }
    None
}

/// `-M` / `--modprobe` as an iptables-restore option.
fn xt_word(line: &str) -> Option<&'static str> {
    line.split_whitespace()
        .any(|t| t == "-M" || t == "--modprobe" || t.starts_with("--modprobe="))
        .then_some("iptables --modprobe")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(source: FirewallSource, text: &str) -> FirewallRuleset {
        FirewallRuleset {
            source: source as i32,
            text: text.into(),
            program: "test-save".into(),
            ..Default::default()
        }
    }

    #[test]
    fn include_define_and_modprobe_are_refused_by_line() {
        let bad = [
            rs(
                FirewallSource::Nft,
                "table ip t {\n\tinclude \"/etc/shadow\"\n}\n",
            ),
            rs(FirewallSource::Nft, "define x = 1\ntable ip t {}\n"),
            rs(
                FirewallSource::IptablesLegacy,
                "*filter\n-A INPUT -M /tmp/x -j ACCEPT\nCOMMIT\n",
            ),
            rs(
                FirewallSource::CrIptablesV4,
                "*filter\n-A INPUT --modprobe=/tmp/x -j ACCEPT\nCOMMIT\n",
            ),
        ];
        let e = hostile(&bad);
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].contains("line 2 uses nft include"), "{}", e[0]);
        assert!(e[1].contains("line 1 uses nft define"), "{}", e[1]);
        assert!(e[2].contains("iptables --modprobe"), "{}", e[2]);
        assert!(e[3].contains("test-save"), "{}", e[3]);
    }

    #[test]
    fn ordinary_rules_pass() {
        let ok = [
            rs(
                FirewallSource::Nft,
                "table ip t {\n\tchain c {\n\t\tmeta mark 1 accept comment \"include this\"\n\t}\n}\n",
            ),
            rs(
                FirewallSource::IptablesLegacy,
                "*filter\n-A INPUT -m mark --mark 0x1 -j ACCEPT\nCOMMIT\n",
            ),
        ];
        assert!(hostile(&ok).is_empty());
    }
}
