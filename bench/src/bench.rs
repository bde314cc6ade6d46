//! One size, start to finish: build the source namespace, then run every operation `runs`
//! times, crhook and the baseline alternating within each run so drift hits both alike, and
//! wait for the machine to go quiet before each timed run.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::memory::{self, InProcess};
use crate::ns::{quiesce, BenchNs};
use crate::ops::{self, Sample, Tools};
use crate::run;
use crate::spec::{self, Size, SpecFiles};
use crate::summary::fmt_dur;

/// One operation at one size: every run of crhook and of the baseline.
#[derive(Debug, Default)]
pub struct OpRuns {
    pub crhook: Vec<Sample>,
    pub baseline: Vec<Sample>,
}

/// Everything measured at one size.
#[derive(Debug)]
pub struct SizeResult {
    pub size: Size,
    pub build: Duration,
    pub capture: OpRuns,
    pub restore: OpRuns,
    pub diff: OpRuns,
    /// `crhook checkpoint --lock` runs (no baseline)
    pub lock: Vec<Sample>,
    /// the kernel's floor for the restore (None when it could not be measured; said on
    /// stderr)
    pub floor: Option<crate::floor::Floor>,
    /// VmRSS around repeated in-process checkpoints
    pub in_process: InProcess,
    pub image_bytes: u64,
    pub baseline_bytes: u64,
    /// `crhook diff` on the namespace crhook restored (first run)
    pub verify_crhook: Verify,
    pub agreement: Option<crate::agree::Agreement>,
    /// `crhook diff` on the namespace the baseline restored (first run)
    pub verify_baseline: Verify,
    /// `crhook diff` exit code on the unchanged source namespace
    pub diff_codes: Vec<i32>,
    /// file pairs the baseline diff found different on the unchanged source namespace
    pub baseline_diff_differing: Vec<String>,
    /// iptables-restore after the baseline restore (links up, addresses in), one run
    pub naive_iptables_restore: Option<run::Measured>,
    /// iptables-restore into a namespace with only the links (down), one run
    pub links_iptables_restore: Option<run::Measured>,
    pub spawn_setns: Duration,
    pub spawn_ip_netns_exec: Duration,
    /// waits for a quiet machine, and how many of them gave up at the limit
    pub quiet_waits: usize,
    pub quiet_gave_up: usize,
    pub quiet_limit: Duration,
}

/// What every step of one size works with.
struct Ctx<'a> {
    tools: &'a Tools,
    size: &'a Size,
    runs: usize,
    dir: &'a Path,
    errlog: PathBuf,
    files: SpecFiles,
    /// crhook's image directory and the baseline's save files
    images: PathBuf,
    saved: PathBuf,
    /// how long to wait for a quiet machine before a timed run
    quiet_limit: Duration,
    quiet_waits: Cell<usize>,
    quiet_gave_up: Cell<usize>,
}

impl Ctx<'_> {
    /// Waits for the machine to go quiet (see [`quiesce`]), counting the waits that gave up.
    fn quiet(&self) -> Result<()> {
        self.quiet_waits.set(self.quiet_waits.get() + 1);
        if !quiesce(self.quiet_limit)? {
            self.quiet_gave_up.set(self.quiet_gave_up.get() + 1);
        }
        Ok(())
    }

    fn progress(&self, what: &str, i: usize) {
        eprintln!(
            "crhook-bench: {} {what} run {}/{}",
            self.size.name,
            i + 1,
            self.runs
        );
    }

    fn io<'a>(&'a self, stdin: Option<&'a Path>) -> run::Io<'a> {
        run::Io {
            stdin,
            stdout: None,
            stderr: &self.errlog,
        }
    }
}

