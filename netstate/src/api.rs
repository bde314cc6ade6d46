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
    /// write a child image of this image directory (`--parent`): families equal to the
    /// parent's are read from it, and with `lock` only what changed during the unlocked
    /// dump is dumped again under the lock
    pub parent: Option<PathBuf>,
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
    /// `--trust-images`: let an image not sealed with this host's key place things outside
    /// the target (veth peers in the host or another namespace, links on a lower device
    /// there), as a sealed one may
    pub trust_images: bool,
    /// bridges of the namespace crhook runs in that an image not sealed with this host's key
    /// may still attach a veth's far end to (config `restore.host_bridges`): the operator
    /// names the placement, so the image does not choose it
    pub host_bridges: Vec<String>,
    /// where the restore journal goes (default `/run/crhook/journal`): a restore killed
    /// outright is undone from it by the next restore of the same target or by `recover`
    pub journal_dir: Option<PathBuf>,
    /// `--allow-lost WHAT`: state the image records but restore cannot carry, whose loss the
    /// caller accepts (`bpf`: eBPF programs in tc filters and actions, XDP programs); without
    /// it restore refuses such an image by name
    pub allow_lost: Vec<String>,
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

/// One difference `crhook diff` reports: one field of one object, saved value first.
/// `saved`/`live` are `present`/`absent` for a whole object on one side only, `absent` for a
/// list item (a rule, an element) on one side only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    pub kind: String,
    pub object: String,
    pub field: String,
    pub saved: String,
    pub live: String,
}

/// A screen's width: a difference whose one-line form is wider is printed over three lines
/// (the field, then `saved` and `live` values each on its own line).
pub const LINE_WIDTH: usize = 80;

/// One field change as a person reads it: `mac 02:00:00:00:00:01 -> 02:00:00:00:00:02`
/// (saved, then live), `rule 2 only in the image: -A INPUT ...`, `only live`. Diff lines and
/// restore's conflicts both use it. A field of `-` is the object itself.
pub fn change_text(field: &str, saved: &str, live: &str) -> String {
    let f = if field == "-" { "" } else { field };
    let lead = |what: &str| {
        if f.is_empty() {
            what.to_string()
        } else {
            format!("{f} {what}")
        }
    };
    match (saved, live) {
        ("present", "absent") => lead("only in the image"),
        ("absent", "present") => lead("only live"),
        (s, "absent") => format!("{}: {s}", lead("only in the image")),
        ("absent", l) => format!("{}: {l}", lead("only live")),
        (s, l) => format!("{} -> {l}", lead(s)),
    }
}

/// One line, `KIND OBJECT: FIELD SAVED -> LIVE`; with `{:#}` (what `crhook diff` prints), a
/// line wider than [`LINE_WIDTH`] becomes the field on one line and each value on its own.
/// Errors use the plain form: they must stay one line.
impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = format!("{} {}", self.kind, self.object);
        let one = format!(
            "{head}: {}",
            change_text(&self.field, &self.saved, &self.live)
        );
        if !f.alternate() || one.chars().count() <= LINE_WIDTH {
            return f.write_str(&one);
        }
        let field = if self.field == "-" { "" } else { &self.field };
        match (self.saved.as_str(), self.live.as_str()) {
            ("present" | "absent", "present" | "absent") => f.write_str(&one),
            (s, "absent") => write!(f, "{head}: {field} only in the image:\n    {s}"),
            ("absent", l) => write!(f, "{head}: {field} only live:\n    {l}"),
            (s, l) => write!(f, "{head}: {field}\n    saved {s}\n    live  {l}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: &str, object: &str, field: &str, saved: &str, live: &str) -> String {
        format!(
            "{:#}",
            Difference {
                kind: kind.into(),
                object: object.into(),
                field: field.into(),
                saved: saved.into(),
                live: live.into(),
            }
        )
    }

    #[test]
    fn a_field_change_is_one_short_line() {
        assert_eq!(
            d(
                "link",
                "eth0",
                "mac",
                "02:00:00:00:00:01",
                "02:00:00:00:00:02"
            ),
            "link eth0: mac 02:00:00:00:00:01 -> 02:00:00:00:00:02"
        );
        assert_eq!(
            d("link", "veth1", "-", "present", "absent"),
            "link veth1: only in the image"
        );
        assert_eq!(
            d("route", "10.0.0.0/8", "-", "absent", "present"),
            "route 10.0.0.0/8: only live"
        );
    }

    #[test]
    fn a_long_change_takes_one_line_per_side() {
        let old =
            "-A INPUT -s 10.1.2.3/32 -p tcp -m tcp --dport 8080 -m comment --comment web -j ACCEPT";
        let new = old.replace("8080", "8081");
        let t = d(
            "firewall",
            "iptables-nft table filter chain INPUT",
            "rule 1",
            old,
            &new,
        );
        assert_eq!(
            t,
            format!("firewall iptables-nft table filter chain INPUT: rule 1\n    saved {old}\n    live  {new}")
        );
        let t = d(
            "firewall",
            "iptables-nft table filter chain INPUT",
            "rule 3",
            "absent",
            old,
        );
        assert_eq!(
            t,
            format!("firewall iptables-nft table filter chain INPUT: rule 3 only live:\n    {old}")
        );
        let plain = Difference {
            kind: "firewall".into(),
            object: "iptables-nft table filter chain INPUT".into(),
            field: "rule 1".into(),
            saved: old.into(),
            live: new.clone(),
        }
        .to_string();
        assert_eq!(
            plain,
            format!("firewall iptables-nft table filter chain INPUT: rule 1 {old} -> {new}"),
            "errors keep one line"
        );
    }
}
