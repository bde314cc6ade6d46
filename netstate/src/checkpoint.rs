//! `checkpoint`: lock (optionally), capture, write the image directory, unlock.
//!
//! The image directory is written under a temporary name and renamed into place with the
//! inventory last (crhook-core), so a failed checkpoint leaves nothing that reads as complete.
//! Every failure path removes a lock this call took.
//!
//! Unlocked, the image files of what the netlink dumps and the sysctls produced are written
//! while the firewall, the longest part of a large capture, is still being dumped (`Staged`);
//! after it only the firewall's file, the open files' and the stats remain. A failed capture
//! drops the writer, which removes its temporary directory with them.
//!
//! With a parent (`opts.parent`) the checkpoint is incremental.rs's: a child image, dumped
//! mostly before the lock.
//!
//! Every image is sealed with the host key (`$CRHOOK_IMAGE_KEY`, else /etc/crhook/image.key,
//! created on first use), so a later restore on this host, or on a node sharing the key, can
//! tell it from an image that came from anywhere else. The key and the image directory's
//! writer are set up before the namespace is locked or captured: a bad key file or an unsafe
//! image path fails the checkpoint before it has touched the namespace.

use std::path::Path;
use std::time::{Duration, Instant};

use crhook_core::{HostKey, ImageWriter, Kind, StatsRecorder};
use crhook_proto as pb;

use crate::api::CheckpointOptions;
use crate::capture_all::{capture_beside, Captured, Parts};
use crate::error::{NetstateError, Result};
use crate::netns::{NetNs, Target};
pub use crate::phases::identity;
use crate::phases::{remove_lock, stale_lock, sysctls_unlocked, take_lock};

pub fn run(target: &Target, images: &Path, opts: &CheckpointOptions) -> Result<pb::Stats> {
    let key = HostKey::load_or_create(&HostKey::configured_path())?;
    run_with_key(target, images, opts, key)
}

/// [`run`], sealing the image with `key` (an embedder's own, or a key a cluster shares).
pub fn run_with_key(
    target: &Target,
    images: &Path,
    opts: &CheckpointOptions,
    key: HostKey,
) -> Result<pb::Stats> {
    if opts.parent.is_some() {
        return crate::incremental::run(target, images, opts, key, None);
    }
    let start = Instant::now();
    let ns = NetNs::open(target)?;
    let mut writer = ImageWriter::create(images)?;
    writer.set_key(key);
    let mut staged = Staged::new(writer, opts.lock);
    let host = NetNs::current()?;
    let mut stats = StatsRecorder::new();
    let mut warnings = Vec::new();

    crate::progress::step(&format!("capture {}", ns.name()));
    let mut locked = None;
    let stale = stale_lock(&ns)?;
    if opts.lock {
        locked = Some(take_lock(&ns, opts, &mut stats, stale.is_none())?);
    }
    warnings.extend(stale);
    // only what traffic can change is captured under the lock: sysctls, open files and the
    // image writing (fsync) come after the unlock (unlocked, files are written beside the
    // firewall dump: `Staged`)
    let result =
        capture_locked(&ns, &host, opts, &mut staged, &mut stats, &mut warnings).and_then(|c| {
            // a signal during the capture: stop here, so the lock goes and no image is written
            crate::interrupt::check("checkpoint").map_err(NetstateError::invalid)?;
            Ok(c)
        });
    let unlock_result = match &locked {
        Some(l) if result.is_err() || !opts.leave_locked => remove_lock(&ns, l),
        _ => Ok(()),
    };
    if let Some(l) = &locked {
        stats.set_locked(l.at.elapsed());
    }
    let mut c = result?;
    unlock_result?;
    if opts.lock {
        c.sysctls = Some(sysctls_unlocked(&ns, &mut stats)?);
    }
    crate::interrupt::check("checkpoint").map_err(NetstateError::invalid)?;
    crate::give_back_freed_memory();
    write(&ns, &mut c, target, staged, opts, &mut stats, &mut warnings)?;
    let objects = c.counts().iter().map(|(_, n)| *n).sum();
    crate::free_later(c, objects);
    let mut s = stats.finish();
    s.total_us = start.elapsed().as_micros() as u64;
    Ok(s)
}

/// The netlink families and the firewall, and the sysctls unless the namespace is locked.
fn capture_locked(
    ns: &NetNs,
    host: &NetNs,
    opts: &CheckpointOptions,
    staged: &mut Staged,
    stats: &mut StatsRecorder,
    warnings: &mut Vec<String>,
) -> Result<Captured> {
    let parts = Parts {
        firewall: true,
        sysctls: !opts.lock,
        // written, not compared: encoded as dumped (see `route::capture_encoded`)
        routes_encoded: true,
    };
    let mut c = capture_beside(ns, host, &opts.firewall, parts, &mut |c| staged.step(c))?;
    for (p, us) in &c.phases {
        stats.phase(*p, Duration::from_micros(*us));
    }
    if staged.done > 0 {
        stats.phase("write_beside", staged.spent);
    }
    stats.add_netlink_requests(c.netlink_requests);
    warnings.append(&mut c.warnings);
    Ok(c)
}

