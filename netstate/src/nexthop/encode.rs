//! pb::NexthopObject to RTM_NEWNEXTHOP / RTM_DELNEXTHOP requests, by hand.

use crhook_proto as pb;

use super::decode::{
    NHA_BLACKHOLE, NHA_FDB, NHA_GATEWAY, NHA_GROUP, NHA_GROUP_TYPE, NHA_ID, NHA_OIF, NHMSG_LEN,
};
use super::{describe, RTM_DELNEXTHOP, RTM_NEWNEXTHOP, RTNH_F_ONLINK};
use crate::error::{NetstateError, Result};
use crate::ifmap::IfMap;
use crate::nl::Req;
use crate::nla::{live_ifindex, MsgBuf};

pub(crate) fn add(nh: &pb::NexthopObject, ifs: &IfMap) -> Result<Req> {
    let bad = |what: String| NetstateError::invalid(format!("{}: {what}", describe(nh)));
    let family =
        u8::try_from(nh.family).map_err(|_| bad(format!("family {} out of range", nh.family)))?;
    let protocol = u8::try_from(nh.protocol)
        .map_err(|_| bad(format!("protocol {} out of range", nh.protocol)))?;
    // scope must be zero in a request, and ONLINK is the only flag one may carry
    let mut h = vec![family, 0, protocol, 0];
    h.extend_from_slice(&(nh.flags & RTNH_F_ONLINK).to_ne_bytes());
    let mut m = MsgBuf::new(&h);
    m.put_u32(NHA_ID, nh.id)?;
    if !nh.group.is_empty() {
        let mut g = Vec::with_capacity(nh.group.len() * 8);
        for member in &nh.group {
            let w = member.weight.saturating_sub(1);
            let w = u16::try_from(w).map_err(|_| {
                bad(format!(
                    "weight {} of member {} out of range",
                    member.weight, member.id
                ))
            })?;
            g.extend_from_slice(&member.id.to_ne_bytes());
            g.extend_from_slice(&w.to_le_bytes());
            g.extend_from_slice(&[0, 0]);
        }
        m.put(NHA_GROUP, &g)?;
        let gt = u16::try_from(nh.group_type)
            .map_err(|_| bad(format!("group type {} out of range", nh.group_type)))?;
        m.put_u16(NHA_GROUP_TYPE, gt)?;
    }
    if nh.blackhole {
        m.put(NHA_BLACKHOLE, &[])?;
    }
    if nh.oif != 0 {
        m.put_u32(
            NHA_OIF,
            live_ifindex(ifs, nh.oif, &nh.oif_name, || describe(nh))?,
        )?;
    }
    if !nh.gateway.is_empty() {
        m.put(NHA_GATEWAY, &nh.gateway)?;
    }
    if nh.fdb {
        m.put(NHA_FDB, &[])?;
    }
    m.put_raw(&nh.raw)?;
    Ok(m.into_req(RTM_NEWNEXTHOP))
}

pub(crate) fn del(nh: &pb::NexthopObject) -> Result<Req> {
    let mut m = MsgBuf::new(&[0u8; NHMSG_LEN]);
    m.put_u32(NHA_ID, nh.id)?;
    Ok(m.into_req(RTM_DELNEXTHOP))
}
