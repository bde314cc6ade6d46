//! crhook-netstate: capture and rebuild of everything inside a network namespace.
//!
//! Entry points: [`checkpoint`], [`restore`], [`diff`], [`lock`], [`unlock`]. They are async,
//! keep no global state and return stats. This crate never builds a runtime or installs a log
//! subscriber; the binary owns `main`, logging and exit codes. Every namespace-bound action
//! runs on a fresh OS thread inside the namespace ([`netns::NetNs::run`]).

pub mod addr;
pub mod api;
pub mod error;
pub mod firewall;
pub mod ifmap;
pub mod link;
pub mod neigh;
pub mod netns;
pub mod nexthop;
pub mod nl;
pub mod route;
pub mod rule;
pub mod snapshot;

pub use api::{
    CheckpointOptions, Difference, ExternalVeth, FirewallOptions, RestoreOptions, RestoreOutcome,
    RestoredFile,
};
pub use crhook_core;
pub use crhook_proto;
pub use error::{NetstateError, Result};
pub use netlink_packet_route;
pub use netns::{NetNs, Target};

use std::path::Path;

/// Captures the namespace of `target` into the image directory `images`.
pub async fn checkpoint(
    target: &Target,
    images: &Path,
    opts: &CheckpointOptions,
) -> Result<crhook_proto::Stats> {
    let _ = (target, images, opts);
    Err(NetstateError::Unsupported { what: "checkpoint: not yet built".into() })
}

/// Rebuilds the namespace of `target` from `images`, all or nothing.
pub async fn restore(target: &Target, images: &Path, opts: &RestoreOptions) -> Result<RestoreOutcome> {
    let _ = (target, images, opts);
    Err(NetstateError::Unsupported { what: "restore: not yet built".into() })
}

/// Compares the live namespace with the images; empty when identical.
pub async fn diff(target: &Target, images: &Path) -> Result<Vec<Difference>> {
    let _ = (target, images);
    Err(NetstateError::Unsupported { what: "diff: not yet built".into() })
}

/// Drops all traffic in and out of the namespace except loopback.
pub async fn lock(target: &Target) -> Result<()> {
    let ns = NetNs::open(target)?;
    let handle = ns.try_clone()?;
    ns.run_async(move || firewall::lock(&handle)).await
}

/// Removes crhook's lock (and reports whether one was there).
pub async fn unlock(target: &Target) -> Result<bool> {
    let ns = NetNs::open(target)?;
    let handle = ns.try_clone()?;
    ns.run_async(move || firewall::unlock(&handle)).await
}