/// Open device files, then the image directory.
fn write(
    ns: &NetNs,
    c: &mut Captured,
    target: &Target,
    mut staged: Staged,
    opts: &CheckpointOptions,
    stats: &mut StatsRecorder,
    warnings: &mut Vec<String>,
) -> Result<u64> {
    let t = Instant::now();
    crate::tunfile::capture(ns, &mut c.snapshot, opts, warnings)?;
    stats.phase("files", t.elapsed());

    for (k, n) in c.counts() {
        stats.count(k, n);
        crate::progress::count(k, n);
    }
    crate::progress::step(&format!("write {}", staged.w.final_dir().display()));
    for w in warnings.iter() {
        stats.warn(w.clone());
    }
    let t = Instant::now();
    staged.rest(c)?;
    let mut w = staged.w;
    let current = stats.current().clone();
    w.write(Kind::StatsDump, std::slice::from_ref(&current))?;
    let bytes = w.bytes_written();
    w.finish(identity(ns, target), warnings.clone())
        .map_err(NetstateError::from)?;
    stats.phase("write", t.elapsed());
    stats.add_bytes(bytes);
    Ok(bytes)
}

/// The image writer and the files started in it so far: the kinds the capture has produced
/// are written one by one while the firewall is still being dumped ([`Staged::step`]), the
/// rest after the capture ([`Staged::rest`]). Which kind goes in which file, and what it
/// holds, is `Snapshot::write_kinds`'s alone, as for an image written all at once.
struct Staged {
    w: ImageWriter,
    /// the kinds that may be written beside the firewall dump, in order
    beside: Vec<Kind>,
    /// how many of them are written
    done: usize,
    /// the time spent writing them
    spent: Duration,
}

impl Staged {
    /// `locked`: the capture runs under a lock, and nothing is written beside it. The writes'
    /// threads (checksums, page cache, fsyncs and the journal commits they cause) took CPU
    /// from the locked firewall dump (at 1,000 links and 100,000 routes the lock window grew
    /// by some 10 ms), and a locked checkpoint keeps its lock window short first; its sysctls
    /// are read after the unlock anyway.
    fn new(w: ImageWriter, locked: bool) -> Staged {
        // the routes first: encoded as they were dumped, their file only needs its framing
        // checked and frees the most memory once written
        let beside = match locked {
            true => Vec::new(),
            false => vec![
                Kind::Routes,
                Kind::Sysctls,
                Kind::Links,
                Kind::Addresses,
                Kind::Tc,
                Kind::Rules,
                Kind::Neighbours,
                Kind::Nexthops,
            ],
        };
        Staged {
            w,
            beside,
            done: 0,
            spent: Duration::ZERO,
        }
    }

    /// Writes the next kind beside the firewall dump; `Ok(false)` once none is left.
    fn step(&mut self, c: &mut Captured) -> Result<bool> {
        let Some(&kind) = self.beside.get(self.done) else {
            return Ok(false);
        };
        let t = Instant::now();
        put(&mut self.w, c, kind)?;
        self.done += 1;
        self.spent += t.elapsed();
        Ok(self.done < self.beside.len())
    }

    /// Writes every file of `c` not written beside the firewall dump.
    fn rest(&mut self, c: &mut Captured) -> Result<()> {
        let written = &self.beside[..self.done];
        // the kinds held apart from `snapshot` (which has none of them)
        let apart = [
            (Kind::Routes, c.routes_encoded.is_some()),
            (Kind::Sysctls, c.sysctls.is_some()),
        ];
        for (k, held) in apart {
            if held && !written.contains(&k) {
                put(&mut self.w, c, k)?;
            }
        }
        // those are written by now (above or beside)
        c.snapshot.write_kinds(&mut self.w, |k| {
            !written.contains(&k) && !apart.contains(&(k, true))
        })
    }
}

/// Writes the file of `kind` from `c`. The routes' encoded bytes are taken (their count stays
/// for the stats); the sysctls are encoded from their compact form.
fn put(w: &mut ImageWriter, c: &mut Captured, kind: Kind) -> Result<()> {
    match (&mut c.routes_encoded, &c.sysctls, kind) {
        (Some((bytes, n)), _, Kind::Routes) => {
            Ok(w.write_encoded(kind, std::mem::take(bytes), *n)?)
        }
        (_, Some(s), Kind::Sysctls) => {
            let (bytes, n) = s.encode_file().map_err(|e| {
                NetstateError::invalid(format!("{e} in {}", w.final_dir().display()))
            })?;
            Ok(w.write_encoded(kind, bytes, n)?)
        }
        _ => c.snapshot.write_kinds(w, |k| k == kind),
    }
}
