//! Transforms between reading a snapshot and planning it against the target: adopting the
//! links a runtime made and remapping addresses. Pure data work: it reads the saved snapshot
//! and what capture saw in the target, changes the snapshot, and opens nothing.
//!
//! Adopt: a runtime (Podman's netavark, a CNI plugin) builds `eth0` before crhook runs, with
//! its own MAC, host end, address and default route. An adopted link is kept as the runtime
//! made it; the image's other state is layered on, and objects that name the link by name
//! follow it (the ifindex map resolves saved indexes by name). The runtime's address replaces
//! the saved one: when an adopted link holds an address the image does not have and the image
//! holds one the link does not, per family, the old one maps to the new one (an automatic
//! remap), wherever it appears. Of the saved addresses the one in the new address's subnet is
//! taken, else the first primary; IPv6 link-local addresses (the kernel makes them from the
//! MAC) never take part.

pub mod objects;
pub mod remap;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crhook_proto as pb;

pub use objects::Remapped;
pub use remap::{Remap, Remaps};

use crate::error::{NetstateError, Result};
use crate::snapshot::Snapshot;

/// Which live links restore keeps as the runtime made them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Adopt {
    /// `--adopt IFNAME`
    pub links: Vec<String>,
    /// `--adopt-runtime`: every link the target holds before restore, `lo` aside
    pub runtime: bool,
}

impl Adopt {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && !self.runtime
    }
}

/// What the transforms did: for the plan, logs and the dry run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transformed {
    /// adopted links that the image has too
    pub adopted: Vec<String>,
    /// remaps found from adopted links' addresses
    pub auto_remaps: Vec<Remap>,
    /// every remap applied, explicit ones included, most specific first
    pub remaps: Remaps,
    pub remapped: Remapped,
}

impl Transformed {
    pub fn adopted_set(&self) -> HashSet<String> {
        self.adopted.iter().cloned().collect()
    }
}

fn is_loopback(l: &pb::Link) -> bool {
    l.flags & libc::IFF_LOOPBACK as u32 != 0
}

/// The names `adopt` selects among the live links; an explicitly named link the target does
/// not have is an error.
pub fn adopted_names(adopt: &Adopt, live_links: &[pb::Link]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    if adopt.runtime {
        out.extend(
            live_links
                .iter()
                .filter(|l| !is_loopback(l))
                .map(|l| l.name.clone()),
        );
    }
    for n in &adopt.links {
        if !live_links.iter().any(|l| &l.name == n) {
            return Err(NetstateError::invalid(format!(
                "adopt link {n}: the target has no link of that name"
            )));
        }
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    Ok(out)
}

/// Adopts and remaps in `snap`, given what the target holds now.
pub fn apply(
    snap: &mut Snapshot,
    live_links: &[pb::Link],
    live_addresses: &[pb::Address],
    adopt: &Adopt,
    explicit: &[Remap],
) -> Result<Transformed> {
    let names = adopted_names(adopt, live_links)?;
    let saved_links: HashSet<&str> = snap.links.iter().map(|l| l.name.as_str()).collect();
    let adopted: Vec<String> = names
        .into_iter()
        .filter(|n| saved_links.contains(n.as_str()))
        .collect();
    let explicit_m = Remaps::new(explicit.to_vec());
    let auto = auto_remaps(&snap.addresses, live_addresses, &adopted, &explicit_m);
    let remaps = Remaps::new(explicit.iter().chain(&auto).cloned().collect());
    let remapped = objects::remap_snapshot(snap, &remaps);
    Ok(Transformed {
        adopted,
        auto_remaps: auto,
        remaps,
        remapped,
    })
}

fn ip(b: &[u8]) -> Option<IpAddr> {
    remap::ip_of(b)
}

fn is_link_local(a: IpAddr) -> bool {
    matches!(a, IpAddr::V6(v) if v.segments()[0] & 0xffc0 == 0xfe80)
}

/// For each adopted link and address family: the saved address the runtime's new one
/// replaces (see the module notes).
pub fn auto_remaps(
    saved: &[pb::Address],
    live: &[pb::Address],
    adopted: &[String],
    explicit: &Remaps,
) -> Vec<Remap> {
    let mut out = Vec::new();
    let by_dev = |v: &[pb::Address], dev: &str, v4: bool| -> Vec<(IpAddr, u32, bool)> {
        v.iter()
            .filter(|a| a.ifname == dev)
            .filter_map(|a| {
                let l = ip(crate::addr::local_of(a))?;
                (l.is_ipv4() == v4 && !is_link_local(l)).then_some((
                    l,
                    a.prefix_len,
                    a.flags & crate::addr::IFA_F_SECONDARY != 0,
                ))
            })
            .collect()
    };
    for dev in adopted {
        for v4 in [true, false] {
            let s = by_dev(saved, dev, v4);
            let l = by_dev(live, dev, v4);
            let live_set: HashSet<IpAddr> = l.iter().map(|x| x.0).collect();
            // the saved addresses as the explicit remaps leave them: a live address an
            // explicit remap already accounts for is not a new one
            let saved_set: HashSet<IpAddr> = s
                .iter()
                .map(|x| explicit.host(x.0).unwrap_or(x.0))
                .collect();
            let mut old: Vec<_> = s
                .iter()
                .filter(|x| !live_set.contains(&x.0) && !explicit.covers(x.0))
                .collect();
            let mut new: Vec<_> = l.iter().filter(|x| !saved_set.contains(&x.0)).collect();
            // primaries first, order kept otherwise
            old.sort_by_key(|x| x.2);
            new.sort_by_key(|x| x.2);
            let Some(n) = new.first() else { continue };
            let in_subnet = old.iter().find(|o| {
                ipnetwork::IpNetwork::new(o.0, o.1 as u8).is_ok_and(|net| net.contains(n.0))
            });
            let Some(o) = in_subnet.or(old.first()) else {
                continue;
            };
            if let Ok(r) = Remap::host(o.0, n.0) {
                out.push(r);
            }
        }
    }
    out
}

/// For diff: the adopted links' records are the runtime's, not the image's.
pub fn drop_adopted_links(links: &mut Vec<pb::Link>, adopted: &HashSet<String>) -> usize {
    let before = links.len();
    links.retain(|l| !adopted.contains(&l.name));
    before - links.len()
}

/// The remap an `--adopt` of each conflicting link would bring, for hints.
pub fn would_remap(
    saved: &[pb::Address],
    live: &[pb::Address],
    links: &[String],
) -> HashMap<String, Vec<Remap>> {
    let mut out = HashMap::new();
    for l in links {
        let r = auto_remaps(saved, live, std::slice::from_ref(l), &Remaps::default());
        if !r.is_empty() {
            out.insert(l.clone(), r);
        }
    }
    out
}

#[cfg(test)]
mod tests;
