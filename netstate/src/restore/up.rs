//! Once what precedes link up is in: the links up, then the IPv6 addresses, then the
//! nexthops, routes, rules and neighbours beside DAD settling (see apply.rs for the order).

use std::time::Instant;

use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};

use super::applying::{is_v6, sysctls_logged, Applying};
use super::{dad, links, streamed};
use crate::family::{self, Addresses, Family, Neighbours, Nexthops, Routes, Rules};
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock};
use crate::netns::NetNs;
use crate::nl::Nl;
use crate::snapshot::Snapshot;

/// The links up as saved, their address generation mode back, and their far ends' state
/// that waits for up.
pub(super) fn links_up(
    cx: &mut Applying,
    todo: &Snapshot,
    lp: &links::LinkPlan,
    ifs: &IfMap,
    quiet: &links::ll::Quiet,
) -> std::result::Result<(), Vec<String>> {
    let t = Instant::now();
    let v6_links = todo
        .addresses
        .iter()
        .filter(|a| a.family == libc::AF_INET6 as u32)
        .map(|a| a.ifindex)
        .collect();
    links::up(&todo.links, lp, ifs, &v6_links, cx.socks, cx.journal)?;
    // before any route: setting the mode notifies NETDEV_CHANGE, on which IPv6 walks its
    // whole FIB per link (`rt6_sync_up`); beside the routes it took 200-500 ms at L
    links::ll::resume(quiet, cx.socks, cx.journal)?;
    links::far_end::rebuild(
        &todo.links,
        lp,
        cx.socks,
        cx.journal,
        links::far_end::Phase::Up,
    )?;
    cx.stats.phase("up", t.elapsed());
    Ok(())
}

