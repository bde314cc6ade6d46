//! The timed operations, each as crhook and as the baseline a user would otherwise run.
//!
//! Baselines run every tool by absolute path directly inside the namespace (setns between
//! fork and exec), one process per tool, and add up the tools' wall times; crhook is one
//! process and reports its own phases (`--print-stats`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::ns::{program, BenchNs};
use crate::run::{measure, measure_own_peak, Io, Measured};

/// Absolute paths of every program the benchmark runs.
#[derive(Debug)]
pub struct Tools {
    pub crhook: PathBuf,
    pub ip: PathBuf,
    pub tc: PathBuf,
    pub iptables_save: PathBuf,
    pub ip6tables_save: PathBuf,
    pub iptables_restore: PathBuf,
    pub ip6tables_restore: PathBuf,
    pub diff: PathBuf,
    pub cmp: PathBuf,
    pub truth: PathBuf,
}

impl Tools {
    pub fn find(crhook: PathBuf) -> Result<Tools> {
        Ok(Tools {
            crhook,
            ip: program("ip")?,
            tc: program("tc")?,
            iptables_save: program("iptables-save")?,
            ip6tables_save: program("ip6tables-save")?,
            iptables_restore: program("iptables-restore")?,
            ip6tables_restore: program("ip6tables-restore")?,
            diff: program("diff")?,
            cmp: program("cmp")?,
            truth: program("true")?,
        })
    }
}

/// One timed run: the total, and its parts (crhook's phases in microseconds as it reports
/// them, or the baseline's steps).
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub total: Measured,
    pub parts: Vec<(String, Duration)>,
    /// crhook's `locked_us`: how long the namespace was locked (`checkpoint --lock`)
    pub locked: Option<Duration>,
    /// crhook's `netlink_requests`: write requests sent (restore)
    pub netlink_requests: u64,
}

/// A baseline step: name shown in the report, program, arguments, stdin and stdout files.
struct Step<'a> {
    name: &'a str,
    prog: &'a Path,
    args: Vec<String>,
    stdin: Option<PathBuf>,
    stdout: Option<PathBuf>,
    allowed: &'a [i32],
}

fn run_steps(ns: Option<&BenchNs>, steps: &[Step<'_>], errlog: &Path) -> Result<Sample> {
    let mut sample = Sample::default();
    for s in steps {
        let mut cmd = match ns {
            Some(ns) => ns.command(s.prog)?,
            None => std::process::Command::new(s.prog),
        };
        cmd.args(&s.args).env_clear().env("LC_ALL", "C");
        let io = Io {
            stdin: s.stdin.as_deref(),
            stdout: s.stdout.as_deref(),
            stderr: errlog,
        };
        let m = measure(s.name, &mut cmd, &io, s.allowed)?;
        sample.total = sample.total.then(m);
        sample.parts.push((s.name.to_owned(), m.wall));
    }
    Ok(sample)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The files the capture baseline writes, by step.
const CAPTURE: [(&str, &[&str], &str); 8] = [
    ("ip addr save", &["addr", "save"], "addr.save"),
    (
        "ip -4 route save table all",
        &["-4", "route", "save", "table", "all"],
        "route4.save",
    ),
    (
        "ip -6 route save table all",
        &["-6", "route", "save", "table", "all"],
        "route6.save",
    ),
    ("ip -4 rule save", &["-4", "rule", "save"], "rule4.save"),
    ("ip -6 rule save", &["-6", "rule", "save"], "rule6.save"),
    (
        "ip -d -j link show",
        &["-d", "-j", "link", "show"],
        "link.json",
    ),
    ("iptables-save", &[], "iptables.rules"),
    ("ip6tables-save", &[], "ip6tables.rules"),
];

fn capture_steps<'a>(tools: &'a Tools, out: &Path) -> Vec<Step<'a>> {
    CAPTURE
        .iter()
        .map(|(name, args, file)| {
            let prog = match *name {
                "iptables-save" => &tools.iptables_save,
                "ip6tables-save" => &tools.ip6tables_save,
                _ => &tools.ip,
            };
            Step {
                name,
                prog,
                args: strings(args),
                stdin: None,
                stdout: Some(out.join(file)),
                allowed: &[0],
            }
        })
        .collect()
}

