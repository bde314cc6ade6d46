//! Address remapping inside saved nf_tables payloads (`--remap`, and the automatic remap of an
//! adopted link's address).
//!
//! An address in a rule is not a string: `ip daddr 10.88.0.9` is a `payload` expression that
//! loads 4 bytes at offset 16 of the network header into a register and a `cmp` that compares
//! that register with the bytes `0a 58 00 09`; a prefix adds a `bitwise` mask between them (or
//! loads fewer bytes: nft loads 2 bytes for a /16); `dnat to 10.88.0.9` is an `immediate` that
//! puts the address into a register a `nat` expression then reads. So only bytes that the
//! register bookkeeping proves to be compared with, or loaded as, an address field are
//! rewritten; an equal constant compared with anything else (a mark, a port, a meta key) is
//! left alone. In `inet`, `bridge` and `netdev` tables the network protocol comes from the
//! `meta nfproto` / `meta protocol` match nft and iptables put before an address match.
//! Set and map elements are rewritten when the set's key (or a map's data) type is
//! `ipv4_addr` or `ipv6_addr` and the set is not an interval set.
//! Rewriting never changes a length, so payloads are patched in place.

use std::collections::HashMap;

use crhook_proto::NftTable;

use super::NFGEN;
use crate::nla::{attrs, Attr};
use crate::transform::remap::Remaps;

type Res<T> = std::result::Result<T, String>;

const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;

const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;

const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_BITWISE_OP: u16 = 6;

const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_PROTOCOL: u32 = 1;
const NFT_META_NFPROTO: u32 = 15;

const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_ADDR_MAX: u16 = 4;

const NFTA_TARGET_NAME: u16 = 1;
const NFTA_TARGET_REV: u16 = 2;
const NFTA_TARGET_INFO: u16 = 3;

const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFT_SET_INTERVAL: u32 = 0x4;
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;

const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;

const NFPROTO_INET: u32 = 1;
const NFPROTO_IPV4: u32 = 2;
const NFPROTO_BRIDGE: u32 = 7;
const NFPROTO_NETDEV: u32 = 5;
const NFPROTO_IPV6: u32 = 10;

/// Expressions that read registers or write nothing a later address match could read; any
/// other expression may load a register, so the bookkeeping forgets what it knew.
const NO_REGISTER_WRITES: &[&str] = &[
    "counter",
    "log",
    "limit",
    "quota",
    "match",
    "lookup",
    "reject",
    "masq",
    "redir",
    "notrack",
    "objref",
    "dynset",
    "connlimit",
    "last",
    "queue",
    "dup",
    "fwd",
    "nat",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L3 {
    V4,
    V6,
}

impl L3 {
    /// The address fields of the network header: (offset, length).
    fn fields(self) -> [(u32, u32); 2] {
        match self {
            L3::V4 => [(12, 4), (16, 4)],
            L3::V6 => [(8, 16), (24, 16)],
        }
    }
}

#[derive(Debug, Clone)]
enum Reg {
    /// loaded from the network header, optionally masked
    Network {
        offset: u32,
        len: u32,
        mask: Option<Vec<u8>>,
    },
    Meta(u32),
    /// an immediate's value, at this offset of the payload
    Imm {
        at: usize,
        len: usize,
    },
}

fn be32(a: &Attr) -> Res<u32> {
    a.value
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| format!("attribute {} has {} bytes, want 4", a.ty(), a.value.len()))
}

/// A register number as the index of its first 32-bit slot (NFT_REG_1..4 are 16 bytes wide
/// and alias NFT_REG32_00..15).
fn slot(r: u32) -> u32 {
    match r {
        1..=4 => (r - 1) * 4,
        r if r >= 8 => r - 8,
        r => 1000 + r,
    }
}

/// Offset of `part` inside `whole` (both from the same buffer).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    part.as_ptr() as usize - whole.as_ptr() as usize
}

/// The NFTA_DATA_VALUE inside a nested data attribute.
fn data_value<'a>(a: &Attr<'a>) -> Option<&'a [u8]> {
    attrs(a.value)
        .filter_map(|x| x.ok())
        .find(|x| x.ty() == NFTA_DATA_VALUE)
        .map(|x| x.value)
}

