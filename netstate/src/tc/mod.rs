//! Traffic control per device: qdiscs, classes, filters (every chain) and standalone actions
//! over rtnetlink; capture, the requests that add and delete them, identity, readable form.
//!
//! Messages are decoded and encoded by hand ([`decode`], [`encode`]) and options kept as
//! bytes, because restore must send back exactly what the kernel reported for kinds nobody
//! modelled (netlink-packet-route 0.34 decodes the options of fq_codel, ingress, u32, flower,
//! matchall, bpf and three actions; tbf, htb, netem, prio, sfq, fq and most actions arrive as
//! opaque bytes, and a parse-and-re-emit round trip cannot promise the same bytes). The
//! crate's decoders are used where it has them to print objects readably ([`params`]).
//!
//! Kernel behaviour this relies on:
//! - Qdiscs the kernel attaches by itself (noqueue, pfifo_fast, mq and its children) have
//!   handle 0 and are not state; every qdisc a user adds gets a non-zero major (8001: and up
//!   when none is given). Classes of tbf, prio, mq, netem and the like are made by their qdisc
//!   and not saved; only classful kinds whose classes users add (htb, hfsc, drr, qfq, ets
//!   excepted) keep theirs.
//! - A qdisc dump lists a device's qdiscs root first, then in hash order: restore sorts them
//!   so every parent (qdisc or class) precedes its children.
//! - Filters are dumped per block: per qdisc (`parent X:`), per class of a classful qdisc, and
//!   per direction of clsact (ffff:fff2, ffff:fff3). A filter dump also holds one line per
//!   classifier instance (handle 0) and, for u32, the root hash table (divisor 1, an htid of
//!   0x800 and up) the kernel makes with the first filter of a priority: neither is saved.
//!   u32 keys keep their handles, which name the hash table they live in; a restore into a
//!   fresh device adds them in the dumped order, so the kernel makes the same root tables.
//! - `mirred` stores its target as an ifindex of the same namespace: saved with the device
//!   name, patched with the live index of that name at restore.
//! - A chain exists while filters use it, or on its own once `tc chain add` made it (then
//!   it may hold a template, flower only): chains are dumped per block like filters, and
//!   saved when they hold a template or no saved filter uses them.
//! - Filters and chains of a shared block (`ingress_block 22`) are dumped with tcm_ifindex
//!   TCM_IFINDEX_MAGIC_BLOCK and the block's index as parent, once per device on it: saved
//!   once, added to the block after the qdiscs that make it.
//! - Actions a filter made die with it (reference count equals bind count); actions made with
//!   `tc actions add` live on their own and are dumped per kind (RTM_GETACTION): saved and
//!   restored before the filters that bind them by index.
//! - A qdisc added to a device that is down stays configured and runs when it comes up; restore
//!   adds traffic control after the links exist and before they come up.

pub(crate) mod bpf;
mod decode;
mod diff;
mod encode;
pub mod params;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req};
use crate::nla;

pub(crate) use bpf::xdp_programs;
use decode::TCMSG_LEN;
pub use diff::diff;

pub(crate) const RTM_NEWQDISC: u16 = 36;
pub(crate) const RTM_DELQDISC: u16 = 37;
pub(crate) const RTM_GETQDISC: u16 = 38;
pub(crate) const RTM_NEWTCLASS: u16 = 40;
pub(crate) const RTM_DELTCLASS: u16 = 41;
pub(crate) const RTM_GETTCLASS: u16 = 42;
pub(crate) const RTM_NEWTFILTER: u16 = 44;
pub(crate) const RTM_DELTFILTER: u16 = 45;
pub(crate) const RTM_GETTFILTER: u16 = 46;
pub(crate) const RTM_NEWACTION: u16 = 48;
pub(crate) const RTM_DELACTION: u16 = 49;
pub(crate) const RTM_GETACTION: u16 = 50;
pub(crate) const RTM_NEWCHAIN: u16 = 100;
pub(crate) const RTM_DELCHAIN: u16 = 101;
pub(crate) const RTM_GETCHAIN: u16 = 102;
pub(crate) const TCA_ACT_TAB: u16 = 1;

