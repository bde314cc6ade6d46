//! `restore`: verify the images, plan against what the target already holds, refuse on any
//! conflict before changing anything, then apply in the order DESIGN.md gives, journaling
//! every change; on failure the journal is undone in reverse and every error reported.

mod apply;
mod applying;
mod dad;
mod guard;
mod kernel_ll;
pub mod links;
pub mod plan;
mod socks;
mod streamed;
mod up;

use std::time::Instant;

use crhook_core::{Kind, StatsRecorder};

use crate::api::{RestoreOptions, RestoreOutcome};
use crate::error::{NetstateError, Result};
use crate::family::{self, Addresses, Conflict, Family, Neighbours, Nexthops, Routes, Rules, Tc};
use crate::ifmap::IfMap;
use crate::journal::{Journal, Log};
use crate::link::capture::{dump, link_name};
use crate::netns::{NetNs, Target};
use crate::nl::Nl;
use crate::snapshot::Snapshot;
use crate::transform::{self, Transformed};

pub use plan::Plan;
pub use socks::Socks;

use apply::apply;
use applying::Applying;
use kernel_ll::link_locals;

/// Reads the image directory, then restores it ([`restore_snapshot`]); the stats also go to
/// `stats-restore.img` there when the directory is writable.
pub fn run(
    target: &Target,
    images: &std::path::Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let t = Instant::now();
    let dir = crate::snapshot::open_unchanged_deferred(images, "restore")?;
    let trust = dir.trust().clone();
    let bytes = dir.inventory().files.iter().map(|f| f.size).sum();
    // an image this host did not seal places nothing outside the target unless the operator
    // says so (the seal, --trust-images, or --external for one veth)
    let untrusted = (!trust.is_sealed() && !opts.trust_images).then(|| trust.to_string());
    let out = std::thread::scope(|s| {
        // the routes stay encoded until they are planned and added (see streamed.rs), unless
        // verify compares them all afterwards; the sysctls decode on while the target is
        // opened and planned against, and are joined before the first change
        let (snap, routes, sysctls) = Snapshot::read_in(s, &dir, !opts.verify)?;
        let saved = Saved { snap, routes };
        let read = Some((t.elapsed(), bytes));
        restore_with(target, saved, Some(sysctls), opts, read, untrusted)
    })?;
    // best effort: the image directory may be read-only (a mounted checkpoint archive); a
    // record of what happened, not state: not worth waiting for the disk
    let _ = crhook_core::write_file_unsynced(
        &images.join(Kind::StatsRestore.file_name()),
        Kind::StatsRestore,
        std::slice::from_ref(&out.stats),
    );
    Ok(out)
}

/// What restore restores: a snapshot, and its routes when they are still encoded.
struct Saved {
    snap: Snapshot,
    routes: Option<crhook_core::Encoded>,
}

/// The target and the sockets restore works through.
struct Opened {
    ns: NetNs,
    socks: Socks,
    /// what opening did that the caller should hear of (a half restore undone)
    warnings: Vec<String>,
}

/// Opens the target and the sockets; with `recover`, first undoes a half restore of the
/// target that a killed crhook left (its journal), so what is planned against is the target
/// as it was before that restore.
fn open(target: &Target, opts: &RestoreOptions, recover: bool) -> Result<Opened> {
    let ns = NetNs::open(target)?;
    let host_ns = NetNs::current()?;
    if ns.same_as(&host_ns) && !opts.allow_host_netns {
        return Err(NetstateError::invalid(format!(
            "restore into {}: that is the namespace crhook runs in; pass --allow-host-netns to restore into it",
            ns.name()
        )));
    }
    let mut warnings = Vec::new();
    let dir = journal_dir(opts);
    if recover {
        let r = crate::journal::replay::recover(&ns, &dir)?;
        if let Some(j) = r.journal {
            warnings.push(format!(
                "undid a half restore of {} left by crhook pid {} ({} changes, journal {})",
                ns.name(),
                r.pid,
                r.entries,
                j.display()
            ));
        }
    } else if let crate::journal::log::Found::Busy(_) | crate::journal::log::Found::Stale { .. } =
        crate::journal::log::find(&dir, ns.identity())?
    {
        warnings.push(format!(
            "{} holds a half restore (a restore is running or was killed): the next restore or `crhook recover` undoes it first",
            ns.name()
        ));
    }
    let name = ns.name().to_string();
    let mut target_nl = ns.run(|| Nl::new(&name))?;
    let mut host = Nl::new("the host namespace")?;
    let target_links = dump(&mut target_nl)?;
    let host_links = dump(&mut host)?;
    Ok(Opened {
        ns,
        warnings,
        socks: Socks {
            target: target_nl,
            target_links,
            host_ns,
            host,
            host_links,
            peers: Vec::new(),
        },
    })
}

