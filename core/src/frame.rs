//! Framing of one image file: building the bytes (header, length-prefixed entries, trailer) and
//! checking them back, entry by entry, without knowing the protobuf message inside.
//!
//! Parsing never indexes past a length it has not checked and never allocates from a length it
//! read: every size is compared with the limits and with the bytes actually present first.

use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::format::{
    Limits, FORMAT_VERSION, FRAME_PREFIX_LEN, HEADER_LEN, NEWEST_READABLE, OVERSIZE_ENTRY,
    READABLE_MAJORS, TRAILER_LEN,
};
use crate::magic::{hex, Kind, CRHOOK_MAGIC, TRAILER_MAGIC};

/// What the first 12 bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub major: u16,
    pub minor: u16,
}

/// A file whose header, trailer and checksum were checked; entries not yet walked.
#[derive(Debug)]
pub struct Framed<'a> {
    pub header: Header,
    /// Entry count the trailer promises.
    pub count: u64,
    /// crc32c stored in the trailer.
    pub crc: u32,
    file: &'a Path,
    bytes: &'a [u8],
    body_end: usize,
    limits: Limits,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

fn off(n: usize) -> u64 {
    // usize is at most 64 bits on every target Rust supports.
    n as u64
}

fn p(file: &Path) -> PathBuf {
    file.to_path_buf()
}

/// Reads the kind from the header alone (for `show`, which learns the kind from the file).
pub fn peek_kind(file: &Path, bytes: &[u8]) -> Result<Kind, ImageError> {
    check_magics(file, bytes, None).map(|(kind, _)| kind)
}

/// A file too short to hold the header.
fn short_header(file: &Path, len: usize) -> ImageError {
    ImageError::Truncated {
        file: p(file),
        offset: off(len),
        what: format!("file is {len} bytes, the header needs {HEADER_LEN}"),
    }
}

/// Checks the crhook magic and kind magic; returns the kind and whether the full header is
/// present.
fn check_magics(
    file: &Path,
    bytes: &[u8],
    expected: Option<Kind>,
) -> Result<(Kind, bool), ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty { file: p(file) });
    }
    if bytes.len() < 4 {
        return Err(short_header(file, bytes.len()));
    }
    let magic = le_u32(bytes, 0);
    if magic != CRHOOK_MAGIC {
        return Err(ImageError::BadMagic {
            file: p(file),
            offset: 0,
            what: format!(
                "magic {} is not the crhook magic {}: not a crhook image",
                hex(magic),
                hex(CRHOOK_MAGIC)
            ),
        });
    }
    if bytes.len() < 8 {
        return Err(short_header(file, bytes.len()));
    }
    let kind_magic = le_u32(bytes, 4);
    let Some(kind) = Kind::from_magic(kind_magic) else {
        return Err(ImageError::BadMagic {
            file: p(file),
            offset: 4,
            what: format!("unknown kind magic {}", hex(kind_magic)),
        });
    };
    if let Some(want) = expected {
        if want != kind {
            return Err(ImageError::KindMismatch {
                file: p(file),
                offset: 4,
                found: format!("{kind} (magic {})", hex(kind_magic)),
                expected: format!("{want} (magic {})", hex(want.magic())),
                why: "kind magic",
            });
        }
    }
    Ok((kind, bytes.len() >= HEADER_LEN))
}

/// Checks everything but the entries: size limit, magics, version, trailer, checksum, count.
pub fn parse<'a>(
    file: &'a Path,
    bytes: &'a [u8],
    expected: Option<Kind>,
    limits: &Limits,
) -> Result<Framed<'a>, ImageError> {
    parse_known(file, bytes, expected, limits, None)
}

