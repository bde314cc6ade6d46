//! The kernel's floor for a restore, for the benchmark harness: what restore asked the kernel
//! to do, recorded as it was sent (the netlink buffers of every batch and transaction, the
//! tun devices made by ioctl, the sysctl writes), then replayed into a fresh namespace with
//! nothing else — no image reading, no planning, no dumps, no journal, no waiting for DAD.
//! The replay's time is the least any tool could take to make the same objects the same way;
//! restore's time above it is crhook's own overhead.
//!
//! Recording is off unless [`start`] turned it on (one process-wide switch: the benchmark
//! records one restore at a time); when off, the hooks cost one atomic load per batch.

mod record;
mod replay;

pub(crate) use record::{netlink, sysctl, tun};
pub use record::{start, stop, Sent};
pub use replay::{replay, Replayed};
