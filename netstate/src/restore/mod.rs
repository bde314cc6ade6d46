//! `restore`: verify the images, plan against what the target already holds, refuse on any
//! conflict before changing anything, then apply in the order DESIGN.md gives, journaling
//! every change; on failure the journal is undone in reverse and every error reported.

pub mod links;

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use crhook_core::{ImageDir, Kind, StatsRecorder};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::link::LinkMessage;

use crate::api::{RestoreOptions, RestoreOutcome};
use crate::error::{NetstateError, Result};
use crate::family::{self, Addresses, Family, Neighbours, Nexthops, Routes, Rules};
use crate::ifmap::IfMap;
use crate::journal::{undo_req, Journal, Sock, Undo};
use crate::link::capture::{dump, link_name};
use crate::netns::{NetNs, Target};
use crate::nl::Nl;
use crate::snapshot::Snapshot;

/// The sockets restore works through: the target, the host (the namespace crhook runs in), and
/// any other namespace a veth peer goes to. Netlink sockets stay bound to the namespace they
/// were opened in, so one thread can drive them all.
pub struct Socks {
    pub target: Nl,
    pub target_links: Vec<LinkMessage>,
    pub host_ns: NetNs,
    pub host: Nl,
    pub host_links: Vec<LinkMessage>,
    pub peers: Vec<(NetNs, Nl, Vec<LinkMessage>)>,
}

impl Socks {
    pub fn get(&mut self, s: Sock) -> &mut Nl {
        match s {
            Sock::Target => &mut self.target,
            Sock::Host => &mut self.host,
            Sock::Peer(i) => match self.peers.get_mut(i) {
                Some(p) => &mut p.1,
                None => &mut self.host,
            },
        }
    }

    pub fn links_of(&self, s: Sock) -> &[LinkMessage] {
        match s {
            Sock::Target => &self.target_links,
            Sock::Host => &self.host_links,
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.2.as_slice())
                .unwrap_or_default(),
        }
    }

    pub fn links_refresh(&mut self, s: Sock) -> Result<Vec<LinkMessage>> {
        let l = dump(self.get(s))?;
        match s {
            Sock::Target => self.target_links = l.clone(),
            Sock::Host => self.host_links = l.clone(),
            Sock::Peer(i) => {
                if let Some(p) = self.peers.get_mut(i) {
                    p.2 = l.clone();
                }
            }
        }
        Ok(l)
    }

    pub fn name_of(&self, s: Sock) -> String {
        match s {
            Sock::Target => self.target.netns().to_string(),
            Sock::Host => "the host namespace".to_string(),
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.0.name().to_string())
                .unwrap_or_default(),
        }
    }

    pub fn ns_fd(&self, s: Sock) -> RawFd {
        match s {
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.0.fd().as_raw_fd())
                .unwrap_or(-1),
            _ => self.host_ns.fd().as_raw_fd(),
        }
    }
}

