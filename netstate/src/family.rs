//! One shape for the object families that live in netlink tables (addresses, routes, rules,
//! neighbours, nexthops), so that restore's conflict check, its batched apply with undo, and
//! `diff` are written once.

use std::collections::HashMap;

use crhook_proto as pb;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use serde::Serialize;

use crate::api::Difference;
use crate::error::Result;
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock, Undo};
use crate::nl::{Nl, Req};

pub trait Family {
    type Obj: Clone + PartialEq + Serialize + std::fmt::Debug;
    /// kind name in diff lines, stats and errors
    const KIND: &'static str;
    fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<Self::Obj>>;
    fn add(o: &Self::Obj, ifs: &IfMap) -> Result<Req>;
    fn del(o: &Self::Obj, ifs: &IfMap) -> Result<Req>;
    fn key(o: &Self::Obj) -> String;
    fn describe(o: &Self::Obj) -> String;
    fn normalize(o: &mut Self::Obj);
    /// A second identity for conflicts the kernel would allow to coexist but a restore should
    /// not: the same IPv4 address on the same device with another prefix.
    fn clash_key(o: &Self::Obj) -> Option<String> {
        let _ = o;
        None
    }
    /// errnos worth a later pass (a route whose gateway becomes reachable through another)
    fn retry(errno: i32) -> bool {
        let _ = errno;
        false
    }
}

macro_rules! family {
    ($t:ident, $m:ident, $obj:ty, $kind:expr) => {
        pub struct $t;
        impl Family for $t {
            type Obj = $obj;
            const KIND: &'static str = $kind;
            fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<$obj>> {
                crate::$m::capture(nl, ifs)
            }
            fn add(o: &$obj, ifs: &IfMap) -> Result<Req> {
                crate::$m::add_request(o, ifs)
            }
            fn del(o: &$obj, ifs: &IfMap) -> Result<Req> {
                crate::$m::del_request(o, ifs)
            }
            fn key(o: &$obj) -> String {
                crate::$m::key(o)
            }
            fn describe(o: &$obj) -> String {
                crate::$m::describe(o)
            }
            fn normalize(o: &mut $obj) {
                crate::$m::normalize(o)
            }
        }
    };
}

pub struct Addresses;
impl Family for Addresses {
    type Obj = pb::Address;
    const KIND: &'static str = "address";
    fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::Address>> {
        crate::addr::capture(nl, ifs)
    }
    fn add(o: &pb::Address, ifs: &IfMap) -> Result<Req> {
        crate::addr::add_request(o, ifs)
    }
    fn del(o: &pb::Address, ifs: &IfMap) -> Result<Req> {
        crate::addr::del_request(o, ifs)
    }
    fn key(o: &pb::Address) -> String {
        crate::addr::key(o)
    }
    fn describe(o: &pb::Address) -> String {
        crate::addr::describe(o)
    }
    fn normalize(o: &mut pb::Address) {
        crate::addr::normalize(o)
    }
    fn clash_key(o: &pb::Address) -> Option<String> {
        let local = if o.local.is_empty() {
            &o.address
        } else {
            &o.local
        };
        Some(format!("{} {:?} {}", o.family, local, o.ifname))
    }
}
family!(Rules, rule, pb::Rule, "rule");
family!(Neighbours, neigh, pb::Neighbour, "neighbour");
family!(Nexthops, nexthop, pb::NexthopObject, "nexthop");

pub struct Routes;
impl Family for Routes {
    type Obj = pb::Route;
    const KIND: &'static str = "route";
    fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::Route>> {
        crate::route::capture(nl, ifs)
    }
    fn add(o: &pb::Route, ifs: &IfMap) -> Result<Req> {
        crate::route::add_request(o, ifs)
    }
    fn del(o: &pb::Route, ifs: &IfMap) -> Result<Req> {
        crate::route::del_request(o, ifs)
    }
    fn key(o: &pb::Route) -> String {
        crate::route::key(o)
    }
    fn describe(o: &pb::Route) -> String {
        crate::route::describe(o)
    }
    fn normalize(o: &mut pb::Route) {
        crate::route::normalize(o)
    }
    fn retry(errno: i32) -> bool {
        errno == libc::ENETUNREACH || errno == libc::EHOSTUNREACH || errno == libc::ENODEV
    }
}

