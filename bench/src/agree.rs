//! The independent comparison beside `crhook diff`: the source namespace and the one crhook
//! restored (its first run), each shown by the tools a user reads them with (`ip`, `tc`,
//! `iptables-save`, `ip6tables-save`, `nft`, `sysctl`), and compared view by view as sets of
//! lines. Normalised away is only what no restore keeps: interface indexes (`N:` before a
//! link or address, `@ifN`, `link-netnsid`), bridge timers running, address and route
//! lifetimes counting down, packet and byte counters, and the keys the kernel draws at random
//! per namespace (`tcp_fastopen_key`) or will not read (`stable_secret`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result};

use crate::ns::{program, BenchNs};
use crate::ops::Tools;

/// What the comparison found: the views compared, and per view that differs the lines only
/// one side has (source, restored), a few of them as examples.
#[derive(Debug, Default, Clone)]
pub struct Agreement {
    pub views: Vec<&'static str>,
    pub differing: Vec<Differing>,
}

#[derive(Debug, Clone)]
pub struct Differing {
    pub view: &'static str,
    pub only_source: usize,
    pub only_restored: usize,
    pub example: String,
}

/// One view: its name, the program and arguments, and how its output becomes lines.
struct View<'a> {
    name: &'static str,
    program: &'a Path,
    args: Vec<String>,
    shape: Shape,
}

#[derive(Clone, Copy)]
enum Shape {
    /// `ip -d link show`: a link's lines joined into one
    Links,
    /// one line per object
    Lines,
    /// `iptables-save`: comments and counters out
    Save,
    /// `sysctl -a`: the keys no restore keeps out; exits 255 over the keys it cannot read
    Sysctl,
}