fn fresh_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

/// Baseline capture into `out` (emptied first, untimed).
pub fn baseline_capture(tools: &Tools, ns: &BenchNs, out: &Path, errlog: &Path) -> Result<Sample> {
    fresh_dir(out)?;
    run_steps(Some(ns), &capture_steps(tools, out), errlog)
}

/// Baseline restore into an empty namespace, in the order that is fastest for these tools:
/// the firewall first, then the link script, addresses, routes, rules. iptables-restore
/// resolves every numeric port through getaddrinfo, whose AI_ADDRCONFIG check dumps every
/// address of the namespace and whose RFC 3484 sort connects a UDP socket, and both walk every
/// device: its cost grows with the links as well as the addresses, so it runs before either.
pub fn baseline_restore(
    tools: &Tools,
    ns: &BenchNs,
    links_batch: &Path,
    tc_batch: &Path,
    saved: &Path,
    errlog: &Path,
) -> Result<Sample> {
    let ip = tools.ip.as_path();
    let step = |name, prog, args: &[&str], file: &str| Step {
        name,
        prog,
        args: strings(args),
        stdin: Some(saved.join(file)),
        stdout: None,
        allowed: &[0],
    };
    let links = links_batch.display().to_string();
    let tc = tc_batch.display().to_string();
    let steps = [
        step(
            "iptables-restore",
            &tools.iptables_restore,
            &[],
            "iptables.rules",
        ),
        step(
            "ip6tables-restore",
            &tools.ip6tables_restore,
            &[],
            "ip6tables.rules",
        ),
        Step {
            name: "ip -batch (links)",
            prog: ip,
            args: strings(&["-batch", &links]),
            stdin: None,
            stdout: None,
            allowed: &[0],
        },
        // tc has no save format: the baseline replays the script that built it
        Step {
            name: "tc -batch",
            prog: &tools.tc,
            args: strings(&["-batch", &tc]),
            stdin: None,
            stdout: None,
            allowed: &[0],
        },
        step("ip addr restore", ip, &["addr", "restore"], "addr.save"),
        step(
            "ip -4 route restore",
            ip,
            &["-4", "route", "restore"],
            "route4.save",
        ),
        step(
            "ip -6 route restore",
            ip,
            &["-6", "route", "restore"],
            "route6.save",
        ),
        step(
            "ip -4 rule restore",
            ip,
            &["-4", "rule", "restore"],
            "rule4.save",
        ),
        step(
            "ip -6 rule restore",
            ip,
            &["-6", "rule", "restore"],
            "rule6.save",
        ),
    ];
    run_steps(Some(ns), &steps, errlog)
}

/// `iptables-restore` of the saved rules into `ns` as it is now (used once, after a
/// baseline restore, to show the cost of restoring the firewall after the addresses).
pub fn iptables_restore_now(
    tools: &Tools,
    ns: &BenchNs,
    saved: &Path,
    errlog: &Path,
) -> Result<Measured> {
    let steps = [Step {
        name: "iptables-restore after addresses",
        prog: &tools.iptables_restore,
        args: Vec::new(),
        stdin: Some(saved.join("iptables.rules")),
        stdout: None,
        allowed: &[0],
    }];
    Ok(run_steps(Some(ns), &steps, errlog)?.total)
}

/// Result of the baseline diff: the sample, and how many of the compared pairs differed
/// (differences the tools report on an unchanged namespace).
pub struct BaselineDiff {
    pub sample: Sample,
    pub differing: Vec<String>,
}

