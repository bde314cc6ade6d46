//! `ImageWriter`: writes an image directory so that a crash at any moment leaves either the
//! previous directory or the complete new one at the final path, never a partial image.
//!
//! Files go into a hidden, locked sibling directory (same filesystem, so the final rename is
//! atomic; see place.rs for names, locks and what is refused), each checksummed, written and
//! fsynced on its own thread while the next is encoded (pending.rs). `finish` then writes
//! `inventory.img` (every file with its size, crc32c and SHA-256), seals it when the writer
//! holds a host key (`seal.img`, seal.rs), waits until all of it and the directory are on
//! disk, and renames the directory into place. Every step is relative to one descriptor of
//! the parent directory, which must not be writable by others. An existing image directory
//! is swapped out with `renameat2(RENAME_EXCHANGE)` (one atomic step), falling back to
//! rename-aside-then-in on filesystems without it (EINVAL). A directory holding anything
//! that is not a crhook image is refused and left untouched: crhook never deletes what it
//! did not write.
//!
//! Dropping a writer before `finish` removes its temporary directory.

mod pending;
mod place;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crhook_proto::{Inventory, InventoryFile, NamespaceIdentity, ParentImage};

use crate::error::ImageError;
use crate::file::try_encode_file;
use crate::format::{CHILD_FORMAT_VERSION, FORMAT_VERSION};
use crate::frame::Encoder;
use crate::magic::Kind;
use crate::place::write_new_at;
use crate::safefs;
use crate::seal::HostKey;
use pending::Pending;
use place::{dir_err, Existing};

/// Writes one image directory; see the module docs for the crash-safety contract.
#[derive(Debug)]
pub struct ImageWriter {
    final_dir: PathBuf,
    parent_path: PathBuf,
    parent: File,
    name: OsString,
    tmp_name: OsString,
    /// the temporary directory, locked for as long as this writer lives (shared with the
    /// threads writing its files)
    tmp: Arc<File>,
    files: BTreeMap<Kind, InventoryFile>,
    bytes: u64,
    capture_time: SystemTime,
    finished: bool,
    /// files being written and fsynced on their own threads (pending.rs); `finish` waits
    pending: Vec<(Kind, Pending)>,
    key: Option<HostKey>,
    /// a child image: its parent and the kinds read from it
    parent_image: Option<(ParentImage, Vec<Kind>)>,
}

