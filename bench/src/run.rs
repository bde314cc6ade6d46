//! Running one program and measuring it: wall time from spawn to reap, and the child's
//! rusage from `wait4` (max RSS, user and system CPU).
//!
//! `wait4` reports for the child the maximum of its own peak RSS and that of every
//! descendant it reaped, so crhook's number includes the iptables-save/restore processes it
//! runs. Each baseline step is its own child and is measured alone. For crhook, a sampler
//! thread also reads the child's own `VmHWM` from /proc every 5 ms: the high-water mark of
//! its memory alone, as of the last read before it exits.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Set by the SIGINT handler. Children get the same SIGINT from the terminal and die, the
/// step fails, and the error unwinds through the namespace guards, which delete everything.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM instead of dying at once with namespaces left behind. A caught
/// signal's disposition resets to default across exec, so children still die of it.
pub fn install_signal_handlers() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is zeroed (empty mask, no SA_RESTART, so a blocked wait4 returns
        // EINTR and the loop below sees the flag) and then filled in before use.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("install signal handler");
        }
    }
    Ok(())
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// What one child cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct Measured {
    pub wall: Duration,
    pub cpu: Duration,
    pub maxrss_kb: u64,
    /// the process's own VmHWM (KiB) as last sampled, 0 when not sampled
    pub own_hwm_kb: u64,
    /// exit code, or 128 + signal number
    pub code: i32,
}

impl Measured {
    /// Sequential steps: times add up, memory is the largest single peak.
    pub fn then(self, other: Measured) -> Measured {
        Measured {
            wall: self.wall + other.wall,
            cpu: self.cpu + other.cpu,
            maxrss_kb: self.maxrss_kb.max(other.maxrss_kb),
            own_hwm_kb: self.own_hwm_kb.max(other.own_hwm_kb),
            code: if self.code != 0 {
                self.code
            } else {
                other.code
            },
        }
    }
}

/// Where a child's standard streams go.
pub struct Io<'a> {
    pub stdin: Option<&'a Path>,
    pub stdout: Option<&'a Path>,
    /// stderr is always written here, and shown when the child fails
    pub stderr: &'a Path,
}

fn open_out(path: Option<&Path>) -> Result<Stdio> {
    Ok(match path {
        Some(p) => File::create(p)
            .with_context(|| format!("create {}", p.display()))?
            .into(),
        None => Stdio::null(),
    })
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// Spawns `cmd` with `io`, reaps it with `wait4` and returns what it cost. `allowed` lists
/// exit codes that count as success (most tools: `[0]`; `diff`: `[0, 1]`).
pub fn measure(what: &str, cmd: &mut Command, io: &Io<'_>, allowed: &[i32]) -> Result<Measured> {
    measure_inner(what, cmd, io, allowed, false)
}

/// [`measure`], also sampling the child's own VmHWM.
pub fn measure_own_peak(
    what: &str,
    cmd: &mut Command,
    io: &Io<'_>,
    allowed: &[i32],
) -> Result<Measured> {
    measure_inner(what, cmd, io, allowed, true)
}

/// VmHWM of `pid` in KiB; `None` once it has exited (a zombie's status has no Vm lines).
fn vm_hwm_kb(pid: libc::pid_t) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reads the VmHWM of `pid` every 5 ms until `stop`, and returns the last value read: the
/// mark only rises within one program, and keeping the last rather than the largest value
/// leaves out a read made between fork and exec, which sees this harness's memory.
fn sample_hwm(pid: libc::pid_t, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut last = 0;
        while !stop.load(Ordering::SeqCst) {
            if let Some(kb) = vm_hwm_kb(pid) {
                last = kb;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        last
    })
}

fn measure_inner(
    what: &str,
    cmd: &mut Command,
    io: &Io<'_>,
    allowed: &[i32],
    own_peak: bool,
) -> Result<Measured> {
    check_interrupted()?;
    let stdin = match io.stdin {
        Some(p) => File::open(p)
            .with_context(|| format!("open {}", p.display()))?
            .into(),
        None => Stdio::null(),
    };
    cmd.stdin(stdin)
        .stdout(open_out(io.stdout)?)
        .stderr(open_out(Some(io.stderr))?);
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("spawn {what}"))?;
    let pid = libc::pid_t::try_from(child.id()).with_context(|| format!("pid of {what}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = own_peak.then(|| sample_hwm(pid, stop.clone()));
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value that wait4 overwrites.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child (std never waits on it: the Child is
        // dropped below without wait); status and ru are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            stop.store(true, Ordering::SeqCst);
            return Err(err).with_context(|| format!("wait for {what}"));
        }
    }
    let wall = start.elapsed();
    stop.store(true, Ordering::SeqCst);
    let own_hwm_kb = sampler.map(|h| h.join().unwrap_or(0)).unwrap_or(0);
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let m = Measured {
        wall,
        cpu: timeval(ru.ru_utime) + timeval(ru.ru_stime),
        maxrss_kb: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        own_hwm_kb,
        code,
    };
    check_interrupted()?;
    if !allowed.contains(&code) {
        let err = std::fs::read_to_string(io.stderr).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{what}: exit status {code}: {}", tail.join(" | "));
    }
    Ok(m)
}

/// Sum of the sizes of the regular files under `path` (a file or a directory tree).
pub fn disk_bytes(path: &Path) -> Result<u64> {
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if meta.is_file() {
        return Ok(meta.len());
    }
    if !meta.is_dir() {
        return Ok(0);
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("list {}", path.display()))? {
        let entry = entry.with_context(|| format!("list {}", path.display()))?;
        total += disk_bytes(&entry.path())?;
    }
    Ok(total)
}
