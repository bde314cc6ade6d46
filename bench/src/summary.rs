//! Summaries of repeated runs (median and range) and the number formats of the report.

use std::time::Duration;

use crate::ops::Sample;

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

pub fn median_u64(mut v: Vec<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[v.len() / 2]
}

/// Median and range of one quantity over the runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spread {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
    /// how many runs
    pub n: usize,
}

impl Spread {
    pub fn of(v: Vec<Duration>) -> Spread {
        Spread {
            n: v.len(),
            min: v.iter().copied().min().unwrap_or_default(),
            max: v.iter().copied().max().unwrap_or_default(),
            median: median(v),
        }
    }

    /// The range as text, "min-max unit" ("1 run" when there is nothing to range over).
    pub fn range(&self) -> String {
        if self.n == 1 {
            return "1 run".into();
        }
        fmt_range(self.min, self.max)
    }
}

/// Wall time of every run.
pub fn walls(samples: &[Sample]) -> Spread {
    Spread::of(samples.iter().map(|s| s.total.wall).collect())
}

/// Time of the part (crhook phase or baseline step) `name` in every run; `None` when no run
/// has it.
pub fn part(samples: &[Sample], name: &str) -> Option<Spread> {
    let v: Vec<Duration> = samples
        .iter()
        .filter_map(|s| {
            let mut hits = s.parts.iter().filter(|(n, _)| n == name).peekable();
            hits.peek()?;
            Some(hits.map(|(_, d)| *d).sum())
        })
        .collect();
    (!v.is_empty()).then(|| Spread::of(v))
}

/// Median of each named part over the runs, in first-seen order.
pub fn part_medians(samples: &[Sample]) -> Vec<(String, Duration)> {
    let mut names: Vec<&str> = Vec::new();
    for s in samples {
        for (n, _) in &s.parts {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    names
        .into_iter()
        .filter_map(|n| Some((n.to_owned(), part(samples, n)?.median)))
        .collect()
}

/// Largest max RSS of any run, in KiB.
pub fn peak_rss_kb(samples: &[Sample]) -> u64 {
    samples.iter().map(|s| s.total.maxrss_kb).max().unwrap_or(0)
}

/// Largest own VmHWM of any run (the process alone, without its children), in KiB.
pub fn peak_own_kb(samples: &[Sample]) -> u64 {
    samples
        .iter()
        .map(|s| s.total.own_hwm_kb)
        .max()
        .unwrap_or(0)
}

/// Milliseconds with the precision their size warrants: "1.5 ms", "250 ms", "2.50 s".
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

/// A range in one unit, chosen by its upper end: "11.8-12.9 ms", "5.21-5.60 s".
pub fn fmt_range(lo: Duration, hi: Duration) -> String {
    let (a, b) = (lo.as_secs_f64() * 1000.0, hi.as_secs_f64() * 1000.0);
    if b >= 10_000.0 {
        format!("{:.1}-{:.1} s", a / 1000.0, b / 1000.0)
    } else if b >= 1000.0 {
        format!("{:.2}-{:.2} s", a / 1000.0, b / 1000.0)
    } else if b >= 100.0 {
        format!("{a:.0}-{b:.0} ms")
    } else {
        format!("{a:.1}-{b:.1} ms")
    }
}

pub fn fmt_kb(kb: u64) -> String {
    if kb >= 10 * 1024 {
        format!("{} MiB", kb / 1024)
    } else {
        format!("{:.1} MiB", kb as f64 / 1024.0)
    }
}

pub fn fmt_bytes(b: u64) -> String {
    if b >= 10 << 20 {
        format!("{:.0} MiB", b as f64 / f64::from(1 << 20))
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// `a / b` as "0.42x"; `None` when `b` is zero.
pub fn ratio(a: Duration, b: Duration) -> Option<f64> {
    (!b.is_zero()).then(|| a.as_secs_f64() / b.as_secs_f64())
}

pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

/// Microseconds per object, to two significant decimals below 10.
pub fn fmt_per_object(d: Duration, objects: usize) -> String {
    if objects == 0 {
        return "-".into();
    }
    let us = d.as_secs_f64() * 1e6 / objects as f64;
    if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.2} µs")
    }
}

/// A count with thousands separators: "16,620".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate with thousands separators: "123,456/s".
pub fn fmt_rate(per_sec: f64) -> String {
    thousands(per_sec.round() as usize) + "/s"
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
    fn spread_has_median_and_range() {
        let ms = Duration::from_millis;
        let s = Spread::of(vec![ms(12), ms(10), ms(30)]);
        assert_eq!((s.median, s.min, s.max), (ms(12), ms(10), ms(30)));
        assert_eq!(s.range(), "10.0-30.0 ms");
        assert_eq!(Spread::of(vec![ms(5)]).range(), "1 run");
        assert_eq!(fmt_range(ms(900), ms(1200)), "0.90-1.20 s");
    }

    #[test]
    fn parts_add_up_within_a_run() {
        let ms = Duration::from_millis;
        let run = |a, b| Sample {
            parts: vec![
                ("x".into(), ms(a)),
                ("y".into(), ms(1)),
                ("x".into(), ms(b)),
            ],
            ..Sample::default()
        };
        let runs = [run(1, 2), run(3, 4), run(5, 6)];
        assert_eq!(part(&runs, "x").map(|s| s.median), Some(ms(7)));
        assert_eq!(part(&runs, "z"), None);
        assert_eq!(
            part_medians(&runs),
            vec![("x".to_owned(), ms(7)), ("y".to_owned(), ms(1))]
        );
    }

    #[test]
    fn numbers_format_by_magnitude() {
        assert_eq!(fmt_dur(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(fmt_dur(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_dur(Duration::from_millis(2500)), "2.50 s");
        assert_eq!(fmt_dur(Duration::from_secs(25)), "25.0 s");
        assert_eq!(fmt_rate(1_234_567.4), "1,234,567/s");
        assert_eq!(fmt_rate(999.0), "999/s");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(0), "0");
        assert_eq!(fmt_per_object(Duration::from_millis(1), 400), "2.50 µs");
        assert_eq!(fmt_ratio(ratio(Duration::ZERO, Duration::ZERO)), "-");
    }
}
