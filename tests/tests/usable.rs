//! Restored state is usable the moment restore returns: IPv6 addresses that had passed
//! duplicate address detection are not tentative again, and a socket binds to every restored
//! address at once (v4, v6 and the link-local), both through `crhook restore` and through the
//! CRIU action-script path (`setup-namespaces`). Needs root and a built `crhook`.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crhook_tests::{
    checkpoint, crhook, diff, move_through, require_root, restore, wait_until, Moved, TempDir,
    TestNs,
};

/// Binds a UDP socket to `addr` inside `ns`, on a thread the library puts there.
fn bind_in(ns: &TestNs, addr: IpAddr, scope: u32) -> Result<(), String> {
    let netns = crhook_netstate::NetNs::open_path(&ns.path()).map_err(|e| e.to_string())?;
    let sa = match addr {
        IpAddr::V4(a) => SocketAddr::from((a, 0)),
        IpAddr::V6(a) => SocketAddr::V6(std::net::SocketAddrV6::new(a, 0, 0, scope)),
    };
    netns
        .run(|| {
            Ok(UdpSocket::bind(sa)
                .map(drop)
                .map_err(|e| format!("bind {sa}: {e}")))
        })
        .map_err(|e| e.to_string())?
}

/// (address, ifindex, flags) of every address in `ns`.
fn addrs(ns: &TestNs) -> Vec<(IpAddr, u32, Vec<String>)> {
    let v: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "addr", "show"])).expect("ip -j addr");
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        let idx = l["ifindex"].as_u64().unwrap_or(0) as u32;
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let ip: IpAddr = a["local"].as_str().unwrap_or("").parse().expect("address");
            let flags = ["tentative", "dadfailed", "nodad"]
                .into_iter()
                .filter(|f| a[*f].as_bool() == Some(true))
                .map(String::from)
                .collect();
            out.push((ip, idx, flags));
        }
    }
    out
}

fn build(a: &TestNs, peer: &TestNs) {
    a.ip_batch(&format!(
        "link set lo up\n\
         link add va type veth peer name vpeer netns {}\n\
         addr add 10.61.0.1/24 dev va\n\
         addr add fd00:61::1/64 dev va\n\
         addr add fd00:62::1/64 dev va\n\
         link set va up\n",
        peer.name()
    ));
    peer.ip_batch("link set vpeer up\nlink set lo up\n");
    wait_until("DAD to finish", Duration::from_secs(10), || {
        addrs(a).iter().all(|(_, _, f)| f.is_empty())
    });
}

fn assert_usable(b: &TestNs) {
    let now = assert_each_binds(b);
    assert!(now.len() >= 5, "addresses after restore: {now:?}");
    assert!(
        now.iter()
            .any(|(ip, _, _)| matches!(ip, IpAddr::V6(v) if v.segments()[0] == 0xfe80)),
        "the link-local address is there: {now:?}"
    );
}

/// Every address of `b`: none tentative, none carrying nodad, each one a socket binds to;
/// returns them.
fn assert_each_binds(b: &TestNs) -> Vec<(IpAddr, u32, Vec<String>)> {
    let now = addrs(b);
    for (ip, idx, flags) in &now {
        assert!(
            !flags.contains(&"tentative".to_string()),
            "{ip} tentative right after restore: {now:?}"
        );
        assert!(
            !flags.contains(&"nodad".to_string()),
            "{ip} carries nodad, which the original had not: {now:?}"
        );
        let scope = if matches!(ip, IpAddr::V6(v) if v.segments()[0] == 0xfe80) {
            *idx
        } else {
            0
        };
        bind_in(b, *ip, scope).unwrap_or_else(|e| panic!("right after restore: {e}"));
    }
    now
}

#[test]
fn addresses_bind_right_after_restore() {
    require_root();
    let host = TestNs::host();
    let peer = TestNs::new("usp");
    let a = TestNs::new("usa");
    build(&a, &peer);
    let tmp = TempDir::new("usable");
    move_and_check(&host, a, &peer, "va", &tmp, "usb");
}

