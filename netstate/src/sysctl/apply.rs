//! Apply: write saved keys whose live value differs, with an undo log.

use std::collections::HashMap;
use std::io;

use crhook_proto as pb;

use super::procfs::{self, io_error, proc_path};
use super::{capture, is_early, normalized, Phase, EARLY};
use crate::error::{NetstateError, Result};
use crate::nl::Nl;

/// Passes over the plan before giving up on keys that do not keep their value: the first
/// writes, the second catches keys a later write changed back (propagation), the third is a
/// margin.
const ROUNDS: usize = 3;

/// What [`apply`] changed, as (path, previous value) in write order. [`SysctlUndo::undo`]
/// puts the previous values back in reverse order.
#[derive(Debug, Default)]
pub struct SysctlUndo {
    netns: String,
    entries: Vec<(Vec<String>, String)>,
}

impl SysctlUndo {
    fn new(netns: &str) -> Self {
        SysctlUndo {
            netns: netns.to_string(),
            entries: Vec::new(),
        }
    }

    /// Writes every previous value back, newest first, skipping keys that already hold it;
    /// on the namespace thread. Continues past failures and returns them all.
    pub fn undo(self) -> Vec<NetstateError> {
        let mut errors = Vec::new();
        for (path, old) in self.entries.into_iter().rev() {
            let p = proc_path(&path);
            if matches!(procfs::read(&p), Ok(cur) if same(&cur, &old)) {
                continue;
            }
            if let Err(e) = procfs::write(&p, &old) {
                errors.push(io_error(
                    &format!("restore previous value {old:?} of sysctl"),
                    &path,
                    &self.netns,
                    e,
                ));
            }
        }
        errors
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// (path, previous value) in write order.
    pub fn entries(&self) -> &[(Vec<String>, String)] {
        &self.entries
    }

    /// Appends a later undo log (e.g. Late after Early), so one `undo` reverts both.
    pub fn append(&mut self, mut later: SysctlUndo) {
        self.entries.append(&mut later.entries);
    }

    fn push(&mut self, path: Vec<String>, old: String) {
        self.entries.push((path, old));
    }
}

/// Writes the saved keys of `phase` whose live value differs, on the namespace thread.
/// `rename` maps a saved device name to its live name (identity normally); `None` skips that
/// device's keys on purpose. A key missing in the target is an error naming it. On failure
/// returns the error and the undo log so far; the caller rolls back.
// The error carries the undo log so the caller can roll back; the error path is cold, so
// its size does not matter, and callers destructure the pair directly.
#[allow(clippy::result_large_err)]
pub fn apply(
    saved: &[pb::Sysctl],
    phase: Phase,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Result<SysctlUndo, (NetstateError, SysctlUndo)> {
    let label = std::fs::read_link("/proc/thread-self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "the current network namespace".to_string());
    let mut nl = match Nl::new(&label) {
        Ok(nl) => nl,
        Err(e) => return Err((e, SysctlUndo::new(&label))),
    };
    apply_with(&mut nl, saved, phase, rename)
}

/// [`apply`] with the caller's netlink socket (whose namespace name errors carry).
// The error carries the undo log so the caller can roll back; the error path is cold, so
// its size does not matter, and callers destructure the pair directly.
#[allow(clippy::result_large_err)]
pub fn apply_with(
    nl: &mut Nl,
    saved: &[pb::Sysctl],
    phase: Phase,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Result<SysctlUndo, (NetstateError, SysctlUndo)> {
    let mut undo = SysctlUndo::new(nl.netns());
    match run(nl, saved, phase, rename, &mut undo) {
        Ok(()) => Ok(undo),
        Err(e) => Err((e, undo)),
    }
}

struct Item<'a> {
    /// live path (device renamed)
    path: Vec<String>,
    value: &'a str,
    device: bool,
}

fn run(
    nl: &mut Nl,
    saved: &[pb::Sysctl],
    phase: Phase,
    rename: &dyn Fn(&str) -> Option<String>,
    undo: &mut SysctlUndo,
) -> Result<()> {
    let items = plan(saved, phase, rename)?;
    if items.is_empty() {
        return Ok(());
    }
    for _ in 0..ROUNDS {
        if pass(nl, &items, phase, Some(&mut *undo))?.is_empty() {
            return Ok(());
        }
    }
    let stuck = pass(nl, &items, phase, None)?;
    match stuck.first() {
        None => Ok(()),
        Some(&(i, ref got)) => Err(NetstateError::Invalid {
            what: format!(
                "sysctl {} in {} reads {got:?} after writing {:?}",
                items[i].path.join("/"),
                nl.netns(),
                items[i].value
            ),
        }),
    }
}

/// The keys of `phase` in write order: `ip_forward`, then `conf/all`, `conf/default`,
/// `neigh/default` (they propagate), other namespace-wide keys, then per-device keys, Early
/// ones first in [`EARLY`] order. Early takes the [`EARLY`] names of `ipv6/conf/*`,
/// `all` and `default` included.
fn plan<'a>(
    saved: &'a [pb::Sysctl],
    phase: Phase,
    rename: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Item<'a>>> {
    let mut items: Vec<(usize, Item<'a>)> = Vec::new();
    for s in saved {
        procfs::check_path(&s.path)?;
        let dev = procfs::device_of(&s.path);
        let p: Vec<&str> = s.path.iter().map(String::as_str).collect();
        // conf/all and conf/default of these names are Early too: `all/disable_ipv6` set
        // after addresses exist would flush every device's IPv6 addresses
        let early = p.len() == 4 && is_early(p[0], p[1], p[3]);
        if phase == Phase::Early && !early {
            continue;
        }
        let rank = match (dev, p.as_slice()) {
            (Some(_), [_, _, _, name]) => {
                5 + EARLY
                    .iter()
                    .position(|e| e == name)
                    .filter(|_| early)
                    .unwrap_or(4)
            }
            (_, ["ipv4", "ip_forward"]) => 0,
            (_, [_, "conf", "all", _]) => 1,
            (_, [_, "conf", "default", _]) => 2,
            (_, [_, "neigh", "default", _]) => 3,
            _ => 4,
        };
        let mut path = s.path.clone();
        if let Some(d) = dev {
            match rename(d) {
                Some(live) => path[2] = live,
                None => continue,
            }
        }
        items.push((
            rank,
            Item {
                path,
                value: &s.value,
                device: dev.is_some(),
            },
        ));
    }
    // stable: equal ranks keep the saved order
    items.sort_by_key(|(rank, _)| *rank);
    Ok(items.into_iter().map(|(_, it)| it).collect())
}

/// One pass over the plan. With an undo log it writes every key that differs; without, it
/// only reports them. Returns (item index, live value) of each differing key.
fn pass(
    nl: &mut Nl,
    items: &[Item<'_>],
    phase: Phase,
    mut undo: Option<&mut SysctlUndo>,
) -> Result<Vec<(usize, String)>> {
    let netns = nl.netns().to_string();
    let mut differing = Vec::new();
    let mut view: Option<HashMap<Vec<String>, String>> = None;
    for (i, it) in items.iter().enumerate() {
        if it.device {
            // Per-device values come from one netlink capture, taken after the
            // namespace-wide writes (items are ordered so those come first); only keys that
            // differ there are read from /proc again.
            if view.is_none() {
                let live = capture::per_device(nl, None, phase == Phase::Early)?;
                view = Some(live.into_iter().map(|s| (s.path, s.value)).collect());
            }
            if let Some(v) = view.as_ref().and_then(|m| m.get(it.path.as_slice())) {
                if same(v, it.value) {
                    continue;
                }
            }
        }
        // re-read right before writing: an earlier write may have changed this key
        let cur = read_live(&it.path, &netns)?;
        if cur.as_deref().is_some_and(|c| same(c, it.value)) {
            continue;
        }
        differing.push((i, cur.clone().unwrap_or_default()));
        if let Some(undo) = undo.as_deref_mut() {
            write_logged(&it.path, it.value, cur, &netns, undo)?;
        }
    }
    Ok(differing)
}

/// Equal as sysctl values: the kernel prints tabs where a saved value may have spaces.
fn same(live: &str, saved: &str) -> bool {
    live == saved || normalized(live) == normalized(saved)
}

/// The live value; `None` for a key that exists but does not read (an unset
/// `stable_secret` gives EIO). A key that does not exist is an error naming it.
fn read_live(path: &[String], netns: &str) -> Result<Option<String>> {
    match procfs::read(&proc_path(path)) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(io_error("read sysctl", path, netns, e))
        }
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(None),
        Err(e) => Err(io_error("read sysctl", path, netns, e)),
    }
}

fn write_logged(
    path: &[String],
    value: &str,
    cur: Option<String>,
    netns: &str,
    undo: &mut SysctlUndo,
) -> Result<()> {
    // logged before the key itself, so undo (newest first) restores the key, then what its
    // write changed besides
    for p in side_effects(path) {
        if let Ok(v) = procfs::read(&proc_path(&p)) {
            undo.push(p, v);
        }
    }
    procfs::write(&proc_path(path), value)
        .map_err(|e| io_error(&format!("write {value:?} to sysctl"), path, netns, e))?;
    match cur {
        Some(old) => undo.push(path.to_vec(), old),
        // an unset stable_secret cannot be unset again: nothing to put back
        None => tracing::debug!(
            "sysctl {} in {netns} was unreadable before write; no undo",
            path.join("/")
        ),
    }
    Ok(())
}

/// Other keys a write to `path` changes (kernel: devinet.c `inet_forward_change`,
/// `devinet_copy_dflt_conf`; addrconf.c `addrconf_fixup_forwarding`,
/// `addrconf_disable_ipv6`, `addrconf_sysctl_addr_gen_mode`, `addrconf_sysctl_stable_secret`).
fn side_effects(path: &[String]) -> Vec<Vec<String>> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    match p.as_slice() {
        ["ipv4", "ip_forward"] => {
            out = siblings("ipv4", "conf", "forwarding", None);
            out.push(strings(&["ipv4", "conf", "all", "accept_redirects"]));
        }
        [fam, dir @ ("conf" | "neigh"), this @ ("all" | "default"), name] => {
            out = siblings(fam, dir, name, Some(this));
            if p[..] == ["ipv4", "conf", "all", "forwarding"] {
                out.push(strings(&["ipv4", "conf", "all", "accept_redirects"]));
            }
        }
        ["ipv6", "conf", dev, "stable_secret"] => {
            out.push(strings(&["ipv6", "conf", dev, "addr_gen_mode"]))
        }
        _ => {}
    }
    out
}

/// `fam/dir/*/name` for every directory under `fam/dir` but `skip`.
fn siblings(fam: &str, dir: &str, name: &str, skip: Option<&str>) -> Vec<Vec<String>> {
    let Ok(rd) = std::fs::read_dir(proc_path(&[fam, dir])) else {
        return Vec::new();
    };
    rd.flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|d| Some(d.as_str()) != skip)
        .map(|d| vec![fam.to_string(), dir.to_string(), d, name.to_string()])
        .collect()
}