/// [`parse`], with `crc` the body's crc32c when the caller has computed it already over these
/// very bytes (an image's files are checked against the inventory's crc32c when read; at L,
/// computing it again for the trailer, twice, was a tenth of the read).
pub(crate) fn parse_known<'a>(
    file: &'a Path,
    bytes: &'a [u8],
    expected: Option<Kind>,
    limits: &Limits,
    crc: Option<u32>,
) -> Result<Framed<'a>, ImageError> {
    if off(bytes.len()) > limits.max_file {
        return Err(ImageError::Limit {
            file: p(file),
            offset: 0,
            what: "file size",
            value: off(bytes.len()),
            limit: limits.max_file,
        });
    }
    let (kind, full) = check_magics(file, bytes, expected)?;
    if !full {
        return Err(short_header(file, bytes.len()));
    }
    let header = Header {
        kind,
        major: le_u16(bytes, 8),
        minor: le_u16(bytes, 10),
    };
    if header.major > NEWEST_READABLE.0 {
        return Err(ImageError::TooNew {
            file: p(file),
            offset: 8,
            found: (u32::from(header.major), u32::from(header.minor)),
            supported: NEWEST_READABLE,
        });
    }
    if !READABLE_MAJORS.contains(&header.major) {
        return Err(ImageError::Corrupt {
            file: p(file),
            offset: 8,
            what: format!(
                "format {}.{} was never written by crhook",
                header.major, header.minor
            ),
        });
    }
    // Majors 1 and 2 frame entries alike (2 marks a child image's inventory); a major with
    // another layout would get its own parse function here.
    parse_v1(file, bytes, header, limits, crc)
}

fn parse_v1<'a>(
    file: &'a Path,
    bytes: &'a [u8],
    header: Header,
    limits: &Limits,
    crc: Option<u32>,
) -> Result<Framed<'a>, ImageError> {
    let len = bytes.len();
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(ImageError::Truncated {
            file: p(file),
            offset: off(len),
            what: format!(
                "file is {len} bytes, header and trailer need {}",
                HEADER_LEN + TRAILER_LEN
            ),
        });
    }
    let body_end = len - TRAILER_LEN;
    let trailer_magic = le_u32(bytes, body_end);
    if trailer_magic != TRAILER_MAGIC {
        return Err(ImageError::Truncated {
            file: p(file),
            offset: off(body_end),
            what: format!(
                "no trailer: found {} where the trailer magic {} belongs (file cut short or corrupt)",
                hex(trailer_magic),
                hex(TRAILER_MAGIC)
            ),
        });
    }
    let crc_at = len - 4;
    let stored = le_u32(bytes, crc_at);
    let computed = crc.unwrap_or_else(|| body_crc(bytes));
    if stored != computed {
        return Err(ImageError::Checksum {
            file: p(file),
            offset: off(crc_at),
            stored,
            computed,
        });
    }
    let count = le_u64(bytes, body_end + 4);
    if count > limits.max_entries {
        return Err(ImageError::Limit {
            file: p(file),
            offset: off(body_end + 4),
            what: "entry count",
            value: count,
            limit: limits.max_entries,
        });
    }
    let body = off(body_end - HEADER_LEN);
    let room = body / off(FRAME_PREFIX_LEN);
    if count > room {
        return Err(ImageError::Corrupt {
            file: p(file),
            offset: off(body_end + 4),
            what: format!(
                "trailer counts {count} entries but {body} bytes of entries hold at most {room}"
            ),
        });
    }
    Ok(Framed {
        header,
        count,
        crc: stored,
        file,
        bytes,
        body_end,
        limits: *limits,
    })
}

