//! The soak run (`crhook-bench --soak`): many checkpoint/restore/diff/delete cycles through
//! the library in this one process, then many namespaces checkpointed and restored at once,
//! with what a leak would grow read before and after: this process's open descriptors and
//! resident memory, the named namespaces, and the links of a "hub" namespace every source
//! namespace has a veth into (its far ends die with each restored namespace). Not a test: it
//! prints numbers and fails only when a cycle fails or something is left behind.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use crhook_netstate::{CheckpointOptions, RestoreOptions, Target};

use crate::memory::{block_on, vm_rss_kb};
use crate::ns::{program, BenchNs};

/// What a leak would grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gauges {
    fds: usize,
    rss_kb: u64,
    netns: usize,
    hub_links: usize,
}

fn gauges(hub: &BenchNs) -> Result<Gauges> {
    let fds = std::fs::read_dir("/proc/self/fd")
        .context("list /proc/self/fd")?
        .count();
    // this run's own namespaces: other processes may make and delete theirs meanwhile
    let prefix = format!("crh-bench-{}-", std::process::id());
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .count()
        })
        .unwrap_or(0);
    let out = hub
        .command(&program("ip")?)?
        .args(["-o", "link", "show"])
        .stdin(Stdio::null())
        .output()
        .context("ip link show in the hub")?;
    Ok(Gauges {
        fds,
        rss_kb: vm_rss_kb()?,
        netns,
        hub_links: String::from_utf8_lossy(&out.stdout).lines().count(),
    })
}

fn sh(ns: &BenchNs, script: &str) -> Result<()> {
    let out = ns
        .command(&program("sh")?)?
        .args(["-c", script])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("sh in {}", ns.name()))?;
    if !out.status.success() {
        bail!(
            "{script:?} in {}: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A small namespace like a container's: lo, a veth into the hub, a veth pair inside, a tun
/// device, addresses, routes in two tables, a rule, a neighbour, iptables rules.
fn source(tag: &str, i: usize, hub: &BenchNs) -> Result<BenchNs> {
    let ns = BenchNs::new(&format!("{tag}{i}"))?;
    let (a, b) = (i / 250, i % 250 + 1);
    sh(
        &ns,
        &format!(
            "ip link set lo up && \
             ip link add eth0 type veth peer name h{tag}{i} netns {hub} && \
             ip addr add 10.{a}.{b}.2/24 dev eth0 && ip link set eth0 up && \
             ip link add va type veth peer name vb && ip addr add 192.168.{b}.1/24 dev va && \
             ip link set va up && ip link set vb up && \
             ip tuntap add dev tun0 mode tun && ip link set tun0 up && \
             ip route add 172.16.0.0/16 via 10.{a}.{b}.1 table 100 && \
             ip rule add from 10.{a}.{b}.2 lookup 100 pref 100 && \
             ip neigh add 10.{a}.{b}.9 lladdr 02:00:00:00:00:09 dev eth0 nud permanent && \
             iptables -A INPUT -p tcp --dport 8080 -j ACCEPT && \
             iptables -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination 10.{a}.{b}.2:8080",
            hub = hub.name()
        ),
    )?;
    sh(hub, &format!("ip link set h{tag}{i} up"))?;
    Ok(ns)
}

/// Checkpoints `src`, deletes it, restores into a fresh namespace and diffs that: the
/// namespace's life across a migration. Returns the restored namespace (the next source).
fn cycle(src: BenchNs, images: &Path, tag: &str) -> Result<BenchNs> {
    if images.exists() {
        std::fs::remove_dir_all(images).with_context(|| format!("remove {}", images.display()))?;
    }
    let target = Target::Netns(src.path().into());
    block_on(crhook_netstate::checkpoint(
        &target,
        images,
        &CheckpointOptions::default(),
    ))
    .with_context(|| format!("checkpoint {}", src.name()))?;
    // the far end in the hub dies with it (restore waits for the kernel to finish that)
    drop(src);
    let dst = BenchNs::new(tag)?;
    let t = Target::Netns(dst.path().into());
    block_on(crhook_netstate::restore(
        &t,
        images,
        &RestoreOptions::default(),
    ))
    .with_context(|| format!("restore into {}", dst.name()))?;
    let d = block_on(crhook_netstate::diff(&t, images))
        .with_context(|| format!("diff {}", dst.name()))?;
    if !d.is_empty() {
        bail!("{} differs after restore: {}", dst.name(), d[0]);
    }
    Ok(dst)
}

fn report(label: &str, before: Gauges, after: Gauges, took: f64, n: usize) {
    println!(
        "{label}: {n} in {took:.1} s ({:.1} ms each) | fds {} -> {} | RSS {} -> {} KiB | named namespaces {} -> {} | hub links {} -> {}",
        took * 1000.0 / n as f64,
        before.fds,
        after.fds,
        before.rss_kb,
        after.rss_kb,
        before.netns,
        after.netns,
        before.hub_links,
        after.hub_links
    );
}

/// Runs `cycles` sequential cycles, then `parallel` namespaces at once; fails on a leak of
/// descriptors, namespaces or hub links.
pub fn run(work: &Path, cycles: usize, parallel: usize) -> Result<()> {
    let hub = BenchNs::new("soakhub")?;
    let images = work.join("soak-images");
    // one cycle first: what the allocator and lazily opened sockets keep is not a leak
    let mut ns = cycle(source("s", 0, &hub)?, &images, "soakw")?;
    let before = gauges(&hub)?;
    let t = Instant::now();
    for i in 0..cycles {
        crate::run::check_interrupted()?;
        ns =
            cycle(ns, &images, &format!("soakc{i}")).with_context(|| format!("cycle {}", i + 1))?;
    }
    let after = gauges(&hub)?;
    report(
        "sequential cycles",
        before,
        after,
        t.elapsed().as_secs_f64(),
        cycles,
    );

    let sources: Vec<BenchNs> = (0..parallel)
        .map(|i| source("p", i + 1, &hub))
        .collect::<Result<_>>()?;
    let before_p = gauges(&hub)?;
    let t = Instant::now();
    let results: Vec<Result<BenchNs>> = std::thread::scope(|s| {
        let handles: Vec<_> = sources
            .into_iter()
            .enumerate()
            .map(|(i, src)| {
                let images = work.join(format!("soak-par-{i}"));
                s.spawn(move || cycle(src, &images, &format!("soakp{i}")))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a parallel cycle panicked"))
            })
            .collect()
    });
    let took = t.elapsed().as_secs_f64();
    let restored: Vec<BenchNs> = results.into_iter().collect::<Result<_>>()?;
    let after_p = gauges(&hub)?;
    report("parallel namespaces", before_p, after_p, took, parallel);
    drop(restored);
    drop(ns);
    let end = gauges(&hub)?;
    println!(
        "after cleanup: fds {} | RSS {} KiB | named namespaces {} | hub links {}",
        end.fds, end.rss_kb, end.netns, end.hub_links
    );
    if after.fds > before.fds || after_p.fds > before_p.fds {
        bail!("open descriptors grew: {before:?} -> {after:?}, {before_p:?} -> {after_p:?}");
    }
    if after.netns != before.netns || after_p.netns != before_p.netns {
        bail!("named namespaces left behind");
    }
    if after.hub_links != before.hub_links || after_p.hub_links != before_p.hub_links {
        bail!("far ends left in the hub");
    }
    Ok(())
}
