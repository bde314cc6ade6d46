//! Firewall state of a namespace and the network lock.
//!
//! Owns: every nf_tables table (iptables-nft's and native ones alike), captured and rebuilt
//! over nfnetlink (`nfnl`: one consistent set of dumps, one all-or-nothing transaction, no
//! program started), legacy iptables and ip6tables rules through
//! `iptables-legacy-save`/`-restore`, the `CR_IPTABLES`/`CR_IP6TABLES` user commands, and
//! crhook's lock. Images written before nfnetlink capture hold nf_tables state as
//! `iptables-nft-save` and `nft list` text; those still restore and diff through the tools.
//! Must not: enter a namespace itself (every program runs through [`NetNs::command`], whose
//! child enters it, and sockets are opened by [`NetNs::run`]), rely on `PATH`, or load kernel
//! modules just to look (a legacy iptables tool instantiates the table it inspects, so the
//! legacy tables are read only when `/proc/thread-self/net/ip_tables_names` lists some).
//!
//! What goes into an image: every nf_tables table, except crhook's lock table and CRIU's
//! `CRIU-*` tables, and in iptables-nft's tables (`ip`/`ip6` filter, nat, mangle, raw,
//! security) CRIU's lock chain `CRIU` and crhook's `crhook-lock` chain and the rules jumping
//! to them; legacy tables when they hold rules (a rule, a user chain or a non-ACCEPT policy),
//! with the same lock chains cut out of the text. Counters (rule and chain counters, named
//! counters, quota usage, "last used", set element expiry) are zeroed unless asked for.
//!
//! With `CR_IPTABLES` set the user's command replaces iptables-save and iptables-restore for
//! both families (or IPv4 alone when `CR_IP6TABLES` is set too): `sh -c "$CR_IPTABLES"` runs
//! in the namespace with `CR_IPTABLES_ACTION=save|restore` and `CR_IPTABLES_FAMILY=ipv4|ipv6`;
//! its stdout is the saved text and its stdin the text to restore. iptables-nft's tables of
//! that family are then left to the command; native tables are still saved over nfnetlink.
//!
//! [`NetNs::run`]: crate::netns::NetNs::run
//! [`NetNs::command`]: crate::netns::NetNs::command

mod capture;
mod diff;
mod exec;
mod lock;
mod nfnl;
mod nftx;
mod plan;
mod remap;
mod restore;
mod seqdiff;
pub mod syntax;
mod tidy;
mod validate;
mod xt;

pub use capture::{capture, outside_nf_tables};
pub use diff::{diff, diff_with};
pub use lock::{is_locked, lock, lock_owned, lock_xtables, unlock};
pub(crate) use lock::{lock_with, unlock_nft, Form as LockForm};
pub(crate) use nfnl::family_name as family_label;
pub(crate) use nfnl::guard;
pub use remap::remap;
pub use restore::{check, conflicts, restore, FirewallUndo};
pub(crate) use restore::{restore_journaled, StepUndo};
pub use tidy::tidy;
pub use validate::hostile;

use crhook_proto::{FirewallRuleset, FirewallSource};

/// Says, once the first change is ready (an nf_tables transaction built), whether the
/// restore may make it: a restore can prepare its firewall while the caller is still busy
/// with what must precede it, and not start at all should that fail.
pub(crate) type Go<'g> = &'g mut dyn FnMut() -> bool;

/// The nf_tables ruleset generation of `ns` (NFT_MSG_GETGEN): one more per committed
/// transaction, crhook's own lock and unlock included.
pub fn generation(ns: &crate::netns::NetNs) -> crate::error::Result<u32> {
    nfnl::generation(ns)
}

/// Splits saved rulesets into what restore applies before the links exist and what after:
/// iptables text goes first (iptables-restore resolves every rule through getaddrinfo, which
/// walks every device), nft text after (it may name devices), and of the nf_tables tables
/// those whose chains hook devices or that hold flowtables after, the rest first.
pub fn split_for_links(
    saved: Vec<FirewallRuleset>,
) -> (Vec<FirewallRuleset>, Vec<FirewallRuleset>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for mut r in saved {
        if r.source == FirewallSource::Nftables as i32 {
            // moved, not copied: the rules are most of a large image
            let (late, early): (Vec<_>, Vec<_>) = std::mem::take(&mut r.tables)
                .into_iter()
                .partition(nfnl::needs_devices);
            if !late.is_empty() {
                after.push(FirewallRuleset {
                    tables: late,
                    ..r.clone()
                });
            }
            before.push(FirewallRuleset { tables: early, ..r });
        } else if r.source == FirewallSource::Nft as i32 {
            after.push(r);
        } else {
            before.push(r);
        }
    }
    (before, after)
}
