//! The replaying half of the floor: what a restore sent, sent again alone into a fresh
//! namespace and timed.

use std::time::{Duration, Instant};

use super::record::Sent;
use crate::error::Result;
use crate::netns::NetNs;
use crate::nl::Nl;

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
        // one socket per netlink family the restore used (rtnetlink, nfnetlink, genetlink)
        let mut socks: std::collections::HashMap<isize, Nl> = std::collections::HashMap::new();
        let mut out = Replayed::default();
        let mut tuns = Vec::new();
        for s in sent {
            let op = s.op();
            let t = Instant::now();
            match s {
                Sent::Netlink { protocol, op, buf } => {
                    let nl = match socks.entry(protocol) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(Nl::with_protocol(&name, protocol, "netlink")?)
                        }
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
