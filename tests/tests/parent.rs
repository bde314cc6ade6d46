//! Parent and child images (`checkpoint --parent`): chains restore exactly, judged by the
//! harness's own reading (`ip`, `iptables-save`, `nft`, /proc/sys/net) and by `crhook diff`;
//! changes made while a parent is dumped are caught; a tracker's overrun counts as a change;
//! a parent of another namespace, and a missing, changed or damaged one, is refused by name.
//! Needs root and a built `crhook` (`cargo build -p crhook`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crhook_netstate::crhook_core::{HostKey, ImageDir};
use crhook_netstate::{CheckpointOptions, NetNs, Target, Tracker};
use crhook_tests::{compare_states, crhook_on, require_root, NsState, Run, TempDir, TestNs};

/// A namespace holding something of every family crhook carries.
fn populated(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    ns.ip_batch(
        "link set lo up
link add pa0 type veth peer name pb0
link add br0 type bridge
link set pb0 master br0
address add 10.20.0.1/24 dev pa0
address add fd00:20::1/64 dev pa0 nodad
link set pa0 up
link set pb0 up
link set br0 up
route add 10.21.0.0/16 via 10.20.0.2
route add 10.22.0.0/16 via 10.20.0.2 table 100
rule add from 10.20.0.0/24 table 100 priority 1000
neighbour add 10.20.0.9 lladdr 02:00:00:00:00:09 dev pa0 nud permanent
nexthop add id 7 via 10.20.0.3 dev pa0
route add 10.23.0.0/16 nhid 7
",
    );
    ns.set_sysctl(&["ipv4", "ip_forward"], "1");
    ns.sh("set -e
nft add table inet crt
nft add chain inet crt input '{ type filter hook input priority 0; policy accept; }'
nft add rule inet crt input tcp dport 22 accept
iptables -A INPUT -s 10.99.0.0/16 -j DROP");
    ns
}

/// Changes every family of `ns`; `round` makes each round's changes its own.
fn change_everything(ns: &TestNs, round: u32) {
    ns.ip_batch(&format!(
        "link set pa0 mtu {}
address add 10.20.{round}.5/24 dev pa0
route add 10.{}.0.0/16 via 10.20.0.2
route add 10.{}.0.0/16 via 10.20.0.2 table 100
rule add from 10.{round}.0.0/24 table 100 priority {}
neighbour add 10.20.0.{} lladdr 02:00:00:00:00:{round:02} dev pa0 nud permanent
nexthop add id {} via 10.20.0.4 dev pa0
",
        1400 + round,
        30 + round,
        40 + round,
        1000 + round,
        100 + round,
        10 + round,
    ));
    let _ = ns.try_ip(&["route", "del", "10.21.0.0/16"]);
    ns.set_sysctl(
        &["ipv4", "ip_forward"],
        if round.is_multiple_of(2) { "1" } else { "0" },
    );
    ns.sh(&format!(
        "set -e
nft add rule inet crt input tcp dport {} accept
iptables -A INPUT -s 10.{round}.0.0/16 -j ACCEPT",
        8000 + round
    ));
}

fn checkpoint(host: &TestNs, ns: &TestNs, images: &str, extra: &[&str]) -> Run {
    crhook_on(host, "checkpoint", ns, images, extra)
}

fn format_of(dir: &str) -> (u32, u32) {
    let d = ImageDir::open(Path::new(dir)).unwrap_or_else(|e| panic!("open {dir}: {e}"));
    (d.inventory().format_major, d.inventory().format_minor)
}

/// Restores `images` into a fresh namespace and compares it with `want`.
fn restores_exactly(host: &TestNs, images: &str, want: &NsState, what: &str) {
    let fresh = TestNs::new("prest");
    crhook_on(host, "restore", &fresh, images, &[]).expect_success();
    let got = NsState::capture(&fresh);
    let diffs = compare_states(want, &got);
    assert!(
        diffs.is_empty(),
        "{what}: restored namespace differs:\n{}",
        diffs.join("\n")
    );
    crhook_on(host, "diff", &fresh, images, &[]).expect_success();
}

#[test]
fn chain_of_three_restores_exactly() {
    require_root();
    let host = TestNs::host();
    let ns = populated("pchain");
    let t = TempDir::new("pchain");
    let (a, b, c) = (t.join("a"), t.join("b"), t.join("c"));
    checkpoint(&host, &ns, &a, &[]).expect_success();
    change_everything(&ns, 1);
    let state_b = NsState::capture(&ns);
    checkpoint(&host, &ns, &b, &["--parent", &a, "--lock"]).expect_success();
    change_everything(&ns, 2);
    let state_c = NsState::capture(&ns);
    checkpoint(&host, &ns, &c, &["--parent", &b, "--lock"]).expect_success();
    assert_eq!(format_of(&a).0, 1);
    assert_eq!(format_of(&b), (2, 0));
    assert_eq!(format_of(&c), (2, 0));
    // the third image names its parent relatively and reads through the whole chain
    let d = ImageDir::open(Path::new(&c)).expect("open c");
    assert_eq!(d.chain().count(), 3);
    assert_eq!(
        d.inventory().parent.as_ref().map(|p| p.path.as_str()),
        Some("../b")
    );
    restores_exactly(&host, &b, &state_b, "image b (chain of two)");
    restores_exactly(&host, &c, &state_c, "image c (chain of three)");
    // show prints the chain
    let shown = crhook_tests::crhook(None, &["show", "--format", "text", &c], &[]);
    shown.expect_success();
    assert!(
        shown.stdout.contains("3 images, child first"),
        "{}",
        shown.stdout
    );
}

#[test]
fn nothing_changed_child_takes_everything_from_its_parent() {
    require_root();
    let host = TestNs::host();
    let ns = populated("psame");
    let t = TempDir::new("psame");
    let (a, b) = (t.join("a"), t.join("b"));
    // settled first: DAD and carrier changes would otherwise differ between the two
    let want = NsState::capture(&ns);
    checkpoint(&host, &ns, &a, &[]).expect_success();
    checkpoint(&host, &ns, &b, &["--parent", &a, "--lock"]).expect_success();
    let d = ImageDir::open(Path::new(&b)).expect("open b");
    let from: Vec<String> = d.from_parent().map(|k| k.to_string()).collect();
    for k in [
        "links",
        "addresses",
        "routes",
        "rules",
        "nexthops",
        "firewall",
    ] {
        assert!(
            from.iter().any(|f| f == k),
            "{k} not from the parent: {from:?}"
        );
    }
    restores_exactly(&host, &b, &want, "unchanged child");
}

/// A checkpoint through the library, as a node agent keeping `tracker` makes it.
fn tracked(
    target: &Target,
    images: &str,
    parent: Option<&str>,
    lock: bool,
    tracker: &mut Tracker,
) -> crhook_netstate::crhook_proto::Stats {
    let opts = CheckpointOptions {
        lock,
        parent: parent.map(PathBuf::from),
        ..CheckpointOptions::default()
    };
    let key = HostKey::from_bytes([3; 32]);
    crhook_netstate::incremental::run(target, Path::new(images), &opts, key, Some(tracker))
        .unwrap_or_else(|e| panic!("checkpoint into {images}: {e}"))
}

/// A node agent's flow: one tracker across checkpoints. Routes added while the parent is
/// being dumped may or may not be in it; the tracker saw them, so the child dumps routes
/// again and the chain restores to the namespace as it was at the child.
#[test]
fn change_during_the_parent_dump_is_caught() {
    require_root();
    let host = TestNs::host();
    let ns = populated("pdur");
    // a few thousand routes make the dump long enough to race with
    let mut batch = String::new();
    for i in 0..3000u32 {
        batch.push_str(&format!(
            "route add 10.60.{}.{}/32 via 10.20.0.2\n",
            i / 250,
            i % 250
        ));
    }
    ns.ip_batch(&batch);
    let t = TempDir::new("pdur");
    let (a, b) = (t.join("a"), t.join("b"));
    let target = Target::Netns(ns.path());
    let handle = NetNs::open(&target).expect("open ns");
    let mut tracker = Tracker::new(&handle).expect("tracker");
    let stop = AtomicBool::new(false);
    let name = ns.name().to_string();
    std::thread::scope(|s| {
        let adder = s.spawn(|| {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) && i < 2000 {
                let dst = format!("10.61.{}.{}/32", i / 250, i % 250);
                let ok = std::process::Command::new(crhook_tests::ip_bin())
                    .args(["-n", &name, "route", "add", &dst, "via", "10.20.0.2"])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "ip route add {dst} in {name} failed");
                i += 1;
            }
            i
        });
        tracked(&target, &a, None, false, &mut tracker);
        stop.store(true, Ordering::Relaxed);
        let added = adder.join().expect("adder");
        assert!(added > 0, "no route was added during the parent dump");
    });
    let want = NsState::capture(&ns);
    let stats = tracked(&target, &b, Some(&a), true, &mut tracker);
    let d = ImageDir::open(Path::new(&b)).expect("open b");
    assert!(
        !d.from_parent().any(|k| k.to_string() == "routes"),
        "routes changed during the parent's dump but were taken from it"
    );
    assert!(stats.locked_us > 0);
    restores_exactly(
        &host,
        &b,
        &want,
        "child after changes during the parent dump",
    );
}