/// Compares `src` and `dst`, the namespace crhook restored from `src`'s images.
pub fn compare(tools: &Tools, src: &BenchNs, dst: &BenchNs) -> Result<Agreement> {
    let nft = program("nft")?;
    let sysctl = program("sysctl")?;
    let ip = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut views = vec![
        View {
            name: "ip -d link",
            program: &tools.ip,
            args: ip(&["-d", "link", "show"]),
            shape: Shape::Links,
        },
        View {
            name: "ip addr",
            program: &tools.ip,
            args: ip(&["-o", "addr", "show"]),
            shape: Shape::Lines,
        },
        View {
            name: "ip -4 route table all",
            program: &tools.ip,
            args: ip(&["-4", "route", "show", "table", "all"]),
            shape: Shape::Lines,
        },
        View {
            name: "ip -6 route table all",
            program: &tools.ip,
            args: ip(&["-6", "route", "show", "table", "all"]),
            shape: Shape::Lines,
        },
        View {
            name: "ip -4 rule",
            program: &tools.ip,
            args: ip(&["-4", "rule", "show"]),
            shape: Shape::Lines,
        },
        View {
            name: "ip -6 rule",
            program: &tools.ip,
            args: ip(&["-6", "rule", "show"]),
            shape: Shape::Lines,
        },
        View {
            name: "ip neigh permanent",
            program: &tools.ip,
            args: ip(&["neigh", "show", "nud", "permanent"]),
            shape: Shape::Lines,
        },
        View {
            name: "iptables-save",
            program: &tools.iptables_save,
            args: Vec::new(),
            shape: Shape::Save,
        },
        View {
            name: "ip6tables-save",
            program: &tools.ip6tables_save,
            args: Vec::new(),
            shape: Shape::Save,
        },
        View {
            name: "nft list ruleset",
            program: &nft,
            args: ip(&["list", "ruleset"]),
            shape: Shape::Lines,
        },
        View {
            name: "tc qdisc",
            program: &tools.tc,
            args: ip(&["qdisc", "show"]),
            shape: Shape::Lines,
        },
        View {
            name: "sysctl net",
            program: &sysctl,
            args: ip(&["-a", "--pattern", "^net\\."]),
            shape: Shape::Sysctl,
        },
    ];
    // classes and filters are shown per device: one tc process reads a command per link
    let names = link_names(&show(src, &views[0])?);
    let mut batch = String::new();
    for n in &names {
        for cmd in ["class show dev", "filter show dev"] {
            batch.push_str(&format!("{cmd} {n}\n"));
        }
        batch.push_str(&format!("filter show dev {n} ingress\n"));
    }
    let batch_file = std::env::temp_dir().join(format!("crhook-bench-tc-{}", std::process::id()));
    std::fs::write(&batch_file, &batch).context("write the tc batch")?;
    views.push(View {
        name: "tc class and filter",
        program: &tools.tc,
        args: vec!["-batch".into(), batch_file.display().to_string()],
        shape: Shape::Lines,
    });
    let mut out = Agreement::default();
    for v in &views {
        let a = lines(&show(src, v)?, v.shape);
        let b = lines(&show(dst, v)?, v.shape);
        out.views.push(v.name);
        let only = |x: &BTreeMap<String, usize>, y: &BTreeMap<String, usize>| {
            x.iter()
                .filter(|(k, n)| y.get(*k).copied().unwrap_or(0) < **n)
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        let (oa, ob) = (only(&a, &b), only(&b, &a));
        if !oa.is_empty() || !ob.is_empty() {
            let example = [("source", oa.first()), ("restored", ob.first())]
                .into_iter()
                .filter_map(|(side, l)| l.map(|l| format!("{side}: {l}")))
                .collect::<Vec<_>>()
                .join(" / ");
            out.differing.push(Differing {
                view: v.name,
                only_source: oa.len(),
                only_restored: ob.len(),
                example,
            });
        }
    }
    let _ = std::fs::remove_file(batch_file);
    Ok(out)
}

/// The view's output in `ns`.
fn show(ns: &BenchNs, v: &View<'_>) -> Result<String> {
    let out = ns
        .command(v.program)?
        .args(&v.args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {} in {}", v.name, ns.name()))?;
    if !out.status.success() && !matches!(v.shape, Shape::Sysctl) {
        anyhow::bail!(
            "{} in {}: {}",
            v.name,
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The link names of `ip -d link show` output.
fn link_names(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    v.sort();
    v
}

/// The output as a multiset of normalised lines.
fn lines(text: &str, shape: Shape) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut add = |l: String| *out.entry(l).or_insert(0) += 1;
    match shape {
        Shape::Links => {
            let mut cur = String::new();
            for l in text.lines() {
                if !l.starts_with(' ') && !cur.is_empty() {
                    add(normalise(&std::mem::take(&mut cur)));
                }
                cur.push_str(l.trim());
                cur.push(' ');
            }
            if !cur.is_empty() {
                add(normalise(&cur));
            }
        }
        Shape::Lines => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .for_each(|l| add(normalise(l))),
        Shape::Sysctl => text
            .lines()
            .filter(|l| !volatile_key(l))
            .for_each(|l| add(normalise(l))),
        Shape::Save => text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .for_each(|l| add(normalise(l))),
    }
    out
}

/// Keys the kernel draws at random per namespace or refuses to read.
fn volatile_key(line: &str) -> bool {
    line.starts_with("net.ipv4.tcp_fastopen_key") || line.contains(".stable_secret")
}

/// What no restore keeps, out of one line.
fn normalise(line: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut it = line.split_whitespace().peekable();
    let mut first = true;
    while let Some(w) = it.next() {
        // the interface index before a link or address
        if first && w.ends_with(':') && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit()) {
            first = false;
            continue;
        }
        first = false;
        // timers, lifetimes and counters: the name stays, the number goes
        let counting = w.ends_with("_timer")
            || matches!(
                w,
                "valid_lft" | "preferred_lft" | "expires" | "packets" | "bytes" | "link-netnsid"
            );
        if counting {
            words.push(w.to_string());
            if it.peek().is_some_and(|n| n != &"forever") {
                it.next();
                words.push("N".into());
            }
            continue;
        }
        // "veth0@if12" (a peer in another namespace, by index); "[12:3400]" counters
        let w = match w.split_once("@if") {
            Some((name, idx))
                if idx
                    .trim_end_matches(':')
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
            {
                format!("{name}@if{}", if idx.ends_with(':') { ":" } else { "" })
            }
            _ => w.to_string(),
        };
        if w.starts_with('[') && w.ends_with(']') && w.contains(':') {
            words.push("[N:N]".into());
            continue;
        }
        words.push(w);
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_timers_lifetimes_and_counters_are_normalised_and_nothing_else() {
        assert_eq!(
            normalise("12: veth0@if13: <BROADCAST,UP> mtu 1500 link-netnsid 0"),
            "veth0@if: <BROADCAST,UP> mtu 1500 link-netnsid N"
        );
        assert_eq!(
            normalise("3: eth0    inet6 fd00::1/64 scope global dynamic valid_lft 299sec preferred_lft forever"),
            "eth0 inet6 fd00::1/64 scope global dynamic valid_lft N preferred_lft forever"
        );
        assert_eq!(
            normalise("bridge hello_timer 1.23 gc_timer 4.50 priority 32768"),
            "bridge hello_timer N gc_timer N priority 32768"
        );
        assert_eq!(normalise(":INPUT ACCEPT [12:3400]"), ":INPUT ACCEPT [N:N]");
        assert_eq!(
            normalise("tcp dport 22 counter packets 3 bytes 180 accept"),
            "tcp dport 22 counter packets N bytes N accept"
        );
        // a route's metric or an address is not a counter
        assert_eq!(
            normalise("10.0.0.0/8 via 10.1.0.1 dev eth0 metric 100"),
            "10.0.0.0/8 via 10.1.0.1 dev eth0 metric 100"
        );
    }

    #[test]
    fn a_link_is_one_line_and_names_lose_their_peer() {
        let text = "1: lo: <LOOPBACK> mtu 65536\n    link/loopback 00:00\n2: va@vb: <UP> mtu 1500\n    link/ether 02:00 \n    veth\n";
        let l = lines(text, Shape::Links);
        assert_eq!(l.len(), 2);
        assert!(l.contains_key("va@vb: <UP> mtu 1500 link/ether 02:00 veth"));
        assert_eq!(link_names(text), ["lo", "va"]);
    }
}
