//! Benchmark namespaces: named `crh-bench-<pid>-<tag>`, made with `ip netns add`, deleted on
//! `Drop`; and waiting for the machine to go quiet between timed runs.
//!
//! Deleting a namespace returns at once, but the kernel tears it down afterwards on a
//! workqueue (`cleanup_net`): with 2,000 veths and 100,000 routes that is seconds of work on
//! a 2-core machine, partly under RTNL, which would be charged to whatever runs next. So a
//! namespace's links are deleted in this process first (one batch; the kernel returns once
//! they are gone, routes and neighbours with them), and [`quiesce`] waits until /proc/stat
//! shows both cores (nearly) idle.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use crhook_netstate::NetNs;

/// Absolute path of a program from the usual sbin/bin directories (no PATH lookup).
pub fn program(name: &str) -> Result<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
        .with_context(|| format!("find {name} in /usr/sbin, /sbin, /usr/bin or /bin"))
}

/// A named network namespace, deleted when dropped.
#[derive(Debug)]
pub struct BenchNs {
    name: String,
    ns: NetNs,
}

impl BenchNs {
    pub fn new(tag: &str) -> Result<BenchNs> {
        let name = format!("crh-bench-{}-{tag}", std::process::id());
        let ip = program("ip")?;
        let out = Command::new(&ip)
            .args(["netns", "add", &name])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("spawn ip netns add {name}"))?;
        if !out.status.success() {
            bail!(
                "ip netns add {name}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        // From here on the guard exists, so a failure below still deletes the namespace.
        let path = PathBuf::from(format!("/run/netns/{name}"));
        match NetNs::open_path(&path) {
            Ok(ns) => Ok(BenchNs { name, ns }),
            Err(e) => {
                delete(&name);
                Err(e).with_context(|| format!("open namespace {name}"))
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// A command whose child runs inside this namespace (setns between fork and exec, so no
    /// `ip netns exec` process and no mount namespace in between).
    pub fn command(&self, program: &std::path::Path) -> Result<Command> {
        self.ns
            .command(program)
            .with_context(|| format!("prepare {} in {}", program.display(), self.name))
    }
}

impl Drop for BenchNs {
    fn drop(&mut self) {
        if let Err(e) = self.empty() {
            eprintln!("crhook-bench: empty {}: {e:#}", self.name);
        }
        delete(&self.name);
    }
}

impl BenchNs {
    /// Deletes every link but lo, in this process: a namespace deleted with 1,000 links is
    /// torn down by the kernel in the background under RTNL for seconds, which the next
    /// measurement would pay for (the restores waited for it at L, the floor did not).
    fn empty(&self) -> Result<()> {
        let name = self.name.clone();
        self.ns.run(move || {
            let mut nl = crhook_netstate::nl::Nl::new(&name)?;
            let links = crhook_netstate::link::capture::dump(&mut nl)?;
            let reqs: Vec<_> = links
                .iter()
                .filter(|m| m.header.index != 1)
                .map(|m| crhook_netstate::link::create::delete_request(m.header.index))
                .collect();
            // a veth's partner goes with it: its own request then finds it gone, as expected
            nl.batch(&reqs, 0, "delete links").map(drop)
        })?;
        Ok(())
    }
}

/// Named namespaces of this process still in /run/netns: none once every guard is dropped.
pub fn leftovers() -> Result<Vec<String>> {
    let prefix = format!("crh-bench-{}-", std::process::id());
    let dir = std::path::Path::new("/run/netns");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut left = Vec::new();
    for entry in std::fs::read_dir(dir).context("list /run/netns")? {
        let name = entry.context("list /run/netns")?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) {
            left.push(name.into_owned());
        }
    }
    Ok(left)
}

fn delete(name: &str) {
    let Ok(ip) = program("ip") else {
        eprintln!("crhook-bench: cannot delete namespace {name}: ip not found");
        return;
    };
    match Command::new(ip)
        .args(["netns", "del", name])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => eprintln!(
            "crhook-bench: ip netns del {name}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => eprintln!("crhook-bench: spawn ip netns del {name}: {e}"),
    }
}

/// (busy, total) jiffies summed over all CPUs, from the first line of /proc/stat.
fn cpu_jiffies() -> Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let line = text.lines().next().unwrap_or_default();
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 5 {
        bail!("parse /proc/stat: unexpected first line {line:?}");
    }
    let total: u64 = fields.iter().sum();
    // idle and iowait
    let idle = fields[3] + fields[4];
    Ok((total - idle, total))
}

/// Waits until the CPUs have been under 15% busy over the last 300 ms (three 100 ms samples,
/// sliding), at most `limit`; returns whether it did. The window is summed rather than
/// each sample judged alone because /proc/stat counts in jiffies (10 ms at 100 Hz): one tick
/// of a background daemon is 5% of a 100 ms sample on 2 cores, and an idle machine rarely
/// shows three such samples in a row, while a namespace teardown keeps a whole core (50%)
/// busy. Gives up after the limit: a noisy machine makes a noisier benchmark, not a wrong
/// one, and the report says how often that happened.
pub fn quiesce(limit: Duration) -> Result<bool> {
    const WINDOW: usize = 3;
    let start = Instant::now();
    let mut window = std::collections::VecDeque::with_capacity(WINDOW);
    let (mut busy0, mut total0) = cpu_jiffies()?;
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(100));
        let (busy1, total1) = cpu_jiffies()?;
        if window.len() == WINDOW {
            window.pop_front();
        }
        window.push_back((busy1 - busy0, total1 - total0));
        (busy0, total0) = (busy1, total1);
        let (db, dt) = window
            .iter()
            .fold((0, 0), |(b, t), (db, dt)| (b + db, t + dt));
        if window.len() == WINDOW && dt > 0 && db * 100 < dt * 15 {
            return Ok(true);
        }
    }
    eprintln!(
        "crhook-bench: machine still busy after {:.0} s, going on",
        limit.as_secs_f64()
    );
    Ok(false)
}