/// Notifications lost to a full receive buffer (ENOBUFS) mean "everything changed".
#[test]
fn overrun_is_treated_as_changed() {
    require_root();
    let host = TestNs::host();
    let ns = populated("pover");
    let t = TempDir::new("pover");
    let (a, b) = (t.join("a"), t.join("b"));
    let target = Target::Netns(ns.path());
    let handle = NetNs::open(&target).expect("open ns");
    // the smallest buffer the kernel allows holds a few notifications
    let mut tracker = Tracker::with_receive_buffer(&handle, 1).expect("tracker");
    tracked(&target, &a, None, true, &mut tracker);
    let mark = tracker.mark().expect("mark");
    let mut batch = String::new();
    for i in 0..500u32 {
        batch.push_str(&format!(
            "route add 10.70.{}.{}/32 via 10.20.0.2\n",
            i / 250,
            i % 250
        ));
    }
    ns.ip_batch(&batch);
    let changes = tracker.changed_since(&mark).expect("changes");
    assert!(
        changes.overrun,
        "500 routes did not overrun a minimal buffer"
    );
    for k in crhook_netstate::tracker::TRACKED {
        assert!(
            changes.kinds.contains(&k),
            "{k} not changed after an overrun"
        );
    }
    let want = NsState::capture(&ns);
    tracked(&target, &b, Some(&a), true, &mut tracker);
    restores_exactly(&host, &b, &want, "child after an overrun");
}

