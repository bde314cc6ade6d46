//! Memory budgets for decoding: what an entry will allocate is known before prost allocates
//! it. crhook runs as root outside the container's memory cgroup, and protobuf amplifies: an
//! empty element of a repeated message field is 2 bytes on disk and a whole struct in memory
//! (`crhook.Route`'s `multipath` turns 2 bytes into a 100-byte `NextHop` plus the growth of its
//! `Vec`), so a file within every size limit could still decode into gigabytes. prost has no
//! limit hook, and checking after decoding is too late for the entry being decoded (64 MiB of
//! empty elements is gigabytes).
//!
//! So each entry's wire bytes are walked first with the schema build.rs generates from the
//! same `.proto` files as the types (`crhook_proto::schema`): every string, bytes field,
//! repeated element and map entry is costed at its in-memory size (`size_of` of the element
//! type, `Vec` capacity after growth by doubling, malloc's per-allocation overhead, B-tree
//! nodes), and the repeated elements are counted. The walk allocates nothing and costs about a
//! third of decoding. It stops where prost would stop with an error (a bad varint, a length
//! past the end), having costed everything before that point; unknown fields are skipped as
//! prost skips them. Protobuf groups, which crhook never writes and prost skips when unknown,
//! are refused, so no input can make prost walk further than the budget did.

use std::sync::atomic::{AtomicU64, Ordering};

use crhook_proto::schema::{FieldSchema, MessageSchema, Shape};

/// Bookkeeping malloc adds to every allocation (glibc: 8 to 16 bytes).
const ALLOC_OVERHEAD: u64 = 16;

/// Deeper than any crhook message nests; prost's own recursion limit is 100.
const MAX_DEPTH: u32 = 32;

/// At most this many repeated fields of one message are tracked one by one; beyond that each
/// element is costed at the worst growth (4 slots per element).
const TRACKED: usize = 16;

/// What decoding one entry will allocate at most, and its repeated elements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// heap bytes (the entry's own struct is not included: it lives in the caller's `Vec`)
    pub heap: u64,
    /// elements of repeated and map fields, at every level
    pub repeated: u64,
}

/// The walk met something it refuses to cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A protobuf group (wire types 3 and 4): crhook never writes them.
    Group,
    /// Messages nested deeper than any crhook schema allows.
    TooDeep,
}

/// Capacity a `Vec` reaches after `n` pushes: doubling from the minimum `RawVec` allocates.
fn vec_capacity(n: u64, elem: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let min = match elem {
        1 => 8,
        2..=1024 => 4,
        _ => 1,
    };
    n.checked_next_power_of_two().unwrap_or(u64::MAX).max(min)
}

/// Heap of a string or bytes value of `len` bytes (prost reserves exactly the length).
fn alloc(len: u64) -> u64 {
    if len == 0 {
        0
    } else {
        len.max(8).saturating_add(ALLOC_OVERHEAD)
    }
}

/// Reads a varint; `None` when malformed or cut short (prost fails there too).
fn varint(b: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&byte, rest) = b.split_first()?;
        *b = rest;
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn skip<'a>(b: &mut &'a [u8], n: u64) -> Option<&'a [u8]> {
    let n = usize::try_from(n).ok()?;
    if n > b.len() {
        return None;
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Some(head)
}

/// Elements of a packed repeated scalar field of `len` bytes.
fn packed_count(shape: Shape, value: &[u8]) -> u64 {
    let n = match shape {
        Shape::Fixed32 => value.len() / 4,
        Shape::Fixed64 => value.len() / 8,
        _ => value.iter().filter(|&&b| b & 0x80 == 0).count(),
    };
    n as u64
}

/// Counts per repeated field of one message, for the capacity of each `Vec`.
struct Counts {
    slots: [(u32, u64, u64); TRACKED],
    len: usize,
    overflow: u64,
}

impl Counts {
    fn new() -> Self {
        Counts {
            slots: [(0, 0, 0); TRACKED],
            len: 0,
            overflow: 0,
        }
    }

