//! `ip monitor` inside a test namespace, to prove that an operation changed nothing (or
//! deleted nothing) rather than deleting and re-adding equal objects.
//!
//! A monitor is only useful once it is subscribed, and the spawn returns before that. So
//! start and stop are both fenced by a marker: a rule with an unusual priority is added and
//! deleted, and the monitor is ready (or has seen everything before the stop) once its
//! deletion shows up. Marker lines are dropped from what [`Monitor::stop`] returns.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{ip_bin, wait_until, TestNs};

/// The marker rule's priority and table: rare enough not to meet a fixture's rules.
const MARKER: &str = "31977";

/// A running `ip -n NS monitor OBJECTS...`, killed on `Drop`.
#[derive(Debug)]
pub struct Monitor<'a> {
    ns: &'a TestNs,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl<'a> Monitor<'a> {
    /// Starts monitoring `objects` (`link`, `address`, `route`, `rule`, ...) in `ns`; returns
    /// once events are being received. `rule` is always monitored too (for the marker).
    pub fn start(ns: &'a TestNs, objects: &[&str]) -> Monitor<'a> {
        let mut args = vec!["-n", ns.name(), "monitor"];
        args.extend_from_slice(objects);
        if !objects.contains(&"rule") {
            args.push("rule");
        }
        let mut child = Command::new(ip_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ip {}: {e}", args.join(" ")));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("monitor lines").push(line);
            }
        });
        let m = Monitor { ns, child, lines };
        m.fence();
        m.lines.lock().expect("monitor lines").clear();
        m
    }

    /// Adds and deletes the marker rule and waits for the deletion to be seen.
    fn fence(&self) {
        self.ns
            .ip(&["rule", "add", "pref", MARKER, "lookup", MARKER]);
        self.ns.ip(&["rule", "del", "pref", MARKER]);
        wait_until(
            &format!("ip monitor in {} to see its marker", self.ns.name()),
            Duration::from_secs(10),
            || {
                self.lines
                    .lock()
                    .expect("monitor lines")
                    .iter()
                    .any(|l| l.starts_with("Deleted") && l.contains(MARKER))
            },
        );
    }

    /// Every event line since `start`, marker lines excluded.
    pub fn stop(mut self) -> Vec<String> {
        self.fence();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = self.lines.lock().expect("monitor lines");
        lines
            .iter()
            .filter(|l| !l.contains(MARKER))
            .cloned()
            .collect()
    }
}

impl Drop for Monitor<'_> {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
