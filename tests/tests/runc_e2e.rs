//! End to end with real runc (and CRIU): the two ways crhook carries a container's network.
//!
//! 1. Network state only: `runc run` container A, shape its namespace, `crhook checkpoint
//!    --bundle --id`, delete A, `runc run` B from the same bundle with `crhook hook` as its
//!    createRuntime hook (no PATH in the hook's environment): B's namespace equals A's.
//! 2. Full checkpoint/restore: `runc checkpoint` with crhook as CRIU action script (through
//!    examples/criu/runc.conf named by the `org.criu.config` annotation), `runc restore`: the
//!    restored container's namespace equals the checkpointed one, and `iptables-save`,
//!    `ip6tables-save` and `nft list ruleset` print the same as before the checkpoint (crhook
//!    removes what CRIU's own lock leaves behind).
//!
//! runc itself runs inside a test namespace that plays the host (entered between fork and exec
//! by the library's `NetNs::command`), so the containers' veth peers, the bridge, and the
//! namespace crhook and CRIU run in are all the test's own; nothing touches the machine's
//! namespace. The rootfs is a static busybox the test copies into a temporary bundle.
#![allow(clippy::unwrap_used)]

#[path = "runc_e2e/firewall.rs"]
mod firewall;
#[path = "runc_e2e/runc.rs"]
mod runc;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crhook_tests::{
    compare_states, crhook, crhook_bin, require_root, unique_name, wait_link_gone, NsState,
    TempDir, TestNs,
};
use serde_json::json;

use firewall::firewall;
use runc::{attach, busybox_bin, check, edit_config, find, make_bundle, Criu, Runc};

const BRIDGE: &str = "bre2e";
const HOST_V4: &str = "192.0.2.1";

/// The host side: a bridge with v4/v6 addresses.
fn setup_host(host: &TestNs) {
    host.ip_batch(&format!(
        "link set lo up\n\
         link add {BRIDGE} type bridge\n\
         addr add {HOST_V4}/24 dev {BRIDGE}\n\
         addr add 2001:db8:e2e::1/64 dev {BRIDGE} nodad\n\
         link set {BRIDGE} up\n"
    ));
}

/// Shapes the container's namespace: a veth to the host bridge, a tun device, v4/v6
/// addresses, routes in two tables, a rule, iptables rules, sysctls.
fn shape(c: &TestNs, host: &TestNs, peer: &str) {
    c.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        peer,
        "netns",
        host.name(),
    ]);
    host.ip(&["link", "set", peer, "master", BRIDGE, "up"]);
    c.ip_batch(
        "link set lo up\n\
         link set eth0 address 02:00:00:00:e2:10 mtu 1400 up\n\
         addr add 192.0.2.10/24 dev eth0\n\
         addr add 2001:db8:e2e::10/64 dev eth0 nodad\n\
         tuntap add dev tun0 mode tun\n\
         addr add 10.77.0.1/30 dev tun0\n\
         route add default via 192.0.2.1\n\
         route add 198.51.100.0/24 via 192.0.2.1 table 100\n\
         rule add from 192.0.2.10 lookup 100 pref 1000\n\
         neigh add 192.0.2.2 lladdr 02:00:00:00:00:02 dev eth0 nud permanent\n",
    );
    c.ip_batch_with(
        &["-6"],
        "route add 2001:db8:77::/64 via 2001:db8:e2e::1 table 100\n",
    );
    c.set_sysctl(&["ipv4", "ip_forward"], "1");
    c.set_sysctl(&["ipv4", "conf", "eth0", "rp_filter"], "2");
    c.set_sysctl(&["ipv6", "conf", "eth0", "accept_ra"], "0");
    for rule in [
        "iptables -A INPUT -p tcp --dport 8080 -j ACCEPT",
        "iptables -A INPUT -i tun0 -s 10.77.0.2 -j ACCEPT",
        "iptables -P FORWARD DROP",
        "iptables -t nat -A POSTROUTING -o eth0 -s 10.77.0.0/30 -j MASQUERADE",
        "ip6tables -A INPUT -p tcp --dport 8443 -j ACCEPT",
    ] {
        c.sh(rule);
    }
}

/// Pings the host bridge from inside `ns` (busybox's ping, run host-side in the namespace:
/// the container itself has no CAP_NET_RAW).
fn reaches_host(ns: &TestNs) {
    let bb = busybox_bin().display().to_string();
    let out = ns.exec(&[&bb, "ping", "-c", "1", "-W", "3", HOST_V4]);
    check(&format!("ping {HOST_V4} from {}", ns.name()), &out);
}

