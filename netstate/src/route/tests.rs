//! Golden tests: RTM_NEWROUTE messages a 6.18 kernel dumped, decoded; requests built from
//! them, checked byte for byte and decoded back.

#![allow(clippy::unwrap_used)]

use crhook_proto as pb;

use super::*;
use crate::ifmap::fixtures::{moved, saved as ifs};
use crate::nla::{hex, req_bytes, unhex};

/// table 100 10.50.0.0/16 nexthop via 10.1.1.2 dev va weight 1 nexthop via 10.1.2.2 dev vb weight 3 onlink
const V4_MULTIPATH: &str = "02100000640300010000000008000f0064000000080001000a320000\
                            240009001000000003000000080005000a0101021000040202000000080005000a010202";
/// blackhole 10.60.0.0/16 table 100
const V4_BLACKHOLE: &str = "02100000640300060000000008000f0064000000080001000a3c0000";
/// 10.70.0.0/16 via 10.1.1.2 dev va mtu lock 1400 advmss 1300 initcwnd 10 src 10.1.1.1
const V4_METRICS: &str = "02100000fe0300010000000008000f00fe000000080001000a460000\
                          2400080008000100040000000800020078050000080008001405000008000b000a000000\
                          080007000a010101080005000a0101020800040003000000";
/// 10.80.0.0/16 nhid 3 (a group; compat mode adds its hops)
const V4_NHID: &str = "02100000fe0300010000000008000f00fe000000080001000a50000008001e0003000000\
                       240009001000000103000000080005000a0101021000000202000000080005000a010202";
/// local 10.77.7.7 dev lo table local proto static
const V4_LOCAL_STATIC: &str =
    "02200000ff04fe020000000008000f00ff000000080001000a4d07070800040001000000";
/// 10.71.0.0/16 via 192.168.7.1 dev va onlink
const V4_ONLINK: &str =
    "02100000fe0300010400000008000f00fe000000080001000a47000008000500c0a807010800040003000000";
/// 10.1.1.0/24 dev va proto kernel scope link src 10.1.1.1 (made for the address)
const V4_CONNECTED: &str =
    "02180000fe02fd010000000008000f00fe000000080001000a010100080007000a0101010800040003000000";
/// table 100 2001:db8:98::/64 nexthop via 2001:db8::2 dev va weight 2 nexthop via 2001:db8:2::2 dev vb
const V6_MULTIPATH: &str = "0a400000640300010000000008000f00640000001400010020010db8009800000000000000000000\
                            08000600000400003c0009001c000001030000001400050020010db8000000000000000000000002\
                            1c000000020000001400050020010db8000200000000000000000002\
                            24000c0000000000000000000000000000000000000000000000000000000000000000000500140000000000";
/// 2001:db8:99::/64 via 2001:db8::2 dev va metric 10 pref high
const V6_PREF: &str = "0a400000fe0300010000000008000f00fe0000001400010020010db8009900000000000000000000\
                       080006000a0000001400050020010db80000000000000000000000020800040003000000\
                       24000c0000000000000000000000000000000000000000000000000000000000000000000500140001000000";
/// fe80::/64 dev vb proto kernel
const V6_LINK_LOCAL: &str = "0a400000fe0200010000000008000f00fe00000014000100fe800000000000000000000000000000\
                             0800060000010000080004000200000024000c00000000000000000000000000000000000000000000000000\
                             00000000000000000500140000000000";

fn live_names() -> IfMap {
    IfMap::from_names([
        (1, "lo".to_string()),
        (12, "vb".to_string()),
        (13, "va".to_string()),
    ])
}

fn dec(h: &str) -> Option<pb::Route> {
    decode::decode(&unhex(h), &ifs()).unwrap()
}

fn v6(s: &str) -> Vec<u8> {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec()
}

#[test]
fn decodes_ipv4_multipath_with_weights_and_onlink() {
    let r = dec(V4_MULTIPATH).unwrap();
    assert_eq!(
        (r.family, r.table, r.dst.clone(), r.dst_len),
        (2, 100, vec![10, 50, 0, 0], 16)
    );
    assert_eq!(
        (r.protocol, r.scope, r.route_type, r.priority),
        (3, 0, 1, None)
    );
    assert_eq!(
        r.multipath,
        vec![
            pb::NextHop {
                gateway: vec![10, 1, 1, 2],
                ifindex: 3,
                ifname: "va".into(),
                weight: 1,
                ..Default::default()
            },
            pb::NextHop {
                gateway: vec![10, 1, 2, 2],
                ifindex: 2,
                ifname: "vb".into(),
                weight: 3,
                flags: RTNH_F_ONLINK,
                ..Default::default()
            },
        ]
    );
    assert_eq!(key(&r), "10.50.0.0/16 table 100 metric 0");
    assert_eq!(describe(&r), "route 10.50.0.0/16 table 100");
}

