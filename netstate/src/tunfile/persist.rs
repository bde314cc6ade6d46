//! Giving non-persistent tun devices back their lifetime.
//!
//! Restore creates every tun device persistent, so a device that lived only through its
//! files cannot vanish between creation and hand-off. Once the holders have their
//! descriptors, a device saved with persist=false must become non-persistent again: then it
//! disappears with its last file, as it did before the checkpoint.
//!
//! TUNSETPERSIST needs a file attached to the device. crhook still holds its own copies of the
//! restored files (the ones it sent over the fd socket) until it drops them, so the first
//! choice is one of those, found in /proc/self/fd and matched by device name and namespace
//! (TUNGETDEVNETNS: an agent restoring many namespaces holds other namespaces' `tap0`s too);
//! a detached queue answers TUNGETIFF and TUNSETPERSIST on this kernel too. Without one, a fresh queue is attached inside the
//! namespace just for the ioctl: that works for a multi-queue device, and for a single-queue
//! device nobody holds (which then vanishes with that queue, as a non-persistent device
//! should); a single-queue device held elsewhere answers EBUSY, reported.

use std::fs::File;
use std::os::fd::BorrowedFd;

use crhook_proto as pb;

use super::sys;
use crate::error::{NetstateError, Result};
use crate::link::tun::{open_tun, set_iff, tun_flags};
use crate::netns::NetNs;
use crate::snapshot::Snapshot;

/// Clears TUNSETPERSIST on every tun device saved with persist=false that has saved files.
/// Call it after the restored files were handed off and before they are dropped. Every
/// device is tried; the errors are reported together.
pub fn release_persist(ns: &NetNs, snap: &Snapshot) -> Result<()> {
    let devices: Vec<(&str, &pb::Tun)> = snap
        .links
        .iter()
        .filter_map(|l| match &l.info {
            Some(pb::link::Info::Tun(t)) if !t.persist => Some((l.name.as_str(), t)),
            _ => None,
        })
        .filter(|(n, _)| snap.tun_files.iter().any(|f| f.device == *n))
        .collect();
    if devices.is_empty() {
        return Ok(());
    }
    // only files of this namespace's devices: a process restoring many namespaces holds
    // `tap0`s of others too
    let own: Vec<(String, File)> = own_tun_files()
        .into_iter()
        .filter(|(_, f)| sys::dev_netns(f).is_ok_and(|id| id == ns.identity()))
        .collect();
    let mut errors = Vec::new();
    for (name, t) in devices {
        let r = match own.iter().find(|(dev, _)| dev == name) {
            Some((_, f)) => sys::set_persist(f, false).map_err(|e| e.to_string()),
            None => {
                let (n, flags) = (name.to_string(), tun_flags(t));
                ns.run(move || {
                    let f = open_tun()?;
                    set_iff(&f, &n, flags)?;
                    sys::set_persist(&f, false).map_err(|source| NetstateError::Io {
                        op: format!("clear persist (TUNSETPERSIST) on tun device {n}"),
                        path: "/dev/net/tun".into(),
                        source,
                    })
                })
                .map_err(|e| super::chain(&e))
            }
        };
        if let Err(e) = r {
            errors.push(format!(
                "release tun device {name} in {} (TUNSETPERSIST 0): {e}",
                ns.name()
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(NetstateError::invalid(errors.join("; ")))
    }
}

/// [`release_persist`] for a caller that holds only the target and the image directory
/// (the binary, after `--fd-socket`): opens both and releases.
pub fn release_persist_in(target: &crate::netns::Target, images: &std::path::Path) -> Result<()> {
    let ns = NetNs::open(target)?;
    let dir = crhook_core::ImageDir::open(images)?;
    let snap = Snapshot::read(&dir)?;
    release_persist(&ns, &snap)
}

/// This process's open tun files with the device each is on (duplicates of our descriptors,
/// so nothing here closes a descriptor the caller still owns).
fn own_tun_files() -> Vec<(String, File)> {
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if std::fs::read_link(e.path())
            .map(|p| p != std::path::Path::new("/dev/net/tun"))
            .unwrap_or(true)
        {
            continue;
        }
        // SAFETY: `fd` was listed in /proc/self/fd a moment ago; borrowing it only long enough
        // to duplicate it. A descriptor closed meanwhile makes the dup fail, which is skipped.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(dup) = b.try_clone_to_owned() else {
            continue;
        };
        let f = File::from(dup);
        if let Ok((dev, _)) = sys::get_iff(&f) {
            out.push((dev, f));
        }
    }
    out
}
