//! Where an image directory goes: the parent it is written in (checked before anything is
//! written), what is at the final name already (replaced only if it is a crhook image or
//! empty), the temporary directory beside it, swapping the finished image in, and removing
//! what dead writers left. Everything is relative to one descriptor of the parent, so a
//! rename of the parent's path mid-way cannot redirect a write.
//!
//! Names beside the image `NAME`: `.NAME.crhook-init-R` (a temporary directory being
//! created), `.NAME.crhook-new-R` (a writer's temporary directory), `.NAME.crhook-old-R` (the
//! previous image moved aside where `RENAME_EXCHANGE` is missing); `R` is random. A writer
//! takes an exclusive `flock` on its directory before giving it its `-new-` name and holds it
//! until it is done; the lock dies with the process, in any pid namespace, so a later writer
//! removes exactly the directories it can lock (and `-init-` ones only when older than a
//! minute, since their creator may not have locked them yet).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::ImageError;
use crate::magic::Kind;
use crate::safefs;

/// What is at the final path before the writer replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
    Absent,
    Empty,
    Image,
}

pub(super) fn dir_err(op: &'static str, dir: &Path, what: impl Into<String>) -> ImageError {
    ImageError::Directory {
        op,
        dir: dir.to_path_buf(),
        what: what.into(),
    }
}

/// True for names crhook itself leaves in an image directory: kind files and the temporary
/// names `write_file` uses while replacing one.
pub(super) fn is_crhook_name(name: &str) -> bool {
    if Kind::from_file_name(name).is_some() {
        return true;
    }
    name.strip_prefix('.')
        .and_then(|rest| rest.split_once(".tmp-"))
        .is_some_and(|(file, _)| Kind::from_file_name(file).is_some())
}

/// Refuses a parent directory others could change under the writer: owned by another user
/// than root (or the one crhook runs as), writable by others, or by a group other than root's.
pub(super) fn check_parent(parent: &File, path: &Path) -> Result<(), ImageError> {
    let m = parent
        .metadata()
        .map_err(|e| ImageError::io("stat", path, e))?;
    let mode = m.mode() & 0o7777;
    let why = if m.uid() != 0 && m.uid() != safefs::euid() {
        format!("is owned by uid {}, not root", m.uid())
    } else if mode & 0o002 != 0 {
        format!("is writable by others (mode {mode:04o})")
    } else if mode & 0o020 != 0 && m.gid() != 0 {
        format!("is writable by group {} (mode {mode:04o})", m.gid())
    } else {
        return check_ancestors(parent, path);
    };
    Err(ImageError::Unsafe {
        op: "write image in",
        file: path.to_path_buf(),
        what: format!("{why}; images are written only where no one else can rename or plant files"),
    })
}

/// Refuses a parent some ancestor of which others may write without the sticky bit: they
/// could rename the whole subtree away and put their own in its place. A sticky directory
/// (`/tmp`) lets only an entry's owner rename it, so it is fine. Walked through `..` from the
/// parent's descriptor, so what is checked is where the image goes.
fn check_ancestors(parent: &File, path: &Path) -> Result<(), ImageError> {
    let mut cur = parent
        .try_clone()
        .map_err(|e| ImageError::io("open", path, e))?;
    let mut level = 0;
    loop {
        let up = safefs::open_parent(cur.as_fd())
            .map_err(|e| ImageError::io("open parent of", path, e))?;
        let (a, b) = (
            cur.metadata()
                .map_err(|e| ImageError::io("stat", path, e))?,
            up.metadata().map_err(|e| ImageError::io("stat", path, e))?,
        );
        // the root is its own parent
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) || level > 64 {
            return Ok(());
        }
        level += 1;
        let mode = b.mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        let open = mode & 0o002 != 0 || (mode & 0o020 != 0 && b.gid() != 0);
        if open && !sticky {
            return Err(ImageError::Unsafe {
                op: "write image in",
                file: path.to_path_buf(),
                what: format!(
                    "the directory {level} level(s) above it is writable by others without the sticky bit (mode {mode:04o}); they could move this one away"
                ),
            });
        }
        cur = up;
    }
}

