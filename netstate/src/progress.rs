//! Progress events for a front end to show while a long checkpoint, restore or diff runs:
//! tracing events with target [`PROGRESS_TARGET`] (`step` for what starts now, `kind` and
//! `count` for objects handled; core's `StatsRecorder` adds `phase` for each one finished).
//! The library never prints; without a subscriber that asks for them they cost a branch.

pub use crhook_core::stats::PROGRESS_TARGET;

/// What starts now ("capture /run/netns/web").
pub(crate) fn step(what: &str) {
    tracing::trace!(target: PROGRESS_TARGET, step = what);
}

/// `n` more objects of `kind` ("routes") handled.
pub(crate) fn count(kind: &str, n: u64) {
    tracing::trace!(target: PROGRESS_TARGET, kind, count = n);
}

/// The plural a count is shown with: "address" -> "addresses", "route" -> "routes".
pub(crate) fn plural(kind: &str) -> String {
    if kind.ends_with('s') {
        format!("{kind}es")
    } else {
        format!("{kind}s")
    }
}
