//! pb::Neighbour to RTM_NEWNEIGH / RTM_DELNEIGH requests.

use crhook_proto as pb;

use super::decode::{NDA_DST, NDA_LLADDR, NDA_PROTOCOL};
use super::{describe, is_proxy, NTF_PROXY, NUD_NONE, NUD_PERMANENT, RTM_DELNEIGH, RTM_NEWNEIGH};
use crate::error::{NetstateError, Result};
use crate::ifmap::IfMap;
use crate::nl::Req;
use crate::nla::{live_ifindex, MsgBuf};

fn header(n: &pb::Neighbour, ifindex: u32, state: u32, flags: u32) -> Result<Vec<u8>> {
    let bad = |what: &str| NetstateError::invalid(format!("{}: {what} out of range", describe(n)));
    let family = u8::try_from(n.family).map_err(|_| bad("family"))?;
    let state = u16::try_from(state).map_err(|_| bad("state"))?;
    let flags = u8::try_from(flags).map_err(|_| bad("flags"))?;
    let mut h = vec![family, 0, 0, 0];
    h.extend_from_slice(&ifindex.to_ne_bytes());
    h.extend_from_slice(&state.to_ne_bytes());
    h.push(flags);
    h.push(0);
    Ok(h)
}

fn ifindex(n: &pb::Neighbour, ifs: &IfMap) -> Result<u32> {
    if n.ifindex == 0 {
        // a proxy entry for every device
        return Ok(0);
    }
    live_ifindex(ifs, n.ifindex, &n.ifname, || describe(n))
}

pub(crate) fn add(n: &pb::Neighbour, ifs: &IfMap) -> Result<Req> {
    let state = if is_proxy(n) && n.state == NUD_NONE {
        NUD_PERMANENT
    } else {
        n.state
    };
    let mut m = MsgBuf::new(&header(n, ifindex(n, ifs)?, state, super::send_flags(n))?);
    // a bridge port's FDB entry has no destination address (a vxlan's has its remote)
    if !n.dst.is_empty() {
        m.put(NDA_DST, &n.dst)?;
    }
    if !n.lladdr.is_empty() && !is_proxy(n) {
        m.put(NDA_LLADDR, &n.lladdr)?;
    }
    if let Some(p) = n.protocol {
        let p = u8::try_from(p).map_err(|_| {
            NetstateError::invalid(format!("{}: protocol {p} out of range", describe(n)))
        })?;
        m.put_u8(NDA_PROTOCOL, p)?;
    }
    m.put_raw(&n.raw)?;
    Ok(m.into_req(RTM_NEWNEIGH))
}

pub(crate) fn del(n: &pb::Neighbour, ifs: &IfMap) -> Result<Req> {
    if n.family == u32::from(super::fdb::AF_BRIDGE) {
        // an FDB entry is named by port, address, VLAN and master/self (and a vxlan's remote)
        let mut m = MsgBuf::new(&header(n, ifindex(n, ifs)?, 0, super::send_flags(n))?);
        m.put(NDA_LLADDR, &n.lladdr)?;
        if !n.dst.is_empty() {
            m.put(NDA_DST, &n.dst)?;
        }
        if let Some(v) = super::fdb::vlan(n) {
            m.put_u16(super::fdb::NDA_VLAN, v)?;
        }
        return Ok(m.into_req(RTM_DELNEIGH));
    }
    let mut m = MsgBuf::new(&header(n, ifindex(n, ifs)?, 0, n.flags & NTF_PROXY)?);
    m.put(NDA_DST, &n.dst)?;
    Ok(m.into_req(RTM_DELNEIGH))
}
