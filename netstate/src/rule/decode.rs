//! RTM_NEWRULE (a dump answer) to pb::Rule.

use crhook_proto as pb;

use super::FR_ACT_TO_TBL;
use crate::nla::{self, Attr, AF_INET6};

pub(crate) const FRA_DST: u16 = 1;
pub(crate) const FRA_SRC: u16 = 2;
pub(crate) const FRA_IIFNAME: u16 = 3;
pub(crate) const FRA_GOTO: u16 = 4;
pub(crate) const FRA_PRIORITY: u16 = 6;
pub(crate) const FRA_FWMARK: u16 = 10;
pub(crate) const FRA_FLOW: u16 = 11;
pub(crate) const FRA_TUN_ID: u16 = 12;
pub(crate) const FRA_SUPPRESS_IFGROUP: u16 = 13;
pub(crate) const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
pub(crate) const FRA_TABLE: u16 = 15;
pub(crate) const FRA_FWMASK: u16 = 16;
pub(crate) const FRA_OIFNAME: u16 = 17;
const FRA_PAD: u16 = 18;
pub(crate) const FRA_L3MDEV: u16 = 19;
pub(crate) const FRA_UID_RANGE: u16 = 20;
pub(crate) const FRA_PROTOCOL: u16 = 21;
pub(crate) const FRA_IP_PROTO: u16 = 22;
pub(crate) const FRA_SPORT_RANGE: u16 = 23;
pub(crate) const FRA_DPORT_RANGE: u16 = 24;
pub(crate) const FRA_DSCP: u16 = 25;

/// sizeof(struct fib_rule_hdr)
pub(crate) const FIB_RULE_HDR_LEN: usize = 12;

const RTPROT_KERNEL: u32 = 2;
const UNSET: u32 = u32::MAX;

/// (priority, table) of the rules every namespace starts with
const DEFAULTS_V4: [(u32, u32); 3] = [(0, 255), (32766, 254), (32767, 253)];
const DEFAULTS_V6: [(u32, u32); 2] = [(0, 255), (32766, 254)];

fn range16(at: &Attr<'_>) -> Result<(u32, u32), String> {
    if at.value.len() < 4 {
        return Err(format!(
            "port range attribute {} of {} bytes",
            at.ty(),
            at.value.len()
        ));
    }
    Ok((
        u32::from(nla::u16_at(at.value, 0)),
        u32::from(nla::u16_at(at.value, 2)),
    ))
}

/// Decodes one rule; `None` for the kernel's default rules.
pub(crate) fn decode(payload: &[u8]) -> Result<Option<pb::Rule>, String> {
    let (h, attrs) = nla::split(payload, FIB_RULE_HDR_LEN, "rule")?;
    let mut r = pb::Rule {
        family: u32::from(h[0]),
        dst_len: u32::from(h[1]),
        src_len: u32::from(h[2]),
        tos: u32::from(h[3]),
        table: u32::from(h[4]),
        action: u32::from(h[7]),
        flags: nla::u32_at(h, 8),
        priority: Some(0),
        ..Default::default()
    };
    for at in attrs {
        let at = at?;
        match at.ty() {
            FRA_DST => r.dst = at.value.to_vec(),
            FRA_SRC => r.src = at.value.to_vec(),
            FRA_IIFNAME => r.iifname = at.string(),
            FRA_OIFNAME => r.oifname = at.string(),
            FRA_GOTO => r.goto = Some(at.u32()?),
            FRA_PRIORITY => r.priority = Some(at.u32()?),
            FRA_FWMARK => r.fwmark = Some(at.u32()?),
            FRA_FWMASK => r.fwmask = Some(at.u32()?),
            FRA_FLOW => r.flow = Some(at.u32()?),
            FRA_TUN_ID => r.tun_id = Some(at.u64_be()?),
            FRA_SUPPRESS_IFGROUP => r.suppress_ifgroup = Some(at.u32()?).filter(|v| *v != UNSET),
            FRA_SUPPRESS_PREFIXLEN => {
                r.suppress_prefixlen = Some(at.u32()?).filter(|v| *v != UNSET)
            }
            FRA_TABLE => r.table = at.u32()?,
            FRA_L3MDEV => r.l3mdev = Some(u32::from(at.u8()?)),
            FRA_UID_RANGE => {
                if at.value.len() < 8 {
                    return Err(format!("FRA_UID_RANGE of {} bytes", at.value.len()));
                }
                r.uid_start = Some(nla::u32_at(at.value, 0));
                r.uid_end = Some(nla::u32_at(at.value, 4));
            }
            FRA_PROTOCOL => r.protocol = u32::from(at.u8()?),
            FRA_IP_PROTO => r.ip_proto = Some(u32::from(at.u8()?)),
            FRA_SPORT_RANGE => {
                let (s, e) = range16(&at)?;
                r.sport_start = Some(s);
                r.sport_end = Some(e);
            }
            FRA_DPORT_RANGE => {
                let (s, e) = range16(&at)?;
                r.dport_start = Some(s);
                r.dport_end = Some(e);
            }
            FRA_DSCP => r.dscp = Some(u32::from(at.u8()?)),
            // alignment filler before the 64-bit FRA_TUN_ID
            FRA_PAD => {}
            _ => r.raw.push(at.raw()),
        }
    }
    if is_default(&r) {
        return Ok(None);
    }
    Ok(Some(r))
}

/// One of the rules the kernel puts in every namespace: protocol kernel, plain lookup, no
/// selector, at its default priority and table.
fn is_default(r: &pb::Rule) -> bool {
    let defaults: &[(u32, u32)] = if r.family == u32::from(AF_INET6) {
        &DEFAULTS_V6
    } else {
        &DEFAULTS_V4
    };
    r.protocol == RTPROT_KERNEL
        && r.action == FR_ACT_TO_TBL
        && r.flags == 0
        && r.src_len == 0
        && r.dst_len == 0
        && r.iifname.is_empty()
        && r.oifname.is_empty()
        && r.fwmark.is_none()
        && defaults.contains(&(r.priority.unwrap_or(0), r.table))
}
