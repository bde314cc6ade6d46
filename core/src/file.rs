//! One framed image file: typed encode and decode of its entries (within the memory budgets of
//! budget.rs), and reading and writing it on disk. Reading opens through safefs.rs (never a
//! symlink, a FIFO or a device; size checked on the open descriptor before reading). Writing
//! puts the file in place as place.rs does.
//!
//! This module does not know about image directories or inventories (dir.rs does).

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::budget::{self, Budget};
use crate::error::ImageError;
use crate::format::Limits;
use crate::frame::{self, Encoder};
use crate::magic::Kind;
use crate::place::{self, parent_and_name};
use crate::safefs;

pub use crate::place::write_bytes_atomic;

/// Encodes `entries` as one file of `kind`. An entry too large to frame (4 GiB or more) is
/// written as the oversize mark, which every reader rejects; [`try_encode_file`] refuses it
/// instead, and [`write_file`] and the image writer use that.
pub fn encode_file<M: prost::Message>(kind: Kind, entries: &[M]) -> Vec<u8> {
    let mut e = Encoder::new(kind);
    for m in entries {
        if e.push_message(m).is_err() {
            e.push_oversize_mark();
        }
    }
    e.finish()
}

/// Like [`encode_file`] but refuses an entry too large to frame, naming `file` in the error.
pub fn try_encode_file<M: prost::Message>(
    file: &Path,
    kind: Kind,
    entries: &[M],
) -> Result<Vec<u8>, ImageError> {
    let mut e = Encoder::new(kind);
    for (i, m) in entries.iter().enumerate() {
        e.push_message(m).map_err(|len| too_large(file, i, len))?;
    }
    Ok(e.finish())
}

/// Encodes raw payloads (no protobuf inside) framed exactly like messages. Oversize entries
/// are handled as in [`encode_file`].
pub fn encode_raw_file(kind: Kind, entries: &[&[u8]]) -> Vec<u8> {
    let mut e = Encoder::new(kind);
    for b in entries {
        if e.push_raw(b).is_err() {
            e.push_oversize_mark();
        }
    }
    e.finish()
}

fn too_large(file: &Path, index: usize, len: usize) -> ImageError {
    ImageError::EntryTooLarge {
        file: file.to_path_buf(),
        index: index as u64,
        len: len as u64,
        max: u64::from(crate::format::OVERSIZE_ENTRY - 1),
    }
}

