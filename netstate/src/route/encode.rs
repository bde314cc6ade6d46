//! pb::Route to RTM_NEWROUTE / RTM_DELROUTE requests.

use crhook_proto as pb;

use super::decode::{
    RTA_DST, RTA_EXPIRES, RTA_FLOW, RTA_GATEWAY, RTA_IIF, RTA_METRICS, RTA_MULTIPATH, RTA_NH_ID,
    RTA_OIF, RTA_PREF, RTA_PREFSRC, RTA_PRIORITY, RTA_SRC, RTA_TABLE, RTA_VIA, RTNH_LEN,
};
use super::{describe, ROUTE_SEND_FLAGS, RTM_DELROUTE, RTM_NEWROUTE};
use crate::error::{NetstateError, Result};
use crate::ifmap::IfMap;
use crate::nl::Req;
use crate::nla::{self, live_ifindex, MsgBuf, NLA_F_NESTED};

const RT_TABLE_COMPAT: u8 = 252;
const RT_SCOPE_NOWHERE: u8 = 255;

fn small(v: u32, what: &str, r: &pb::Route) -> Result<u8> {
    u8::try_from(v)
        .map_err(|_| NetstateError::invalid(format!("{}: {what} {v} out of range", describe(r))))
}

fn header(r: &pb::Route, protocol: u8, scope: u8, flags: u32) -> Result<Vec<u8>> {
    let table = u8::try_from(r.table).unwrap_or(RT_TABLE_COMPAT);
    let mut h = vec![
        small(r.family, "family", r)?,
        small(r.dst_len, "prefix length", r)?,
        small(r.src_len, "source prefix length", r)?,
        small(r.tos, "tos", r)?,
        table,
        protocol,
        scope,
        small(r.route_type, "type", r)?,
    ];
    h.extend_from_slice(&flags.to_ne_bytes());
    Ok(h)
}

fn link(ifs: &IfMap, saved: u32, name: &str, r: &pb::Route) -> Result<u32> {
    live_ifindex(ifs, saved, name, || describe(r))
}

/// What names a route to the kernel besides its header: table, prefixes, metric.
fn put_identity(m: &mut MsgBuf, r: &pb::Route) -> Result<()> {
    m.put_u32(RTA_TABLE, r.table)?;
    if !r.dst.is_empty() {
        m.put(RTA_DST, &r.dst)?;
    }
    if !r.src.is_empty() {
        m.put(RTA_SRC, &r.src)?;
    }
    if let Some(p) = r.priority {
        m.put_u32(RTA_PRIORITY, p)?;
    }
    Ok(())
}

pub(crate) fn add(r: &pb::Route, ifs: &IfMap) -> Result<Req> {
    let h = header(
        r,
        small(r.protocol, "protocol", r)?,
        small(r.scope, "scope", r)?,
        r.flags & ROUTE_SEND_FLAGS,
    )?;
    let mut m = MsgBuf::new(&h);
    put_identity(&mut m, r)?;
    if r.expires != 0 && r.family == u32::from(crate::nla::AF_INET6) {
        // the lifetime that remained at checkpoint (IPv4 routes have none)
        m.put_u32(RTA_EXPIRES, r.expires)?;
    }
    if !r.prefsrc.is_empty() {
        m.put(RTA_PREFSRC, &r.prefsrc)?;
    }
    if !r.gateway.is_empty() {
        m.put(RTA_GATEWAY, &r.gateway)?;
    }
    if !r.via.is_empty() {
        m.put(RTA_VIA, &r.via)?;
    }
    if r.oif != 0 {
        m.put_u32(RTA_OIF, link(ifs, r.oif, &r.oif_name, r)?)?;
    }
    if r.iif != 0 {
        m.put_u32(RTA_IIF, link(ifs, r.iif, &r.iif_name, r)?)?;
    }
    if let Some(realm) = r.realm {
        m.put_u32(RTA_FLOW, realm)?;
    }
    if let Some(pref) = r.pref {
        m.put_u8(RTA_PREF, small(pref, "pref", r)?)?;
    }
    if r.nh_id != 0 {
        m.put_u32(RTA_NH_ID, r.nh_id)?;
    }
    let metrics_raw = r
        .raw
        .iter()
        .find(|a| a.kind & 0x3fff == u32::from(RTA_METRICS));
    if !r.metrics.is_empty() || metrics_raw.is_some() {
        let mut v = nla::nested(|n| {
            for mx in &r.metrics {
                let kind = u16::try_from(mx.kind).map_err(|_| {
                    NetstateError::invalid(format!(
                        "{}: metric {} out of range",
                        describe(r),
                        mx.kind
                    ))
                })?;
                n.put_u32(kind, mx.value)?;
            }
            Ok(())
        })?;
        if let Some(x) = metrics_raw {
            v.extend_from_slice(&x.value);
        }
        m.put(RTA_METRICS | NLA_F_NESTED, &v)?;
    }
    if !r.multipath.is_empty() {
        m.put(RTA_MULTIPATH, &multipath(r, ifs)?)?;
    }
    let rest: Vec<pb::RawAttr> = r
        .raw
        .iter()
        .filter(|a| a.kind & 0x3fff != u32::from(RTA_METRICS))
        .cloned()
        .collect();
    m.put_raw(&rest)?;
    Ok(m.into_req(RTM_NEWROUTE))
}

fn multipath(r: &pb::Route, ifs: &IfMap) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for hop in &r.multipath {
        let body = nla::nested(|n| {
            if !hop.gateway.is_empty() {
                n.put(RTA_GATEWAY, &hop.gateway)?;
            }
            if !hop.via.is_empty() {
                n.put(RTA_VIA, &hop.via)?;
            }
            if let Some(realm) = hop.realm {
                n.put_u32(RTA_FLOW, realm)?;
            }
            n.put_raw(&hop.raw)
        })?;
        let len = u16::try_from(RTNH_LEN + body.len())
            .map_err(|_| NetstateError::invalid(format!("{}: nexthop too long", describe(r))))?;
        let ifindex = if hop.ifindex == 0 {
            0
        } else {
            link(ifs, hop.ifindex, &hop.ifname, r)?
        };
        let hops = small(hop.weight.saturating_sub(1), "nexthop weight", r)?;
        out.extend_from_slice(&len.to_ne_bytes());
        out.push((hop.flags & ROUTE_SEND_FLAGS) as u8);
        out.push(hops);
        out.extend_from_slice(&ifindex.to_ne_bytes());
        out.extend_from_slice(&body);
    }
    Ok(out)
}

/// Deletes by table, prefix, tos, type and priority; with the device and gateway of a
/// single-path route so that an IPv6 route on another device of the same prefix stays.
/// Scope NOWHERE matches any scope, as `ip route del` does.
pub(crate) fn del(r: &pb::Route, ifs: &IfMap) -> Result<Req> {
    let h = header(r, small(r.protocol, "protocol", r)?, RT_SCOPE_NOWHERE, 0)?;
    let mut m = MsgBuf::new(&h);
    put_identity(&mut m, r)?;
    if r.nh_id != 0 {
        m.put_u32(RTA_NH_ID, r.nh_id)?;
    }
    if !r.gateway.is_empty() {
        m.put(RTA_GATEWAY, &r.gateway)?;
    }
    if r.oif != 0 {
        m.put_u32(RTA_OIF, link(ifs, r.oif, &r.oif_name, r)?)?;
    }
    Ok(m.into_req(RTM_DELROUTE))
}
