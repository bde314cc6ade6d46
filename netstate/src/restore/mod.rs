//! `restore`: verify the images, plan against what the target already holds, refuse on any
//! conflict before changing anything, then apply in the order DESIGN.md gives, journaling
//! every change; on failure the journal is undone in reverse and every error reported.

mod dad;
pub mod links;
pub mod plan;

use std::collections::HashSet;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use crhook_core::{Kind, StatsRecorder};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_REPLACE};
use netlink_packet_route::link::LinkMessage;

use crate::api::{RestoreOptions, RestoreOutcome};
use crate::error::{NetstateError, Result};
use crate::family::{self, Addresses, Conflict, Family, Neighbours, Nexthops, Routes, Rules};
use crate::ifmap::IfMap;
use crate::journal::{undo_req, Journal, Sock, Undo};
use crate::link::capture::{dump, link_name};
use crate::netns::{NetNs, Target};
use crate::nl::Nl;
use crate::snapshot::Snapshot;
use crate::transform::{self, Transformed};

pub use plan::Plan;

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
    /// The socket of `s`; a peer slot restore never opened is an error, never another
    /// namespace's socket.
    pub fn get(&mut self, s: Sock) -> Result<&mut Nl> {
        match s {
            Sock::Target => Ok(&mut self.target),
            Sock::Host => Ok(&mut self.host),
            Sock::Peer(i) => {
                self.peers.get_mut(i).map(|p| &mut p.1).ok_or_else(|| {
                    NetstateError::invalid(format!("no socket for peer namespace {i}"))
                })
            }
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
        let l = dump(self.get(s)?)?;
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

    /// The namespace of `s`.
    pub fn ns_of(&self, s: Sock) -> Result<&NetNs> {
        match s {
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| &p.0)
                .ok_or_else(|| NetstateError::invalid(format!("no peer namespace {i}"))),
            Sock::Host => Ok(&self.host_ns),
            Sock::Target => Err(NetstateError::invalid(
                "the target's namespace is not a peer's",
            )),
        }
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

    /// The namespace descriptor of `s` (for IFLA_NET_NS_FD); the target's is not here.
    pub fn ns_fd(&self, s: Sock) -> Result<RawFd> {
        match s {
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.0.fd().as_raw_fd())
                .ok_or_else(|| NetstateError::invalid(format!("no peer namespace {i}"))),
            Sock::Host => Ok(self.host_ns.fd().as_raw_fd()),
            Sock::Target => Err(NetstateError::invalid(
                "the target's own namespace descriptor is not a peer's",
            )),
        }
    }
}

/// Reads the image directory, then restores it ([`restore_snapshot`]); the stats also go to
/// `stats-restore.img` there when the directory is writable.
pub fn run(
    target: &Target,
    images: &std::path::Path,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let t = Instant::now();
    let dir = crate::snapshot::open_image(images)?;
    let trust = dir.trust().clone();
    if let crhook_core::Trust::BadSeal { .. } = trust {
        return Err(NetstateError::invalid(format!(
            "restore from {}: {trust}; the image was changed after it was sealed, refused",
            images.display()
        )));
    }
    let snap = Snapshot::read(&dir)?;
    let bytes = dir.inventory().files.iter().map(|f| f.size).sum();
    // an image this host did not seal places nothing outside the target unless the operator
    // says so (the seal, --trust-images, or --external for one veth)
    let untrusted = (!trust.is_sealed() && !opts.trust_images).then(|| trust.to_string());
    let out = restore_with(target, snap, opts, Some((t.elapsed(), bytes)), untrusted)?;
    // best effort: the image directory may be read-only (a mounted checkpoint archive)
    let _ = crhook_core::write_file(
        &images.join(Kind::StatsRestore.file_name()),
        Kind::StatsRestore,
        std::slice::from_ref(&out.stats),
    );
    Ok(out)
}

/// The target and the sockets restore works through.
struct Opened {
    ns: NetNs,
    socks: Socks,
}