#[test]
fn decodes_types_metrics_and_flags() {
    let b = dec(V4_BLACKHOLE).unwrap();
    assert_eq!(b.route_type, 6);
    assert_eq!(describe(&b), "route blackhole 10.60.0.0/16 table 100");
    let m = dec(V4_METRICS).unwrap();
    let metrics: Vec<(u32, u32)> = m.metrics.iter().map(|x| (x.kind, x.value)).collect();
    // RTAX_LOCK with the mtu bit, RTAX_MTU, RTAX_ADVMSS, RTAX_INITCWND
    assert_eq!(metrics, [(1, 1 << 2), (2, 1400), (8, 1300), (11, 10)]);
    assert_eq!(m.prefsrc, vec![10, 1, 1, 1]);
    assert_eq!(
        (m.gateway.clone(), m.oif, m.oif_name.as_str()),
        (vec![10, 1, 1, 2], 3, "va")
    );
    let o = dec(V4_ONLINK).unwrap();
    assert_eq!(o.flags, RTNH_F_ONLINK);
    let l = dec(V4_LOCAL_STATIC).unwrap();
    assert_eq!(
        (
            l.table,
            l.route_type,
            l.protocol,
            l.scope,
            l.oif_name.as_str()
        ),
        (255, 2, 4, 254, "lo")
    );
    assert_eq!(key(&l), "10.77.7.7/32 table 255 metric 0");
}

#[test]
fn nexthop_id_routes_keep_only_the_id() {
    let r = dec(V4_NHID).unwrap();
    assert_eq!(r.nh_id, 3);
    assert!(r.multipath.is_empty() && r.gateway.is_empty() && r.oif == 0);
    assert_eq!(describe(&r), "route 10.80.0.0/16 nhid 3 table 254");
}

#[test]
fn decodes_ipv6_routes() {
    let r = dec(V6_MULTIPATH).unwrap();
    assert_eq!(r.priority, Some(1024));
    assert_eq!(r.pref, Some(0));
    assert_eq!(r.multipath.len(), 2);
    assert_eq!(r.multipath[0].gateway, v6("2001:db8::2"));
    assert_eq!((r.multipath[0].weight, r.multipath[1].weight), (2, 1));
    assert_eq!(key(&r), "2001:db8:98::/64 table 100 metric 1024");
    let p = dec(V6_PREF).unwrap();
    assert_eq!((p.pref, p.priority), (Some(1), Some(10)));
    assert_eq!(key(&p), "2001:db8:99::/64 table 254 metric 10 dev va");
    // no cache info, no expiry kept
    assert!(p.raw.is_empty());
}

#[test]
fn kernel_routes_and_cache_entries_are_left_out() {
    assert_eq!(dec(V4_CONNECTED), None);
    assert_eq!(dec(V6_LINK_LOCAL), None);
    let mut cloned = unhex(V4_ONLINK);
    cloned[9] |= 0x02; // RTM_F_CLONED (0x200) in rtm_flags
    assert_eq!(decode::decode(&cloned, &ifs()).unwrap(), None);
    let mut ra = unhex(V6_PREF);
    ra[5] = 9; // protocol ra
    assert_eq!(decode::decode(&ra, &ifs()).unwrap(), None);
}

fn add_hex(r: &pb::Route) -> String {
    let req = add_request(r, &moved()).unwrap();
    let (ty, bytes) = req_bytes(&req);
    assert_eq!(ty, RTM_NEWROUTE);
    hex(bytes)
}

/// Decoding the add request on the live side gives back the saved route (on live links).
fn round_trip(h: &str) {
    let saved = dec(h).unwrap();
    let req = add_request(&saved, &moved()).unwrap();
    let mut back = decode::decode(req_bytes(&req).1, &live_names())
        .unwrap()
        .unwrap();
    let mut want = saved.clone();
    normalize(&mut back);
    normalize(&mut want);
    assert_eq!(back, want, "{}", describe(&saved));
}

