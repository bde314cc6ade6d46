//! The restore journal: every change restore makes is announced with its undo before it is
//! made ([`log`]: on disk, so a restore killed outright is undone by the next run), and a
//! failure at any step puts the target (and the host side of veth pairs) back as it was by
//! replaying that log in reverse ([`replay`]), collecting every error rather than stopping at
//! the first.

pub mod log;
pub mod replay;

use crate::nl::{Nl, Req};

pub use log::Log;

/// Which socket an undo goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Sock {
    Target,
    Host,
    /// a peer namespace, by index in the restore's socket list (and the journal's header)
    Peer(usize),
}

/// The journal of one restore: the log, the changes made so far, and the test hook.
pub struct Journal {
    log: Log,
    changes: usize,
    fail_after: Option<usize>,
    /// the last intent not settled yet: its number and entries
    pending: (u32, usize),
}

/// The test hook for rollback tests: `CRHOOK_FAIL_AFTER=N` makes a restore fail after its
/// N-th journaled change. Not part of the options a caller sets: it exists to prove that
/// every step rolls back, through the real binary.
pub fn fail_after_from_env() -> Option<usize> {
    std::env::var("CRHOOK_FAIL_AFTER")
        .ok()
        .and_then(|v| v.parse().ok())
}

impl Journal {
    /// A journal writing to `log` that fails its `check` after `fail_after` changes
    /// (rollback tests).
    pub fn new(log: Log, fail_after: Option<usize>) -> Journal {
        Journal {
            log,
            changes: 0,
            fail_after,
            pending: (0, 0),
        }
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// Counts `n` changes whose undo is logged already (or covered by another's: settings of
    /// a link the journal deletes).
    pub fn made(&mut self, n: usize) {
        self.changes += n;
    }

    /// Logs the undo of one change before it is made, a change whose undo is harmless even
    /// if the change fails (settings put back as they were).
    pub fn ahead(&mut self, sock: Sock, req: &Req, what: &str) -> Result<(), String> {
        self.log
            .intent(std::iter::once((sock, req, what)))
            .map_err(|e| crate::error::chain(&e))?;
        self.changes += 1;
        Ok(())
    }

    /// Logs the undo of each change of a batch before the batch is sent.
    pub fn intend<'a>(
        &mut self,
        undos: impl IntoIterator<Item = (Sock, &'a Req, &'a str)>,
    ) -> Result<(), String> {
        let mut n = 0;
        let seq = self
            .log
            .intent(undos.into_iter().inspect(|_| n += 1))
            .map_err(|e| crate::error::chain(&e))?;
        self.pending = (seq, n);
        Ok(())
    }

    /// Says which changes of the last intent were made (`ok[i]`); the others are not undone.
    pub fn settle(&mut self, ok: impl IntoIterator<Item = bool>) -> Result<(), String> {
        let mut failed = Vec::new();
        let mut made = 0;
        let (seq, n) = std::mem::take(&mut self.pending);
        for (i, ok) in ok.into_iter().enumerate().take(n) {
            if ok {
                made += 1;
            } else {
                failed.push(i as u32);
            }
        }
        self.changes += made;
        self.log
            .settle(seq, &failed)
            .map_err(|e| crate::error::chain(&e))
    }

    /// Called after every step (a batch, a sysctl pass, the firewall): with `fail_after = N`,
    /// fails once N changes are recorded, so tests can prove each step rolls back.
    pub fn check(&self) -> Result<(), String> {
        crate::interrupt::check("restore")?;
        match self.fail_after {
            Some(n) if self.changes >= n => {
                Err(format!("injected failure after {} changes", self.changes))
            }
            _ => Ok(()),
        }
    }

    /// Counts the changes since `len` as none: changes whose undo an earlier entry covers
    /// (their log entries stay; undoing an object twice finds it gone the second time).
    pub fn truncate(&mut self, len: usize) {
        self.changes = self.changes.min(len);
    }

    pub fn len(&self) -> usize {
        self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    pub fn into_log(self) -> Log {
        self.log
    }
}

/// Errnos that mean the object is already gone (removed with its link or address).
pub fn already_gone(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOENT | libc::ESRCH | libc::ENODEV | libc::EADDRNOTAVAIL | libc::ENXIO
    )
}

/// Sends one undo request; None when it worked or the object was already gone.
pub fn undo_req(nl: &mut Nl, req: Req, what: &str) -> Option<String> {
    match nl.request(req, 0, what) {
        Ok(Ok(())) => None,
        Ok(Err(e)) if already_gone(e.errno) => None,
        Ok(Err(e)) => Some(format!("undo: {what} in {}: {e}", nl.netns())),
        Err(e) => Some(format!("undo: {what}: {}", crate::error::chain(&e))),
    }
}
