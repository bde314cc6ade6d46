//! Cutting what `nft -a list ruleset` and `iptables-save` print into the objects a diff
//! compares: per table its chains (header lines, then rules in order), sets and maps (header
//! lines, then elements), and other named objects. Pure text handling; the tools' output
//! is the authority on syntax, nothing here rewrites an expression.
//!
//! What the parsers rely on: nft prints a table as `table FAMILY NAME {` in the first column
//! and its objects one tab in (`chain NAME {`, `set NAME {`, `counter NAME {`, `ct helper
//! NAME {`), their content two tabs in; with `-a` every rule (and only rules, inside a chain)
//! ends in `# handle N`, so a rule that spans lines (a bound chain, `jump { ... }`) ends at
//! the line carrying its handle. Elements are `elements = { a, b, ... }`, wrapped over lines
//! when long. iptables-save prints `*TABLE`, `:CHAIN POLICY [p:b]`, `-A CHAIN ...`, `COMMIT`.

use std::collections::BTreeMap;

use serde::Serialize;

/// A named object of an nft table: its kind ("chain", "set", "map", "counter", "ct helper",
/// "flowtable", ...), the lines that define it, and its items (a chain's rules, a set's
/// elements), each on one line, without handles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Block {
    pub kind: String,
    pub header: Vec<String>,
    pub items: Vec<String>,
}

/// One table as `nft list table` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NftText {
    pub family: String,
    pub name: String,
    /// the table block as nft prints it, handles left out
    pub text: String,
    /// the table's own lines (flags, comment)
    pub attrs: Vec<String>,
    /// chains, sets and maps, and other named objects, by name
    pub chains: BTreeMap<String, Block>,
    pub sets: BTreeMap<String, Block>,
    /// other objects by "KIND NAME" ("counter c1", "flowtable ft")
    pub others: BTreeMap<String, Block>,
}

/// One table as `iptables-save` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct XtText {
    pub name: String,
    /// `*TABLE` .. `COMMIT`, as printed (no comment lines)
    pub text: String,
    /// builtin chain policy (`ACCEPT`, `DROP`) or `-` for a user chain
    pub policies: BTreeMap<String, String>,
    /// `-A CHAIN ...` lines per chain, in order
    pub rules: BTreeMap<String, Vec<String>>,
}

/// A line without nft's trailing ` # handle N`, and whether it had one.
fn strip_handle(line: &str) -> (&str, bool) {
    if let Some((head, n)) = line.rsplit_once("# handle ") {
        if !n.is_empty() && n.trim().chars().all(|c| c.is_ascii_digit()) {
            return (head.trim_end(), true);
        }
    }
    (line.trim_end(), false)
}

fn tabs(line: &str) -> usize {
    line.chars().take_while(|c| *c == '\t').count()
}

