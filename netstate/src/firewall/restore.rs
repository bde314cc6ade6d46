//! check, conflicts and restore of saved rulesets, and the undo that puts back what was live.

use crhook_proto::FirewallRuleset;

use std::path::PathBuf;

use super::capture::Tools;
use super::exec::{Backend, Family, Run};
use super::plan::{self, Mode, Step};
use crate::api::FirewallOptions;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

use super::Go;

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
    steps: Vec<StepUndo>,
    pub warnings: Vec<String>,
}

impl FirewallUndo {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Puts back what was live before restore, newest change first; collects every error and
    /// carries on.
    pub fn undo(self, ns: &NetNs) -> Vec<NetstateError> {
        self.steps
            .into_iter()
            .rev()
            .filter_map(|u| u.run(ns).err())
            .collect()
    }
}

/// What puts one applied step back, as data: the restore journal writes it to disk before the
/// step runs, and a rollback or a later recovery runs it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum StepUndo {
    /// restore `pre` (the live sections of the tables the step named), then remove
    /// `new_tables`
    Xt {
        restore: PathBuf,
        backend: Backend,
        family: Family,
        label: String,
        pre: String,
        new_tables: Vec<String>,
        reset: String,
        nft: Option<PathBuf>,
    },
    Nft {
        nft: PathBuf,
        undo: String,
    },
    Nfnl(super::nfnl::NfnlUndo),
    /// the user's command, fed what it saved before
    Cr {
        cmd: String,
        var: String,
        family: Family,
        pre: Option<String>,
    },
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
    restore_with(
        ns,
        saved,
        opts,
        &Tools::probe(),
        &mut |_| Ok(()),
        &mut |_| {},
        &mut || true,
    )
}

/// [`restore`] that hands the undo of each step to `ahead` before the step runs (the restore
/// journal writes it to disk; an error stops the restore before the step), and says after it
/// whether it changed anything (`settled`). Nothing changes before `go` allows it: it is
/// asked once, when the first step is ready to run (a transaction built); when it says no,
/// the restore ends there, its undo empty.
#[allow(clippy::result_large_err)]
pub(crate) fn restore_journaled(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
    ahead: &mut dyn FnMut(&StepUndo) -> Result<()>,
    settled: &mut dyn FnMut(bool),
    go: Go,
) -> Result<FirewallUndo, (NetstateError, FirewallUndo)> {
    restore_with(ns, saved, opts, &Tools::probe(), ahead, settled, go)
}