/// Remaps every rule, set element and map value of `t`; the number of payloads changed.
pub(crate) fn remap_table(t: &mut NftTable, m: &Remaps) -> Res<usize> {
    let base = match t.family {
        NFPROTO_IPV4 => Some(L3::V4),
        NFPROTO_IPV6 => Some(L3::V6),
        NFPROTO_INET | NFPROTO_BRIDGE | NFPROTO_NETDEV => None,
        _ => return Ok(0),
    };
    let mut changed = 0;
    for r in &mut t.rules {
        // the payloads are shared slices of the image: a remapped one becomes its own copy
        let mut p = r.to_vec();
        if remap_rule(&mut p, base, m)? {
            *r = p.into();
            changed += 1;
        }
    }
    // set name -> (key is an address, data is an address)
    let mut sets: HashMap<String, (Option<L3>, Option<L3>)> = HashMap::new();
    for s in &t.sets {
        let (mut name, mut flags, mut key, mut data) = (String::new(), 0, 0, 0);
        for a in attrs(s.get(NFGEN..).unwrap_or_default()) {
            let a = a?;
            match a.ty() {
                NFTA_SET_NAME => name = a.string(),
                NFTA_SET_FLAGS => flags = be32(&a)?,
                NFTA_SET_KEY_TYPE => key = be32(&a)?,
                NFTA_SET_DATA_TYPE => data = be32(&a)?,
                _ => {}
            }
        }
        if flags & NFT_SET_INTERVAL != 0 {
            continue;
        }
        let l3 = |t: u32| match t {
            TYPE_IPADDR => Some(L3::V4),
            TYPE_IP6ADDR => Some(L3::V6),
            _ => None,
        };
        sets.insert(name, (l3(key), l3(data)));
    }
    for e in &mut t.elements {
        let mut p = e.to_vec();
        if remap_elements(&mut p, &sets, m)? {
            *e = p.into();
            changed += 1;
        }
    }
    Ok(changed)
}

fn remap_elements(
    payload: &mut [u8],
    sets: &HashMap<String, (Option<L3>, Option<L3>)>,
    m: &Remaps,
) -> Res<bool> {
    let body = payload.get(NFGEN..).unwrap_or_default();
    let set = attrs(body)
        .filter_map(|a| a.ok())
        .find(|a| a.ty() == NFTA_SET_ELEM_LIST_SET)
        .map(|a| a.string());
    let Some((key, data)) = set.and_then(|s| sets.get(&s).copied()) else {
        return Ok(false);
    };
    if key.is_none() && data.is_none() {
        return Ok(false);
    }
    let mut patches = Vec::new();
    for list in attrs(body) {
        let list = list?;
        if list.ty() != NFTA_SET_ELEM_LIST_ELEMENTS {
            continue;
        }
        for elem in attrs(list.value) {
            for x in attrs(elem?.value) {
                let x = x?;
                let want = match x.ty() {
                    NFTA_SET_ELEM_KEY => key.is_some(),
                    NFTA_SET_ELEM_DATA => data.is_some(),
                    _ => false,
                };
                if let Some(v) = want.then(|| data_value(&x)).flatten() {
                    let mut b = v.to_vec();
                    if m.host_bytes(&mut b) {
                        patches.push((NFGEN + offset_in(body, v), b));
                    }
                }
            }
        }
    }
    Ok(patch(payload, patches))
}

fn patch(payload: &mut [u8], patches: Vec<(usize, Vec<u8>)>) -> bool {
    let any = !patches.is_empty();
    for (at, b) in patches {
        if let Some(dst) = payload.get_mut(at..at + b.len()) {
            dst.copy_from_slice(&b);
        }
    }
    any
}

