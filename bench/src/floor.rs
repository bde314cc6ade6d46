//! The kernel's floor for a restore (`crhook_netstate::floor`): one restore of the images,
//! in this process with recording on, into a scratch namespace; then, per run, a fresh
//! namespace and a replay of exactly what that restore sent (netlink buffers, tun ioctls,
//! sysctl writes), timed alone. crhook's restore time over the floor's is its own overhead:
//! reading and checking the images, planning against the live namespace, the dumps it makes
//! while restoring, the journal, the DAD settle.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crhook_netstate::floor::{self, Replayed};
use crhook_netstate::{NetNs, RestoreOptions, Target};

use crate::bench::SizeResult;
use crate::ns::BenchNs;
use crate::report::Table;
use crate::summary::{fmt_dur, median, part, ratio, Spread};

/// The floor's runs at one size.
#[derive(Debug, Default)]
pub struct Floor {
    pub runs: Vec<Replayed>,
    /// things the recorded restore sent (sendmsg calls, ioctls, writes)
    pub sent: usize,
}

impl Floor {
    pub fn total(&self) -> Spread {
        Spread::of(self.runs.iter().map(|r| r.total).collect())
    }

    /// The median of one phase over the runs (zero where a run lacks it).
    fn phase(&self, op: &str) -> Duration {
        median(
            self.runs
                .iter()
                .map(|r| {
                    r.phases
                        .iter()
                        .filter(|(p, _)| p == op)
                        .map(|(_, d)| *d)
                        .sum()
                })
                .collect(),
        )
    }

    fn ops(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.runs {
            for (p, _) in &r.phases {
                if !v.contains(p) {
                    v.push(p.clone());
                }
            }
        }
        v
    }
}

/// Deletes every link of `ns` but lo, in this process: a namespace deleted with 1,000 links
/// is torn down by the kernel in the background under RTNL for seconds, which the next
/// measurement would pay for.
fn empty(ns: &BenchNs) -> Result<()> {
    let handle = NetNs::open_path(Path::new(&ns.path()))?;
    let name = ns.name().to_string();
    handle.run(move || {
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

/// Records one restore of `images`, then replays it `runs` times, each into a fresh
/// namespace after `quiet`.
pub fn measure(
    images: &Path,
    tag: &str,
    runs: usize,
    quiet: &dyn Fn() -> Result<()>,
) -> Result<Floor> {
    let sent = {
        let scratch = BenchNs::new(&format!("{tag}-floor-record"))?;
        let target = Target::Netns(scratch.path().into());
        floor::start();
        let r = crhook_netstate::restore::run(&target, images, &RestoreOptions::default());
        let sent = floor::stop();
        r.with_context(|| format!("record the floor's restore into {}", scratch.name()))?;
        empty(&scratch)?;
        sent
    };
    let mut out = Floor {
        runs: Vec::new(),
        sent: sent.len(),
    };
    for i in 0..runs {
        eprintln!("crhook-bench: {tag} floor run {}/{runs}", i + 1);
        let ns = BenchNs::new(&format!("{tag}-floor-{i}"))?;
        quiet()?;
        let handle = NetNs::open_path(Path::new(&ns.path()))?;
        let r = floor::replay(&handle, sent.clone())?;
        if r.failed > 0 {
            bail!(
                "the floor's replay into {}: {} requests failed ({}); it did not make the same objects",
                ns.name(),
                r.failed,
                r.failures.join("; ")
            );
        }
        empty(&ns)?;
        out.runs.push(r);
    }
    Ok(out)
}

/// Restore phases of crhook and the floor's operations that do their kernel work.
const PHASE_OPS: &[(&str, &[&str])] = &[
    (
        "links",
        &[
            "create links",
            "configure links",
            "create tun devices",
            "create link",
        ],
    ),
    ("addresses", &["add addresss"]),
    ("up", &["bring links up"]),
    ("routes", &["add routes", "add nexthops"]),
    ("rules_neighbours", &["add rules", "add neighbours"]),
    ("firewall", &["restore nftables tables"]),
    ("sysctls", &["write sysctls"]),
];

/// The floor's table: per size its total against crhook's restore, then per phase.
pub fn render(results: &[SizeResult]) -> String {
    let mut s = String::new();
    let with: Vec<&SizeResult> = results.iter().filter(|r| r.floor.is_some()).collect();
    if with.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "### Restore against the kernel's floor\n\n\
         The floor: what one restore sent the kernel (every netlink buffer, tun ioctl and \
         sysctl write, recorded as sent), replayed into a fresh namespace with nothing else. \
         crhook's restore wall time over it is crhook's own work: reading the images, the plan, \
         its dumps, the journal, the DAD settle, process start.\n"
    );
    let mut t = Table::new(
        &[
            "size",
            "floor",
            "floor range",
            "crhook restore",
            "crhook/floor",
            "sent",
        ],
        1,
    );
    for r in &with {
        let Some(f) = &r.floor else { continue };
        let total = f.total();
        let c = crate::summary::walls(&r.restore.crhook).median;
        t.row(vec![
            r.size.short.to_string(),
            fmt_dur(total.median),
            total.range(),
            fmt_dur(c),
            ratio(c, total.median).map_or("-".into(), |x| format!("{x:.2}x")),
            f.sent.to_string(),
        ]);
    }
    t.render(&mut s);
    let _ = writeln!(
        s,
        "Per phase (median): the floor's operations, and crhook's phase that does that work.\n"
    );
    let mut head = vec!["floor operation"];
    head.extend(with.iter().map(|r| r.size.short));
    let mut t = Table::new(&head, 1);
    let mut ops: Vec<String> = Vec::new();
    for r in &with {
        for o in r.floor.as_ref().map(Floor::ops).unwrap_or_default() {
            if !ops.contains(&o) {
                ops.push(o);
            }
        }
    }
    for o in &ops {
        let mut row = vec![o.clone()];
        for r in &with {
            row.push(r.floor.as_ref().map_or("-".into(), |f| fmt_dur(f.phase(o))));
        }
        t.row(row);
    }
    t.render(&mut s);
    let mut head = vec!["crhook phase: crhook / floor"];
    head.extend(with.iter().map(|r| r.size.short));
    let mut t = Table::new(&head, 1);
    for (phase, fops) in PHASE_OPS {
        let mut row = vec![phase.to_string()];
        for r in &with {
            let Some(f) = &r.floor else { continue };
            let fl: Duration = fops.iter().map(|o| f.phase(o)).sum();
            let c = part(&r.restore.crhook, phase).map(|p| p.median);
            row.push(match c {
                Some(c) => format!("{} / {}", fmt_dur(c), fmt_dur(fl)),
                None => format!("- / {}", fmt_dur(fl)),
            });
        }
        t.row(row);
    }
    t.render(&mut s);
    s
}
