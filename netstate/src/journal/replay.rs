//! Undoing a restore from its journal: the rollback of a failed restore in the same process,
//! and the recovery of one that was killed (`crhook recover TARGET`, or the next restore of
//! the same target). Both replay the log newest first; undo requests for objects already gone
//! count as done, sysctls already holding their old value are skipped, and every error is
//! collected.

use std::path::Path;

use super::log::{self, Found, Header, NlEntry, Record};
use super::{undo_req, Sock};
use crate::error::{NetstateError, Result};
use crate::firewall::StepUndo;
use crate::netns::NetNs;
use crate::nl::{Nl, Req};

/// The sockets and namespaces undo entries go to.
pub trait Sockets {
    fn nl(&mut self, s: Sock) -> Result<&mut Nl>;
    /// the namespace of a host or peer entry
    fn ns(&self, s: Sock) -> Result<&NetNs>;
}

enum Entry {
    Nl(NlEntry),
    Sysctl {
        sock: Sock,
        path: Vec<String>,
        old: String,
    },
    Firewall(StepUndo),
    Features {
        link: String,
        before: crate::ethtool::Features,
    },
}

/// The entries to undo, in the order they were made: settles take out what was not applied.
fn entries(records: Vec<Record>) -> Vec<Entry> {
    let mut out: Vec<Option<Entry>> = Vec::new();
    // where each intent or firewall record starts in `out`, and its length
    let mut at: std::collections::HashMap<u32, (usize, usize)> = Default::default();
    for r in records {
        match r {
            Record::Intent(seq, v) => {
                at.insert(seq, (out.len(), v.len()));
                out.extend(v.into_iter().map(|e| Some(Entry::Nl(e))));
            }
            Record::Firewall(seq, u) => {
                at.insert(seq, (out.len(), 1));
                out.push(Some(Entry::Firewall(u)));
            }
            Record::Settle(seq, failed) => {
                let Some(&(start, len)) = at.get(&seq) else {
                    continue;
                };
                for i in failed.into_iter().map(|i| i as usize).filter(|&i| i < len) {
                    if let Some(e) = out.get_mut(start + i) {
                        *e = None;
                    }
                }
            }
            Record::Sysctl { sock, path, old } => out.push(Some(Entry::Sysctl { sock, path, old })),
            Record::Features { link, before } => out.push(Some(Entry::Features { link, before })),
        }
    }
    out.into_iter().flatten().collect()
}

/// What undo entry `n` undoes, for messages: the journal's text, or where restore wrote none
/// (routes, see `family::Family::undo_text`) a description of the request itself.
fn what(n: &NlEntry) -> std::borrow::Cow<'_, str> {
    if !n.what.is_empty() {
        return std::borrow::Cow::Borrowed(&n.what);
    }
    let route = (n.msg_type == crate::route::RTM_DELROUTE)
        .then(|| crate::route::describe_request(&n.payload))
        .flatten();
    std::borrow::Cow::Owned(match route {
        Some(d) => format!("delete {d}"),
        None => format!("netlink request of type {}", n.msg_type),
    })
}

/// Undoes `records` newest first in target `ns`; returns every error met.
pub(crate) fn undo(records: Vec<Record>, ns: &NetNs, socks: &mut dyn Sockets) -> Vec<String> {
    let mut errors = Vec::new();
    for e in entries(records).into_iter().rev() {
        match &e {
            Entry::Nl(n) => tracing::debug!(sock = ?n.sock, "undo: {}", what(n)),
            Entry::Sysctl { sock, path, old } => {
                tracing::debug!(sock = ?sock, "undo: sysctl {} back to {old:?}", path.join("/"))
            }
            Entry::Firewall(_) => tracing::debug!("undo: firewall step"),
            Entry::Features { link, .. } => tracing::debug!("undo: features of {link}"),
        }
        match e {
            Entry::Nl(n) => match socks.nl(n.sock) {
                Ok(nl) => {
                    let what = what(&n).into_owned();
                    let req = Req::Raw {
                        msg_type: n.msg_type,
                        payload: n.payload,
                    };
                    errors.extend(undo_req(nl, req, &what));
                }
                Err(e) => errors.push(format!("undo: {}: {}", what(&n), crate::error::chain(&e))),
            },
            Entry::Sysctl { sock, path, old } => {
                let target = match sock {
                    Sock::Target => Ok(ns),
                    s => socks.ns(s),
                };
                let r = target.and_then(|t| {
                    let name = t.name().to_string();
                    t.run(move || Ok(crate::sysctl::write_back(&path, &old, &name)))
                });
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => {
                        errors.push(format!("undo sysctl: {}", crate::error::chain(&e)))
                    }
                }
            }
            Entry::Firewall(u) => {
                if let Err(e) = u.run(ns) {
                    errors.push(format!("undo firewall: {}", crate::error::chain(&e)));
                }
            }
            Entry::Features { link, before } => {
                let r = crate::ethtool::open_in(ns).and_then(|e| match e {
                    Some(mut e) => {
                        let now = e.dump_one(&link)?;
                        e.apply(&link, &before, &now).map(drop)
                    }
                    None => Ok(()),
                });
                if let Err(e) = r {
                    errors.push(format!(
                        "undo features of {link}: {}",
                        crate::error::chain(&e)
                    ));
                }
            }
        }
    }
    errors
}

