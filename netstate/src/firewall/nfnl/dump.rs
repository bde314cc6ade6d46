//! Capture: every nf_tables table of a namespace from one consistent set of dumps.
//!
//! Six dumps over all families (tables, chains, objects, flowtables, sets, rules) and one per
//! set for its elements. Every answer carries the ruleset's generation in its nfgenmsg; when
//! the answers disagree the ruleset changed meanwhile and the dumps are taken again.

use std::collections::HashMap;

use crhook_proto::NftTable;

use super::norm::{self, normalize};
use super::{
    msg_type, Obj, NFGEN, NFT_MSG_GETCHAIN, NFT_MSG_GETFLOWTABLE, NFT_MSG_GETOBJ, NFT_MSG_GETRULE,
    NFT_MSG_GETSET, NFT_MSG_GETSETELEM, NFT_MSG_GETTABLE,
};
use crate::error::{NetstateError, Result};
use crate::firewall::nftx::TableId;
use crate::firewall::xt::LOCK_CHAINS;
use crate::netns::NetNs;
use crate::nl::{Nl, Req};

/// How many times the dumps are retaken while the ruleset keeps changing.
const ATTEMPTS: usize = 5;

/// Every table of `ns` that `keep` accepts, except network locks (crhook's table, CRIU's
/// `CRIU-*` tables) and, in iptables-nft's tables, the lock chains and the jumps to them.
/// Payloads are normalised (see norm.rs); `counters` keeps traffic state.
pub(crate) fn capture(
    ns: &NetNs,
    counters: bool,
    keep: &dyn Fn(&TableId) -> bool,
) -> Result<Vec<NftTable>> {
    let found = ns.with_netfilter(|nl| {
        for _ in 0..ATTEMPTS {
            if let Some(tables) = dump_once(nl, counters, keep)? {
                return Ok(Some(tables));
            }
        }
        Ok(None)
    })?;
    found.ok_or_else(|| NetstateError::Protocol {
        op: "dump nftables ruleset".into(),
        netns: ns.name().to_string(),
        what: format!("the ruleset changed during each of {ATTEMPTS} dumps"),
    })
}

/// The namespace's tables, named (one NFT_MSG_GETTABLE dump; `nft list tables` would load
/// every rule of every table into its cache first: 0.6 s at 50,000 rules).
pub(crate) fn table_ids(ns: &NetNs) -> Result<Vec<TableId>> {
    ns.with_netfilter(|nl| {
        let mut gens = Vec::new();
        let tables = dump(
            nl,
            NFT_MSG_GETTABLE,
            0,
            &[],
            "dump nftables tables",
            &mut gens,
        )?;
        Ok(tables.iter().filter_map(|p| table_id(p)).collect())
    })
}

/// The ruleset's generation (NFT_MSG_GETGEN's NFTA_GEN_ID): the kernel adds one per
/// committed transaction in the namespace, so an equal generation means an equal ruleset.
pub(crate) fn generation(ns: &NetNs) -> Result<u32> {
    const NFTA_GEN_ID: u16 = 1;
    let answer = ns.with_netfilter(|nl| {
        nl.get_raw(
            &Req::Raw {
                msg_type: msg_type(super::NFT_MSG_GETGEN),
                payload: vec![0; NFGEN],
            },
            "get nftables generation",
        )
    })?;
    let p = answer.map(|(_, p)| p).unwrap_or_default();
    let mut at = NFGEN;
    while let Some(h) = p.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let ty = u16::from_ne_bytes([h[2], h[3]]) & 0x3fff;
        if ty == NFTA_GEN_ID {
            if let Some(v) = p.get(at + 4..at + 8) {
                return Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            }
        }
        if len < 4 {
            break;
        }
        at += (len + 3) & !3;
    }
    Err(NetstateError::Protocol {
        op: "get nftables generation".into(),
        netns: ns.name().to_string(),
        what: "the answer holds no NFTA_GEN_ID".into(),
    })
}

