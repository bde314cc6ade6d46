//! Signals are normal events: a crhook killed with SIGKILL in the middle of `checkpoint
//! --lock` leaves no lock (the lock table is owned by its netlink socket), and SIGTERM in
//! the middle of a restore rolls back (the target is as before) and exits non-zero. Needs
//! root and a built `crhook`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crhook_tests::{
    checkpoint, compare_states, crhook_cmd, require_root, NsState, TempDir, TestNs,
};

/// A namespace with `routes` routes, slow enough to capture and restore that a signal can
/// land in the middle.
fn big(tag: &str, routes: u32) -> TestNs {
    let ns = TestNs::new(tag);
    ns.ip_batch(
        "link set lo up\nlink add va type veth peer name vb\naddr add 10.60.0.1/16 dev va\nlink set va up\nlink set vb up\n",
    );
    ns.add_routes(routes, "10.60.0.2");
    ns
}

fn locked(ns: &TestNs) -> bool {
    ns.sh("/usr/sbin/nft list tables").contains("crhook-lock")
}

fn spawn(host: &TestNs, args: &[&str]) -> Child {
    let mut cmd: Command = crhook_cmd(Some(host));
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn crhook")
}

/// Runs crhook with `args` in `host`, sends it SIGTERM after `delay_ms`, and returns how it
/// ended and its stderr.
fn terminate_after(
    host: &TestNs,
    args: &[&str],
    delay_ms: u64,
) -> (std::process::ExitStatus, String) {
    let child = spawn(host, args);
    std::thread::sleep(Duration::from_millis(delay_ms));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let out = child.wait_with_output().expect("wait");
    (out.status, String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn sigkill_during_checkpoint_lock_leaves_no_lock() {
    require_root();
    let host = TestNs::host();
    let a = big("sgk", 40_000);
    let tmp = TempDir::new("sigkill");
    let mut killed_while_locked = 0;
    for attempt in 0..6 {
        let images = tmp.join(&format!("images{attempt}"));
        let mut child = spawn(
            &host,
            &[
                "checkpoint",
                "--netns",
                &a.path_str(),
                "--images",
                &images,
                "--lock",
            ],
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = false;
        while Instant::now() < deadline {
            if locked(&a) {
                seen = true;
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
        }
        // the lock seen, or the run already over: kill it either way
        let _ = child.kill();
        let _ = child.wait();
        if seen {
            killed_while_locked += 1;
        }
        // the kernel drops the table with its owner socket; give the close a moment
        let until = Instant::now() + Duration::from_secs(2);
        while locked(&a) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !locked(&a),
            "attempt {attempt}: a lock outlived the killed crhook"
        );
    }
    assert!(
        killed_while_locked > 0,
        "no attempt caught crhook while it held the lock"
    );
}

#[test]
fn sigterm_during_restore_rolls_back() {
    require_root();
    let host = TestNs::host();
    let a = big("sgt", 60_000);
    let tmp = TempDir::new("sigterm");
    let images = tmp.join("images");
    checkpoint(&host, &a, &images);
    a.delete();
    let mut outcomes = Vec::new();
    for delay_ms in [20u64, 80, 200, 400, 700] {
        let b = TestNs::new("sgtb");
        let empty = NsState::capture(&b);
        let target = b.path_str();
        let (status, stderr) = terminate_after(
            &host,
            &["restore", "--netns", &target, "--images", &images],
            delay_ms,
        );
        if status.success() {
            // the signal came after the restore was done
            outcomes.push("done");
            continue;
        }
        if status.code().is_none() {
            // the signal came before crhook installed its handler: nothing was done yet
            let diffs = compare_states(&empty, &NsState::capture(&b));
            assert!(diffs.is_empty(), "killed at start: {}", diffs.join("; "));
            outcomes.push("killed at start");
            continue;
        }
        // before the first change it stops with nothing to undo, after it rolls back
        assert!(
            stderr.contains("interrupted by a signal") && stderr.lines().count() == 1,
            "after {delay_ms} ms: {stderr}"
        );
        let diffs = compare_states(&empty, &NsState::capture(&b));
        assert!(
            diffs.is_empty(),
            "after {delay_ms} ms the target must be as before:\n  {}",
            diffs.join("\n  ")
        );
        assert_eq!(
            b.ip(&["route", "show", "table", "all"])
                .lines()
                .filter(|l| l.contains("172."))
                .count(),
            0
        );
        outcomes.push(if stderr.contains("rolled back") {
            "rolled back"
        } else {
            "stopped before changing anything"
        });
    }
    assert!(
        outcomes.contains(&"rolled back"),
        "no signal landed during a restore: {outcomes:?}"
    );
}

#[test]
fn sigterm_during_checkpoint_lock_removes_the_lock_and_writes_no_image() {
    require_root();
    let host = TestNs::host();
    let a = big("sgc", 40_000);
    let tmp = TempDir::new("sigterm-ckpt");
    let mut interrupted = 0;
    for (i, delay_ms) in [5u64, 30, 80, 150, 300].into_iter().enumerate() {
        let images = tmp.join(&format!("images{i}"));
        let target = a.path_str();
        let (status, stderr) = terminate_after(
            &host,
            &[
                "checkpoint",
                "--netns",
                &target,
                "--images",
                &images,
                "--lock",
            ],
            delay_ms,
        );
        assert!(!locked(&a), "after {delay_ms} ms: the lock is still there");
        let inventory = std::path::Path::new(&images).join("inventory.img");
        if status.success() {
            assert!(
                inventory.exists(),
                "a successful checkpoint wrote its image"
            );
        } else if status.code().is_none() {
            // the signal came before crhook installed its handler: nothing was done yet
            assert!(
                !inventory.exists(),
                "a checkpoint killed at start left an image"
            );
        } else {
            assert!(
                stderr.contains("interrupted by a signal") && stderr.lines().count() == 1,
                "after {delay_ms} ms: {stderr}"
            );
            assert!(
                !inventory.exists(),
                "an interrupted checkpoint left an image"
            );
            interrupted += 1;
        }
    }
    assert!(interrupted > 0, "no signal landed during a checkpoint");
}