/// Checkpoints `a` into `tmp`, deletes it, restores into a new namespace `b` and checks it
/// usable, with accept_dad of `dev` and of `all` back to what they were (the kernel
/// defaults: 1 for a device, 0 for all, as in `peer`); returns `b` and the image directory.
fn move_and_check(
    host: &TestNs,
    a: TestNs,
    peer: &TestNs,
    dev: &str,
    tmp: &TempDir,
    b: &str,
) -> (TestNs, String) {
    let images = tmp.join("images");
    checkpoint(host, &a, &images);
    a.delete();
    let b = TestNs::new(b);
    restore(host, &b, &images);
    assert_usable(&b);
    assert_eq!(b.sysctl(&["ipv6", "conf", dev, "accept_dad"]), "1");
    assert_eq!(
        b.sysctl(&["ipv6", "conf", "all", "accept_dad"]),
        peer.sysctl(&["ipv6", "conf", "all", "accept_dad"])
    );
    (b, images)
}

/// A link whose link-local the kernel makes itself at up (a stable-privacy secret): restore
/// suspends DAD on it, waits for the kernel's DAD work, and writes accept_dad back.
#[test]
fn a_link_that_makes_its_own_link_local_is_usable_too() {
    require_root();
    let host = TestNs::host();
    let peer = TestNs::new("uskp");
    let a = TestNs::new("uska");
    a.ip_batch(&format!(
        "link set lo up\n\
         link add vk type veth peer name vkpeer netns {}\n\
         addr add 10.63.0.1/24 dev vk\n\
         addr add fd00:63::1/64 dev vk\n",
        peer.name()
    ));
    a.sh("echo 2001:db8::7 > /proc/sys/net/ipv6/conf/vk/stable_secret");
    a.ip_batch("link set vk up\n");
    peer.ip_batch("link set vkpeer up\nlink set lo up\n");
    wait_until("DAD to finish", Duration::from_secs(10), || {
        let now = addrs(&a);
        now.len() >= 5 && now.iter().all(|(_, _, f)| f.is_empty())
    });
    let saved_ll = link_locals(&a, "vk");
    let tmp = TempDir::new("usable-own-ll");
    let (b, images) = move_and_check(&host, a, &peer, "vk", &tmp, "uskb");
    // the kernel made it again from the same secret
    assert_eq!(link_locals(&b, "vk"), saved_ll);
    diff(&host, &b, &images).expect_success();
}

#[test]
fn addresses_bind_right_after_the_criu_setup_namespaces_action() {
    require_root();
    let host = TestNs::host();
    let peer = TestNs::new("uscp");
    let a = TestNs::new("usca");
    build(&a, &peer);
    let tmp = TempDir::new("usable-criu");
    let criu_dir = tmp.join("criu");
    std::fs::create_dir_all(&criu_dir).expect("criu dir");
    let images = format!("{criu_dir}/netstate");
    checkpoint(&host, &a, &images);
    a.delete();
    let b = TestNs::new("uscb");
    // a process in b plays CRIU's restored root task
    let mut task = std::process::Command::new(crhook_tests::ip_bin())
        .args(["netns", "exec", b.name(), "/bin/sleep", "60"])
        .spawn()
        .expect("task in b");
    let pid = task.id().to_string();
    wait_until("the task to enter b", Duration::from_secs(5), || {
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.ino()).ok();
        ino(std::path::Path::new(&format!("/proc/{pid}/ns/net"))) == ino(&b.path())
    });
    let r = crhook(
        Some(&host),
        &[],
        &[
            ("CRTOOLS_SCRIPT_ACTION", "setup-namespaces"),
            ("CRTOOLS_IMAGE_DIR", criu_dir.as_str()),
            ("CRTOOLS_INIT_PID", pid.as_str()),
        ],
    );
    let bound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        r.expect_success();
        assert_usable(&b);
    }));
    let _ = task.kill();
    let _ = task.wait();
    if let Err(p) = bound {
        std::panic::resume_unwind(p);
    }
}

