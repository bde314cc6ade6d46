//! Capturing a whole namespace into a [`Snapshot`]: shared by checkpoint, diff (the live side)
//! and restore (what is already there). The firewall save, which runs external programs, goes
//! on its own thread while the netlink families are dumped; a caller can have work done
//! beside it once they are in (`capture_beside`: checkpoint writes their image files).

use crhook_proto as pb;

use crate::api::FirewallOptions;
use crate::error::Result;
use crate::family::{Addresses, Family, Neighbours, Nexthops, Routes, Rules, Tc};
use crate::ifmap::IfMap;
use crate::link::{self, PeerFinder};
use crate::netns::NetNs;
use crate::nl::Nl;
use crate::snapshot::Snapshot;

pub struct Captured {
    pub snapshot: Snapshot,
    /// with `Parts::routes_encoded`: the routes as an image file and its entries (then
    /// `snapshot.routes` is empty)
    pub routes_encoded: Option<(Vec<u8>, u64)>,
    /// with `Parts::sysctls`: the sysctls, held compact (`snapshot.sysctls` is empty; see
    /// [`Captured::sysctls_into_snapshot`])
    pub sysctls: Option<crate::sysctl::Saved>,
    pub warnings: Vec<String>,
    pub netlink_requests: u64,
    /// (phase, microseconds)
    pub phases: Vec<(&'static str, u64)>,
}

impl Captured {
    /// (kind, count) of every family, the routes and sysctls held apart included.
    pub fn counts(&self) -> Vec<(&'static str, u64)> {
        self.snapshot.counts_apart(
            self.routes_encoded.as_ref().map(|r| r.1),
            self.sysctls.as_ref().map(|s| s.len() as u64),
        )
    }

    /// Puts the sysctls into `snapshot.sysctls` as messages, for what compares snapshots.
    pub fn sysctls_into_snapshot(&mut self) {
        if let Some(s) = self.sysctls.take() {
            self.snapshot.sysctls = s.to_pb();
        }
    }
}

/// What to capture besides the netlink families.
#[derive(Clone, Copy)]
pub struct Parts {
    pub firewall: bool,
    pub sysctls: bool,
    /// the routes encoded as they are dumped, for a caller that only writes them
    pub routes_encoded: bool,
}

pub fn capture(ns: &NetNs, host: &NetNs, fw: &FirewallOptions, parts: Parts) -> Result<Captured> {
    capture_beside(ns, host, fw, parts, &mut |_| Ok(false))
}

/// [`capture`], calling `beside` on this thread with what is captured so far once the netlink
/// families (and the sysctls) are in, again and again while the firewall is still being
/// dumped, until it returns `Ok(false)` (nothing left to do meanwhile). Each call should be
/// short: the firewall's end is noticed only between calls, and so is the capture's (under a
/// lock, the unlock). An error of `beside` fails the capture once the firewall thread has
/// ended. What `beside` did not get to is for its caller to do after the capture; without a
/// firewall to wait for it is not called at all.
pub fn capture_beside(
    ns: &NetNs,
    host: &NetNs,
    fw: &FirewallOptions,
    parts: Parts,
    beside: &mut dyn FnMut(&mut Captured) -> Result<bool>,
) -> Result<Captured> {
    std::thread::scope(|s| {
        let fw_thread = (parts.firewall && !fw.skip).then(|| {
            s.spawn(|| {
                let t = std::time::Instant::now();
                crate::firewall::capture(ns, fw).map(|r| (r, t.elapsed().as_micros() as u64))
            })
        });
        let sysctls_apart = fw_thread.is_none() || third_core();
        let net = capture_netlink(ns, host, parts, sysctls_apart).and_then(|mut c| {
            if let Some(h) = &fw_thread {
                while !h.is_finished() && beside(&mut c)? {}
            }
            Ok(c)
        });
        let mut c = match net {
            Ok(c) => c,
            Err(e) => {
                if let Some(h) = fw_thread {
                    let _ = h.join();
                }
                return Err(e);
            }
        };
        if let Some(h) = fw_thread {
            let (rules, us) = h.join().map_err(|_| {
                crate::error::NetstateError::invalid("firewall capture thread panicked")
            })??;
            c.snapshot.firewall = rules;
            c.phases.push(("firewall", us));
        }
        Ok(c)
    })
}

fn timed<T>(
    phases: &mut Vec<(&'static str, u64)>,
    name: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let t = std::time::Instant::now();
    let r = f()?;
    phases.push((name, t.elapsed().as_micros() as u64));
    Ok(r)
}

/// Whether this process may run on three CPUs or more.
fn third_core() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 3)
}

