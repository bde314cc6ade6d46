//! Restore's guard over nfnetlink: while a restore brings links up beside the nf_tables
//! transaction that puts the saved tables back, a table per family drops every packet, so no
//! moment exists in which the namespace passes traffic without its rules. The same tables
//! `nft -f` makes from
//!
//! ```text
//! table inet crhook-restore {
//!     chain prerouting { type filter hook prerouting priority -2147483648; policy drop; }
//!     chain output { type filter hook output priority -2147483648; policy drop; }
//! }
//! table arp crhook-restore {
//!     chain input { type filter hook input priority -2147483648; policy drop; }
//!     chain output { type filter hook output priority -2147483648; policy drop; }
//! }
//! table bridge crhook-restore {
//!     chain prerouting { type filter hook prerouting priority -2147483648; policy drop; }
//!     chain output { type filter hook output priority -2147483648; policy drop; }
//! }
//! ```
//!
//! Unlike the network lock (lock.rs) loopback is not let through: lo too is down until a
//! restore without the guard has its rules in. The inet table is always there; the arp and
//! bridge ones only when the saved state filters that family (otherwise it passes the same
//! traffic once restored as it would during the restore). Like the lock, the tables are not
//! owned by a socket: a restore killed outright leaves the namespace dropping everything
//! until its journal is undone, never passing traffic unfiltered.

use crhook_proto::NftTable;

use super::apply::{transact, Msg, NfnlUndo};
use super::lock::msg_in;
use super::norm::{be32_attr, nest, string_attr};
use super::{NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWTABLE};
use crate::error::Result;
use crate::netns::NetNs;

/// The guard's table name, in each family it covers.
pub(crate) const GUARD_TABLE: &str = "crhook-restore";

const NFPROTO_INET: u8 = 1;
const NFPROTO_ARP: u8 = 3;
const NFPROTO_BRIDGE: u8 = 7;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

/// The hooks a family's packets meet first, received and sent: (chain name, hook number).
fn hooks(family: u8) -> [(&'static str, u32); 2] {
    match family {
        // NF_ARP_IN, NF_ARP_OUT
        NFPROTO_ARP => [("input", 0), ("output", 1)],
        // NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT; NF_BR_PRE_ROUTING, NF_BR_LOCAL_OUT
        _ => [("prerouting", 0), ("output", 3)],
    }
}

/// The families the guard covers for saved tables `saved`: inet, and arp and bridge where a
/// saved table is of that family. None when a saved table bears the guard's name (an image
/// crhook did not write: its own captures leave the guard out), which the guard would clash
/// with.
pub(crate) fn families<'a>(saved: impl IntoIterator<Item = &'a NftTable>) -> Option<Vec<u8>> {
    let mut out = vec![NFPROTO_INET];
    for t in saved {
        if t.name == GUARD_TABLE {
            return None;
        }
        let f = u8::try_from(t.family).unwrap_or(0);
        if matches!(f, NFPROTO_ARP | NFPROTO_BRIDGE) && !out.contains(&f) {
            out.push(f);
        }
    }
    Some(out)
}

fn table(family: u8, m: u16, flags: u16, what: &str) -> Msg {
    msg_in(
        family,
        m,
        flags,
        &[string_attr(1, GUARD_TABLE)],
        &format!(
            "{what} {} {GUARD_TABLE}",
            super::family_name(u32::from(family))
        ),
    )
}

/// The messages that add the guard: per family a fresh table (NLM_F_EXCL: one by its name
/// that is there already is not taken over) and its two base chains, lowest priority, policy
/// drop, no rule.
fn add(families: &[u8]) -> Vec<Msg> {
    let mut out = Vec::new();
    for &f in families {
        out.push(table(
            f,
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE | NLM_F_EXCL,
            "add guard table",
        ));
        for (name, hook) in hooks(f) {
            out.push(msg_in(
                f,
                NFT_MSG_NEWCHAIN,
                NLM_F_CREATE,
                &[
                    string_attr(1, GUARD_TABLE),
                    string_attr(3, name),
                    // NFTA_CHAIN_HOOK: NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY
                    nest(4, &[be32_attr(1, hook), be32_attr(2, i32::MIN as u32)]),
                    // NFTA_CHAIN_POLICY: NF_DROP
                    be32_attr(5, 0),
                    string_attr(7, "filter"),
                ],
                &format!("guard chain {name}"),
            ));
        }
    }
    out
}

