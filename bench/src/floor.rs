//! The kernel's floor for a restore (`crhook_netstate::floor`): one restore of the images,
//! in this process with recording on, into a scratch namespace; then, per run, a fresh
//! namespace and a replay of exactly what that restore sent (netlink buffers, tun ioctls,
//! sysctl writes), timed alone. The replays take turns with crhook's restores (bench.rs), so
//! the machine's speed, which moves by tens of percent over minutes on a shared VM, moves
//! both alike. The replay sends one thing after the other, where crhook runs some of them
//! side by side (the nf_tables transaction beside other phases), so crhook may come in under
//! it; its time over the floor's is its own overhead: reading and checking the images,
//! planning against the live namespace, the dumps it makes while restoring, the journal, the
//! DAD settle.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use crhook_netstate::floor::{self, Replayed};
use crhook_netstate::{NetNs, RestoreOptions, Target};

use crate::ns::BenchNs;
use crate::summary::{median, Spread};

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
    pub fn phase(&self, op: &str) -> Duration {
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

    pub fn ops(&self) -> Vec<String> {
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

/// What one restore of the images sent, recorded to be replayed.
pub struct Recorded {
    tag: String,
    sent: Vec<floor::Sent>,
    floor: Floor,
}

/// Records one restore of `images` into a scratch namespace.
pub fn record(images: &Path, tag: &str) -> Result<Recorded> {
    let scratch = BenchNs::new(&format!("{tag}-floor-record"))?;
    let target = Target::Netns(scratch.path().into());
    floor::start();
    let r = crhook_netstate::restore::run(&target, images, &RestoreOptions::default());
    let sent = floor::stop();
    r.with_context(|| format!("record the floor's restore into {}", scratch.name()))?;
    forget_peak();
    Ok(Recorded {
        tag: tag.to_string(),
        floor: Floor {
            runs: Vec::new(),
            sent: sent.len(),
        },
        sent,
    })
}

impl Recorded {
    /// Replays what was recorded into a fresh namespace (run `i`) after `quiet`.
    pub fn replay(&mut self, i: usize, quiet: &dyn Fn() -> Result<()>) -> Result<()> {
        let tag = &self.tag;
        eprintln!("crhook-bench: {tag} floor run {}", i + 1);
        let ns = BenchNs::new(&format!("{tag}-floor-{i}"))?;
        quiet()?;
        let handle = NetNs::open_path(Path::new(&ns.path()))?;
        let r = floor::replay(&handle, self.sent.clone())?;
        if r.failed > 0 {
            bail!(
                "the floor's replay into {}: {} requests failed ({}); it did not make the same objects",
                ns.name(),
                r.failed,
                r.failures.join("; ")
            );
        }
        self.floor.runs.push(r);
        // the replay's buffers were this process's: the next crhook spawned would start there
        forget_peak();
        Ok(())
    }

    /// The runs replayed.
    pub fn done(self) -> Floor {
        self.floor
    }
}

/// Gives back what the recorded restore freed and resets this process's peak RSS to what it
/// holds now. A child's `wait4` max RSS starts from the peak of the process that spawned it
/// (until exec it runs in the spawner's memory, whose high-water mark the kernel keeps for
/// it), so without this every crhook process measured after the recording would report at
/// least the in-process restore's peak (at L 133 MiB against its own 91 MiB).
fn forget_peak() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap memory to the system
    unsafe {
        libc::malloc_trim(0);
    }
    // "5": reset the peak RSS to the current RSS (Linux 4.0 and later)
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("crhook-bench: reset this process's peak RSS: {e}");
    }
}