pub const TC_H_ROOT: u32 = 0xFFFF_FFFF;
pub const TC_H_INGRESS: u32 = 0xFFFF_FFF1;
pub const TC_H_MIN_INGRESS: u32 = 0xFFF2;
pub const TC_H_MIN_EGRESS: u32 = 0xFFF3;
/// tcm_ifindex of filters and chains on a shared block (`tc qdisc add ... ingress_block 22`),
/// whose tcm_parent is then the block's index
pub const TCM_IFINDEX_MAGIC_BLOCK: u32 = 0xFFFF_FFFF;

/// Classful qdiscs whose classes users add (and so are saved).
const USER_CLASSES: &[&str] = &["htb", "hfsc", "drr", "qfq", "cbq"];

/// Action kinds whose standalone actions are dumped (a kind this kernel lacks dumps nothing).
const ACTION_KINDS: &[&str] = &[
    "mirred",
    "gact",
    "police",
    "skbedit",
    "pedit",
    "csum",
    "vlan",
    "tunnel_key",
    "nat",
    "sample",
    "connmark",
    "ctinfo",
    "mpls",
    "bpf",
    "simple",
    "skbmod",
    "ct",
    "gate",
];

fn tcmsg(ifindex: u32, handle: u32, parent: u32, info: u32) -> Vec<u8> {
    let mut h = vec![0u8; TCMSG_LEN];
    h[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    h[8..12].copy_from_slice(&handle.to_ne_bytes());
    h[12..16].copy_from_slice(&parent.to_ne_bytes());
    h[16..20].copy_from_slice(&info.to_ne_bytes());
    h
}

pub(crate) fn ty(o: &pb::TcObject) -> pb::TcType {
    pb::TcType::try_from(o.r#type).unwrap_or(pb::TcType::TcUnspec)
}

/// Dumps every device's traffic control (XDP programs come from the link dump, see
/// [`xdp_programs`]), in restore order.
pub fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::TcObject>> {
    let op = "dump qdiscs";
    let msgs = nl.dump_raw(
        &Req::Raw {
            msg_type: RTM_GETQDISC,
            payload: tcmsg(0, 0, 0, 0),
        },
        op,
    )?;
    let err = |op: &str, nl: &Nl, what: String| nla::decode_error(op, nl.netns(), what);
    let mut qdiscs = Vec::new();
    for (t, p) in &msgs {
        if *t != RTM_NEWQDISC {
            continue;
        }
        let q = decode::decode(pb::TcType::TcQdisc, p, ifs).map_err(|w| err(op, nl, w))?;
        // handle 0: the kernel's default qdisc
        if q.handle >> 16 != 0 {
            qdiscs.push(q);
        }
    }
    let mut devs: Vec<u32> = qdiscs.iter().map(|q| q.ifindex).collect();
    devs.sort_unstable();
    devs.dedup();
    let mut out = Vec::new();
    let mut filters = Vec::new();
    let mut chains = Vec::new();
    for dev in devs {
        let mine: Vec<pb::TcObject> = qdiscs
            .iter()
            .filter(|q| q.ifindex == dev)
            .cloned()
            .collect();
        let mut classes = Vec::new();
        if mine.iter().any(|q| USER_CLASSES.contains(&q.kind.as_str())) {
            let op = format!("dump classes of {}", ifs.name(dev));
            let req = Req::Raw {
                msg_type: RTM_GETTCLASS,
                payload: tcmsg(dev, 0, 0, 0),
            };
            for (t, p) in nl.dump_raw(&req, &op)? {
                if t != RTM_NEWTCLASS {
                    continue;
                }
                let c =
                    decode::decode(pb::TcType::TcClass, &p, ifs).map_err(|w| err(&op, nl, w))?;
                let owner = mine.iter().find(|q| q.handle >> 16 == c.handle >> 16);
                if owner.is_some_and(|q| USER_CLASSES.contains(&q.kind.as_str())) {
                    classes.push(c);
                }
            }
        }
        let mut blocks: Vec<u32> = Vec::new();
        for q in &mine {
            if q.kind == "clsact" {
                blocks.push(q.handle & 0xFFFF_0000 | TC_H_MIN_INGRESS);
                blocks.push(q.handle & 0xFFFF_0000 | TC_H_MIN_EGRESS);
            } else {
                blocks.push(q.handle);
            }
        }
        blocks.extend(classes.iter().map(|c| c.handle));
        for parent in blocks {
            let op = format!("dump filters of {} {}", ifs.name(dev), handle_str(parent));
            let req = Req::Raw {
                msg_type: RTM_GETTFILTER,
                payload: tcmsg(dev, 0, parent, 0),
            };
            let mut used = HashSet::new();
            for (t, p) in nl.dump_raw(&req, &op)? {
                if t != RTM_NEWTFILTER {
                    continue;
                }
                let f =
                    decode::decode(pb::TcType::TcFilter, &p, ifs).map_err(|w| err(&op, nl, w))?;
                used.insert(f.chain);
                if user_filter(&f) {
                    filters.push(f);
                }
            }
            let op = format!("dump chains of {} {}", ifs.name(dev), handle_str(parent));
            let req = Req::Raw {
                msg_type: RTM_GETCHAIN,
                payload: tcmsg(dev, 0, parent, 0),
            };
            for (t, p) in nl.dump_raw(&req, &op)? {
                if t != RTM_NEWCHAIN {
                    continue;
                }
                let mut c =
                    decode::decode(pb::TcType::TcChain, &p, ifs).map_err(|w| err(&op, nl, w))?;
                // dumped with the qdisc's handle alone (ffff:), which does not say which
                // clsact block: the block asked for does
                c.parent = parent;
                if !c.kind.is_empty() || !used.contains(&c.chain) {
                    chains.push(c);
                }
            }
        }
        let mut objs = mine;
        objs.extend(classes);
        out.extend(parents_first(objs));
    }
    for kind in ACTION_KINDS {
        let op = format!("dump {kind} actions");
        let mut payload = vec![0u8; decode::TCAMSG_LEN];
        payload.extend(decode::act_tab(kind, None).map_err(|w| err(&op, nl, w))?);
        let req = Req::Raw {
            msg_type: RTM_GETACTION,
            payload,
        };
        let msgs = match nl.dump_raw(&req, &op) {
            Ok(m) => m,
            // a kernel without tc actions (CONFIG_NET_CLS_ACT off) has no table to dump
            Err(crate::error::NetstateError::Netlink { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOENT | libc::EINVAL)
                ) =>
            {
                break
            }
            Err(e) => return Err(e),
        };
        for (t, p) in msgs {
            if t == RTM_GETACTION || t == RTM_NEWACTION {
                out.extend(decode::standalone_actions(&p, ifs).map_err(|w| err(&op, nl, w))?);
            }
        }
    }
    // a shared block's filters and chains come in the dump of every device on it: once
    let mut seen = HashSet::new();
    let once: Vec<pb::TcObject> = chains
        .into_iter()
        .chain(filters)
        .filter(|o| o.ifindex != TCM_IFINDEX_MAGIC_BLOCK || seen.insert(key(o)))
        .collect();
    out.extend(once);
    for o in &mut out {
        o.summary = params::summary(o);
    }
    Ok(out)
}

/// Whether a dumped filter entry is one a user made: not a classifier instance's own line
/// (handle 0), not the hash table the kernel makes with a u32 instance (divisor 1, htid
/// 0x800 and up).
pub(crate) fn user_filter(f: &pb::TcObject) -> bool {
    let u32_root = f.kind == "u32"
        && f.handle & 0xFFFFF == 0
        && f.handle >> 20 >= 0x800
        && params::u32_divisor(&f.options) == Some(1);
    f.handle != 0 && !u32_root
}

/// Qdiscs and classes of one device, each after the object its parent names: the class of
/// that id when one is saved, else the qdisc of that major.
fn parents_first(objs: Vec<pb::TcObject>) -> Vec<pb::TcObject> {
    let classes: HashSet<u32> = objs
        .iter()
        .filter(|o| ty(o) == pb::TcType::TcClass)
        .map(|o| o.handle)
        .collect();
    let needs = |o: &pb::TcObject| -> Option<(bool, u32)> {
        // a top class (`tc class add ... parent 1:`) is dumped with parent root
        if ty(o) == pb::TcType::TcClass && o.parent == TC_H_ROOT {
            return Some((false, o.handle & 0xFFFF_0000));
        }
        if o.parent == TC_H_ROOT || o.parent == TC_H_INGRESS {
            return None;
        }
        if ty(o) == pb::TcType::TcClass && o.parent & 0xFFFF == 0 {
            return Some((false, o.parent));
        }
        if classes.contains(&o.parent) {
            Some((true, o.parent))
        } else {
            Some((false, o.parent & 0xFFFF_0000))
        }
    };
    let mut placed_q: HashSet<u32> = HashSet::new();
    let mut placed_c: HashSet<u32> = HashSet::new();
    let mut left: Vec<pb::TcObject> = objs;
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let before = left.len();
        let mut rest = Vec::new();
        for o in left {
            let ready = match needs(&o) {
                None => true,
                Some((true, c)) => placed_c.contains(&c),
                Some((false, q)) => placed_q.contains(&q),
            };
            if ready {
                if ty(&o) == pb::TcType::TcClass {
                    placed_c.insert(o.handle);
                } else {
                    placed_q.insert(o.handle);
                }
                out.push(o);
            } else {
                rest.push(o);
            }
        }
        if rest.len() == before {
            // a parent nobody saved (kernel-made): keep the dump's order
            out.extend(rest);
            break;
        }
        left = rest;
    }
    out
}

/// Restore order over devices: every device's qdiscs and classes (parents first, as
/// captured), then actions, then filters. u32 keys name the hash table they live in, and the
/// kernel numbers the root table of each u32 instance (one per block, chain, priority and
/// protocol) 800:, 801:, ... per qdisc in the order the instances are made: filters go in
/// grouped by instance, instances in the order of their root tables, so a fresh device gets
/// the same numbers (a gap left by a deleted instance cannot be made again; such a key is
/// refused by name: "Specified hash table not found").
pub fn restore_order(objs: &mut [pb::TcObject]) {
    type Instance = (String, u32, u32, u32);
    let instance = |o: &pb::TcObject| -> Instance { (o.ifname.clone(), o.parent, o.chain, o.info) };
    let mut roots: HashMap<Instance, u32> = HashMap::new();
    for o in objs.iter() {
        let ht = o.handle >> 20;
        if ty(o) == pb::TcType::TcFilter && o.kind == "u32" && ht >= 0x800 {
            let r = roots.entry(instance(o)).or_insert(ht);
            *r = (*r).min(ht);
        }
    }
    objs.sort_by_key(|o| match ty(o) {
        pb::TcType::TcQdisc | pb::TcType::TcClass => (0, String::new(), 0, 0),
        pb::TcType::TcAction => (1, String::new(), 0, 0),
        pb::TcType::TcChain => (2, String::new(), 0, 0),
        pb::TcType::TcFilter => (
            3,
            o.ifname.clone(),
            o.parent >> 16,
            roots.get(&instance(o)).copied().unwrap_or(0),
        ),
        _ => (4, String::new(), 0, 0),
    });
}

/// The add request of a saved object, devices mapped to live ones.
pub fn add_request(o: &pb::TcObject, ifs: &IfMap) -> Result<Req> {
    encode::add(o, ifs)
}

pub fn del_request(o: &pb::TcObject, ifs: &IfMap) -> Result<Req> {
    encode::del(o, ifs)
}

/// `1:10`, `8004:`, `root`, `ingress`, `egress`.
pub fn handle_str(h: u32) -> String {
    match h {
        TC_H_ROOT => "root".into(),
        TC_H_INGRESS => "ingress".into(),
        _ if h & 0xFFFF_0000 == 0xFFFF_0000 && h & 0xFFFF == TC_H_MIN_INGRESS => "ingress".into(),
        _ if h & 0xFFFF_0000 == 0xFFFF_0000 && h & 0xFFFF == TC_H_MIN_EGRESS => "egress".into(),
        _ if h & 0xFFFF == 0 => format!("{:x}:", h >> 16),
        _ => format!("{:x}:{:x}", h >> 16, h & 0xFFFF),
    }
}

/// Filter protocol as tc names it.
pub fn protocol_str(info: u32) -> String {
    let p = u16::from_be((info & 0xFFFF) as u16);
    match p {
        0x0003 => "all".into(),
        0x0800 => "ip".into(),
        0x86dd => "ipv6".into(),
        0x0806 => "arp".into(),
        0x8100 => "802.1Q".into(),
        0x88a8 => "802.1ad".into(),
        _ => format!("0x{p:04x}"),
    }
}

fn filter_handle(o: &pb::TcObject) -> String {
    let h = o.handle;
    if o.kind == "u32" {
        format!("{:x}:{:x}:{:x}", h >> 20, (h >> 12) & 0xFF, h & 0xFFF)
    } else {
        format!("0x{h:x}")
    }
}

/// Where an object sits: `eth0 root`, `eth0 parent 1:10`, `eth0 ingress`, `block 22`.
fn where_str(o: &pb::TcObject) -> String {
    if o.ifindex == TCM_IFINDEX_MAGIC_BLOCK {
        return format!("block {}", o.parent);
    }
    let at = match o.parent {
        TC_H_ROOT => "root".into(),
        p => {
            let s = handle_str(p);
            if s == "ingress" || s == "egress" {
                s
            } else {
                format!("parent {s}")
            }
        }
    };
    format!("{} {at}", o.ifname)
}

/// Identity within a namespace.
pub fn key(o: &pb::TcObject) -> String {
    match ty(o) {
        pb::TcType::TcQdisc => where_str(o),
        pb::TcType::TcClass => format!("{} {}", o.ifname, handle_str(o.handle)),
        pb::TcType::TcFilter => format!(
            "{} chain {} pref {} protocol {} handle {}",
            where_str(o),
            o.chain,
            o.info >> 16,
            protocol_str(o.info),
            filter_handle(o)
        ),
        pb::TcType::TcAction => format!("{} index {}", o.kind, o.handle),
        pb::TcType::TcChain => format!("{} chain {}", where_str(o), o.chain),
        pb::TcType::TcXdp => o.ifname.clone(),
        pb::TcType::TcUnspec => format!("{} unknown {}", o.ifname, o.handle),
    }
}

/// The kind word diff and errors use: `qdisc`, `class`, `filter`, `action`, `xdp`.
pub fn type_word(o: &pb::TcObject) -> &'static str {
    match ty(o) {
        pb::TcType::TcQdisc => "qdisc",
        pb::TcType::TcClass => "class",
        pb::TcType::TcFilter => "filter",
        pb::TcType::TcAction => "action",
        pb::TcType::TcXdp => "xdp",
        pb::TcType::TcChain => "chain",
        pb::TcType::TcUnspec => "tc object",
    }
}

