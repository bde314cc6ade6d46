//! RTM_NEWADDR (a dump answer) to pb::Address.

use crhook_proto as pb;

use super::{FOREVER, IFA_F_SECONDARY};
use crate::ifmap::IfMap;
use crate::nla::{self, AF_INET6};

pub(crate) const IFA_ADDRESS: u16 = 1;
pub(crate) const IFA_LOCAL: u16 = 2;
pub(crate) const IFA_LABEL: u16 = 3;
pub(crate) const IFA_BROADCAST: u16 = 4;
pub(crate) const IFA_CACHEINFO: u16 = 6;
pub(crate) const IFA_FLAGS: u16 = 8;
pub(crate) const IFA_RT_PRIORITY: u16 = 9;
pub(crate) const IFA_PROTO: u16 = 11;

/// sizeof(struct ifaddrmsg)
pub(crate) const IFADDRMSG_LEN: usize = 8;

/// IFA_PROTO values of the addresses the kernel adds by itself
const IFAPROT_KERNEL_LO: u8 = 1;
const IFAPROT_KERNEL_RA: u8 = 2;
const IFAPROT_KERNEL_LL: u8 = 3;

/// Whether `a` is an IPv6 link-local address the kernel made itself (IFA_PROTO kernel_ll).
pub fn kernel_ll(a: &pb::Address) -> bool {
    a.raw.iter().any(|r| {
        r.kind & 0x3fff == u32::from(IFA_PROTO) && r.value.first() == Some(&IFAPROT_KERNEL_LL)
    })
}

/// Decodes one address; `None` for one the kernel made that is not tracked (see the module
/// notes).
pub(crate) fn decode(payload: &[u8], ifs: &IfMap) -> Result<Option<pb::Address>, String> {
    let (h, attrs) = nla::split(payload, IFADDRMSG_LEN, "address")?;
    let ifindex = nla::u32_at(h, 4);
    let mut a = pb::Address {
        family: u32::from(h[0]),
        prefix_len: u32::from(h[1]),
        flags: u32::from(h[2]),
        scope: u32::from(h[3]),
        ifindex,
        ifname: ifs.name(ifindex),
        valid_lft: FOREVER,
        preferred_lft: FOREVER,
        ..Default::default()
    };
    let mut proto = 0u8;
    for at in attrs {
        let at = at?;
        match at.ty() {
            IFA_ADDRESS => a.address = at.value.to_vec(),
            IFA_LOCAL => a.local = at.value.to_vec(),
            IFA_BROADCAST => a.broadcast = at.value.to_vec(),
            IFA_LABEL => a.label = at.string(),
            IFA_FLAGS => a.flags = at.u32()?,
            IFA_RT_PRIORITY => a.metric = Some(at.u32()?),
            IFA_CACHEINFO => {
                // struct ifa_cacheinfo { ifa_prefered, ifa_valid, cstamp, tstamp }: only the
                // remaining lifetimes are state; the time stamps are the kernel's bookkeeping
                if at.value.len() < 8 {
                    return Err(format!("IFA_CACHEINFO of {} bytes", at.value.len()));
                }
                a.preferred_lft = nla::u32_at(at.value, 0);
                a.valid_lft = nla::u32_at(at.value, 4);
            }
            IFA_PROTO => {
                proto = at.u8()?;
                a.raw.push(at.raw());
            }
            _ => a.raw.push(at.raw()),
        }
    }
    if a.family == u32::from(AF_INET6) {
        // kernel-made link-local addresses are kept, marked by their IFA_PROTO: restore
        // does not add them (the kernel does at link up) but ends with exactly those saved
        let kernel_made = matches!(proto, IFAPROT_KERNEL_LO | IFAPROT_KERNEL_RA);
        // for IPv6 the bit of IFA_F_SECONDARY is IFA_F_TEMPORARY: a privacy address
        let temporary = a.flags & IFA_F_SECONDARY != 0;
        if kernel_made || temporary {
            return Ok(None);
        }
    }
    Ok(Some(a))
}