fn strings(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn s(path: &str, value: &str) -> pb::Sysctl {
        pb::Sysctl {
            path: path.split('/').map(String::from).collect(),
            value: value.into(),
        }
    }

    fn paths(items: &[Item<'_>]) -> Vec<String> {
        items.iter().map(|i| i.path.join("/")).collect()
    }

    #[test]
    fn plan_orders_propagating_keys_first() {
        let saved = vec![
            s("ipv4/conf/v.1/rp_filter", "2"),
            s("core/somaxconn", "1024"),
            s("ipv6/conf/v.1/accept_dad", "0"),
            s("ipv4/conf/default/rp_filter", "1"),
            s("ipv6/conf/v.1/disable_ipv6", "1"),
            s("ipv4/conf/all/rp_filter", "1"),
            s("ipv4/ip_forward", "1"),
            s("ipv6/conf/default/accept_dad", "0"),
            s("ipv6/conf/all/disable_ipv6", "1"),
        ];
        let id = |d: &str| Some(d.to_string());
        let late = plan(&saved, Phase::Late, &id).unwrap();
        assert_eq!(
            paths(&late),
            [
                "ipv4/ip_forward",
                "ipv4/conf/all/rp_filter",
                "ipv6/conf/all/disable_ipv6",
                "ipv4/conf/default/rp_filter",
                "ipv6/conf/default/accept_dad",
                "core/somaxconn",
                "ipv6/conf/v.1/disable_ipv6",
                "ipv6/conf/v.1/accept_dad",
                "ipv4/conf/v.1/rp_filter",
            ]
        );
        let early = plan(&saved, Phase::Early, &id).unwrap();
        assert_eq!(
            paths(&early),
            [
                "ipv6/conf/all/disable_ipv6",
                "ipv6/conf/default/accept_dad",
                "ipv6/conf/v.1/disable_ipv6",
                "ipv6/conf/v.1/accept_dad"
            ]
        );
    }

    #[test]
    fn plan_renames_devices_and_skips_unmapped_ones() {
        let saved = vec![
            s("ipv4/conf/eth0.100/rp_filter", "2"),
            s("ipv4/conf/gone/rp_filter", "2"),
        ];
        let rename = |d: &str| match d {
            "eth0.100" => Some("eth1.100".to_string()),
            _ => None,
        };
        let late = plan(&saved, Phase::Late, &rename).unwrap();
        assert_eq!(paths(&late), ["ipv4/conf/eth1.100/rp_filter"]);
    }

    #[test]
    fn plan_rejects_paths_leaving_proc_sys_net() {
        let saved = vec![s("../../sysrq-trigger", "b")];
        let e = plan(&saved, Phase::Late, &|d| Some(d.to_string()))
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "invalid sysctl key [\"..\", \"..\", \"sysrq-trigger\"] in image"
        );
    }

    #[test]
    fn side_effects_of_forwarding_include_accept_redirects() {
        let fx = side_effects(&strings(&["ipv4", "ip_forward"]));
        assert!(fx.contains(&strings(&["ipv4", "conf", "all", "accept_redirects"])));
        let fx = side_effects(&strings(&["ipv6", "conf", "v.1", "stable_secret"]));
        assert_eq!(fx, vec![strings(&["ipv6", "conf", "v.1", "addr_gen_mode"])]);
        assert!(side_effects(&strings(&["ipv4", "conf", "v.1", "rp_filter"])).is_empty());
    }
}
