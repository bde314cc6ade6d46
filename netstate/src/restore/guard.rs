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
//! Only where it pays (see [`FROM_NFT_OBJECTS`]: a large ruleset and much to add once the
//! links are up), and only where the target passed no traffic before (no link up, lo
//! included: a namespace `runc restore` or `ip netns add` made); a target the runtime already
//! wired up (Podman's, a CNI plugin's) keeps passing its traffic through the restore, and its
//! links wait for the transaction as before. Not where the kernel refuses the guard's tables,
//! or where the image names a table as the guard.

use crhook_proto::FirewallRuleset;

use super::applying::Applying;
use crate::error::chain;

/// The least nf_tables state (rules and set elements saved) and the least work after link up
/// (routes and IPv6 addresses to add) for which restore raises the guard. Beside each other
/// the transaction and the routes share two cores with the route builder, the sysctls and
/// the kernel's workers, and lowering the guard costs an RCU grace period when the process
/// exits (closing a netfilter socket flushes what the delete left to free, ~12 ms here):
/// measured alternating with and without, at 5,500 rules and 10,000 routes the guard cost
/// 8 ms (74 -> 82 ms), at 20,000 and 30,000 it broke even (178 ms both), at 55,000 and
/// 100,000 (the benchmark's L) it saved 125 ms (748 -> 623 ms).
const FROM_NFT_OBJECTS: usize = 30_000;
const FROM_AFTER_UP: usize = 50_000;

/// A guard restore raised, to lower.
pub(super) struct Guard {
    families: Vec<u8>,
}

/// Raises the guard for the saved `rulesets` (the nf_tables state restored by one
/// transaction, and what hooks devices) with `after_up` objects to add once the links are up,
/// journaled, where it may serve and pays (see the module doc and [`FROM_NFT_OBJECTS`]);
/// None where not: the links then come up once the transaction is in.
pub(super) fn raise<'r>(
    cx: &mut Applying,
    target_up: bool,
    rulesets: impl Iterator<Item = &'r FirewallRuleset> + Clone,
    after_up: usize,
) -> std::result::Result<Option<Guard>, Vec<String>> {
    let tables = rulesets.flat_map(|r| &r.tables);
    let objects: usize = tables
        .clone()
        .map(|t| t.rules.len() + t.elements.len())
        .sum();
    if target_up || objects < FROM_NFT_OBJECTS || after_up < FROM_AFTER_UP {
        return Ok(None);
    }
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
