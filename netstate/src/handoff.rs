//! Closing a NETLINK_NETFILTER socket without waiting for nf_tables' destroy work.
//!
//! Releasing such a socket (the last close, or the exit of the process holding it) runs
//! nf_tables' netlink notifier, which flushes the namespace's destroy work: after a commit
//! that deleted anything (every unlock deletes the lock table) that work waits one RCU grace
//! period, 12 ms here, idle or not. A `checkpoint --lock` that has unlocked and written its
//! image has nothing left to wait for, yet its exit waited for that work (perf: do_exit ->
//! task_work_run -> __fput -> netlink_release -> nft_rcv_nl_event -> __flush_work). Closing
//! the socket on a thread of our own does not help: the process ends only when all its
//! threads have, and one blocked in that flush cannot be interrupted.
//!
//! So the socket is handed to the kernel: registered as the one fixed file of a new io_uring,
//! its own descriptor closed, then the ring closed. Tearing a ring down is the kernel's own
//! work item (io_ring_exit_work on a kernel worker), which drops the ring's file references
//! there, so the release and its flush run on a kernel worker and this process goes on (and
//! may exit) at once. Nothing of the namespace depends on that release any more: the lock is
//! gone and only kernel memory waits to be freed. Where io_uring is not available
//! (`kernel.io_uring_disabled`, a seccomp filter, an old kernel) the socket is closed here,
//! as before, waiting.
//!
//! Two raw system calls (io_uring_setup, io_uring_register) through libc, not an io_uring
//! crate: nothing is submitted and no ring is mapped, the ring is only a holder the kernel
//! tears down on its own worker.
//!
//! Must not be used for a socket that still owns a table (NFT_TABLE_F_OWNER): the table
//! would outlive the call, and the process, by up to two grace periods.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `IORING_REGISTER_FILES` of io_uring_register(2).
const IORING_REGISTER_FILES: libc::c_uint = 2;

/// Releases `owner` (whose descriptor is `fd`) on a kernel worker where io_uring can take
/// it; otherwise drops it here.
pub(crate) fn release<T>(owner: T, fd: RawFd) {
    let ring = match ring() {
        Some(r) => r,
        None => return drop(owner),
    };
    let fds = [fd];
    // SAFETY: io_uring_register reads `nr_args` (1) descriptors from the array, which lives
    // on this stack for the duration of the call; the ring descriptor is open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring.as_raw_fd(),
            IORING_REGISTER_FILES,
            fds.as_ptr(),
            1 as libc::c_uint,
        )
    };
    if r != 0 {
        tracing::debug!(
            "io_uring_register: {}; closing the netfilter socket here",
            std::io::Error::last_os_error()
        );
    }
    // the ring holds its own reference now (or, on failure, none and this is the release)
    drop(owner);
    drop(ring);
}

/// A new io_uring with one entry, or `None` where the kernel refuses one.
fn ring() -> Option<OwnedFd> {
    // struct io_uring_params: 120 bytes, all zero asks for the defaults; the kernel writes
    // the ring offsets back into it
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup reads and writes `struct io_uring_params` (120 bytes) at the
    // pointer, which is a live, writable 120-byte array on this stack.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1 as libc::c_uint,
            params.as_mut_ptr(),
        )
    };
    if fd < 0 {
        tracing::debug!(
            "io_uring_setup: {}; closing the netfilter socket here",
            std::io::Error::last_os_error()
        );
        return None;
    }
    let fd = RawFd::try_from(fd).ok()?;
    // SAFETY: io_uring_setup returned a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}