fn assert_same(want: &NsState, want_fw: &str, got_ns: &TestNs) {
    let got = NsState::capture(got_ns);
    let diffs = compare_states(want, &got);
    assert!(
        diffs.is_empty(),
        "restored namespace differs from the checkpointed one:\n{}",
        diffs.join("\n")
    );
    let got_fw = firewall(got_ns);
    assert_eq!(got_fw, want_fw, "firewall differs after restore");
}

#[test]
fn network_state_only_runc_run_then_hook_restores_into_a_new_container() {
    require_root();
    let host = TestNs::host();
    setup_host(&host);
    let tmp = TempDir::new("e2e-hook");
    let bundle = make_bundle(tmp.path());
    // createRuntime hook, environment without PATH (runc passes exactly this env)
    edit_config(&bundle, |c| {
        c["hooks"] = json!({"createRuntime": [{
            "path": crhook_bin(),
            "args": ["crhook", "--log-level", "info", "hook"],
            "env": [],
            "timeout": 60,
        }]});
    });
    let runc = Runc::new(&host);
    let b = bundle.display().to_string();

    // A: never checkpointed, so the hook finds no images and lets it start
    let id_a = unique_name("a");
    let a = runc.start(&bundle, &id_a);
    let ns_a = attach("e2e-a", a.pid());
    shape(&ns_a, &host, "vh-a");
    let want = NsState::capture(&ns_a);
    let want_fw = firewall(&ns_a);
    reaches_host(&ns_a);

    crhook(
        Some(&host),
        &[
            "checkpoint",
            "--bundle",
            &b,
            "--id",
            &id_a,
            "--root",
            &runc.root(),
        ],
        &[],
    )
    .expect_success();
    crhook(
        Some(&host),
        &[
            "diff",
            "--bundle",
            &b,
            "--id",
            &id_a,
            "--root",
            &runc.root(),
        ],
        &[],
    )
    .expect_success();
    drop(ns_a);
    drop(a);
    wait_link_gone(&host, "vh-a");

    // B from the same bundle: the hook restores A's network into B's fresh namespace
    let id_b = unique_name("b");
    let b_ctr = runc.start(&bundle, &id_b);
    let ns_b = attach("e2e-b", b_ctr.pid());
    assert_same(&want, &want_fw, &ns_b);
    crhook(
        Some(&host),
        &[
            "diff",
            "--bundle",
            &b,
            "--id",
            &id_b,
            "--root",
            &runc.root(),
        ],
        &[],
    )
    .expect_success();
    assert!(
        host.link_exists("vh-a"),
        "the veth's host end is back in the host namespace"
    );
    reaches_host(&ns_b);
}

/// A bundle in `tmp` whose `org.criu.config` annotation names examples/criu/runc.conf with
/// the action script pointing at this build.
fn criu_bundle(tmp: &TempDir) -> std::path::PathBuf {
    find(
        "criu",
        &["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"],
    );
    let bundle = make_bundle(tmp.path());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/criu/runc.conf");
    let conf = std::fs::read_to_string(&example).unwrap();
    assert!(
        conf.lines()
            .any(|l| l == "action-script /usr/local/bin/crhook"),
        "{conf}"
    );
    let conf = conf.replace("/usr/local/bin/crhook", &crhook_bin().display().to_string());
    let conf_path = tmp.path().join("criu-runc.conf");
    std::fs::write(&conf_path, conf).unwrap();
    edit_config(&bundle, |c| {
        c["annotations"] = json!({"org.criu.config": conf_path});
    });
    bundle
}

