//! The saved sysctls as restore holds them: every key's path components and value in one
//! text buffer, each string found by its end offset.
//!
//! Why not `Vec<crhook_proto::Sysctl>`: decoded by prost, each key is six allocations (the
//! struct's path `Vec` and five `String`s), some 320 bytes of heap. At 2,000 links an image
//! holds 240,000 keys: 73 MiB decoded from a 10 MiB file, held from the read to the last
//! sysctl written, across the firewall transaction and the routes. Here a key is its text
//! (~30 bytes) and one `u32` per string, and the whole is three allocations. prost has no
//! borrowed decode of `repeated string`, so [`Saved::decode`] walks each entry with prost's
//! own wire primitives, and leaves any entry it does not take as is to prost, whose error (or
//! result) then stands.

use crhook_core::{Encoded, ImageError};
use crhook_proto as pb;
use crhook_proto::prost::encoding::WireType;
use crhook_proto::prost::encoding::{
    decode_key, decode_varint, encode_varint, skip_field, DecodeContext,
};

/// Saved sysctl keys, in image order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Saved {
    text: String,
    /// the end offset in `text` of every string: per key its path components, then its value
    ends: Vec<u32>,
    /// per key, the index in `ends` of its first string; then one past the last key's
    keys: Vec<u32>,
}

/// One saved key, borrowed from [`Saved`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Key<'a> {
    text: &'a str,
    /// where the key's first string starts in `text`
    start: u32,
    /// the ends of the path components, then of the value
    ends: &'a [u32],
}

impl<'a> Key<'a> {
    /// How many path components the key has.
    pub fn len(&self) -> usize {
        self.ends.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// String `i` of the key (its value is string `len()`).
    fn string(&self, i: usize) -> &'a str {
        let start = match i {
            0 => self.start,
            _ => self.ends.get(i - 1).copied().unwrap_or(self.start),
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// Path component `i`, if there is one.
    pub fn part(&self, i: usize) -> Option<&'a str> {
        (i < self.len()).then(|| self.string(i))
    }

    /// The path components below /proc/sys/net.
    pub fn path(self) -> impl Iterator<Item = &'a str> {
        (0..self.len()).map(move |i| self.string(i))
    }

    pub fn last(&self) -> Option<&'a str> {
        self.len().checked_sub(1).map(|i| self.string(i))
    }

    pub fn value(&self) -> &'a str {
        self.string(self.len())
    }

    /// Appends the key as a `crhook.Sysctl` message, byte for byte as prost encodes one:
    /// each path component as field 1, then the value as field 2 unless it is empty.
    pub fn encode(self, buf: &mut Vec<u8>) {
        let mut field = |tag: u8, s: &str| {
            buf.push(tag);
            encode_varint(s.len() as u64, buf);
            buf.extend_from_slice(s.as_bytes());
        };
        for c in self.path() {
            field(0x0a, c);
        }
        if !self.value().is_empty() {
            field(0x12, self.value());
        }
    }

    pub fn to_pb(self) -> pb::Sysctl {
        pb::Sysctl {
            path: self.path().map(String::from).collect(),
            value: self.value().to_string(),
        }
    }
}

