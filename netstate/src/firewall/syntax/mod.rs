//! Saved nf_tables tables in rule syntax, as `nft` and `iptables-save` print them, for `diff`
//! and `show`: the tables are replayed into a private throwaway namespace and listed there
//! with `nft -a list ruleset` and, for the tables iptables-nft owns, `iptables-nft-save` /
//! `ip6tables-nft-save`. Nothing here translates an expression: the tools that wrote the
//! rules read them back, so every match, target, set and map the tools know prints exactly as
//! the user typed it (`tcp dport 8080 accept`, `-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT`).
//!
//! The namespace: [`NetNs::private`] unshares a network namespace on a fresh thread and keeps
//! only its nsfs file, so it is nobody's but this module's (no name under /run/netns another
//! program could enter or list), and it is gone when the handle drops, even if crhook is
//! killed, where an `ip netns add` name would stay mounted. The replay reuses restore's own
//! transaction (`nfnl::load_table`, one per table, so a table this kernel refuses, e.g. a
//! chain hooked to a device the private namespace lacks, leaves the others rendered).
//!
//! Why not libnftables through a crate: the maintained bindings (`libnftables1-sys`) link a
//! GPL-2.0-only library into this Apache-2.0 program and need its headers to build, and
//! libnftables lists rules from the kernel too, so the private namespace and the replay would
//! stay; it would save only starting `nft`, measured at about 3 ms a run (7.6 ms for `ip netns
//! exec` + `nft -a list ruleset` in an empty namespace against 4.8 ms for `ip netns exec true`).
//! The rest is the listing itself, which the library does the same way. Measured on the 2-core
//! VM (busy), `crhook show firewall.img --format text` as root against the same without
//! privilege (kernel messages in hex): 10 ms against 5 ms for ten rules; 0.7 s against 0.3 s
//! at 5,000 rules in each of an iptables-nft and a native table; 6.4-7.3 s against 2.8 s at
//! 50,000 each, of which nft's listing of the native table is 1.5 s, `iptables-nft-save`
//! 0.5 s and the replay about 1 s. iptables-save syntax has no library at all. Needs
//! CAP_SYS_ADMIN and CAP_NET_ADMIN; without them callers show the kernel's form.
//!
//! Must not: run in the target namespace (counters there move; the image is what is shown),
//! or keep the namespace past one call.
//!
//! [`NetNs::private`]: crate::netns::NetNs::private

mod parse;

use std::collections::BTreeMap;

use crhook_proto::NftTable;
use serde::Serialize;

pub use parse::{Block, NftText, XtText};

use super::exec::{find, Backend, Family, Run, Xtables};
use super::nfnl;
use super::nftx::TableId;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// One saved table as the tools print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableText {
    /// nft's family name ("ip", "inet", ...)
    pub family: String,
    pub name: String,
    /// as `nft list table` prints it (not listed, so empty, when `iptables` holds the table)
    pub nft: NftText,
    /// as `iptables-save` prints it, for a table iptables-nft owns whose every rule it could
    /// print
    pub iptables: Option<XtText>,
}

impl TableText {
    /// How diff lines name the table: "iptables-nft table filter", "nft table inet web".
    pub fn label(&self) -> String {
        match (&self.iptables, self.family.as_str()) {
            (Some(_), "ip6") => format!("ip6tables-nft table {}", self.name),
            (Some(_), _) => format!("iptables-nft table {}", self.name),
            (None, _) => format!("nft table {} {}", self.family, self.name),
        }
    }

    /// The text a person reads: the iptables-save section, else the nft block.
    pub fn text(&self) -> &str {
        match &self.iptables {
            Some(x) => &x.text,
            None => &self.nft.text,
        }
    }

    /// Rules of `chain` in order, counter values left out.
    pub fn rules(&self, chain: &str) -> Option<Vec<String>> {
        match &self.iptables {
            Some(x) => Some(x.rules.get(chain).cloned().unwrap_or_default()),
            None => self
                .nft
                .chains
                .get(chain)
                .map(|c| c.items.iter().map(|r| parse::without_counts(r)).collect()),
        }
    }

    /// The kind a person knows an object by ("chain", "set", "map", "counter", "flowtable"),
    /// from the kind of message it was saved as ("chain", "set", "object", "flowtable").
    pub fn object_kind(&self, saved_as: &str, name: &str) -> Option<String> {
        match saved_as {
            "chain" => Some("chain".into()),
            "set" | "elements" => self.nft.sets.get(name).map(|s| s.kind.clone()),
            _ => self.other(name).map(|(k, _)| k.clone()),
        }
    }

    /// What defines an object besides its content, as (field, value): a builtin iptables
    /// chain's `policy`, an nft chain's hook line, a set's type and flags, a named object's
    /// settings.
    pub fn definition(&self, saved_as: &str, name: &str) -> Option<(String, String)> {
        let joined = |b: &Block, sep: &str| {
            if b.header.is_empty() {
                "no settings".to_string()
            } else {
                b.header.join(sep)
            }
        };
        match (saved_as, &self.iptables) {
            ("chain", Some(x)) => x.policies.get(name).map(|p| match p.as_str() {
                "-" => ("chain".to_string(), "user chain".to_string()),
                p => ("policy".to_string(), p.to_string()),
            }),
            ("chain", None) => self.nft.chains.get(name).map(|c| {
                let v = if c.header.is_empty() {
                    "regular chain".to_string()
                } else {
                    c.header.join(" ")
                };
                ("definition".to_string(), v)
            }),
            ("set", _) => self
                .nft
                .sets
                .get(name)
                .map(|b| ("definition".to_string(), joined(b, "; "))),
            _ => self
                .other(name)
                .map(|(_, b)| ("definition".to_string(), joined(b, "; "))),
        }
    }

