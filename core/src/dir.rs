//! `ImageDir`: an image directory opened for reading. Opening verifies the whole image before
//! anything uses it (restore must know the image is sound before it touches a namespace):
//! the inventory, the seal, then every file it lists (present, size, crc32c, framing, entry
//! count, and for a sealed image its SHA-256), and gives a [`Trust`] verdict.
//!
//! An image is untrusted input: the directory is opened once (not through a symlink at its
//! last component) and every file in it is read relative to that descriptor through
//! safefs.rs (no symlinks, FIFOs or devices; size checked with `fstat` on the descriptor that
//! is read), within the budgets of [`Limits`]; everything read through one `ImageDir` shares
//! one memory budget (`max_total_memory`).
//!
//! Files the inventory does not list are ignored: `stats-restore.img` is written into the
//! directory after a restore, `seal.img` covers the inventory and so cannot be listed in it,
//! and a newer minor version may list kinds this build does not know, which are checked for
//! size and checksum and otherwise skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crhook_proto::{Inventory, InventoryFile, Seal};

use crate::budget::Budget;
use crate::encoded::Encoded;
use crate::error::ImageError;
use crate::file::{decode_budgeted, decode_budgeted_shared, decode_file, read_at};
use crate::format::{Limits, HEADER_LEN, NEWEST_READABLE};
use crate::listed::{inv_err, not_found, verify_all, verify_listed};
use crate::magic::Kind;
use crate::safefs;
use crate::seal::{judge, sha256, HostKey, Trust};
use prost::bytes::Bytes;

/// Files of a sealed image at least this big are hashed while they are decoded
/// ([`ImageDir::read_then`]); below it a thread costs more than it saves.
const HASH_BESIDE: u64 = 4 << 20;

/// Most images in one chain (a child, its parent, ...): far above what iterative checkpoints
/// make, low enough that a hostile chain cannot keep crhook opening directories.
pub const MAX_CHAIN: usize = 64;

/// A verified image directory. A child image (format 2.0) opens with its whole parent chain,
/// and [`ImageDir::read`] of a kind the child takes from its parent reads it there.
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    dir: File,
    inventory: Inventory,
    files: BTreeMap<Kind, InventoryFile>,
    unknown: Vec<InventoryFile>,
    limits: Limits,
    trust: Trust,
    budget: Budget,
    /// kinds read from `parent`
    from_parent: BTreeSet<Kind>,
    parent: Option<Box<ImageDir>>,
    /// the bytes of each listed file as `open` checked them, until it is read: a read hands
    /// out exactly what was checked (nothing swapped in between can be read), without a
    /// second read, crc32c and SHA-256 of every file
    checked: std::sync::Mutex<BTreeMap<Kind, Vec<u8>>>,
    /// opened by [`ImageDir::open_deferred`]: the files of known kinds are checked as they
    /// are read, not at open
    deferred: bool,
}

/// A listed name must be a bare file name: a hostile inventory must not make crhook read
/// `../../etc/shadow`.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains('\0')
        && name.ends_with(".img")
}

fn dir_err(dir: &Path, what: &str) -> ImageError {
    ImageError::Directory {
        op: "open image",
        dir: dir.to_path_buf(),
        what: what.into(),
    }
}

impl ImageDir {
    /// Opens and verifies `dir` with the default limits and no key (a sealed image reads as
    /// [`Trust::ForeignKey`]).
    pub fn open(dir: &Path) -> Result<ImageDir, ImageError> {
        Self::open_with(dir, None, &Limits::default())
    }

    /// Opens and verifies `dir` with no key.
    pub fn open_with_limits(dir: &Path, limits: &Limits) -> Result<ImageDir, ImageError> {
        Self::open_with(dir, None, limits)
    }

    /// Opens and verifies `dir`, judging its seal with `key` (the host key, see
    /// [`HostKey::load`]): [`ImageDir::trust`] says what the image may be trusted with.
    pub fn open_with(
        dir: &Path,
        key: Option<&HostKey>,
        limits: &Limits,
    ) -> Result<ImageDir, ImageError> {
        Self::open_link(dir, key, limits, None, false)
    }

