//! `StatsRecorder`: collects what a checkpoint or restore did and how long each phase took,
//! into the `Stats` message stored as `stats-dump.img` / `stats-restore.img`.
//!
//! Durations are whole microseconds (saturating); phases keep the order they ran in, and a
//! phase recorded twice under one name is added up, so loops can time themselves piecewise.
//! Every finished phase is also a progress event ([`PROGRESS_TARGET`]), so a front end can
//! show a long checkpoint or restore as it goes without the library printing anything.

use std::time::{Duration, Instant};

use crhook_proto::{Phase, Stats};

/// The tracing target of progress events: `step` (what runs now), `phase` (a phase that
/// finished), `kind` with `count` (objects handled). A front end may show them (the binary's
/// spinner); logs leave them out. Emitted at TRACE, so nobody pays for them unasked.
pub const PROGRESS_TARGET: &str = "crhook::progress";

/// A `/proc/self/status` line's value in KiB (`VmRSS:`, `VmHWM:`), for the debug log.
fn memory(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Accumulates a `Stats` message; the clock for `total_us` starts at `new()`.
#[derive(Debug)]
pub struct StatsRecorder {
    started: Instant,
    stats: Stats,
}

impl Default for StatsRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsRecorder {
    pub fn new() -> Self {
        Self::since(Instant::now())
    }

    /// A recorder whose clock for `total_us` started at `started`: work done before it
    /// existed (a restore's read of its images) counts in the total.
    pub fn since(started: Instant) -> Self {
        StatsRecorder {
            started,
            stats: Stats::default(),
        }
    }

    /// Adds `d` to the phase `name` (created at the end of the list the first time).
    pub fn phase(&mut self, name: impl Into<String>, d: Duration) {
        let name = name.into();
        tracing::trace!(target: PROGRESS_TARGET, phase = %name);
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(phase = %name, rss_kib = ?memory("VmRSS:"), hwm_kib = ?memory("VmHWM:"), "memory after phase");
        }
        let us = micros(d);
        match self.stats.phases.iter_mut().find(|p| p.name == name) {
            Some(p) => p.duration_us = p.duration_us.saturating_add(us),
            None => self.stats.phases.push(Phase {
                name,
                duration_us: us,
            }),
        }
    }

    /// Runs `f`, recording its wall time as phase `name`, and returns what it returned.
    pub fn time<T>(&mut self, name: impl Into<String>, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.phase(name, t.elapsed());
        out
    }

    /// Starts a timer to hand to [`StatsRecorder::end`], for phases that span awaits or
    /// borrow the recorder in between.
    pub fn start(&self, name: impl Into<String>) -> PhaseTimer {
        PhaseTimer {
            name: name.into(),
            started: Instant::now(),
        }
    }

    /// Records a timer started with [`StatsRecorder::start`].
    pub fn end(&mut self, timer: PhaseTimer) {
        self.phase(timer.name, timer.started.elapsed());
    }

    /// Adds `n` objects of `kind` ("links", "routes", ...).
    pub fn count(&mut self, kind: &str, n: u64) {
        let c = self.stats.counts.entry(kind.to_string()).or_insert(0);
        *c = c.saturating_add(n);
    }

    pub fn add_netlink_requests(&mut self, n: u64) {
        self.stats.netlink_requests = self.stats.netlink_requests.saturating_add(n);
    }

    /// Adds image bytes written.
    pub fn add_bytes(&mut self, n: u64) {
        self.stats.bytes_written = self.stats.bytes_written.saturating_add(n);
    }

    /// Adds image bytes read.
    pub fn add_bytes_read(&mut self, n: u64) {
        self.stats.bytes_read = self.stats.bytes_read.saturating_add(n);
    }

    /// Records a problem that was tolerated.
    pub fn warn(&mut self, msg: String) {
        self.stats.warnings = self.stats.warnings.saturating_add(1);
        self.stats.warning_messages.push(msg);
    }

    /// How long the namespace's network was locked.
    pub fn set_locked(&mut self, d: Duration) {
        self.stats.locked_us = micros(d);
    }

    /// The stats so far (total_us not yet set).
    pub fn current(&self) -> &Stats {
        &self.stats
    }

    /// The finished message, `total_us` measured from `new()`.
    pub fn finish(mut self) -> Stats {
        self.stats.total_us = micros(self.started.elapsed());
        self.stats
    }
}

/// A running phase; see [`StatsRecorder::start`].
#[derive(Debug)]
pub struct PhaseTimer {
    name: String,
    started: Instant,
}

/// Stats as JSON for `--print-stats`: phases as an ordered list, counts as an object.
pub fn stats_json(s: &Stats) -> serde_json::Value {
    let phases: Vec<serde_json::Value> = s
        .phases
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "us": p.duration_us}))
        .collect();
    serde_json::json!({
        "total_us": s.total_us,
        "locked_us": s.locked_us,
        "phases": phases,
        "counts": s.counts,
        "bytes_written": s.bytes_written,
        "bytes_read": s.bytes_read,
        "netlink_requests": s.netlink_requests,
        "warnings": s.warnings,
        "warning_messages": s.warning_messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_counts_from_when_the_work_began() {
        let began = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let s = StatsRecorder::since(began).finish();
        assert!(s.total_us >= 20_000, "total {} us", s.total_us);
    }

    #[test]
    fn records_everything() {
        let mut r = StatsRecorder::new();
        r.phase("links", Duration::from_micros(10));
        r.phase("routes", Duration::from_micros(5));
        r.phase("links", Duration::from_micros(1));
        let x = r.time("write", || 7);
        assert_eq!(x, 7);
        let t = r.start("fsync");
        r.end(t);
        r.count("links", 2);
        r.count("links", 1);
        r.add_netlink_requests(3);
        r.add_bytes(100);
        r.add_bytes_read(50);
        r.warn("tun file skipped".into());
        r.set_locked(Duration::from_millis(2));
        let s = r.finish();
        let names: Vec<&str> = s.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["links", "routes", "write", "fsync"]);
        assert_eq!(s.phases[0].duration_us, 11);
        assert_eq!(s.counts.get("links"), Some(&3));
        assert_eq!(s.netlink_requests, 3);
        assert_eq!(s.bytes_written, 100);
        assert_eq!(s.warnings, 1);
        assert_eq!(s.locked_us, 2000);
        let j = stats_json(&s);
        assert_eq!(j["phases"][1]["name"], "routes");
        assert_eq!(j["counts"]["links"], 3);
        assert_eq!(j["warning_messages"][0], "tun file skipped");
    }

    #[test]
    fn huge_durations_saturate() {
        assert_eq!(micros(Duration::MAX), u64::MAX);
    }
}