/// Decodes a whole file of `kind` held in memory. `name_for_errors` is only used in messages.
/// Checks, in order: size limit, magics, version, trailer, checksum, count limit, the memory
/// the entries' structs take, then for each entry its length (against the limit and the bytes
/// left), the memory and repeated elements it will decode to, and the message; then the count.
pub fn decode_file<M: prost::Message + Default>(
    name_for_errors: &Path,
    kind: Kind,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<M>, ImageError> {
    decode_budgeted(
        name_for_errors,
        kind,
        bytes,
        limits,
        &Budget::new(limits.max_total_memory),
    )
}

pub(crate) fn over(
    file: &Path,
    offset: u64,
    what: &'static str,
    value: u64,
    limit: u64,
) -> ImageError {
    ImageError::Limit {
        file: file.to_path_buf(),
        offset,
        what,
        value,
        limit,
    }
}

/// [`decode_file`] charging what it decodes to `total` (shared by every file of an image).
/// `M` must be the kind's message: the budget walks entries with the kind's schema.
pub(crate) fn decode_budgeted<M: prost::Message + Default>(
    name_for_errors: &Path,
    kind: Kind,
    bytes: &[u8],
    limits: &Limits,
    total: &Budget,
) -> Result<Vec<M>, ImageError> {
    decode_budgeted_with(name_for_errors, kind, bytes, limits, total, None, |p| p)
}

/// [`decode_budgeted`] of a file held as shared bytes: the `bytes` fields prost generates as
/// [`prost::bytes::Bytes`] (the nf_tables messages of a firewall image) decode as slices of
/// it, not copies (at L, 55,000 rules: 37 ms of allocating and copying). The budget still
/// charges them as copies. `crc` is the body's crc32c when already computed.
pub(crate) fn decode_budgeted_shared<M: prost::Message + Default>(
    name_for_errors: &Path,
    kind: Kind,
    bytes: &prost::bytes::Bytes,
    limits: &Limits,
    total: &Budget,
    crc: Option<u32>,
) -> Result<Vec<M>, ImageError> {
    decode_budgeted_with(name_for_errors, kind, bytes, limits, total, crc, |p| {
        bytes.slice_ref(p)
    })
}

/// Files of at least this many entries decode on two threads, once every entry has passed
/// its checks: the sysctls of 1,000 links (120,000 keys, each a few small strings) took one
/// thread 62 ms, the last of restore's reads to finish.
const PARALLEL_ENTRIES: u64 = 20_000;

/// The cores this process may use (read once: the standard library reads cgroup files for it).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// [`decode_budgeted`], each entry decoded from `buf(its payload)`.
fn decode_budgeted_with<'a, M, B>(
    name_for_errors: &'a Path,
    kind: Kind,
    bytes: &'a [u8],
    limits: &Limits,
    total: &Budget,
    crc: Option<u32>,
    buf: impl Fn(&'a [u8]) -> B + Sync,
) -> Result<Vec<M>, ImageError>
where
    M: prost::Message + Default + Send,
    B: prost::bytes::Buf,
{
    let file = name_for_errors;
    let framed = frame::parse_known(file, bytes, Some(kind), limits, crc)?;
    let count_at = (bytes.len() - crate::format::TRAILER_LEN + 4) as u64;
    // the entries' own structs, in one allocation of exactly the count (checked against the
    // bytes present by parse, and now against the budgets)
    let structs = framed
        .count
        .saturating_mul(std::mem::size_of::<M>() as u64)
        .saturating_add(16);
    let memory = (bytes.len() as u64).saturating_add(structs);
    if memory > limits.max_file_memory {
        return Err(over(
            file,
            count_at,
            "decoded memory",
            memory,
            limits.max_file_memory,
        ));
    }
    total
        .charge(structs)
        .map_err(|t| over(file, count_at, "image memory", t, total.limit()))?;
    let repeated = framed.count;
    if repeated > limits.max_repeated {
        return Err(over(
            file,
            count_at,
            "repeated elements",
            repeated,
            limits.max_repeated,
        ));
    }
    let message = kind.info().message;
    let decode = |index: u64, offset: u64, payload: &'a [u8]| {
        M::decode(buf(payload)).map_err(|source| ImageError::Decode {
            file: file.to_path_buf(),
            offset,
            index,
            message,
            source,
        })
    };
    let count = usize::try_from(framed.count).unwrap_or(0);
    // every entry, checked, handed to `f`
    let walk = |f: &mut dyn FnMut(u64, u64, &'a [u8]) -> Result<(), ImageError>| {
        each_checked(file, kind, &framed, limits, total, memory, repeated, f)
    };
    if framed.count >= PARALLEL_ENTRIES && cores() >= 2 {
        // every entry checked first, then the two halves decoded side by side
        let mut entries = Vec::with_capacity(count);
        walk(&mut |_, offset, payload| {
            entries.push((offset, payload));
            Ok(())
        })?;
        let half = entries.len() / 2;
        let part = |from: usize, list: &[(u64, &'a [u8])]| -> Result<Vec<M>, ImageError> {
            // the first half's list takes the second's after it
            let mut out = Vec::with_capacity(if from == 0 { count } else { list.len() });
            for (i, &(offset, payload)) in list.iter().enumerate() {
                out.push(decode((from + i) as u64, offset, payload)?);
            }
            Ok(out)
        };
        let (first, second) = entries.split_at(half);
        return std::thread::scope(|s| {
            let later = std::thread::Builder::new()
                .name("crhook-decode".into())
                .spawn_scoped(s, || part(half, second));
            let mut out = part(0, first)?;
            match later {
                Ok(h) => out.extend(h.join().map_err(|_| ImageError::Corrupt {
                    file: file.to_path_buf(),
                    offset: 0,
                    what: "the thread decoding its second half panicked".into(),
                })??),
                // no thread to be had: this one decodes the second half too
                Err(_) => out.extend(part(half, second)?),
            }
            Ok(out)
        });
    }
    let mut out = Vec::with_capacity(count);
    walk(&mut |index, offset, payload| {
        out.push(decode(index, offset, payload)?);
        Ok(())
    })?;
    Ok(out)
}

/// Walks the entries of `framed`, checking each against the kind's schema and the budgets
/// (`memory` and `repeated` are what is already counted), then hands it to `f`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn each_checked<'a>(
    file: &Path,
    kind: Kind,
    framed: &frame::Framed<'a>,
    limits: &Limits,
    total: &Budget,
    mut memory: u64,
    mut repeated: u64,
    mut f: impl FnMut(u64, u64, &'a [u8]) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let schema = crhook_proto::schema::message(kind.info().message);
    // charged to the shared budget in steps (see CHARGE_STEP), the rest after the last entry
    let (mut pending, mut last) = (0u64, 0u64);
    let charge = |n: u64, offset: u64| {
        total
            .charge(n)
            .map_err(|t| over(file, offset, "image memory", t, total.limit()))
    };
    framed.for_each(|index, offset, payload| {
        last = offset;
        if let Some(schema) = schema {
            let fp = budget::footprint(schema, payload).map_err(|r| ImageError::Corrupt {
                file: file.to_path_buf(),
                offset,
                what: format!("entry {index}: {}", refused(r)),
            })?;
            repeated = repeated.saturating_add(fp.repeated);
            if repeated > limits.max_repeated {
                return Err(over(
                    file,
                    offset,
                    "repeated elements",
                    repeated,
                    limits.max_repeated,
                ));
            }
            memory = memory.saturating_add(fp.heap);
            if memory > limits.max_file_memory {
                return Err(over(
                    file,
                    offset,
                    "decoded memory",
                    memory,
                    limits.max_file_memory,
                ));
            }
            pending = pending.saturating_add(fp.heap);
            if pending >= CHARGE_STEP {
                charge(std::mem::take(&mut pending), offset)?;
            }
        }
        f(index, offset, payload)
    })?;
    charge(pending, last)
}

/// What one reader decodes before it charges the image's shared budget: restore reads three
/// files at once, and a charge per entry (240,000 at L) kept the budget's counter moving
/// between the cores, a third of the entries' walk. A file's own limit is still checked at
/// every entry; the image's total may be passed by this much per reading thread before it is
/// refused.
const CHARGE_STEP: u64 = 1 << 20;

fn refused(r: budget::Refused) -> &'static str {
    match r {
        budget::Refused::Group => "protobuf groups, which crhook never writes",
        budget::Refused::TooDeep => "messages nested deeper than any crhook message",
    }
}

