//! Tidying after CRIU: removes the empty iptables-nft base chains and tables that CRIU's
//! TCP-connection lock leaves in a restored namespace, where the images do not have them.
//!
//! CRIU locks a restored namespace with iptables (`-I INPUT -j CRIU` and `-I OUTPUT -j CRIU`
//! in both families) and unlocks it by deleting those rules and the `CRIU` chain. Under the
//! nf_tables backend a rule in a builtin chain makes iptables create the base chain, and its
//! table, on demand; deleting the rule leaves both. The namespace gains empty INPUT and OUTPUT
//! base chains that accept by policy, and an empty `filter` table where it had none. They
//! filter nothing, but `iptables-save` and `nft list ruleset` show them.
//!
//! What goes, and nothing else: in the `ip`/`ip6` tables iptables-nft owns, a base chain shaped
//! the way iptables-nft makes its builtin chains (name, hook, priority and type of its table)
//! that holds no rule, accepts by policy, and is declared by no saved iptables ruleset of its
//! family; then such a table once it holds nothing at all (no chain, rule, set, map or other
//! object) when the images have it neither as an iptables table nor as a native nftables
//! table. Never touched: native nftables tables, legacy tables (nf_tables does not hold them),
//! families restored through a `CR_IPTABLES` command (their saved text says nothing about
//! nftables), families without iptables-nft (no iptables-nft made their tables), and a
//! namespace in which a lock, crhook's or CRIU's, is still in place: its owner has not
//! finished with it.
//!
//! All over nfnetlink, with no program started (neither nft nor iptables-nft-restore need be
//! installed): a table dump; when one of iptables-nft's tables is there, a chain dump (to
//! find a lock chain, which capture leaves out, and the tables with a builtin-named chain the
//! images lack); then a capture of just those tables, rules included, as restore reads them.
//! The images are compared by name: the tables and chains of their nf_tables payloads, the
//! tables and chains their iptables text declares, and the tables of the `nft` text of images
//! written before nfnetlink capture. What goes is deleted in one transaction, each delete
//! non-recursive (nfnl/prune.rs): a chain that gained a rule, or a table that gained
//! anything, since the dump fails it with EBUSY and nothing is removed, instead of losing
//! what was added.

use std::collections::{BTreeMap, BTreeSet};

use crhook_proto::{FirewallRuleset, FirewallSource};

use super::capture::{cr_command, cr_source, xt_source, Tools};
use super::exec::{Backend, Family};
use super::nfnl::{self, BaseHook, ChainShape, TableShape};
use super::nftx::{self, TableId};
use super::xt::{Canon, LOCK_CHAINS};
use crate::api::FirewallOptions;
use crate::error::Result;
use crate::netns::NetNs;

/// NF_INET_* hook numbers
const PRE_ROUTING: u32 = 0;
const LOCAL_IN: u32 = 1;
const FORWARD: u32 = 2;
const LOCAL_OUT: u32 = 3;
const POST_ROUTING: u32 = 4;

/// The base chains iptables-nft makes, the same in `ip` and `ip6`:
/// (table, chain, hook, priority, chain type).
const BUILTIN: [(&str, &str, u32, i32, &str); 17] = [
    ("filter", "INPUT", LOCAL_IN, 0, "filter"),
    ("filter", "FORWARD", FORWARD, 0, "filter"),
    ("filter", "OUTPUT", LOCAL_OUT, 0, "filter"),
    ("nat", "PREROUTING", PRE_ROUTING, -100, "nat"),
    ("nat", "INPUT", LOCAL_IN, 100, "nat"),
    ("nat", "OUTPUT", LOCAL_OUT, -100, "nat"),
    ("nat", "POSTROUTING", POST_ROUTING, 100, "nat"),
    ("mangle", "PREROUTING", PRE_ROUTING, -150, "filter"),
    ("mangle", "INPUT", LOCAL_IN, -150, "filter"),
    ("mangle", "FORWARD", FORWARD, -150, "filter"),
    ("mangle", "OUTPUT", LOCAL_OUT, -150, "route"),
    ("mangle", "POSTROUTING", POST_ROUTING, -150, "filter"),
    ("raw", "PREROUTING", PRE_ROUTING, -300, "filter"),
    ("raw", "OUTPUT", LOCAL_OUT, -300, "filter"),
    ("security", "INPUT", LOCAL_IN, 150, "filter"),
    ("security", "FORWARD", FORWARD, 150, "filter"),
    ("security", "OUTPUT", LOCAL_OUT, 150, "filter"),
];

