//! Apply: write saved keys whose live value differs, with an undo log.

use std::io;

use crhook_proto as pb;

use super::files::{Cursor, FileKeys};
use super::live::Live;
use super::plan::{Item, PathSet, Plan};
use super::procfs::{self, io_error, proc_path};
use super::saved::Saved;
use super::tables::prints_as;
use super::{normalized, Phase};
use crate::error::{NetstateError, Result};
use crate::nl::Nl;

/// Write passes before giving up on keys that do not keep their value: the first over the
/// whole plan, the second over what writes may have changed (a later write changing a key
/// back by propagation), the third a margin; a last pass only checks.
const ROUNDS: usize = 3;

/// What [`apply`] changed, as (path, previous value) in write order. [`SysctlUndo::undo`]
/// puts the previous values back in reverse order.
#[derive(Debug, Default)]
pub struct SysctlUndo {
    netns: String,
    entries: Vec<(Vec<String>, String)>,
    /// the restore journal each previous value is written to before its key is
    log: Option<crate::journal::Log>,
}

impl SysctlUndo {
    fn new(netns: &str) -> Self {
        SysctlUndo {
            netns: netns.to_string(),
            entries: Vec::new(),
            log: None,
        }
    }

    /// Writes every previous value back, newest first, skipping keys that already hold it;
    /// on the namespace thread. Continues past failures and returns them all.
    pub fn undo(self) -> Vec<NetstateError> {
        let netns = self.netns;
        self.entries
            .into_iter()
            .rev()
            .filter_map(|(path, old)| write_back(&path, &old, &netns).err())
            .collect()
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

    /// Logs a key's previous value: in the restore journal first, before the key is written.
    fn push(&mut self, path: Vec<String>, old: String) -> Result<()> {
        if let Some(log) = &self.log {
            log.sysctl(crate::journal::Sock::Target, &path, &old)?;
        }
        self.entries.push((path, old));
        Ok(())
    }
}

/// Writes `old` back to sysctl `path` (on the namespace's thread) unless it holds it already
/// or is gone (its device deleted by an earlier undo).
pub(crate) fn write_back(path: &[String], old: &str, netns: &str) -> Result<()> {
    let p = proc_path(path);
    match procfs::read(&p) {
        Ok(cur) if same(&cur, old) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        _ => {}
    }
    procfs::write(&p, old).map_err(|e| {
        io_error(
            &format!("restore previous value {old:?} of sysctl"),
            path,
            netns,
            e,
        )
    })
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
    apply_journaled(nl, &Saved::from_pb(saved), phase, rename, None)
}

/// [`apply_with`] writing each previous value to the restore journal `log` before its key.
#[allow(clippy::result_large_err)]
pub(crate) fn apply_journaled(
    nl: &mut Nl,
    saved: &Saved,
    phase: Phase,
    rename: &dyn Fn(&str) -> Option<String>,
    log: Option<crate::journal::Log>,
) -> Result<SysctlUndo, (NetstateError, SysctlUndo)> {
    let mut undo = SysctlUndo::new(nl.netns());
    undo.log = log;
    match run(nl, saved, phase, rename, &mut undo) {
        Ok(()) => Ok(undo),
        Err(e) => Err((e, undo)),
    }
}

fn run(
    nl: &mut Nl,
    saved: &Saved,
    phase: Phase,
    rename: &dyn Fn(&str) -> Option<String>,
    undo: &mut SysctlUndo,
) -> Result<()> {
    let plan = Plan::new(saved, phase, rename)?;
    if plan.is_empty() {
        return Ok(());
    }
    let netns = nl.netns().to_string();
    // keys whose value a write may have changed since it was read or dumped
    let mut recheck = PathSet::new(&plan);
    // Keys a write made after the dump changed besides itself (`stable_secret` sets
    // `addr_gen_mode`): their dumped value is stale.
    let mut stale = PathSet::new(&plan);
    // namespace-wide keys come first in the plan; they propagate to devices
    for it in plan.items().take_while(|it| it.dev().is_none()) {
        settle(&plan, it, &netns, undo, &mut recheck, None)?;
    }
    if plan.items().any(|it| it.dev().is_some()) {
        // Per-device values come from one dump, taken after the namespace-wide writes, and
        // for the names netlink does not carry, from their files, read from now on by a
        // second thread and by this one when it catches up (`files`). A key shown equal
        // needs no read here.
        let keys = FileKeys::new(&plan);
        std::thread::scope(|s| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::channel();
            let keys = &keys;
            // a chunk or less (a small namespace, or the Early names): not worth a thread
            if keys.chunks() > 1 {
                s.spawn(move || keys.read_ahead(&tx));
            }
            let live = Live::read(nl, &plan)?;
            let mut files = Cursor::new(keys, rx);
            for it in plan.items().skip_while(|it| it.dev().is_none()) {
                let file = if files.is_file_key(it) {
                    files.next()
                } else {
                    None
                };
                let equal = match (live.get(it), &file) {
                    (Some(v), _) => prints_as(plan.value(it), v),
                    (None, Some(f)) => same(f, plan.value(it)),
                    (None, None) => false,
                };
                if equal && !stale.contains(&plan, it) {
                    continue;
                }
                settle(&plan, it, &netns, undo, &mut recheck, Some(&mut stale))?;
            }
            Ok(())
        })?;
    }
    // Only what a write could have changed is read again: the written keys and the keys
    // their writes change besides (`side_effects`).
    for round in 1..=ROUNDS {
        if recheck.is_empty() {
            return Ok(());
        }
        let mut next = PathSet::new(&plan);
        for it in plan.items().filter(|it| recheck.contains(&plan, it)) {
            let path = plan.path(it);
            let cur = read_live(&path, &netns)?;
            if cur.as_deref().is_some_and(|c| same(c, plan.value(it))) {
                continue;
            }
            if round == ROUNDS {
                return Err(NetstateError::Invalid {
                    what: format!(
                        "sysctl {} in {netns} reads {:?} after writing {:?}",
                        path.join("/"),
                        cur.unwrap_or_default(),
                        plan.value(it)
                    ),
                });
            }
            for p in write_logged(&path, plan.value(it), cur, &netns, undo)? {
                next.insert(&plan, p);
            }
        }
        recheck = next;
    }
    Ok(())
}