/// The sockets of a recovery: the target's, the host's when crhook runs where the restore
/// ran, and each peer namespace that still exists.
struct Reopened {
    target: Nl,
    host: std::result::Result<(NetNs, Nl), String>,
    peers: Vec<std::result::Result<(NetNs, Nl), String>>,
}

impl Sockets for Reopened {
    fn nl(&mut self, s: Sock) -> Result<&mut Nl> {
        match s {
            Sock::Target => Ok(&mut self.target),
            Sock::Host => self
                .host
                .as_mut()
                .map(|h| &mut h.1)
                .map_err(|e| NetstateError::invalid(e.clone())),
            Sock::Peer(i) => match self.peers.get_mut(i) {
                Some(Ok(p)) => Ok(&mut p.1),
                Some(Err(e)) => Err(NetstateError::invalid(e.clone())),
                None => Err(NetstateError::invalid(format!(
                    "no peer namespace {i} in the journal"
                ))),
            },
        }
    }

    fn ns(&self, s: Sock) -> Result<&NetNs> {
        match s {
            Sock::Host => self
                .host
                .as_ref()
                .map(|h| &h.0)
                .map_err(|e| NetstateError::invalid(e.clone())),
            Sock::Peer(i) => match self.peers.get(i) {
                Some(Ok(p)) => Ok(&p.0),
                Some(Err(e)) => Err(NetstateError::invalid(e.clone())),
                None => Err(NetstateError::invalid(format!(
                    "no peer namespace {i} in the journal"
                ))),
            },
            Sock::Target => Err(NetstateError::invalid("the target is not a peer")),
        }
    }
}

fn reopen(ns: &NetNs, h: &Header) -> Result<Reopened> {
    let name = ns.name().to_string();
    let target = ns.run(|| Nl::new(&name))?;
    let host = (|| {
        let cur = NetNs::current().map_err(|e| crate::error::chain(&e))?;
        if cur.identity() != h.host_id {
            return Err(
                "the restore ran in another namespace than this crhook: its host-side changes are left"
                    .to_string(),
            );
        }
        let nl = Nl::new("the host namespace").map_err(|e| crate::error::chain(&e))?;
        Ok((cur, nl))
    })();
    let peers = h
        .peers
        .iter()
        .map(|(path, id)| {
            let p = NetNs::open_path(Path::new(path))
                .map_err(|e| format!("peer namespace {path}: {}", crate::error::chain(&e)))?;
            if p.identity() != *id {
                return Err(format!(
                    "peer namespace {path} is another namespace now: its changes are left"
                ));
            }
            let n = path.clone();
            let nl = p
                .run(move || Nl::new(&n))
                .map_err(|e| crate::error::chain(&e))?;
            Ok((p, nl))
        })
        .collect();
    Ok(Reopened {
        target,
        host,
        peers,
    })
}

/// What a recovery did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// the journal undone (None: there was none)
    pub journal: Option<std::path::PathBuf>,
    /// the pid of the restore that was killed
    pub pid: u32,
    /// undo entries replayed
    pub entries: usize,
}

/// Undoes the half restore of `ns` whose journal is in `dir`, if a killed restore left one.
/// A journal whose restore is still running is refused (it undoes itself or finishes).
pub fn recover(ns: &NetNs, dir: &Path) -> Result<Recovered> {
    match log::find(dir, ns.identity())? {
        Found::None => Ok(Recovered::default()),
        Found::Busy(path) => Err(NetstateError::invalid(format!(
            "recover {}: a restore of it is running (its journal {} is locked)",
            ns.name(),
            path.display()
        ))),
        Found::Stale {
            mut file,
            path,
            dir: d,
            name,
        } => {
            let (h, records) = log::read(&mut file, &path)?;
            if h.target_id != ns.identity() {
                return Err(NetstateError::invalid(format!(
                    "recover {}: journal {} belongs to another namespace",
                    ns.name(),
                    path.display()
                )));
            }
            // the inode number of a namespace that is gone, given to a new one: the journal's
            // restore died with its namespace, there is nothing here to undo
            let cookie = ns.cookie().unwrap_or(0);
            if h.target_cookie != 0 && cookie != 0 && h.target_cookie != cookie {
                log::remove_stale(&d, &name, &path)?;
                tracing::warn!(
                    journal = %path.display(),
                    "removed the journal of a namespace that no longer exists (its inode number was reused)"
                );
                return Ok(Recovered::default());
            }
            let mut socks = reopen(ns, &h)?;
            let n = entries_len(&records);
            let errors = undo(records, ns, &mut socks);
            if !errors.is_empty() {
                return Err(NetstateError::RollbackFailed {
                    netns: ns.name().to_string(),
                    errors,
                });
            }
            log::remove_stale(&d, &name, &path)?;
            tracing::info!(journal = %path.display(), pid = h.pid, entries = n, "recovered a half restore");
            Ok(Recovered {
                journal: Some(path),
                pid: h.pid,
                entries: n,
            })
        }
    }
}

