//! Podman for the end-to-end tests: a busybox rootfs, containers with unique names removed on
//! `Drop`, their namespaces named for the harness, and crhook wired in the two ways Podman
//! offers (CRIU action script through the `org.criu.config` annotation, OCI hook through a
//! hooks directory), all test-owned: no machine-wide configuration file is written.
//!
//! What this relies on, measured with Podman 4.3.1 (netavark 1.4), runc 1.1.5 and CRIU 4.1.1
//! on Debian bookworm, as root:
//! - `podman run --rootfs DIR` runs a directory as the root filesystem, no registry needed.
//!   `busybox --install -s DIR/bin` is no use for it: on a merged-/usr system it makes
//!   absolute links to `/usr/bin/busybox`, which do not resolve inside the rootfs (runc:
//!   `exec: "sleep": executable file not found in $PATH`); [`BusyboxRootfs`] makes relative
//!   links.
//! - Root here lacks CAP_SYS_RESOURCE, so the default rlimits Podman asks runc for fail;
//!   every container gets `--ulimit nofile=20000:20000 --ulimit nproc=32768:32768`.
//! - A failed `podman run -d` leaves the container behind in state `Created`; `Drop` removes
//!   by name whatever happened. `podman rm -f` waits 10 s for `sleep` (pid 1 ignores SIGTERM)
//!   unless given `-t 0`.
//! - Containers join the default `podman` network: netavark makes `eth0` (a veth to the
//!   host's `podman0` bridge), an address in 10.88.0.0/16 (allocated round-robin: a new
//!   container gets a new address even after the previous one is removed), a random MAC and
//!   `default via 10.88.0.1 proto static metric 100`. The bridge and netavark's NAT rules are
//!   in the machine's namespace; Podman owns them.
//! - `podman container checkpoint` / `restore` work here without crhook: the container comes
//!   back with the same address and MAC on a fresh `eth0` netavark made, and everything else
//!   in its namespace is gone (the namespace is a path in config.json, which runc declares
//!   external to CRIU). The checkpoint is `<StaticDir>/checkpoint`, CRIU's logs are
//!   `<StaticDir>/dump.log` and `restore.log`; a successful restore deletes the checkpoint
//!   unless given `--keep`.
//! - runc hands CRIU the configuration file named by the container's `org.criu.config`
//!   annotation; `podman run --annotation org.criu.config=FILE` is honoured for both
//!   checkpoint and restore. CRIU runs the action script with an environment of its own
//!   (PATH, an empty XDG_RUNTIME_DIR, and on restore conmon's HOME and `_OCI_*`), not the
//!   environment `podman` was started with: `CRHOOK_LOG*` cannot be passed that way. Every
//!   action fires twice. The script's stderr goes to CRIU's log: after a failed restore,
//!   crhook's one-line error is in `<StaticDir>/restore.log`, while podman itself prints only
//!   `Error: OCI runtime error: runc: criu failed: type NOTIFY errno 0` and the log's path,
//!   and exits 125. The container stays `Exited` and its namespace is removed.
//! - `podman --hooks-dir DIR` replaces the default hooks directories (so a machine-wide
//!   crhook hook does not leak into these tests); a hooks.d file's `when.annotations` selects
//!   containers by annotation. A failing createRuntime hook makes `podman run` exit 126 with
//!   the hook's stderr inside podman's error message.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};

use serde_json::Value;

use crate::ns::check_output;
use crate::{crhook_bin, ip_bin, require_root, unique_name, TempDir, TestNs};

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BIN_DIRS: &[&str] = &["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The first `name` found in `dirs`, or a panic saying how to install it.
pub fn find_bin(name: &str, dirs: &[&str]) -> PathBuf {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found in {dirs:?}; install it with `bash .ci/install-deps`")
        })
}

/// The podman binary; panics (with the install hint) when Podman is not installed.
pub fn podman_bin() -> PathBuf {
    find_bin("podman", BIN_DIRS)
}

/// The static busybox (`busybox-static`), for rootfs and for `ping` from a test's namespace.
pub fn busybox_bin() -> PathBuf {
    find_bin("busybox", &["/bin", "/usr/bin"])
}

