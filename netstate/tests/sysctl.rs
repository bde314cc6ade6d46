//! Sysctl capture and apply against live namespaces (needs root: makes its own namespaces).

#![allow(clippy::unwrap_used, clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crhook_netstate::crhook_proto as pb;
use crhook_netstate::nl::Nl;
use crhook_netstate::sysctl::{self, Phase, SysctlUndo};
use crhook_netstate::{NetNs, NetstateError};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates network namespaces and must run as root"
    );
}

/// A named namespace of this test, deleted on drop.
struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn new(tag: &str) -> TestNs {
        require_root();
        let name = format!(
            "crh-sysctl-{}-{}-{}",
            std::process::id(),
            tag,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        let ns = NetNs::open_path(Path::new(&format!("/run/netns/{name}")))
            .expect("open test namespace");
        TestNs { name, ns }
    }

    fn ip(&self, args: &[&str]) {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        ip(&a);
    }

    fn batch(&self, lines: &str) {
        let mut child = Command::new("ip")
            .args(["-n", &self.name, "-batch", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn ip -batch");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "ip -batch in {}",
            self.name
        );
    }

    fn set(&self, keys: &[(&str, &str)]) {
        let keys: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.ns
            .run(move || {
                for (k, v) in &keys {
                    std::fs::write(format!("/proc/sys/net/{k}"), v)
                        .unwrap_or_else(|e| panic!("write {k}={v}: {e}"));
                }
                Ok(())
            })
            .unwrap();
    }

    fn capture(&self) -> Vec<pb::Sysctl> {
        let name = self.name.clone();
        self.ns
            .run(move || {
                let mut nl = Nl::new(&name)?;
                sysctl::capture(&mut nl, None)
            })
            .expect("capture sysctls")
    }

    fn apply(
        &self,
        saved: &[pb::Sysctl],
        phase: Phase,
    ) -> Result<SysctlUndo, (NetstateError, SysctlUndo)> {
        let saved = saved.to_vec();
        self.ns
            .run(move || Ok(sysctl::apply(&saved, phase, &|d: &str| Some(d.to_string()))))
            .expect("namespace thread")
    }

    fn undo(&self, u: SysctlUndo) -> Vec<String> {
        self.ns
            .run(move || Ok(u.undo().iter().map(|e| e.to_string()).collect()))
            .unwrap()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn map(v: &[pb::Sysctl]) -> BTreeMap<String, String> {
    let m: BTreeMap<_, _> = v
        .iter()
        .map(|s| (sysctl::key(s), s.value.clone()))
        .collect();
    assert_eq!(m.len(), v.len(), "duplicate keys in capture");
    m
}

fn assert_same(what: &str, got: &BTreeMap<String, String>, want: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    for (k, v) in want {
        match got.get(k) {
            Some(g) if g == v => {}
            Some(g) => diffs.push(format!("{k}: {g:?} != {v:?}")),
            None => diffs.push(format!("{k}: missing (want {v:?})")),
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("{k}: unexpected {:?}", got[k]));
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} difference(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

fn veths(ns: &TestNs) {
    ns.ip(&["link", "add", "v.1", "type", "veth", "peer", "name", "v2"]);
}

const CHANGES: &[(&str, &str)] = &[
    // namespace-wide; all/forwarding first, as it propagates to every device
    ("ipv6/conf/all/forwarding", "1"),
    ("ipv4/ip_forward", "1"),
    ("ipv4/tcp_syncookies", "2"),
    ("ipv4/ip_local_port_range", "20000 40000"),
    ("core/somaxconn", "1234"),
    // per device
    ("ipv4/conf/v.1/rp_filter", "2"),
    ("ipv4/conf/v.1/arp_ignore", "1"),
    ("ipv4/conf/v.1/proxy_arp", "1"),
    ("ipv4/conf/v2/forwarding", "0"),
    ("ipv6/conf/v.1/accept_ra", "2"),
    ("ipv6/conf/v2/disable_ipv6", "1"),
    ("ipv6/conf/v.1/accept_dad", "0"),
    // multiples of 20 ms convert to jiffies and back unchanged for HZ 100, 250, 300, 1000
    ("ipv4/neigh/v.1/base_reachable_time_ms", "12340"),
    ("ipv6/neigh/v2/retrans_time_ms", "2500"),
    // conversions: ms→s, u32 above i32::MAX, keys read from /proc
    ("ipv6/conf/v.1/router_solicitation_interval", "7"),
    ("ipv6/conf/v.1/ra_defrtr_metric", "3000000000"),
    ("ipv6/conf/v2/mldv2_unsolicited_report_interval", "2500"),
    ("ipv4/neigh/v.1/gc_stale_time", "90"),
    ("ipv6/neigh/v.1/delay_first_probe_time", "3"),
    ("ipv6/neigh/v.1/locktime", "250"),
    ("ipv6/conf/v.1/regen_min_advance", "100"),
    // the last slots of both conf arrays (past what the netlink crate parses)
    ("ipv6/conf/v.1/force_forwarding", "1"),
    ("ipv6/conf/v2/accept_ra_min_lft", "300"),
    ("ipv4/conf/v.1/arp_evict_nocarrier", "0"),
];

#[test]
fn capture_matches_proc_and_apply_rebuilds_then_undo_reverts() {
    let a = TestNs::new("src");
    veths(&a);
    a.set(CHANGES);

    let cap = a.capture();
    let got = map(&cap);
    for (k, v) in CHANGES {
        let want = v.replace(' ', "\t");
        assert_eq!(got.get(*k), Some(&want), "captured {k}");
    }
    // the dotted device name is one component
    assert!(cap
        .iter()
        .any(|s| s.path == ["ipv4", "conf", "v.1", "rp_filter"]));
    for k in [
        "ipv6/conf/v.1/mtu",
        "ipv4/conf/all/forwarding",
        "ipv4/neigh/v.1/unres_qlen",
        "ipv4/route/flush",
    ] {
        assert!(!got.contains_key(k), "{k} must be left out");
    }
    for k in [
        "ipv4/conf/all/rp_filter",
        "ipv4/conf/default/rp_filter",
        "ipv6/conf/default/accept_ra",
    ] {
        assert!(got.contains_key(k), "{k} must be captured");
    }
    for dev in ["lo", "v.1", "v2"] {
        assert!(
            got.contains_key(&format!("ipv6/neigh/{dev}/retrans_time_ms")),
            "{dev} neigh"
        );
        assert!(
            got.contains_key(&format!("ipv4/conf/{dev}/arp_ignore")),
            "{dev} conf"
        );
    }

    // Every per-device value (most from netlink) equals its /proc file, and the /proc walk
    // finds no key the netlink capture misses: this proves each index mapping against the
    // running kernel.
    let per_dev: Vec<pb::Sysctl> = cap
        .iter()
        .filter(|s| {
            s.path.len() == 4
                && !["all", "default"].contains(&s.path[2].as_str())
                && ["conf", "neigh"].contains(&s.path[1].as_str())
        })
        .cloned()
        .collect();
    assert!(
        per_dev.len() > 3 * 100,
        "per-device keys: {}",
        per_dev.len()
    );
    let name = a.name.clone();
    let (mismatch, walk, with_dump) =
        a.ns.run(move || {
            let mut bad = Vec::new();
            for s in &per_dev {
                let f = format!("/proc/sys/net/{}", s.path.join("/"));
                let v = std::fs::read_to_string(&f)
                    .map_err(|e| NetstateError::invalid(format!("{f}: {e}")))?;
                if v.trim_end_matches('\n') != s.value {
                    bad.push(format!(
                        "{f}: netlink {:?} /proc {:?}",
                        s.value,
                        v.trim_end()
                    ));
                }
            }
            let walk = sysctl::capture_proc_walk(&name)?;
            let mut nl = Nl::new(&name)?;
            let links = nl.dump(
                netlink_packet_route::RouteNetlinkMessage::GetLink(Default::default()),
                "dump links",
            )?;
            let links: Vec<_> = links
                .into_iter()
                .filter_map(|m| match m {
                    netlink_packet_route::RouteNetlinkMessage::NewLink(l) => Some(l),
                    _ => None,
                })
                .collect();
            let with_dump = sysctl::capture(&mut nl, Some(&links))?;
            Ok((bad, walk, with_dump))
        })
        .unwrap();
    assert!(
        mismatch.is_empty(),
        "netlink values differ from /proc:\n{}",
        mismatch.join("\n")
    );
    assert_same("capture vs /proc walk", &got, &map(&walk));
    assert_same("capture with caller's link dump", &map(&with_dump), &got);

    // a fresh namespace with the same links
    let b = TestNs::new("dst");
    veths(&b);
    let before = map(&b.capture());
    let early = b
        .apply(&cap, Phase::Early)
        .map_err(|(e, _)| e)
        .expect("apply early");
    assert!(!early.is_empty(), "early phase changed nothing");
    assert!(
        early
            .entries()
            .iter()
            .all(|(p, _)| sysctl::EARLY.contains(&p[3].as_str())),
        "early phase wrote other keys: {:?}",
        early.entries()
    );
    let late = b
        .apply(&cap, Phase::Late)
        .map_err(|(e, _)| e)
        .expect("apply late");
    let after = map(&b.capture());
    assert_same("restored namespace vs saved", &after, &got);
    eprintln!(
        "apply wrote {} early and {} late undo entries",
        early.len(),
        late.len()
    );

    // applying again changes nothing
    let again = b
        .apply(&cap, Phase::Late)
        .map_err(|(e, _)| e)
        .expect("apply again");
    assert!(again.is_empty(), "second apply wrote {:?}", again.entries());

    let mut errs = b.undo(late);
    errs.extend(b.undo(early));
    assert!(errs.is_empty(), "undo errors: {errs:?}");
    assert_same(
        "namespace after undo vs its defaults",
        &map(&b.capture()),
        &before,
    );
}

#[test]
fn missing_device_is_an_error_naming_the_key_and_rolls_back() {
    let a = TestNs::new("src");
    veths(&a);
    a.set(&[("core/somaxconn", "777"), ("ipv4/conf/v.1/rp_filter", "2")]);
    let cap = a.capture();

    // no v.1 here
    let b = TestNs::new("dst");
    b.ip(&["link", "add", "v3", "type", "veth", "peer", "name", "v2"]);
    let before = map(&b.capture());
    let (e, undo) = b.apply(&cap, Phase::Late).expect_err("apply must fail");
    let msg = e.to_string();
    assert!(
        msg.starts_with("read sysctl /proc/sys/net/ipv") && msg.contains("/v.1/"),
        "{msg}"
    );
    // apply() names the namespace by its nsfs id; apply_with() by the caller's name
    assert!(
        msg.contains(" in net:["),
        "error names the namespace: {msg}"
    );
    let src = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(src.contains("No such file"), "errno kept: {src}");
    // somaxconn was written before the per-device keys
    assert!(
        undo.entries()
            .iter()
            .any(|(p, _)| p == &["core", "somaxconn"]),
        "{:?}",
        undo.entries()
    );
    assert!(b.undo(undo).is_empty());
    assert_same("after rollback", &map(&b.capture()), &before);
}

#[test]
fn stable_secret_is_written_before_addr_gen_mode() {
    let a = TestNs::new("src");
    veths(&a);
    // setting the secret forces addr_gen_mode 2 (stable privacy); set it back to 0 after
    a.set(&[
        ("ipv6/conf/v.1/stable_secret", "2001:db8::1234"),
        ("ipv6/conf/v.1/addr_gen_mode", "0"),
    ]);
    let cap = a.capture();
    let got = map(&cap);
    // the kernel prints the secret in full form
    let secret = "2001:0db8:0000:0000:0000:0000:0000:1234";
    assert_eq!(
        got.get("ipv6/conf/v.1/stable_secret").map(String::as_str),
        Some(secret)
    );
    assert_eq!(
        got.get("ipv6/conf/v.1/addr_gen_mode").map(String::as_str),
        Some("0")
    );
    assert!(
        !got.contains_key("ipv6/conf/v2/stable_secret"),
        "unset secrets (EIO) are not keys"
    );

    let b = TestNs::new("dst");
    veths(&b);
    let early = b
        .apply(&cap, Phase::Early)
        .map_err(|(e, _)| e)
        .expect("apply early");
    let now = map(&b.capture());
    assert_eq!(
        now.get("ipv6/conf/v.1/stable_secret").map(String::as_str),
        Some(secret)
    );
    assert_eq!(
        now.get("ipv6/conf/v.1/addr_gen_mode").map(String::as_str),
        Some("0")
    );
    // the kernel cannot unset a secret: undo puts back what it can and reports no error
    assert!(b.undo(early).is_empty());
}

#[test]
fn all_disable_ipv6_is_early_so_late_keeps_restored_addresses() {
    let a = TestNs::new("src");
    veths(&a);
    // all/disable_ipv6 propagates to every device; v.1 is enabled again afterwards
    a.set(&[
        ("ipv6/conf/all/disable_ipv6", "1"),
        ("ipv6/conf/v.1/disable_ipv6", "0"),
    ]);
    let cap = a.capture();
    let got = map(&cap);
    assert_eq!(got["ipv6/conf/all/disable_ipv6"], "1");
    assert_eq!(got["ipv6/conf/v2/disable_ipv6"], "1");
    assert_eq!(got["ipv6/conf/v.1/disable_ipv6"], "0");

    let b = TestNs::new("dst");
    veths(&b);
    let early = b
        .apply(&cap, Phase::Early)
        .map_err(|(e, _)| e)
        .expect("apply early");
    assert!(
        early
            .entries()
            .iter()
            .any(|(p, _)| p == &["ipv6", "conf", "all", "disable_ipv6"]),
        "{:?}",
        early.entries()
    );
    // what address restore does between the phases
    b.ip(&["addr", "add", "2001:db8::1/64", "dev", "v.1", "nodad"]);
    let late = b
        .apply(&cap, Phase::Late)
        .map_err(|(e, _)| e)
        .expect("apply late");
    let out = Command::new("ip")
        .args(["-n", &b.name, "-6", "addr", "show", "dev", "v.1"])
        .output()
        .unwrap();
    let addrs = String::from_utf8_lossy(&out.stdout);
    assert!(
        addrs.contains("2001:db8::1/64"),
        "address flushed by Late: {addrs}"
    );
    assert_same("restored", &map(&b.capture()), &got);
    let mut errs = b.undo(late);
    errs.extend(b.undo(early));
    assert!(errs.is_empty(), "{errs:?}");
}

fn best_of(n: usize, mut f: impl FnMut()) -> Duration {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// Prints capture and apply times at `pairs` veth pairs (both ends inside): capture against
/// the /proc walk (checking both agree), a restore-shaped apply (Early then Late into a fresh
/// namespace with the same links, with `ip_forward`, a `conf/all` key and a few per-device
/// keys changed in the source; undone between runs) and an apply with nothing to change.
fn timing(pairs: usize, walk: bool) {
    let lines: String = (0..pairs)
        .map(|i| format!("link add a{i} type veth peer name b.{i}\n"))
        .collect();
    let a = TestNs::new("big");
    a.batch(&lines);
    a.set(&[
        ("ipv4/ip_forward", "1"),
        ("ipv4/conf/all/rp_filter", "1"),
        ("ipv4/conf/a0/rp_filter", "2"),
        ("ipv6/conf/b.1/accept_ra", "2"),
        ("ipv6/conf/a2/accept_dad", "0"),
        ("ipv4/neigh/a3/locktime", "250"),
    ]);
    let b = TestNs::new("bigdst");
    b.batch(&lines);
    let links = 2 * pairs + 1;
    let name = a.name.clone();
    let (fast, naive, cap) =
        a.ns.run(move || {
            let mut nl = Nl::new(&name)?;
            let mut cap = Vec::new();
            let fast = best_of(3, || cap = sysctl::capture(&mut nl, None).unwrap());
            let mut naive = None;
            if walk {
                let mut w = Vec::new();
                naive = Some(best_of(3, || w = sysctl::capture_proc_walk(&name).unwrap()));
                assert_same(
                    &format!("capture vs /proc walk at {links} links"),
                    &map(&cap),
                    &map(&w),
                );
            }
            Ok((fast, naive, cap))
        })
        .unwrap();
    let want = map(&cap);
    let nkeys = want.len();
    let name = b.name.clone();
    let (restore, early, noop, written) =
        b.ns.run(move || {
            let mut nl = Nl::new(&name)?;
            let id = |d: &str| Some(d.to_string());
            let mut written = 0;
            let mut restore = Duration::MAX;
            let mut early = Duration::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                let mut u = sysctl::apply_with(&mut nl, &cap, Phase::Early, &id)
                    .map_err(|(e, _)| e)
                    .unwrap();
                early = early.min(t.elapsed());
                let late = sysctl::apply_with(&mut nl, &cap, Phase::Late, &id)
                    .map_err(|(e, _)| e)
                    .unwrap();
                restore = restore.min(t.elapsed());
                u.append(late);
                written = u.len();
                let got = map(&sysctl::capture(&mut nl, None).unwrap());
                assert_same("restored", &got, &want);
                assert!(u.undo().is_empty());
            }
            sysctl::apply_with(&mut nl, &cap, Phase::Late, &id)
                .map_err(|(e, _)| e)
                .unwrap();
            let noop = best_of(3, || {
                let u = sysctl::apply_with(&mut nl, &cap, Phase::Late, &id)
                    .map_err(|(e, _)| e)
                    .unwrap();
                assert!(u.is_empty(), "{:?}", u.entries());
            });
            Ok((restore, early, noop, written))
        })
        .unwrap();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    eprintln!(
        "sysctls at {links} links ({} keys): capture {}{}; restore-shaped apply (Early + Late, \
         {written} undo entries) {} (Early {}); apply with nothing to change {}",
        nkeys,
        ms(fast),
        naive
            .map(|n| format!(
                ", naive /proc walk {} ({:.1}x)",
                ms(n),
                n.as_secs_f64() / fast.as_secs_f64()
            ))
            .unwrap_or_default(),
        ms(restore),
        ms(early),
        ms(noop)
    );
}

#[test]
fn timing_200_veth_pairs() {
    timing(200, true);
}

/// The benchmark's large size; about a minute. `cargo test --release -p crhook-netstate
/// --test sysctl -- --ignored --nocapture`.
#[test]
#[ignore = "slow: 1,000 veth pairs in two namespaces"]
fn timing_1000_veth_pairs() {
    timing(1000, false);
}
