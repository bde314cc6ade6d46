//! Applying a prepared restore in the order DESIGN.md gives (firewall, links, early sysctls,
//! traffic control, addresses, up, nexthops, routes, rules, neighbours, late sysctls, files),
//! every change journaled, with two changes of order:
//!
//! - the late sysctls go in beside the firewall transaction, less those the firewall may
//!   bring into existence (`netfilter`, `bridge`), which follow it (see `apply`);
//! - where restore raised its guard (guard.rs: the target passed no traffic before, and the
//!   saved firewall is nf_tables state), the links come up before the nf_tables
//!   transaction, which then runs beside the IPv6 addresses and the routes; the guard drops
//!   every packet until the transaction and every sysctl are in, so the namespace still
//!   passes no traffic without its rules.
//!
//! What follows link up is in up.rs. The kernel's own link-locals are reconciled after it all
//! (`kernel_ll.rs`). The caller (`restore_with`) owns the journal's fate: rollback or success.

use std::time::Instant;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};

use super::applying::{is_v6, sysctls_logged, Applying};
use super::up::{links_up, once_up};
use super::{dad, guard, links, streamed};
use crate::error::NetstateError;
use crate::family::{self, Addresses, Tc};
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock};
use crate::netns::NetNs;
use crate::snapshot::Snapshot;

/// Applies `todo` (the saved links, and of every other family only what the plan must add) in
/// the order DESIGN.md gives, journaling each change.
pub(super) fn apply(
    cx: &mut Applying,
    todo: &mut Snapshot,
    lp: &links::LinkPlan,
    kernel_ll: &[crhook_proto::Address],
    files: &mut Vec<crate::api::RestoredFile>,
) -> std::result::Result<(), Vec<String>> {
    // The firewall goes in before the links exist (iptables-restore of legacy rules resolves
    // every numeric port through getaddrinfo, which walks every device: 50,000 rules take
    // 0.9 s into an empty namespace, 3.5 s once 2,000 links exist), except what hooks devices
    // (netdev chains, flowtables, nft text), which follows them; see split_for_links. Links
    // are down until much later, so no traffic passes before either.
    let (xt, nft) = crate::firewall::split_for_links(std::mem::take(&mut todo.firewall));
    let todo = &*todo;
    // The sysctls the early phase did not write (`Phase::Rest`) go in on a thread of their
    // own, started once this thread has nothing left to do but wait for the firewall
    // transaction: beside it the second core is mostly idle at L, while beside the routes
    // they took it from the kernel's route work (L: routes 233 -> 210 ms, restore 905 ->
    // 872 ms; M unchanged within its noise; BENCHMARKS.md). No key of theirs waits for a
    // link to be up or an address to exist; the saved values are in place before traffic
    // can pass, as they were in the original.
    let (ns, log, sysctls) = (cx.ns, cx.journal.log().clone(), cx.sysctls);
    std::thread::scope(|outer| {
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let handle = outer.spawn(move || {
            // no signal: what precedes link up failed, restore is failing
            gate.recv().ok()?;
            let t = Instant::now();
            let r = sysctls_logged(sysctls, crate::sysctl::Phase::Rest, ns, log);
            Some((r, t.elapsed()))
        });
        let rest = Rest { go, handle };
        apply_in(cx, todo, lp, kernel_ll, files, (xt, nft), rest, outer)
    })
}

/// The thread writing the sysctls of [`crate::sysctl::Phase::Rest`], and what starts it.
struct Rest<'s> {
    go: std::sync::mpsc::Sender<()>,
    handle: std::thread::ScopedJoinHandle<'s, RestDone>,
}

type RestDone = Option<(std::result::Result<usize, Vec<String>>, std::time::Duration)>;

