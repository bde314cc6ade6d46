//! Differences between saved and live nf_tables tables, one line per object that differs.
//!
//! Objects compare in normal form without counters. A differing object is shown the way the
//! kernel describes it, attribute by attribute (`name(type:hex ...)` for expressions), since
//! crhook does not translate expressions back into iptables or nft syntax.

use std::collections::BTreeMap;

use crhook_proto::NftTable;

use super::norm::{self, normalize};
use super::{table_label, Obj, NFGEN};
use crate::api::Difference;
use crate::firewall::diff::diff_line as line;
use crate::nla::{attrs, hex};

/// Attributes as `type:hex`, expressions (lists of name + data) as `name(type:hex ...)`.
fn show_attrs(buf: &[u8], depth: usize) -> String {
    let mut parts = Vec::new();
    for a in attrs(buf).filter_map(|a| a.ok()) {
        let nested: Vec<_> = attrs(a.value).filter_map(|x| x.ok()).collect();
        // an expression: NFTA_EXPR_NAME (string) then NFTA_EXPR_DATA
        let is_expr = depth > 0
            && nested.len() == 2
            && nested[0].ty() == 1
            && nested[1].ty() == 2
            && nested[0].value.last() == Some(&0);
        if is_expr {
            parts.push(format!(
                "{}({})",
                nested[0].string(),
                show_attrs(nested[1].value, depth + 1)
            ));
        } else {
            parts.push(format!("{}:{}", a.ty(), hex(a.value)));
        }
    }
    parts.join(" ")
}

/// A rule as its expressions (and userdata, which holds iptables comments).
fn show_rule(p: &[u8]) -> String {
    let mut parts = Vec::new();
    for a in attrs(p.get(NFGEN..).unwrap_or(&[])).filter_map(|a| a.ok()) {
        match a.ty() {
            // expressions
            4 => {
                for e in attrs(a.value).filter_map(|x| x.ok()) {
                    let f: Vec<_> = attrs(e.value).filter_map(|x| x.ok()).collect();
                    let name = f.iter().find(|x| x.ty() == 1).map(|x| x.string());
                    let data = f.iter().find(|x| x.ty() == 2).map(|x| x.value);
                    parts.push(format!(
                        "{}({})",
                        name.unwrap_or_default(),
                        show_attrs(data.unwrap_or(&[]), 1)
                    ));
                }
            }
            5 | 7 => parts.push(format!("{}:{}", a.ty(), hex(a.value))),
            _ => {}
        }
    }
    parts.join(" ")
}

/// Key and shown form of every object of one kind (rules: keyed by chain, in order).
fn objects(obj: Obj, t: &NftTable) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if obj == Obj::Element {
        // elements one by one, sorted per set (hash sets dump in hash order)
        if let Ok(by_set) = norm::elements_by_set(&t.elements) {
            for (set, elems) in by_set {
                m.insert(
                    format!("set {set}"),
                    elems.iter().map(|e| show_attrs(e, 1)).collect(),
                );
            }
            return m;
        }
    }
    for p in obj.of(t) {
        let n = normalize(obj, p, false).unwrap_or_else(|_| p.clone());
        let (key, shown) = match obj {
            Obj::Rule => (
                format!("chain {}", norm::rule_chain(&n).unwrap_or_default()),
                show_rule(&n),
            ),
            Obj::Element => (
                format!("set {}", norm::elem_set(&n).unwrap_or_default()),
                show_attrs(&n[NFGEN.min(n.len())..], 0),
            ),
            _ => {
                let name = match obj {
                    Obj::Chain => norm::chain_name(&n),
                    Obj::Set => norm::set_name(&n),
                    Obj::Object | Obj::Flowtable => norm::obj_name(&n),
                    _ => None,
                };
                (
                    format!("{} {}", obj.name(), name.unwrap_or_default()),
                    show_attrs(&n[NFGEN.min(n.len())..], 0),
                )
            }
        };
        m.entry(key).or_default().push(shown);
    }
    m
}

/// Every difference between saved and live tables.
pub(crate) fn diff_tables(saved: &[&NftTable], live: &[&NftTable]) -> Vec<Difference> {
    let mut out = Vec::new();
    let key = |t: &NftTable| (t.family, t.name.clone());
    let mut all: Vec<(u32, String)> = saved.iter().chain(live).map(|t| key(t)).collect();
    all.sort();
    all.dedup();
    for k in all {
        let s = saved.iter().find(|t| key(t) == k);
        let l = live.iter().find(|t| key(t) == k);
        let (s, l) = match (s, l) {
            (Some(s), Some(l)) => (s, l),
            (s, l) => {
                let label = table_label(s.or(l).copied().unwrap_or(&NftTable::default()));
                let p = |x: bool| if x { "present" } else { "absent" }.to_string();
                out.push(line(
                    format!("nftables table {label}"),
                    "table",
                    p(s.is_some()),
                    p(l.is_some()),
                ));
                continue;
            }
        };
        let label = table_label(s);
        for obj in Obj::ALL {
            let (a, b) = (objects(obj, s), objects(obj, l));
            if a == b {
                continue;
            }
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let none = Vec::new();
                let (x, y) = (a.get(k).unwrap_or(&none), b.get(k).unwrap_or(&none));
                if x == y {
                    continue;
                }
                let object = format!("nftables table {label} {k}");
                let field = obj.name();
                if obj == Obj::Element {
                    // sorted lists: what only one side has
                    for e in x.iter().filter(|e| !y.contains(e)) {
                        out.push(line(object.clone(), "element", e.clone(), "absent".into()));
                    }
                    for e in y.iter().filter(|e| !x.contains(e)) {
                        out.push(line(object.clone(), "element", "absent".into(), e.clone()));
                    }
                    continue;
                }
                if obj == Obj::Rule && x.len() == y.len() {
                    for (i, (p, q)) in x.iter().zip(y).enumerate() {
                        if p != q {
                            out.push(line(
                                object.clone(),
                                &format!("rule {}", i + 1),
                                p.clone(),
                                q.clone(),
                            ));
                        }
                    }
                    continue;
                }
                let absent = || "absent".to_string();
                let n = x.len().max(y.len());
                for i in 0..n {
                    let (p, q) = (x.get(i), y.get(i));
                    if p != q {
                        out.push(line(
                            object.clone(),
                            &if n > 1 {
                                format!("{field} {}", i + 1)
                            } else {
                                field.to_string()
                            },
                            p.cloned().unwrap_or_else(absent),
                            q.cloned().unwrap_or_else(absent),
                        ));
                    }
                }
            }
        }
    }
    out
}
