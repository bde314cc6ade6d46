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
    crhook_tests::one_error_line(&r.stderr);
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

#[test]
fn host_bridges_in_the_config_let_a_foreign_image_attach_to_those_bridges_only() {
    require_root();
    let host = TestNs::host();
    host.ip_batch("link add brt0 type bridge\nlink set brt0 up\n");
    let a = TestNs::new("trha");
    host.ip_batch(&format!(
        "link add vhb0 type veth peer name eth0 netns {}\nlink set vhb0 master brt0\nlink set vhb0 up\n",
        a.name()
    ));
    a.ip_batch("addr add 10.72.0.2/24 dev eth0\nlink set eth0 up\n");
    let tmp = TempDir::new("trust-bridges");
    let (key_a, key_b) = (tmp.join("a.key"), tmp.join("b.key"));
    key(&key_a, 3);
    key(&key_b, 4);
    let images = tmp.join("images");
    let (listed, other) = (tmp.join("listed.toml"), tmp.join("other.toml"));
    std::fs::write(&listed, "[restore]\nhost_bridges = [\"brt0\"]\n").unwrap();
    std::fs::write(&other, "[restore]\nhost_bridges = [\"brt9\"]\n").unwrap();
    let run = |args: &[&str], k: &str, config: Option<&str>| {
        let mut env = vec![("CRHOOK_IMAGE_KEY", k)];
        env.extend(config.map(|c| ("CRHOOK_CONFIG", c)));
        crhook(Some(&host), args, &env)
    };
    run(
        &["checkpoint", "--netns", &a.path_str(), "--images", &images],
        &key_a,
        None,
    )
    .expect_success();
    a.delete();
    wait_until(
        "the host end to go",
        std::time::Duration::from_secs(10),
        || !host.link_exists("vhb0"),
    );
    let b = TestNs::new("trhb");
    let restore = ["restore", "--netns", &b.path_str(), "--images", &images];
    // a bridge the operator did not list: refused, and the error says how to allow it
    let r = run(&restore, &key_b, Some(&other));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(
        r.stderr.contains("outside the target") && r.stderr.contains("host_bridges"),
        "{}",
        r.stderr
    );
    assert!(!host.link_exists("vhb0"));
    // the listed bridge: the far end goes back onto it
    run(&restore, &key_b, Some(&listed)).expect_success();
    let master = host.ip(&["-o", "link", "show", "vhb0"]);
    assert!(master.contains("master brt0"), "{master}");
    b.delete();
    wait_until(
        "the host end to go",
        std::time::Duration::from_secs(10),
        || !host.link_exists("vhb0"),
    );
    host.ip_batch("link del brt0\n");
}

#[test]
fn show_says_what_the_seal_is_and_diff_refuses_an_image_changed_after_sealing() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("trs");
    a.ip_batch(
        "link set lo up\nlink add v0 type veth peer name v1\naddr add 10.73.0.1/24 dev v0\n",
    );
    let tmp = TempDir::new("trust-show");
    let (key_a, key_b) = (tmp.join("a.key"), tmp.join("b.key"));
    key(&key_a, 5);
    key(&key_b, 6);
    let images = tmp.join("images");
    let env = |k: &str| [("CRHOOK_IMAGE_KEY", k.to_string())];
    let run = |args: &[&str], k: &str| {
        let e = env(k);
        crhook(Some(&host), args, &[(e[0].0, e[0].1.as_str())])
    };
    run(
        &["checkpoint", "--netns", &a.path_str(), "--images", &images],
        &key_a,
    )
    .expect_success();
    let show = |k: &str| {
        let r = run(&["show", &images, "--format", "text"], k);
        r.expect_success();
        r.stdout
            .lines()
            .find(|l| l.trim_start().starts_with("seal"))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        show(&key_a).contains("sealed with this host's key"),
        "{}",
        show(&key_a)
    );
    assert!(
        show(&key_b).contains("this host does not hold"),
        "{}",
        show(&key_b)
    );
    let json = run(&["show", &images], &key_a);
    json.expect_success();
    assert!(
        json.stdout
            .contains("\"verified\": \"sealed with this host's key"),
        "{}",
        json.stdout
    );
    run(
        &["diff", "--netns", &a.path_str(), "--images", &images],
        &key_a,
    )
    .expect_success();
    // the seal of another image of this host: it names this host's key and does not verify
    a.ip_batch("addr add 10.73.0.2/24 dev v0\n");
    let other = tmp.join("other");
    run(
        &["checkpoint", "--netns", &a.path_str(), "--images", &other],
        &key_a,
    )
    .expect_success();
    let seal = |d: &str| std::path::Path::new(d).join("seal.img");
    std::fs::copy(seal(&other), seal(&images)).unwrap();
    let d = run(
        &["diff", "--netns", &a.path_str(), "--images", &images],
        &key_a,
    );
    assert_eq!(d.code, Some(2), "{d:?}");
    assert!(
        d.stderr.contains("changed after it was sealed"),
        "{}",
        d.stderr
    );
    assert!(show(&key_a).contains("does not verify"), "{}", show(&key_a));
}