/// Baseline diff: dump the live namespace as capture does, render both dumps as text
/// (`ip ... showdump`; the binary dumps carry nothing to compare byte for byte except the
/// rule dumps), and compare each pair with diff(1)/cmp(1), ignoring iptables-save's
/// timestamped comment lines.
pub fn baseline_diff(
    tools: &Tools,
    ns: &BenchNs,
    saved: &Path,
    work: &Path,
    errlog: &Path,
) -> Result<BaselineDiff> {
    let live = work.join("live");
    fresh_dir(&live)?;
    let text = work.join("text");
    fresh_dir(&text)?;
    let mut sample = run_steps(Some(ns), &capture_steps(tools, &live), errlog)?;

    let mut render = Vec::new();
    for (obj, args, file) in [
        ("addr", &["addr", "showdump"][..], "addr.save"),
        ("route4", &["-4", "route", "showdump"][..], "route4.save"),
        ("route6", &["-6", "route", "showdump"][..], "route6.save"),
    ] {
        for (side, dir) in [("saved", saved), ("live", live.as_path())] {
            render.push(Step {
                name: match obj {
                    "addr" => "ip addr showdump (x2)",
                    "route4" => "ip -4 route showdump (x2)",
                    _ => "ip -6 route showdump (x2)",
                },
                prog: &tools.ip,
                args: strings(args),
                stdin: Some(dir.join(file)),
                stdout: Some(text.join(format!("{side}-{obj}.txt"))),
                allowed: &[0],
            });
        }
    }
    let rendered = run_steps(None, &render, errlog)?;
    sample.total = sample.total.then(rendered.total);
    merge_parts(&mut sample, rendered.parts);

    let pairs: Vec<(String, PathBuf, PathBuf, bool)> = vec![
        pair(&text, "saved-addr.txt", &text, "live-addr.txt", false),
        pair(&text, "saved-route4.txt", &text, "live-route4.txt", false),
        pair(&text, "saved-route6.txt", &text, "live-route6.txt", false),
        pair(saved, "link.json", &live, "link.json", false),
        pair(saved, "iptables.rules", &live, "iptables.rules", true),
        pair(saved, "ip6tables.rules", &live, "ip6tables.rules", true),
        pair(saved, "rule4.save", &live, "rule4.save", false),
        pair(saved, "rule6.save", &live, "rule6.save", false),
    ];
    let mut differing = Vec::new();
    for (what, a, b, ignore_comments) in &pairs {
        let binary = what.ends_with(".save");
        let mut args = Vec::new();
        let prog = if binary {
            args.push("-s".to_owned());
            &tools.cmp
        } else {
            args.push("-q".to_owned());
            if *ignore_comments {
                args.extend(["-I".to_owned(), "^#".to_owned()]);
            }
            &tools.diff
        };
        args.push(a.display().to_string());
        args.push(b.display().to_string());
        let name = if binary { "cmp (x2)" } else { "diff (x6)" };
        let step = Step {
            name,
            prog,
            args,
            stdin: None,
            stdout: None,
            allowed: &[0, 1],
        };
        let part = run_steps(None, std::slice::from_ref(&step), errlog)?;
        if part.total.code == 1 {
            differing.push(what.clone());
        }
        sample.total = sample.total.then(Measured {
            code: 0,
            ..part.total
        });
        merge_parts(&mut sample, part.parts);
    }
    Ok(BaselineDiff { sample, differing })
}

fn pair(
    da: &Path,
    a: &str,
    db: &Path,
    b: &str,
    ignore_comments: bool,
) -> (String, PathBuf, PathBuf, bool) {
    (a.to_owned(), da.join(a), db.join(b), ignore_comments)
}

/// Adds parts with the same name together (steps that run several times).
fn merge_parts(sample: &mut Sample, parts: Vec<(String, Duration)>) {
    for (name, d) in parts {
        match sample.parts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += d,
            None => sample.parts.push((name, d)),
        }
    }
}

/// Runs crhook with `args`, stats (if asked for) on stdout into `stats_file`; parses the
/// phases, the lock window and the netlink request count out of them.
fn crhook(
    tools: &Tools,
    what: &str,
    args: &[&str],
    stats_file: &Path,
    errlog: &Path,
    allowed: &[i32],
) -> Result<Sample> {
    let mut cmd = std::process::Command::new(&tools.crhook);
    cmd.args(args);
    let io = Io {
        stdin: None,
        stdout: Some(stats_file),
        stderr: errlog,
    };
    let total = measure_own_peak(what, &mut cmd, &io, allowed)?;
    let mut sample = Sample {
        total,
        ..Sample::default()
    };
    if args.contains(&"--print-stats") {
        read_stats(stats_file, &mut sample)?;
    }
    Ok(sample)
}