impl Saved {
    pub fn len(&self) -> usize {
        self.keys.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Key `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<Key<'_>> {
        let first = *self.keys.get(i)? as usize;
        let next = *self.keys.get(i + 1)? as usize;
        let start = match first {
            0 => 0,
            f => self.ends.get(f - 1).copied().unwrap_or(0),
        };
        Some(Key {
            text: &self.text,
            start,
            ends: self.ends.get(first..next)?,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Key<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The keys as protobuf messages (for what compares whole snapshots).
    pub fn to_pb(&self) -> Vec<pb::Sysctl> {
        self.iter().map(|k| k.to_pb()).collect()
    }

    /// Appends one string; false when the text would pass 4 GiB (offsets are 32 bits).
    fn push_str(&mut self, s: &str) -> bool {
        self.text.push_str(s);
        match u32::try_from(self.text.len()) {
            Ok(end) => {
                self.ends.push(end);
                true
            }
            Err(_) => false,
        }
    }

    /// Ends the key whose strings were pushed since the last one ended.
    fn end_key(&mut self) -> bool {
        if self.keys.is_empty() {
            self.keys.push(0);
        }
        match u32::try_from(self.ends.len()) {
            Ok(n) => {
                self.keys.push(n);
                true
            }
            Err(_) => false,
        }
    }

    /// Appends a key; false when the text would pass 4 GiB.
    pub fn push<'s>(&mut self, path: impl IntoIterator<Item = &'s str>, value: &str) -> bool {
        let fits = path.into_iter().all(|c| self.push_str(c));
        fits && self.push_str(value) && self.end_key()
    }

    /// Room for `keys` more keys of four components, without reallocating.
    pub fn reserve(&mut self, keys: usize) {
        self.keys.reserve(keys.saturating_add(1));
        self.ends.reserve(keys.saturating_mul(5));
        self.text.reserve(keys.saturating_mul(32));
    }

    /// Appends the keys of `other`, in its order; false when the text would pass 4 GiB.
    pub fn append(&mut self, other: &Saved) -> bool {
        let Ok(shift) = u32::try_from(self.text.len()) else {
            return false;
        };
        if u32::try_from(self.text.len() + other.text.len()).is_err() {
            return false;
        }
        let Ok(base) = u32::try_from(self.ends.len()) else {
            return false;
        };
        self.text.push_str(&other.text);
        self.ends.extend(other.ends.iter().map(|e| e + shift));
        if self.keys.is_empty() {
            self.keys.push(0);
        }
        self.keys
            .extend(other.keys.iter().skip(1).map(|k| k.saturating_add(base)));
        true
    }

    /// The keys as a sysctls image file, and how many it holds; an error names the first key
    /// too large for an image entry.
    pub fn encode_file(&self) -> Result<(Vec<u8>, u64), String> {
        let mut e = crhook_core::frame::Encoder::new(crhook_core::Kind::Sysctls);
        let mut buf = Vec::new();
        for k in self.iter() {
            buf.clear();
            k.encode(&mut buf);
            if e.push_raw(&buf).is_err() {
                let path: Vec<&str> = k.path().collect();
                return Err(format!(
                    "sysctl {}: too large for an image entry",
                    path.join("/")
                ));
            }
        }
        let n = e.count();
        Ok((e.finish(), n))
    }

    pub fn from_pb(keys: &[pb::Sysctl]) -> Saved {
        let mut out = Saved::default();
        out.text.reserve(
            keys.iter()
                .map(|k| k.value.len() + k.path.iter().map(String::len).sum::<usize>())
                .sum(),
        );
        for k in keys {
            out.push(k.path.iter().map(String::as_str), &k.value);
        }
        out
    }

    /// Decodes the entries of a sysctls file, checked already (`Encoded::check`).
    pub fn decode(file: &Encoded) -> Result<Saved, ImageError> {
        let n = file.len();
        let bytes: usize = (0..n)
            .filter_map(|i| file.payload(i))
            .map(<[u8]>::len)
            .sum();
        let mut out = Saved {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(n.saturating_mul(5)),
            keys: Vec::with_capacity(n + 1),
        };
        out.keys.push(0);
        for i in 0..n {
            let mark = (out.text.len(), out.ends.len());
            let taken = file.payload(i).is_some_and(|p| out.take(p));
            if !taken {
                // prost's decode says what is wrong with the entry, or takes it
                out.text.truncate(mark.0);
                out.ends.truncate(mark.1);
                let k: pb::Sysctl = file.decode(i)?;
                if !out.push(k.path.iter().map(String::as_str), &k.value) {
                    return Err(ImageError::Corrupt {
                        file: file.file().to_path_buf(),
                        offset: 0,
                        what: format!("entry {i}: the keys' text passes 4 GiB"),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Appends the key encoded in `p` (a `crhook.Sysctl`: path = 1, value = 2, any other
    /// field skipped, the last value standing); false when `p` is not one this walk takes.
    fn take(&mut self, mut p: &[u8]) -> bool {
        let mut value: Option<&str> = None;
        while !p.is_empty() {
            let Ok((tag, wire)) = decode_key(&mut p) else {
                return false;
            };
            match (tag, wire) {
                (1 | 2, WireType::LengthDelimited) => {
                    let Some(s) = length_delimited(&mut p) else {
                        return false;
                    };
                    let Ok(s) = std::str::from_utf8(s) else {
                        return false;
                    };
                    if tag == 2 {
                        value = Some(s);
                    } else if !self.push_str(s) {
                        return false;
                    }
                }
                (1 | 2, _) => return false,
                _ => {
                    if skip_field(wire, tag, &mut p, DecodeContext::default()).is_err() {
                        return false;
                    }
                }
            }
        }
        self.push_str(value.unwrap_or_default()) && self.end_key()
    }
}

/// The bytes of a length-delimited field, `p` moved past them.
fn length_delimited<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = usize::try_from(decode_varint(p).ok()?).ok()?;
    let (s, rest) = (p.get(..len)?, p.get(len..)?);
    *p = rest;
    Some(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crhook_core::Kind;
    use crhook_proto::Message;

    use crate::sysctl::test_key as key;

    #[test]
    fn keys_read_back_as_pushed() {
        let keys = vec![
            key("ipv4/conf/eth0.100/rp_filter", "2"),
            key("core/somaxconn", "4096"),
            key("ipv4/ip_local_port_range", "32768\t60999"),
            pb::Sysctl {
                path: vec![],
                value: String::new(),
            },
        ];
        let s = Saved::from_pb(&keys);
        assert_eq!(s.len(), 4);
        assert_eq!(s.to_pb(), keys);
        let k = s.get(0).unwrap();
        assert_eq!(k.len(), 4);
        assert_eq!(k.part(2), Some("eth0.100"));
        assert_eq!(k.part(4), None);
        assert_eq!(k.last(), Some("rp_filter"));
        assert_eq!(k.value(), "2");
        let empty = s.get(3).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.last(), None);
        assert_eq!(empty.value(), "");
        assert!(s.get(4).is_none());
        assert!(Saved::default().is_empty());
        assert_eq!(Saved::default().iter().count(), 0);
    }

    #[test]
    fn keys_encode_as_prost_does_and_append_keeps_order() {
        let keys = vec![
            key("ipv4/conf/eth0.100/rp_filter", "2"),
            key("core/somaxconn", ""),
            pb::Sysctl {
                path: vec![],
                value: "x".repeat(200),
            },
            pb::Sysctl {
                path: vec![String::new(), "a".into()],
                value: String::new(),
            },
        ];
        let s = Saved::from_pb(&keys);
        for (k, want) in s.iter().zip(&keys) {
            let mut buf = Vec::new();
            k.encode(&mut buf);
            assert_eq!(buf, want.encode_to_vec(), "{want:?}");
        }
        let (file, n) = s.encode_file().unwrap();
        assert_eq!(n, 4);
        let back: Vec<pb::Sysctl> = crhook_core::decode_file(
            std::path::Path::new("sysctls.img"),
            Kind::Sysctls,
            &file,
            &crhook_core::Limits::default(),
        )
        .unwrap();
        assert_eq!(back, keys);
        let mut joined = Saved::from_pb(&keys[..1]);
        assert!(joined.append(&Saved::from_pb(&keys[1..3])));
        assert!(joined.append(&Saved::default()));
        assert!(joined.append(&Saved::from_pb(&keys[3..])));
        assert_eq!(joined, s);
        let mut empty = Saved::default();
        assert!(empty.append(&s));
        assert_eq!(empty, s);
    }

    /// A file of `entries` as restore reads it: written into an image, checked, not decoded.
    fn encoded(entries: &[Vec<u8>]) -> Encoded {
        let raw: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
        let tmp = std::env::temp_dir().join(format!(
            "crhook-saved-{}-{}",
            std::process::id(),
            entries.len()
        ));
        let img = tmp.join("img");
        let mut w = crhook_core::ImageWriter::create(&img).unwrap();
        w.write_raw(Kind::Sysctls, &raw).unwrap();
        w.finish(Default::default(), Vec::new()).unwrap();
        let r = crhook_core::ImageDir::open(&img).and_then(|d| d.read_encoded(Kind::Sysctls));
        let _ = std::fs::remove_dir_all(&tmp);
        r.unwrap()
    }

    #[test]
    fn decode_matches_prost_on_what_it_takes_and_what_it_leaves() {
        let plain = key("ipv6/conf/v.1/accept_dad", "0").encode_to_vec();
        // value before path, a value given twice (the last stands), an unknown varint
        // field and an unknown length-delimited one, as a later minor version may write
        let mut odd = Vec::new();
        odd.extend([0x12, 1, b'7']);
        odd.extend([0x0a, 4]);
        odd.extend(b"core");
        odd.extend([0x18, 0x96, 0x01]);
        odd.extend([0x22, 2, b'x', b'y']);
        odd.extend([0x0a, 8]);
        odd.extend(b"somaxcon");
        odd.extend([0x12, 2, b'4', b'2']);
        let file = encoded(&[plain.clone(), odd.clone(), Vec::new()]);
        let s = Saved::decode(&file).unwrap();
        let by_prost: Vec<pb::Sysctl> = [plain, odd, Vec::new()]
            .iter()
            .map(|b| pb::Sysctl::decode(b.as_slice()).unwrap())
            .collect();
        assert_eq!(s.to_pb(), by_prost);
        assert_eq!(s.get(1).unwrap().value(), "42");
        // a component that is not UTF-8: prost's error, naming the file and the entry
        let mut bad = Vec::new();
        bad.extend([0x0a, 2, 0xff, 0xfe]);
        let file = encoded(&[key("core/somaxconn", "1").encode_to_vec(), bad]);
        let e = Saved::decode(&file).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("sysctls.img"), "{shown}");
        assert!(shown.contains("entry 1: invalid crhook.Sysctl"), "{shown}");
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert!(cause.is_some_and(|c| c.contains("UTF-8")), "{e:?}");
    }
}
