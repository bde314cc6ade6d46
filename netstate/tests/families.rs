//! Addresses, routes, rules, neighbours and nexthops against live namespaces (needs root: makes
//! its own namespaces). One namespace is populated with iproute2; its capture is added into a
//! second, fresh namespace with the same links (created in another order, so every ifindex
//! differs) through batched netlink requests; both must then capture equal and look equal to
//! `ip -j`. Finally everything is deleted again and only kernel-made state may remain.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crhook_netstate::crhook_proto as pb;
use crhook_netstate::ifmap::IfMap;
use crhook_netstate::nl::{Nl, Req};
use crhook_netstate::{addr, neigh, nexthop, route, rule, NetNs, Result};
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use serde_json::Value;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces and must run as root"
    );
}

/// Runs `ip ARGS` (feeding `stdin`), asserts success, returns stdout.
fn ip(args: &[&str], stdin: Option<&str>) -> Vec<u8> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ip");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ip {args:?}: {err}");
    out.stdout
}

/// A named namespace of this test, deleted on drop.
struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn new(tag: &str) -> TestNs {
        require_root();
        let name = format!("crh-fam-{}-{tag}", std::process::id());
        // a namespace left by a killed earlier run of the same pid would make `add` fail
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name], None);
        let ns = NetNs::open_path(Path::new(&format!("/run/netns/{name}"))).unwrap();
        TestNs { name, ns }
    }

    /// Runs `ip -batch` lines; every line must succeed. `ip -batch` takes no options per line,
    /// so lines starting with `-6` run afterwards in an `ip -6 -batch`.
    fn batch(&self, lines: &str) {
        let (v6, rest): (Vec<&str>, Vec<&str>) = lines.lines().partition(|l| l.starts_with("-6 "));
        let v6: Vec<&str> = v6.iter().map(|l| &l[3..]).collect();
        ip(
            &["-n", &self.name, "-batch", "-"],
            Some(&(rest.join("\n") + "\n")),
        );
        ip(
            &["-n", &self.name, "-6", "-batch", "-"],
            Some(&(v6.join("\n") + "\n")),
        );
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = ip(&[&["-n", &self.name, "-j"], args].concat(), None);
        if out.iter().all(|b| b.is_ascii_whitespace()) {
            return Value::Array(vec![]);
        }
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}"))
    }

    /// (ifindex, name) of every link.
    fn links(&self) -> Vec<(u32, String)> {
        let v = self.json(&["link"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["ifindex"].as_u64().unwrap() as u32,
                    l["ifname"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn run<T: Send>(&self, f: impl FnOnce(&mut Nl) -> Result<T> + Send) -> T {
        let name = self.name.clone();
        self.ns
            .run(move || {
                let mut nl = Nl::new(&name)?;
                f(&mut nl)
            })
            .unwrap_or_else(|e| panic!("in {}: {e}", self.name))
    }

    fn capture(&self) -> Captured {
        let ifs = IfMap::from_names(self.links());
        self.run(move |nl| {
            Ok(Captured {
                // the kernel's own link-local addresses (kept in images, marked, for restore
                // to reconcile) are not this family-level round trip's business
                addresses: addr::capture(nl, &ifs)?
                    .into_iter()
                    .filter(|a| !addr::kernel_ll(a))
                    .collect(),
                routes: route::capture(nl, &ifs)?,
                rules: rule::capture(nl, &ifs)?,
                neighbours: neigh::capture(nl, &ifs)?,
                nexthops: nexthop::capture(nl, &ifs)?,
            })
        })
    }

    /// Waits until no IPv6 address is tentative (DAD done), so `ip` output settles.
    fn wait_dad(&self) {
        let start = Instant::now();
        loop {
            let v = self.json(&["-6", "addr"]);
            if !v.to_string().contains("\"tentative\"") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "DAD never finished in {}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Captured {
    addresses: Vec<pb::Address>,
    routes: Vec<pb::Route>,
    rules: Vec<pb::Rule>,
    neighbours: Vec<pb::Neighbour>,
    nexthops: Vec<pb::NexthopObject>,
}

impl Captured {
    fn normalized(&self) -> Captured {
        let mut c = self.clone();
        c.addresses.iter_mut().for_each(addr::normalize);
        c.routes.iter_mut().for_each(route::normalize);
        c.rules.iter_mut().for_each(rule::normalize);
        c.neighbours.iter_mut().for_each(neigh::normalize);
        c.nexthops.iter_mut().for_each(nexthop::normalize);
        // routes come back in the kernel's order, which is not the restore order; neighbours
        // in the order of a hash table seeded at random in every namespace
        c.routes.sort_by_key(route::key);
        c.neighbours.sort_by_key(neigh::key);
        // links have other indexes in the restored namespace, so the dump visits them in
        // another order; each link's own list must keep its order (stable sort)
        c.addresses.sort_by_key(|a| (a.family, a.ifname.clone()));
        c
    }

    fn is_empty(&self) -> bool {
        self.addresses.is_empty()
            && self.routes.is_empty()
            && self.rules.is_empty()
            && self.neighbours.is_empty()
            && self.nexthops.is_empty()
    }
}

const LINKS_A: &str = "\
link add name va type veth peer name vb
link add name vc type veth peer name vd
";

/// The same links in another order, after a throwaway pair: every ifindex differs from A's.
const LINKS_B: &str = "\
link add name zz type veth peer name zy
link add name vd type veth peer name vc
link add name vb type veth peer name va
link del zz
";

const UP: &str = "\
link set lo up
link set va up
link set vb up
link set vc up
link set vd up
";

const ADDRESSES: &str = "\
addr add 10.1.1.1/24 dev va
addr add 10.1.1.5/24 dev va label va:x
addr add 10.1.2.1/24 broadcast 10.1.2.255 dev vb metric 50
addr add 10.9.0.1 peer 10.9.0.2/32 dev vc
addr add 10.3.3.3/24 dev vc valid_lft 3000 preferred_lft 2000
addr add 10.80.0.1/16 dev vd noprefixroute
addr add 2001:db8::1/64 dev va nodad
addr add 2001:db8:1::1/64 dev va nodad noprefixroute
addr add 2001:db8:2::1/64 dev vb
addr add 2001:db8:3::1/64 dev vb
addr add 2001:db8:5::1/64 dev vc valid_lft 3000 preferred_lft 2000 nodad
addr add 2001:db8:7::1 peer 2001:db8:7::2/128 dev vd nodad
addr add 2001:db8:8::1/64 dev vd home mngtmpaddr nodad
";

const NEXTHOPS: &str = "\
nexthop add id 1 via 10.1.1.2 dev va
nexthop add id 2 via 10.1.2.2 dev vb
nexthop add id 3 group 1,2/2,3
nexthop add id 4 blackhole
nexthop add id 5 via 2001:db8::2 dev va
nexthop add id 6 group 1/2 type resilient buckets 8 idle_timer 100 unbalanced_timer 50
nexthop add id 7 via 10.1.1.3 dev va onlink
";

const ROUTES: &str = "\
route add table 100 10.50.0.0/16 nexthop via 10.1.1.2 dev va weight 1 nexthop via 10.1.2.2 dev vb weight 3 onlink
route add blackhole 10.60.0.0/16 table 100
route add unreachable 10.61.0.0/16 table 200 metric 7
route add prohibit 10.62.0.0/16
route add throw 10.63.0.0/16 table 200
route add 10.70.0.0/16 via 10.1.1.2 dev va mtu lock 1400 advmss 1300 initcwnd 10 src 10.1.1.1
route add 10.71.0.0/16 via 192.168.7.1 dev va onlink
route add 10.80.0.0/16 dev vd scope link
route add 10.81.0.0/16 via 10.80.1.1
route add local 10.77.7.7 dev lo table local proto static
route add 10.90.0.0/16 dev vd table 200 realm 5
route add 10.91.0.0/16 dev vd tos 0x10 table 200
route add default via 10.1.1.254 table 200 metric 100
route add 10.100.0.0/16 nhid 3
route add 10.101.0.0/16 nhid 4
route add 10.102.0.0/16 nhid 6 table 100
-6 route add 2001:db8:99::/64 via 2001:db8::2 dev va pref high metric 10
-6 route add table 100 2001:db8:98::/64 nexthop via 2001:db8::2 dev va weight 2 nexthop via 2001:db8:2::2 dev vb weight 1
-6 route add 2001:db8:97::/64 dev vb metric 5 pref low mtu 1300 hoplimit 10
-6 route add table 200 blackhole 2001:db8:96::/64
-6 route add 2001:db8:95::/64 from 2001:db8:1::/64 dev va
-6 route add 2001:db8:94::/64 nhid 5
-6 route add 2001:db8:93::/64 dev va metric 5 table 100
-6 route append 2001:db8:93::/64 dev vb metric 5 table 100
";

const RULES: &str = "\
rule add fwmark 0x10/0xff table 100 pref 100
rule add iif va table 200 pref 110
rule add uidrange 1000-2000 table 100 pref 120
rule add ipproto tcp dport 80-90 table 200 pref 130
rule add ipproto udp sport 1000-2000 table 200 pref 131
rule add table main suppress_prefixlength 0 pref 140
rule add not from 10.0.0.0/8 goto 200 pref 150
rule add from 10.0.0.0/8 table 1000 pref 200
rule add from 10.5.0.0/16 to 10.6.0.0/16 tos 0x10 oif vb prohibit pref 210
rule add fwmark 0x7 realms 3/4 table 100 pref 220
rule add tun_id 5 table 100 pref 230
rule add pref 240 nop
rule add pref 250 from 10.66.0.0/16 blackhole
rule add pref 270 proto 99 from 10.67.0.0/16 table 100
rule add pref 280 suppress_ifgroup 5 table main
-6 rule add fwmark 0x20 table 100 pref 100
-6 rule add from 2001:db8::/32 iif va table 200 pref 110
-6 rule add to 2001:db8:1::/48 ipproto ipv6-icmp table 100 pref 120
-6 rule add uidrange 10-20 dport 53 ipproto udp table 1000 pref 130
";

const NEIGHBOURS: &str = "\
neigh add 10.1.1.9 lladdr 02:00:00:00:00:09 dev va nud permanent
neigh add 10.1.1.10 lladdr 02:00:00:00:00:0a dev va nud noarp
neigh add 10.1.2.20 lladdr 02:00:00:00:00:20 dev vb nud permanent protocol 99
neigh add 10.1.1.21 lladdr 02:00:00:00:00:21 dev va extern_learn
neigh add proxy 10.1.1.11 dev va
-6 neigh add 2001:db8::9 lladdr 02:00:00:00:00:19 dev va nud permanent router
-6 neigh add 2001:db8::10 lladdr 02:00:00:00:00:1a dev va nud noarp
-6 neigh add proxy 2001:db8::11 dev va
";

fn populate(a: &TestNs) {
    a.batch(LINKS_A);
    a.batch(UP);
    a.batch(ADDRESSES);
    a.wait_dad();
    a.batch(NEXTHOPS);
    a.batch(ROUTES);
    a.batch(RULES);
    a.batch(NEIGHBOURS);
    // kernel-made and learnt neighbours that must not be captured: an unanswered ARP, the
    // loopback entry, IPv6 multicast entries (made by MLD/ND by themselves)
    for dst in ["10.1.1.77", "127.0.0.1"] {
        let mut ping = a.ns.command(Path::new("/usr/bin/busybox")).unwrap();
        let _ = ping.args(["ping", "-c1", "-W1", dst]).output();
    }
}

/// Sends one request per object in one batch with `flags`; returns the failures.
fn send<T: Clone + Send + Sync>(
    ns: &TestNs,
    objs: &[T],
    ifs: &IfMap,
    flags: u16,
    build: fn(&T, &IfMap) -> Result<Req>,
    describe: fn(&T) -> String,
) -> Vec<(T, i32, String)> {
    let reqs: Vec<Req> = objs.iter().map(|o| build(o, ifs).unwrap()).collect();
    let results = ns.run(|nl| nl.batch(&reqs, flags, "test batch"));
    objs.iter()
        .zip(results)
        .filter_map(|(o, r)| {
            r.err()
                .map(|e| (o.clone(), e.errno, format!("{}: {e}", describe(o))))
        })
        .collect()
}

/// Adds objects of family `$m` with NLM_F_CREATE|NLM_F_EXCL, as restore does.
macro_rules! add {
    ($b:expr, $objs:expr, $ifs:expr, $m:ident) => {
        send(
            $b,
            $objs,
            $ifs,
            NLM_F_CREATE | NLM_F_EXCL,
            $m::add_request,
            $m::describe,
        )
    };
}

/// Deletes objects of family `$m`; the failure messages.
macro_rules! del {
    ($b:expr, $objs:expr, $ifs:expr, $m:ident) => {
        send($b, $objs, $ifs, 0, $m::del_request, $m::describe)
            .into_iter()
            .map(|f| f.2)
    };
}

fn assert_added<T>(what: &str, failures: Vec<(T, i32, String)>) {
    let msgs: Vec<&String> = failures.iter().map(|f| &f.2).collect();
    assert!(msgs.is_empty(), "{what}: {msgs:#?}");
}

/// Restores `saved` into `b` in restore's order: IPv4 addresses while the links are down,
/// IPv6 ones once they are up (on a down link the kernel makes no prefix route for a finite
/// lifetime, nor a NODAD peer's route).
fn restore(b: &TestNs, saved: &Captured, ifs: &IfMap) {
    let (v6, v4): (Vec<pb::Address>, Vec<pb::Address>) = saved
        .addresses
        .iter()
        .cloned()
        .partition(|a| a.family == libc::AF_INET6 as u32);
    assert!(!v4.is_empty() && !v6.is_empty(), "both families saved");
    assert_added("IPv4 addresses", add!(b, &v4, ifs, addr));
    b.batch(UP);
    assert_added("IPv6 addresses", add!(b, &v6, ifs, addr));
    assert_added("nexthops", add!(b, &saved.nexthops, ifs, nexthop));
    let mut routes = saved.routes.clone();
    route::restore_order(&mut routes);
    let (excl, appended) = route::split_appended(&routes);
    let (routes, appended): (Vec<pb::Route>, Vec<pb::Route>) = (
        excl.into_iter().cloned().collect(),
        appended.into_iter().cloned().collect(),
    );
    assert_eq!(
        appended.len(),
        1,
        "{:?}",
        appended.iter().map(route::describe).collect::<Vec<_>>()
    );
    let mut failed = add!(b, &routes, ifs, route);
    // a gateway reachable only through a route of the same batch gets a second pass
    for _ in 0..3 {
        let retry: Vec<pb::Route> = failed
            .iter()
            .filter(|f| f.1 == libc::ENETUNREACH)
            .map(|f| f.0.clone())
            .collect();
        if retry.is_empty() {
            break;
        }
        failed.retain(|f| f.1 != libc::ENETUNREACH);
        failed.extend(add!(b, &retry, ifs, route));
    }
    assert_added("routes", failed);
    let flags = NLM_F_CREATE | NLM_F_APPEND;
    assert_added(
        "append",
        send(
            b,
            &appended,
            ifs,
            flags,
            route::add_request,
            route::describe,
        ),
    );
    assert_added("rules", add!(b, &saved.rules, ifs, rule));
    assert_added("neighbours", add!(b, &saved.neighbours, ifs, neigh));
}

/// Deletes every object (reverse dependency order); returns the failures.
fn delete_all(b: &TestNs, c: &Captured, ifs: &IfMap) -> Vec<String> {
    let mut routes = c.routes.clone();
    route::restore_order(&mut routes);
    routes.reverse();
    let nexthops: Vec<pb::NexthopObject> = c.nexthops.iter().rev().cloned().collect();
    let addresses: Vec<pb::Address> = c.addresses.iter().rev().cloned().collect();
    let mut failed: Vec<String> = del!(b, &c.neighbours, ifs, neigh).collect();
    failed.extend(del!(b, &c.rules, ifs, rule));
    failed.extend(del!(b, &routes, ifs, route));
    failed.extend(del!(b, &nexthops, ifs, nexthop));
    failed.extend(del!(b, &addresses, ifs, addr));
    failed
}

/// `ip -j` output with what legitimately differs between two namespaces removed: indexes,
/// timers, MAC addresses and what derives from them (link-local addresses and their routes),
/// learnt neighbours and the kernel's multicast and loopback entries.
fn canon(v: &Value) -> Value {
    #[rustfmt::skip]
    const DROP: [&str; 9] = [
        "ifindex", "link_index", "expires", "valid_life_time", "preferred_life_time",
        "unbalanced_time", "used", "updated", "probes",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !DROP.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), canon(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| {
                    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
                    let dst = s("dst");
                    let local = s("local");
                    !(dst.starts_with("fe80:") && s("type") == "local"
                        || local.starts_with("fe80:")
                        || dst.starts_with("ff0") && e.get("lladdr").is_some()
                        || s("dev") == "lo" && e.get("lladdr").is_some())
                })
                .map(canon)
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// The entries of a view in a fixed order (neighbours are listed in hash order).
fn sorted(v: Value) -> Vec<String> {
    let mut e: Vec<String> = v.as_array().unwrap().iter().map(Value::to_string).collect();
    e.sort();
    e
}

/// ifname -> addresses, from `ip -j addr`.
fn addr_view(v: &Value) -> BTreeMap<String, Value> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_string(),
                canon(&l["addr_info"]),
            )
        })
        .collect()
}

const IP_VIEWS: [&[&str]; 8] = [
    &["route", "show", "table", "all"],
    &["-6", "route", "show", "table", "all"],
    &["rule"],
    &["-6", "rule"],
    &["neigh", "show", "nud", "permanent"],
    &["neigh", "show", "nud", "noarp"],
    &["neigh", "show", "proxy"],
    &["nexthop"],
];

#[test]
fn capture_restore_compare_delete() {
    let a = TestNs::new("a");
    populate(&a);
    let saved = a.capture();

    // what was captured, and what was left out
    let keys = |v: Vec<String>| v.join("\n");
    let addrs = keys(saved.addresses.iter().map(addr::key).collect());
    assert!(addrs.contains("127.0.0.1/8 dev lo"), "{addrs}");
    assert!(
        !addrs.contains("fe80") && !addrs.contains("::1 dev lo"),
        "{addrs}"
    );
    assert_eq!(saved.addresses.len(), 14, "{addrs}");
    let routes = keys(saved.routes.iter().map(route::describe).collect());
    assert_eq!(saved.routes.len(), 24, "{routes}");
    assert!(saved.routes.iter().all(|r| r.protocol != 2), "{routes}");
    assert!(
        routes.contains("route local 10.77.7.7/32 dev lo table 255"),
        "{routes}"
    );
    assert_eq!(
        saved.rules.len(),
        19,
        "{:#?}",
        saved.rules.iter().map(rule::key).collect::<Vec<_>>()
    );
    let mut neighbours: Vec<String> = saved.neighbours.iter().map(neigh::key).collect();
    neighbours.sort();
    assert_eq!(
        neighbours,
        [
            "10.1.1.10 dev va",
            "10.1.1.11 dev va proxy",
            "10.1.1.21 dev va",
            "10.1.1.9 dev va",
            "10.1.2.20 dev vb",
            "2001:db8::10 dev va",
            "2001:db8::11 dev va proxy",
            "2001:db8::9 dev va",
        ]
    );
    assert_eq!(
        saved.nexthops.iter().map(|n| n.id).collect::<Vec<_>>(),
        [1, 2, 4, 5, 7, 3, 6]
    );
    let mtu = saved
        .routes
        .iter()
        .find(|r| r.dst == [10, 70, 0, 0])
        .unwrap();
    assert!(
        mtu.metrics.contains(&pb::Metric {
            kind: 1,
            value: 1 << 2
        }),
        "mtu lock: {mtu:?}"
    );

    let b = TestNs::new("b");
    b.batch(LINKS_B);
    let ifs = IfMap::by_name(a.links(), b.links());
    assert_ne!(
        ifs.live(saved.addresses[1].ifindex),
        Some(saved.addresses[1].ifindex)
    );
    restore(&b, &saved, &ifs);
    a.wait_dad();
    b.wait_dad();

    let restored = b.capture();
    let (sa, sb) = (saved.normalized(), restored.normalized());
    assert_eq!(sa.addresses, sb.addresses);
    assert_eq!(sa.routes, sb.routes);
    assert_eq!(sa.rules, sb.rules);
    assert_eq!(sa.neighbours, sb.neighbours);
    assert_eq!(sa.nexthops, sb.nexthops);

    assert_eq!(
        addr_view(&a.json(&["addr"])),
        addr_view(&b.json(&["addr"])),
        "ip -j addr"
    );
    for view in IP_VIEWS {
        let (va, vb) = (sorted(canon(&a.json(view))), sorted(canon(&b.json(view))));
        let only_a: Vec<&String> = va.iter().filter(|e| !vb.contains(e)).collect();
        let only_b: Vec<&String> = vb.iter().filter(|e| !va.contains(e)).collect();
        assert!(
            va == vb,
            "ip -j {}: only in the source {only_a:#?}, only in the restored {only_b:#?}",
            view.join(" ")
        );
    }

    // everything deleted again leaves only what the kernel makes
    let live = IfMap::from_names(b.links());
    let errors = delete_all(&b, &restored, &live);
    assert!(errors.is_empty(), "{errors:#?}");
    let left = b.capture();
    assert!(left.is_empty(), "left after delete: {left:#?}");
    let routes = b.json(&["route", "show", "table", "all"]);
    for r in routes.as_array().unwrap() {
        assert_eq!(r["protocol"], "kernel", "route left after delete: {r}");
    }
    let fresh = TestNs::new("c");
    assert_eq!(canon(&b.json(&["rule"])), canon(&fresh.json(&["rule"])));
    assert_eq!(
        canon(&b.json(&["-6", "rule"])),
        canon(&fresh.json(&["-6", "rule"]))
    );
    assert_eq!(b.json(&["nexthop"]), Value::Array(vec![]));
}
