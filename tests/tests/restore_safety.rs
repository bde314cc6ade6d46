//! A restore that cannot or must not complete leaves every namespace as it was: conflicts are
//! refused before any change, an injected failure after any number of changes is undone
//! (host-side veth ends included), and crhook's own namespace is protected. Needs root and a
//! built `crhook` (`cargo build -p crhook`); failure injection needs the binary to map
//! `CRHOOK_FAIL_AFTER` to `RestoreOptions::fail_after`.

use crhook_tests::fixture::{create_uplink, populate_small};
use crhook_tests::{
    compare_states, crhook, crhook_on, require_root, NsState, Saved, TempDir, TestNs,
};

fn assert_same(what: &str, before: &NsState, ns: &TestNs) {
    let diffs = compare_states(before, &NsState::capture(ns));
    assert!(
        diffs.is_empty(),
        "{what} changed:\n  {}",
        diffs.join("\n  ")
    );
}

/// Restores the full fixture's images into a namespace holding the saved uplink plus
/// `conflict` (ip batch lines); the restore must be refused naming `names`, touching nothing.
fn assert_conflict_refused(tag: &str, conflict: &str, names: &[&str]) {
    let saved = Saved::checkpoint_full(tag);
    let a2 = TestNs::new(&format!("{tag}2"));
    create_uplink(&a2, &saved.host);
    a2.ip_batch(conflict);
    let before = NsState::capture(&a2);
    let host_before = NsState::capture(&saved.host);
    let sib_before = NsState::capture(&saved.sib);

    let run = saved.restore(&a2, &[], &[]);
    // Check the namespaces first: a refusal that changed things is the worse failure.
    assert_same("the conflicting namespace", &before, &a2);
    assert_same("the host", &host_before, &saved.host);
    assert_same("the sibling", &sib_before, &saved.sib);
    run.expect_code(1);
    for name in names {
        assert!(
            run.stderr.contains(name),
            "the refusal does not name the conflict {name}:\n{}",
            run.stderr
        );
    }
}

#[test]
fn link_of_another_kind_is_refused_untouched() {
    require_root();
    // br0 is a bridge in the images
    assert_conflict_refused("cfk", "link add br0 type ifb\n", &["br0"]);
}

#[test]
fn address_with_another_prefix_is_refused_untouched() {
    require_root();
    // the images hold 10.1.0.2/24 on ve0
    assert_conflict_refused("cfa", "addr add 10.1.0.2/16 dev ve0\n", &["10.1.0.2"]);
}

#[test]
fn every_conflict_is_named_in_one_refusal() {
    require_root();
    assert_conflict_refused(
        "cfb",
        "addr add 10.1.0.2/16 dev ve0\nlink add br0 type ifb\nlink add vx0 type ifb\n",
        &["10.1.0.2", "br0", "vx0"],
    );
}

