//! One framed image file: typed encode and decode of its entries, and reading and writing it
//! on disk (write to a temporary name, fsync, rename, fsync the directory, so a crash leaves
//! either the old file or the new one, never half of one).
//!
//! This module does not know about image directories or inventories (dir.rs does).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::format::Limits;
use crate::frame::{self, Encoder};
use crate::magic::Kind;

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
/// Checks, in order: size limit, magics, version, trailer, checksum, count limit, each entry's
/// length (against the limit and the bytes left), each message, the count.
pub fn decode_file<M: prost::Message + Default>(
    name_for_errors: &Path,
    kind: Kind,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<M>, ImageError> {
    let framed = frame::parse(name_for_errors, bytes, Some(kind), limits)?;
    // The count is checked against the bytes present, but a million tiny entries may still
    // decode into large structs: grow as entries actually decode rather than trusting it.
    let mut out = Vec::with_capacity(usize::try_from(framed.count.min(1024)).unwrap_or(0));
    let message = kind.info().message;
    framed.for_each(|index, offset, payload| {
        let m = M::decode(payload).map_err(|source| ImageError::Decode {
            file: name_for_errors.to_path_buf(),
            offset,
            index,
            message,
            source,
        })?;
        out.push(m);
        Ok(())
    })?;
    Ok(out)
}

/// Decodes a file of raw payloads, borrowing them from `bytes`.
pub fn decode_raw_file<'a>(
    name_for_errors: &'a Path,
    kind: Kind,
    bytes: &'a [u8],
    limits: &Limits,
) -> Result<Vec<&'a [u8]>, ImageError> {
    let framed = frame::parse(name_for_errors, bytes, Some(kind), limits)?;
    let mut out = Vec::new();
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
    let framed = frame::parse(name_for_errors, bytes, Some(kind), limits)?;
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

/// Reads a whole file, refusing one over `max_file` before allocating.
pub fn read_bytes(path: &Path, limits: &Limits) -> Result<Vec<u8>, ImageError> {
    let f = File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let size = f
        .metadata()
        .map_err(|e| ImageError::io("stat", path, e))?
        .len();
    if size > limits.max_file {
        return Err(ImageError::Limit {
            file: path.to_path_buf(),
            offset: 0,
            what: "file size",
            value: size,
            limit: limits.max_file,
        });
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // take() bounds a file that grows while being read.
    f.take(limits.max_file.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| ImageError::io("read", path, e))?;
    Ok(buf)
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
    check_name("write", path, kind)?;
    let bytes = try_encode_file(path, kind, entries)?;
    write_bytes_atomic(path, &bytes)?;
    Ok(bytes.len() as u64)
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to a temporary sibling, fsyncs it, renames it over `path`, fsyncs the
/// directory. Files are created 0600: images may hold firewall rules and addresses.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = tmp_sibling(path);
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| ImageError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| ImageError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| ImageError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| ImageError::io("rename into place", path, e))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
        return res;
    }
    sync_parent(path)
}

/// Writes `bytes` to a new file (which must not exist) and fsyncs it; for files inside a
/// directory that is itself renamed into place.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    write_new_unsynced(path, bytes)?
        .sync_all()
        .map_err(|e| ImageError::io("fsync", path, e))
}

/// Writes `bytes` to a new file (which must not exist) and returns it open, for the caller
/// to fsync before it relies on the contents.
pub(crate) fn write_new_unsynced(path: &Path, bytes: &[u8]) -> Result<File, ImageError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ImageError::io("create", path, e))?;
    f.write_all(bytes)
        .map_err(|e| ImageError::io("write", path, e))?;
    Ok(f)
}

/// fsyncs a directory, so the names created or renamed in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("fsync directory", dir, e))
}

fn sync_parent(path: &Path) -> Result<(), ImageError> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => sync_dir(d),
        _ => sync_dir(Path::new(".")),
    }
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
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("links.img");
        let n = write_file(&path, Kind::Links, &links())?;
        assert_eq!(n, fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
        let back: Vec<Link> = read_file(&path, Kind::Links)?;
        assert_eq!(back, links());
        let wrong = write_file(&dir.join("routes.img"), Kind::Links, &links());
        assert!(wrong.is_err());
        let leftovers = fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftovers, 1);
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }
}
