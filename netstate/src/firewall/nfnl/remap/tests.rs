//! Rules built the way iptables-nft and nft build them, remapped, and read back.

use super::*;
use crate::firewall::nfnl::norm::{be32_attr, nest, raw_attr, string_attr};

fn expr(name: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    nest(
        NFTA_LIST_ELEM | 0x8000,
        &[
            string_attr(NFTA_EXPR_NAME, name),
            nest(NFTA_EXPR_DATA | 0x8000, parts),
        ],
    )
}

fn payload(offset: u32, len: u32, dreg: u32) -> Vec<u8> {
    expr(
        "payload",
        &[
            be32_attr(NFTA_PAYLOAD_DREG, dreg),
            be32_attr(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER),
            be32_attr(NFTA_PAYLOAD_OFFSET, offset),
            be32_attr(NFTA_PAYLOAD_LEN, len),
        ],
    )
}

fn cmp(sreg: u32, v: &[u8]) -> Vec<u8> {
    expr(
        "cmp",
        &[
            be32_attr(NFTA_CMP_SREG, sreg),
            be32_attr(NFTA_CMP_OP, NFT_CMP_EQ),
            nest(NFTA_CMP_DATA | 0x8000, &[raw_attr(NFTA_DATA_VALUE, v)]),
        ],
    )
}

fn meta(key: u32, dreg: u32) -> Vec<u8> {
    expr(
        "meta",
        &[
            be32_attr(NFTA_META_KEY, key),
            be32_attr(NFTA_META_DREG, dreg),
        ],
    )
}

fn rule(family: u8, exprs: &[Vec<u8>]) -> Vec<u8> {
    let mut p = vec![family, 0, 0, 0];
    p.extend(string_attr(1, "filter"));
    p.extend(string_attr(2, "INPUT"));
    p.extend(nest(NFTA_RULE_EXPRESSIONS | 0x8000, exprs));
    p
}

fn table(family: u32, rules: Vec<Vec<u8>>) -> NftTable {
    NftTable {
        family,
        name: "filter".into(),
        rules: rules.into_iter().map(Into::into).collect(),
        ..Default::default()
    }
}