/// Decodes a file of raw payloads, borrowing them from `bytes`.
pub fn decode_raw_file<'a>(
    name_for_errors: &'a Path,
    kind: Kind,
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<Vec<&'a [u8]>, ImageError> {
    let framed = frame::parse(name_for_errors, bytes, Some(kind), limits)?;
    let slices = framed
        .count
        .saturating_mul(std::mem::size_of::<&[u8]>() as u64);
    let memory = (bytes.len() as u64).saturating_add(slices);
    if memory > limits.max_file_memory {
        let at = (bytes.len() - crate::format::TRAILER_LEN + 4) as u64;
        return Err(over(
            name_for_errors,
            at,
            "decoded memory",
            memory,
            limits.max_file_memory,
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(framed.count).unwrap_or(0));
    framed.for_each(|_, _, payload| {
        out.push(payload);
        Ok(())
    })?;
    Ok(out)
}

/// Checks framing only (header, trailer, checksum, every entry length, count) and returns the
/// entry count. Cheap: does not decode protobuf.
pub fn verify_framing(
    name_for_errors: &Path,
    kind: Kind,
    bytes: &[u8],
    limits: &Limits,
) -> Result<u64, ImageError> {
    verify_framing_known(name_for_errors, kind, bytes, limits, None)
}

/// [`verify_framing`], with the body's crc32c when already computed (see [`frame::parse_known`]).
pub(crate) fn verify_framing_known(
    name_for_errors: &Path,
    kind: Kind,
    bytes: &[u8],
    limits: &Limits,
    crc: Option<u32>,
) -> Result<u64, ImageError> {
    let framed = frame::parse_known(name_for_errors, bytes, Some(kind), limits, crc)?;
    framed.for_each(|_, _, _| Ok(()))?;
    Ok(framed.count)
}

/// The kind a file's name says it holds; an error when the name is not a kind's file name.
pub fn kind_of_name(path: &Path) -> Option<Kind> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(Kind::from_file_name)
}

