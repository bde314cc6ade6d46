//! Links up beside the nf_tables transaction, behind a guard.
//!
//! The transaction that puts the saved nf_tables state back takes no RTNL, and bringing links
//! up, adding IPv6 addresses and adding routes take no nf_tables lock (registering a device
//! does, which is why the links exist before it starts). At L the transaction is a third of
//! the restore, and the links used to wait for it down, so the namespace would pass no
//! traffic without its rules. Restore now raises a guard first (firewall/nfnl/guard.rs: a
//! table per family whose chains drop every packet at the first hooks), brings the links up
//! and adds the rest beside the transaction, and lowers the guard once the transaction and
//! every sysctl are in: still no moment in which the namespace passes traffic without its
//! rules, and for that whole time it passes none.
//!
//! Only where the target passed no traffic before (no link up, lo included: a namespace
//! `runc restore` or `ip netns add` made); a target the runtime already wired up (Podman's,
//! a CNI plugin's) keeps passing its traffic through the restore, and its links wait for the
//! transaction as before. Also where the kernel refuses the guard's tables, or the image
//! names a table as the guard.

use crhook_proto::FirewallRuleset;

use super::apply::Applying;
use crate::error::chain;

/// A guard restore raised, to lower.
pub(super) struct Guard {
    families: Vec<u8>,
}

/// Raises the guard for the saved `rulesets` (the nf_tables state restored by one
/// transaction, and what hooks devices), journaled, where it may serve (see the module doc);
/// None where it does not: the links then come up once the transaction is in.
pub(super) fn raise<'r>(
    cx: &mut Applying,
    target_up: bool,
    rulesets: impl Iterator<Item = &'r FirewallRuleset>,
) -> std::result::Result<Option<Guard>, Vec<String>> {
    if target_up {
        return Ok(None);
    }
    let tables = rulesets.flat_map(|r| &r.tables);
    let Some(families) = crate::firewall::guard::families(tables) else {
        return Ok(None);
    };
    let undo = crate::firewall::StepUndo::Nfnl(crate::firewall::guard::undo(&families));
    let log = cx.journal.log();
    let seq = log.firewall(&undo).map_err(|e| vec![chain(&e)])?;
    match crate::firewall::guard::raise(cx.ns, &families) {
        Ok(()) => {
            cx.journal.made(1);
            cx.journal.check().map_err(|e| vec![e])?;
            Ok(Some(Guard { families }))
        }
        Err(e) => {
            // a refused transaction committed nothing: nothing to undo
            log.settle(seq, &[0]).map_err(|e| vec![chain(&e)])?;
            tracing::debug!(
                "restore guard not raised ({}): links come up once the nf_tables transaction is in",
                chain(&e)
            );
            Ok(None)
        }
    }
}

/// Lowers the guard: the saved tables and sysctls are in.
pub(super) fn lower(cx: &mut Applying, g: Guard) -> std::result::Result<(), Vec<String>> {
    crate::firewall::guard::lower(cx.ns, &g.families).map_err(|e| vec![chain(&e)])?;
    cx.journal.made(1);
    cx.journal.check().map_err(|e| vec![e])
}
