//! `ImageWriter`: writes an image directory so that a crash at any moment leaves either the
//! previous directory or the complete new one at the final path, never a partial image.
//!
//! Files go into a hidden sibling directory (same filesystem, so the final rename is atomic),
//! fsynced together by `finish`, which then writes `inventory.img`, fsyncs the directory and
//! renames it into place. An existing image directory is swapped out with
//! `renameat2(RENAME_EXCHANGE)` (one atomic step), falling back to rename-aside-then-in on
//! filesystems without it (EINVAL). A directory holding anything that is not a crhook image is
//! refused and left untouched: crhook never deletes what it did not write.
//!
//! Dropping a writer before `finish` removes its temporary directory.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crhook_proto::{Inventory, InventoryFile, NamespaceIdentity};

use crate::error::ImageError;
use crate::file::{sync_dir, try_encode_file, write_new};
use crate::format::FORMAT_VERSION;
use crate::frame::Encoder;
use crate::magic::Kind;

/// What is at the final path before the writer replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    Absent,
    Empty,
    Image,
}

/// Writes one image directory; see the module docs for the crash-safety contract.
#[derive(Debug)]
pub struct ImageWriter {
    final_dir: PathBuf,
    tmp: PathBuf,
    files: BTreeMap<Kind, InventoryFile>,
    bytes: u64,
    capture_time: SystemTime,
    finished: bool,
    /// files written and not yet fsynced (`finish` syncs them together)
    unsynced: Vec<(PathBuf, fs::File)>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn dir_err(op: &'static str, dir: &Path, what: impl Into<String>) -> ImageError {
    ImageError::Directory {
        op,
        dir: dir.to_path_buf(),
        what: what.into(),
    }
}

/// True for names crhook itself leaves in an image directory: kind files and the temporary
/// names `write_file` uses while replacing one.
fn is_crhook_name(name: &str) -> bool {
    if Kind::from_file_name(name).is_some() {
        return true;
    }
    name.strip_prefix('.')
        .and_then(|rest| rest.split_once(".tmp-"))
        .is_some_and(|(file, _)| Kind::from_file_name(file).is_some())
}

/// Classifies what is at `dir`; refuses anything crhook must not replace.
fn existing(op: &'static str, dir: &Path) -> Result<Existing, ImageError> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Existing::Absent),
        Err(e) => return Err(ImageError::io("stat", dir, e)),
    };
    if !meta.is_dir() {
        return Err(dir_err(
            op,
            dir,
            "exists and is not a directory (symlinks are not followed); refusing to replace it",
        ));
    }
    let mut has_inventory = false;
    let mut any = false;
    for entry in fs::read_dir(dir).map_err(|e| ImageError::io("list", dir, e))? {
        let entry = entry.map_err(|e| ImageError::io("list", dir, e))?;
        any = true;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !is_crhook_name(&name) {
            return Err(dir_err(
                op,
                dir,
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
            dir,
            "holds image files but no inventory.img (an unfinished image from another tool?); refusing to replace it",
        )),
    }
}

impl ImageWriter {
    /// Starts an image that will appear at `final_dir` on [`finish`](Self::finish). Refuses at
    /// once (touching nothing) when `final_dir` exists and is not a crhook image or empty.
    pub fn create(final_dir: &Path) -> Result<Self, ImageError> {
        let Some(name) = final_dir.file_name() else {
            return Err(dir_err(
                "create image",
                final_dir,
                "has no final component to name the image directory",
            ));
        };
        existing("create image", final_dir)?;
        let parent = match final_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(|e| ImageError::io("create directory", &parent, e))?;
        let prefix = format!(".{}.crhook-new-", name.to_string_lossy());
        remove_stale(&parent, &prefix);
        let tmp = parent.join(format!(
            "{prefix}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| ImageError::io("create directory", &tmp, e))?;
        Ok(ImageWriter {
            final_dir: final_dir.to_path_buf(),
            tmp,
            files: BTreeMap::new(),
            bytes: 0,
            capture_time: SystemTime::now(),
            finished: false,
            unsynced: Vec::new(),
        })
    }

    /// The directory the image will have once finished.
    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    /// The temporary directory being written.
    pub fn temp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Overrides the capture time recorded in the inventory (default: when `create` ran).
    pub fn set_capture_time(&mut self, t: SystemTime) {
        self.capture_time = t;
    }

    fn claim(&self, kind: Kind) -> Result<PathBuf, ImageError> {
        let path = self.tmp.join(kind.file_name());
        if kind == Kind::Inventory {
            return Err(ImageError::Usage {
                op: "write",
                file: path,
                what: "the inventory is written by finish(), not write()".into(),
            });
        }
        if self.files.contains_key(&kind) {
            return Err(ImageError::Usage {
                op: "write",
                file: path,
                what: format!("{kind} was already written to this image"),
            });
        }
        Ok(path)
    }

    fn record(
        &mut self,
        kind: Kind,
        path: &Path,
        bytes: &[u8],
        entries: u64,
    ) -> Result<(), ImageError> {
        let f = crate::file::write_new_unsynced(path, bytes)?;
        self.unsynced.push((path.to_path_buf(), f));
        let size = bytes.len() as u64;
        self.bytes += size;
        self.files.insert(
            kind,
            InventoryFile {
                name: kind.file_name().to_string(),
                kind: kind.name().to_string(),
                size,
                crc32c: crate::frame::body_crc(bytes),
                entries,
            },
        );
        Ok(())
    }

    /// Writes all entries of one kind (once per kind) and fsyncs the file.
    pub fn write<M: prost::Message>(
        &mut self,
        kind: Kind,
        entries: &[M],
    ) -> Result<(), ImageError> {
        let path = self.claim(kind)?;
        let bytes = try_encode_file(&path, kind, entries)?;
        self.record(kind, &path, &bytes, entries.len() as u64)
    }

    /// Writes raw payloads of one kind, framed like messages.
    pub fn write_raw(&mut self, kind: Kind, entries: &[&[u8]]) -> Result<(), ImageError> {
        let path = self.claim(kind)?;
        let mut e = Encoder::new(kind);
        for (i, b) in entries.iter().enumerate() {
            e.push_raw(b).map_err(|len| ImageError::EntryTooLarge {
                file: path.clone(),
                index: i as u64,
                len: len as u64,
                max: u64::from(crate::format::OVERSIZE_ENTRY - 1),
            })?;
        }
        self.record(kind, &path, &e.finish(), entries.len() as u64)
    }

    /// Bytes of image files written so far (the inventory is added by `finish`).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    fn inventory(&self, source: NamespaceIdentity, warnings: Vec<String>) -> Inventory {
        let since = self
            .capture_time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Inventory {
            format_major: u32::from(FORMAT_VERSION.0),
            format_minor: u32::from(FORMAT_VERSION.1),
            crhook_version: env!("CARGO_PKG_VERSION").to_string(),
            capture_time_sec: since.as_secs(),
            capture_time_nsec: since.subsec_nanos(),
            source: Some(source),
            files: self.files.values().cloned().collect(),
            warnings,
        }
    }

    /// Writes `inventory.img` last, fsyncs, and moves the directory to its final path,
    /// replacing a previous image there. Returns the final path.
    pub fn finish(
        mut self,
        source: NamespaceIdentity,
        warnings: Vec<String>,
    ) -> Result<PathBuf, ImageError> {
        // every file reaches the disk before the inventory that lists it; fsyncs issued
        // together share journal commits (one per file in a row cost ~1.2 ms each on ext4)
        let unsynced = std::mem::take(&mut self.unsynced);
        std::thread::scope(|s| {
            let handles: Vec<_> = unsynced
                .iter()
                .map(|(p, f)| (p, s.spawn(move || f.sync_all())))
                .collect();
            for (p, h) in handles {
                match h.join() {
                    Ok(r) => r.map_err(|e| ImageError::io("fsync", p, e))?,
                    Err(_) => {
                        return Err(ImageError::io(
                            "fsync",
                            p,
                            io::Error::other("fsync thread panicked"),
                        ))
                    }
                }
            }
            Ok(())
        })?;
        let inv_path = self.tmp.join(Kind::Inventory.file_name());
        let inv = self.inventory(source, warnings);
        let bytes = try_encode_file(&inv_path, Kind::Inventory, std::slice::from_ref(&inv))?;
        write_new(&inv_path, &bytes)?;
        self.bytes += bytes.len() as u64;
        sync_dir(&self.tmp)?;

        match existing("replace image", &self.final_dir)? {
            Existing::Absent | Existing::Empty => {
                // rename(2) replaces an empty directory atomically.
                fs::rename(&self.tmp, &self.final_dir)
                    .map_err(|e| ImageError::io("rename image into place", &self.final_dir, e))?;
                self.finished = true;
            }
            Existing::Image => self.swap_in()?,
        }
        let parent = self.tmp.parent().map(Path::to_path_buf).unwrap_or_default();
        sync_dir(&parent)?;
        Ok(self.final_dir.clone())
    }

    /// Replaces an existing image directory with the finished temporary one.
    fn swap_in(&mut self) -> Result<(), ImageError> {
        match exchange(&self.tmp, &self.final_dir) {
            Ok(()) => {
                // tmp now holds the old image.
                self.finished = true;
                fs::remove_dir_all(&self.tmp)
                    .map_err(|e| ImageError::io("remove previous image", &self.tmp, e))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                self.swap_in_by_renames()
            }
            Err(e) => Err(ImageError::io("swap image into place", &self.final_dir, e)),
        }
    }

    fn swap_in_by_renames(&mut self) -> Result<(), ImageError> {
        let mut aside = self.tmp.clone().into_os_string();
        aside.push(".old");
        let aside = PathBuf::from(aside);
        fs::rename(&self.final_dir, &aside)
            .map_err(|e| ImageError::io("move previous image aside", &self.final_dir, e))?;
        if let Err(e) = fs::rename(&self.tmp, &self.final_dir) {
            // Put the previous image back; the new one stays in tmp and Drop removes it.
            let _ = fs::rename(&aside, &self.final_dir);
            return Err(ImageError::io(
                "rename image into place",
                &self.final_dir,
                e,
            ));
        }
        self.finished = true;
        fs::remove_dir_all(&aside).map_err(|e| ImageError::io("remove previous image", &aside, e))
    }
}

/// Removes temporary directories a killed writer left beside the image: names
/// `PREFIX<pid>-<seq>[.old]` whose pid no longer runs (a live pid, or a name that does not
/// parse, is left alone). Best effort: failures only leave the leftovers in place.
fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let dead = !Path::new("/proc").join(pid.to_string()).exists();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if dead && is_dir && pid != std::process::id() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Atomically exchanges two paths (renameat2 with RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let cb = CString::new(b.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both pointers come from CStrings that live until the call returns; AT_FDCWD makes
    // the relative-path semantics those of rename(2); renameat2 does not retain the pointers.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crhook_names() {
        assert!(is_crhook_name("links.img"));
        assert!(is_crhook_name("stats-restore.img"));
        assert!(is_crhook_name(".stats-restore.img.tmp-42"));
        assert!(!is_crhook_name("notes.txt"));
        assert!(!is_crhook_name(".notes.tmp-1"));
        assert!(!is_crhook_name("links.img.bak"));
    }

    #[test]
    fn leftovers_of_dead_writers_are_removed() -> Result<(), ImageError> {
        let base = std::env::temp_dir().join(format!("crhook-core-stale-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        // pid 0x7fffffff is above pid_max, so never running.
        let dead = base.join(".img.crhook-new-2147483647-0");
        let live = base.join(format!(".img.crhook-new-{}-99", std::process::id()));
        let other = base.join(".other.crhook-new-2147483647-0");
        for d in [&dead, &live, &other] {
            fs::create_dir_all(d).map_err(|e| ImageError::io("mkdir", d, e))?;
        }
        let w = ImageWriter::create(&base.join("img"))?;
        w.finish(NamespaceIdentity::default(), vec![])?;
        let (d, l, o) = (dead.exists(), live.exists(), other.exists());
        let _ = fs::remove_dir_all(&base);
        assert!(!d, "stale temp dir of a dead pid removed");
        assert!(l && o, "live writer's and other images' temp dirs kept");
        Ok(())
    }

    /// The path taken where renameat2(RENAME_EXCHANGE) is unsupported.
    #[test]
    fn swap_by_renames_replaces_an_image() -> Result<(), ImageError> {
        let base = std::env::temp_dir().join(format!("crhook-core-swap-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let fin = base.join("img");
        let old = ImageWriter::create(&fin)?;
        old.finish(NamespaceIdentity::default(), vec!["old".into()])?;
        let mut w = ImageWriter::create(&fin)?;
        let inv = w.inventory(NamespaceIdentity::default(), vec!["new".into()]);
        let bytes = try_encode_file(&fin, Kind::Inventory, &[inv])?;
        write_new(&w.tmp.join(Kind::Inventory.file_name()), &bytes)?;
        w.swap_in_by_renames()?;
        let got = crate::ImageDir::open(&fin)?.inventory().warnings.clone();
        let left: Vec<_> = fs::read_dir(&base)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        let _ = fs::remove_dir_all(&base);
        assert_eq!(got, ["new"]);
        assert_eq!(left, ["img"]);
        Ok(())
    }
}
