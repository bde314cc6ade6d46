//! The markdown report printed at the end: medians with their range, ratios, the lock window,
//! cost per object, memory, sizes on disk, crhook's phases and the baseline's steps.

use std::fmt::Write as _;
use std::time::Duration;

use crate::bench::{OpRuns, SizeResult, Verify};
use crate::ops::Sample;
use crate::summary::{
    fmt_bytes, fmt_dur, fmt_kb, fmt_per_object, fmt_ratio, median_u64, part, part_medians,
    peak_own_kb, peak_rss_kb, ratio, thousands, walls, Spread,
};

/// A markdown table: the first `left` columns left-aligned, the rest right-aligned.
pub(crate) struct Table {
    head: Vec<String>,
    left: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(head: &[&str], left: usize) -> Table {
        Table {
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            left,
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self, s: &mut String) {
        let line = |s: &mut String, cells: &[String]| {
            s.push('|');
            for c in cells {
                let _ = write!(s, " {c} |");
            }
            s.push('\n');
        };
        line(s, &self.head);
        s.push('|');
        for i in 0..self.head.len() {
            s.push_str(if i < self.left { "---|" } else { "---:|" });
        }
        s.push('\n');
        for r in &self.rows {
            line(s, r);
        }
        s.push('\n');
    }
}

pub fn ops(r: &SizeResult) -> [(&'static str, &OpRuns); 3] {
    [
        ("capture", &r.capture),
        ("restore (empty ns)", &r.restore),
        ("diff", &r.diff),
    ]
}

fn median_cpu(samples: &[Sample]) -> Duration {
    crate::summary::median(samples.iter().map(|s| s.total.cpu).collect())
}

fn median_rss(samples: &[Sample]) -> u64 {
    median_u64(samples.iter().map(|s| s.total.maxrss_kb).collect())
}

/// "3 x image + 32 MiB", in KiB.
pub fn rss_limit_kb(image_bytes: u64) -> u64 {
    3 * image_bytes / 1024 + 32 * 1024
}

fn signed_kb(d: i64) -> String {
    let tenths = (d as f64 / 102.4).round();
    if tenths == 0.0 {
        return "0.0 MiB".into();
    }
    format!("{:+.1} MiB", tenths / 10.0)
}

/// Difference between the last and the first of `v` (KiB), as "+1.2 MiB".
fn growth(v: &[u64]) -> String {
    match (v.first(), v.last()) {
        (Some(a), Some(b)) => {
            signed_kb(i64::try_from(*b).unwrap_or(i64::MAX) - i64::try_from(*a).unwrap_or(0))
        }
        _ => "-".into(),
    }
}

/// The whole report, markdown.
pub fn render(results: &[SizeResult], runs: usize, crhook: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Results ({runs} run{} per operation; crhook: {crhook})\n\n\
         Wall time from spawn to exit, median and range (min-max) over the runs; CPU is \
         user+system of the process (and for crhook, of the iptables processes it runs); max \
         RSS is the largest single process of the operation (median over the runs). Baseline \
         times are the sum of its commands.\n",
        if runs == 1 { "" } else { "s" }
    );
    for r in results {
        let _ = writeln!(s, "- {}", r.size.describe());
    }
    s.push('\n');
    main_table(&mut s, results);
    s.push_str(&crate::targets::render(results));
    s.push_str(&floor(results));
    lock_and_wall(&mut s, results);
    per_object(&mut s, results);
    memory(&mut s, results);
    phases(&mut s, results);
    notes(&mut s, results);
    s
}

fn main_table(s: &mut String, results: &[SizeResult]) {
    let mut t = Table::new(
        &[
            "size",
            "operation",
            "crhook",
            "crhook range",
            "baseline",
            "baseline range",
            "crhook/baseline",
            "crhook CPU",
            "baseline CPU",
            "crhook max RSS",
            "baseline max RSS",
        ],
        2,
    );
    for r in results {
        for (name, op) in ops(r) {
            let (c, b) = (walls(&op.crhook), walls(&op.baseline));
            t.row(vec![
                r.size.short.to_owned(),
                name.to_owned(),
                fmt_dur(c.median),
                c.range(),
                fmt_dur(b.median),
                b.range(),
                fmt_ratio(ratio(c.median, b.median)),
                fmt_dur(median_cpu(&op.crhook)),
                fmt_dur(median_cpu(&op.baseline)),
                fmt_kb(median_rss(&op.crhook)),
                fmt_kb(median_rss(&op.baseline)),
            ]);
        }
    }
    t.render(s);
}

/// Whole-process times and the lock window, at every size run.
fn lock_and_wall(s: &mut String, results: &[SizeResult]) {
    s.push_str(
        "### Lock window and whole-process times\n\n\
         `crhook checkpoint --lock --print-stats` (its own image directory; the namespace is \
         unlocked before crhook exits): the locked time is crhook's `locked_us`, from taking \
         the lock to removing it; the lock phase is taking it. Median (min-max).\n\n",
    );
    let mut t = Table::new(
        &[
            "size",
            "locked (locked_us)",
            "lock phase",
            "checkpoint --lock wall",
            "checkpoint wall",
            "restore wall",
        ],
        1,
    );
    let cell = |sp: Option<Spread>| {
        sp.map(|x| format!("{} ({})", fmt_dur(x.median), x.range()))
            .unwrap_or_else(|| "not reported".into())
    };
    for r in results {
        let locked: Vec<Duration> = r.lock.iter().filter_map(|x| x.locked).collect();
        let locked = (!locked.is_empty()).then(|| Spread::of(locked));
        t.row(vec![
            r.size.short.to_owned(),
            cell(locked),
            cell(part(&r.lock, "lock")),
            cell(Some(walls(&r.lock))),
            cell(Some(walls(&r.capture.crhook))),
            cell(Some(walls(&r.restore.crhook))),
        ]);
    }
    t.render(s);
}

/// Median wall time per object, and per object added from one size to the next: the first
/// carries the fixed cost of starting processes, the second shows whether the cost of one more
/// object stays flat (linear growth) or rises.
fn per_object(s: &mut String, results: &[SizeResult]) {
    s.push_str(
        "### Cost per object\n\n\
         Objects: links + addresses + routes + policy rules + iptables and ip6tables rules. \
         Median wall time divided by the objects; then, between consecutive sizes, the extra \
         time divided by the extra objects (flat when the cost grows linearly).\n\n",
    );
    let head = [
        "size",
        "objects",
        "crhook capture",
        "baseline capture",
        "crhook restore",
        "baseline restore",
    ];
    let medians = |r: &SizeResult| {
        [
            walls(&r.capture.crhook).median,
            walls(&r.capture.baseline).median,
            walls(&r.restore.crhook).median,
            walls(&r.restore.baseline).median,
        ]
    };
    let mut t = Table::new(&head, 1);
    for r in results {
        let n = r.size.objects();
        let mut row = vec![r.size.short.to_owned(), thousands(n)];
        row.extend(medians(r).iter().map(|d| fmt_per_object(*d, n)));
        t.row(row);
    }
    t.render(s);
    let mut sorted: Vec<&SizeResult> = results.iter().collect();
    sorted.sort_by_key(|r| r.size.objects());
    if sorted.len() < 2 {
        return;
    }
    let mut t = Table::new(&head, 1);
    t.head[0] = "sizes".into();
    t.head[1] = "added objects".into();
    for w in sorted.windows(2) {
        let (a, b) = (w[0], w[1]);
        let added = b.size.objects().saturating_sub(a.size.objects());
        let mut row = vec![
            format!("{} to {}", a.size.short, b.size.short),
            thousands(added),
        ];
        for (da, db) in medians(a).iter().zip(medians(b)) {
            let us = (db.as_secs_f64() - da.as_secs_f64()) * 1e6 / added.max(1) as f64;
            row.push(if us.abs() >= 10.0 {
                format!("{us:.0} µs")
            } else {
                format!("{us:.2} µs")
            });
        }
        t.row(row);
    }
    t.render(s);
}

fn memory(s: &mut String, results: &[SizeResult]) {
    s.push_str(
        "### Memory and size on disk\n\n\
         Peak RSS: the largest `wait4` max RSS of any run (crhook and the iptables/nft \
         processes it runs, whichever is larger), against 3 x image size + 32 MiB. Own \
         VmHWM: crhook's process alone, sampled every 5 ms.\n\n",
    );
    let mut t = Table::new(
        &[
            "size",
            "crhook image",
            "baseline save files",
            "image/baseline",
            "3 x image + 32 MiB",
            "peak RSS capture",
            "peak RSS restore",
            "peak RSS diff",
            "capture and restore within",
            "own VmHWM capture",
            "own VmHWM restore",
        ],
        1,
    );
    for r in results {
        let limit = rss_limit_kb(r.image_bytes);
        let peak = peak_rss_kb(&r.capture.crhook).max(peak_rss_kb(&r.restore.crhook));
        t.row(vec![
            r.size.short.to_owned(),
            fmt_bytes(r.image_bytes),
            fmt_bytes(r.baseline_bytes),
            format!(
                "{:.2}x",
                r.image_bytes as f64 / r.baseline_bytes.max(1) as f64
            ),
            fmt_kb(limit),
            fmt_kb(peak_rss_kb(&r.capture.crhook)),
            fmt_kb(peak_rss_kb(&r.restore.crhook)),
            fmt_kb(peak_rss_kb(&r.diff.crhook)),
            format!(
                "{} ({:.0}% of it)",
                if peak <= limit { "yes" } else { "no" },
                100.0 * peak as f64 / limit.max(1) as f64
            ),
            fmt_kb(peak_own_kb(&r.capture.crhook)),
            fmt_kb(peak_own_kb(&r.restore.crhook)),
        ]);
    }
    t.render(s);

    s.push_str(
        "crhook's max RSS in each run, in the order run (a leak would grow along the row):\n\n",
    );
    let runs = results
        .iter()
        .map(|r| r.capture.crhook.len())
        .max()
        .unwrap_or(0);
    let mut head = vec!["size".to_owned(), "operation".to_owned()];
    head.extend((1..=runs).map(|i| format!("run {i}")));
    head.push("last - first".into());
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head, 2);
    for r in results {
        for (name, samples) in [
            ("checkpoint", &r.capture.crhook),
            ("checkpoint --lock", &r.lock),
            ("restore", &r.restore.crhook),
            ("diff", &r.diff.crhook),
        ] {
            let kb: Vec<u64> = samples.iter().map(|x| x.total.maxrss_kb).collect();
            let mut row = vec![r.size.short.to_owned(), name.to_owned()];
            row.extend((0..runs).map(|i| kb.get(i).map(|k| fmt_kb(*k)).unwrap_or_default()));
            row.push(growth(&kb));
            t.row(row);
        }
    }
    t.render(s);

