//! The parent-image benchmark (`--parent`): the lock window of `checkpoint --lock` with and
//! without a parent, side by side on the same namespace in the same run.
//!
//! Per size and run, on the source namespace of that size: a full `checkpoint --lock` (its
//! `locked_us`); a plain `checkpoint` as the pre-dump; `checkpoint --parent PRE --lock` with
//! nothing changed since; then 100 routes and one iptables rule added and `checkpoint
//! --parent PRE --lock` again, and once more with the same change made half-way through its
//! unlocked dump; and restore into a fresh namespace from the full image and
//! from the last child. Prints one markdown table of medians (with ranges).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::ns::{quiesce, BenchNs};
use crate::ops::{self, Sample, Tools};
use crate::run;
use crate::spec::Size;
use crate::summary::{fmt_dur, fmt_range, Spread};

/// One size's samples.
#[derive(Default)]
pub struct ParentResult {
    name: &'static str,
    full: Vec<Sample>,
    predump: Vec<Sample>,
    same: Vec<Sample>,
    changed: Vec<Sample>,
    during: Vec<Sample>,
    restore_full: Vec<Sample>,
    restore_child: Vec<Sample>,
    failed_restores: usize,
}

pub fn bench_size(
    tools: &Tools,
    size: &Size,
    runs: usize,
    quiet_limit: Duration,
    dir: &Path,
) -> Result<ParentResult> {
    let src = crate::bench::build_source(tools, size, quiet_limit, dir)?;
    let errlog = dir.join("stderr.log");
    let quiet = || quiesce(quiet_limit).map(|_| ());
    let (full, pre, child) = (dir.join("full"), dir.join("pre"), dir.join("child"));
    let pre_s = pre.display().to_string();
    let mut r = ParentResult {
        name: size.name,
        ..ParentResult::default()
    };
    for i in 0..runs {
        eprintln!("crhook-bench: {} parent run {}/{runs}", size.name, i + 1);
        quiet()?;
        r.full.push(ops::crhook_checkpoint(
            tools, &src, &full, dir, &errlog, true,
        )?);
        quiet()?;
        r.predump.push(ops::crhook_checkpoint(
            tools, &src, &pre, dir, &errlog, false,
        )?);
        quiet()?;
        let args = ["--parent", pre_s.as_str(), "--lock"];
        r.same.push(ops::crhook_checkpoint_with(
            tools, &src, &child, dir, &errlog, &args,
        )?);
        change(tools, &src, dir, &errlog, i)?;
        quiet()?;
        r.changed.push(ops::crhook_checkpoint_with(
            tools, &src, &child, dir, &errlog, &args,
        )?);
        // the same change again, made while the child's unlocked dump runs (half-way
        // through a pre-dump's time)
        let halfway = r
            .predump
            .last()
            .map_or(Duration::ZERO, |s| s.total.wall / 2);
        quiet()?;
        let during = std::thread::scope(|sc| {
            let changer = sc.spawn(|| {
                std::thread::sleep(halfway);
                change(tools, &src, dir, &errlog, i + 100)
            });
            let sample = ops::crhook_checkpoint_with(tools, &src, &child, dir, &errlog, &args);
            let changed = changer
                .join()
                .map_err(|_| anyhow::anyhow!("change thread panicked"))?;
            changed.and(sample)
        })?;
        r.during.push(during);
        for (from, out) in [(&full, &mut r.restore_full), (&child, &mut r.restore_child)] {
            let dst = BenchNs::new(&format!("{}-prest-{i}", size.name))?;
            quiet()?;
            // a failed restore (rolled back) is reported and left out of the medians, so one
            // does not lose the lock-window samples of every size
            match ops::crhook_restore(tools, &dst, from, dir, &errlog) {
                Ok(s) => out.push(s),
                Err(e) => {
                    eprintln!(
                        "crhook-bench: {} restore from {}: {e:#}",
                        size.name,
                        from.display()
                    );
                    r.failed_restores += 1;
                }
            }
        }
    }
    Ok(r)
}

/// 100 routes and one iptables rule, new in run `i`.
fn change(tools: &Tools, ns: &BenchNs, dir: &Path, errlog: &Path, i: usize) -> Result<()> {
    let routes = dir.join("change.ip");
    let script: String = (0..100)
        .map(|n| format!("route add blackhole 172.30.{}.{n}/32\n", i % 250))
        .collect();
    std::fs::write(&routes, script).with_context(|| format!("write {}", routes.display()))?;
    let mut ip = ns.command(&tools.ip)?;
    ip.arg("-batch").arg(&routes);
    let io = run::Io {
        stdin: None,
        stdout: None,
        stderr: errlog,
    };
    run::measure("add 100 routes", &mut ip, &io, &[0])?;
    let rule = dir.join("change.rules");
    std::fs::write(
        &rule,
        format!(
            "*filter\n-A INPUT -s 172.31.{}.0/24 -j ACCEPT\nCOMMIT\n",
            i % 250
        ),
    )
    .with_context(|| format!("write {}", rule.display()))?;
    let mut fw = ns.command(&tools.iptables_restore)?;
    fw.arg("--noflush");
    let io = run::Io {
        stdin: Some(&rule),
        stdout: None,
        stderr: errlog,
    };
    run::measure("add one iptables rule", &mut fw, &io, &[0])?;
    Ok(())
}

fn cell(v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let s = Spread::of(v);
    format!("{} ({})", fmt_dur(s.median), fmt_range(s.min, s.max))
}

fn locked(v: &[Sample]) -> String {
    cell(v.iter().filter_map(|s| s.locked).collect())
}

fn total(v: &[Sample]) -> String {
    cell(v.iter().map(|s| s.total.wall).collect())
}

/// The table's heading.
pub fn header(runs: usize) -> String {
    format!(
        "## Lock window with a parent image ({runs} runs; median (min-max))\n\n\
         | size | locked, full | locked, parent, nothing changed | locked, parent, 100 routes + 1 rule changed before | locked, parent, the same changed during its unlocked dump | checkpoint --lock, full | pre-dump (checkpoint) | checkpoint --parent --lock | restore from full | restore from child | failed restores |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
}

/// One size's row, printed as soon as the size is done.
pub fn row(r: &ParentResult) -> String {
    {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            locked(&r.full),
            locked(&r.same),
            locked(&r.changed),
            locked(&r.during),
            total(&r.full),
            total(&r.predump),
            total(&r.same),
            total(&r.restore_full),
            total(&r.restore_child),
            r.failed_restores,
        )
    }
}
