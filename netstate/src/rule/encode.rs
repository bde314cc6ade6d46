//! pb::Rule to RTM_NEWRULE / RTM_DELRULE requests (the same selectors for both).

use crhook_proto as pb;

use super::decode::{
    FRA_DPORT_RANGE, FRA_DSCP, FRA_DST, FRA_FLOW, FRA_FWMARK, FRA_FWMASK, FRA_GOTO, FRA_IIFNAME,
    FRA_IP_PROTO, FRA_L3MDEV, FRA_OIFNAME, FRA_PRIORITY, FRA_PROTOCOL, FRA_SPORT_RANGE, FRA_SRC,
    FRA_SUPPRESS_IFGROUP, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_TUN_ID, FRA_UID_RANGE,
};
use super::{describe, FIB_RULE_INVERT};
use crate::error::{NetstateError, Result};
use crate::nl::Req;
use crate::nla::MsgBuf;

const RT_TABLE_COMPAT: u8 = 252;

fn small(v: u32, what: &str, r: &pb::Rule) -> Result<u8> {
    u8::try_from(v)
        .map_err(|_| NetstateError::invalid(format!("{}: {what} {v} out of range", describe(r))))
}

fn port(v: u32, r: &pb::Rule) -> Result<[u8; 2]> {
    u16::try_from(v)
        .map(u16::to_ne_bytes)
        .map_err(|_| NetstateError::invalid(format!("{}: port {v} out of range", describe(r))))
}

fn name(m: &mut MsgBuf, kind: u16, n: &str) -> Result<()> {
    if !n.is_empty() {
        let mut v = n.as_bytes().to_vec();
        v.push(0);
        m.put(kind, &v)?;
    }
    Ok(())
}

pub(crate) fn encode(r: &pb::Rule, msg_type: u16) -> Result<Req> {
    let mut h = vec![
        small(r.family, "family", r)?,
        small(r.dst_len, "destination prefix length", r)?,
        small(r.src_len, "source prefix length", r)?,
        small(r.tos, "tos", r)?,
        u8::try_from(r.table).unwrap_or(RT_TABLE_COMPAT),
        0,
        0,
        small(r.action, "action", r)?,
    ];
    h.extend_from_slice(&(r.flags & FIB_RULE_INVERT).to_ne_bytes());
    let mut m = MsgBuf::new(&h);
    m.put_u32(FRA_PRIORITY, r.priority.unwrap_or(0))?;
    if r.table != 0 {
        m.put_u32(FRA_TABLE, r.table)?;
    }
    if !r.src.is_empty() {
        m.put(FRA_SRC, &r.src)?;
    }
    if !r.dst.is_empty() {
        m.put(FRA_DST, &r.dst)?;
    }
    name(&mut m, FRA_IIFNAME, &r.iifname)?;
    name(&mut m, FRA_OIFNAME, &r.oifname)?;
    let u32s = [
        (FRA_FWMARK, r.fwmark),
        (FRA_FWMASK, r.fwmask),
        (FRA_GOTO, r.goto),
        (FRA_FLOW, r.flow),
        (FRA_SUPPRESS_PREFIXLEN, r.suppress_prefixlen),
        (FRA_SUPPRESS_IFGROUP, r.suppress_ifgroup),
    ];
    for (kind, v) in u32s {
        if let Some(v) = v {
            m.put_u32(kind, v)?;
        }
    }
    if let Some(t) = r.tun_id {
        m.put(FRA_TUN_ID, &t.to_be_bytes())?;
    }
    if let Some(l) = r.l3mdev {
        m.put_u8(FRA_L3MDEV, small(l, "l3mdev", r)?)?;
    }
    if let (Some(s), Some(e)) = (r.uid_start, r.uid_end) {
        let mut v = s.to_ne_bytes().to_vec();
        v.extend_from_slice(&e.to_ne_bytes());
        m.put(FRA_UID_RANGE, &v)?;
    }
    m.put_u8(FRA_PROTOCOL, small(r.protocol, "protocol", r)?)?;
    if let Some(p) = r.ip_proto {
        m.put_u8(FRA_IP_PROTO, small(p, "ipproto", r)?)?;
    }
    for (kind, start, end) in [
        (FRA_SPORT_RANGE, r.sport_start, r.sport_end),
        (FRA_DPORT_RANGE, r.dport_start, r.dport_end),
    ] {
        if let (Some(s), Some(e)) = (start, end) {
            let mut v = port(s, r)?.to_vec();
            v.extend_from_slice(&port(e, r)?);
            m.put(kind, &v)?;
        }
    }
    if let Some(d) = r.dscp {
        m.put_u8(FRA_DSCP, small(d, "dscp", r)?)?;
    }
    m.put_raw(&r.raw)?;
    Ok(m.into_req(msg_type))
}
