//! tun files and ext files: the network-device files processes of a namespace hold, saved
//! once per open file description and handed back on restore.
//!
//! Owns: finding those files through /proc ([`procfs`]), grouping descriptors of one open
//! file with kcmp, the built-in `tun` plugin ([`TunPlugin`]), external plugins in a plugin
//! directory ([`external`], protocol in docs/plugins.md), reopening the files inside the
//! namespace, and releasing the persistence restore gave non-persistent tun devices
//! ([`release_persist`]).
//!
//! Must not: create or delete tun devices (link restore does, persistent, before [`restore`]
//! runs), pass descriptors to processes (the caller does, e.g. over `--fd-socket`), or
//! capture sockets (they are the process's business).
//!
//! Entry points, in the order a checkpoint and a restore call them: [`capture`] after the
//! netlink capture; [`restore`] after links exist; [`release_persist`] after the hand-off.

pub mod capture;
pub mod external;
pub mod persist;
pub mod procfs;
pub mod restore;
pub mod sys;
pub mod tun_plugin;

use std::path::Path;
use std::sync::{Arc, Mutex};

use crhook_core::{ExtFilePlugin, PluginRegistry};

pub use capture::capture_with_plugins;
pub use external::{ExternalPlugin, PROTOCOL_VERSION};
pub use persist::{release_persist, release_persist_in};
pub use restore::restore_with_plugins;
pub use tun_plugin::TunPlugin;

use crate::api::{CheckpointOptions, RestoreOptions, RestoredFile};
use crate::error::Result;
use crate::netns::NetNs;
use crate::snapshot::Snapshot;

/// After the netlink capture: finds every network-device file held by processes whose
/// network namespace is `ns` and records it in `snap` (`tun_files`, `ext_files`, or
/// `skipped_files` plus a warning; an error instead with `opts.strict_files`). Plugins come
/// from `opts.plugin_dir` after the built-in `tun` plugin.
pub fn capture(
    ns: &NetNs,
    snap: &mut Snapshot,
    opts: &CheckpointOptions,
    warnings: &mut Vec<String>,
) -> Result<()> {
    capture_with_plugins(ns, snap, opts, Vec::new(), warnings)
}

/// After links exist (tun devices persistent): reopens every saved file inside `ns` and
/// returns the descriptors in id order, each with its hand-off header
/// `{"id", "kind", "holders": [{"pid", "fd"}], "device", "flags", "detached", ...}`.
pub fn restore(ns: &NetNs, snap: &Snapshot, opts: &RestoreOptions) -> Result<Vec<RestoredFile>> {
    restore_with_plugins(ns, snap, opts, Vec::new())
}

pub use crate::error::chain;

/// Where external plugins put the errors `ExtFilePlugin::claims` cannot return.
#[derive(Debug, Default, Clone)]
pub struct ErrorSink(Arc<Mutex<Vec<String>>>);

impl ErrorSink {
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

/// The registry capture and restore use: `tun`, then the executables of `dir` by file name,
/// then `extra`.
pub fn registry(
    ns: &NetNs,
    dir: Option<&Path>,
    tun: TunPlugin,
    extra: Vec<Box<dyn ExtFilePlugin>>,
    sink: &ErrorSink,
) -> Result<PluginRegistry> {
    let mut r = PluginRegistry::new();
    r.register(Box::new(tun));
    if let Some(dir) = dir {
        for p in external::load_dir(dir, ns, Arc::clone(&sink.0))? {
            r.register(Box::new(p));
        }
    }
    for p in extra {
        r.register(p);
    }
    Ok(r)
}
