//! RTM_NEWROUTE (a dump answer) to pb::Route.

use crhook_proto as pb;

use super::{RTM_F_CLONED, RTNH_F_DEAD, RTNH_F_LINKDOWN, RTPROT_KERNEL, RTPROT_RA};
use crate::ifmap::IfMap;
use crate::nla::{self, Attr, AF_INET, AF_INET6};

pub(crate) const RTA_DST: u16 = 1;
pub(crate) const RTA_SRC: u16 = 2;
pub(crate) const RTA_IIF: u16 = 3;
pub(crate) const RTA_OIF: u16 = 4;
pub(crate) const RTA_GATEWAY: u16 = 5;
pub(crate) const RTA_PRIORITY: u16 = 6;
pub(crate) const RTA_PREFSRC: u16 = 7;
pub(crate) const RTA_METRICS: u16 = 8;
pub(crate) const RTA_MULTIPATH: u16 = 9;
pub(crate) const RTA_FLOW: u16 = 11;
const RTA_CACHEINFO: u16 = 12;
pub(crate) const RTA_TABLE: u16 = 15;
pub(crate) const RTA_VIA: u16 = 18;
pub(crate) const RTA_PREF: u16 = 20;
pub(crate) const RTA_EXPIRES: u16 = 23;
/// clock ticks a second in rta_cacheinfo (jiffies_to_clock_t)
const USER_HZ: u32 = 100;
pub(crate) const RTA_NH_ID: u16 = 30;

/// RTAX_CC_ALGO is the one metric whose value is a string, not a u32
const RTAX_CC_ALGO: u16 = 16;

/// sizeof(struct rtmsg)
pub(crate) const RTMSG_LEN: usize = 12;
/// sizeof(struct rtnexthop)
pub(crate) const RTNH_LEN: usize = 8;

/// Decodes one route; `None` for kernel-made routes and cache entries.
pub(crate) fn decode(payload: &[u8], ifs: &IfMap) -> Result<Option<pb::Route>, String> {
    let (h, attrs) = nla::split(payload, RTMSG_LEN, "route")?;
    let flags = nla::u32_at(h, 8);
    let protocol = u32::from(h[5]);
    if (h[0] != AF_INET && h[0] != AF_INET6)
        || flags & RTM_F_CLONED != 0
        || protocol == RTPROT_KERNEL
        || protocol == RTPROT_RA
    {
        return Ok(None);
    }
    let mut r = pb::Route {
        family: u32::from(h[0]),
        dst_len: u32::from(h[1]),
        src_len: u32::from(h[2]),
        tos: u32::from(h[3]),
        table: u32::from(h[4]),
        protocol,
        scope: u32::from(h[6]),
        route_type: u32::from(h[7]),
        flags: flags & !(RTNH_F_DEAD | RTNH_F_LINKDOWN),
        ..Default::default()
    };
    for at in attrs {
        let at = at?;
        match at.ty() {
            RTA_DST => r.dst = at.value.to_vec(),
            RTA_SRC => r.src = at.value.to_vec(),
            RTA_IIF => {
                r.iif = at.u32()?;
                r.iif_name = ifs.name(r.iif);
            }
            RTA_OIF => {
                r.oif = at.u32()?;
                r.oif_name = ifs.name(r.oif);
            }
            RTA_GATEWAY => r.gateway = at.value.to_vec(),
            RTA_PRIORITY => r.priority = Some(at.u32()?),
            RTA_PREFSRC => r.prefsrc = at.value.to_vec(),
            RTA_METRICS => decode_metrics(&at, &mut r)?,
            RTA_MULTIPATH => r.multipath = decode_multipath(at.value, ifs)?,
            RTA_FLOW => r.realm = Some(at.u32()?),
            RTA_TABLE => r.table = at.u32()?,
            RTA_VIA => r.via = at.value.to_vec(),
            RTA_PREF => r.pref = Some(u32::from(at.u8()?)),
            RTA_NH_ID => r.nh_id = at.u32()?,
            // struct rta_cacheinfo: the remaining lifetime (rta_expires, in USER_HZ ticks,
            // 100 a second) is state; the rest is the kernel's bookkeeping. In whole seconds
            // rounded down, as `ip` shows it, so a restored route never outlives the saved
            // one (rounded up, 299.99 s left came back as 300); at least 1, since 0 is none.
            RTA_CACHEINFO => {
                if at.value.len() >= 12 {
                    let ticks = nla::u32_at(at.value, 8);
                    if ticks > 0 {
                        r.expires = (ticks / USER_HZ).max(1);
                    }
                }
            }
            RTA_EXPIRES => {}
            _ => r.raw.push(at.raw()),
        }
    }
    if r.nh_id != 0 {
        // what the nexthop object contributed to the dump (see the module notes)
        r.oif = 0;
        r.oif_name.clear();
        r.gateway.clear();
        r.via.clear();
        r.realm = None;
        r.multipath.clear();
        r.flags &= !0xff;
    }
    Ok(Some(r))
}

/// RTA_METRICS: u32 metrics become (kind, value); any other (RTAX_CC_ALGO) is kept raw in a
/// route-level raw entry of kind RTA_METRICS that the encoder puts back inside RTA_METRICS.
fn decode_metrics(at: &Attr<'_>, r: &mut pb::Route) -> Result<(), String> {
    let mut other = Vec::new();
    for m in nla::attrs(at.value) {
        let m = m?;
        if m.ty() != RTAX_CC_ALGO && m.value.len() == 4 {
            r.metrics.push(pb::Metric {
                kind: u32::from(m.ty()),
                value: m.u32()?,
            });
        } else {
            let len = 4 + m.value.len();
            other.extend_from_slice(
                &u16::try_from(len)
                    .map_err(|_| "metric too long".to_string())?
                    .to_ne_bytes(),
            );
            other.extend_from_slice(&m.kind.to_ne_bytes());
            other.extend_from_slice(m.value);
            other.resize(nla::align4(other.len()), 0);
        }
    }
    if !other.is_empty() {
        r.raw.push(pb::RawAttr {
            kind: u32::from(RTA_METRICS),
            value: other,
        });
    }
    Ok(())
}

/// RTA_MULTIPATH: a sequence of struct rtnexthop { len, flags, hops, ifindex } each followed
/// by its own attributes. The weight `ip` shows is hops + 1.
pub(crate) fn decode_multipath(mut b: &[u8], ifs: &IfMap) -> Result<Vec<pb::NextHop>, String> {
    let mut hops = Vec::new();
    while b.len() >= RTNH_LEN {
        let len = usize::from(nla::u16_at(b, 0));
        if len < RTNH_LEN || len > b.len() {
            return Err(format!(
                "RTA_MULTIPATH entry of length {len} with {} bytes left",
                b.len()
            ));
        }
        let ifindex = nla::u32_at(b, 4);
        let mut h = pb::NextHop {
            flags: u32::from(b[2]) & !(RTNH_F_DEAD | RTNH_F_LINKDOWN),
            weight: u32::from(b[3]) + 1,
            ifindex,
            ifname: if ifindex == 0 {
                String::new()
            } else {
                ifs.name(ifindex)
            },
            ..Default::default()
        };
        for at in nla::attrs(&b[RTNH_LEN..len]) {
            let at = at?;
            match at.ty() {
                RTA_GATEWAY => h.gateway = at.value.to_vec(),
                RTA_VIA => h.via = at.value.to_vec(),
                RTA_FLOW => h.realm = Some(at.u32()?),
                _ => h.raw.push(at.raw()),
            }
        }
        hops.push(h);
        b = &b[nla::align4(len).min(b.len())..];
    }
    Ok(hops)
}