fn remaps(v: &[&str]) -> Remaps {
    crate::transform::remap::parse_all(v)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

const OLD: [u8; 4] = [10, 88, 0, 9];
const NEW: [u8; 4] = [10, 88, 0, 11];

#[test]
fn ip_daddr_match_is_remapped() {
    // iptables -A INPUT -d 10.88.0.9/32: payload 4b @ network + 16, cmp eq
    let mut t = table(2, vec![rule(2, &[payload(16, 4, 1), cmp(1, &OLD)])]);
    let m = remaps(&["10.88.0.9=10.88.0.11"]);
    assert_eq!(remap_table(&mut t, &m).expect("remap"), 1);
    assert!(contains(&t.rules[0], &NEW));
    assert!(!contains(&t.rules[0], &OLD));
}

#[test]
fn equal_constant_not_compared_with_an_address_is_left_alone() {
    // meta mark 0x0a580009 (NFT_META_MARK = 3) and a transport-header cmp of the same bytes
    let transport = expr(
        "payload",
        &[
            be32_attr(NFTA_PAYLOAD_DREG, 1),
            be32_attr(NFTA_PAYLOAD_BASE, 2),
            be32_attr(NFTA_PAYLOAD_OFFSET, 0),
            be32_attr(NFTA_PAYLOAD_LEN, 4),
        ],
    );
    let rules = vec![
        rule(2, &[meta(3, 1), cmp(1, &OLD)]),
        rule(2, &[transport, cmp(1, &OLD)]),
        // the address field's neighbour: the IPv4 header's TTL..checksum at offset 8
        rule(2, &[payload(8, 4, 1), cmp(1, &OLD)]),
        // a payload loaded, then another register loaded by an unknown expression and compared
        rule(
            2,
            &[
                payload(16, 4, 1),
                expr("rt", &[be32_attr(1, 1)]),
                cmp(1, &OLD),
            ],
        ),
    ];
    let before = rules.clone();
    let mut t = table(2, rules);
    let m = remaps(&["10.88.0.9=10.88.0.11"]);
    assert_eq!(remap_table(&mut t, &m).expect("remap"), 0);
    assert_eq!(t.rules, before);
}

#[test]
fn masked_prefix_and_short_loads_follow_a_prefix_remap_only_when_inside_old() {
    // -s 10.88.0.0/16 as iptables-nft writes it (4 bytes, bitwise mask) and as nft (2 bytes)
    let bitwise = expr(
        "bitwise",
        &[
            be32_attr(NFTA_BITWISE_SREG, 1),
            be32_attr(NFTA_BITWISE_DREG, 1),
            be32_attr(3, 4),
            nest(
                NFTA_BITWISE_MASK | 0x8000,
                &[raw_attr(NFTA_DATA_VALUE, &[255, 255, 0, 0])],
            ),
            nest(
                NFTA_BITWISE_XOR | 0x8000,
                &[raw_attr(NFTA_DATA_VALUE, &[0, 0, 0, 0])],
            ),
        ],
    );
    let masked = rule(2, &[payload(12, 4, 1), bitwise, cmp(1, &[10, 88, 0, 0])]);
    let short = rule(2, &[payload(12, 2, 1), cmp(1, &[10, 88])]);
    // a host remap does not touch a /16 that contains the host
    let mut t = table(2, vec![masked.clone(), short.clone()]);
    assert_eq!(
        remap_table(&mut t, &remaps(&["10.88.0.9=10.88.0.11"])).expect("remap"),
        0
    );
    // a prefix remap moves both
    let mut t = table(2, vec![masked, short]);
    assert_eq!(
        remap_table(&mut t, &remaps(&["10.88.0.0/16=10.89.0.0/16"])).expect("remap"),
        2
    );
    assert!(contains(&t.rules[0], &[10, 89, 0, 0]));
    assert!(contains(&t.rules[1], &[10, 89]));
    assert!(!contains(&t.rules[1], &[10, 88]));
}

#[test]
fn inet_tables_use_the_nfproto_match() {
    let v6old: std::net::Ipv6Addr = "fd00::9".parse().expect("ip");
    let v6new: std::net::Ipv6Addr = "fd00::11".parse().expect("ip");
    let rules = vec![
        // meta nfproto ipv4; ip saddr 10.88.0.9
        rule(
            1,
            &[
                meta(NFT_META_NFPROTO, 1),
                cmp(1, &[2]),
                payload(12, 4, 1),
                cmp(1, &OLD),
            ],
        ),
        // meta nfproto ipv6; ip6 daddr fd00::9
        rule(
            1,
            &[
                meta(NFT_META_NFPROTO, 1),
                cmp(1, &[10]),
                payload(24, 16, 1),
                cmp(1, &v6old.octets()),
            ],
        ),
        // no protocol match: nothing is known to be an address
        rule(1, &[payload(12, 4, 1), cmp(1, &OLD)]),
    ];
    let mut t = table(1, rules);
    let m = remaps(&["10.88.0.9=10.88.0.11", "fd00::9=fd00::11"]);
    assert_eq!(remap_table(&mut t, &m).expect("remap"), 2);
    assert!(contains(&t.rules[0], &NEW));
    assert!(contains(&t.rules[1], &v6new.octets()));
    assert!(contains(&t.rules[2], &OLD));
}

#[test]
fn dnat_target_is_remapped() {
    // -j DNAT --to-destination 10.88.0.9:8080
    let imm = |reg: u32, v: &[u8]| {
        expr(
            "immediate",
            &[
                be32_attr(NFTA_IMMEDIATE_DREG, reg),
                nest(
                    NFTA_IMMEDIATE_DATA | 0x8000,
                    &[raw_attr(NFTA_DATA_VALUE, v)],
                ),
            ],
        )
    };
    let nat = expr(
        "nat",
        &[
            be32_attr(1, 1),
            be32_attr(NFTA_NAT_FAMILY, 2),
            be32_attr(NFTA_NAT_REG_ADDR_MIN, 1),
            be32_attr(NFTA_NAT_REG_ADDR_MAX, 1),
            be32_attr(5, 2),
        ],
    );
    // the port immediate 0x1f90 shares bytes with nothing, and a mark immediate equal to the
    // old address that no nat reads stays
    let mut t = table(
        2,
        vec![rule(
            2,
            &[imm(1, &OLD), imm(2, &[0x1f, 0x90]), imm(3, &OLD), nat],
        )],
    );
    assert_eq!(
        remap_table(&mut t, &remaps(&["10.88.0.9=10.88.0.11"])).expect("remap"),
        1
    );
    let r = &t.rules[0];
    let first = r.windows(4).position(|w| w == NEW).expect("new address");
    let old_at = r
        .windows(4)
        .position(|w| w == OLD)
        .expect("mark constant kept");
    assert!(first < old_at, "the nat address comes first in the rule");
}

#[test]
fn set_elements_of_address_sets_are_remapped() {
    let set = |name: &str, key: u32, flags: u32| {
        let mut p = vec![2, 0, 0, 0];
        p.extend(string_attr(1, "filter"));
        p.extend(string_attr(NFTA_SET_NAME, name));
        p.extend(be32_attr(NFTA_SET_FLAGS, flags));
        p.extend(be32_attr(NFTA_SET_KEY_TYPE, key));
        p
    };
    let elems = |name: &str, v: &[u8]| {
        let mut p = vec![2, 0, 0, 0];
        p.extend(string_attr(1, "filter"));
        p.extend(string_attr(NFTA_SET_ELEM_LIST_SET, name));
        p.extend(nest(
            NFTA_SET_ELEM_LIST_ELEMENTS | 0x8000,
            &[nest(
                NFTA_LIST_ELEM | 0x8000,
                &[nest(
                    NFTA_SET_ELEM_KEY | 0x8000,
                    &[raw_attr(NFTA_DATA_VALUE, v)],
                )],
            )],
        ));
        p
    };
    let mut t = NftTable {
        family: 2,
        name: "filter".into(),
        sets: vec![
            set("addrs", TYPE_IPADDR, 0).into(),
            set("marks", 19, 0).into(),
            set("ranges", TYPE_IPADDR, NFT_SET_INTERVAL).into(),
        ],
        elements: vec![
            elems("addrs", &OLD).into(),
            elems("marks", &OLD).into(),
            elems("ranges", &OLD).into(),
        ],
        ..Default::default()
    };
    assert_eq!(
        remap_table(&mut t, &remaps(&["10.88.0.9=10.88.0.11"])).expect("remap"),
        1
    );
    assert!(contains(&t.elements[0], &NEW));
    assert!(contains(&t.elements[1], &OLD));
    assert!(contains(&t.elements[2], &OLD));
}

#[test]
fn prefix_masks() {
    assert_eq!(prefix_bits(&[255, 255, 0, 0]), Some(16));
    assert_eq!(prefix_bits(&[255, 240, 0, 0]), Some(12));
    assert_eq!(prefix_bits(&[255, 0, 255, 0]), None);
    assert_eq!(prefix_bits(&[0x0f, 0, 0, 0]), None);
}

#[test]
fn xtables_dnat_target_is_remapped() {
    // -j DNAT --to-destination 10.88.0.9:8080 as iptables-nft keeps it: revision 2,
    // struct nf_nat_range2 { flags, min_addr, max_addr, min_proto, max_proto, base_proto }
    let mut info = Vec::new();
    info.extend_from_slice(&3u32.to_ne_bytes()); // MAP_IPS | PROTO_SPECIFIED
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&OLD);
    info.extend_from_slice(&addr);
    info.extend_from_slice(&addr);
    info.extend_from_slice(&[0x1f, 0x90, 0, 0, 0x1f, 0x90, 0, 0, 0, 0, 0, 0]);
    let target = |name: &str, info: &[u8]| {
        expr(
            "target",
            &[
                string_attr(NFTA_TARGET_NAME, name),
                be32_attr(NFTA_TARGET_REV, 2),
                raw_attr(NFTA_TARGET_INFO, info),
            ],
        )
    };
    let mut t = table(
        2,
        vec![
            rule(2, &[target("DNAT", &info)]),
            rule(2, &[target("MARK", &info)]),
        ],
    );
    assert_eq!(
        remap_table(&mut t, &remaps(&["10.88.0.9=10.88.0.11"])).expect("remap"),
        1
    );
    assert_eq!(t.rules[0].windows(4).filter(|w| *w == NEW).count(), 2);
    assert!(!contains(&t.rules[0], &OLD));
    assert!(contains(&t.rules[1], &OLD), "another target's bytes stay");
}