/// The object as diff names it: `eth0 root tbf`, `eth0 ingress chain 0 pref 1 ... u32`.
pub fn object(o: &pb::TcObject) -> String {
    match ty(o) {
        pb::TcType::TcAction | pb::TcType::TcXdp | pb::TcType::TcChain => key(o),
        _ => format!("{} {}", key(o), o.kind),
    }
}

/// `qdisc eth0 root tbf rate 10Mbit burst 4Kb lat 400ms`
pub fn describe(o: &pb::TcObject) -> String {
    let s = params::summary(o);
    if s.is_empty() {
        format!("{} {}", type_word(o), object(o))
    } else {
        format!("{} {} {s}", type_word(o), object(o))
    }
}

/// Canonical form for comparison: no ifindexes (the device's, and the live index a devref
/// points at), no readable summary (derived from the rest).
pub fn normalize(o: &mut pb::TcObject) {
    o.ifindex = 0;
    o.summary.clear();
    for d in &mut o.devrefs {
        let at = d.offset as usize;
        if let Some(b) = o.options.get_mut(at..at + 4) {
            b.fill(0);
        }
        d.ifindex = 0;
    }
}

/// What restore cannot carry: objects running an eBPF program.
pub fn lost(objs: &[pb::TcObject]) -> Vec<&pb::TcObject> {
    objs.iter().filter(|o| o.bpf.is_some()).collect()
}

/// A checkpoint's warning for each object it cannot carry.
pub fn lost_warnings(objs: &[pb::TcObject]) -> Vec<String> {
    lost(objs)
        .into_iter()
        .map(|o| {
            format!(
                "{}: not carried (restore needs --allow-lost bpf)",
                lost_text(o)
            )
        })
        .collect()
}

/// `filter eth0 ingress ... bpf: prog 17 tag ... name f` for refusals and warnings.
pub fn lost_text(o: &pb::TcObject) -> String {
    let p = o.bpf.as_ref().map(bpf::describe).unwrap_or_default();
    format!("{} {} runs eBPF {p}", type_word(o), object(o))
}

/// Saved objects by key, for the planner and diff.
pub fn by_key(objs: &[pb::TcObject]) -> HashMap<String, &pb::TcObject> {
    objs.iter().map(|o| (key(o), o)).collect()
}