/// Classifies what is at `name` in `parent`; refuses anything crhook must not replace.
pub(super) fn existing(
    op: &'static str,
    parent: &File,
    name: &OsStr,
    shown: &Path,
) -> Result<Existing, ImageError> {
    let dir = match safefs::open_dir_at(parent.as_fd(), name) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Existing::Absent),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            return Err(dir_err(
                op,
                shown,
                "exists and is not a directory (symlinks are not followed); refusing to replace it",
            ))
        }
        Err(e) => return Err(ImageError::io("open", shown, e)),
    };
    let mut has_inventory = false;
    let mut any = false;
    for name in safefs::list(dir.as_fd()).map_err(|e| ImageError::io("list", shown, e))? {
        any = true;
        let name = name.to_string_lossy();
        if !is_crhook_name(&name) {
            return Err(dir_err(
                op,
                shown,
                format!("holds {name:?}, which crhook did not write; refusing to replace a directory that is not a crhook image"),
            ));
        }
        has_inventory |= name == Kind::Inventory.file_name();
    }
    match (any, has_inventory) {
        (false, _) => Ok(Existing::Empty),
        (true, true) => Ok(Existing::Image),
        (true, false) => Err(dir_err(
            op,
            shown,
            "holds image files but no inventory.img (an unfinished image from another tool?); refusing to replace it",
        )),
    }
}

fn beside(name: &OsStr, what: &str, random: &str) -> OsString {
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".crhook-{what}-{random}"));
    s
}

fn random(shown: &Path) -> Result<String, ImageError> {
    safefs::random_name().map_err(|e| ImageError::io("getrandom", shown, e))
}

/// Creates the writer's temporary directory (0700) beside `name`, locked; returns its name
/// and the open, locked directory.
pub(super) fn make_temp(
    parent: &File,
    name: &OsStr,
    shown: &Path,
) -> Result<(OsString, File), ImageError> {
    let mut last = None;
    for _ in 0..4 {
        let r = random(shown)?;
        let init = beside(name, "init", &r);
        match safefs::mkdir_at(parent.as_fd(), &init, 0o700) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                last = Some(e);
                continue;
            }
            Err(e) => {
                return Err(ImageError::io(
                    "create temporary directory beside",
                    shown,
                    e,
                ))
            }
        }
        let new = beside(name, "new", &r);
        let locked = (|| {
            let d = safefs::open_dir_at(parent.as_fd(), &init)?;
            if !safefs::try_lock(d.as_fd())? {
                return Err(io::Error::from_raw_os_error(libc::EWOULDBLOCK));
            }
            safefs::rename_at(parent.as_fd(), &init, &new, libc::RENAME_NOREPLACE)?;
            Ok(d)
        })();
        match locked {
            Ok(d) => return Ok((new, d)),
            Err(e) => {
                let _ = safefs::remove_flat_dir_at(parent.as_fd(), &init);
                return Err(ImageError::io(
                    "create temporary directory beside",
                    shown,
                    e,
                ));
            }
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EEXIST));
    Err(ImageError::io(
        "create temporary directory beside",
        shown,
        e,
    ))
}

/// Removes what killed writers of `name` left in `parent`: directories with crhook's
/// temporary names that no live writer holds locked. Best effort: a failure only leaves the
/// leftover in place.
pub(super) fn remove_stale(parent: &File, name: &OsStr) {
    let Ok(entries) = safefs::list(parent.as_fd()) else {
        return;
    };
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".crhook-");
    let prefix = prefix.to_string_lossy().into_owned();
    for entry in entries {
        let Some(rest) = entry.to_str().and_then(|n| n.strip_prefix(prefix.as_str())) else {
            continue;
        };
        let young_init = rest.starts_with("init-");
        if !(young_init || rest.starts_with("new-") || rest.starts_with("old-")) {
            continue;
        }
        let Ok(d) = safefs::open_dir_at(parent.as_fd(), &entry) else {
            continue;
        };
        // a young -init- directory's creator may be about to lock it: do not contend
        if young_init && !older_than(&d, Duration::from_secs(60)) {
            continue;
        }
        if !safefs::try_lock(d.as_fd()).unwrap_or(false) {
            continue;
        }
        let _ = safefs::remove_flat_dir_at(parent.as_fd(), &entry);
    }
}

fn older_than(d: &File, age: Duration) -> bool {
    d.metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|a| a > age)
}

/// The previous image's new name when it is moved aside (no `RENAME_EXCHANGE`).
pub(super) fn aside_name(name: &OsStr, shown: &Path) -> Result<OsString, ImageError> {
    Ok(beside(name, "old", &random(shown)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crhook_names() {
        assert!(is_crhook_name("links.img"));
        assert!(is_crhook_name("seal.img"));
        assert!(is_crhook_name("stats-restore.img"));
        assert!(is_crhook_name(".stats-restore.img.tmp-42"));
        assert!(!is_crhook_name("notes.txt"));
        assert!(!is_crhook_name(".notes.tmp-1"));
        assert!(!is_crhook_name("links.img.bak"));
    }

    #[test]
    fn temp_names() {
        let n = beside(OsStr::new("img"), "new", "00ff");
        assert_eq!(n, ".img.crhook-new-00ff");
    }
}