/// The netlink families, then the sysctls: on a thread of their own beside the families with
/// `sysctls_apart`, else on this thread after them. The firewall's thread (see [`capture`])
/// is the longest part of a large capture: on two CPUs a third thread took a share of its
/// CPU and made it end later (1,000 links and 100,000 routes: firewall 347 -> 277 ms,
/// checkpoint 422 -> 350 ms with the sysctls read after the families; the families and the
/// sysctls together still end before the firewall).
fn capture_netlink(
    ns: &NetNs,
    host: &NetNs,
    parts: Parts,
    sysctls_apart: bool,
) -> Result<Captured> {
    let mut phases = Vec::new();
    let name = ns.name().to_string();
    let mut nl = ns.run(|| Nl::new(&name))?;
    let mut peers = PeerFinder::new(host.try_clone()?, ns);
    let (mut links, dump) = timed(&mut phases, "links", || link::capture(&mut nl, &mut peers))?;
    timed(&mut phases, "features", || {
        match crate::ethtool::open_in(ns)? {
            Some(mut e) => e.fill(&mut links),
            None => Ok(()),
        }
    })?;
    let ifs = IfMap::from_names(links.iter().map(|l| (l.ifindex, l.name.clone())));
    let xdp = crate::tc::xdp_programs(&dump);
    // sysctls (mostly /proc reads) go with the link dump (dropped once they have read it)
    let read_sysctls = {
        let name = &name;
        move || {
            let t = std::time::Instant::now();
            ns.run(|| {
                let mut snl = Nl::new(name)?;
                let v = crate::sysctl::capture_from(&mut snl, dump)?;
                Ok((v, snl.requests, t.elapsed().as_micros() as u64))
            })
        }
    };
    let (families, sysctls) = std::thread::scope(|s| {
        let mut here = parts.sysctls.then_some(read_sysctls);
        let apart = if sysctls_apart {
            here.take().map(|f| s.spawn(f))
        } else {
            None
        };
        type Fams = (Snapshot, Option<(Vec<u8>, u64)>, Vec<(&'static str, u64)>);
        let fams = (|| -> Result<Fams> {
            let mut ph = Vec::new();
            let mut encoded = None;
            let snap = Snapshot {
                addresses: timed(&mut ph, "addresses", || Addresses::capture(&mut nl, &ifs))?,
                nexthops: timed(&mut ph, "nexthops", || Nexthops::capture(&mut nl, &ifs))?,
                routes: timed(&mut ph, "routes", || {
                    if !parts.routes_encoded {
                        return Routes::capture(&mut nl, &ifs);
                    }
                    encoded = Some(crate::route::capture_encoded(&mut nl, &ifs)?);
                    Ok(Vec::new())
                })?,
                rules: timed(&mut ph, "rules", || Rules::capture(&mut nl, &ifs))?,
                neighbours: timed(&mut ph, "neighbours", || Neighbours::capture(&mut nl, &ifs))?,
                tc: timed(&mut ph, "tc", || Tc::capture(&mut nl, &ifs))?,
                ..Default::default()
            };
            Ok((snap, encoded, ph))
        })();
        let sys = match (apart, here) {
            (Some(h), _) => Some(h.join().unwrap_or_else(|_| {
                Err(crate::error::NetstateError::invalid(
                    "sysctl capture thread panicked",
                ))
            })),
            // after the families, unless they failed
            (None, Some(f)) if fams.is_ok() => Some(f()),
            _ => None,
        };
        (fams, sys)
    });
    let (mut snap, routes_encoded, ph) = families?;
    phases.extend(ph);
    let mut requests = nl.requests;
    let sysctls = match sysctls {
        Some(r) => {
            let (v, n, us) = r?;
            requests += n;
            phases.push(("sysctls", us));
            Some(v)
        }
        None => None,
    };
    snap.tc.extend(xdp);
    let mut warnings = crate::tc::lost_warnings(&snap.tc);
    warnings.extend(peer_warnings(&links));
    snap.links = links;
    Ok(Captured {
        snapshot: snap,
        routes_encoded,
        sysctls,
        warnings,
        netlink_requests: requests,
        phases,
    })
}

/// What a checkpoint warns about captured links: veth peers in a namespace crhook could not
/// find.
pub(crate) fn peer_warnings(links: &[pb::Link]) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in links {
        if let Some(pb::link::Info::Veth(v)) = &l.info {
            if v.peer_place == pb::PeerPlace::PeerUnknown as i32 {
                warnings.push(format!(
                    "veth {}: its peer (ifindex {}) is in a namespace crhook could not find; restore needs --external veth:{}=NAME",
                    l.name, v.peer_ifindex, l.name
                ));
            }
        }
    }
    warnings
}
