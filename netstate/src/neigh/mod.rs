//! Neighbours (ARP and NDP entries), IPv4 and IPv6: permanent, noarp, externally learned and
//! managed entries, and proxy entries. Capture, the requests that add and delete them,
//! identity and the canonical form diff compares.
//!
//! Kernel behaviour this relies on:
//! - Proxy entries live in a separate table that a dump returns only when the request's
//!   `ndm_flags` is exactly NTF_PROXY; each family is dumped twice.
//! - A proxy entry's dump has state NUD_NONE even when it was added permanent (the kernel
//!   does not report `pn->permanent`); it is restored permanent, as `ip neigh add proxy` does.
//! - Dynamic entries (reachable, stale, delay, probe, failed, incomplete) are learnt, not
//!   configured, and are left out.
//! - Which NOARP entries the kernel makes by itself: `arp_constructor` and
//!   `ndisc_constructor` give state NOARP, without anyone asking, to every entry whose
//!   destination is multicast or broadcast (ndm_type RTN_MULTICAST / RTN_BROADCAST), to
//!   local destinations (RTN_LOCAL), and to every entry on a device that is loopback, has
//!   IFF_NOARP (tun, for one) or IFF_POINTOPOINT, or has no link-layer address. Those are left
//!   out. A NOARP entry of a unicast destination on an ARP-capable device can only come from
//!   a user (`ip neigh add ... nud noarp`) and is kept. PERMANENT entries are always kept.

mod decode;
mod encode;
pub mod fdb;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req};
use crate::nla::{self, ip_str, AF_INET, AF_INET6};

pub(crate) const RTM_NEWNEIGH: u16 = 28;
pub(crate) const RTM_DELNEIGH: u16 = 29;
pub(crate) const RTM_GETNEIGH: u16 = 30;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;

pub const NUD_NONE: u32 = 0x00;
pub const NUD_NOARP: u32 = 0x40;
pub const NUD_PERMANENT: u32 = 0x80;

pub const NTF_USE: u32 = 0x01;
pub const NTF_SELF: u32 = 0x02;
pub const NTF_MASTER: u32 = 0x04;
pub const NTF_PROXY: u32 = 0x08;
pub const NTF_EXT_LEARNED: u32 = 0x10;
pub const NTF_OFFLOADED: u32 = 0x20;
pub const NTF_ROUTER: u32 = 0x80;
/// The ndm_flags an add may carry.
pub const NTF_SEND: u32 = NTF_PROXY | NTF_EXT_LEARNED | NTF_ROUTER;

/// Dumps IPv4 then IPv6 entries, ordinary then proxy, leaving out learnt and kernel-made ones.
pub fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::Neighbour>> {
    let mut out = Vec::new();
    let mut candidates = Vec::new();
    for family in [AF_INET, AF_INET6] {
        for proxy in [false, true] {
            let flags = if proxy { NTF_PROXY as u8 } else { 0 };
            let req = Req::Raw {
                msg_type: RTM_GETNEIGH,
                payload: vec![family, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags, 0],
            };
            let op = match (family == AF_INET, proxy) {
                (true, false) => "dump IPv4 neighbours",
                (true, true) => "dump IPv4 proxy neighbours",
                (false, false) => "dump IPv6 neighbours",
                (false, true) => "dump IPv6 proxy neighbours",
            };
            let msgs = nl.dump_raw(&req, op)?;
            select(&msgs, ifs, &mut out, &mut candidates)
                .map_err(|what| nla::decode_error(op, nl.netns(), what))?;
        }
    }
    let fdb = fdb::entries(nl, ifs)?;
    if candidates.is_empty() && fdb.is_empty() {
        return Ok(out);
    }
    // one link dump answers both: which devices make every entry NOARP, and which FDB
    // entries are the kernel's own for a port's or a bridge's address
    let links = link_facts(nl)?;
    let mut out = drop_device_noarp(out, &candidates, &links);
    out.extend(fdb::without_kernel_local(fdb, &links));
    Ok(out)
}

/// What neighbour capture needs to know of a link: `ifi_flags`, its address, its master.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LinkFacts {
    pub flags: u32,
    pub mac: Vec<u8>,
    pub master: u32,
}

/// Appends the user entries of one dump to `out`; the indexes of NOARP entries of unicast
/// destinations go to `candidates`: user state unless the device makes every entry NOARP,
/// which only the link's flags tell.
pub(crate) fn select(
    msgs: &[(u16, Vec<u8>)],
    ifs: &IfMap,
    out: &mut Vec<pb::Neighbour>,
    candidates: &mut Vec<usize>,
) -> Result<(), String> {
    for (ty, payload) in msgs {
        if *ty != RTM_NEWNEIGH {
            continue;
        }
        match decode::decode(payload, ifs)? {
            decode::Verdict::Keep(n) => out.push(n),
            decode::Verdict::NoarpUnicast(n) => {
                candidates.push(out.len());
                out.push(n);
            }
            decode::Verdict::Skip => {}
        }
    }
    Ok(())
}

