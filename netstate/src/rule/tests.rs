//! Golden tests: RTM_NEWRULE messages a 6.18 kernel dumped, decoded; requests built from
//! them, checked byte for byte and decoded back.

#![allow(clippy::unwrap_used)]

use crhook_proto as pb;

use super::*;
use crate::nla::{hex, req_bytes, unhex};

/// 0: from all lookup local proto kernel
const V4_DEFAULT_LOCAL: &str =
    "02000000ff0000010000000008000f00ff00000008000e00ffffffff0500150002000000";
/// 32766: from all lookup main proto kernel
const V4_DEFAULT_MAIN: &str =
    "02000000fe0000010000000008000f00fe00000008000e00ffffffff050015000200000008000600fe7f0000";
/// 100: from all fwmark 0x10/0xff lookup 100
const V4_FWMARK: &str = "02000000640000010000000008000f006400000008000e00ffffffff0500150000000000\
                         080006006400000008000a001000000008001000ff000000";
/// 110: from all iif va lookup 200
const V4_IIF: &str = "02000000c80000010000000008000f00c800000008000e00ffffffff05001500000000000700030076610000080006006e000000";
/// 120: from all uidrange 1000-2000 lookup 100
const V4_UID: &str = "02000000640000010000000008000f006400000008000e00ffffffff0500150000000000\
                      08000600780000000c001400e8030000d0070000";
/// 130: from all ipproto tcp dport 80-90 lookup 200
const V4_DPORT: &str = "02000000c80000010000000008000f00c800000008000e00ffffffff0500150000000000\
                        08000600820000000800180050005a000500160006000000";
/// 140: from all lookup main suppress_prefixlength 0
const V4_SUPPRESS: &str =
    "02000000fe0000010000000008000f00fe00000008000e00000000000500150000000000080006008c000000";
/// 150: not from 10.0.0.0/8 goto 200
const V4_GOTO_NOT: &str =
    "02000800000000020200000008000f000000000008000e00ffffffff0500150000000000\
                           080006009600000008000400c8000000080002000a000000";
/// 200: from 10.0.0.0/8 lookup 1000
const V4_TABLE_1000: &str =
    "02000800fc0000010000000008000f00e803000008000e00ffffffff0500150000000000\
                             08000600c8000000080002000a000000";
/// 100: from all fwmark 0x20 lookup 100 (IPv6)
const V6_FWMARK: &str = "0a000000640000010000000008000f006400000008000e00ffffffff0500150000000000\
                         080006006400000008000a002000000008001000ffffffff";
/// 110: from 2001:db8::/32 iif va lookup 200 (IPv6)
const V6_FROM_IIF: &str = "0a002000c80000010000000008000f00c800000008000e00ffffffff0500150000000000\
                           0700030076610000080006006e0000001400020020010db8000000000000000000000000";
/// 32766: from all lookup main proto kernel (IPv6)
const V6_DEFAULT_MAIN: &str =
    "0a000000fe0000010000000008000f00fe00000008000e00ffffffff050015000200000008000600fe7f0000";

fn dec(h: &str) -> Option<pb::Rule> {
    decode::decode(&unhex(h)).unwrap()
}

#[test]
fn kernel_defaults_are_left_out() {
    assert_eq!(dec(V4_DEFAULT_LOCAL), None);
    assert_eq!(dec(V4_DEFAULT_MAIN), None);
    assert_eq!(dec(V6_DEFAULT_MAIN), None);
    // the same rule added by a user (protocol unspec) is user state
    let mut b = unhex(V4_DEFAULT_MAIN);
    let at = hex(&b).find("0500150002").unwrap() / 2 + 4;
    b[at] = 0;
    assert!(decode::decode(&b).unwrap().is_some());
}

#[test]
fn decodes_selectors_and_actions() {
    let f = dec(V4_FWMARK).unwrap();
    assert_eq!(
        f,
        pb::Rule {
            family: 2,
            priority: Some(100),
            table: 100,
            action: FR_ACT_TO_TBL,
            fwmark: Some(0x10),
            fwmask: Some(0xff),
            ..Default::default()
        }
    );
    assert_eq!(
        key(&f),
        "inet pref 100 from all fwmark 0x10/0xff lookup 100"
    );
    assert_eq!(dec(V4_IIF).unwrap().iifname, "va");
    let u = dec(V4_UID).unwrap();
    assert_eq!((u.uid_start, u.uid_end), (Some(1000), Some(2000)));
    let d = dec(V4_DPORT).unwrap();
    assert_eq!(
        (d.ip_proto, d.dport_start, d.dport_end, d.sport_start),
        (Some(6), Some(80), Some(90), None)
    );
    assert_eq!(
        key(&d),
        "inet pref 130 from all ipproto 6 dport 80-90 lookup 200"
    );
    let s = dec(V4_SUPPRESS).unwrap();
    assert_eq!(s.suppress_prefixlen, Some(0));
    assert_eq!(dec(V4_FWMARK).unwrap().suppress_prefixlen, None);
    let g = dec(V4_GOTO_NOT).unwrap();
    assert_eq!(
        (g.action, g.goto, g.flags, g.table),
        (FR_ACT_GOTO, Some(200), FIB_RULE_INVERT, 0)
    );
    assert_eq!(
        describe(&g),
        "rule inet pref 150 not from 10.0.0.0/8 goto 200"
    );
    let t = dec(V4_TABLE_1000).unwrap();
    assert_eq!(t.table, 1000);
    let v = dec(V6_FROM_IIF).unwrap();
    assert_eq!(
        key(&v),
        "inet6 pref 110 from 2001:db8::/32 iif va lookup 200"
    );
}