impl<'a> Ctx<'a> {
    fn new(
        tools: &'a Tools,
        size: &'a Size,
        runs: usize,
        quiet_limit: Duration,
        dir: &'a Path,
    ) -> Result<Ctx<'a>> {
        Ok(Ctx {
            tools,
            size,
            runs,
            dir,
            errlog: dir.join("stderr.log"),
            files: spec::write_spec(size, dir)?,
            images: dir.join("images"),
            saved: dir.join("saved"),
            quiet_limit,
            quiet_waits: Cell::new(0),
            quiet_gave_up: Cell::new(0),
        })
    }

    /// The source namespace, built; how long building took.
    fn source(&self) -> Result<(BenchNs, Duration)> {
        let src = BenchNs::new(&format!("{}-src", self.size.name))?;
        let started = Instant::now();
        build(self, &src)?;
        let took = started.elapsed();
        eprintln!("crhook-bench: {} built in {}", src.name(), fmt_dur(took));
        // IPv6 link-local addresses stay tentative for about a second (DAD).
        std::thread::sleep(Duration::from_secs(2));
        Ok((src, took))
    }
}

/// Builds the source namespace of `size` (as [`bench_size`] does) and returns it, for the
/// parent-image benchmark (parent.rs).
pub fn build_source(
    tools: &Tools,
    size: &Size,
    quiet_limit: Duration,
    dir: &Path,
) -> Result<BenchNs> {
    Ok(Ctx::new(tools, size, 1, quiet_limit, dir)?.source()?.0)
}

/// Builds the source namespace of `size` and measures everything on it, waiting up to
/// `quiet_limit` for a quiet machine before each timed run.
pub fn bench_size(
    tools: &Tools,
    size: &Size,
    runs: usize,
    quiet_limit: Duration,
    dir: &Path,
) -> Result<SizeResult> {
    eprintln!("crhook-bench: {}", size.describe());
    let cx = Ctx::new(tools, size, runs, quiet_limit, dir)?;
    let (src, build_time) = cx.source()?;

    let (capture, lock) = capture_runs(&cx, &src)?;
    let image_bytes = run::disk_bytes(&cx.images)?;
    let baseline_bytes = run::disk_bytes(&cx.saved)?;
    let mut floor = match crate::floor::record(&cx.images, size.name) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("crhook-bench: {} floor not measured: {e:#}", size.name);
            None
        }
    };
    let restored = restore_runs(&cx, &src, &mut floor)?;
    let floor = floor.map(crate::floor::Recorded::done);
    let (diff, diff_codes, differing) = diff_runs(&cx, &src)?;

    let mut setns = Vec::new();
    let mut ipexec = Vec::new();
    for _ in 0..runs {
        let (a, b) = ops::spawn_overhead(tools, &src, &cx.errlog)?;
        setns.push(a.wall);
        ipexec.push(b.wall);
    }

    let calls = runs.max(5);
    eprintln!("crhook-bench: {} {calls} in-process checkpoints", size.name);
    cx.quiet()?;
    let in_process =
        memory::repeated_checkpoints(&src.path(), &dir.join("images-in-process"), calls)?;
    drop(src);
    cx.quiet()?;

    Ok(SizeResult {
        size: *size,
        build: build_time,
        capture,
        restore: restored.runs,
        diff,
        lock,
        floor,
        in_process,
        image_bytes,
        baseline_bytes,
        verify_crhook: restored.verify_crhook,
        agreement: restored.agreement,
        verify_baseline: restored.verify_baseline,
        diff_codes,
        baseline_diff_differing: differing,
        naive_iptables_restore: restored.naive,
        links_iptables_restore: restored.with_links,
        spawn_setns: crate::summary::median(setns),
        spawn_ip_netns_exec: crate::summary::median(ipexec),
        quiet_waits: cx.quiet_waits.get(),
        quiet_gave_up: cx.quiet_gave_up.get(),
        quiet_limit,
    })
}

/// Capture: crhook, the baseline, and crhook with `--lock` (into its own image directory,
/// so the restores below use a plain checkpoint's images).
fn capture_runs(cx: &Ctx<'_>, src: &BenchNs) -> Result<(OpRuns, Vec<Sample>)> {
    let locked_images = cx.dir.join("images-lock");
    let mut capture = OpRuns::default();
    let mut lock = Vec::new();
    for i in 0..cx.runs {
        cx.progress("capture", i);
        cx.quiet()?;
        capture.crhook.push(ops::crhook_checkpoint(
            cx.tools, src, &cx.images, cx.dir, &cx.errlog, false,
        )?);
        cx.quiet()?;
        capture
            .baseline
            .push(ops::baseline_capture(cx.tools, src, &cx.saved, &cx.errlog)?);
        cx.quiet()?;
        lock.push(ops::crhook_checkpoint(
            cx.tools,
            src,
            &locked_images,
            cx.dir,
            &cx.errlog,
            true,
        )?);
    }
    Ok((capture, lock))
}

