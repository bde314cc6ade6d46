//! Decode → plan: arbitrary bytes become a snapshot (a sequence of (kind, length, protobuf
//! message) records, each decoded as the message of its kind, as an image's entries are),
//! which then goes through everything restore does before it touches a namespace: the
//! hostile-content checks (raw link attributes, firewall text), the transforms (adopt, with
//! the first links and addresses standing for the live ones, and remaps in every family,
//! iptables text and nf_tables payloads), the plan of every netlink family against a live set
//! derived from the input (traffic control's readable parameters and diff included), and the
//! encoding of every request restore would send. Any panic is
//! a bug; errors are expected.

#![no_main]

use crhook_netstate::crhook_proto as pb;
use crhook_netstate::family::{self, Addresses, Family, Neighbours, Nexthops, Routes, Rules, Tc};
use crhook_netstate::ifmap::IfMap;
use crhook_netstate::transform::{self, Adopt, Remap};
use crhook_netstate::Snapshot;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn records(data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    let mut rest = data;
    while rest.len() >= 3 {
        let kind = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match kind % 9 {
            0 => s.links.extend(pb::Link::decode(body).ok()),
            1 => s.addresses.extend(pb::Address::decode(body).ok()),
            2 => s.routes.extend(pb::Route::decode(body).ok()),
            3 => s.rules.extend(pb::Rule::decode(body).ok()),
            4 => s.neighbours.extend(pb::Neighbour::decode(body).ok()),
            5 => s.nexthops.extend(pb::NexthopObject::decode(body).ok()),
            6 => s.firewall.extend(pb::FirewallRuleset::decode(body).ok()),
            7 => s.tc.extend(pb::TcObject::decode(body).ok()),
            _ => s.sysctls.extend(pb::Sysctl::decode(body).ok()),
        }
    }
    s
}

fn requests<F: Family>(objs: &[F::Obj], ifs: &IfMap) {
    for o in objs {
        let _ = F::add(o, ifs);
        let _ = F::del(o, ifs);
        let _ = F::key(o);
        let _ = F::describe(o);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut snap = records(data);
    // the live side: the first half of each family, as if a runtime had made it
    let half = |n: usize| n / 2;
    let live_links: Vec<pb::Link> = snap.links[..half(snap.links.len())].to_vec();
    let live_addrs: Vec<pb::Address> = snap.addresses[..half(snap.addresses.len())].to_vec();
    for l in &snap.links {
        for raw in [&l.info_data_raw, &l.slave_data_raw, &l.extra_raw] {
            let _ = crhook_netstate::link::raw::check(raw);
        }
    }
    let _ = crhook_netstate::firewall::hostile(&snap.firewall);
    let remaps: Vec<Remap> = snap
        .sysctls
        .iter()
        .filter_map(|s| s.value.parse().ok())
        .collect();
    let adopt = Adopt {
        links: Vec::new(),
        runtime: data.first().is_some_and(|b| b & 1 == 1),
    };
    let Ok(t) = transform::apply(&mut snap, &live_links, &live_addrs, &adopt, &remaps) else {
        return;
    };
    let adopted = t.adopted_set();
    let _ = family::plan::<Addresses>(&snap.addresses, &live_addrs, &adopted);
    let live_routes = snap.routes[..half(snap.routes.len())].to_vec();
    let _ = family::plan::<Routes>(&snap.routes, &live_routes, &adopted);
    let _ = family::plan::<Rules>(&snap.rules, &[], &adopted);
    let _ = family::plan::<Neighbours>(&snap.neighbours, &[], &adopted);
    let _ = family::plan::<Nexthops>(&snap.nexthops, &[], &adopted);
    let live_tc = snap.tc[..half(snap.tc.len())].to_vec();
    let _ = family::plan::<Tc>(&snap.tc, &live_tc, &adopted);
    let mut diffs = Vec::new();
    crhook_netstate::tc::diff(&snap.tc, &live_tc, &mut diffs);
    crhook_netstate::tc::restore_order(&mut snap.tc);
    let ifs = IfMap::by_name(
        snap.links.iter().map(|l| (l.ifindex, l.name.clone())),
        live_links.iter().map(|l| (l.ifindex, l.name.clone())),
    );
    requests::<Addresses>(&snap.addresses, &ifs);
    requests::<Routes>(&snap.routes, &ifs);
    requests::<Rules>(&snap.rules, &ifs);
    requests::<Neighbours>(&snap.neighbours, &ifs);
    requests::<Nexthops>(&snap.nexthops, &ifs);
    requests::<Tc>(&snap.tc, &ifs);
    for l in &snap.links {
        let _ = crhook_netstate::link::view::view(l, &crhook_netstate::link::view::names(&snap.links));
        let _ = crhook_netstate::link::create::create_request(l, true, &|x| Some(x), None);
        for v in &l.bridge_vlans {
            let _ = crhook_netstate::link::vlan::request(1, v, true, false);
        }
    }
});