#[test]
fn add_requests_golden() {
    assert_eq!(
        add_hex(&dec(V4_MULTIPATH).unwrap()),
        "02100000640300010000000008000f0064000000080001000a320000\
         240009001000000003000000080005000a0101021000040202000000080005000a010202"
            .replace("0300000008000500", "0d00000008000500")
            .replace("0202000000080005000a010202", "020c000000080005000a010202")
    );
    assert_eq!(
        add_hex(&dec(V4_METRICS).unwrap()),
        "02100000fe0300010000000008000f00fe000000080001000a460000080007000a010101\
         080005000a010102080004000d000000\
         2400088008000100040000000800020078050000080008001405000008000b000a000000"
    );
    assert_eq!(
        add_hex(&dec(V4_NHID).unwrap()),
        "02100000fe0300010000000008000f00fe000000080001000a50000008001e0003000000"
    );
    assert_eq!(
        add_hex(&dec(V6_PREF).unwrap()),
        "0a400000fe0300010000000008000f00fe0000001400010020010db8009900000000000000000000\
         080006000a0000001400050020010db8000000000000000000000002080004000d0000000500140001000000"
    );
    for h in [
        V4_MULTIPATH,
        V4_BLACKHOLE,
        V4_METRICS,
        V4_NHID,
        V4_LOCAL_STATIC,
        V4_ONLINK,
        V6_MULTIPATH,
        V6_PREF,
    ] {
        round_trip(h);
    }
}

#[test]
fn delete_requests_golden() {
    let req = del_request(&dec(V6_PREF).unwrap(), &moved()).unwrap();
    let (ty, bytes) = req_bytes(&req);
    assert_eq!(ty, RTM_DELROUTE);
    // scope NOWHERE, no flags; prefix, metric, gateway and device
    assert_eq!(
        hex(bytes),
        "0a400000fe03ff010000000008000f00fe0000001400010020010db8009900000000000000000000\
         080006000a0000001400050020010db8000000000000000000000002080004000d000000"
    );
    let req = del_request(&dec(V4_MULTIPATH).unwrap(), &moved()).unwrap();
    assert_eq!(
        hex(req_bytes(&req).1),
        "02100000640300010000000008000f0064000000080001000a320000"
            .replace("640300010000", "6403ff010000")
    );
}

#[test]
fn a_delete_request_describes_its_route_for_the_journal() {
    let req = del_request(&dec(V6_PREF).unwrap(), &moved()).unwrap();
    assert_eq!(
        describe_request(req_bytes(&req).1).unwrap(),
        "route 2001:db8:99::/64 via 2001:db8::2 dev ifindex 13 table 254 metric 10"
    );
    let req = del_request(&dec(V4_BLACKHOLE).unwrap(), &moved()).unwrap();
    assert_eq!(
        describe_request(req_bytes(&req).1).unwrap(),
        "route blackhole 10.60.0.0/16 table 100"
    );
    // not a route message
    assert_eq!(describe_request(&[1, 2]), None);
}

#[test]
fn non_u32_metrics_travel_inside_rta_metrics() {
    let mut b = unhex(V4_BLACKHOLE);
    // RTA_METRICS { RTAX_MTU 1300, RTAX_CC_ALGO "cubic" }
    b.extend_from_slice(&unhex("1800080008000200140500000a0010006375626963000000"));
    let r = decode::decode(&b, &ifs()).unwrap().unwrap();
    assert_eq!(
        r.metrics,
        vec![pb::Metric {
            kind: 2,
            value: 1300
        }]
    );
    assert_eq!(r.raw.len(), 1);
    assert_eq!(r.raw[0].kind, 8);
    round_trip_bytes(&b);
    let req = add_request(&r, &moved()).unwrap();
    let bytes = req_bytes(&req).1;
    assert!(
        hex(bytes).ends_with("1800088008000200140500000a0010006375626963000000"),
        "{}",
        hex(bytes)
    );
}

fn round_trip_bytes(b: &[u8]) {
    let saved = decode::decode(b, &ifs()).unwrap().unwrap();
    let req = add_request(&saved, &moved()).unwrap();
    let back = decode::decode(req_bytes(&req).1, &live_names())
        .unwrap()
        .unwrap();
    assert_eq!(back.metrics, saved.metrics);
    assert_eq!(back.raw, saved.raw);
}