impl<'a> Framed<'a> {
    /// Walks every entry, calling `f(index, offset_of_length_prefix, payload)`. Checks each
    /// length against the limit and the bytes left, and that the count matches the trailer.
    pub fn for_each<F>(&self, mut f: F) -> Result<(), ImageError>
    where
        F: FnMut(u64, u64, &'a [u8]) -> Result<(), ImageError>,
    {
        let max = self.limits.effective_max_entry();
        let mut at = HEADER_LEN;
        let mut index: u64 = 0;
        while at < self.body_end {
            let left = self.body_end - at;
            if left < FRAME_PREFIX_LEN {
                return Err(ImageError::Corrupt {
                    file: p(self.file),
                    offset: off(at),
                    what: format!(
                        "{left} stray bytes before the trailer, too few for an entry length"
                    ),
                });
            }
            if index >= self.count {
                return Err(ImageError::Corrupt {
                    file: p(self.file),
                    offset: off(at),
                    what: format!("more entries than the {} the trailer counts", self.count),
                });
            }
            let n = le_u32(self.bytes, at);
            if n > max {
                return Err(ImageError::Limit {
                    file: p(self.file),
                    offset: off(at),
                    what: "entry length",
                    value: u64::from(n),
                    limit: u64::from(max),
                });
            }
            // u32 always fits in usize on the 32- and 64-bit targets crhook builds for.
            let n = n as usize;
            let start = at + FRAME_PREFIX_LEN;
            let room = self.body_end - start;
            if n > room {
                return Err(ImageError::Truncated {
                    file: p(self.file),
                    offset: off(at),
                    what: format!(
                        "entry {index} length {n} runs past the end of the entries ({room} bytes left before offset {})",
                        self.body_end
                    ),
                });
            }
            let payload = self.bytes.get(start..start + n).unwrap_or_default();
            f(index, off(at), payload)?;
            index += 1;
            at = start + n;
        }
        if index != self.count {
            return Err(ImageError::Corrupt {
                file: p(self.file),
                offset: off(self.body_end + 4),
                what: format!(
                    "trailer counts {} entries, the file holds {index}",
                    self.count
                ),
            });
        }
        Ok(())
    }
}

/// Builds one file in memory.
pub struct Encoder {
    buf: Vec<u8>,
    count: u64,
}

impl Encoder {
    pub fn new(kind: Kind) -> Self {
        Self::with_version(kind, FORMAT_VERSION)
    }

    /// A header with another version: for tests of the version policy.
    pub fn with_version(kind: Kind, version: (u16, u16)) -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(&CRHOOK_MAGIC.to_le_bytes());
        buf.extend_from_slice(&kind.magic().to_le_bytes());
        buf.extend_from_slice(&version.0.to_le_bytes());
        buf.extend_from_slice(&version.1.to_le_bytes());
        Encoder { buf, count: 0 }
    }

    fn frame_len(len: usize) -> Option<u32> {
        u32::try_from(len).ok().filter(|&n| n < OVERSIZE_ENTRY)
    }

    /// Appends one message; `Err(len)` when it is too large to frame (nothing is appended).
    pub fn push_message<M: prost::Message>(&mut self, m: &M) -> Result<(), usize> {
        let len = m.encoded_len();
        let n = Self::frame_len(len).ok_or(len)?;
        // room for the trailer too: `finish` growing a full 22 MiB buffer doubled it
        self.buf.reserve(FRAME_PREFIX_LEN + len + TRAILER_LEN);
        let mark = self.buf.len();
        self.buf.extend_from_slice(&n.to_le_bytes());
        if m.encode(&mut self.buf).is_err() {
            // Vec<u8> always has room; keep the buffer consistent if that ever changes.
            self.buf.truncate(mark);
            return Err(len);
        }
        self.count += 1;
        Ok(())
    }