/// Fills `sample` from a `--print-stats` JSON file: `phases` (`[{name, us}]`), `locked_us`
/// (0 when nothing was locked) and `netlink_requests`.
fn read_stats(stats_file: &Path, sample: &mut Sample) -> Result<()> {
    let text = std::fs::read_to_string(stats_file)
        .with_context(|| format!("read {}", stats_file.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parse stats in {}", stats_file.display()))?;
    for p in json["phases"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?").to_owned();
        let us = p["us"].as_u64().unwrap_or(0);
        sample.parts.push((name, Duration::from_micros(us)));
    }
    sample.locked = json["locked_us"]
        .as_u64()
        .filter(|us| *us > 0)
        .map(Duration::from_micros);
    sample.netlink_requests = json["netlink_requests"].as_u64().unwrap_or(0);
    Ok(())
}

/// `crhook checkpoint --print-stats`, with `--lock` when `lock` is set (the namespace is
/// locked for the capture and unlocked before crhook exits).
pub fn crhook_checkpoint(
    tools: &Tools,
    ns: &BenchNs,
    images: &Path,
    work: &Path,
    errlog: &Path,
    lock: bool,
) -> Result<Sample> {
    let extra: &[&str] = if lock { &["--lock"] } else { &[] };
    crhook_checkpoint_with(tools, ns, images, work, errlog, extra)
}

/// `crhook checkpoint --print-stats` with `extra` arguments (`--parent DIR`, `--lock`).
pub fn crhook_checkpoint_with(
    tools: &Tools,
    ns: &BenchNs,
    images: &Path,
    work: &Path,
    errlog: &Path,
    extra: &[&str],
) -> Result<Sample> {
    if images.exists() {
        std::fs::remove_dir_all(images).with_context(|| format!("remove {}", images.display()))?;
    }
    let path = ns.path();
    let dir = images.display().to_string();
    let mut args = vec![
        "checkpoint",
        "--netns",
        &path,
        "--images",
        &dir,
        "--print-stats",
    ];
    args.extend_from_slice(extra);
    let what = format!("crhook checkpoint {}", extra.join(" "))
        .trim_end()
        .to_string();
    crhook(tools, &what, &args, &work.join("stats.json"), errlog, &[0])
}

pub fn crhook_restore(
    tools: &Tools,
    ns: &BenchNs,
    images: &Path,
    work: &Path,
    errlog: &Path,
) -> Result<Sample> {
    let path = ns.path();
    let dir = images.display().to_string();
    let args = [
        "restore",
        "--netns",
        &path,
        "--images",
        &dir,
        "--print-stats",
    ];
    crhook(
        tools,
        "crhook restore",
        &args,
        &work.join("stats.json"),
        errlog,
        &[0],
    )
}

/// `crhook diff`; the sample's exit code says whether it found differences (1) or not (0),
/// or failed (2, an error unless `allowed` holds it). Its output lands in `out`.
pub fn crhook_diff(
    tools: &Tools,
    ns: &BenchNs,
    images: &Path,
    out: &Path,
    errlog: &Path,
    allowed: &[i32],
) -> Result<Sample> {
    let path = ns.path();
    let dir = images.display().to_string();
    let args = ["diff", "--netns", &path, "--images", &dir];
    crhook(tools, "crhook diff", &args, out, errlog, allowed)
}

/// Cost of starting one process inside `ns`: `true` spawned with setns in the child, and the
/// same through `ip netns exec` (which also makes a mount namespace and remounts /sys).
pub fn spawn_overhead(tools: &Tools, ns: &BenchNs, errlog: &Path) -> Result<(Measured, Measured)> {
    let mut direct = ns.command(&tools.truth)?;
    let io = Io {
        stdin: None,
        stdout: None,
        stderr: errlog,
    };
    let a = measure("true (setns)", &mut direct, &io, &[0])?;
    let mut via_ip = std::process::Command::new(&tools.ip);
    via_ip.args(["netns", "exec", ns.name()]).arg(&tools.truth);
    let b = measure("ip netns exec true", &mut via_ip, &io, &[0])?;
    Ok((a, b))
}
