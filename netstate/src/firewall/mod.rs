//! Firewall state of a namespace and the network lock.
//!
//! Owns: iptables and ip6tables rules of both backends (nf_tables through
//! `iptables-nft-save`/`-restore`, legacy through `iptables-legacy-save`/`-restore`, each
//! restored with its own tool), native nftables tables (sets, maps, named counters) through
//! `nft`, the `CR_IPTABLES`/`CR_IP6TABLES` user commands, and crhook's lock. Must not: enter a
//! namespace itself (every program runs through [`NetNs::command`], whose child enters it),
//! rely on `PATH`, or load kernel modules just to look (a legacy iptables tool instantiates
//! the table it inspects, so the legacy tables are read only when
//! `/proc/thread-self/net/ip_tables_names` lists some).
//!
//! What goes into an image: iptables-nft tables whenever nftables has any; legacy tables when
//! they hold rules (a rule, a user chain or a non-ACCEPT policy); every nftables table that
//! iptables-nft does not own (`ip`/`ip6` tables filter, nat, mangle, raw, security), except
//! crhook's lock table and CRIU's `CRIU-*` tables. CRIU's iptables lock (chain `CRIU`, rules
//! matching mark 0xc114) and crhook's iptables lock chain are cut out of the iptables text.
//! Counters are zeroed unless asked for (`iptables-save` without `-c`, `nft -s`).
//!
//! With `CR_IPTABLES` set the user's command replaces iptables-save and iptables-restore for
//! both families (or IPv4 alone when `CR_IP6TABLES` is set too): `sh -c "$CR_IPTABLES"` runs
//! in the namespace with `CR_IPTABLES_ACTION=save|restore` and `CR_IPTABLES_FAMILY=ipv4|ipv6`;
//! its stdout is the saved text and its stdin the text to restore. Native nftables tables
//! are still saved with nft.
//!
//! [`NetNs::command`]: crate::netns::NetNs::command

mod capture;
mod diff;
mod exec;
mod lock;
mod nfnl;
mod nftx;
mod plan;
mod restore;
mod tables;
mod tidy;
mod xt;

pub use capture::capture;
pub use diff::diff;
pub use lock::{is_locked, lock, lock_xtables, unlock};
pub use restore::{check, conflicts, restore, FirewallUndo};
pub use tidy::tidy;

use crhook_proto::{FirewallRuleset, FirewallSource};

/// Splits saved rulesets into what restore applies before the links exist and what after:
/// iptables text goes first (iptables-restore resolves every rule through getaddrinfo, which
/// walks every device), nft text after (it may name devices), and of the nf_tables tables
/// those whose chains hook devices or that hold flowtables after, the rest first.
pub fn split_for_links(saved: &[FirewallRuleset]) -> (Vec<FirewallRuleset>, Vec<FirewallRuleset>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for r in saved {
        if r.source == FirewallSource::Nftables as i32 {
            let (late, early): (Vec<_>, Vec<_>) =
                r.tables.iter().cloned().partition(nfnl::needs_devices);
            before.push(FirewallRuleset {
                tables: early,
                ..r.clone()
            });
            if !late.is_empty() {
                after.push(FirewallRuleset {
                    tables: late,
                    ..r.clone()
                });
            }
        } else if r.source == FirewallSource::Nft as i32 {
            after.push(r.clone());
        } else {
            before.push(r.clone());
        }
    }
    (before, after)
}
