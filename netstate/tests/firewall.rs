//! Privileged tests of firewall capture, check, restore, rollback, CR_IPTABLES and the
//! network lock. Each test makes its own namespaces (`crh-fw-<tag>-<pid>`) and removes them on
//! drop; without root they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use crhook_netstate::crhook_proto::{FirewallRuleset, FirewallSource};
use crhook_netstate::firewall;
use crhook_netstate::{FirewallOptions, Target};

const BUSYBOX: &str = "/bin/busybox";

mod common;
use common::TestNs;

/// A test namespace of these tests: `crh-fw-<tag>-<pid>`.
fn fw_ns(tag: &str) -> TestNs {
    TestNs::new("fw", tag)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("crh-fw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// iptables-save output without comments, with counters zeroed, tables sorted by name.
fn xt_norm(text: &str) -> String {
    let mut tables: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let line = match line.strip_prefix('[') {
            Some(r) => r
                .split_once("] ")
                .map(|(_, x)| x.to_string())
                .unwrap_or_default(),
            None => line.to_string(),
        };
        let line = match line.strip_prefix(':') {
            Some(d) => {
                let mut it = d.split_whitespace();
                format!(
                    ":{} {} [0:0]",
                    it.next().unwrap_or(""),
                    it.next().unwrap_or("")
                )
            }
            None => line,
        };
        if line.starts_with('*') || tables.is_empty() {
            tables.push(String::new());
        }
        if let Some(t) = tables.last_mut() {
            t.push_str(&line);
            t.push('\n');
        }
    }
    tables.sort();
    tables.concat()
}

/// `nft list ruleset` with counter values and expiry removed and, inside each table, the
/// chain/set/map blocks sorted (nft lists chains in creation order, which restore changes).
fn nft_norm(text: &str) -> String {
    let mut out = Vec::new();
    let mut table: Option<(String, Vec<String>)> = None;
    let mut block = String::new();
    for raw in text.lines() {
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let mut words: Vec<&str> = Vec::new();
        let toks: Vec<&str> = raw.split_whitespace().collect();
        let mut i = 0;
        while i < toks.len() {
            if toks[i] == "packets" && toks.get(i + 2) == Some(&"bytes") {
                i += 4;
            } else if toks[i] == "expires" {
                i += 2;
            } else {
                words.push(toks[i]);
                i += 1;
            }
        }
        let line = words.join(" ");
        if raw.starts_with("table ") {
            table = Some((line, Vec::new()));
        } else if raw == "}" {
            if let Some((head, mut blocks)) = table.take() {
                blocks.sort();
                out.push(format!("{head}\n{}}}", blocks.concat()));
            }
        } else if raw.starts_with('\t') && !raw.starts_with("\t\t") && raw.trim() == "}" {
            block.push_str("}\n");
            if let Some((_, blocks)) = table.as_mut() {
                blocks.push(std::mem::take(&mut block));
            }
        } else {
            block.push_str(&line);
            block.push('\n');
        }
    }
    out.sort();
    out.join("\n")
}

/// Everything the firewall tools show in a namespace, normalised.
fn dump(ns: &TestNs) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for cmd in [
        "iptables-save",
        "ip6tables-save",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    ] {
        v.push((
            cmd.to_string(),
            xt_norm(&ns.sh(&format!("/usr/sbin/{cmd}"))),
        ));
    }
    v.push(("nft".into(), nft_norm(&ns.sh("/usr/sbin/nft list ruleset"))));
    v
}

fn assert_same(a: &TestNs, b: &TestNs) {
    for ((cmd, x), (_, y)) in dump(a).into_iter().zip(dump(b)) {
        assert_eq!(x, y, "{cmd} differs between {} and {}", a.name, b.name);
    }
}

fn assert_empty(ns: &TestNs) {
    for (cmd, text) in dump(ns) {
        let rules = text
            .lines()
            .filter(|l| {
                l.starts_with("-A")
                    || (l.starts_with(':') && !l.contains(" ACCEPT "))
                    || l.starts_with("table")
            })
            .count();
        assert_eq!(rules, 0, "{cmd} in {} is not empty:\n{text}", ns.name);
    }
}