    /// Appends one raw payload; `Err(len)` when it is too large to frame.
    pub fn push_raw(&mut self, payload: &[u8]) -> Result<(), usize> {
        let n = Self::frame_len(payload.len()).ok_or(payload.len())?;
        self.buf.extend_from_slice(&n.to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.count += 1;
        Ok(())
    }

    /// Where the file stands: what [`Encoder::truncate`] goes back to.
    pub fn mark(&self) -> (usize, u64) {
        (self.buf.len(), self.count)
    }

    /// Drops every entry appended since `mark`.
    pub fn truncate(&mut self, mark: (usize, u64)) {
        self.buf.truncate(mark.0);
        self.count = mark.1;
    }

    /// Entries so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends the mark of an entry that could not be framed; every reader rejects it.
    pub fn push_oversize_mark(&mut self) {
        self.buf.extend_from_slice(&OVERSIZE_ENTRY.to_le_bytes());
        self.count += 1;
    }

    /// Appends the trailer and returns the file.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&TRAILER_MAGIC.to_le_bytes());
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        let crc = crc32c::crc32c(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// The checksum a file's trailer holds: crc32c of every byte but the last four. Inventories
/// record this value (a crc32c over the whole file, checksum included, would be the same
/// constant for every intact file: that is how CRCs work).
pub fn body_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(
        bytes
            .get(..bytes.len().saturating_sub(4))
            .unwrap_or_default(),
    )
}

/// Recomputes the trailer checksum in place, for tests and the fuzzer (which must reach past the
/// checksum to exercise the entry walk). Does nothing to a buffer shorter than a trailer.
pub fn fix_checksum(bytes: &mut [u8]) {
    let len = bytes.len();
    if len < TRAILER_LEN {
        return;
    }
    let crc = body_crc(bytes);
    if let Some(s) = bytes.get_mut(len - 4..) {
        s.copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crc32c handed in is the one the trailer is checked against: it stands for the body's.
    #[test]
    fn a_known_crc_is_checked_against_the_trailer() {
        let mut w = Encoder::new(Kind::Links);
        assert!(w.push_raw(b"abc").is_ok());
        let b = w.finish();
        let (file, lim) = (Path::new("links.img"), Limits::default());
        let crc = body_crc(&b);
        assert!(parse_known(file, &b, Some(Kind::Links), &lim, Some(crc)).is_ok());
        let r = parse_known(file, &b, Some(Kind::Links), &lim, Some(crc ^ 1));
        assert!(
            matches!(r, Err(ImageError::Checksum { computed, .. }) if computed == crc ^ 1),
            "{r:?}"
        );
    }

    fn walk(bytes: &[u8]) -> Result<Vec<(u64, u64, Vec<u8>)>, ImageError> {
        let f = parse(Path::new("t.img"), bytes, None, &Limits::default())?;
        let mut v = Vec::new();
        f.for_each(|i, o, b| {
            v.push((i, o, b.to_vec()));
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn empty_file_layout() {
        let b = Encoder::new(Kind::Links).finish();
        assert_eq!(b.len(), HEADER_LEN + TRAILER_LEN);
        assert_eq!(&b[..4], b"\x89CRH");
        assert_eq!(&b[4..8], b"LINK");
        assert_eq!(&b[8..12], &[1, 0, 3, 0]);
        assert_eq!(&b[12..16], b"\x89END");
        assert_eq!(&b[16..24], &[0; 8]);
        assert_eq!(walk(&b).map(|v| v.len()).ok(), Some(0));
    }

    #[test]
    fn raw_entries_round_trip_with_offsets() -> Result<(), ImageError> {
        let mut e = Encoder::new(Kind::Firewall);
        assert_eq!(e.push_raw(b"abc"), Ok(()));
        assert_eq!(e.push_raw(b""), Ok(()));
        assert_eq!(e.push_raw(b"xy"), Ok(()));
        let b = e.finish();
        let v = walk(&b)?;
        assert_eq!(
            v,
            vec![
                (0, 12, b"abc".to_vec()),
                (1, 19, vec![]),
                (2, 23, b"xy".to_vec())
            ]
        );
        Ok(())
    }

    #[test]
    fn oversize_mark_is_refused() {
        let mut e = Encoder::new(Kind::Firewall);
        e.push_oversize_mark();
        let b = e.finish();
        let err = walk(&b).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("read t.img: offset 12: entry length 4294967295 exceeds limit 67108864")
        );
    }

    #[test]
    fn count_larger_than_room_is_refused_before_walking() {
        let mut b = Encoder::new(Kind::Links).finish();
        b[16..24].copy_from_slice(&1000u64.to_le_bytes());
        fix_checksum(&mut b);
        let err = walk(&b).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("offset 16: trailer counts 1000 entries"),
            "{err}"
        );
    }

    #[test]
    fn count_smaller_than_entries_is_refused() {
        let mut e = Encoder::new(Kind::Firewall);
        let _ = e.push_raw(b"a");
        let _ = e.push_raw(b"b");
        let mut b = e.finish();
        let t = b.len() - TRAILER_LEN + 4;
        b[t..t + 8].copy_from_slice(&1u64.to_le_bytes());
        fix_checksum(&mut b);
        let err = walk(&b).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("offset 17: more entries than the 1"), "{err}");
    }

    #[test]
    fn peek_kind_reads_the_header() {
        let b = Encoder::new(Kind::Routes).finish();
        assert_eq!(peek_kind(Path::new("x"), &b).ok(), Some(Kind::Routes));
    }
}
