//! crhook-netstate: capture and rebuild of everything inside a network namespace.
//!
//! Entry points: [`checkpoint`] (and [`checkpoint_tracked`], which keeps a [`Tracker`] between
//! checkpoints), [`restore`], [`diff`], [`lock`], [`unlock`]. They are async,
//! keep no global state and return stats. This crate never builds a runtime or installs a log
//! subscriber; the binary owns `main`, logging and exit codes. Every namespace-bound action
//! runs on a fresh OS thread inside the namespace ([`netns::NetNs::run`]); the blocking work of
//! each entry point runs on its own OS thread so the caller's runtime is never blocked.

pub mod addr;
pub mod api;
pub mod capture_all;
pub mod checkpoint;
pub mod diff;
pub mod error;
pub mod ethtool;
pub mod family;
pub mod fields;
pub mod firewall;
#[doc(hidden)]
pub mod floor;
pub(crate) mod handoff;
pub mod ifmap;
pub mod incremental;
pub mod interrupt;
pub mod journal;
pub mod link;
pub mod neigh;
pub mod netns;
pub mod nexthop;
pub mod nl;
pub(crate) mod nla;
pub(crate) mod phases;
pub(crate) mod progress;
pub mod restore;
pub mod route;
pub mod rule;
pub mod snapshot;
pub mod sysctl;
pub mod tc;
pub mod tracker;
pub mod transform;
pub mod tunfile;

pub use api::{
    Adopt, CheckpointOptions, DiffOptions, Difference, ExternalVeth, FirewallOptions, Remap,
    RestoreOptions, RestoreOutcome, RestoredFile,
};
pub use crhook_core;
pub use crhook_proto;
pub use error::{NetstateError, Result};
pub use fields::{Conflict, FieldChange};
pub use netlink_packet_route;
pub use netns::{NetNs, Target};
pub use restore::plan::{FamilyPlan, Plan};
pub use snapshot::Snapshot;
pub use tracker::{Changes, Mark, Tracker};

use std::path::{Path, PathBuf};

/// Runs blocking work on its own OS thread and awaits it.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("crhook-work".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|source| NetstateError::Io {
            op: "spawn worker thread".into(),
            path: PathBuf::new(),
            source,
        })?;
    rx.await
        .map_err(|_| NetstateError::invalid("worker thread panicked"))?
}

/// Captures the namespace of `target` into the image directory `images`, sealed with the host
/// key (`$CRHOOK_IMAGE_KEY`, else /etc/crhook/image.key, created on first use).
pub async fn checkpoint(
    target: &Target,
    images: &Path,
    opts: &CheckpointOptions,
) -> Result<crhook_proto::Stats> {
    let (t, i, o) = (target.clone(), images.to_path_buf(), opts.clone());
    blocking(move || checkpoint::run(&t, &i, &o)).await
}

/// [`checkpoint`], sealing the image with `key` instead (a key an embedder keeps itself).
pub async fn checkpoint_with_key(
    target: &Target,
    images: &Path,
    opts: &CheckpointOptions,
    key: crhook_core::HostKey,
) -> Result<crhook_proto::Stats> {
    let (t, i, o) = (target.clone(), images.to_path_buf(), opts.clone());
    blocking(move || checkpoint::run_with_key(&t, &i, &o, key)).await
}

/// [`checkpoint`] through `tracker`, a subscription to the namespace's notifications that
/// the caller keeps between checkpoints (see [`Tracker`]): with `opts.parent` an image this
/// tracker saw written, only the families that changed since are dumped at all, and the
/// tracker remembers the new image for the next one. Sealed with `key`.
pub async fn checkpoint_tracked(
    target: &Target,
    images: &Path,
    opts: &CheckpointOptions,
    key: crhook_core::HostKey,
    tracker: std::sync::Arc<std::sync::Mutex<Tracker>>,
) -> Result<crhook_proto::Stats> {
    let (t, i, o) = (target.clone(), images.to_path_buf(), opts.clone());
    blocking(move || {
        let mut tracker = tracker
            .lock()
            .map_err(|_| NetstateError::invalid("tracker lock poisoned"))?;
        incremental::run(&t, &i, &o, key, Some(&mut tracker))
    })
    .await
}

/// Rebuilds the namespace of `target` from `images`, all or nothing.
pub async fn restore(
    target: &Target,
    images: &Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let (t, i, o) = (target.clone(), images.to_path_buf(), opts.clone());
    blocking(move || restore::run(&t, &i, &o)).await
}

