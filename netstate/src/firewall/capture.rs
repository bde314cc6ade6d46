//! Capture: every ruleset of the namespace as the tools print it, minus lock artefacts.

use std::path::PathBuf;

use crhook_proto::{FirewallRuleset, FirewallSource};

use super::exec::{find, read_ns_proc, read_ns_procs, Backend, Family, Run, Xtables};
use super::nftx::{self, TableId};
use super::xt::{self, BaseChains, Canon};
use crate::api::FirewallOptions;
use crate::error::Result;
use crate::netns::NetNs;

/// The programs found on this host.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub nft: Option<PathBuf>,
    pub sh: Option<PathBuf>,
    xt: Vec<Xtables>,
}

impl Tools {
    pub(crate) fn probe() -> Tools {
        let mut xt = Vec::new();
        for backend in [Backend::Nft, Backend::Legacy] {
            for family in [Family::V4, Family::V6] {
                xt.extend(Xtables::probe(backend, family));
            }
        }
        Tools {
            nft: find("nft"),
            sh: find("sh"),
            xt,
        }
    }

    /// The same tools as if one iptables backend were not installed.
    #[cfg(test)]
    pub(crate) fn without(mut self, backend: Backend) -> Tools {
        self.xt.retain(|x| x.backend != backend);
        self
    }

    pub(crate) fn xt(&self, backend: Backend, family: Family) -> Option<&Xtables> {
        self.xt
            .iter()
            .find(|x| x.backend == backend && x.family == family)
    }
}

/// The `CR_IPTABLES` command serving `family`, if any.
pub(crate) fn cr_command(opts: &FirewallOptions, family: Family) -> Option<(&str, &'static str)> {
    match family {
        Family::V4 => opts.cr_iptables.as_deref().map(|c| (c, "CR_IPTABLES")),
        Family::V6 => opts
            .cr_ip6tables
            .as_deref()
            .map(|c| (c, "CR_IP6TABLES"))
            .or_else(|| opts.cr_iptables.as_deref().map(|c| (c, "CR_IPTABLES"))),
    }
}

pub(crate) fn cr_source(family: Family) -> FirewallSource {
    match family {
        Family::V4 => FirewallSource::CrIptablesV4,
        Family::V6 => FirewallSource::CrIptablesV6,
    }
}

pub(crate) fn xt_source(backend: Backend, family: Family) -> FirewallSource {
    match (backend, family) {
        (Backend::Nft, Family::V4) => FirewallSource::IptablesNft,
        (Backend::Nft, Family::V6) => FirewallSource::Ip6tablesNft,
        (Backend::Legacy, Family::V4) => FirewallSource::IptablesLegacy,
        (Backend::Legacy, Family::V6) => FirewallSource::Ip6tablesLegacy,
    }
}

/// Human name of a saved source, as messages name it.
pub(crate) fn source_label(source: FirewallSource) -> &'static str {
    match source {
        FirewallSource::Unspecified => "unspecified firewall source",
        FirewallSource::IptablesNft => "iptables-nft",
        FirewallSource::Ip6tablesNft => "ip6tables-nft",
        FirewallSource::IptablesLegacy => "iptables-legacy",
        FirewallSource::Ip6tablesLegacy => "ip6tables-legacy",
        FirewallSource::Nft => "nft",
        FirewallSource::CrIptablesV4 => "CR_IPTABLES (ipv4)",
        FirewallSource::CrIptablesV6 => "CR_IPTABLES (ipv6)",
        FirewallSource::Nftables => "nftables",
    }
}

/// Runs the user's command for `action` (save or restore) and `family` inside the namespace.
pub(crate) fn run_cr(
    ns: &NetNs,
    tools: &Tools,
    (cmd, var): (&str, &str),
    action: &str,
    family: Family,
    stdin: Option<&[u8]>,
) -> Result<String> {
    let sh = tools
        .sh
        .as_deref()
        .ok_or_else(|| crate::error::NetstateError::Unsupported {
            what: format!("{var}: no sh found in /usr/sbin, /sbin, /usr/bin, /bin"),
        })?;
    let purpose = format!("{action} {} rules with {var}:", family.cr_name());
    let out = Run {
        program: sh,
        args: &["-c", cmd],
        env: &[
            ("CR_IPTABLES_ACTION", action),
            ("CR_IPTABLES_FAMILY", family.cr_name()),
        ],
        stdin,
        purpose: &purpose,
    }
    .run_user(ns)?;
    Ok(out.stdout)
}

/// `iptables-save` (with counters) of one backend, as printed.
pub(crate) fn xt_save_raw(ns: &NetNs, x: &Xtables) -> Result<String> {
    let purpose = format!("save {} ruleset with", x.label());
    Ok(Run {
        program: &x.save,
        args: &["-c"],
        env: &[],
        stdin: None,
        purpose: &purpose,
    }
    .run(ns)?
    .stdout)
}

