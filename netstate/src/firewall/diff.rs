//! Differences between saved and live rulesets, in the normal form comparisons use (no
//! comments, header dates, counters, element expiry; empty builtin chains count as absent).

use std::collections::{BTreeMap, BTreeSet};

use crhook_proto::{FirewallRuleset, FirewallSource};

use super::capture::source_label;
use super::nftx;
use super::seqdiff::Edit;
use super::xt::Canon;
use crate::api::Difference;

pub(super) fn diff_line(object: String, field: &str, saved: String, live: String) -> Difference {
    Difference {
        kind: "firewall".into(),
        object,
        field: field.into(),
        saved,
        live,
    }
}

/// Lines of `a` not in `b` and of `b` not in `a` (as multisets), or one "order" line when
/// both hold the same lines in another order.
fn list_diff(object: &str, field: &str, a: &[String], b: &[String], out: &mut Vec<Difference>) {
    if a == b {
        return;
    }
    fn count(v: &[String]) -> BTreeMap<&str, usize> {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for x in v {
            *m.entry(x.as_str()).or_default() += 1;
        }
        m
    }
    let (ca, cb) = (count(a), count(b));
    if ca == cb {
        out.push(diff_line(
            object.into(),
            &format!("{field} order"),
            a.join(" | "),
            b.join(" | "),
        ));
        return;
    }
    for (x, n) in &ca {
        for _ in cb.get(x).copied().unwrap_or(0)..*n {
            out.push(diff_line(
                object.into(),
                field,
                x.to_string(),
                "absent".into(),
            ));
        }
    }
    for (x, n) in &cb {
        for _ in ca.get(x).copied().unwrap_or(0)..*n {
            out.push(diff_line(
                object.into(),
                field,
                "absent".into(),
                x.to_string(),
            ));
        }
    }
}

/// Ordered rule lists compared as edits: `rule N` lines, N the position in the saved list
/// (in the live one for a rule only live).
fn rule_diff(object: &str, a: &[String], b: &[String], out: &mut Vec<Difference>) {
    for e in super::seqdiff::edits(a, b) {
        let (n, saved, live) = match e {
            Edit::Change(i, j) => (i, a[i].clone(), b[j].clone()),
            Edit::Delete(i) => (i, a[i].clone(), "absent".into()),
            Edit::Insert(j) => (j, "absent".into(), b[j].clone()),
        };
        out.push(diff_line(
            object.into(),
            &format!("rule {}", n + 1),
            saved,
            live,
        ));
    }
}

fn raw_tables(rs: &[FirewallRuleset], s: i32) -> Vec<&crhook_proto::NftTable> {
    rs.iter()
        .filter(|r| r.source == s)
        .flat_map(|r| r.tables.iter())
        .collect()
}

fn text_of(rs: &[FirewallRuleset], s: FirewallSource) -> String {
    rs.iter()
        .filter(|r| r.source == s as i32)
        .map(|r| r.text.as_str())
        .collect()
}

/// Compares saved rulesets with live ones (as [`super::capture`] takes them), per source,
/// nf_tables rules shown in rule syntax where the tools can list them.
pub fn diff(saved: &[FirewallRuleset], live: &[FirewallRuleset]) -> Vec<Difference> {
    diff_with(saved, live, true)
}

/// [`diff`]; without `syntax`, nf_tables objects are shown as the kernel's attributes (no
/// private namespace, no program run).
pub fn diff_with(
    saved: &[FirewallRuleset],
    live: &[FirewallRuleset],
    syntax: bool,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let sources: BTreeSet<i32> = saved.iter().chain(live).map(|r| r.source).collect();
    for s in sources {
        let source = FirewallSource::try_from(s).unwrap_or(FirewallSource::Unspecified);
        let label = source_label(source);
        let (a, b) = (text_of(saved, source), text_of(live, source));
        match source {
            FirewallSource::Nftables => {
                out.extend(super::nfnl::diff_tables(
                    &raw_tables(saved, s),
                    &raw_tables(live, s),
                    syntax,
                ));
            }
            FirewallSource::Nft => nft_diff(&a, &b, &mut out),
            _ => {
                let (ca, cb) = (Canon::parse(&a), Canon::parse(&b));
                if ca.tables.is_empty() && cb.tables.is_empty() {
                    // not iptables-save text (a CR_IPTABLES command's own format)
                    let lines = |t: &str| -> Vec<String> {
                        t.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty() && !l.starts_with('#'))
                            .map(String::from)
                            .collect()
                    };
                    list_diff(label, "line", &lines(&a), &lines(&b), &mut out);
                } else {
                    xt_diff(label, &ca, &cb, &mut out);
                }
            }
        }
    }
    out
}

