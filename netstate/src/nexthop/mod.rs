//! Nexthop objects (`ip nexthop`): capture, the requests that add and delete them, identity
//! and the canonical form diff compares.
//!
//! netlink-packet-route has no RTM_*NEXTHOP messages, so struct nhmsg and the NHA_*
//! attributes are encoded and decoded here by hand, sent with `Req::Raw` and dumped with
//! `Nl::dump_raw`.
//!
//! Kernel behaviour this relies on:
//! - Only users make nexthop objects; every one dumped is user state.
//! - A group may only name existing nexthops, and groups cannot nest: groups are saved (and
//!   so restored) after every single nexthop. Deleting a nexthop deletes the routes using it.
//! - An add refuses a non-zero `nh_scope` and any flag but RTNH_F_ONLINK ("Invalid values in
//!   ancillary header"), although dumps report scope link and DEAD/LINKDOWN.
//! - A dump answers with NHA_OP_FLAGS (flags of the reply itself) and, for resilient groups,
//!   NHA_RES_GROUP_UNBALANCED_TIME; an add's strict parser refuses both, so they are dropped.
//! - struct nexthop_grp { u32 id; u8 weight; u8 weight_high; u16 resvd }: the weight minus
//!   one, its high byte in weight_high since 6.12 (zero before).

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req};
use crate::nla::{self, ip_str};

pub(crate) const RTM_NEWNEXTHOP: u16 = 104;
pub(crate) const RTM_DELNEXTHOP: u16 = 105;
pub(crate) const RTM_GETNEXTHOP: u16 = 106;

pub const RTNH_F_DEAD: u32 = 1;
pub const RTNH_F_ONLINK: u32 = 4;
pub const RTNH_F_LINKDOWN: u32 = 16;

/// Dumps every nexthop object; single nexthops first, then groups.
pub fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::NexthopObject>> {
    let req = Req::Raw {
        msg_type: RTM_GETNEXTHOP,
        payload: vec![0u8; decode::NHMSG_LEN],
    };
    let op = "dump nexthops";
    let msgs = nl.dump_raw(&req, op)?;
    from_dump(&msgs, ifs).map_err(|what| nla::decode_error(op, nl.netns(), what))
}

/// The objects of a dump, single nexthops (in id order, as dumped) before groups.
pub(crate) fn from_dump(
    msgs: &[(u16, Vec<u8>)],
    ifs: &IfMap,
) -> Result<Vec<pb::NexthopObject>, String> {
    let mut singles = Vec::new();
    let mut groups = Vec::new();
    for (ty, payload) in msgs {
        if *ty != RTM_NEWNEXTHOP {
            continue;
        }
        let nh = decode::decode(payload, ifs)?;
        if nh.group.is_empty() {
            singles.push(nh);
        } else {
            groups.push(nh);
        }
    }
    singles.extend(groups);
    Ok(singles)
}

/// RTM_NEWNEXTHOP for a saved object, its device mapped to the live one.
pub fn add_request(nh: &pb::NexthopObject, ifs: &IfMap) -> Result<Req> {
    encode::add(nh, ifs)
}

/// RTM_DELNEXTHOP by id.
pub fn del_request(nh: &pb::NexthopObject, _ifs: &IfMap) -> Result<Req> {
    encode::del(nh)
}

/// Identity: the id.
pub fn key(nh: &pb::NexthopObject) -> String {
    format!("id {}", nh.id)
}

/// `nexthop id 1 via 10.1.1.2 dev eth0`, `nexthop id 3 group 1/2,2/3`, `nexthop id 4 blackhole`.
pub fn describe(nh: &pb::NexthopObject) -> String {
    let mut d = format!("nexthop id {}", nh.id);
    if !nh.group.is_empty() {
        let members: Vec<String> = nh
            .group
            .iter()
            .map(|m| format!("{}/{}", m.id, m.weight))
            .collect();
        d.push_str(&format!(" group {}", members.join(",")));
    }
    if nh.blackhole {
        d.push_str(" blackhole");
    }
    if !nh.gateway.is_empty() {
        d.push_str(&format!(" via {}", ip_str(&nh.gateway)));
    }
    if !nh.oif_name.is_empty() {
        d.push_str(&format!(" dev {}", nh.oif_name));
    }
    if nh.fdb {
        d.push_str(" fdb");
    }
    d
}

/// Canonical form for comparison: no ifindex, no link state flags.
pub fn normalize(nh: &mut pb::NexthopObject) {
    nh.oif = 0;
    nh.flags &= !(RTNH_F_DEAD | RTNH_F_LINKDOWN);
}
