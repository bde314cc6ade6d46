//! check, conflicts and restore of saved rulesets, and the undo that puts back what was live.

use crhook_proto::FirewallRuleset;

use super::exec::{Backend, Run};
use super::plan::{self, Mode, Step};
use crate::api::FirewallOptions;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// Tests every ruleset with its restore tool in the target before anything changes:
/// `iptables-restore --test`, `nft -c -f -`. The error names the source, program and stderr.
///
/// Limits of the tools: iptables-nft-restore `--test` does not reach the kernel, so jumps to
/// chains the table lacks are checked here by reading the text; a legacy `--test` instantiates
/// the (empty) legacy tables it names, which is why legacy rulesets are tested last.
pub fn check(ns: &NetNs, saved: &[FirewallRuleset], opts: &FirewallOptions) -> Result<()> {
    let plan = plan::build(ns, saved, opts, Mode::Check)?;
    for step in &plan.steps {
        match step {
            Step::Xt {
                x,
                label,
                text,
                counters,
                ..
            } => {
                let bad = super::xt::unknown_targets(text, x.family);
                if !bad.is_empty() {
                    return Err(NetstateError::invalid(format!(
                        "check {label} ruleset for {}: {}",
                        ns.name(),
                        bad.join("; ")
                    )));
                }
                let mut args = vec!["-w", "--test"];
                if *counters {
                    args.push("-c");
                }
                let purpose = format!("check {label} ruleset with");
                Run {
                    program: &x.restore,
                    args: &args,
                    env: &[],
                    stdin: Some(text.as_bytes()),
                    purpose: &purpose,
                }
                .run(ns)?;
            }
            Step::Nft { nft, script, .. } => {
                Run {
                    program: nft,
                    args: &["-c", "-f", "-"],
                    env: &[],
                    stdin: Some(script.as_bytes()),
                    purpose: "check nft ruleset with",
                }
                .run(ns)?;
            }
            // a user command has no test mode
            Step::Cr { .. } => {}
        }
    }
    Ok(())
}

/// Why a restore into this (non-empty) namespace would replace something: per source, a live
/// ruleset that is neither empty nor equal to the saved one, or live rules the image lacks.
pub fn conflicts(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
) -> Result<Vec<String>> {
    Ok(plan::build(ns, saved, opts, Mode::Conflicts)?.conflicts)
}

/// What [`restore`] changed, to put it back. `warnings` says what was restored differently
/// from how it was saved (legacy rules through the nf_tables backend, merged rulesets).
#[derive(Debug, Default)]
pub struct FirewallUndo {
    steps: Vec<Step>,
    pub warnings: Vec<String>,
}

impl FirewallUndo {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Puts back what was live before restore, newest change first; collects every error and
    /// carries on.
    pub fn undo(self, ns: &NetNs) -> Vec<NetstateError> {
        let mut errors = Vec::new();
        for step in self.steps.into_iter().rev() {
            undo_step(ns, step, &mut errors);
        }
        errors
    }
}

/// Applies the saved rulesets in the target (a source whose live ruleset already equals the
/// saved one is left alone). On failure the error comes with the undo of everything applied
/// so far, the failing step included (a legacy restore commits table by table).
// The error hands back the undo; it is returned once per restore, so its size does not matter.
#[allow(clippy::result_large_err)]
pub fn restore(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
) -> Result<FirewallUndo, (NetstateError, FirewallUndo)> {
    let plan = match plan::build(ns, saved, opts, Mode::Restore) {
        Ok(p) => p,
        Err(e) => return Err((e, FirewallUndo::default())),
    };
    let mut undo = FirewallUndo {
        steps: Vec::new(),
        warnings: plan.warnings,
    };
    for step in plan.steps {
        let r = apply(ns, &step);
        undo.steps.push(step);
        if let Err(e) = r {
            return Err((e, undo));
        }
    }
    Ok(undo)
}

fn apply(ns: &NetNs, step: &Step) -> Result<()> {
    match step {
        Step::Xt {
            x,
            label,
            text,
            counters,
            ..
        } => {
            let mut args = vec!["-w"];
            if *counters {
                args.push("-c");
            }
            let purpose = format!("restore {label} ruleset with");
            Run {
                program: &x.restore,
                args: &args,
                env: &[],
                stdin: Some(text.as_bytes()),
                purpose: &purpose,
            }
            .run(ns)?;
        }
        Step::Nft { nft, script, .. } => {
            Run {
                program: nft,
                args: &["-f", "-"],
                env: &[],
                stdin: Some(script.as_bytes()),
                purpose: "restore nft ruleset with",
            }
            .run(ns)?;
        }
        Step::Cr {
            cmd,
            var,
            family,
            text,
            ..
        } => {
            let tools = super::capture::Tools::probe();
            super::capture::run_cr(
                ns,
                &tools,
                (cmd, var),
                "restore",
                *family,
                Some(text.as_bytes()),
            )?;
        }
    }
    Ok(())
}

fn undo_step(ns: &NetNs, step: Step, errors: &mut Vec<NetstateError>) {
    let r = match step {
        Step::Xt {
            x,
            label,
            pre,
            new_tables,
            reset,
            nft,
            ..
        } => {
            let purpose = format!("roll back {label} ruleset with");
            if !pre.is_empty() {
                if let Err(e) = (Run {
                    program: &x.restore,
                    args: &["-w", "-c"],
                    env: &[],
                    stdin: Some(pre.as_bytes()),
                    purpose: &purpose,
                })
                .run(ns)
                {
                    errors.push(e);
                }
            }
            if new_tables.is_empty() {
                return;
            }
            {
                let r = match (x.backend, nft.as_deref()) {
                    // iptables cannot delete a table; nftables can, and then nothing is left
                    (Backend::Nft, Some(nft)) => {
                        let fam = x.family.nft_family();
                        let script: String = new_tables
                            .iter()
                            .map(|t| format!("table {fam} {t}\ndelete table {fam} {t}\n"))
                            .collect();
                        Run {
                            program: nft,
                            args: &["-f", "-"],
                            env: &[],
                            stdin: Some(script.as_bytes()),
                            purpose: &purpose,
                        }
                        .run(ns)
                    }
                    // legacy tables stay registered until the namespace goes; empty them
                    _ => Run {
                        program: &x.restore,
                        args: &["-w"],
                        env: &[],
                        stdin: Some(reset.as_bytes()),
                        purpose: &purpose,
                    }
                    .run(ns),
                };
                r.map(|_| ())
            }
        }
        Step::Nft { nft, undo, .. } => Run {
            program: &nft,
            args: &["-f", "-"],
            env: &[],
            stdin: Some(undo.as_bytes()),
            purpose: "roll back nft ruleset with",
        }
        .run(ns)
        .map(|_| ()),
        Step::Cr {
            cmd,
            var,
            family,
            pre,
            ..
        } => {
            let tools = super::capture::Tools::probe();
            let pre = pre.unwrap_or_default();
            super::capture::run_cr(
                ns,
                &tools,
                (&cmd, var),
                "restore",
                family,
                Some(pre.as_bytes()),
            )
            .map(|_| ())
        }
    };
    if let Err(e) = r {
        errors.push(e);
    }
}
