//! Tidying's nfnetlink side (`firewall::tidy` decides): what a captured table holds, chain
//! by chain, and the transaction that deletes the empty chains and tables it picked.
//!
//! Every delete carries NLM_F_NONREC, as iptables-nft's `-X` does: the kernel then refuses
//! (EBUSY) to delete a chain that holds a rule or a table that holds anything, where without
//! the flag a chain goes with its rules and a table with all it holds (what `nft delete`
//! does). A rule, set or chain added since the dump therefore fails the whole transaction
//! instead of being lost, and nothing is deleted. Chains go before their tables in the same
//! transaction: each chain deleted lowers its table's use count, so the table is empty by the
//! time its own delete is checked.

use std::collections::BTreeMap;

use crhook_proto::NftTable;

use super::apply::{transact, Msg};
use super::norm;
use super::{msg_type, NFT_MSG_DELCHAIN, NFT_MSG_DELTABLE};
use crate::error::{NetstateError, Result};
use crate::firewall::nftx::TableId;
use crate::netns::NetNs;

/// NLM_F_NONREC (include/uapi/linux/netlink.h): delete only what is empty.
const NLM_F_NONREC: u16 = 0x100;
/// NFTA_TABLE_NAME; NFTA_CHAIN_TABLE and NFTA_CHAIN_NAME
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;

/// What makes a chain a base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseHook {
    /// NF_INET_* hook number
    pub hook: u32,
    pub prio: i32,
    /// chain type: filter, nat or route
    pub kind: String,
    /// the policy accepts
    pub accepts: bool,
}

/// One chain of a table: its hook (None for a regular chain) and how many rules it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainShape {
    pub base: Option<BaseHook>,
    pub rules: usize,
}

/// What a table holds, as far as deleting it empty cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableShape {
    /// chains by name
    pub chains: BTreeMap<String, ChainShape>,
    /// anything else: a set, named object or flowtable, or a rule of no chain listed
    pub other: bool,
}

/// The shape of a captured table.
pub(crate) fn shape(t: &NftTable) -> TableShape {
    let mut chains: BTreeMap<String, ChainShape> = t
        .chains
        .iter()
        .filter_map(|c| {
            let base = norm::chain_base(c).map(|(hook, prio, kind)| BaseHook {
                hook,
                prio,
                kind,
                accepts: norm::chain_is_empty_base(c),
            });
            Some((norm::chain_name(c)?, ChainShape { base, rules: 0 }))
        })
        .collect();
    let mut other = !(t.sets.is_empty() && t.objects.is_empty() && t.flowtables.is_empty());
    for r in &t.rules {
        match norm::rule_chain(r).and_then(|c| chains.get_mut(&c)) {
            Some(c) => c.rules += 1,
            None => other = true,
        }
    }
    TableShape { chains, other }
}

/// The NFPROTO number of a family nft names `name`.
fn family_number(name: &str) -> Option<u8> {
    [1u8, 2, 3, 5, 7, 10]
        .into_iter()
        .find(|f| super::family_name(u32::from(*f)) == name)
}

fn delete(m: u16, table: &TableId, attrs: &[Vec<u8>], what: String) -> Result<Msg> {
    let family = family_number(&table.family).ok_or_else(|| {
        NetstateError::invalid(format!("{what}: unknown nftables family {}", table.family))
    })?;
    let mut payload = vec![family, 0, 0, 0];
    for a in attrs {
        payload.extend_from_slice(a);
    }
    Ok(Msg {
        ty: msg_type(m),
        flags: NLM_F_NONREC,
        payload,
        what,
    })
}

/// The transaction deleting `chains` (table, chain), then `tables`, each only if empty.
fn messages(chains: &[(TableId, String)], tables: &[TableId]) -> Result<Vec<Msg>> {
    let mut out = Vec::with_capacity(chains.len() + tables.len());
    for (t, c) in chains {
        let attrs = [
            norm::string_attr(NFTA_CHAIN_TABLE, &t.name),
            norm::string_attr(NFTA_CHAIN_NAME, c),
        ];
        out.push(delete(
            NFT_MSG_DELCHAIN,
            t,
            &attrs,
            format!("delete chain {t} {c}"),
        )?);
    }
    for t in tables {
        let attrs = [norm::string_attr(NFTA_TABLE_NAME, &t.name)];
        out.push(delete(
            NFT_MSG_DELTABLE,
            t,
            &attrs,
            format!("delete table {t}"),
        )?);
    }
    Ok(out)
}