const NATIVE: &str = r#"table inet crhtest {
	counter cnt1 {
		packets 5 bytes 100
	}
	set allowed {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 192.168.1.1 }
	}
	map portmap {
		type inet_service : ipv4_addr
		elements = { 80 : 10.0.0.1, 443 : 10.0.0.2 }
	}
	chain in {
		type filter hook input priority 10; policy accept;
		ip saddr @allowed counter packets 3 bytes 30 accept comment "hello"
		meta mark 0x10 counter name "cnt1"
	}
	chain pre {
		type nat hook prerouting priority -100; policy accept;
		dnat ip to tcp dport map @portmap
	}
}
table netdev crhtest2 {
	chain c {
		meta l4proto udp drop
	}
}
"#;

/// Rules of every kind in every backend and family.
fn populate(ns: &TestNs) {
    ns.sh(r#"set -e
iptables -N MYCHAIN
iptables -A MYCHAIN -s 10.9.0.0/16 -j RETURN
iptables -A MYCHAIN -j LOG --log-prefix "crhook test "
iptables -A INPUT -p tcp --dport 22 -m comment --comment "ssh in" -j ACCEPT
iptables -A INPUT -j MYCHAIN
iptables -P FORWARD DROP
iptables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 10.1.1.1:80
iptables -t nat -A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 192.0.2.1
iptables -t mangle -A PREROUTING -p udp --dport 53 -j MARK --set-mark 0x42
iptables -t mangle -A OUTPUT -m mark --mark 0x42 -j ACCEPT
iptables -t raw -A PREROUTING -p udp --dport 123 -j CT --notrack
iptables -t security -A INPUT -p tcp --dport 443 -j ACCEPT
ip6tables -N SIX
ip6tables -A SIX -p tcp --dport 25 -j REJECT
ip6tables -A INPUT -j SIX
ip6tables -P INPUT DROP
ip6tables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination [fd00::1]:80
ip6tables -t nat -A POSTROUTING -s fd00::/64 -j SNAT --to-source 2001:db8::1
ip6tables -t mangle -A OUTPUT -p udp -j MARK --set-mark 7
ip6tables -t raw -A OUTPUT -p udp --dport 123 -j CT --notrack
ip6tables -t security -A OUTPUT -p tcp --dport 443 -m comment --comment "six sec" -j ACCEPT
iptables-legacy -N LEG
iptables-legacy -A LEG -s 192.0.2.0/24 -m comment --comment "legacy rule" -j DROP
iptables-legacy -A INPUT -j LEG
iptables-legacy -t nat -A POSTROUTING -o eth9 -j MASQUERADE
iptables-legacy -t mangle -A PREROUTING -j MARK --set-mark 0x99
ip6tables-legacy -A OUTPUT -d 2001:db8::/32 -j REJECT
ip6tables-legacy -P FORWARD DROP
"#);
    ns.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NATIVE}EOF\n"));
}

fn sources(rs: &[FirewallRuleset]) -> Vec<FirewallSource> {
    rs.iter()
        .map(|r| FirewallSource::try_from(r.source).expect("known source"))
        .collect()
}

#[test]
fn round_trip_of_every_backend_family_and_native_table() {
    let a = fw_ns("rta");
    let b = fw_ns("rtb");
    populate(&a);
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    assert_eq!(
        sources(&saved),
        [
            FirewallSource::IptablesNft,
            FirewallSource::IptablesLegacy,
            FirewallSource::Ip6tablesNft,
            FirewallSource::Ip6tablesLegacy,
            FirewallSource::Nft
        ]
    );
    let nft = &saved[4].text;
    assert!(
        nft.contains("table inet crhtest") && nft.contains("table netdev crhtest2"),
        "{nft}"
    );
    assert!(
        !nft.contains("table ip filter"),
        "iptables-nft tables belong to iptables-save: {nft}"
    );
    assert!(
        !nft.contains("packets 5"),
        "counters are reset by default: {nft}"
    );

    let bns = b.ns();
    firewall::check(&bns, &saved, &opts).expect("check");
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    assert_empty(&b);
    let undo = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert!(undo.warnings.is_empty(), "{:?}", undo.warnings);
    assert_same(&a, &b);
    assert!(firewall::diff(&saved, &firewall::capture(&bns, &opts).expect("capture b")).is_empty());

    // a second restore finds everything in place and changes nothing
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    let again = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore again");
    assert!(again.is_empty());
    assert_same(&a, &b);
}