/// `busybox ping -c1 -W2 IP` from the test process's own namespace (where Podman's bridge
/// is); panics with the output unless a reply came.
pub fn ping_from_host(ip: &str) {
    let out = Command::new(busybox_bin())
        .args(["ping", "-c", "1", "-W", "2", ip])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn busybox ping {ip}: {e}"));
    check_output(&format!("ping -c1 -W2 {ip} from the host"), &out);
}

/// A directory holding a static busybox as `bin/busybox` and a relative symlink per applet,
/// for `podman run --rootfs`. Shared by the containers of one test process while any of
/// them lives ([`BusyboxRootfs::shared`]); removed on `Drop` of the last holder.
#[derive(Debug)]
pub struct BusyboxRootfs {
    dir: TempDir,
}

static ROOTFS: Mutex<Weak<BusyboxRootfs>> = Mutex::new(Weak::new());

impl BusyboxRootfs {
    /// The rootfs every container of this process uses, built on first use.
    pub fn shared() -> Arc<BusyboxRootfs> {
        let mut slot = ROOTFS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = slot.upgrade() {
            return r;
        }
        let r = Arc::new(BusyboxRootfs::build());
        *slot = Arc::downgrade(&r);
        r
    }

    fn build() -> BusyboxRootfs {
        let dir = TempDir::new("rootfs");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap_or_else(|e| panic!("create {}: {e}", bin.display()));
        let busybox = busybox_bin();
        std::fs::copy(&busybox, bin.join("busybox"))
            .unwrap_or_else(|e| panic!("copy {} into the rootfs: {e}", busybox.display()));
        let out = Command::new(&busybox)
            .arg("--list")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("busybox --list: {e}"));
        let list = check_output("busybox --list", &out);
        for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
            if applet == "busybox" || applet.contains('/') {
                continue;
            }
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .unwrap_or_else(|e| panic!("symlink {applet} in the rootfs: {e}"));
        }
        BusyboxRootfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A CRIU configuration file in `dir` that makes crhook (this build) CRIU's action script:
/// `examples/criu/runc.conf` with the binary's path replaced. Name it with the container
/// annotation `org.criu.config`.
pub fn criu_conf(dir: &TempDir) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/criu/runc.conf");
    let text = std::fs::read_to_string(&example)
        .unwrap_or_else(|e| panic!("read {}: {e}", example.display()));
    let line = "action-script /usr/local/bin/crhook";
    assert!(
        text.lines().any(|l| l == line),
        "{} no longer has `{line}`:\n{text}",
        example.display()
    );
    let text = text.replace("/usr/local/bin/crhook", &crhook_bin().display().to_string());
    let path = dir.path().join("criu-runc.conf");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A hooks directory (`podman --hooks-dir`) in `dir` holding `examples/oci/crhook-hook.json`
/// with the binary's path replaced by this build: `crhook hook` at createRuntime for every
/// container with an `io.crhook.images` annotation.
pub fn crhook_hooks_dir(dir: &TempDir) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/oci/crhook-hook.json");
    let text = std::fs::read_to_string(&example)
        .unwrap_or_else(|e| panic!("read {}: {e}", example.display()));
    let mut hook: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: bad JSON: {e}", example.display()));
    assert_eq!(
        hook["hook"]["path"],
        "/usr/local/bin/crhook",
        "{} changed shape",
        example.display()
    );
    hook["hook"]["path"] = Value::String(crhook_bin().display().to_string());
    let hooks = dir.path().join("hooks.d");
    std::fs::create_dir_all(&hooks).unwrap_or_else(|e| panic!("create {}: {e}", hooks.display()));
    let path = hooks.join("crhook.json");
    std::fs::write(&path, hook.to_string())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    hooks
}

/// How to start a [`PodmanContainer`].
#[derive(Debug, Clone, Default)]
pub struct PodmanOpts {
    /// `--annotation K=V`
    pub annotations: Vec<(String, String)>,
    /// `podman --hooks-dir DIR`; without it an empty test-owned directory, so no
    /// machine-wide hook applies
    pub hooks_dir: Option<PathBuf>,
    /// more `podman run` arguments (`--ip 10.88.0.77`...), before `--rootfs`
    pub args: Vec<String>,
}