#[test]
fn failure_after_each_change_is_rolled_back_completely() {
    require_root();
    let saved = Saved::checkpoint_full("inj");
    let a2 = TestNs::new("inj2");
    let before = NsState::capture(&a2);
    let host_before = NsState::capture(&saved.host);
    let sib_before = NsState::capture(&saved.sib);

    // N = 1, 2, ... until restore no longer reaches the N-th change and succeeds.
    let mut n = 1usize;
    loop {
        let value = n.to_string();
        let run = saved.restore(&a2, &[], &[("CRHOOK_FAIL_AFTER", &value)]);
        if run.code == Some(0) {
            assert!(
                n > 1,
                "CRHOOK_FAIL_AFTER=1 did not make the restore fail: is the variable mapped to \
                 RestoreOptions::fail_after?"
            );
            break;
        }
        run.expect_code(1);
        let ctx = format!("after a failure injected at change {n}");
        assert_same(&format!("the target {ctx}"), &before, &a2);
        assert_same(&format!("the host {ctx}"), &host_before, &saved.host);
        assert_same(&format!("the sibling {ctx}"), &sib_before, &saved.sib);
        n += 1;
        assert!(n < 5000, "restore still failing at CRHOOK_FAIL_AFTER={n}");
    }
    eprintln!("restore made {} journaled changes", n - 1);
    // The run that got through is a complete restore.
    let diffs = compare_states(&saved.a_state, &NsState::capture(&a2));
    assert!(
        diffs.is_empty(),
        "restore after the injection runs:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn own_namespace_is_refused_without_allow_host_netns() {
    require_root();
    let src = TestNs::new("own-src");
    populate_small(&src);
    let host = TestNs::host();
    let dir = TempDir::new("own");
    let images = dir.join("images");
    crhook(
        Some(&host),
        &[
            "checkpoint",
            "--netns",
            &src.path_str(),
            "--images",
            &images,
        ],
        &[],
    )
    .expect_success();
    let before = NsState::capture(&host);

    // crhook runs in `host`, so `host` is its own namespace.
    let run = crhook(
        Some(&host),
        &["restore", "--netns", &host.path_str(), "--images", &images],
        &[],
    );
    run.expect_code(1);
    assert!(
        run.stderr.contains("--allow-host-netns"),
        "the refusal does not say how to override it:\n{}",
        run.stderr
    );
    assert_same("crhook's own namespace after the refusal", &before, &host);

    crhook(
        Some(&host),
        &[
            "restore",
            "--netns",
            &host.path_str(),
            "--images",
            &images,
            "--allow-host-netns",
        ],
        &[],
    )
    .expect_success();
    let diffs = compare_states(&NsState::capture(&src), &NsState::capture(&host));
    assert!(
        diffs.is_empty(),
        "restore with --allow-host-netns:\n  {}",
        diffs.join("\n  ")
    );
    assert!(host.link_exists("ifs0"));
}

/// Restore checks each image file as the thread that decodes it reads it (the sysctls still
/// decoding while the target is planned against): a damaged file, whichever it is, is refused
/// by name before the first change. The damage is one byte in the middle of the file, so its
/// size holds and its crc32c does not.
#[test]
fn a_damaged_image_file_is_refused_before_any_change() {
    require_root();
    let saved = Saved::checkpoint_full("dmg");
    let a2 = TestNs::new("dmg2");
    let before = NsState::capture(&a2);
    let host_before = NsState::capture(&saved.host);
    let sib_before = NsState::capture(&saved.sib);
    let images = std::path::PathBuf::from(saved.images());
    for name in ["sysctls.img", "firewall.img", "routes.img", "links.img"] {
        let p = images.join(name);
        let good = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x5a;
        std::fs::write(&p, &bad).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        let run = saved.restore(&a2, &[], &[]);
        std::fs::write(&p, &good).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        assert_same(&format!("the target after a damaged {name}"), &before, &a2);
        assert_same(
            &format!("the host after a damaged {name}"),
            &host_before,
            &saved.host,
        );
        assert_same(
            &format!("the sibling after a damaged {name}"),
            &sib_before,
            &saved.sib,
        );
        run.expect_code(1);
        crhook_tests::one_error_line(&run.stderr);
        assert!(
            run.stderr.contains(&p.display().to_string()) && run.stderr.contains("crc32c"),
            "the refusal does not name the damaged {name}:\n{}",
            run.stderr
        );
    }
    // the files put back, the same images restore whole
    saved.restore(&a2, &[], &[]).expect_success();
    let diffs = compare_states(&saved.a_state, &NsState::capture(&a2));
    assert!(diffs.is_empty(), "restore after: {}", diffs.join("\n  "));
}

/// A restore whose nf_tables transaction runs beside the links (a ruleset of iptables-nft
/// rules) and whose routes, three chunks of them, are built on their own thread from then on,
/// failed at points from its first change to its last, is undone whole each time: the links,
/// addresses, routes and sysctls and the ruleset as they were. The run that gets through
/// diffs identical.
#[test]
fn failure_beside_the_firewall_transaction_and_the_route_builder_is_rolled_back() {
    require_root();
    let src = TestNs::new("fwb");
    populate_small(&src);
    src.add_routes(9000, "192.0.2.254");
    src.sh("iptables -A INPUT -p tcp --dport 22 -j ACCEPT && \
         iptables -A INPUT -s 10.9.0.0/16 -j DROP && \
         ip6tables -A INPUT -p udp --dport 53 -j ACCEPT");
    let host = TestNs::host();
    let dir = TempDir::new("fwb");
    let images = dir.join("images");
    crhook_on(&host, "checkpoint", &src, &images, &[]).expect_success();
    // how many changes a whole restore makes
    let probe = TestNs::new("fwb-probe");
    let (changes, stats) = crhook_tests::restore_counting(&host, &probe, &images);
    assert!(
        changes > 9000,
        "a restore of 9,000 routes made {changes} changes"
    );
    // the ruleset went in beside the links (its phase ends after theirs), not before them
    let phases = crhook_tests::phase_names(&stats);
    let at = |name: &str| phases.iter().position(|p| p == name);
    assert!(
        matches!((at("links"), at("firewall")), (Some(l), Some(f)) if f > l),
        "the firewall's transaction did not run beside the links: phases {phases:?}"
    );
    // too small to pay for the guard (guard.rs): the transaction is joined before link up
    assert!(
        at("guard").is_none() && at("firewall") < at("up"),
        "a restore of 3 rules and 9,000 routes raised the guard: phases {phases:?}"
    );
    drop(probe);

    let target = TestNs::new("fwb-target");
    let before = NsState::capture(&target);
    let ruleset = || target.sh("nft list ruleset");
    let rules_before = ruleset();
    for n in [
        1,
        2,
        3,
        10,
        changes / 4,
        changes / 2,
        changes - 4096,
        changes - 5,
        changes,
    ] {
        crhook_tests::restore_failing_after(&host, &target, &images, n, &before);
        assert_eq!(
            ruleset(),
            rules_before,
            "the target's ruleset after a failure at change {n}"
        );
    }
    crhook_on(&host, "restore", &target, &images, &[]).expect_success();
    crhook_on(&host, "diff", &target, &images, &[]).expect_success();
    assert_ne!(ruleset(), rules_before, "the ruleset restored");
}

/// An unsealed image one of whose routes does not decode (its device name is not UTF-8),
/// restored into a fresh namespace: there the routes are put in order only once the links
/// exist (see `restore/streamed.rs`), so the bad one is met after the first changes. The
/// restore fails naming routes.img, and what it made is undone.
#[test]
fn a_route_that_does_not_decode_fails_the_restore_and_what_it_made_is_undone() {
    use crhook_core::prost::Message;
    use crhook_core::{ImageWriter, Kind};
    require_root();
    let src = TestNs::new("rdec");
    src.ip_batch("link add br0 type bridge\naddr add 10.7.0.1/24 dev br0\nlink set br0 up\n");
    src.add_routes(300, "10.7.0.254");
    let host = TestNs::host();
    let dir = TempDir::new("rdec");
    let good = dir.join("good");
    crhook_on(&host, "checkpoint", &src, &good, &[]).expect_success();
    let snap = crhook_netstate::Snapshot::read_dir(std::path::Path::new(&good))
        .unwrap_or_else(|e| panic!("read {good}: {e}"));
    assert!(
        snap.routes.len() >= 300,
        "routes saved: {}",
        snap.routes.len()
    );
    let mut entries: Vec<Vec<u8>> = snap.routes.iter().map(|r| r.encode_to_vec()).collect();
    let mid = entries.len() / 2;
    // field 15 (oif_name), length 2, not UTF-8: the last occurrence of a field wins
    entries[mid].extend_from_slice(&[15 << 3 | 2, 2, 0xff, 0xfe]);
    let bad = dir.join("bad");
    let mut w = ImageWriter::create(std::path::Path::new(&bad)).expect("image writer");
    snap.write_kinds(&mut w, |k| k != Kind::Routes)
        .expect("write the other kinds");
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    w.write_raw(Kind::Routes, &refs).expect("write routes");
    w.finish(Default::default(), Vec::new())
        .expect("finish the image");

    let target = TestNs::new("rdec2");
    let before = NsState::capture(&target);
    let run = crhook_on(&host, "restore", &target, &bad, &[]);
    assert_same(
        "the target after a route that does not decode",
        &before,
        &target,
    );
    run.expect_code(1);
    assert!(
        run.stderr.contains("routes.img") && run.stderr.contains("rolled back"),
        "the error does not name routes.img and the rollback:\n{}",
        run.stderr
    );
    // the good image restores whole into the same namespace
    crhook_on(&host, "restore", &target, &good, &[]).expect_success();
    crhook_on(&host, "diff", &target, &good, &[]).expect_success();
}