/// Remaps the addresses one rule compares or loads; true when it changed.
fn remap_rule(payload: &mut [u8], base: Option<L3>, m: &Remaps) -> Res<bool> {
    let body = payload.get(NFGEN..).unwrap_or_default();
    let mut patches = Vec::new();
    for a in attrs(body) {
        let a = a?;
        if a.ty() != NFTA_RULE_EXPRESSIONS {
            continue;
        }
        let mut regs: HashMap<u32, Reg> = HashMap::new();
        let mut l3 = base;
        for e in attrs(a.value) {
            let e = e?;
            if e.ty() != NFTA_LIST_ELEM {
                continue;
            }
            let (mut name, mut data) = (String::new(), None);
            for x in attrs(e.value) {
                let x = x?;
                match x.ty() {
                    NFTA_EXPR_NAME => name = x.string(),
                    NFTA_EXPR_DATA => data = Some(x.value),
                    _ => {}
                }
            }
            let data = data.unwrap_or_default();
            let get = |ty: u16| -> Option<Attr> {
                attrs(data).filter_map(|x| x.ok()).find(|x| x.ty() == ty)
            };
            let num = |ty: u16| -> Res<Option<u32>> { get(ty).map(|x| be32(&x)).transpose() };
            match name.as_str() {
                "payload" => {
                    if let Some(d) = num(NFTA_PAYLOAD_DREG)? {
                        if num(NFTA_PAYLOAD_BASE)? == Some(NFT_PAYLOAD_NETWORK_HEADER) {
                            let (offset, len) = (
                                num(NFTA_PAYLOAD_OFFSET)?.unwrap_or(0),
                                num(NFTA_PAYLOAD_LEN)?.unwrap_or(0),
                            );
                            regs.insert(
                                slot(d),
                                Reg::Network {
                                    offset,
                                    len,
                                    mask: None,
                                },
                            );
                        } else {
                            regs.remove(&slot(d));
                        }
                    }
                }
                "bitwise" => {
                    let (s, d) = (num(NFTA_BITWISE_SREG)?, num(NFTA_BITWISE_DREG)?);
                    let Some(d) = d else { continue };
                    let mask = get(NFTA_BITWISE_MASK).and_then(|x| data_value(&x));
                    let xor_zero = get(NFTA_BITWISE_XOR)
                        .and_then(|x| data_value(&x))
                        .is_none_or(|x| x.iter().all(|b| *b == 0));
                    let boolean = num(NFTA_BITWISE_OP)?.unwrap_or(0) == 0;
                    let src = s.and_then(|s| regs.get(&slot(s)).cloned());
                    match (src, mask) {
                        (
                            Some(Reg::Network {
                                offset,
                                len,
                                mask: None,
                            }),
                            Some(mask),
                        ) if xor_zero && boolean => {
                            regs.insert(
                                slot(d),
                                Reg::Network {
                                    offset,
                                    len,
                                    mask: Some(mask.to_vec()),
                                },
                            );
                        }
                        _ => {
                            regs.remove(&slot(d));
                        }
                    }
                }
                "meta" => {
                    if let Some(d) = num(NFTA_META_DREG)? {
                        match num(NFTA_META_KEY)? {
                            Some(k) => regs.insert(slot(d), Reg::Meta(k)),
                            None => regs.remove(&slot(d)),
                        };
                    }
                }
                "immediate" => {
                    if let Some(d) = num(NFTA_IMMEDIATE_DREG)? {
                        match get(NFTA_IMMEDIATE_DATA).and_then(|x| data_value(&x)) {
                            Some(v) => regs.insert(
                                slot(d),
                                Reg::Imm {
                                    at: NFGEN + offset_in(body, v),
                                    len: v.len(),
                                },
                            ),
                            None => regs.remove(&slot(d)),
                        };
                    }
                }
                "cmp" => {
                    let (Some(s), Some(op)) = (num(NFTA_CMP_SREG)?, num(NFTA_CMP_OP)?) else {
                        continue;
                    };
                    let Some(v) = get(NFTA_CMP_DATA).and_then(|x| data_value(&x)) else {
                        continue;
                    };
                    if op != NFT_CMP_EQ && op != NFT_CMP_NEQ {
                        continue;
                    }
                    match regs.get(&slot(s)) {
                        Some(Reg::Meta(NFT_META_NFPROTO)) if op == NFT_CMP_EQ => {
                            l3 = match v.first().map(|b| u32::from(*b)) {
                                Some(NFPROTO_IPV4) => Some(L3::V4),
                                Some(NFPROTO_IPV6) => Some(L3::V6),
                                _ => l3,
                            };
                        }
                        Some(Reg::Meta(NFT_META_PROTOCOL)) if op == NFT_CMP_EQ => {
                            l3 = match v {
                                [0x08, 0x00, ..] => Some(L3::V4),
                                [0x86, 0xdd, ..] => Some(L3::V6),
                                _ => l3,
                            };
                        }
                        Some(Reg::Network { offset, len, mask }) => {
                            if let Some(b) =
                                remap_compared(l3, *offset, *len, mask.as_deref(), v, m)
                            {
                                patches.push((NFGEN + offset_in(body, v), b));
                            }
                        }
                        _ => {}
                    }
                }
                "nat" => {
                    let family = num(NFTA_NAT_FAMILY)?;
                    let want = match family {
                        Some(NFPROTO_IPV4) => 4,
                        Some(NFPROTO_IPV6) => 16,
                        _ => continue,
                    };
                    for r in [NFTA_NAT_REG_ADDR_MIN, NFTA_NAT_REG_ADDR_MAX] {
                        let Some(r) = num(r)? else { continue };
                        if let Some(Reg::Imm { at, len }) = regs.get(&slot(r)) {
                            let Some(v) = payload_slice(body, *at, want.min(*len)) else {
                                continue;
                            };
                            let mut b = v.to_vec();
                            if b.len() == want && m.host_bytes(&mut b) {
                                patches.push((*at, b));
                            }
                        }
                    }
                }
                "target" => {
                    // iptables-nft keeps DNAT/SNAT as xtables targets: the addresses are in
                    // the target's own struct (see `xt_nat_addresses`)
                    let name = get(NFTA_TARGET_NAME)
                        .map(|x| x.string())
                        .unwrap_or_default();
                    let rev = num(NFTA_TARGET_REV)?.unwrap_or(0);
                    if let (Some(info), Some(l3)) = (get(NFTA_TARGET_INFO), base) {
                        let at = NFGEN + offset_in(body, info.value);
                        for (off, len) in xt_nat_addresses(&name, rev, l3, info.value) {
                            let mut b = info.value[off..off + len].to_vec();
                            if m.host_bytes(&mut b) {
                                patches.push((at + off, b));
                            }
                        }
                    }
                }
                n if NO_REGISTER_WRITES.contains(&n) => {}
                _ => regs.clear(),
            }
        }
    }
    patches.sort_by_key(|p| p.0);
    patches.dedup_by_key(|p| p.0);
    Ok(patch(payload, patches))
}

