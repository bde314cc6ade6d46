//! Bridge forwarding database entries (`bridge fdb`), family AF_BRIDGE of the neighbour
//! table: static and permanent entries a user added on a bridge port (`master`), and the
//! remote entries of a vxlan device (`self`, with `dst`). Carried as neighbours of family 7.
//!
//! Kernel behaviour this relies on:
//! - Learnt entries (reachable, stale) are traffic, not configuration, and are left out.
//! - The bridge adds a permanent (`local`) entry for the address of each port and of the
//!   bridge itself, with and without a VLAN; those follow the MACs restore pins and are left
//!   out: a permanent master entry whose address is that of its port or of the bridge.
//! - `self` entries of other devices are their unicast and multicast address lists (the
//!   `33:33:...`/`01:00:5e:...` entries every device has), kernel-managed; only `self`
//!   entries with a remote (NDA_DST, a vxlan's) are kept.
//! - A dump names the bridge in NDA_MASTER; an add takes the bridge from the port
//!   (NTF_MASTER), so NDA_MASTER is not kept (it would be an index of the saving host).

use std::collections::HashMap;

use crhook_proto as pb;

use super::{
    LinkFacts, NTF_EXT_LEARNED, NTF_MASTER, NTF_SELF, NUD_NOARP, NUD_PERMANENT, RTM_NEWNEIGH,
};
use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req};
use crate::nla;

pub const AF_BRIDGE: u8 = 7;
pub(crate) const NDA_VLAN: u16 = 5;
const NDA_MASTER: u16 = 9;
const NDA_CACHEINFO: u16 = 3;
pub const NTF_STICKY: u32 = 0x40;
/// the ndm_flags an FDB add may carry
pub const NTF_FDB_SEND: u32 = NTF_SELF | NTF_MASTER | NTF_EXT_LEARNED | NTF_STICKY;

const RTM_GETNEIGH: u16 = 30;

/// Decodes one AF_BRIDGE entry; None for learnt ones and kernel-kept address lists.
pub(crate) fn decode(
    payload: &[u8],
    ifs: &IfMap,
) -> std::result::Result<Option<(pb::Neighbour, u32)>, String> {
    let (h, attrs) = nla::split(payload, super::decode::NDMSG_LEN, "fdb entry")?;
    let ifindex = nla::u32_at(h, 4);
    let mut n = pb::Neighbour {
        family: u32::from(AF_BRIDGE),
        ifindex,
        ifname: ifs.name(ifindex),
        state: u32::from(nla::u16_at(h, 8)),
        flags: u32::from(h[10]),
        ntype: u32::from(h[11]),
        ..Default::default()
    };
    let mut master = 0;
    for at in attrs {
        let at = at?;
        match at.ty() {
            super::decode::NDA_DST => n.dst = at.value.to_vec(),
            super::decode::NDA_LLADDR => n.lladdr = at.value.to_vec(),
            NDA_MASTER => master = at.u32()?,
            // statistics (used/updated times)
            NDA_CACHEINFO => {}
            _ => n.raw.push(at.raw()),
        }
    }
    // a bridge reports its entries with NDA_MASTER (and ndm_flags 0); an add names them
    // with NTF_MASTER
    if master != 0 {
        n.flags |= NTF_MASTER;
    }
    let configured = n.state & (NUD_PERMANENT | NUD_NOARP) != 0 || n.flags & NTF_EXT_LEARNED != 0;
    if !configured {
        return Ok(None);
    }
    if n.flags & NTF_SELF != 0 && n.flags & NTF_MASTER == 0 && n.dst.is_empty() {
        return Ok(None);
    }
    Ok(Some((n, master)))
}

