//! A restore killed outright (SIGKILL: a runtime whose hook timed out, the OOM killer) leaves
//! a half-restored namespace and its journal; `crhook recover` puts the target back exactly
//! as it was before that restore, and the next `restore` of the same target does so by itself
//! before it starts. Needs root and a built `crhook`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crhook_tests::{
    checkpoint, compare_states, crhook, crhook_cmd, crhook_on, diff, require_root, NsState,
    TempDir, TestNs,
};

const JOURNALS: &str = "/run/crhook/journal";

/// A namespace with links, addresses, 30,000 routes, iptables rules and a sysctl: every kind
/// of change restore journals.
fn source(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    ns.ip_batch(
        "link set lo up\nlink add va type veth peer name vb\naddr add 10.61.0.1/16 dev va\nlink set va up\nlink set vb up\nrule add from 10.61.9.0/24 table 200 pref 900\n",
    );
    ns.add_routes(30_000, "10.61.0.2");
    ns.sh("/usr/sbin/iptables -A INPUT -s 10.61.5.0/24 -j DROP && /usr/sbin/iptables -N KEEP && /usr/sbin/iptables -A KEEP -p tcp --dport 8080 -j ACCEPT");
    ns.sh("echo 0 > /proc/sys/net/ipv6/conf/va/accept_ra && echo 33 > /proc/sys/net/ipv4/ip_default_ttl");
    ns
}

/// A target that already holds something restore must leave alone: a veth with an address, a
/// route and a changed sysctl (a live firewall would be a conflict).
fn target(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    ns.ip_batch("link set lo up\nlink add keep0 type veth peer name keep1\naddr add 10.62.0.1/24 dev keep0\nlink set keep0 up\nlink set keep1 up\nroute add 10.99.0.0/16 via 10.62.0.2\n");
    ns.sh("echo 77 > /proc/sys/net/ipv4/ip_default_ttl");
    ns
}

fn journal_of(ns: &TestNs) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(ns.path_str()).ok()?;
    let p = std::path::Path::new(JOURNALS).join(format!("{}-{}.journal", m.dev(), m.ino()));
    p.exists().then_some(p)
}

fn restored_routes(ns: &TestNs) -> usize {
    ns.ip(&["route", "show", "table", "all"])
        .lines()
        .filter(|l| l.starts_with("172."))
        .count()
}

/// Starts a restore into `b` and SIGKILLs it once `landed(b)` holds; returns whether the kill
/// landed before the restore ended (a restore that finished first proves nothing).
fn kill_when(host: &TestNs, b: &TestNs, images: &str, landed: impl Fn(&TestNs) -> bool) -> bool {
    let target = b.path_str();
    let mut cmd: Command = crhook_cmd(Some(host));
    cmd.args(["restore", "--netns", &target, "--images", images])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn crhook");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if let Some(_st) = child.try_wait().expect("wait") {
            return false;
        }
        if landed(b) {
            child.kill().expect("SIGKILL crhook");
            let st = child.wait().expect("wait");
            return st.code().is_none();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("restore neither finished nor reached the point to kill it within 60 s");
}