    /// [`ImageDir::open_with`] for a reader that reads every file it needs at once, each on a
    /// thread of its own (restore): the inventory, the seal over it and the files of kinds
    /// this build does not know are checked here; each known file is checked when it is read
    /// (size, crc32c, and against a sealed inventory its SHA-256), and a read of a file that
    /// fails its check fails. So [`ImageDir::trust`] judges the inventory and its seal, and
    /// the files' checks run in parallel with their decoding instead of all before it (at L,
    /// the 22 MiB firewall file alone took one thread 40 ms to check while the other idled).
    /// An image with a parent is opened as by [`ImageDir::open_with`].
    pub fn open_deferred(
        dir: &Path,
        key: Option<&HostKey>,
        limits: &Limits,
    ) -> Result<ImageDir, ImageError> {
        Self::open_link(dir, key, limits, None, true)
    }

    /// Opens one link of a chain; `pin` is set for a parent (see [`Pin`]).
    fn open_link(
        dir: &Path,
        key: Option<&HostKey>,
        limits: &Limits,
        pin: Option<&Pin<'_>>,
        deferred: bool,
    ) -> Result<ImageDir, ImageError> {
        let symlink = || {
            dir.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
        };
        let d = safefs::open_dir_nofollow(dir).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => dir_err(dir, "no such directory"),
            // O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR (or ELOOP)
            Some(libc::ENOTDIR) | Some(libc::ELOOP) if symlink() => ImageError::Unsafe {
                op: "open image",
                file: dir.to_path_buf(),
                what: "is a symlink; name the image directory itself".into(),
            },
            Some(libc::ENOTDIR) => dir_err(dir, "not a directory"),
            _ => ImageError::io("open image", dir, e),
        })?;
        let budget = Budget::new(limits.max_total_memory);
        let inv_path = dir.join(Kind::Inventory.file_name());
        let inv_name = OsStr::new(Kind::Inventory.file_name());
        let bytes = read_at(d.as_fd(), inv_name, &inv_path, limits, None).map_err(|e| {
            if not_found(&e) {
                dir_err(
                    dir,
                    "no inventory.img: not a crhook image, or its checkpoint did not finish",
                )
            } else {
                e
            }
        })?;
        let mut invs: Vec<Inventory> =
            decode_budgeted(&inv_path, Kind::Inventory, &bytes, limits, &budget)?;
        let inventory = match (invs.pop(), invs.is_empty()) {
            (Some(inv), true) => inv,
            _ => {
                return Err(ImageError::Corrupt {
                    file: inv_path,
                    offset: HEADER_LEN as u64,
                    what: format!("holds {} inventories, expected exactly one", invs.len() + 1),
                })
            }
        };
        if inventory.format_major > u32::from(NEWEST_READABLE.0) {
            return Err(ImageError::TooNew {
                file: inv_path,
                offset: HEADER_LEN as u64,
                found: (inventory.format_major, inventory.format_minor),
                supported: NEWEST_READABLE,
            });
        }
        let mut trust = match pin {
            Some(Pin {
                digest,
                trust: child,
                ..
            }) => {
                if sha256(&bytes).as_slice() != *digest {
                    return Err(inv_err(
                        inv_path,
                        "sha256 does not match the one its child image records (the parent changed after the child was written)",
                    ));
                }
                (*child).clone()
            }
            None => match read_seal(&d, dir, limits)? {
                Ok(seal) => judge(seal.as_ref(), key, &bytes),
                Err(why) => Trust::BadSeal { key_id: None, why },
            },
        };
        // a parent chain is checked whole at open
        let deferred = deferred && pin.is_none() && inventory.parent.is_none();
        let mut files = BTreeMap::new();
        let mut checked = BTreeMap::new();
        let mut unknown = Vec::new();
        // the listed files to check: every one of them is read, checksummed and hashed
        let mut todo = Vec::new();
        let mut seen = BTreeSet::new();
        let mut listed = BTreeSet::new();
        for f in &inventory.files {
            if !safe_name(&f.name) {
                return Err(inv_err(
                    inv_path,
                    format!("lists {:?}, which is not a plain image file name", f.name),
                ));
            }
            if !seen.insert(f.name.clone()) {
                return Err(inv_err(inv_path, format!("lists {} twice", f.name)));
            }
            let kind = Kind::from_name(&f.kind);
            match kind {
                Some(Kind::Inventory) => return Err(inv_err(inv_path, "lists itself")),
                Some(Kind::Seal) => {
                    return Err(inv_err(
                        inv_path,
                        "lists seal.img, which covers the inventory and is never listed",
                    ))
                }
                Some(kind) if kind.file_name() != f.name => {
                    return Err(inv_err(
                        inv_path,
                        format!(
                            "lists {} as kind {}, whose file is {}",
                            f.name,
                            f.kind,
                            kind.file_name()
                        ),
                    ));
                }
                _ => {}
            }
            if let Some(k) = kind {
                listed.insert(k);
            }
            // a parent's files its children do not take from it are never read: not checked
            let needed = match (pin, kind) {
                (Some(p), Some(k)) => p.needed.contains(&k),
                (Some(_), None) => false,
                (None, _) => true,
            };
            if !needed {
                continue;
            }
            match kind {
                // checked when read (see open_deferred)
                Some(kind) if deferred => {
                    files.insert(kind, f.clone());
                }
                _ => todo.push((f, kind)),
            }
        }
        let results = verify_all(&d, dir, &todo, limits, trust.is_sealed());
        for ((f, kind), r) in todo.into_iter().zip(results) {
            let (bytes, digest) = r?;
            if let (Some(found), Trust::Sealed { key_id }) = (digest, &trust) {
                if *f.sha256 != found {
                    let why = if f.sha256.is_empty() {
                        format!("the sealed inventory lists {} without a sha256", f.name)
                    } else {
                        format!("{}: sha256 does not match the sealed inventory", f.name)
                    };
                    trust = Trust::BadSeal {
                        key_id: Some(*key_id),
                        why,
                    };
                }
            }
            match kind {
                Some(kind) => {
                    files.insert(kind, f.clone());
                    checked.insert(kind, bytes);
                }
                None => unknown.push(f.clone()),
            }
        }
        let from_parent = from_parent_kinds(&inv_path, &inventory, &listed)?;
        let parent = match &inventory.parent {
            Some(link) => {
                // what the chain below needs of this image's parent
                let needed = from_parent
                    .iter()
                    .copied()
                    .filter(|k| pin.is_none_or(|p| p.needed.contains(k)))
                    .collect();
                let next = Pin {
                    digest: &link.inventory_sha256,
                    depth: pin.map_or(0, |p| p.depth) + 1,
                    trust: &trust,
                    needed,
                };
                Some(Box::new(open_parent(
                    dir, &inventory, link, key, limits, &next,
                )?))
            }
            None => None,
        };
        Ok(ImageDir {
            path: dir.to_path_buf(),
            dir: d,
            inventory,
            files,
            unknown,
            limits: *limits,
            trust,
            budget,
            from_parent,
            parent,
            checked: std::sync::Mutex::new(checked),
            deferred,
        })
    }

    /// The parent image of a child image.
    pub fn parent(&self) -> Option<&ImageDir> {
        self.parent.as_deref()
    }

    /// This image and every parent up the chain, child first.
    pub fn chain(&self) -> impl Iterator<Item = &ImageDir> {
        std::iter::successors(Some(self), |d| d.parent())
    }

    /// The kinds this image takes from its parent.
    pub fn from_parent(&self) -> impl Iterator<Item = Kind> + '_ {
        self.from_parent.iter().copied()
    }

    /// The entries of `kind` as the inventory that holds it (this image's or a parent's)
    /// lists them; `None` when no image of the chain has the kind.
    pub fn entries(&self, kind: Kind) -> Option<u64> {
        self.holder(kind)
            .and_then(|d| d.files.get(&kind))
            .map(|f| f.entries)
    }

    /// Whether this image holds the file of `kind` itself (not through its parent); a parent
    /// opened for a child holds only the kinds the chain below takes from it.
    pub fn lists(&self, kind: Kind) -> bool {
        self.files.contains_key(&kind)
    }

    /// The image that holds `kind` for this one: itself, or the first parent up the chain
    /// that does not take it from its own parent. `None` when no image of the chain lists it.
    fn holder(&self, kind: Kind) -> Option<&ImageDir> {
        let mut d = self;
        loop {
            if d.files.contains_key(&kind) {
                return Some(d);
            }
            match (&d.parent, d.from_parent.contains(&kind)) {
                (Some(p), true) => d = p,
                _ => return None,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// What the image may be trusted with: see [`Trust`].
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// `Ok` only for an image sealed with this host's key; else an error for `op` ("place
    /// the host end of veth0") that names the directory and the verdict.
    pub fn require_sealed(&self, op: &'static str) -> Result<(), ImageError> {
        if self.trust.is_sealed() {
            return Ok(());
        }
        Err(ImageError::Untrusted {
            op,
            dir: self.path.clone(),
            trust: self.trust.clone(),
        })
    }

    /// Memory charged so far by everything read through this image (see [`Limits`]).
    pub fn memory_used(&self) -> u64 {
        self.budget.used()
    }

    /// Whether the inventory lists `kind`, or takes it from a parent that has it.
    pub fn has(&self, kind: Kind) -> bool {
        kind == Kind::Inventory || self.holder(kind).is_some()
    }

    /// Listed files of kinds this build knows, and kinds taken from the parent chain, in
    /// kind order.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL.iter().copied().filter(|k| {
            self.files.contains_key(k) || (self.from_parent.contains(k) && self.has(*k))
        })
    }

    /// Listed files of kinds this build does not know (from a newer minor version).
    pub fn unknown_files(&self) -> &[InventoryFile] {
        &self.unknown
    }

    /// The bytes of a listed file: the first time, those `open` checked; after that read
    /// again and checked again against the inventory (size, crc32c, and for a sealed image
    /// SHA-256), since the directory may have changed since `open`. `None` when the kind is
    /// not listed.
    pub fn read_bytes(&self, kind: Kind) -> Result<Option<Vec<u8>>, ImageError> {
        let out = self.read_then(kind, |b| Ok(b.clone()))?;
        Ok(out.map(Vec::from))
    }

    /// `f` of the bytes [`ImageDir::read_bytes`] hands out; `None` when the kind is not
    /// listed. A big file of a sealed image is hashed beside `f` (see
    /// [`crate::seal::sha256_beside`]): what `f` made of it is dropped unless the SHA-256
    /// matches. `f` only reads: nothing it makes is used before then.
    fn read_then<T>(
        &self,
        kind: Kind,
        f: impl FnOnce(&Bytes) -> Result<T, ImageError>,
    ) -> Result<Option<T>, ImageError> {
        let kept = self.checked.lock().ok().and_then(|mut c| c.remove(&kind));
        if let Some(kept) = kept {
            return f(&Bytes::from(kept)).map(Some);
        }
        let path = self.path.join(kind.file_name());
        let name = OsStr::new(kind.file_name());
        if kind == Kind::Inventory {
            let bytes = read_at(self.dir.as_fd(), name, &path, &self.limits, None)?;
            return f(&Bytes::from(bytes)).map(Some);
        }
        let Some(listed) = self.files.get(&kind) else {
            return match self.holder(kind) {
                Some(d) => d.read_then(kind, f),
                None => Ok(None),
            };
        };
        let sealed = self.trust.is_sealed();
        let beside = sealed && listed.size >= HASH_BESIDE;
        // deferred, the first read of the file: checked as open_with checks it (framing too);
        // else a read after the one that handed out what open checked
        let (bytes, digest) = verify_listed(
            &self.dir,
            &self.path,
            listed,
            self.deferred.then_some(kind),
            &self.limits,
            sealed && !beside,
        )?;
        let bytes = Bytes::from(bytes);
        let (digest, out) = if beside {
            let (d, out) = crate::seal::sha256_beside(&bytes, || f(&bytes));
            (Some(d.to_vec()), out)
        } else {
            (digest, f(&bytes))
        };
        if digest.is_some_and(|d| d != listed.sha256) {
            let why = if self.deferred {
                "sha256 does not match the sealed inventory: the image was changed after it was sealed"
            } else {
                "sha256 does not match the sealed inventory (changed since the image was opened)"
            };
            return Err(inv_err(path, why));
        }
        out.map(Some)
    }

    /// The entries of `kind` checked but not decoded (see [`Encoded`]); none when the
    /// inventory does not list it.
    pub fn read_encoded(&self, kind: Kind) -> Result<Encoded, ImageError> {
        if !self.files.contains_key(&kind) && kind != Kind::Inventory {
            if let Some(d) = self.holder(kind) {
                return d.read_encoded(kind);
            }
        }
        let path = self.path.join(kind.file_name());
        let (limits, budget, crc) = (&self.limits, &self.budget, self.crc(kind));
        let check = |b: &Bytes| Encoded::check(&path, kind, b.clone(), limits, budget, crc);
        let out = match self.read_then(kind, check)? {
            Some(out) => out,
            None => {
                let empty = Bytes::from(crate::file::encode_raw_file(kind, &[]));
                Encoded::check(&path, kind, empty, limits, budget, None)?
            }
        };
        self.check_entries(kind, path, out.len())?;
        Ok(out)
    }

    /// The crc32c of the body of `kind`'s file when [`ImageDir::read_bytes`] has checked the
    /// bytes it hands out against it (every listed file but the inventory itself).
    fn crc(&self, kind: Kind) -> Option<u32> {
        self.files.get(&kind).map(|f| f.crc32c)
    }

    /// `n` entries read from `path`, a file of `kind`, against the inventory's count.
    fn check_entries(&self, kind: Kind, path: PathBuf, n: usize) -> Result<(), ImageError> {
        match self.files.get(&kind) {
            Some(f) if n as u64 != f.entries => Err(inv_err(
                path,
                format!("holds {n} entries, inventory says {}", f.entries),
            )),
            _ => Ok(()),
        }
    }

    /// Decodes every entry of `kind`; empty when the inventory does not list it. What it
    /// decodes to is charged to this image's memory budget.
    pub fn read<M: prost::Message + Default>(&self, kind: Kind) -> Result<Vec<M>, ImageError> {
        if !self.files.contains_key(&kind) && kind != Kind::Inventory {
            return match self.holder(kind) {
                Some(d) => d.read(kind),
                None => Ok(Vec::new()),
            };
        }
        let path = self.path.join(kind.file_name());
        let (limits, budget, crc) = (&self.limits, &self.budget, self.crc(kind));
        let decode = |b: &Bytes| decode_budgeted_shared::<M>(&path, kind, b, limits, budget, crc);
        let Some(out) = self.read_then(kind, decode)? else {
            return Ok(Vec::new());
        };
        self.check_entries(kind, path, out.len())?;
        Ok(out)
    }
}