    /// A set's or map's elements as nft prints them.
    pub fn elements(&self, set: &str) -> Option<Vec<String>> {
        self.nft.sets.get(set).map(|s| s.items.clone())
    }

    /// Another named object ("counter c1", "flowtable ft") by its name: (kind, block).
    fn other(&self, name: &str) -> Option<(&String, &Block)> {
        self.nft
            .others
            .iter()
            .find(|(k, _)| k.rsplit(' ').next() == Some(name))
            .map(|(_, b)| (&b.kind, b))
    }

    /// Number of rules, as the tools listed them.
    pub fn rule_count(&self) -> usize {
        match &self.iptables {
            Some(x) => x.rules.values().map(Vec::len).sum(),
            None => self.nft.chains.values().map(|c| c.items.len()).sum(),
        }
    }
}

/// `tables` in rule syntax, in order; a table that could not be loaded or listed carries the
/// reason instead. The error is for what stops every table: no private namespace (no
/// privilege) or no `nft`. A table iptables-nft owns is listed by `iptables-nft-save` only
/// (nft takes about 1.5 s to list 50,000 such rules, iptables-save 0.5 s), by `nft` only when
/// iptables-save declines it or misses a rule.
pub fn render(tables: &[&NftTable]) -> Result<Vec<std::result::Result<TableText, String>>> {
    if tables.is_empty() {
        return Ok(Vec::new());
    }
    let nft = find("nft").ok_or_else(|| NetstateError::Unsupported {
        what: "show nf_tables rules: nft not found in /usr/sbin, /sbin, /usr/bin, /bin".into(),
    })?;
    let ns = NetNs::private("(private, for listing saved nf_tables rules)")?;
    let mut loaded: Vec<std::result::Result<(), String>> = Vec::with_capacity(tables.len());
    for t in tables {
        loaded.push(nfnl::load_table(&ns, t).map_err(|e| crate::error::chain(&e)));
    }
    let mut xt: BTreeMap<(String, String), XtText> = BTreeMap::new();
    for family in [Family::V4, Family::V6] {
        let wanted = tables.iter().zip(&loaded).any(|(t, ok)| {
            let id = nfnl::table_id(t);
            ok.is_ok() && id.is_xtables() && id.family == family.nft_family()
        });
        if !wanted {
            continue;
        }
        let Some(x) = Xtables::probe(Backend::Nft, family) else {
            continue;
        };
        let purpose = format!("list saved {} rules with", x.label());
        let listed = Run {
            program: &x.save,
            args: &[],
            env: &[],
            stdin: None,
            purpose: &purpose,
        }
        .run(&ns);
        // a failure leaves these tables to nft
        if let Ok(out) = listed {
            let declined = parse::xt_incompatible(&out.stdout);
            for t in parse::xt_tables(&out.stdout) {
                if !declined.contains(&t.name) {
                    xt.insert((family.nft_family().to_string(), t.name.clone()), t);
                }
            }
        }
    }
    Ok(tables
        .iter()
        .zip(loaded)
        .map(|(t, ok)| {
            ok?;
            let id = nfnl::table_id(t);
            let key = (id.family.clone(), id.name.clone());
            let iptables = xt.get(&key).filter(|x| xt_complete(t, x, &id)).cloned();
            let nft = match iptables {
                Some(_) => NftText {
                    family: id.family.clone(),
                    name: id.name.clone(),
                    ..NftText::default()
                },
                None => list_nft(&ns, &nft, &id)?,
            };
            Ok(TableText {
                family: id.family,
                name: id.name,
                nft,
                iptables,
            })
        })
        .collect())
}

/// One table as `nft -a list table` prints it in `ns`.
fn list_nft(
    ns: &NetNs,
    nft: &std::path::Path,
    id: &TableId,
) -> std::result::Result<NftText, String> {
    let out = Run {
        program: nft,
        args: &["-a", "list", "table", &id.family, &id.name],
        env: &[],
        stdin: None,
        purpose: "list saved nf_tables rules with",
    }
    .run(ns)
    .map_err(|e| crate::error::chain(&e))?;
    parse::nft_tables(&out.stdout)
        .into_iter()
        .find(|t| t.family == id.family && t.name == id.name)
        .ok_or_else(|| format!("nft did not list table {id}"))
}

/// Whether iptables-save printed as many rules per chain as the table holds (a rule it
/// cannot express would otherwise vanish from the iptables view).
fn xt_complete(t: &NftTable, x: &XtText, id: &TableId) -> bool {
    let counts = nfnl::rule_counts(t);
    id.is_xtables()
        && counts
            .iter()
            .all(|(chain, n)| x.rules.get(chain).map_or(0, Vec::len) == *n)
}