    s.push_str(
        "In one process: the library's `checkpoint` called repeatedly in the harness, VmRSS \
         after each call (the rise of the first call is the allocator keeping its high water \
         mark; a leak grows from call to call):\n\n",
    );
    let calls = results
        .iter()
        .map(|r| r.in_process.after_kb.len())
        .max()
        .unwrap_or(0);
    let mut head = vec!["size".to_owned(), "before".to_owned()];
    head.extend((1..=calls).map(|i| format!("after call {i}")));
    head.push("last - first call".into());
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    let mut t = Table::new(&head, 1);
    for r in results {
        let m = &r.in_process;
        let mut row = vec![r.size.short.to_owned(), fmt_kb(m.before_kb)];
        row.extend((0..calls).map(|i| m.after_kb.get(i).map(|k| fmt_kb(*k)).unwrap_or_default()));
        row.push(growth(&m.after_kb));
        t.row(row);
    }
    t.render(s);
}

fn phases(s: &mut String, results: &[SizeResult]) {
    let Some(first) = results.first() else {
        return;
    };
    for (title, pick) in [
        (
            "crhook phases (median, from --print-stats)",
            (|op: &OpRuns| op.crhook.as_slice()) as fn(&OpRuns) -> &[Sample],
        ),
        ("baseline steps (median)", |op: &OpRuns| {
            op.baseline.as_slice()
        }),
    ] {
        let _ = writeln!(s, "### {title}\n");
        for (i, (opname, _)) in ops(first).iter().enumerate() {
            let per_size: Vec<Vec<(String, Duration)>> = results
                .iter()
                .map(|r| part_medians(pick(ops(r)[i].1)))
                .collect();
            let mut names: Vec<&str> = Vec::new();
            for p in &per_size {
                for (n, _) in p {
                    if !names.contains(&n.as_str()) {
                        names.push(n);
                    }
                }
            }
            if names.is_empty() {
                continue;
            }
            let _ = writeln!(s, "{opname}:\n");
            let mut head = vec!["part"];
            head.extend(results.iter().map(|r| r.size.short));
            let mut t = Table::new(&head, 1);
            for n in names {
                let mut row = vec![n.to_owned()];
                for p in &per_size {
                    let d = p.iter().find(|(pn, _)| pn == n).map(|(_, d)| *d);
                    row.push(d.map(fmt_dur).unwrap_or_else(|| "-".into()));
                }
                t.row(row);
            }
            t.render(s);
        }
    }
}

