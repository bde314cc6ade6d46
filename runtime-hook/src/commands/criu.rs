//! CRIU action-script mode: crhook run with no subcommand while `CRTOOLS_SCRIPT_ACTION` is set.
//!
//! CRIU runs the `action-script` of its configuration at fixed points with the action in
//! `CRTOOLS_SCRIPT_ACTION`, the image directory in `CRTOOLS_IMAGE_DIR` (often a
//! `/proc/<criu>/fd/<n>` link to the directory CRIU holds open) and the root task in
//! `CRTOOLS_INIT_PID`. `runc checkpoint` makes CRIU treat the network namespace as empty, so
//! this is where the namespace's contents are carried:
//!
//! - `network-lock` (dump) or `pre-dump`, whichever fires first: capture the namespace of
//!   CRTOOLS_INIT_PID into `$CRTOOLS_IMAGE_DIR/netstate/`. At `network-lock` crhook also
//!   locks the namespace and leaves it locked, so nothing changes between capture and the
//!   moment CRIU freezes the tasks; `pre-dump` leaves the task running, so no lock there.
//!   CRIU 4.1 fires `pre-dump` at the start of every dump too, before `network-lock`, so
//!   with runc the capture happens there; both come before CRIU installs its own lock rules,
//!   which therefore never reach the images.
//!   When CRIU was given a parent dump (`runc checkpoint --pre-dump` first, then
//!   `--parent-path`), its image directory links it as `parent`; if a pre-dump left images
//!   in `parent/netstate/`, this capture writes a child image of them (see
//!   `crhook_netstate::incremental`), so the chain of pre-dumps becomes a chain of images.
//! - `setup-namespaces` (restore): restore into the namespace of CRTOOLS_INIT_PID.
//! - `network-unlock`: remove crhook's lock.
//! - `pre-resume` (restore): remove what CRIU's own lock left in the restored namespace.
//!   CRIU locks it with iptables after `setup-namespaces` and unlocks it after
//!   `network-unlock`; under iptables-nft the unlock leaves the empty base chains (and an
//!   empty `filter` table) the lock created. `pre-resume` is the first action after that
//!   unlock, and the last one that can still read the images: CRIU closes the image directory
//!   before `post-resume`, so `CRTOOLS_IMAGE_DIR` no longer resolves there. The tasks are
//!   still stopped, so nothing in the container changes its firewall meanwhile. Only what
//!   the images do not have goes (see `crhook_netstate::firewall::tidy`); no images, images
//!   without a firewall part, or no `CRTOOLS_*` variables: nothing. A dump never fires
//!   `pre-resume`.
//! - every other action: nothing.
//!
//! runc's RPC mode makes CRIU fire actions twice (once as a notification to runc, once as the
//! configured script), so every action is idempotent: a complete image directory is not
//! captured again, restoring the same images into an equal namespace changes nothing,
//! unlocking an unlocked namespace is a no-op, and a second tidy finds nothing left. The
//! process may start with an empty environment: nothing here needs PATH.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use crhook_core::{ImageDir, Kind};
use crhook_netstate::crhook_proto::FirewallRuleset;
use crhook_netstate::{CheckpointOptions, NetNs, RestoreOptions, Target};

pub const ACTION_VAR: &str = "CRTOOLS_SCRIPT_ACTION";

/// Image directory name inside CRIU's image directory.
pub const SUBDIR: &str = "netstate";

pub async fn run(action: &str) -> anyhow::Result<()> {
    crate::signals::install();
    match action {
        "network-lock" => capture(action, true).await,
        "pre-dump" => capture(action, false).await,
        "setup-namespaces" => restore().await,
        "network-unlock" => unlock().await,
        "pre-resume" => tidy().await,
        other => {
            tracing::debug!(action = other, "criu action: nothing to do");
            Ok(())
        }
    }
}

fn init_pid() -> anyhow::Result<u32> {
    let v = std::env::var("CRTOOLS_INIT_PID").context("CRTOOLS_INIT_PID is not set")?;
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("CRTOOLS_INIT_PID {v:?} is not a process id"))
}

/// `$CRTOOLS_IMAGE_DIR/netstate`, with a `/proc/PID/fd/N` link resolved to the directory it
/// points at, so logs and the library's temporary names use the real path.
fn images_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("CRTOOLS_IMAGE_DIR")
        .filter(|v| !v.is_empty())
        .context("CRTOOLS_IMAGE_DIR is not set")?;
    let dir = PathBuf::from(dir);
    let resolved = if dir.starts_with("/proc") {
        match std::fs::read_link(&dir) {
            // a deleted or anonymous target reads as "... (deleted)" or "anon_inode:..."
            Ok(p) if p.is_absolute() && p.is_dir() => p,
            _ => dir,
        }
    } else {
        dir
    };
    Ok(resolved.join(SUBDIR))
}

/// Whether `dir` holds a finished image directory: the inventory is written last, after
/// every other file, so its presence means a previous firing completed.
fn complete(dir: &Path) -> bool {
    dir.join(Kind::Inventory.file_name()).is_file()
}

/// The images of the parent dump, when CRIU was given one (`--prev-images-dir`, runc's
/// `--parent-path`): CRIU links it as `parent` in the image directory, and a pre-dump before
/// wrote its images under `netstate/` there. Only a complete image is a parent.
fn parent_images(images: &Path) -> Option<PathBuf> {
    let p = images.parent()?.join("parent").join(SUBDIR);
    complete(&p).then_some(p)
}

/// True when `pid` shares crhook's own network namespace: a task without a namespace of its
/// own has nothing container-specific to carry.
fn in_own_netns(pid: u32) -> anyhow::Result<bool> {
    let theirs = NetNs::open(&Target::Pid(pid))?;
    let ours = NetNs::current()?;
    Ok(theirs.same_as(&ours))
}

