//! Sysctls of a network namespace: every readable and writable per-namespace key under
//! `/proc/sys/net`, namespace-wide and per device.
//!
//! Owns capture and apply of `crhook_proto::Sysctl`. It does not enter namespaces: callers
//! run [`capture`] and [`apply`] on the namespace thread ([`crate::NetNs::run`]), where
//! `/proc/sys/net` is that namespace's.
//!
//! Kernel behaviour this relies on:
//! - Reading `/proc/sys/net` file by file costs about 3.7 s at 1,000 links, so only
//!   namespace-wide keys (including `conf/all`, `conf/default`, `neigh/default`) are read
//!   from `/proc`. Per-device `ipv4|ipv6/conf/DEV` values come from the link dump
//!   (`IFLA_AF_SPEC` → `IFLA_INET_CONF` / `IFLA_INET6_CONF`) and `ipv4|ipv6/neigh/DEV` values
//!   from the `RTM_GETNEIGHTBL` dump, mapped to file names by [`tables`]. Per-device keys with
//!   no exact netlink counterpart are read from `/proc` for every device: `stable_secret`
//!   (not in the array), `regen_min_advance`, `ra_honor_pio_life`, `ra_honor_pio_pflag` (no
//!   slot on 6.18: its `IFLA_INET6_CONF` has 60, up to `force_forwarding`), `anycast_delay`,
//!   `proxy_delay`, `locktime` (USER_HZ ticks; see [`tables::NEIGH_PARMS`]), plus any name a
//!   newer kernel adds. About 20,000 files at 2,000 links: capture reads them on a second
//!   thread while it builds the rest.
//! - Interface names may contain dots, so keys are path components, never `a.b.c` strings.
//! - Files that fail to read are not state: `ipv6/conf/*/stable_secret` gives EIO while
//!   unset. Duplicated and derived keys are left out ([`procfs::is_excluded`]).
//! - Writing `conf/all/forwarding` (= `ipv4/ip_forward`), `conf/all/disable_ipv6`,
//!   `conf/default/*` and others changes the same key of every device, `ip_forward` also
//!   flips `conf/all/accept_redirects`, and `stable_secret` sets `addr_gen_mode`. So apply
//!   writes those first, compares per-device keys against one dump taken after them (as
//!   capture reads them, the files read on a second thread meanwhile), re-reads a key right
//!   before writing it, writes only what differs,
//!   records what the write changes besides itself, and then checks again only the keys it
//!   wrote and those their writes changed, so its cost beyond one capture follows what it
//!   writes.
//! - In the initial namespace `/proc/sys/net` also shows host-wide keys; crhook targets
//!   container namespaces, where only per-namespace keys are registered.

mod apply;
mod capture;
mod defaults;
mod dump;
mod files;
mod layout;
mod live;
mod plan;
mod procfs;
mod saved;
pub mod tables;

pub use apply::{apply, apply_with, SysctlUndo};
pub(crate) use apply::{apply_journaled, write_back};
pub use capture::{capture, capture_proc_walk};
pub(crate) use capture::{capture_from, capture_saved};
pub use defaults::kernel_defaults;
pub use procfs::is_excluded;
pub(crate) use saved::Saved;

use crhook_proto as pb;

/// When a group of keys is written during restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before addresses and link up: the `ipv6/conf` keys that decide how addresses are made
    /// ([`EARLY`]), for `all`, `default` and every device, in that order. `all` belongs
    /// here because writing `all/disable_ipv6` later would flush the restored addresses of
    /// every device (it propagates, and disabling IPv6 on a device drops its addresses).
    Early,
    /// Everything else: namespace-wide keys first (`conf/all` and `conf/default` propagate to
    /// devices), then per-device keys (the Early ones are checked again and normally found
    /// equal).
    Late,
    /// Late less the [`EARLY`] names and the [`FIREWALLED`] keys: for a restore that wrote
    /// the Early names already and changes some of them for a while (DAD suspended). It runs
    /// beside the firewall transaction, before the links come up.
    Rest,
    /// The [`FIREWALLED`] keys, which Rest leaves: once the firewall is in.
    Firewalled,
}

/// First path components of keys a firewall restore can bring into existence (loading
/// `nf_conntrack` or `br_netfilter` for a rule that needs it): written after it.
pub const FIREWALLED: &[&str] = &["netfilter", "bridge"];

/// `ipv6/conf` keys of the Early phase, in write order: `stable_secret` sets
/// `addr_gen_mode`, so it goes first.
pub const EARLY: &[&str] = &[
    "stable_secret",
    "addr_gen_mode",
    "disable_ipv6",
    "accept_dad",
];

pub(crate) fn is_early(fam: &str, dir: &str, name: &str) -> bool {
    fam == "ipv6" && dir == "conf" && EARLY.contains(&name)
}

/// The diff key of a sysctl: its path joined with '/' (device names cannot contain '/').
pub fn key(s: &pb::Sysctl) -> String {
    s.path.join("/")
}

/// Diff normalisation: runs of whitespace become one space (the kernel prints tabs between
/// fields, users and other tools write spaces).
pub fn normalize(s: &mut pb::Sysctl) {
    s.value = normalized(&s.value);
}

pub(crate) fn normalized(v: &str) -> String {
    normalized_cow(v).into_owned()
}

/// [`normalized`], borrowing `v` where normalising leaves it as it is (most values).
pub(crate) fn normalized_cow(v: &str) -> std::borrow::Cow<'_, str> {
    let normal = !v.starts_with(' ')
        && !v.ends_with(' ')
        && !v.contains("  ")
        && !v.contains(|c: char| c.is_whitespace() && c != ' ');
    if normal {
        std::borrow::Cow::Borrowed(v)
    } else {
        std::borrow::Cow::Owned(v.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// A key from its path joined with '/', for tests.
#[cfg(test)]
pub(crate) fn test_key(path: &str, value: &str) -> pb::Sysctl {
    pb::Sysctl {
        path: path.split('/').map(String::from).collect(),
        value: value.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_keeps_dotted_names() {
        let s = pb::Sysctl {
            path: vec![
                "ipv4".into(),
                "conf".into(),
                "eth0.100".into(),
                "forwarding".into(),
            ],
            value: "1".into(),
        };
        assert_eq!(key(&s), "ipv4/conf/eth0.100/forwarding");
    }

    #[test]
    fn normalize_folds_tabs_and_spaces() {
        let mut a = pb::Sysctl {
            path: vec!["ipv4".into(), "ip_local_port_range".into()],
            value: "32768\t60999".into(),
        };
        let mut b = pb::Sysctl {
            path: a.path.clone(),
            value: " 32768  60999 ".into(),
        };
        normalize(&mut a);
        normalize(&mut b);
        assert_eq!(a, b);
        assert_eq!(a.value, "32768 60999");
    }

    #[test]
    fn early_keys() {
        assert!(is_early("ipv6", "conf", "disable_ipv6"));
        assert!(is_early("ipv6", "conf", "accept_dad"));
        assert!(!is_early("ipv4", "conf", "disable_ipv6"));
        assert!(!is_early("ipv6", "conf", "accept_ra"));
    }
}
