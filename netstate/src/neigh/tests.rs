//! Golden tests: RTM_NEWNEIGH messages a 6.18 kernel dumped, the verdict on each, and the
//! requests built from the kept ones.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use crhook_proto as pb;

use super::*;
use crate::ifmap::fixtures::{moved, saved as ifs};
use crate::nla::{hex, req_bytes, unhex};

/// 10.1.1.10 lladdr 02:00:00:00:00:0a dev va (3) nud noarp, added by a user
const V4_NOARP: &str = "020000000300000040000001080001000a01010a0a00020002000000000a0000\
                        080004000000000014000300d5b70000d5b70000d5b7000000000000";
/// 10.1.1.9 lladdr 02:00:00:00:00:09 dev va nud permanent
const V4_PERMANENT: &str = "020000000300000080000001080001000a0101090a0002000200000000090000\
                            080004000000000014000300d5b70000d5b70000d5b7000000000000";
/// 0.0.0.0 dev lo noarp: the kernel's loopback entry (type local)
const V4_LOOPBACK: &str = "02000000010000004000000308000100000000000a000200000000000000000008000400000000001400030070c6000000af000000af000000000000";
/// 10.9.0.2 dev vb failed: learnt state
const V4_FAILED: &str = "020000000200000020000001080001000a09000208000400060000001400030070c6000000af0000cead000000000000";
/// proxy 10.1.1.11 dev va
const V4_PROXY: &str = "020000000300000000000801080001000a01010b";
/// ff02::1:ff00:1 dev va noarp, multicast: made by the kernel
const V6_MULTICAST: &str =
    "0a000000030000004000000514000100ff0200000000000000000001ff0000010a0002003333ff000001\
                            0000080004000000000014000300bad700004ac000004ac0000000000000";
/// 2001:db8::9 lladdr 02:00:00:00:00:19 dev va router nud permanent
const V6_ROUTER: &str =
    "0a00000003000000800080011400010020010db80000000000000000000000090a000200020000000019\
                         000008000400000000001400030012b8000012b8000012b8000000000000";
/// proxy 2001:db8::11 dev va
const V6_PROXY: &str = "0a00000003000000000008011400010020010db8000000000000000000000011";

fn kept(h: &str) -> Vec<pb::Neighbour> {
    let mut out = Vec::new();
    let mut cand = Vec::new();
    select(&[(RTM_NEWNEIGH, unhex(h))], &ifs(), &mut out, &mut cand).unwrap();
    out
}

#[test]
fn keeps_user_entries_and_leaves_kernel_and_learnt_ones_out() {
    let p = kept(V4_PERMANENT);
    assert_eq!(
        p,
        vec![pb::Neighbour {
            family: 2,
            ifindex: 3,
            ifname: "va".into(),
            dst: vec![10, 1, 1, 9],
            lladdr: vec![2, 0, 0, 0, 0, 9],
            state: NUD_PERMANENT,
            flags: 0,
            ntype: 1,
            ..Default::default()
        }]
    );
    assert_eq!(kept(V6_ROUTER)[0].flags, NTF_ROUTER);
    assert_eq!(kept(V4_PROXY)[0].flags, NTF_PROXY);
    assert_eq!(kept(V4_PROXY)[0].state, NUD_NONE);
    assert_eq!(kept(V6_PROXY).len(), 1);
    assert!(kept(V4_LOOPBACK).is_empty());
    assert!(kept(V4_FAILED).is_empty());
    assert!(kept(V6_MULTICAST).is_empty());
}

#[test]
fn noarp_entries_depend_on_the_device() {
    let msgs: Vec<(u16, Vec<u8>)> = [V4_PERMANENT, V4_NOARP, V6_MULTICAST, V4_PROXY]
        .iter()
        .map(|h| (RTM_NEWNEIGH, unhex(h)))
        .collect();
    let mut out = Vec::new();
    let mut cand = Vec::new();
    select(&msgs, &ifs(), &mut out, &mut cand).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(cand, [1]);
    // va is an ordinary ethernet device: the NOARP entry is a user's
    let facts = |flags: i32| LinkFacts {
        flags: flags as u32,
        ..LinkFacts::default()
    };
    let ether = HashMap::from([(
        3u32,
        facts(libc::IFF_UP | libc::IFF_BROADCAST | libc::IFF_MULTICAST),
    )]);
    let keep = drop_device_noarp(out.clone(), &cand, &ether);
    assert_eq!(
        keep.iter().map(key).collect::<Vec<_>>(),
        [
            "10.1.1.9 dev va",
            "10.1.1.10 dev va",
            "10.1.1.11 dev va proxy"
        ]
    );
    // on an IFF_NOARP device the kernel makes every entry NOARP by itself
    let noarp = HashMap::from([(3u32, facts(libc::IFF_UP | libc::IFF_NOARP))]);
    let keep = drop_device_noarp(out, &cand, &noarp);
    assert_eq!(
        keep.iter().map(key).collect::<Vec<_>>(),
        ["10.1.1.9 dev va", "10.1.1.11 dev va proxy"]
    );
}