/// Whether the firewall of `ns` holds state that the nf_tables generation does not cover:
/// legacy iptables tables, or a `CR_IPTABLES` command whose output only running it tells.
pub fn outside_nf_tables(ns: &NetNs, opts: &FirewallOptions) -> Result<bool> {
    if opts.skip {
        return Ok(false);
    }
    if opts.cr_iptables.is_some() || opts.cr_ip6tables.is_some() || opts.nft_text {
        return Ok(true);
    }
    let mut legacy = LegacyTables::new(ns);
    Ok(legacy.present(Family::V4)? || legacy.present(Family::V6)?)
}

/// Whether each family has legacy tables, from both proc files read on one namespace thread
/// when first asked (a thread per file cost a thread start and a setns each).
pub(crate) struct LegacyTables<'a> {
    ns: &'a NetNs,
    /// IPv4, IPv6
    present: Option<[bool; 2]>,
}

impl<'a> LegacyTables<'a> {
    pub(crate) fn new(ns: &'a NetNs) -> Self {
        LegacyTables { ns, present: None }
    }

    /// [`legacy_present`] of `family`.
    pub(crate) fn present(&mut self, family: Family) -> Result<bool> {
        let both = match self.present {
            Some(b) => b,
            None => {
                let [v4, v6] = read_ns_procs(self.ns, ["ip_tables_names", "ip6_tables_names"])?;
                let b = [!v4.trim().is_empty(), !v6.trim().is_empty()];
                self.present = Some(b);
                b
            }
        };
        Ok(match family {
            Family::V4 => both[0],
            Family::V6 => both[1],
        })
    }
}

/// Whether the legacy tables of `family` exist in the namespace. The legacy tools would
/// instantiate a table by looking at it, so the proc file decides whether to run them.
pub(crate) fn legacy_present(ns: &NetNs, family: Family) -> Result<bool> {
    let file = match family {
        Family::V4 => "ip_tables_names",
        Family::V6 => "ip6_tables_names",
    };
    Ok(!read_ns_proc(ns, file)?.trim().is_empty())
}

/// Tables of the namespace (one nfnetlink table dump); None without nft, since then
/// nothing of crhook's can have made or read them.
pub(crate) fn nft_tables(ns: &NetNs, tools: &Tools) -> Result<Option<Vec<TableId>>> {
    if tools.nft.is_none() {
        return Ok(None);
    }
    Ok(Some(super::nfnl::table_ids(ns)?))
}

/// Chains per iptables table (for `family`), to leave out builtin chains nftables lacks.
pub(crate) fn xt_base_chains(
    ns: &NetNs,
    tools: &Tools,
    family: Family,
) -> Result<Option<BaseChains>> {
    let Some(nft) = tools.nft.as_deref() else {
        return Ok(None);
    };
    let out = Run {
        program: nft,
        args: &["-j", "list", "chains"],
        env: &[],
        stdin: None,
        purpose: "list nftables chains with",
    }
    .run(ns)?;
    Ok(Some(nftx::base_chains(&out.stdout, family.nft_family())))
}

/// One native table's text; stateless (`-s`: counters, quota usage, element expiry left out)
/// unless `counters`.
pub(crate) fn nft_table(
    ns: &NetNs,
    nft: &std::path::Path,
    id: &TableId,
    counters: bool,
) -> Result<String> {
    let mut args = Vec::new();
    if !counters {
        args.push("-s");
    }
    args.extend(["list", "table", id.family.as_str(), id.name.as_str()]);
    let purpose = format!("save nftables table {id} with");
    Ok(Run {
        program: nft,
        args: &args,
        env: &[],
        stdin: None,
        purpose: &purpose,
    }
    .run(ns)?
    .stdout)
}

/// Tables iptables-nft-save declined ("# Table `x' is incompatible, use 'nft' tool."): they
/// were made with nft under an iptables name and are saved natively instead.
fn incompatible_tables(text: &str, family: Family) -> Vec<TableId> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("# Table `")?;
            let (name, tail) = rest.split_once('\'')?;
            tail.contains("incompatible").then(|| TableId {
                family: family.nft_family().to_string(),
                name: name.to_string(),
            })
        })
        .collect()
}

/// Captures every ruleset of the namespace. See the module documentation for what is left out.
pub fn capture(ns: &NetNs, opts: &FirewallOptions) -> Result<Vec<FirewallRuleset>> {
    if opts.skip {
        return Ok(Vec::new());
    }
    if opts.nft_text {
        return capture_text(ns, opts);
    }
    let tools = Tools::probe();
    let mut legacy = LegacyTables::new(ns);
    let mut out = Vec::new();
    let mut cr_families = Vec::new();
    for family in [Family::V4, Family::V6] {
        if let Some(cr) = cr_command(opts, family) {
            out.push(cr_save(ns, &tools, cr, family)?);
            cr_families.push(family.nft_family());
            continue;
        }
        out.extend(legacy_save(ns, &tools, &mut legacy, opts, family)?);
    }
    let tables = super::nfnl::capture(ns, opts.counters, &nfnl_keeps(opts))?;
    out.insert(
        0,
        FirewallRuleset {
            source: FirewallSource::Nftables as i32,
            text: String::new(),
            counters: opts.counters,
            program: NFNETLINK.into(),
            tables,
        },
    );
    Ok(out)
}

