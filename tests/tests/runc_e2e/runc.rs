//! runc for the end-to-end tests: a private state root, runs inside the test's host
//! namespace, busybox bundles, and naming a container's namespace for the harness.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crhook_netstate::NetNs;
use crhook_tests::{ip_bin, TempDir, TestNs};
use serde_json::{json, Value};

pub fn find(name: &str, dirs: &[&str]) -> PathBuf {
    dirs.iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found in {dirs:?}; install it (.ci/install-deps)"))
}

pub fn runc_bin() -> PathBuf {
    find(
        "runc",
        &["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"],
    )
}

pub fn busybox_bin() -> PathBuf {
    find("busybox", &["/bin", "/usr/bin"])
}

pub use crhook_tests::ns::check_output as check;

/// runc with its own state root, run inside the test's host namespace.
pub struct Runc {
    root: TempDir,
    host: NetNs,
    pub env: Vec<(String, String)>,
}

impl Runc {
    pub fn new(host: &TestNs) -> Runc {
        Runc {
            root: TempDir::new("runc-root"),
            host: NetNs::open_path(&host.path()).unwrap(),
            env: Vec::new(),
        }
    }

    pub fn root(&self) -> String {
        self.root.path().display().to_string()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.host.command(&runc_bin()).unwrap();
        c.arg("--root")
            .arg(self.root.path())
            .arg("--log")
            .arg(self.log())
            .args(args);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.env_clear().env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        check(&format!("runc {}", args.join(" ")), &out)
    }

    pub fn log(&self) -> PathBuf {
        self.root.path().join("runc.log")
    }

    /// Runs a detached `runc run -d` or `runc restore -d`. The container inherits runc's
    /// stdio, so all three are /dev/null: a pipe would keep `output()` waiting for the
    /// container, and CRIU cannot dump a descriptor of a file outside the container's mounts
    /// (it handles /dev/null). runc's own errors go to its `--log`, shown on failure.
    pub fn detached(&self, args: &[&str]) {
        if let Err(e) = self.try_detached(args) {
            panic!("{e}");
        }
    }

    /// [`Runc::detached`] that returns the failure (with the tail of runc's log) instead.
    pub fn try_detached(&self, args: &[&str]) -> Result<(), String> {
        let status = self
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        Err(format!(
            "runc {}: {status}\nrunc log:\n{}",
            args.join(" "),
            tail(&log, 30)
        ))
    }

    pub fn start(&self, bundle: &Path, id: &str) -> Container<'_> {
        let c = Container {
            runc: self,
            id: id.to_string(),
        };
        self.detached(&["run", "-d", "--bundle", &bundle.display().to_string(), id]);
        c
    }

    pub fn pid(&self, id: &str) -> u32 {
        let state: Value = serde_json::from_str(&self.run(&["state", id])).unwrap();
        u32::try_from(state["pid"].as_u64().unwrap()).unwrap()
    }
}

/// `runc checkpoint` / `runc restore` of one container through CRIU, with crhook as the
/// action script writing its log to `crhook_log`. A failure shows runc's error, crhook's log
/// and the tail of CRIU's.
pub struct Criu<'a> {
    pub runc: &'a Runc,
    pub images: PathBuf,
    pub work: PathBuf,
    pub crhook_log: PathBuf,
}

