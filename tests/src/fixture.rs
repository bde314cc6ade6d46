//! A namespace holding every link kind this kernel has, and its neighbours.
//!
//! [`Full::build`] makes three namespaces: `host` (plays the namespace crhook runs in: bridges
//! `brh` and `brx`, and `vh0`, the outer end of the uplink veth, on `brh`), `sib` (a sibling
//! holding `vs1`, the peer of `vs0`) and `a`, which holds:
//! - `ve0` (uplink, peer `vh0` in host): MAC, MTU 1400, txqueuelen 500, alias;
//! - `vs0` (peer `vs1` in sib): group 5, IPv6 disabled;
//! - `vi0`/`vi1`, a pair with both ends inside: `vi0` promisc and allmulti, `vi1` a port of
//!   `br0` with addrgenmode none and port settings (cost, priority, hairpin, guard, learning
//!   off, flood off);
//! - `br0`: stp on, forward delay, hello, max age, ageing, priority, multicast snooping off,
//!   group_fwd_mask; ports `vi1` and `tap0`;
//! - `tun0` (tun) and `tap0` (multi-queue tap with vnet_hdr);
//! - `mv0` (macvlan, bridge mode) and `mvt0` (macvtap, vepa) on `vi0`;
//! - `vx0` (vxlan: id, port, local, remote, ttl, nolearning, lower `vi0`), `vx1` (vxlan
//!   with a multicast group);
//! - `ifb0`;
//! - v4/v6 addresses with labels, peer, nodad, noprefixroute and finite lifetimes; routes in
//!   main, 100 and 200 (multipath with weights, blackhole, unreachable, prohibit, throw,
//!   metrics with a lock, src, proto); v4/v6 rules; permanent, noarp and proxy neighbours;
//!   global and per-device sysctls.
//!
//! This kernel has no bridge VLAN filtering (`vlan_filtering 1` gives EOPNOTSUPP), so br0
//! keeps it off. Every link but the tun devices gets a fixed ifindex so that a test can build
//! an identical object in another namespace ([`create_uplink`]); tun devices cannot be given
//! one by iproute2 and take what the kernel picks.

use crate::TestNs;

pub const HOST_BRIDGE: &str = "brh";
/// a second bridge in host, for `--external` tests
pub const ALT_BRIDGE: &str = "brx";
pub const UPLINK: &str = "ve0";
pub const UPLINK_PEER: &str = "vh0";
pub const UPLINK_MAC: &str = "02:00:00:00:0a:01";
pub const UPLINK_PEER_MAC: &str = "02:00:00:00:ff:02";
pub const UPLINK_INDEX: u32 = 10;
pub const UPLINK_PEER_INDEX: u32 = 22;
pub const SIB_LINK: &str = "vs0";
pub const SIB_PEER: &str = "vs1";

/// The three namespaces of the full fixture.
#[derive(Debug)]
pub struct Full {
    pub a: TestNs,
    pub host: TestNs,
    pub sib: TestNs,
}

impl Full {
    /// Makes host, sib and a (named after `tag`) and fills them. Does not wait for DAD or
    /// STP; [`crate::NsState::capture`] does.
    pub fn build(tag: &str) -> Full {
        let host = TestNs::new(&format!("{tag}-host"));
        let sib = TestNs::new(&format!("{tag}-sib"));
        let a = TestNs::new(tag);
        setup_host(&host);
        populate(&a, &host, &sib);
        Full { a, host, sib }
    }