fn add_hex(h: &str) -> String {
    let req = add_request(&dec(h).unwrap(), &IfMap::default()).unwrap();
    let (ty, b) = req_bytes(&req);
    assert_eq!(ty, RTM_NEWRULE);
    hex(b)
}

#[test]
fn add_requests_golden() {
    assert_eq!(
        add_hex(V4_FWMARK),
        "02000000640000010000000008000600640000000800\
         0f006400000008000a001000000008001000ff0000000500150000000000"
    );
    // a table above 255 goes in FRA_TABLE with RT_TABLE_COMPAT in the header
    assert_eq!(
        add_hex(V4_TABLE_1000),
        "02000800fc00000100000000080006\
         00c800000008000f00e8030000080002000a0000000500150000000000"
    );
    // goto: no table; the invert flag kept
    assert_eq!(
        add_hex(V4_GOTO_NOT),
        "0200080000000002020000000800060096000000080002000a00000008000400c80000000500150000000000"
    );
    for h in [
        V4_FWMARK,
        V4_IIF,
        V4_UID,
        V4_DPORT,
        V4_SUPPRESS,
        V4_GOTO_NOT,
        V4_TABLE_1000,
        V6_FWMARK,
        V6_FROM_IIF,
    ] {
        let saved = dec(h).unwrap();
        let req = add_request(&saved, &IfMap::default()).unwrap();
        let back = decode::decode(req_bytes(&req).1).unwrap().unwrap();
        assert_eq!(back, saved, "{}", describe(&saved));
        // a delete carries the same selectors
        let del = del_request(&saved, &IfMap::default()).unwrap();
        assert_eq!(req_bytes(&del), (RTM_DELRULE, req_bytes(&req).1));
    }
}

#[test]
fn state_flags_are_not_sent() {
    let mut r = dec(V4_GOTO_NOT).unwrap();
    r.flags |= 4 | 8; // UNRESOLVED, IIF_DETACHED
    let req = add_request(&r, &IfMap::default()).unwrap();
    assert_eq!(
        decode::decode(req_bytes(&req).1).unwrap().unwrap().flags,
        FIB_RULE_INVERT
    );
}

#[test]
fn unknown_attributes_are_kept_and_sent() {
    let mut b = unhex(V6_FWMARK);
    // FRA_FLOWLABEL (26) and FRA_FLOWLABEL_MASK (27), not modelled
    b.extend_from_slice(&unhex("08001a000001234508001b00000fffff"));
    let r = decode::decode(&b).unwrap().unwrap();
    assert_eq!(r.raw.len(), 2);
    assert_eq!(
        (r.raw[0].kind, r.raw[0].value.clone()),
        (26, vec![0, 1, 0x23, 0x45])
    );
    assert!(key(&r).contains("attr26=00012345 attr27=000fffff"));
    let req = add_request(&r, &IfMap::default()).unwrap();
    assert!(hex(req_bytes(&req).1).ends_with("08001a000001234508001b00000fffff"));
}

#[test]
fn out_of_range_fields_are_errors_naming_the_rule() {
    let mut r = dec(V4_DPORT).unwrap();
    r.dport_end = Some(70000);
    let e = add_request(&r, &IfMap::default())
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "rule inet pref 130 from all ipproto 6 dport 80-70000 lookup 200: port 70000 out of range"
    );
}

#[test]
fn short_attribute_is_an_error() {
    let mut b = unhex(V4_UID);
    let n = b.len();
    // shrink FRA_UID_RANGE to 4 bytes of payload
    b[n - 12] = 8;
    b.truncate(n - 4);
    assert!(decode::decode(&b).unwrap_err().contains("FRA_UID_RANGE"));
}

#[test]
fn dscp_l3mdev_tun_id_and_realms_round_trip() {
    let mut b = unhex(V4_FWMARK);
    // FRA_DSCP 10, FRA_L3MDEV 1, FRA_PAD, FRA_TUN_ID 5 (be64), FRA_FLOW 0x00040003
    b.extend_from_slice(&unhex(
        "050019000a0000000500130001000000040012000c000c00000000000000000508000b0003000400",
    ));
    let r = decode::decode(&b).unwrap().unwrap();
    assert_eq!(
        (r.dscp, r.l3mdev, r.tun_id, r.flow),
        (Some(10), Some(1), Some(5), Some(0x0004_0003))
    );
    assert!(r.raw.is_empty(), "the pad is not kept: {:?}", r.raw);
    let req = add_request(&r, &IfMap::default()).unwrap();
    assert_eq!(decode::decode(req_bytes(&req).1).unwrap().unwrap(), r);
    assert!(
        key(&r).contains("dscp 10 fwmark 0x10/0xff tun_id 5 l3mdev 1 realms 0x40003"),
        "{}",
        key(&r)
    );
}
