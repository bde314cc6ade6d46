//! Routes that restore used to flatten: an IPv6 route with a lifetime comes back with what
//! remained of it (not permanent), and IPv4 routes of one prefix added with `ip route
//! append` come back all, in order, each one its own object for `diff`. Needs root and a
//! built `crhook`.

use crhook_tests::{checkpoint, diff, move_through, require_root, restore, Moved, TempDir, TestNs};

fn expires_of(ns: &TestNs, prefix: &str) -> Option<u64> {
    let v: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "-6", "route", "show", prefix])).expect("ip -j");
    v.as_array()?.first()?["expires"].as_u64()
}

#[test]
fn route_lifetimes_and_appended_routes_round_trip() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("rxa");
    let build = "link set lo up\n\
         link add va type veth peer name vb\n\
         addr add 10.61.0.1/24 dev va\n\
         addr add 10.62.0.1/24 dev vb\n\
         addr add 2001:db8:61::1/64 dev va nodad\n\
         link set va up\n\
         link set vb up\n";
    a.ip_batch(build);
    a.ip(&[
        "-6",
        "route",
        "add",
        "2001:db8:99::/64",
        "dev",
        "va",
        "expires",
        "300",
    ]);
    a.ip(&[
        "route",
        "add",
        "10.88.5.0/24",
        "via",
        "10.61.0.2",
        "dev",
        "va",
    ]);
    a.ip(&[
        "route",
        "append",
        "10.88.5.0/24",
        "via",
        "10.62.0.2",
        "dev",
        "vb",
    ]);
    let saved_routes = a.ip(&["route", "show", "10.88.5.0/24"]);
    assert_eq!(saved_routes.lines().count(), 2, "{saved_routes}");
    let left = expires_of(&a, "2001:db8:99::/64").expect("a lifetime");
    let Moved {
        ns: b,
        images,
        dir: _dir,
    } = move_through(&host, a, "routes-extra");
    let now = expires_of(&b, "2001:db8:99::/64").expect("the route keeps a lifetime");
    assert!(
        now <= left && now + 60 > left,
        "expires {now}s after restore, {left}s saved"
    );
    assert_eq!(b.ip(&["route", "show", "10.88.5.0/24"]), saved_routes);
    diff(&host, &b, &images).expect_success();
    // the second appended route gone: diff names it
    b.ip(&[
        "route",
        "del",
        "10.88.5.0/24",
        "via",
        "10.62.0.2",
        "dev",
        "vb",
    ]);
    let d = diff(&host, &b, &images);
    assert_eq!(d.code, Some(1), "{}", d.stdout);
    assert!(d.stdout.contains("10.88.5.0/24"), "{}", d.stdout);
}

/// Restore plans and adds routes from the image a chunk at a time: 9,000 routes in three
/// tables span several chunks, routes through a gateway that only a direct route saved after
/// them makes reachable, routes that share a slot (`append`); all come back as `ip` shows
/// them. A target holding one of them otherwise is refused by name before anything changes.
#[test]
fn routes_restored_a_chunk_at_a_time_come_back_whole() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("rxc");
    a.ip_batch(
        "link set lo up\n\
         link add va type veth peer name vb\n\
         addr add 10.61.0.1/24 dev va\n\
         addr add 10.62.0.1/24 dev vb\n\
         link set va up\n\
         link set vb up\n",
    );
    a.add_routes(9000, "10.61.0.2");
    let mut late = String::from("route add 10.99.0.0/16 dev vb table 7\n");
    for i in 0..50 {
        late.push_str(&format!("route add 10.77.{i}.0/24 via 10.99.1.1 table 7\n"));
    }
    late.push_str("route add 10.88.5.0/24 via 10.61.0.2 dev va\n");
    late.push_str("route append 10.88.5.0/24 via 10.62.0.2 dev vb\n");
    a.ip_batch(&late);
    // sorted: the kernel lists its IPv6 routes of several devices in the order they came up
    let routes = |ns: &TestNs| {
        let mut v: Vec<String> = ns
            .ip(&["route", "show", "table", "all"])
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    let saved = routes(&a);
    assert!(saved.len() > 9050, "{} routes", saved.len());
    let tmp = TempDir::new("routes-chunks");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();

    // a target whose table 100 holds one of the saved prefixes through another gateway
    let b = TestNs::new("rxd");
    b.ip_batch(
        "link add va type veth peer name vb\n\
         addr add 10.61.0.1/24 dev va\n\
         link set va up\n\
         link set vb up\n\
         route add 172.16.0.0/24 via 10.61.0.3 table 100\n",
    );
    let before = routes(&b);
    let r = crhook_tests::crhook_on(&host, "restore", &b, &images, &[]);
    assert_ne!(
        r.code,
        Some(0),
        "restore over a conflicting route: {}",
        r.stderr
    );
    assert!(r.stderr.contains("172.16.0.0/24"), "{}", r.stderr);
    assert!(
        routes(&b) == before,
        "a refused restore changed the target's routes"
    );

    let c = TestNs::new("rxe");
    restore(&host, &c, &images);
    assert!(
        routes(&c) == saved,
        "the restored routes differ from the saved ones"
    );
    diff(&host, &c, &images).expect_success();
}
