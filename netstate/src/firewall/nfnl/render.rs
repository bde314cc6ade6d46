//! Differences between saved and live nf_tables tables, one line per object that differs.
//!
//! Objects compare in normal form without counters, as the kernel's bytes. A differing object
//! is shown in rule syntax where the tools can list it (the tables that differ are replayed
//! into a private namespace, see [`syntax`]): `iptables-save` lines for the tables
//! iptables-nft owns, `nft` lines for the others. Where they cannot (no privilege, no `nft`,
//! a table this kernel refuses outside its namespace), it is shown attribute by attribute
//! (`name(type:hex ...)` for expressions): crhook does not translate expressions itself.
//! Rules are compared as ordered lists ([`edits`]): an inserted rule is one line, an edited
//! one a change with both texts.

use std::collections::BTreeMap;

use crhook_proto::NftTable;

use super::norm::{self, normalize};
use super::{table_label, Obj, NFGEN};
use crate::api::Difference;
use crate::firewall::diff::diff_line as line;
use crate::firewall::seqdiff::{edits, Edit};
use crate::firewall::syntax::{self, TableText};
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

/// Shown forms of the objects of one kind, by key ("chain INPUT", "set s").
type Objects = BTreeMap<String, Vec<String>>;

/// Whether the objects of one kind show the same on both sides, known without showing them:
/// equal one by one as bytes, or (but elements, which [`objects`] groups from the raw
/// messages) in normal form. Showing every rule of both sides (hex text per attribute) was
/// most of a diff's time: at 55,000 rules 2.5 s of `crhook diff`'s 2.9 s. Where this says
/// no, [`objects`] decides as before.
fn same_objects(obj: Obj, s: &NftTable, l: &NftTable) -> bool {
    let (a, b) = (obj.of(s), obj.of(l));
    let normal = |p: &[u8]| normalize(obj, p, false).unwrap_or_else(|_| p.to_vec());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x == y || (obj != Obj::Element && normal(x) == normal(y)))
}