fn xt_diff(label: &str, a: &Canon, b: &Canon, out: &mut Vec<Difference>) {
    let (ea, eb) = (a.essential(), b.essential());
    let tables: BTreeSet<&str> = ea.keys().chain(eb.keys()).copied().collect();
    let none = BTreeMap::new();
    for t in tables {
        let (ta, tb) = (ea.get(t).unwrap_or(&none), eb.get(t).unwrap_or(&none));
        let chains: BTreeSet<&str> = ta.keys().chain(tb.keys()).copied().collect();
        for c in chains {
            let object = format!("{label} table {t} chain {c}");
            match (ta.get(c), tb.get(c)) {
                (Some(_), None) => out.push(diff_line(
                    object,
                    "chain",
                    "present".into(),
                    "absent".into(),
                )),
                (None, Some(_)) => out.push(diff_line(
                    object,
                    "chain",
                    "absent".into(),
                    "present".into(),
                )),
                (Some((pa, ra)), Some((pb, rb))) => {
                    if pa != pb {
                        out.push(diff_line(
                            object.clone(),
                            "policy",
                            pa.to_string(),
                            pb.to_string(),
                        ));
                    }
                    let full = |r: &[String]| -> Vec<String> {
                        r.iter().map(|x| format!("-A {c} {x}")).collect()
                    };
                    rule_diff(&object, &full(ra), &full(rb), out);
                }
                (None, None) => {}
            }
        }
    }
}

fn nft_diff(a: &str, b: &str, out: &mut Vec<Difference>) {
    let (ta, tb) = (nftx::split_tables(a), nftx::split_tables(b));
    let ids: BTreeSet<&nftx::TableId> = ta.iter().chain(&tb).map(|(id, _)| id).collect();
    for id in ids {
        let object = format!("nft table {id}");
        let find = |v: &[(nftx::TableId, String)]| {
            v.iter()
                .find(|(x, _)| x == id)
                .map(|(_, blk)| nftx::normal_lines(blk))
        };
        match (find(&ta), find(&tb)) {
            (Some(_), None) => out.push(diff_line(
                object,
                "table",
                "present".into(),
                "absent".into(),
            )),
            (None, Some(_)) => out.push(diff_line(
                object,
                "table",
                "absent".into(),
                "present".into(),
            )),
            (Some(la), Some(lb)) => list_diff(&object, "line", &la, &lb, out),
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(source: FirewallSource, text: &str) -> FirewallRuleset {
        FirewallRuleset {
            source: source as i32,
            text: text.into(),
            counters: false,
            program: String::new(),
            tables: Vec::new(),
        }
    }

    #[test]
    fn equal_up_to_comments_and_counters() {
        let a = rs(FirewallSource::IptablesNft, "# Generated on Mon\n*filter\n:INPUT ACCEPT [1:2]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n");
        let b = rs(
            FirewallSource::IptablesNft,
            "# Generated on Tue\n*filter\n:INPUT ACCEPT [0:0]\n[4:5] -A INPUT -j DROP\nCOMMIT\n",
        );
        assert!(diff(&[a], &[b]).is_empty());
    }

    #[test]
    fn rules_policies_and_tables_differ() {
        let a = rs(FirewallSource::IptablesLegacy, "*filter\n:INPUT DROP [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -s 1.2.3.4/32 -j DROP\nCOMMIT\n");
        let b = rs(
            FirewallSource::IptablesLegacy,
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n*nat\n:X - [0:0]\nCOMMIT\n",
        );
        let d: Vec<String> = diff(&[a], &[b]).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            [
                "firewall iptables-legacy table filter chain INPUT: policy DROP -> ACCEPT",
                "firewall iptables-legacy table filter chain INPUT: rule 2 only in the image: -A INPUT -s 1.2.3.4/32 -j DROP",
                "firewall iptables-legacy table nat chain X: chain only live",
            ]
        );
    }

    #[test]
    fn nft_tables_and_lines() {
        let a = rs(FirewallSource::Nft, "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 1.1.1.1 }\n\t}\n}\ntable ip gone {\n}\n");
        let b = rs(
            FirewallSource::Nft,
            "table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t\telements = { 1.1.1.2 }\n\t}\n}\n",
        );
        let d: Vec<String> = diff(&[a], &[b]).iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            [
                "firewall nft table inet t: line only in the image: elements = { 1.1.1.1 }",
                "firewall nft table inet t: line only live: elements = { 1.1.1.2 }",
                "firewall nft table ip gone: table only in the image",
            ]
        );
    }
}
