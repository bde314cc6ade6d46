//! Trust in an image comes from the operator, never from the image: checkpoint seals what it
//! writes with a host key, and opening an image says whether the seal holds ([`Trust`]). What
//! restore may do with an unsealed or foreign image (only rebuild the target itself, never
//! place anything on the host) is the restore side's decision; this module only gives the
//! verdict.
//!
//! The seal is `seal.img` (kind `seal`, one `crhook.Seal`): HMAC-SHA256 keyed by the host key
//! over a fixed context string and every byte of `inventory.img`, with the key's id (the first
//! 8 bytes of SHA-256 of the key, which names it without revealing it). The inventory lists a
//! SHA-256 of every other file (format 1.2), so one MAC covers the whole image. The seal is not
//! listed in the inventory (it covers it), and older readers ignore files the inventory does
//! not list, so sealed images stay readable by crhook 1.0/1.1 readers.
//!
//! The host key is 32 random bytes in a file (default `/etc/crhook/image.key`,
//! `$CRHOOK_IMAGE_KEY` selects another; nodes of a cluster may share one so migrated images
//! stay trusted). It is created 0600 on first use, from getrandom(2), under a temporary name
//! then linked in with `renameat2(RENAME_NOREPLACE)`, so two first uses at once agree on one
//! key. A key file that is a symlink, not a regular file, not owned by root (or the user
//! crhook runs as), readable or writable by group or others, or in a directory others can
//! write is refused: anyone who can read it can forge seals, anyone who can write it can
//! swap it.

use std::ffi::OsStr;
use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::error::ImageError;
use crate::safefs;

/// The variable that names the host key file.
pub const KEY_ENV: &str = "CRHOOK_IMAGE_KEY";
/// The host key file when [`KEY_ENV`] is not set.
pub const DEFAULT_KEY_PATH: &str = "/etc/crhook/image.key";
/// Bytes of a host key.
pub const KEY_LEN: usize = 32;
/// `Seal.algorithm` of HMAC-SHA256 over a fixed context string and the inventory bytes.
pub const SEAL_HMAC_SHA256: u32 = 1;
/// Prefixed to the inventory bytes before the MAC, so the key proves nothing about other data
/// it might ever be used for.
const SEAL_CONTEXT: &[u8] = b"crhook image seal v1\0";

type HmacSha256 = Hmac<Sha256>;

/// The first 8 bytes of SHA-256 of a key: names a key without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id stored in a seal, when it has the right length.
    pub fn from_slice(b: &[u8]) -> Option<KeyId> {
        <[u8; 8]>::try_from(b).ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// What opening an image concluded about where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Sealed with the key this host holds; the seal and every file's SHA-256 verified.
    Sealed { key_id: KeyId },
    /// No `seal.img`: written without a key, or by crhook before format 1.2.
    Unsealed,
    /// Sealed with a key this host does not hold (or opened without a key).
    ForeignKey { key_id: KeyId },
    /// A seal that names this host's key but does not verify, or cannot be read: the image
    /// was changed after it was sealed.
    BadSeal { key_id: Option<KeyId>, why: String },
}

impl Trust {
    /// Only [`Trust::Sealed`] is trusted.
    pub fn is_sealed(&self) -> bool {
        matches!(self, Trust::Sealed { .. })
    }

    /// A short name for logs and JSON: sealed, unsealed, foreign-key, bad-seal.
    pub fn name(&self) -> &'static str {
        match self {
            Trust::Sealed { .. } => "sealed",
            Trust::Unsealed => "unsealed",
            Trust::ForeignKey { .. } => "foreign-key",
            Trust::BadSeal { .. } => "bad-seal",
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Sealed { key_id } => write!(f, "sealed with this host's key {key_id}"),
            Trust::Unsealed => f.write_str("not sealed (no seal.img)"),
            Trust::ForeignKey { key_id } => {
                write!(f, "sealed with key {key_id}, which this host does not hold")
            }
            Trust::BadSeal { why, .. } => write!(f, "seal does not verify: {why}"),
        }
    }
}

/// What `show` says of an image directory's seal: judged with this host's key when it can be
/// read ([`Trust`]'s words), else why it was not checked. Never an error: showing an image
/// needs no key.
pub fn seal_status(dir: &Path) -> String {
    match HostKey::load(&HostKey::configured_path()) {
        Err(e) => format!("not checked: {e}"),
        Ok(key) => match crate::ImageDir::open_with(dir, key.as_ref(), &crate::Limits::default()) {
            Ok(d) => match (d.trust(), &key) {
                (Trust::ForeignKey { key_id }, None) => {
                    format!("sealed with key {key_id}; not checked: this host has no key")
                }
                (t, _) => t.to_string(),
            },
            Err(e) => format!("not checked: {e}"),
        },
    }
}

/// The operator's key that seals images and vouches for them. `Debug` shows only its id.
#[derive(Clone)]
pub struct HostKey {
    key: [u8; KEY_LEN],
    id: KeyId,
}