#[test]
fn counters_are_kept_only_when_asked() {
    let a = fw_ns("cta");
    let b = fw_ns("ctb");
    let c = fw_ns("ctc");
    a.sh("printf '*filter\\n:INPUT ACCEPT [7:700]\\n[5:300] -A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | iptables-restore -c");
    a.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NATIVE}EOF\n"));
    let keep = FirewallOptions {
        counters: true,
        ..Default::default()
    };
    let saved = firewall::capture(&a.ns(), &keep).expect("capture");
    firewall::restore(&b.ns(), &saved, &keep)
        .map_err(|(e, _)| e)
        .expect("restore");
    let xt = b.sh("iptables-save -c");
    assert!(
        xt.contains("[5:300] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{xt}"
    );
    assert!(xt.contains(":INPUT ACCEPT [7:700]"), "{xt}");
    assert!(b
        .sh("nft list counter inet crhtest cnt1")
        .contains("packets 5 bytes 100"));

    let plain = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &plain).expect("capture");
    firewall::restore(&c.ns(), &saved, &plain)
        .map_err(|(e, _)| e)
        .expect("restore");
    let xt = c.sh("iptables-save -c");
    assert!(
        xt.contains("[0:0] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{xt}"
    );
    assert!(xt.contains(":INPUT ACCEPT [0:0]"), "{xt}");
    assert!(c
        .sh("nft list counter inet crhtest cnt1")
        .contains("packets 0 bytes 0"));
}