impl Criu<'_> {
    /// crhook's image directory inside CRIU's.
    pub fn netstate(&self) -> PathBuf {
        self.images.join("netstate")
    }

    fn fail(&self, what: &str, criu_log: &str) -> ! {
        let crhook_log = std::fs::read_to_string(&self.crhook_log).unwrap_or_default();
        let criu = std::fs::read_to_string(self.work.join(criu_log)).unwrap_or_default();
        let errors: Vec<&str> = criu.lines().filter(|l| l.contains("Error")).collect();
        panic!(
            "{what}\ncrhook log:\n{crhook_log}\n{criu_log} errors:\n{}\n{criu_log} (tail):\n{}",
            errors.join("\n"),
            tail(&criu, 40)
        );
    }

    /// Checkpoints `id` (the container stops) and checks that crhook's images are complete.
    pub fn checkpoint(&self, id: &str) {
        self.checkpoint_with(id, &[]);
    }

    /// [`Criu::checkpoint`] with more runc arguments (`--pre-dump`, `--parent-path DIR`).
    pub fn checkpoint_with(&self, id: &str, extra: &[&str]) {
        let (i, w) = (
            self.images.display().to_string(),
            self.work.display().to_string(),
        );
        let mut args = vec!["checkpoint", "--image-path", &i, "--work-path", &w];
        args.extend_from_slice(extra);
        args.push(id);
        let out = self.runc.cmd(&args).output().unwrap();
        if !out.status.success() {
            let what = format!(
                "runc checkpoint {id}: {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            self.fail(&what, "dump.log");
        }
        let netstate = self.netstate();
        if let Err(e) = crhook_core::ImageDir::open(&netstate) {
            self.fail(
                &format!("images at {}: {e}", netstate.display()),
                "dump.log",
            );
        }
    }

    /// Restores `id` from the checkpoint, detached, with `bundle`'s configuration.
    pub fn restore(&self, id: &str, bundle: &Path) {
        let (i, w) = (
            self.images.display().to_string(),
            self.work.display().to_string(),
        );
        let b = bundle.display().to_string();
        let args = [
            "restore",
            "-d",
            "--image-path",
            &i,
            "--work-path",
            &w,
            "--bundle",
            &b,
            id,
        ];
        if let Err(e) = self.runc.try_detached(&args) {
            self.fail(&e, "restore.log");
        }
    }
}

/// A container, killed and deleted on drop.
pub struct Container<'a> {
    runc: &'a Runc,
    id: String,
}

impl Container<'_> {
    pub fn pid(&self) -> u32 {
        self.runc.pid(&self.id)
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = self.runc.cmd(&["delete", "-f", &self.id]).output();
    }
}

/// A bundle: busybox rootfs, `runc spec` edited to run `sleep 1000` without a terminal in
/// fresh namespaces (the network one without a path: runc creates it).
pub fn make_bundle(dir: &Path) -> PathBuf {
    let bundle = dir.join("bundle");
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox_bin(), bin.join("busybox")).unwrap();
    for applet in ["sh", "sleep", "ip", "ping", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    check(
        "runc spec",
        &Command::new(runc_bin())
            .arg("spec")
            .arg("--bundle")
            .arg(&bundle)
            .output()
            .unwrap(),
    );
    edit_config(&bundle, |c| {
        c["process"]["terminal"] = json!(false);
        c["process"]["args"] = json!(["sleep", "1000"]);
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "network");
        ns.push(json!({"type": "network"}));
    });
    bundle
}

pub fn edit_config(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let path = bundle.join("config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
}

/// A name for the namespace of `pid` under /run/netns, as a TestNs (so the harness's state
/// reader and `ip -n` work on it). TestNs only makes fresh namespaces, so a fresh one's name
/// is re-pointed at the container's namespace with `ip netns attach`; dropping it removes
/// the name only, the namespace lives as long as the container.
pub fn attach(tag: &str, pid: u32) -> TestNs {
    let ns = TestNs::new(tag);
    let ip = |args: &[&str]| {
        check(
            &format!("ip {}", args.join(" ")),
            &Command::new(ip_bin()).args(args).output().unwrap(),
        )
    };
    ip(&["netns", "del", ns.name()]);
    ip(&["netns", "attach", ns.name(), &pid.to_string()]);
    let want = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .unwrap()
        .ino();
    assert_eq!(
        std::fs::metadata(ns.path()).unwrap().ino(),
        want,
        "attached the container's namespace"
    );
    ns
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
