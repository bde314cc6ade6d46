//! End to end with real Podman (netavark, runc, CRIU): crhook restores a container's network
//! onto the one Podman already built for it (issue 11).
//!
//! Every test runs a container from a busybox rootfs on Podman's default network, and adds,
//! inside the container's namespace, the app state of [`crhook_tests::appstate`]: an address
//! on `eth0`, a tun device, a route in table 100, a rule from the pod address, a permanent
//! neighbour, two sysctls, iptables rules naming the pod address and one that does not.
//!
//! 1. Without crhook (the control): `podman container checkpoint` / `restore` bring the
//!    container back with its address and MAC, and none of the app state.
//! 2. crhook as CRIU's action script (a test-owned `runc.conf` named by the container's
//!    `org.criu.config` annotation): after `podman container restore`, eth0/IP/MAC are
//!    Podman's and every piece of app state is back; the namespace and firewall equal the
//!    checkpointed ones.
//! 3. `crhook checkpoint --pid` of a running container, then a *new* container (new address)
//!    with crhook as its createRuntime hook (hooks.d file in a test-owned `--hooks-dir`,
//!    selected by the `io.crhook.images` annotation): it starts with netavark's `eth0`, MAC
//!    and new address, and the app state with the old pod address replaced by the new one.
//!
//! Podman's bridge (`podman0`) and NAT rules live in the machine's namespace: that is where
//! Podman puts them; the tests only ping their own containers through it. See
//! `tests/src/podman.rs` for the Podman, runc and CRIU behaviour this relies on.
#![allow(clippy::unwrap_used)]

#[path = "runc_e2e/firewall.rs"]
mod firewall;

use std::path::Path;

use crhook_tests::appstate::{
    assert_ip_gone, assert_rule_and_iptables_remapped, assert_runtime_eth0, iptables_rules,
    replace_ip, AppState,
};
use crhook_tests::podman::{
    crhook_hooks_dir, criu_conf, ping_from_host, PodmanContainer, PodmanOpts,
};
use crhook_tests::{compare_states, crhook, require_root, NsState, TempDir, TestNs};

use firewall::firewall;

/// Podman's default network is 10.88.0.0/16.
const POD_PREFIX: u64 = 16;

/// An unused address of Podman's default network for the app's permanent neighbour.
fn neighbour_for(gateway: &str) -> String {
    let (net, _) = gateway.rsplit_once('.').unwrap();
    format!("{net}.250")
}

/// Runs a container, checks its `eth0` is what Podman says, adds the app state and checks it
/// is there (and was not before).
fn shaped(tag: &str, opts: &PodmanOpts) -> (PodmanContainer, TestNs, AppState) {
    let c = PodmanContainer::run(tag, opts);
    let ns = c.attach(tag);
    let (ip, mac, gw) = (c.ip(), c.mac(), c.gateway());
    assert_runtime_eth0(&ns, (&ip, POD_PREFIX), &mac, &gw, false, "fresh container");
    let app = AppState {
        pod_ip: ip.clone(),
        gateway: gw,
        neighbour: neighbour_for(&c.gateway()),
    };
    app.assert_absent(&ns, &ip);
    app.apply(&ns);
    app.assert_present(&ns, &ip, "after adding it");
    (c, ns, app)
}

/// The state of a namespace without the index of `eth0`'s peer (the host end Podman makes
/// anew on a restore).
fn without_peer_index(mut s: NsState) -> NsState {
    if let Some(l) = s.links.get_mut("eth0").and_then(|l| l.as_object_mut()) {
        l.remove("link_index");
    }
    s
}

#[test]
fn podman_restore_without_crhook_loses_the_app_state() {
    require_root();
    let (c, ns, app) = shaped("pm-ctl", &PodmanOpts::default());
    let (ip, mac) = (c.ip(), c.mac());
    ping_from_host(&ip);
    drop(ns);

    let out = c.checkpoint(&[]);
    c.expect_ok("podman container checkpoint", &out, "dump.log");
    assert!(
        !c.checkpoint_netstate().exists(),
        "no CRIU configuration names crhook here, yet {} exists",
        c.checkpoint_netstate().display()
    );
    let out = c.restore(&[]);
    c.expect_ok("podman container restore", &out, "restore.log");

    assert_eq!(
        (c.ip(), c.mac()),
        (ip.clone(), mac.clone()),
        "Podman restores IP and MAC"
    );
    let ns = c.attach("pm-ctl-r");
    assert_runtime_eth0(
        &ns,
        (&ip, POD_PREFIX),
        &mac,
        &c.gateway(),
        false,
        "after restore",
    );
    // every piece of app state is gone: what crhook is for
    app.assert_absent(&ns, &ip);
    ping_from_host(&ip);
}