    fn add(&mut self, f: &FieldSchema, n: u64) {
        let elem = f.elem_size as u64;
        let used = self.slots.get_mut(..self.len).unwrap_or_default();
        if let Some(s) = used.iter_mut().find(|s| s.0 == f.number) {
            s.1 = s.1.saturating_add(n);
        } else if let Some(s) = self.slots.get_mut(self.len) {
            *s = (f.number, n, elem);
            self.len += 1;
        } else {
            self.overflow = self
                .overflow
                .saturating_add(n.saturating_mul(elem).saturating_mul(4));
        }
    }

    fn heap(&self) -> u64 {
        let used = self.slots.get(..self.len).unwrap_or_default();
        used.iter().fold(self.overflow, |acc, &(_, n, elem)| {
            acc.saturating_add(vec_capacity(n, elem).saturating_mul(elem))
                .saturating_add(ALLOC_OVERHEAD)
        })
    }
}

/// The footprint of one entry of `schema`. See the module docs.
pub fn footprint(schema: &MessageSchema, bytes: &[u8]) -> Result<Footprint, Refused> {
    let mut out = Footprint::default();
    walk(schema, bytes, &mut out, 0)?;
    Ok(out)
}

fn walk(
    schema: &MessageSchema,
    mut b: &[u8],
    out: &mut Footprint,
    depth: u32,
) -> Result<(), Refused> {
    if depth > MAX_DEPTH {
        return Err(Refused::TooDeep);
    }
    let mut counts = Counts::new();
    while !b.is_empty() {
        let Some(key) = varint(&mut b) else { break };
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => varint(&mut b).map(|_| None),
            1 => skip(&mut b, 8).map(|_| None),
            5 => skip(&mut b, 4).map(|_| None),
            2 => varint(&mut b).and_then(|n| skip(&mut b, n)).map(Some),
            3 | 4 => return Err(Refused::Group),
            _ => None,
        };
        // a malformed key or value: prost stops here with an error
        let Some(value) = value else { break };
        if number == 0 {
            break;
        }
        let field = u32::try_from(number).ok().and_then(|n| schema.field(n));
        let Some(field) = field else { continue };
        cost(field, value, &mut counts, out, depth)?;
    }
    out.heap = out.heap.saturating_add(counts.heap());
    Ok(())
}

/// Adds one occurrence of `field` (its value when length-delimited).
fn cost(
    field: &FieldSchema,
    value: Option<&[u8]>,
    counts: &mut Counts,
    out: &mut Footprint,
    depth: u32,
) -> Result<(), Refused> {
    let len = value.map_or(0, |v| v.len() as u64);
    let mut add_elements = |n: u64, out: &mut Footprint| {
        counts.add(field, n);
        out.repeated = out.repeated.saturating_add(n);
    };
    match (field.shape, value) {
        (Shape::Message(sub), Some(v)) => {
            if field.map {
                // a B-tree node holds 11 entries and at least 5 once split: about 2.2 entry
                // sizes per entry, plus the node headers and edges
                let elem = field.elem_size as u64;
                out.repeated = out.repeated.saturating_add(1);
                out.heap = out
                    .heap
                    .saturating_add(elem.saturating_mul(3).saturating_add(32));
            } else if field.repeated {
                add_elements(1, out);
            }
            walk(sub, v, out, depth + 1)?;
        }
        (Shape::Bytes, Some(_)) => {
            if field.repeated {
                add_elements(1, out);
            }
            out.heap = out.heap.saturating_add(alloc(len));
        }
        (shape, Some(v)) if field.repeated => add_elements(packed_count(shape, v), out),
        (_, None) if field.repeated => add_elements(1, out),
        // a scalar held inline, or a wire type the field does not take (prost fails there)
        _ => {}
    }
    Ok(())
}

