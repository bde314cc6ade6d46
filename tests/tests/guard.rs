//! Restore's guard (netstate restore/guard.rs): a large restore into a namespace that passed
//! no traffic brings its links up behind tables that drop every packet, runs the nf_tables
//! transaction beside the routes, and lowers the guard at the end; a failure anywhere undoes
//! the guard with the rest. A target that passed traffic gets no guard. Needs root and a
//! built `crhook`.

use crhook_tests::fixture::populate_guarded;
use crhook_tests::{
    crhook_on, phase_names, require_root, restore_counting, restore_failing_after, NsState,
    TempDir, TestNs,
};

fn guard_tables(ns: &TestNs) -> usize {
    ns.sh("nft list tables").matches("crhook-restore").count()
}

#[test]
fn a_large_restore_raises_its_guard_undoes_it_on_failure_and_lowers_it_at_the_end() {
    require_root();
    let host = TestNs::host();
    let src = TestNs::new("grd");
    populate_guarded(&src, 60_000, 30_000);
    let dir = TempDir::new("grd");
    let images = dir.join("images");
    crhook_on(&host, "checkpoint", &src, &images, &[]).expect_success();
    drop(src);

    let probe = TestNs::new("grd-probe");
    let (changes, stats) = restore_counting(&host, &probe, &images);
    let phases = phase_names(&stats);
    let at = |name: &str| phases.iter().position(|p| p == name);
    // behind the guard the links came up before the transaction, which ran beside the
    // routes (its phase is counted when joined) and was in before the guard was lowered
    assert!(
        matches!((at("up"), at("routes"), at("firewall"), at("guard")),
            (Some(u), Some(r), Some(f), Some(g)) if u < r && r < f && f < g),
        "the transaction did not run behind the guard beside the routes: phases {phases:?}"
    );
    assert_eq!(guard_tables(&probe), 0, "the guard is lowered at the end");
    crhook_on(&host, "diff", &probe, &images, &[]).expect_success();
    drop(probe);

    // failed at its first change (the guard), the next (the first link), half way, and at
    // its last ones (past the guard's lowering): undone whole, guard included
    let target = TestNs::new("grd-target");
    let before = NsState::capture(&target);
    let ruleset = || target.sh("nft list ruleset");
    let rules_before = ruleset();
    for n in [1, 2, changes / 2, changes - 2, changes] {
        restore_failing_after(&host, &target, &images, n, &before);
        assert_eq!(
            ruleset(),
            rules_before,
            "the target's ruleset after a failure at change {n} of {changes}"
        );
    }

    // a target that passes traffic already (its lo up) gets no guard: its links wait for
    // the transaction, which is joined before they come up
    let live = TestNs::new("grd-live");
    live.sh("ip link set lo up");
    let (_, stats) = restore_counting(&host, &live, &images);
    let phases = phase_names(&stats);
    let at = |name: &str| phases.iter().position(|p| p == name);
    assert!(
        at("guard").is_none() && matches!((at("firewall"), at("up")), (Some(f), Some(u)) if f < u),
        "into a target that passed traffic the links came up before the firewall: {phases:?}"
    );
    crhook_on(&host, "diff", &live, &images, &[]).expect_success();
}