fn verdict(v: &Verify) -> String {
    let text = match (v.code, &v.error) {
        (0, _) => "identical (exit 0)".into(),
        (1, _) => format!("exit 1, {} lines of differences", v.lines),
        (code, Some(e)) => format!("failed (exit {code}: {e})"),
        (code, None) => format!("exit {code}"),
    };
    if v.attempts > 1 {
        format!(
            "{text}, at attempt {} (dumps interrupted before)",
            v.attempts
        )
    } else {
        text
    }
}

/// "the same in every view", or what differs.
fn agreement(a: &crate::agree::Agreement) -> String {
    if a.differing.is_empty() {
        return "the same in every view".into();
    }
    let each: Vec<String> = a
        .differing
        .iter()
        .map(|d| {
            format!(
                "{}: {} lines only in the source, {} only restored (e.g. `{}`)",
                d.view, d.only_source, d.only_restored, d.example
            )
        })
        .collect();
    format!("differs in {}", each.join("; "))
}

fn notes(s: &mut String, results: &[SizeResult]) {
    s.push_str("### Checks and notes\n\n");
    for r in results {
        let name = r.size.short;
        let _ = writeln!(
            s,
            "- {name}: namespace built in {}; `crhook diff` on the namespace crhook restored \
             (first run): {}; on the namespace the baseline restored: {}; `crhook diff` on the \
             unchanged source exited {:?}; the baseline diff found {} on the unchanged source.",
            fmt_dur(r.build),
            verdict(&r.verify_crhook),
            verdict(&r.verify_baseline),
            r.diff_codes,
            if r.baseline_diff_differing.is_empty() {
                "no differences".to_owned()
            } else {
                format!("differences in {}", r.baseline_diff_differing.join(", "))
            }
        );
        if let Some(a) = &r.agreement {
            let _ = writeln!(
                s,
                "- {name}: the source and the namespace crhook restored (first run), each shown \
                 by the tools ({}): {}.",
                a.views.join(", "),
                agreement(a)
            );
        }
        let fw_empty = part(&r.restore.baseline, "iptables-restore")
            .map(|x| fmt_dur(x.median))
            .unwrap_or_else(|| "-".into());
        if let (Some(links), Some(naive)) = (r.links_iptables_restore, r.naive_iptables_restore) {
            let _ = writeln!(
                s,
                "- {name}: `iptables-restore` of the same rules: {fw_empty} into the empty namespace \
                 (baseline, median, and where crhook runs it); {} with the links created but down \
                 and no addresses (1 run); {} after links up and addresses in (the naive order; 1 run).",
                fmt_dur(links.wall),
                fmt_dur(naive.wall)
            );
        }
        let _ = writeln!(
            s,
            "- {name}: before {} timed runs and checks the harness waited for idle CPUs; {}.",
            r.quiet_waits,
            if r.quiet_gave_up == 0 {
                "they always went idle".to_owned()
            } else {
                format!(
                    "{} they were still busy after {} and it went on (those runs include other load)",
                    match r.quiet_gave_up {
                        1 => "once".to_owned(),
                        n => format!("{n} times"),
                    },
                    fmt_dur(r.quiet_limit)
                )
            }
        );
        let _ = writeln!(
            s,
            "- {name}: starting one process in the namespace: {} with setns in the child (what the baselines pay per command), {} through `ip netns exec`.",
            fmt_dur(r.spawn_setns),
            fmt_dur(r.spawn_ip_netns_exec)
        );
    }
}

