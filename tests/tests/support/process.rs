//! Processes for the hook and CLI tests: a stand-in for a container's init living in a test
//! namespace, and the start time runc records for a pid.

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crhook_tests::{ip_bin, wait_until, TestNs};

/// A process living in `ns` (the container's init, for a hook or a runtime state), killed on
/// drop.
pub struct Sleeper(Child);

impl Sleeper {
    pub fn start(ns: &TestNs) -> Sleeper {
        let child = Command::new(ip_bin())
            .args(["netns", "exec", ns.name(), "/bin/sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn a sleeper in {}: {e}", ns.name()));
        let s = Sleeper(child);
        // `ip netns exec` enters the namespace, then execs sleep in the same process
        let want = std::fs::metadata(ns.path())
            .unwrap_or_else(|e| panic!("stat {}: {e}", ns.path().display()))
            .ino();
        wait_until(
            "the sleeper to enter its namespace",
            Duration::from_secs(10),
            || {
                std::fs::metadata(format!("/proc/{}/ns/net", s.pid()))
                    .map(|m| m.ino() == want)
                    .unwrap_or(false)
            },
        );
        s
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start time of `pid` in clock ticks since boot: field 22 of /proc/PID/stat, counted after
/// the last ')' because the command name may hold spaces and parentheses.
#[allow(dead_code)] // used by one of the two test crates that include this file
pub fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    rest.split_whitespace()
        .nth(19)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("/proc/{pid}/stat: no start time"))
}
