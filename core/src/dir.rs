//! `ImageDir`: an image directory opened for reading. Opening verifies the whole image before
//! anything uses it (restore must know the image is sound before it touches a namespace):
//! the inventory, then every file it lists (present, size, crc32c, framing, entry count).
//!
//! Files the inventory does not list are ignored: `stats-restore.img` is written into the
//! directory after a restore, and a newer minor version may list kinds this build does not
//! know, which are checked for size and checksum and otherwise skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crhook_proto::{Inventory, InventoryFile};

use crate::error::ImageError;
use crate::file::{decode_file, read_bytes, verify_framing};
use crate::format::{Limits, FORMAT_VERSION, HEADER_LEN};
use crate::magic::Kind;

/// A verified image directory.
#[derive(Debug)]
pub struct ImageDir {
    path: PathBuf,
    inventory: Inventory,
    files: BTreeMap<Kind, InventoryFile>,
    unknown: Vec<InventoryFile>,
    limits: Limits,
}

fn inv_err(file: PathBuf, what: impl Into<String>) -> ImageError {
    ImageError::Inventory {
        file,
        what: what.into(),
    }
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

impl ImageDir {
    /// Opens and verifies `dir` with the default limits.
    pub fn open(dir: &Path) -> Result<ImageDir, ImageError> {
        Self::open_with_limits(dir, &Limits::default())
    }

    /// Opens and verifies `dir`.
    pub fn open_with_limits(dir: &Path, limits: &Limits) -> Result<ImageDir, ImageError> {
        if !dir.is_dir() {
            return Err(ImageError::Directory {
                op: "open image",
                dir: dir.to_path_buf(),
                what: "no such directory".into(),
            });
        }
        let inv_path = dir.join(Kind::Inventory.file_name());
        if !inv_path.exists() {
            return Err(ImageError::Directory {
                op: "open image",
                dir: dir.to_path_buf(),
                what: "no inventory.img: not a crhook image, or its checkpoint did not finish"
                    .into(),
            });
        }
        let bytes = read_bytes(&inv_path, limits)?;
        let mut invs: Vec<Inventory> = decode_file(&inv_path, Kind::Inventory, &bytes, limits)?;
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
        if inventory.format_major > u32::from(FORMAT_VERSION.0) {
            return Err(ImageError::TooNew {
                file: inv_path,
                offset: HEADER_LEN as u64,
                found: (inventory.format_major, inventory.format_minor),
                supported: FORMAT_VERSION,
            });
        }
        let mut files = BTreeMap::new();
        let mut unknown = Vec::new();
        let mut seen = BTreeSet::new();
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
            match Kind::from_name(&f.kind) {
                Some(Kind::Inventory) => {
                    return Err(inv_err(inv_path, "lists itself"));
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
                Some(kind) => {
                    verify_listed(dir, f, Some(kind), limits)?;
                    files.insert(kind, f.clone());
                }
                None => {
                    verify_listed(dir, f, None, limits)?;
                    unknown.push(f.clone());
                }
            }
        }
        Ok(ImageDir {
            path: dir.to_path_buf(),
            inventory,
            files,
            unknown,
            limits: *limits,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Whether the inventory lists `kind`.
    pub fn has(&self, kind: Kind) -> bool {
        kind == Kind::Inventory || self.files.contains_key(&kind)
    }

    /// Listed files of kinds this build knows, in kind order.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.files.keys().copied()
    }

    /// Listed files of kinds this build does not know (from a newer minor version).
    pub fn unknown_files(&self) -> &[InventoryFile] {
        &self.unknown
    }

    /// The bytes of a listed file, checked again against the inventory (size, crc32c), since
    /// the directory may have changed since `open`. `None` when the kind is not listed.
    pub fn read_bytes(&self, kind: Kind) -> Result<Option<Vec<u8>>, ImageError> {
        let path = self.path.join(kind.file_name());
        if kind == Kind::Inventory {
            return read_bytes(&path, &self.limits).map(Some);
        }
        let Some(f) = self.files.get(&kind) else {
            return Ok(None);
        };
        let bytes = read_bytes(&path, &self.limits)?;
        check_size_crc(&path, f, &bytes)?;
        Ok(Some(bytes))
    }

    /// Decodes every entry of `kind`; empty when the inventory does not list it.
    pub fn read<M: prost::Message + Default>(&self, kind: Kind) -> Result<Vec<M>, ImageError> {
        let Some(bytes) = self.read_bytes(kind)? else {
            return Ok(Vec::new());
        };
        let path = self.path.join(kind.file_name());
        let out: Vec<M> = decode_file(&path, kind, &bytes, &self.limits)?;
        if let Some(f) = self.files.get(&kind) {
            if out.len() as u64 != f.entries {
                return Err(inv_err(
                    path,
                    format!("holds {} entries, inventory says {}", out.len(), f.entries),
                ));
            }
        }
        Ok(out)
    }
}

fn check_size_crc(path: &Path, f: &InventoryFile, bytes: &[u8]) -> Result<(), ImageError> {
    let size = bytes.len() as u64;
    if size != f.size {
        return Err(inv_err(
            path.to_path_buf(),
            format!(
                "size {size} bytes does not match inventory ({} bytes)",
                f.size
            ),
        ));
    }
    let crc = crate::frame::body_crc(bytes);
    if crc != f.crc32c {
        return Err(inv_err(
            path.to_path_buf(),
            format!(
                "crc32c 0x{crc:08x} does not match inventory (0x{:08x})",
                f.crc32c
            ),
        ));
    }
    Ok(())
}

fn verify_listed(
    dir: &Path,
    f: &InventoryFile,
    kind: Option<Kind>,
    limits: &Limits,
) -> Result<(), ImageError> {
    let path = dir.join(&f.name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(inv_err(path, "listed in inventory.img but absent"));
        }
        Err(e) => return Err(ImageError::io("stat", path, e)),
    };
    if !meta.is_file() {
        return Err(inv_err(path, "is not a regular file"));
    }
    if meta.len() != f.size {
        return Err(inv_err(
            path,
            format!(
                "size {} bytes does not match inventory ({} bytes)",
                meta.len(),
                f.size
            ),
        ));
    }
    let bytes = read_bytes(&path, limits)?;
    check_size_crc(&path, f, &bytes)?;
    if let Some(kind) = kind {
        let n = verify_framing(&path, kind, &bytes, limits)?;
        if n != f.entries {
            return Err(inv_err(
                path,
                format!("holds {n} entries, inventory says {}", f.entries),
            ));
        }
    }
    Ok(())
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