#[test]
fn sigkill_during_restore_then_recover_leaves_the_target_as_before() {
    require_root();
    let host = TestNs::host();
    let a = source("rcva");
    let tmp = TempDir::new("recover");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();
    let mut killed = 0;
    for attempt in 0..4 {
        let b = target("rcvb");
        let before = NsState::capture(&b);
        let forward = b.sh("cat /proc/sys/net/ipv4/ip_forward");
        // mid-routes: links, firewall, addresses and sysctls are in, routes part way
        if !kill_when(&host, &b, &images, |b| restored_routes(b) > 0) {
            continue;
        }
        killed += 1;
        let half = NsState::capture(&b);
        assert!(
            !compare_states(&before, &half).is_empty(),
            "attempt {attempt}: the kill left nothing to undo"
        );
        let journal = journal_of(&b).expect("a killed restore leaves its journal");
        let target = b.path_str();
        let r = crhook(Some(&host), &["recover", "--netns", &target], &[]);
        r.expect_success();
        assert!(r.stdout.contains("undid the half restore"), "{}", r.stdout);
        assert!(!journal.exists(), "recover removes the journal");
        let diffs = compare_states(&before, &NsState::capture(&b));
        assert!(
            diffs.is_empty(),
            "attempt {attempt}: after recover the target must be as before:\n  {}",
            diffs.join("\n  ")
        );
        assert_eq!(b.sh("cat /proc/sys/net/ipv4/ip_default_ttl").trim(), "77");
        assert_eq!(b.sh("cat /proc/sys/net/ipv4/ip_forward"), forward);
        // nothing left to do the second time
        let again = crhook(Some(&host), &["recover", "--netns", &target], &[]);
        again.expect_success();
        assert!(again.stdout.contains("no half restore"), "{}", again.stdout);
        if killed >= 2 {
            break;
        }
    }
    assert!(killed > 0, "no kill landed in the middle of a restore");
}

#[test]
fn the_next_restore_undoes_a_killed_one_first() {
    require_root();
    let host = TestNs::host();
    let a = source("rcna");
    let tmp = TempDir::new("recover-next");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();
    let mut done = false;
    for _ in 0..4 {
        let b = TestNs::new("rcnb");
        // early: the links exist, little else
        if !kill_when(&host, &b, &images, |b| {
            b.ip(&["-o", "link", "show"]).contains("va@")
        }) {
            continue;
        }
        assert!(
            journal_of(&b).is_some(),
            "a killed restore leaves its journal"
        );
        // a plain restore now would meet the half-made links as conflicts; it undoes them
        let r = crhook_on(&host, "restore", &b, &images, &[]);
        r.expect_success();
        assert!(
            r.stderr.contains("undid a half restore"),
            "the restore says what it undid: {}",
            r.stderr
        );
        assert!(
            journal_of(&b).is_none(),
            "the finished restore leaves no journal"
        );
        diff(&host, &b, &images).expect_success();
        assert_eq!(restored_routes(&b), 30_000);
        done = true;
        break;
    }
    assert!(done, "no kill landed in the middle of a restore");
}