#[test]
fn parent_of_another_namespace_is_refused() {
    require_root();
    let host = TestNs::host();
    let one = populated("pns1");
    let two = populated("pns2");
    let t = TempDir::new("pns");
    let (a, b) = (t.join("a"), t.join("b"));
    checkpoint(&host, &one, &a, &[]).expect_success();
    let r = checkpoint(&host, &two, &b, &["--parent", &a, "--lock"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("another network namespace") && r.stderr.contains(&a),
        "{}",
        r.stderr
    );
    assert!(!Path::new(&b).exists(), "a refused checkpoint left {b}");
}

#[test]
fn missing_changed_or_damaged_parent_is_refused_by_name() {
    require_root();
    let host = TestNs::host();
    let ns = populated("pbad");
    let t = TempDir::new("pbad");
    let (a, b) = (t.join("a"), t.join("b"));
    checkpoint(&host, &ns, &a, &[]).expect_success();
    change_everything(&ns, 1);
    checkpoint(&host, &ns, &b, &["--parent", &a]).expect_success();
    // a child written over an image of its own chain is refused, the chain left whole
    let r = checkpoint(&host, &ns, &a, &["--parent", &b]);
    r.expect_code(1);
    assert!(r.stderr.contains("in its chain"), "{}", r.stderr);
    ImageDir::open(Path::new(&b)).expect("b still reads after the refusal");
    let fresh = TestNs::new("pbadr");
    let before = NsState::capture(&fresh);
    let refused = |what: &str, needle: &str| {
        let r = crhook_on(&host, "restore", &fresh, &b, &[]);
        r.expect_code(1);
        assert!(
            r.stderr.contains("parent image") && r.stderr.contains(needle),
            "{what}: {}",
            r.stderr
        );
        assert!(
            compare_states(&before, &NsState::capture(&fresh)).is_empty(),
            "{what}: restore changed the namespace before refusing"
        );
    };
    // damaged: one byte of a file the child takes from its parent (files the child carries
    // itself are never read from the parent)
    let taken = ImageDir::open(Path::new(&b))
        .expect("open b")
        .from_parent()
        .next()
        .expect("b takes some kind from its parent");
    let fw = Path::new(&a).join(taken.file_name());
    let saved = std::fs::read(&fw).expect("read the parent's file");
    let mut bad = saved.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&fw, &bad).expect("damage");
    refused("damaged", "damaged");
    std::fs::write(&fw, &saved).expect("repair");
    crhook_on(&host, "diff", &ns, &b, &[]).expect_success();
    // changed: a new checkpoint in the parent's place
    let aside = t.join("a.orig");
    std::fs::rename(&a, &aside).expect("move parent aside");
    checkpoint(&host, &ns, &a, &[]).expect_success();
    refused("changed", "sha256 does not match");
    // missing
    std::fs::remove_dir_all(&a).expect("remove parent");
    refused("missing", "missing");
    // a checkpoint against a missing parent fails before it writes anything
    let c = t.join("c");
    let r = checkpoint(&host, &ns, &c, &["--parent", &a, "--lock"]);
    r.expect_code(1);
    assert!(r.stderr.contains(&a), "{}", r.stderr);
    assert!(!Path::new(&c).exists());
}
