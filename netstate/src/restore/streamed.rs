//! Routes restored from their image file a chunk at a time. A namespace's largest family is
//! its routes (100,000 at L: 3.8 MiB in the image, ~44 MiB decoded, more again as requests
//! with their undos), and restore needs each route twice: once to plan it against the target
//! (conflicts are refused before anything changes), once to add it. So the file stays
//! encoded ([`crhook_core::Encoded`]): the plan decodes it in order and keeps only the
//! indexes to add, in restore order; apply decodes those again, [`CHUNK`] at a time, and
//! sends each chunk as it is decoded. Decoding twice costs ~30 ms at L; holding the routes
//! cost ~45 MiB of peak RSS. Into a fresh namespace (no live route, nothing remapped) the
//! plan has nothing to compare, and the first decode, for the order alone, moves to the
//! builder thread (see [`plan`]).
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
    order: Option<Vec<u32>>,
    remaps: Remaps,
}

impl Streamed {
    /// How many routes restore adds.
    pub(super) fn len(&self) -> usize {
        self.order.as_ref().map_or(self.entries.len(), Vec::len)
    }

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
    let mut ranked: Vec<(u8, u32)> = Vec::with_capacity(entries.len());
    let mut remapped = 0;
    for i in 0..entries.len() {
        let (r, changed) = decode(&entries, remaps, i)?;
        remapped += usize::from(changed);
        if planner.offer(&r) {
            ranked.push((crate::route::order_rank(&r), i as u32));
        }
    }
    Ok((
        planner.finish(),
        streamed(entries, Some(in_order(ranked))),
        remapped,
    ))
}

/// The indexes of `ranked` (rank, index) in restore order: stable, so the saved order within
/// each rank, as `route::restore_order` keeps it.
fn in_order(mut ranked: Vec<(u8, u32)>) -> Vec<u32> {
    ranked.sort_by_key(|&(rank, _)| rank);
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// The restore order of every route of `s` (see [`plan`]).
fn order_all(s: &Streamed) -> Result<Vec<u32>> {
    let ranked = (0..s.entries.len())
        .map(|i| Ok((crate::route::order_rank(&s.route(i)?), i as u32)))
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

/// Builds the chunks of a [`Streamed`] in order: its place and the slots taken so far.
struct Builder<'s> {
    s: &'s Streamed,
    /// the plan's order; None until the first chunk puts them in order (see [`plan`])
    order: Option<std::borrow::Cow<'s, [u32]>>,
    /// chunks built already
    next: usize,
    /// the slots routes built so far took
    slots: crate::route::Slots,
}

impl<'s> Builder<'s> {
    fn new(s: &'s Streamed) -> Self {
        Builder {
            s,
            order: s.order.as_deref().map(std::borrow::Cow::Borrowed),
            next: 0,
            slots: crate::route::Slots::with_capacity(s.entries.len()),
        }
    }

    /// The next chunk, its routes in `spare` (empty: a sent chunk's, see [`Chunk::spare`]),
    /// or None when every route is built. The first puts the routes in order when the plan
    /// did not; an error there is the only chunk.
    fn chunk(
        &mut self,
        ifs: &IfMap,
        spare: Vec<Route>,
    ) -> Option<std::result::Result<Chunk, Vec<String>>> {
        if self.order.is_none() {
            match order_all(self.s) {
                Ok(o) => self.order = Some(o.into()),
                Err(e) => return Some(Err(vec![crate::error::chain(&e)])),
            }
        }
        let idx = self.order.as_deref()?.chunks(CHUNK).nth(self.next)?;
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

/// Starts the thread of `scope` that builds the chunks of `s` in order, one held ready
/// beyond the one it is building: restore starts it while it waits for the nf_tables
/// transaction and it goes on beside link up and the routes, so no chunk built ahead keeps
/// the routes waiting (built on the waiting thread, two chunks at M took up to 11 ms longer
/// than the transaction). `waiting` runs once, when the builder first has to wait for the
/// chunks to be taken, or has built them all: restore then starts the late sysctls, whose
/// thread would otherwise take the builder's core.
pub(crate) fn start<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    s: &'scope Streamed,
    ifs: IfMap,
    waiting: impl FnOnce() + Send + 'scope,
) -> Feed {
    use std::sync::mpsc::TrySendError;
    // one chunk held: with the one being built and the one being sent, three at most
    let (tx, chunks) = std::sync::mpsc::sync_channel(1);
    let (spent, trash) = std::sync::mpsc::channel::<Chunk>();
    scope.spawn(move || {
        let mut waiting = Some(waiting);
        let mut b = Builder::new(s);
        let mut spare = Vec::new();
        while let Some(c) = b.chunk(&ifs, std::mem::take(&mut spare)) {
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
    });
    Feed { chunks, spent }
}

/// Adds the routes of `s`, a chunk at a time, as `apply` adds decoded ones: every route that
/// takes a slot first with NLM_F_EXCL, in a further pass those that failed in a way a later
/// route may mend (their gateway was not reachable yet), then those that share a slot with
/// NLM_F_APPEND (see `route::split_appended`), in the chunks `feed` gives (see [`start`]).
///
/// The builder thread decodes each further chunk and builds its requests and undos while the
/// one before it is journaled and sent: at 10,000 routes building took 15 ms of the 60 ms the
/// routes took, the kernel the rest, and the second core is free once the links are up.
pub(crate) fn apply(
    s: &Streamed,
    feed: Feed,
    target: &mut Nl,
    ifs: &IfMap,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let mut appended = Vec::new();
    let mut retry: Vec<Route> = Vec::new();
    // Sends a chunk, and gives it back: freeing it is ~1 ms at L, which the builder thread
    // does (its allocations are the builder's) while this one sends the next batch.
    let mut send = |chunk: std::result::Result<Chunk, Vec<String>>| {
        let mut chunk = chunk?;
        appended.append(&mut chunk.appended);
        let refs: Vec<&Route> = chunk.routes.iter().collect();
        family::send::<Routes>(
            target,
            Sock::Target,
            &refs,
            &chunk.built,
            journal,
            NLM_F_CREATE | NLM_F_EXCL,
            "add routes",
            &mut |r, _| retry.push(r.clone()),
        )?;
        drop(refs);
        Ok::<_, Vec<String>>(chunk)
    };
    for chunk in feed.chunks.iter() {
        // the builder gone (it failed), the chunk is freed here
        let _ = feed.spent.send(send(chunk)?);
    }
    drop(feed);
    let flags = NLM_F_CREATE | NLM_F_EXCL;
    family::apply_with::<Routes>(target, Sock::Target, &retry, ifs, journal, flags)?;
    let appended = appended
        .into_iter()
        .map(|i| s.route(i as usize))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| vec![crate::error::chain(&e)])?;
    let flags = NLM_F_CREATE | NLM_F_APPEND;
    family::apply_with::<Routes>(target, Sock::Target, &appended, ifs, journal, flags)
}