/// The namespace's chains, each with its table (one NFT_MSG_GETCHAIN dump, names only).
pub(crate) fn chain_ids(ns: &NetNs) -> Result<Vec<(TableId, String)>> {
    ns.with_netfilter(|nl| {
        let mut gens = Vec::new();
        let chains = dump(
            nl,
            NFT_MSG_GETCHAIN,
            0,
            &[],
            "dump nftables chains",
            &mut gens,
        )?;
        Ok(chains.iter().filter_map(|p| chain_id(p)).collect())
    })
}

/// A NEWCHAIN payload's table (family and name) and chain name.
fn chain_id(p: &[u8]) -> Option<(TableId, String)> {
    let table = TableId {
        family: super::family_name(u32::from(*p.first()?)),
        name: norm::str_attr(p, 1)?,
    };
    Some((table, norm::chain_name(p)?))
}

/// A NEWTABLE payload's family and name.
fn table_id(p: &[u8]) -> Option<TableId> {
    Some(TableId {
        family: super::family_name(u32::from(*p.first()?)),
        name: norm::table_name(p)?,
    })
}

/// The answers of one dump request of nf_tables message `get`, payloads only; each answer's
/// generation goes into `gens`.
fn dump(
    nl: &mut Nl,
    get: u16,
    family: u8,
    attrs: &[u8],
    what: &str,
    gens: &mut Vec<u16>,
) -> Result<Vec<Vec<u8>>> {
    let mut payload = vec![family, 0, 0, 0];
    payload.extend_from_slice(attrs);
    let req = Req::Raw {
        msg_type: msg_type(get),
        payload,
    };
    let msgs = nl.dump_raw(&req, what)?;
    // answers are NFT_MSG_NEW*: the GET type minus one
    let want = msg_type(get - 1);
    Ok(msgs
        .into_iter()
        .filter(|(ty, p)| *ty == want && p.len() >= NFGEN)
        .map(|(_, p)| {
            gens.push(u16::from_be_bytes([p[2], p[3]]));
            p
        })
        .collect())
}

fn decode_err(nl: &Nl, obj: Obj, e: String) -> NetstateError {
    crate::nla::decode_error(&format!("dump nftables {}s", obj.name()), nl.netns(), e)
}