/// A container `crh-<tag>-<pid>-<n>` running `sleep 100000` from the busybox rootfs with
/// runc on Podman's default network; `podman rm -f -t 0` of its name on `Drop`.
#[derive(Debug)]
pub struct PodmanContainer {
    name: String,
    hooks_dir: PathBuf,
    /// the empty hooks directory when none was given
    _own_hooks: Option<TempDir>,
    rootfs: Arc<BusyboxRootfs>,
}

impl PodmanContainer {
    /// Runs the container (`podman run -d`); panics with podman's stderr if it does not start
    /// (the container is removed all the same).
    pub fn run(tag: &str, opts: &PodmanOpts) -> PodmanContainer {
        let c = PodmanContainer::create(tag, opts);
        let out = c.run_output(opts);
        check_output(&format!("podman run {}", c.name), &out);
        c
    }

    /// Runs the container and returns what `podman run -d` printed, whether or not it
    /// started; the container is removed on `Drop` either way.
    pub fn try_run(tag: &str, opts: &PodmanOpts) -> (PodmanContainer, Output) {
        let c = PodmanContainer::create(tag, opts);
        let out = c.run_output(opts);
        (c, out)
    }

    fn create(tag: &str, opts: &PodmanOpts) -> PodmanContainer {
        require_root();
        podman_bin();
        let (hooks_dir, own) = match &opts.hooks_dir {
            Some(d) => (d.clone(), None),
            None => {
                let t = TempDir::new("hooks");
                (t.path().to_path_buf(), Some(t))
            }
        };
        PodmanContainer {
            name: unique_name(tag),
            hooks_dir,
            _own_hooks: own,
            rootfs: BusyboxRootfs::shared(),
        }
    }

    fn run_output(&self, opts: &PodmanOpts) -> Output {
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &self.name,
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in &opts.annotations {
            args.push("--annotation".into());
            args.push(format!("{k}={v}"));
        }
        args.extend(opts.args.iter().cloned());
        args.push("--rootfs".into());
        args.push(self.rootfs.path().display().to_string());
        args.extend(["sleep".to_string(), "100000".to_string()]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        self.podman_output(&argv)
    }

    /// A `podman` command with this container's hooks directory and a fixed PATH.
    pub fn podman(&self, args: &[&str]) -> Command {
        let mut c = Command::new(podman_bin());
        c.arg("--hooks-dir").arg(&self.hooks_dir).args(args);
        c.env("PATH", PATH).stdin(Stdio::null());
        c
    }

    fn podman_output(&self, args: &[&str]) -> Output {
        self.podman(args)
            .output()
            .unwrap_or_else(|e| panic!("spawn podman {}: {e}", args.join(" ")))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `podman inspect --type container NAME`, the one object.
    pub fn inspect(&self) -> Value {
        let out = self.podman_output(&["inspect", "--type", "container", &self.name]);
        let text = check_output(&format!("podman inspect {}", self.name), &out);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("podman inspect {}: bad JSON: {e}\n{text}", self.name));
        v.get(0)
            .cloned()
            .unwrap_or_else(|| panic!("podman inspect {}: empty answer", self.name))
    }

    fn field(&self, pointer: &str) -> Value {
        let v = self.inspect();
        v.pointer(pointer)
            .cloned()
            .unwrap_or_else(|| panic!("podman inspect {}: no {pointer}", self.name))
    }

    fn string(&self, pointer: &str) -> String {
        match self.field(pointer) {
            Value::String(s) if !s.is_empty() => s,
            other => panic!("podman inspect {}: {pointer} is {other}", self.name),
        }
    }

    /// The container's init (host pid); panics unless it runs.
    pub fn pid(&self) -> u32 {
        let pid = self.field("/State/Pid").as_u64().unwrap_or(0);
        let pid = u32::try_from(pid).unwrap_or(0);
        assert!(pid != 0, "container {} is not running", self.name);
        pid
    }

    /// The address netavark gave `eth0` (Podman's record).
    pub fn ip(&self) -> String {
        self.string("/NetworkSettings/IPAddress")
    }

    pub fn mac(&self) -> String {
        self.string("/NetworkSettings/MacAddress")
    }

    pub fn gateway(&self) -> String {
        self.string("/NetworkSettings/Gateway")
    }

    pub fn status(&self) -> String {
        self.string("/State/Status")
    }

    /// `/proc/PID/ns/net` of the running container.
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    /// Podman's per-container directory (`.../overlay-containers/ID/userdata`): config.json,
    /// `checkpoint/`, CRIU's `dump.log` and `restore.log`.
    pub fn userdata(&self) -> PathBuf {
        PathBuf::from(self.string("/StaticDir"))
    }

    /// crhook's images inside Podman's checkpoint.
    pub fn checkpoint_netstate(&self) -> PathBuf {
        self.userdata().join("checkpoint/netstate")
    }

    /// The tail of CRIU's log `name` (`dump.log`, `restore.log`), or what prevented reading it.
    pub fn criu_log_tail(&self, name: &str, lines: usize) -> String {
        let path = self.userdata().join(name);
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                let all: Vec<&str> = t.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Err(e) => format!("(cannot read {}: {e})", path.display()),
        }
    }

