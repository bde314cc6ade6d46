//! Routes restored from their image file a chunk at a time. A namespace's largest family is
//! its routes (100,000 at L: 3.8 MiB in the image, ~44 MiB decoded, more again as requests
//! with their undos), and restore needs each route twice: once to plan it against the target
//! (conflicts are refused before anything changes), once to add it. So the file stays
//! encoded ([`crhook_core::Encoded`]): the plan decodes it in order and keeps only the
//! indexes to add, in restore order; apply decodes those again, [`CHUNK`] at a time, and
//! sends each chunk as it is decoded. Decoding twice costs ~30 ms at L; holding the routes
//! cost ~45 MiB of peak RSS. Into a fresh namespace (no live route, nothing remapped) the
//! plan has nothing to compare, and the first decode, for the order alone, moves to the
//! builder thread (see [`plan`]). The IPv6 routes are built and sent on threads of their own,
//! beside the others (see [`apply`]).
//!
//! Used by `restore` from an image directory; a snapshot built in memory (the library's
//! `restore_snapshot`), and `--verify` (which compares every saved route afterwards), keep
//! the routes decoded.

use std::collections::HashSet;

use crhook_core::Encoded;
use crhook_proto::Route;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};

use crate::error::Result;
use crate::family::{self, Planner, Routes};
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock};
use crate::netns::NetNs;
use crate::nl::Nl;
use crate::transform::remap::Remaps;

/// Routes decoded, sent and dropped at a time: each chunk fills several 1 MiB netlink sends.
const CHUNK: usize = 4096;

/// The saved routes to add, still encoded.
#[derive(Debug)]
pub(crate) struct Streamed {
    entries: Encoded,
    /// the indexes of the routes to add, in restore order; None: all of them, put in order
    /// by the builder thread (see [`plan`])
    order: Option<Order>,
    remaps: Remaps,
}

impl Streamed {
    /// Route `i` as saved, remapped as the rest of the snapshot was.
    fn route(&self, i: usize) -> Result<Route> {
        decode(&self.entries, &self.remaps, i).map(|(r, _)| r)
    }
}

/// Route `i` of `entries`, remapped by `remaps`, and whether a remap changed it.
fn decode(entries: &Encoded, remaps: &Remaps, i: usize) -> Result<(Route, bool)> {
    let mut r: Route = entries.decode(i)?;
    let changed = !remaps.is_empty() && crate::transform::objects::route(remaps, &mut r);
    Ok((r, changed))
}

/// Plans the routes of `entries` against the target's `live` routes as `family::plan` does,
/// remapping each as the rest of the snapshot was; the plan's `to_add` stays empty (the
/// routes to add are the returned [`Streamed`]), and the number of routes a remap changed.
pub(crate) fn plan(
    entries: Encoded,
    live: &[Route],
    adopted: &HashSet<String>,
    remaps: &Remaps,
) -> Result<(family::Plan<Route>, Streamed, usize)> {
    let mut planner = Planner::<Routes>::new(live, adopted);
    let streamed = |entries, order| Streamed {
        entries,
        order,
        remaps: remaps.clone(),
    };
    // Nothing live to compare with and nothing to remap (a fresh namespace): every saved
    // route is added and none can conflict, so nothing here needs them decoded. Their order
    // is left to the builder thread, which restore starts once the links exist: at L the
    // decode took 20-25 ms between the read and the first link, on the critical path.
    if live.is_empty() && remaps.is_empty() {
        return Ok((planner.finish(), streamed(entries, None), 0));
    }
    let mut ranked: Vec<Ranked> = Vec::with_capacity(entries.len());
    let mut remapped = 0;
    for i in 0..entries.len() {
        let (r, changed) = decode(&entries, remaps, i)?;
        remapped += usize::from(changed);
        if planner.offer(&r) {
            ranked.push(Ranked::of(&r, i));
        }
    }
    Ok((
        planner.finish(),
        streamed(entries, Some(in_order(ranked))),
        remapped,
    ))
}

