//! The recording half of the floor (see the module above): process-wide, off unless
//! [`start`] turned it on; when off, the hooks cost one atomic load per batch. A leaf: the
//! netlink socket and the tun code call into it, it calls nothing of theirs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crhook_proto as pb;

static ON: AtomicBool = AtomicBool::new(false);
static SENT: Mutex<Vec<Sent>> = Mutex::new(Vec::new());

/// One thing restore asked of the kernel.
#[derive(Debug, Clone)]
pub enum Sent {
    /// one `sendmsg` of requests (a batch chunk, or an nf_tables transaction)
    Netlink {
        protocol: isize,
        op: String,
        buf: Vec<u8>,
    },
    Tun {
        name: String,
        tun: pb::Tun,
        ifindex: Option<u32>,
    },
    Sysctl {
        path: PathBuf,
        value: String,
    },
}

impl Sent {
    /// The phase it belongs to, as the floor's table names it.
    pub fn op(&self) -> String {
        match self {
            // per-object operations ("set channels of eth0 ...") count as one phase
            Sent::Netlink { op, .. } => op.split(" of ").next().unwrap_or(op).to_string(),
            Sent::Tun { .. } => "create tun devices".into(),
            Sent::Sysctl { .. } => "write sysctls".into(),
        }
    }
}

/// Starts recording what restores send, dropping anything recorded before.
pub fn start() {
    if let Ok(mut s) = SENT.lock() {
        s.clear();
    }
    ON.store(true, Ordering::SeqCst);
}

/// Stops recording and returns what was sent, in order.
pub fn stop() -> Vec<Sent> {
    ON.store(false, Ordering::SeqCst);
    SENT.lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
}

fn record(s: impl FnOnce() -> Sent) {
    if ON.load(Ordering::Relaxed) {
        if let Ok(mut v) = SENT.lock() {
            v.push(s());
        }
    }
}

pub(crate) fn netlink(protocol: isize, op: &str, buf: &[u8]) {
    record(|| Sent::Netlink {
        protocol,
        op: op.to_string(),
        buf: buf.to_vec(),
    });
}

pub(crate) fn tun(name: &str, tun: &pb::Tun, ifindex: Option<u32>) {
    record(|| Sent::Tun {
        name: name.to_string(),
        tun: *tun,
        ifindex,
    });
}

pub(crate) fn sysctl(path: &std::path::Path, value: &str) {
    record(|| Sent::Sysctl {
        path: path.to_path_buf(),
        value: value.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mine(v: &[Sent]) -> usize {
        v.iter().filter(|s| s.op() == "floor test").count()
    }

    #[test]
    fn records_only_between_start_and_stop() {
        netlink(0, "floor test", &[1, 2, 3, 4]);
        start();
        netlink(0, "floor test", &[5, 6, 7, 8]);
        let got = stop();
        netlink(0, "floor test", &[9, 9, 9, 9]);
        assert_eq!(mine(&got), 1);
        let Some(Sent::Netlink { buf, protocol, .. }) = got.iter().find(|s| s.op() == "floor test")
        else {
            panic!("not recorded: {got:?}");
        };
        assert_eq!((buf.as_slice(), *protocol), (&[5u8, 6, 7, 8][..], 0));
        assert_eq!(mine(&stop()), 0);
    }
}
