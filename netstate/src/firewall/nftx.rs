//! `nft` ruleset text: which tables are native, splitting a ruleset into tables, and a
//! normal form for comparisons.
//!
//! nft prints each table as a block that starts with `table FAMILY NAME {` and ends with a
//! `}` in the first column; everything inside is indented, so a table can be cut out by lines.

use std::collections::HashMap;

use super::xt::BaseChains;

/// Tables iptables-nft makes and saves through iptables-save.
const XT_TABLES: [&str; 5] = ["filter", "nat", "mangle", "raw", "security"];

/// A table as `nft list tables` names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TableId {
    pub family: String,
    pub name: String,
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.family, self.name)
    }
}

impl TableId {
    /// Owned by iptables-nft (saved through iptables-save instead).
    pub(crate) fn is_xtables(&self) -> bool {
        (self.family == "ip" || self.family == "ip6") && XT_TABLES.contains(&self.name.as_str())
    }

    /// A network lock: crhook's own table, restore's guard, or CRIU's `CRIU-<pid>` tables.
    pub(crate) fn is_lock(&self) -> bool {
        self.name == super::lock::NFT_TABLE
            || self.name == super::guard::GUARD_TABLE
            || self.name.starts_with("CRIU-")
    }

    /// Saved as native nftables state.
    pub(crate) fn is_native(&self) -> bool {
        !self.is_xtables() && !self.is_lock()
    }
}

/// Cuts a ruleset into its table blocks, in order.
pub(crate) fn split_tables(text: &str) -> Vec<(TableId, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(TableId, String)> = None;
    for line in text.lines() {
        if cur.is_none() {
            if let Some(head) = line.strip_prefix("table ") {
                let mut it = head.split_whitespace();
                if let (Some(family), Some(name)) = (it.next(), it.next()) {
                    let id = TableId {
                        family: family.to_string(),
                        name: name.trim_matches('"').to_string(),
                    };
                    let block = format!("{line}\n");
                    if line.trim_end().ends_with('{') {
                        cur = Some((id, block));
                    } else {
                        // a bare `table x y` line declares an empty table
                        out.push((id, block));
                    }
                }
            }
            continue;
        }
        if let Some((_, block)) = cur.as_mut() {
            block.push_str(line);
            block.push('\n');
        }
        if line.trim_end() == "}" {
            if let Some(done) = cur.take() {
                out.push(done);
            }
        }
    }
    out
}

/// The lines of a table with comments, counter values, quota usage and element expiry left
/// out, and whitespace collapsed: what two listings of the same configuration share.
pub(crate) fn normal_lines(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in block.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        let mut kept = Vec::with_capacity(toks.len());
        let mut i = 0;
        let num =
            |s: &str| !s.is_empty() && s.trim_end_matches(',').chars().all(|c| c.is_ascii_digit());
        while i < toks.len() {
            match toks[i] {
                "packets"
                    if toks.get(i + 2) == Some(&"bytes")
                        && toks.get(i + 1).is_some_and(|t| num(t))
                        && toks.get(i + 3).is_some_and(|t| num(t)) =>
                {
                    i += 4;
                }
                "expires" if i + 1 < toks.len() => {
                    // keep a closing brace or separator glued to the value
                    let v = toks[i + 1];
                    let tail: String = v
                        .chars()
                        .skip_while(|c| c.is_ascii_alphanumeric())
                        .collect();
                    if !tail.is_empty() {
                        kept.push(tail);
                    }
                    i += 2;
                }
                "used" if i + 2 < toks.len() && num(toks[i + 1]) => {
                    i += 3;
                }
                t => {
                    kept.push(t.to_string());
                    i += 1;
                }
            }
        }
        if !kept.is_empty() {
            out.push(kept.join(" "));
        }
    }
    out
}

/// Chains per iptables table of one nftables family, from `nft -j list chains`.
pub(crate) fn base_chains(json: &str, family: &str) -> BaseChains {
    let mut m: BaseChains = HashMap::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return m;
    };
    let items = v
        .get("nftables")
        .and_then(|x| x.as_array())
        .cloned()
        .unwrap_or_default();
    for it in items {
        let Some(c) = it.get("chain") else { continue };
        let f = c.get("family").and_then(|x| x.as_str());
        let t = c.get("table").and_then(|x| x.as_str());
        let n = c.get("name").and_then(|x| x.as_str());
        if let (Some(f), Some(t), Some(n)) = (f, t, n) {
            if f == family {
                m.entry(t.to_string()).or_default().insert(n.to_string());
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULESET: &str = "table inet natv {\n\tcounter cnt1 {\n\t\tpackets 5 bytes 100\n\t}\n\n\tset dyn {\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\telements = { 9.9.9.9 expires 59m59s996ms }\n\t}\n\n\tchain in {\n\t\ttype filter hook input priority filter + 10; policy accept;\n\t\tip saddr 1.1.1.1 counter packets 3 bytes 30 accept comment \"hello\"\n\t}\n}\ntable ip6 x\ntable bridge b {\n}\n";

    #[test]
    fn tables_are_cut_out_by_lines() {
        let t = split_tables(RULESET);
        let ids: Vec<String> = t.iter().map(|(id, _)| id.to_string()).collect();
        assert_eq!(ids, ["inet natv", "ip6 x", "bridge b"]);
        assert!(t[0].1.ends_with("\t}\n}\n"));
        assert_eq!(t[2].1, "table bridge b {\n}\n");
    }

    #[test]
    fn normal_form_drops_state() {
        let n = normal_lines(&split_tables(RULESET)[0].1);
        assert_eq!(
            n,
            [
                "table inet natv {",
                "counter cnt1 {",
                "}",
                "set dyn {",
                "type ipv4_addr",
                "flags dynamic,timeout",
                "elements = { 9.9.9.9 }",
                "}",
                "chain in {",
                "type filter hook input priority filter + 10; policy accept;",
                "ip saddr 1.1.1.1 counter accept comment \"hello\"",
                "}",
                "}"
            ]
        );
    }

    #[test]
    fn ownership() {
        let id = |f: &str, n: &str| TableId {
            family: f.into(),
            name: n.into(),
        };
        assert!(id("ip", "nat").is_xtables());
        assert!(!id("inet", "nat").is_xtables());
        assert!(id("inet", "CRIU-42").is_lock());
        assert!(id("inet", "crhook-lock").is_lock());
        assert!(id("arp", "crhook-restore").is_lock());
        assert!(id("inet", "filter").is_native());
    }

    #[test]
    fn chains_from_json() {
        let j = r#"{"nftables": [{"metainfo": {}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "hook": "input"}}, {"chain": {"family": "ip6", "table": "filter", "name": "OUTPUT"}}]}"#;
        let m = base_chains(j, "ip");
        assert!(m["filter"].contains("INPUT"));
        assert_eq!(m.len(), 1);
    }
}