fn open(target: &Target, opts: &RestoreOptions) -> Result<Opened> {
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
    Ok(Opened {
        ns,
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
    pub rules: family::Plan<crhook_proto::Rule>,
    pub neighbours: family::Plan<crhook_proto::Neighbour>,
    pub firewall: Vec<crhook_proto::FirewallRuleset>,
    /// the saved link-local addresses the kernel made (restore leaves them to it)
    pub kernel_ll: Vec<crhook_proto::Address>,
    pub conflicts: Vec<Conflict>,
}

/// Captures what the target holds, transforms the snapshot (adopt, remap) and plans every
/// family against it.
fn prepare(
    o: &mut Opened,
    mut snap: Snapshot,
    opts: &RestoreOptions,
    untrusted: Option<&str>,
) -> Result<Prepared> {
    let socks = &mut o.socks;
    let mut finder = crate::link::PeerFinder::new(socks.host_ns.try_clone()?, &o.ns);
    let (live_links, _) = crate::link::capture(&mut socks.target, &mut finder)?;
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
    let transformed = transform::apply(
        &mut snap,
        &live_links,
        &live_addrs,
        &opts.adopt,
        &opts.remaps,
    )?;
    let adopted = transformed.adopted_set();
    let link_plan = links::plan(
        &snap.links,
        &live_links,
        socks,
        opts,
        &adopted,
        &hints,
        untrusted,
    )?;
    let addresses = family::plan::<Addresses>(&snap.addresses, &live_addrs, &adopted);
    let nexthops = family::plan::<Nexthops>(
        &snap.nexthops,
        &Nexthops::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let routes = family::plan::<Routes>(
        &snap.routes,
        &Routes::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let rules = family::plan::<Rules>(
        &snap.rules,
        &Rules::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let neighbours = family::plan::<Neighbours>(
        &snap.neighbours,
        &Neighbours::capture(&mut socks.target, &live_ifs)?,
        &adopted,
    );
    let mut conflicts = link_plan.conflicts.clone();
    for c in [
        &addresses.conflicts,
        &nexthops.conflicts,
        &routes.conflicts,
        &rules.conflicts,
        &neighbours.conflicts,
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
        rules,
        neighbours,
        firewall: fw,
        kernel_ll,
        conflicts,
    })
}

/// What restoring `snap` into `target` would do, changing nothing; `untrusted` as for
/// restore (None for a snapshot the caller built or an image sealed with this host's key).
pub fn plan_snapshot(
    target: &Target,
    snap: Snapshot,
    opts: &RestoreOptions,
    untrusted: Option<&str>,
) -> Result<Plan> {
    let mut o = open(target, opts)?;
    let p = prepare(&mut o, snap, opts, untrusted)?;
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
    restore_with(target, snap, opts, read, None)
}

/// [`restore_snapshot`]; `untrusted` says why the image may place nothing outside the target
/// (None: it may).
fn restore_with(
    target: &Target,
    snap: Snapshot,
    opts: &RestoreOptions,
    read: Option<(std::time::Duration, u64)>,
    untrusted: Option<String>,
) -> Result<RestoreOutcome> {
    let t0 = Instant::now();
    let mut stats = StatsRecorder::new();
    if let Some((took, bytes)) = read {
        stats.add_bytes_read(bytes);
        stats.phase("read", took);
    }
    let counts = snap.counts();
    let mut o = open(target, opts)?;
    let t = Instant::now();
    let mut p = prepare(&mut o, snap, opts, untrusted.as_deref())?;
    let Opened { ns, mut socks } = o;
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

    // apply
    // what restore adds: the planned families, the firewall and sysctls, the files
    // the saved snapshot is needed again only to verify; otherwise its big parts move
    let keep = opts.verify;
    let mut snap = p.snap;
    let todo = Snapshot {
        links: take(&mut snap.links, keep),
        addresses: p.addresses.to_add,
        nexthops: p.nexthops.to_add,
        routes: p.routes.to_add,
        rules: p.rules.to_add,
        neighbours: p.neighbours.to_add,
        firewall: p.firewall,
        sysctls: take(&mut snap.sysctls, keep),
        tun_files: snap.tun_files.clone(),
        ext_files: snap.ext_files.clone(),
        skipped_files: Vec::new(),
    };
    let mut journal = Journal::new(crate::journal::fail_after_from_env());
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    let mut cx = Applying {
        ns: &ns,
        socks: &mut socks,
        journal: &mut journal,
        stats: &mut stats,
        warnings: &mut warnings,
        opts,
        dad: None,
        dad_keep: dad::keeps(todo.addresses.iter().chain(&p.kernel_ll))
            .into_iter()
            .map(String::from)
            .collect(),
    };
    let applied = apply(&mut cx, &todo, &p.links, &mut files)
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
    let mut s = stats.finish();
    s.total_us = t0.elapsed().as_micros() as u64;
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

/// What applying works with: the target, the sockets, the journal and what it reports.
struct Applying<'a> {
    ns: &'a NetNs,
    socks: &'a mut Socks,
    journal: &'a mut Journal,
    stats: &'a mut StatsRecorder,
    warnings: &'a mut Vec<String>,
    opts: &'a RestoreOptions,
    /// accept_dad suspended while addresses go in and links come up
    dad: Option<dad::Suspended>,
    /// devices that keep DAD: an address of theirs (the kernel's link-local included) was
    /// tentative or had failed DAD at checkpoint
    dad_keep: Vec<String>,
}

/// Applies `todo` (the saved links, and of every other family only what the plan must add) in
/// the order DESIGN.md gives, journaling each change.
fn apply(
    cx: &mut Applying,
    todo: &Snapshot,
    lp: &links::LinkPlan,
    files: &mut Vec<crate::api::RestoredFile>,
) -> std::result::Result<(), Vec<String>> {
    // The firewall goes in before the links exist (iptables-restore of legacy rules resolves
    // every numeric port through getaddrinfo, which walks every device: 50,000 rules take
    // 0.9 s into an empty namespace, 3.5 s once 2,000 links exist), except what hooks devices
    // (netdev chains, flowtables, nft text), which follows them; see split_for_links. Links
    // are down until much later, so no traffic passes before either.
    let (xt, nft) = crate::firewall::split_for_links(&todo.firewall);
    // nf_tables state replayed over nfnetlink takes no RTNL and resolves nothing: its
    // transaction runs on its own thread while the links and addresses go in, and is joined
    // before any link comes up. Rulesets restored by a tool go first, alone.
    let overlap = !xt.is_empty()
        && xt
            .iter()
            .all(|r| r.source == crhook_proto::FirewallSource::Nftables as i32);
    if !overlap {
        firewall(cx, &xt, "firewall")?;
    }
    let (ns, fw_opts) = (cx.ns, &cx.opts.firewall);
    let ifs = std::thread::scope(|s| {
        let fw = overlap.then(|| {
            let xt = &xt;
            s.spawn(move || {
                let t = Instant::now();
                (crate::firewall::restore(ns, xt, fw_opts), t.elapsed())
            })
        });
        let r = links_and_addresses(cx, todo, lp, &nft);
        let Some(h) = fw else { return r };
        let mut errors = r.as_ref().err().cloned().unwrap_or_default();
        match h.join() {
            Ok((res, took)) => {
                cx.stats.phase("firewall", took);
                match res {
                    Ok(u) => {
                        cx.warnings.extend(u.warnings.iter().cloned());
                        cx.journal.push(Undo::Firewall(u));
                        if let Err(e) = cx.journal.check() {
                            errors.push(e);
                        }
                    }
                    Err((e, u)) => {
                        cx.journal.push(Undo::Firewall(u));
                        errors.push(crate::error::chain(&e));
                    }
                }
            }
            Err(_) => errors.push("firewall restore thread panicked".to_string()),
        }
        if errors.is_empty() {
            r
        } else {
            Err(errors)
        }
    })?;
    let t = Instant::now();
    let v6_links = todo
        .addresses
        .iter()
        .filter(|a| a.family == libc::AF_INET6 as u32)
        .map(|a| a.ifindex)
        .collect();
    links::up(&todo.links, lp, &ifs, &v6_links, cx.socks, cx.journal)?;
    links::far_end::late(&todo.links, lp, cx.socks, cx.journal)?;
    if let Some(s) = cx.dad.take() {
        let keep: Vec<&str> = cx.dad_keep.iter().map(String::as_str).collect();
        let settled = dad::settle(&mut cx.socks.target, &ifs, &keep);
        let resumed = dad::resume(cx.ns, s);
        settled.map_err(|e| vec![crate::error::chain(&e)])?;
        if !resumed.is_empty() {
            return Err(resumed);
        }
    }
    // IPv6 addresses added while their link was down miss the prefix route of a finite
    // lifetime and the peer route of a NODAD address; replacing them once up makes those.
    // Their undo is the deletion already journaled.
    let refresh: Vec<_> = todo
        .addresses
        .iter()
        .filter(|a| crate::addr::refresh_after_up(a))
        .cloned()
        .collect();
    let before = cx.journal.len();
    let target = &mut cx.socks.target;
    family::apply_with::<Addresses>(
        target,
        Sock::Target,
        &refresh,
        &ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_REPLACE,
    )?;
    cx.journal.truncate(before);
    cx.stats.phase("up", t.elapsed());
    let t = Instant::now();
    family::apply::<Nexthops>(target, Sock::Target, &todo.nexthops, &ifs, cx.journal)?;
    // IPv6 routes sharing table, prefix and metric on other devices are refused with EXCL
    let mut routes = todo.routes.clone();
    let appended = crate::route::take_appended(&mut routes);
    family::apply::<Routes>(target, Sock::Target, &routes, &ifs, cx.journal)?;
    family::apply_with::<Routes>(
        target,
        Sock::Target,
        &appended,
        &ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_APPEND,
    )?;
    cx.stats.phase("routes", t.elapsed());
    let t = Instant::now();
    family::apply::<Rules>(target, Sock::Target, &todo.rules, &ifs, cx.journal)?;
    let mut neighbours = todo.neighbours.clone();
    let remotes = crate::neigh::fdb::take_appended(&mut neighbours);
    family::apply::<Neighbours>(target, Sock::Target, &neighbours, &ifs, cx.journal)?;
    family::apply_with::<Neighbours>(
        target,
        Sock::Target,
        &remotes,
        &ifs,
        cx.journal,
        NLM_F_CREATE | NLM_F_APPEND,
    )?;
    cx.stats.phase("rules_neighbours", t.elapsed());
    let t = Instant::now();
    sysctls(&todo.sysctls, crate::sysctl::Phase::Late, cx.ns, cx.journal)?;
    cx.stats.phase("sysctls", t.elapsed());
    if !todo.tun_files.is_empty() || !todo.ext_files.is_empty() {
        let t = Instant::now();
        *files = crate::tunfile::restore(cx.ns, todo, cx.opts)
            .map_err(|e| vec![crate::error::chain(&e)])?;
        cx.stats.phase("files", t.elapsed());
    }
    Ok(())
}

/// Links, the firewall that hooks them, the early sysctls and the addresses; the interfaces
/// made.
fn links_and_addresses(
    cx: &mut Applying,
    todo: &Snapshot,
    lp: &links::LinkPlan,
    nft: &[crhook_proto::FirewallRuleset],
) -> std::result::Result<IfMap, Vec<String>> {
    let t = Instant::now();
    let ifs = links::create(&todo.links, lp, cx.ns, cx.socks, cx.journal)?;
    links::far_end::early(&todo.links, lp, cx.socks, cx.journal)?;
    cx.stats.phase("links", t.elapsed());
    firewall(cx, nft, "nftables")?;
    let t = Instant::now();
    sysctls(
        &todo.sysctls,
        crate::sysctl::Phase::Early,
        cx.ns,
        cx.journal,
    )?;
    cx.stats.phase("sysctls_early", t.elapsed());
    // no DAD for addresses that had passed it: usable when restore returns (see dad.rs)
    let no_dad = dad::devices(&todo.links, &todo.addresses, &cx.dad_keep);
    cx.dad = Some(dad::suspend(cx.ns, &no_dad).map_err(|e| vec![crate::error::chain(&e)])?);
    let target = &mut cx.socks.target;
    let t = Instant::now();
    family::apply::<Addresses>(target, Sock::Target, &todo.addresses, &ifs, cx.journal)?;
    cx.stats.phase("addresses", t.elapsed());
    Ok(ifs)
}

/// Ends with exactly the saved kernel-made link-local addresses on the links restore made
/// (from images that track them): one the kernel made during the rebuild that the image does
/// not have goes (a bridge whose only port is a tap nobody holds has none, but gets one when a
/// carrier shows for a moment), and one the image has that the kernel did not make (no
/// carrier now) is added. Both are undone with their link.
fn link_locals(
    cx: &mut Applying,
    links: &[crhook_proto::Link],
    lp: &links::LinkPlan,
    saved: &[crhook_proto::Address],
) -> std::result::Result<(), Vec<String>> {
    let ours: HashSet<&str> = lp
        .create
        .iter()
        .chain(lp.partner.values())
        .map(|&i| &links[i])
        .filter(|l| l.ll_tracked && !links::is_loopback(l))
        .map(|l| l.name.as_str())
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    let err = |e: NetstateError| vec![crate::error::chain(&e)];
    let target = &mut cx.socks.target;
    let live_names: Vec<(u32, String)> = dump(target)
        .map_err(err)?
        .iter()
        .map(|m| (m.header.index, link_name(m)))
        .collect();
    // live addresses carry live indexes; saved ones saved indexes, mapped by name
    let ifs = IfMap::from_names(live_names.iter().cloned());
    let saved_ifs = IfMap::by_name(
        links.iter().map(|l| (l.ifindex, l.name.clone())),
        live_names,
    );
    let live: Vec<_> = Addresses::capture(target, &ifs)
        .map_err(err)?
        .into_iter()
        .filter(|a| crate::addr::kernel_ll(a) && ours.contains(a.ifname.as_str()))
        .collect();
    let key = |a: &crhook_proto::Address| (a.ifname.clone(), crate::addr::local_of(a).to_vec());
    let saved_keys: HashSet<_> = saved.iter().map(key).collect();
    let live_keys: HashSet<_> = live.iter().map(key).collect();
    let extra: Vec<_> = live
        .iter()
        .filter(|a| !saved_keys.contains(&key(a)))
        .collect();
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    for a in &extra {
        reqs.push(crate::addr::del_request(a, &ifs).map_err(err)?);
        what.push(format!("remove kernel-made {}", crate::addr::describe(a)));
    }
    if !reqs.is_empty() {
        let results = target
            .batch(&reqs, 0, "remove kernel-made addresses")
            .map_err(err)?;
        let failed: Vec<String> = results
            .into_iter()
            .zip(&what)
            .filter_map(|(r, w)| match r {
                // gone by itself meanwhile
                Err(e) if e.errno == libc::EADDRNOTAVAIL => None,
                Err(e) => Some(format!("{w} in {}: {e}", target.netns())),
                Ok(()) => None,
            })
            .collect();
        if !failed.is_empty() {
            return Err(failed);
        }
        cx.journal.push(Undo::Nothing);
        cx.journal.check().map_err(|e| vec![e])?;
    }
    let missing: Vec<_> = saved
        .iter()
        .filter(|a| ours.contains(a.ifname.as_str()) && !live_keys.contains(&key(a)))
        .cloned()
        .collect();
    family::apply::<Addresses>(target, Sock::Target, &missing, &saved_ifs, cx.journal)
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
    match crate::firewall::restore(cx.ns, rulesets, &cx.opts.firewall) {
        Ok(u) => {
            cx.warnings.extend(u.warnings.iter().cloned());
            cx.journal.push(Undo::Firewall(u));
            cx.journal.check().map_err(|e| vec![e])?;
        }
        Err((e, u)) => {
            cx.journal.push(Undo::Firewall(u));
            return Err(vec![crate::error::chain(&e)]);
        }
    }
    cx.stats.phase(phase, t.elapsed());
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
            Undo::Req { sock, req, what } => match socks.get(sock) {
                Ok(nl) => {
                    if let Some(e) = undo_req(nl, req, &what) {
                        errors.push(e);
                    }
                }
                Err(e) => errors.push(format!("{what}: {}", crate::error::chain(&e))),
            },
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
