//! Capture: namespace-wide keys from `/proc`, per-device keys from the link and neighbour
//! table dumps.

use std::collections::HashMap;

use crhook_proto as pb;
use netlink_packet_core::{Emitable, Nla};
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, LinkAttribute, LinkMessage,
};
use netlink_packet_route::neighbour_table::{NeighbourTableAttribute, NeighbourTableMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::procfs;
use super::tables::{self, NDTPA_IFINDEX};
use crate::error::Result;
use crate::nl::Nl;

/// One device's netlink view: the conf arrays as the kernel laid them out, and the neigh
/// parameters by `NDTPA_*` type.
#[derive(Default)]
struct Dev {
    name: String,
    inet: Option<Vec<i32>>,
    inet6: Option<Vec<i32>>,
    neigh4: Option<HashMap<u16, u64>>,
    neigh6: Option<HashMap<u16, u64>>,
}

/// Every key of the calling thread's namespace. Run it on the namespace thread.
pub fn capture(nl: &mut Nl, link_dump: Option<&[LinkMessage]>) -> Result<Vec<pb::Sysctl>> {
    let mut out = procfs::walk(nl.netns(), true)?;
    out.extend(per_device(nl, link_dump, false)?);
    Ok(out)
}

/// Reference capture that reads every key from `/proc`, per-device ones included: the same
/// keys and values as [`capture`], about 30 times slower at a few hundred links. For tests
/// and benchmarks.
pub fn capture_proc_walk(netns: &str) -> Result<Vec<pb::Sysctl>> {
    procfs::walk(netns, false)
}

/// Per-device keys of every device in the link dump; with `early_only`, only the keys that
/// must be set before addresses exist ([`super::EARLY`]).
pub(crate) fn per_device(
    nl: &mut Nl,
    link_dump: Option<&[LinkMessage]>,
    early_only: bool,
) -> Result<Vec<pb::Sysctl>> {
    let owned;
    let links = match link_dump {
        Some(l) => l,
        None => {
            owned = dump_links(nl)?;
            &owned
        }
    };
    let mut devs: Vec<Dev> = Vec::with_capacity(links.len());
    let mut by_index: HashMap<u32, usize> = HashMap::with_capacity(links.len());
    for l in links {
        by_index.insert(l.header.index, devs.len());
        devs.push(dev_from_link(l));
    }
    if !early_only {
        neigh_params(nl, &by_index, &mut devs)?;
    }
    let want = |fam: &str, dir: &str, name: &str| !early_only || super::is_early(fam, dir, name);

    let mut out = Vec::new();
    for (fam, dir) in [
        ("ipv4", "conf"),
        ("ipv6", "conf"),
        ("ipv4", "neigh"),
        ("ipv6", "neigh"),
    ] {
        let has = |d: &Dev| match (fam, dir) {
            ("ipv4", "conf") => d.inet.is_some(),
            ("ipv6", "conf") => d.inet6.is_some(),
            ("ipv4", _) => d.neigh4.is_some(),
            _ => d.neigh6.is_some(),
        };
        let Some(names) = template(fam, dir, devs.iter().filter(|d| has(d)), nl.netns())? else {
            continue;
        };
        let names: Vec<&String> = names
            .iter()
            .filter(|n| want(fam, dir, n) && !procfs::is_excluded(&[fam, dir, "x", n.as_str()]))
            .collect();
        for d in devs.iter().filter(|d| has(d)) {
            for name in &names {
                let path = vec![
                    fam.to_string(),
                    dir.to_string(),
                    d.name.clone(),
                    (*name).clone(),
                ];
                let value = match netlink_value(d, fam, dir, name) {
                    Some(v) => v,
                    // no exact netlink counterpart: the file itself
                    None => match procfs::read(&procfs::proc_path(&path)) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::debug!(
                                "sysctl {} in {} not readable: {e}",
                                path.join("/"),
                                nl.netns()
                            );
                            continue;
                        }
                    },
                };
                out.push(pb::Sysctl { path, value });
            }
        }
    }
    Ok(out)
}

