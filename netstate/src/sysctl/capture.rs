//! Capture: namespace-wide keys from `/proc`, per-device keys from the link and neighbour
//! table dumps.

use crhook_proto as pb;
use netlink_packet_route::link::LinkMessage;

use super::dump::{self, Dev};
use super::procfs;
use super::tables;
use crate::error::Result;
use crate::nl::Nl;

/// Every key of the calling thread's namespace. Run it on the namespace thread.
pub fn capture(nl: &mut Nl, link_dump: Option<&[LinkMessage]>) -> Result<Vec<pb::Sysctl>> {
    let mut out = procfs::walk(nl.netns(), true)?;
    out.extend(per_device(nl, link_dump)?);
    Ok(out)
}

/// Reference capture that reads every key from `/proc`, per-device ones included: the same
/// keys and values as [`capture`], about 30 times slower at a few hundred links. For tests
/// and benchmarks.
pub fn capture_proc_walk(netns: &str) -> Result<Vec<pb::Sysctl>> {
    procfs::walk(netns, false)
}

/// Per-device keys of every device in the link dump.
fn per_device(nl: &mut Nl, link_dump: Option<&[LinkMessage]>) -> Result<Vec<pb::Sysctl>> {
    let devs = dump::devices(nl, link_dump, true)?;

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
            .filter(|n| !procfs::is_excluded(&[fam, dir, "x", n.as_str()]))
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

/// The names of the key files of one device's directory: every device of a family has the
/// same set (one sysctl template per family), so the first device that has a directory
/// speaks for all. `None` when no device has one (no such family in this namespace).
pub(super) fn template<'a>(
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