/// [`apply`], beside the thread `rest`; the routes' builder thread runs in `outer`.
#[allow(clippy::too_many_arguments)]
fn apply_in<'a: 's, 's>(
    cx: &mut Applying<'a>,
    todo: &Snapshot,
    lp: &links::LinkPlan,
    kernel_ll: &[crhook_proto::Address],
    files: &mut Vec<crate::api::RestoredFile>,
    (xt, nft): (
        Vec<crhook_proto::FirewallRuleset>,
        Vec<crhook_proto::FirewallRuleset>,
    ),
    rest: Rest<'s>,
    outer: &'s std::thread::Scope<'s, '_>,
) -> std::result::Result<(), Vec<String>> {
    // nf_tables state replayed over nfnetlink takes no RTNL and resolves nothing: its
    // transaction runs on its own thread. It starts once the links exist: registering a
    // device waits for nf_tables' commit mutex (`nf_tables_netdev_event`), which a
    // transaction holds from start to end, so links made beside it only waited (measured at
    // M: the links phase took the transaction's 65 ms); it is planned and built meanwhile
    // (10 ms at M, ~100 ms at L, off the critical path). Behind the guard (guard.rs) it
    // starts once the links are up and runs beside the IPv6 addresses and the routes;
    // without, it runs beside what precedes link up and is joined before any link comes up.
    // Rulesets restored by a tool go first, alone.
    let overlap = !xt.is_empty()
        && xt
            .iter()
            .all(|r| r.source == crhook_proto::FirewallSource::Nftables as i32);
    if !overlap {
        firewall(cx, &xt, "firewall")?;
    }
    let after_up = cx.routes.map_or(0, streamed::Streamed::len)
        + todo.routes.len()
        + todo.addresses.iter().filter(|a| is_v6(a)).count();
    let guard = match overlap {
        true => guard::raise(cx, lp.target_up, xt.iter().chain(&nft), after_up)?,
        false => None,
    };
    let beside = guard.is_some();
    let (ns, fw_opts, routes) = (cx.ns, &cx.opts.firewall, cx.routes);
    let log = cx.journal.log().clone();
    let after = std::thread::scope(|s| {
        let (go, gate) = std::sync::mpsc::channel::<bool>();
        let fw = overlap.then(|| {
            s.spawn(move || {
                let sent = std::cell::Cell::new(None);
                let mut go = || {
                    let go = gate.recv().unwrap_or(false);
                    sent.set(Some(Instant::now()));
                    go
                };
                let r = restore_firewall(ns, &xt, fw_opts, &log, &mut go);
                let took = sent.get().map(|t| t.elapsed());
                // the saved rulesets are in the kernel now (at L ~20 MiB decoded, which the
                // routes' requests come on top of)
                drop(xt);
                (r, took)
            })
        });
        // a veth's channels go down before the transaction runs: each waits for an RCU grace
        // period, which takes ~50 µs while the other core builds the batch and ~1 ms once it
        // is in the kernel committing it
        let made = make_links(cx, todo, lp).and_then(|ifs| {
            let t = Instant::now();
            channels(cx, &todo.links, lp)?;
            cx.stats.phase("channels", t.elapsed());
            Ok(ifs)
        });
        // whether the transaction was let go (a receiver gone has failed already: its join
        // says why)
        let mut started = made.is_ok();
        if !beside {
            let _ = go.send(started);
        }
        let r = made.and_then(|ifs| before_up(cx, todo, lp, kernel_ll, &nft, ifs));
        // a receiver gone has panicked: its join says so
        let ok = r.is_ok();
        let start_rest = || {
            if ok {
                let _ = rest.go.send(());
            }
        };
        // this thread would only wait for the transaction: the routes' requests are built
        // meanwhile (at M most of them) on a thread that goes on beside link up, which
        // starts the sysctls once it has two chunks ready; without one they start now.
        // Without a transaction the builder still starts here, so it has put a fresh
        // namespace's routes in order (see streamed::plan) before they are sent.
        let feed = match (&r, routes) {
            (Ok((ifs, _)), Some(st)) => {
                let go = rest.go.clone();
                let waiting = move || {
                    let _ = go.send(());
                };
                Some(streamed::start(outer, st, ifs.clone(), waiting))
            }
            _ => None,
        };
        let Some(h) = fw else {
            start_rest();
            return r.map(|(ifs, quiet)| Some((ifs, quiet, feed)));
        };
        if feed.is_none() {
            start_rest();
        }
        let r = match r {
            // behind the guard: the links up, then the transaction beside the rest. Up
            // beside it waited: a link up makes linkwatch deactivate queues, which waits
            // under RTNL for an RCU grace period that the CPU running the transaction in the
            // kernel holds back (up 40 -> 190 ms at L)
            Ok((ifs, quiet)) if beside => {
                let up = links_up(cx, todo, lp, &ifs, &quiet);
                started = up.is_ok();
                let _ = go.send(started);
                up.and_then(|()| once_up(cx, todo, &ifs, &quiet, feed, false))
                    .map(|()| None)
            }
            r => r.map(|(ifs, quiet)| Some((ifs, quiet, feed))),
        };
        // not let go yet: never now
        drop(go);
        let mut errors = r.as_ref().err().cloned().unwrap_or_default();
        match h.join() {
            Ok((res, took)) => {
                if let Some(took) = took {
                    cx.stats.phase("firewall", took);
                }
                // not started when what precedes it failed, which errors already says
                if let (true, Err(e)) = (started, firewall_done(cx, res)) {
                    errors.push(e);
                }
            }
            Err(_) => errors.push("firewall restore thread panicked".to_string()),
        }
        // the builder may not have had to wait yet: the transaction no longer needs the core
        start_rest();
        if errors.is_empty() {
            r
        } else {
            Err(errors)
        }
    })?;
    let mut errors = Vec::new();
    if let Some((ifs, quiet, feed)) = after {
        let r = links_up(cx, todo, lp, &ifs, &quiet)
            .and_then(|()| once_up(cx, todo, &ifs, &quiet, feed, true));
        errors.extend(r.err().into_iter().flatten());
    } else if beside {
        // the keys the firewall may have brought, now that it is in
        let log = cx.journal.log().clone();
        match sysctls_logged(cx.sysctls, crate::sysctl::Phase::Firewalled, cx.ns, log) {
            Ok(n) => cx.journal.made(n),
            Err(e) => errors.extend(e),
        }
    }
    match rest.handle.join() {
        Ok(Some((r, took))) => {
            match r {
                Ok(n) => cx.journal.made(n),
                Err(e) => errors.extend(e),
            }
            cx.stats.phase("sysctls", took);
        }
        // signalled once what precedes link up went in, which it did
        Ok(None) => errors.push("late sysctl thread not started".to_string()),
        Err(_) => errors.push("late sysctl thread panicked".to_string()),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    cx.journal.check().map_err(|e| vec![e])?;
    if let Some(g) = guard {
        let t = Instant::now();
        guard::lower(cx, g)?;
        cx.stats.phase("guard", t.elapsed());
    }
    if !todo.tun_files.is_empty() || !todo.ext_files.is_empty() {
        let t = Instant::now();
        *files = crate::tunfile::restore(cx.ns, todo, cx.opts)
            .map_err(|e| vec![crate::error::chain(&e)])?;
        cx.stats.phase("files", t.elapsed());
    }
    Ok(())
}

/// The links (down), with their far ends' own state; the interfaces made.
fn make_links(
    cx: &mut Applying,
    todo: &Snapshot,
    lp: &links::LinkPlan,
) -> std::result::Result<IfMap, Vec<String>> {
    let t = Instant::now();
    let ifs = links::create(&todo.links, lp, cx.ns, cx.socks, cx.journal)?;
    links::far_end::rebuild(
        &todo.links,
        lp,
        cx.socks,
        cx.journal,
        links::far_end::Phase::Created,
    )?;
    cx.stats.phase("links", t.elapsed());
    Ok(ifs)
}

/// What goes on the links before they come up: traffic control, device features, the
/// firewall that hooks devices, the early sysctls and the IPv4 addresses (IPv6 ones follow link
/// up, see `v6_addresses`).
fn before_up(
    cx: &mut Applying,
    todo: &Snapshot,
    lp: &links::LinkPlan,
    kernel_ll: &[crhook_proto::Address],
    nft: &[crhook_proto::FirewallRuleset],
    ifs: IfMap,
) -> std::result::Result<(IfMap, links::ll::Quiet), Vec<String>> {
    // traffic control while the links are down: no packet leaves unshaped
    let t = Instant::now();
    family::apply::<Tc>(
        &mut cx.socks.target,
        Sock::Target,
        &todo.tc,
        &ifs,
        cx.journal,
    )?;
    cx.stats.phase("tc", t.elapsed());
    let t = Instant::now();
    features(cx, &todo.links, lp)?;
    cx.stats.phase("features", t.elapsed());
    firewall(cx, nft, "nftables")?;
    let t = Instant::now();
    sysctls(cx.sysctls, crate::sysctl::Phase::Early, cx.ns, cx.journal)?;
    cx.stats.phase("sysctls_early", t.elapsed());
    // no DAD for addresses that had passed it: usable when restore returns (see dad.rs)
    let no_dad = dad::devices(&todo.links, &todo.addresses, &cx.dad_keep);
    cx.dad = Some(
        dad::suspend(cx.ns, &no_dad, cx.journal.log())
            .map_err(|e| vec![crate::error::chain(&e)])?,
    );
    // the kernel-made link-locals go in with the others, the kernel's own generation off
    let quiet = links::ll::plan(&todo.links, lp, &ifs, kernel_ll, &cx.dad_keep, cx.sysctls);
    let t = Instant::now();
    links::ll::silence(&quiet, cx.socks, cx.journal)?;
    // IPv6 addresses wait for link up (see v6_addresses)
    family::apply_each::<Addresses>(
        &mut cx.socks.target,
        Sock::Target,
        todo.addresses.iter().filter(|a| !is_v6(a)),
        &ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    cx.stats.phase("addresses", t.elapsed());
    Ok((ifs, quiet))
}

/// Device features and channels of the links restore made (their undo is their deletion),
/// and features of those it configures (`lo`, journaled as they were), where they differ
/// from what the kernel gave the device.
fn features(
    cx: &mut Applying,
    links: &[crhook_proto::Link],
    lp: &links::LinkPlan,
) -> std::result::Result<(), Vec<String>> {
    let made: Vec<usize> = lp
        .create
        .iter()
        .chain(lp.partner.values())
        .copied()
        .collect();
    let configured: Vec<usize> = lp.configure.iter().map(|(i, _)| *i).collect();
    let wanted: Vec<(usize, crate::ethtool::Features)> = made
        .iter()
        .chain(&configured)
        .filter_map(|&i| Some((i, crate::ethtool::saved(links.get(i)?)?)))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let err = |e: NetstateError| vec![crate::error::chain(&e)];
    let Some(mut eth) = crate::ethtool::open_in(cx.ns).map_err(err)? else {
        return Err(vec![format!(
            "set device features in {}: the kernel has no ethtool netlink family",
            cx.ns.name()
        )]);
    };
    let live = eth.dump_by_name().map_err(err)?;
    let mut errors = Vec::new();
    for (i, want) in wanted {
        let name = &links[i].name;
        let Some(now) = live.get(name) else { continue };
        // a link restore did not make gets its features back as they were: logged first
        if configured.contains(&i) {
            cx.journal.log().features(name, now).map_err(err)?;
        }
        match eth.apply(name, &want, now) {
            Ok(0) => {}
            Ok(_) => cx.journal.made(1),
            Err(e) => errors.push(crate::error::chain(&e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    cx.journal.check().map_err(|e| vec![e])
}

/// Channels (queues in use) of the links restore made, where they differ from what the new
/// device has; undone with the link.
fn channels(
    cx: &mut Applying,
    links: &[crhook_proto::Link],
    lp: &links::LinkPlan,
) -> std::result::Result<(), Vec<String>> {
    let wanted: Vec<&crhook_proto::Link> = lp
        .create
        .iter()
        .chain(lp.partner.values())
        .filter_map(|&i| links.get(i))
        .filter(|l| l.channels.is_some())
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let err = |e: NetstateError| vec![crate::error::chain(&e)];
    let Some(mut eth) = crate::ethtool::open_in(cx.ns).map_err(err)? else {
        return Ok(());
    };
    let live: std::collections::HashMap<String, crhook_proto::Channels> = eth
        .dump_channels()
        .map_err(err)?
        .into_iter()
        .map(|(_, n, c)| (n, c))
        .collect();
    let mut errors = Vec::new();
    for l in wanted {
        let (Some(want), Some(now)) = (&l.channels, live.get(&l.name)) else {
            continue;
        };
        match eth.apply_channels(&l.name, want, now) {
            Ok(true) => cx.journal.made(1),
            Ok(false) => {}
            Err(e) => errors.push(crate::error::chain(&e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    cx.journal.check().map_err(|e| vec![e])
}

fn firewall(
    cx: &mut Applying,
    rulesets: &[crhook_proto::FirewallRuleset],
    phase: &str,
) -> std::result::Result<(), Vec<String>> {
    if rulesets.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let res = restore_firewall(
        cx.ns,
        rulesets,
        &cx.opts.firewall,
        cx.journal.log(),
        &mut || true,
    );
    firewall_done(cx, res).map_err(|e| vec![e])?;
    cx.stats.phase(phase, t.elapsed());
    Ok(())
}

/// Counts a firewall restore that went in (its steps' undo is in the journal already) and
/// keeps its warnings; a failed one is the restore's error.
#[allow(clippy::result_large_err)]
fn firewall_done(
    cx: &mut Applying,
    res: std::result::Result<
        crate::firewall::FirewallUndo,
        (crate::NetstateError, crate::firewall::FirewallUndo),
    >,
) -> std::result::Result<(), String> {
    let u = res.map_err(|(e, _)| crate::error::chain(&e))?;
    cx.warnings.extend(u.warnings);
    cx.journal.made(1);
    cx.journal.check()
}

/// The firewall restore, each step's undo written to the journal's log before the step runs.
#[allow(clippy::result_large_err)]
fn restore_firewall(
    ns: &NetNs,
    rulesets: &[crhook_proto::FirewallRuleset],
    opts: &crate::api::FirewallOptions,
    log: &crate::journal::Log,
    go: crate::firewall::Go,
) -> std::result::Result<
    crate::firewall::FirewallUndo,
    (crate::NetstateError, crate::firewall::FirewallUndo),
> {
    let last = std::cell::Cell::new(0u32);
    crate::firewall::restore_journaled(
        ns,
        rulesets,
        opts,
        &mut |u| {
            last.set(log.firewall(u)?);
            Ok(())
        },
        // a step that changed nothing is not undone; should this record fail to be written,
        // undoing it anyway finds nothing of its own to remove
        &mut |applied| {
            if !applied {
                let _ = log.settle(last.get(), &[0]);
            }
        },
        go,
    )
}

fn sysctls(
    saved: &crate::sysctl::Saved,
    phase: crate::sysctl::Phase,
    ns: &NetNs,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let n = sysctls_logged(saved, phase, ns, journal.log().clone())?;
    journal.made(n);
    journal.check().map_err(|e| vec![e])
}
