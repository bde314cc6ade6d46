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
//! table. Never touched: native nftables tables, legacy tables (nft does not see them),
//! families restored through a `CR_IPTABLES` command (their saved text says nothing about
//! nftables), families without iptables-nft, and a namespace in which a lock, crhook's or
//! CRIU's, is still in place: its owner has not finished with it.
//!
//! Chains are removed with `iptables-nft-restore --noflush` (`-X CHAIN`), because iptables-nft
//! asks the kernel for a non-recursive delete: a chain that gained a rule since it was listed
//! fails the whole transaction with EBUSY instead of losing the rule (nft 1.0 deletes a chain
//! with its rules). iptables cannot delete a table, so tables, listed and found empty just
//! before, go with `nft delete table` by handle, which cannot hit a table recreated under the
//! same name in the meantime.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crhook_proto::{FirewallRuleset, FirewallSource};
use serde_json::Value;

use super::capture::{cr_command, cr_source, xt_source, Tools};
use super::exec::{Backend, Family, Run};
use super::nftx::{self, TableId};
use super::xt::{Canon, LOCK_CHAINS};
use crate::api::FirewallOptions;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// The base chains iptables-nft makes, the same in `ip` and `ip6`:
/// (table, chain, hook, priority, chain type).
const BUILTIN: [(&str, &str, &str, i64, &str); 17] = [
    ("filter", "INPUT", "input", 0, "filter"),
    ("filter", "FORWARD", "forward", 0, "filter"),
    ("filter", "OUTPUT", "output", 0, "filter"),
    ("nat", "PREROUTING", "prerouting", -100, "nat"),
    ("nat", "INPUT", "input", 100, "nat"),
    ("nat", "OUTPUT", "output", -100, "nat"),
    ("nat", "POSTROUTING", "postrouting", 100, "nat"),
    ("mangle", "PREROUTING", "prerouting", -150, "filter"),
    ("mangle", "INPUT", "input", -150, "filter"),
    ("mangle", "FORWARD", "forward", -150, "filter"),
    ("mangle", "OUTPUT", "output", -150, "route"),
    ("mangle", "POSTROUTING", "postrouting", -150, "filter"),
    ("raw", "PREROUTING", "prerouting", -300, "filter"),
    ("raw", "OUTPUT", "output", -300, "filter"),
    ("security", "INPUT", "input", 150, "filter"),
    ("security", "FORWARD", "forward", 150, "filter"),
    ("security", "OUTPUT", "output", 150, "filter"),
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ChainKey {
    table: TableId,
    name: String,
}

/// What makes a chain a base chain (absent for regular chains).
#[derive(Debug, Clone)]
struct Hook {
    kind: String,
    hook: String,
    prio: Option<i64>,
    policy: String,
}

/// The live nftables state, as far as it was listed.
#[derive(Debug, Default)]
struct Live {
    /// table -> handle
    tables: BTreeMap<TableId, u64>,
    chains: BTreeMap<ChainKey, Option<Hook>>,
    rules: BTreeMap<ChainKey, usize>,
    /// sets, maps, flowtables, named objects, per table
    others: BTreeMap<TableId, usize>,
    /// tables and chains whose whole content was listed, so that their counts are complete
    listed_tables: BTreeSet<TableId>,
    listed_chains: BTreeSet<ChainKey>,
}

/// What a listing covered: names only (`list tables`, `list chains`), one table, one chain.
enum Scope {
    Names,
    Table(TableId),
    Chain(ChainKey),
    #[cfg(test)]
    All,
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The table an item names under `key` ("name" for a table, "table" for what is in one).
fn table_of(v: &Value, key: &str) -> Option<TableId> {
    Some(TableId {
        family: str_of(v, "family")?.to_string(),
        name: str_of(v, key)?.to_string(),
    })
}

fn chain_of(v: &Value, key: &str) -> Option<ChainKey> {
    Some(ChainKey {
        table: table_of(v, "table")?,
        name: str_of(v, key)?.to_string(),
    })
}

impl Live {
    /// Folds in one `nft -j` listing.
    fn absorb(&mut self, json: &str, scope: Scope) -> std::result::Result<(), String> {
        let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let items = v
            .get("nftables")
            .and_then(Value::as_array)
            .ok_or("no \"nftables\" array")?;
        for item in items {
            let Some((kind, o)) = item.as_object().and_then(|m| m.iter().next()) else {
                continue;
            };
            match kind.as_str() {
                "metainfo" => {}
                "table" => {
                    let handle = o.get("handle").and_then(Value::as_u64);
                    if let (Some(id), Some(handle)) = (table_of(o, "name"), handle) {
                        self.tables.insert(id, handle);
                    }
                }
                "chain" => {
                    let Some(key) = chain_of(o, "name") else {
                        continue;
                    };
                    let hook = str_of(o, "hook").map(|h| Hook {
                        kind: str_of(o, "type").unwrap_or("").to_string(),
                        hook: h.to_string(),
                        prio: o.get("prio").and_then(Value::as_i64),
                        policy: str_of(o, "policy").unwrap_or("").to_string(),
                    });
                    self.chains.insert(key, hook);
                }
                "rule" => {
                    if let Some(key) = chain_of(o, "chain") {
                        *self.rules.entry(key).or_default() += 1;
                    }
                }
                // sets, maps, flowtables, counters, quotas, ct objects, ...
                _ => {
                    if let Some(table) = table_of(o, "table") {
                        *self.others.entry(table).or_default() += 1;
                    }
                }
            }
        }
        match scope {
            Scope::Names => {}
            Scope::Table(id) => {
                self.listed_tables.insert(id);
            }
            Scope::Chain(key) => {
                self.listed_chains.insert(key);
            }
            #[cfg(test)]
            Scope::All => {
                self.listed_tables.extend(self.tables.keys().cloned());
                self.listed_tables
                    .extend(self.chains.keys().map(|k| k.table.clone()));
            }
        }
        Ok(())
    }

    fn chains_of<'a>(&'a self, id: &'a TableId) -> impl Iterator<Item = &'a ChainKey> + 'a {
        self.chains.keys().filter(move |k| &k.table == id)
    }

    /// Listed, and without a rule.
    fn holds_no_rule(&self, key: &ChainKey) -> bool {
        (self.listed_chains.contains(key) || self.listed_tables.contains(&key.table))
            && self.rules.get(key).copied().unwrap_or(0) == 0
    }

    /// A lock of crhook or CRIU in any form.
    fn locked(&self) -> bool {
        self.tables.keys().any(TableId::is_lock)
            || self
                .chains
                .keys()
                .any(|k| k.table.is_xtables() && LOCK_CHAINS.contains(&k.name.as_str()))
    }
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
            let id = super::nfnl::table_id(t);
            if id.is_xtables() && !image.skip.contains(&id.family) {
                image
                    .xt
                    .entry(id)
                    .or_default()
                    .extend(super::nfnl::chain_names(t));
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

    fn has_chain(&self, key: &ChainKey) -> bool {
        self.native.contains(&key.table)
            || self
                .xt
                .get(&key.table)
                .is_some_and(|c| c.contains(&key.name))
    }
}

/// A base chain as iptables-nft makes it for its table, accepting by policy.
fn is_builtin_accept(key: &ChainKey, hook: &Hook) -> bool {
    hook.policy == "accept"
        && BUILTIN.iter().any(|(t, c, h, p, k)| {
            *t == key.table.name
                && *c == key.name
                && *h == hook.hook
                && hook.prio == Some(*p)
                && *k == hook.kind
        })
}

/// Whether the chain could go, were it empty.
fn chain_candidate(image: &Image, key: &ChainKey, hook: Option<&Hook>) -> bool {
    image.in_scope(&key.table)
        && !image.has_chain(key)
        && hook.is_some_and(|h| is_builtin_accept(key, h))
}

/// Whether the table could go, were its chains empty.
fn table_candidate(image: &Image, live: &Live, id: &TableId) -> bool {
    image.in_scope(id)
        && !image.has_table(id)
        && live
            .chains_of(id)
            .all(|k| chain_candidate(image, k, live.chains.get(k).and_then(Option::as_ref)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Removal {
    Chain { table: TableId, name: String },
    Table { table: TableId, handle: u64 },
}

impl Removal {
    fn describe(&self) -> String {
        match self {
            Removal::Chain { table, name } => format!(
                "removed empty chain {name} (policy ACCEPT) from iptables-nft table {table}"
            ),
            Removal::Table { table, .. } => format!("removed empty iptables-nft table {table}"),
        }
    }
}

/// What goes: chains first, then the tables they leave empty.
fn decide(live: &Live, image: &Image) -> Vec<Removal> {
    if live.locked() {
        return Vec::new();
    }
    let chains: Vec<&ChainKey> = live
        .chains
        .iter()
        .filter(|(k, h)| chain_candidate(image, k, h.as_ref()) && live.holds_no_rule(k))
        .map(|(k, _)| k)
        .collect();
    let mut out: Vec<Removal> = chains
        .iter()
        .map(|k| Removal::Chain {
            table: k.table.clone(),
            name: k.name.clone(),
        })
        .collect();
    for (id, handle) in &live.tables {
        let empty = live.listed_tables.contains(id)
            && live.others.get(id).copied().unwrap_or(0) == 0
            && !live.rules.keys().any(|k| &k.table == id)
            && live.chains_of(id).all(|k| chains.contains(&k));
        if empty && table_candidate(image, live, id) {
            out.push(Removal::Table {
                table: id.clone(),
                handle: *handle,
            });
        }
    }
    out
}

fn nft_json(ns: &NetNs, nft: &Path, args: &[&str], live: &mut Live, scope: Scope) -> Result<()> {
    let mut all = vec!["-j"];
    all.extend_from_slice(args);
    let what = args[1..].join(" ");
    let purpose = format!("list {what} with");
    let out = Run {
        program: nft,
        args: &all,
        env: &[],
        stdin: None,
        purpose: &purpose,
    }
    .run(ns)?;
    live.absorb(&out.stdout, scope).map_err(|e| {
        NetstateError::invalid(format!(
            "read the output of {} -j list {what} in {}: {e}",
            nft.display(),
            ns.name()
        ))
    })
}

/// Removes from `ns` the empty iptables-nft base chains (policy ACCEPT), then the empty
/// iptables-nft tables, that `saved` does not have; see the module documentation for what is
/// never touched. Returns one line per object removed. Idempotent: a second run finds nothing.
pub fn tidy(ns: &NetNs, saved: &[FirewallRuleset], opts: &FirewallOptions) -> Result<Vec<String>> {
    if opts.skip {
        return Ok(Vec::new());
    }
    let tools = Tools::probe();
    // without nft nothing of nftables can be seen, nor a table removed
    let Some(nft) = tools.nft.as_deref() else {
        return Ok(Vec::new());
    };
    let mut image = Image::new(saved, opts);
    for family in [Family::V4, Family::V6] {
        if tools.xt(Backend::Nft, family).is_none() {
            image.skip.insert(family.nft_family().to_string());
        }
    }

    let mut live = Live::default();
    nft_json(ns, nft, &["list", "tables"], &mut live, Scope::Names)?;
    if live.tables.keys().all(|id| !image.in_scope(id)) {
        return Ok(Vec::new());
    }
    nft_json(ns, nft, &["list", "chains"], &mut live, Scope::Names)?;
    if live.locked() {
        tracing::debug!(
            netns = ns.name(),
            "a network lock is in place; nothing tidied"
        );
        return Ok(Vec::new());
    }
    // list the contents of what could go: whole tables the images lack, else single chains
    let tables: Vec<TableId> = live
        .tables
        .keys()
        .filter(|id| table_candidate(&image, &live, id))
        .cloned()
        .collect();
    for id in &tables {
        let args = ["list", "table", id.family.as_str(), id.name.as_str()];
        nft_json(ns, nft, &args, &mut live, Scope::Table(id.clone()))?;
    }
    let chains: Vec<ChainKey> = live
        .chains
        .iter()
        .filter(|(k, h)| !tables.contains(&k.table) && chain_candidate(&image, k, h.as_ref()))
        .map(|(k, _)| k.clone())
        .collect();
    for key in chains {
        let t = &key.table;
        let args = [
            "list",
            "chain",
            t.family.as_str(),
            t.name.as_str(),
            key.name.as_str(),
        ];
        nft_json(ns, nft, &args, &mut live, Scope::Chain(key.clone()))?;
    }

    let removals = decide(&live, &image);
    apply(ns, &tools, nft, &removals)?;
    Ok(removals.iter().map(Removal::describe).collect())
}

/// The iptables-restore input deleting the given chains of one family, table by table.
fn chain_script(removals: &[Removal], family: &str) -> String {
    let mut by_table: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in removals {
        if let Removal::Chain { table, name } = r {
            if table.family == family {
                by_table.entry(&table.name).or_default().push(name);
            }
        }
    }
    let mut out = String::new();
    for (table, chains) in by_table {
        out.push_str(&format!("*{table}\n"));
        for c in chains {
            out.push_str(&format!("-X {c}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The nft script deleting the given tables by handle.
fn table_script(removals: &[Removal]) -> String {
    removals
        .iter()
        .filter_map(|r| match r {
            Removal::Table { table, handle } => {
                Some(format!("delete table {} handle {handle}\n", table.family))
            }
            Removal::Chain { .. } => None,
        })
        .collect()
}

fn apply(ns: &NetNs, tools: &Tools, nft: &Path, removals: &[Removal]) -> Result<()> {
    for family in [Family::V4, Family::V6] {
        let script = chain_script(removals, family.nft_family());
        if script.is_empty() {
            continue;
        }
        // tidy() leaves families without iptables-nft alone, so the tool is there
        let Some(x) = tools.xt(Backend::Nft, family) else {
            continue;
        };
        x.apply_noflush(ns, &script, "remove empty base chains")?;
    }
    let script = table_script(removals);
    if !script.is_empty() {
        Run {
            program: nft,
            args: &["-f", "-"],
            env: &[],
            stdin: Some(script.as_bytes()),
            purpose: "remove empty iptables-nft tables with",
        }
        .run(ns)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j` items, one per line, as nft prints them.
    const FILTER4: &str = r#"{"table": {"family": "ip", "name": "filter", "handle": 1}}"#;
    const FILTER6: &str = r#"{"table": {"family": "ip6", "name": "filter", "handle": 3}}"#;
    const IN4: &str = r#"{"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#;
    const OUT4: &str = r#"{"chain": {"family": "ip", "table": "filter", "name": "OUTPUT", "handle": 2, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}}"#;
    const FWD4_DROP: &str = r#"{"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}"#;
    const RULE_IN4: &str = r#"{"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 4, "expr": [{"accept": null}]}}"#;
    const IN6: &str = r#"{"chain": {"family": "ip6", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#;
    const OUT6: &str = r#"{"chain": {"family": "ip6", "table": "filter", "name": "OUTPUT", "handle": 2, "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}}"#;
    const NAT4: &str = r#"{"table": {"family": "ip", "name": "nat", "handle": 2}}
{"chain": {"family": "ip", "table": "nat", "name": "POSTROUTING", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}
{"rule": {"family": "ip", "table": "nat", "chain": "POSTROUTING", "handle": 2, "expr": [{"masquerade": null}]}}"#;

    const GONE_OUT4: &str =
        "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter";

    fn live(items: &[&str]) -> Live {
        let mut all = vec![r#"{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}"#];
        all.extend(items.iter().flat_map(|i| i.lines()));
        let mut l = Live::default();
        let json = format!(r#"{{"nftables": [{}]}}"#, all.join(",\n"));
        l.absorb(&json, Scope::All).expect("parse");
        l
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
        let l = live(&[FILTER4, IN4, OUT4, NAT4, FILTER6, IN6, OUT6]);
        let nat = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o eth0 -j MASQUERADE\nCOMMIT\n";
        let image = Image::new(
            &[saved(FirewallSource::IptablesNft, nat)],
            &FirewallOptions::default(),
        );
        let got = decide(&l, &image);
        let text: Vec<String> = got.iter().map(Removal::describe).collect();
        assert_eq!(
            text[3..],
            [
                "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip6 filter",
                "removed empty iptables-nft table ip filter",
                "removed empty iptables-nft table ip6 filter"
            ]
        );
        assert_eq!(text.len(), 6, "{text:?}");
        assert_eq!(
            chain_script(&got, "ip"),
            "*filter\n-X INPUT\n-X OUTPUT\nCOMMIT\n"
        );
        assert_eq!(
            table_script(&got),
            "delete table ip handle 1\ndelete table ip6 handle 3\n"
        );
    }

    /// The image's filter table had no OUTPUT (iptables-nft makes base chains on demand):
    /// OUTPUT goes; the table, its rule and its DROP policy stay.
    #[test]
    fn only_the_chains_the_image_lacks_go() {
        let l = live(&[FILTER4, IN4, RULE_IN4, FWD4_DROP, OUT4]);
        let text =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        let image = [saved(FirewallSource::IptablesNft, text)];
        assert_eq!(lines(&l, &image, &FirewallOptions::default()), [GONE_OUT4]);
    }

    #[test]
    fn chains_and_tables_the_image_has_stay() {
        let l = live(&[FILTER4, IN4, OUT4]);
        let both = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert!(nothing(&l, &[saved(FirewallSource::IptablesNft, both)]));
        // declared by a legacy ruleset (restored through iptables-nft) counts as well
        let legacy =
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        let l6 = live(&[FILTER6, OUT6]);
        assert!(nothing(
            &l6,
            &[saved(FirewallSource::Ip6tablesLegacy, legacy)]
        ));
        // a table saved natively (made with nft under an iptables name) is the image's
        let native = "table ip filter {\n\tchain OUTPUT {\n\t\ttype filter hook output priority filter; policy accept;\n\t}\n}\n";
        assert!(nothing(
            &live(&[FILTER4, OUT4]),
            &[saved(FirewallSource::Nft, native)]
        ));
    }

    #[test]
    fn anything_holding_something_stays() {
        let user_chain =
            r#"{"chain": {"family": "ip", "table": "filter", "name": "MINE", "handle": 9}}"#;
        let mangle_with_set = r#"{"table": {"family": "ip", "name": "mangle", "handle": 2}}
{"chain": {"family": "ip", "table": "mangle", "name": "OUTPUT", "handle": 1, "type": "route", "hook": "output", "prio": -150, "policy": "accept"}}
{"set": {"family": "ip", "name": "s", "table": "mangle", "type": "ipv4_addr", "handle": 3}}"#;
        let l = live(&[
            FILTER4,
            IN4,
            RULE_IN4,
            FWD4_DROP,
            user_chain,
            OUT4,
            mangle_with_set,
        ]);
        assert_eq!(
            lines(&l, &[], &FirewallOptions::default()),
            [
                GONE_OUT4,
                "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip mangle"
            ]
        );
    }

    #[test]
    fn chains_not_shaped_like_iptables_builtins_stay() {
        let l = live(&[
            FILTER4,
            // made with nft: name, priority or hook unlike iptables-nft's
            r#"{"chain": {"family": "ip", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#,
            r#"{"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 2, "type": "filter", "hook": "input", "prio": 10, "policy": "accept"}}"#,
            r#"{"chain": {"family": "ip", "table": "filter", "name": "OUTPUT", "handle": 3, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}"#,
            // native families and table names
            r#"{"table": {"family": "inet", "name": "filter", "handle": 2}}"#,
            r#"{"chain": {"family": "inet", "table": "filter", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#,
            r#"{"table": {"family": "ip", "name": "mine", "handle": 3}}"#,
            r#"{"chain": {"family": "ip", "table": "mine", "name": "INPUT", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}"#,
        ]);
        assert!(nothing(&l, &[]));
    }

    #[test]
    fn a_lock_in_place_stops_everything() {
        assert_eq!(
            lines(&live(&[FILTER4, OUT4]), &[], &FirewallOptions::default()),
            [GONE_OUT4, "removed empty iptables-nft table ip filter"]
        );
        let criu =
            r#"{"chain": {"family": "ip6", "table": "filter", "name": "CRIU", "handle": 7}}"#;
        assert!(nothing(&live(&[FILTER4, OUT4, FILTER6, criu]), &[]));
        for lock in ["crhook-lock", "CRIU-42"] {
            let table =
                format!(r#"{{"table": {{"family": "inet", "name": "{lock}", "handle": 7}}}}"#);
            assert!(nothing(&live(&[FILTER4, OUT4, &table]), &[]), "{lock}");
        }
    }

    #[test]
    fn cr_iptables_families_are_left_alone() {
        let l = live(&[FILTER4, OUT4, FILTER6, OUT6]);
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

    #[test]
    fn what_was_not_listed_is_kept() {
        let names = format!(r#"{{"nftables": [{FILTER4}, {OUT4}]}}"#);
        let mut l = Live::default();
        l.absorb(&names, Scope::Names).expect("parse");
        assert!(decide(&l, &Image::default()).is_empty());
        // the chain listed alone: it may go, the table (not listed) stays
        let table = TableId {
            family: "ip".into(),
            name: "filter".into(),
        };
        let key = ChainKey {
            table: table.clone(),
            name: "OUTPUT".into(),
        };
        l.absorb(&names, Scope::Chain(key)).expect("parse");
        let want = Removal::Chain {
            table,
            name: "OUTPUT".into(),
        };
        assert_eq!(decide(&l, &Image::default()), [want]);
    }

    #[test]
    fn unreadable_listings_are_errors() {
        let mut l = Live::default();
        assert!(l.absorb("not json", Scope::Names).is_err());
        let e = l.absorb("{}", Scope::Names).err();
        assert_eq!(e.as_deref(), Some("no \"nftables\" array"));
    }
}