/// The key's bytes do not outlive it: a core dump or a later reuse of the memory shows none.
impl Drop for HostKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey").field("id", &self.id).finish()
    }
}

fn key_err(file: &Path, what: impl Into<String>) -> ImageError {
    ImageError::Key {
        file: file.to_path_buf(),
        what: what.into(),
    }
}

impl HostKey {
    /// A key from its bytes (tests, and embedders that keep keys elsewhere).
    pub fn from_bytes(key: [u8; KEY_LEN]) -> HostKey {
        let digest = Sha256::digest(key);
        let mut id = [0u8; 8];
        id.copy_from_slice(digest.get(..8).unwrap_or_default());
        HostKey { key, id: KeyId(id) }
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// `$CRHOOK_IMAGE_KEY` when set and not empty, else `/etc/crhook/image.key`.
    pub fn configured_path() -> PathBuf {
        std::env::var_os(KEY_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_KEY_PATH))
    }

    /// Loads the key at `path`; `None` when there is none. Refuses an unsafe key file.
    pub fn load(path: &Path) -> Result<Option<HostKey>, ImageError> {
        let (dir, name) = match key_dir(path) {
            Ok(d) => d,
            Err(ImageError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut f = match safefs::open_beneath(dir.as_fd(), name) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(key_err(path, "is a symlink; name the key file itself"))
            }
            Err(e) => return Err(ImageError::io("open host key", path, e)),
        };
        let meta = f
            .metadata()
            .map_err(|e| ImageError::io("stat host key", path, e))?;
        if !meta.is_file() {
            return Err(key_err(
                path,
                format!(
                    "is a {}, not a regular file",
                    safefs::type_name(meta.file_type())
                ),
            ));
        }
        if meta.uid() != 0 && meta.uid() != safefs::euid() {
            return Err(key_err(
                path,
                format!(
                    "is owned by uid {}, not root; anyone who can change it can forge trust",
                    meta.uid()
                ),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(key_err(
                path,
                format!(
                    "is accessible to group or others (mode {:04o}); chmod 600 it",
                    meta.mode() & 0o7777
                ),
            ));
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(key_err(
                path,
                format!(
                    "holds {} bytes; a host key is {KEY_LEN} random bytes",
                    meta.len()
                ),
            ));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        f.read_exact(&mut key[..])
            .map_err(|e| ImageError::io("read host key", path, e))?;
        Ok(Some(HostKey::from_bytes(*key)))
    }

    /// Loads the key at `path`, creating it (0600, 32 random bytes) when there is none.
    pub fn load_or_create(path: &Path) -> Result<HostKey, ImageError> {
        if let Some(k) = HostKey::load(path)? {
            return Ok(k);
        }
        let parent = parent_of(path);
        if !parent.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&parent)
                .map_err(|e| ImageError::io("create directory", &parent, e))?;
        }
        let (dir, name) = key_dir(path)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        safefs::fill_random(&mut key[..])
            .map_err(|e| ImageError::io("getrandom for host key", path, e))?;
        let tmp = format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            safefs::random_name().map_err(|e| ImageError::io("getrandom", path, e))?
        );
        let tmp = OsStr::new(&tmp);
        let written = (|| {
            let mut f = safefs::create_excl(dir.as_fd(), tmp, 0o600)?;
            f.write_all(&key[..])?;
            f.sync_all()?;
            safefs::rename_at(dir.as_fd(), tmp, name, libc::RENAME_NOREPLACE)
        })();
        match written {
            Ok(()) => {
                dir.sync_all()
                    .map_err(|e| ImageError::io("fsync directory", &parent, e))?;
                // read back through every check, as any later run will
                HostKey::load(path)?
                    .ok_or_else(|| key_err(path, "vanished right after it was created"))
            }
            Err(e) => {
                let _ = safefs::unlink_at(dir.as_fd(), tmp, 0);
                if e.raw_os_error() == Some(libc::EEXIST) {
                    // another crhook created it first: use that one
                    return HostKey::load(path)?.ok_or_else(|| {
                        key_err(path, "was created and removed by another process")
                    });
                }
                Err(ImageError::io("create host key", path, e))
            }
        }
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC pads a key shorter than the hash's block with zeros (RFC 2104), so keying with
        // the padded block is the same MAC, through the constructor that cannot fail
        let mut block = Zeroizing::new([0u8; 64]);
        if let Some(head) = block.get_mut(..KEY_LEN) {
            head.copy_from_slice(&self.key);
        }
        let mut m = <HmacSha256 as hmac::digest::KeyInit>::new(
            hmac::digest::generic_array::GenericArray::from_slice(&block[..]),
        );
        m.update(SEAL_CONTEXT);
        m
    }

    /// The seal of an inventory's bytes.
    pub fn seal(&self, inventory: &[u8]) -> crhook_proto::Seal {
        let mut m = self.mac();
        m.update(inventory);
        crhook_proto::Seal {
            algorithm: SEAL_HMAC_SHA256,
            key_id: self.id.0.to_vec(),
            mac: m.finalize().into_bytes().to_vec(),
        }
    }

