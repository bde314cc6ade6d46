//! One shape for the object families that live in netlink tables (addresses, routes, rules,
//! neighbours, nexthops, traffic control), so that restore's conflict check, its batched apply with undo, and
//! `diff` are written once.

use std::collections::{HashMap, HashSet};

use crhook_proto as pb;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use serde::Serialize;

use crate::api::Difference;
use crate::error::Result;
pub use crate::fields::{describe_diffs, field_diffs, Conflict, FieldChange};
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock};
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
    /// The link the object belongs to, by name ("" when it belongs to none): objects on a link
    /// the runtime owns (adopted) keep the runtime's version.
    fn dev(o: &Self::Obj) -> &str {
        let _ = o;
        ""
    }
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
    /// The journal's text for the undo of adding `o`, shown if that undo fails.
    fn undo_text(o: &Self::Obj) -> String {
        format!("delete {}", Self::describe(o))
    }
}

macro_rules! family {
    ($t:ident, $m:ident, $obj:ty, $kind:expr) => {
        family!($t, $m, $obj, $kind, |_o| "");
    };
    ($t:ident, $m:ident, $obj:ty, $kind:expr, $dev:expr) => {
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
            fn dev(o: &$obj) -> &str {
                let f: fn(&$obj) -> &str = $dev;
                f(o)
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
    fn dev(o: &pb::Address) -> &str {
        &o.ifname
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
family!(Neighbours, neigh, pb::Neighbour, "neighbour", |o| &o.ifname);
family!(Nexthops, nexthop, pb::NexthopObject, "nexthop", |o| &o
    .oif_name);
family!(Tc, tc, pb::TcObject, "tc object", |o| &o.ifname);

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
    fn dev(o: &pb::Route) -> &str {
        &o.oif_name
    }
    fn retry(errno: i32) -> bool {
        errno == libc::ENETUNREACH || errno == libc::EHOSTUNREACH || errno == libc::ENODEV
    }
    /// None: a rollback describes a route's undo from its request (`journal::replay`), as
    /// it does only for an undo that fails or is traced. Formatting 100,000 texts took a
    /// quarter of the route builder's time, on a core the kernel's route work needs.
    fn undo_text(_: &pb::Route) -> String {
        String::new()
    }
}

/// Each object's key, made unique in order: objects the kernel keeps side by side under one
/// identity (IPv4 routes of one prefix and metric added with `ip route append`, dumped in the
/// order they were appended) become `KEY`, `KEY #2`, `KEY #3`, ... so diff and plan pair them
/// by position instead of letting the last one hide the others.
pub fn keys<F: Family>(objs: &[F::Obj]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    objs.iter()
        .map(|o| {
            let k = F::key(o);
            let n = seen.entry(k.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                k
            } else {
                format!("{k} #{n}")
            }
        })
        .collect()
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
    /// saved objects already live, identical
    pub present: usize,
    /// saved objects on an adopted link that the live one holds otherwise: the runtime's
    /// version stays
    pub runtime_kept: usize,
    pub conflicts: Vec<Conflict>,
}

/// Saved objects against live ones: identical → left alone, same identity but different
/// settings → conflict (or, on a link the runtime owns, the live one kept), absent → to add.
/// Live objects the images do not mention are left alone.
pub fn plan<F: Family>(
    saved: Vec<F::Obj>,
    live: &[F::Obj],
    adopted: &HashSet<String>,
) -> Plan<F::Obj> {
    if live.is_empty() {
        // a fresh namespace: nothing to compare (and no key to build per object)
        return Plan {
            to_add: saved,
            present: 0,
            runtime_kept: 0,
            conflicts: Vec::new(),
        };
    }
    let mut planner = Planner::<F>::new(live, adopted);
    let mut to_add = Vec::new();
    for o in saved {
        if planner.offer(&o) {
            to_add.push(o);
        }
    }
    let mut p = planner.finish();
    p.to_add = to_add;
    p
}

/// [`plan`] one saved object at a time, in their saved order (a reader that decodes them a
/// chunk at a time holds only the chunk): [`Planner::offer`] says whether an object is to be
/// added; the counts and conflicts gather in the plan [`Planner::finish`] returns, whose
/// `to_add` is left to the caller.
pub struct Planner<'l, F: Family> {
    /// live objects by unique key, normalized; and by clash key
    live: HashMap<String, F::Obj>,
    clashes: HashMap<String, &'l F::Obj>,
    /// how often each saved key came so far (see [`keys`])
    seen: HashMap<String, usize>,
    adopted: &'l HashSet<String>,
    plan: Plan<F::Obj>,
}

impl<'l, F: Family> Planner<'l, F> {
    pub fn new(live: &'l [F::Obj], adopted: &'l HashSet<String>) -> Self {
        Planner {
            clashes: live
                .iter()
                .filter_map(|o| F::clash_key(o).map(|k| (k, o)))
                .collect(),
            live: keys::<F>(live)
                .into_iter()
                .zip(live.iter().map(normalized::<F>))
                .collect(),
            seen: HashMap::new(),
            adopted,
            plan: Plan {
                to_add: Vec::new(),
                present: 0,
                runtime_kept: 0,
                conflicts: Vec::new(),
            },
        }
    }

    fn runtime_owns(&self, o: &F::Obj) -> bool {
        let d = F::dev(o);
        !d.is_empty() && self.adopted.contains(d)
    }

    /// Whether `o`, the next saved object, is to be added; counts it or records its
    /// conflict otherwise.
    pub fn offer(&mut self, o: &F::Obj) -> bool {
        if self.live.is_empty() {
            return true;
        }
        let k = F::key(o);
        let n = self.seen.entry(k.clone()).or_insert(0);
        *n += 1;
        let key = if *n == 1 { k } else { format!("{k} #{n}") };
        let owned = self.runtime_owns(o);
        let p = &mut self.plan;
        match self.live.get(&key) {
            Some(l) if *l == normalized::<F>(o) => p.present += 1,
            Some(_) if owned => p.runtime_kept += 1,
            Some(l) => {
                let fields = field_diffs(&normalized::<F>(o), l);
                p.conflicts.push(Conflict {
                    kind: F::KIND.into(),
                    object: F::describe(o),
                    problem: "exists with".into(),
                    fields,
                    hint: adopt_hint(F::dev(o)),
                });
            }
            None => match F::clash_key(o).and_then(|k| self.clashes.get(&k)) {
                Some(_) if owned => p.runtime_kept += 1,
                Some(other) => p.conflicts.push(Conflict {
                    kind: F::KIND.into(),
                    object: F::describe(o),
                    problem: format!("the namespace holds {}", F::describe(other)),
                    fields: Vec::new(),
                    hint: adopt_hint(F::dev(o)),
                }),
                None => return true,
            },
        }
        false
    }

    pub fn finish(self) -> Plan<F::Obj> {
        self.plan
    }
}

fn adopt_hint(dev: &str) -> Option<String> {
    (!dev.is_empty()).then(|| format!("pass --adopt {dev} to keep the live link's own state"))
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
/// for what the kernel may have made already or to set an address's saved flags).
pub fn apply_with<F: Family>(
    nl: &mut Nl,
    sock: Sock,
    objs: &[F::Obj],
    ifs: &IfMap,
    journal: &mut Journal,
    flags: u16,
) -> std::result::Result<(), Vec<String>> {
    apply_each::<F>(nl, sock, objs.iter(), ifs, journal, flags)
}

/// Objects whose requests are built, journaled and sent at a time: what is held at once is
/// bounded by this, not by the family's size (100,000 route requests with their undos would
/// take ~100 MiB), and each chunk still fills several 1 MiB netlink sends.
const APPLY_CHUNK: usize = 4096;

/// [`apply_with`] over any objects: each pass builds, journals and sends a chunk at a time;
/// the failures to retry are gathered over the whole pass, and tried again while a pass
/// adds anything.
pub fn apply_each<'a, F: Family>(
    nl: &mut Nl,
    sock: Sock,
    objs: impl Iterator<Item = &'a F::Obj>,
    ifs: &IfMap,
    journal: &mut Journal,
    flags: u16,
) -> std::result::Result<(), Vec<String>>
where
    F::Obj: 'a,
{
    type Pass<'a, O> = std::result::Result<(usize, Vec<(&'a O, crate::nl::NlError)>), Vec<String>>;
    let op = format!("add {}", crate::progress::plural(F::KIND));
    let mut pass = |objs: &mut dyn Iterator<Item = &'a F::Obj>| -> Pass<'a, F::Obj> {
        let (mut tried, mut retry) = (0, Vec::new());
        loop {
            let chunk: Vec<&F::Obj> = objs.take(APPLY_CHUNK).collect();
            if chunk.is_empty() {
                return Ok((tried, retry));
            }
            tried += chunk.len();
            apply_chunk::<F>(nl, sock, &chunk, ifs, journal, flags, &op, &mut |o, e| {
                retry.push((o, e))
            })?;
        }
    };
    let mut objs = objs;
    let (mut tried, mut retry) = pass(&mut objs)?;
    while !retry.is_empty() {
        if retry.len() == tried {
            return Err(retry
                .iter()
                .map(|(o, e)| format!("add {} in {}: {e}", F::describe(o), nl.netns()))
                .collect());
        }
        let pending: Vec<&F::Obj> = retry.into_iter().map(|(o, _)| o).collect();
        (tried, retry) = pass(&mut pending.into_iter())?;
    }
    Ok(())
}

