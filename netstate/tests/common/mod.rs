//! What the privileged tests of crhook-netstate share: a named test namespace that is removed
//! on drop, and a root check that fails loudly. (The workspace's integration tests in tests/
//! have a richer harness; these tests stay inside the library crate and need only this.)

#![allow(dead_code)]

pub mod nft;

use std::path::PathBuf;
use std::process::Command;

use crhook_netstate::NetNs;

pub const IP: &str = "/usr/bin/ip";

/// Panics unless running as root: these tests make namespaces, links and firewall rules.
pub fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(uid, 0, "{what} need root (network namespaces)");
}

/// `ip netns add crh-<prefix>-<tag>-<pid>`, deleted on drop.
pub struct TestNs {
    pub name: String,
}

impl TestNs {
    pub fn new(prefix: &str, tag: &str) -> TestNs {
        require_root("privileged netstate tests");
        let name = format!("crh-{prefix}-{tag}-{}", std::process::id());
        let _ = Command::new(IP)
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let st = Command::new(IP)
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        TestNs { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    pub fn ns(&self) -> NetNs {
        NetNs::open_path(&self.path()).expect("open test namespace")
    }

    /// Runs a shell script inside the namespace; panics with its stderr on failure.
    pub fn sh(&self, script: &str) -> String {
        let out = Command::new(IP)
            .args(["netns", "exec", &self.name, "/bin/sh", "-c", script])
            .output()
            .expect("run ip netns exec");
        assert!(
            out.status.success(),
            "in {}: {script}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a shell script inside the namespace succeeds.
    pub fn ok(&self, script: &str) -> bool {
        Command::new(IP)
            .args(["netns", "exec", &self.name, "/bin/sh", "-c", script])
            .output()
            .expect("run ip netns exec")
            .status
            .success()
    }

    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path())
            .expect("stat namespace")
            .ino()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new(IP).args(["netns", "del", &self.name]).status();
    }
}