#[test]
fn undo_puts_back_what_was_live() {
    let a = fw_ns("uda");
    let fresh = fw_ns("udf");
    let busy = fw_ns("udb");
    populate(&a);
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");

    // into an empty namespace: undo leaves it empty again
    let undo = firewall::restore(&fresh.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert_same(&a, &fresh);
    let errors = undo.undo(&fresh.ns());
    assert!(errors.is_empty(), "{errors:?}");
    assert_empty(&fresh);
    assert!(
        !fresh.sh("/usr/sbin/nft list tables").contains("table"),
        "tables left behind"
    );

    // into a namespace with other rules: conflicts name the sources, undo is exact
    busy.sh(r#"set -e
printf '*filter\n:INPUT ACCEPT [3:4]\n[1:2] -A INPUT -s 198.51.100.1/32 -j DROP\nCOMMIT\n' | iptables-restore -c
iptables -t nat -N OTHER
iptables-legacy -A OUTPUT -d 198.51.100.2 -j DROP
nft add table inet crhtest
nft add chain inet crhtest x
nft add table inet unrelated
"#);
    let before = dump(&busy);
    let before_counters = busy.sh("iptables-save -c | grep -v '^#'");
    let conflicts = firewall::conflicts(&busy.ns(), &saved, &opts).expect("conflicts");
    let joined = conflicts.join("\n");
    assert!(joined.contains("iptables-nft:"), "{joined}");
    assert!(joined.contains("iptables-legacy:"), "{joined}");
    assert!(
        joined.contains("nft: live table inet crhtest differs"),
        "{joined}"
    );
    assert!(
        joined.contains("nft: live table inet unrelated is not in the image"),
        "{joined}"
    );
    assert!(!joined.contains("ip6tables"), "{joined}");
    let undo = firewall::restore(&busy.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert_ne!(dump(&busy), before);
    let errors = undo.undo(&busy.ns());
    assert!(errors.is_empty(), "{errors:?}");
    let after = dump(&busy);
    for ((cmd, x), (_, y)) in before.iter().zip(&after) {
        if cmd.contains("legacy") {
            // legacy tables cannot be unregistered: the ones restore added stay, empty
            let rules = |t: &str| {
                t.lines()
                    .filter(|l| l.starts_with("-A") || l.contains(" - ["))
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            assert_eq!(rules(x), rules(y), "{cmd} not rolled back");
        } else {
            assert_eq!(x, y, "{cmd} not rolled back");
        }
    }
    assert_eq!(
        busy.sh("iptables-save -c | grep -v '^#'"),
        before_counters,
        "counters not rolled back"
    );
}

#[test]
fn rejected_rulesets_fail_check_and_leave_the_target_untouched() {
    let a = fw_ns("rja");
    let b = fw_ns("rjb");
    populate(&a);
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    let bns = b.ns();

    let edit = |source: FirewallSource, f: &dyn Fn(&str) -> String| -> Vec<FirewallRuleset> {
        saved
            .iter()
            .cloned()
            .map(|mut r| {
                if r.source == source as i32 {
                    r.text = f(&r.text);
                }
                r
            })
            .collect()
    };

    // a target that is neither a chain nor an extension: iptables-nft's --test misses it
    let bad = edit(FirewallSource::IptablesNft, &|t| {
        t.replacen("-A INPUT -j MYCHAIN", "-A INPUT -j NOSUCHTARGET", 1)
    });
    let e = firewall::check(&bns, &bad, &opts)
        .expect_err("check must reject")
        .to_string();
    assert!(
        e.contains("iptables-nft") && e.contains("NOSUCHTARGET"),
        "{e}"
    );

    // a match iptables cannot load: the tool's --test rejects it, its stderr is in the error
    let bad = edit(FirewallSource::Ip6tablesNft, &|t| {
        t.replacen("-A INPUT -j SIX", "-A INPUT -m nosuchmatch -j SIX", 1)
    });
    let e = firewall::check(&bns, &bad, &opts)
        .expect_err("check must reject")
        .to_string();
    assert!(
        e.contains("ip6tables-nft") && e.contains("--test") && e.contains("nosuchmatch"),
        "{e}"
    );

    // nft -c rejects a jump to a missing chain
    let bad = edit(FirewallSource::Nft, &|t| {
        t.replacen(
            "meta mark 0x00000010",
            "jump nosuchchain\n\t\tmeta mark 0x00000010",
            1,
        )
    });
    let e = firewall::check(&bns, &bad, &opts)
        .expect_err("check must reject")
        .to_string();
    assert!(
        e.contains("check nft ruleset") && e.contains("nosuchchain"),
        "{e}"
    );

    assert_empty(&b);
    assert_eq!(
        b.sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names"),
        "",
        "legacy tables appeared"
    );

    // restore itself fails atomically and its undo leaves nothing
    let bad = edit(FirewallSource::Nft, &|t| {
        t.replacen(
            "meta mark 0x00000010",
            "jump nosuchchain\n\t\tmeta mark 0x00000010",
            1,
        )
    });
    let (e, undo) = firewall::restore(&bns, &bad, &opts).expect_err("restore must fail");
    assert!(e.to_string().contains("restore nft ruleset"), "{e}");
    let errors = undo.undo(&bns);
    assert!(errors.is_empty(), "{errors:?}");
    assert_empty(&b);
}

#[test]
fn criu_and_crhook_lock_artefacts_are_left_out() {
    let a = fw_ns("cra");
    a.sh(r#"set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
printf '*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n' | iptables-restore --noflush
printf '*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n' | ip6tables-legacy-restore --noflush
nft add table inet CRIU-4242
nft add chain inet CRIU-4242 output '{ type filter hook output priority 0; policy drop; }'
nft add rule inet CRIU-4242 output meta mark 0xc114 accept
"#);
    let saved = firewall::capture(&a.ns(), &FirewallOptions::default()).expect("capture");
    assert_eq!(sources(&saved), [FirewallSource::IptablesNft]);
    let text = &saved[0].text;
    assert!(!text.contains("CRIU") && !text.contains("0xc114"), "{text}");
    assert!(
        text.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{text}"
    );
}

/// A wrapper standing in for a user's CR_IPTABLES command: it records its action, family,
/// namespace and environment, and does the job with the nf_tables tools.
fn wrapper(dir: &Path) -> PathBuf {
    let script = dir.join("wrapper.sh");
    let log = dir.join("log");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
echo "$1 $CR_IPTABLES_ACTION $CR_IPTABLES_FAMILY $(readlink /proc/self/ns/net)" >> {log}
env | sort | tr '\n' ' ' > {log}.env
case "$CR_IPTABLES_ACTION/$CR_IPTABLES_FAMILY" in
save/ipv4) exec iptables-save ;;
save/ipv6) exec ip6tables-save ;;
restore/ipv4) exec iptables-restore -w ;;
restore/ipv6) exec ip6tables-restore -w ;;
esac
echo "unexpected $CR_IPTABLES_ACTION $CR_IPTABLES_FAMILY" >&2
exit 9
"#,
            log = log.display()
        ),
    )
    .expect("write wrapper");
    let st = Command::new("/bin/chmod")
        .arg("755")
        .arg(&script)
        .status()
        .expect("chmod");
    assert!(st.success());
    script
}

fn log_lines(dir: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let _ = std::fs::remove_file(dir.join("log"));
    s.lines().map(String::from).collect()
}