/// Drops the candidates (ascending indexes) whose device is loopback, IFF_NOARP or
/// IFF_POINTOPOINT.
pub(crate) fn drop_device_noarp(
    out: Vec<pb::Neighbour>,
    candidates: &[usize],
    links: &HashMap<u32, LinkFacts>,
) -> Vec<pb::Neighbour> {
    let kernel_flags = (libc::IFF_LOOPBACK | libc::IFF_NOARP | libc::IFF_POINTOPOINT) as u32;
    out.into_iter()
        .enumerate()
        .filter(|(i, n)| {
            !(candidates.binary_search(i).is_ok()
                && links
                    .get(&n.ifindex)
                    .is_some_and(|l| l.flags & kernel_flags != 0))
        })
        .map(|(_, n)| n)
        .collect()
}

/// The facts of every link (struct ifinfomsg: family, pad, type, index, flags; then
/// IFLA_ADDRESS and IFLA_MASTER), by ifindex.
fn link_facts(nl: &mut Nl) -> Result<HashMap<u32, LinkFacts>> {
    const IFLA_ADDRESS: u16 = 1;
    const IFLA_MASTER: u16 = 10;
    let req = Req::Raw {
        msg_type: RTM_GETLINK,
        payload: vec![0u8; 16],
    };
    let mut m = HashMap::new();
    for (ty, p) in nl.dump_raw(&req, "dump links for neighbours")? {
        if ty != RTM_NEWLINK || p.len() < 16 {
            continue;
        }
        let mut f = LinkFacts {
            flags: nla::u32_at(&p, 8),
            ..LinkFacts::default()
        };
        for a in nla::attrs(&p[16..]).filter_map(|a| a.ok()) {
            match a.ty() {
                IFLA_ADDRESS => f.mac = a.value.to_vec(),
                IFLA_MASTER => f.master = a.u32().unwrap_or(0),
                _ => {}
            }
        }
        m.insert(nla::u32_at(&p, 4), f);
    }
    Ok(m)
}

/// RTM_NEWNEIGH for a saved entry, its link mapped to the live one.
pub fn add_request(n: &pb::Neighbour, ifs: &IfMap) -> Result<Req> {
    encode::add(n, ifs)
}

/// RTM_DELNEIGH for a saved entry.
pub fn del_request(n: &pb::Neighbour, ifs: &IfMap) -> Result<Req> {
    encode::del(n, ifs)
}

fn is_proxy(n: &pb::Neighbour) -> bool {
    n.flags & NTF_PROXY != 0
}

fn is_fdb(n: &pb::Neighbour) -> bool {
    n.family == u32::from(fdb::AF_BRIDGE)
}

/// `fdb MAC dev PORT [vlan V] master|self [dst D]`.
fn fdb_name(n: &pb::Neighbour) -> String {
    let mac = n
        .lladdr
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut k = format!("fdb {mac} dev {}", n.ifname);
    if let Some(v) = fdb::vlan(n) {
        k.push_str(&format!(" vlan {v}"));
    }
    k.push_str(if n.flags & NTF_MASTER != 0 {
        " master"
    } else {
        " self"
    });
    if !n.dst.is_empty() {
        k.push_str(&format!(" dst {}", ip_str(&n.dst)));
    }
    k
}

/// Identity: `DST dev NAME`, with ` proxy` for proxy entries (a separate kernel table);
/// bridge FDB entries as `fdb MAC dev PORT [vlan V] master|self [dst D]`.
pub fn key(n: &pb::Neighbour) -> String {
    if is_fdb(n) {
        return fdb_name(n);
    }
    let mut k = format!("{} dev {}", ip_str(&n.dst), n.ifname);
    if is_proxy(n) {
        k.push_str(" proxy");
    }
    k
}

/// `neighbour 10.1.1.9 dev eth0` or `proxy neighbour 10.1.1.11 dev eth0`.
pub fn describe(n: &pb::Neighbour) -> String {
    if is_fdb(n) {
        return fdb_name(n);
    }
    let p = if is_proxy(n) { "proxy " } else { "" };
    format!("{p}neighbour {} dev {}", ip_str(&n.dst), n.ifname)
}

/// Canonical form for comparison: no ifindex, no hardware offload state.
pub fn normalize(n: &mut pb::Neighbour) {
    n.ifindex = 0;
    n.flags &= !NTF_OFFLOADED;
}

pub(crate) fn family_ok(f: u8) -> bool {
    f == AF_INET || f == AF_INET6
}

/// The ndm_flags an add of `n` carries.
pub(crate) fn send_flags(n: &pb::Neighbour) -> u32 {
    if is_fdb(n) {
        n.flags & fdb::NTF_FDB_SEND
    } else {
        n.flags & NTF_SEND
    }
}