/// Restore runs and the one-off checks made on the first of them.
struct Restored {
    runs: OpRuns,
    verify_crhook: Verify,
    /// the source and crhook's first restore compared by the tools (agree.rs)
    agreement: Option<crate::agree::Agreement>,
    verify_baseline: Verify,
    naive: Option<run::Measured>,
    with_links: Option<run::Measured>,
}

/// Restore into a fresh namespace per run, crhook then the baseline. After the first run,
/// `crhook diff` checks both restored namespaces against the images, and the tools compare
/// crhook's with the source `src` (agree.rs).
/// crhook's restores, the floor's replays (when `floor` was recorded) and the baseline's, in
/// turns: one of each per run. A replay that fails ends the floor's runs (said on stderr),
/// not the benchmark.
fn restore_runs(
    cx: &Ctx<'_>,
    src: &BenchNs,
    floor: &mut Option<crate::floor::Recorded>,
) -> Result<Restored> {
    let name = cx.size.name;
    let mut out = Restored {
        runs: OpRuns::default(),
        verify_crhook: Verify::default(),
        agreement: None,
        verify_baseline: Verify::default(),
        naive: None,
        with_links: None,
    };
    for i in 0..cx.runs {
        cx.progress("restore", i);
        {
            let dst = BenchNs::new(&format!("{name}-restore-crhook-{i}"))?;
            cx.quiet()?;
            out.runs.crhook.push(ops::crhook_restore(
                cx.tools, &dst, &cx.images, cx.dir, &cx.errlog,
            )?);
            if i == 0 {
                out.verify_crhook = verify(cx, &dst, "verify-crhook.txt")?;
                match crate::agree::compare(cx.tools, src, &dst) {
                    Ok(a) => out.agreement = Some(a),
                    Err(e) => eprintln!("crhook-bench: {name}: tools' comparison failed: {e:#}"),
                }
            }
        }
        if let Some(f) = floor.as_mut() {
            if let Err(e) = f.replay(i, &|| cx.quiet()) {
                eprintln!("crhook-bench: {name} floor not measured: {e:#}");
                *floor = None;
            }
        }
        {
            let dst = BenchNs::new(&format!("{name}-restore-baseline-{i}"))?;
            cx.quiet()?;
            out.runs.baseline.push(ops::baseline_restore(
                cx.tools,
                &dst,
                &cx.files.links,
                &cx.files.tc,
                &cx.saved,
                &cx.errlog,
            )?);
            if i == 0 {
                out.verify_baseline = verify(cx, &dst, "verify-baseline.txt")?;
                cx.quiet()?;
                out.naive = Some(ops::iptables_restore_now(
                    cx.tools, &dst, &cx.saved, &cx.errlog,
                )?);
            }
        }
        if i == 0 {
            out.with_links = Some(iptables_with_links(cx)?);
        }
    }
    Ok(out)
}

/// What `crhook diff` said about a restored namespace.
#[derive(Debug, Clone, Default)]
pub struct Verify {
    /// exit code: 0 identical, 1 different, 2 error
    pub code: i32,
    /// lines of differences it printed
    pub lines: usize,
    /// the last line of its stderr when it failed
    pub error: Option<String>,
    /// how many times it ran (an interrupted dump is tried again)
    pub attempts: usize,
}