pub(crate) fn dump_links(nl: &mut Nl) -> Result<Vec<LinkMessage>> {
    Ok(nl
        .dump(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            "dump links for sysctls",
        )?
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

/// The names of the key files of one device's directory: every device of a family has the
/// same set (one sysctl template per family), so the first device that has a directory
/// speaks for all. `None` when no device has one (no such family in this namespace).
fn template<'a>(
    fam: &str,
    dir: &str,
    mut devs: impl Iterator<Item = &'a Dev>,
    netns: &str,
) -> Result<Option<Vec<String>>> {
    devs.try_fold(None, |found, d| {
        if found.is_some() {
            return Ok(found);
        }
        procfs::list_keys(&[fam.to_string(), dir.to_string(), d.name.clone()], netns)
    })
}

fn dev_from_link(l: &LinkMessage) -> Dev {
    let mut d = Dev::default();
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => d.name = n.clone(),
            LinkAttribute::AfSpecUnspec(specs) => {
                for s in specs {
                    match s {
                        AfSpecUnspec::Inet(v) => {
                            for x in v {
                                if let AfSpecInet::DevConf(c) = x {
                                    d.inet = Some(to_ints(c));
                                }
                            }
                        }
                        AfSpecUnspec::Inet6(v) => {
                            for x in v {
                                if let AfSpecInet6::DevConf(c) = x {
                                    d.inet6 = Some(to_ints(c));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    d
}

/// The crate parses the conf arrays into named structs; emitting them gives back the
/// kernel's array layout (up to the last slot the crate knows), which the index tables read.
fn to_ints(c: &impl Emitable) -> Vec<i32> {
    let mut b = vec![0u8; c.buffer_len()];
    c.emit(&mut b);
    b.chunks_exact(4)
        .map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// Per-device neigh parameters from `RTM_GETNEIGHTBL`: one `NDTA_PARMS` per device that
/// carries `NDTPA_IFINDEX` (the table's own defaults carry none and are skipped).
fn neigh_params(nl: &mut Nl, by_index: &HashMap<u32, usize>, devs: &mut [Dev]) -> Result<()> {
    let msgs = nl.dump(
        RouteNetlinkMessage::GetNeighbourTable(NeighbourTableMessage::default()),
        "dump neighbour tables for sysctls",
    )?;
    for m in msgs {
        let RouteNetlinkMessage::NewNeighbourTable(t) = m else {
            continue;
        };
        let v6 = match t.header.family {
            AddressFamily::Inet => false,
            AddressFamily::Inet6 => true,
            _ => continue,
        };
        for a in &t.attributes {
            let NeighbourTableAttribute::Parms(params) = a else {
                continue;
            };
            let mut vals = HashMap::with_capacity(params.len());
            for p in params {
                // values are u32 or u64 (msecs); read them generically so unknown
                // attributes do not need a match arm
                let mut b = vec![0u8; p.value_len()];
                p.emit_value(&mut b);
                let v = match b.len() {
                    4 => u64::from(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                    8 => u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                    _ => continue,
                };
                vals.insert(p.kind(), v);
            }
            let Some(ifindex) = vals.get(&NDTPA_IFINDEX).copied() else {
                continue;
            };
            let Some(&i) = u32::try_from(ifindex).ok().and_then(|x| by_index.get(&x)) else {
                continue;
            };
            if v6 {
                devs[i].neigh6 = Some(vals);
            } else {
                devs[i].neigh4 = Some(vals);
            }
        }
    }
    Ok(())
}

/// The `/proc` text of a per-device key from netlink, if the tables map it exactly and the
/// kernel sent that slot.
fn netlink_value(d: &Dev, fam: &str, dir: &str, name: &str) -> Option<String> {
    match (fam, dir) {
        ("ipv4", "conf") => {
            let i = tables::ipv4_slot(name)?;
            d.inet
                .as_ref()?
                .get(i)
                .map(|v| tables::Unit::Int.format(i64::from(*v)))
        }
        ("ipv6", "conf") => {
            let (i, unit) = tables::ipv6_slot(name)?;
            d.inet6.as_ref()?.get(i).map(|v| unit.format(i64::from(*v)))
        }
        (_, "neigh") => {
            let (ty, unit) = tables::neigh_attr(name)?;
            let params = if fam == "ipv4" {
                d.neigh4.as_ref()
            } else {
                d.neigh6.as_ref()
            }?;
            let v = *params.get(&ty)?;
            // msecs of an int jiffies value and small counters: they fit an i64
            i64::try_from(v).ok().map(|v| unit.format(v))
        }
        _ => None,
    }
}