#[test]
fn link_state_flags_are_not_sent_and_normalize_away() {
    let mut r = dec(V4_MULTIPATH).unwrap();
    r.flags |= RTNH_F_LINKDOWN | RTNH_F_DEAD;
    r.multipath[0].flags |= RTNH_F_LINKDOWN;
    let req = add_request(&r, &moved()).unwrap();
    let back = decode::decode(req_bytes(&req).1, &live_names())
        .unwrap()
        .unwrap();
    assert_eq!(back.flags, 0);
    assert_eq!(back.multipath[0].flags, 0);
    let mut clean = dec(V4_MULTIPATH).unwrap();
    normalize(&mut r);
    normalize(&mut clean);
    assert_eq!(r, clean);
    assert_eq!(r.multipath[0].ifindex, 0);
    assert_eq!(r.multipath[0].ifname, "va");
}

#[test]
fn restore_order_puts_gateways_after_devices_and_nexthop_ids_last() {
    let mut rs: Vec<pb::Route> = [
        V4_NHID,
        V4_METRICS,
        V4_BLACKHOLE,
        V4_MULTIPATH,
        V4_LOCAL_STATIC,
        V6_PREF,
    ]
    .iter()
    .map(|h| dec(h).unwrap())
    .collect();
    restore_order(&mut rs);
    let order: Vec<String> = rs.iter().map(describe).collect();
    assert_eq!(
        order,
        [
            "route blackhole 10.60.0.0/16 table 100",
            "route local 10.77.7.7/32 dev lo table 255",
            "route 10.70.0.0/16 via 10.1.1.2 dev va table 254",
            "route 10.50.0.0/16 table 100",
            "route 2001:db8:99::/64 via 2001:db8::2 dev va table 254 metric 10",
            "route 10.80.0.0/16 nhid 3 table 254",
        ]
    );
}

#[test]
fn missing_link_is_an_error_naming_the_route() {
    let r = dec(V4_MULTIPATH).unwrap();
    let only_va = IfMap::by_name([(3, "va".to_string())], [(13, "va".to_string())]);
    let e = add_request(&r, &only_va).err().unwrap().to_string();
    assert_eq!(
        e,
        "route 10.50.0.0/16 table 100: its link vb (saved ifindex 2) does not exist in the namespace"
    );
}

#[test]
fn malformed_multipath_is_an_error() {
    let mut b = unhex(V4_MULTIPATH);
    // first rtnexthop claims 0x40 bytes
    let at = hex(&b).find("10000000030000000800").unwrap() / 2;
    b[at] = 0x40;
    let e = decode::decode(&b, &ifs()).unwrap_err();
    assert!(e.contains("RTA_MULTIPATH entry of length 64"), "{e}");
}

#[test]
fn routes_sharing_a_slot_are_set_apart_for_append() {
    let first = dec(V6_PREF).unwrap();
    let mut second = first.clone();
    second.oif = 2;
    second.oif_name = "vb".into();
    second.gateway.clear();
    let mut other = first.clone();
    other.priority = Some(11);
    let rs = vec![first.clone(), second.clone(), other.clone()];
    let (excl, appended) = split_appended(&rs);
    assert_eq!(excl, vec![&first, &other]);
    assert_eq!(appended, vec![&second]);
    // IPv6 keys keep them apart
    assert_ne!(key(&first), key(&second));
}

/// An IPv6 route's remaining lifetime (rta_cacheinfo's expires, in USER_HZ ticks) in whole
/// seconds, rounded down as `ip` shows it (a restored route never outlives the saved one),
/// but never to 0, which would make it permanent.
#[test]
fn a_remaining_lifetime_is_kept_in_seconds_rounded_down_never_to_none() {
    let with_ticks = |ticks: u32| {
        let mut b = unhex(V6_PREF);
        // RTA_CACHEINFO: length 36, type 12; expires is the third u32 of its payload
        let at = b
            .windows(4)
            .position(|w| w == [0x24, 0x00, 0x0c, 0x00])
            .unwrap();
        b[at + 12..at + 16].copy_from_slice(&ticks.to_le_bytes());
        decode::decode(&b, &ifs()).unwrap().unwrap().expires
    };
    assert_eq!(with_ticks(0), 0, "no lifetime");
    assert_eq!(with_ticks(30_000), 300);
    assert_eq!(with_ticks(29_999), 299, "299.99 s left");
    assert_eq!(with_ticks(50), 1, "half a second left");
}