#[test]
fn cr_iptables_replaces_save_and_restore_in_the_namespace() {
    let dir = TempDir::new("cr");
    let w = wrapper(&dir.0);
    let a = fw_ns("cria");
    let b = fw_ns("crib");
    a.sh("iptables -A INPUT -p tcp --dport 22 -j ACCEPT && ip6tables -A INPUT -p tcp --dport 23 -j DROP");
    a.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NATIVE}EOF\n"));
    let opts = FirewallOptions {
        cr_iptables: Some(format!("{} both", w.display())),
        ..Default::default()
    };

    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    assert_eq!(
        sources(&saved),
        [
            FirewallSource::CrIptablesV4,
            FirewallSource::CrIptablesV6,
            FirewallSource::Nft
        ]
    );
    assert!(saved[0].text.contains("--dport 22") && saved[1].text.contains("--dport 23"));
    let ina = format!("net:[{}]", a.inode());
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("both save ipv4 {ina}"),
            format!("both save ipv6 {ina}")
        ]
    );
    let env = std::fs::read_to_string(dir.0.join("log.env")).expect("env record");
    for var in [
        "CR_IPTABLES_ACTION=save",
        "CR_IPTABLES_FAMILY=ipv6",
        "PATH=",
        "LC_ALL=C",
    ] {
        assert!(env.contains(var), "{var} missing from {env}");
    }
    assert!(
        !env.contains("CARGO") && !env.contains("HOME="),
        "environment not explicit: {env}"
    );

    firewall::check(&b.ns(), &saved, &opts).expect("check");
    let undo = firewall::restore(&b.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    let inb = format!("net:[{}]", b.inode());
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("both save ipv4 {inb}"),
            format!("both save ipv6 {inb}"),
            format!("both restore ipv4 {inb}"),
            format!("both restore ipv6 {inb}"),
        ]
    );
    assert_eq!(
        xt_norm(&a.sh("iptables-save")),
        xt_norm(&b.sh("iptables-save"))
    );
    assert_eq!(
        xt_norm(&a.sh("ip6tables-save")),
        xt_norm(&b.sh("ip6tables-save"))
    );
    assert!(b.sh("nft list tables").contains("inet crhtest"));
    drop(undo);

    // CR_IP6TABLES serves IPv6 alone
    let c = fw_ns("cric");
    let split = FirewallOptions {
        cr_iptables: Some(format!("{} four", w.display())),
        cr_ip6tables: Some(format!("{} six", w.display())),
        ..Default::default()
    };
    let saved = firewall::capture(&a.ns(), &split).expect("capture");
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("four save ipv4 {ina}"),
            format!("six save ipv6 {ina}")
        ]
    );
    firewall::restore(&c.ns(), &saved, &split)
        .map_err(|(e, _)| e)
        .expect("restore");
    let inc = format!("net:[{}]", c.inode());
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("four save ipv4 {inc}"),
            format!("six save ipv6 {inc}"),
            format!("four restore ipv4 {inc}"),
            format!("six restore ipv6 {inc}"),
        ]
    );
    assert_eq!(
        xt_norm(&a.sh("ip6tables-save")),
        xt_norm(&c.sh("ip6tables-save"))
    );
}

#[test]
fn a_failing_cr_iptables_command_fails_with_its_stderr() {
    let a = fw_ns("crf");
    let opts = FirewallOptions {
        cr_iptables: Some("echo boom-from-wrapper >&2; exit 3".into()),
        ..Default::default()
    };
    let e = firewall::capture(&a.ns(), &opts)
        .expect_err("capture must fail")
        .to_string();
    assert!(
        e.contains("CR_IPTABLES") && e.contains("boom-from-wrapper") && e.contains("status 3"),
        "{e}"
    );

    let saved = vec![FirewallRuleset {
        source: FirewallSource::CrIptablesV4 as i32,
        text: "*filter\nCOMMIT\n".into(),
        counters: false,
        program: "test".into(),
        tables: Vec::new(),
    }];
    // restore without the command the image needs is refused before anything runs
    let e = firewall::check(&a.ns(), &saved, &FirewallOptions::default())
        .expect_err("needs CR_IPTABLES")
        .to_string();
    assert!(e.contains("CR_IPTABLES"), "{e}");
    let failing = FirewallOptions {
        cr_iptables: Some("[ \"$CR_IPTABLES_ACTION\" = save ] || { cat >/dev/null; echo restore-refused >&2; exit 4; }".into()),
        ..Default::default()
    };
    let (e, undo) = firewall::restore(&a.ns(), &saved, &failing).expect_err("restore must fail");
    assert!(
        e.to_string().contains("restore-refused") && e.to_string().contains("restore ipv4"),
        "{e}"
    );
    assert!(!undo.is_empty());
}

