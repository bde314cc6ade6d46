//! What applying a restore works with ([`Applying`]), and the small helpers its phases
//! share (apply.rs, up.rs, guard.rs, kernel_ll.rs).

use crhook_core::StatsRecorder;

use super::{dad, Socks};
use crate::api::RestoreOptions;
use crate::journal::Journal;
use crate::netns::NetNs;
use crate::nl::Nl;

/// What applying works with: the target, the sockets, the journal and what it reports.
pub(super) struct Applying<'a> {
    pub(super) ns: &'a NetNs,
    pub(super) socks: &'a mut Socks,
    pub(super) journal: &'a mut Journal,
    pub(super) stats: &'a mut StatsRecorder,
    pub(super) warnings: &'a mut Vec<String>,
    pub(super) opts: &'a RestoreOptions,
    /// the routes to add when they are still encoded (see streamed.rs)
    pub(super) routes: Option<&'a super::streamed::Streamed>,
    /// the saved sysctls (all of them: each phase takes its own)
    pub(super) sysctls: &'a crate::sysctl::Saved,
    /// accept_dad suspended while addresses go in and links come up
    pub(super) dad: Option<dad::Suspended>,
    /// devices that keep DAD: an address of theirs (the kernel's link-local included) was
    /// tentative or had failed DAD at checkpoint
    pub(super) dad_keep: Vec<String>,
}

pub(super) fn is_v6(a: &crhook_proto::Address) -> bool {
    a.family == libc::AF_INET6 as u32
}

/// Writes the saved keys of `phase` that differ, each key's old value in `log` first;
/// returns how many it wrote.
pub(super) fn sysctls_logged(
    saved: &crate::sysctl::Saved,
    phase: crate::sysctl::Phase,
    ns: &NetNs,
    log: crate::journal::Log,
) -> std::result::Result<usize, Vec<String>> {
    if saved.is_empty() {
        return Ok(0);
    }
    let name = ns.name().to_string();
    let r = ns
        .run(|| {
            let mut nl = Nl::new(&name)?;
            Ok(crate::sysctl::apply_journaled(
                &mut nl,
                saved,
                phase,
                &|n: &str| Some(n.to_string()),
                Some(log),
            ))
        })
        .map_err(|e| vec![crate::error::chain(&e)])?;
    // each key's old value is in the journal already
    let u = r.map_err(|(e, _)| vec![crate::error::chain(&e)])?;
    Ok(u.len())
}
