//! Capture of the network-device files held by the processes of a namespace.
//!
//! Runs after the netlink capture. Order of work: walk /proc for the processes of the
//! namespace and their network-device descriptors; group descriptors of one open file
//! description (dup, fork, SCM_RIGHTS) with kcmp(KCMP_FILE), so every plugin callback runs once
//! per file, not per descriptor; offer each file (as its first holder sees it) to the plugins
//! in order: the built-in `tun` plugin, then the executables of the plugin directory, then
//! plugins an embedder passed. A claimed tun file becomes a `TunFile`, any other claimed file
//! an `ExtFile`; an unclaimed one a `SkippedFile` per descriptor plus one warning (a failure
//! with `strict_files`).

use std::collections::HashMap;

use crhook_core::{ExtFilePlugin, FileInfo};
use crhook_proto as pb;

use super::procfs::{self, Candidate, Class, DevTable};
use super::tun_plugin::{self, TunPlugin};
use super::{sys, ErrorSink};
use crate::api::CheckpointOptions;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;
use crate::nl::Nl;
use crate::snapshot::Snapshot;

/// [`super::capture`] with extra plugins registered last (one named like an earlier plugin
/// replaces it).
pub fn capture_with_plugins(
    ns: &NetNs,
    snap: &mut Snapshot,
    opts: &CheckpointOptions,
    extra: Vec<Box<dyn ExtFilePlugin>>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let table = DevTable::load()?;
    let mut cands = Vec::new();
    for pid in procfs::processes_in(ns)? {
        cands.extend(procfs::device_files(pid, &table)?);
    }
    let groups = group(&cands, ns)?;
    let tuns = tun_links(ns, snap, &groups)?;
    warn_unheld(&tuns, &groups, warnings);
    if groups.is_empty() {
        return Ok(());
    }
    let pi = tuns.iter().map(|(n, t)| (n.clone(), t.pi)).collect();
    let sink = ErrorSink::default();
    let registry = super::registry(
        ns,
        opts.plugin_dir.as_deref(),
        TunPlugin::new(pi),
        extra,
        &sink,
    )?;

    let mut next_id = snap
        .tun_files
        .iter()
        .map(|t| t.id)
        .chain(snap.ext_files.iter().map(|e| e.id))
        .max()
        .unwrap_or(0)
        + 1;
    let mut unclaimed = Vec::new();
    for g in &groups {
        let first = &g[0];
        let info = FileInfo {
            pid: first.pid,
            fd: first.fd,
            path: first.path.clone(),
            fdinfo: procfs::fdinfo(first.pid, first.fd)?,
        };
        let holders: Vec<pb::FileHolder> = g
            .iter()
            .map(|c| pb::FileHolder {
                pid: c.pid,
                fd: c.fd,
            })
            .collect();
        let what = describe(first, g.len());
        let Some(plugin) = registry.find_claimant(&info) else {
            skip(
                snap,
                g,
                &format!("{} (no plugin claimed it)", kind_of(first)),
            );
            unclaimed.push(format!("{what}: no plugin claimed it, not captured"));
            continue;
        };
        let payload = plugin.dump(&info).map_err(|e| {
            NetstateError::invalid(format!(
                "capture {what} in {}: {}",
                ns.name(),
                super::chain(&e)
            ))
        })?;
        if plugin.name() == tun_plugin::NAME {
            let mut t = <pb::TunFile as crhook_core::prost::Message>::decode(payload.as_slice())
                .map_err(|e| {
                    NetstateError::invalid(format!(
                        "capture {what} in {}: tun plugin payload: {e}",
                        ns.name()
                    ))
                })?;
            if !t.device.is_empty() && !tuns.contains_key(&t.device) {
                let why = format!(
                    "attached to tun device {} which is not in this namespace",
                    t.device
                );
                skip(snap, g, &format!("tun file {why}"));
                unclaimed.push(format!("{what}: {why}, not captured"));
                continue;
            }
            t.id = next_id;
            t.holders = holders;
            snap.tun_files.push(t);
        } else {
            snap.ext_files.push(pb::ExtFile {
                id: next_id,
                plugin: plugin.name().to_string(),
                payload,
                holders,
                path: first.path.clone(),
            });
        }
        next_id += 1;
    }
    let errs = sink.take();
    if !errs.is_empty() {
        return Err(NetstateError::invalid(format!(
            "ask plugins about files in {}: {}",
            ns.name(),
            errs.join("; ")
        )));
    }
    if opts.strict_files && !unclaimed.is_empty() {
        return Err(NetstateError::invalid(format!(
            "checkpoint of {} refused (strict files): {}",
            ns.name(),
            unclaimed.join("; ")
        )));
    }
    warnings.extend(unclaimed);
    Ok(())
}

