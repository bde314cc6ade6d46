//! Rebuilding the far end of each veth restore recreates in another namespace: its sysctls
//! and addresses once the pair exists, its routes and neighbours once it is up (an IPv4
//! route through a down device is refused). What was saved under the old peer name follows
//! the name the peer gets now (`--external` may rename it). Every change is journaled; the
//! pair's own deletion on rollback would take them too, but the journal undoes them first.

use crhook_proto as pb;

use super::{LinkPlan, Socks};
use crate::family::{self, Addresses, Neighbours, Routes};
use crate::ifmap::IfMap;
use crate::journal::Journal;
use crate::link::capture::link_name;

/// The far end saved with link `l`, renamed to `name`.
fn saved_far_end(l: &pb::Link, name: &str) -> Option<(u32, pb::FarEnd)> {
    let Some(pb::link::Info::Veth(v)) = &l.info else {
        return None;
    };
    let mut f = v.far_end.clone()?;
    for a in &mut f.addresses {
        a.ifname = name.to_string();
    }
    for r in &mut f.routes {
        r.oif_name = name.to_string();
    }
    for n in &mut f.neighbours {
        n.ifname = name.to_string();
    }
    for s in &mut f.sysctls {
        if let Some(dev) = s.path.get_mut(2) {
            *dev = name.to_string();
        }
    }
    Some((v.peer_ifindex, f))
}

fn err(e: crate::error::NetstateError) -> Vec<String> {
    vec![crate::error::chain(&e)]
}

/// The peer's namespace mapped by name: the saved peer index to the live one.
fn peer_map(
    socks: &mut Socks,
    sock: crate::journal::Sock,
    saved_index: u32,
    name: &str,
) -> std::result::Result<IfMap, Vec<String>> {
    let live = socks.links_refresh(sock).map_err(err)?;
    Ok(IfMap::by_name(
        [(saved_index, name.to_string())],
        live.iter().map(|m| (m.header.index, link_name(m))),
    ))
}

/// When a part of the far end can be rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// the pair exists: sysctls, then addresses
    Created,
    /// the far end is up: routes, then neighbours (an IPv4 route through a down device is
    /// refused)
    Up,
}

/// Rebuilds `phase`'s part of every far end restore recreates.
pub fn rebuild(
    saved: &[pb::Link],
    p: &LinkPlan,
    socks: &mut Socks,
    journal: &mut Journal,
    phase: Phase,
) -> std::result::Result<(), Vec<String>> {
    for (&i, pp) in &p.peers {
        let Some((index, f)) = saved_far_end(&saved[i], &pp.name) else {
            continue;
        };
        match phase {
            Phase::Created => {
                if !f.sysctls.is_empty() {
                    let ns = socks.ns_of(pp.sock).map_err(err)?;
                    let sysctls = f.sysctls.clone();
                    let (n, errors) = ns.run(move || Ok(write_sysctls(&sysctls))).map_err(err)?;
                    for _ in 0..n {
                        journal.made(1);
                    }
                    if !errors.is_empty() {
                        return Err(errors);
                    }
                    journal.check().map_err(|e| vec![e])?;
                }
                if !f.addresses.is_empty() {
                    let ifs = peer_map(socks, pp.sock, index, &pp.name)?;
                    let nl = socks.get(pp.sock).map_err(err)?;
                    family::apply::<Addresses>(nl, pp.sock, &f.addresses, &ifs, journal)?;
                }
            }
            Phase::Up if f.routes.is_empty() && f.neighbours.is_empty() => {}
            Phase::Up => {
                let ifs = peer_map(socks, pp.sock, index, &pp.name)?;
                let nl = socks.get(pp.sock).map_err(err)?;
                let mut routes = f.routes.clone();
                crate::route::restore_order(&mut routes);
                family::apply::<Routes>(nl, pp.sock, &routes, &ifs, journal)?;
                family::apply::<Neighbours>(nl, pp.sock, &f.neighbours, &ifs, journal)?;
            }
        }
    }
    Ok(())
}

/// Writes each sysctl whose live value differs (on this thread, inside the peer's
/// namespace): disable_ipv6 first, since it removes IPv6 addresses when set; the number
/// written and every error.
fn write_sysctls(s: &[pb::Sysctl]) -> (usize, Vec<String>) {
    let mut order: Vec<&pb::Sysctl> = s.iter().collect();
    order.sort_by_key(|x| x.path.last().map(String::as_str) != Some("disable_ipv6"));
    let (mut n, mut errors) = (0, Vec::new());
    for x in order {
        let mut path = std::path::PathBuf::from("/proc/sys/net");
        // names are path components, never paths (an interface name may hold a dot)
        if x.path
            .iter()
            .any(|c| c.is_empty() || c.contains('/') || c == "..")
        {
            errors.push(format!("far-end sysctl {:?}: not a sysctl path", x.path));
            continue;
        }
        path.extend(&x.path);
        match std::fs::read_to_string(&path) {
            Ok(v) if v.trim() == x.value => {}
            _ => match std::fs::write(&path, &x.value) {
                Ok(()) => n += 1,
                Err(e) => errors.push(format!("write far-end sysctl {}: {e}", path.display())),
            },
        }
    }
    (n, errors)
}