fn entries_len(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| match r {
            Record::Intent(_, v) => v.len(),
            Record::Settle(..) => 0,
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::log::Log;

    fn header() -> Header {
        Header {
            target: "t".into(),
            target_id: (1, 2),
            target_cookie: 0,
            host_id: (1, 3),
            peers: vec![("/run/netns/p".into(), (1, 4))],
            pid: 7,
        }
    }

    #[test]
    fn an_undo_without_text_is_described_from_its_request() {
        // RTM_DELROUTE of table 100 blackhole 10.60.0.0/16
        let payload = crate::nla::unhex("02100000640300060000000008000f0064000000080001000a3c0000");
        let entry = |msg_type, what: &str| NlEntry {
            sock: Sock::Target,
            msg_type,
            payload: payload.clone(),
            what: what.into(),
        };
        assert_eq!(
            what(&entry(crate::route::RTM_DELROUTE, "")),
            "delete route blackhole 10.60.0.0/16 table 100"
        );
        assert_eq!(
            what(&entry(crate::route::RTM_DELROUTE, "delete x")),
            "delete x"
        );
        assert_eq!(what(&entry(17, "")), "netlink request of type 17");
    }

    fn req(n: u8) -> Req {
        Req::Raw {
            msg_type: 17,
            payload: vec![n; 5],
        }
    }

    fn whats(v: &[Entry]) -> Vec<String> {
        v.iter()
            .map(|e| match e {
                Entry::Nl(n) => format!("{:?} {} {:?}", n.sock, n.what, n.payload),
                Entry::Sysctl { path, old, .. } => format!("sysctl {} {old}", path.join("/")),
                Entry::Firewall(_) => "firewall".into(),
                Entry::Features { link, .. } => format!("features {link}"),
            })
            .collect()
    }

    #[test]
    fn settles_drop_what_was_not_applied_even_when_records_interleave() {
        let log = Log::memory(&header()).unwrap();
        let (a, b, c) = (req(1), req(2), req(3));
        let first = log
            .intent([
                (Sock::Target, &a, "delete a"),
                (Sock::Host, &b, "delete b"),
                (Sock::Peer(0), &c, "delete c"),
            ])
            .unwrap();
        let second = log.intent([(Sock::Target, &c, "delete d")]).unwrap();
        log.sysctl(Sock::Target, &["ipv4".into(), "ip_forward".into()], "0")
            .unwrap();
        // the first batch settles after the second was announced: b failed
        log.settle(first, &[1]).unwrap();
        log.settle(second, &[]).unwrap();
        let (h, records) = log.read_back().unwrap();
        assert_eq!(h.pid, 7);
        assert_eq!(h.peers[0].0, "/run/netns/p");
        assert_eq!(
            whats(&entries(records)),
            [
                "Target delete a [1, 1, 1, 1, 1]",
                "Peer(0) delete c [3, 3, 3, 3, 3]",
                "Target delete d [3, 3, 3, 3, 3]",
                "sysctl ipv4/ip_forward 0",
            ]
        );
    }

    #[test]
    fn a_record_cut_short_by_a_kill_is_not_undone() {
        let a = req(9);
        let full = encode_two(&a);
        let (_, whole) = log::read(&mut full.as_slice(), Path::new("j")).unwrap();
        assert_eq!(whats(&entries(whole)).len(), 2);
        let cut = &full[..full.len() - 3];
        let (_, cut) = log::read(&mut &cut[..], Path::new("j")).unwrap();
        assert_eq!(whats(&entries(cut)), ["Target delete a [9, 9, 9, 9, 9]"]);
    }

    #[test]
    fn a_journal_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("crhook-journal-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Log::create(&dir, &header()).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.contains("writable by no one else"), "{e}");
    }

    /// A journal's bytes with a header and two intents, written to a file the way a restore
    /// writes it.
    fn encode_two(a: &Req) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("crhook-journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let log = Log::create(&dir, &header()).unwrap();
        log.intent([(Sock::Target, a, "delete a")]).unwrap();
        log.intent([(Sock::Target, a, "delete b")]).unwrap();
        let bytes = std::fs::read(dir.join("1-2.journal")).unwrap();
        log.remove().unwrap();
        assert!(!dir.join("1-2.journal").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        bytes
    }
}
