//! crhook-bench: times `crhook checkpoint`, `restore` and `diff` against the iproute2 and
//! iptables commands a user would otherwise run, on namespaces of several sizes, and prints
//! markdown tables: medians with their range, ratios, CPU, memory, the lock window, cost per
//! object, and crhook's performance targets with the values measured for them. A benchmark,
//! not a test: nothing here asserts a time, and a missed target changes no exit code (a
//! failed command does).
//!
//! Sizes (see `spec.rs`; links are veth pairs with both ends inside, persistent tun and tap
//! devices, bridges whose ports are veth ends, and ifb devices; routes over the tables main,
//! 100, 200 and 300, one in ten IPv6; ip6tables gets a tenth as many rules as iptables):
//!
//! | size | links | addresses | routes | iptables rules | policy rules |
//! |---|---|---|---|---|---|
//! | S (small) | 3: 1 veth pair, 1 tun | 5 | 10 | 50 | 4 |
//! | M (medium) | 100: 30 veth pairs, 5 tun, 5 tap, 5 bridges, 25 ifb | 1,000 | 10,000 | 5,000 | 20 |
//! | L (large) | 1,000: 300 veth pairs, 50 tun, 50 tap, 50 bridges, 250 ifb | 10,000 | 100,000 | 50,000 | 40 |
//! | XL (xl) | 2,000: 600 veth pairs, 100 tun, 100 tap, 100 bridges, 500 ifb | 20,000 | 200,000 | 100,000 | 80 |
//!
//! Each bridge has two veth ends as ports. Addresses and routes sit on the other veth ends,
//! the bridges and the ifb devices: a tun/tap device without a queue has no carrier, its
//! routes are dumped as `linkdown`, and `ip route restore` cannot send those back, so the
//! baseline could not restore them (see `spec.rs`). XL only runs when named (`--sizes xl`):
//! it takes minutes, and exists to show whether the cost per object stays flat from L to XL.
//!
//! Measured per size: capture, restore into an empty namespace and diff, crhook and the
//! baseline alternating in each run; `crhook checkpoint --lock` and the locked time crhook
//! reports (`locked_us`); crhook's max RSS in every run and its own VmHWM; and VmRSS after
//! each of several in-process calls of the library's `checkpoint`, so memory kept from one
//! call to the next shows.
//!
//! `--parent` runs the parent-image benchmark instead (parent.rs): the lock window with and
//! without a parent image, side by side.
//!
//! Run as root: `cargo run --release -p crhook-bench -- [--quick]`. The default is 5 runs of
//! S, M and L; `--quick` is 3 runs of S and M (under a minute on 2 cores), what CI runs.
//! Every namespace it makes is named `crh-bench-<pid>-...` and deleted on the way out, also
//! after an error or Ctrl-C.

mod agree;
mod bench;
mod floor;
mod memory;
mod ns;
mod ops;
mod parent;
mod report;
mod run;
mod soak;
mod spec;
mod summary;
mod targets;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use ops::Tools;
use spec::Size;

/// Benchmark crhook against the iproute2 and iptables tools.
#[derive(Debug, Parser)]
#[command(name = "crhook-bench")]
struct Args {
    /// 3 runs, sizes S and M (default: 5 runs, S, M and L)
    #[arg(long)]
    quick: bool,
    /// runs per operation (overrides the default of --quick or not)
    #[arg(long)]
    runs: Option<usize>,
    /// comma-separated sizes: small, medium, large, xl (or S, M, L, XL); xl only when named
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
    /// the soak run instead of the benchmark: sequential checkpoint/restore/diff cycles and
    /// namespaces restored in parallel, with descriptors, memory, namespaces and links
    /// before and after
    #[arg(long)]
    soak: bool,
    /// the parent-image benchmark instead: the lock window of `checkpoint --lock` with and
    /// without `--parent` (nothing changed; 100 routes and a rule changed), pre-dump time,
    /// restore from a child against from a full image
    #[arg(long, conflicts_with = "soak")]
    parent: bool,
    /// with --soak: sequential cycles
    #[arg(long, default_value_t = 1000)]
    cycles: usize,
    /// with --soak: namespaces checkpointed and restored at once
    #[arg(long, default_value_t = 100)]
    parallel: usize,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(&args) {
        eprintln!("crhook-bench: {e:#}");
        std::process::exit(1);
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

/// The sizes asked for, smallest first, each once.
fn sizes(args: &Args) -> Result<Vec<Size>> {
    if args.sizes.is_empty() {
        return Ok(if args.quick {
            vec![spec::SMALL, spec::MEDIUM]
        } else {
            vec![spec::SMALL, spec::MEDIUM, spec::LARGE]
        });
    }
    let mut v = args
        .sizes
        .iter()
        .map(|n| {
            Size::by_name(n).with_context(|| {
                format!("unknown size {n:?}: expected small, medium, large or xl (S, M, L, XL)")
            })
        })
        .collect::<Result<Vec<_>>>()?;
    v.sort_by_key(Size::objects);
    v.dedup();
    Ok(v)
}

fn real_main(args: &Args) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("crhook-bench must run as root: it creates network namespaces");
    }
    run::install_signal_handlers()?;
    let runs = args.runs.unwrap_or(if args.quick { 3 } else { 5 }).max(1);
    let sizes = sizes(args)?;
    // --quick is what CI runs, where finishing matters more than a quiet machine
    let quiet_limit = Duration::from_secs(if args.quick { 10 } else { 60 });
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
    if args.soak {
        soak::run(&work.path, args.cycles, args.parallel)?;
        let left = ns::leftovers()?;
        if !left.is_empty() {
            bail!("namespaces left behind: {}", left.join(", "));
        }
        return Ok(());
    }

    if args.parent {
        print!("{}", parent::header(runs));
        for size in &sizes {
            let dir = work.path.join(size.name);
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            let r = parent::bench_size(&tools, size, runs, quiet_limit, &dir)?;
            print!("{}", parent::row(&r));
            use std::io::Write;
            std::io::stdout().flush().context("write the table")?;
        }
        let left = ns::leftovers()?;
        if !left.is_empty() {
            bail!("namespaces left behind: {}", left.join(", "));
        }
        return Ok(());
    }
    let mut results = Vec::new();
    for size in sizes {
        let dir = work.path.join(size.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        results.push(bench::bench_size(&tools, &size, runs, quiet_limit, &dir)?);
    }
    let left = ns::leftovers()?;
    if !left.is_empty() {
        bail!("namespaces left behind: {}", left.join(", "));
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