/// How a child pins the parent it opens.
struct Pin<'a> {
    /// the SHA-256 of the parent's inventory the child records
    digest: &'a [u8],
    /// the parent's place in the chain (the first parent is 1)
    depth: usize,
    /// the child's verdict: a sealed child makes its pinned parent as trusted, and every
    /// file read from the parent is hashed
    trust: &'a Trust,
    /// the kinds the chain below takes from this parent: only their files are checked
    needed: BTreeSet<Kind>,
}

/// The kinds a child takes from its parent: known kinds, none of which it also lists, and
/// only in an image that names a parent.
fn from_parent_kinds(
    inv_path: &Path,
    inv: &Inventory,
    listed: &BTreeSet<Kind>,
) -> Result<BTreeSet<Kind>, ImageError> {
    let mut out = BTreeSet::new();
    if inv.parent.is_none() && !inv.from_parent.is_empty() {
        return Err(inv_err(
            inv_path.to_path_buf(),
            "takes kinds from a parent but names none",
        ));
    }
    for name in &inv.from_parent {
        let kind = Kind::from_name(name)
            .filter(|k| !matches!(k, Kind::Inventory | Kind::Seal | Kind::StatsRestore))
            .ok_or_else(|| {
                inv_err(
                    inv_path.to_path_buf(),
                    format!("takes {name:?} from its parent, which is not a kind an image holds"),
                )
            })?;
        if listed.contains(&kind) || !out.insert(kind) {
            return Err(inv_err(
                inv_path.to_path_buf(),
                format!("both lists {name} and takes it from its parent"),
            ));
        }
    }
    Ok(out)
}

