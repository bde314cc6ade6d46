//! Routes restored from their image file a chunk at a time. A namespace's largest family is
//! its routes (100,000 at L: 3.8 MiB in the image, ~44 MiB decoded, more again as requests
//! with their undos), and restore needs each route twice: once to plan it against the target
//! (conflicts are refused before anything changes), once to add it. So the file stays
//! encoded ([`crhook_core::Encoded`]): the plan decodes it in order and keeps only the
//! indexes to add, in restore order; apply decodes those again, [`CHUNK`] at a time, and
//! sends each chunk as it is decoded. Decoding twice costs ~30 ms at L; holding the routes
//! cost ~45 MiB of peak RSS.
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
    /// the indexes of the routes to add, in restore order
    order: Vec<u32>,
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
    let mut ranked: Vec<(u8, u32)> = Vec::with_capacity(entries.len());
    let mut remapped = 0;
    for i in 0..entries.len() {
        let (r, changed) = decode(&entries, remaps, i)?;
        remapped += usize::from(changed);
        if planner.offer(&r) {
            ranked.push((crate::route::order_rank(&r), i as u32));
        }
    }
    // stable: the saved order within each rank, as `route::restore_order` keeps it
    ranked.sort_by_key(|&(rank, _)| rank);
    let order = ranked.into_iter().map(|(_, i)| i).collect();
    Ok((
        planner.finish(),
        Streamed {
            entries,
            order,
            remaps: remaps.clone(),
        },
        remapped,
    ))
}

/// A chunk of routes decoded, split and built on the builder thread: the routes that take a
/// slot first with their requests, and the indexes of those that share a slot.
pub(crate) struct Chunk {
    routes: Vec<Route>,
    built: family::Built,
    appended: Vec<u32>,
}

/// Builds the chunks of a [`Streamed`] in order: its place and the slots taken so far.
pub(crate) struct Builder<'s> {
    s: &'s Streamed,
    /// chunks built already
    next: usize,
    /// the slots routes built so far took
    slots: crate::route::Slots,
}

impl<'s> Builder<'s> {
    pub(crate) fn new(s: &'s Streamed) -> Self {
        Builder {
            s,
            next: 0,
            slots: crate::route::Slots::with_capacity(s.order.len()),
        }
    }

    /// The next chunk, or None when every route is built.
    fn chunk(&mut self, ifs: &IfMap) -> Option<std::result::Result<Chunk, Vec<String>>> {
        let idx = self.s.order.chunks(CHUNK).nth(self.next)?;
        self.next += 1;
        Some((|| {
            let mut routes = Vec::with_capacity(idx.len());
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

    /// Builds up to `n` chunks ahead (restore does while it waits for the nf_tables
    /// transaction, the main thread otherwise idle), stopping at an error.
    pub(crate) fn ahead(mut self, ifs: &IfMap, n: usize) -> Ahead<'s> {
        let mut out = Vec::new();
        while out.len() < n {
            let Some(c) = self.chunk(ifs) else { break };
            let failed = c.is_err();
            out.push(c);
            if failed {
                break;
            }
        }
        (self, out)
    }
}

/// What [`Builder::ahead`] gives back: the builder, to go on from there, and the chunks.
pub(crate) type Ahead<'s> = (Builder<'s>, Vec<std::result::Result<Chunk, Vec<String>>>);

/// Chunks [`Builder::ahead`] builds while restore waits for the firewall: two (8,192 routes,
/// ~6 MiB), which is most of an M namespace's routes and little of an L one's peak.
pub(crate) const AHEAD: usize = 2;

/// Adds the routes of `s`, a chunk at a time, as `apply` adds decoded ones: every route that
/// takes a slot first with NLM_F_EXCL, in a further pass those that failed in a way a later
/// route may mend (their gateway was not reachable yet), then those that share a slot with
/// NLM_F_APPEND (see `route::split_appended`). `built` is what was built ahead (see
/// [`Builder::ahead`]), if anything.
///
/// A second thread decodes each further chunk and builds its requests and undos while the
/// one before it is journaled and sent: at 10,000 routes building took 15 ms of the 60 ms the
/// routes took, the kernel the rest, and the second core is free once the links are up.
pub(crate) fn apply(
    s: &Streamed,
    built: Option<Ahead>,
    target: &mut Nl,
    ifs: &IfMap,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let (builder, ready) = built.unwrap_or_else(|| (Builder::new(s), Vec::new()));
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
    std::thread::scope(|scope| -> std::result::Result<(), Vec<String>> {
        // one chunk ahead: what is held is bounded by two chunks, and those sent not yet freed
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (trash, spent) = std::sync::mpsc::channel::<Chunk>();
        scope.spawn(move || {
            let mut b = builder;
            loop {
                spent.try_iter().for_each(drop);
                let Some(c) = b.chunk(ifs) else { break };
                let failed = c.is_err();
                if tx.send(c).is_err() || failed {
                    return;
                }
            }
            // the last chunks, as they are sent (until `trash` is dropped)
            drop(tx);
            spent.iter().for_each(drop);
        });
        for chunk in ready.into_iter().chain(rx) {
            // the builder gone (it failed), the chunk is freed here
            let _ = trash.send(send(chunk)?);
        }
        Ok(())
    })?;
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