/// The live iptables-nft tables that might be tidied, captured whole.
type Live = BTreeMap<TableId, TableShape>;

/// A lock of crhook or CRIU in any form: a lock table, or a lock chain in a table of
/// iptables-nft.
fn locked(tables: &[TableId], chains: &[(TableId, String)]) -> bool {
    tables.iter().any(TableId::is_lock)
        || chains
            .iter()
            .any(|(t, c)| t.is_xtables() && LOCK_CHAINS.contains(&c.as_str()))
}

/// What the images hold, as far as tidying cares.
#[derive(Debug, Default)]
struct Image {
    /// nftables families (`ip`, `ip6`) left alone
    skip: BTreeSet<String>,
    /// iptables tables the saved rulesets declare, with their chains
    xt: BTreeMap<TableId, BTreeSet<String>>,
    /// native nftables tables saved
    native: BTreeSet<TableId>,
}

impl Image {
    fn new(saved: &[FirewallRuleset], opts: &FirewallOptions) -> Image {
        let mut image = Image::default();
        let of = |s: FirewallSource| saved.iter().filter(move |r| r.source == s as i32);
        for family in [Family::V4, Family::V6] {
            let fam = family.nft_family();
            if cr_command(opts, family).is_some() || of(cr_source(family)).next().is_some() {
                image.skip.insert(fam.to_string());
                continue;
            }
            // both backends: legacy rules restored through iptables-nft declare chains too
            for backend in [Backend::Nft, Backend::Legacy] {
                for r in of(xt_source(backend, family)) {
                    for (table, chains) in Canon::parse(&r.text).tables {
                        let id = TableId {
                            family: fam.to_string(),
                            name: table,
                        };
                        image.xt.entry(id).or_default().extend(chains.into_keys());
                    }
                }
            }
        }
        for r in of(FirewallSource::Nft) {
            image
                .native
                .extend(nftx::split_tables(&r.text).into_iter().map(|(id, _)| id));
        }
        for t in of(FirewallSource::Nftables).flat_map(|r| r.tables.iter()) {
            let id = nfnl::table_id(t);
            if id.is_xtables() && !image.skip.contains(&id.family) {
                image.xt.entry(id).or_default().extend(nfnl::chain_names(t));
            } else {
                image.native.insert(id);
            }
        }
        image
    }

    fn in_scope(&self, table: &TableId) -> bool {
        table.is_xtables() && !self.skip.contains(&table.family)
    }

    fn has_table(&self, id: &TableId) -> bool {
        self.xt.contains_key(id) || self.native.contains(id)
    }

    fn has_chain(&self, table: &TableId, chain: &str) -> bool {
        self.native.contains(table) || self.xt.get(table).is_some_and(|c| c.contains(chain))
    }
}

/// Whether chain `name` of `table` is residue: shaped the way iptables-nft makes that
/// builtin chain, accepting by policy, without rules, and not in the images.
fn chain_goes(image: &Image, table: &TableId, name: &str, c: &ChainShape) -> bool {
    let builtin = |b: &BaseHook| {
        BUILTIN.iter().any(|(t, n, h, p, k)| {
            *t == table.name && *n == name && *h == b.hook && *p == b.prio && *k == b.kind
        })
    };
    c.rules == 0
        && c.base.as_ref().is_some_and(|b| b.accepts && builtin(b))
        && !image.has_chain(table, name)
}

/// Whether anything of `table` might go, by names alone: the table itself when the images
/// lack it, or a chain named like one of iptables-nft's builtin chains there that the images
/// lack.
fn might_go(image: &Image, table: &TableId, chains: &[(TableId, String)]) -> bool {
    let builtin = |c: &str| BUILTIN.iter().any(|(t, n, ..)| *t == table.name && *n == c);
    image.in_scope(table)
        && (!image.has_table(table)
            || chains
                .iter()
                .any(|(t, c)| t == table && builtin(c) && !image.has_chain(t, c)))
}

/// One object tidying removes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Removal {
    Chain { table: TableId, name: String },
    Table(TableId),
}

impl Removal {
    fn describe(&self) -> String {
        match self {
            Removal::Chain { table, name } => format!(
                "removed empty chain {name} (policy ACCEPT) from iptables-nft table {table}"
            ),
            Removal::Table(table) => format!("removed empty iptables-nft table {table}"),
        }
    }
}

