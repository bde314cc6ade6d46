//! Golden tests: RTM_NEWADDR messages a 6.18 kernel dumped, decoded; requests built from
//! them, checked byte for byte and decoded back.

#![allow(clippy::unwrap_used)]

use crhook_proto as pb;

use super::*;
use crate::ifmap::fixtures::{moved, saved as ifs};
use crate::nla::{hex, req_bytes, unhex};

/// 10.1.1.5/24 dev va (3), label va:x, secondary
const V4_SECONDARY: &str =
    "0218810003000000080001000a010105080002000a0101050900030076613a7800000000\
                            080008008100000014000600ffffffffffffffff831a0100831a0100";
/// 10.7.7.7/24 broadcast 10.7.7.255 dev vb (2) label vb:m metric 50
const V4_BRD_METRIC: &str = "0218800002000000080001000a070707080002000a070707080004000a0707ff0900030076623a6d00000000\
                             0800080080000000080009003200000014000600ffffffffffffffff60d1010060d10100";
/// 10.9.0.1 peer 10.9.0.2/32 dev vb (2)
const V4_PEER: &str = "0220800002000000080001000a090002080002000a0900010700030076620000\
                       080008008000000014000600ffffffffffffffff831a0100831a0100";
/// 2001:db8:5::1/64 dev va valid_lft 3000 preferred_lft 2000 noprefixroute, DAD running
const V6_LIFETIMES: &str = "0a404000030000001400010020010db8000500000000000000000001\
                            14000600d0070000b80b00005fd101005fd101000800080040020000";
/// 2001:db8:1::1/64 dev va nodad noprefixroute
const V6_NODAD: &str = "0a408200030000001400010020010db8000100000000000000000001\
                        14000600ffffffffffffffff42120100421201000800080082020000";
/// fe80::d826:bcff:fe4d:dedc/64 dev vb, made by the kernel (IFA_PROTO kernel_ll)
const V6_LINK_LOCAL: &str = "0a4080fd0200000014000100fe80000000000000d826bcfffe4ddedc\
                             14000600ffffffffffffffff4212010042120100080008008000000005000b0003000000";
/// ::1/128 dev lo, made by the kernel (IFA_PROTO kernel_lo)
const V6_LOOPBACK: &str =
    "0a8080fe01000000140001000000000000000000000000000000000114000600ffffffffffffffff\
                           4112010041120100080008008000000005000b0001000000";

fn dec(h: &str) -> Option<pb::Address> {
    decode::decode(&unhex(h), &ifs()).unwrap()
}

fn v6(s: &str) -> Vec<u8> {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec()
}

#[test]
fn decodes_ipv4_addresses() {
    let a = dec(V4_SECONDARY).unwrap();
    assert_eq!(
        a,
        pb::Address {
            family: 2,
            ifindex: 3,
            ifname: "va".into(),
            address: vec![10, 1, 1, 5],
            prefix_len: 24,
            local: vec![10, 1, 1, 5],
            label: "va:x".into(),
            scope: 0,
            flags: IFA_F_SECONDARY | IFA_F_PERMANENT,
            valid_lft: FOREVER,
            preferred_lft: FOREVER,
            ..Default::default()
        }
    );
    let b = dec(V4_BRD_METRIC).unwrap();
    assert_eq!(b.broadcast, vec![10, 7, 7, 255]);
    assert_eq!(b.metric, Some(50));
    assert_eq!(b.label, "vb:m");
    let p = dec(V4_PEER).unwrap();
    assert_eq!(
        (p.local.clone(), p.address.clone()),
        (vec![10, 9, 0, 1], vec![10, 9, 0, 2])
    );
    assert_eq!(key(&p), "10.9.0.1/32 peer 10.9.0.2 dev vb");
    assert_eq!(describe(&p), "address 10.9.0.1 peer 10.9.0.2/32 dev vb");
}

#[test]
fn decodes_ipv6_addresses_keeps_kernel_link_locals_marked_and_leaves_others_out() {
    let a = dec(V6_LIFETIMES).unwrap();
    assert_eq!(a.address, v6("2001:db8:5::1"));
    assert!(a.local.is_empty());
    assert_eq!((a.valid_lft, a.preferred_lft), (3000, 2000));
    assert_eq!(a.flags, IFA_F_NOPREFIXROUTE | IFA_F_TENTATIVE);
    let n = dec(V6_NODAD).unwrap();
    assert_eq!(n.flags, IFA_F_NODAD | IFA_F_NOPREFIXROUTE | IFA_F_PERMANENT);
    assert_eq!(key(&n), "2001:db8:1::1 dev va");
    assert_eq!(describe(&n), "address 2001:db8:1::1/64 dev va");
    // a kernel-made link-local is kept, marked (restore leaves it to the kernel)
    let ll = dec(V6_LINK_LOCAL).expect("link-local kept");
    assert!(super::kernel_ll(&ll), "{ll:?}");
    assert!(!super::kernel_ll(&n));
    assert_eq!(dec(V6_LOOPBACK), None);
}