fn normalized<F: Family>(o: &F::Obj) -> F::Obj {
    let mut c = o.clone();
    F::normalize(&mut c);
    c
}

/// What restore must do for one family.
#[derive(Debug)]
pub struct Plan<O> {
    pub to_add: Vec<O>,
    pub present: usize,
    pub conflicts: Vec<String>,
}

/// Saved objects against live ones: identical → left alone, same identity but different
/// settings → conflict, absent → to add. Live objects the images do not mention are left alone.
pub fn plan<F: Family>(saved: &[F::Obj], live: &[F::Obj]) -> Plan<F::Obj> {
    if live.is_empty() {
        // a fresh namespace: nothing to compare (and no key to build per object)
        return Plan {
            to_add: saved.to_vec(),
            present: 0,
            conflicts: Vec::new(),
        };
    }
    let clashes: HashMap<String, String> = live
        .iter()
        .filter_map(|o| F::clash_key(o).map(|k| (k, F::describe(o))))
        .collect();
    let live: HashMap<String, F::Obj> = live
        .iter()
        .map(|o| (F::key(o), normalized::<F>(o)))
        .collect();
    let mut p = Plan {
        to_add: Vec::new(),
        present: 0,
        conflicts: Vec::new(),
    };
    for o in saved {
        match live.get(&F::key(o)) {
            Some(l) if *l == normalized::<F>(o) => p.present += 1,
            Some(l) => {
                let fields = field_diffs(&normalized::<F>(o), l);
                p.conflicts.push(format!(
                    "{} exists with {}",
                    F::describe(o),
                    describe_diffs(&fields)
                ));
            }
            None => match F::clash_key(o).and_then(|k| clashes.get(&k)) {
                Some(other) => p
                    .conflicts
                    .push(format!("{}: the namespace holds {other}", F::describe(o))),
                None => p.to_add.push(o.clone()),
            },
        }
    }
    p
}

/// Adds `objs` in batches, journaling an undo for each success. Retries, in further passes,
/// the failures the family says may resolve once others are in.
pub fn apply<F: Family>(
    nl: &mut Nl,
    sock: Sock,
    objs: &[F::Obj],
    ifs: &IfMap,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    apply_with::<F>(nl, sock, objs, ifs, journal, NLM_F_CREATE | NLM_F_EXCL)
}