/// Reads the key right before writing it (an earlier write may have changed it) and writes
/// it if it differs, noting what the write may have changed: in `recheck`, and in `stale`
/// (when per-device values were dumped already) what besides the key itself.
fn settle(
    plan: &Plan<'_>,
    it: &Item,
    netns: &str,
    undo: &mut SysctlUndo,
    recheck: &mut PathSet,
    mut stale: Option<&mut PathSet>,
) -> Result<()> {
    let path = plan.path(it);
    let cur = read_live(&path, netns)?;
    if cur.as_deref().is_some_and(|c| same(c, plan.value(it))) {
        return Ok(());
    }
    for p in write_logged(&path, plan.value(it), cur, netns, undo)? {
        // the written key itself is not read again in this pass
        if let Some(stale) = stale.as_deref_mut().filter(|_| p != path) {
            stale.insert(plan, p.clone());
        }
        recheck.insert(plan, p);
    }
    Ok(())
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

/// Writes one key, logging its previous value and those of the keys its write changes
/// besides; returns the paths whose value the write may have changed, its own included.
fn write_logged(
    path: &[String],
    value: &str,
    cur: Option<String>,
    netns: &str,
    undo: &mut SysctlUndo,
) -> Result<Vec<Vec<String>>> {
    // logged before the key itself, so undo (newest first) restores the key, then what its
    // write changed besides
    let mut changed = side_effects(path);
    for p in &changed {
        if let Ok(v) = procfs::read(&proc_path(p)) {
            undo.push(p.clone(), v)?;
        }
    }
    match cur {
        Some(old) => undo.push(path.to_vec(), old)?,
        // an unset stable_secret cannot be unset again: nothing to put back
        None => tracing::debug!(
            "sysctl {} in {netns} was unreadable before write; no undo",
            path.join("/")
        ),
    }
    procfs::write(&proc_path(path), value)
        .map_err(|e| io_error(&format!("write {value:?} to sysctl"), path, netns, e))?;
    changed.push(path.to_vec());
    Ok(changed)
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

    #[test]
    fn side_effects_of_forwarding_include_accept_redirects() {
        let fx = side_effects(&strings(&["ipv4", "ip_forward"]));
        assert!(fx.contains(&strings(&["ipv4", "conf", "all", "accept_redirects"])));
        let fx = side_effects(&strings(&["ipv6", "conf", "v.1", "stable_secret"]));
        assert_eq!(fx, vec![strings(&["ipv6", "conf", "v.1", "addr_gen_mode"])]);
        assert!(side_effects(&strings(&["ipv4", "conf", "v.1", "rp_filter"])).is_empty());
    }
}