#[allow(clippy::result_large_err)]
fn restore_with(
    ns: &NetNs,
    saved: &[FirewallRuleset],
    opts: &FirewallOptions,
    tools: &Tools,
    ahead: &mut dyn FnMut(&StepUndo) -> Result<()>,
    settled: &mut dyn FnMut(bool),
    go: Go,
) -> Result<FirewallUndo, (NetstateError, FirewallUndo)> {
    let plan = match plan::build(ns, saved, opts, Mode::Restore, tools) {
        Ok(p) => p,
        Err(e) => return Err((e, FirewallUndo::default())),
    };
    let mut undo = FirewallUndo {
        steps: Vec::new(),
        warnings: plan.warnings,
    };
    // asked once; every later step may run
    let mut open = false;
    let mut gate = || {
        open = open || go();
        open
    };
    for step in plan.steps {
        let u = StepUndo::of(&step);
        // written ahead: a restore killed while the step runs is undone from the journal
        if let Err(e) = ahead(&u) {
            return Err((e, undo));
        }
        let r = match &step {
            Step::Nfnl(n) => n.apply(ns, &mut gate),
            _ if gate() => run_step(ns, &step, false).map(|()| true),
            _ => Ok(false),
        };
        // a failed nf_tables transaction changed nothing: there is nothing to undo
        let applied = matches!(r, Ok(true)) || (r.is_err() && !matches!(step, Step::Nfnl(_)));
        settled(applied);
        if applied {
            undo.steps.push(u);
        }
        match r {
            Ok(true) => {}
            Ok(false) => {
                let e = format!("restore firewall of {}: not started", ns.name());
                return Err((NetstateError::invalid(e), undo));
            }
            Err(e) => return Err((e, undo)),
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
        Step::Nfnl(n) => {
            n.apply(ns, &mut || true)?;
        }
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

impl StepUndo {
    /// The undo of `step`, taken before it runs.
    fn of(step: &Step) -> StepUndo {
        match step {
            Step::Xt {
                x,
                label,
                pre,
                new_tables,
                reset,
                nft,
                ..
            } => StepUndo::Xt {
                restore: x.restore.clone(),
                backend: x.backend,
                family: x.family,
                label: label.clone(),
                pre: pre.clone(),
                new_tables: new_tables.clone(),
                reset: reset.clone(),
                nft: nft.clone(),
            },
            Step::Nft { nft, undo, .. } => StepUndo::Nft {
                nft: nft.clone(),
                undo: undo.clone(),
            },
            Step::Nfnl(n) => StepUndo::Nfnl(n.undo()),
            Step::Cr {
                cmd,
                var,
                family,
                pre,
                ..
            } => StepUndo::Cr {
                cmd: cmd.clone(),
                var: var.to_string(),
                family: *family,
                pre: pre.clone(),
            },
        }
    }

    /// Puts back what the step changed in `ns`.
    pub(crate) fn run(&self, ns: &NetNs) -> Result<()> {
        match self {
            StepUndo::Xt {
                restore,
                backend,
                family,
                label,
                pre,
                new_tables,
                reset,
                nft,
            } => {
                let purpose = format!("roll back {label} ruleset with");
                if !pre.is_empty() {
                    Run {
                        program: restore,
                        args: &["-w", "-c"],
                        env: &[],
                        stdin: Some(pre.as_bytes()),
                        purpose: &purpose,
                    }
                    .run(ns)?;
                }
                if new_tables.is_empty() {
                    return Ok(());
                }
                match (backend, nft.as_deref()) {
                    // iptables cannot delete a table; nftables can, and then nothing is left
                    (Backend::Nft, Some(nft)) => {
                        let fam = family.nft_family();
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
                        program: restore,
                        args: &["-w"],
                        env: &[],
                        stdin: Some(reset.as_bytes()),
                        purpose: &purpose,
                    }
                    .run(ns),
                }
                .map(|_| ())
            }
            StepUndo::Nfnl(n) => n.run(ns),
            StepUndo::Nft { nft, undo } => Run {
                program: nft,
                args: &["-f", "-"],
                env: &[],
                stdin: Some(undo.as_bytes()),
                purpose: "roll back nft ruleset with",
            }
            .run(ns)
            .map(|_| ()),
            StepUndo::Cr {
                cmd,
                var,
                family,
                pre,
            } => {
                let tools = Tools::probe();
                let pre = pre.clone().unwrap_or_default();
                super::capture::run_cr(
                    ns,
                    &tools,
                    (cmd, var),
                    "restore",
                    *family,
                    Some(pre.as_bytes()),
                )
                .map(|_| ())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Privileged: the fallback for a missing iptables backend can only be reached by
    //! pretending the backend is not installed, which the public API cannot do.
    use std::process::Command;

    use crhook_proto::FirewallSource;

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

    /// The lines of table `name` (`*name` up to `COMMIT`) of iptables-save output.
    fn section(text: &str, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut inside = false;
        for l in text.lines() {
            if l.starts_with('*') {
                inside = l == format!("*{name}");
            }
            // header comments carry the time of the save
            if inside && !l.starts_with('#') {
                out.push(l.to_string());
            }
        }
        out
    }

    /// Rules in both iptables backends and both families: `iptables` is iptables-nft here.
    const MIXED: &str = "set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -P FORWARD DROP
iptables-legacy -N LEG
iptables-legacy -A LEG -s 192.0.2.0/24 -j DROP
iptables-legacy -A INPUT -j LEG
iptables-legacy -t nat -A POSTROUTING -o eth9 -j MASQUERADE
ip6tables-legacy -A OUTPUT -d 2001:db8::/32 -j REJECT";

    /// [`restore_with`] with nothing journaled and nothing to wait for.
    fn plain(
        ns: &NetNs,
        saved: &[FirewallRuleset],
        opts: &FirewallOptions,
        tools: &Tools,
    ) -> Result<FirewallUndo> {
        restore_with(
            ns,
            saved,
            opts,
            tools,
            &mut |_| Ok(()),
            &mut |_| {},
            &mut || true,
        )
        .map_err(|(e, _)| e)
    }

    /// Restores `a`'s MIXED rules into `b` as if the legacy tools were not installed.
    fn restore_without_legacy(a: &TestNs, b: &TestNs) -> (Vec<FirewallRuleset>, FirewallUndo) {
        a.sh(MIXED);
        let opts = FirewallOptions::default();
        let saved = capture(&a.ns(), &opts).expect("capture");
        let tools = Tools::probe().without(Backend::Legacy);
        let bns = b.ns();
        check_with(&bns, &saved, &opts, &tools).expect("check");
        let undo = plain(&bns, &saved, &opts, &tools).expect("restore");
        (saved, undo)
    }

    #[test]
    fn legacy_rules_go_through_nf_tables_when_legacy_is_missing() {
        let a = TestNs::new("fba");
        let b = TestNs::new("fbb");
        let (saved, undo) = restore_without_legacy(&a, &b);
        let sources: Vec<i32> = saved.iter().map(|r| r.source).collect();
        assert_eq!(
            sources,
            [
                FirewallSource::Nftables as i32,
                FirewallSource::IptablesLegacy as i32,
                FirewallSource::Ip6tablesLegacy as i32
            ]
        );
        // the nf_tables rules come back over nfnetlink without a word; only the legacy
        // rules, added with iptables-nft-restore --noflush, are restored differently
        assert_eq!(
            undo.warnings,
            [
                "iptables-legacy rules restored through iptables-nft: the legacy backend is not installed",
                "ip6tables-legacy rules restored through ip6tables-nft: the legacy backend is not installed",
            ]
        );
        assert_eq!(
            b.sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names"),
            ""
        );
        let first = b.sh("iptables-save");
        let v4 = rules(&first);
        for want in [
            "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
            "-A INPUT -j LEG",
            "-A LEG -s 192.0.2.0/24 -j DROP",
            "-A POSTROUTING -o eth9 -j MASQUERADE",
            ":LEG - [0:0]",
        ] {
            let n = v4.iter().filter(|l| *l == want).count();
            assert_eq!(n, 1, "{want} should be there once: {v4:?}");
        }
        let v6 = rules(&b.sh("ip6tables-save"));
        assert!(
            v6.iter()
                .any(|l| l.starts_with("-A OUTPUT -d 2001:db8::/32 -j REJECT")),
            "{v6:?}"
        );

        // Restoring again does not find everything in place, as it did when both backends
        // were restored as merged text: the nf_tables tables now hold the legacy rules too, so
        // they differ from the image's, and restore says so and replaces ip filter, then adds
        // the legacy rules to it again (and only to it: ip nat and ip6 filter hold theirs).
        let bns = b.ns();
        let opts = FirewallOptions::default();
        let tools = Tools::probe().without(Backend::Legacy);
        let conflicts = plan::build(&bns, &saved, &opts, Mode::Conflicts, &tools)
            .expect("conflicts")
            .conflicts;
        assert_eq!(
            conflicts,
            [
                "nftables: live table ip filter differs from the saved one",
                "nftables: live table ip nat is not in the image",
                "nftables: live table ip6 filter is not in the image",
            ]
        );
        let again = plain(&bns, &saved, &opts, &tools).expect("again");
        assert!(!again.is_empty());
        assert_eq!(
            section(&b.sh("iptables-save"), "filter"),
            section(&first, "filter")
        );
        assert_eq!(
            section(&b.sh("iptables-save"), "nat"),
            section(&first, "nat"),
            "no rule twice"
        );
        // its undo puts back what the first restore made
        let errors = again.undo(&bns);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rules(&b.sh("iptables-save")), v4);
        assert_eq!(rules(&b.sh("ip6tables-save")), v6);

        let errors = undo.undo(&bns);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(b.sh("nft list tables"), "");
    }

    #[test]
    fn nf_tables_policies_survive_legacy_rules_restored_through_iptables_nft() {
        let a = TestNs::new("fpa");
        let b = TestNs::new("fpb");
        let (_, _undo) = restore_without_legacy(&a, &b);
        let v4 = b.sh("iptables-save");
        assert!(v4.contains(":FORWARD DROP"), "{v4}");
    }

    #[test]
    fn restoring_twice_without_legacy_adds_no_rule_twice() {
        let a = TestNs::new("fta");
        let b = TestNs::new("ftb");
        let (saved, _undo) = restore_without_legacy(&a, &b);
        let tools = Tools::probe().without(Backend::Legacy);
        let _again = plain(&b.ns(), &saved, &FirewallOptions::default(), &tools).expect("again");
        for cmd in ["iptables-save", "ip6tables-save"] {
            let r = rules(&b.sh(cmd));
            let mut once = r.clone();
            once.dedup();
            let twice: Vec<&String> = r.iter().filter(|l| l.starts_with("-A")).collect();
            let unique: Vec<&String> = once.iter().filter(|l| l.starts_with("-A")).collect();
            assert_eq!(twice, unique, "{cmd}");
        }
    }

    #[test]
    fn nf_tables_rules_need_no_iptables_nft_tool() {
        let a = TestNs::new("fla");
        let b = TestNs::new("flb");
        a.sh("set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
iptables -P FORWARD DROP
ip6tables -A INPUT -p tcp --dport 23 -j DROP
nft add table inet mine
nft add chain inet mine out '{ type filter hook output priority 0; policy accept; }'
nft add rule inet mine out meta mark 0x7 drop");
        let opts = FirewallOptions::default();
        let saved = capture(&a.ns(), &opts).expect("capture");
        let sources: Vec<i32> = saved.iter().map(|r| r.source).collect();
        assert_eq!(sources, [FirewallSource::Nftables as i32]);
        // no iptables tool of either backend, and no nft
        let mut tools = Tools::probe()
            .without(Backend::Nft)
            .without(Backend::Legacy);
        tools.nft = None;
        let bns = b.ns();
        check_with(&bns, &saved, &opts, &tools).expect("check");
        let undo = plain(&bns, &saved, &opts, &tools).expect("restore");
        assert!(undo.warnings.is_empty(), "{:?}", undo.warnings);
        // into nf_tables, not into the legacy backend
        assert_eq!(
            b.sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names"),
            ""
        );
        for cmd in ["iptables-save", "ip6tables-save"] {
            let want = rules(&a.sh(cmd));
            assert!(want.iter().any(|l| l.contains("--dport")), "{want:?}");
            assert_eq!(rules(&b.sh(cmd)), want, "{cmd}");
        }
        assert!(rules(&b.sh("iptables-save")).contains(&":FORWARD DROP [0:0]".to_string()));
        assert_eq!(
            b.sh("nft list table inet mine"),
            a.sh("nft list table inet mine")
        );
        let again = plain(&bns, &saved, &opts, &tools).expect("again");
        assert!(again.is_empty());

        let errors = undo.undo(&bns);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(b.sh("nft list tables"), "");
    }

    /// A restore whose `go` says no builds its transaction and stops there: the target keeps
    /// no table, the step it announced is settled as not applied, the undo is empty; asked
    /// yes, it is asked once for all its steps.
    #[test]
    fn a_restore_not_allowed_to_start_changes_nothing() {
        let a = TestNs::new("fga");
        let b = TestNs::new("fgb");
        a.sh("set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
nft add table inet mine
nft add chain inet mine out '{ type filter hook output priority 0; policy accept; }'");
        let opts = FirewallOptions::default();
        let saved = capture(&a.ns(), &opts).expect("capture");
        let tools = Tools::probe();
        let bns = b.ns();
        let (mut announced, mut settled, mut asked) = (0, Vec::new(), 0);
        let r = restore_with(
            &bns,
            &saved,
            &opts,
            &tools,
            &mut |_| {
                announced += 1;
                Ok(())
            },
            &mut |applied| settled.push(applied),
            &mut || {
                asked += 1;
                false
            },
        );
        let (e, undo) = r.expect_err("not allowed to start");
        assert_eq!(
            e.to_string(),
            format!("restore firewall of {}: not started", bns.name())
        );
        assert!(undo.is_empty());
        assert_eq!((announced, settled.as_slice(), asked), (1, &[false][..], 1));
        assert_eq!(b.sh("nft list tables"), "");

        asked = 0;
        let undo = restore_with(
            &bns,
            &saved,
            &opts,
            &tools,
            &mut |_| Ok(()),
            &mut |_| {},
            &mut || {
                asked += 1;
                true
            },
        )
        .map_err(|(e, _)| e)
        .expect("restore");
        assert_eq!(asked, 1);
        assert_eq!(
            b.sh("nft list table inet mine"),
            a.sh("nft list table inet mine")
        );
        assert!(undo.undo(&bns).is_empty());
    }
}
