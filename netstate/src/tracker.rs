//! `Tracker`: knows which families of a namespace changed since a moment, without dumping
//! them.
//!
//! It owns one rtnetlink socket bound to the namespace and subscribed to the multicast groups
//! of every family crhook captures (links, IPv4/IPv6 addresses, routes and rules, neighbours,
//! netconf, nexthops). The kernel queues a notification on that socket inside the system call
//! that makes a change, so once a change has returned its notification is in the queue: a
//! family without one since a [`Mark`] is unchanged since that mark. When the queue overflows
//! the kernel drops notifications and the next read fails with `ENOBUFS`; then every family
//! counts as changed. nf_tables has no multicast a capture could rely on (the ruleset can be
//! replaced in one commit); its generation (`NFT_MSG_GETGEN`, one per commit, per namespace)
//! decides instead, and is recorded in every mark.
//!
//! A checkpoint with a parent uses one (see incremental.rs): the CLI opens a fresh one (the
//! subscription cannot outlive the process), a node agent keeps one between checkpoints of
//! the same namespace ([`Tracker::remember`]), so a checkpoint only dumps what changed since
//! its parent.
//!
//! Must not: enter a namespace itself (the socket is opened on a [`NetNs::run`] thread) or
//! block (every read is `MSG_DONTWAIT`).

use std::collections::{BTreeSet, HashMap};

use crhook_core::Kind;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use nix::sys::socket::{setsockopt, sockopt};

use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// rtnetlink multicast groups (linux/rtnetlink.h `enum rtnetlink_groups`) and the kind each
/// one's notifications change.
const GROUPS: &[(u32, Kind)] = &[
    (1, Kind::Links),      // RTNLGRP_LINK
    (3, Kind::Neighbours), // RTNLGRP_NEIGH
    (4, Kind::Tc),         // RTNLGRP_TC
    (5, Kind::Addresses),  // RTNLGRP_IPV4_IFADDR
    (7, Kind::Routes),     // RTNLGRP_IPV4_ROUTE
    (8, Kind::Rules),      // RTNLGRP_IPV4_RULE
    (9, Kind::Addresses),  // RTNLGRP_IPV6_IFADDR
    (11, Kind::Routes),    // RTNLGRP_IPV6_ROUTE
    (19, Kind::Rules),     // RTNLGRP_IPV6_RULE
    (24, Kind::Sysctls),   // RTNLGRP_IPV4_NETCONF
    (25, Kind::Sysctls),   // RTNLGRP_IPV6_NETCONF
    (32, Kind::Nexthops),  // RTNLGRP_NEXTHOP
];

/// The kinds a tracker follows over rtnetlink.
pub const TRACKED: [Kind; 8] = [
    Kind::Links,
    Kind::Addresses,
    Kind::Routes,
    Kind::Nexthops,
    Kind::Rules,
    Kind::Neighbours,
    Kind::Tc,
    Kind::Sysctls,
];

/// The kind an rtnetlink notification of message type `ty` is about.
fn kind_of(ty: u16) -> Option<Kind> {
    Some(match ty {
        16..=19 => Kind::Links,      // RTM_NEWLINK .. RTM_SETLINK
        20..=23 => Kind::Addresses,  // RTM_NEWADDR ..
        24..=27 => Kind::Routes,     // RTM_NEWROUTE ..
        28..=31 => Kind::Neighbours, // RTM_NEWNEIGH ..
        32..=35 => Kind::Rules,      // RTM_NEWRULE ..
        36..=51 => Kind::Tc,         // RTM_NEWQDISC .. RTM_GETACTION
        100..=103 => Kind::Tc,       // RTM_NEWCHAIN ..
        80..=83 => Kind::Sysctls,    // RTM_NEWNETCONF ..
        104..=107 => Kind::Nexthops, // RTM_NEWNEXTHOP ..
        _ => return None,
    })
}