/// Adds the guard of `families` to `ns` in one transaction.
pub(crate) fn raise(ns: &NetNs, families: &[u8]) -> Result<()> {
    transact(ns, &add(families), "raise the restore guard")
}

/// The messages that remove the guard of `families`, whether or not it is (still) there:
/// each table declared, then deleted.
fn remove(families: &[u8]) -> Vec<Msg> {
    let mut msgs = Vec::new();
    for &f in families {
        msgs.push(table(
            f,
            NFT_MSG_NEWTABLE,
            NLM_F_CREATE,
            "declare guard table",
        ));
        msgs.push(table(f, NFT_MSG_DELTABLE, 0, "delete guard table"));
    }
    msgs
}

/// Removes the guard of `families` from `ns` in one transaction, once the saved tables are in.
pub(crate) fn lower(ns: &NetNs, families: &[u8]) -> Result<()> {
    transact(ns, &remove(families), "lower the restore guard")
}

/// [`lower`] as the journal keeps it, for a rollback or a later recovery.
pub(crate) fn undo(families: &[u8]) -> NfnlUndo {
    NfnlUndo::new(remove(families))
}

#[cfg(test)]
mod tests {
    use super::super::msg_type;
    use super::*;

    fn t(family: u32, name: &str) -> NftTable {
        NftTable {
            family,
            name: name.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn families_follow_the_saved_tables_and_refuse_the_guards_name() {
        assert_eq!(families([&t(2, "filter"), &t(10, "filter")]), Some(vec![1]));
        assert_eq!(
            families([&t(7, "br"), &t(3, "a"), &t(7, "other")]),
            Some(vec![1, 7, 3])
        );
        assert_eq!(families([&t(2, "filter"), &t(3, GUARD_TABLE)]), None);
    }

    #[test]
    fn the_guard_is_a_fresh_table_of_drop_chains_per_family_and_its_undo_deletes_them() {
        let msgs = add(&[NFPROTO_INET, NFPROTO_ARP]);
        assert_eq!(msgs.len(), 6);
        assert_eq!(msgs[0].ty, msg_type(NFT_MSG_NEWTABLE));
        assert_eq!(msgs[0].flags, NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(msgs[0].payload[0], NFPROTO_INET);
        assert_eq!(msgs[3].payload[0], NFPROTO_ARP);
        // the arp chains hook input (0) and output (1)
        let hook = |m: &Msg| {
            let n = be32_attr(1, 0);
            m.payload.windows(n.len()).any(|w| w == n.as_slice())
        };
        assert!(hook(&msgs[4]));
        // every chain has policy drop (NFTA_CHAIN_POLICY 0)
        let drop = be32_attr(5, 0);
        for c in [&msgs[1], &msgs[2], &msgs[4], &msgs[5]] {
            assert_eq!(c.ty, msg_type(NFT_MSG_NEWCHAIN));
            assert!(c.payload.windows(drop.len()).any(|w| w == drop.as_slice()));
        }
        let u = remove(&[NFPROTO_INET, NFPROTO_ARP]);
        let kinds: Vec<(u8, u16)> = u.iter().map(|m| (m.payload[0], m.ty)).collect();
        assert_eq!(
            kinds,
            vec![
                (NFPROTO_INET, msg_type(NFT_MSG_NEWTABLE)),
                (NFPROTO_INET, msg_type(NFT_MSG_DELTABLE)),
                (NFPROTO_ARP, msg_type(NFT_MSG_NEWTABLE)),
                (NFPROTO_ARP, msg_type(NFT_MSG_DELTABLE)),
            ]
        );
    }
}
