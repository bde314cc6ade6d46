//! The normal form of a dumped nf_tables message: what replaying needs and nothing the kernel
//! assigns (handles, use counts, rule positions, transaction ids, padding), with the state
//! that traffic changes reset unless counters are kept. Normalising is idempotent, so a saved
//! payload and a live one compare byte for byte after one pass each.

use std::borrow::Cow;

use super::{Obj, NFGEN};
use crate::nla::{attrs, Attr};

// attribute numbers (include/uapi/linux/netfilter/nf_tables.h)
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFTA_TABLE_USERDATA: u16 = 6;
/// NFT_TABLE_F_DORMANT; OWNER and PERSIST tie a table to a socket of the saving host
const TABLE_FLAGS_KEPT: u32 = 0x1;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_CHAIN_COUNTERS: u16 = 8;
const NFTA_CHAIN_FLAGS: u16 = 10;
const NFTA_CHAIN_USERDATA: u16 = 12;
/// NFT_CHAIN_BINDING: an anonymous chain bound to one rule (`jump { ... }`)
pub(super) const CHAIN_BINDING: u32 = 0x4;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_HOOK_DEV: u16 = 3;
const NFTA_HOOK_DEVS: u16 = 4;

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_RULE_COMPAT: u16 = 5;
const NFTA_RULE_USERDATA: u16 = 7;

const NFTA_SET_NAME: u16 = 2;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_EXPIRATION: u16 = 5;
const NFTA_SET_ELEM_EXPR: u16 = 7;
const NFTA_SET_ELEM_EXPRESSIONS: u16 = 11;

const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFTA_OBJ_USERDATA: u16 = 8;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFT_OBJECT_QUOTA: u32 = 2;

const NFTA_FLOWTABLE_TABLE: u16 = 1;
const NFTA_FLOWTABLE_NAME: u16 = 2;
const NFTA_FLOWTABLE_HOOK: u16 = 3;
const NFTA_FLOWTABLE_FLAGS: u16 = 7;

const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
const NFTA_QUOTA_CONSUMED: u16 = 4;
const NFTA_LAST_SET: u16 = 1;
const NFTA_LAST_MSECS: u16 = 2;
/// NFTA_IMMEDIATE_DATA > NFTA_DATA_VERDICT > NFTA_VERDICT_CHAIN
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CHAIN: u16 = 2;

type Res<T> = std::result::Result<T, String>;

/// Appends one attribute (type with its flag bits, value, padding) to `out`.
fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> Res<()> {
    let len = u16::try_from(4 + value.len())
        .map_err(|_| format!("attribute {kind} of {} bytes is too long", value.len()))?;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    Ok(())
}

/// Rebuilds the attributes of `buf`: `f` keeps (None), drops (Some(None)) or replaces
/// (Some(Some(bytes))) each one.
fn rewrite(
    buf: &[u8],
    mut f: impl FnMut(&Attr) -> Res<Option<Option<Cow<'static, [u8]>>>>,
) -> Res<Vec<u8>> {
    let mut out = Vec::with_capacity(buf.len());
    for a in attrs(buf) {
        let a = a?;
        match f(&a)? {
            None => put(&mut out, a.kind, a.value)?,
            Some(None) => {}
            Some(Some(v)) => put(&mut out, a.kind, &v)?,
        }
    }
    Ok(out)
}

const KEEP: Res<Option<Option<Cow<'static, [u8]>>>> = Ok(None);
const DROP: Res<Option<Option<Cow<'static, [u8]>>>> = Ok(Some(None));

fn replace(v: Vec<u8>) -> Res<Option<Option<Cow<'static, [u8]>>>> {
    Ok(Some(Some(Cow::Owned(v))))
}

fn be32(a: &Attr) -> Res<u32> {
    Ok(u32::from_be_bytes(
        a.value
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("attribute {} has {} bytes, want 4", a.ty(), a.value.len()))?,
    ))
}

