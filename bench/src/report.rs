//! Medians and the markdown tables printed at the end.

use std::fmt::Write as _;
use std::time::Duration;

use crate::ops::Sample;
use crate::run::Measured;
use crate::spec::Size;

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
    pub image_bytes: u64,
    pub baseline_bytes: u64,
    /// `crhook diff` exit code on the namespace crhook restored (0: identical)
    pub verify_crhook: i32,
    /// `crhook diff` on the namespace the baseline restored: exit code, lines of output
    pub verify_baseline: (i32, usize),
    /// `crhook diff` exit code on the unchanged source namespace
    pub diff_codes: Vec<i32>,
    /// file pairs the baseline diff found different on the unchanged source namespace
    pub baseline_diff_differing: Vec<String>,
    /// iptables-restore after the baseline restore (links up, addresses in), one run
    pub naive_iptables_restore: Option<Measured>,
    /// iptables-restore into a namespace with only the links (down), one run
    pub links_iptables_restore: Option<Measured>,
    pub spawn_setns: Duration,
    pub spawn_ip_netns_exec: Duration,
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

pub fn fmt_dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn fmt_kb(kb: u64) -> String {
    if kb >= 10 * 1024 {
        format!("{} MiB", kb / 1024)
    } else {
        format!("{:.1} MiB", kb as f64 / 1024.0)
    }
}

fn fmt_bytes(b: u64) -> String {
    if b >= 10 << 20 {
        format!("{:.0} MiB", b as f64 / f64::from(1 << 20))
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "-".into();
    }
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

struct Medians {
    wall: Duration,
    cpu: Duration,
    rss: u64,
}

fn medians(samples: &[Sample]) -> Medians {
    Medians {
        wall: median(samples.iter().map(|s| s.total.wall).collect()),
        cpu: median(samples.iter().map(|s| s.total.cpu).collect()),
        rss: median_u64(samples.iter().map(|s| s.total.maxrss_kb).collect()),
    }
}

/// Median of each named part over the runs, in first-seen order.
fn part_medians(samples: &[Sample]) -> Vec<(String, Duration)> {
    let mut names: Vec<String> = Vec::new();
    for s in samples {
        for (n, _) in &s.parts {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    names
        .into_iter()
        .map(|n| {
            let v = samples
                .iter()
                .map(|s| {
                    s.parts
                        .iter()
                        .filter(|(pn, _)| *pn == n)
                        .map(|(_, d)| *d)
                        .sum()
                })
                .collect();
            (n, median(v))
        })
        .collect()
}

fn ops(r: &SizeResult) -> [(&'static str, &OpRuns); 3] {
    [
        ("capture", &r.capture),
        ("restore (empty ns)", &r.restore),
        ("diff", &r.diff),
    ]
}

/// The whole report, markdown.
pub fn render(results: &[SizeResult], runs: usize, crhook: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## Results (median of {runs} runs; crhook: {crhook})\n\n\
         Wall time from spawn to exit; CPU is user+system of the process (and for crhook, of \
         the iptables processes it runs); max RSS is the largest single process of the \
         operation. Baseline times are the sum of its commands.\n"
    );
    for r in results {
        let _ = writeln!(s, "- {}", r.size.describe());
    }
    s.push('\n');
    s.push_str(
        "| size | operation | crhook | baseline | crhook/baseline | crhook CPU | baseline CPU | crhook max RSS | baseline max RSS |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in results {
        for (name, op) in ops(r) {
            let c = medians(&op.crhook);
            let b = medians(&op.baseline);
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {} | {} | {} | {} | {} | {} |",
                r.size.name,
                fmt_dur(c.wall),
                fmt_dur(b.wall),
                ratio(c.wall, b.wall),
                fmt_dur(c.cpu),
                fmt_dur(b.cpu),
                fmt_kb(c.rss),
                fmt_kb(b.rss)
            );
        }
    }

    s.push_str(
        "\n### Size on disk\n\n| size | crhook image directory | baseline save files | crhook/baseline |\n|---|---:|---:|---:|\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2}x |",
            r.size.name,
            fmt_bytes(r.image_bytes),
            fmt_bytes(r.baseline_bytes),
            r.image_bytes as f64 / (r.baseline_bytes.max(1)) as f64
        );
    }

    for (title, pick) in [
        (
            "crhook phases (median, from --print-stats)",
            (|op: &OpRuns| op.crhook.as_slice()) as fn(&OpRuns) -> &[Sample],
        ),
        ("baseline steps (median)", |op: &OpRuns| {
            op.baseline.as_slice()
        }),
    ] {
        let _ = writeln!(s, "\n### {title}\n");
        for i in 0..3 {
            let opname = ops(&results[0]).get(i).map(|o| o.0).unwrap_or("?");
            let per_size: Vec<Vec<(String, Duration)>> = results
                .iter()
                .map(|r| part_medians(pick(ops(r)[i].1)))
                .collect();
            let mut names: Vec<String> = Vec::new();
            for p in &per_size {
                for (n, _) in p {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
            }
            if names.is_empty() {
                continue;
            }
            let _ = write!(s, "{opname}:\n\n| part |");
            for r in results {
                let _ = write!(s, " {} |", r.size.name);
            }
            s.push_str("\n|---|");
            for _ in results {
                s.push_str("---:|");
            }
            s.push('\n');
            for n in names {
                let _ = write!(s, "| {n} |");
                for p in &per_size {
                    let d = p.iter().find(|(pn, _)| *pn == n).map(|(_, d)| *d);
                    let _ = write!(s, " {} |", d.map(fmt_dur).unwrap_or_else(|| "-".into()));
                }
                s.push('\n');
            }
            s.push('\n');
        }
    }

    s.push_str("### Checks and notes\n\n");
    for r in results {
        let name = r.size.name;
        let _ = writeln!(
            s,
            "- {name}: namespace built in {}; `crhook diff` on the namespace crhook restored: {}; \
             on the namespace the baseline restored: exit {} ({} lines of differences); \
             `crhook diff` on the unchanged source exited {:?}; the baseline diff found {} on the unchanged source.",
            fmt_dur(r.build),
            if r.verify_crhook == 0 { "identical (exit 0)".to_owned() } else { format!("exit {}", r.verify_crhook) },
            r.verify_baseline.0,
            r.verify_baseline.1,
            r.diff_codes,
            if r.baseline_diff_differing.is_empty() {
                "no differences".to_owned()
            } else {
                format!("differences in {}", r.baseline_diff_differing.join(", "))
            }
        );
        let fw_empty = part_medians(&r.restore.baseline)
            .iter()
            .find(|(n, _)| n == "iptables-restore")
            .map(|(_, d)| fmt_dur(*d))
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
            "- {name}: starting one process in the namespace: {} with setns in the child (what the baselines pay per command), {} through `ip netns exec`.",
            fmt_dur(r.spawn_setns),
            fmt_dur(r.spawn_ip_netns_exec)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(vec![ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }

    #[test]
    fn durations_format_by_magnitude() {
        assert_eq!(fmt_dur(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(fmt_dur(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_dur(Duration::from_millis(2500)), "2.50 s");
        assert_eq!(fmt_dur(Duration::from_secs(25)), "25.0 s");
    }
}
