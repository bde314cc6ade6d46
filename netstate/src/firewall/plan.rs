//! What a restore of saved rulesets would do to the live namespace: the steps (with what each
//! would replace, for rollback), the rulesets that are already in place, conflicts and
//! warnings. check(), conflicts() and restore() all start from the same plan.
//!
//! Semantics per source: a live ruleset equal to the saved one is left alone; otherwise the
//! saved tables replace the live tables of the same name (iptables-restore flushes only the
//! tables its input names; native nft tables are deleted and re-added). Live tables the image
//! does not have are left in place and reported as conflicts.

use std::path::PathBuf;

use crhook_proto::{FirewallRuleset, FirewallSource};

use super::capture::{self, cr_command, source_label, xt_source, Tools};
use super::exec::{Backend, Family, Xtables};
use super::nftx::{self, TableId};
use super::xt::{self, Canon};
use crate::api::FirewallOptions;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Check,
    Conflicts,
    Restore,
}

#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// iptables-restore of `text` with one backend
    Xt {
        x: Xtables,
        /// the saved source(s) this restores, for messages
        label: String,
        text: String,
        counters: bool,
        /// add to what is there (legacy rules restored through iptables-nft after the
        /// nf_tables tables went in over nfnetlink)
        noflush: bool,
        /// live sections of the tables `text` names, with counters, to put back
        pre: String,
        /// tables `text` names that did not exist before
        new_tables: Vec<String>,
        /// how to empty `new_tables` where they cannot be deleted
        reset: String,
        nft: Option<PathBuf>,
    },
    /// `nft -f -` of `script`; `undo` puts the replaced tables back and deletes added ones
    Nft {
        nft: PathBuf,
        script: String,
        undo: String,
    },
    /// one nf_tables transaction replaying saved tables (see nfnl)
    Nfnl(super::nfnl::NfnlStep<'a>),
    /// the user's `CR_IPTABLES` command
    Cr {
        cmd: String,
        var: &'static str,
        family: Family,
        text: String,
        /// what the command saved before, fed back on rollback
        pre: Option<String>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    pub steps: Vec<Step<'a>>,
    pub conflicts: Vec<String>,
    pub warnings: Vec<String>,
    /// nf_tables state is restored over nfnetlink: iptables-nft only serves legacy rules
    /// whose own tool is missing
    pub raw: bool,
    /// (family, table) of the nf_tables tables the transaction adds or replaces
    pub raw_touched: Vec<(String, String)>,
}

fn source_of(r: &FirewallRuleset) -> FirewallSource {
    FirewallSource::try_from(r.source).unwrap_or(FirewallSource::Unspecified)
}

pub(crate) fn build<'a>(
    ns: &NetNs,
    saved: &'a [FirewallRuleset],
    opts: &FirewallOptions,
    mode: Mode,
    tools: &Tools,
) -> Result<Plan<'a>> {
    let mut plan = Plan::default();
    if opts.skip {
        return Ok(plan);
    }
    for r in saved {
        if source_of(r) == FirewallSource::Unspecified {
            return Err(NetstateError::invalid(format!(
                "firewall ruleset from {:?} has unknown source {}",
                r.program, r.source
            )));
        }
    }
    let mut later = Vec::new();
    // images since nfnetlink capture hold nf_tables state as one NFTABLES ruleset (possibly
    // with no tables); older ones as iptables-nft-save and nft text
    let raw = saved
        .iter()
        .any(|r| source_of(r) == FirewallSource::Nftables);
    // a Check has nothing to test for nf_tables: the transaction is all or nothing and comes
    // first
    if raw && mode != Mode::Check {
        let tables: Vec<&crhook_proto::NftTable> = saved
            .iter()
            .filter(|r| source_of(r) == FirewallSource::Nftables)
            .flat_map(|r| r.tables.iter())
            .collect();
        let p = super::nfnl::plan_tables(ns, &tables, &capture::nfnl_keeps(opts))?;
        if mode == Mode::Conflicts {
            plan.conflicts.extend(p.conflicts);
        }
        plan.raw_touched = p.touched;
        plan.steps.extend(p.step.map(Step::Nfnl));
    }
    plan.raw = raw;
    for family in [Family::V4, Family::V6] {
        xt_family(ns, saved, opts, mode, tools, family, &mut plan, &mut later)?;
    }
    if !raw {
        let tables = capture::nft_tables(ns, tools)?;
        nft_native(ns, saved, tools, tables.as_deref(), &mut plan)?;
    }
    // legacy and CR steps last: check() runs in plan order, and a legacy `--test` brings the
    // legacy tables it names into existence (empty), so everything else is tested first
    plan.steps.extend(later);
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn xt_family(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
    mode: Mode,
    tools: &Tools,
    family: Family,
    plan: &mut Plan<'_>,
    later: &mut Vec<Step<'_>>,
) -> Result<()> {
    let find = |s: FirewallSource| saved.iter().find(|r| source_of(r) == s);
    let nft_saved = find(xt_source(Backend::Nft, family));
    let legacy_saved = find(xt_source(Backend::Legacy, family));
    let cr_saved = find(capture::cr_source(family));

    if let Some(cr) = cr_command(opts, family) {
        let texts: Vec<&FirewallRuleset> = [nft_saved, legacy_saved, cr_saved]
            .into_iter()
            .flatten()
            .collect();
        let text = match texts.as_slice() {
            [] => return Ok(()),
            [one] => one.text.clone(),
            many => {
                let mut c = Canon::parse(&many[0].text);
                for r in &many[1..] {
                    c.merge(&Canon::parse(&r.text));
                }
                plan.warnings.push(format!(
                    "{} {} rulesets merged into one for {}",
                    many.len(),
                    family.cr_name(),
                    cr.1
                ));
                c.render()
            }
        };
        let pre = match mode {
            Mode::Restore => Some(capture::run_cr(ns, tools, cr, "save", family, None)?),
            _ => None,
        };
        later.push(Step::Cr {
            cmd: cr.0.to_string(),
            var: cr.1,
            family,
            text,
            pre,
        });
        return Ok(());
    }
    if cr_saved.is_some() {
        return Err(NetstateError::Unsupported {
            what: format!(
                "the image holds {} rules saved by a CR_IPTABLES command; set CR_IPTABLES{} to restore them",
                family.cr_name(),
                if family == Family::V6 { " or CR_IP6TABLES" } else { "" }
            ),
        });
    }

    let nft_tool = tools.xt(Backend::Nft, family);
    let legacy_tool = tools.xt(Backend::Legacy, family);
    // (tool, label, canon to restore, verbatim text when not merged, counters)
    let mut targets: Vec<(&Xtables, String, Canon, Option<&FirewallRuleset>)> = Vec::new();
    for (r, own, other) in [
        (nft_saved, nft_tool, legacy_tool),
        (legacy_saved, legacy_tool, nft_tool),
    ] {
        let Some(r) = r else { continue };
        let Some(tool) = own.or(other) else {
            return Err(NetstateError::Unsupported {
                what: format!(
                    "no {}-restore found in /usr/sbin, /sbin, /usr/bin, /bin for the saved {} ruleset",
                    if family == Family::V4 { "iptables" } else { "ip6tables" },
                    source_label(source_of(r))
                ),
            });
        };
        let label = source_label(source_of(r)).to_string();
        let other_backend = if tool.backend == Backend::Nft {
            "legacy"
        } else {
            "nf_tables"
        };
        if let Some(t) = targets.iter_mut().find(|t| t.0.backend == tool.backend) {
            plan.warnings.push(format!(
                "{label} rules restored through {}, merged with its rules: the {other_backend} backend is not installed",
                tool.label()
            ));
            t.1 = format!("{} and {label}", t.1);
            t.2.merge(&Canon::parse(&r.text));
            t.3 = None;
        } else {
            if Some(tool.backend) != backend_of(source_of(r)) {
                plan.warnings.push(format!(
                    "{label} rules restored through {}: the {other_backend} backend is not installed",
                    tool.label()
                ));
            }
            targets.push((tool, label, Canon::parse(&r.text), Some(r)));
        }
    }

    // live state of every backend present, also those the image has nothing for
    for tool in [nft_tool, legacy_tool].into_iter().flatten() {
        let target = targets.iter().find(|t| t.0.backend == tool.backend);
        if plan.raw && tool.backend == Backend::Nft && target.is_none() {
            continue;
        }
        let live_raw = match tool.backend {
            Backend::Legacy if !capture::legacy_present(ns, family)? => String::new(),
            _ => capture::xt_save_raw(ns, tool)?,
        };
        let live = Canon::parse(&xt::clean(&live_raw, false, None, true));
        let Some((_, label, want, verbatim)) = target else {
            if !live.is_empty() {
                plan.conflicts.push(format!(
                    "{}: the live ruleset (tables {}) is not empty and the image has none",
                    tool.label(),
                    live.table_names().join(", ")
                ));
            }
            continue;
        };
        // legacy rules added with --noflush over the nf_tables tables the transaction
        // restores: a table the transaction replaces gets them all again; another only when
        // it lacks some (as after a first restore)
        let added = plan.raw && tool.backend == Backend::Nft;
        let mut want = want.clone();
        if added {
            let fam = family.nft_family();
            want.tables.retain(|t, chains| {
                plan.raw_touched.iter().any(|(f, n)| f == fam && n == t)
                    || !live.contains_table(t, chains)
            });
            if want.is_empty() {
                continue;
            }
        }
        let want = &want;
        if live.same(want) {
            continue;
        }
        if !live.is_empty() && !added {
            plan.conflicts.push(format!(
                "{label}: the live ruleset differs from the saved one (live tables {}, saved tables {})",
                live.table_names().join(", "),
                want.table_names().join(", ")
            ));
        }
        let (text, counters) = match verbatim {
            Some(r) if !added => (r.text.clone(), r.counters),
            _ => (want.render(), false),
        };
        let touched = want.table_names();
        let live_tables = Canon::parse(&live_raw).table_names();
        let existing: Vec<String> = touched
            .iter()
            .filter(|t| live_tables.contains(t))
            .cloned()
            .collect();
        let new_tables: Vec<String> = touched
            .iter()
            .filter(|t| !live_tables.contains(t))
            .cloned()
            .collect();
        let base = match tool.backend {
            Backend::Nft if mode == Mode::Restore => capture::xt_base_chains(ns, tools, family)?,
            _ => None,
        };
        let pre = xt::clean(
            &xt::sections(&live_raw, &existing),
            true,
            base.as_ref(),
            false,
        );
        let noflush = plan.raw && tool.backend == Backend::Nft;
        let text = if noflush {
            accept_policies_unset(&text)
        } else {
            text
        };
        let step = Step::Xt {
            x: tool.clone(),
            label: label.clone(),
            text,
            counters,
            noflush,
            pre,
            reset: xt::reset_script(want, &new_tables),
            new_tables,
            nft: tools.nft.clone(),
        };
        match tool.backend {
            Backend::Nft => plan.steps.push(step),
            Backend::Legacy => later.push(step),
        }
    }
    Ok(())
}