impl ImageWriter {
    /// Starts an image that will appear at `final_dir` on [`finish`](Self::finish). Refuses at
    /// once (touching nothing) when `final_dir` exists and is not a crhook image or empty, or
    /// when its parent is writable by others.
    pub fn create(final_dir: &Path) -> Result<Self, ImageError> {
        let Some(name) = final_dir.file_name().filter(|n| safefs::one_component(n)) else {
            return Err(dir_err(
                "create image",
                final_dir,
                "has no final component to name the image directory",
            ));
        };
        let parent_path = match final_dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent_path)
            .map_err(|e| ImageError::io("create directory", &parent_path, e))?;
        let parent = safefs::open_dir(&parent_path)
            .map_err(|e| ImageError::io("open directory", &parent_path, e))?;
        place::check_parent(&parent, &parent_path)?;
        place::existing("create image", &parent, name, final_dir)?;
        place::remove_stale(&parent, name);
        let (tmp_name, tmp) = place::make_temp(&parent, name, final_dir)?;
        Ok(ImageWriter {
            final_dir: final_dir.to_path_buf(),
            parent_path,
            parent,
            name: name.to_os_string(),
            tmp_name,
            tmp: Arc::new(tmp),
            files: BTreeMap::new(),
            bytes: 0,
            capture_time: SystemTime::now(),
            finished: false,
            pending: Vec::new(),
            key: None,
            parent_image: None,
        })
    }

    /// Seals the image with `key` when it is finished.
    pub fn set_key(&mut self, key: HostKey) {
        self.key = Some(key);
    }

    /// Makes this a child image of `parent` (its path relative to the new image's directory
    /// and the SHA-256 of its inventory): `from_parent` are the kinds a reader takes from the
    /// parent chain instead of from files of this image, which are then not written here.
    /// The inventory gets [`CHILD_FORMAT_VERSION`], so readers that know no parents refuse it.
    pub fn set_parent(&mut self, parent: ParentImage, from_parent: Vec<Kind>) {
        self.parent_image = Some((parent, from_parent));
    }

    /// The directory the image will have once finished.
    pub fn final_dir(&self) -> &Path {
        &self.final_dir
    }

    /// The temporary directory being written.
    pub fn temp_dir(&self) -> PathBuf {
        self.parent_path.join(&self.tmp_name)
    }

    /// Overrides the capture time recorded in the inventory (default: when `create` ran).
    pub fn set_capture_time(&mut self, t: SystemTime) {
        self.capture_time = t;
    }

    fn claim(&self, kind: Kind) -> Result<PathBuf, ImageError> {
        let path = self.temp_dir().join(kind.file_name());
        if matches!(kind, Kind::Inventory | Kind::Seal) {
            return Err(ImageError::Usage {
                op: "write",
                file: path,
                what: format!("the {kind} is written by finish(), not write()"),
            });
        }
        let inherited = self
            .parent_image
            .as_ref()
            .is_some_and(|(_, kinds)| kinds.contains(&kind));
        if inherited {
            return Err(ImageError::Usage {
                op: "write",
                file: path,
                what: format!("{kind} is read from the parent image, not written to the child"),
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

    /// Starts writing the file (checksums, write and fsync on its own thread, pending.rs);
    /// its checksums join its inventory entry in `finish`, and so does any error.
    fn record(&mut self, kind: Kind, path: PathBuf, bytes: Vec<u8>, entries: u64) {
        let size = bytes.len() as u64;
        self.bytes += size;
        self.files.insert(
            kind,
            InventoryFile {
                name: kind.file_name().to_string(),
                kind: kind.name().to_string(),
                size,
                crc32c: 0,
                entries,
                sha256: Vec::new(),
            },
        );
        let p = Pending::start(Arc::clone(&self.tmp), kind.file_name(), path, bytes);
        self.pending.push((kind, p));
    }

    /// Encodes all entries of one kind (once per kind) and starts writing the file on a thread
    /// of its own; `finish` reports any error of that write and waits until it is on disk.
    pub fn write<M: prost::Message>(
        &mut self,
        kind: Kind,
        entries: &[M],
    ) -> Result<(), ImageError> {
        let path = self.claim(kind)?;
        let bytes = try_encode_file(&path, kind, entries)?;
        self.record(kind, path, bytes, entries.len() as u64);
        Ok(())
    }

    /// Writes a file of `kind` that a [`crate::frame::Encoder`] made (`entries` entries): a
    /// caller that encodes objects as it captures them holds the file, not the objects.
    pub fn write_encoded(
        &mut self,
        kind: Kind,
        bytes: Vec<u8>,
        entries: u64,
    ) -> Result<(), ImageError> {
        let path = self.claim(kind)?;
        let counted = crate::file::verify_framing(&path, kind, &bytes, &crate::Limits::DEFAULT)?;
        if counted != entries {
            return Err(ImageError::Usage {
                op: "write",
                file: path,
                what: format!("holds {counted} entries, the caller says {entries}"),
            });
        }
        self.record(kind, path, bytes, entries);
        Ok(())
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
        self.record(kind, path, e.finish(), entries.len() as u64);
        Ok(())
    }

    /// Bytes of image files written so far (the inventory and seal are added by `finish`).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    fn inventory(&self, source: NamespaceIdentity, warnings: Vec<String>) -> Inventory {
        let since = self
            .capture_time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let version = self.version();
        let (parent, from_parent) = match &self.parent_image {
            Some((p, kinds)) => (
                Some(p.clone()),
                kinds.iter().map(|k| k.name().to_string()).collect(),
            ),
            None => (None, Vec::new()),
        };
        Inventory {
            format_major: u32::from(version.0),
            format_minor: u32::from(version.1),
            crhook_version: env!("CARGO_PKG_VERSION").to_string(),
            capture_time_sec: since.as_secs(),
            capture_time_nsec: since.subsec_nanos(),
            source: Some(source),
            files: self.files.values().cloned().collect(),
            warnings,
            parent,
            from_parent,
        }
    }

    fn version(&self) -> (u16, u16) {
        if self.parent_image.is_some() {
            CHILD_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        }
    }

    /// Writes a file `finish` adds (inventory, seal); returns its bytes and the file, for
    /// `finish` to fsync.
    fn write_last<M: prost::Message>(
        &mut self,
        kind: Kind,
        m: &M,
    ) -> Result<(Vec<u8>, File), ImageError> {
        let path = self.temp_dir().join(kind.file_name());
        let bytes = if kind == Kind::Inventory {
            let mut e = Encoder::with_version(kind, self.version());
            e.push_message(m).map_err(|_| ImageError::Usage {
                op: "write",
                file: path.clone(),
                what: "inventory too large to frame".into(),
            })?;
            e.finish()
        } else {
            try_encode_file(&path, kind, std::slice::from_ref(m))?
        };
        let f = write_new_at(
            self.tmp.as_fd(),
            OsStr::new(kind.file_name()),
            &path,
            &bytes,
        )?;
        self.bytes += bytes.len() as u64;
        Ok((bytes, f))
    }

    /// Writes `inventory.img` last (then `seal.img` with a key), fsyncs, and moves the
    /// directory to its final path, replacing a previous image there. Returns the final path.
    pub fn finish(
        mut self,
        source: NamespaceIdentity,
        warnings: Vec<String>,
    ) -> Result<PathBuf, ImageError> {
        // The inventory is written once every file's checksums are known, and every file,
        // the inventory, the seal and the directory reach the disk before the rename that
        // makes the image appear (until then it is a hidden temporary directory, removed as
        // a leftover after a crash). The fsyncs run together, which overlaps their waits (one
        // per file in a row cost ~1.2 ms each on ext4); the files' started as each was
        // written (pending.rs).
        let mut pending = std::mem::take(&mut self.pending);
        for (kind, p) in &mut pending {
            let (crc, sha) = p.sums()?;
            if let Some(f) = self.files.get_mut(kind) {
                f.crc32c = crc;
                f.sha256 = sha.to_vec();
            }
        }
        let inv = self.inventory(source, warnings);
        let (inv_bytes, inv_file) = self.write_last(Kind::Inventory, &inv)?;
        let mut last = vec![(Kind::Inventory, inv_file)];
        if let Some(key) = self.key.take() {
            let (_, seal_file) = self.write_last(Kind::Seal, &key.seal(&inv_bytes))?;
            last.push((Kind::Seal, seal_file));
        }
        // the directory's fsync covers the entries of the files created so far: all of them
        for (_, p) in &mut pending {
            p.created()?;
        }
        let tmp_path = self.temp_dir();
        std::thread::scope(|s| {
            let handles: Vec<_> = last
                .iter()
                .map(|(kind, f)| (kind, s.spawn(move || f.sync_all())))
                .collect();
            let dir = self
                .tmp
                .sync_all()
                .map_err(|e| ImageError::io("fsync directory", &tmp_path, e));
            for (kind, h) in handles {
                let path = tmp_path.join(kind.file_name());
                match h.join() {
                    Ok(r) => r.map_err(|e| ImageError::io("fsync", &path, e))?,
                    Err(_) => {
                        return Err(ImageError::io(
                            "fsync",
                            &path,
                            io::Error::other("fsync thread panicked"),
                        ))
                    }
                }
            }
            dir
        })?;
        for (_, p) in pending {
            p.wait()?;
        }

        match place::existing("replace image", &self.parent, &self.name, &self.final_dir)? {
            Existing::Absent | Existing::Empty => {
                // rename(2) replaces an empty directory atomically.
                safefs::rename_at(self.parent.as_fd(), &self.tmp_name, &self.name, 0)
                    .map_err(|e| ImageError::io("rename image into place", &self.final_dir, e))?;
                self.finished = true;
            }
            Existing::Image => self.swap_in()?,
        }
        self.parent
            .sync_all()
            .map_err(|e| ImageError::io("fsync directory", &self.parent_path, e))?;
        Ok(self.final_dir.clone())
    }

    /// Replaces an existing image directory with the finished temporary one.
    fn swap_in(&mut self) -> Result<(), ImageError> {
        let parent = self.parent.as_fd();
        match safefs::rename_at(parent, &self.tmp_name, &self.name, libc::RENAME_EXCHANGE) {
            Ok(()) => {
                // the temporary name now holds the old image
                self.finished = true;
                safefs::remove_flat_dir_at(parent, &self.tmp_name)
                    .map_err(|e| ImageError::io("remove previous image", self.temp_dir(), e))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                self.swap_in_by_renames()
            }
            Err(e) => Err(ImageError::io("swap image into place", &self.final_dir, e)),
        }
    }

    fn swap_in_by_renames(&mut self) -> Result<(), ImageError> {
        let parent = self.parent.as_fd();
        let aside = place::aside_name(&self.name, &self.final_dir)?;
        let aside_path = self.parent_path.join(&aside);
        // locked while aside, so no other writer takes it for a dead one's leftover
        let old = safefs::open_dir_at(parent, &self.name)
            .map_err(|e| ImageError::io("open previous image", &self.final_dir, e))?;
        if !safefs::try_lock(old.as_fd()).map_err(|e| ImageError::io("lock", &self.final_dir, e))? {
            return Err(dir_err(
                "replace image",
                &self.final_dir,
                "another crhook is replacing it right now",
            ));
        }
        safefs::rename_at(parent, &self.name, &aside, libc::RENAME_NOREPLACE)
            .map_err(|e| ImageError::io("move previous image aside", &self.final_dir, e))?;
        if let Err(e) =
            safefs::rename_at(parent, &self.tmp_name, &self.name, libc::RENAME_NOREPLACE)
        {
            // Put the previous image back; the new one stays in tmp and Drop removes it.
            let _ = safefs::rename_at(parent, &aside, &self.name, libc::RENAME_NOREPLACE);
            return Err(ImageError::io(
                "rename image into place",
                &self.final_dir,
                e,
            ));
        }
        self.finished = true;
        safefs::remove_flat_dir_at(parent, &aside)
            .map_err(|e| ImageError::io("remove previous image", aside_path, e))
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        // nothing may still be writing into the directory removed below
        self.pending.clear();
        if !self.finished {
            let _ = safefs::remove_flat_dir_at(self.parent.as_fd(), &self.tmp_name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(tag: &str) -> Result<PathBuf, ImageError> {
        let r = safefs::random_name().map_err(|e| ImageError::io("getrandom", tag, e))?;
        let b = std::env::temp_dir().join(format!("crhook-core-{tag}-{r}"));
        fs::create_dir_all(&b).map_err(|e| ImageError::io("mkdir", &b, e))?;
        Ok(b)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn leftovers_no_writer_holds_are_removed() -> Result<(), ImageError> {
        let base = base("stale")?;
        // a killed writer's directory (nobody holds its lock), a live writer's (locked by
        // `live`, as by a writer in any pid namespace) and another image's
        let dead = base.join(".img.crhook-new-00000000000000aa");
        let live = base.join(".img.crhook-new-00000000000000bb");
        let other = base.join(".other.crhook-new-00000000000000cc");
        let young_init = base.join(".img.crhook-init-00000000000000dd");
        for d in [&dead, &live, &other, &young_init] {
            fs::create_dir_all(d).map_err(|e| ImageError::io("mkdir", d, e))?;
        }
        fs::write(dead.join("links.img"), b"x").map_err(|e| ImageError::io("write", &dead, e))?;
        let held = safefs::open_dir(&live).map_err(|e| ImageError::io("open", &live, e))?;
        assert!(safefs::try_lock(held.as_fd()).map_err(|e| ImageError::io("lock", &live, e))?);
        let w = ImageWriter::create(&base.join("img"))?;
        w.finish(NamespaceIdentity::default(), vec![])?;
        let (d, l, o, y) = (
            dead.exists(),
            live.exists(),
            other.exists(),
            young_init.exists(),
        );
        drop(held);
        let _ = fs::remove_dir_all(&base);
        assert!(!d, "a dead writer's temp dir is removed");
        assert!(
            l && o && y,
            "a live writer's, a young one's and other images' are kept"
        );
        Ok(())
    }

    /// Every file's checksums in the inventory are those of its bytes on disk: a small file's
    /// computed on its writing thread, a large one's (`pending::SUMS_APART`) beside its write.
    #[test]
    fn checksums_of_small_and_large_files_match_their_bytes() -> Result<(), ImageError> {
        let base = base("sums")?;
        let fin = base.join("img");
        let mut w = ImageWriter::create(&fin)?;
        let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let chunks: Vec<&[u8]> = big.chunks(1 << 16).collect();
        w.write_raw(Kind::Firewall, &chunks)?;
        w.write_raw(Kind::Links, &[b"one", b"two"])?;
        w.finish(NamespaceIdentity::default(), vec![])?;
        let inv = crate::ImageDir::open(&fin)?.inventory().clone();
        let mut checked = Vec::new();
        for f in &inv.files {
            let path = fin.join(&f.name);
            let bytes = fs::read(&path).map_err(|e| ImageError::io("read", &path, e))?;
            assert_eq!(f.crc32c, crate::frame::body_crc(&bytes), "{}", f.name);
            assert_eq!(f.sha256, crate::seal::sha256(&bytes).to_vec(), "{}", f.name);
            assert_eq!(f.size, bytes.len() as u64, "{}", f.name);
            checked.push((f.name.clone(), bytes.len() > 1 << 20));
        }
        let _ = fs::remove_dir_all(&base);
        checked.sort();
        assert_eq!(
            checked,
            [
                ("firewall.img".to_string(), true),
                ("links.img".to_string(), false)
            ]
        );
        Ok(())
    }

    /// The path taken where renameat2(RENAME_EXCHANGE) is unsupported.
    #[test]
    fn swap_by_renames_replaces_an_image() -> Result<(), ImageError> {
        let base = base("swap")?;
        let fin = base.join("img");
        let old = ImageWriter::create(&fin)?;
        old.finish(NamespaceIdentity::default(), vec!["old".into()])?;
        let mut w = ImageWriter::create(&fin)?;
        let inv = w.inventory(NamespaceIdentity::default(), vec!["new".into()]);
        w.write_last(Kind::Inventory, &inv)?;
        w.swap_in_by_renames()?;
        let got = crate::ImageDir::open(&fin)?.inventory().warnings.clone();
        let left = names(&base);
        let _ = fs::remove_dir_all(&base);
        assert_eq!(got, ["new"]);
        assert_eq!(left, ["img"]);
        Ok(())
    }

    #[test]
    fn an_ancestor_others_can_write_without_the_sticky_bit_is_refused() -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let base = base("ancestor")?;
        let parent = base.join("a").join("b");
        fs::create_dir_all(&parent).map_err(|e| ImageError::io("mkdir", &parent, e))?;
        let set = |mode| fs::set_permissions(&base, fs::Permissions::from_mode(mode));
        set(0o777).map_err(|e| ImageError::io("chmod", &base, e))?;
        let open = ImageWriter::create(&parent.join("img"))
            .err()
            .map(|e| e.to_string());
        // sticky, like /tmp: only an entry's owner may move it
        set(0o1777).map_err(|e| ImageError::io("chmod", &base, e))?;
        let sticky = ImageWriter::create(&parent.join("img")).map(drop);
        let _ = set(0o755);
        let _ = fs::remove_dir_all(&base);
        let open = open.unwrap_or_default();
        assert!(
            open.contains("2 level(s) above it is writable by others without the sticky bit"),
            "{open}"
        );
        sticky
    }

    #[test]
    fn a_parent_others_can_write_is_refused() -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let base = base("parent")?;
        let set = |mode| fs::set_permissions(&base, fs::Permissions::from_mode(mode));
        set(0o1777).map_err(|e| ImageError::io("chmod", &base, e))?;
        let msg = ImageWriter::create(&base.join("img"))
            .err()
            .map(|e| e.to_string());
        let _ = set(0o755);
        let left = names(&base);
        let _ = fs::remove_dir_all(&base);
        assert_eq!(
            msg,
            Some(format!(
                "write image in {}: is writable by others (mode 1777); images are written only where no one else can rename or plant files",
                base.display()
            ))
        );
        assert!(left.is_empty(), "{left:?}");
        Ok(())
    }
}