fn check_name(op: &'static str, path: &Path, kind: Kind) -> Result<(), ImageError> {
    match kind_of_name(path) {
        Some(k) if k == kind => Ok(()),
        Some(k) => Err(ImageError::Usage {
            op,
            file: path.to_path_buf(),
            what: format!(
                "named for {k}, but {kind} was requested (a {kind} image is named {})",
                kind.file_name()
            ),
        }),
        None => Err(ImageError::Usage {
            op,
            file: path.to_path_buf(),
            what: format!("a {kind} image must be named {}", kind.file_name()),
        }),
    }
}

/// Reads a whole file, refusing anything but a regular file (never following a symlink, never
/// blocking on a FIFO) and one over `max_file` before allocating. The directory part of `path`
/// is the operator's and is followed; the file itself is opened as within an image directory.
pub fn read_bytes(path: &Path, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    let (dir, name) = parent_and_name("read", path)?;
    let dir = safefs::open_dir(&dir).map_err(|e| ImageError::io("open directory", &dir, e))?;
    read_at(dir.as_fd(), name, path, limits, None)
}

/// Reads `name` in the open directory `dir` (`shown` names it in errors): opened beneath
/// `dir` without following symlinks, `fstat`ed, and refused unless a regular file no larger
/// than `max_file` (and of `expect` bytes, when the inventory says), all before reading a byte.
pub(crate) fn read_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    limits: &Limits,
    expect: Option<u64>,
) -> Result<Vec<u8>, ImageError> {
    let unsafe_file = |what: String| ImageError::Unsafe {
        op: "open",
        file: shown.to_path_buf(),
        what,
    };
    let f = safefs::open_beneath(dir, name).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => unsafe_file("is a symlink; image files are never followed".into()),
        Some(libc::EXDEV) => unsafe_file("resolves outside the image directory".into()),
        _ => ImageError::io("open", shown, e),
    })?;
    let meta = f.metadata().map_err(|e| ImageError::io("stat", shown, e))?;
    if !meta.is_file() {
        return Err(unsafe_file(format!(
            "is a {}, not a regular file; refusing it",
            safefs::type_name(meta.file_type())
        )));
    }
    let size = meta.len();
    if let Some(want) = expect.filter(|&w| w != size) {
        return Err(ImageError::Inventory {
            file: shown.to_path_buf(),
            what: format!("size {size} bytes does not match inventory ({want} bytes)"),
        });
    }
    if size > limits.max_file {
        return Err(over(shown, 0, "file size", size, limits.max_file));
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    populate(&mut buf);
    // take() bounds a file that grows while being read
    f.take(size.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::io("read", shown, e))?;
    if buf.len() as u64 != size {
        return Err(ImageError::Corrupt {
            file: shown.to_path_buf(),
            offset: buf.len() as u64,
            what: format!("file changed size while being read (was {size} bytes)"),
        });
    }
    Ok(buf)
}

/// Buffers at least this big are populated before the file is read into them.
const POPULATE_FROM: usize = 1 << 20;