    /// The links in other namespaces that die with `a` (namespace, link).
    pub fn outer_links(&self) -> [(&TestNs, &'static str); 2] {
        [(&self.host, UPLINK_PEER), (&self.sib, SIB_PEER)]
    }
}

/// Host side: two bridges with fixed MACs (a bridge without one takes its lowest port's MAC,
/// which would change as ports come and go).
pub fn setup_host(host: &TestNs) {
    host.ip_batch(
        "link add brh index 20 address 02:00:00:00:ff:01 type bridge\n\
         link set brh up\n\
         link add brx index 21 address 02:00:00:00:ff:03 type bridge\n\
         link set brx up\n",
    );
}

/// The uplink veth: `vh0` in `host` on `brh`, up, and `ve0` in `a` with its settings and up,
/// without addresses. Same indexes and MACs every time.
pub fn create_uplink(a: &TestNs, host: &TestNs) {
    host.ip_batch(&format!(
        "link add {UPLINK_PEER} index {UPLINK_PEER_INDEX} address {UPLINK_PEER_MAC} mtu 1400 \
         type veth peer name {UPLINK} index {UPLINK_INDEX} address {UPLINK_MAC} netns {}\n\
         link set {UPLINK_PEER} master {HOST_BRIDGE} up\n",
        a.name()
    ));
    a.ip_batch(&format!(
        "link set {UPLINK} mtu 1400 txqueuelen 500 alias uplink up\n"
    ));
}

/// The addresses of `ve0`, in the fixture's order.
pub const UPLINK_ADDRESSES: &str = "\
addr add 10.1.0.2/24 dev ve0
addr add 10.1.0.3/24 dev ve0 label ve0:sec
addr add 2001:db8:1::2/64 dev ve0 nodad
addr add 2001:db8:1::3/64 dev ve0 nodad noprefixroute valid_lft 3600 preferred_lft 1800
";

/// Links inside `a` other than the uplink and the sibling veth.
const LINKS: &str = "\
link set lo up
link add vi0 index 12 address 02:00:00:00:0b:01 type veth peer name vi1 index 13 address 02:00:00:00:0b:02
link set vi0 promisc on allmulticast on up
link set vi1 addrgenmode none
link add br0 index 14 address 02:00:00:00:0c:01 type bridge stp_state 1 forward_delay 200 hello_time 200 max_age 600 ageing_time 30000 priority 4096 mcast_snooping 0 group_fwd_mask 0x8
tuntap add dev tun0 mode tun
tuntap add dev tap0 mode tap multi_queue vnet_hdr
link set vi1 master br0 up
link set dev vi1 type bridge_slave cost 10 priority 20 hairpin on guard on learning off flood off
link set tap0 address 02:00:00:00:10:01 master br0 up
link set br0 up
link set tun0 mtu 1300 txqueuelen 200 up
link add mv0 index 16 link vi0 address 02:00:00:00:0d:01 type macvlan mode bridge
link add mvt0 index 17 link vi0 address 02:00:00:00:0d:02 type macvtap mode vepa
link set mv0 up
link set mvt0 up
link add vx0 index 18 address 02:00:00:00:0e:01 type vxlan id 42 dstport 4789 local 10.4.0.1 remote 10.4.0.2 ttl 64 nolearning dev vi0
link add vx1 index 19 address 02:00:00:00:0e:02 type vxlan id 43 dstport 4790 group 239.1.1.1 dev vi0 ttl 8
link set vx0 up
link set vx1 up
link add ifb0 index 23 address 02:00:00:00:10:02 type ifb
link set ifb0 group 7 up
";

const ADDRESSES: &str = "\
addr add 10.2.0.1 peer 10.2.0.2/32 dev vs0
addr add 10.4.0.1/24 dev vi0
addr add 2001:db8:4::1/64 dev vi0
addr add 10.3.0.1/24 dev br0
addr add 10.5.0.1/24 dev tun0
addr add 2001:db8:5::1/64 dev tun0 nodad
addr add 10.6.0.1/24 dev mv0 valid_lft 7200 preferred_lft 7200
";

const ROUTES: &str = "\
route add 10.10.0.0/16 via 10.1.0.1
route add 10.11.0.0/16 src 10.1.0.2 nexthop via 10.1.0.1 weight 1 nexthop via 10.4.0.2 dev vi0 weight 3
route add blackhole 10.12.0.0/16
route add unreachable 10.13.0.0/16
route add prohibit 10.14.0.0/16
route add 10.15.0.0/16 via 10.1.0.1 mtu lock 1300 advmss 1200 initcwnd 10
route add default via 10.1.0.1
route add 2001:db8:10::/48 via 2001:db8:1::1
route add blackhole 2001:db8:12::/48
route add unreachable 2001:db8:13::/48
route add 2001:db8:11::/48 nexthop via 2001:db8:1::1 dev ve0 weight 2 nexthop via 2001:db8:4::2 dev vi0 weight 1
route add 2001:db8:14::/48 via 2001:db8:4::2 dev vi0 metric 50 mtu 1280
route add default via 10.1.0.1 dev ve0 table 100
route add 10.20.0.0/16 dev vs0 src 10.2.0.1 table 100
route add prohibit 10.21.0.0/16 table 100
route add default via 2001:db8:1::1 dev ve0 table 100
route add blackhole default table 200
route add unreachable 10.30.0.0/16 metric 10 table 200
route add throw 10.31.0.0/16 table 200
route add 10.32.0.0/16 via 10.4.0.2 dev vi0 proto static table 200
route add prohibit 2001:db8:20::/48 table 200
";

const RULES: &str = "\
rule add from 10.1.0.0/24 lookup 100 pref 1000
rule add to 10.32.0.0/16 lookup 200 pref 1001
rule add fwmark 0x10/0xff lookup 200 pref 1002
rule add iif vi0 lookup 100 pref 1003
rule add tos 0x10 prohibit pref 1004
rule add ipproto tcp sport 1000-2000 lookup 100 pref 1005
";

const RULES6: &str = "\
rule add from 2001:db8:1::/64 lookup 100 pref 1000
rule add to 2001:db8:20::/48 lookup 200 pref 1001
rule add oif ve0 lookup 200 pref 1002
";

const NEIGHBOURS: &str = "\
neigh add 10.1.0.9 lladdr 02:00:00:00:01:09 dev ve0 nud permanent
neigh add 2001:db8:1::9 lladdr 02:00:00:00:01:0a dev ve0 nud permanent
neigh add 10.4.0.9 lladdr 02:00:00:00:01:0b dev vi0 nud noarp
neigh add proxy 10.1.0.50 dev ve0
neigh add proxy 2001:db8:1::50 dev ve0
";

/// Sysctls set in `a`, as (path components below /proc/sys/net, value).
pub const SYSCTLS: &[(&[&str], &str)] = &[
    (&["ipv4", "ip_forward"], "1"),
    (&["ipv4", "conf", "all", "rp_filter"], "2"),
    (&["ipv4", "tcp_syn_retries"], "4"),
    (&["core", "somaxconn"], "1024"),
    (&["ipv4", "ip_local_port_range"], "20000\t40000"),
    (&["ipv4", "conf", "ve0", "proxy_arp"], "1"),
    (&["ipv6", "conf", "ve0", "proxy_ndp"], "1"),
    (&["ipv6", "conf", "vi0", "accept_ra"], "0"),
    (&["ipv4", "neigh", "ve0", "gc_stale_time"], "120"),
    (&["ipv6", "conf", "vs0", "disable_ipv6"], "1"),
    (&["ipv6", "conf", "mv0", "accept_dad"], "0"),
];

/// Fills `a` (and the outer ends in `host` and `sib`); `host` must have had [`setup_host`].
pub fn populate(a: &TestNs, host: &TestNs, sib: &TestNs) {
    create_uplink(a, host);
    sib.ip_batch(&format!(
        "link add {SIB_PEER} index 30 address 02:00:00:00:fe:01 type veth peer name {SIB_LINK} \
         index 11 address 02:00:00:00:fe:02 netns {}\n\
         link set {SIB_PEER} up\n",
        a.name()
    ));
    a.ip_batch(&format!("link set {SIB_LINK} group 5 up\n{LINKS}"));
    // IPv6 off on vs0 before it gets addresses (as a restore must do it).
    for (key, value) in SYSCTLS {
        a.set_sysctl(key, value);
    }
    a.ip_batch(UPLINK_ADDRESSES);
    a.ip_batch(ADDRESSES);
    a.ip_batch(ROUTES);
    a.ip_batch(RULES);
    a.ip_batch_with(&["-6"], RULES6);
    a.ip_batch(NEIGHBOURS);
}

/// A small namespace for tests that need an image but not every kind: an ifb with v4/v6
/// addresses, a route and a sysctl.
pub fn populate_small(a: &TestNs) {
    a.ip_batch(
        "link set lo up\n\
         link add ifs0 address 02:00:00:00:0f:01 type ifb\n\
         link set ifs0 mtu 1400 up\n\
         addr add 192.0.2.1/24 dev ifs0\n\
         addr add 2001:db8:99::1/64 dev ifs0 nodad\n\
         route add 198.51.100.0/24 via 192.0.2.254 table 300\n",
    );
    a.set_sysctl(&["ipv4", "conf", "ifs0", "forwarding"], "1");
}

/// A namespace large enough that restore raises its guard (restore/guard.rs: 30,000
/// nf_tables rules and set elements, 50,000 routes and IPv6 addresses): lo up, a veth pair
/// `va`/`vb` with 10.63.0.1/16 on `va`, `routes` routes via 10.63.0.2, `rules` iptables-nft
/// rules over 20 user chains, and an arp table (so the guard covers arp too).
pub fn populate_guarded(a: &TestNs, routes: u32, rules: u32) {
    a.ip_batch(
        "link set lo up\nlink add va type veth peer name vb\naddr add 10.63.0.1/16 dev va\n\
         link set va up\nlink set vb up\n",
    );
    a.add_routes(routes, "10.63.0.2");
    let mut text = String::from("*filter\n");
    for c in 0..20 {
        text.push_str(&format!(":U{c} - [0:0]\n-A INPUT -j U{c}\n"));
    }
    for k in 0..rules {
        text.push_str(&format!(
            "-A U{} -s 10.{}.{}.0/24 -p tcp --dport {} -j ACCEPT\n",
            k % 20,
            k / 256 % 256,
            k % 256,
            1000 + k % 5000
        ));
    }
    text.push_str("COMMIT\n");
    let path = std::env::temp_dir().join(format!("{}.rules", a.name()));
    std::fs::write(&path, text).expect("write the iptables rules");
    a.sh(&format!(
        "/usr/sbin/iptables-restore < {} && nft add table arp keep && \
         nft add chain arp keep in '{{ type filter hook input priority 0; }}'",
        path.display()
    ));
    let _ = std::fs::remove_file(path);
}