/// A moment in a tracker's life: what changed afterwards is [`Tracker::changed_since`] it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    epoch: u64,
    /// the nf_tables generation then; `None` where nf_tables could not be asked
    pub nft_generation: Option<u32>,
}

/// What changed since a mark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// kinds with at least one notification (all of [`TRACKED`] after an overrun)
    pub kinds: BTreeSet<Kind>,
    /// the socket overflowed (`ENOBUFS`) and notifications were lost
    pub overrun: bool,
    /// the nf_tables generation now
    pub nft_generation: Option<u32>,
}

impl Changes {
    /// Everything, as when nothing is known about the time since a parent.
    pub fn all() -> Changes {
        Changes {
            kinds: TRACKED.iter().copied().collect(),
            overrun: false,
            nft_generation: None,
        }
    }

    /// Whether nf_tables changed since `mark`, given `own` commits the caller made itself
    /// meanwhile (taking crhook's lock is one).
    pub fn nft_changed(&self, mark: &Mark, own: u32) -> bool {
        match (mark.nft_generation, self.nft_generation) {
            (Some(then), Some(now)) => then.wrapping_add(own) != now,
            _ => true,
        }
    }
}

/// A subscription to a namespace's rtnetlink notifications; see the module docs.
pub struct Tracker {
    sock: Socket,
    ns: NetNs,
    epoch: u64,
    /// per kind, the epoch of its last notification
    changed_at: HashMap<Kind, u64>,
    overruns: u64,
    /// the epoch of the last overrun
    overrun_at: Option<u64>,
    /// marks of images this tracker saw written, by the SHA-256 of their inventory
    images: HashMap<Vec<u8>, Mark>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tracker({}, epoch {})", self.ns.name(), self.epoch)
    }
}

/// Receive buffer of a tracker: 8 MiB holds ~60,000 route notifications between two reads.
pub const DEFAULT_RCVBUF: usize = 8 << 20;

impl Tracker {
    /// Subscribes to `ns`'s notifications.
    pub fn new(ns: &NetNs) -> Result<Tracker> {
        Self::with_receive_buffer(ns, DEFAULT_RCVBUF)
    }