/// Untimed `crhook diff` of a restored namespace against the images. Links that have just
/// come up are still running IPv6 DAD, and the kernel's address changes when it ends
/// interrupt a dump (NLM_F_DUMP_INTR), which crhook reports as an error: such a diff is tried
/// again after 2 s, up to 3 times. A diff that still fails is reported, not fatal.
fn verify(cx: &Ctx<'_>, ns: &BenchNs, file: &str) -> Result<Verify> {
    const ATTEMPTS: usize = 3;
    let report = cx.dir.join(file);
    let mut attempt = 1;
    loop {
        cx.quiet()?;
        let code = ops::crhook_diff(cx.tools, ns, &cx.images, &report, &cx.errlog, &[0, 1, 2])?
            .total
            .code;
        let error = (code == 2).then(|| {
            std::fs::read_to_string(&cx.errlog)
                .ok()
                .and_then(|t| t.lines().last().map(str::to_owned))
                .unwrap_or_default()
        });
        let interrupted = error.as_deref().is_some_and(|e| e.contains("interrupted"));
        if interrupted && attempt < ATTEMPTS {
            attempt += 1;
            std::thread::sleep(Duration::from_secs(2));
            continue;
        }
        let lines = std::fs::read_to_string(&report)
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0);
        return Ok(Verify {
            code,
            lines,
            error,
            attempts: attempt,
        });
    }
}

/// Diff of the unchanged source: the runs, crhook's exit codes, and the file pairs the
/// baseline found different on the last run.
fn diff_runs(cx: &Ctx<'_>, src: &BenchNs) -> Result<(OpRuns, Vec<i32>, Vec<String>)> {
    let mut diff = OpRuns::default();
    let mut codes = Vec::new();
    let mut differing = Vec::new();
    for i in 0..cx.runs {
        cx.progress("diff", i);
        cx.quiet()?;
        let out = cx.dir.join("diff.txt");
        let c = ops::crhook_diff(cx.tools, src, &cx.images, &out, &cx.errlog, &[0, 1])?;
        codes.push(c.total.code);
        diff.crhook.push(c);
        cx.quiet()?;
        let b = ops::baseline_diff(cx.tools, src, &cx.saved, cx.dir, &cx.errlog)?;
        differing = b.differing;
        diff.baseline.push(b.sample);
    }
    Ok((diff, codes, differing))
}

/// Fills the source namespace: the firewall first (see [`ops::baseline_restore`] for why),
/// then links, traffic control, addresses, routes and rules.
fn build(cx: &Ctx<'_>, ns: &BenchNs) -> Result<()> {
    let tools = cx.tools;
    let files = &cx.files;
    let mut fw4 = ns.command(&tools.iptables_restore)?;
    run::measure(
        "build iptables-restore",
        &mut fw4,
        &cx.io(Some(&files.fw4)),
        &[0],
    )?;
    let mut fw6 = ns.command(&tools.ip6tables_restore)?;
    run::measure(
        "build ip6tables-restore",
        &mut fw6,
        &cx.io(Some(&files.fw6)),
        &[0],
    )?;
    let mut links = ns.command(&tools.ip)?;
    links.arg("-batch").arg(&files.links);
    run::measure("build links (ip -batch)", &mut links, &cx.io(None), &[0])?;
    let mut tc = ns.command(&tools.tc)?;
    tc.arg("-batch").arg(&files.tc);
    run::measure(
        "build traffic control (tc -batch)",
        &mut tc,
        &cx.io(None),
        &[0],
    )?;
    let mut state = ns.command(&tools.ip)?;
    state.arg("-batch").arg(&files.state);
    run::measure(
        "build addresses, routes and rules (ip -batch)",
        &mut state,
        &cx.io(None),
        &[0],
    )?;
    let mut rules6 = ns.command(&tools.ip)?;
    rules6.arg("-6").arg("-batch").arg(&files.rules6);
    run::measure(
        "build IPv6 rules (ip -6 -batch)",
        &mut rules6,
        &cx.io(None),
        &[0],
    )?;
    Ok(())
}

/// `iptables-restore` of the saved rules into a fresh namespace holding only the links,
/// created and left down: what running it after the links costs (crhook's restore runs it
/// before creating them).
fn iptables_with_links(cx: &Ctx<'_>) -> Result<run::Measured> {
    let ns = BenchNs::new(&format!("{}-links-only", cx.size.name))?;
    let mut links = ns.command(&cx.tools.ip)?;
    links.arg("-batch").arg(&cx.files.links_down);
    run::measure("links only (ip -batch)", &mut links, &cx.io(None), &[0])?;
    cx.quiet()?;
    ops::iptables_restore_now(cx.tools, &ns, &cx.saved, &cx.errlog)
}