/// Once the links are up: the IPv6 addresses, then the routes, rules and neighbours beside
/// DAD settling. `firewalled`: the firewall is in, so the sysctls it may have brought go in
/// too (behind the guard the caller writes them once it is).
pub(super) fn once_up(
    cx: &mut Applying,
    todo: &Snapshot,
    ifs: &IfMap,
    quiet: &links::ll::Quiet,
    feed: Option<streamed::Feed>,
    firewalled: bool,
) -> std::result::Result<(), Vec<String>> {
    let t = Instant::now();
    v6_addresses(cx, todo, quiet, ifs)?;
    cx.stats.phase("addresses_v6", t.elapsed());
    // What follows link up but nothing waits for goes in beside the routes, rules and
    // neighbours, on a thread with its own socket: DAD settled and accept_dad written back.
    // /proc writes and netlink requests do not wait for each other (beyond RTNL now and
    // then). Every key's old value is journaled before it is written, from any thread.
    let (ns, log, sysctls) = (cx.ns, cx.journal.log().clone(), cx.sysctls);
    let dad = cx.dad.take();
    let keep = cx.dad_keep.clone();
    let own_ll = quiet.with_own_ll();
    let (tail, late) = std::thread::scope(|s| {
        let late = s.spawn(|| {
            let t = Instant::now();
            let r = after_up(ns, dad, ifs, &keep, &own_ll);
            let took = t.elapsed();
            // the keys the firewall may have brought, now that it is in
            let fw = match firewalled {
                true => sysctls_logged(sysctls, crate::sysctl::Phase::Firewalled, ns, log),
                false => Ok(0),
            };
            (r, took, fw)
        });
        (routes_rules_neighbours(cx, todo, ifs, feed), late.join())
    });
    let mut errors = tail.err().unwrap_or_default();
    match late {
        Ok((r, took, fw)) => {
            cx.stats.phase("dad", took);
            errors.extend(r.err().into_iter().flatten());
            match fw {
                Ok(n) => cx.journal.made(n),
                Err(e) => errors.extend(e),
            }
        }
        Err(_) => errors.push("DAD and firewall sysctl thread panicked".to_string()),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Once the links are up: DAD settled (no address tentative that had passed it) and
/// accept_dad written back, also after a failure to settle. `own_ll`: the links whose
/// link-local restore added itself (see `dad::settle`).
fn after_up(
    ns: &NetNs,
    dad: Option<dad::Suspended>,
    ifs: &IfMap,
    keep: &[String],
    own_ll: &std::collections::HashSet<u32>,
) -> std::result::Result<(), Vec<String>> {
    // nothing suspended: the kernel's DAD runs as it would have, nothing to wait for
    let Some(s) = dad.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let name = ns.name().to_string();
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    let settled = ns
        .run(|| Nl::new(&name))
        .and_then(|mut nl| dad::settle(&mut nl, ifs, &keep, own_ll));
    let mut errors = dad::resume(ns, s);
    if let Err(e) = settled {
        errors.insert(0, crate::error::chain(&e));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The nexthops, routes, rules and neighbours, once the links are up.
fn routes_rules_neighbours(
    cx: &mut Applying,
    todo: &Snapshot,
    ifs: &IfMap,
    feed: Option<streamed::Feed>,
) -> std::result::Result<(), Vec<String>> {
    let t = Instant::now();
    let target = &mut cx.socks.target;
    family::apply::<Nexthops>(target, Sock::Target, &todo.nexthops, ifs, cx.journal)?;
    // the builder was started with the links (apply_in) whenever there are routes to stream
    if let (Some(s), Some(feed)) = (cx.routes, feed) {
        streamed::apply(s, feed, target, ifs, cx.journal)?;
    }
    // IPv6 routes sharing table, prefix and metric on other devices are refused with EXCL
    let (routes, appended) = crate::route::split_appended(&todo.routes);
    add_each::<Routes>(target, &routes, ifs, cx.journal, NLM_F_CREATE | NLM_F_EXCL)?;
    add_each::<Routes>(
        target,
        &appended,
        ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_APPEND,
    )?;
    drop((routes, appended));
    cx.stats.phase("routes", t.elapsed());
    let t = Instant::now();
    family::apply::<Rules>(target, Sock::Target, &todo.rules, ifs, cx.journal)?;
    let (neighbours, remotes) = crate::neigh::fdb::split_appended(&todo.neighbours);
    add_each::<Neighbours>(
        target,
        &neighbours,
        ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    add_each::<Neighbours>(
        target,
        &remotes,
        ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_APPEND,
    )?;
    cx.stats.phase("rules_neighbours", t.elapsed());
    Ok(())
}

/// Adds `objs` of family `F` in the target, as [`family::apply_with`] does a slice.
fn add_each<F: Family>(
    target: &mut Nl,
    objs: &[&F::Obj],
    ifs: &IfMap,
    journal: &mut Journal,
    flags: u16,
) -> std::result::Result<(), Vec<String>> {
    family::apply_each::<F>(
        target,
        Sock::Target,
        objs.iter().copied(),
        ifs,
        journal,
        flags,
    )
}

/// The IPv6 addresses, the saved link-locals of the quiet links among them, once the links
/// are up and their address generation mode is back. Bringing a link up, and setting its
/// mode (NETDEV_CHANGE), makes IPv6 walk its whole FIB (`rt6_sync_up`), which the addresses'
/// local and prefix routes would fill: added before, they made the up phase at L 740 ms,
/// most of it those walks. Added now, the kernel makes their prefix routes (also of a finite
/// lifetime) and a NODAD peer's route as `ip addr add` on an up link does.
///
/// Where restore suspended DAD (see dad.rs) an address goes in with IFA_F_NODAD, then is
/// replaced with its saved flags, which clears it. Without the flag the kernel marks it
/// tentative, and on skipping DAD for a tentative address it bumps the IPv6 route generation
/// (`rt_genid_bump_ipv6`), which walks the whole FIB again, per address, on a worker under
/// RTNL that the routes then wait for; the replace changes flags only (no DAD, no walk).
fn v6_addresses(
    cx: &mut Applying,
    todo: &Snapshot,
    quiet: &links::ll::Quiet,
    ifs: &IfMap,
) -> std::result::Result<(), Vec<String>> {
    use crate::addr::IFA_F_NODAD;
    let keep = &cx.dad_keep;
    let quick =
        |a: &&crhook_proto::Address| a.flags & IFA_F_NODAD == 0 && !keep.contains(&a.ifname);
    let nodad = |a: &crhook_proto::Address| {
        let mut a = a.clone();
        if quick(&&a) {
            a.flags |= IFA_F_NODAD;
        }
        a
    };
    let first: Vec<_> = todo
        .addresses
        .iter()
        .filter(|a| is_v6(a))
        .map(nodad)
        .collect();
    let lls: Vec<_> = quiet.addresses.iter().map(nodad).collect();
    let target = &mut cx.socks.target;
    family::apply_with::<Addresses>(
        target,
        Sock::Target,
        &first,
        ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_EXCL,
    )?;
    // with NLM_F_REPLACE: a link that got carrier after its mode was back made its own
    family::apply_with::<Addresses>(
        target,
        Sock::Target,
        &lls,
        ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    drop((first, lls));
    // the saved flags; each undo is the deletion journaled above
    let before = cx.journal.len();
    family::apply_each::<Addresses>(
        target,
        Sock::Target,
        todo.addresses
            .iter()
            .filter(|a| is_v6(a))
            .chain(&quiet.addresses)
            .filter(quick),
        ifs,
        cx.journal,
        NLM_F_REPLACE,
    )?;
    cx.journal.truncate(before);
    Ok(())
}