    /// [`Tracker::new`] with a receive buffer of `bytes` (the kernel doubles it and keeps a
    /// minimum); a small one overflows sooner, which tests use.
    pub fn with_receive_buffer(ns: &NetNs, bytes: usize) -> Result<Tracker> {
        let name = ns.name().to_string();
        let err = |op: &str, source: std::io::Error| NetstateError::Netlink {
            op: op.to_string(),
            object: "rtnetlink notification socket".into(),
            netns: name.clone(),
            source,
        };
        let sock = ns.run(|| {
            let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| err("open", e))?;
            sock.bind_auto().map_err(|e| err("bind", e))?;
            setsockopt(&sock, sockopt::RcvBufForce, &bytes)
                .map_err(|e| err("set SO_RCVBUFFORCE on", e.into()))?;
            for (group, _) in GROUPS {
                sock.add_membership(*group)
                    .map_err(|e| err(&format!("join group {group} with"), e))?;
            }
            sock.set_non_blocking(true)
                .map_err(|e| err("set O_NONBLOCK on", e))?;
            Ok(sock)
        })?;
        Ok(Tracker {
            sock,
            ns: ns.try_clone()?,
            epoch: 1,
            changed_at: HashMap::new(),
            overruns: 0,
            overrun_at: None,
            images: HashMap::new(),
            buf: vec![0; 1 << 16],
        })
    }

    /// Times notifications were lost since the tracker started.
    pub fn overruns(&self) -> u64 {
        self.overruns
    }

    /// Reads every queued notification (never blocks).
    pub fn poll(&mut self) -> Result<()> {
        loop {
            let mut b = &mut self.buf[..];
            match self.sock.recv(&mut b, libc::MSG_DONTWAIT) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    let n = n.min(self.buf.len());
                    let mut at = 0usize;
                    while let Some(h) = self.buf.get(at..(at + 16).min(n)).filter(|h| h.len() == 16)
                    {
                        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                        let ty = u16::from_ne_bytes([h[4], h[5]]);
                        if let Some(k) = kind_of(ty) {
                            self.changed_at.insert(k, self.epoch);
                        }
                        if len < 16 || at + len > n {
                            break;
                        }
                        at += (len + 3) & !3;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // lost notifications: every family may have changed
                    self.overruns += 1;
                    self.overrun_at = Some(self.epoch);
                    for k in TRACKED {
                        self.changed_at.insert(k, self.epoch);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(NetstateError::Netlink {
                        op: "read".into(),
                        object: "rtnetlink notifications".into(),
                        netns: self.ns.name().to_string(),
                        source,
                    })
                }
            }
        }
    }

    /// A mark for now: every notification read so far counts as before it.
    pub fn mark(&mut self) -> Result<Mark> {
        self.poll()?;
        Ok(self.advance())
    }

    fn advance(&mut self) -> Mark {
        let m = Mark {
            epoch: self.epoch,
            nft_generation: crate::firewall::generation(&self.ns).ok(),
        };
        self.epoch += 1;
        Mark {
            epoch: self.epoch,
            ..m
        }
    }

    /// What changed since `mark`.
    pub fn changed_since(&mut self, mark: &Mark) -> Result<Changes> {
        self.poll()?;
        Ok(self.changes(mark))
    }

    fn changes(&self, mark: &Mark) -> Changes {
        let kinds: BTreeSet<Kind> = self
            .changed_at
            .iter()
            .filter(|(_, at)| **at >= mark.epoch)
            .map(|(k, _)| *k)
            .collect();
        Changes {
            overrun: self.overrun_at.is_some_and(|at| at >= mark.epoch),
            kinds,
            nft_generation: crate::firewall::generation(&self.ns).ok(),
        }
    }

    /// What changed since `mark`, and a new mark from the same read: a notification is
    /// either in the changes or after the new mark, never lost between the two.
    pub fn changed_since_and_mark(&mut self, mark: &Mark) -> Result<(Changes, Mark)> {
        self.poll()?;
        let c = self.changes(mark);
        let mut m = self.advance();
        m.nft_generation = c.nft_generation;
        Ok((c, m))
    }

    /// Records that the image whose inventory has SHA-256 `digest` holds the namespace as it
    /// was at `mark`, so a later checkpoint with that image as parent asks only for changes.
    pub fn remember(&mut self, digest: &[u8], mark: Mark) {
        self.images.insert(digest.to_vec(), mark);
    }

    /// The mark of the image with inventory SHA-256 `digest`, if this tracker saw it written.
    pub fn mark_of(&self, digest: &[u8]) -> Option<Mark> {
        self.images.get(digest).copied()
    }

    /// The namespace this tracker follows.
    pub fn netns(&self) -> &NetNs {
        &self.ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_notification_type_maps_to_a_tracked_kind() {
        for ty in [16, 17, 20, 21, 24, 25, 28, 29, 32, 33, 80, 81, 104, 105] {
            let k = kind_of(ty).unwrap_or(Kind::Seal);
            assert!(TRACKED.contains(&k), "type {ty}");
        }
        assert_eq!(kind_of(2), None);
        for (_, k) in GROUPS {
            assert!(TRACKED.contains(k));
        }
    }

    #[test]
    fn nft_generation_counts_own_commits() {
        let m = Mark {
            epoch: 1,
            nft_generation: Some(10),
        };
        let c = |g| Changes {
            nft_generation: g,
            ..Changes::default()
        };
        assert!(!c(Some(11)).nft_changed(&m, 1));
        assert!(c(Some(12)).nft_changed(&m, 1));
        assert!(!c(Some(10)).nft_changed(&m, 0));
        assert!(c(None).nft_changed(&m, 0));
    }
}