/// A snapshot planned against the live target: what the transforms did, the plan of every
/// family, and the snapshot parts that apply needs.
pub(crate) struct Prepared {
    pub snap: Snapshot,
    pub transformed: Transformed,
    pub links: links::LinkPlan,
    pub addresses: family::Plan<crhook_proto::Address>,
    pub nexthops: family::Plan<crhook_proto::NexthopObject>,
    pub routes: family::Plan<crhook_proto::Route>,
    /// the routes to add when they were planned encoded (then `routes.to_add` is empty)
    pub streamed: Option<streamed::Streamed>,
    pub rules: family::Plan<crhook_proto::Rule>,
    pub neighbours: family::Plan<crhook_proto::Neighbour>,
    pub tc: family::Plan<crhook_proto::TcObject>,
    /// what the image records but restore leaves out, as the caller allowed (`allow_lost`)
    pub lost: Vec<String>,
    pub firewall: Vec<crhook_proto::FirewallRuleset>,
    /// the saved link-local addresses the kernel made (restore leaves them to it)
    pub kernel_ll: Vec<crhook_proto::Address>,
    pub conflicts: Vec<Conflict>,
}

/// Captures what the target holds, transforms the snapshot (adopt, remap) and plans every
/// family against it.
fn prepare(
    o: &mut Opened,
    saved: Saved,
    opts: &RestoreOptions,
    untrusted: Option<&str>,
) -> Result<Prepared> {
    let Saved {
        mut snap,
        routes: encoded,
    } = saved;
    let socks = &mut o.socks;
    let mut finder = crate::link::PeerFinder::new(socks.host_ns.try_clone()?, &o.ns);
    let (mut live_links, _) = crate::link::capture(&mut socks.target, &mut finder)?;
    if let Some(mut e) = crate::ethtool::open_in(&o.ns)? {
        e.fill(&mut live_links)?;
    }
    let live_ifs = IfMap::from_names(
        socks
            .target_links
            .iter()
            .map(|m| (m.header.index, link_name(m))),
    );
    let mut live_addrs = Addresses::capture(&mut socks.target, &live_ifs)?;
    // kernel-made link-local addresses: the kernel makes them, restore reconciles them at the
    // end (see `link_locals`)
    live_addrs.retain(|a| !crate::addr::kernel_ll(a));
    let (kernel_ll, user): (Vec<_>, Vec<_>) = std::mem::take(&mut snap.addresses)
        .into_iter()
        .partition(crate::addr::kernel_ll);
    snap.addresses = user;
    let hints = transform::would_remap(
        &snap.addresses,
        &live_addrs,
        &live_links
            .iter()
            .filter(|l| !links::is_loopback(l))
            .map(|l| l.name.clone())
            .collect::<Vec<_>>(),
    );
    let mut transformed = transform::apply(
        &mut snap,
        &live_links,
        &live_addrs,
        &opts.adopt,
        &opts.remaps,
    )?;
    let adopted = transformed.adopted_set();
    // the saved objects move into the plans; verify compares them once restored
    let keep = opts.verify;
    let link_plan = links::plan(
        &snap.links,
        &live_links,
        socks,
        opts,
        &adopted,
        &hints,
        untrusted,
    )?;
    let addresses =
        family::plan::<Addresses>(take(&mut snap.addresses, keep), &live_addrs, &adopted);
    let nexthops = family::plan::<Nexthops>(
        take(&mut snap.nexthops, keep),
        &Nexthops::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let live_routes = Routes::capture(&mut socks.target, &live_ifs)?;
    let (routes, streamed) = match encoded {
        None => (
            family::plan::<Routes>(take(&mut snap.routes, keep), &live_routes, &adopted),
            None,
        ),
        Some(e) => {
            let (plan, s, n) = streamed::plan(e, &live_routes, &adopted, &transformed.remaps)?;
            transformed.remapped.routes += n;
            (plan, Some(s))
        }
    };
    drop(live_routes);
    let rules = family::plan::<Rules>(
        take(&mut snap.rules, keep),
        &Rules::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let neighbours = family::plan::<Neighbours>(
        take(&mut snap.neighbours, keep),
        &Neighbours::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let (tc, lost, refused) = plan_tc(&mut snap, socks, &live_ifs, &adopted, opts)?;
    let mut conflicts = link_plan.conflicts.clone();
    conflicts.extend(refused);
    for c in [
        &addresses.conflicts,
        &nexthops.conflicts,
        &routes.conflicts,
        &rules.conflicts,
        &neighbours.conflicts,
        &tc.conflicts,
    ] {
        conflicts.extend(c.iter().cloned());
    }
    let fw = if opts.firewall.skip || snap.firewall.is_empty() {
        Vec::new()
    } else {
        take(&mut snap.firewall, opts.verify)
    };
    // text the image may not say is refused before any tool sees it
    let hostile = crate::firewall::hostile(&fw);
    let refused = !hostile.is_empty();
    conflicts.extend(hostile.into_iter().map(|c| Conflict::text("firewall", c)));
    if !fw.is_empty() && !refused {
        conflicts.extend(
            crate::firewall::conflicts(&o.ns, &fw, &opts.firewall)?
                .into_iter()
                .map(|c| Conflict::text("firewall", c)),
        );
    }
    Ok(Prepared {
        snap,
        transformed,
        links: link_plan,
        addresses,
        nexthops,
        routes,
        streamed,
        rules,
        neighbours,
        tc,
        lost,
        firewall: fw,
        kernel_ll,
        conflicts,
    })
}

/// Traffic control planned against the live target. Objects running an eBPF program are
/// refused by name unless the caller allows their loss, then left out with a warning.
fn plan_tc(
    snap: &mut Snapshot,
    socks: &mut Socks,
    live_ifs: &IfMap,
    adopted: &std::collections::HashSet<String>,
    opts: &RestoreOptions,
) -> Result<(
    family::Plan<crhook_proto::TcObject>,
    Vec<String>,
    Vec<Conflict>,
)> {
    if let Some(w) = opts.allow_lost.iter().find(|w| *w != "bpf") {
        return Err(NetstateError::invalid(format!(
            "unknown allow-lost value {w:?} (known: bpf)"
        )));
    }
    let allowed = opts.allow_lost.iter().any(|w| w == "bpf");
    let (lost, carried): (Vec<_>, Vec<_>) = std::mem::take(&mut snap.tc)
        .into_iter()
        .partition(|o| o.bpf.is_some());
    let texts: Vec<String> = lost.iter().map(crate::tc::lost_text).collect();
    let refused = if allowed {
        Vec::new()
    } else {
        texts
            .iter()
            .map(|t| Conflict {
                kind: "tc".into(),
                object: String::new(),
                problem: format!("{t}, which restore cannot carry"),
                fields: Vec::new(),
                hint: Some("pass --allow-lost bpf to restore without it".into()),
            })
            .collect()
    };
    let live = if carried.is_empty() {
        Vec::new()
    } else {
        Tc::capture(&mut socks.target, live_ifs)?
    };
    let mut plan = family::plan::<Tc>(carried.clone(), &live, adopted);
    crate::tc::restore_order(&mut plan.to_add);
    // verify compares what was carried; the lost objects stay recorded in the image
    snap.tc = carried;
    let lost = if allowed {
        texts
            .into_iter()
            .map(|t| format!("{t}: not restored (--allow-lost bpf)"))
            .collect()
    } else {
        Vec::new()
    };
    Ok((plan, lost, refused))
}

/// What restoring `snap` into `target` would do, changing nothing; `untrusted` as for
/// restore (None for a snapshot the caller built or an image sealed with this host's key).
pub fn plan_snapshot(
    target: &Target,
    snap: Snapshot,
    opts: &RestoreOptions,
    untrusted: Option<&str>,
) -> Result<Plan> {
    let mut o = open(target, opts, false)?;
    for w in &o.warnings {
        tracing::warn!("{w}");
    }
    let p = prepare(&mut o, Saved { snap, routes: None }, opts, untrusted)?;
    Ok(plan::Plan::of(&p, o.ns.name()))
}

/// Restores `snap` into `target`, all or nothing; `read` is the time and bytes reading it
/// took, when it came from images. A snapshot the caller built is the caller's own: trusted.
pub fn restore_snapshot(
    target: &Target,
    snap: Snapshot,
    opts: &RestoreOptions,
    read: Option<(std::time::Duration, u64)>,
) -> Result<RestoreOutcome> {
    restore_with(target, Saved { snap, routes: None }, None, opts, read, None)
}

/// [`restore_snapshot`]; `sysctls`, when given, are the saved sysctls still decoding (`saved`
/// holds none then); `untrusted` says why the image may place nothing outside the target
/// (None: it may).
fn restore_with(
    target: &Target,
    saved: Saved,
    sysctls: Option<crate::snapshot::Decoding>,
    opts: &RestoreOptions,
    read: Option<(std::time::Duration, u64)>,
    untrusted: Option<String>,
) -> Result<RestoreOutcome> {
    let t0 = Instant::now();
    // the total is the whole restore's, the read of the images included
    let began = read
        .and_then(|(took, _)| t0.checked_sub(took))
        .unwrap_or(t0);
    let mut stats = StatsRecorder::since(began);
    if let Some((took, bytes)) = read {
        stats.add_bytes_read(bytes);
        stats.phase("read", took);
    }
    let mut counts = saved
        .snap
        .counts_apart(saved.routes.as_ref().map(|e| e.len() as u64), None);
    let mut o = open(target, opts, true)?;
    let t = Instant::now();
    let mut p = prepare(&mut o, saved, opts, untrusted.as_deref())?;
    let Opened {
        ns,
        mut socks,
        warnings: mut o_warnings,
    } = o;
    if !p.conflicts.is_empty() {
        return Err(NetstateError::Conflicts {
            netns: ns.name().to_string(),
            conflicts: p.conflicts,
        });
    }
    for r in p.transformed.remaps.list() {
        tracing::info!(remap = %r, "address remap");
    }
    if !p.transformed.adopted.is_empty() {
        tracing::info!(links = ?p.transformed.adopted, "adopted the runtime's links");
    }
    if !p.firewall.is_empty() {
        crate::firewall::check(&ns, &p.firewall, &opts.firewall)?;
    }
    crate::route::restore_order(&mut p.routes.to_add);
    stats.phase("plan", t.elapsed());
    crate::interrupt::check("restore").map_err(NetstateError::invalid)?;
    // the saved sysctls, held compact (see sysctl/saved.rs); verify compares them as
    // messages afterwards
    let keep = opts.verify;
    let sysctls = match sysctls {
        Some(d) => {
            let s = d.join()?;
            for (k, n) in &mut counts {
                if *k == "sysctls" {
                    *n = s.len() as u64;
                }
            }
            if keep {
                p.snap.sysctls = s.to_pb();
            }
            s
        }
        None => crate::sysctl::Saved::from_pb(&take(&mut p.snap.sysctls, keep)),
    };

    // apply
    // what restore adds: the planned families, the firewall and sysctls, the files
    // the saved snapshot is needed again only to verify; otherwise its big parts move
    let mut snap = p.snap;
    let mut todo = Snapshot {
        links: take(&mut snap.links, keep),
        addresses: p.addresses.to_add,
        nexthops: p.nexthops.to_add,
        routes: p.routes.to_add,
        rules: p.rules.to_add,
        neighbours: p.neighbours.to_add,
        tc: p.tc.to_add,
        firewall: p.firewall,
        sysctls: Vec::new(),
        tun_files: snap.tun_files.clone(),
        ext_files: snap.ext_files.clone(),
        skipped_files: Vec::new(),
    };
    let mut warnings = std::mem::take(&mut o_warnings);
    warnings.extend(p.lost.iter().cloned());
    let log = start_journal(&ns, &socks, opts, &mut warnings)?;
    let mut journal = Journal::new(log, crate::journal::fail_after_from_env());
    let mut files = Vec::new();
    let mut cx = Applying {
        ns: &ns,
        socks: &mut socks,
        journal: &mut journal,
        stats: &mut stats,
        warnings: &mut warnings,
        opts,
        routes: p.streamed.as_ref(),
        sysctls: &sysctls,
        dad: None,
        dad_keep: dad::keeps(todo.addresses.iter().chain(&p.kernel_ll))
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let applied = apply(&mut cx, &mut todo, &p.links, &p.kernel_ll, &mut files)
        .and_then(|()| link_locals(&mut cx, &todo.links, &p.links, &p.kernel_ll));
    // a failure before the links came up leaves accept_dad suspended: write it back
    let mut applied = applied;
    if let Some(s) = cx.dad.take() {
        let resumed = dad::resume(cx.ns, s);
        if !resumed.is_empty() {
            applied = match applied {
                Ok(()) => Err(resumed),
                Err(mut e) => {
                    e.extend(resumed);
                    Err(e)
                }
            };
        }
    }
    let applied = applied.and_then(|()| {
        if opts.verify {
            let adopted = p.transformed.adopted_set();
            snap.addresses.extend(p.kernel_ll.iter().cloned());
            let d = crate::diff::compare(&ns, &socks.host_ns, &snap, &opts.firewall, &adopted)
                .map_err(|e| vec![crate::error::chain(&e)])?;
            let mut problems: Vec<String> = d.iter().map(ToString::to_string).collect();
            problems.extend(
                dad::tentative_now(&mut socks.target, &snap.addresses)
                    .map_err(|e| vec![crate::error::chain(&e)])?,
            );
            if !problems.is_empty() {
                return Err(problems.iter().map(|x| format!("verify: {x}")).collect());
            }
        }
        Ok(())
    });
    let changes = journal.len();
    if let Err(errors) = applied {
        let undo_errors = rollback(journal.into_log(), &mut socks, &ns);
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
    if let Err(e) = journal.into_log().remove() {
        warnings.push(crate::error::chain(&e));
    }
    for (k, n) in counts {
        stats.count(k, n);
    }
    stats.count("changes", changes as u64);
    stats.count("adopted_links", p.transformed.adopted.len() as u64);
    stats.count("remapped_objects", p.transformed.remapped.total() as u64);
    stats.add_netlink_requests(socks.target.requests + socks.host.requests);
    for w in &warnings {
        stats.warn(w.clone());
    }
    let s = stats.finish();
    let objects = s.counts.values().sum();
    crate::free_later((p.streamed, p.links, p.transformed, snap, todo), objects);
    Ok(RestoreOutcome {
        stats: s,
        files,
        warnings,
    })
}

/// `v`'s contents: a copy when the original is still needed (`keep`), else moved out.
fn take<T: Clone>(v: &mut Vec<T>, keep: bool) -> Vec<T> {
    if keep {
        v.clone()
    } else {
        std::mem::take(v)
    }
}

/// Undoes a failed restore from its journal, newest change first, then removes the journal;
/// returns every error met.
pub fn rollback(log: Log, socks: &mut Socks, ns: &NetNs) -> Vec<String> {
    let mut errors = match log.read_back() {
        Ok((_, records)) => crate::journal::replay::undo(records, ns, socks),
        Err(e) => vec![format!(
            "read back the journal: {}",
            crate::error::chain(&e)
        )],
    };
    // the rollback did what it could; a journal left behind would only repeat it
    if let Err(e) = log.remove() {
        errors.push(crate::error::chain(&e));
    }
    errors
}

impl crate::journal::replay::Sockets for Socks {
    fn nl(&mut self, s: crate::journal::Sock) -> Result<&mut Nl> {
        self.get(s)
    }

    fn ns(&self, s: crate::journal::Sock) -> Result<&NetNs> {
        self.ns_of(s)
    }
}

/// The directory of restore journals: the caller's, or the default.
pub(crate) fn journal_dir(opts: &RestoreOptions) -> std::path::PathBuf {
    opts.journal_dir
        .clone()
        .unwrap_or_else(|| crate::journal::log::DEFAULT_DIR.into())
}

/// Starts the journal of a restore into `ns`: on disk, or in memory (with a warning) where
/// the journal directory cannot be had.
fn start_journal(
    ns: &NetNs,
    socks: &Socks,
    opts: &RestoreOptions,
    warnings: &mut Vec<String>,
) -> Result<Log> {
    let peers: Vec<&NetNs> = socks.peers.iter().map(|p| &p.0).collect();
    let header = crate::journal::log::header(ns, &socks.host_ns, &peers);
    let dir = journal_dir(opts);
    match Log::create(&dir, &header) {
        Ok(l) => Ok(l),
        Err(e @ NetstateError::Io { .. }) => {
            warnings.push(format!(
                "restore journal kept in memory ({}): a restore killed outright cannot be undone later",
                crate::error::chain(&e)
            ));
            Log::memory(&header)
        }
        Err(e) => Err(e),
    }
}