/// What goes: the empty builtin-shaped chains the images lack, then the tables this leaves
/// empty that the images lack.
fn decide(live: &Live, image: &Image) -> Vec<Removal> {
    let mut chains = Vec::new();
    let mut tables = Vec::new();
    for (id, t) in live.iter().filter(|(id, _)| image.in_scope(id)) {
        let before = chains.len();
        for (name, c) in &t.chains {
            if chain_goes(image, id, name, c) {
                chains.push(Removal::Chain {
                    table: id.clone(),
                    name: name.clone(),
                });
            }
        }
        if !t.other && chains.len() - before == t.chains.len() && !image.has_table(id) {
            tables.push(Removal::Table(id.clone()));
        }
    }
    chains.extend(tables);
    chains
}

/// Removes from `ns` the empty iptables-nft base chains (policy ACCEPT), then the empty
/// iptables-nft tables, that `saved` does not have; see the module documentation for what is
/// never touched. Returns one line per object removed. Idempotent: a second run finds nothing.
pub fn tidy(ns: &NetNs, saved: &[FirewallRuleset], opts: &FirewallOptions) -> Result<Vec<String>> {
    if opts.skip {
        return Ok(Vec::new());
    }
    let tools = Tools::probe();
    let mut image = Image::new(saved, opts);
    for family in [Family::V4, Family::V6] {
        if tools.xt(Backend::Nft, family).is_none() {
            image.skip.insert(family.nft_family().to_string());
        }
    }

    let tables = nfnl::table_ids(ns)?;
    if !tables.iter().any(|id| image.in_scope(id)) {
        return Ok(Vec::new());
    }
    let chains = nfnl::chain_ids(ns)?;
    if locked(&tables, &chains) {
        tracing::debug!(
            netns = ns.name(),
            "a network lock is in place; nothing tidied"
        );
        return Ok(Vec::new());
    }
    // capture (rules included) only the tables something might go from
    let open = |id: &TableId| might_go(&image, id, &chains);
    if !tables.iter().any(open) {
        return Ok(Vec::new());
    }
    let live: Live = nfnl::capture(ns, false, &open)?
        .iter()
        .map(|t| (nfnl::table_id(t), nfnl::table_shape(t)))
        .collect();

    let removals = decide(&live, &image);
    let mut gone_chains = Vec::new();
    let mut gone_tables = Vec::new();
    for r in &removals {
        match r {
            Removal::Chain { table, name } => gone_chains.push((table.clone(), name.clone())),
            Removal::Table(table) => gone_tables.push(table.clone()),
        }
    }
    nfnl::delete_empty(ns, &gone_chains, &gone_tables)?;
    Ok(removals.iter().map(Removal::describe).collect())
}

#[cfg(test)]
mod tests {
    use crhook_proto::NftTable;

    use super::*;

    const GONE_OUT4: &str =
        "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter";

    /// "ip filter"
    fn id(label: &str) -> TableId {
        let (family, name) = label.split_once(' ').expect("family and name");
        TableId {
            family: family.into(),
            name: name.into(),
        }
    }

    /// A base chain without rules, accepting by policy.
    fn base(hook: u32, prio: i32, kind: &str) -> ChainShape {
        let base = BaseHook {
            hook,
            prio,
            kind: kind.into(),
            accepts: true,
        };
        ChainShape {
            base: Some(base),
            rules: 0,
        }
    }

    fn input() -> ChainShape {
        base(LOCAL_IN, 0, "filter")
    }

    fn output() -> ChainShape {
        base(LOCAL_OUT, 0, "filter")
    }

    fn with_rules(c: ChainShape, rules: usize) -> ChainShape {
        ChainShape { rules, ..c }
    }

    fn dropping(mut c: ChainShape) -> ChainShape {
        if let Some(b) = c.base.as_mut() {
            b.accepts = false;
        }
        c
    }

    /// Live tables by label, with their chains; holding nothing else.
    fn live(tables: &[(&str, Vec<(&str, ChainShape)>)]) -> Live {
        tables
            .iter()
            .map(|(label, chains)| {
                let chains = chains.iter().map(|(n, c)| (n.to_string(), c.clone()));
                let shape = TableShape {
                    chains: chains.collect(),
                    other: false,
                };
                (id(label), shape)
            })
            .collect()
    }

    fn saved(source: FirewallSource, text: &str) -> FirewallRuleset {
        FirewallRuleset {
            source: source as i32,
            text: text.into(),
            counters: false,
            program: String::new(),
            tables: Vec::new(),
        }
    }

