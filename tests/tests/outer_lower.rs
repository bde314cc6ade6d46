//! A macvlan and a macvtap made on a device of the host and moved into the namespace (what a
//! macvlan CNI plugin does) are recreated on that same host device, straight into the
//! restored namespace, with their ifindex, MAC and settings. Needs root and a built `crhook`.

use crhook_tests::{compare_states, crhook, require_root, wait_until, NsState, TempDir, TestNs};
use std::time::Duration;

#[test]
fn macvlan_on_a_host_device_comes_back_on_it() {
    require_root();
    let host = TestNs::host();
    host.ip_batch(
        "link add up0 type veth peer name up1\n\
         link set up0 up\n\
         link add mvx link up0 type macvlan mode bridge\n\
         link add mvt link up0 type macvtap mode vepa\n",
    );
    let a = TestNs::new("olw");
    host.ip(&["link", "set", "mvx", "netns", a.name()]);
    host.ip(&["link", "set", "mvt", "netns", a.name()]);
    a.ip_batch(
        "link set mvx mtu 1400\n\
         addr add 10.4.0.2/24 dev mvx\n\
         link set mvx up\n\
         link set lo up\n",
    );
    let want = NsState::capture(&a);
    let tmp = TempDir::new("olw");
    let images = tmp.join("images");
    crhook(
        Some(&host),
        &["checkpoint", "--netns", &a.path_str(), "--images", &images],
        &[],
    )
    .expect_success();

    let name = a.name().to_string();
    a.delete();
    wait_until(
        "the moved links to leave with their namespace",
        Duration::from_secs(30),
        || !std::path::Path::new(&format!("/run/netns/{name}")).exists(),
    );
    let b = TestNs::new("olw2");
    crhook(
        Some(&host),
        &["restore", "--netns", &b.path_str(), "--images", &images],
        &[],
    )
    .expect_success();
    crhook(
        Some(&host),
        &["diff", "--netns", &b.path_str(), "--images", &images],
        &[],
    )
    .expect_success();
    let diffs = compare_states(&want, &NsState::capture(&b));
    assert!(
        diffs.is_empty(),
        "restored namespace:\n  {}",
        diffs.join("\n  ")
    );
    // the lower device is the host's up0, as before
    let up0 = host.ifindex("up0").expect("up0 in the host");
    for link in ["mvx", "mvt"] {
        let j = b.link_json(link);
        assert_eq!(j["link_index"].as_u64(), Some(up0), "{link}: {j}");
        assert!(
            j.get("link_netnsid").is_some(),
            "{link} is linked across namespaces: {j}"
        );
    }
}

#[test]
fn a_missing_host_lower_device_is_a_conflict_naming_it() {
    require_root();
    let host = TestNs::host();
    host.ip_batch(
        "link add lw0 type veth peer name lw1\n\
         link add mvq link lw0 type macvlan mode private\n",
    );
    let a = TestNs::new("olm");
    host.ip(&["link", "set", "mvq", "netns", a.name()]);
    let tmp = TempDir::new("olm");
    let images = tmp.join("images");
    crhook(
        Some(&host),
        &["checkpoint", "--netns", &a.path_str(), "--images", &images],
        &[],
    )
    .expect_success();
    a.delete();
    host.ip(&["link", "del", "lw0"]);
    let b = TestNs::new("olm2");
    let before = NsState::capture(&b);
    let run = crhook(
        Some(&host),
        &["restore", "--netns", &b.path_str(), "--images", &images],
        &[],
    );
    run.expect_code(1);
    assert!(
        run.stderr.contains("mvq") && run.stderr.contains("lw0") && run.stderr.lines().count() == 1,
        "{}",
        run.stderr
    );
    let diffs = compare_states(&before, &NsState::capture(&b));
    assert!(
        diffs.is_empty(),
        "refused restore changed the namespace:\n  {}",
        diffs.join("\n  ")
    );
}