/// The configured FDB entries of every bridge port and vxlan device, each with the bridge
/// the dump named (0 for none); the kernel's own are among them until
/// [`without_kernel_local`].
pub(crate) fn entries(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<(pb::Neighbour, u32)>> {
    let op = "dump bridge fdb";
    let req = Req::Raw {
        msg_type: RTM_GETNEIGH,
        payload: vec![AF_BRIDGE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    };
    let mut found = Vec::new();
    for (ty, payload) in &nl.dump_raw(&req, op)? {
        if *ty != RTM_NEWNEIGH {
            continue;
        }
        if let Some(e) =
            decode(payload, ifs).map_err(|what| nla::decode_error(op, nl.netns(), what))?
        {
            found.push(e);
        }
    }
    Ok(found)
}

/// `found` less the entries the kernel keeps for its ports' and bridges' own addresses.
pub(crate) fn without_kernel_local(
    found: Vec<(pb::Neighbour, u32)>,
    links: &HashMap<u32, LinkFacts>,
) -> Vec<pb::Neighbour> {
    found
        .into_iter()
        .filter(|(n, master)| !kernel_local(n, *master, links))
        .map(|(n, _)| n)
        .collect()
}

/// A permanent master entry for the address of its port or of its bridge.
fn kernel_local(n: &pb::Neighbour, master: u32, links: &HashMap<u32, LinkFacts>) -> bool {
    if n.flags & NTF_MASTER == 0 || n.state & NUD_PERMANENT == 0 {
        return false;
    }
    let own = |i: u32| links.get(&i).is_some_and(|l| l.mac == n.lladdr);
    let bridge = if master != 0 {
        master
    } else {
        links.get(&n.ifindex).map_or(0, |l| l.master)
    };
    own(n.ifindex) || own(bridge)
}

/// The VLAN of an entry, from its raw NDA_VLAN.
pub fn vlan(n: &pb::Neighbour) -> Option<u16> {
    n.raw
        .iter()
        .find(|r| r.kind & 0x3fff == u32::from(NDA_VLAN))
        .and_then(|r| r.value.get(..2))
        .map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

/// Splits `v` (keeping the order) into the entries added with NLM_F_EXCL and the FDB entries
/// with a remote (a vxlan's): several remotes of one address are added with NLM_F_APPEND
/// (`bridge fdb append`), which the caller sends after the others.
pub fn split_appended(v: &[pb::Neighbour]) -> (Vec<&pb::Neighbour>, Vec<&pb::Neighbour>) {
    v.iter()
        .partition(|n| n.family != u32::from(AF_BRIDGE) || n.dst.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(v);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
        a
    }

    fn entry(state: u16, flags: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![AF_BRIDGE, 0, 0, 0];
        p.extend_from_slice(&3u32.to_ne_bytes());
        p.extend_from_slice(&state.to_ne_bytes());
        p.push(flags);
        p.push(0);
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    fn ifs() -> IfMap {
        IfMap::from_names([(2, "br0".to_string()), (3, "vp".to_string())])
    }

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xaa];

    #[test]
    fn a_static_master_entry_with_its_vlan_is_kept_named_and_sent_with_ntf_master() {
        let p = entry(
            NUD_NOARP as u16,
            0,
            &[
                attr(super::super::decode::NDA_LLADDR, &MAC),
                attr(NDA_MASTER, &2u32.to_ne_bytes()),
                attr(NDA_VLAN, &10u16.to_ne_bytes()),
                attr(NDA_CACHEINFO, &[0; 16]),
            ],
        );
        let (n, master) = decode(&p, &ifs()).expect("decode").expect("kept");
        assert_eq!(master, 2);
        assert_eq!(n.flags & NTF_MASTER, NTF_MASTER);
        assert_eq!(vlan(&n), Some(10));
        assert_eq!(
            super::super::key(&n),
            "fdb 02:00:00:00:00:aa dev vp vlan 10 master"
        );
        assert_eq!(n.raw.len(), 1, "only NDA_VLAN is kept raw: {:?}", n.raw);
        let req = super::super::add_request(&n, &ifs()).expect("add");
        let (_, bytes) = crate::nla::req_bytes(&req);
        assert_eq!(bytes[10] as u32 & NTF_MASTER, NTF_MASTER);
    }

    #[test]
    fn learnt_entries_and_address_lists_are_not_state() {
        let learnt = entry(
            0x02,
            0,
            &[
                attr(super::super::decode::NDA_LLADDR, &MAC),
                attr(NDA_MASTER, &2u32.to_ne_bytes()),
            ],
        );
        assert!(decode(&learnt, &ifs()).expect("decode").is_none());
        let list = entry(
            NUD_PERMANENT as u16,
            NTF_SELF as u8,
            &[attr(
                super::super::decode::NDA_LLADDR,
                &[0x33, 0x33, 0, 0, 0, 1],
            )],
        );
        assert!(decode(&list, &ifs()).expect("decode").is_none());
        let remote = entry(
            NUD_PERMANENT as u16,
            NTF_SELF as u8,
            &[
                attr(super::super::decode::NDA_LLADDR, &[0; 6]),
                attr(super::super::decode::NDA_DST, &[10, 1, 1, 9]),
            ],
        );
        let (n, _) = decode(&remote, &ifs())
            .expect("decode")
            .expect("a vxlan remote is kept");
        assert_eq!(
            super::super::key(&n),
            "fdb 00:00:00:00:00:00 dev vp self dst 10.1.1.9"
        );
    }

    #[test]
    fn a_ports_own_address_is_the_kernels() {
        let mut links = HashMap::new();
        let facts = |mac: Vec<u8>, master: u32| LinkFacts {
            mac,
            master,
            ..LinkFacts::default()
        };
        links.insert(3, facts(MAC.to_vec(), 2));
        links.insert(2, facts(vec![2, 0, 0, 0, 0, 0xbb], 0));
        let n = pb::Neighbour {
            family: 7,
            ifindex: 3,
            lladdr: MAC.to_vec(),
            state: NUD_PERMANENT,
            flags: NTF_MASTER,
            ..Default::default()
        };
        assert!(kernel_local(&n, 2, &links));
        let other = pb::Neighbour {
            lladdr: vec![2, 0, 0, 0, 0, 0xcc],
            ..n.clone()
        };
        assert!(!kernel_local(&other, 2, &links));
    }
}
