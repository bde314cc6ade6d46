//! Finding and running the firewall programs.
//!
//! OCI hooks may run with an empty environment, so nothing here consults `PATH`: every tool is
//! probed in the usual system directories and run by absolute path, with an explicit
//! environment, inside the target namespace (the child enters it between fork and exec), with
//! stdin either null or fully written and closed, stderr captured into the error, and a
//! deadline after which the child's whole process group is killed (a `CR_IPTABLES` shell may
//! leave children behind that hold the pipes open).

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// How long any one firewall program may run (iptables-nft-restore takes about 1 s per 50,000
/// rules; the xtables lock wait is bounded by this too).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

/// `PATH` given to children: tools such as iptables exec helpers (modprobe), and a
/// `CR_IPTABLES` command names its programs without a path.
const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// First existing executable called `name` in the system directories.
pub(crate) fn find(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    DIRS.iter().map(|d| Path::new(d).join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Which iptables implementation a save/restore pair drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Backend {
    Nft,
    Legacy,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn cr_name(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }

    /// nftables family of the tables iptables-nft makes for this family
    pub(crate) fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// A save/restore program pair of one backend and family.
#[derive(Debug, Clone)]
pub(crate) struct Xtables {
    pub save: PathBuf,
    pub restore: PathBuf,
    pub backend: Backend,
    pub family: Family,
}

impl Xtables {
    /// Probes `iptables-nft-save` / `iptables-legacy-save` first; the unsuffixed names are
    /// used when they resolve to the wanted backend (Debian's alternatives point them at
    /// either; iptables before 1.8 has only the legacy backend, unsuffixed).
    pub(crate) fn probe(backend: Backend, family: Family) -> Option<Xtables> {
        let p = family.prefix();
        let suffix = match backend {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        };
        if let (Some(save), Some(restore)) = (
            find(&format!("{p}-{suffix}-save")),
            find(&format!("{p}-{suffix}-restore")),
        ) {
            return Some(Xtables {
                save,
                restore,
                backend,
                family,
            });
        }
        let save = find(&format!("{p}-save"))?;
        let restore = find(&format!("{p}-restore"))?;
        let is_nft = std::fs::canonicalize(&save)
            .ok()
            .and_then(|c| c.file_name().map(|n| n.to_string_lossy().contains("nft")))
            .unwrap_or(false);
        (is_nft == (backend == Backend::Nft)).then_some(Xtables {
            save,
            restore,
            backend,
            family,
        })
    }

    /// Human name of what this pair saves, as errors and warnings name it.
    /// Feeds `script` to `<tool>-restore -w --noflush` in `ns`: changes that leave the rest of
    /// the tables alone (the lock, its removal, tidying). `what` names the change in errors.
    pub(crate) fn apply_noflush(&self, ns: &NetNs, script: &str, what: &str) -> Result<()> {
        let purpose = format!("{what} with {}:", self.label());
        Run {
            program: &self.restore,
            args: &["-w", "--noflush"],
            env: &[],
            stdin: Some(script.as_bytes()),
            purpose: &purpose,
        }
        .run(ns)
        .map(drop)
    }

    pub(crate) fn label(&self) -> String {
        match self.backend {
            Backend::Nft => format!("{}-nft", self.family.prefix()),
            Backend::Legacy => format!("{}-legacy", self.family.prefix()),
        }
    }
}

/// One program run: what to run, with which arguments, environment and stdin.
pub(crate) struct Run<'a> {
    pub program: &'a Path,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    pub stdin: Option<&'a [u8]>,
    /// what the run is for, leading the error message ("check iptables-nft ruleset with")
    pub purpose: &'a str,
}

/// What a finished run printed.
pub(crate) struct Output {
    pub stdout: String,
}

impl Run<'_> {
    /// Runs the program in `ns`; a non-zero exit, a signal or the timeout is an error that
    /// names the purpose, program, namespace and the program's stderr.
    pub(crate) fn run(&self, ns: &NetNs) -> Result<Output> {
        self.run_with(ns, TIMEOUT)
    }

    pub(crate) fn run_with(&self, ns: &NetNs, timeout: Duration) -> Result<Output> {
        self.finish(ns, self.run_raw(ns, timeout, false)?)
    }

    /// [`Run::run`] for the user's own command (`CR_IPTABLES`): it gets crhook's environment,
    /// as CRIU gives it its own, plus `env`; `PATH` is set only when the environment has none
    /// (a hook may start with an empty one). The tools crhook runs itself get a clean one.
    pub(crate) fn run_user(&self, ns: &NetNs) -> Result<Output> {
        self.finish(ns, self.run_raw(ns, TIMEOUT, true)?)
    }

    fn finish(
        &self,
        ns: &NetNs,
        (status, stdout, stderr): (ExitStatus, String, String),
    ) -> Result<Output> {
        if !status.success() {
            return Err(self.error(ns, describe(status), &stderr));
        }
        Ok(Output { stdout })
    }

    pub(crate) fn error(&self, ns: &NetNs, status: String, stderr: &str) -> NetstateError {
        let mut program = String::new();
        if !self.purpose.is_empty() {
            program.push_str(self.purpose);
            program.push(' ');
        }
        program.push_str(&self.program.display().to_string());
        for a in self.args {
            program.push(' ');
            program.push_str(a);
        }
        NetstateError::Program {
            program,
            netns: ns.name().to_string(),
            status,
            stderr: one_line(stderr),
        }
    }

    fn run_raw(
        &self,
        ns: &NetNs,
        timeout: Duration,
        inherit_env: bool,
    ) -> Result<(ExitStatus, String, String)> {
        // the user's own command may write where it likes; crhook's tools get a read-only
        // filesystem but /run
        let mut cmd = if inherit_env {
            ns.command(self.program)?
        } else {
            ns.confined_command(self.program)?
        };
        cmd.args(self.args);
        if !inherit_env {
            cmd.env_clear().env("PATH", CHILD_PATH).env("LC_ALL", "C");
        } else if std::env::var_os("PATH").is_none_or(|p| p.is_empty()) {
            cmd.env("PATH", CHILD_PATH);
        }
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // own process group, so the timeout can kill whatever the child started
        .process_group(0);
        if let Some(dir) = std::env::var_os("XTABLES_LIBDIR") {
            cmd.env("XTABLES_LIBDIR", dir);
        }
        for (k, v) in self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| self.error(ns, "could not be started".into(), &e.to_string()))?;
        let pgid = child.id();
        let deadline = Instant::now() + timeout;

        let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
        let mut readers = 0;
        if let Some(mut out) = child.stdout.take() {
            let tx = tx.clone();
            readers += 1;
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                let _ = tx.send((1, buf));
            });
        }
        if let Some(mut err) = child.stderr.take() {
            let tx = tx.clone();
            readers += 1;
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = err.read_to_end(&mut buf);
                let _ = tx.send((2, buf));
            });
        }
        drop(tx);
        if let (Some(mut sin), Some(data)) = (child.stdin.take(), self.stdin) {
            // A writer thread: a child that fails early stops reading, and a large ruleset
            // must not block us past the deadline. EPIPE then only means the child quit.
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = sin.write_all(&data);
            });
        }

        let kill = |child: &mut std::process::Child| {
            // SAFETY: kill(2) on the process group of a child we spawned with
            // process_group(0), so the group id is the child's pid and holds only its tree.
            unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
        };
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(e) => {
                    kill(&mut child);
                    return Err(self.error(ns, "could not be waited for".into(), &e.to_string()));
                }
            }
            if Instant::now() >= deadline {
                kill(&mut child);
                return Err(self.error(
                    ns,
                    format!("timed out after {}s", timeout.as_secs_f32()),
                    "",
                ));
            }
            std::thread::sleep(pause);
            // short steps: a tool usually finishes in milliseconds, and every wait adds up
            pause = (pause * 2).min(Duration::from_millis(4));
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        for _ in 0..readers {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((1, b)) => stdout = b,
                Ok((_, b)) => stderr = b,
                Err(_) => {
                    // the child exited but something it started still holds the pipes
                    // SAFETY: as above, the child's own process group.
                    unsafe { libc::kill(-(pgid as libc::pid_t), libc::SIGKILL) };
                    return Err(self.error(
                        ns,
                        format!(
                            "left processes holding its output after {}s",
                            timeout.as_secs_f32()
                        ),
                        &String::from_utf8_lossy(&stderr),
                    ));
                }
            }
        }
        Ok((
            status,
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        ))
    }
}