fn ping(from: &TestNs, to: &str) -> bool {
    from.ok(&format!("{BUSYBOX} ping -c1 -W1 {to} >/dev/null 2>&1"))
}

fn veth_pair(a: &TestNs, b: &TestNs) {
    let pid = std::process::id() % 100000;
    a.sh(&format!(
        "set -e; ip link add cfa{pid} type veth peer name cfb{pid} netns {b}; ip addr add 10.213.0.1/24 dev cfa{pid}; ip link set cfa{pid} up; ip link set lo up",
        b = b.name
    ));
    b.sh(&format!("set -e; ip addr add 10.213.0.2/24 dev cfb{pid}; ip link set cfb{pid} up; ip link set lo up"));
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn lock_stops_traffic_and_unlock_resumes_it() {
    let a = fw_ns("lka");
    let b = fw_ns("lkb");
    let c = fw_ns("lkc");
    veth_pair(&a, &b);
    b.sh("iptables -A INPUT -p tcp --dport 22 -j ACCEPT");
    assert!(ping(&a, "10.213.0.2"), "no traffic before the lock");
    let target = Target::Netns(b.path());
    let bns = b.ns();
    assert!(!firewall::is_locked(&bns).expect("is_locked"));

    block_on(crhook_netstate::lock(&target)).expect("lock");
    block_on(crhook_netstate::lock(&target)).expect("lock twice");
    assert!(firewall::is_locked(&bns).expect("is_locked"));
    assert_eq!(
        b.sh("nft list table inet crhook-lock")
            .matches("accept")
            .count(),
        2,
        "one lock, not two"
    );
    assert!(!ping(&a, "10.213.0.2"), "traffic passes the lock");
    assert!(!ping(&b, "10.213.0.1"), "traffic leaves through the lock");
    assert!(ping(&b, "127.0.0.1"), "loopback is locked too");

    // a capture while locked holds no lock, and restores unlocked
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&bns, &opts).expect("capture");
    assert!(
        saved.iter().all(|r| !r.text.contains("crhook-lock")),
        "{saved:?}"
    );
    assert_eq!(sources(&saved), [FirewallSource::IptablesNft]);
    firewall::restore(&c.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert!(!firewall::is_locked(&c.ns()).expect("is_locked"));

    // the lock survives a firewall restore into the locked namespace
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    b.sh("iptables -F INPUT");
    firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore while locked");
    assert!(firewall::is_locked(&bns).expect("is_locked"));
    assert!(!ping(&a, "10.213.0.2"), "restore removed the lock");

    assert!(block_on(crhook_netstate::unlock(&target)).expect("unlock"));
    assert!(!firewall::is_locked(&bns).expect("is_locked"));
    assert!(ping(&a, "10.213.0.2"), "no traffic after unlock");
    assert!(!block_on(crhook_netstate::unlock(&target)).expect("unlock twice"));
    assert!(
        b.sh("iptables-save").contains("--dport 22 -j ACCEPT"),
        "unlock touched the user's rules"
    );
}

#[test]
fn iptables_lock_fallback_works_the_same() {
    let a = fw_ns("lxa");
    let b = fw_ns("lxb");
    veth_pair(&a, &b);
    assert!(ping(&a, "10.213.0.2"));
    let bns = b.ns();
    firewall::lock_xtables(&bns).expect("lock");
    firewall::lock_xtables(&bns).expect("lock twice");
    assert_eq!(
        b.sh("iptables-save -t raw")
            .matches("-j crhook-lock")
            .count(),
        2,
        "one lock, not two"
    );
    assert!(firewall::is_locked(&bns).expect("is_locked"));
    assert!(!ping(&a, "10.213.0.2"), "traffic passes the lock");
    assert!(ping(&b, "127.0.0.1"), "loopback is locked too");
    let saved = firewall::capture(&bns, &FirewallOptions::default()).expect("capture");
    assert!(
        saved.iter().all(|r| !r.text.contains("crhook-lock")),
        "{saved:?}"
    );
    assert!(firewall::unlock(&bns).expect("unlock"));
    assert!(!firewall::is_locked(&bns).expect("is_locked"));
    assert!(ping(&a, "10.213.0.2"), "no traffic after unlock");
    assert!(!firewall::unlock(&bns).expect("unlock twice"));
}