/// Opens the parent `link` names, relative to the child `dir`, pinned by its digest, and
/// checks that it comes from the same namespace.
fn open_parent(
    dir: &Path,
    inv: &Inventory,
    link: &crhook_proto::ParentImage,
    key: Option<&HostKey>,
    limits: &Limits,
    pin: &Pin<'_>,
) -> Result<ImageDir, ImageError> {
    let rel = Path::new(&link.path);
    let err = |what: String, source: Option<ImageError>| ImageError::Parent {
        child: dir.to_path_buf(),
        parent: dir.join(rel),
        what,
        source: source.map(Box::new),
    };
    if link.path.is_empty() || rel.is_absolute() || link.path.contains('\0') {
        return Err(err(
            "the path is not relative to the child image".into(),
            None,
        ));
    }
    if pin.depth >= MAX_CHAIN {
        return Err(err(
            format!("the chain is longer than {MAX_CHAIN} images"),
            None,
        ));
    }
    if link.inventory_sha256.len() != 32 {
        return Err(err(
            format!(
                "the child records a {}-byte inventory digest, not a SHA-256",
                link.inventory_sha256.len()
            ),
            None,
        ));
    }
    let parent = ImageDir::open_link(&dir.join(rel), key, limits, Some(pin), false).map_err(
        |e| match &e {
            ImageError::Directory { what, .. } if what.starts_with("no such") => {
                err("missing (no such directory)".into(), None)
            }
            ImageError::Parent { .. } => e,
            _ => err("damaged or changed".into(), Some(e)),
        },
    )?;
    if let (Trust::BadSeal { why, .. }, true) = (&parent.trust, pin.trust.is_sealed()) {
        return Err(err(format!("damaged or changed: {why}"), None));
    }
    let (a, b) = (
        inv.source.clone().unwrap_or_default(),
        parent.inventory.source.clone().unwrap_or_default(),
    );
    let cookies_differ = a.cookie != 0 && b.cookie != 0 && a.cookie != b.cookie;
    if (a.dev, a.ino) != (b.dev, b.ino) || cookies_differ {
        return Err(err(
            format!(
                "captured from another network namespace ({} inode {}, the child's is {} inode {})",
                b.target, b.ino, a.target, a.ino
            ),
            None,
        ));
    }
    Ok(parent)
}

