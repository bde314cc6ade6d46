//! The restore journal: every change restore makes is recorded with its undo, so that a failure
//! at any step puts the target (and the host side of veth pairs) back as it was. Undo runs in
//! reverse and collects every error rather than stopping at the first.

use crate::nl::{Nl, Req};

/// Which socket an undo goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sock {
    Target,
    Host,
    /// a peer namespace, by index in the restore's socket list
    Peer(usize),
}

pub enum Undo {
    Req {
        sock: Sock,
        req: Req,
        what: String,
    },
    /// a change whose undo an earlier entry covers (settings of a link the journal deletes)
    Nothing,
    Sysctl(crate::sysctl::SysctlUndo),
    Firewall(crate::firewall::FirewallUndo),
    /// device features of a link restore did not make, as they were
    Features {
        link: String,
        before: crate::ethtool::Features,
    },
}

pub struct Journal {
    entries: Vec<Undo>,
    fail_after: Option<usize>,
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
    /// A journal that fails its `check` after `fail_after` changes (rollback tests).
    pub fn new(fail_after: Option<usize>) -> Journal {
        Journal {
            entries: Vec::new(),
            fail_after,
        }
    }

    /// Records a change.
    pub fn push(&mut self, u: Undo) {
        self.entries.push(u);
    }

    /// Called after every step (a batch, a sysctl pass, the firewall): with `fail_after = N`,
    /// fails once N changes are recorded, so tests can prove each step rolls back.
    pub fn check(&self) -> Result<(), String> {
        crate::interrupt::check("restore")?;
        match self.fail_after {
            Some(n) if self.entries.len() >= n => Err(format!(
                "injected failure after {} changes",
                self.entries.len()
            )),
            _ => Ok(()),
        }
    }

    /// Drops entries recorded after `len` (changes whose undo an earlier entry covers).
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn into_entries(self) -> Vec<Undo> {
        self.entries
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
    // A tc action a filter bound is released after an RCU grace period once the filter is
    // deleted: until then deleting it says EPERM ("bound"). Ask again for up to a second.
    if let Req::Raw {
        msg_type: crate::tc::RTM_DELACTION,
        payload,
    } = &req
    {
        for _ in 0..100 {
            let again = Req::Raw {
                msg_type: crate::tc::RTM_DELACTION,
                payload: payload.clone(),
            };
            match nl.request(again, 0, what) {
                Ok(Err(e)) if e.errno == libc::EPERM => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
    match nl.request(req, 0, what) {
        Ok(Ok(())) => None,
        Ok(Err(e)) if already_gone(e.errno) => None,
        Ok(Err(e)) => Some(format!("undo: {what} in {}: {e}", nl.netns())),
        Err(e) => Some(format!("undo: {what}: {}", crate::error::chain(&e))),
    }
}