pub fn run(
    target: &Target,
    images: &std::path::Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let t0 = Instant::now();
    let mut stats = StatsRecorder::new();
    let t = Instant::now();
    let dir = ImageDir::open(images)?;
    let snap = Snapshot::read(&dir)?;
    stats.add_bytes_read(dir.inventory().files.iter().map(|f| f.size).sum());
    stats.phase("read", t.elapsed());
    let ns = NetNs::open(target)?;
    let host_ns = NetNs::current()?;
    if ns.same_as(&host_ns) && !opts.allow_host_netns {
        return Err(NetstateError::invalid(format!(
            "restore into {}: that is the namespace crhook runs in; pass --allow-host-netns to restore into it",
            ns.name()
        )));
    }
    let name = ns.name().to_string();
    let mut target_nl = ns.run(|| Nl::new(&name))?;
    let mut host = Nl::new("the host namespace")?;
    let target_links = dump(&mut target_nl)?;
    let host_links = dump(&mut host)?;
    let mut socks = Socks {
        target: target_nl,
        target_links: target_links.clone(),
        host_ns,
        host,
        host_links,
        peers: Vec::new(),
    };

    // plan: what is there, what conflicts
    let t = Instant::now();
    let mut finder = crate::link::PeerFinder::new(socks.host_ns.try_clone()?, &ns);
    let (live_links, _) = crate::link::capture(&mut socks.target, &mut finder)?;
    let link_plan = links::plan(&snap.links, &live_links, &mut socks, opts)?;
    let live_ifs = IfMap::from_names(target_links.iter().map(|m| (m.header.index, link_name(m))));
    let addrs = family::plan::<Addresses>(
        &snap.addresses,
        &Addresses::capture(&mut socks.target, &live_ifs)?,
    );
    let nhs = family::plan::<Nexthops>(
        &snap.nexthops,
        &Nexthops::capture(&mut socks.target, &live_ifs)?,
    );
    let mut routes = family::plan::<Routes>(
        &snap.routes,
        &Routes::capture(&mut socks.target, &live_ifs)?,
    );
    let rules = family::plan::<Rules>(&snap.rules, &Rules::capture(&mut socks.target, &live_ifs)?);
    let neighs = family::plan::<Neighbours>(
        &snap.neighbours,
        &Neighbours::capture(&mut socks.target, &live_ifs)?,
    );
    let mut conflicts = link_plan.conflicts.clone();
    for c in [
        &addrs.conflicts,
        &nhs.conflicts,
        &routes.conflicts,
        &rules.conflicts,
        &neighs.conflicts,
    ] {
        conflicts.extend(c.iter().cloned());
    }
    let fw = if opts.firewall.skip || snap.firewall.is_empty() {
        Vec::new()
    } else {
        snap.firewall.clone()
    };
    let fw_conflicts = if fw.is_empty() {
        Vec::new()
    } else {
        crate::firewall::conflicts(&ns, &fw, &opts.firewall)?
    };
    conflicts.extend(fw_conflicts);
    if !conflicts.is_empty() {
        return Err(NetstateError::Conflicts {
            netns: ns.name().to_string(),
            conflicts,
        });
    }
    if !fw.is_empty() {
        crate::firewall::check(&ns, &fw, &opts.firewall)?;
    }
    crate::route::restore_order(&mut routes.to_add);
    stats.phase("plan", t.elapsed());

    // apply
    let mut journal = Journal::new(opts.fail_after);
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    let applied = apply(
        &snap,
        &link_plan,
        &ns,
        &mut socks,
        &mut journal,
        &mut stats,
        &mut warnings,
        &fw,
        opts,
        &addrs.to_add,
        &nhs.to_add,
        &routes.to_add,
        &rules.to_add,
        &neighs.to_add,
        &mut files,
    );
    let applied = applied.and_then(|()| {
        if opts.verify {
            let d = crate::diff::compare(&ns, &socks.host_ns, &snap, &opts.firewall)
                .map_err(|e| vec![crate::error::chain(&e)])?;
            if !d.is_empty() {
                return Err(d.iter().map(|x| format!("verify: {x}")).collect());
            }
        }
        Ok(())
    });
    let changes = journal.len();
    if let Err(errors) = applied {
        let undo_errors = rollback(journal, &mut socks, &ns);
        return Err(if undo_errors.is_empty() {
            NetstateError::RolledBack {
                netns: ns.name().to_string(),
                errors,
            }
        } else {
            NetstateError::RollbackFailed {
                netns: ns.name().to_string(),
                errors: errors.into_iter().chain(undo_errors).collect(),
            }
        });
    }
    for (k, n) in snap.counts() {
        stats.count(k, n);
    }
    stats.count("changes", changes as u64);
    stats.add_netlink_requests(socks.target.requests + socks.host.requests);
    for w in &warnings {
        stats.warn(w.clone());
    }
    let mut s = stats.finish();
    s.total_us = t0.elapsed().as_micros() as u64;
    // best effort: the image directory may be read-only (a mounted checkpoint archive)
    let _ = crhook_core::write_file(
        &images.join(Kind::StatsRestore.file_name()),
        Kind::StatsRestore,
        std::slice::from_ref(&s),
    );
    Ok(RestoreOutcome {
        stats: s,
        files,
        warnings,
    })
}

