//! Golden tests: RTM_NEWNEXTHOP messages a 6.18 kernel dumped, decoded by hand; requests
//! built from them, checked byte for byte and decoded back.

#![allow(clippy::unwrap_used)]

use crhook_proto as pb;

use super::*;
use crate::ifmap::fixtures::{moved, saved as ifs};
use crate::nla::{hex, req_bytes, unhex};

/// id 1 via 10.1.1.2 dev va (3)
const V4: &str = "02fd00000000000008000100010000000800050003000000080006000a010102";
/// id 2 via 10.1.2.2 dev vb (2)
const V4_B: &str = "02fd00000000000008000100020000000800050002000000080006000a010202";
/// id 3 group 1,2/2,3 (weights 2 and 3), with the reply's NHA_OP_FLAGS
const GROUP: &str =
    "0000000000000000080001000300000006000300000000001400020001000000010000000200000002000000\
                     08000e0000000080";
/// id 4 blackhole
const BLACKHOLE: &str = "0200000000000000080001000400000004000400";
/// id 5 via 2001:db8::2 dev va
const V6: &str =
    "0afd000000000000080001000500000008000500030000001400060020010db8000000000000000000000002";
/// id 6 group 1/2 type resilient buckets 8 idle_timer 100 unbalanced_timer 50 (unbalanced_time 0)
const RESILIENT: &str = "00000000000000000800010006000000060003000100000014000200010000000000000002000000000000\
                         0028000c800600010008000000080002001027000008000300881300000c00040000000000000000000800\
                         0e0000000080";

fn dec(h: &str) -> pb::NexthopObject {
    decode::decode(&unhex(h), &ifs()).unwrap()
}

#[test]
fn decodes_nexthops_and_groups() {
    assert_eq!(
        dec(V4),
        pb::NexthopObject {
            id: 1,
            family: 2,
            gateway: vec![10, 1, 1, 2],
            oif: 3,
            oif_name: "va".into(),
            ..Default::default()
        }
    );
    let g = dec(GROUP);
    assert_eq!(
        g.group,
        vec![
            pb::NexthopGroupMember { id: 1, weight: 2 },
            pb::NexthopGroupMember { id: 2, weight: 3 }
        ]
    );
    // NHA_OP_FLAGS of the reply is not kept
    assert!(g.raw.is_empty());
    assert_eq!(describe(&g), "nexthop id 3 group 1/2,2/3");
    let b = dec(BLACKHOLE);
    assert!(b.blackhole);
    assert_eq!(describe(&b), "nexthop id 4 blackhole");
    assert_eq!(describe(&dec(V6)), "nexthop id 5 via 2001:db8::2 dev va");
    assert_eq!(key(&dec(V6)), "id 5");
}

#[test]
fn resilient_group_keeps_its_configuration_only() {
    let r = dec(RESILIENT);
    assert_eq!(r.group_type, 1);
    assert_eq!(r.raw.len(), 1);
    assert_eq!(r.raw[0].kind, 12 | 0x8000);
    // buckets 8, idle timer, unbalanced timer; no unbalanced time
    assert_eq!(
        hex(&r.raw[0].value),
        "060001000800000008000200102700000800030088130000"
    );
}

#[test]
fn groups_come_after_their_members() {
    let msgs: Vec<(u16, Vec<u8>)> = [GROUP, V4, RESILIENT, V4_B, BLACKHOLE]
        .iter()
        .map(|h| (RTM_NEWNEXTHOP, unhex(h)))
        .collect();
    let ids: Vec<u32> = from_dump(&msgs, &ifs())
        .unwrap()
        .iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(ids, [1, 2, 4, 3, 6]);
}

fn add_hex(h: &str) -> String {
    let req = add_request(&dec(h), &moved()).unwrap();
    let (ty, b) = req_bytes(&req);
    assert_eq!(ty, RTM_NEWNEXTHOP);
    hex(b)
}

#[test]
fn add_requests_golden() {
    // scope 0 in a request; the device mapped to 13
    assert_eq!(
        add_hex(V4),
        "02000000000000000800010001000000080005000d000000080006000a010102"
    );
    assert_eq!(
        add_hex(GROUP),
        "0000000000000000080001000300000014000200010000000100000002000000020000000600030000000000"
    );
    assert_eq!(
        add_hex(BLACKHOLE),
        "0200000000000000080001000400000004000400"
    );
    assert_eq!(
        add_hex(RESILIENT),
        "0000000000000000080001000600000014000200010000000000000002000000000000000600030001000000\
         1c000c80060001000800000008000200102700000800030088130000"
    );
    let live = IfMap::from_names([(12, "vb".to_string()), (13, "va".to_string())]);
    for h in [V4, V4_B, GROUP, BLACKHOLE, V6, RESILIENT] {
        let saved = dec(h);
        let req = add_request(&saved, &moved()).unwrap();
        let mut back = decode::decode(req_bytes(&req).1, &live).unwrap();
        let mut want = saved.clone();
        normalize(&mut back);
        normalize(&mut want);
        assert_eq!(back, want, "{}", describe(&saved));
    }
}

#[test]
fn wide_weights_use_the_high_byte() {
    let mut g = dec(GROUP);
    g.group[0].weight = 1000;
    let req = add_request(&g, &moved()).unwrap();
    let back = decode::decode(req_bytes(&req).1, &ifs()).unwrap();
    assert_eq!(back.group[0].weight, 1000);
    g.group[0].weight = 70000;
    let e = add_request(&g, &moved()).err().unwrap().to_string();
    assert_eq!(
        e,
        "nexthop id 3 group 1/70000,2/3: weight 70000 of member 1 out of range"
    );
}

#[test]
fn delete_by_id() {
    let req = del_request(&dec(GROUP), &moved()).unwrap();
    let (ty, b) = req_bytes(&req);
    assert_eq!(ty, RTM_DELNEXTHOP);
    assert_eq!(hex(b), "00000000000000000800010003000000");
}

#[test]
fn link_state_and_missing_links() {
    let mut a = dec(V4);
    a.flags |= RTNH_F_LINKDOWN | RTNH_F_DEAD | RTNH_F_ONLINK;
    let req = add_request(&a, &moved()).unwrap();
    assert_eq!(
        decode::decode(req_bytes(&req).1, &ifs()).unwrap().flags,
        RTNH_F_ONLINK
    );
    let mut b = dec(V4);
    normalize(&mut a);
    normalize(&mut b);
    assert_eq!(a.flags & !RTNH_F_ONLINK, b.flags);
    let only_vb = IfMap::by_name([(2, "vb".to_string())], [(12, "vb".to_string())]);
    let e = add_request(&dec(V4), &only_vb).err().unwrap().to_string();
    assert_eq!(
        e,
        "nexthop id 1 via 10.1.1.2 dev va: its link va (saved ifindex 3) does not exist in the namespace"
    );
}

#[test]
fn bad_messages_are_errors() {
    let b = unhex(BLACKHOLE);
    assert!(decode::decode(&b[..8], &ifs())
        .unwrap_err()
        .contains("without NHA_ID"));
    let mut g = unhex(GROUP);
    // NHA_GROUP of 19 bytes
    let at = hex(&g).find("14000200").unwrap() / 2;
    g[at] = 0x13;
    assert!(decode::decode(&g, &ifs())
        .unwrap_err()
        .contains("NHA_GROUP of 15 bytes"));
}
