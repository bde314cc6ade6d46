//! A checkpoint against a parent image (`checkpoint --parent DIR`), written as a child image
//! whose unchanged families are read from the parent chain, with a lock window that does not
//! grow with the namespace.
//!
//! The window only has to cover what changed while the namespace was being dumped, and a
//! [`Tracker`] subscribed to the namespace's notifications tells which families those are:
//!
//! 1. Open the parent (refused by name, before anything else happens, when it is missing,
//!    damaged, changed since a child of it was written, or of another namespace).
//! 2. Subscribe (a fresh [`Tracker`], or the caller's). A tracker that saw the parent written
//!    knows what changed since; a fresh one knows nothing, so everything counts as changed.
//! 3. Pre-pass, unlocked, traffic flowing: dump the families that may differ from the parent,
//!    and the firewall unless the nf_tables generation says it is the parent's.
//!    What had notifications during that dump is dumped again, still unlocked (at most
//!    twice more), so a burst of changes that has ended stays out of the lock window.
//! 4. Lock. Read the notifications that arrived since the pre-pass began and the nf_tables
//!    generation: re-dump only the families with notifications (all after an `ENOBUFS`
//!    overrun), and the firewall only if the generation moved by more than the lock's own
//!    commit, or if it holds legacy iptables tables or `CR_IPTABLES` output, which no
//!    generation covers (re-read, cheap next to the nf_tables dump). Unlock.
//! 5. Sysctls after the unlock, as in every locked checkpoint.
//! 6. Compare every dumped family with the parent's: an equal one is recorded as "from the
//!    parent" and not written. The child is sealed like any image, and its inventory pins the
//!    parent by the SHA-256 of the parent's inventory.
//!
//! With nothing changed during the pre-pass, the window is the lock, one non-blocking read of
//! the socket, one NFT_MSG_GETGEN and the unlock, whatever the namespace's size. Without
//! `--lock` the pre-pass is the capture.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use crhook_core::{HostKey, ImageDir, ImageWriter, Kind, StatsRecorder};
use crhook_proto as pb;

use crate::api::CheckpointOptions;
use crate::error::{NetstateError, Result};
use crate::family::{Addresses, Family, Neighbours, Nexthops, Routes, Rules, Tc};
use crate::ifmap::IfMap;
use crate::link::{self, PeerFinder};
use crate::netns::{NetNs, Target};
use crate::nl::Nl;
use crate::phases::{identity, remove_lock, stale_lock, sysctls_unlocked, take_lock};
use crate::snapshot::Snapshot;
use crate::tracker::{Changes, Tracker, TRACKED};

/// The parent of the image being written.
struct Parent {
    dir: ImageDir,
    digest: Vec<u8>,
    /// its path relative to the child's directory
    rel: PathBuf,
}

fn parent_err(parent: &Path, what: impl Into<String>) -> NetstateError {
    NetstateError::invalid(format!(
        "parent image {}: {}",
        parent.display(),
        what.into()
    ))
}

impl Parent {
    fn open(path: &Path, images: &Path, source: &pb::NamespaceIdentity) -> Result<Parent> {
        let dir = crate::snapshot::open_image(path)?;
        if let crhook_core::Trust::BadSeal { .. } = dir.trust() {
            return Err(parent_err(path, format!("{}; refused", dir.trust())));
        }
        let inv = dir.inventory().source.clone().unwrap_or_default();
        let cookies_differ = inv.cookie != 0 && source.cookie != 0 && inv.cookie != source.cookie;
        if (inv.dev, inv.ino) != (source.dev, source.ino) || cookies_differ {
            return Err(parent_err(
                path,
                format!(
                    "captured from another network namespace ({} inode {}), not from {} (inode {})",
                    inv.target, inv.ino, source.target, source.ino
                ),
            ));
        }
        let bytes = dir
            .read_bytes(Kind::Inventory)?
            .ok_or_else(|| parent_err(path, "has no inventory"))?;
        let digest = crhook_core::seal::sha256(&bytes).to_vec();
        // writing over an image of the chain would take the child's own parent away
        let target = absolute(images)?;
        for link in dir.chain() {
            if std::fs::canonicalize(link.path()).is_ok_and(|p| p == target) {
                return Err(parent_err(
                    path,
                    format!(
                        "{} is in its chain; a child must not be written over its own parent",
                        images.display()
                    ),
                ));
            }
        }
        let rel = relative(images, path)?;
        Ok(Parent { dir, digest, rel })
    }
}

