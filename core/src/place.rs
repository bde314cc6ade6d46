//! Putting a file in place on disk: written under a random temporary name beside it, created
//! with `O_EXCL`, fsynced, renamed over the old name and the directory fsynced, all relative to
//! one descriptor of the directory, so a crash leaves either the old file or the new one, and
//! nothing planted there is followed or truncated.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::safefs;

/// The directory `path` is in and its name there; an error when it names no file.
pub(crate) fn parent_and_name<'a>(
    op: &'static str,
    path: &'a Path,
) -> Result<(PathBuf, &'a OsStr), ImageError> {
    let name = path
        .file_name()
        .filter(|n| safefs::one_component(n))
        .ok_or_else(|| ImageError::Usage {
            op,
            file: path.to_path_buf(),
            what: "does not name a file".into(),
        })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

/// Writes `bytes` to a new file under a random temporary name beside `path` (created with
/// `O_EXCL`, so nothing planted there is followed or truncated), fsyncs it, renames it over
/// `path` and fsyncs the directory, all relative to one descriptor of the directory. Files are
/// created 0600: images may hold firewall rules and addresses.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    write_bytes_renamed(path, bytes, true)
}

/// [`write_bytes_atomic`], with the fsyncs only when `sync`.
pub(crate) fn write_bytes_renamed(path: &Path, bytes: &[u8], sync: bool) -> Result<(), ImageError> {
    let (dir_path, name) = parent_and_name("write", path)?;
    let dir =
        safefs::open_dir(&dir_path).map_err(|e| ImageError::io("open directory", &dir_path, e))?;
    let (tmp, mut f) = create_temp(dir.as_fd(), name, path)?;
    let res = (|| {
        f.write_all(bytes)
            .map_err(|e| ImageError::io("write", path, e))?;
        if sync {
            f.sync_all().map_err(|e| ImageError::io("fsync", path, e))?;
        }
        safefs::rename_at(dir.as_fd(), &tmp, name, 0)
            .map_err(|e| ImageError::io("rename into place", path, e))
    })();
    if res.is_err() {
        let _ = safefs::unlink_at(dir.as_fd(), &tmp, 0);
        return res;
    }
    if !sync {
        return Ok(());
    }
    dir.sync_all()
        .map_err(|e| ImageError::io("fsync directory", &dir_path, e))
}

/// Creates `.NAME.tmp-RANDOM` in `dir` with `O_EXCL` (a few tries: a name taken by chance is
/// a name nobody predicted). Its shape is one `ImageWriter` recognises as crhook's own.
pub(crate) fn create_temp(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<(OsString, File), ImageError> {
    let mut last = None;
    for _ in 0..4 {
        let r = safefs::random_name().map_err(|e| ImageError::io("getrandom", shown, e))?;
        let mut tmp = OsString::from(".");
        tmp.push(name);
        tmp.push(".tmp-");
        tmp.push(r);
        match safefs::create_excl(dir, &tmp, 0o600) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => last = Some(e),
            Err(e) => return Err(ImageError::io("create", shown, e)),
        }
    }
    let e = last.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::EEXIST));
    Err(ImageError::io("create temporary file beside", shown, e))
}

/// Writes `bytes` to a new file `name` in `dir` (which must not exist) and returns it open,
/// for the caller to fsync before it relies on the contents.
pub(crate) fn write_new_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    bytes: &[u8],
) -> Result<File, ImageError> {
    let mut f =
        safefs::create_excl(dir, name, 0o600).map_err(|e| ImageError::io("create", shown, e))?;
    f.write_all(bytes)
        .map_err(|e| ImageError::io("write", shown, e))?;
    Ok(f)
}
