//! The targets table: each of crhook's performance targets, the value measured for it and
//! whether it is met. A report, never a check: a missed target changes no exit code.
//!
//! The netlink write rate is crhook's restore `netlink_requests` (every request it sent in a
//! batch; dumps are not counted) divided by the restore phases that send them: links,
//! addresses, up, routes and rules_neighbours. Those phases also hold what is not netlink
//! (waiting for RTNL while the kernel's own workers hold it), so the rate is a lower bound;
//! the routes phase alone (routes added / routes phase) is shown beside it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::bench::SizeResult;
use crate::report::rss_limit_kb;
use crate::summary::{
    fmt_bytes, fmt_dur, fmt_kb, fmt_rate, part, peak_own_kb, peak_rss_kb, ratio, walls, Spread,
};

/// Restore phases in which crhook sends netlink write requests.
const NETLINK_PHASES: [&str; 5] = ["links", "addresses", "up", "routes", "rules_neighbours"];
const RESTORE_RATIO: f64 = 0.5;
const FLOOR_RATIO: f64 = 1.15;
const CHECKPOINT_RATIO: f64 = 0.8;
const SMALL_CHECKPOINT: Duration = Duration::from_millis(15);
const SMALL_LOCKED: Duration = Duration::from_millis(5);
const SMALL_RESTORE: Duration = Duration::from_millis(60);
const LARGE_SYSCTLS: Duration = Duration::from_millis(100);
const LARGE_NETLINK_RATE: f64 = 120_000.0;

/// One row: what, at which size, the target as text, and the measurement (text and verdict)
/// or `None` when that size was not run or crhook did not report the value.
struct Row {
    what: &'static str,
    size: &'static str,
    target: String,
    measured: Option<(String, bool)>,
}

fn at<'a>(results: &'a [SizeResult], short: &str) -> Option<&'a SizeResult> {
    results.iter().find(|r| r.size.short == short)
}

/// Wall-time ratio crhook/baseline of an operation against a ceiling.
fn ratio_row(
    results: &[SizeResult],
    what: &'static str,
    size: &'static str,
    ceiling: f64,
    restore: bool,
) -> Row {
    let measured = at(results, size).and_then(|r| {
        let op = if restore { &r.restore } else { &r.capture };
        let (c, b) = (walls(&op.crhook).median, walls(&op.baseline).median);
        let x = ratio(c, b)?;
        Some((
            format!("{x:.2}x ({} vs {})", fmt_dur(c), fmt_dur(b)),
            x <= ceiling,
        ))
    });
    Row {
        what,
        size,
        target: format!("<= {ceiling}x baseline"),
        measured,
    }
}

/// A median time against a ceiling.
fn time_row(what: &'static str, size: &'static str, ceiling: Duration, v: Option<Spread>) -> Row {
    Row {
        what,
        size,
        target: format!("<= {}", fmt_dur(ceiling)),
        measured: v.map(|v| {
            (
                format!("{} ({})", fmt_dur(v.median), v.range()),
                v.median <= ceiling,
            )
        }),
    }
}

/// Median over the restore runs of requests / time of [`NETLINK_PHASES`].
fn netlink_rate(r: &SizeResult) -> Option<f64> {
    let rates: Vec<f64> = r
        .restore
        .crhook
        .iter()
        .filter_map(|s| {
            let t: Duration = s
                .parts
                .iter()
                .filter(|(n, _)| NETLINK_PHASES.contains(&n.as_str()))
                .map(|(_, d)| *d)
                .sum();
            (s.netlink_requests > 0 && !t.is_zero())
                .then(|| s.netlink_requests as f64 / t.as_secs_f64())
        })
        .collect();
    median_f64(rates)
}

