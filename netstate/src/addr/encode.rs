//! pb::Address to RTM_NEWADDR / RTM_DELADDR requests.

use crhook_proto as pb;

use super::decode::{
    IFA_ADDRESS, IFA_BROADCAST, IFA_CACHEINFO, IFA_FLAGS, IFA_LABEL, IFA_LOCAL, IFA_RT_PRIORITY,
};
use super::{describe, FOREVER, IFA_F_KERNEL_STATE, RTM_DELADDR, RTM_NEWADDR};
use crate::error::{NetstateError, Result};
use crate::ifmap::IfMap;
use crate::nl::Req;
use crate::nla::{live_ifindex, MsgBuf};

fn header(a: &pb::Address, ifindex: u32, flags: u8, scope: u8) -> Result<[u8; 8]> {
    let family = u8::try_from(a.family).map_err(|_| {
        NetstateError::invalid(format!("{}: family {} out of range", describe(a), a.family))
    })?;
    let plen = u8::try_from(a.prefix_len).map_err(|_| {
        NetstateError::invalid(format!("{}: prefix length out of range", describe(a)))
    })?;
    let i = ifindex.to_ne_bytes();
    Ok([family, plen, flags, scope, i[0], i[1], i[2], i[3]])
}

fn put_addresses(m: &mut MsgBuf, a: &pb::Address) -> Result<()> {
    if !a.local.is_empty() {
        m.put(IFA_LOCAL, &a.local)?;
    }
    if !a.address.is_empty() {
        m.put(IFA_ADDRESS, &a.address)?;
    }
    Ok(())
}

fn put_label(m: &mut MsgBuf, a: &pb::Address) -> Result<()> {
    if !a.label.is_empty() {
        let mut v = a.label.as_bytes().to_vec();
        v.push(0);
        m.put(IFA_LABEL, &v)?;
    }
    Ok(())
}

pub(crate) fn add(a: &pb::Address, ifs: &IfMap) -> Result<Req> {
    let ifindex = live_ifindex(ifs, a.ifindex, &a.ifname, || describe(a))?;
    let flags = a.flags & !IFA_F_KERNEL_STATE;
    let scope = u8::try_from(a.scope).unwrap_or(0);
    // the header carries the low 8 flag bits for kernels without IFA_FLAGS
    let mut m = MsgBuf::new(&header(a, ifindex, (flags & 0xff) as u8, scope)?);
    put_addresses(&mut m, a)?;
    if !a.broadcast.is_empty() {
        m.put(IFA_BROADCAST, &a.broadcast)?;
    }
    put_label(&mut m, a)?;
    m.put_u32(IFA_FLAGS, flags)?;
    if a.valid_lft != FOREVER || a.preferred_lft != FOREVER {
        // The kernel refuses a zero valid lifetime or a preferred one above it (EINVAL). An
        // address captured in its last second would trip that; it gets one more second.
        let valid = a.valid_lft.max(1);
        let preferred = a.preferred_lft.min(valid);
        let mut ci = Vec::with_capacity(16);
        ci.extend_from_slice(&preferred.to_ne_bytes());
        ci.extend_from_slice(&valid.to_ne_bytes());
        ci.extend_from_slice(&[0u8; 8]);
        m.put(IFA_CACHEINFO, &ci)?;
    }
    if let Some(metric) = a.metric {
        m.put_u32(IFA_RT_PRIORITY, metric)?;
    }
    m.put_raw(&a.raw)?;
    Ok(m.into_req(RTM_NEWADDR))
}

pub(crate) fn del(a: &pb::Address, ifs: &IfMap) -> Result<Req> {
    let ifindex = live_ifindex(ifs, a.ifindex, &a.ifname, || describe(a))?;
    let mut m = MsgBuf::new(&header(a, ifindex, 0, 0)?);
    put_addresses(&mut m, a)?;
    put_label(&mut m, a)?;
    Ok(m.into_req(RTM_DELADDR))
}