/// Addresses of `dev` in `ns` that start with fe80.
fn link_locals(ns: &TestNs, dev: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ns.ip(&["-j", "-6", "addr", "show", "dev", dev]))
            .expect("ip -j addr");
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["local"].as_str().map(String::from))
        .filter(|a| a.starts_with("fe80"))
        .collect()
}

#[test]
fn no_kernel_made_extras_and_diff_sees_an_added_link_local() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("usk");
    a.ip_batch(
        "link set lo up\n\
         tuntap add dev tap0 mode tap\n\
         link add br0 type bridge\n\
         link set tap0 master br0\n\
         link add mv0 link br0 type macvlan mode bridge\n\
         link add vk type veth peer name vk2\n\
         link set tap0 up\n\
         link set br0 up\n\
         link set mv0 up\n\
         link set vk up\n\
         link set vk2 up\n",
    );
    wait_until("vk's link-local", Duration::from_secs(10), || {
        !link_locals(&a, "vk").is_empty()
    });
    for dev in ["br0", "mv0", "tap0"] {
        assert!(
            link_locals(&a, dev).is_empty(),
            "{dev} without carrier has none"
        );
    }
    let tmp = TempDir::new("usable-ll");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    let vk_ll = link_locals(&a, "vk");
    a.delete();
    let b = TestNs::new("uskb");
    restore(&host, &b, &images);
    for dev in ["br0", "mv0", "tap0"] {
        assert_eq!(
            link_locals(&b, dev),
            Vec::<String>::new(),
            "{dev} after restore"
        );
    }
    assert_eq!(
        link_locals(&b, "vk"),
        vk_ll,
        "the kernel's own link-local came back"
    );
    diff(&host, &b, &images).expect_success();
    b.ip(&["addr", "add", "fe80::1234/64", "dev", "br0"]);
    let d = diff(&host, &b, &images);
    assert_eq!(
        d.code,
        Some(1),
        "diff must see the added address: {}",
        d.stdout
    );
    assert!(d.stdout.contains("fe80::1234"), "{}", d.stdout);
}

/// `ip -6 -o addr show` lines, lifetimes left out (they count down), sorted.
fn v6_addr_lines(ns: &TestNs) -> Vec<String> {
    let mut v: Vec<String> = ns
        .ip(&["-6", "-o", "addr", "show"])
        .lines()
        .map(|l| {
            let l = l.split('\\').next().unwrap_or(l);
            l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
        })
        .collect();
    v.sort();
    v
}