/// The routes to add in restore order, those of IPv6 apart: the kernel adds IPv6 routes
/// without RTNL, so they go in on a thread of their own beside the others (see [`apply`]).
#[derive(Debug, Default)]
struct Order {
    /// every family but IPv6 (IPv4, MPLS)
    other: Vec<u32>,
    v6: Vec<u32>,
}

/// A route to add: its place in restore order, whether it is IPv6, and its index.
struct Ranked {
    rank: u8,
    v6: bool,
    index: u32,
}

impl Ranked {
    fn of(r: &Route, index: usize) -> Ranked {
        Ranked {
            rank: crate::route::order_rank(r),
            v6: r.family == libc::AF_INET6 as u32,
            index: index as u32,
        }
    }
}

/// `ranked` in restore order: stable, so the saved order within each rank, as
/// `route::restore_order` keeps it; IPv6 apart.
fn in_order(mut ranked: Vec<Ranked>) -> Order {
    ranked.sort_by_key(|r| r.rank);
    let mut order = Order::default();
    for r in ranked {
        if r.v6 {
            &mut order.v6
        } else {
            &mut order.other
        }
        .push(r.index);
    }
    order
}

/// The restore order of every route of `s` (see [`plan`]).
fn order_all(s: &Streamed) -> Result<Order> {
    let ranked = (0..s.entries.len())
        .map(|i| Ok(Ranked::of(&s.route(i)?, i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(in_order(ranked))
}

/// A chunk of routes decoded, split and built on the builder thread: the routes that take a
/// slot first with their requests, and the indexes of those that share a slot.
pub(crate) struct Chunk {
    routes: Vec<Route>,
    built: family::Built,
    appended: Vec<u32>,
}

impl Chunk {
    /// Its routes' `Vec`, emptied, for the next chunk: a fresh one (4,096 routes, ~1.6 MiB)
    /// was faulted in page by page for every chunk, ~6,000 faults at L.
    fn spare(self) -> Vec<Route> {
        let mut routes = self.routes;
        routes.clear();
        routes
    }
}

/// Builds the chunks of some of a [`Streamed`]'s routes in order: those routes, its place
/// and the slots taken so far.
struct Builder<'s> {
    s: &'s Streamed,
    /// the indexes of the routes to build, in restore order
    order: std::borrow::Cow<'s, [u32]>,
    /// chunks built already
    next: usize,
    /// the slots routes built so far took
    slots: crate::route::Slots,
}

impl<'s> Builder<'s> {
    fn new(s: &'s Streamed, order: std::borrow::Cow<'s, [u32]>) -> Self {
        Builder {
            s,
            slots: crate::route::Slots::with_capacity(order.len()),
            order,
            next: 0,
        }
    }

    /// The next chunk, its routes in `spare` (empty: a sent chunk's, see [`Chunk::spare`]),
    /// or None when every route is built.
    fn chunk(
        &mut self,
        ifs: &IfMap,
        spare: Vec<Route>,
    ) -> Option<std::result::Result<Chunk, Vec<String>>> {
        let idx = self.order.chunks(CHUNK).nth(self.next)?;
        self.next += 1;
        Some((|| {
            let mut routes = spare;
            routes.reserve(idx.len());
            let mut appended = Vec::new();
            for &i in idx {
                let r = self
                    .s
                    .route(i as usize)
                    .map_err(|e| vec![crate::error::chain(&e)])?;
                if self.slots.first(&r) {
                    routes.push(r);
                } else {
                    appended.push(i);
                }
            }
            let refs: Vec<&Route> = routes.iter().collect();
            let built = family::build::<Routes>(&refs, ifs)?;
            Ok(Chunk {
                routes,
                built,
                appended,
            })
        })())
    }
}

/// The chunks a builder thread makes (see [`start`]), and the way back for those sent.
pub(crate) struct Feed {
    chunks: std::sync::mpsc::Receiver<std::result::Result<Chunk, Vec<String>>>,
    /// chunks sent, freed by the builder thread (its allocations) while the next is sent
    spent: std::sync::mpsc::Sender<Chunk>,
}

/// The two feeds of a [`Streamed`]: its IPv6 routes, and the others.
pub(crate) struct Feeds {
    other: Feed,
    v6: Feed,
}

/// A feed and the builder's ends of it.
fn feed() -> (Feed, Building) {
    // one chunk held: with the one being built and the one being sent, three at most
    let (tx, chunks) = std::sync::mpsc::sync_channel(1);
    let (spent, trash) = std::sync::mpsc::channel::<Chunk>();
    (Feed { chunks, spent }, Building { tx, trash })
}

/// The builder's ends of a [`Feed`].
struct Building {
    tx: std::sync::mpsc::SyncSender<std::result::Result<Chunk, Vec<String>>>,
    trash: std::sync::mpsc::Receiver<Chunk>,
}

impl Building {
    /// Builds every chunk of `b` into this feed, one held ready beyond the one it is
    /// building; `waiting` runs once, when it first has to wait for a chunk to be taken, or
    /// has built them all. Then frees the chunks as they come back.
    fn run(self, mut b: Builder<'_>, ifs: &IfMap, waiting: impl FnOnce()) {
        use std::sync::mpsc::TrySendError;
        let Building { tx, trash } = self;
        let mut waiting = Some(waiting);
        let mut spare = Vec::new();
        while let Some(c) = b.chunk(ifs, std::mem::take(&mut spare)) {
            if let Some(old) = trash.try_iter().last() {
                spare = old.spare();
            }
            let failed = c.is_err();
            let sent = match tx.try_send(c) {
                Ok(()) => true,
                Err(TrySendError::Full(c)) => {
                    if let Some(w) = waiting.take() {
                        w();
                    }
                    tx.send(c).is_ok()
                }
                Err(TrySendError::Disconnected(_)) => false,
            };
            if !sent || failed {
                break;
            }
        }
        if let Some(w) = waiting.take() {
            w();
        }
        // the last chunks, as they are sent (until `spent` is dropped)
        drop(tx);
        trash.iter().for_each(drop);
    }
}

/// Starts the thread of `scope` that builds the chunks of `s` in order, and beside it one
/// that builds its IPv6 routes' (when it has any; see [`Order`]): restore starts them while
/// it waits for the nf_tables transaction and they go on beside link up and the routes, so
/// no chunk built ahead keeps the routes waiting (built on the waiting thread, two chunks at
/// M took up to 11 ms longer than the transaction). `waiting` runs once, when the first
/// builder has to wait for its chunks to be taken, or has built them all: restore then
/// starts the late sysctls, whose thread would otherwise take the builder's core.
pub(crate) fn start<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    s: &'scope Streamed,
    ifs: IfMap,
    waiting: impl FnOnce() + Send + 'scope,
) -> Feeds {
    use std::borrow::Cow;
    let (other, building) = feed();
    let (v6, building6) = feed();
    scope.spawn(move || {
        let (first, v6): (Cow<[u32]>, Cow<[u32]>) = match &s.order {
            Some(o) => (Cow::Borrowed(&o.other), Cow::Borrowed(&o.v6)),
            None => match order_all(s) {
                Ok(o) => (Cow::Owned(o.other), Cow::Owned(o.v6)),
                Err(e) => {
                    // the only chunk: the sender reports it
                    let _ = building.tx.send(Err(vec![crate::error::chain(&e)]));
                    waiting();
                    return;
                }
            },
        };
        if v6.is_empty() {
            // its sender waits for the feed to close
            drop(building6);
        } else {
            let ifs = ifs.clone();
            scope.spawn(move || building6.run(Builder::new(s, v6), &ifs, || {}));
        }
        building.run(Builder::new(s, first), &ifs, waiting);
    });
    Feeds { other, v6 }
}

/// What sending a feed left for after it: routes to try again (their gateway was not
/// reachable yet) and the indexes of those that share a slot, to append.
#[derive(Default)]
struct Left {
    retry: Vec<Route>,
    appended: Vec<u32>,
}

impl Left {
    fn join(&mut self, other: Left) {
        self.retry.extend(other.retry);
        self.appended.extend(other.appended);
    }
}

/// Sends the chunks of a feed as they come, journaling each; gives each back to its builder
/// through `spent`, which frees it (~1 ms at L, its allocations) while this thread sends the
/// next batch.
fn send_chunks(
    chunks: impl Iterator<Item = std::result::Result<Chunk, Vec<String>>>,
    spent: &std::sync::mpsc::Sender<Chunk>,
    target: &mut Nl,
    journal: &mut Journal,
) -> std::result::Result<Left, Vec<String>> {
    let mut left = Left::default();
    for chunk in chunks {
        let mut chunk = chunk?;
        left.appended.append(&mut chunk.appended);
        let refs: Vec<&Route> = chunk.routes.iter().collect();
        family::send::<Routes>(
            target,
            Sock::Target,
            &refs,
            &chunk.built,
            journal,
            NLM_F_CREATE | NLM_F_EXCL,
            "add routes",
            &mut |r, _| left.retry.push(r.clone()),
        )?;
        drop(refs);
        // the builder gone (it failed), the chunk is freed here
        let _ = spent.send(chunk);
    }
    Ok(left)
}

/// Adds the routes of `s` as `apply` adds decoded ones, a chunk at a time as `feeds` gives
/// them (see [`start`]): every route that takes a slot first with NLM_F_EXCL, in a further
/// pass those that failed in a way a later route may mend (their gateway was not reachable
/// yet), then those that share a slot with NLM_F_APPEND (see `route::split_appended`).
///
/// The IPv6 routes go in on a thread of their own, through a socket of its own in `ns`,
/// journaled in the same log, beside the others: the kernel adds them without RTNL, which
/// IPv4's hold (30,000 of each by `ip -batch`: 146 and 164 ms alone, 179 ms together). Both
/// are in before the further passes, so a route through a gateway of the other family is
/// tried again once that family's routes are in.
///
/// The builder threads decode each further chunk and build its requests and undos while the
/// one before it is journaled and sent: at 10,000 routes building took 15 ms of the 60 ms the
/// routes took, the kernel the rest, and the second core is free once the links are up.
pub(crate) fn apply(
    s: &Streamed,
    feeds: Feeds,
    ns: &NetNs,
    target: &mut Nl,
    ifs: &IfMap,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let Feeds { other, v6 } = feeds;
    let log = journal.log().clone();
    let (mine, theirs) = std::thread::scope(|sc| {
        let h = sc.spawn(move || {
            let mut chunks = v6.chunks.iter().peekable();
            // no socket unless there is an IPv6 route to send
            if chunks.peek().is_none() {
                return (Ok(Left::default()), 0);
            }
            let mut j = Journal::new(log, None);
            let name = ns.name().to_string();
            let r = ns
                .run(|| Nl::new(&name))
                .map_err(|e| vec![crate::error::chain(&e)])
                .and_then(|mut nl| send_chunks(chunks, &v6.spent, &mut nl, &mut j));
            (r, j.len())
        });
        let mine = send_chunks(other.chunks.iter(), &other.spent, target, journal);
        (mine, h.join())
    });
    let (theirs, made) = theirs.map_err(|_| vec!["IPv6 route thread panicked".to_string()])?;
    journal.made(made);
    let mut left = match (mine, theirs) {
        (Ok(mut a), Ok(b)) => {
            a.join(b);
            a
        }
        (Err(mut a), Err(b)) => {
            a.extend(b);
            return Err(a);
        }
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    let flags = NLM_F_CREATE | NLM_F_EXCL;
    family::apply_with::<Routes>(target, Sock::Target, &left.retry, ifs, journal, flags)?;
    let appended = std::mem::take(&mut left.appended)
        .into_iter()
        .map(|i| s.route(i as usize))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| vec![crate::error::chain(&e)])?;
    let flags = NLM_F_CREATE | NLM_F_APPEND;
    family::apply_with::<Routes>(target, Sock::Target, &appended, ifs, journal, flags)
}
