//! Netlink attributes as (type, bytes): the form crhook keeps every kind-specific attribute in,
//! so that kinds it does not model survive a round trip exactly.

use crhook_proto::RawAttr;
use netlink_packet_core::{DefaultNla, Emitable, Nla};

/// Splits a buffer of concatenated netlink attributes (through the crate's one attribute
/// walker). Malformed tails are ignored: the input is what the kernel (or our own emitter)
/// produced.
pub fn split(buf: &[u8]) -> Vec<RawAttr> {
    crate::nla::attrs(buf)
        .map_while(|a| a.ok())
        .map(|a| a.raw())
        .collect()
}

/// Why `attrs` cannot be sent as netlink attributes: a type beyond 16 bits or a value longer
/// than an attribute's 16-bit length can hold (it would wrap, and the rest would parse as
/// sibling attributes). Restore's plan refuses such a link before any change, so [`join`]
/// only ever sees attributes that fit.
pub fn check(attrs: &[RawAttr]) -> Result<(), String> {
    for a in attrs {
        if a.kind > u32::from(u16::MAX) {
            return Err(format!(
                "raw attribute type {} does not fit 16 bits",
                a.kind
            ));
        }
        if a.value.len() > usize::from(u16::MAX) - 4 {
            return Err(format!(
                "raw attribute {} of {} bytes is longer than a netlink attribute can be",
                a.kind & 0x3fff,
                a.value.len()
            ));
        }
    }
    Ok(())
}

/// The inverse of [`split`].
pub fn join<'a>(attrs: impl IntoIterator<Item = &'a RawAttr>) -> Vec<u8> {
    let mut out = Vec::new();
    for a in attrs {
        let len = 4 + a.value.len();
        out.extend_from_slice(&(len as u16).to_ne_bytes());
        out.extend_from_slice(&(a.kind as u16).to_ne_bytes());
        out.extend_from_slice(&a.value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    out
}

/// The value bytes of a parsed attribute, as it would go on the wire.
pub fn value_of<N: Nla>(n: &N) -> Vec<u8> {
    let mut v = vec![0; n.value_len()];
    n.emit_value(&mut v);
    v
}

/// An attribute of ours as the crate's pass-through type.
pub fn to_nla(a: &RawAttr) -> DefaultNla {
    DefaultNla::new(a.kind as u16, a.value.clone())
}

/// Whole attribute (header included) bytes of an Emitable.
pub fn emit<E: Emitable>(e: &E) -> Vec<u8> {
    let mut v = vec![0; e.buffer_len()];
    e.emit(&mut v);
    v
}

pub fn u32_of(a: &RawAttr) -> Option<u32> {
    a.value
        .get(..4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

pub fn u16_of(a: &RawAttr) -> Option<u16> {
    a.value.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]))
}

pub fn u8_of(a: &RawAttr) -> Option<u8> {
    a.value.first().copied()
}

pub fn find(attrs: &[RawAttr], kind: u16) -> Option<&RawAttr> {
    attrs.iter().find(|a| (a.kind as u16 & 0x3fff) == kind)
}

#[cfg(test)]
mod tests {
    #[test]
    fn attributes_that_do_not_fit_netlink_are_named() {
        let ok = vec![RawAttr {
            kind: 5,
            value: vec![0; 100],
        }];
        assert!(check(&ok).is_ok());
        let long = vec![RawAttr {
            kind: 5,
            value: vec![0; 70_000],
        }];
        let e = check(&long).expect_err("too long");
        assert!(e.contains("raw attribute 5 of 70000 bytes"), "{e}");
        let wide = vec![RawAttr {
            kind: 0x1_0005,
            value: Vec::new(),
        }];
        assert!(check(&wide)
            .expect_err("wide")
            .contains("does not fit 16 bits"));
    }

    use super::*;

    #[test]
    fn split_join_round_trip_keeps_padding_and_nested_flag() {
        let attrs = vec![
            RawAttr {
                kind: 1,
                value: vec![1, 2, 3],
            },
            RawAttr {
                kind: 0x8002,
                value: vec![],
            },
            RawAttr {
                kind: 3,
                value: 7u32.to_ne_bytes().to_vec(),
            },
        ];
        let bytes = join(&attrs);
        assert_eq!(bytes.len(), 8 + 4 + 8);
        assert_eq!(split(&bytes), attrs);
        assert_eq!(u32_of(&attrs[2]), Some(7));
        assert_eq!(find(&attrs, 2).map(|a| a.kind), Some(0x8002));
    }

    #[test]
    fn split_stops_at_a_truncated_attribute() {
        let mut bytes = join(&[RawAttr {
            kind: 1,
            value: vec![9; 4],
        }]);
        bytes.extend_from_slice(&[200, 0, 1, 0]);
        assert_eq!(split(&bytes).len(), 1);
    }
}
