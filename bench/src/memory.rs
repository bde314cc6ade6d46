//! In-process memory check: calls the library's `checkpoint` entry point again and again in
//! this process and reads VmRSS after each call. Memory a call keeps shows as growth from one
//! call to the next; the first call's rise over the starting point is the allocator's high
//! water mark, which glibc keeps for reuse rather than returning.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::Thread;

use anyhow::{bail, Context, Result};
use crhook_netstate::{CheckpointOptions, Target};

/// VmRSS before the first call and after each call, in KiB.
#[derive(Debug, Clone, Default)]
pub struct InProcess {
    pub before_kb: u64,
    pub after_kb: Vec<u64>,
}

/// This process's resident set size from /proc/self/status, in KiB.
pub(crate) fn vm_rss_kb() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let Some(line) = text.lines().find(|l| l.starts_with("VmRSS:")) else {
        bail!("no VmRSS line in /proc/self/status");
    };
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("parse {line:?} in /proc/self/status"))
}

/// Wakes the thread that polls the future.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it is ready, parking in between. The library's entry
/// points do their work on a thread of their own and only await its answer, so they need no
/// runtime (and the harness no async dependency).
pub(crate) fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Checkpoints the namespace at `netns` into `images` (replaced each time) `calls` times.
pub fn repeated_checkpoints(netns: &str, images: &Path, calls: usize) -> Result<InProcess> {
    let target = Target::Netns(netns.into());
    let opts = CheckpointOptions::default();
    let mut out = InProcess {
        before_kb: vm_rss_kb()?,
        after_kb: Vec::with_capacity(calls),
    };
    for i in 0..calls {
        crate::run::check_interrupted()?;
        if images.exists() {
            std::fs::remove_dir_all(images)
                .with_context(|| format!("remove {}", images.display()))?;
        }
        block_on(crhook_netstate::checkpoint(&target, images, &opts))
            .with_context(|| format!("in-process checkpoint {} of {netns}", i + 1))?;
        out.after_kb.push(vm_rss_kb()?);
    }
    Ok(out)
}