/// Where an xtables DNAT/SNAT target keeps its address range: (offset, length) of each of
/// min and max, when the range maps addresses (NF_NAT_RANGE_MAP_IPS). Revision 0 (IPv4) is
/// `struct nf_nat_ipv4_multi_range_compat` (rangesize, then flags, min_ip, max_ip, ...);
/// revisions 1 and 2 are `struct nf_nat_range`/`nf_nat_range2` (flags, then two
/// `union nf_inet_addr` of 16 bytes, the address at their start).
fn xt_nat_addresses(name: &str, rev: u32, l3: L3, info: &[u8]) -> Vec<(usize, usize)> {
    const NF_NAT_RANGE_MAP_IPS: u32 = 1;
    if name != "DNAT" && name != "SNAT" {
        return Vec::new();
    }
    let flags_at = |o: usize| {
        info.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
            .unwrap_or(0)
    };
    let (spots, flags) = match (rev, l3) {
        (0, L3::V4) => (vec![(8, 4), (12, 4)], flags_at(4)),
        (0, L3::V6) => return Vec::new(),
        (_, L3::V4) => (vec![(4, 4), (20, 4)], flags_at(0)),
        (_, L3::V6) => (vec![(4, 16), (20, 16)], flags_at(0)),
    };
    if flags & NF_NAT_RANGE_MAP_IPS == 0 {
        return Vec::new();
    }
    spots
        .into_iter()
        .filter(|(o, l)| o + l <= info.len())
        .collect()
}

/// `len` bytes at payload offset `at` (an offset counted from the start of the payload, whose
/// first NFGEN bytes `body` does not hold).
fn payload_slice(body: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    body.get(at.checked_sub(NFGEN)?..at.checked_sub(NFGEN)? + len)
}

/// The new compared bytes when `v`, compared with `len` bytes at `offset` of the network
/// header (masked by `mask`), is a remapped address or prefix.
fn remap_compared(
    l3: Option<L3>,
    offset: u32,
    len: u32,
    mask: Option<&[u8]>,
    v: &[u8],
    m: &Remaps,
) -> Option<Vec<u8>> {
    let l3 = l3?;
    let (_, field_len) = l3.fields().into_iter().find(|(o, _)| *o == offset)?;
    if len == 0 || len > field_len || v.len() != len as usize {
        return None;
    }
    let bits = match mask {
        None => len * 8,
        Some(mask) => prefix_bits(mask)?,
    };
    let mut full = v.to_vec();
    full.resize(field_len as usize, 0);
    if !m.prefix_bytes(&mut full, bits) {
        return None;
    }
    let mut out = full[..len as usize].to_vec();
    if let Some(mask) = mask {
        for (b, k) in out.iter_mut().zip(mask) {
            *b &= k;
        }
    }
    Some(out)
}

/// The length of a contiguous prefix mask, None for any other mask.
fn prefix_bits(mask: &[u8]) -> Option<u32> {
    let mut bits = 0;
    let mut ended = false;
    for b in mask {
        if ended && *b != 0 {
            return None;
        }
        let ones = b.leading_ones();
        if b.count_ones() != ones {
            return None;
        }
        bits += ones;
        ended |= ones < 8;
    }
    Some(bits)
}

#[cfg(test)]
mod tests;
