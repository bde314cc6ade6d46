//! Netlink attribute (TLV) reading and writing shared by the address, route, rule, neighbour
//! and nexthop families.
//!
//! These families are decoded by hand rather than through netlink-packet-route's typed
//! messages, for three reasons. The capture path must stay lean: parsing every route into rich
//! typed structs cost about 1 us each and lost to `ip route save` at 100k routes. One attribute
//! the crate cannot parse (a new lwtunnel encapsulation, say) would fail the whole dump. And
//! attributes crhook does not model must be kept byte for byte (type with its flag bits,
//! payload) and sent back unchanged, which a parse-and-re-emit round trip cannot promise.
//! netlink-packet-route has no nexthop messages at all.

use std::net::{Ipv4Addr, Ipv6Addr};

use crhook_proto as pb;

use crate::error::{NetstateError, Result};
use crate::ifmap::IfMap;
use crate::nl::Req;

pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLA_HDRLEN: usize = 4;
pub(crate) const AF_INET: u8 = libc::AF_INET as u8;
pub(crate) const AF_INET6: u8 = libc::AF_INET6 as u8;

/// One attribute of a received message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    /// the type as received, NLA_F_NESTED and NLA_F_NET_BYTEORDER included
    pub kind: u16,
    pub value: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The type without its flag bits.
    pub fn ty(&self) -> u16 {
        self.kind & NLA_TYPE_MASK
    }

    fn fixed<const N: usize>(&self, what: &str) -> Result<[u8; N], String> {
        self.value
            .get(..N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "attribute {} ({what}) has {} bytes, want {N}",
                    self.ty(),
                    self.value.len()
                )
            })
    }

    pub fn u8(&self) -> Result<u8, String> {
        Ok(self.fixed::<1>("u8")?[0])
    }

    pub fn u16(&self) -> Result<u16, String> {
        Ok(u16::from_ne_bytes(self.fixed("u16")?))
    }

    pub fn u32(&self) -> Result<u32, String> {
        Ok(u32::from_ne_bytes(self.fixed("u32")?))
    }

    pub fn u64_be(&self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(self.fixed("be64")?))
    }

    /// A NUL-terminated string (interface names, labels).
    pub fn string(&self) -> String {
        let s = self.value.split(|b| *b == 0).next().unwrap_or(&[]);
        String::from_utf8_lossy(s).into_owned()
    }

    pub fn raw(&self) -> pb::RawAttr {
        pb::RawAttr {
            kind: u32::from(self.kind),
            value: self.value.to_vec(),
        }
    }
}

/// Iterates over the attributes of `buf`; a malformed length ends the walk with an error.
pub(crate) struct Attrs<'a> {
    buf: &'a [u8],
    off: usize,
}

pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs { buf, off: 0 }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        // fewer than a header's bytes left is alignment padding
        let rest = self.buf.get(self.off..)?;
        if rest.len() < NLA_HDRLEN {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]);
        if len < NLA_HDRLEN || len > rest.len() {
            self.off = self.buf.len();
            return Some(Err(format!(
                "attribute {} at offset {} has length {len} of {} bytes left",
                kind & NLA_TYPE_MASK,
                self.off,
                rest.len()
            )));
        }
        self.off += align4(len);
        Some(Ok(Attr {
            kind,
            value: &rest[NLA_HDRLEN..len],
        }))
    }
}

pub(crate) fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Splits a received message into its fixed header of `len` bytes and its attributes.
pub(crate) fn split<'a>(
    payload: &'a [u8],
    len: usize,
    what: &str,
) -> Result<(&'a [u8], Attrs<'a>), String> {
    if payload.len() < len {
        return Err(format!(
            "{what} message of {} bytes, shorter than its {len}-byte header",
            payload.len()
        ));
    }
    Ok((
        &payload[..len],
        attrs(&payload[align4(len).min(payload.len())..]),
    ))
}

/// A message being built: the family's fixed header, then attributes.
pub(crate) struct MsgBuf {
    buf: Vec<u8>,
}

impl MsgBuf {
    pub fn new(header: &[u8]) -> MsgBuf {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(header);
        while !buf.len().is_multiple_of(4) {
            buf.push(0);
        }
        MsgBuf { buf }
    }

    /// Appends one attribute; `kind` keeps any flag bits it carries.
    pub fn put(&mut self, kind: u16, value: &[u8]) -> Result<()> {
        let len = u16::try_from(NLA_HDRLEN + value.len()).map_err(|_| {
            NetstateError::invalid(format!(
                "netlink attribute {kind} of {} bytes is too long",
                value.len()
            ))
        })?;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        Ok(())
    }

    pub fn put_u8(&mut self, kind: u16, v: u8) -> Result<()> {
        self.put(kind, &[v])
    }

    pub fn put_u16(&mut self, kind: u16, v: u16) -> Result<()> {
        self.put(kind, &v.to_ne_bytes())
    }

    pub fn put_u32(&mut self, kind: u16, v: u32) -> Result<()> {
        self.put(kind, &v.to_ne_bytes())
    }

    pub fn put_raw(&mut self, raw: &[pb::RawAttr]) -> Result<()> {
        for r in raw {
            let kind = u16::try_from(r.kind).map_err(|_| {
                NetstateError::invalid(format!(
                    "saved netlink attribute type {} does not fit 16 bits",
                    r.kind
                ))
            })?;
            self.put(kind, &r.value)?;
        }
        Ok(())
    }

