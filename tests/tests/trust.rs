//! Trust comes from the operator: an image sealed with another host's key (or not sealed)
//! may not place a veth end in the host; the right key, `--trust-images` or an explicit
//! `--external` can. Needs root and a built `crhook`.

use std::os::unix::fs::PermissionsExt;

use crhook_tests::{compare_states, crhook, require_root, wait_until, NsState, TempDir, TestNs};

fn key(path: &str, byte: u8) {
    std::fs::write(path, [byte; 32]).expect("write key");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod key");
}

#[test]
fn a_foreign_image_places_nothing_in_the_host_without_the_operator() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("tra");
    host.ip_batch(&format!(
        "link add vh0 type veth peer name eth0 netns {}\nlink set vh0 up\n",
        a.name()
    ));
    a.ip_batch("addr add 10.71.0.2/24 dev eth0\nlink set eth0 up\n");
    let tmp = TempDir::new("trust");
    let (key_a, key_b) = (tmp.join("a.key"), tmp.join("b.key"));
    key(&key_a, 1);
    key(&key_b, 2);
    let images = tmp.join("images");
    let with = |k: &str| vec![("CRHOOK_IMAGE_KEY", k.to_string())];
    let run = |args: &[&str], k: &str| {
        let env = with(k);
        let env: Vec<(&str, &str)> = env.iter().map(|(a, b)| (*a, b.as_str())).collect();
        crhook(Some(&host), args, &env)
    };
    run(
        &["checkpoint", "--netns", &a.path_str(), "--images", &images],
        &key_a,
    )
    .expect_success();
    a.delete();
    wait_until(
        "the host end to go",
        std::time::Duration::from_secs(10),
        || !host.link_exists("vh0"),
    );

    // another host's key: refused, nothing changed, here or in the host
    let b = TestNs::new("trb");
    let (b_before, host_before) = (NsState::capture(&b), NsState::capture(&host));
    let r = run(
        &["restore", "--netns", &b.path_str(), "--images", &images],
        &key_b,
    );
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("link eth0")
            && r.stderr.contains("outside the target")
            && r.stderr.contains("--trust-images"),
        "{}",
        r.stderr
    );
    assert!(compare_states(&b_before, &NsState::capture(&b)).is_empty());
    assert!(compare_states(&host_before, &NsState::capture(&host)).is_empty());
    assert!(!host.link_exists("vh0"));

    // the operator says so: --trust-images
    run(
        &[
            "restore",
            "--netns",
            &b.path_str(),
            "--images",
            &images,
            "--trust-images",
        ],
        &key_b,
    )
    .expect_success();
    assert!(host.link_exists("vh0"));
    b.delete();
    wait_until(
        "the host end to go",
        std::time::Duration::from_secs(10),
        || !host.link_exists("vh0"),
    );

    // the right key
    let c = TestNs::new("trc");
    run(
        &["restore", "--netns", &c.path_str(), "--images", &images],
        &key_a,
    )
    .expect_success();
    assert!(host.link_exists("vh0"));
    c.delete();
    wait_until(
        "the host end to go",
        std::time::Duration::from_secs(10),
        || !host.link_exists("vh0"),
    );

    // or names the place itself
    let d = TestNs::new("trd");
    run(
        &[
            "restore",
            "--netns",
            &d.path_str(),
            "--images",
            &images,
            "--external",
            "veth:eth0=vhx0",
        ],
        &key_b,
    )
    .expect_success();
    assert!(host.link_exists("vhx0"));
}