/// The normal form of one dumped payload of kind `obj`; `counters` keeps traffic state.
pub(super) fn normalize(obj: Obj, payload: &[u8], counters: bool) -> Res<Vec<u8>> {
    let (hdr, body) = payload
        .split_at_checked(NFGEN)
        .ok_or_else(|| format!("{} message of {} bytes", obj.name(), payload.len()))?;
    let mut out = vec![hdr[0], 0, 0, 0];
    let attrs = match obj {
        Obj::Table => rewrite(body, |a| match a.ty() {
            NFTA_TABLE_NAME | NFTA_TABLE_USERDATA => KEEP,
            NFTA_TABLE_FLAGS => replace((be32(a)? & TABLE_FLAGS_KEPT).to_be_bytes().to_vec()),
            _ => DROP,
        })?,
        Obj::Chain => rewrite(body, |a| match a.ty() {
            NFTA_CHAIN_TABLE | NFTA_CHAIN_NAME | NFTA_CHAIN_HOOK | NFTA_CHAIN_POLICY
            | NFTA_CHAIN_TYPE | NFTA_CHAIN_FLAGS | NFTA_CHAIN_USERDATA => KEEP,
            NFTA_CHAIN_COUNTERS if counters => KEEP,
            NFTA_CHAIN_COUNTERS => replace(zero_counter(a.value)?),
            _ => DROP,
        })?,
        Obj::Rule => rewrite(body, |a| match a.ty() {
            NFTA_RULE_TABLE | NFTA_RULE_CHAIN | NFTA_RULE_COMPAT | NFTA_RULE_USERDATA => KEEP,
            NFTA_RULE_EXPRESSIONS if counters => KEEP,
            NFTA_RULE_EXPRESSIONS => replace(reset_list(a.value)?),
            _ => DROP,
        })?,
        // what NFT_MSG_NEWSET takes: not ID, PAD, HANDLE, nor what only dumps carry (the
        // backend's name and the element count on newer kernels)
        Obj::Set => rewrite(body, |a| match a.ty() {
            1..=9 | 11..=13 | 15 | 17 | 18 => KEEP,
            _ => DROP,
        })?,
        Obj::Element => rewrite(body, |a| match a.ty() {
            NFTA_SET_ELEM_LIST_TABLE | NFTA_SET_ELEM_LIST_SET => KEEP,
            NFTA_SET_ELEM_LIST_ELEMENTS => replace(rewrite(a.value, |e| {
                replace(rewrite(e.value, |x| match x.ty() {
                    NFTA_SET_ELEM_EXPIRATION if !counters => DROP,
                    NFTA_SET_ELEM_EXPR if !counters => replace(reset_expr(x.value)?),
                    NFTA_SET_ELEM_EXPRESSIONS if !counters => replace(reset_list(x.value)?),
                    // key, data, flags, timeout, expiration, userdata, expr, objref, key end,
                    // expressions; not PAD
                    1..=7 | 9..=11 => KEEP,
                    _ => DROP,
                })?)
            })?),
            _ => DROP,
        })?,
        Obj::Object => {
            let ty = attrs(body)
                .filter_map(|a| a.ok())
                .find(|a| a.ty() == NFTA_OBJ_TYPE)
                .map(|a| be32(&a))
                .transpose()?
                .unwrap_or(0);
            rewrite(body, |a| match a.ty() {
                NFTA_OBJ_TABLE | NFTA_OBJ_NAME | NFTA_OBJ_TYPE | NFTA_OBJ_USERDATA => KEEP,
                NFTA_OBJ_DATA if counters => KEEP,
                NFTA_OBJ_DATA => match ty {
                    NFT_OBJECT_COUNTER => replace(zero_counter(a.value)?),
                    NFT_OBJECT_QUOTA => replace(reset_data("quota", a.value)?),
                    _ => KEEP,
                },
                _ => DROP,
            })?
        }
        Obj::Flowtable => rewrite(body, |a| match a.ty() {
            NFTA_FLOWTABLE_TABLE | NFTA_FLOWTABLE_NAME | NFTA_FLOWTABLE_HOOK
            | NFTA_FLOWTABLE_FLAGS => KEEP,
            _ => DROP,
        })?,
    };
    out.extend_from_slice(&attrs);
    Ok(out)
}

/// Counter data (bytes, packets; padding dropped) with both values zero.
fn zero_counter(data: &[u8]) -> Res<Vec<u8>> {
    rewrite(data, |a| match a.ty() {
        NFTA_COUNTER_BYTES | NFTA_COUNTER_PACKETS => replace(vec![0; 8]),
        _ => DROP,
    })
}