#[test]
fn ipv6_is_saved_in_reverse_dump_order() {
    let msgs: Vec<(u16, Vec<u8>)> = [V6_LOOPBACK, V6_NODAD, V6_LIFETIMES, V6_LINK_LOCAL]
        .iter()
        .map(|h| (RTM_NEWADDR, unhex(h)))
        .collect();
    let got = from_dump(AF_INET6, &msgs, &ifs()).unwrap();
    let order: Vec<String> = got.iter().map(key).collect();
    assert_eq!(order.len(), 3, "{order:?}");
    assert!(order[0].starts_with("fe80::"), "{order:?}");
    assert_eq!(order[1..], ["2001:db8:5::1 dev va", "2001:db8:1::1 dev va"]);
    let msgs: Vec<(u16, Vec<u8>)> = [V4_BRD_METRIC, V4_PEER]
        .iter()
        .map(|h| (RTM_NEWADDR, unhex(h)))
        .collect();
    let got = from_dump(AF_INET, &msgs, &ifs()).unwrap();
    assert_eq!(
        got.iter().map(key).collect::<Vec<_>>(),
        ["10.7.7.7/24 dev vb", "10.9.0.1/32 peer 10.9.0.2 dev vb"]
    );
}

/// The add request's bytes, then the request decoded back gives the saved address minus
/// the kernel-state flags, on the live link.
fn round_trip(h: &str, want: &str) {
    let saved = dec(h).unwrap();
    let req = add_request(&saved, &moved()).unwrap();
    let (ty, bytes) = req_bytes(&req);
    assert_eq!(ty, RTM_NEWADDR);
    assert_eq!(hex(bytes), want, "request for {}", describe(&saved));
    let live_names = IfMap::from_names([(12, "vb".to_string()), (13, "va".to_string())]);
    let mut back = decode::decode(bytes, &live_names).unwrap().unwrap();
    let mut expect = saved.clone();
    expect.flags &= !IFA_F_KERNEL_STATE;
    back.ifindex = saved.ifindex;
    if back.family == 10 {
        // IPv6 requests carry no IFA_PROTO; the saved one had none either
        assert!(back.raw.is_empty());
    }
    assert_eq!(back, expect);
}

#[test]
fn add_requests_golden() {
    round_trip(
        V4_BRD_METRIC,
        "021800000c000000080002000a070707080001000a070707080004000a0707ff0900030076623a6d00000000\
         08000800000000000800090032000000"
            .replace(' ', "")
            .as_str(),
    );
    round_trip(
        V4_PEER,
        "022000000c000000080002000a090001080001000a090002070003007662000008000800\
         00000000",
    );
    round_trip(
        V6_LIFETIMES,
        "0a4000000d0000001400010020010db800050000000000000000000108000800000200001400\
         0600d0070000b80b00000000000000000000",
    );
    round_trip(
        V6_NODAD,
        "0a4002000d0000001400010020010db80001000000000000000000010800080002020000",
    );
}

#[test]
fn delete_request_names_the_address_only() {
    let a = dec(V4_SECONDARY).unwrap();
    let req = del_request(&a, &moved()).unwrap();
    let (ty, bytes) = req_bytes(&req);
    assert_eq!(ty, RTM_DELADDR);
    assert_eq!(
        hex(bytes),
        "021800000d000000080002000a010105080001000a0101050900030076613a7800000000"
    );
}

#[test]
fn last_second_lifetimes_are_made_acceptable() {
    let mut a = dec(V6_LIFETIMES).unwrap();
    a.valid_lft = 0;
    a.preferred_lft = 5;
    let req = add_request(&a, &moved()).unwrap();
    let back = decode::decode(req_bytes(&req).1, &ifs()).unwrap().unwrap();
    assert_eq!((back.valid_lft, back.preferred_lft), (1, 1));
}

#[test]
fn missing_link_is_an_error_naming_the_address() {
    let a = dec(V4_PEER).unwrap();
    let only_va = IfMap::by_name([(3, "va".to_string())], [(13, "va".to_string())]);
    let e = add_request(&a, &only_va).err().unwrap().to_string();
    assert_eq!(
        e,
        "address 10.9.0.1 peer 10.9.0.2/32 dev vb: its link vb (saved ifindex 2) does not exist in the namespace"
    );
    assert!(del_request(&a, &only_va).is_err());
}

#[test]
fn malformed_messages_are_errors() {
    let mut b = unhex(V4_PEER);
    b.truncate(14);
    assert!(decode::decode(&b, &ifs()).unwrap_err().contains("length"));
    assert!(decode::decode(&b[..5], &ifs())
        .unwrap_err()
        .contains("shorter"));
}

#[test]
fn normalize_compares_finite_lifetimes_and_ignores_dad() {
    let mut a = dec(V6_LIFETIMES).unwrap();
    let mut b = a.clone();
    b.valid_lft = 2990;
    b.preferred_lft = 0;
    b.flags = (b.flags | IFA_F_DEPRECATED) & !IFA_F_TENTATIVE;
    b.ifindex = 99;
    normalize(&mut a);
    normalize(&mut b);
    assert_eq!(a, b);
    assert_eq!((a.valid_lft, a.preferred_lft, a.ifindex), (0, 0, 0));
    // forever stays forever, and differs from finite
    let mut c = dec(V6_NODAD).unwrap();
    normalize(&mut c);
    assert_eq!(c.valid_lft, FOREVER);
    // a lost NODAD is a difference
    let mut d = dec(V6_NODAD).unwrap();
    d.flags &= !IFA_F_NODAD;
    normalize(&mut d);
    assert_ne!(c, d);
}