    /// `podman container checkpoint [ARGS] NAME`, whatever its exit status.
    pub fn checkpoint(&self, args: &[&str]) -> Output {
        let mut argv = vec!["container", "checkpoint"];
        argv.extend_from_slice(args);
        argv.push(&self.name);
        self.podman_output(&argv)
    }

    /// `podman container restore [ARGS] NAME`, whatever its exit status.
    pub fn restore(&self, args: &[&str]) -> Output {
        let mut argv = vec!["container", "restore"];
        argv.extend_from_slice(args);
        argv.push(&self.name);
        self.podman_output(&argv)
    }

    /// Panics with podman's output and the tail of CRIU's `log` unless `out` succeeded.
    pub fn expect_ok(&self, what: &str, out: &Output, log: &str) {
        if !out.status.success() {
            panic!(
                "{what} {}: {}\nstdout: {}\nstderr: {}\n{log} (tail):\n{}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stdout).trim_end(),
                String::from_utf8_lossy(&out.stderr).trim_end(),
                self.criu_log_tail(log, 40)
            );
        }
    }

    /// The container's namespace under a test name (see [`attach`]). Make it again after a
    /// restore: the restored container lives in a new namespace.
    pub fn attach(&self, tag: &str) -> TestNs {
        attach(tag, self.pid())
    }

    /// Removes the container now (`podman rm -f -t 0`), loudly.
    pub fn remove(self) {
        let out = self.podman_output(&["rm", "-f", "-t", "0", &self.name]);
        check_output(&format!("podman rm -f {}", self.name), &out);
    }
}

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        // Removing a container that is already gone fails; that is fine here.
        let out = self
            .podman(&["rm", "-f", "-t", "0", "--ignore", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "cleanup: podman rm -f {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim_end()
            ),
            Err(e) => eprintln!("cleanup: podman rm -f {}: {e}", self.name),
        }
    }
}

/// Names the network namespace of `pid` under /run/netns as a [`TestNs`], so the harness's
/// readers and `ip -n` work on it. TestNs only makes fresh namespaces, so a fresh one's name
/// is re-pointed at the process's namespace with `ip netns attach`; dropping it removes the
/// name only, the namespace lives as long as the process.
pub fn attach(tag: &str, pid: u32) -> TestNs {
    let ns = TestNs::new(tag);
    let ip = |args: &[&str]| {
        let out = Command::new(ip_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn ip {}: {e}", args.join(" ")));
        check_output(&format!("ip {}", args.join(" ")), &out);
    };
    ip(&["netns", "del", ns.name()]);
    ip(&["netns", "attach", ns.name(), &pid.to_string()]);
    let ino = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
            .ino()
    };
    assert_eq!(
        ino(&ns.path()),
        ino(Path::new(&format!("/proc/{pid}/ns/net"))),
        "{} names the namespace of pid {pid}",
        ns.name()
    );
    ns
}
