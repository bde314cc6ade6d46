//! SIGTERM, SIGINT and SIGHUP during checkpoint, restore, the hook and the CRIU action script:
//! a runtime that times out its hook sends SIGTERM, an operator presses ^C. The handler only
//! tells the library to stop at its next safe point (`crhook_netstate::interrupt`); the
//! library then rolls a restore back or removes a checkpoint's lock, and the command fails
//! with one line as any failure does. Commands that change nothing (show, diff) keep the
//! default action and simply end.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

extern "C" fn on_signal(_: std::ffi::c_int) {
    crhook_netstate::interrupt::interrupt();
}

/// Installs the handler for the three signals; a failure leaves the default action, which
/// ends crhook (what it did before).
pub fn install() {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: the handler does one atomic store, which is async-signal-safe, and touches
        // nothing else of the process.
        if let Err(e) = unsafe { sigaction(s, &action) } {
            tracing::debug!("install {s} handler: {e}");
        }
    }
}