fn add_hex(h: &str) -> String {
    let n = kept(h).remove(0);
    let req = add_request(&n, &moved()).unwrap();
    let (ty, b) = req_bytes(&req);
    assert_eq!(ty, RTM_NEWNEIGH);
    hex(b)
}

#[test]
fn add_requests_golden() {
    // ifindex 13, state permanent, flags 0; dst, lladdr
    assert_eq!(
        add_hex(V4_PERMANENT),
        "020000000d00000080000000080001000a0101090a0002000200000000090000"
    );
    assert_eq!(
        add_hex(V4_NOARP),
        "020000000d00000040000000080001000a01010a0a00020002000000000a0000"
    );
    // router flag kept
    assert_eq!(
        add_hex(V6_ROUTER),
        "0a0000000d000000800080001400010020010db80000000000000000000000090a000200020000000019\
         0000"
    );
    // a proxy entry goes back permanent, without lladdr
    assert_eq!(
        add_hex(V4_PROXY),
        "020000000d00000080000800080001000a01010b"
    );
    assert_eq!(
        add_hex(V6_PROXY),
        "0a0000000d000000800008001400010020010db8000000000000000000000011"
    );
}

#[test]
fn round_trip_through_the_decoder() {
    let live = IfMap::from_names([(12, "vb".to_string()), (13, "va".to_string())]);
    for h in [V4_PERMANENT, V4_NOARP, V6_ROUTER, V6_PROXY] {
        let mut saved = kept(h).remove(0);
        let req = add_request(&saved, &moved()).unwrap();
        let mut back = match decode::decode(req_bytes(&req).1, &live).unwrap() {
            decode::Verdict::Keep(n) | decode::Verdict::NoarpUnicast(n) => n,
            decode::Verdict::Skip => {
                panic!("request of {} decodes as kernel state", describe(&saved))
            }
        };
        if saved.flags & NTF_PROXY != 0 {
            saved.state = NUD_PERMANENT;
        }
        // the request's type byte is zero (the kernel computes it)
        back.ntype = saved.ntype;
        normalize(&mut back);
        normalize(&mut saved);
        assert_eq!(back, saved);
    }
}

#[test]
fn delete_requests_golden() {
    let n = kept(V6_PROXY).remove(0);
    let req = del_request(&n, &moved()).unwrap();
    let (ty, b) = req_bytes(&req);
    assert_eq!(ty, RTM_DELNEIGH);
    assert_eq!(
        hex(b),
        "0a0000000d000000000008001400010020010db8000000000000000000000011"
    );
    let n = kept(V4_PERMANENT).remove(0);
    assert_eq!(
        hex(req_bytes(&del_request(&n, &moved()).unwrap()).1),
        "020000000d00000000000000080001000a010109"
    );
}

#[test]
fn keys_and_descriptions() {
    let p = kept(V6_PROXY).remove(0);
    assert_eq!(key(&p), "2001:db8::11 dev va proxy");
    assert_eq!(describe(&p), "proxy neighbour 2001:db8::11 dev va");
    let n = kept(V4_PERMANENT).remove(0);
    assert_eq!(key(&n), "10.1.1.9 dev va");
    assert_eq!(describe(&n), "neighbour 10.1.1.9 dev va");
}

#[test]
fn missing_link_is_an_error_naming_the_entry() {
    let n = kept(V4_PERMANENT).remove(0);
    let only_vb = IfMap::by_name([(2, "vb".to_string())], [(12, "vb".to_string())]);
    let e = add_request(&n, &only_vb).err().unwrap().to_string();
    assert_eq!(
        e,
        "neighbour 10.1.1.9 dev va: its link va (saved ifindex 3) does not exist in the namespace"
    );
}

#[test]
fn truncated_message_is_an_error() {
    let b = unhex(V4_PERMANENT);
    assert!(decode::decode(&b[..8], &ifs()).is_err());
    assert!(decode::decode(&b[..18], &ifs()).is_err());
}