/// Key and shown form of every object of one kind (rules: keyed by chain, in order).
fn objects(obj: Obj, t: &NftTable) -> Objects {
    let mut m = Objects::new();
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
        let n = normalize(obj, p, false).unwrap_or_else(|_| p.to_vec());
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

/// The tables of one side that differ, in rule syntax where the tools could list them.
type Texts = BTreeMap<(u32, String), TableText>;

fn render_side(tables: &[&NftTable]) -> Texts {
    if tables.is_empty() {
        return Texts::new();
    }
    match syntax::render(tables) {
        Ok(v) => tables
            .iter()
            .zip(v)
            .filter_map(|(t, r)| match r {
                Ok(text) => Some(((t.family, t.name.clone()), text)),
                Err(e) => {
                    tracing::warn!(
                        "nftables table {}: shown as kernel attributes: {e}",
                        table_label(t)
                    );
                    None
                }
            })
            .collect(),
        Err(e) => {
            tracing::warn!(
                "nf_tables rules shown as kernel attributes: {}",
                crate::error::chain(&e)
            );
            Texts::new()
        }
    }
}

/// Every difference between saved and live tables; with `syntax`, the tables that differ are
/// listed by the tools (see [`syntax`]) and their lines show rules as the tools print them.
pub(crate) fn diff_tables(
    saved: &[&NftTable],
    live: &[&NftTable],
    syntax: bool,
) -> Vec<Difference> {
    let key = |t: &NftTable| (t.family, t.name.clone());
    let mut all: Vec<(u32, String)> = saved.iter().chain(live).map(|t| key(t)).collect();
    all.sort();
    all.dedup();
    let mut out = Vec::new();
    let mut differing = Vec::new();
    for k in all {
        let s = saved.iter().find(|t| key(t) == k).copied();
        let l = live.iter().find(|t| key(t) == k).copied();
        match (s, l) {
            (Some(s), Some(l)) => {
                let kinds: Vec<(Obj, Objects, Objects)> = Obj::ALL
                    .into_iter()
                    .filter(|o| !same_objects(*o, s, l))
                    .map(|o| (o, objects(o, s), objects(o, l)))
                    .filter(|(_, a, b)| a != b)
                    .collect();
                if !kinds.is_empty() {
                    differing.push((s, l, kinds));
                }
            }
            (s, l) => {
                let label = table_label(s.or(l).unwrap_or(&NftTable::default()));
                let p = |x: bool| if x { "present" } else { "absent" }.to_string();
                out.push(line(
                    format!("nftables table {label}"),
                    "table",
                    p(s.is_some()),
                    p(l.is_some()),
                ));
            }
        }
    }
    let (ts, tl) = if syntax && !differing.is_empty() {
        crate::progress::step("list the differing nf_tables rules");
        let ss: Vec<&NftTable> = differing.iter().map(|d| d.0).collect();
        let ll: Vec<&NftTable> = differing.iter().map(|d| d.1).collect();
        (render_side(&ss), render_side(&ll))
    } else {
        (Texts::new(), Texts::new())
    };
    for (s, l, kinds) in differing {
        let (rs, rl) = (ts.get(&key(s)), tl.get(&key(l)));
        let label = match rs.or(rl) {
            Some(r) => r.label(),
            None => format!("nftables table {}", table_label(s)),
        };
        for (obj, a, b) in kinds {
            object_lines(obj, &label, &a, &b, (rs, rl), &mut out);
        }
    }
    out
}

/// The lines for the differing objects of one kind: in rule syntax where the tools listed
/// the table on the side concerned, else the kernel's attributes.
fn object_lines(
    obj: Obj,
    label: &str,
    a: &Objects,
    b: &Objects,
    (rs, rl): (Option<&TableText>, Option<&TableText>),
    out: &mut Vec<Difference>,
) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let none = Vec::new();
        let (x, y) = (a.get(k).unwrap_or(&none), b.get(k).unwrap_or(&none));
        if x == y {
            continue;
        }
        let (saved_as, name) = k.split_once(' ').unwrap_or(("", k.as_str()));
        let kind = rs
            .and_then(|r| r.object_kind(saved_as, name))
            .or_else(|| rl.and_then(|r| r.object_kind(saved_as, name)));
        let object = match kind {
            Some(kind) => format!("{label} {kind} {name}"),
            None => format!("{label} {k}"),
        };
        let absent = || "absent".to_string();
        match obj {
            Obj::Rule => {
                // the tools' lines stand for the raw ones only when they list as many
                let shown = |r: Option<&TableText>, raw: &Vec<String>| -> Vec<String> {
                    match r.and_then(|r| r.rules(name)) {
                        Some(v) if v.len() == raw.len() => v,
                        _ => raw.clone(),
                    }
                };
                let (sx, sy) = (shown(rs, x), shown(rl, y));
                for e in edits(x, y) {
                    let (field, saved, live) = match e {
                        Edit::Change(i, j) if sx[i] == sy[j] => (i, x[i].clone(), y[j].clone()),
                        Edit::Change(i, j) => (i, sx[i].clone(), sy[j].clone()),
                        Edit::Delete(i) => (i, sx[i].clone(), absent()),
                        Edit::Insert(j) => (j, absent(), sy[j].clone()),
                    };
                    out.push(line(
                        object.clone(),
                        &format!("rule {}", field + 1),
                        saved,
                        live,
                    ));
                }
            }
            Obj::Element => {
                // a side without the set has no elements; one the tools listed shows theirs
                let shown = |r: Option<&TableText>, raw: &Vec<String>| -> Option<Vec<String>> {
                    match r.and_then(|r| r.elements(name)) {
                        Some(v) => Some(v),
                        None if raw.is_empty() => Some(Vec::new()),
                        None => None,
                    }
                };
                let (ex, ey) = match (shown(rs, x), shown(rl, y)) {
                    (Some(p), Some(q)) if p != q => (p, q),
                    _ => (x.clone(), y.clone()),
                };
                for e in ex.iter().filter(|e| !ey.contains(e)) {
                    out.push(line(object.clone(), "element", e.clone(), absent()));
                }
                for e in ey.iter().filter(|e| !ex.contains(e)) {
                    out.push(line(object.clone(), "element", absent(), e.clone()));
                }
            }
            _ => {
                let def = |r: Option<&TableText>| r.and_then(|r| r.definition(saved_as, name));
                match (x.len(), y.len(), def(rs), def(rl)) {
                    (1, 1, Some((f, p)), Some((_, q))) if p != q => {
                        out.push(line(object.clone(), &f, p, q));
                        continue;
                    }
                    (1, 0, Some((f, p)), _) => {
                        out.push(line(object.clone(), "-", one_side(&f, p), absent()));
                        continue;
                    }
                    (0, 1, _, Some((f, q))) => {
                        out.push(line(object.clone(), "-", absent(), one_side(&f, q)));
                        continue;
                    }
                    _ => {}
                }
                let field = obj.name();
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
}

/// An object present on one side, by its definition: "policy DROP", "type filter hook ...".
fn one_side(field: &str, value: String) -> String {
    match field {
        "policy" => format!("policy {value}"),
        _ => value,
    }
}