    /// The bytes of a finished message (header and attributes).
    #[cfg(test)]
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_req(self, msg_type: u16) -> Req {
        Req::Raw {
            msg_type,
            payload: self.buf,
        }
    }
}

/// Builds a nested attribute's payload (RTA_METRICS, RTA_MULTIPATH entries) with the same rules.
pub(crate) fn nested(f: impl FnOnce(&mut MsgBuf) -> Result<()>) -> Result<Vec<u8>> {
    let mut m = MsgBuf::new(&[]);
    f(&mut m)?;
    Ok(m.buf)
}

/// Textual form of an address for keys, descriptions and errors.
pub(crate) fn ip_str(bytes: &[u8]) -> String {
    if let Ok(b) = <[u8; 4]>::try_from(bytes) {
        Ipv4Addr::from(b).to_string()
    } else if let Ok(b) = <[u8; 16]>::try_from(bytes) {
        Ipv6Addr::from(b).to_string()
    } else {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// `dst/len`, the family's unspecified address when the kernel sent none (default routes).
pub(crate) fn prefix_str(family: u32, addr: &[u8], len: u32) -> String {
    if addr.is_empty() {
        let any = if family == u32::from(AF_INET6) {
            "::"
        } else {
            "0.0.0.0"
        };
        return format!("{any}/{len}");
    }
    format!("{}/{len}", ip_str(addr))
}

/// The live ifindex of a saved one, or an error naming the object that needs it.
/// `object` describes the object for the error, and is called only then (per route, twice,
/// its text was a third of the routes' builder thread at L).
pub(crate) fn live_ifindex(
    ifs: &IfMap,
    saved: u32,
    name: &str,
    object: impl FnOnce() -> String,
) -> Result<u32> {
    ifs.live(saved).ok_or_else(|| {
        let object = object();
        let name = if name.is_empty() {
            ifs.name(saved)
        } else {
            name.to_string()
        };
        NetstateError::invalid(format!(
            "{object}: its link {name} (saved ifindex {saved}) does not exist in the namespace"
        ))
    })
}

/// Decoding error of one dumped message, with the operation and namespace.
pub(crate) fn decode_error(op: &str, netns: &str, what: String) -> NetstateError {
    NetstateError::Protocol {
        op: op.to_string(),
        netns: netns.to_string(),
        what,
    }
}

/// Reads a host-order u32 of a fixed header (zero past its end: headers are length-checked).
pub(crate) fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(off..off + 4) {
        a.copy_from_slice(s);
    }
    u32::from_ne_bytes(a)
}

pub(crate) fn u16_at(b: &[u8], off: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(off..off + 2) {
        a.copy_from_slice(s);
    }
    u16::from_ne_bytes(a)
}

/// Test fixtures are kept as hex strings of the bytes the kernel (or the encoder) produced.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex fixture"))
        .collect()
}

/// Lowercase hex of `b`, two digits a byte.
pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The payload of a raw request, for golden comparisons.
#[cfg(test)]
pub(crate) fn req_bytes(r: &Req) -> (u16, &[u8]) {
    match r {
        Req::Raw { msg_type, payload } => (*msg_type, payload),
        Req::Route(_) => panic!("families build raw requests"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn walks_attributes_and_padding() {
        let mut m = MsgBuf::new(&[1, 2, 3]);
        m.put(1, &[9]).unwrap();
        m.put_u32(2 | NLA_F_NESTED, 7).unwrap();
        assert_eq!(m.bytes().len(), 4 + 8 + 8);
        let (h, it) = split(m.bytes(), 3, "test").unwrap();
        assert_eq!(h, &[1, 2, 3]);
        let got: Vec<_> = it.map(|a| a.unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].ty(), got[0].value), (1, &[9u8][..]));
        assert_eq!(got[1].kind, 2 | NLA_F_NESTED);
        assert_eq!(got[1].ty(), 2);
        assert_eq!(got[1].u32(), Ok(7));
    }

    #[test]
    fn rejects_bad_lengths() {
        // length 200 with 8 bytes present
        let b = [200u8, 0, 1, 0, 0, 0, 0, 0];
        let e = attrs(&b).next().unwrap().unwrap_err();
        assert!(e.contains("length 200"), "{e}");
        let b = [2u8, 0, 1, 0];
        assert!(attrs(&b).next().unwrap().is_err());
        assert!(split(&[0u8; 3], 8, "route")
            .err()
            .unwrap()
            .contains("shorter"));
        let a = Attr {
            kind: 3,
            value: &[1, 2],
        };
        assert!(a.u32().unwrap_err().contains("want 4"));
    }

    #[test]
    fn oversized_attribute_is_an_error() {
        let mut m = MsgBuf::new(&[]);
        let e = m.put(1, &vec![0u8; 70000]).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn formats_addresses() {
        assert_eq!(ip_str(&[10, 0, 0, 1]), "10.0.0.1");
        assert_eq!(prefix_str(2, &[], 0), "0.0.0.0/0");
        assert_eq!(prefix_str(10, &[], 0), "::/0");
        let mut v6 = [0u8; 16];
        v6[0] = 0x20;
        v6[1] = 0x01;
        v6[15] = 1;
        assert_eq!(prefix_str(10, &v6, 64), "2001::1/64");
    }
}