    /// Whether `mac` is this key's MAC of `inventory` (compared in constant time).
    fn verifies(&self, inventory: &[u8], mac: &[u8]) -> bool {
        let mut m = self.mac();
        m.update(inventory);
        m.verify_slice(mac).is_ok()
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The key's directory, opened and checked (owned by root or us, not writable by others),
/// and the key's file name.
fn key_dir(path: &Path) -> Result<(std::fs::File, &OsStr), ImageError> {
    let name = path
        .file_name()
        .filter(|n| safefs::one_component(n))
        .ok_or_else(|| key_err(path, "does not name a file"))?;
    let parent = parent_of(path);
    let dir =
        safefs::open_dir(&parent).map_err(|e| ImageError::io("open key directory", &parent, e))?;
    let meta = dir
        .metadata()
        .map_err(|e| ImageError::io("stat key directory", &parent, e))?;
    if (meta.uid() != 0 && meta.uid() != safefs::euid()) || meta.mode() & 0o022 != 0 {
        return Err(key_err(
            path,
            format!(
                "lies in {}, which others can write (owner uid {}, mode {:04o}); anyone who can change the directory can swap the key",
                parent.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok((dir, name))
}

/// SHA-256 of `bytes`, as inventories record it.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// [`sha256`] of `bytes` on a thread of its own while `f` runs on this one (on this one after
/// `f` when no thread is to be had). SHA-256 runs at ~1.7 GB/s here: at L the firewall's
/// 22 MB took 13 ms, the longest step of the longest read.
pub(crate) fn sha256_beside<T>(bytes: &[u8], f: impl FnOnce() -> T) -> ([u8; 32], T) {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("crhook-sha256".into())
            .spawn_scoped(s, || sha256(bytes));
        let out = f();
        // a hashing thread that panicked is hashed again here
        let digest = h.ok().and_then(|h| h.join().ok());
        (digest.unwrap_or_else(|| sha256(bytes)), out)
    })
}

/// The verdict on a decoded seal (or none) for `inventory`'s bytes, given the key this host
/// holds. `Sealed` here means the MAC holds; the caller still checks every file's SHA-256.
pub(crate) fn judge(
    seal: Option<&crhook_proto::Seal>,
    key: Option<&HostKey>,
    inventory: &[u8],
) -> Trust {
    let Some(seal) = seal else {
        return Trust::Unsealed;
    };
    let Some(key_id) = KeyId::from_slice(&seal.key_id) else {
        return Trust::BadSeal {
            key_id: None,
            why: format!("key id is {} bytes, not 8", seal.key_id.len()),
        };
    };
    let Some(key) = key.filter(|k| k.id == key_id) else {
        return Trust::ForeignKey { key_id };
    };
    if seal.algorithm != SEAL_HMAC_SHA256 {
        return Trust::BadSeal {
            key_id: Some(key_id),
            why: format!("unknown algorithm {}", seal.algorithm),
        };
    }
    if key.verifies(inventory, &seal.mac) {
        Trust::Sealed { key_id }
    } else {
        Trust::BadSeal {
            key_id: Some(key_id),
            why:
                "the MAC of inventory.img does not match (the inventory was changed after sealing)"
                    .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> HostKey {
        HostKey::from_bytes([b; KEY_LEN])
    }

    #[test]
    fn seal_verifies_only_with_its_key_and_bytes() {
        let k = key(1);
        let inv = b"inventory bytes";
        let s = k.seal(inv);
        assert_eq!(s.mac.len(), 32);
        assert_eq!(
            judge(Some(&s), Some(&k), inv),
            Trust::Sealed { key_id: k.id() }
        );
        assert_eq!(
            judge(Some(&s), Some(&key(2)), inv),
            Trust::ForeignKey { key_id: k.id() }
        );
        assert_eq!(
            judge(Some(&s), None, inv),
            Trust::ForeignKey { key_id: k.id() }
        );
        assert_eq!(judge(None, Some(&k), inv), Trust::Unsealed);
        let bad = judge(Some(&s), Some(&k), b"inventory bytez");
        assert_eq!(bad.name(), "bad-seal");
        assert!(
            bad.to_string()
                .contains("inventory was changed after sealing"),
            "{bad}"
        );
        let mut short = s.clone();
        short.key_id.pop();
        assert_eq!(judge(Some(&short), Some(&k), inv).name(), "bad-seal");
    }

    #[test]
    fn key_id_is_a_digest_prefix_and_debug_hides_the_key() {
        let k = HostKey::from_bytes([0u8; KEY_LEN]);
        // SHA-256 of 32 zero bytes starts 66687aadf862bd77
        assert_eq!(k.id().to_string(), "66687aadf862bd77");
        assert_eq!(format!("{k:?}"), "HostKey { id: KeyId(66687aadf862bd77) }");
    }
}