/// The `CR_IPTABLES` command's saved text for `family`.
fn cr_save(
    ns: &NetNs,
    tools: &Tools,
    cr: (&str, &'static str),
    family: Family,
) -> Result<FirewallRuleset> {
    Ok(FirewallRuleset {
        source: cr_source(family) as i32,
        text: run_cr(ns, tools, cr, "save", family, None)?,
        counters: false,
        program: format!("{}: {}", cr.1, cr.0),
        tables: Vec::new(),
    })
}

/// The legacy tables of `family`, when they exist and hold rules.
fn legacy_save(
    ns: &NetNs,
    tools: &Tools,
    legacy: &mut LegacyTables<'_>,
    opts: &FirewallOptions,
    family: Family,
) -> Result<Option<FirewallRuleset>> {
    let Some(x) = tools.xt(Backend::Legacy, family) else {
        return Ok(None);
    };
    if !legacy.present(family)? {
        return Ok(None);
    }
    let text = xt::clean(&xt_save_raw(ns, x)?, opts.counters, None, true);
    Ok((!Canon::parse(&text).is_empty()).then(|| {
        ruleset(
            xt_source(Backend::Legacy, family),
            text,
            opts.counters,
            &x.save,
        )
    }))
}

/// What images name as the program of nfnetlink-captured state.
pub(crate) const NFNETLINK: &str = "nfnetlink";

/// Which nf_tables tables are captured and restored over nfnetlink: all but iptables-nft's
/// tables of a family a `CR_IPTABLES` command serves (lock tables are left out anyway).
pub(crate) fn nfnl_keeps(opts: &FirewallOptions) -> impl Fn(&TableId) -> bool {
    let cr: Vec<&'static str> = [Family::V4, Family::V6]
        .into_iter()
        .filter(|f| cr_command(opts, *f).is_some())
        .map(|f| f.nft_family())
        .collect();
    move |id: &TableId| !(id.is_xtables() && cr.contains(&id.family.as_str()))
}

/// [`capture`] with nf_tables state as the tools print it (`FirewallOptions::nft_text`).
fn capture_text(ns: &NetNs, opts: &FirewallOptions) -> Result<Vec<FirewallRuleset>> {
    let tools = Tools::probe();
    let mut legacy = LegacyTables::new(ns);
    let tables = nft_tables(ns, &tools)?;
    let mut out = Vec::new();
    let mut native_extra = Vec::new();
    for family in [Family::V4, Family::V6] {
        if let Some(cr) = cr_command(opts, family) {
            out.push(cr_save(ns, &tools, cr, family)?);
            continue;
        }
        if let Some(x) = tools.xt(Backend::Nft, family) {
            // no xtables table in nftables: nothing to save (and nothing to start up)
            let any = tables.as_ref().is_none_or(|t| {
                t.iter()
                    .any(|id| id.is_xtables() && id.family == family.nft_family())
            });
            if any {
                let raw = xt_save_raw(ns, x)?;
                native_extra.extend(incompatible_tables(&raw, family));
                let base = xt_base_chains(ns, &tools, family)?;
                let text = xt::clean(&raw, opts.counters, base.as_ref(), true);
                if !Canon::parse(&text).tables.is_empty() {
                    out.push(ruleset(
                        xt_source(Backend::Nft, family),
                        text,
                        opts.counters,
                        &x.save,
                    ));
                }
            }
        }
        out.extend(legacy_save(ns, &tools, &mut legacy, opts, family)?);
    }
    if let (Some(nft), Some(tables)) = (tools.nft.as_deref(), tables) {
        let mut text = String::new();
        for id in tables
            .iter()
            .filter(|id| id.is_native() || native_extra.contains(id))
        {
            text.push_str(&nft_table(ns, nft, id, opts.counters)?);
        }
        if !text.is_empty() {
            out.push(ruleset(FirewallSource::Nft, text, opts.counters, nft));
        }
    }
    Ok(out)
}

fn ruleset(
    source: FirewallSource,
    text: String,
    counters: bool,
    program: &std::path::Path,
) -> FirewallRuleset {
    FirewallRuleset {
        source: source as i32,
        text,
        counters,
        program: program.display().to_string(),
        tables: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompatible_tables_move_to_nft() {
        let t = "# Table `filter' is incompatible, use 'nft' tool.\n*nat\nCOMMIT\n";
        assert_eq!(
            incompatible_tables(t, Family::V6),
            [TableId {
                family: "ip6".into(),
                name: "filter".into()
            }]
        );
    }

    #[test]
    fn cr_ip6tables_serves_ipv6_alone() {
        let mut o = FirewallOptions {
            cr_iptables: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(cr_command(&o, Family::V6), Some(("a", "CR_IPTABLES")));
        o.cr_ip6tables = Some("b".into());
        assert_eq!(cr_command(&o, Family::V4), Some(("a", "CR_IPTABLES")));
        assert_eq!(cr_command(&o, Family::V6), Some(("b", "CR_IP6TABLES")));
        o.cr_iptables = None;
        assert_eq!(cr_command(&o, Family::V4), None);
    }
}