async fn capture(action: &str, lock: bool) -> anyhow::Result<()> {
    let pid = init_pid()?;
    let images = images_dir()?;
    if complete(&images) {
        tracing::info!(action, images = %images.display(), "images already complete; nothing to do");
        return Ok(());
    }
    if in_own_netns(pid)? {
        tracing::info!(
            action,
            pid,
            "task shares crhook's network namespace; nothing to capture"
        );
        return Ok(());
    }
    let target = Target::Pid(pid);
    let parent = parent_images(&images);
    if let Some(p) = &parent {
        tracing::info!(action, parent = %p.display(), "writing a child of the parent dump's images");
    }
    let opts = CheckpointOptions {
        lock,
        leave_locked: lock,
        firewall: super::firewall_options(false),
        plugin_dir: super::plugin_dir_from_env(),
        parent,
        ..CheckpointOptions::default()
    };
    crhook_netstate::checkpoint(&target, &images, &opts)
        .await
        .with_context(|| format!("{target} into {}", images.display()))?;
    tracing::info!(action, %target, images = %images.display(), "network namespace captured");
    Ok(())
}

async fn restore() -> anyhow::Result<()> {
    let images = images_dir()?;
    if !images.exists() {
        tracing::info!(images = %images.display(), "no images: nothing to restore");
        return Ok(());
    }
    let pid = init_pid()?;
    let target = Target::Pid(pid);
    // the runtime made its own network before this runs: keep its links (config may say
    // otherwise), the old pod address remapped to the new one
    let none = crate::cli::AdoptArgs {
        adopt: Vec::new(),
        adopt_runtime: false,
        remaps: Vec::new(),
    };
    let opts = RestoreOptions {
        firewall: super::firewall_options(false),
        plugin_dir: super::plugin_dir_from_env(),
        adopt: super::adopt(&none, true),
        remaps: super::remaps(&none)?,
        trust_images: crate::config::get().restore.trust_images.unwrap_or(false),
        host_bridges: crate::config::get().restore.host_bridges.clone(),
        allow_lost: crate::config::get().restore.allow_lost.clone(),
        ..RestoreOptions::default()
    };
    let outcome = crhook_netstate::restore(&target, &images, &opts)
        .await
        .with_context(|| format!("{target} from {}", images.display()))?;
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    if !outcome.files.is_empty() {
        // CRIU restores the tasks' own descriptors; the queues crhook reopened only keep
        // persistent devices alive until then.
        tracing::debug!(
            files = outcome.files.len(),
            "restored files dropped after restore"
        );
    }
    tracing::info!(%target, images = %images.display(), "network namespace restored");
    Ok(())
}

async fn unlock() -> anyhow::Result<()> {
    let pid = match init_pid() {
        Ok(p) => p,
        Err(e) => bail!("{e:#}: cannot find the namespace to unlock"),
    };
    let target = Target::Pid(pid);
    // The namespace dies with its last task: a lock in it cannot outlive it.
    if !target.path().exists() {
        tracing::info!(%target, "task is gone; no lock can remain");
        return Ok(());
    }
    let was = crhook_netstate::unlock(&target)
        .await
        .with_context(|| target.to_string())?;
    tracing::info!(%target, was_locked = was, "network unlocked");
    Ok(())
}

/// Removes the empty iptables-nft chains and tables CRIU's lock left behind, where the images
/// do not have them.
async fn tidy() -> anyhow::Result<()> {
    // Tidying is an extra after a finished restore (CRIU only logs a failing pre-resume
    // script), and pre-resume did nothing before: fired without CRIU's variables, by hand or
    // by a CRIU that is not restoring crhook's images, there is nothing to tidy.
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if !set("CRTOOLS_IMAGE_DIR") || !set("CRTOOLS_INIT_PID") {
        tracing::debug!("CRTOOLS_IMAGE_DIR or CRTOOLS_INIT_PID not set: nothing to tidy");
        return Ok(());
    }
    let images = images_dir()?;
    if !images.exists() {
        tracing::info!(images = %images.display(), "no images: nothing to tidy");
        return Ok(());
    }
    let pid = init_pid()?;
    if in_own_netns(pid)? {
        tracing::info!(
            pid,
            "task shares crhook's network namespace; nothing to tidy"
        );
        return Ok(());
    }
    let dir =
        ImageDir::open(&images).with_context(|| format!("open images {}", images.display()))?;
    if !dir.has(Kind::Firewall) {
        tracing::info!(images = %images.display(), "images hold no firewall: nothing to tidy");
        return Ok(());
    }
    let saved: Vec<FirewallRuleset> = dir
        .read(Kind::Firewall)
        .with_context(|| format!("read the firewall of {}", images.display()))?;
    let target = Target::Pid(pid);
    let opts = super::firewall_options(false);
    let t = target.clone();
    // tidy opens its nfnetlink socket on a thread inside the namespace and waits for the
    // kernel's answers: blocking work, kept off the runtime
    let removed = tokio::task::spawn_blocking(move || {
        let ns = NetNs::open(&t)?;
        crhook_netstate::firewall::tidy(&ns, &saved, &opts)
    })
    .await
    .context("firewall tidy worker")?
    .with_context(|| format!("tidy the firewall of {target} after CRIU's lock"))?;
    for line in &removed {
        tracing::info!(action = "pre-resume", %target, "{line}");
    }
    if removed.is_empty() {
        tracing::info!(action = "pre-resume", %target, "firewall tidy: nothing to remove");
    }
    Ok(())
}
