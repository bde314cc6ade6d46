//! Stopping on a signal. A runtime that times out its hook sends SIGTERM; an operator presses
//! ^C. Neither may leave a half-restored namespace or a lock behind, so the binary's handler
//! for SIGTERM, SIGINT and SIGHUP only calls [`interrupt`] (an atomic store, safe in a signal
//! handler), and the operations stop at their next safe point: restore at the next journal
//! check (it then rolls back everything it did and reports "interrupted"), checkpoint at the
//! next phase (it then removes its lock and writes no image). The flag is process-wide: an
//! agent embedding the library that calls it stops every operation in flight.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks every operation in this process to stop at its next safe point.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The error an operation stops with once interrupted.
pub(crate) fn check(what: &str) -> Result<(), String> {
    if interrupted() {
        Err(format!("{what} interrupted by a signal"))
    } else {
        Ok(())
    }
}
