//! Capture: namespace-wide keys from `/proc`, per-device keys from the link and neighbour
//! table dumps, and the per-device keys netlink does not carry exactly from `/proc`.
//!
//! At 2,000 links netlink gives 220,000 keys and about 20,000 files remain (stable_secret,
//! regen_min_advance, ra_honor_pio_life, ra_honor_pio_pflag; anycast_delay, proxy_delay,
//! locktime in both families). Opening one of those costs about 3 µs of kernel time under a
//! global lock, so two threads reading them go no faster than one; building the keys costs
//! less (each goes into one text buffer, [`Saved`], not six allocations). So
//! a reader thread reads the files while this one walks the namespace-wide keys, dumps the
//! neighbour tables and starts building, and then both build what is left, from opposite
//! ends ([`Work`]). A thread started here shares this thread's network namespace (a new
//! thread gets its creator's namespaces), so its `/proc/sys/net` is the captured
//! namespace's.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::{mpsc, Mutex, MutexGuard, OnceLock, PoisonError};

use crhook_proto as pb;
use netlink_packet_route::link::LinkMessage;

use super::saved::Saved;

use super::dump::{self, Dev};
use super::layout::{self, Src, DIRS};
use super::procfs::{self, DirReader};
use crate::error::{NetstateError, Result};
use crate::nl::Nl;

/// Every key of the calling thread's namespace. Run it on the namespace thread.
pub fn capture(nl: &mut Nl, link_dump: Option<&[LinkMessage]>) -> Result<Vec<pb::Sysctl>> {
    Ok(capture_saved(nl, link_dump)?.to_pb())
}

/// [`capture`], the keys held as [`Saved`] (at 2,000 links 240,000 keys: 73 MiB as
/// messages, ~13 MiB so), for what only writes or compares them.
pub(crate) fn capture_saved(nl: &mut Nl, link_dump: Option<&[LinkMessage]>) -> Result<Saved> {
    let (devs, by_index) = dump::links(nl, link_dump)?;
    capture_devs(nl, devs, by_index)
}

/// [`capture_saved`] from a raw link dump it takes and drops once it has read the devices.
pub(crate) fn capture_from(nl: &mut Nl, link_dump: crate::link::RawLinks) -> Result<Saved> {
    let (devs, by_index) = dump::raw_links(&link_dump);
    drop(link_dump);
    capture_devs(nl, devs, by_index)
}

fn capture_devs(
    nl: &mut Nl,
    mut devs: Vec<dump::Dev>,
    by_index: std::collections::HashMap<u32, usize>,
) -> Result<Saved> {
    let netns = nl.netns().to_string();
    let layouts = layouts(&devs, &netns)?;
    let names: Vec<String> = devs.iter().map(|d| d.name.clone()).collect();
    // which devices have each directory before the neighbour dump says: a device has neigh
    // parameters of a family exactly when it has that family's conf (the kernel allocates
    // them with the in_device and inet6_dev)
    let expect: Vec<[bool; 4]> = devs
        .iter()
        .map(|d| {
            let (v4, v6) = (d.inet.is_some(), d.inet6.is_some());
            [v4, v6, v4, v6]
        })
        .collect();
    let work = Work::new(&layouts, devs.len());
    let views: OnceLock<Vec<Dev>> = OnceLock::new();
    std::thread::scope(|s| {
        let (ready_tx, ready_rx) = mpsc::channel::<usize>();
        let (views_tx, views_rx) = mpsc::channel::<()>();
        let (layouts, work, views) = (&layouts, &work, &views);
        let (names, expect, netns) = (&names, &expect, &netns);
        let reader = s.spawn(move || -> Result<Vec<Saved>> {
            for (li, l) in layouts.iter().enumerate() {
                work.put(li, read_files(l, names, expect, netns)?);
                if ready_tx.send(li).is_err() {
                    // the capturing thread gave up; its error is the one to report
                    return Ok(Vec::new());
                }
            }
            // then build chunks from the end until the two threads meet
            let mut built = Vec::new();
            let Some(devs) = views_rx.recv().ok().and(views.get()) else {
                return Ok(Vec::new());
            };
            while let Some(c) = work.claim_back() {
                let mut out = Saved::default();
                work.build(c, &mut out, devs, netns)?;
                built.push(out);
            }
            built.reverse();
            Ok(built)
        });
        let mut out = Saved::from_pb(&procfs::walk(netns, true)?);
        dump::neigh_params(nl, &by_index, &mut devs)?;
        out.reserve(count(layouts, &devs));
        let devs = views.get_or_init(|| devs);
        // (a reader that is gone failed, and its join says why)
        let _ = views_tx.send(());
        // Chunks from the start, each once the reader has read its layout's files. Chunks
        // the reader does not take (it takes none if it fails) are built here.
        let mut ready = 0;
        'chunks: while let Some(c) = work.claim_front() {
            while ready <= work.layout_of(c) {
                match ready_rx.recv() {
                    Ok(li) => ready = li + 1,
                    Err(_) => break 'chunks,
                }
            }
            work.build(c, &mut out, devs, netns)?;
        }
        let tail = reader
            .join()
            .map_err(|_| NetstateError::invalid(format!("sysctl reader in {netns} panicked")))??;
        for t in &tail {
            if !out.append(t) {
                return Err(too_many(netns));
            }
        }
        Ok(out)
    })
}