fn median_f64(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn rows(results: &[SizeResult]) -> Vec<Row> {
    let small = at(results, "S");
    let large = at(results, "L");
    let locked = small.and_then(|r| {
        let v: Vec<Duration> = r.lock.iter().filter_map(|s| s.locked).collect();
        (!v.is_empty()).then(|| Spread::of(v))
    });
    let memory = large.map(|r| {
        let peak = peak_rss_kb(&r.capture.crhook).max(peak_rss_kb(&r.restore.crhook));
        let limit = rss_limit_kb(r.image_bytes);
        let own = peak_own_kb(&r.capture.crhook).max(peak_own_kb(&r.restore.crhook));
        (
            format!(
                "{} (limit {} for a {} image; crhook's own VmHWM {})",
                fmt_kb(peak),
                fmt_kb(limit),
                fmt_bytes(r.image_bytes),
                fmt_kb(own)
            ),
            peak <= limit,
        )
    });
    let rate = large.and_then(|r| {
        let rate = netlink_rate(r)?;
        let routes = part(&r.restore.crhook, "routes")
            .filter(|p| !p.median.is_zero())
            .map(|p| {
                format!(
                    "; routes phase alone {}",
                    fmt_rate(r.size.routes as f64 / p.median.as_secs_f64())
                )
            })
            .unwrap_or_default();
        Some((
            format!("{}{routes}", fmt_rate(rate)),
            rate >= LARGE_NETLINK_RATE,
        ))
    });
    vec![
        ratio_row(results, "restore", "M", RESTORE_RATIO, true),
        ratio_row(results, "restore", "L", RESTORE_RATIO, true),
        ratio_row(results, "checkpoint", "M", CHECKPOINT_RATIO, false),
        ratio_row(results, "checkpoint", "L", CHECKPOINT_RATIO, false),
        time_row(
            "checkpoint wall time",
            "S",
            SMALL_CHECKPOINT,
            small.map(|r| walls(&r.capture.crhook)),
        ),
        time_row(
            "checkpoint --lock wall time",
            "S",
            SMALL_CHECKPOINT,
            small.map(|r| walls(&r.lock)),
        ),
        time_row("lock window (locked_us)", "S", SMALL_LOCKED, locked),
        time_row(
            "restore wall time",
            "S",
            SMALL_RESTORE,
            small.map(|r| walls(&r.restore.crhook)),
        ),
        time_row(
            "sysctl capture (checkpoint phase sysctls)",
            "L",
            LARGE_SYSCTLS,
            large.and_then(|r| part(&r.capture.crhook, "sysctls")),
        ),
        Row {
            what: "restore over the kernel's floor",
            size: "L",
            target: format!("<= {FLOOR_RATIO}x"),
            measured: large.and_then(|r| {
                let f = r.floor.as_ref()?.total().median;
                let c = walls(&r.restore.crhook).median;
                let x = ratio(c, f)?;
                Some((
                    format!("{x:.2}x ({} vs {})", fmt_dur(c), fmt_dur(f)),
                    x <= FLOOR_RATIO,
                ))
            }),
        },
        Row {
            what: "peak RSS (checkpoint, restore)",
            size: "L",
            target: "<= 3 x image + 32 MiB".into(),
            measured: memory,
        },
        Row {
            what: "netlink write rate (restore)",
            size: "L",
            target: format!(">= {}", fmt_rate(LARGE_NETLINK_RATE)),
            measured: rate,
        },
    ]
}

pub fn render(results: &[SizeResult]) -> String {
    let mut s = String::from(
        "### Targets\n\n\
         Medians (min-max). Ratios are crhook/baseline wall time. The netlink write rate is \
         restore's `netlink_requests` over its links, addresses, up, routes and \
         rules_neighbours phases (a lower bound: those phases also wait for RTNL).\n\n\
         | target | size | goal | measured | met |\n|---|---|---|---|---|\n",
    );
    for r in rows(results) {
        let (measured, met) = match r.measured {
            Some((m, ok)) => (m, if ok { "yes" } else { "no" }),
            None if at(results, r.size).is_none() => (format!("size {} not run", r.size), "-"),
            None => ("not reported by crhook".to_owned(), "-"),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {measured} | {met} |",
            r.what, r.size, r.target
        );
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_rates() {
        assert_eq!(median_f64(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_f64(Vec::new()), None);
    }

    #[test]
    fn sizes_not_run_are_named() {
        let text = render(&[]);
        assert!(text.contains("| restore | M | <= 0.5x baseline | size M not run | - |"));
        assert!(text.contains("| lock window (locked_us) | S | <= 5.0 ms | size S not run | - |"));
        assert!(text
            .contains("| restore over the kernel's floor | L | <= 1.15x | size L not run | - |"));
    }
}
