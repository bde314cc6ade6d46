//! Bridge FDB entries a user added (static and permanent on a bridge port, a vxlan's remote
//! entries) come back; learnt entries and those the kernel makes for the ports' own
//! addresses are not state. Needs root and a built `crhook`.

use crhook_tests::{diff, move_through, require_root, Moved, TestNs};

/// `bridge fdb show` without the entries the kernel keeps for the links' own addresses: a
/// bridge whose MAC restore pins holds its local entry itself, one that took a port's MAC
/// shares the port's.
fn fdb(ns: &TestNs) -> Vec<String> {
    let links: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "link", "show"])).expect("ip -j link");
    let own: Vec<String> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["address"].as_str().map(str::to_string))
        .collect();
    let out = ns.exec(&["bridge", "fdb", "show"]);
    assert!(out.status.success(), "bridge fdb show: {out:?}");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !own.iter().any(|m| l.starts_with(m.as_str())))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn fdb_entries_round_trip_and_diff_sees_a_removed_one() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("fdba");
    a.ip_batch(
        "link set lo up\n\
         link add br0 type bridge\n\
         link add vp type veth peer name vq\n\
         link set vp master br0\n\
         link add vx0 type vxlan id 42 dstport 4789 local 10.1.1.1 nolearning\n\
         addr add 10.1.1.1/24 dev br0\n\
         link set br0 up\n\
         link set vp up\n\
         link set vq up\n\
         link set vx0 up\n",
    );
    for cmd in [
        "fdb add 02:00:00:00:00:aa dev vp master static",
        "fdb add 02:00:00:00:00:bb dev vp master permanent",
        "fdb append 00:00:00:00:00:00 dev vx0 dst 10.1.1.9 self permanent",
        "fdb append 00:00:00:00:00:00 dev vx0 dst 10.1.1.10 self permanent",
    ] {
        let args: Vec<&str> = cmd.split(' ').collect();
        let mut argv = vec!["bridge"];
        argv.extend(args);
        let out = a.exec(&argv);
        assert!(out.status.success(), "{cmd}: {out:?}");
    }
    let want = fdb(&a);
    assert!(
        want.iter().any(|l| l.contains("02:00:00:00:00:aa")),
        "{want:?}"
    );
    let Moved {
        ns: b,
        images,
        dir: _dir,
    } = move_through(&host, a, "fdb");
    assert_eq!(fdb(&b), want, "bridge fdb show after restore");
    diff(&host, &b, &images).expect_success();
    let out = b.exec(&[
        "bridge",
        "fdb",
        "del",
        "02:00:00:00:00:aa",
        "dev",
        "vp",
        "master",
    ]);
    assert!(out.status.success(), "{out:?}");
    let d = diff(&host, &b, &images);
    assert_eq!(d.code, Some(1), "{}", d.stdout);
    assert!(
        d.stdout.contains("fdb 02:00:00:00:00:aa dev vp"),
        "{}",
        d.stdout
    );
}