#[allow(clippy::too_many_arguments)]
fn apply(
    snap: &Snapshot,
    lp: &links::LinkPlan,
    ns: &NetNs,
    socks: &mut Socks,
    journal: &mut Journal,
    stats: &mut StatsRecorder,
    warnings: &mut Vec<String>,
    fw: &[crhook_proto::FirewallRuleset],
    opts: &RestoreOptions,
    addrs: &[crhook_proto::Address],
    nhs: &[crhook_proto::NexthopObject],
    routes: &[crhook_proto::Route],
    rules: &[crhook_proto::Rule],
    neighs: &[crhook_proto::Neighbour],
    files: &mut Vec<crate::api::RestoredFile>,
) -> std::result::Result<(), Vec<String>> {
    // iptables rules go in before the links exist: iptables-restore resolves every numeric
    // port through getaddrinfo, which walks every device (50,000 rules: 0.9 s into an empty
    // namespace, 3.5 s once 2,000 links exist). Native nft tables may name devices by index
    // (iif, flowtables), so they follow the links. Links are down until much later, so no
    // traffic passes before either.
    let (xt, nft): (Vec<_>, Vec<_>) = fw
        .iter()
        .cloned()
        .partition(|r| r.source != crhook_proto::FirewallSource::Nft as i32);
    firewall(&xt, ns, opts, journal, warnings, stats, "firewall")?;
    let t = Instant::now();
    let ifs = links::create(&snap.links, lp, ns, socks, journal)?;
    stats.phase("links", t.elapsed());
    firewall(&nft, ns, opts, journal, warnings, stats, "nftables")?;
    let t = Instant::now();
    sysctls(&snap.sysctls, crate::sysctl::Phase::Early, ns, journal)?;
    stats.phase("sysctls_early", t.elapsed());
    let t = Instant::now();
    family::apply::<Addresses>(&mut socks.target, Sock::Target, addrs, &ifs, journal)?;
    stats.phase("addresses", t.elapsed());
    let t = Instant::now();
    let v6_links = addrs
        .iter()
        .filter(|a| a.family == libc::AF_INET6 as u32)
        .map(|a| a.ifindex)
        .collect();
    links::up(&snap.links, lp, &ifs, &v6_links, socks, journal)?;
    // IPv6 addresses added while their link was down miss the prefix route of a finite
    // lifetime and the peer route of a NODAD address; replacing them once up makes those.
    // Their undo is the deletion already journaled.
    let refresh: Vec<_> = addrs
        .iter()
        .filter(|a| crate::addr::refresh_after_up(a))
        .cloned()
        .collect();
    let before = journal.len();
    family::apply_with::<Addresses>(
        &mut socks.target,
        Sock::Target,
        &refresh,
        &ifs,
        journal,
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    journal.truncate(before);
    stats.phase("up", t.elapsed());
    let t = Instant::now();
    family::apply::<Nexthops>(&mut socks.target, Sock::Target, nhs, &ifs, journal)?;
    // IPv6 routes sharing table, prefix and metric on other devices are refused with EXCL
    let mut routes = routes.to_vec();
    let appended = crate::route::take_appended(&mut routes);
    family::apply::<Routes>(&mut socks.target, Sock::Target, &routes, &ifs, journal)?;
    family::apply_with::<Routes>(
        &mut socks.target,
        Sock::Target,
        &appended,
        &ifs,
        journal,
        NLM_F_CREATE | NLM_F_APPEND,
    )?;
    stats.phase("routes", t.elapsed());
    let t = Instant::now();
    family::apply::<Rules>(&mut socks.target, Sock::Target, rules, &ifs, journal)?;
    family::apply::<Neighbours>(&mut socks.target, Sock::Target, neighs, &ifs, journal)?;
    stats.phase("rules_neighbours", t.elapsed());
    let t = Instant::now();
    sysctls(&snap.sysctls, crate::sysctl::Phase::Late, ns, journal)?;
    stats.phase("sysctls", t.elapsed());
    if !snap.tun_files.is_empty() || !snap.ext_files.is_empty() {
        let t = Instant::now();
        *files =
            crate::tunfile::restore(ns, snap, opts).map_err(|e| vec![crate::error::chain(&e)])?;
        stats.phase("files", t.elapsed());
    }
    Ok(())
}

fn firewall(
    rulesets: &[crhook_proto::FirewallRuleset],
    ns: &NetNs,
    opts: &RestoreOptions,
    journal: &mut Journal,
    warnings: &mut Vec<String>,
    stats: &mut StatsRecorder,
    phase: &str,
) -> std::result::Result<(), Vec<String>> {
    if rulesets.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    match crate::firewall::restore(ns, rulesets, &opts.firewall) {
        Ok(u) => {
            warnings.extend(u.warnings.iter().cloned());
            journal.push(Undo::Firewall(u));
            journal.check().map_err(|e| vec![e])?;
        }
        Err((e, u)) => {
            journal.push(Undo::Firewall(u));
            return Err(vec![crate::error::chain(&e)]);
        }
    }
    stats.phase(phase, t.elapsed());
    Ok(())
}

fn sysctls(
    saved: &[crhook_proto::Sysctl],
    phase: crate::sysctl::Phase,
    ns: &NetNs,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    if saved.is_empty() {
        return Ok(());
    }
    let name = ns.name().to_string();
    let r = ns
        .run(|| {
            let mut nl = Nl::new(&name)?;
            Ok(crate::sysctl::apply_with(
                &mut nl,
                saved,
                phase,
                &|n: &str| Some(n.to_string()),
            ))
        })
        .map_err(|e| vec![crate::error::chain(&e)])?;
    match r {
        Ok(u) => {
            if !u.is_empty() {
                journal.push(Undo::Sysctl(u));
            }
            journal.check().map_err(|e| vec![e])
        }
        Err((e, u)) => {
            if !u.is_empty() {
                journal.push(Undo::Sysctl(u));
            }
            Err(vec![crate::error::chain(&e)])
        }
    }
}

/// Undoes the journal in reverse; returns every error met.
pub fn rollback(journal: Journal, socks: &mut Socks, ns: &NetNs) -> Vec<String> {
    let mut errors = Vec::new();
    for u in journal.into_entries().into_iter().rev() {
        match u {
            Undo::Nothing => {}
            Undo::Req { sock, req, what } => {
                if let Some(e) = undo_req(socks.get(sock), req, &what) {
                    errors.push(e);
                }
            }
            Undo::Sysctl(s) => match ns.run(|| Ok(s.undo())) {
                Ok(errs) => errors.extend(
                    errs.into_iter()
                        .map(|e| format!("undo sysctl: {}", crate::error::chain(&e))),
                ),
                Err(e) => errors.push(format!("undo sysctls: {}", crate::error::chain(&e))),
            },
            Undo::Firewall(f) => errors.extend(
                f.undo(ns)
                    .into_iter()
                    .map(|e| format!("undo firewall: {}", crate::error::chain(&e))),
            ),
        }
    }
    errors
}