/// [`apply`] with other request flags (NLM_F_APPEND for routes that share a key, NLM_F_REPLACE
/// to refresh what the kernel finished only partly).
pub fn apply_with<F: Family>(
    nl: &mut Nl,
    sock: Sock,
    objs: &[F::Obj],
    ifs: &IfMap,
    journal: &mut Journal,
    flags: u16,
) -> std::result::Result<(), Vec<String>> {
    let mut pending: Vec<&F::Obj> = objs.iter().collect();
    loop {
        let mut reqs = Vec::with_capacity(pending.len());
        let mut errors = Vec::new();
        let mut ok_objs = Vec::with_capacity(pending.len());
        for o in &pending {
            match F::add(o, ifs) {
                Ok(r) => {
                    reqs.push(r);
                    ok_objs.push(*o);
                }
                Err(e) => errors.push(format!(
                    "add {}: {}",
                    F::describe(o),
                    crate::error::chain(&e)
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let results = nl
            .batch(&reqs, flags, &format!("add {}s", F::KIND))
            .map_err(|e| vec![crate::error::chain(&e)])?;
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        for (o, r) in ok_objs.iter().zip(results) {
            match r {
                Ok(()) => {
                    let undo = F::del(o, ifs).map_err(|e| vec![crate::error::chain(&e)])?;
                    journal.push(Undo::Req {
                        sock,
                        req: undo,
                        what: format!("delete {}", F::describe(o)),
                    });
                }
                Err(e) if F::retry(e.errno) => retry.push((*o, e)),
                Err(e) => failed.push(format!("add {} in {}: {e}", F::describe(o), nl.netns())),
            }
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        journal.check().map_err(|e| vec![e])?;
        if retry.is_empty() {
            return Ok(());
        }
        if retry.len() == pending.len() {
            return Err(retry
                .iter()
                .map(|(o, e)| format!("add {} in {}: {e}", F::describe(o), nl.netns()))
                .collect());
        }
        pending = retry.into_iter().map(|(o, _)| o).collect();
    }
}

/// Diff lines for one family.
pub fn diff<F: Family>(saved: &[F::Obj], live: &[F::Obj], out: &mut Vec<Difference>) {
    diff_by::<F::Obj>(
        F::KIND,
        saved
            .iter()
            .map(|o| (F::key(o), normalized::<F>(o)))
            .collect(),
        live.iter()
            .map(|o| (F::key(o), normalized::<F>(o)))
            .collect(),
        out,
    );
}

/// Compares two keyed collections field by field.
pub fn diff_by<O: Serialize + PartialEq>(
    kind: &str,
    saved: Vec<(String, O)>,
    live: Vec<(String, O)>,
    out: &mut Vec<Difference>,
) {
    let live_map: HashMap<&str, &O> = live.iter().map(|(k, o)| (k.as_str(), o)).collect();
    let saved_keys: std::collections::HashSet<&str> =
        saved.iter().map(|(k, _)| k.as_str()).collect();
    for (k, s) in &saved {
        match live_map.get(k.as_str()) {
            None => out.push(Difference {
                kind: kind.into(),
                object: k.clone(),
                field: "-".into(),
                saved: "present".into(),
                live: "absent".into(),
            }),
            Some(l) if *l == s => {}
            Some(l) => {
                for (field, sv, lv) in field_diffs(s, *l) {
                    out.push(Difference {
                        kind: kind.into(),
                        object: k.clone(),
                        field,
                        saved: sv,
                        live: lv,
                    });
                }
            }
        }
    }
    for (k, _) in &live {
        if !saved_keys.contains(k.as_str()) {
            out.push(Difference {
                kind: kind.into(),
                object: k.clone(),
                field: "-".into(),
                saved: "absent".into(),
                live: "present".into(),
            });
        }
    }
}

/// (field, saved, live) for every top-level field that differs.
pub fn field_diffs<O: Serialize>(saved: &O, live: &O) -> Vec<(String, String, String)> {
    let s = serde_json::to_value(saved).unwrap_or_default();
    let l = serde_json::to_value(live).unwrap_or_default();
    let mut out = Vec::new();
    if let (Some(s), Some(l)) = (s.as_object(), l.as_object()) {
        for (k, sv) in s {
            let lv = l.get(k).cloned().unwrap_or_default();
            if *sv != lv {
                out.push((k.clone(), sv.to_string(), lv.to_string()));
            }
        }
    } else if s != l {
        out.push(("value".into(), s.to_string(), l.to_string()));
    }
    out
}

/// "mtu 1400 (saved 1500), kind macvlan (saved veth)", long values shortened.
pub fn describe_diffs(d: &[(String, String, String)]) -> String {
    let short = |v: &str| -> String {
        if v.chars().count() > 60 {
            format!("{}...", v.chars().take(57).collect::<String>())
        } else {
            v.to_string()
        }
    };
    d.iter()
        .map(|(k, s, v)| format!("{k} {} (saved {})", short(v), short(s)))
        .collect::<Vec<_>>()
        .join(", ")
}
