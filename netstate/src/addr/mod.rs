//! Addresses, IPv4 and IPv6: capture, the requests that add and delete them, identity and
//! the canonical form diff compares.
//!
//! Kernel behaviour this relies on:
//! - The kernel marks the addresses it makes itself with IFA_PROTO (kernel 5.18+): `::1` on
//!   lo is kernel_lo (1), SLAAC addresses kernel_ra (2), autoconfigured link-local addresses
//!   kernel_ll (3). The first two are not user state and are left out. Link-local ones are
//!   saved, marked (see [`kernel_ll`]): restore never adds them itself while the kernel makes
//!   them at link up, but removes one the kernel made during the rebuild that the image does
//!   not have (a carrier seen for a moment), and `diff` reports one added since. IFA_F_PERMANENT
//!   cannot tell them apart: link-local addresses carry it, while an address a user added with
//!   a finite lifetime does not. IPv6 temporary (privacy) addresses are left out too. Every
//!   IPv4 address is user state (`127.0.0.1` included: when lo comes up the kernel's own add
//!   of it meets the restored one and gives way).
//! - The kernel inserts a new IPv6 address before the existing ones of its scope, so a device's
//!   dump lists the newest first; adding in dump order would reverse it. IPv6 addresses are
//!   therefore saved in the reverse of the dump order, which is the order that rebuilds the same
//!   list (and the order restore adds them in). IPv4 primaries and secondaries keep their
//!   order when added in dump order.
//! - IFA_CACHEINFO carries the remaining lifetimes; an add with it sets them. Restore sends the
//!   lifetimes that remained at checkpoint.
//! - IFA_F_SECONDARY, TENTATIVE, DADFAILED, DEPRECATED, PERMANENT and STABLE_PRIVACY describe
//!   state the kernel computes; they are kept for show but never sent.

mod decode;

pub use decode::kernel_ll;
mod encode;
#[cfg(test)]
mod tests;

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req};
use crate::nla::{self, ip_str, AF_INET, AF_INET6};

pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_GETADDR: u16 = 22;

pub const IFA_F_SECONDARY: u32 = 0x01;
pub const IFA_F_NODAD: u32 = 0x02;
pub const IFA_F_OPTIMISTIC: u32 = 0x04;
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_HOMEADDRESS: u32 = 0x10;
pub const IFA_F_DEPRECATED: u32 = 0x20;
pub const IFA_F_TENTATIVE: u32 = 0x40;
pub const IFA_F_PERMANENT: u32 = 0x80;
pub const IFA_F_MANAGETEMPADDR: u32 = 0x100;
pub const IFA_F_NOPREFIXROUTE: u32 = 0x200;
pub const IFA_F_MCAUTOJOIN: u32 = 0x400;
pub const IFA_F_STABLE_PRIVACY: u32 = 0x800;

/// Flags that record kernel state rather than a request.
pub const IFA_F_KERNEL_STATE: u32 = IFA_F_SECONDARY
    | IFA_F_DADFAILED
    | IFA_F_DEPRECATED
    | IFA_F_TENTATIVE
    | IFA_F_PERMANENT
    | IFA_F_STABLE_PRIVACY;

/// A lifetime that never ends.
pub const FOREVER: u32 = u32::MAX;

/// Dumps IPv4 then IPv6 addresses; kernel-made IPv6 addresses are left out, IPv6 is kept in
/// restore order (see the module notes).
pub fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::Address>> {
    let mut out = capture_family(nl, ifs, AF_INET)?;
    out.extend(capture_family(nl, ifs, AF_INET6)?);
    Ok(out)
}

/// The addresses of one family (`AF_INET` or `AF_INET6`): the kernel dumps only that family.
pub(crate) fn capture_family(nl: &mut Nl, ifs: &IfMap, family: u8) -> Result<Vec<pb::Address>> {
    let req = Req::Raw {
        msg_type: RTM_GETADDR,
        payload: vec![family, 0, 0, 0, 0, 0, 0, 0],
    };
    let op = if family == AF_INET {
        "dump IPv4 addresses"
    } else {
        "dump IPv6 addresses"
    };
    let msgs = nl.dump_raw(&req, op)?;
    from_dump(family, &msgs, ifs).map_err(|what| nla::decode_error(op, nl.netns(), what))
}

/// The user addresses of one family's dump, in restore order.
pub(crate) fn from_dump(
    family: u8,
    msgs: &[(u16, Vec<u8>)],
    ifs: &IfMap,
) -> Result<Vec<pb::Address>, String> {
    let mut part = Vec::with_capacity(msgs.len());
    for (ty, payload) in msgs {
        if *ty == RTM_NEWADDR {
            if let Some(a) = decode::decode(payload, ifs)? {
                part.push(a);
            }
        }
    }
    if family == AF_INET6 {
        part.reverse();
    }
    Ok(part)
}

/// RTM_NEWADDR for a saved address, its link mapped to the live one.
pub fn add_request(a: &pb::Address, ifs: &IfMap) -> Result<Req> {
    encode::add(a, ifs)
}

/// RTM_DELADDR for a saved address.
pub fn del_request(a: &pb::Address, ifs: &IfMap) -> Result<Req> {
    encode::del(a, ifs)
}

/// The address the kernel identifies the entry by: IFA_LOCAL when present, else IFA_ADDRESS.
pub(crate) fn local_of(a: &pb::Address) -> &[u8] {
    if a.local.is_empty() {
        &a.address
    } else {
        &a.local
    }
}

/// The peer, when the entry has one (IFA_ADDRESS differs from IFA_LOCAL).
fn peer_of(a: &pb::Address) -> Option<&[u8]> {
    (!a.local.is_empty() && !a.address.is_empty() && a.local != a.address).then_some(&a.address[..])
}

/// Identity: IPv4 `local/prefix [peer P] dev NAME`; IPv6 `local dev NAME`, because the kernel
/// refuses a second IPv6 entry of the same address on a device whatever its prefix or peer.
pub fn key(a: &pb::Address) -> String {
    let local = ip_str(local_of(a));
    if a.family == u32::from(AF_INET6) {
        return format!("{local} dev {}", a.ifname);
    }
    match peer_of(a) {
        Some(p) => format!(
            "{local}/{} peer {} dev {}",
            a.prefix_len,
            ip_str(p),
            a.ifname
        ),
        None => format!("{local}/{} dev {}", a.prefix_len, a.ifname),
    }
}

/// `address 10.1.1.1/24 dev eth0`, with the peer when there is one.
pub fn describe(a: &pb::Address) -> String {
    let local = ip_str(local_of(a));
    match peer_of(a) {
        Some(p) => format!(
            "address {local} peer {}/{} dev {}",
            ip_str(p),
            a.prefix_len,
            a.ifname
        ),
        None => format!("address {local}/{} dev {}", a.prefix_len, a.ifname),
    }
}

/// Canonical form for comparing a saved capture with a live one: no ifindex; a finite
/// lifetime compares as "finite" (0), whatever time has passed; DAD in progress
/// (TENTATIVE) and the deprecation that follows a finite preferred lifetime do not count.
pub fn normalize(a: &mut pb::Address) {
    a.ifindex = 0;
    a.flags &= !IFA_F_TENTATIVE;
    if a.valid_lft != FOREVER {
        a.valid_lft = 0;
    }
    if a.preferred_lft != FOREVER {
        a.preferred_lft = 0;
        a.flags &= !IFA_F_DEPRECATED;
    }
}
