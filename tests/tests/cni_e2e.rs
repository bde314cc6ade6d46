//! End to end the way CRI-O and Kubernetes shape a pod's network, without a runtime: the
//! reference CNI plugins (`bridge` + `host-local`, `loopback`) make a sandbox, the app adds
//! its state, `crhook checkpoint --netns` saves it, the sandbox goes (CNI DEL, namespace
//! deleted), and a new sandbox from the same plugins — a new pod address — receives the
//! images with `crhook restore` (issue 11).
//!
//! - Without `--adopt`, the restore must refuse (exit 1, one line naming `--adopt eth0`) and
//!   leave the new sandbox exactly as the plugins made it.
//! - `--adopt eth0` keeps the plugins' `eth0` (MAC, new address, default route) and remaps
//!   the old pod address to the new one wherever the app state named it.
//! - `--adopt-runtime --remap OLD=NEW` does the same with the remap spelled out.
//!
//! Each test owns its host namespace (where the plugins make the bridge), bridge, subnet
//! 10.203.<n>.0/24 and IPAM data directory; crhook runs in that host namespace. See
//! `tests/src/cni.rs` for the plugin behaviour this relies on.
#![allow(clippy::unwrap_used)]

#[path = "runc_e2e/firewall.rs"]
mod firewall;

use crhook_tests::appstate::{
    assert_ip_gone, assert_rule_and_iptables_remapped, assert_runtime_eth0, iptables_rules,
    iptables_text, replace_ip, AppState,
};
use crhook_tests::cni::{CniNetwork, CniSandbox};
use crhook_tests::podman::busybox_bin;
use crhook_tests::{compare_states, crhook, require_root, NsState, Run, TempDir, TestNs};

use firewall::firewall;

/// Pings `ip` from the network's host namespace (busybox's ping: the machine may have none).
fn ping_from(host: &TestNs, ip: &str) {
    let bb = busybox_bin().display().to_string();
    let out = host.exec(&[&bb, "ping", "-c", "1", "-W", "2", ip]);
    crhook_tests::ns::check_output(&format!("ping {ip} from {}", host.name()), &out);
}

/// A checkpointed and deleted sandbox A of `net`.
struct SavedPod {
    net: CniNetwork,
    _dir: TempDir,
    images: String,
    old_ip: String,
    app: AppState,
    /// firewall of A as the e2e tests compare it
    fw: String,
}

/// Sandbox A from the plugins, with the app state, checkpointed from the host namespace,
/// then CNI DEL and deleted.
fn checkpoint_a(octet: u8, tag: &str) -> SavedPod {
    let net = CniNetwork::new(octet);
    let dir = TempDir::new(tag);
    let images = dir.join("images");
    let (old_ip, app, fw) = {
        let a = net.sandbox(&format!("{tag}-a"));
        let ns = a.ns();
        assert_eq!(a.gateway(), net.addr(1), "the bridge is the gateway");
        assert_runtime_eth0(
            ns,
            (a.ip(), u64::from(a.prefix_len())),
            a.mac(),
            a.gateway(),
            false,
            "sandbox A",
        );
        let lo = ns.link_json("lo");
        assert!(
            lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "the loopback plugin brought lo up: {lo}"
        );
        let app = AppState {
            pod_ip: a.ip().to_string(),
            gateway: a.gateway().to_string(),
            neighbour: net.addr(250),
        };
        app.assert_absent(ns, a.ip());
        app.apply(ns);
        app.assert_present(ns, a.ip(), "sandbox A");
        ping_from(net.host(), a.ip());
        crhook(
            Some(net.host()),
            &["checkpoint", "--netns", &a.path_str(), "--images", &images],
            &[],
        )
        .expect_success();
        let fw = firewall(ns);
        let ip = a.ip().to_string();
        a.delete();
        (ip, app, fw)
    };
    SavedPod {
        net,
        _dir: dir,
        images,
        old_ip,
        app,
        fw,
    }
}

