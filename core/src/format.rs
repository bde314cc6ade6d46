//! The byte layout of an image file (format 1.3), its version policy and the hard limits a
//! reader enforces before it allocates anything.
//!
//! ```text
//! offset  size  field
//! 0       4     CRHOOK_MAGIC      u32 LE  ("\x89CRH")
//! 4       4     kind magic        u32 LE  (magic.rs, e.g. "LINK")
//! 8       2     format major      u16 LE
//! 10      2     format minor      u16 LE
//! 12      ...   entries: u32 LE length, then that many bytes (a protobuf message or raw payload)
//! N-16    4     TRAILER_MAGIC     u32 LE  ("\x89END")
//! N-12    8     entry count       u64 LE
//! N-4     4     crc32c            u32 LE  over bytes 0 .. N-4
//! ```
//!
//! The trailer sits at a fixed distance from the end, so a reader finds it without walking the
//! entries, checks the checksum over the whole file first, and then walks entries knowing
//! exactly where they stop. docs/image-format.md is the prose version of this module.
//!
//! Version policy: a reader accepts any minor version of a major it knows (a newer minor only
//! adds fields or kinds an older reader may ignore) and every major it ever shipped; it refuses
//! a newer major, naming both versions.

/// The format this build writes for a whole image: (major, minor). Independent of the
/// program version.
pub const FORMAT_VERSION: (u16, u16) = (1, 3);

/// The format of a child image's `inventory.img` (an image written against a parent, whose
/// unchanged kinds live in the parent). Its files are framed as in major 1; the major differs
/// because a reader that knows no parents must refuse a child rather than read it as an
/// image whose unchanged kinds are empty, and readers refuse only a newer major.
pub const CHILD_FORMAT_VERSION: (u16, u16) = (2, 0);

/// The newest format this build reads, as errors about newer files name it.
pub const NEWEST_READABLE: (u16, u16) = CHILD_FORMAT_VERSION;

/// Format majors this build reads; each keeps golden files under core/tests/golden/.
pub const READABLE_MAJORS: &[u16] = &[1, 2];

/// Bytes before the first entry: two magics and the version.
pub const HEADER_LEN: usize = 12;

/// Bytes after the last entry: trailer magic, entry count, crc32c.
pub const TRAILER_LEN: usize = 16;

/// Bytes of each entry's length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;

/// The length an encoder writes for an entry too large to frame (over 4 GiB - 2). Readers
/// reject it because no limit may reach it: see [`Limits::effective_max_entry`].
pub const OVERSIZE_ENTRY: u32 = u32::MAX;

/// Hard limits a reader checks before allocating: one hostile length must not make crhook
/// allocate gigabytes or loop for hours. crhook runs as root outside the container's memory
/// cgroup, so the memory budgets are what keeps a hostile image from taking the host's memory.
///
/// Memory is budgeted before it is allocated: a file's size before it is read, then per entry
/// the bytes decoding will allocate, computed by walking the entry's wire bytes with the
/// message schema (`budget.rs`; protobuf can turn 2 bytes of an empty repeated element into a
/// struct of a hundred bytes and more, and prost has no limit hook).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest single entry, in bytes.
    pub max_entry: u32,
    /// Most entries in one file.
    pub max_entries: u64,
    /// Largest file, in bytes.
    pub max_file: u64,
    /// Most elements of repeated and map fields in one file, at every nesting level.
    pub max_repeated: u64,
    /// Memory one file may take while decoded: its bytes plus what its entries decode to.
    pub max_file_memory: u64,
    /// Memory everything read through one opened image may take, decoded.
    pub max_total_memory: u64,
}

impl Limits {
    /// 64 MiB per entry, 4 million entries and 256 MiB per file, 16 million repeated
    /// elements per file, 512 MiB of memory per file and 1 GiB per image: above what a
    /// namespace produces (a million routes is ~60 MiB on disk and ~390 MiB decoded; 100,000
    /// routes and 240,000 sysctls, the benchmarks' L size, ~100 MiB), well below what hurts a
    /// machine that runs containers. Embedders with bigger namespaces raise them.
    pub const DEFAULT: Limits = Limits {
        max_entry: 64 << 20,
        max_entries: 4_000_000,
        max_file: 256 << 20,
        max_repeated: 16_000_000,
        max_file_memory: 512 << 20,
        max_total_memory: 1 << 30,
    };

    /// `max_entry`, kept below [`OVERSIZE_ENTRY`] so the oversize mark is always refused.
    pub fn effective_max_entry(&self) -> u32 {
        self.max_entry.min(OVERSIZE_ENTRY - 1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// "1.0"
pub fn version_string(v: (u16, u16)) -> String {
    format!("{}.{}", v.0, v.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let l = Limits::default();
        assert_eq!(l.max_entry, 67_108_864);
        assert_eq!(l.max_entries, 4_000_000);
        assert_eq!(l.max_file, 268_435_456);
        assert!(l.max_file_memory <= l.max_total_memory);
        let all = Limits {
            max_entry: u32::MAX,
            ..l
        };
        assert_eq!(all.effective_max_entry(), u32::MAX - 1);
        assert!(READABLE_MAJORS.contains(&FORMAT_VERSION.0));
        assert!(READABLE_MAJORS.contains(&CHILD_FORMAT_VERSION.0));
        assert!(NEWEST_READABLE >= FORMAT_VERSION);
        assert_eq!(version_string(FORMAT_VERSION), "1.3");
    }
}