/// The stateful part of expression `name`'s data reset: counters zero, quota unused, "last"
/// never seen. Other expressions keep their data.
fn reset_data(name: &str, data: &[u8]) -> Res<Vec<u8>> {
    match name {
        "counter" => zero_counter(data),
        "quota" => rewrite(data, |a| match a.ty() {
            NFTA_QUOTA_CONSUMED | 3 => DROP,
            _ => KEEP,
        }),
        "last" => rewrite(data, |a| match a.ty() {
            NFTA_LAST_SET => replace(0u32.to_be_bytes().to_vec()),
            NFTA_LAST_MSECS | 3 => DROP,
            _ => KEEP,
        }),
        _ => Ok(data.to_vec()),
    }
}

/// One expression (NFTA_EXPR_NAME, NFTA_EXPR_DATA) with its state reset.
fn reset_expr(expr: &[u8]) -> Res<Vec<u8>> {
    let name = attrs(expr)
        .filter_map(|a| a.ok())
        .find(|a| a.ty() == NFTA_EXPR_NAME)
        .map(|a| a.string())
        .unwrap_or_default();
    rewrite(expr, |a| match a.ty() {
        NFTA_EXPR_DATA => replace(reset_data(&name, a.value)?),
        _ => KEEP,
    })
}

/// A list of expressions (NFTA_LIST_ELEM each) with their state reset.
fn reset_list(list: &[u8]) -> Res<Vec<u8>> {
    rewrite(list, |a| match a.ty() {
        NFTA_LIST_ELEM => replace(reset_expr(a.value)?),
        _ => KEEP,
    })
}

/// The string attribute `ty` of a payload (after its nfgenmsg).
pub(super) fn str_attr(payload: &[u8], ty: u16) -> Option<String> {
    attrs(payload.get(NFGEN..)?)
        .filter_map(|a| a.ok())
        .find(|a| a.ty() == ty)
        .map(|a| a.string())
}

fn attr_of(payload: &[u8], ty: u16) -> Option<Attr<'_>> {
    attrs(payload.get(NFGEN..)?)
        .filter_map(|a| a.ok())
        .find(|a| a.ty() == ty)
}

pub(super) fn table_name(payload: &[u8]) -> Option<String> {
    str_attr(payload, NFTA_TABLE_NAME)
}

pub(super) fn chain_name(payload: &[u8]) -> Option<String> {
    str_attr(payload, NFTA_CHAIN_NAME)
}

pub(super) fn chain_flags(payload: &[u8]) -> u32 {
    attr_of(payload, NFTA_CHAIN_FLAGS)
        .and_then(|a| be32(&a).ok())
        .unwrap_or(0)
}

/// Whether a chain's hook names devices (netdev and inet ingress chains): it can only be
/// made once they exist.
pub(super) fn chain_names_devices(payload: &[u8]) -> bool {
    attr_of(payload, NFTA_CHAIN_HOOK).is_some_and(|h| {
        attrs(h.value)
            .filter_map(|a| a.ok())
            .any(|a| a.ty() == NFTA_HOOK_DEV || a.ty() == NFTA_HOOK_DEVS)
    })
}

/// Whether a chain holds nothing to lose by itself: a base chain whose policy accepts (a
/// user chain is content, as iptables-save shows it).
pub(super) fn chain_is_empty_base(payload: &[u8]) -> bool {
    attr_of(payload, NFTA_CHAIN_HOOK).is_some()
        && attr_of(payload, NFTA_CHAIN_POLICY)
            .and_then(|a| be32(&a).ok())
            .is_none_or(|p| p == 1)
}

/// A base chain's hook number, priority and type; None for a regular chain.
pub(super) fn chain_base(payload: &[u8]) -> Option<(u32, i32, String)> {
    let hook = attr_of(payload, NFTA_CHAIN_HOOK)?;
    let num = nested_find(hook.value, NFTA_HOOK_HOOKNUM).and_then(|a| be32(&a).ok())?;
    let prio = nested_find(hook.value, NFTA_HOOK_PRIORITY)
        .and_then(|a| Some(i32::from_be_bytes(a.value.get(..4)?.try_into().ok()?)))?;
    Some((num, prio, str_attr(payload, NFTA_CHAIN_TYPE)?))
}