/// Asks the kernel to back the spare capacity of `buf` with pages in one call
/// (`MADV_POPULATE_WRITE`, Linux 5.14), rather than one fault per page as the read's copy
/// first touches them: at L the read took ~8,000 such faults. Where the kernel lacks it the
/// read faults the pages in as before.
fn populate(buf: &mut Vec<u8>) {
    let spare = buf.spare_capacity_mut();
    if spare.len() < POPULATE_FROM {
        return;
    }
    let page = 4096;
    let start = spare.as_mut_ptr() as usize;
    let first = start.next_multiple_of(page);
    let end = (start + spare.len()) / page * page;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies within the spare capacity of `buf`, an allocation this
    // function holds mutably; MADV_POPULATE_WRITE only makes its pages present (anonymous
    // memory is zero-filled, content the spare capacity never promised), it maps, unmaps and
    // frees nothing.
    let r = unsafe {
        libc::madvise(
            first as *mut libc::c_void,
            end - first,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if r != 0 {
        tracing::trace!("MADV_POPULATE_WRITE: {}", std::io::Error::last_os_error());
    }
}

/// Reads and decodes `path`, which must be named for `kind` ("links.img") and hold it.
pub fn read_file<M: prost::Message + Default>(
    path: &Path,
    kind: Kind,
) -> Result<Vec<M>, ImageError> {
    read_file_with_limits(path, kind, &Limits::default())
}

/// [`read_file`] with explicit limits.
pub fn read_file_with_limits<M: prost::Message + Default>(
    path: &Path,
    kind: Kind,
    limits: &Limits,
) -> Result<Vec<M>, ImageError> {
    check_name("read", path, kind)?;
    let bytes = read_bytes(path, limits)?;
    decode_file(path, kind, &bytes, limits)
}

/// Encodes `entries` and writes them to `path` (named for `kind`) atomically; returns the
/// bytes written.
pub fn write_file<M: prost::Message>(
    path: &Path,
    kind: Kind,
    entries: &[M],
) -> Result<u64, ImageError> {
    write_file_with(path, kind, entries, true)
}

/// [`write_file`] without the fsyncs, for a record whose loss in a crash costs nothing (the
/// stats a restore leaves beside the image it read): readers still see the old file or the
/// whole new one, and the caller does not wait for the disk (1-3 ms).
pub fn write_file_unsynced<M: prost::Message>(
    path: &Path,
    kind: Kind,
    entries: &[M],
) -> Result<u64, ImageError> {
    write_file_with(path, kind, entries, false)
}

/// [`write_file`], with the fsyncs only when `sync`.
fn write_file_with<M: prost::Message>(
    path: &Path,
    kind: Kind,
    entries: &[M],
    sync: bool,
) -> Result<u64, ImageError> {
    check_name("write", path, kind)?;
    let bytes = try_encode_file(path, kind, entries)?;
    place::write_bytes_renamed(path, &bytes, sync)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crhook_proto::{Link, Sysctl};

    fn links() -> Vec<Link> {
        vec![
            Link {
                ifindex: 1,
                name: "lo".into(),
                mtu: 65536,
                ..Default::default()
            },
            Link {
                ifindex: 2,
                name: "eth0".into(),
                kind: "veth".into(),
                mac: vec![2, 0, 0, 0, 0, 1],
                ..Default::default()
            },
        ]
    }

    #[test]
    fn encode_decode_round_trip() -> Result<(), ImageError> {
        let b = encode_file(Kind::Links, &links());
        let back: Vec<Link> =
            decode_file(Path::new("links.img"), Kind::Links, &b, &Limits::default())?;
        assert_eq!(back, links());
        assert_eq!(
            verify_framing(Path::new("links.img"), Kind::Links, &b, &Limits::default())?,
            2
        );
        Ok(())
    }

    #[test]
    fn raw_round_trip() -> Result<(), ImageError> {
        let b = encode_raw_file(Kind::Firewall, &[b"*filter\nCOMMIT\n", b""]);
        let back = decode_raw_file(Path::new("f"), Kind::Firewall, &b, &Limits::default())?;
        assert_eq!(back, vec![&b"*filter\nCOMMIT\n"[..], &b""[..]]);
        Ok(())
    }

    #[test]
    fn decode_refuses_another_kind() {
        let b = encode_file(Kind::Links, &links());
        let r: Result<Vec<Sysctl>, _> = decode_file(
            Path::new("sysctls.img"),
            Kind::Sysctls,
            &b,
            &Limits::default(),
        );
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.starts_with("read sysctls.img: offset 4: file holds links"),
            "{msg}"
        );
    }

    #[test]
    fn write_then_read() -> Result<(), ImageError> {
        let dir = std::env::temp_dir().join(format!("crhook-core-file-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("links.img");
        let n = write_file(&path, Kind::Links, &links())?;
        assert_eq!(n, std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
        let back: Vec<Link> = read_file(&path, Kind::Links)?;
        assert_eq!(back, links());
        let wrong = write_file(&dir.join("routes.img"), Kind::Links, &links());
        assert!(wrong.is_err());
        let leftovers = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 1);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    fn sysctls(n: usize) -> Vec<Sysctl> {
        (0..n)
            .map(|i| Sysctl {
                path: vec![
                    "ipv4".into(),
                    "conf".into(),
                    format!("d{i}"),
                    "forwarding".into(),
                ],
                value: (i % 2).to_string(),
            })
            .collect()
    }

    /// A file of more than PARALLEL_ENTRIES entries decodes on two threads: every entry in
    /// order, from a slice or from shared bytes.
    #[test]
    fn many_entries_decode_whole_and_in_order() {
        let want = sysctls(PARALLEL_ENTRIES as usize * 2 + 1);
        let b = encode_file(Kind::Sysctls, &want);
        let p = Path::new("sysctls.img");
        let lim = Limits::default();
        let got: Vec<Sysctl> = decode_file(p, Kind::Sysctls, &b, &lim).unwrap_or_default();
        assert_eq!(got, want);
        let shared = prost::bytes::Bytes::from(b);
        let budget = Budget::new(lim.max_total_memory);
        let got: Vec<Sysctl> =
            decode_budgeted_shared(p, Kind::Sysctls, &shared, &lim, &budget, None)
                .unwrap_or_default();
        assert_eq!(got, want);
    }

    /// The shared budget is charged in steps, yet after a file it holds every entry's
    /// footprint and the structs, as a charge per entry would; a file whose footprint passes
    /// the total is refused even when no entry nears a step.
    #[test]
    fn the_shared_budget_is_charged_whole_in_steps() {
        let want = sysctls(50_000);
        let b = encode_file(Kind::Sysctls, &want);
        let p = Path::new("sysctls.img");
        let lim = Limits::default();
        let schema = crhook_proto::schema::message("crhook.Sysctl").expect("schema");
        let heap: u64 = want
            .iter()
            .map(|s| {
                budget::footprint(schema, &prost::Message::encode_to_vec(s)).map_or(0, |f| f.heap)
            })
            .sum();
        assert!(
            heap > 2 * CHARGE_STEP,
            "the file spans several steps: {heap}"
        );
        let structs = want.len() as u64 * std::mem::size_of::<Sysctl>() as u64 + 16;
        let budget = Budget::new(lim.max_total_memory);
        let got: Vec<Sysctl> =
            decode_budgeted(p, Kind::Sysctls, &b, &lim, &budget).unwrap_or_default();
        assert_eq!(got.len(), want.len());
        assert_eq!(budget.used(), heap + structs);
        // every step but the last fits: the rest is refused after the last entry
        let budget = Budget::new(structs + heap - 1);
        let e = decode_budgeted::<Sysctl>(p, Kind::Sysctls, &b, &lim, &budget)
            .expect_err("over the total");
        assert!(e.to_string().contains("image memory"), "{e}");
        assert!(budget.used() <= budget.limit());
    }

    /// An entry that fails to decode in the second half (a string that is not UTF-8, which
    /// the checks before decoding do not look at) is named by its own index and offset.
    #[test]
    fn a_bad_entry_of_the_second_half_is_named_by_its_index() {
        let n = PARALLEL_ENTRIES as usize * 2;
        let good: Vec<Vec<u8>> = sysctls(n)
            .iter()
            .map(prost::Message::encode_to_vec)
            .collect();
        let bad_at = n - 7;
        let mut raw: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
        let bad = [0x0a_u8, 0x02, 0xff, 0xfe];
        raw[bad_at] = &bad;
        let b = encode_raw_file(Kind::Sysctls, &raw);
        let r: Result<Vec<Sysctl>, _> = decode_file(
            Path::new("sysctls.img"),
            Kind::Sysctls,
            &b,
            &Limits::default(),
        );
        match r {
            Err(ImageError::Decode { index, offset, .. }) => {
                assert_eq!(index, bad_at as u64);
                // the frame's payload starts 4 bytes after its length
                let at = b
                    .windows(bad.len())
                    .position(|w| w == bad)
                    .unwrap_or_default() as u64;
                assert!(
                    offset == at || offset + 4 == at,
                    "offset {offset}, entry at {at}"
                );
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}
