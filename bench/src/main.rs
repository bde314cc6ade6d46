//! crhook-bench: times `crhook checkpoint`, `restore` and `diff` against the iproute2 and
//! iptables commands a user would otherwise run, on namespaces of several sizes, and prints
//! markdown tables of medians and ratios. A benchmark, not a test: nothing here asserts a
//! time.
//!
//! Run as root: `cargo run --release -p crhook-bench -- [--quick]`. Every namespace it makes
//! is named `crh-bench-<pid>-...` and deleted on the way out, also after an error or Ctrl-C.

mod ns;
mod ops;
mod report;
mod run;
mod spec;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

use ns::{quiesce, BenchNs};
use ops::Tools;
use report::{OpRuns, SizeResult};
use spec::Size;

/// Benchmark crhook against the iproute2 and iptables tools.
#[derive(Debug, Parser)]
#[command(name = "crhook-bench")]
struct Args {
    /// 3 runs, sizes small and medium (default: 5 runs, small, medium and large)
    #[arg(long)]
    quick: bool,
    /// runs per operation (overrides the default of --quick or not)
    #[arg(long)]
    runs: Option<usize>,
    /// comma-separated sizes: small, medium, large
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<String>,
    /// the crhook binary (default: target/release/crhook, built first when run by cargo)
    #[arg(long, env = "CRHOOK_BIN")]
    crhook: Option<PathBuf>,
    /// directory for images and save files (default: /var/tmp/crh-bench-<pid>, removed after)
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// keep the working directory
    #[arg(long)]
    keep_files: bool,
}

/// How long to wait for the machine to go quiet before a timed run.
const QUIET_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    let args = Args::parse();
    match real_main(&args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("crhook-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Removes the working directory when dropped, unless told to keep it.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!("crhook-bench: remove {}: {e}", self.path.display());
            }
        }
    }
}

fn real_main(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("crhook-bench must run as root: it creates network namespaces");
    }
    run::install_signal_handlers()?;
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 }).max(1);
    let sizes: Vec<Size> = if args.sizes.is_empty() {
        if args.quick {
            vec![spec::SMALL, spec::MEDIUM]
        } else {
            vec![spec::SMALL, spec::MEDIUM, spec::LARGE]
        }
    } else {
        args.sizes
            .iter()
            .map(|n| Size::by_name(n).with_context(|| format!("unknown size {n:?}")))
            .collect::<Result<_>>()?
    };
    let crhook = locate_crhook(args.crhook.as_deref())?;
    let tools = Tools::find(crhook)?;
    let work = WorkDir {
        path: args
            .workdir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/crh-bench-{}", std::process::id()))),
        keep: args.keep_files,
    };
    std::fs::create_dir_all(&work.path)
        .with_context(|| format!("create {}", work.path.display()))?;

    let mut results = Vec::new();
    for size in sizes {
        let dir = work.path.join(size.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        results.push(bench_size(&tools, &size, runs, &dir)?);
    }
    print!(
        "{}",
        report::render(&results, runs, &tools.crhook.display().to_string())
    );
    Ok(())
}