/// `p` with its directory resolved (`p` itself need not exist yet).
fn absolute(p: &Path) -> Result<PathBuf> {
    let name = p.file_name().map(PathBuf::from).unwrap_or_default();
    let up = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let up = std::fs::canonicalize(&up).map_err(|source| NetstateError::Io {
        op: "resolve".into(),
        path: up.clone(),
        source,
    })?;
    Ok(up.join(name))
}

/// `to` relative to the directory `from` will be (both made absolute through the existing
/// part of their paths, so symlinks such as CRIU's `parent` resolve).
fn relative(from: &Path, to: &Path) -> Result<PathBuf> {
    let to = std::fs::canonicalize(to).map_err(|source| NetstateError::Io {
        op: "resolve parent image".into(),
        path: to.to_path_buf(),
        source,
    })?;
    let from = absolute(from)?;
    let (a, b): (Vec<Component>, Vec<Component>) =
        (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..a.len() {
        out.push("..");
    }
    for c in b.iter().skip(common) {
        out.push(c);
    }
    Ok(out)
}

/// Unlocked passes after the first, at most, over what changed during the one before.
const EXTRA_PASSES: usize = 2;

/// Families name links by name, resolved from the link dump: when links changed (renamed,
/// added, removed), every family is dumped again with them. Traffic control takes the XDP
/// programs from the link dump, so it brings the links (and so everything) along.
fn widen(kinds: BTreeSet<Kind>) -> BTreeSet<Kind> {
    if kinds.contains(&Kind::Links) || kinds.contains(&Kind::Tc) {
        TRACKED.iter().copied().collect()
    } else {
        kinds
    }
}

/// What one dump pass got.
#[derive(Default)]
struct Pass {
    snap: Snapshot,
    kinds: BTreeSet<Kind>,
    requests: u64,
    warnings: Vec<String>,
}

/// Dumps `kinds` (netlink families) and, with `firewall`, the firewall, beside each other.
/// `links` are the links other families name, when the links are not dumped again.
fn pass(
    ns: &NetNs,
    host: &NetNs,
    opts: &CheckpointOptions,
    kinds: &BTreeSet<Kind>,
    firewall: bool,
    links: &[pb::Link],
) -> Result<Pass> {
    std::thread::scope(|s| {
        let fw = (firewall && !opts.firewall.skip)
            .then(|| s.spawn(|| crate::firewall::capture(ns, &opts.firewall)));
        let net = netlink_pass(ns, host, kinds, links);
        let fw = fw.map(|h| {
            h.join()
                .map_err(|_| NetstateError::invalid("firewall capture thread panicked"))?
        });
        let mut p = net?;
        if let Some(rules) = fw {
            p.snap.firewall = rules?;
            p.kinds.insert(Kind::Firewall);
        } else if firewall {
            p.kinds.insert(Kind::Firewall);
        }
        Ok(p)
    })
}

fn netlink_pass(
    ns: &NetNs,
    host: &NetNs,
    kinds: &BTreeSet<Kind>,
    links: &[pb::Link],
) -> Result<Pass> {
    let mut p = Pass::default();
    let want = |k| kinds.contains(&k);
    if !TRACKED.iter().any(|k| *k != Kind::Sysctls && want(*k)) {
        return Ok(p);
    }
    let name = ns.name().to_string();
    let mut nl = ns.run(|| Nl::new(&name))?;
    let mut dump = None;
    let ifs = if want(Kind::Links) {
        let mut peers = PeerFinder::new(host.try_clone()?, ns);
        let (mut l, d) = link::capture(&mut nl, &mut peers)?;
        if let Some(mut e) = crate::ethtool::open_in(ns)? {
            e.fill(&mut l)?;
        }
        p.warnings = crate::capture_all::peer_warnings(&l);
        let ifs = IfMap::from_names(l.iter().map(|x| (x.ifindex, x.name.clone())));
        p.snap.links = l;
        p.kinds.insert(Kind::Links);
        dump = Some(d);
        ifs
    } else {
        IfMap::from_names(links.iter().map(|x| (x.ifindex, x.name.clone())))
    };
    macro_rules! fam {
        ($kind:expr, $field:ident, $f:ty) => {
            if want($kind) {
                p.snap.$field = <$f>::capture(&mut nl, &ifs)?;
                p.kinds.insert($kind);
            }
        };
    }
    fam!(Kind::Addresses, addresses, Addresses);
    fam!(Kind::Nexthops, nexthops, Nexthops);
    fam!(Kind::Routes, routes, Routes);
    fam!(Kind::Rules, rules, Rules);
    fam!(Kind::Neighbours, neighbours, Neighbours);
    if want(Kind::Tc) {
        p.snap.tc = Tc::capture(&mut nl, &ifs)?;
        // widened with the links, so their dump is here
        if let Some(d) = &dump {
            p.snap.tc.extend(crate::tc::xdp_programs(d));
        }
        p.warnings.extend(crate::tc::lost_warnings(&p.snap.tc));
        p.kinds.insert(Kind::Tc);
    }
    p.requests = nl.requests;
    Ok(p)
}

/// Moves what `later` dumped into `into`, replacing the same kinds (moved, not copied: this
/// runs under the lock).
fn merge(into: &mut Pass, later: Pass) {
    let mut s = later.snap;
    for k in &later.kinds {
        let (a, b) = (&mut into.snap, &mut s);
        match k {
            Kind::Links => a.links = std::mem::take(&mut b.links),
            Kind::Addresses => a.addresses = std::mem::take(&mut b.addresses),
            Kind::Routes => a.routes = std::mem::take(&mut b.routes),
            Kind::Nexthops => a.nexthops = std::mem::take(&mut b.nexthops),
            Kind::Rules => a.rules = std::mem::take(&mut b.rules),
            Kind::Neighbours => a.neighbours = std::mem::take(&mut b.neighbours),
            Kind::Tc => a.tc = std::mem::take(&mut b.tc),
            Kind::Firewall => a.firewall = std::mem::take(&mut b.firewall),
            _ => {}
        }
        into.kinds.insert(*k);
    }
    if later.kinds.contains(&Kind::Links) {
        into.warnings = later.warnings;
    }
    into.requests += later.requests;
}

/// Checkpoints `target` into `images` against `opts.parent` (or, without one, a whole image
/// whose moment `tracker` remembers); see the module docs.
pub fn run(
    target: &Target,
    images: &Path,
    opts: &CheckpointOptions,
    key: HostKey,
    tracker: Option<&mut Tracker>,
) -> Result<pb::Stats> {
    let start = Instant::now();
    let ns = NetNs::open(target)?;
    let source = identity(&ns, target);
    let parent = match &opts.parent {
        Some(p) => Some(Parent::open(p, images, &source)?),
        None => None,
    };
    let mut writer = ImageWriter::create(images)?;
    writer.set_key(key);
    let host = NetNs::current()?;
    let mut stats = StatsRecorder::new();
    let mut warnings = Vec::new();
    crate::progress::step(&format!("capture {} against its parent", ns.name()));
    let stale = stale_lock(&ns)?;
    let alone = stale.is_none();
    warnings.extend(stale);
    let mut fresh;
    let tracker = match tracker {
        Some(t) => t,
        None => {
            fresh = Tracker::new(&ns)?;
            &mut fresh
        }
    };
    // what may differ from the parent
    let known = parent.as_ref().and_then(|p| tracker.mark_of(&p.digest));
    let (since_parent, fw_since_parent) = match known {
        Some(m) => {
            let c = tracker.changed_since(&m)?;
            let fw = c.nft_changed(&m, 0);
            (widen(c.kinds), fw)
        }
        None => (Changes::all().kinds, true),
    };
    let outside_nft = crate::firewall::outside_nf_tables(&ns, &opts.firewall)?;
    let base_links: Vec<pb::Link> = match &parent {
        Some(p) if !since_parent.contains(&Kind::Links) => p.dir.read(Kind::Links)?,
        _ => Vec::new(),
    };

    let mut pre_mark = tracker.mark()?;
    let mut image_mark = pre_mark;
    let t = Instant::now();
    let mut got = pass(
        &ns,
        &host,
        opts,
        &since_parent,
        fw_since_parent || outside_nft,
        &base_links,
    )?;
    stats.phase("prepass", t.elapsed());

    if opts.lock {
        // what changed during the unlocked dump is dumped again, still unlocked, while changes
        // keep coming: a burst that has ended by then leaves the lock window flat
        let t = Instant::now();
        for _ in 0..EXTRA_PASSES {
            let (changes, m) = tracker.changed_since_and_mark(&pre_mark)?;
            let fw = changes.nft_changed(&pre_mark, 0);
            if changes.kinds.is_empty() && !fw {
                break;
            }
            let links: &[pb::Link] = if got.kinds.contains(&Kind::Links) {
                &got.snap.links
            } else {
                &base_links
            };
            let again = pass(&ns, &host, opts, &widen(changes.kinds), fw, links)?;
            merge(&mut got, again);
            pre_mark = m;
        }
        stats.phase("repass", t.elapsed());
    }
    if opts.lock {
        let locked = take_lock(&ns, opts, &mut stats, alone)?;
        let result = (|| -> Result<()> {
            let (changes, m) = tracker.changed_since_and_mark(&pre_mark)?;
            image_mark = m;
            let fw_again = outside_nft || changes.nft_changed(&pre_mark, 1);
            if changes.overrun {
                warnings.push(format!(
                    "{}: notifications overran the tracker's buffer; every family dumped again under the lock",
                    ns.name()
                ));
            }
            let links: &[pb::Link] = if got.kinds.contains(&Kind::Links) {
                &got.snap.links
            } else {
                &base_links
            };
            if fw_again || !changes.kinds.is_empty() {
                tracing::debug!(
                    kinds = ?changes.kinds,
                    firewall = fw_again,
                    overrun = changes.overrun,
                    "changed during the unlocked dumps; dumped again under the lock"
                );
            }
            let t = Instant::now();
            let again = pass(&ns, &host, opts, &widen(changes.kinds), fw_again, links)?;
            stats.phase("recapture", t.elapsed());
            merge(&mut got, again);
            crate::interrupt::check("checkpoint").map_err(NetstateError::invalid)
        })();
        let unlocked = if result.is_err() || !opts.leave_locked {
            remove_lock(&ns, &locked)
        } else {
            Ok(())
        };
        stats.set_locked(locked.at.elapsed());
        result?;
        unlocked?;
        if !opts.leave_locked {
            // the unlock is one more commit of our own: the image's moment is after it
            // unless someone else committed meanwhile
            let now = crate::firewall::generation(&ns).ok();
            // that read opened a netfilter socket again: hand it over too (handoff.rs)
            ns.release_netfilter();
            if let (Some(g), Some(n)) = (image_mark.nft_generation, now) {
                if g.wrapping_add(1) == n {
                    image_mark.nft_generation = now;
                }
            }
        }
    }
    stats.add_netlink_requests(got.requests);
    warnings.append(&mut got.warnings);

    got.snap.sysctls = sysctls_unlocked(&ns, &mut stats)?.to_pb();
    got.kinds.insert(Kind::Sysctls);
    if !got.kinds.contains(&Kind::Links) {
        // open tun files are matched to their links
        got.snap.links = base_links;
    }
    crate::interrupt::check("checkpoint").map_err(NetstateError::invalid)?;
    let t = Instant::now();
    crate::tunfile::capture(&ns, &mut got.snap, opts, &mut warnings)?;
    for k in [Kind::TunFiles, Kind::ExtFiles, Kind::SkippedFiles] {
        got.kinds.insert(k);
    }
    stats.phase("files", t.elapsed());

    let t = Instant::now();
    let from_parent = match &parent {
        Some(p) => unchanged(&p.dir, &got)?,
        None => Vec::new(),
    };
    stats.phase("compare", t.elapsed());
    if let Some(p) = &parent {
        writer.set_parent(
            pb::ParentImage {
                path: p.rel.to_string_lossy().into_owned(),
                inventory_sha256: p.digest.clone(),
            },
            from_parent.clone(),
        );
    }
    for (k, n) in got.snap.counts() {
        // a family never dumped is the parent's: count what the parent holds
        let inherited = Kind::from_name(k)
            .filter(|kind| !got.kinds.contains(kind))
            .zip(parent.as_ref())
            .and_then(|(kind, p)| p.dir.entries(kind));
        stats.count(k, inherited.unwrap_or(n));
    }
    for w in &warnings {
        stats.warn(w.clone());
    }
    let t = Instant::now();
    write_carried(&got.snap, &from_parent, &mut writer)?;
    let current = stats.current().clone();
    writer.write(Kind::StatsDump, std::slice::from_ref(&current))?;
    let bytes = writer.bytes_written();
    let out = writer.finish(source, warnings)?;
    stats.phase("write", t.elapsed());
    stats.add_bytes(bytes);
    let inv =
        std::fs::read(out.join(Kind::Inventory.file_name())).map_err(|e| NetstateError::Io {
            op: "read back inventory of".into(),
            path: out.clone(),
            source: e,
        })?;
    tracker.remember(&crhook_core::seal::sha256(&inv), image_mark);
    let mut s = stats.finish();
    s.total_us = start.elapsed().as_micros() as u64;
    Ok(s)
}

/// Kinds that equal the parent's: not dumped at all, or dumped and found equal.
fn unchanged(parent: &ImageDir, got: &Pass) -> Result<Vec<Kind>> {
    let s = &got.snap;
    let mut out = Vec::new();
    macro_rules! same {
        ($kind:expr, $field:ident) => {
            if !got.kinds.contains(&$kind) || same_as(parent, $kind, &s.$field)? {
                out.push($kind);
            }
        };
    }
    same!(Kind::Links, links);
    same!(Kind::Addresses, addresses);
    same!(Kind::Routes, routes);
    same!(Kind::Nexthops, nexthops);
    same!(Kind::Rules, rules);
    same!(Kind::Neighbours, neighbours);
    same!(Kind::Tc, tc);
    same!(Kind::Sysctls, sysctls);
    same!(Kind::Firewall, firewall);
    same!(Kind::TunFiles, tun_files);
    same!(Kind::ExtFiles, ext_files);
    same!(Kind::SkippedFiles, skipped_files);
    Ok(out)
}

fn same_as<M: crhook_core::prost::Message + Default + PartialEq>(
    parent: &ImageDir,
    kind: Kind,
    now: &[M],
) -> Result<bool> {
    Ok(parent.read::<M>(kind)?.as_slice() == now)
}

/// Writes every kind the child carries itself.
fn write_carried(s: &Snapshot, from_parent: &[Kind], w: &mut ImageWriter) -> Result<()> {
    s.write_kinds(w, |k| !from_parent.contains(&k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_path_is_relative_to_the_child_directory() -> Result<()> {
        let base = std::env::temp_dir().join(format!("crhook-rel-{}", std::process::id()));
        let pre = base.join("pre").join("netstate");
        std::fs::create_dir_all(&pre).map_err(|e| NetstateError::Io {
            op: "create".into(),
            path: pre.clone(),
            source: e,
        })?;
        let final_dir = base.join("final");
        std::fs::create_dir_all(&final_dir).map_err(|e| NetstateError::Io {
            op: "create".into(),
            path: final_dir.clone(),
            source: e,
        })?;
        // CRIU's `parent` link resolves to the directory it names
        let _ = std::os::unix::fs::symlink("../pre", final_dir.join("parent"));
        let rel = relative(
            &final_dir.join("netstate"),
            &final_dir.join("parent").join("netstate"),
        );
        let sibling = relative(&base.join("b"), &base.join("pre"));
        let _ = std::fs::remove_dir_all(&base);
        assert_eq!(rel?, PathBuf::from("../../pre/netstate"));
        assert_eq!(sibling?, PathBuf::from("../pre"));
        Ok(())
    }

    #[test]
    fn links_changing_widens_to_every_family() {
        let one: BTreeSet<Kind> = [Kind::Routes].into_iter().collect();
        assert_eq!(widen(one.clone()), one);
        let links: BTreeSet<Kind> = [Kind::Links].into_iter().collect();
        assert_eq!(widen(links).len(), TRACKED.len());
    }
}
