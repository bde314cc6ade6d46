//! crhook-tests: the shared harness for crhook's integration tests.
//!
//! What it gives a test:
//! - [`require_root`]: privileged tests call it first and fail loudly without root (never a
//!   silent pass).
//! - [`TestNs`]: a named network namespace (`crh-<tag>-<pid>-<n>`) made with iproute2 and
//!   deleted on `Drop`; [`TestNs::host`] is the namespace that plays "the host" for veth peers.
//! - [`crhook_bin`], [`crhook_cmd`], [`crhook`]: the built `crhook` binary, run optionally
//!   inside a test namespace so that namespace is the one crhook runs in (its "host").
//! - [`state`]: an independent view of a namespace through `ip -d -j` and `/proc/sys/net`,
//!   normalised for timers and counters, and [`compare_states`] / [`compare_namespaces`] that
//!   list readable differences. This never uses crhook's own code, so it can catch what
//!   `crhook diff` misses.
//! - [`fixture`]: a namespace holding every link kind this kernel has, with addresses, routes,
//!   rules, neighbours and sysctls, its outer veth ends in a test host and a sibling namespace.
//! - [`Saved`]: the full fixture checkpointed with the crhook binary and deleted, ready to be
//!   restored.
//! - [`Monitor`]: `ip monitor` fenced by marker events, to show an operation changed nothing.
//! - [`podman`]: Podman containers from a busybox rootfs (removed on `Drop`), crhook wired in
//!   as CRIU action script or OCI hook through test-owned files; [`cni`]: pod sandboxes made
//!   by the reference CNI plugins in a test host namespace; [`appstate`]: what an app adds to
//!   a runtime-made network, and readers that check it with `ip`, `iptables-save`, `sysctl`.
//! - [`wait_until`] for kernel work that finishes asynchronously (namespace teardown, DAD,
//!   STP), and [`TempDir`].

pub mod appstate;
pub mod cni;
pub mod fixture;
pub mod monitor;
pub mod ns;
pub mod podman;
pub mod saved;
pub mod state;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use monitor::Monitor;
pub use ns::{ip_bin, unique_name, TestNs};
pub use saved::Saved;
pub use state::{compare_namespaces, compare_states, ip_json, settle, sysctls, NsState};

/// Panics unless the effective uid is 0: privileged tests must fail, not pass, without root.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (it makes network namespaces); run the tests as root, e.g. \
             `sudo -E cargo test -p crhook-tests`"
        );
    }
}

/// The built `crhook` binary: `target/<profile>/crhook`, beside the `deps/` directory that
/// holds the test executable. Cargo builds a package's own binaries for its integration
/// tests only, and crhook lives in another package, so build it first.
pub fn crhook_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("crhook");
    if !bin.is_file() {
        panic!(
            "crhook binary not found at {}; build it first: `cargo build -p crhook` (same \
             profile as the tests)",
            bin.display()
        );
    }
    bin
}

/// A `Command` running crhook. With `Some(ns)` it runs inside `ns` (`ip netns exec NAME
/// crhook`), so `ns` is the namespace crhook runs in: where it records a veth peer as "host",
/// and what `--allow-host-netns` protects. Add arguments and environment to it.
pub fn crhook_cmd(in_ns: Option<&TestNs>) -> Command {
    let bin = crhook_bin();
    let mut cmd = match in_ns {
        Some(ns) => {
            let mut c = Command::new(ip_bin());
            c.args(["netns", "exec", ns.name()]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.stdin(Stdio::null());
    cmd
}

/// What a crhook run returned.
#[derive(Debug, Clone)]
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(args: &[&str], out: Output) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with the whole run unless the exit status is `code`.
    pub fn expect_code(&self, code: i32) -> &Run {
        if self.code != Some(code) {
            panic!(
                "crhook {}: expected exit {code}, got {:?}\nstdout: {}\nstderr: {}",
                self.args.join(" "),
                self.code,
                self.stdout.trim_end(),
                self.stderr.trim_end()
            );
        }
        self
    }

    pub fn expect_success(&self) -> &Run {
        self.expect_code(0)
    }
}

/// Runs crhook with `args` (inside `in_ns` if given) and `env` added to its environment.
pub fn crhook(in_ns: Option<&TestNs>, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = crhook_cmd(in_ns);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn crhook {}: {e}", args.join(" ")));
    Run::from_output(args, out)
}

/// `crhook VERB --netns NS --images DIR [extra...]` run inside `host` (the namespace crhook
/// runs in), for the verbs that take a target and an image directory.
pub fn crhook_on(host: &TestNs, verb: &str, ns: &TestNs, images: &str, extra: &[&str]) -> Run {
    let target = ns.path_str();
    let mut args = vec![verb, "--netns", target.as_str(), "--images", images];
    args.extend_from_slice(extra);
    crhook(Some(host), &args, &[])
}

/// Checkpoints `ns` into `images` from `host`, expecting success.
pub fn checkpoint(host: &TestNs, ns: &TestNs, images: &str) {
    crhook_on(host, "checkpoint", ns, images, &[]).expect_success();
}

/// Restores `images` into `ns` from `host`, expecting success.
pub fn restore(host: &TestNs, ns: &TestNs, images: &str) {
    crhook_on(host, "restore", ns, images, &[]).expect_success();
}

/// `crhook restore --print-stats` of `images` into `ns` from `host`, expecting success, and
/// the number of changes it journaled (`counts.changes`) with its stats.
pub fn restore_counting(host: &TestNs, ns: &TestNs, images: &str) -> (u64, serde_json::Value) {
    let run = crhook_on(host, "restore", ns, images, &["--print-stats"]);
    run.expect_success();
    let stats: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("restore --print-stats: {e}: {}", run.stdout));
    let changes = stats["counts"]["changes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no counts.changes in {}", run.stdout));
    (changes, stats)
}

