//! Traffic control through checkpoint → delete → restore: the Kubernetes bandwidth plugin's
//! shape (tbf on a veth, an ingress qdisc whose u32 filter redirects to an ifb with mirred, tbf
//! on the ifb), an htb tree with classes, a u32 filter into a class and a leaf qdisc, clsact
//! with ingress and egress filters (one in chain 5) and an empty chain 7, filters of shared
//! blocks; compared as `tc -d qdisc/class/filter show` prints them per device, counters
//! removed. `diff` names a changed qdisc parameter and
//! an added filter; a rolled-back restore removes the tc it added; an eBPF filter is refused by
//! name without `--allow-lost bpf`. Device features (`ethtool -K`) and channels (`ethtool -L`)
//! come back with the links.
//! Needs root, a built `crhook`, iproute2's `tc` and `ethtool`.
//!
//! This kernel has tbf, htb, pfifo, ingress, clsact, u32, bpf and mirred; the kinds it lacks
//! are covered by golden netlink-message tests in crhook-netstate (`tc::tests`).

use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use crhook_tests::{crhook, require_root, wait_until, TempDir, TestNs};

fn tc_bin() -> PathBuf {
    ["/usr/sbin/tc", "/sbin/tc", "/usr/bin/tc", "/bin/tc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("tc not found (iproute2, see .ci/install-deps)"))
}

fn ethtool_bin() -> PathBuf {
    ["/usr/sbin/ethtool", "/sbin/ethtool", "/usr/bin/ethtool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("ethtool not found (see .ci/install-deps)"))
}

/// `ethtool -k` of every device in `devs`, and `ethtool -l` of those with channels.
fn features(ns: &TestNs, devs: &[&str]) -> String {
    let e = ethtool_bin();
    devs.iter()
        .map(|d| {
            let l = ns.exec(&[
                "/bin/sh",
                "-c",
                &format!("{} -l {d} 2>/dev/null", e.display()),
            ]);
            format!(
                "{}{}",
                ns.sh(&format!("{} -k {d}", e.display())),
                String::from_utf8_lossy(&l.stdout)
            )
        })
        .collect()
}

fn tc(ns: &TestNs, script: &str) {
    ns.sh(&format!(
        "set -e\n{}",
        script.replace("tc ", &format!("{} ", tc_bin().display()))
    ));
}

/// `tc -d ARGS` in `ns`, empty where tc refuses (no such parent).
fn tc_show(ns: &TestNs, args: &str) -> String {
    let out = ns.exec(&[
        "/bin/sh",
        "-c",
        &format!("{} -d {args} 2>/dev/null || true", tc_bin().display()),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Values that change as traffic flows or time passes, not configuration. `used_hw_stats`
/// appears once anything dumped the action table (the kernel then asks drivers for hardware
/// counters and remembers that it did): crhook's own checkpoint shows it.
fn without_counters(s: &str) -> String {
    let volatile = [
        "ref",
        "bind",
        "refcnt",
        "direct_packets_stat",
        "load_time",
        "used_hw_stats",
    ];
    s.lines()
        .map(|l| {
            let mut out = Vec::new();
            let mut skip = false;
            for w in l.split_whitespace() {
                if skip {
                    skip = false;
                    continue;
                }
                if volatile.contains(&w) {
                    skip = true;
                    continue;
                }
                out.push(w);
            }
            out.join(" ")
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every device's qdiscs, classes and filters (per qdisc, class and clsact direction).
fn tc_state(ns: &TestNs, devs: &[&str]) -> String {
    let mut s = String::new();
    for d in devs {
        let qdiscs = tc_show(ns, &format!("qdisc show dev {d}"));
        let classes = tc_show(ns, &format!("class show dev {d}"));
        s.push_str(&format!("== {d}\n{qdiscs}{classes}"));
        let mut parents = vec!["ingress".to_string(), "egress".to_string()];
        for l in qdiscs.lines().chain(classes.lines()) {
            if let Some(h) = l.split_whitespace().nth(2) {
                parents.push(format!("parent {h}"));
            }
        }
        if *d == devs[0] {
            s.push_str(&format!(
                "-- actions\n{}",
                tc_show(ns, "actions list action mirred")
            ));
        }
        for p in parents {
            let f = tc_show(ns, &format!("filter show dev {d} {p}"));
            if !f.is_empty() {
                s.push_str(&format!("-- filters {p}\n{f}"));
            }
            // listed in the order they came to be, which a filter's first use decides; the
            // set is the state
            let mut c: Vec<String> = tc_show(ns, &format!("chain show dev {d} {p}"))
                .lines()
                .map(String::from)
                .collect();
            c.sort();
            if !c.is_empty() {
                s.push_str(&format!("-- chains {p}\n{}\n", c.join("\n")));
            }
        }
    }
    without_counters(&s)
}

fn run_crhook(args: &[&str]) -> crhook_tests::Run {
    crhook(None, args, &[])
}

fn checkpoint(ns: &TestNs, images: &str) {
    run_crhook(&["checkpoint", "--netns", &ns.path_str(), "--images", images]).expect_success();
}

/// Checkpoints `ns`, deletes it, restores into a fresh namespace (verified) and checks that
/// the tc state before held every one of `wants` and is what the fresh namespace holds;
/// returns the fresh namespace and its state.
fn round_trip(
    ns: TestNs,
    tag: &str,
    devs: &[&str],
    images: &str,
    wants: &[&str],
) -> (TestNs, String) {
    let before = tc_state(&ns, devs);
    for want in wants {
        assert!(before.contains(want), "{want} missing before:\n{before}");
    }
    checkpoint(&ns, images);
    ns.delete();
    let fresh = TestNs::new(tag);
    run_crhook(&[
        "restore",
        "--netns",
        &fresh.path_str(),
        "--images",
        images,
        "--verify",
    ])
    .expect_success();
    let after = tc_state(&fresh, devs);
    assert_eq!(before, after, "tc state differs after restore");
    (fresh, after)
}

fn bandwidth_plugin_shape(ns: &TestNs) {
    ns.ip_batch(
        "link add eth0 type veth peer name host0\n\
         link add ifb0 type ifb\n",
    );
    tc(
        ns,
        "tc qdisc add dev eth0 root tbf rate 10mbit burst 4kb latency 400ms\n\
         tc qdisc add dev eth0 handle ffff: ingress\n\
         tc filter add dev eth0 parent ffff: protocol all u32 match u32 0 0 \
            action mirred egress redirect dev ifb0\n\
         tc qdisc add dev ifb0 root tbf rate 5mbit burst 8kb latency 100ms\n",
    );
    ns.ip_batch("link set eth0 up\nlink set host0 up\nlink set ifb0 up\n");
    // offloads off on the veth, as VXLAN setups and some CNI plugins do; GRO lists on
    ns.sh(&format!(
        "{e} -K eth0 tx off gso off >/dev/null 2>&1; {e} -K host0 rx-gro-list on; \
         {e} -L eth0 rx 1 tx 1",
        e = ethtool_bin().display()
    ));
}

#[test]
fn bandwidth_plugin_shape_survives_checkpoint_delete_restore() {
    require_root();
    let tmp = TempDir::new("tcbw");
    let ns = TestNs::new("tcbw");
    bandwidth_plugin_shape(&ns);
    let devs = ["eth0", "host0", "ifb0"];
    let features_before = features(&ns, &devs);
    assert!(
        features_before.contains("tx-checksum-ip-generic: off")
            && features_before.contains("rx-gro-list: on")
            && features_before.contains("Current hardware settings:\nRX:\t\t1"),
        "{features_before}"
    );
    // (not the kernel's automatic handles: they count up machine-wide, 8001: after a boot)
    let wants = [
        "mirred (Egress Redirect to device ifb0)",
        "rate 5Mbit",
        "rate 10Mbit",
    ];
    let (fresh, after) = round_trip(ns, "tcbw2", &devs, &tmp.join("img"), &wants);
    assert_eq!(
        features_before,
        features(&fresh, &devs),
        "ethtool -k differs"
    );
    // the redirect points at the ifb of the new namespace, by name
    assert!(after.contains("to device ifb0"), "{after}");
    fresh.delete();
}

#[test]
fn htb_tree_with_classes_filter_and_leaf_qdisc_survives() {
    require_root();
    let tmp = TempDir::new("tchtb");
    let ns = TestNs::new("tchtb");
    ns.ip_batch("link add v0 type veth peer name v1\n");
    tc(
        &ns,
        "tc qdisc add dev v0 root handle 1: htb default 20\n\
         tc class add dev v0 parent 1: classid 1:1 htb rate 100mbit\n\
         tc class add dev v0 parent 1:1 classid 1:10 htb rate 30mbit ceil 100mbit prio 1\n\
         tc class add dev v0 parent 1:1 classid 1:20 htb rate 10mbit\n\
         tc filter add dev v0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.0/8 flowid 1:10\n\
         tc filter add dev v0 parent 1: protocol ip prio 2 u32 match ip dport 443 0xffff flowid 1:20\n\
         tc qdisc add dev v0 parent 1:10 handle 10: pfifo limit 50\n\
         tc qdisc add dev v0 parent 1:20 handle 20: bfifo limit 30000\n",
    );
    ns.ip_batch("link set v0 up\nlink set v1 up\n");
    let wants = [
        "class htb 1:10",
        "leaf 10:",
        "flowid 1:10",
        "pfifo 10:",
        "bfifo 20:",
    ];
    let (fresh, _) = round_trip(ns, "tchtb2", &["v0", "v1"], &tmp.join("img"), &wants);
    fresh.delete();
}

#[test]
fn clsact_with_ingress_and_egress_filters_survives() {
    require_root();
    let tmp = TempDir::new("tccls");
    let ns = TestNs::new("tccls");
    ns.ip_batch("link add v2 type veth peer name v3\nlink add ifb1 type ifb\n");
    tc(
        &ns,
        "tc qdisc add dev v2 clsact\n\
         tc filter add dev v2 ingress protocol ip prio 3 u32 match ip src 192.168.0.0/16 \
            action mirred egress mirror dev v3\n\
         tc filter add dev v2 egress protocol all prio 7 u32 match u32 0 0 \
            action mirred ingress redirect dev ifb1\n\
         tc filter add dev v2 egress protocol ip prio 9 chain 5 u32 match ip tos 0x10 0xff \
            action mirred egress redirect dev ifb1\n\
         tc chain add dev v2 egress chain 7\n\
         tc actions add action mirred egress redirect dev ifb1 index 50\n\
         tc actions add action mirred egress mirror dev v3 index 51\n\
         tc filter add dev v2 ingress protocol ip prio 11 u32 match ip dst 10.1.0.0/16 \
            action mirred index 50\n",
    );
    ns.ip_batch("link set v2 up\nlink set v3 up\nlink set ifb1 up\n");
    let devs = ["v2", "v3", "ifb1"];
    let wants = [
        "clsact",
        "pref 3",
        "pref 7",
        "pref 11",
        "chain 5",
        "chain parent ffff: chain 7",
        "Egress Mirror to device v3",
        "index 50",
        "index 51",
    ];
    let (fresh, _) = round_trip(ns, "tccls2", &devs, &tmp.join("img"), &wants);
    fresh.delete();
}

#[test]
fn diff_names_a_changed_qdisc_parameter_and_an_added_filter() {
    require_root();
    let tmp = TempDir::new("tcdiff");
    let images = tmp.join("img");
    let ns = TestNs::new("tcdiff");
    bandwidth_plugin_shape(&ns);
    checkpoint(&ns, &images);
    let target = ns.path_str();
    let args = [
        "diff",
        "--netns",
        target.as_str(),
        "--images",
        images.as_str(),
    ];
    run_crhook(&args).expect_success();
    tc(
        &ns,
        "tc qdisc change dev eth0 root tbf rate 20mbit burst 4kb latency 400ms\n\
         tc filter add dev eth0 parent ffff: protocol ip prio 5 u32 match ip src 10.9.0.0/16 \
            action mirred egress redirect dev ifb0\n",
    );
    let run = run_crhook(&args);
    run.expect_code(1);
    let out = &run.stdout;
    assert!(
        out.contains("qdisc eth0 root tbf: rate 10Mbit -> 20Mbit"),
        "{out}"
    );
    assert!(
        out.contains("filter eth0 parent ffff: chain 0 pref 5 protocol ip"),
        "{out}"
    );
    assert!(
        out.contains("only live") && out.contains("match 0a090000/ffff0000 at 12"),
        "{out}"
    );
    assert!(
        out.contains("action mirred egress redirect dev ifb0"),
        "{out}"
    );
    // a feature turned back on is a change of the link
    ns.sh(&format!("{} -K eth0 gso on", ethtool_bin().display()));
    let run = run_crhook(&args);
    assert!(
        run.stdout
            .contains("link eth0: feature tx-generic-segmentation off -> on"),
        "{}",
        run.stdout
    );
    ns.delete();
}

#[test]
fn a_failed_restore_removes_the_tc_it_added() {
    require_root();
    let tmp = TempDir::new("tcrb");
    let images = tmp.join("img");
    let ns = TestNs::new("tcrb");
    bandwidth_plugin_shape(&ns);
    checkpoint(&ns, &images);
    // the same links, no tc: restore keeps the links and adds only tc, then fails
    tc(
        &ns,
        "tc qdisc del dev eth0 root\ntc qdisc del dev eth0 ingress\ntc qdisc del dev ifb0 root\n",
    );
    let devs = ["eth0", "host0", "ifb0"];
    // a deleted filter's action goes after an RCU grace period
    let actions_gone = || {
        wait_until(
            "the deleted filter's action to go",
            Duration::from_secs(5),
            || !tc_show(&ns, "actions list action mirred").contains("index"),
        )
    };
    actions_gone();
    let bare = tc_state(&ns, &devs);
    let target = ns.path_str();
    let run = crhook(
        None,
        &["restore", "--netns", &target, "--images", &images],
        &[("CRHOOK_FAIL_AFTER", "1")],
    );
    run.expect_code(1);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    actions_gone();
    assert_eq!(tc_state(&ns, &devs), bare, "rollback left tc behind");
    // and without the failure it all comes back
    run_crhook(&[
        "restore", "--netns", &target, "--images", &images, "--verify",
    ])
    .expect_success();
    assert!(tc_state(&ns, &devs).contains("to device ifb0"));
    ns.delete();
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_PROG_TYPE_XDP: u32 = 6;

/// Loads `r0 = 2; exit` (TC_ACT_SHOT for tc, XDP_PASS for XDP) as a program of `prog_type`
/// and pins it at `pin` (in a bpffs).
fn load_pinned_program(pin: &Path, prog_type: u32) {
    // two instructions: mov64 r0, 2 (opcode 0xb7, imm in the upper 32 bits); exit (0x95)
    let insns: [u64; 2] = [0xb7 | (2 << 32), 0x95];
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&prog_type.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    // prog_name at offset 48 of the PROG_LOAD attributes
    attr[48..59].copy_from_slice(b"crhook_pass");
    // SAFETY: bpf(2) reads 128 bytes of `attr` and, through its pointers, `insns` and
    // `license`, all alive for the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_mut_ptr(), 128u32) };
    assert!(
        fd >= 0,
        "load a bpf program: {}",
        std::io::Error::last_os_error()
    );
    let path = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes()).expect("pin path");
    let mut attr = [0u8; 128];
    attr[0..8].copy_from_slice(&(path.as_ptr() as u64).to_ne_bytes());
    attr[8..12].copy_from_slice(&(fd as u32).to_ne_bytes());
    // SAFETY: as above; `path` is a NUL-terminated string alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_PIN, attr.as_mut_ptr(), 128u32) };
    assert_eq!(
        r,
        0,
        "pin at {}: {}",
        pin.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: `fd` is the descriptor bpf(2) returned above, owned by nobody else.
    unsafe { libc::close(fd as i32) };
}

/// A bpffs mounted on a directory of its own, unmounted on drop.
struct BpfFs(PathBuf);

impl BpfFs {
    fn mount(dir: &Path) -> BpfFs {
        std::fs::create_dir_all(dir).expect("bpffs dir");
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(dir)
            .status()
            .expect("spawn mount");
        assert!(st.success(), "mount -t bpf on {}", dir.display());
        BpfFs(dir.to_path_buf())
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_ebpf_filter_is_refused_by_name_without_allow_lost() {
    require_root();
    let tmp = TempDir::new("tcbpf");
    let fs = BpfFs::mount(&tmp.path().join("bpffs"));
    let pin = fs.0.join("pass");
    load_pinned_program(&pin, BPF_PROG_TYPE_SCHED_CLS);
    let xdp = fs.0.join("xdp");
    load_pinned_program(&xdp, BPF_PROG_TYPE_XDP);
    let ns = TestNs::new("tcbpf");
    ns.ip_batch("link add v0 type veth peer name v1\n");
    tc(
        &ns,
        &format!(
            "tc qdisc add dev v0 clsact\n\
             tc filter add dev v0 ingress bpf object-pinned {} da\n\
             tc qdisc add dev v1 root tbf rate 1mbit burst 4kb latency 50ms\n",
            pin.display()
        ),
    );
    ns.ip(&[
        "link",
        "set",
        "dev",
        "v1",
        "xdpgeneric",
        "pinned",
        &xdp.display().to_string(),
    ]);
    let images = tmp.join("img");
    let run = run_crhook(&["checkpoint", "--netns", &ns.path_str(), "--images", &images]);
    run.expect_success();
    assert!(
        run.stderr.contains("runs eBPF prog") && run.stderr.contains("not carried"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("xdp v1 runs eBPF prog") && run.stderr.contains("name crhook_pass"),
        "{}",
        run.stderr
    );
    ns.delete();
    let fresh = TestNs::new("tcbpf2");
    let target = fresh.path_str();
    let run = run_crhook(&["restore", "--netns", &target, "--images", &images]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("filter v0 ingress")
            && run.stderr.contains("bpf runs eBPF prog")
            && run.stderr.contains("xdp v1 runs eBPF prog")
            && run.stderr.contains("--allow-lost bpf"),
        "{}",
        run.stderr
    );
    assert!(
        !fresh.link_exists("v0"),
        "a refused restore changed the target"
    );
    run_crhook(&[
        "restore",
        "--netns",
        &target,
        "--images",
        &images,
        "--allow-lost",
        "bpf",
        "--verify",
    ])
    .expect_success();
    let state = tc_state(&fresh, &["v0", "v1"]);
    assert!(
        state.contains("clsact") && state.contains("rate 1Mbit"),
        "{state}"
    );
    assert!(!state.contains("bpf"), "{state}");
    assert!(
        !fresh.ip(&["link", "show", "v1"]).contains("xdp"),
        "no XDP program restored"
    );
    fresh.delete();
}

#[test]
fn an_unknown_allow_lost_value_is_refused_by_name() {
    require_root();
    let tmp = TempDir::new("tclost");
    let ns = TestNs::new("tclost");
    let images = tmp.join("img");
    checkpoint(&ns, &images);
    let target = ns.path_str();
    let args = [
        "restore",
        "--netns",
        target.as_str(),
        "--images",
        images.as_str(),
    ];
    let mut flag = args.to_vec();
    flag.extend(["--allow-lost", "xdp"]);
    let run = run_crhook(&flag);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("invalid value 'xdp' for '--allow-lost <WHAT>'"),
        "{}",
        run.stderr
    );
    let cfg = tmp.path().join("crhook.toml");
    std::fs::write(&cfg, "[restore]\nallow_lost = [\"xdp\"]\n").expect("write config");
    let cfg = cfg.display().to_string();
    let run = crhook(None, &args, &[("CRHOOK_CONFIG", cfg.as_str())]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("unknown allow-lost value \"xdp\" (known: bpf)"),
        "{}",
        run.stderr
    );
    ns.delete();
}

#[test]
fn filters_of_a_shared_block_survive_once() {
    require_root();
    let tmp = TempDir::new("tcblk");
    let ns = TestNs::new("tcblk");
    ns.ip_batch("link add s0 type veth peer name s1\n");
    tc(
        &ns,
        "tc qdisc add dev s0 ingress_block 22 egress_block 23 clsact\n\
         tc qdisc add dev s1 ingress_block 22 clsact\n\
         tc filter add block 22 protocol ip prio 1 u32 match ip dst 10.0.0.0/8 \
            action mirred egress redirect dev s0\n\
         tc filter add block 23 protocol all prio 2 u32 match u32 0 0 \
            action mirred egress mirror dev s1\n",
    );
    let wants = ["ingress_block 22", "filter block 22", "filter block 23"];
    let (fresh, _) = round_trip(ns, "tcblk2", &["s0", "s1"], &tmp.join("img"), &wants);
    fresh.delete();
}

#[test]
fn child_images_carry_traffic_control_changed_since_their_parent() {
    require_root();
    let tmp = TempDir::new("tcchild");
    let ns = TestNs::new("tcchild");
    bandwidth_plugin_shape(&ns);
    let devs = ["eth0", "host0", "ifb0"];
    let (a, b, c) = (tmp.join("a"), tmp.join("b"), tmp.join("c"));
    checkpoint(&ns, &a);
    // a changed rate and a new filter since the parent
    tc(
        &ns,
        "tc qdisc change dev eth0 root tbf rate 20mbit burst 4kb latency 400ms\n\
         tc filter add dev eth0 parent ffff: protocol ip pref 7 u32 match ip dst 10.9.0.0/16 \
            action mirred egress redirect dev ifb0\n",
    );
    let changed = tc_state(&ns, &devs);
    assert!(changed.contains("rate 20Mbit"), "{changed}");
    let target = ns.path_str();
    let child = |images: &str, parent: &str| {
        run_crhook(&[
            "checkpoint",
            "--netns",
            &target,
            "--images",
            images,
            "--parent",
            parent,
            "--lock",
        ])
        .expect_success();
    };
    child(&b, &a);
    // nothing changed since b: c takes traffic control from its parent
    child(&c, &b);
    let shown = run_crhook(&["show", "--format", "json", &c]);
    shown.expect_success();
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).expect("show json");
    let from_parent: Vec<String> = v
        .as_array()
        .and_then(|files| files.iter().find(|f| f["magic"] == "inventory"))
        .and_then(|inv| inv["entries"][0]["from_parent"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        from_parent.iter().any(|k| k == "tc"),
        "c should take tc from b: {from_parent:?}"
    );
    ns.delete();
    for images in [&b, &c] {
        let fresh = TestNs::new("tcchild2");
        run_crhook(&[
            "restore",
            "--netns",
            &fresh.path_str(),
            "--images",
            images,
            "--verify",
        ])
        .expect_success();
        assert_eq!(
            changed,
            tc_state(&fresh, &devs),
            "{images}: tc state differs"
        );
        fresh.delete();
    }
}