#[test]
fn recover_refuses_while_a_restore_runs_and_a_failed_restore_leaves_no_journal() {
    require_root();
    let host = TestNs::host();
    let a = source("rcra");
    let tmp = TempDir::new("recover-busy");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();
    // an injected failure rolls back from the journal and removes it
    let b = target("rcrb");
    let before = NsState::capture(&b);
    let target = b.path_str();
    let failed = crhook(
        Some(&host),
        &["restore", "--netns", &target, "--images", &images],
        &[("CRHOOK_FAIL_AFTER", "5")],
    );
    failed.expect_code(1);
    assert!(
        journal_of(&b).is_none(),
        "a rolled-back restore leaves no journal"
    );
    let diffs = compare_states(&before, &NsState::capture(&b));
    assert!(diffs.is_empty(), "rolled back: {}", diffs.join("; "));
    // while a restore runs, its journal is locked: recover refuses rather than undo under it
    let mut cmd: Command = crhook_cmd(Some(&host));
    cmd.args(["restore", "--netns", &target, "--images", &images])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn crhook");
    let t = Instant::now();
    let mut seen = false;
    while t.elapsed() < Duration::from_secs(30) && child.try_wait().expect("wait").is_none() {
        if journal_of(&b).is_some() {
            let r = crhook(Some(&host), &["recover", "--netns", &target], &[]);
            if child.try_wait().expect("wait").is_none() && r.code == Some(1) {
                assert!(r.stderr.contains("is running"), "{}", r.stderr);
                seen = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let st = child.wait().expect("wait");
    assert!(st.success(), "the restore itself finishes");
    assert!(seen, "recover never met the running restore's journal");
    assert!(journal_of(&b).is_none());
}

#[test]
fn a_journal_of_a_namespace_that_is_gone_is_not_replayed_into_one_with_its_inode() {
    require_root();
    use crhook_netstate::journal::{log, Log, Sock};
    use crhook_netstate::NetNs;
    let host = TestNs::host();
    let b = target("rcib");
    let before = NsState::capture(&b);
    let ns = NetNs::open_path(std::path::Path::new(&b.path_str())).expect("open target");
    // a journal with this namespace's inode but another namespace's cookie, as a restore
    // into a namespace deleted since would have left it once the inode number came round
    let mut header = log::header(&ns, &NetNs::current().expect("own"), &[]);
    header.target_cookie = ns.cookie().expect("cookie").wrapping_add(1);
    let log = Log::create(std::path::Path::new(JOURNALS), &header).expect("journal");
    let undo = crhook_netstate::link::create::delete_request(
        b.ip(&["-o", "link", "show", "keep0"])
            .split(':')
            .next()
            .and_then(|i| i.trim().parse().ok())
            .expect("ifindex of keep0"),
    );
    log.intent([(Sock::Target, &undo, "delete link keep0")])
        .expect("intent");
    // the writer dies: its lock goes with it
    drop(log);
    let path = journal_of(&b).expect("the journal is in place");
    let r = crhook(Some(&host), &["recover", "--netns", &b.path_str()], &[]);
    r.expect_success();
    assert!(r.stdout.contains("no half restore"), "{}", r.stdout);
    assert!(!path.exists(), "the dead namespace's journal is removed");
    let diffs = compare_states(&before, &NsState::capture(&b));
    assert!(diffs.is_empty(), "nothing was undone: {}", diffs.join("; "));
}

/// A restore killed behind its guard (its links up, the nf_tables transaction or the routes
/// still going) leaves a namespace that passes no traffic: the guard's tables drop every
/// packet, loopback's too, until `crhook recover` undoes the half restore, guard and all.
/// Restored whole, the namespace passes traffic and holds no guard.
#[test]
fn a_restore_killed_behind_its_guard_passes_no_traffic_until_recovered() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("rcga");
    crhook_tests::fixture::populate_guarded(&a, 60_000, 30_000);
    let tmp = TempDir::new("recover-guard");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();
    let guarded = |b: &TestNs| {
        b.try_ip(&["-o", "link", "show", "va"])
            .stdout
            .windows(3)
            .any(|w| w == b",UP")
            && b.sh("nft list tables").contains("crhook-restore")
    };
    let ping = |b: &TestNs| {
        b.exec(&["/bin/busybox", "ping", "-c1", "-W1", "10.63.0.1"])
            .status
            .success()
    };
    let mut killed = false;
    for _ in 0..6 {
        let b = TestNs::new("rcgb");
        let before = NsState::capture(&b);
        if !kill_when(&host, &b, &images, guarded) {
            continue;
        }
        // kill_when saw the guard raised and the link up; both stay
        let tables = b.sh("nft list tables");
        for family in ["inet", "arp"] {
            assert!(
                tables.contains(&format!("table {family} crhook-restore")),
                "the killed restore's guard covers {family}: {tables}"
            );
        }
        assert!(
            b.ip(&["-o", "addr", "show", "dev", "lo"])
                .contains("127.0.0.1"),
            "lo is up with its address behind the guard"
        );
        assert!(!ping(&b), "behind the guard even loopback passes nothing");
        crhook(Some(&host), &["recover", "--netns", &b.path_str()], &[]).expect_success();
        let diffs = compare_states(&before, &NsState::capture(&b));
        assert!(
            diffs.is_empty(),
            "after recover the target is as before:\n  {}",
            diffs.join("\n  ")
        );
        assert_eq!(b.sh("nft list tables"), "", "recover lowers the guard");
        crhook_on(&host, "restore", &b, &images, &[]).expect_success();
        diff(&host, &b, &images).expect_success();
        assert!(!b.sh("nft list tables").contains("crhook-restore"));
        assert!(ping(&b), "the restored namespace passes traffic");
        killed = true;
        break;
    }
    assert!(killed, "no kill landed behind the guard");
}