/// Builds, journals and sends the requests of `chunk`; what failed in a way the family says
/// may resolve once others are in goes to `retry`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_chunk<'a, F: Family>(
    nl: &mut Nl,
    sock: Sock,
    chunk: &[&'a F::Obj],
    ifs: &IfMap,
    journal: &mut Journal,
    flags: u16,
    op: &str,
    retry: &mut dyn FnMut(&'a F::Obj, crate::nl::NlError),
) -> std::result::Result<(), Vec<String>> {
    let built = build::<F>(chunk, ifs)?;
    send::<F>(nl, sock, chunk, &built, journal, flags, op, retry)
}

/// The requests that add a chunk of objects, and the undo of each with what it is: pure
/// computation, which a caller may do on another thread while the previous chunk is sent.
pub(crate) struct Built {
    reqs: Vec<Req>,
    undos: Vec<(Req, String)>,
}

/// The requests of `chunk`, in its order, or the error of every object that has none.
pub(crate) fn build<F: Family>(
    chunk: &[&F::Obj],
    ifs: &IfMap,
) -> std::result::Result<Built, Vec<String>> {
    let mut reqs = Vec::with_capacity(chunk.len());
    let mut errors = Vec::new();
    for o in chunk {
        match F::add(o, ifs) {
            Ok(r) => reqs.push(r),
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
    let undos = chunk
        .iter()
        .map(|o| Ok((F::del(o, ifs)?, F::undo_text(o))))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| vec![crate::error::chain(&e)])?;
    Ok(Built { reqs, undos })
}

/// Journals and sends what [`build`] made of `chunk`; freeing `built` is the caller's (a
/// chunk's 8,192 requests and undo texts take ~1 ms to free, which the routes' builder
/// thread does off the critical path).
#[allow(clippy::too_many_arguments)]
pub(crate) fn send<'a, F: Family>(
    nl: &mut Nl,
    sock: Sock,
    chunk: &[&'a F::Obj],
    built: &Built,
    journal: &mut Journal,
    flags: u16,
    op: &str,
    retry: &mut dyn FnMut(&'a F::Obj, crate::nl::NlError),
) -> std::result::Result<(), Vec<String>> {
    let Built { reqs, undos } = built;
    // the undo of every addition, in the journal before the batch goes out
    journal
        .intend(undos.iter().map(|(r, w)| (sock, r, w.as_str())))
        .map_err(|e| vec![e])?;
    let results = nl
        .batch(reqs, flags, op)
        .map_err(|e| vec![crate::error::chain(&e)])?;
    journal
        .settle(results.iter().map(Result::is_ok))
        .map_err(|e| vec![e])?;
    let mut failed = Vec::new();
    let mut added = 0u64;
    for (o, r) in chunk.iter().zip(results) {
        match r {
            Ok(()) => added += 1,
            Err(e) if F::retry(e.errno) => retry(o, e),
            Err(e) => failed.push(format!("add {} in {}: {e}", F::describe(o), nl.netns())),
        }
    }
    crate::progress::count(&crate::progress::plural(F::KIND), added);
    if !failed.is_empty() {
        return Err(failed);
    }
    journal.check().map_err(|e| vec![e])
}

/// Diff lines for one family.
pub fn diff<F: Family>(saved: &[F::Obj], live: &[F::Obj], out: &mut Vec<Difference>) {
    diff_owned::<F>(saved.to_vec(), live.to_vec(), out);
}

/// [`diff`] of objects it may consume: normalised where they are, not copied (at 100,000
/// routes a copy of each side was 44 MiB).
pub fn diff_owned<F: Family>(saved: Vec<F::Obj>, live: Vec<F::Obj>, out: &mut Vec<Difference>) {
    let keyed = |mut v: Vec<F::Obj>| -> Vec<(String, F::Obj)> {
        let k = keys::<F>(&v);
        v.iter_mut().for_each(F::normalize);
        k.into_iter().zip(v).collect()
    };
    diff_by::<F::Obj>(F::KIND, keyed(saved), keyed(live), out);
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
                for c in field_diffs(s, *l) {
                    out.push(Difference {
                        kind: kind.into(),
                        object: k.clone(),
                        field: c.field,
                        saved: c.saved,
                        live: c.live,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(gw: u8, dev: &str) -> pb::Route {
        pb::Route {
            family: 2,
            table: 254,
            dst: vec![10, 88, 5, 0],
            dst_len: 24,
            gateway: vec![10, 61, 0, gw],
            oif_name: dev.into(),
            ..Default::default()
        }
    }

    fn addr(dev: &str, last: u8, len: u32) -> pb::Address {
        pb::Address {
            family: 2,
            ifname: dev.into(),
            local: vec![10, 0, 0, last],
            address: vec![10, 0, 0, last],
            prefix_len: len,
            ..Default::default()
        }
    }

    #[test]
    fn plan_keeps_adds_keeps_the_runtimes_and_refuses_with_fields_and_a_hint() {
        let saved = vec![
            addr("eth0", 1, 24), // identical live: keep
            addr("eth0", 2, 24), // absent live: add
            addr("eth0", 3, 24), // live with another prefix on an adopted link: runtime's
            addr("net1", 4, 24), // live with another prefix elsewhere: conflict
        ];
        let live = vec![
            addr("eth0", 1, 24),
            addr("eth0", 3, 16),
            addr("net1", 4, 16),
        ];
        let adopted: HashSet<String> = ["eth0".to_string()].into();
        let p = plan::<Addresses>(saved.clone(), &live, &adopted);
        assert_eq!(p.present, 1);
        assert_eq!(p.to_add, vec![addr("eth0", 2, 24)]);
        assert_eq!(p.runtime_kept, 1);
        assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
        let c = &p.conflicts[0];
        assert_eq!(c.kind, "address");
        assert!(
            c.object.contains("10.0.0.4") && c.object.contains("net1"),
            "{c:?}"
        );
        assert!(
            c.hint
                .as_deref()
                .is_some_and(|h| h.contains("--adopt net1")),
            "{c:?}"
        );
        // nothing adopted: the eth0 clash is a conflict too
        let p = plan::<Addresses>(saved.clone(), &live, &HashSet::new());
        assert_eq!((p.runtime_kept, p.conflicts.len()), (0, 2));
        // a fresh namespace: everything is added
        let p = plan::<Addresses>(saved.clone(), &[], &adopted);
        assert_eq!(p.to_add.len(), 4);
    }

    #[test]
    fn a_differing_route_is_a_conflict_naming_the_field() {
        let mut live = route(2, "va");
        live.gateway = vec![10, 61, 0, 9];
        let p = plan::<Routes>(vec![route(2, "va")], &[live], &HashSet::new());
        assert_eq!(p.conflicts.len(), 1);
        let c = &p.conflicts[0];
        assert!(
            c.fields
                .iter()
                .any(|f| f.field == "gateway" && f.saved == "10.61.0.2" && f.live == "10.61.0.9"),
            "{c:?}"
        );
    }

    #[test]
    fn appended_routes_get_distinct_keys_in_order() {
        let v = vec![route(2, "va"), route(3, "vb"), route(4, "vc")];
        let k = keys::<Routes>(&v);
        assert_eq!(k[0], Routes::key(&v[0]));
        assert_eq!(k[1], format!("{} #2", k[0]));
        assert_eq!(k[2], format!("{} #3", k[0]));
        // diff sees a missing second route instead of hiding it behind the first
        let mut out = Vec::new();
        diff::<Routes>(&v, &v[..2], &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].object.ends_with("#3"), "{out:?}");
        let mut out = Vec::new();
        diff::<Routes>(&v, &[v[0].clone(), v[2].clone(), v[1].clone()], &mut out);
        assert!(
            !out.is_empty(),
            "a changed order of appended routes is a change"
        );
    }
}
