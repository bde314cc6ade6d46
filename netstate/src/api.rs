//! Options and results of the library's entry points.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crhook_proto::Stats;

pub use crate::transform::{Adopt, Remap};

/// Where the outer end of a veth goes on restore (`--external veth:INNER=OUTER[@BRIDGE]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalVeth {
    /// name of the end inside the restored namespace
    pub inner: String,
    /// name to give the outer end (in the namespace crhook runs in)
    pub outer: String,
    /// bridge to attach the outer end to
    pub bridge: Option<String>,
}

impl std::str::FromStr for ExternalVeth {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("veth:")
            .ok_or_else(|| format!("external {s:?}: expected veth:INNER=OUTER[@BRIDGE]"))?;
        let (inner, outer) = rest
            .split_once('=')
            .ok_or_else(|| format!("external {s:?}: expected veth:INNER=OUTER[@BRIDGE]"))?;
        let (outer, bridge) = match outer.split_once('@') {
            Some((o, b)) => (o, Some(b.to_string())),
            None => (outer, None),
        };
        let valid = |n: &str| !n.is_empty() && n.len() < 16 && !n.contains(['/', ' ']);
        if !valid(inner) || !valid(outer) || bridge.as_deref().is_some_and(|b| !valid(b)) {
            return Err(format!(
                "external {s:?}: interface names must be 1-15 characters without '/' or spaces"
            ));
        }
        Ok(ExternalVeth {
            inner: inner.to_string(),
            outer: outer.to_string(),
            bridge,
        })
    }
}

/// Firewall settings shared by checkpoint and restore.
#[derive(Debug, Clone, Default)]
pub struct FirewallOptions {
    /// keep packet and byte counters (default: reset)
    pub counters: bool,
    /// `CR_IPTABLES`: a shell command replacing iptables-save/restore
    pub cr_iptables: Option<String>,
    /// `CR_IP6TABLES`: the same for IPv6 alone
    pub cr_ip6tables: Option<String>,
    /// skip the firewall entirely
    pub skip: bool,
    /// save nf_tables state as the tools print it (`iptables-nft-save`, `nft list`) instead
    /// of over nfnetlink: how images were written before, and what `diff` compares such an
    /// image with
    pub nft_text: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CheckpointOptions {
    /// lock the namespace (drop all traffic but loopback) before capture
    pub lock: bool,
    /// leave it locked afterwards (for CRIU's network-lock .. network-unlock window)
    pub leave_locked: bool,
    pub firewall: FirewallOptions,
    /// fail the checkpoint when a network-device file no plugin claims is open
    pub strict_files: bool,
    /// directory of external ext-file plugins
    pub plugin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub externals: Vec<ExternalVeth>,
    /// allow restoring into the namespace crhook itself runs in
    pub allow_host_netns: bool,
    pub firewall: FirewallOptions,
    /// compare the namespace with the images afterwards
    pub verify: bool,
    pub plugin_dir: Option<PathBuf>,
    /// links kept as the runtime made them (`--adopt`, `--adopt-runtime`)
    pub adopt: Adopt,
    /// `--remap OLD=NEW`, applied with the automatic remaps of adopted links
    pub remaps: Vec<Remap>,
}

/// What `diff` compares, beside the images: the same adopt and remap restore was given, so a
/// remapped restore diffs identical.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    pub firewall: FirewallOptions,
    /// with `runtime`, every link of the image that exists live by name is the runtime's
    pub adopt: Adopt,
    pub remaps: Vec<Remap>,
}

/// What restore returns: stats and the descriptors of restored files (tun queues, ext files),
/// in the order of the image's file entries.
#[derive(Debug, Default)]
pub struct RestoreOutcome {
    pub stats: Stats,
    pub files: Vec<RestoredFile>,
    pub warnings: Vec<String>,
}

#[derive(Debug)]
pub struct RestoredFile {
    /// JSON description for the hand-off header (pids, fds, device, flags, detached)
    pub header: serde_json::Value,
    pub fd: OwnedFd,
}

/// One line of `crhook diff`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    pub kind: String,
    pub object: String,
    pub field: String,
    pub saved: String,
    pub live: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}: saved {} live {}",
            self.kind, self.object, self.field, self.saved, self.live
        )
    }
}