/// Reference capture that reads every key from `/proc`, per-device ones included: the same
/// keys and values as [`capture`], about 30 times slower at a few hundred links. For tests
/// and benchmarks.
pub fn capture_proc_walk(netns: &str) -> Result<Vec<pb::Sysctl>> {
    procfs::walk(netns, false)
}

/// One per-device directory kind of [`DIRS`] as this kernel lays it out.
struct Layout {
    k: usize,
    /// The key names in `/proc` order (sorted), excluded ones left out, each with its
    /// netlink source; `None` for names read from `/proc`.
    names: Vec<(String, Option<Src>)>,
    /// The names read from `/proc`, as indexes into `names`.
    files: Vec<usize>,
}

/// The layout of each of [`DIRS`] that some device has.
fn layouts(devs: &[Dev], netns: &str) -> Result<Vec<Layout>> {
    let mut out = Vec::new();
    for (k, (fam, dir)) in DIRS.iter().enumerate() {
        // neigh directories exist with the family's conf (see `capture`)
        let with_dir = devs.iter().filter(|d| layout::has(d, k % 2));
        let Some(all) = template(fam, dir, with_dir, netns)? else {
            continue;
        };
        let names: Vec<(String, Option<Src>)> = all
            .into_iter()
            .filter(|n| !procfs::is_excluded(&[fam, dir, "x", n.as_str()]))
            .map(|n| {
                let src = layout::source(k, &n);
                (n, src)
            })
            .collect();
        let files = (0..names.len())
            .filter(|i| names.get(*i).is_some_and(|(_, s)| s.is_none()))
            .collect();
        out.push(Layout { k, names, files });
    }
    Ok(out)
}

/// The names of the key files of one device's directory: every device of a family has the
/// same set (one sysctl template per family), so the first device that has a directory
/// speaks for all. `None` when no device has one (no such family in this namespace).
pub(super) fn template<'a>(
    fam: &str,
    dir: &str,
    mut devs: impl Iterator<Item = &'a Dev>,
    netns: &str,
) -> Result<Option<Vec<String>>> {
    devs.try_fold(None, |found, d| {
        if found.is_some() {
            return Ok(found);
        }
        procfs::list_keys(&[fam.to_string(), dir.to_string(), d.name.clone()], netns)
    })
}

/// What reading one file gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum File {
    /// not read: the device was not expected to have the directory
    #[default]
    Skipped,
    /// not a key here (an unset `stable_secret` gives EIO) or gone
    Unreadable,
    Value(String),
}

/// The number of keys of these layouts the devices have, at most (files that do not read
/// are left out).
fn count(layouts: &[Layout], devs: &[Dev]) -> usize {
    layouts
        .iter()
        .map(|l| l.names.len() * devs.iter().filter(|d| layout::has(d, l.k)).count())
        .sum()
}

/// Devices per chunk of build work: small enough that the two threads finish close
/// together, large enough that taking a chunk costs nothing next to building it.
const CHUNK: usize = 128;

