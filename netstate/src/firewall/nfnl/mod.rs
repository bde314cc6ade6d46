//! nf_tables state over nfnetlink: every table of the namespace captured as the
//! NFT_MSG_NEW* messages that rebuild it, and rebuilt by replaying them in one transaction.
//!
//! Owns: the dumps (tables, chains, rules, sets and their elements, objects, flowtables, all
//! taken between two equal generation ids), the normal form kept in images (handles, use
//! counts, positions and transaction ids left out; counters, quota usage, "last used" and
//! element expiry zeroed or left out unless counters are kept), leaving lock artefacts out
//! (crhook's and CRIU's tables, the `CRIU` and `crhook-lock` chains and jumps to them), the
//! replay batch and its undo, and the one-line description of each object for diff.
//!
//! Why not the tools: `iptables-nft-save` and `-restore` print and parse every rule as text
//! (0.3 s and 0.9 s at 50,000 rules, the restore resolving every rule through getaddrinfo,
//! which walks every device: 3 s once 2,000 links exist), and `nft list` loads every rule into
//! its cache. The kernel dumps and commits the same rules in milliseconds, and replaying its
//! own messages is exact for every expression, match and userdata (comments) without parsing
//! any. netlink-packet-route covers rtnetlink only and no maintained crate covers
//! nf_tables messages, so these are hand-built over the shared `nla` walker and `Nl` socket.
//! Must not: interpret expressions beyond the stateful ones it resets and the verdict of a
//! jump (to find lock artefacts); everything else is carried as the kernel's bytes.

mod apply;
mod dump;
pub(crate) mod guard;
mod lock;
mod norm;
mod prune;
mod remap;
mod render;

pub(crate) use apply::{load as load_table, plan as plan_tables, NfnlStep, NfnlUndo};
pub(crate) use dump::chain_ids;
pub(crate) use dump::{capture, generation, table_ids};
pub(crate) use lock::{lock as lock_table, unlock as unlock_table};
pub(crate) use prune::{delete_empty, shape as table_shape, BaseHook, ChainShape, TableShape};
pub(crate) use remap::remap_table;
pub(crate) use render::diff_tables;

use crhook_proto::NftTable;

/// One saved nf_tables message of an [`NftTable`]: restore decodes them as slices of the
/// image file's bytes, without a copy each (55,000 rules at L: 37 ms of copying)
pub(crate) type Payload = crhook_proto::prost::bytes::Bytes;

/// NFNL_SUBSYS_NFTABLES
const SUBSYS: u16 = 10;
/// NFNL_MSG_BATCH_BEGIN / END (NLMSG_MIN_TYPE and the next)
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// struct nfgenmsg: family, version, res_id (big endian)
const NFGEN: usize = 4;

const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NFT_MSG_DELCHAIN: u16 = 5;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_GETRULE: u16 = 7;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_GETSET: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_GETGEN: u16 = 16;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFT_MSG_GETOBJ: u16 = 19;
const NFT_MSG_NEWFLOWTABLE: u16 = 22;
const NFT_MSG_GETFLOWTABLE: u16 = 23;

/// The message type of nf_tables message `m`.
fn msg_type(m: u16) -> u16 {
    (SUBSYS << 8) | m
}

/// One kind of nf_tables object, in replay order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Obj {
    Table,
    Chain,
    Object,
    Flowtable,
    Set,
    Element,
    Rule,
}

impl Obj {
    const ALL: [Obj; 7] = [
        Obj::Table,
        Obj::Chain,
        Obj::Object,
        Obj::Flowtable,
        Obj::Set,
        Obj::Element,
        Obj::Rule,
    ];

    fn new_msg(self) -> u16 {
        match self {
            Obj::Table => NFT_MSG_NEWTABLE,
            Obj::Chain => NFT_MSG_NEWCHAIN,
            Obj::Object => NFT_MSG_NEWOBJ,
            Obj::Flowtable => NFT_MSG_NEWFLOWTABLE,
            Obj::Set => NFT_MSG_NEWSET,
            Obj::Element => NFT_MSG_NEWSETELEM,
            Obj::Rule => NFT_MSG_NEWRULE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Obj::Table => "table",
            Obj::Chain => "chain",
            Obj::Object => "object",
            Obj::Flowtable => "flowtable",
            Obj::Set => "set",
            Obj::Element => "elements",
            Obj::Rule => "rule",
        }
    }

    /// The saved payloads of this kind in `t`.
    fn of(self, t: &NftTable) -> &[Payload] {
        match self {
            Obj::Table => std::slice::from_ref(&t.table),
            Obj::Chain => &t.chains,
            Obj::Object => &t.objects,
            Obj::Flowtable => &t.flowtables,
            Obj::Set => &t.sets,
            Obj::Element => &t.elements,
            Obj::Rule => &t.rules,
        }
    }

    /// The list of this kind in `t` (None for the table, one per `NftTable`).
    fn list_mut(self, t: &mut NftTable) -> Option<&mut Vec<Payload>> {
        match self {
            Obj::Table => None,
            Obj::Chain => Some(&mut t.chains),
            Obj::Object => Some(&mut t.objects),
            Obj::Flowtable => Some(&mut t.flowtables),
            Obj::Set => Some(&mut t.sets),
            Obj::Element => Some(&mut t.elements),
            Obj::Rule => Some(&mut t.rules),
        }
    }
}

/// Whether a table can only be made once links exist: a chain hooked to devices (netdev,
/// inet ingress) or a flowtable.
pub(crate) fn needs_devices(t: &NftTable) -> bool {
    !t.flowtables.is_empty() || t.chains.iter().any(|c| norm::chain_names_devices(c))
}

/// The table's id, as nft names it.
pub(crate) fn table_id(t: &NftTable) -> super::nftx::TableId {
    super::nftx::TableId {
        family: family_name(t.family),
        name: t.name.clone(),
    }
}

/// The names of the table's chains.
pub(crate) fn chain_names(t: &NftTable) -> Vec<String> {
    t.chains
        .iter()
        .filter_map(|c| norm::chain_name(c))
        .collect()
}

/// The nft name of NFPROTO family `f` (core's table, which `show` uses too).
pub(crate) fn family_name(f: u32) -> String {
    crhook_core::summary::nft_family(u64::from(f))
}

/// "ip filter": how messages name a table.
pub(crate) fn table_label(t: &NftTable) -> String {
    format!("{} {}", family_name(t.family), t.name)
}

/// How many rules each chain of `t` holds.
pub(crate) fn rule_counts(t: &NftTable) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for r in &t.rules {
        *m.entry(norm::rule_chain(r).unwrap_or_default())
            .or_insert(0) += 1;
    }
    m
}