/// The elements inside `{ ... }`, split at commas outside nested braces and parentheses.
pub(crate) fn split_elements(text: &str) -> Vec<String> {
    let inner = text
        .find('{')
        .and_then(|a| text.rfind('}').filter(|b| *b > a).map(|b| &text[a + 1..b]))
        .unwrap_or(text);
    let mut out = Vec::new();
    let (mut depth, mut cur) = (0i32, String::new());
    for c in inner.chars() {
        match c {
            '{' | '(' | '[' => depth += 1,
            '}' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                let e = cur.split_whitespace().collect::<Vec<_>>().join(" ");
                if !e.is_empty() {
                    out.push(e);
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    let e = cur.split_whitespace().collect::<Vec<_>>().join(" ");
    if !e.is_empty() {
        out.push(e);
    }
    out
}

/// "counter packets 3 bytes 180" -> "counter": what two listings of one configuration share.
pub(crate) fn without_counts(rule: &str) -> String {
    let toks: Vec<&str> = rule.split(' ').collect();
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    let num = |s: Option<&&str>| {
        s.is_some_and(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
    };
    while i < toks.len() {
        if toks[i] == "packets"
            && num(toks.get(i + 1))
            && toks.get(i + 2) == Some(&"bytes")
            && num(toks.get(i + 3))
        {
            i += 4;
            continue;
        }
        out.push(toks[i]);
        i += 1;
    }
    out.join(" ")
}

/// Where an nft block being read stands.
struct Open {
    key: String,
    kind: String,
    block: Block,
    /// lines of a rule that spans several, until the one with its handle
    pending: Vec<String>,
    /// inside a multi-line `elements = { ... }`
    elements: Option<String>,
}

fn close(t: &mut NftText, o: Open) {
    match o.kind.as_str() {
        "chain" => {
            t.chains.insert(o.key, o.block);
        }
        "set" | "map" => {
            t.sets.insert(o.key, o.block);
        }
        _ => {
            t.others.insert(format!("{} {}", o.kind, o.key), o.block);
        }
    }
}

fn block_line(o: &mut Open, line: &str) {
    let (text, handle) = strip_handle(line);
    let text = text.trim();
    if let Some(acc) = o.elements.as_mut() {
        acc.push(' ');
        acc.push_str(text);
        if acc.matches('{').count() <= acc.matches('}').count() {
            let all = o.elements.take().unwrap_or_default();
            o.block.items.extend(split_elements(&all));
        }
        return;
    }
    if o.kind == "chain" {
        if handle {
            o.pending.push(text.to_string());
            o.block.items.push(o.pending.join(" "));
            o.pending.clear();
        } else if o.block.items.is_empty() && o.pending.is_empty() && is_chain_header(text) {
            o.block.header.push(text.to_string());
        } else {
            o.pending.push(text.to_string());
        }
        return;
    }
    if let Some(rest) = text.strip_prefix("elements = ") {
        if rest.matches('{').count() <= rest.matches('}').count() {
            o.block.items.extend(split_elements(rest));
        } else {
            o.elements = Some(rest.to_string());
        }
        return;
    }
    o.block.header.push(text.to_string());
}

fn is_chain_header(line: &str) -> bool {
    ["type ", "policy ", "comment ", "devices "]
        .iter()
        .any(|k| line.starts_with(k))
}

/// Every table of `nft -a list ruleset` output.
pub fn nft_tables(listing: &str) -> Vec<NftText> {
    let mut out = Vec::new();
    let mut table: Option<NftText> = None;
    let mut open: Option<Open> = None;
    for raw in listing.lines() {
        let (line, _) = strip_handle(raw);
        if line.trim().is_empty() {
            continue;
        }
        let depth = tabs(raw);
        if depth == 0 {
            if let Some(head) = line.strip_prefix("table ") {
                let mut it = head.trim_end_matches('{').split_whitespace();
                let (family, name) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                table = Some(NftText {
                    family: family.to_string(),
                    name: name.trim_matches('"').to_string(),
                    ..NftText::default()
                });
            }
            if let Some(t) = table.as_mut() {
                t.text.push_str(line);
                t.text.push('\n');
            }
            if line == "}" {
                if let Some(mut t) = table.take() {
                    if let Some(o) = open.take() {
                        close(&mut t, o);
                    }
                    out.push(t);
                }
            }
            continue;
        }
        let Some(t) = table.as_mut() else { continue };
        t.text.push_str(line);
        t.text.push('\n');
        if depth == 1 {
            let l = line.trim();
            if l == "}" {
                if let Some(o) = open.take() {
                    close(t, o);
                }
            } else if let Some(head) = l.strip_suffix('{') {
                let words: Vec<&str> = head.split_whitespace().collect();
                if let Some((name, kind)) = words.split_last() {
                    open = Some(Open {
                        key: name.trim_matches('"').to_string(),
                        kind: kind.join(" "),
                        block: Block {
                            kind: kind.join(" "),
                            ..Block::default()
                        },
                        pending: Vec::new(),
                        elements: None,
                    });
                }
            } else {
                t.attrs.push(l.to_string());
            }
            continue;
        }
        if let Some(o) = open.as_mut() {
            block_line(o, raw);
        }
    }
    out
}

/// Every table of `iptables-save` output.
pub fn xt_tables(listing: &str) -> Vec<XtText> {
    let mut out = Vec::new();
    let mut cur: Option<XtText> = None;
    for line in listing.lines() {
        let line = line.trim_end();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('*') {
            cur = Some(XtText {
                name: name.to_string(),
                ..XtText::default()
            });
        }
        let Some(t) = cur.as_mut() else { continue };
        t.text.push_str(line);
        t.text.push('\n');
        if let Some(rest) = line.strip_prefix(':') {
            let mut it = rest.split_whitespace();
            if let (Some(chain), Some(policy)) = (it.next(), it.next()) {
                t.policies.insert(chain.to_string(), policy.to_string());
            }
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or("");
            t.rules
                .entry(chain.to_string())
                .or_default()
                .push(line.to_string());
        } else if line == "COMMIT" {
            if let Some(done) = cur.take() {
                out.push(done);
            }
        }
    }
    out
}

/// Tables iptables-save declined (`# Table `x' is incompatible, use 'nft' tool.`).
pub fn xt_incompatible(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("# Table `")?;
            let (name, tail) = rest.split_once('\'')?;
            tail.contains("incompatible").then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // `nft -a list ruleset` of nftables 1.0.6, tabs as printed
    const NFT: &str = "table ip filter { # handle 1\n\tchain INPUT { # handle 1\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 8081 counter packets 0 bytes 0 accept # handle 2\n\t}\n}\ntable inet web { # handle 2\n\tcounter c1 { # handle 6\n\t\tpackets 0 bytes 0\n\t}\n\n\tset blk { # handle 3\n\t\ttype ipv4_addr\n\t\telements = { 1.2.3.4, 10.0.0.0/8,\n\t\t\t     192.168.1.1 }\n\t}\n\n\tmap m { # handle 5\n\t\ttype ipv4_addr : verdict\n\t\telements = { 1.1.1.1 : accept, 2.2.2.2 : drop }\n\t}\n\n\tchain in { # handle 1\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 8081 accept # handle 4\n\t\tip saddr @blk counter packets 0 bytes 0 drop comment \"blk\" # handle 7\n\t\ttcp dport { 22, 80 } jump {\n\t\t\taccept\n\t\t} # handle 11\n\t}\n\n\tchain user { # handle 12\n\t}\n}\n";

    #[test]
    fn nft_listing_is_cut_into_objects() {
        let t = nft_tables(NFT);
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].family.as_str(), t[0].name.as_str()), ("ip", "filter"));
        assert_eq!(
            t[0].chains["INPUT"].header,
            ["type filter hook input priority filter; policy accept;"]
        );
        assert_eq!(
            t[0].chains["INPUT"].items,
            ["tcp dport 8081 counter packets 0 bytes 0 accept"]
        );
        assert!(!t[0].text.contains("handle"), "{}", t[0].text);
        assert!(t[0]
            .text
            .starts_with("table ip filter {\n\tchain INPUT {\n"));
        let web = &t[1];
        assert_eq!(
            web.chains["in"].items,
            [
                "tcp dport 8081 accept",
                "ip saddr @blk counter packets 0 bytes 0 drop comment \"blk\"",
                "tcp dport { 22, 80 } jump { accept }",
            ]
        );
        assert!(web.chains["user"].items.is_empty());
        assert_eq!(web.sets["blk"].header, ["type ipv4_addr"]);
        assert_eq!(
            web.sets["blk"].items,
            ["1.2.3.4", "10.0.0.0/8", "192.168.1.1"]
        );
        assert_eq!(web.sets["m"].kind, "map");
        assert_eq!(web.sets["m"].items, ["1.1.1.1 : accept", "2.2.2.2 : drop"]);
        assert_eq!(web.others["counter c1"].header, ["packets 0 bytes 0"]);
    }

    #[test]
    fn iptables_save_is_cut_into_chains() {
        let text = "# Generated by iptables-nft-save v1.8.9 (nf_tables) on Fri Dec  4 20:06:15 2026\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:X - [0:0]\n-A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT\n-A INPUT -j X\n-A X -s 1.2.3.4/32 -j DROP\nCOMMIT\n# Completed on Fri Dec  4 20:06:15 2026\n# Table `nat' is incompatible, use 'nft' tool.\n";
        let t = xt_tables(text);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "filter");
        assert_eq!(t[0].policies["INPUT"], "DROP");
        assert_eq!(t[0].policies["X"], "-");
        assert_eq!(
            t[0].rules["INPUT"],
            [
                "-A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT",
                "-A INPUT -j X"
            ]
        );
        assert!(t[0].text.starts_with("*filter\n:INPUT DROP [0:0]\n"));
        assert!(t[0].text.ends_with("COMMIT\n"));
        assert_eq!(xt_incompatible(text), ["nat"]);
    }

    #[test]
    fn counts_and_handles_are_left_out() {
        assert_eq!(
            without_counts("ip saddr 1.1.1.1 counter packets 3 bytes 180 accept"),
            "ip saddr 1.1.1.1 counter accept"
        );
        assert_eq!(strip_handle("\t\taccept # handle 12"), ("\t\taccept", true));
        assert_eq!(
            strip_handle("\t\taccept comment \"# handle x\""),
            ("\t\taccept comment \"# handle x\"", false)
        );
        assert_eq!(
            split_elements("{ 1.2.3.4 . 80, { a, b }, 5 }"),
            ["1.2.3.4 . 80", "{ a, b }", "5"]
        );
    }
}