/// The crhook binary: the one given, else target/release/crhook next to this program's
/// target directory. When run by cargo (CARGO is set), the release build is brought up to
/// date first, so the numbers are never those of a stale binary.
fn locate_crhook(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("crhook binary {} does not exist", p.display());
        }
        eprintln!("crhook-bench: using crhook binary {}", p.display());
        return Ok(p.to_owned());
    }
    let exe = std::env::current_exe().context("find this program's path")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("find the target directory next to this program")?;
    let bin = target.join("release").join("crhook");
    if let Some(cargo) = std::env::var_os("CARGO") {
        eprintln!("crhook-bench: building crhook: cargo build --release -p crhook");
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "-p", "crhook"])
            .status()
            .context("spawn cargo build --release -p crhook")?;
        if !status.success() {
            bail!("cargo build --release -p crhook: {status}");
        }
    }
    if !bin.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p crhook` or pass --crhook PATH",
            bin.display()
        );
    }
    eprintln!("crhook-bench: using crhook binary {}", bin.display());
    Ok(bin)
}

/// Builds the source namespace of `size` and runs every operation `runs` times, crhook and
/// baseline alternating so drift hits both alike.
fn bench_size(tools: &Tools, size: &Size, runs: usize, dir: &Path) -> Result<SizeResult> {
    eprintln!("crhook-bench: {}", size.describe());
    let errlog = dir.join("stderr.log");
    let files = spec::write_spec(size, dir)?;
    let src = BenchNs::new(&format!("{}-src", size.name))?;
    let started = Instant::now();
    build(tools, &src, &files, &errlog)?;
    let build_time = started.elapsed();
    eprintln!(
        "crhook-bench: {} built in {}",
        src.name(),
        report::fmt_dur(build_time)
    );
    // IPv6 link-local addresses stay tentative for about a second (DAD).
    std::thread::sleep(Duration::from_secs(2));

    let images = dir.join("images");
    let saved = dir.join("saved");
    let progress =
        |what: &str, i: usize| eprintln!("crhook-bench: {} {what} run {}/{runs}", size.name, i + 1);

    let mut capture = OpRuns::default();
    for i in 0..runs {
        progress("capture", i);
        quiesce(QUIET_LIMIT)?;
        capture
            .crhook
            .push(ops::crhook_checkpoint(tools, &src, &images, dir, &errlog)?);
        quiesce(QUIET_LIMIT)?;
        capture
            .baseline
            .push(ops::baseline_capture(tools, &src, &saved, &errlog)?);
    }
    let image_bytes = run::disk_bytes(&images)?;
    let baseline_bytes = run::disk_bytes(&saved)?;

    let mut restore = OpRuns::default();
    let mut verify_crhook = -1;
    let mut verify_baseline = (-1, 0);
    let mut naive = None;
    let mut with_links = None;
    for i in 0..runs {
        progress("restore", i);
        {
            let dst = BenchNs::new(&format!("{}-restore-crhook-{i}", size.name))?;
            quiesce(QUIET_LIMIT)?;
            restore
                .crhook
                .push(ops::crhook_restore(tools, &dst, &images, dir, &errlog)?);
            if i == 0 {
                let out = dir.join("verify-crhook.txt");
                verify_crhook = ops::crhook_diff(tools, &dst, &images, &out, &errlog)?
                    .total
                    .code;
            }
        }
        {
            let dst = BenchNs::new(&format!("{}-restore-baseline-{i}", size.name))?;
            quiesce(QUIET_LIMIT)?;
            restore.baseline.push(ops::baseline_restore(
                tools,
                &dst,
                &files.links,
                &saved,
                &errlog,
            )?);
            if i == 0 {
                let out = dir.join("verify-baseline.txt");
                let code = ops::crhook_diff(tools, &dst, &images, &out, &errlog)?
                    .total
                    .code;
                let lines = std::fs::read_to_string(&out)
                    .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
                    .unwrap_or(0);
                verify_baseline = (code, lines);
                quiesce(QUIET_LIMIT)?;
                naive = Some(ops::iptables_restore_now(tools, &dst, &saved, &errlog)?);
            }
        }
        if i == 0 {
            with_links = Some(iptables_with_links(tools, size, &files, &saved, &errlog)?);
        }
    }

    let mut diff = OpRuns::default();
    let mut diff_codes = Vec::new();
    let mut differing = Vec::new();
    for i in 0..runs {
        progress("diff", i);
        quiesce(QUIET_LIMIT)?;
        let out = dir.join("diff.txt");
        let c = ops::crhook_diff(tools, &src, &images, &out, &errlog)?;
        diff_codes.push(c.total.code);
        diff.crhook.push(c);
        quiesce(QUIET_LIMIT)?;
        let b = ops::baseline_diff(tools, &src, &saved, dir, &errlog)?;
        differing = b.differing;
        diff.baseline.push(b.sample);
    }

    let mut setns = Vec::new();
    let mut ipexec = Vec::new();
    for _ in 0..runs {
        let (a, b) = ops::spawn_overhead(tools, &src, &errlog)?;
        setns.push(a.wall);
        ipexec.push(b.wall);
    }
    drop(src);
    quiesce(QUIET_LIMIT)?;

    Ok(SizeResult {
        size: *size,
        build: build_time,
        capture,
        restore,
        diff,
        image_bytes,
        baseline_bytes,
        verify_crhook,
        verify_baseline,
        diff_codes,
        baseline_diff_differing: differing,
        naive_iptables_restore: naive,
        links_iptables_restore: with_links,
        spawn_setns: report::median(setns),
        spawn_ip_netns_exec: report::median(ipexec),
    })
}

/// Fills the source namespace: the firewall first (see [`ops::baseline_restore`] for why),
/// then links, addresses, routes and rules.
fn build(tools: &Tools, ns: &BenchNs, files: &spec::SpecFiles, errlog: &Path) -> Result<()> {
    let io = |stdin| run::Io {
        stdin,
        stdout: None,
        stderr: errlog,
    };
    let mut fw4 = ns.command(&tools.iptables_restore)?;
    run::measure(
        "build iptables-restore",
        &mut fw4,
        &io(Some(&files.fw4)),
        &[0],
    )?;
    let mut fw6 = ns.command(&tools.ip6tables_restore)?;
    run::measure(
        "build ip6tables-restore",
        &mut fw6,
        &io(Some(&files.fw6)),
        &[0],
    )?;
    let mut links = ns.command(&tools.ip)?;
    links.arg("-batch").arg(&files.links);
    run::measure("build links (ip -batch)", &mut links, &io(None), &[0])?;
    let mut state = ns.command(&tools.ip)?;
    state.arg("-batch").arg(&files.state);
    run::measure(
        "build addresses, routes and rules (ip -batch)",
        &mut state,
        &io(None),
        &[0],
    )?;
    let mut rules6 = ns.command(&tools.ip)?;
    rules6.arg("-6").arg("-batch").arg(&files.rules6);
    run::measure(
        "build IPv6 rules (ip -6 -batch)",
        &mut rules6,
        &io(None),
        &[0],
    )?;
    Ok(())
}

/// `iptables-restore` of the saved rules into a fresh namespace holding only the links,
/// created and left down: what running it after the links costs (crhook's restore runs it
/// before creating them).
fn iptables_with_links(
    tools: &Tools,
    size: &Size,
    files: &spec::SpecFiles,
    saved: &Path,
    errlog: &Path,
) -> Result<run::Measured> {
    let ns = BenchNs::new(&format!("{}-links-only", size.name))?;
    let mut links = ns.command(&tools.ip)?;
    links.arg("-batch").arg(&files.links_down);
    let io = run::Io {
        stdin: None,
        stdout: None,
        stderr: errlog,
    };
    run::measure("links only (ip -batch)", &mut links, &io, &[0])?;
    quiesce(QUIET_LIMIT)?;
    ops::iptables_restore_now(tools, &ns, saved, errlog)
}