/// The decoded seal, `None` without `seal.img`, or why it cannot be decoded. A seal.img that
/// is not a regular file is refused outright, like any other file of the image.
fn read_seal(
    d: &File,
    dir: &Path,
    limits: &Limits,
) -> Result<Result<Option<Seal>, String>, ImageError> {
    let path = dir.join(Kind::Seal.file_name());
    let bytes = match read_at(
        d.as_fd(),
        OsStr::new(Kind::Seal.file_name()),
        &path,
        limits,
        None,
    ) {
        Ok(b) => b,
        Err(e) if not_found(&e) => return Ok(Ok(None)),
        Err(e) => return Err(e),
    };
    Ok(
        match decode_file::<Seal>(&path, Kind::Seal, &bytes, limits) {
            Ok(mut v) if v.len() == 1 => Ok(v.pop()),
            Ok(v) => Err(format!(
                "seal.img holds {} seals, expected exactly one",
                v.len()
            )),
            Err(e) => Err(e.to_string()),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_unsafe() {
        assert!(safe_name("links.img"));
        assert!(safe_name("future-kind.img"));
        assert!(!safe_name("../links.img"));
        assert!(!safe_name("/etc/passwd.img"));
        assert!(!safe_name(".hidden.img"));
        assert!(!safe_name("links"));
        assert!(!safe_name(""));
    }
}