/// Descriptors grouped by open file description, in the order their first holder was found.
fn group(cands: &[Candidate], ns: &NetNs) -> Result<Vec<Vec<Candidate>>> {
    let mut groups: Vec<Vec<Candidate>> = Vec::new();
    'next: for c in cands {
        for g in groups.iter_mut() {
            let r = &g[0];
            if r.rdev != c.rdev {
                continue;
            }
            let same =
                sys::same_file(r.pid, r.fd, c.pid, c.fd).map_err(|source| NetstateError::Io {
                    op: format!(
                    "compare open files (kcmp) fd {} of process {} and fd {} of process {} in {}:",
                    r.fd,
                    r.pid,
                    c.fd,
                    c.pid,
                    ns.name()
                ),
                    path: r.path.clone().into(),
                    source,
                })?;
            if same {
                g.push(c.clone());
                continue 'next;
            }
        }
        groups.push(vec![c.clone()]);
    }
    Ok(groups)
}

/// Tun devices of the namespace by name: from the snapshot's links, or from a fresh link dump
/// when the snapshot lacks one the files name (a snapshot without links, or a device created
/// after the link capture).
fn tun_links(
    ns: &NetNs,
    snap: &Snapshot,
    groups: &[Vec<Candidate>],
) -> Result<HashMap<String, pb::Tun>> {
    let from = |links: &[pb::Link]| -> HashMap<String, pb::Tun> {
        links
            .iter()
            .filter_map(|l| match &l.info {
                Some(pb::link::Info::Tun(t)) => Some((l.name.clone(), *t)),
                _ => None,
            })
            .collect()
    };
    let mut tuns = from(&snap.links);
    let names: Vec<String> = groups
        .iter()
        .filter(|g| g[0].class == Class::Tun)
        .filter_map(|g| procfs::fdinfo(g[0].pid, g[0].fd).ok())
        .filter_map(|i| procfs::fdinfo_field(&i, "iff").map(str::to_string))
        .filter(|n| !n.is_empty())
        .collect();
    if names.iter().any(|n| !tuns.contains_key(n)) {
        let name = ns.name().to_string();
        let links = ns.run(move || {
            let mut nl = Nl::new(&name)?;
            let msgs = crate::link::capture::dump(&mut nl)?;
            let names = crate::link::capture::names(&msgs);
            Ok(msgs
                .iter()
                .map(|m| crate::link::capture::convert(m, &names))
                .collect::<Vec<_>>())
        })?;
        tuns.extend(from(&links));
    }
    Ok(tuns)
}

/// A tun device saved non-persistent lives only through its files; when no process of the
/// namespace holds one, restore still creates it persistent, and nothing releases it.
fn warn_unheld(
    tuns: &HashMap<String, pb::Tun>,
    groups: &[Vec<Candidate>],
    warnings: &mut Vec<String>,
) {
    let held: Vec<String> = groups
        .iter()
        .filter(|g| g[0].class == Class::Tun)
        .filter_map(|g| procfs::fdinfo(g[0].pid, g[0].fd).ok())
        .filter_map(|i| procfs::fdinfo_field(&i, "iff").map(str::to_string))
        .collect();
    let mut names: Vec<&String> = tuns
        .iter()
        .filter(|(n, t)| !t.persist && !held.contains(n))
        .map(|(n, _)| n)
        .collect();
    names.sort();
    for n in names {
        warnings.push(format!(
            "tun device {n} is not persistent and no process in the namespace holds it: restore creates it persistent"
        ));
    }
}

fn kind_of(c: &Candidate) -> String {
    let (ma, mi) = c.rdev;
    match &c.class {
        Class::Tun => format!("tun file (char {ma}:{mi})"),
        Class::Other(n) => format!("{n} device file (char {ma}:{mi})"),
    }
}

fn describe(c: &Candidate, n: usize) -> String {
    let more = if n > 1 {
        format!(" and {} more descriptor(s)", n - 1)
    } else {
        String::new()
    };
    format!(
        "{} {} at fd {} of process {}{more}",
        kind_of(c),
        c.path,
        c.fd,
        c.pid
    )
}

fn skip(snap: &mut Snapshot, g: &[Candidate], reason: &str) {
    for c in g {
        snap.skipped_files.push(pb::SkippedFile {
            pid: c.pid,
            fd: c.fd,
            path: c.path.clone(),
            reason: reason.to_string(),
        });
    }
}