#[test]
fn full_checkpoint_restore_with_crhook_as_criu_action_script() {
    require_root();
    let host = TestNs::host();
    setup_host(&host);
    let tmp = TempDir::new("e2e-criu");
    let bundle = criu_bundle(&tmp);

    let mut runc = Runc::new(&host);
    // CRIU passes runc's environment to the action script: send crhook's log to a file
    let log = tmp.join("crhook.log");
    runc.env = vec![
        ("CRHOOK_LOG".into(), log.clone()),
        ("CRHOOK_LOG_FORMAT".into(), "json".into()),
        ("CRHOOK_LOG_LEVEL".into(), "info".into()),
    ];
    let id = unique_name("c");
    let ctr = runc.start(&bundle, &id);
    let ns_a = attach("e2e-c", ctr.pid());
    shape(&ns_a, &host, "vh-c");
    let want = NsState::capture(&ns_a);
    let want_fw = firewall(&ns_a);
    drop(ns_a);

    let criu = Criu {
        runc: &runc,
        images: tmp.path().join("criu-images"),
        work: tmp.path().join("criu-work"),
        crhook_log: log.clone().into(),
    };
    criu.checkpoint(&id);
    let netstate = criu.netstate();
    wait_link_gone(&host, "vh-c");
    criu.restore(&id, &bundle);
    let pid = ctr.pid();
    let ns_r = attach("e2e-r", pid);
    assert_same(&want, &want_fw, &ns_r);
    crhook(
        Some(&host),
        &[
            "diff",
            "--pid",
            &pid.to_string(),
            "--images",
            &netstate.display().to_string(),
        ],
        &[],
    )
    .expect_success();
    reaches_host(&ns_r);

    // crhook acted where it should: capture during the dump, restore at setup-namespaces,
    // and at pre-resume removal of the base chains CRIU's lock made (the image's filter
    // tables had no OUTPUT chain)
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("network namespace captured"), "{text}");
    assert!(text.contains("network namespace restored"), "{text}");
    for family in ["ip", "ip6"] {
        let line = format!(
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table {family} filter"
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    assert!(text.contains(r#""action":"pre-resume""#), "{text}");
    // the process is the one CRIU restored, still sleeping
    assert!(std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .starts_with("sleep"));
}

/// `runc checkpoint --pre-dump`, a change, then `runc checkpoint --parent-path`: crhook's
/// pre-dump images are the parent of the final dump's, which is a child image holding what
/// changed; restoring it rebuilds the namespace as it was at the final dump.
///
/// runc refuses `--pre-dump`, and CRIU refuses `--parent-path` (it asks for `--track-mem`),
/// on a kernel without soft-dirty memory tracking, such as this test VM's. There the test
/// fires CRIU's actions itself, as CRIU fires them (same variables, the `parent` link CRIU
/// makes in the image directory), and restores the images with `crhook restore`.
#[test]
fn pre_dump_then_parent_path_writes_a_child_image_that_restores() {
    require_root();
    let host = TestNs::host();
    setup_host(&host);
    let tmp = TempDir::new("e2e-pre");
    let bundle = criu_bundle(&tmp);
    let mut runc = Runc::new(&host);
    let log = tmp.join("crhook.log");
    runc.env = vec![
        ("CRHOOK_LOG".into(), log.clone()),
        ("CRHOOK_LOG_LEVEL".into(), "info".into()),
    ];
    let id = unique_name("c");
    let ctr = runc.start(&bundle, &id);
    let pid = ctr.pid().to_string();
    let ns_a = attach("e2e-p", ctr.pid());
    shape(&ns_a, &host, "vh-p");
    let criu = |dir: &str| Criu {
        runc: &runc,
        images: tmp.path().join(dir),
        work: tmp.path().join(format!("{dir}-work")),
        crhook_log: log.clone().into(),
    };
    let (pre, last) = (criu("pre"), criu("final"));
    let real = dirty_tracking();
    let action = |what: &str, dir: &Path| {
        crhook(
            Some(&host),
            &[],
            &[
                ("CRTOOLS_SCRIPT_ACTION", what),
                ("CRTOOLS_IMAGE_DIR", &dir.display().to_string()),
                ("CRTOOLS_INIT_PID", &pid),
                ("CRHOOK_LOG", &log),
                ("CRHOOK_LOG_LEVEL", "info"),
            ],
        )
        .expect_success();
    };
    if real {
        pre.checkpoint_with(&id, &["--pre-dump"]);
    } else {
        eprintln!("no soft-dirty tracking: firing CRIU's pre-dump and dump actions as CRIU does");
        std::fs::create_dir_all(&pre.images).unwrap();
        action("pre-dump", &pre.images);
    }
    // the container runs on after a pre-dump; change what it has
    ns_a.ip(&[
        "route",
        "add",
        "10.77.0.0/16",
        "via",
        "192.0.2.1",
        "table",
        "100",
    ]);
    ns_a.sh("iptables -A INPUT -s 10.77.0.0/16 -j ACCEPT");
    let want = NsState::capture(&ns_a);
    let want_fw = firewall(&ns_a);
    drop(ns_a);
    if real {
        last.checkpoint_with(&id, &["--parent-path", "../pre"]);
    } else {
        // a dump fires pre-dump, then network-lock and network-unlock; CRIU links the
        // parent dump's directory as `parent` before any of them
        std::fs::create_dir_all(&last.images).unwrap();
        std::os::unix::fs::symlink("../pre", last.images.join("parent")).unwrap();
        for what in ["pre-dump", "network-lock", "network-unlock"] {
            action(what, &last.images);
        }
    }
    let child = crhook_core::ImageDir::open(&last.netstate()).unwrap();
    assert_eq!(child.inventory().format_major, 2, "not a child image");
    assert_eq!(child.chain().count(), 2);
    assert!(
        child.from_parent().count() > 0,
        "the child took nothing from the pre-dump's images"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("writing a child of the parent dump's images"),
        "{text}"
    );
    if real {
        wait_link_gone(&host, "vh-p");
        last.restore(&id, &bundle);
        assert_same(&want, &want_fw, &attach("e2e-pr", ctr.pid()));
    } else {
        drop(ctr);
        wait_link_gone(&host, "vh-p");
        let fresh = TestNs::new("e2e-pr");
        let images = last.netstate().display().to_string();
        let target = fresh.path_str();
        crhook(
            Some(&host),
            &["restore", "--netns", &target, "--images", &images],
            &[],
        )
        .expect_success();
        assert_same(&want, &want_fw, &fresh);
    }
}

/// Whether CRIU can track dirty memory here, which runc requires for `--pre-dump`.
fn dirty_tracking() -> bool {
    let criu = find(
        "criu",
        &["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"],
    );
    std::process::Command::new(criu)
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What CNI does for a pod, the same way every time: `eth0` (fixed index and MAC) to a veth
/// `peer` on the host bridge, an address and a default route.
fn cni_setup(pod: &TestNs, host: &TestNs, peer: &str) {
    host.ip_batch(&format!(
        "link add {peer} index 40 address 02:00:00:00:e2:41 type veth peer name eth0 index 4 \
         address 02:00:00:00:e2:40 netns {}\n\
         link set {peer} master {BRIDGE} up\n",
        pod.name()
    ));
    pod.ip_batch(
        "link set lo up\n\
         link set eth0 up\n\
         addr add 192.0.2.30/24 dev eth0\n\
         route add default via 192.0.2.1\n",
    );
}

/// The Kubernetes shape: the container joins its pod's namespace by path (runc marks it
/// external to CRIU), the workload adds its own network state, the container is checkpointed
/// with crhook as action script, the pod goes away, and the container is restored into a new
/// pod whose namespace CNI set up the same way: crhook restores the workload's state on top.
#[test]
fn criu_restore_into_a_new_pod_namespace_joined_by_path() {
    require_root();
    find(
        "criu",
        &["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"],
    );
    let host = TestNs::host();
    setup_host(&host);
    let pod1 = TestNs::new("e2e-pod1");
    cni_setup(&pod1, &host, "vh-pod");

    let tmp = TempDir::new("e2e-pod");
    let bundle = make_bundle(tmp.path());
    let conf_path = tmp.path().join("criu-runc.conf");
    std::fs::write(
        &conf_path,
        format!("action-script {}\n", crhook_bin().display()),
    )
    .unwrap();
    let join = |pod: &TestNs| {
        edit_config(&bundle, |c| {
            c["annotations"] = json!({"org.criu.config": conf_path});
            let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "network");
            ns.push(json!({"type": "network", "path": pod.path()}));
        })
    };
    join(&pod1);

    let mut runc = Runc::new(&host);
    let log = tmp.join("crhook.log");
    runc.env = vec![
        ("CRHOOK_LOG".into(), log.clone()),
        ("CRHOOK_LOG_LEVEL".into(), "info".into()),
    ];
    let id = unique_name("pod");
    let ctr = runc.start(&bundle, &id);
    // the workload's own network state
    pod1.ip_batch(
        "addr add 198.51.100.9/32 dev lo\n\
         tuntap add dev tun0 mode tun\n\
         addr add 10.77.0.1/30 dev tun0\n\
         route add 203.0.113.0/24 via 192.0.2.1 table 100\n\
         rule add from 10.77.0.0/30 lookup 100 pref 1000\n",
    );
    pod1.set_sysctl(&["ipv4", "ip_forward"], "1");
    pod1.sh("iptables -t nat -A POSTROUTING -s 10.77.0.0/30 -o eth0 -j MASQUERADE");
    let want = NsState::capture(&pod1);
    let want_fw = firewall(&pod1);

    let criu = Criu {
        runc: &runc,
        images: tmp.path().join("criu-images"),
        work: tmp.path().join("criu-work"),
        crhook_log: log.clone().into(),
    };
    criu.checkpoint(&id);
    let netstate = criu.netstate();

    // the pod goes away; a new one gets the same CNI setup
    pod1.delete();
    wait_link_gone(&host, "vh-pod");
    let pod2 = TestNs::new("e2e-pod2");
    cni_setup(&pod2, &host, "vh-pod");
    join(&pod2);
    criu.restore(&id, &bundle);
    let pid = ctr.pid();
    let in_pod2 = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(
        in_pod2,
        std::fs::metadata(pod2.path()).unwrap().ino(),
        "restored into the new pod"
    );

    assert_same(&want, &want_fw, &pod2);
    // the pod had no filter tables: CRIU's lock made them, crhook removed them at pre-resume
    let text = std::fs::read_to_string(&log).unwrap();
    for family in ["ip", "ip6"] {
        let line = format!("removed empty iptables-nft table {family} filter");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    crhook(
        Some(&host),
        &[
            "diff",
            "--netns",
            &pod2.path_str(),
            "--images",
            &netstate.display().to_string(),
        ],
        &[],
    )
    .expect_success();
    reaches_host(&pod2);
}
