//! Routes that restore used to flatten: an IPv6 route with a lifetime comes back with what
//! remained of it (not permanent), and IPv4 routes of one prefix added with `ip route
//! append` come back all, in order, each one its own object for `diff`. Needs root and a
//! built `crhook`.

use crhook_tests::{checkpoint, diff, move_through, require_root, restore, Moved, TempDir, TestNs};

/// `ip [OPTS] route show table all` in `ns` (both families unless OPTS names one), line by
/// line, sorted: the kernel lists its IPv6 routes of several devices in the order they came up.
fn sorted_routes(ns: &TestNs, opts: &[&str]) -> Vec<String> {
    let args: Vec<&str> = opts
        .iter()
        .copied()
        .chain(["route", "show", "table", "all"])
        .collect();
    let mut v: Vec<String> = ns.ip(&args).lines().map(String::from).collect();
    v.sort();
    v
}

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
    let routes = |ns: &TestNs| sorted_routes(ns, &[]);
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

/// Routes of both families from the image a chunk at a time (`restore/streamed.rs`): 5,000
/// of each over two tables (two chunks each), IPv6 routes that share a slot (`append`), an
/// IPv4 route through an IPv6 gateway on the link, and one through an IPv6 gateway that only
/// an IPv6 route makes reachable. All come back as `ip` shows them, and a failure injected
/// before, among and after the routes undoes both families: 300 unreachable and blackhole
/// routes of each, on no link restore makes, go only by their own undo.
#[test]
fn routes_of_both_families_come_back_whole_and_roll_back() {
    use crhook_tests::{restore_counting, NsState};
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("r6b");
    a.ip_batch(
        "link set lo up\n\
         link add va type veth peer name vb\n\
         addr add 10.61.0.1/24 dev va\n\
         addr add 2001:db8:61::1/64 dev va nodad\n\
         addr add 2001:db8:62::1/64 dev vb nodad\n\
         link set va up\n\
         link set vb up\n",
    );
    a.add_routes(5000, "10.61.0.2");
    let mut v6 = String::new();
    for i in 0..5000u32 {
        v6.push_str(&format!(
            "route add 2001:db8:1:{i:x}::/64 via 2001:db8:61::2 table {}\n",
            100 + i / 4096
        ));
    }
    // routes on no device of restore's: a rollback removes them by their undo alone
    for i in 0..300u32 {
        v6.push_str(&format!("route add unreachable 2001:db8:2:{i:x}::/64\n"));
    }
    v6.push_str("route add 2001:db8:55::/64 via 2001:db8:61::2 dev va metric 5\n");
    v6.push_str("route append 2001:db8:55::/64 via 2001:db8:62::2 dev vb metric 5\n");
    v6.push_str("route add 2001:db8:63::/64 dev vb\n");
    a.ip_batch_with(&["-6"], &v6);
    let mut v4 = String::from(
        "route add 10.80.0.0/24 via inet6 2001:db8:61::2 dev va\n\
         route add 10.81.0.0/24 via inet6 2001:db8:63::2\n",
    );
    for i in 0..300u32 {
        v4.push_str(&format!(
            "route add blackhole 10.90.{}.{}/32\n",
            i / 256,
            i % 256
        ));
    }
    a.ip_batch(&v4);
    let (saved4, saved6) = (sorted_routes(&a, &["-4"]), sorted_routes(&a, &["-6"]));
    assert!(saved4.len() > 5000, "{} IPv4 routes", saved4.len());
    assert!(saved6.len() > 5000, "{} IPv6 routes", saved6.len());
    let tmp = TempDir::new("routes-v6");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();

    // how many changes a whole restore makes, into a target like the one below
    let probe = TestNs::new("r6p");
    probe.ip_batch("link set lo up\n");
    let (changes, stats) = restore_counting(&host, &probe, &images);
    assert!(
        changes > 10_000,
        "a restore of 10,000 routes made {changes} changes"
    );
    // its total is the whole restore's, the read of the images included
    let phase = |name: &str| {
        stats["phases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .and_then(|p| p["us"].as_u64())
            .unwrap_or_else(|| panic!("no phase {name} in {stats}"))
    };
    let total = stats["total_us"].as_u64().unwrap_or(0);
    assert!(
        total >= phase("read") + phase("routes"),
        "total {total} us, less than the read and the routes: {stats}"
    );
    drop(probe);

    let b = TestNs::new("r6t");
    // lo up already: bringing it down again on rollback would take the unreachable routes
    // (on lo) with it, whatever their undo
    b.ip_batch("link set lo up\n");
    let before = NsState::capture(&b);
    for n in [3, changes / 3, changes / 2, changes - 3000, changes] {
        crhook_tests::restore_failing_after(&host, &b, &images, n, &before);
    }
    restore(&host, &b, &images);
    assert!(
        sorted_routes(&b, &["-4"]) == saved4,
        "the restored IPv4 routes differ from the saved ones"
    );
    assert!(
        sorted_routes(&b, &["-6"]) == saved6,
        "the restored IPv6 routes differ from the saved ones"
    );
    diff(&host, &b, &images).expect_success();
}