/// Deletes `chains` (table, chain), then `tables`, in `ns`: all of them, or none when one
/// holds something (EBUSY) or is gone (ENOENT).
pub(crate) fn delete_empty(
    ns: &NetNs,
    chains: &[(TableId, String)],
    tables: &[TableId],
) -> Result<()> {
    let msgs = messages(chains, tables)?;
    if msgs.is_empty() {
        return Ok(());
    }
    transact(ns, &msgs, "remove empty iptables-nft chains and tables")
}

#[cfg(test)]
mod tests {
    use super::super::norm::normalize;
    use super::super::norm::tests::attr;
    use super::super::Obj;
    use super::*;

    fn id(family: &str, name: &str) -> TableId {
        TableId {
            family: family.into(),
            name: name.into(),
        }
    }

    /// A base chain as the kernel dumps it (handle, use count and flags included), for
    /// `table ip nat`: `type nat hook prerouting priority dstnat; policy accept;`
    fn dumped_chain(name: &[u8], hook: u32, prio: i32, policy: Option<u32>) -> Vec<u8> {
        let mut out = [
            vec![2, 0, 0, 7],
            attr(1, b"nat\0"),
            attr(2, &9u64.to_be_bytes()),
            attr(3, name),
        ]
        .concat();
        if let Some(policy) = policy {
            let h = [attr(1, &hook.to_be_bytes()), attr(2, &prio.to_be_bytes())].concat();
            out.extend(attr(0x8000 | 4, &h));
            out.extend(attr(5, &policy.to_be_bytes()));
            out.extend(attr(7, b"nat\0"));
            out.extend(attr(10, &1u32.to_be_bytes()));
        }
        out.extend(attr(6, &1u32.to_be_bytes()));
        normalize(Obj::Chain, &out, false).expect("normal form")
    }

    fn dumped_rule(chain: &[u8]) -> Vec<u8> {
        [vec![2, 0, 0, 0], attr(1, b"nat\0"), attr(2, chain)].concat()
    }

    #[test]
    fn shape_reads_hooks_negative_priorities_policies_and_rules() {
        let t = NftTable {
            family: 2,
            name: "nat".into(),
            chains: vec![
                dumped_chain(b"PREROUTING\0", 0, -100, Some(1)).into(),
                dumped_chain(b"POSTROUTING\0", 4, 100, Some(0)).into(),
                dumped_chain(b"MINE\0", 0, 0, None).into(),
            ],
            rules: vec![
                dumped_rule(b"POSTROUTING\0").into(),
                dumped_rule(b"MINE\0").into(),
            ],
            ..Default::default()
        };
        let s = shape(&t);
        let pre = &s.chains["PREROUTING"];
        assert_eq!(
            pre.base,
            Some(BaseHook {
                hook: 0,
                prio: -100,
                kind: "nat".into(),
                accepts: true
            })
        );
        assert_eq!(pre.rules, 0);
        let post = &s.chains["POSTROUTING"];
        assert_eq!(
            post.base.as_ref().map(|b| (b.prio, b.accepts)),
            Some((100, false))
        );
        assert_eq!(post.rules, 1);
        assert_eq!(
            s.chains["MINE"],
            ChainShape {
                base: None,
                rules: 1
            }
        );
        assert!(!s.other);
        // a set, or a rule of a chain not listed, is something else the table holds
        let with_set = NftTable {
            sets: vec![vec![2, 0, 0, 0].into()],
            ..t.clone()
        };
        assert!(shape(&with_set).other);
        let stray = NftTable {
            rules: vec![dumped_rule(b"GONE\0").into()],
            ..t
        };
        assert!(shape(&stray).other);
    }