#[test]
fn podman_checkpoint_restore_with_crhook_as_criu_action_script() {
    require_root();
    let tmp = TempDir::new("pm-criu");
    let conf = criu_conf(&tmp);
    let opts = PodmanOpts {
        annotations: vec![("org.criu.config".into(), conf.display().to_string())],
        ..PodmanOpts::default()
    };
    let (c, ns, app) = shaped("pm-criu", &opts);
    let (ip, mac, gw) = (c.ip(), c.mac(), c.gateway());
    let want = without_peer_index(NsState::capture(&ns));
    let want_fw = firewall(&ns);
    drop(ns);

    let out = c.checkpoint(&[]);
    c.expect_ok("podman container checkpoint", &out, "dump.log");
    // CRIU read the annotation's configuration: crhook wrote its images into the checkpoint
    let netstate = c.checkpoint_netstate();
    if let Err(e) = crhook_core::ImageDir::open(&netstate) {
        panic!(
            "crhook's images at {}: {e}\ndump.log (tail):\n{}",
            netstate.display(),
            c.criu_log_tail("dump.log", 40)
        );
    }

    // --keep: the images stay for the diff below
    let out = c.restore(&["--keep"]);
    c.expect_ok("podman container restore", &out, "restore.log");
    assert_eq!(out.status.code(), Some(0));

    // eth0, IP and MAC are what Podman restored
    assert_eq!(
        (c.ip(), c.mac()),
        (ip.clone(), mac.clone()),
        "Podman restores IP and MAC"
    );
    let ns = c.attach("pm-criu-r");
    assert_runtime_eth0(&ns, (&ip, POD_PREFIX), &mac, &gw, true, "after restore");
    app.assert_present(&ns, &ip, "after podman container restore");
    ping_from_host(&ip);

    let pid = c.pid().to_string();
    crhook(
        None,
        &[
            "diff",
            "--pid",
            &pid,
            "--images",
            &netstate.display().to_string(),
            "--adopt-runtime",
        ],
        &[],
    )
    .expect_success();
    // with the same address and MAC nothing at all differs, firewall included (no residue
    // of CRIU's lock)
    let got = without_peer_index(NsState::capture(&ns));
    let diffs = compare_states(&want, &got);
    assert!(
        diffs.is_empty(),
        "restored namespace differs from the checkpointed one:\n{}",
        diffs.join("\n")
    );
    assert_eq!(firewall(&ns), want_fw, "firewall differs after restore");
    assert!(std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .starts_with("sleep"));
}

#[test]
fn podman_new_container_gets_the_app_state_through_the_hook_with_its_new_address() {
    require_root();
    // an annotation may name images only under the configured roots (default /var/lib/crhook)
    let tmp = TempDir::under(Path::new("/var/lib/crhook"), "pm-hook");
    let images = tmp.join("images");
    let (a, ns_a, app) = shaped("pm-hook-a", &PodmanOpts::default());
    let old_ip = a.ip();
    let a_pid = a.pid().to_string();
    crhook(
        None,
        &["checkpoint", "--pid", &a_pid, "--images", &images],
        &[],
    )
    .expect_success();
    let want_fw = firewall(&ns_a);
    drop(ns_a);
    a.remove();

    let opts = PodmanOpts {
        annotations: vec![("io.crhook.images".into(), images.clone())],
        hooks_dir: Some(crhook_hooks_dir(&tmp)),
        ..PodmanOpts::default()
    };
    let (b, out) = PodmanContainer::try_run("pm-hook-b", &opts);
    assert!(
        out.status.success(),
        "podman run with crhook's hook: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (new_ip, mac, gw) = (b.ip(), b.mac(), b.gateway());
    assert_ne!(
        new_ip, old_ip,
        "netavark gave the new container a new address"
    );
    let ns = b.attach("pm-hook-b");

    // eth0 is netavark's: its MAC, the new address, its default route
    assert_runtime_eth0(&ns, (&new_ip, POD_PREFIX), &mac, &gw, true, "new container");
    assert_ip_gone(&ns, &old_ip);
    app.assert_present(&ns, &new_ip, "new container");
    assert_rule_and_iptables_remapped(&ns, &new_ip);
    assert_eq!(
        iptables_rules(&ns).values().flatten().count(),
        3,
        "only the app's three iptables rules"
    );
    // the whole firewall is the checkpointed one with the address remapped
    assert_eq!(
        firewall(&ns),
        replace_ip(&want_fw, &old_ip, &new_ip),
        "firewall of the new container"
    );
    ping_from_host(&new_ip);

    let pid = b.pid().to_string();
    crhook(
        None,
        &[
            "diff",
            "--pid",
            &pid,
            "--images",
            &images,
            "--adopt-runtime",
        ],
        &[],
    )
    .expect_success();
    assert!(Path::new(&images).is_dir());
}