/// One pass; None when the generation changed between the dumps.
fn dump_once(
    nl: &mut Nl,
    counters: bool,
    keep: &dyn Fn(&TableId) -> bool,
) -> Result<Option<Vec<NftTable>>> {
    let mut gens = Vec::new();
    let mut tables: Vec<NftTable> = Vec::new();
    // (family, table name) -> index in `tables`, and whether it is one of iptables-nft's
    let mut index: HashMap<(u8, String), (usize, bool)> = HashMap::new();
    for p in dump(
        nl,
        NFT_MSG_GETTABLE,
        0,
        &[],
        "dump nftables tables",
        &mut gens,
    )? {
        let Some(name) = norm::table_name(&p) else {
            continue;
        };
        let id = TableId {
            family: super::family_name(u32::from(p[0])),
            name: name.clone(),
        };
        if id.is_lock() || !keep(&id) {
            continue;
        }
        let table =
            normalize(Obj::Table, &p, counters).map_err(|e| decode_err(nl, Obj::Table, e))?;
        index.insert((p[0], name.clone()), (tables.len(), id.is_xtables()));
        tables.push(NftTable {
            family: u32::from(p[0]),
            name,
            table: table.into(),
            ..Default::default()
        });
    }
    let lists = [
        (Obj::Chain, NFT_MSG_GETCHAIN),
        (Obj::Object, NFT_MSG_GETOBJ),
        (Obj::Flowtable, NFT_MSG_GETFLOWTABLE),
        (Obj::Set, NFT_MSG_GETSET),
    ];
    let mut sets = Vec::new();
    // rules are dumped chain by chain: the kernel resumes a dump by walking past every rule
    // it already sent, counted from the start of the dump, so one dump of 50,000 rules walks
    // about 10 million list entries (0.8 s); per chain the walk restarts at each chain
    let mut chains = Vec::new();
    let mut answers = Vec::new();
    for (obj, get) in lists {
        let what = format!("dump nftables {}s", obj.name());
        answers.push((obj, dump(nl, get, 0, &[], &what, &mut gens)?));
    }
    for (family, table, chain) in answers
        .iter()
        .filter(|(o, _)| *o == Obj::Chain)
        .flat_map(|(_, ps)| ps.iter())
        .filter_map(|p| Some((p[0], norm::str_attr(p, 1)?, norm::chain_name(p)?)))
    {
        if let Some(&(_, xtables)) = index.get(&(family, table.clone())) {
            if !(xtables && LOCK_CHAINS.contains(&chain.as_str())) {
                chains.push((family, table, chain));
            }
        }
    }
    for (family, table, chain) in chains {
        let attrs = [norm::string_attr(1, &table), norm::string_attr(2, &chain)].concat();
        let what = format!("dump nftables rules of chain {table} {chain}");
        answers.push((
            Obj::Rule,
            dump(nl, NFT_MSG_GETRULE, family, &attrs, &what, &mut gens)?,
        ));
    }
    for (obj, ps) in answers {
        for p in ps {
            // every kind names its table in attribute 1
            let Some(tname) = norm::str_attr(&p, 1) else {
                continue;
            };
            let Some(&(i, xtables)) = index.get(&(p[0], tname.clone())) else {
                continue;
            };
            if xtables && is_lock_artefact(obj, &p) {
                continue;
            }
            if obj == Obj::Set {
                if let Some(s) = norm::set_name(&p) {
                    sets.push((p[0], tname, s, i));
                }
            }
            let n = normalize(obj, &p, counters).map_err(|e| decode_err(nl, obj, e))?;
            if let Some(list) = obj.list_mut(&mut tables[i]) {
                list.push(n.into());
            }
        }
    }
    for (family, table, set, i) in sets {
        let attrs = [norm::string_attr(1, &table), norm::string_attr(2, &set)].concat();
        let what = format!("dump elements of nftables set {set} in table {table}");
        for p in dump(nl, NFT_MSG_GETSETELEM, family, &attrs, &what, &mut gens)? {
            if norm::elements_empty(&p) {
                continue;
            }
            let n = normalize(Obj::Element, &p, counters)
                .map_err(|e| decode_err(nl, Obj::Element, e))?;
            tables[i].elements.push(n.into());
        }
    }
    if gens.windows(2).any(|w| w[0] != w[1]) {
        return Ok(None);
    }
    Ok(Some(tables))
}

/// A lock chain of an iptables-nft table (CRIU's `CRIU`, crhook's `crhook-lock`), a rule in
/// one, or a rule jumping to one.
fn is_lock_artefact(obj: Obj, p: &[u8]) -> bool {
    match obj {
        Obj::Chain => norm::chain_name(p).is_some_and(|c| LOCK_CHAINS.contains(&c.as_str())),
        Obj::Rule => {
            norm::rule_chain(p).is_some_and(|c| LOCK_CHAINS.contains(&c.as_str()))
                || norm::rule_jumps(p)
                    .iter()
                    .any(|c| LOCK_CHAINS.contains(&c.as_str()))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload the kernel sends for `table inet crhook-lock`.
    #[test]
    fn golden_table_message_is_named() {
        let p = [vec![1, 0, 0, 0], norm::string_attr(1, "crhook-lock")].concat();
        let t = table_id(&p).expect("a table");
        assert_eq!(
            (t.family.as_str(), t.name.as_str()),
            ("inet", "crhook-lock")
        );
        assert!(table_id(&[1, 0, 0, 0]).is_none());
    }

    /// The payload the kernel sends for chain `CRIU` of `table ip6 filter`.
    #[test]
    fn golden_chain_message_is_named() {
        let p = [
            vec![10, 0, 0, 0],
            norm::string_attr(1, "filter"),
            norm::string_attr(3, "CRIU"),
        ]
        .concat();
        let (t, c) = chain_id(&p).expect("a chain");
        assert_eq!(t.to_string(), "ip6 filter");
        assert_eq!(c, "CRIU");
        assert!(chain_id(&p[..4]).is_none());
    }
}