    /// The bytes of `delete chain ip filter OUTPUT` and `delete table ip6 filter`, both
    /// non-recursive, chains first.
    #[test]
    fn golden_delete_messages() {
        let msgs = messages(
            &[(id("ip", "filter"), "OUTPUT".into())],
            &[id("ip6", "filter")],
        )
        .expect("messages");
        assert_eq!(msgs.len(), 2);
        let chain = &msgs[0];
        assert_eq!((chain.ty, chain.flags), (0x0a05, 0x100));
        assert_eq!(
            chain.payload,
            [
                &[2, 0, 0, 0][..],
                &[11, 0, 1, 0],
                b"filter\0\0",
                &[11, 0, 3, 0],
                b"OUTPUT\0\0",
            ]
            .concat()
        );
        assert_eq!(chain.what, "delete chain ip filter OUTPUT");
        let table = &msgs[1];
        assert_eq!((table.ty, table.flags), (0x0a02, 0x100));
        assert_eq!(
            table.payload,
            [&[10, 0, 0, 0][..], &[11, 0, 1, 0], b"filter\0\0"].concat()
        );
        assert!(messages(&[], &[]).expect("nothing").is_empty());
    }

    /// Privileged: a namespace of its own, removed on drop.
    struct TestNs(String);

    impl TestNs {
        fn new(tag: &str) -> TestNs {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            assert_eq!(uid, 0, "namespace tests need root");
            let name = format!("crh-fwp-{tag}-{}", std::process::id());
            let st = std::process::Command::new("/usr/bin/ip")
                .args(["netns", "add", &name])
                .status()
                .expect("ip");
            assert!(st.success(), "ip netns add {name}");
            TestNs(name)
        }

        fn ns(&self) -> NetNs {
            let path = format!("/run/netns/{}", self.0);
            NetNs::open_path(std::path::Path::new(&path)).expect("open")
        }

        fn sh(&self, script: &str) -> String {
            let out = std::process::Command::new("/usr/bin/ip")
                .args(["netns", "exec", &self.0, "/bin/sh", "-c", script])
                .output()
                .expect("ip netns exec");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{script}: {err}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("/usr/bin/ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    /// What gained content since it was found empty is refused, and then nothing goes.
    #[test]
    fn only_what_is_empty_is_deleted_and_all_or_nothing() {
        let t = TestNs::new("nonrec");
        t.sh("set -e
/usr/sbin/nft add table ip filter
/usr/sbin/nft add chain ip filter INPUT '{ type filter hook input priority 0; policy accept; }'
/usr/sbin/nft add chain ip filter OUTPUT '{ type filter hook output priority 0; policy accept; }'
/usr/sbin/nft add rule ip filter INPUT accept
/usr/sbin/nft add table ip raw
/usr/sbin/nft add set ip raw s '{ type ipv4_addr; }'");
        let ns = t.ns();
        let list = "/usr/sbin/nft list ruleset";
        let before = t.sh(list);
        let filter = id("ip", "filter");
        let chain = |c: &str| (filter.clone(), c.to_string());
        let busy = |r: Result<()>, what: &str| {
            let e = crate::error::chain(&r.expect_err(what));
            assert!(e.contains(what) && e.contains("(os error 16)"), "{e}");
        };
        // a chain holding a rule: refused, and the empty OUTPUT stays too
        busy(
            delete_empty(&ns, &[chain("INPUT"), chain("OUTPUT")], &[]),
            "delete chain ip filter INPUT in /run/netns/crh-fwp-nonrec-",
        );
        // a table still holding a chain, or a set
        busy(
            delete_empty(&ns, &[chain("OUTPUT")], std::slice::from_ref(&filter)),
            "delete table ip filter in",
        );
        busy(
            delete_empty(&ns, &[], &[id("ip", "raw")]),
            "delete table ip raw in",
        );
        assert_eq!(t.sh(list), before);
        // what is gone: ENOENT, nothing deleted
        let e = delete_empty(&ns, &[chain("OUTPUT"), chain("FORWARD")], &[]).expect_err("gone");
        let e = crate::error::chain(&e);
        assert!(
            e.contains("chain ip filter FORWARD in") && e.contains("(os error 2)"),
            "{e}"
        );
        assert_eq!(t.sh(list), before);

        t.sh("/usr/sbin/nft flush chain ip filter INPUT");
        delete_empty(&ns, &[chain("INPUT"), chain("OUTPUT")], &[filter]).expect("all empty");
        assert!(!t.sh(list).contains("table ip filter"), "{}", t.sh(list));
    }

    #[test]
    fn unknown_families_are_refused() {
        let e = messages(&[], &[id("ipx", "filter")]).expect_err("unknown family");
        assert_eq!(
            e.to_string(),
            "delete table ipx filter: unknown nftables family ipx"
        );
    }
}
