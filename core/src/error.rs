//! `ImageError`, the one error type of crhook-core.
//!
//! Every variant names the file (or directory) it is about; those about the bytes of a file also
//! name the byte offset where the problem was found, so a message reads like
//! `read links.img: offset 24: entry length 4294967295 exceeds limit 67108864`. Causes (I/O
//! errors, protobuf decode errors) sit in `#[source]` and are not repeated in the message: print
//! the chain (anyhow's `{:#}`) to see them.

use std::io;
use std::path::PathBuf;

/// Any failure reading, verifying, writing or showing crhook images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A system call on a file or directory failed.
    #[error("{op} {}", file.display())]
    Io {
        op: &'static str,
        file: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The file has no bytes at all.
    #[error("read {}: offset 0: empty file", file.display())]
    Empty { file: PathBuf },

    /// The file ends before a structure it must contain.
    #[error("read {}: offset {offset}: truncated: {what}", file.display())]
    Truncated {
        file: PathBuf,
        offset: u64,
        what: String,
    },

    /// A magic number is not the one expected there.
    #[error("read {}: offset {offset}: {what}", file.display())]
    BadMagic {
        file: PathBuf,
        offset: u64,
        what: String,
    },

    /// The file holds another kind than its name or the caller says.
    #[error("read {}: offset {offset}: file holds {found} but {expected} was expected ({why})", file.display())]
    KindMismatch {
        file: PathBuf,
        offset: u64,
        found: String,
        expected: String,
        why: &'static str,
    },

    /// The format major version is newer than this build reads.
    #[error(
        "read {}: offset {offset}: format {}.{} is newer than this crhook reads ({}.{})",
        file.display(), found.0, found.1, supported.0, supported.1
    )]
    TooNew {
        file: PathBuf,
        offset: u64,
        found: (u32, u32),
        supported: (u16, u16),
    },

    /// A size or count is over a hard limit (checked before anything is allocated).
    #[error("read {}: offset {offset}: {what} {value} exceeds limit {limit}", file.display())]
    Limit {
        file: PathBuf,
        offset: u64,
        what: &'static str,
        value: u64,
        limit: u64,
    },

    /// The stored crc32c does not match the bytes.
    #[error(
        "read {}: offset {offset}: checksum mismatch: stored crc32c 0x{stored:08x}, computed 0x{computed:08x}",
        file.display()
    )]
    Checksum {
        file: PathBuf,
        offset: u64,
        stored: u32,
        computed: u32,
    },

    /// The framing is inconsistent (lengths, counts, trailer).
    #[error("read {}: offset {offset}: {what}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        what: String,
    },

    /// An entry's bytes are not a valid protobuf message of the kind.
    #[error("read {}: offset {offset}: entry {index}: invalid {message}", file.display())]
    Decode {
        file: PathBuf,
        offset: u64,
        index: u64,
        message: &'static str,
        #[source]
        source: prost::DecodeError,
    },

    /// A file does not agree with what the inventory says about it.
    #[error("verify {}: {what}", file.display())]
    Inventory { file: PathBuf, what: String },

    /// A directory is not (or not only) a crhook image directory.
    #[error("{op} {}: {what}", dir.display())]
    Directory {
        op: &'static str,
        dir: PathBuf,
        what: String,
    },

    /// An entry cannot be framed (over the u32 length a frame can carry).
    #[error("write {}: entry {index}: {len} bytes exceeds the largest frame ({max} bytes)", file.display())]
    EntryTooLarge {
        file: PathBuf,
        index: u64,
        len: u64,
        max: u64,
    },

    /// The caller asked for something the image API does not do.
    #[error("{op} {}: {what}", file.display())]
    Usage {
        op: &'static str,
        file: PathBuf,
        what: String,
    },

    /// A file is not what an image file may be (a symlink, a FIFO, a device), or a directory
    /// is not safe to write in: refused before anything is read or written.
    #[error("{op} {}: {what}", file.display())]
    Unsafe {
        op: &'static str,
        file: PathBuf,
        what: String,
    },

    /// The host key file is missing what makes it safe to trust.
    #[error("host key {}: {what}", file.display())]
    Key { file: PathBuf, what: String },

    /// The image is not sealed with this host's key, and the caller required it.
    #[error("{op} {}: image {trust}", dir.display())]
    Untrusted {
        op: &'static str,
        dir: PathBuf,
        trust: crate::seal::Trust,
    },

    /// The parent of a child image is missing, changed since the child was written, damaged,
    /// or of another namespace: the child cannot be read without it.
    #[error("open image {}: parent image {}: {what}", child.display(), parent.display())]
    Parent {
        child: PathBuf,
        parent: PathBuf,
        what: String,
        #[source]
        source: Option<Box<ImageError>>,
    },

    /// An ext-file plugin failed or is missing.
    #[error("plugin {plugin}: {op}")]
    Plugin {
        plugin: String,
        op: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

impl ImageError {
    pub(crate) fn io(op: &'static str, file: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            file: file.into(),
            source,
        }
    }

    /// The byte offset the error points at, when it is about a position in a file.
    pub fn offset(&self) -> Option<u64> {
        match self {
            ImageError::Empty { .. } => Some(0),
            ImageError::Truncated { offset, .. }
            | ImageError::BadMagic { offset, .. }
            | ImageError::KindMismatch { offset, .. }
            | ImageError::TooNew { offset, .. }
            | ImageError::Limit { offset, .. }
            | ImageError::Checksum { offset, .. }
            | ImageError::Corrupt { offset, .. }
            | ImageError::Decode { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// A plugin error with a cause, for plugin implementations.
    pub fn plugin(
        plugin: impl Into<String>,
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        ImageError::Plugin {
            plugin: plugin.into(),
            op: op.into(),
            source: Some(source.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_lowercase_line() {
        let e = ImageError::Limit {
            file: "links.img".into(),
            offset: 24,
            what: "entry length",
            value: 4_294_967_295,
            limit: 67_108_864,
        };
        assert_eq!(
            e.to_string(),
            "read links.img: offset 24: entry length 4294967295 exceeds limit 67108864"
        );
        let e = ImageError::TooNew {
            file: "links.img".into(),
            offset: 8,
            found: (2, 0),
            supported: (1, 0),
        };
        assert_eq!(
            e.to_string(),
            "read links.img: offset 8: format 2.0 is newer than this crhook reads (1.0)"
        );
        assert_eq!(e.offset(), Some(8));
    }

    #[test]
    fn refusals_read_as_one_line() {
        let e = ImageError::Untrusted {
            op: "restore outside the target",
            dir: "/img".into(),
            trust: crate::seal::Trust::Unsealed,
        };
        assert_eq!(
            e.to_string(),
            "restore outside the target /img: image not sealed (no seal.img)"
        );
        let e = ImageError::Unsafe {
            op: "open",
            file: "/img/inventory.img".into(),
            what: "is a fifo, not a regular file; refusing it".into(),
        };
        assert_eq!(
            e.to_string(),
            "open /img/inventory.img: is a fifo, not a regular file; refusing it"
        );
    }

    #[test]
    fn io_cause_is_a_source_not_repeated() {
        let e = ImageError::io("open", "x.img", io::Error::from_raw_os_error(2));
        assert_eq!(e.to_string(), "open x.img");
        let src = std::error::Error::source(&e).map(ToString::to_string);
        assert!(src.is_some_and(|s| s.contains("os error 2")));
    }
}