/// A memory budget shared by everything read through one opened image (the decoding threads
/// of `Snapshot::read` charge it at once, hence atomic).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes charged so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Charges `n` bytes; `Err(total)` (and nothing charged) when that would pass the limit.
    pub fn charge(&self, n: u64) -> Result<(), u64> {
        let mut total = 0;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                total = u.saturating_add(n);
                (total <= self.limit).then_some(total)
            })
            .map(|_| ())
            .map_err(|_| total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crhook_proto::schema::message;
    use crhook_proto::{NextHop, RawAttr, Route, Stats};
    use prost::Message;

    fn schema(name: &str) -> &'static MessageSchema {
        match message(name) {
            Some(s) => s,
            None => panic!("no schema for {name}"),
        }
    }

    #[test]
    fn every_kind_has_a_schema() {
        for k in crate::Kind::ALL {
            assert!(message(k.info().message).is_some(), "{k}");
        }
    }

    #[test]
    fn empty_repeated_elements_are_costed_at_their_struct_size() {
        // 1,000 empty multipath elements: 3 bytes each on the wire (field 17 takes a 2-byte key)
        let r = Route {
            multipath: vec![NextHop::default(); 1000],
            ..Default::default()
        };
        let bytes = r.encode_to_vec();
        assert_eq!(bytes.len(), 3000);
        let f = footprint(schema("crhook.Route"), &bytes).unwrap_or_default();
        assert_eq!(f.repeated, 1000);
        let want = 1024 * std::mem::size_of::<NextHop>() as u64 + ALLOC_OVERHEAD;
        assert_eq!(f.heap, want);
        assert!(
            f.heap > 30 * bytes.len() as u64,
            "{} from {}",
            f.heap,
            bytes.len()
        );
    }

    #[test]
    fn nested_strings_bytes_and_maps_count() {
        let r = Route {
            gateway: vec![10, 0, 0, 1],
            multipath: vec![NextHop {
                raw: vec![RawAttr {
                    kind: 1,
                    value: vec![1; 100],
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let f = footprint(schema("crhook.Route"), &r.encode_to_vec()).unwrap_or_default();
        assert_eq!(f.repeated, 2);
        let nh = std::mem::size_of::<NextHop>() as u64;
        let ra = std::mem::size_of::<RawAttr>() as u64;
        assert_eq!(
            f.heap,
            (8 + 16) + (4 * nh + 16) + (4 * ra + 16) + (100 + 16)
        );
        let mut s = Stats::default();
        s.counts.insert("links".into(), 1);
        s.counts.insert("routes".into(), 2);
        let f = footprint(schema("crhook.Stats"), &s.encode_to_vec()).unwrap_or_default();
        assert_eq!(f.repeated, 2);
        assert!(f.heap >= 2 * 32, "{f:?}");
    }

    #[test]
    fn packed_unknown_and_malformed() {
        let s = schema("crhook.Route");
        // unknown field 999 (varint) is skipped; a cut-short varint ends the walk
        let f = footprint(s, &[0xb8, 0x3e, 0x01, 0x08, 0xff]).unwrap_or_default();
        assert_eq!(f, Footprint::default());
        // a group anywhere is refused
        assert_eq!(footprint(s, &[0xbb, 0x3e, 0xbc, 0x3e]), Err(Refused::Group));
        assert_eq!(vec_capacity(1, 8), 4);
        assert_eq!(vec_capacity(5, 8), 8);
        assert_eq!(vec_capacity(3, 1), 8);
        assert_eq!(vec_capacity(1, 4096), 1);
    }

    #[test]
    fn decoding_stays_within_the_footprint() {
        // the walk is an upper bound of what prost allocates: check it against real data
        let r = Route {
            dst: vec![10; 4],
            multipath: vec![NextHop::default(); 5],
            raw: vec![RawAttr::default(); 3],
            ..Default::default()
        };
        let b = r.encode_to_vec();
        let f = footprint(schema("crhook.Route"), &b).unwrap_or_default();
        let back = Route::decode(b.as_slice()).unwrap_or_default();
        let actual = back.dst.capacity()
            + back.multipath.capacity() * std::mem::size_of::<NextHop>()
            + back.raw.capacity() * std::mem::size_of::<RawAttr>();
        assert!(actual as u64 <= f.heap, "{actual} > {}", f.heap);
    }

    #[test]
    fn budget_charges_up_to_its_limit() {
        let b = Budget::new(100);
        assert_eq!(b.charge(60), Ok(()));
        assert_eq!(b.charge(50), Err(110));
        assert_eq!(b.used(), 60);
        assert_eq!(b.charge(40), Ok(()));
    }
}