/// Restores a snapshot a caller built or read (see [`Snapshot::read`]) into `target`, all or
/// nothing: the same pipeline as [`restore`] without the image directory.
pub async fn restore_snapshot(
    target: &Target,
    snapshot: Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let (t, o) = (target.clone(), opts.clone());
    blocking(move || restore::restore_snapshot(&t, snapshot, &o, None)).await
}

/// What restoring `snapshot` into `target` would do: adopted links, remaps, per family what
/// is kept, added or replaced, and every conflict. Changes nothing.
pub async fn plan(target: &Target, snapshot: &Snapshot, opts: &RestoreOptions) -> Result<Plan> {
    let (t, s, o) = (target.clone(), snapshot.clone(), opts.clone());
    blocking(move || restore::plan_snapshot(&t, s, &o, None)).await
}

/// [`plan`] for a snapshot read from images whose seal gave `trust` (see
/// [`Snapshot::read_dir_trusted`]): what an image this host did not seal may not do shows as
/// conflicts, as restore would refuse it.
pub async fn plan_trusting(
    target: &Target,
    snapshot: &Snapshot,
    opts: &RestoreOptions,
    trust: &crhook_core::Trust,
) -> Result<Plan> {
    if let crhook_core::Trust::BadSeal { .. } = trust {
        return Err(NetstateError::invalid(format!(
            "{trust}; the image was changed after it was sealed, refused"
        )));
    }
    let untrusted = (!trust.is_sealed() && !opts.trust_images).then(|| trust.to_string());
    let (t, s, o) = (target.clone(), snapshot.clone(), opts.clone());
    blocking(move || restore::plan_snapshot(&t, s, &o, untrusted.as_deref())).await
}

/// Compares the live namespace with the images; empty when identical.
pub async fn diff(target: &Target, images: &Path) -> Result<Vec<Difference>> {
    diff_opts(target, images, &DiffOptions::default()).await
}

/// [`diff`] with firewall options (CR_IPTABLES, or skipping the firewall).
pub async fn diff_with(
    target: &Target,
    images: &Path,
    fw: &FirewallOptions,
) -> Result<Vec<Difference>> {
    let opts = DiffOptions {
        firewall: fw.clone(),
        ..DiffOptions::default()
    };
    diff_opts(target, images, &opts).await
}

/// [`diff`] after the transforms a restore made (adopt, remap), with firewall options.
pub async fn diff_opts(
    target: &Target,
    images: &Path,
    opts: &DiffOptions,
) -> Result<Vec<Difference>> {
    let (t, i, o) = (target.clone(), images.to_path_buf(), opts.clone());
    blocking(move || diff::run(&t, &i, &o)).await
}

/// Undoes the half restore a killed crhook left in `target` (its journal in `journal_dir`,
/// default `/run/crhook/journal`); nothing to do gives a default outcome. A restore still
/// running there is refused.
pub async fn recover(
    target: &Target,
    journal_dir: Option<&Path>,
) -> Result<journal::replay::Recovered> {
    let t = target.clone();
    let dir = journal_dir.map_or_else(|| journal::log::DEFAULT_DIR.into(), Path::to_path_buf);
    blocking(move || journal::replay::recover(&NetNs::open(&t)?, &dir)).await
}

/// Drops all traffic in and out of the namespace except loopback.
pub async fn lock(target: &Target) -> Result<()> {
    let t = target.clone();
    blocking(move || firewall::lock(&NetNs::open(&t)?)).await
}

/// Removes crhook's lock; true if one was there.
pub async fn unlock(target: &Target) -> Result<bool> {
    let t = target.clone();
    blocking(move || firewall::unlock(&NetNs::open(&t)?)).await
}

/// Returns to the system the free pages glibc's heaps hold (what a finished phase freed):
/// the capture threads' dumps and conversions leave tens of MiB free in their arenas, and
/// what follows (encoding the image) would come on top of them.
pub(crate) fn give_back_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory to the system; safe at any time
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Frees `v` on a thread of its own, since nothing waits for it: a namespace's objects are
/// many small allocations (2-3 ms to free at 10,000 routes), and a process that exits
/// meanwhile has them freed by the kernel at once. Fewer than 5,000 `objects` are freed
/// here, which is quicker than starting a thread.
pub(crate) fn free_later<T: Send + 'static>(v: T, objects: u64) {
    if objects < 5_000 {
        return;
    }
    // where no thread can be had, the closure and `v` are dropped here
    let _ = std::thread::Builder::new()
        .name("crhook-free".into())
        .spawn(move || drop(v));
}
