//! crhook's lock table over nfnetlink, in one transaction with no program to start: the
//! same table `nft -f` makes from
//!
//! ```text
//! table inet crhook-lock {
//!     chain prerouting { type filter hook prerouting priority -2147483648; policy drop; iif lo accept }
//!     chain output { type filter hook output priority -2147483648; policy drop; oif lo accept }
//! }
//! ```
//!
//! Locking adds the table; where one by that name exists already, it declares the table,
//! deletes it and adds it again, so locking twice or over a half-made lock leaves exactly
//! one. Unlocking declares and deletes it.

use super::apply::{refused, transact, transact_raw, Msg};
use super::norm::{be32_attr, nest, string_attr};
use super::{msg_type, NFT_MSG_DELTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_NEWRULE, NFT_MSG_NEWTABLE};
use crate::error::Result;
use crate::firewall::lock::NFT_TABLE;
use crate::netns::NetNs;

const NFPROTO_INET: u8 = 1;
/// NFTA_TABLE_FLAGS: NFT_TABLE_F_OWNER
const NFT_TABLE_F_OWNER: u32 = 0x2;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
/// NF_INET_PRE_ROUTING, NF_INET_LOCAL_OUT
const HOOK_PREROUTING: u32 = 0;
const HOOK_OUTPUT: u32 = 3;
/// NFT_META_IIF, NFT_META_OIF
const META_IIF: u32 = 4;
const META_OIF: u32 = 5;
/// the loopback device's ifindex in every namespace
const LO_IFINDEX: u32 = 1;

fn msg(m: u16, flags: u16, attrs: &[Vec<u8>], what: &str) -> Msg {
    msg_in(NFPROTO_INET, m, flags, attrs, what)
}

/// A message of family `family` (struct nfgenmsg, then `attrs`).
pub(super) fn msg_in(family: u8, m: u16, flags: u16, attrs: &[Vec<u8>], what: &str) -> Msg {
    let mut payload = vec![family, 0, 0, 0];
    for a in attrs {
        payload.extend_from_slice(a);
    }
    Msg {
        ty: msg_type(m),
        flags,
        payload,
        what: what.to_string(),
    }
}

fn table(m: u16, flags: u16, what: &str) -> Msg {
    msg(m, flags, &[string_attr(1, NFT_TABLE)], what)
}

/// An expression's attributes: NFTA_EXPR_NAME, NFTA_EXPR_DATA.
fn expr(name: &str, data: &[Vec<u8>]) -> Vec<u8> {
    [string_attr(1, name), nest(2, data)].concat()
}

/// A base chain at `hook`, lowest priority, policy drop, whose one rule accepts packets whose
/// `meta` device (iif or oif) is loopback.
fn chain(name: &str, hook: u32, meta: u32) -> [Msg; 2] {
    let chain = msg(
        NFT_MSG_NEWCHAIN,
        NLM_F_CREATE,
        &[
            string_attr(1, NFT_TABLE),
            string_attr(3, name),
            // NFTA_CHAIN_HOOK: NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY
            nest(4, &[be32_attr(1, hook), be32_attr(2, i32::MIN as u32)]),
            // NFTA_CHAIN_POLICY: NF_DROP
            be32_attr(5, 0),
            string_attr(7, "filter"),
        ],
        &format!("lock chain {name}"),
    );
    let exprs = [
        // meta load iif/oif => reg 1
        expr("meta", &[be32_attr(1, 1), be32_attr(2, meta)]),
        // cmp eq reg 1 1 (NFTA_CMP_DATA > NFTA_DATA_VALUE, the ifindex in host order)
        expr(
            "cmp",
            &[
                be32_attr(1, 1),
                be32_attr(2, 0),
                nest(3, &[super::norm::raw_attr(1, &LO_IFINDEX.to_ne_bytes())]),
            ],
        ),
        // immediate reg 0 (verdict) accept: NFTA_IMMEDIATE_DATA > NFTA_DATA_VERDICT > CODE
        expr(
            "immediate",
            &[be32_attr(1, 0), nest(2, &[nest(2, &[be32_attr(1, 1)])])],
        ),
    ];
    // NFTA_RULE_EXPRESSIONS: one NFTA_LIST_ELEM per expression
    let list: Vec<Vec<u8>> = exprs
        .iter()
        .map(|e| nest(1, std::slice::from_ref(e)))
        .collect();
    let rule = msg(
        NFT_MSG_NEWRULE,
        NLM_F_CREATE | NLM_F_APPEND,
        &[
            string_attr(1, NFT_TABLE),
            string_attr(2, name),
            nest(4, &list),
        ],
        &format!("lock rule of chain {name}"),
    );
    [chain, rule]
}

/// Locks `ns` (idempotent). `owned`: the table belongs to the namespace handle's netfilter
/// socket (NFT_TABLE_F_OWNER, kernel 5.12+): the kernel removes it when that socket closes, so
/// a crhook killed with SIGKILL in the middle of `checkpoint --lock` leaves no lock behind;
/// only that socket can change the table meanwhile, and the same handle unlocks it. A lock
/// meant to outlive the process (CRIU's network-lock .. network-unlock, `crhook lock`) is
/// not owned.
///
/// The lock is first added on its own (NLM_F_EXCL), and replaced only when a table by its name
/// is there already (EEXIST). A transaction that deletes something leaves it on nf_tables'
/// destroy list, freed by a work item after an RCU grace period (8-18 ms here), and closing
/// any NETLINK_NETFILTER socket of the namespace waits for that work (nft_rcv_nl_event
/// flushes it): a delete in every lock cost `checkpoint --lock` a second grace period at
/// exit, queued behind the unlock's. A transaction that only adds leaves nothing to destroy.
pub(crate) fn lock(ns: &NetNs, owned: bool) -> Result<()> {
    let add = |flags: u16| {
        if owned {
            msg(
                NFT_MSG_NEWTABLE,
                flags,
                &[string_attr(1, NFT_TABLE), be32_attr(2, NFT_TABLE_F_OWNER)],
                "add lock table owned by this socket",
            )
        } else {
            table(NFT_MSG_NEWTABLE, flags, "add lock table")
        }
    };
    let chains = || {
        let mut v = Vec::with_capacity(4);
        v.extend(chain("prerouting", HOOK_PREROUTING, META_IIF));
        v.extend(chain("output", HOOK_OUTPUT, META_OIF));
        v
    };
    let mut fresh = vec![add(NLM_F_CREATE | NLM_F_EXCL)];
    fresh.extend(chains());
    match transact_raw(ns, &fresh, "lock")? {
        Ok(()) => return Ok(()),
        // a lock table is there (an earlier `crhook lock`, a half-made lock): replace it
        Err((0, e)) if e.errno == libc::EEXIST => {}
        Err((i, e)) => return Err(refused(ns, &fresh, "lock", i, &e)),
    }
    let mut msgs = vec![
        table(NFT_MSG_NEWTABLE, NLM_F_CREATE, "declare lock table"),
        table(NFT_MSG_DELTABLE, 0, "delete lock table"),
        add(NLM_F_CREATE),
    ];
    msgs.extend(chains());
    transact(ns, &msgs, "lock")
}

/// Removes the lock table (idempotent).
pub(crate) fn unlock(ns: &NetNs) -> Result<()> {
    let msgs = [
        table(NFT_MSG_NEWTABLE, NLM_F_CREATE, "declare lock table"),
        table(NFT_MSG_DELTABLE, 0, "delete lock table"),
    ];
    transact(ns, &msgs, "unlock")
}