/// The text with built-in chains declared `-` where they accept by policy: added with
/// `--noflush` over tables already restored, a default ACCEPT must not replace their policy.
fn accept_policies_unset(text: &str) -> String {
    text.lines()
        .map(
            |l| match l.strip_prefix(':').and_then(|r| r.split_once(' ')) {
                Some((chain, rest)) if rest.starts_with("ACCEPT") => {
                    format!(":{chain} -{}\n", &rest["ACCEPT".len()..])
                }
                _ => format!("{l}\n"),
            },
        )
        .collect()
}

fn backend_of(s: FirewallSource) -> Option<Backend> {
    match s {
        FirewallSource::IptablesNft | FirewallSource::Ip6tablesNft => Some(Backend::Nft),
        FirewallSource::IptablesLegacy | FirewallSource::Ip6tablesLegacy => Some(Backend::Legacy),
        _ => None,
    }
}

fn nft_native(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    tools: &Tools,
    tables: Option<&[TableId]>,
    plan: &mut Plan<'_>,
) -> Result<()> {
    let saved_text: String = saved
        .iter()
        .filter(|r| source_of(r) == FirewallSource::Nft)
        .map(|r| r.text.as_str())
        .collect();
    let want = nftx::split_tables(&saved_text);
    let (Some(nft), Some(tables)) = (tools.nft.as_deref(), tables) else {
        if want.is_empty() {
            return Ok(());
        }
        return Err(NetstateError::Unsupported {
            what: "no nft found in /usr/sbin, /sbin, /usr/bin, /bin for the saved nftables tables"
                .into(),
        });
    };
    let mut script = String::new();
    let mut undo = String::new();
    for (id, block) in &want {
        let live = match tables.iter().find(|t| *t == id) {
            Some(_) => Some(capture::nft_table(ns, nft, id, true)?),
            None => None,
        };
        match live {
            Some(l) if nftx::normal_lines(&l) == nftx::normal_lines(block) => continue,
            Some(l) => {
                let empty = nftx::normal_lines(&l).len() <= 2;
                if !empty {
                    plan.conflicts
                        .push(format!("nft: live table {id} differs from the saved one"));
                }
                script.push_str(&format!("table {id}\ndelete table {id}\n"));
                undo.push_str(&format!("table {id}\ndelete table {id}\n{l}"));
            }
            None => undo.push_str(&format!("table {id}\ndelete table {id}\n")),
        }
        script.push_str(block);
    }
    for id in tables
        .iter()
        .filter(|t| t.is_native() && !want.iter().any(|(w, _)| w == *t))
    {
        plan.conflicts
            .push(format!("nft: live table {id} is not in the image"));
    }
    if !script.is_empty() {
        plan.steps.push(Step::Nft {
            nft: nft.to_path_buf(),
            script,
            undo,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn noflush_text_leaves_accept_policies_alone() {
        let t = "*filter\n:INPUT ACCEPT [1:2]\n:FORWARD DROP [0:0]\n:LEG - [0:0]\n-A INPUT -j LEG\nCOMMIT\n";
        assert_eq!(
            super::accept_policies_unset(t),
            "*filter\n:INPUT - [1:2]\n:FORWARD DROP [0:0]\n:LEG - [0:0]\n-A INPUT -j LEG\nCOMMIT\n"
        );
    }
}