/// Restores `images` into `ns` from `host`, made to fail after its `n`-th change
/// (`CRHOOK_FAIL_AFTER`), and expects it to fail (exit 1) and leave `ns` as `before`.
pub fn restore_failing_after(host: &TestNs, ns: &TestNs, images: &str, n: u64, before: &NsState) {
    let value = n.to_string();
    let args = ["restore", "--netns", &ns.path_str(), "--images", images];
    crhook(Some(host), &args, &[("CRHOOK_FAIL_AFTER", &value)]).expect_code(1);
    let diffs = compare_states(before, &NsState::capture(ns));
    assert!(
        diffs.is_empty(),
        "{} after a failure at change {n}:\n  {}",
        ns.name(),
        diffs.join("\n  ")
    );
}

/// The one error line of a failed crhook run's stderr. Beside it only log lines of the
/// journal's housekeeping may stand: a journal that some other test's killed restore left for
/// a namespace whose inode number this one now has is removed with a warning.
pub fn one_error_line(stderr: &str) -> &str {
    let (errors, other): (Vec<&str>, Vec<&str>) = stderr
        .trim_end()
        .lines()
        .partition(|l| l.starts_with("crhook:"));
    assert_eq!(errors.len(), 1, "one error line expected: {stderr}");
    assert!(
        other
            .iter()
            .all(|l| l.contains(" WARN crhook_netstate::journal")),
        "only the error expected: {stderr}"
    );
    errors[0]
}

/// The names of the phases of restore stats (`--print-stats`), in the order they were counted.
pub fn phase_names(stats: &serde_json::Value) -> Vec<String> {
    stats["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

/// A namespace taken through crhook by [`move_through`]: restored into `ns` from `images`.
#[derive(Debug)]
pub struct Moved {
    pub ns: TestNs,
    pub images: String,
    /// holds `images`, removed on drop: keep it bound (`dir: _dir`) while they are used
    pub dir: TempDir,
}

/// Checkpoints `a` from `host` into a new temporary image directory named for `tag`, deletes
/// `a`, and restores the images into a fresh namespace, expecting success at each step.
pub fn move_through(host: &TestNs, a: TestNs, tag: &str) -> Moved {
    let dir = TempDir::new(tag);
    let images = dir.join("images");
    checkpoint(host, &a, &images);
    a.delete();
    let ns = TestNs::new(&format!("{tag}-b"));
    restore(host, &ns, &images);
    Moved { ns, images, dir }
}

/// `crhook diff` of `ns` against `images` from `host`.
pub fn diff(host: &TestNs, ns: &TestNs, images: &str) -> Run {
    crhook_on(host, "diff", ns, images, &[])
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`. For kernel
/// work that completes asynchronously, never as a sleep standing in for an assertion.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `link` has left `ns`: after a namespace is deleted, the kernel removes its
/// veth ends' peers in other namespaces from a workqueue, a little later.
pub fn wait_link_gone(ns: &TestNs, link: &str) {
    wait_until(
        &format!("link {link} to leave {}", ns.name()),
        Duration::from_secs(30),
        || !ns.link_exists(link),
    );
}

/// A directory under the system temporary directory, removed with its contents on `Drop`.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// A temporary directory below `parent` (made if missing): for images a hook may read only
    /// under a configured root, such as `/var/lib/crhook`, owned by root and writable by no one
    /// else (unlike the system's temporary directory).
    pub fn under(parent: &Path, tag: &str) -> TempDir {
        let path = parent.join(unique_name(tag));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name` as a string, for argument lists.
    pub fn join(&self, name: &str) -> String {
        self.path.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