    /// An nfnetlink image holding `table` with chains named `chains` (NFTA_CHAIN_NAME only).
    fn saved_nftables(table: &str, chains: &[&str]) -> FirewallRuleset {
        let t = id(table);
        let family: u8 = if t.family == "ip6" { 10 } else { 2 };
        let chain = |name: &str| {
            let mut p = vec![family, 0, 0, 0];
            let len = u16::try_from(4 + name.len() + 1).expect("short name");
            p.extend_from_slice(&len.to_ne_bytes());
            p.extend_from_slice(&3u16.to_ne_bytes());
            p.extend_from_slice(name.as_bytes());
            p.push(0);
            p.resize(p.len().next_multiple_of(4), 0);
            p
        };
        FirewallRuleset {
            tables: vec![NftTable {
                family: u32::from(family),
                name: t.name,
                chains: chains.iter().map(|c| chain(c).into()).collect(),
                ..Default::default()
            }],
            ..saved(FirewallSource::Nftables, "")
        }
    }

    fn lines(l: &Live, saved: &[FirewallRuleset], opts: &FirewallOptions) -> Vec<String> {
        let got = decide(l, &Image::new(saved, opts));
        got.iter().map(Removal::describe).collect()
    }

    fn nothing(l: &Live, saved: &[FirewallRuleset]) -> bool {
        lines(l, saved, &FirewallOptions::default()).is_empty()
    }

    /// CRIU's residue where the image had no filter table: both families' tables go, after
    /// their chains; the nat table the image has stays.
    #[test]
    fn residue_without_a_filter_table_goes_whole() {
        let l = live(&[
            ("ip filter", vec![("INPUT", input()), ("OUTPUT", output())]),
            (
                "ip nat",
                vec![("POSTROUTING", with_rules(base(POST_ROUTING, 100, "nat"), 1))],
            ),
            ("ip6 filter", vec![("INPUT", input()), ("OUTPUT", output())]),
        ]);
        let nat = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n";
        let image = [saved(FirewallSource::IptablesNft, nat)];
        assert_eq!(
            lines(&l, &image, &FirewallOptions::default()),
            [
                "removed empty chain INPUT (policy ACCEPT) from iptables-nft table ip filter",
                GONE_OUT4,
                "removed empty chain INPUT (policy ACCEPT) from iptables-nft table ip6 filter",
                "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip6 filter",
                "removed empty iptables-nft table ip filter",
                "removed empty iptables-nft table ip6 filter"
            ]
        );
    }

    /// The image's filter table had no OUTPUT (iptables-nft makes base chains on demand):
    /// OUTPUT goes; the table, its rule and its DROP policy stay.
    #[test]
    fn only_the_chains_the_image_lacks_go() {
        let l = live(&[(
            "ip filter",
            vec![
                ("INPUT", with_rules(input(), 1)),
                ("FORWARD", dropping(base(FORWARD, 0, "filter"))),
                ("OUTPUT", output()),
            ],
        )]);
        let text =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        let image = [saved(FirewallSource::IptablesNft, text)];
        assert_eq!(lines(&l, &image, &FirewallOptions::default()), [GONE_OUT4]);
        // the same image captured over nfnetlink
        let image = [saved_nftables("ip filter", &["INPUT", "FORWARD"])];
        assert_eq!(lines(&l, &image, &FirewallOptions::default()), [GONE_OUT4]);
    }

    #[test]
    fn chains_and_tables_the_image_has_stay() {
        let l = live(&[("ip filter", vec![("INPUT", input()), ("OUTPUT", output())])]);
        let both = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert!(nothing(&l, &[saved(FirewallSource::IptablesNft, both)]));
        assert!(nothing(
            &l,
            &[saved_nftables("ip filter", &["INPUT", "OUTPUT"])]
        ));
        // declared by a legacy ruleset (restored through iptables-nft) counts as well
        let legacy =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let l6 = live(&[("ip6 filter", vec![("OUTPUT", output())])]);
        assert!(nothing(
            &l6,
            &[saved(FirewallSource::Ip6tablesLegacy, legacy)]
        ));
        // a table saved natively as nft text (made with nft under an iptables name, in an
        // image written before nfnetlink capture) is the image's, chains and all
        let native = "table ip filter {\n\tchain OUTPUT {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n";
        let out4 = live(&[("ip filter", vec![("OUTPUT", output())])]);
        assert!(nothing(&out4, &[saved(FirewallSource::Nft, native)]));
        // an image holding the table without the chain: the chain goes, the table stays
        let empty = saved_nftables("ip filter", &[]);
        assert_eq!(
            lines(&out4, &[empty], &FirewallOptions::default()),
            [GONE_OUT4]
        );
    }