/// The keys to build, in chunks of [`CHUNK`] devices of one layout, shared by the two
/// threads: the capturing thread takes chunks from the start as the reader reads their
/// layouts' files, the reader from the end once it has read all. Which thread builds what
/// follows how long the reads take, and the keys still come out in capture order.
struct Work<'a> {
    layouts: &'a [Layout],
    /// (layout, devices) of each chunk, in capture order
    chunks: Vec<(usize, Range<usize>)>,
    /// per layout, its files once read; each chunk takes its devices' entries
    files: Vec<Mutex<Option<Vec<File>>>>,
    /// the chunks nobody has taken: `front..back`
    left: Mutex<(usize, usize)>,
}

impl<'a> Work<'a> {
    fn new(layouts: &'a [Layout], devs: usize) -> Work<'a> {
        let chunks: Vec<_> = (0..layouts.len())
            .flat_map(|li| {
                (0..devs)
                    .step_by(CHUNK)
                    .map(move |a| (li, a..devs.min(a + CHUNK)))
            })
            .collect();
        Work {
            layouts,
            files: layouts.iter().map(|_| Mutex::new(None)).collect(),
            left: Mutex::new((0, chunks.len())),
            chunks,
        }
    }

    fn put(&self, li: usize, files: Vec<File>) {
        if let Some(slot) = self.files.get(li) {
            *lock(slot) = Some(files);
        }
    }

    fn claim_front(&self) -> Option<usize> {
        let mut left = lock(&self.left);
        (left.0 < left.1).then(|| {
            left.0 += 1;
            left.0 - 1
        })
    }

    fn claim_back(&self) -> Option<usize> {
        let mut left = lock(&self.left);
        (left.0 < left.1).then(|| {
            left.1 -= 1;
            left.1
        })
    }

    fn layout_of(&self, chunk: usize) -> usize {
        self.chunks.get(chunk).map_or(0, |(li, _)| *li)
    }

    /// Appends the keys of one chunk, taking its devices' files.
    fn build(&self, chunk: usize, out: &mut Saved, devs: &[Dev], netns: &str) -> Result<()> {
        let Some((l, range)) = self
            .chunks
            .get(chunk)
            .and_then(|(li, r)| Some((self.layouts.get(*li)?, r.clone())))
        else {
            return Ok(());
        };
        let n = l.files.len();
        let mut files: Vec<File> = self
            .files
            .get(self.layout_of(chunk))
            .and_then(|f| {
                let mut all = lock(f);
                let part = all.as_mut()?.get_mut(range.start * n..range.end * n)?;
                Some(part.iter_mut().map(std::mem::take).collect())
            })
            .unwrap_or_default();
        build(
            out,
            l,
            devs.get(range).unwrap_or_default(),
            &mut files,
            netns,
        )
    }
}

/// More key text than an image can index (4 GiB).
fn too_many(netns: &str) -> NetstateError {
    NetstateError::invalid(format!("the sysctls of {netns} pass 4 GiB of text"))
}

/// A poisoned lock only means the other thread panicked, which its join reports.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads the `/proc`-only names of one layout for every device expected to have the
/// directory: `files.len()` entries per device in device order.
fn read_files(l: &Layout, devs: &[String], expect: &[[bool; 4]], netns: &str) -> Result<Vec<File>> {
    let mut vals = Vec::with_capacity(devs.len() * l.files.len());
    if l.files.is_empty() {
        return Ok(vals);
    }
    let (fam, dir) = DIRS.get(l.k).copied().unwrap_or_default();
    let mut reader = DirReader::open(&[fam, dir])
        .map_err(|e| procfs::io_error("open sysctl directory", &[fam, dir], netns, e))?;
    for (dev, exp) in devs.iter().zip(expect) {
        let want = exp.get(l.k).copied().unwrap_or(false);
        for i in &l.files {
            let v = match (&mut reader, l.names.get(*i)) {
                (Some(r), Some((name, _))) if want => {
                    match r.read(&[dev.as_str(), name.as_str()]) {
                        Ok(v) => File::Value(v),
                        Err(e) => {
                            tracing::debug!(
                                "sysctl {fam}/{dir}/{dev}/{name} in {netns} not readable: {e}"
                            );
                            File::Unreadable
                        }
                    }
                }
                _ => File::Skipped,
            };
            vals.push(v);
        }
    }
    Ok(vals)
}

/// Appends the keys of one layout in capture order (device, name): values netlink carries
/// from the dump, the others from `files` (what [`read_files`] sent for this layout), reading
/// what it skipped (a name the kernel left out of one device's netlink view, a device whose
/// neigh parameters were not expected). Keys whose file does not read are left out.
fn build(out: &mut Saved, l: &Layout, devs: &[Dev], files: &mut [File], netns: &str) -> Result<()> {
    let (fam, dir) = DIRS.get(l.k).copied().unwrap_or_default();
    // a netlink value printed as the file shows it, into one buffer for all
    let mut shown = String::new();
    for (di, d) in devs.iter().enumerate() {
        if !layout::has(d, l.k) {
            continue;
        }
        for (ni, (name, src)) in l.names.iter().enumerate() {
            let path = [fam, dir, d.name.as_str(), name.as_str()];
            if let Some(v) = src.and_then(|s| layout::value(d, l.k, s)) {
                shown.clear();
                let _ = write!(shown, "{v}");
                if !out.push(path, &shown) {
                    return Err(too_many(netns));
                }
                continue;
            }
            let read = l
                .files
                .iter()
                .position(|i| *i == ni)
                .and_then(|col| files.get_mut(di * l.files.len() + col))
                .map(std::mem::take);
            let file = match read {
                Some(File::Skipped) | None => match procfs::read(&procfs::proc_path(&path)) {
                    Ok(v) => File::Value(v),
                    Err(e) => {
                        tracing::debug!("sysctl {} in {netns} not readable: {e}", path.join("/"));
                        File::Unreadable
                    }
                },
                Some(f) => f,
            };
            if let File::Value(value) = file {
                if !out.push(path, &value) {
                    return Err(too_many(netns));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sysctl::tables::Unit;

    fn keys(out: &Saved) -> Vec<String> {
        out.to_pb()
            .iter()
            .map(|s| format!("{}={}", s.path.join("/"), s.value))
            .collect()
    }

    #[test]
    fn build_merges_netlink_values_and_files_in_capture_order() {
        let l = Layout {
            k: 1,
            names: vec![
                ("accept_ra".into(), Some(Src::Inet6(3, Unit::Int))),
                ("regen_min_advance".into(), None),
                ("stable_secret".into(), None),
            ],
            files: vec![1, 2],
        };
        let dev = |name: &str, inet6: Option<Vec<i32>>| Dev {
            name: name.into(),
            inet6,
            ..Dev::default()
        };
        let devs = [
            dev("a", Some(vec![0, 0, 0, 2])),
            // no IPv6: no keys, whatever was read
            dev("b", None),
            // the kernel sent no slot 3 and the device does not exist: accept_ra is read
            // from /proc, finds nothing and is left out
            dev("crhook-no-such-device", Some(vec![0, 0, 0])),
            // this process's own loopback, which the reader skipped: read here
            dev("lo", Some(vec![0, 0, 0, 1])),
        ];
        let mut files = vec![
            File::Value("100".into()),
            File::Unreadable,
            File::Value("7".into()),
            File::Value("7".into()),
            File::Value("5".into()),
            File::Value("2001:0db8:0000:0000:0000:0000:0000:0001".into()),
            File::Skipped,
            File::Unreadable,
        ];
        let mut out = Saved::default();
        assert!(out.push(["core", "somaxconn"], "4096"));
        build(&mut out, &l, &devs, &mut files, "test").unwrap();
        let lo_regen = procfs::read(&procfs::proc_path(&[
            "ipv6",
            "conf",
            "lo",
            "regen_min_advance",
        ]));
        let mut want = vec![
            "core/somaxconn=4096".to_string(),
            "ipv6/conf/a/accept_ra=2".into(),
            "ipv6/conf/a/regen_min_advance=100".into(),
            "ipv6/conf/crhook-no-such-device/regen_min_advance=5".into(),
            "ipv6/conf/crhook-no-such-device/stable_secret=2001:0db8:0000:0000:0000:0000:0000:0001"
                .into(),
            "ipv6/conf/lo/accept_ra=1".into(),
        ];
        if let Ok(v) = lo_regen {
            want.push(format!("ipv6/conf/lo/regen_min_advance={v}"));
        }
        assert_eq!(keys(&out), want);
        // what was used is taken; the entries of the device without IPv6 are not
        let seven = File::Value("7".into());
        let skipped = File::Skipped;
        assert_eq!(
            files,
            [&skipped, &skipped, &seven, &seven, &skipped, &skipped, &skipped, &skipped]
                .map(Clone::clone)
        );
    }
}