/// Restore phases of crhook and the floor's operations that do their kernel work (the floor
/// adds every address in one operation, restore its IPv6 ones after link up).
type PhaseOps = (&'static [&'static str], &'static [&'static str]);
const PHASE_OPS: &[PhaseOps] = &[
    (
        &["links"],
        &[
            "create links",
            "configure links",
            "create tun devices",
            "create link",
        ],
    ),
    (&["channels"], &["set channels"]),
    (&["tc"], &["add tc objects"]),
    (&["addresses", "addresses_v6"], &["add addresses"]),
    (&["up"], &["bring links up"]),
    (&["routes"], &["add routes", "add nexthops"]),
    (&["rules_neighbours"], &["add rules", "add neighbours"]),
    (&["firewall"], &["restore nftables tables"]),
    (&["sysctls_early", "sysctls"], &["write sysctls"]),
];

/// The floor's table: per size its total against crhook's restore, then per phase.
fn floor(results: &[SizeResult]) -> String {
    let mut s = String::new();
    let with: Vec<&SizeResult> = results.iter().filter(|r| r.floor.is_some()).collect();
    if with.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "### Restore against the kernel's floor\n\n\
         The floor: what one restore sent the kernel (every netlink buffer, tun ioctl and \
         sysctl write, recorded as sent), replayed into a fresh namespace with nothing else, \
         each replay right after one of crhook's restores, one thing after the other. \
         crhook runs some of it side by side (the nf_tables transaction beside what precedes \
         link up, or behind its guard beside the IPv6 addresses and routes), which can bring \
         it under the floor; above it, the rest is crhook's own work: reading the images, \
         the plan, its dumps, the journal, the DAD settle, process start.\n"
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
        let c = walls(&r.restore.crhook).median;
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
        for o in r
            .floor
            .as_ref()
            .map(crate::floor::Floor::ops)
            .unwrap_or_default()
        {
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
    for (phases, fops) in PHASE_OPS {
        let mut row = vec![phases.join(" + ")];
        for r in &with {
            let Some(f) = &r.floor else { continue };
            let fl: Duration = fops.iter().map(|o| f.phase(o)).sum();
            let parts: Vec<Duration> = phases
                .iter()
                .filter_map(|p| part(&r.restore.crhook, p).map(|p| p.median))
                .collect();
            let c = (!parts.is_empty()).then(|| parts.iter().sum::<Duration>());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_left_then_right() {
        let mut t = Table::new(&["a", "b", "c"], 1);
        t.row(vec!["x".into(), "1".into(), "2".into()]);
        let mut s = String::new();
        t.render(&mut s);
        assert_eq!(s, "| a | b | c |\n|---|---:|---:|\n| x | 1 | 2 |\n\n");
    }

    #[test]
    fn memory_limit_and_growth() {
        assert_eq!(rss_limit_kb(10 << 20), 30 * 1024 + 32 * 1024);
        assert_eq!(growth(&[1024, 2048, 3072]), "+2.0 MiB");
        assert_eq!(growth(&[2048, 1024]), "-1.0 MiB");
        assert_eq!(growth(&[]), "-");
        assert_eq!(growth(&[2048, 2040]), "0.0 MiB");
    }
}
