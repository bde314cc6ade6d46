//! The kernel's floor for a restore, for the benchmark harness: what restore asked the kernel
//! to do, recorded as it was sent (the netlink buffers of every batch and transaction, the
//! tun devices made by ioctl, the sysctl writes), then replayed into a fresh namespace with
//! nothing else — no image reading, no planning, no dumps, no journal, no waiting for DAD.
//! The replay's time is the least any tool could take to make the same objects the same way;
//! restore's time above it is crhook's own overhead.
//!
//! Recording is off unless [`start`] turned it on (one process-wide switch: the benchmark
//! records one restore at a time); when off, the hooks cost one atomic load per batch.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crhook_proto as pb;

use crate::error::{NetstateError, Result};
use crate::netns::NetNs;
use crate::nl::Nl;

static ON: AtomicBool = AtomicBool::new(false);
static SENT: Mutex<Vec<Sent>> = Mutex::new(Vec::new());

/// One thing restore asked of the kernel.
#[derive(Debug, Clone)]
pub enum Sent {
    /// one `sendmsg` of requests (a batch chunk, or an nf_tables transaction)
    Netlink {
        protocol: isize,
        op: String,
        buf: Vec<u8>,
    },
    Tun {
        name: String,
        tun: pb::Tun,
        ifindex: Option<u32>,
    },
    Sysctl {
        path: PathBuf,
        value: String,
    },
}

impl Sent {
    /// The phase it belongs to, as the floor's table names it.
    pub fn op(&self) -> String {
        match self {
            Sent::Netlink { op, .. } => op.clone(),
            Sent::Tun { .. } => "create tun devices".into(),
            Sent::Sysctl { .. } => "write sysctls".into(),
        }
    }
}

/// Starts recording what restores send, dropping anything recorded before.
pub fn start() {
    if let Ok(mut s) = SENT.lock() {
        s.clear();
    }
    ON.store(true, Ordering::SeqCst);
}

/// Stops recording and returns what was sent, in order.
pub fn stop() -> Vec<Sent> {
    ON.store(false, Ordering::SeqCst);
    SENT.lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

fn record(s: impl FnOnce() -> Sent) {
    if ON.load(Ordering::Relaxed) {
        if let Ok(mut v) = SENT.lock() {
            v.push(s());
        }
    }
}

pub(crate) fn netlink(protocol: isize, op: &str, buf: &[u8]) {
    record(|| Sent::Netlink {
        protocol,
        op: op.to_string(),
        buf: buf.to_vec(),
    });
}

pub(crate) fn tun(name: &str, tun: &pb::Tun, ifindex: Option<u32>) {
    record(|| Sent::Tun {
        name: name.to_string(),
        tun: *tun,
        ifindex,
    });
}

pub(crate) fn sysctl(path: &std::path::Path, value: &str) {
    record(|| Sent::Sysctl {
        path: path.to_path_buf(),
        value: value.to_string(),
    });
}

/// The time of each phase of a replay, in first-sent order, and the requests that failed
/// (a floor with failures did not make the same objects).
#[derive(Debug, Default)]
pub struct Replayed {
    pub phases: Vec<(String, Duration)>,
    pub total: Duration,
    pub failed: usize,
    /// what failed: the operation, and the sysctl's path
    pub failures: Vec<String>,
}

/// Replays `sent` into `ns` (a fresh namespace), one thing after the other as restore did
/// them, on a thread inside it; only the sending and the kernel's answers are timed.
pub fn replay(ns: &NetNs, sent: Vec<Sent>) -> Result<Replayed> {
    let name = ns.name().to_string();
    ns.run(move || {
        let mut route = Nl::new(&name)?;
        let mut filter: Option<Nl> = None;
        let mut out = Replayed::default();
        let mut tuns = Vec::new();
        for s in sent {
            let op = s.op();
            let t = Instant::now();
            match s {
                Sent::Netlink { protocol, op, buf } => {
                    let nl = if protocol == netlink_sys::protocols::NETLINK_ROUTE {
                        &mut route
                    } else {
                        if filter.is_none() {
                            filter = Some(Nl::with_protocol(&name, protocol, "netlink")?);
                        }
                        filter
                            .as_mut()
                            .ok_or_else(|| NetstateError::invalid("no socket"))?
                    };
                    // what the kernel made by itself meanwhile (a multicast route of a link
                    // that came up) exists: the same object, not a failure
                    let errs: Vec<i32> = nl
                        .replay(&buf, &op)?
                        .into_iter()
                        .filter(|&e| e != libc::EEXIST)
                        .collect();
                    if !errs.is_empty() {
                        out.failed += errs.len();
                        out.failures.push(format!("{op}: errno {errs:?}"));
                    }
                }
                Sent::Tun { name, tun, ifindex } => {
                    // kept open until the end, as restore keeps its queues for their owners
                    tuns.push(crate::link::tun::create(&name, &tun, ifindex)?);
                }
                Sent::Sysctl { path, value } => {
                    if let Err(e) = std::fs::write(&path, &value) {
                        out.failed += 1;
                        out.failures.push(format!("{}: {e}", path.display()));
                    }
                }
            }
            let took = t.elapsed();
            out.total += took;
            match out.phases.iter_mut().find(|(p, _)| *p == op) {
                Some(p) => p.1 += took,
                None => out.phases.push((op, took)),
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(v: &[Sent]) -> usize {
        v.iter().filter(|s| s.op() == "floor test").count()
    }

    #[test]
    fn records_only_between_start_and_stop() {
        netlink(0, "floor test", &[1, 2, 3, 4]);
        start();
        netlink(0, "floor test", &[5, 6, 7, 8]);
        let got = stop();
        netlink(0, "floor test", &[9, 9, 9, 9]);
        assert_eq!(mine(&got), 1);
        let Some(Sent::Netlink { buf, protocol, .. }) = got.iter().find(|s| s.op() == "floor test")
        else {
            panic!("not recorded: {got:?}");
        };
        assert_eq!((buf.as_slice(), *protocol), (&[5u8, 6, 7, 8][..], 0));
        assert_eq!(mine(&stop()), 0);
    }
}
