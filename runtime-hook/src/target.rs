//! TARGET resolution: `--netns PATH`, `--pid PID`, or `--bundle DIR [--id ID] [--root DIR]`.
//!
//! A bundle names its namespace in config.json when the runtime joined an existing one
//! (`linux.namespaces[type=network].path`); when the runtime created it, only the running
//! container knows it, so runc's state (`ROOT/ID/state.json`, `init_process_pid`) gives the
//! pid. runc records the init process's start time there too, and a pid whose start time
//! differs belongs to another process: using its namespace would capture the wrong one.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use crhook_netstate::Target;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cli::TargetArgs;

/// A resolved target, and the bundle it came from (its `netstate/` is the default images).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub target: Target,
    pub bundle: Option<PathBuf>,
}

impl Resolved {
    /// `--images`, else `<bundle>/netstate`; clap already refuses neither being present.
    pub fn images(&self, images: Option<&Path>) -> anyhow::Result<PathBuf> {
        match (images, &self.bundle) {
            (Some(dir), _) => Ok(dir.to_path_buf()),
            (None, Some(bundle)) => Ok(bundle.join("netstate")),
            (None, None) => bail!("no image directory: pass --images DIR"),
        }
    }
}

pub fn resolve(args: &TargetArgs) -> anyhow::Result<Resolved> {
    if let Some(path) = &args.which.netns {
        return Ok(Resolved {
            target: Target::Netns(path.clone()),
            bundle: None,
        });
    }
    if let Some(pid) = args.which.pid {
        return Ok(Resolved {
            target: Target::Pid(pid),
            bundle: None,
        });
    }
    let Some(bundle) = &args.which.bundle else {
        bail!("no target: pass --netns PATH, --pid PID or --bundle DIR");
    };
    let target = bundle_target(bundle, args.id.as_deref(), &args.root)?;
    Ok(Resolved {
        target,
        bundle: Some(bundle.clone()),
    })
}

fn bundle_target(bundle: &Path, id: Option<&str>, root: &Path) -> anyhow::Result<Target> {
    let config = bundle.join("config.json");
    if let Some(path) = netns_path_in_config(&config)? {
        return Ok(Target::Netns(path));
    }
    let Some(id) = id else {
        bail!(
            "bundle {}: config.json names no network namespace path; pass --id ID to use the running container's",
            bundle.display()
        );
    };
    let pid = runc_init_pid(root, id)?;
    Ok(Target::Pid(pid))
}

/// The path of the bundle's network namespace, when config.json sets one.
pub fn netns_path_in_config(config: &Path) -> anyhow::Result<Option<PathBuf>> {
    let spec =
        Spec::load(config).with_context(|| format!("read bundle config {}", config.display()))?;
    Ok(network_namespace_path(&spec))
}

pub fn network_namespace_path(spec: &Spec) -> Option<PathBuf> {
    let namespaces = spec.linux().as_ref()?.namespaces().as_ref()?;
    namespaces
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::Network)
        .and_then(|ns| ns.path().clone())
        .filter(|p| !p.as_os_str().is_empty())
}

/// `init_process_pid` of container `id` in runc's state directory, checked against the
/// process's start time so a recycled pid is refused.
pub fn runc_init_pid(root: &Path, id: &str) -> anyhow::Result<u32> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        bail!("container id {id:?}: not a valid container id");
    }
    let state_path = root.join(id).join("state.json");
    let text = fs::read_to_string(&state_path).with_context(|| {
        format!(
            "read runtime state of container {id} ({})",
            state_path.display()
        )
    })?;
    let state: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parse runtime state {}", state_path.display()))?;
    let pid = state
        .get("init_process_pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
        .with_context(|| {
            format!(
                "runtime state {}: no init_process_pid",
                state_path.display()
            )
        })?;
    if let Some(want) = state
        .get("init_process_start")
        .and_then(serde_json::Value::as_u64)
    {
        let got = process_start_time(pid)
            .with_context(|| format!("container {id}: init process {pid} is not running"))?;
        if got != want {
            bail!("container {id}: init process {pid} is gone (the pid now belongs to another process)");
        }
    }
    Ok(pid)
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot). The command name, field
/// 2, may hold spaces and parentheses, so fields are counted after its last ')'.
fn process_start_time(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed stat")?;
    // `after` starts at field 3 (state); field 22 is the 20th from there
    after
        .split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("{path}: no start time"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_parses() {
        let pid = std::process::id();
        let t = process_start_time(pid);
        assert!(t.is_ok(), "{t:?}");
    }

    #[test]
    fn bad_ids_are_refused() {
        for id in ["", "..", "a/b"] {
            let e = runc_init_pid(Path::new("/nonexistent"), id);
            assert!(e.is_err());
        }
    }
}
