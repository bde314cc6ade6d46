//! Remapping the netlink families of a snapshot: every field that holds an address, as a host
//! address or as a prefix (see `remap.rs` for the difference).

use crhook_proto as pb;

use super::remap::Remaps;

/// How many objects of each family a remap changed, for logs and the plan.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Remapped {
    pub addresses: usize,
    pub routes: usize,
    pub nexthops: usize,
    pub rules: usize,
    pub neighbours: usize,
    pub firewall: usize,
}

impl Remapped {
    pub fn total(&self) -> usize {
        self.addresses + self.routes + self.nexthops + self.rules + self.neighbours + self.firewall
    }
}

fn host(m: &Remaps, b: &mut [u8]) -> bool {
    m.host_bytes(b)
}

fn prefix(m: &Remaps, b: &mut [u8], len: u32) -> bool {
    !b.is_empty() && m.prefix_bytes(b, len)
}

pub fn address(m: &Remaps, a: &mut pb::Address) -> bool {
    let mut changed = host(m, &mut a.local);
    changed |= host(m, &mut a.address);
    // a broadcast is the top of the subnet: it moves with a prefix remap only
    changed |= prefix(m, &mut a.broadcast, 32);
    changed
}

pub fn route(m: &Remaps, r: &mut pb::Route) -> bool {
    let mut changed = prefix(m, &mut r.dst, r.dst_len);
    changed |= prefix(m, &mut r.src, r.src_len);
    changed |= host(m, &mut r.gateway);
    changed |= host(m, &mut r.prefsrc);
    for h in &mut r.multipath {
        changed |= host(m, &mut h.gateway);
    }
    changed
}

pub fn nexthop(m: &Remaps, n: &mut pb::NexthopObject) -> bool {
    host(m, &mut n.gateway)
}

pub fn rule(m: &Remaps, r: &mut pb::Rule) -> bool {
    let mut changed = prefix(m, &mut r.src, r.src_len);
    changed |= prefix(m, &mut r.dst, r.dst_len);
    changed
}

pub fn neighbour(m: &Remaps, n: &mut pb::Neighbour) -> bool {
    host(m, &mut n.dst)
}

fn each<T>(v: &mut [T], f: impl Fn(&mut T) -> bool) -> usize {
    v.iter_mut().map(|o| usize::from(f(o))).sum()
}

/// Remaps every family of `snap` in place.
pub fn remap_snapshot(snap: &mut crate::snapshot::Snapshot, m: &Remaps) -> Remapped {
    if m.is_empty() {
        return Remapped::default();
    }
    Remapped {
        addresses: each(&mut snap.addresses, |o| address(m, o)),
        routes: each(&mut snap.routes, |o| route(m, o)),
        nexthops: each(&mut snap.nexthops, |o| nexthop(m, o)),
        rules: each(&mut snap.rules, |o| rule(m, o)),
        neighbours: each(&mut snap.neighbours, |o| neighbour(m, o)),
        firewall: each(&mut snap.firewall, |o| crate::firewall::remap(m, o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[&str]) -> Remaps {
        crate::transform::remap::parse_all(v)
    }

    #[test]
    fn every_family_field_follows_a_host_remap() {
        let m = m(&["10.88.0.9=10.88.0.11"]);
        let mut a = pb::Address {
            family: 2,
            local: vec![10, 88, 0, 9],
            address: vec![10, 88, 0, 9],
            broadcast: vec![10, 88, 255, 255],
            prefix_len: 16,
            ..Default::default()
        };
        assert!(address(&m, &mut a));
        assert_eq!(a.local, vec![10, 88, 0, 11]);
        assert_eq!(a.address, vec![10, 88, 0, 11]);
        assert_eq!(a.broadcast, vec![10, 88, 255, 255]);

        let mut r = pb::Route {
            family: 2,
            dst: vec![10, 88, 0, 9],
            dst_len: 32,
            prefsrc: vec![10, 88, 0, 9],
            gateway: vec![10, 88, 0, 1],
            ..Default::default()
        };
        assert!(route(&m, &mut r));
        assert_eq!(r.dst, vec![10, 88, 0, 11]);
        assert_eq!(r.prefsrc, vec![10, 88, 0, 11]);
        assert_eq!(r.gateway, vec![10, 88, 0, 1], "another host is untouched");

        // a subnet route that contains the old address is not the old address
        let mut r = pb::Route {
            family: 2,
            dst: vec![10, 88, 0, 0],
            dst_len: 16,
            ..Default::default()
        };
        assert!(!route(&m, &mut r));

        let mut rl = pb::Rule {
            family: 2,
            src: vec![10, 88, 0, 9],
            src_len: 32,
            dst: vec![10, 88, 0, 0],
            dst_len: 16,
            ..Default::default()
        };
        assert!(rule(&m, &mut rl));
        assert_eq!(rl.src, vec![10, 88, 0, 11]);
        assert_eq!(rl.dst, vec![10, 88, 0, 0]);

        let mut n = pb::Neighbour {
            family: 2,
            dst: vec![10, 88, 0, 9],
            lladdr: vec![10, 88, 0, 9, 0, 0],
            ..Default::default()
        };
        assert!(neighbour(&m, &mut n));
        assert_eq!(n.dst, vec![10, 88, 0, 11]);
        assert_eq!(
            n.lladdr,
            vec![10, 88, 0, 9, 0, 0],
            "a MAC is not an address"
        );

        let mut nh = pb::NexthopObject {
            family: 2,
            gateway: vec![10, 88, 0, 9],
            ..Default::default()
        };
        assert!(nexthop(&m, &mut nh));
        assert_eq!(nh.gateway, vec![10, 88, 0, 11]);
    }

    #[test]
    fn prefix_remap_moves_subnets_and_broadcasts() {
        let m = m(&["10.88.0.0/16=10.89.0.0/16"]);
        let mut a = pb::Address {
            family: 2,
            local: vec![10, 88, 0, 9],
            broadcast: vec![10, 88, 255, 255],
            prefix_len: 16,
            ..Default::default()
        };
        assert!(address(&m, &mut a));
        assert_eq!(a.broadcast, vec![10, 89, 255, 255]);
        let mut r = pb::Route {
            family: 2,
            dst: vec![10, 88, 5, 0],
            dst_len: 24,
            gateway: vec![10, 88, 0, 1],
            ..Default::default()
        };
        assert!(route(&m, &mut r));
        assert_eq!(
            (r.dst.clone(), r.gateway.clone()),
            (vec![10, 89, 5, 0], vec![10, 89, 0, 1])
        );
    }

    #[test]
    fn ipv6_fields_follow() {
        let m = m(&["fd00::9=fd00::11"]);
        let old: std::net::Ipv6Addr = "fd00::9".parse().expect("ip");
        let new: std::net::Ipv6Addr = "fd00::11".parse().expect("ip");
        let mut r = pb::Rule {
            family: 10,
            src: old.octets().to_vec(),
            src_len: 128,
            ..Default::default()
        };
        assert!(rule(&m, &mut r));
        assert_eq!(r.src, new.octets().to_vec());
    }
}