    #[test]
    fn anything_holding_something_stays() {
        let mut l = live(&[
            (
                "ip filter",
                vec![
                    ("INPUT", with_rules(input(), 1)),
                    ("FORWARD", dropping(base(FORWARD, 0, "filter"))),
                    (
                        "MINE",
                        ChainShape {
                            base: None,
                            rules: 0,
                        },
                    ),
                    ("OUTPUT", output()),
                ],
            ),
            (
                "ip mangle",
                vec![("OUTPUT", base(LOCAL_OUT, -150, "route"))],
            ),
            ("ip raw", vec![]),
        ]);
        // a set in mangle, and raw holds nothing at all
        if let Some(t) = l.get_mut(&id("ip mangle")) {
            t.other = true;
        }
        assert_eq!(
            lines(&l, &[], &FirewallOptions::default()),
            [
                GONE_OUT4,
                "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip mangle",
                "removed empty iptables-nft table ip raw"
            ]
        );
    }

    #[test]
    fn chains_not_shaped_like_iptables_builtins_stay() {
        let l = live(&[
            (
                "ip filter",
                vec![
                    // made with nft: name, priority, hook or type unlike iptables-nft's
                    ("input", input()),
                    ("INPUT", base(LOCAL_IN, 10, "filter")),
                    ("OUTPUT", base(FORWARD, 0, "filter")),
                    ("FORWARD", base(FORWARD, 0, "route")),
                ],
            ),
            (
                "ip nat",
                vec![("PREROUTING", base(PRE_ROUTING, 100, "nat"))],
            ),
            // native families and table names
            ("inet filter", vec![("INPUT", input())]),
            ("ip mine", vec![("INPUT", input())]),
            ("ip mine2", vec![]),
        ]);
        assert!(nothing(&l, &[]));
    }

    /// A table whose every builtin-named chain the images have is not captured at all.
    #[test]
    fn only_tables_something_might_go_from_are_captured() {
        let both =
            "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        let image = Image::new(
            &[saved(FirewallSource::IptablesNft, both)],
            &FirewallOptions::default(),
        );
        let chains = |names: &[&str]| -> Vec<(TableId, String)> {
            let named = names.iter().map(|n| (id("ip filter"), n.to_string()));
            named.chain([(id("ip nat"), "MINE".into())]).collect()
        };
        let filter = id("ip filter");
        assert!(!might_go(
            &image,
            &filter,
            &chains(&["INPUT", "OUTPUT", "MINE"])
        ));
        assert!(might_go(&image, &filter, &chains(&["INPUT", "FORWARD"])));
        // a table the images lack, and one of no iptables-nft
        assert!(might_go(&image, &id("ip nat"), &chains(&[])));
        assert!(!might_go(&image, &id("inet filter"), &chains(&[])));
    }

    #[test]
    fn a_lock_in_place_stops_everything() {
        let tables = [id("ip filter"), id("ip6 filter")];
        let out4 = (id("ip filter"), "OUTPUT".to_string());
        assert!(!locked(&tables, std::slice::from_ref(&out4)));
        for (table, chain) in [("ip6 filter", "CRIU"), ("ip raw", "crhook-lock")] {
            let chains = [out4.clone(), (id(table), chain.to_string())];
            assert!(locked(&tables, &chains), "{table} {chain}");
        }
        // a chain of that name in a native table is no lock
        assert!(!locked(&tables, &[(id("inet mine"), "CRIU".into())]));
        for lock in ["inet crhook-lock", "inet CRIU-42"] {
            let with = [id("ip filter"), id(lock)];
            assert!(locked(&with, std::slice::from_ref(&out4)), "{lock}");
        }
    }

    #[test]
    fn cr_iptables_families_are_left_alone() {
        let l = live(&[
            ("ip filter", vec![("OUTPUT", output())]),
            ("ip6 filter", vec![("OUTPUT", output())]),
        ]);
        assert_eq!(lines(&l, &[], &FirewallOptions::default()).len(), 4);
        let opts = FirewallOptions {
            cr_ip6tables: Some("cat".into()),
            ..Default::default()
        };
        let got = lines(&l, &[], &opts);
        assert_eq!(
            got,
            [GONE_OUT4, "removed empty iptables-nft table ip filter"]
        );
        // the image says a user command saved IPv4
        let image = [saved(FirewallSource::CrIptablesV4, "*filter\nCOMMIT\n")];
        let got = lines(&l, &image, &FirewallOptions::default());
        assert!(got.iter().all(|x| x.contains("ip6 filter")), "{got:?}");
        assert_eq!(got.len(), 2);
    }
}