pub(crate) fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended with {status}"),
    }
}

/// Error messages are one line: the program's stderr lines joined.
fn one_line(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        "no error output".into()
    } else {
        lines.join(" / ")
    }
}

/// Reads a per-namespace proc file (`/proc/thread-self/net/...`) from inside `ns`; a missing
/// file (the module is not loaded) reads as empty.
pub(crate) fn read_ns_proc(ns: &NetNs, file: &'static str) -> Result<String> {
    let [s] = read_ns_procs(ns, [file])?;
    Ok(s)
}

/// [`read_ns_proc`] of several files, on one namespace thread.
pub(crate) fn read_ns_procs<const N: usize>(
    ns: &NetNs,
    files: [&'static str; N],
) -> Result<[String; N]> {
    let name = ns.name();
    ns.run(move || {
        let mut out: [String; N] = std::array::from_fn(|_| String::new());
        for (file, o) in files.iter().zip(out.iter_mut()) {
            let path = Path::new("/proc/thread-self/net").join(file);
            match std::fs::read_to_string(&path) {
                Ok(s) => *o = s,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(NetstateError::Netlink {
                        op: "read".into(),
                        object: path.display().to_string(),
                        netns: name.to_string(),
                        source,
                    })
                }
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current() -> NetNs {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(uid, 0, "entering a namespace needs root");
        NetNs::current().expect("open own namespace")
    }

    #[test]
    fn the_tools_crhook_runs_write_nowhere_but_run() {
        let ns = current();
        let sh = find("sh").expect("sh");
        let probe = std::env::temp_dir().join(format!("crhook-confined-{}", std::process::id()));
        let script = format!(
            "touch {} && echo wrote; touch /run/.crhook-confined-{} && echo run-ok; rm -f /run/.crhook-confined-{}",
            probe.display(),
            std::process::id(),
            std::process::id()
        );
        let run = |user: bool| {
            let r = Run {
                program: &sh,
                args: &["-c", &script],
                env: &[],
                stdin: None,
                purpose: "test",
            };
            if user { r.run_user(&ns) } else { r.run(&ns) }
                .expect("sh runs")
                .stdout
        };
        let tool = run(false);
        assert!(!probe.exists(), "a tool wrote outside /run");
        assert_eq!(tool.trim(), "run-ok", "{tool}");
        // the user's CR_IPTABLES command is theirs: not confined
        let user = run(true);
        let wrote = probe.exists();
        let _ = std::fs::remove_file(&probe);
        assert!(wrote && user.contains("wrote"), "{user}");
    }

    #[test]
    fn a_hung_program_and_what_it_started_are_killed_at_the_deadline() {
        let ns = current();
        let sh = find("sh").expect("sh");
        let started = Instant::now();
        let run = Run {
            program: &sh,
            args: &["-c", "sleep 30 & echo partial >&2; sleep 30"],
            env: &[],
            stdin: None,
            purpose: "test",
        };
        let e = run
            .run_with(&ns, Duration::from_millis(300))
            .err()
            .expect("must time out")
            .to_string();
        assert!(e.contains("timed out after 0.3s"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "waited for the background child"
        );
    }

    #[test]
    fn stdin_is_written_and_stderr_and_status_are_reported() {
        let ns = current();
        let sh = find("sh").expect("sh");
        let big = "x".repeat(1 << 20);
        let run = Run {
            program: &sh,
            args: &["-c", "wc -c"],
            env: &[],
            stdin: Some(big.as_bytes()),
            purpose: "count",
        };
        assert_eq!(run.run(&ns).expect("wc").stdout.trim(), "1048576");
        let run = Run {
            program: &sh,
            args: &["-c", "echo \"$FOO\" >&2; echo second >&2; exit 5"],
            env: &[("FOO", "bar")],
            stdin: None,
            purpose: "fail",
        };
        let e = run.run(&ns).err().expect("must fail").to_string();
        assert!(
            e.starts_with("fail ") && e.contains("exited with status 5: bar / second"),
            "{e}"
        );
    }

    #[test]
    fn tools_are_found_by_absolute_path() {
        let p = find("sh").expect("sh");
        assert!(p.is_absolute());
        assert!(find("no-such-tool-anywhere").is_none());
    }

    #[test]
    fn stderr_becomes_one_line() {
        assert_eq!(one_line("a\n\n  b \n"), "a / b");
        assert_eq!(one_line(""), "no error output");
    }
}