impl SavedPod {
    /// Sandbox B: the plugins' eth0 with a new address.
    fn sandbox_b(&self, tag: &str) -> CniSandbox<'_> {
        let b = self.net.sandbox(tag);
        assert_ne!(b.ip(), self.old_ip, "host-local gave B a new address");
        assert_runtime_eth0(
            b.ns(),
            (b.ip(), u64::from(b.prefix_len())),
            b.mac(),
            b.gateway(),
            false,
            "sandbox B",
        );
        b
    }

    fn crhook(&self, args: &[&str]) -> Run {
        crhook(Some(self.net.host()), args, &[])
    }

    /// Everything a restore onto B must give: the plugins' eth0 with the new address, the
    /// old address nowhere, the app state with the new address, the firewall remapped, and
    /// the pod reachable.
    fn assert_adopted(&self, b: &CniSandbox<'_>) {
        let (ns, new_ip) = (b.ns(), b.ip());
        assert_runtime_eth0(
            ns,
            (new_ip, u64::from(b.prefix_len())),
            b.mac(),
            b.gateway(),
            true,
            "B after restore",
        );
        assert_ip_gone(ns, &self.old_ip);
        self.app.assert_present(ns, new_ip, "B after restore");
        assert_rule_and_iptables_remapped(ns, new_ip);
        assert_eq!(iptables_rules(ns).values().flatten().count(), 3);
        assert_eq!(
            firewall(ns),
            replace_ip(&self.fw, &self.old_ip, new_ip),
            "firewall of B"
        );
        ping_from(self.net.host(), new_ip);
    }
}

/// What must not change in a namespace a restore refused or only planned.
fn snapshot(ns: &TestNs) -> (NsState, String) {
    (NsState::capture(ns), iptables_text(ns))
}

fn assert_unchanged(before: &(NsState, String), ns: &TestNs, what: &str) {
    let (state, fw) = snapshot(ns);
    let diffs = compare_states(&before.0, &state);
    assert!(
        diffs.is_empty(),
        "{what} changed {}:\n{}",
        ns.name(),
        diffs.join("\n")
    );
    assert_eq!(fw, before.1, "{what} changed the firewall of {}", ns.name());
}

#[test]
fn restore_without_adopt_refuses_naming_adopt_and_leaves_the_sandbox_as_cni_made_it() {
    require_root();
    let s = checkpoint_a(1, "cni-noadopt");
    let b = s.sandbox_b("cni-noadopt-b");
    let before = snapshot(b.ns());

    let run = s.crhook(&["restore", "--netns", &b.path_str(), "--images", &s.images]);
    run.expect_code(1);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{}", run.stderr);
    assert!(
        lines[0].contains("--adopt eth0"),
        "the error should say `--adopt eth0`: {}",
        lines[0]
    );
    assert_unchanged(&before, b.ns(), "a refused restore");
}

#[test]
fn restore_adopting_eth0_remaps_the_old_pod_address_to_the_new_one() {
    require_root();
    let s = checkpoint_a(2, "cni-adopt");
    let b = s.sandbox_b("cni-adopt-b");
    let path = b.path_str();

    let before = snapshot(b.ns());
    let args = [
        "restore", "--netns", &path, "--images", &s.images, "--adopt", "eth0",
    ];
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    s.crhook(&dry).expect_success();
    assert_unchanged(&before, b.ns(), "--dry-run");

    s.crhook(&args).expect_success();
    s.assert_adopted(&b);
    s.crhook(&[
        "diff", "--netns", &path, "--images", &s.images, "--adopt", "eth0",
    ])
    .expect_success();
}

#[test]
fn restore_adopting_the_runtime_links_with_an_explicit_remap() {
    require_root();
    let s = checkpoint_a(3, "cni-remap");
    let b = s.sandbox_b("cni-remap-b");
    let path = b.path_str();
    let remap = format!("{}={}", s.old_ip, b.ip());

    s.crhook(&[
        "restore",
        "--netns",
        &path,
        "--images",
        &s.images,
        "--adopt-runtime",
        "--remap",
        &remap,
    ])
    .expect_success();
    s.assert_adopted(&b);
    s.crhook(&[
        "diff",
        "--netns",
        &path,
        "--images",
        &s.images,
        "--adopt-runtime",
        "--remap",
        &remap,
    ])
    .expect_success();
    s.crhook(&[
        "diff", "--netns", &path, "--images", &s.images, "--adopt", "eth0",
    ])
    .expect_success();
}