/// `ip -6 route show table all` lines, expiry left out, sorted.
fn v6_routes(ns: &TestNs) -> Vec<String> {
    let mut v: Vec<String> = ns
        .ip(&["-6", "route", "show", "table", "all"])
        .lines()
        .map(|l| {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            if let Some(i) = w.iter().position(|x| *x == "expires") {
                w.drain(i..(i + 2).min(w.len()));
            }
            w.join(" ")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ipv6_flags_lifetimes_and_peers_come_back_with_their_routes() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("usf");
    // addresses added on an up link, as runtimes and CNI plugins do; restore adds IPv6 ones
    // once the links are up, through NODAD and a replace where DAD is suspended: a saved
    // nodad stays, a DAD-passed address gets none, a finite lifetime keeps its prefix route,
    // a NODAD peer its peer route, and a link that stays down its tentative address
    a.ip_batch(
        "link set lo up\n\
         link add w6f type veth peer name w6f2\n\
         link add w6d type veth peer name w6d2\n\
         addr add fd00:84::1/64 dev w6d\n\
         link set w6f up\n\
         link set w6f2 up\n\
         addr add fd00:81::1/64 dev w6f nodad\n\
         addr add fd00:82::1/64 dev w6f valid_lft 3000 preferred_lft 2000\n\
         addr add fd00:83::1 peer fd00:83::2/128 dev w6f nodad\n\
         addr add fd00:85::1/64 dev w6f\n",
    );
    wait_until("DAD to finish", Duration::from_secs(10), || {
        !v6_addr_lines(&a)
            .iter()
            .any(|l| l.contains("tentative") && !l.starts_with("w6d "))
    });
    let want_addrs = v6_addr_lines(&a);
    let want_routes = v6_routes(&a);
    for needle in ["fd00:82::/64", "fd00:83::2"] {
        assert!(
            want_routes.iter().any(|r| r.contains(needle)),
            "source has a route for {needle}: {want_routes:#?}"
        );
    }
    let Moved {
        ns: b,
        images,
        dir: _dir,
    } = move_through(&host, a, "usable-flags");
    assert_eq!(v6_addr_lines(&b), want_addrs, "ip -6 addr after restore");
    assert_eq!(v6_routes(&b), want_routes, "ip -6 route after restore");
    diff(&host, &b, &images).expect_success();
}

/// Bridges whose carrier comes from a veth port: the kernel takes such a bridge as ready for
/// IPv6 only once its link watcher has handled the carrier, which it does for some changes
/// at most once a second. Restore adds each bridge's saved link-local itself and does not
/// wait for that: the addresses are usable at once, and once the kernel has taken the
/// bridges as ready (well past that second) nothing changed: no link-local made twice, none
/// tentative, the same addresses as saved.
#[test]
fn bridges_the_kernel_takes_as_ready_late_keep_their_addresses() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("usbr");
    let mut batch = String::from("link set lo up\n");
    for i in 0..6 {
        batch.push_str(&format!(
            "link add br{i} type bridge\n\
             link add vb{i} type veth peer name vp{i}\n\
             link set vb{i} master br{i}\n\
             addr add fd00:9{i}::1/64 dev br{i}\n\
             link set vp{i} up\n\
             link set vb{i} up\n\
             link set br{i} up\n"
        ));
    }
    a.ip_batch(&batch);
    wait_until("DAD to finish", Duration::from_secs(10), || {
        let now = v6_addr_lines(&a);
        !now.iter().any(|l| l.contains("tentative"))
            && (0..6).all(|i| !link_locals(&a, &format!("br{i}")).is_empty())
    });
    let want = v6_addr_lines(&a);
    let Moved {
        ns: b,
        images,
        dir: _dir,
    } = move_through(&host, a, "usable-bridges");
    assert_each_binds(&b);
    assert_eq!(v6_addr_lines(&b), want, "ip -6 addr right after restore");
    // the link watcher's slow path runs within a second of its last run
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        v6_addr_lines(&b),
        want,
        "ip -6 addr once the kernel took the bridges as ready"
    );
    diff(&host, &b, &images).expect_success();
}

/// A persistent tun device with no queue, up, shows NO-CARRIER and `state DOWN` in a link
/// dump (`ip link show`) from the moment restore returns, as in the source: restore settles
/// the state the kernel holds back for a second (linkwatch), which otherwise flapped to
/// `state UNKNOWN` without NO-CARRIER in the first second.
#[test]
fn a_tun_device_without_a_queue_shows_no_carrier_from_the_moment_restore_returns() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("tuncar");
    a.ip_batch(
        "link set lo up\ntuntap add name tq0 mode tun\nlink add va type veth peer name vb\n\
         link set va up\nlink set vb up\nlink set tq0 up\n",
    );
    let shows = |ns: &TestNs| {
        let out = ns.ip(&["-o", "link", "show"]);
        let line = out
            .lines()
            .find(|l| l.contains(" tq0: "))
            .unwrap_or_else(|| panic!("no tq0 in {out}"))
            .to_string();
        (
            line.contains("NO-CARRIER") && line.contains("state DOWN"),
            line,
        )
    };
    wait_until("the source's tq0 settles", Duration::from_secs(3), || {
        shows(&a).0
    });
    let tmp = TempDir::new("tuncar");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    for attempt in 0..3 {
        let b = TestNs::new("tuncarb");
        restore(&host, &b, &images);
        // sampled over the second the kernel may hold a link event back
        for k in 0..8 {
            let (ok, line) = shows(&b);
            assert!(
                ok,
                "attempt {attempt}, {} ms after restore: {line}",
                k * 150
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }
}
