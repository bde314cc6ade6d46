//! check, conflicts and restore of saved rulesets, and the undo that puts back what was live.

use crhook_proto::FirewallRuleset;

use super::capture::Tools;
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
    check_with(ns, saved, opts, &Tools::probe())
}

fn check_with(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
    tools: &Tools,
) -> Result<()> {
    let plan = plan::build(ns, saved, opts, Mode::Check, tools)?;
    for step in &plan.steps {
        if let Step::Xt { x, label, text, .. } = step {
            let bad = super::xt::unknown_targets(text, x.family);
            if !bad.is_empty() {
                return Err(NetstateError::invalid(format!(
                    "check {label} ruleset for {}: {}",
                    ns.name(),
                    bad.join("; ")
                )));
            }
        }
        run_step(ns, step, true)?;
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
    Ok(plan::build(ns, saved, opts, Mode::Conflicts, &Tools::probe())?.conflicts)
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
    restore_with(ns, saved, opts, &Tools::probe())
}

#[allow(clippy::result_large_err)]
fn restore_with(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
    tools: &Tools,
) -> Result<FirewallUndo, (NetstateError, FirewallUndo)> {
    let plan = match plan::build(ns, saved, opts, Mode::Restore, tools) {
        Ok(p) => p,
        Err(e) => return Err((e, FirewallUndo::default())),
    };
    let mut undo = FirewallUndo {
        steps: Vec::new(),
        warnings: plan.warnings,
    };
    for step in plan.steps {
        let r = run_step(ns, &step, false);
        // a failed nf_tables transaction changed nothing: there is nothing to undo
        if r.is_ok() || !matches!(step, Step::Nfnl(_)) {
            undo.steps.push(step);
        }
        if let Err(e) = r {
            return Err((e, undo));
        }
    }
    Ok(undo)
}

/// Applies one step, or with `test` only checks it (`--test`, `nft -c`; a user command has
/// no test mode, so it is skipped then).
fn run_step(ns: &NetNs, step: &Step, test: bool) -> Result<()> {
    let verb = if test { "check" } else { "restore" };
    match step {
        Step::Xt {
            x,
            label,
            text,
            counters,
            noflush,
            ..
        } => {
            let mut args = vec!["-w"];
            if test {
                args.push("--test");
            }
            if *noflush {
                args.push("--noflush");
            }
            if *counters {
                args.push("-c");
            }
            let purpose = format!("{verb} {label} ruleset with");
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
            let args: &[&str] = if test {
                &["-c", "-f", "-"]
            } else {
                &["-f", "-"]
            };
            let purpose = format!("{verb} nft ruleset with");
            Run {
                program: nft,
                args,
                env: &[],
                stdin: Some(script.as_bytes()),
                purpose: &purpose,
            }
            .run(ns)?;
        }
        Step::Nfnl(_) if test => {}
        Step::Nfnl(n) => n.apply(ns)?,
        Step::Cr { .. } if test => {}
        Step::Cr {
            cmd,
            var,
            family,
            text,
            ..
        } => {
            let tools = Tools::probe();
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
        Step::Nfnl(n) => n.undo(ns),
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
            let tools = Tools::probe();
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

#[cfg(test)]
mod tests {
    //! Privileged: the fallback for a missing iptables backend can only be reached by
    //! pretending the backend is not installed, which the public API cannot do.
    use std::process::Command;

    use super::*;
    use crate::firewall::capture::capture;

    struct TestNs(String);

    impl TestNs {
        fn new(tag: &str) -> TestNs {
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            assert_eq!(uid, 0, "namespace tests need root");
            let name = format!("crh-fwu-{tag}-{}", std::process::id());
            let st = Command::new("/usr/bin/ip")
                .args(["netns", "add", &name])
                .status()
                .expect("ip");
            assert!(st.success(), "ip netns add {name}");
            TestNs(name)
        }
        fn ns(&self) -> NetNs {
            NetNs::open_path(std::path::Path::new(&format!("/run/netns/{}", self.0))).expect("open")
        }
        fn sh(&self, script: &str) -> String {
            let out = Command::new("/usr/bin/ip")
                .args(["netns", "exec", &self.0, "/bin/sh", "-c", script])
                .output()
                .expect("ip netns exec");
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    }

    impl Drop for TestNs {
        fn drop(&mut self) {
            let _ = Command::new("/usr/bin/ip")
                .args(["netns", "del", &self.0])
                .status();
        }
    }

    fn rules(text: &str) -> Vec<String> {
        let mut v: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("-A") || l.starts_with(':'))
            .map(String::from)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn legacy_rules_go_through_nf_tables_when_legacy_is_missing() {
        let a = TestNs::new("fba");
        let b = TestNs::new("fbb");
        a.sh("set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -P FORWARD DROP
iptables-legacy -N LEG
iptables-legacy -A LEG -s 192.0.2.0/24 -j DROP
iptables-legacy -A INPUT -j LEG
iptables-legacy -t nat -A POSTROUTING -o eth9 -j MASQUERADE
ip6tables-legacy -A OUTPUT -d 2001:db8::/32 -j REJECT");
        let opts = FirewallOptions::default();
        let saved = capture(&a.ns(), &opts).expect("capture");
        let tools = Tools::probe().without(Backend::Legacy);
        let bns = b.ns();
        check_with(&bns, &saved, &opts, &tools).expect("check");
        let undo = restore_with(&bns, &saved, &opts, &tools)
            .map_err(|(e, _)| e)
            .expect("restore");
        let w = undo.warnings.join("; ");
        assert!(
            w.contains("iptables-legacy rules restored through iptables-nft"),
            "{w}"
        );
        assert!(
            w.contains("ip6tables-legacy rules restored through ip6tables-nft"),
            "{w}"
        );
        assert_eq!(
            b.sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names"),
            ""
        );
        let v4 = rules(&b.sh("iptables-save"));
        for want in [
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
            "-A INPUT -j LEG",
            "-A LEG -s 192.0.2.0/24 -j DROP",
            "-A POSTROUTING -o eth9 -j MASQUERADE",
            ":FORWARD DROP [0:0]",
        ] {
            assert!(v4.iter().any(|l| l == want), "{want} missing from {v4:?}");
        }
        assert!(b
            .sh("ip6tables-save")
            .contains("-A OUTPUT -d 2001:db8::/32 -j REJECT"));

        // restoring again changes nothing (the merged ruleset is recognised as in place)
        let again = restore_with(&bns, &saved, &opts, &tools)
            .map_err(|(e, _)| e)
            .expect("again");
        assert!(again.is_empty());
        assert_eq!(rules(&b.sh("iptables-save")), v4);

        let errors = undo.undo(&bns);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(b.sh("nft list tables"), "");
    }

    #[test]
    fn nf_tables_rules_go_through_legacy_when_nf_tables_is_missing() {
        let a = TestNs::new("fla");
        let b = TestNs::new("flb");
        a.sh("iptables -A INPUT -p tcp --dport 22 -j ACCEPT");
        let opts = FirewallOptions::default();
        let saved = capture(&a.ns(), &opts).expect("capture");
        let tools = Tools::probe().without(Backend::Nft);
        let undo = restore_with(&b.ns(), &saved, &opts, &tools)
            .map_err(|(e, _)| e)
            .expect("restore");
        assert!(undo
            .warnings
            .join("; ")
            .contains("iptables-nft rules restored through iptables-legacy"));
        assert!(b
            .sh("iptables-legacy-save")
            .contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"));
        assert_eq!(b.sh("nft list tables"), "");
        let errors = undo.undo(&b.ns());
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!b.sh("iptables-legacy-save").contains("-A "));
    }

    #[test]
    fn zz_explore() {
        let a = TestNs::new("zza");
        let b = TestNs::new("zzb");
        a.sh("set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -P FORWARD DROP
iptables-legacy -N LEG
iptables-legacy -A LEG -s 192.0.2.0/24 -j DROP
iptables-legacy -A INPUT -j LEG
iptables-legacy -t nat -A POSTROUTING -o eth9 -j MASQUERADE
ip6tables-legacy -A OUTPUT -d 2001:db8::/32 -j REJECT");
        let opts = FirewallOptions::default();
        let saved = capture(&a.ns(), &opts).expect("capture");
        for r in &saved {
            eprintln!(
                "SRC {:?} {:?} tables {:?}\n{}",
                r.source,
                r.program,
                r.tables
                    .iter()
                    .map(|t| (t.family, t.name.clone(), t.chains.len(), t.rules.len()))
                    .collect::<Vec<_>>(),
                r.text
            );
        }
        let tools = Tools::probe().without(Backend::Legacy);
        let bns = b.ns();
        let undo = restore_with(&bns, &saved, &opts, &tools)
            .map_err(|(e, _)| e)
            .expect("restore");
        eprintln!("WARN {:?}", undo.warnings);
        eprintln!("AFTER1 {}{}", b.sh("iptables-save"), b.sh("ip6tables-save"));
        let c = plan::build(&bns, &saved, &opts, Mode::Conflicts, &tools)
            .expect("c")
            .conflicts;
        eprintln!("CONFLICTS {c:?}");
        let again = restore_with(&bns, &saved, &opts, &tools)
            .map_err(|(e, _)| e)
            .expect("again");
        eprintln!("AGAIN empty={} {:?}", again.is_empty(), again.warnings);
        eprintln!("AFTER2 {}{}", b.sh("iptables-save"), b.sh("ip6tables-save"));
        let e1 = again.undo(&bns);
        eprintln!(
            "UNDO2 {e1:?} {}{}",
            b.sh("iptables-save"),
            b.sh("ip6tables-save")
        );
        let e2 = undo.undo(&bns);
        eprintln!("UNDO1 {e2:?} tables: {}", b.sh("nft list tables"));
    }
}