/// Every element of a table's element messages, per set, sorted: hash sets dump in hash
/// order, which differs between two namespaces holding the same elements.
pub(super) fn elements_by_set(
    payloads: &[super::Payload],
) -> Res<std::collections::BTreeMap<String, Vec<Vec<u8>>>> {
    let mut out: std::collections::BTreeMap<String, Vec<Vec<u8>>> = Default::default();
    for p in payloads {
        let n = normalize(Obj::Element, p, false)?;
        let set = elem_set(&n).unwrap_or_default();
        let list = out.entry(set).or_default();
        if let Some(elems) = attr_of(&n, NFTA_SET_ELEM_LIST_ELEMENTS) {
            for e in attrs(elems.value) {
                list.push(e?.value.to_vec());
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

/// The (table, chain) a rule belongs to (the table is the message's own).
pub(super) fn rule_chain(payload: &[u8]) -> Option<String> {
    str_attr(payload, NFTA_RULE_CHAIN)
}

/// (table, set) a set or element message names.
pub(super) fn set_name(payload: &[u8]) -> Option<String> {
    str_attr(payload, NFTA_SET_NAME)
}

pub(super) fn elem_set(payload: &[u8]) -> Option<String> {
    str_attr(payload, NFTA_SET_ELEM_LIST_SET)
}

pub(super) fn obj_name(payload: &[u8]) -> Option<String> {
    str_attr(payload, NFTA_OBJ_NAME)
}

/// The chains a rule jumps or goes to (immediate verdicts).
pub(super) fn rule_jumps(payload: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(list) = attr_of(payload, NFTA_RULE_EXPRESSIONS) else {
        return out;
    };
    for elem in attrs(list.value).filter_map(|a| a.ok()) {
        let fields: Vec<Attr> = attrs(elem.value).filter_map(|a| a.ok()).collect();
        let is_imm = fields
            .iter()
            .any(|a| a.ty() == NFTA_EXPR_NAME && a.string() == "immediate");
        if !is_imm {
            continue;
        }
        let chain = fields
            .iter()
            .find(|a| a.ty() == NFTA_EXPR_DATA)
            .and_then(|d| nested_find(d.value, NFTA_IMMEDIATE_DATA))
            .and_then(|d| nested_find(d.value, NFTA_DATA_VERDICT))
            .and_then(|v| nested_find(v.value, NFTA_VERDICT_CHAIN));
        if let Some(c) = chain {
            out.push(c.string());
        }
    }
    out
}

/// A NUL-terminated string attribute.
pub(super) fn string_attr(ty: u16, s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    let mut out = Vec::new();
    // a name longer than 64 KiB cannot come from the kernel; it is cut, not panicked on
    let _ = put(&mut out, ty, &v);
    out
}

/// An attribute holding `value` as is.
pub(super) fn raw_attr(ty: u16, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = put(&mut out, ty, value);
    out
}

/// A nested attribute holding `parts` (attributes already built).
pub(super) fn nest(ty: u16, parts: &[Vec<u8>]) -> Vec<u8> {
    raw_attr(ty, &parts.concat())
}

/// A big-endian u32 attribute.
pub(super) fn be32_attr(ty: u16, v: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = put(&mut out, ty, &v.to_be_bytes());
    out
}

/// Whether an element message carries no elements (the kernel answers an empty set so).
pub(super) fn elements_empty(payload: &[u8]) -> bool {
    attr_of(payload, NFTA_SET_ELEM_LIST_ELEMENTS).is_none_or(|a| a.value.is_empty())
}

/// NFTA_RULE_COMPAT for a rule with an xtables `match` or `target` expression, which the
/// kernel takes on input only (dumps do not carry it): the layer 4 protocol the rule matches
/// (`-p tcp` as `meta l4proto` or the IPv4/IPv6 header's protocol byte, then `cmp`) and
/// whether that match is inverted. xtables extensions check it (multiport, REJECT
/// --reject-with tcp-reset, DNAT to a port need a protocol).
pub(super) fn rule_compat(payload: &[u8]) -> Option<Vec<u8>> {
    const NFT_META_L4PROTO: u32 = 16;
    const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
    let list = attr_of(payload, NFTA_RULE_EXPRESSIONS)?;
    // every rule passes here twice per restore (the batch sized, then filled): nothing is
    // allocated per expression (collected attributes and names took 55 ms of CPU at 55,000
    // rules, on the core the links are being made on)
    let exprs = || attrs(list.value).filter_map(|a| a.ok());
    let name_is = |expr: &Attr, want: &[u8]| {
        nested_find(expr.value, NFTA_EXPR_NAME)
            .is_some_and(|n| n.value.split(|b| *b == 0).next() == Some(want))
    };
    if !exprs().any(|e| name_is(&e, b"match") || name_is(&e, b"target")) {
        return None;
    }
    // the register a protocol was loaded into, then the protocol and inversion a cmp found
    let mut loaded: Option<u32> = None;
    let mut proto: Option<(u32, bool)> = None;
    for elem in exprs() {
        let data = nested_find(elem.value, NFTA_EXPR_DATA).map_or(&[][..], |d| d.value);
        let get = |ty: u16| nested_find(data, ty).and_then(|a| be32(&a).ok());
        let meta = name_is(&elem, b"meta") && get(2) == Some(NFT_META_L4PROTO);
        let header = name_is(&elem, b"payload")
            && get(2) == Some(NFT_PAYLOAD_NETWORK_HEADER)
            && get(4) == Some(1)
            && matches!(
                (payload.first(), get(3)),
                (Some(2), Some(9)) | (Some(10), Some(6))
            );
        if meta || header {
            loaded = get(1);
        } else if name_is(&elem, b"cmp") && proto.is_none() && loaded.is_some() && get(1) == loaded
        {
            let value = nested_find(data, 3)
                .and_then(|d| nested_find(d.value, 1))
                .and_then(|v| v.value.first().copied());
            if let Some(v) = value {
                // NFT_CMP_EQ 0, NFT_CMP_NEQ 1
                proto = Some((u32::from(v), get(2) == Some(1)));
            }
            loaded = None;
        }
    }
    let (p, inv) = proto.unwrap_or((0, false));
    // NFTA_RULE_COMPAT { NFTA_RULE_COMPAT_PROTO, NFTA_RULE_COMPAT_FLAGS }, where
    // NFT_RULE_COMPAT_F_INV is 1 << 1
    let flags = if inv { 2 } else { 0 };
    Some(nest(
        NFTA_RULE_COMPAT,
        &[be32_attr(1, p), be32_attr(2, flags)],
    ))
}

fn nested_find(buf: &[u8], ty: u16) -> Option<Attr<'_>> {
    attrs(buf).filter_map(|a| a.ok()).find(|a| a.ty() == ty)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in super::super) fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put(&mut v, kind, value).expect("short attribute");
        v
    }

    fn expr(name: &str, data: &[u8]) -> Vec<u8> {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        [attr(NFTA_EXPR_NAME, &n), attr(NFTA_EXPR_DATA, data)].concat()
    }

    /// A rule as the kernel dumps it: table, chain, handle, expressions (a counter with
    /// traffic, then a jump to `target`), position.
    pub(in super::super) fn dumped_rule(chain: &str, target: &str) -> Vec<u8> {
        let counter = [
            attr(NFTA_COUNTER_BYTES, &1234u64.to_be_bytes()),
            attr(NFTA_COUNTER_PACKETS, &7u64.to_be_bytes()),
        ]
        .concat();
        let mut t = target.as_bytes().to_vec();
        t.push(0);
        let verdict = [
            attr(1, &(-3i32).to_be_bytes()),
            attr(NFTA_VERDICT_CHAIN, &t),
        ]
        .concat();
        let imm = [
            attr(1, &0u32.to_be_bytes()),
            attr(NFTA_IMMEDIATE_DATA, &attr(NFTA_DATA_VERDICT, &verdict)),
        ]
        .concat();
        let list = [
            attr(NFTA_LIST_ELEM, &expr("counter", &counter)),
            attr(NFTA_LIST_ELEM, &expr("immediate", &imm)),
        ]
        .concat();
        let mut c = chain.as_bytes().to_vec();
        c.push(0);
        [
            vec![2, 0, 0, 5],
            attr(NFTA_RULE_TABLE, b"filter\0"),
            attr(NFTA_RULE_CHAIN, &c),
            attr(3, &42u64.to_be_bytes()),
            attr(NFTA_RULE_EXPRESSIONS, &list),
            attr(6, &41u64.to_be_bytes()),
        ]
        .concat()
    }

    #[test]
    fn rule_loses_handle_position_and_counts() {
        let dumped = dumped_rule("INPUT", "MINE");
        let n = normalize(Obj::Rule, &dumped, false).expect("normal form");
        // nfgenmsg keeps the family only
        assert_eq!(&n[..4], &[2, 0, 0, 0]);
        let kinds: Vec<u16> = attrs(&n[4..]).map(|a| a.expect("attr").ty()).collect();
        assert_eq!(
            kinds,
            [NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS]
        );
        // the counter's values are zero, the jump is intact
        assert!(!n.windows(8).any(|w| w == 1234u64.to_be_bytes()));
        assert_eq!(rule_jumps(&n), ["MINE"]);
        assert_eq!(rule_chain(&n).as_deref(), Some("INPUT"));
        // idempotent
        assert_eq!(normalize(Obj::Rule, &n, false).expect("again"), n);
        // with counters the traffic stays
        let kept = normalize(Obj::Rule, &dumped, true).expect("normal form");
        assert!(kept.windows(8).any(|w| w == 1234u64.to_be_bytes()));
    }

    #[test]
    fn xtables_rules_get_their_protocol_back() {
        // iptables-nft's `! -p udp -m multiport ...`: meta l4proto => reg 1, cmp neq reg 1
        // 17, then an xtables match
        let meta = expr(
            "meta",
            &[attr(1, &1u32.to_be_bytes()), attr(2, &16u32.to_be_bytes())].concat(),
        );
        let cmp = expr(
            "cmp",
            &[
                attr(1, &1u32.to_be_bytes()),
                attr(2, &1u32.to_be_bytes()),
                attr(3, &attr(1, &[17])),
            ]
            .concat(),
        );
        let xt = expr(
            "match",
            &[attr(1, b"multiport\0"), attr(2, &1u32.to_be_bytes())].concat(),
        );
        let rule = |exprs: &[&Vec<u8>]| {
            let list: Vec<u8> = exprs.iter().flat_map(|e| attr(NFTA_LIST_ELEM, e)).collect();
            [vec![2, 0, 0, 0], attr(NFTA_RULE_EXPRESSIONS, &list)].concat()
        };
        let want = attr(
            NFTA_RULE_COMPAT,
            &[attr(1, &17u32.to_be_bytes()), attr(2, &2u32.to_be_bytes())].concat(),
        );
        assert_eq!(rule_compat(&rule(&[&meta, &cmp, &xt])), Some(want));
        // no xtables expression: nothing to add
        assert_eq!(rule_compat(&rule(&[&meta, &cmp])), None);
        // an xtables expression without a protocol: protocol 0, not inverted
        let none = attr(
            NFTA_RULE_COMPAT,
            &[attr(1, &0u32.to_be_bytes()), attr(2, &0u32.to_be_bytes())].concat(),
        );
        assert_eq!(rule_compat(&rule(&[&xt])), Some(none));
    }

    #[test]
    fn table_keeps_dormant_only() {
        let dumped = [
            vec![1, 0, 0, 9],
            attr(NFTA_TABLE_NAME, b"t\0"),
            attr(NFTA_TABLE_FLAGS, &0x7u32.to_be_bytes()),
            attr(3, &2u32.to_be_bytes()),
            attr(4, &9u64.to_be_bytes()),
            attr(7, &1234u32.to_be_bytes()),
        ]
        .concat();
        let n = normalize(Obj::Table, &dumped, true).expect("normal form");
        let want = [
            vec![1, 0, 0, 0],
            attr(NFTA_TABLE_NAME, b"t\0"),
            attr(NFTA_TABLE_FLAGS, &1u32.to_be_bytes()),
        ]
        .concat();
        assert_eq!(n, want);
    }

    #[test]
    fn short_and_broken_messages_are_refused() {
        let e = normalize(Obj::Chain, &[1, 0], false).expect_err("short");
        assert!(e.contains("chain message of 2 bytes"), "{e}");
        let mut bad = vec![1, 0, 0, 0];
        bad.extend_from_slice(&[40, 0, 1, 0, b'x', 0, 0, 0]);
        let e = normalize(Obj::Chain, &bad, false).expect_err("bad length");
        assert!(e.contains("length 40"), "{e}");
    }
}
