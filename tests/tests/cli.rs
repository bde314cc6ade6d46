//! The `crhook` command line as a user and an integration see it: exit statuses, the one-line
//! error contract, `show`, JSON logs, and `--bundle` target resolution.
#![allow(clippy::unwrap_used)]

#[path = "support/process.rs"]
mod process;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crhook_core::proto::{Address, NamespaceIdentity};
use crhook_core::{ImageDir, ImageWriter, Kind, ShowFormat};
use crhook_tests::{crhook, crhook_bin, require_root, Run, TempDir, TestNs};
use serde_json::Value;

use process::{start_time, Sleeper};

/// Asserts that stderr is exactly one line, starts with `crhook: <op>:` and mentions every
/// one of `names`.
fn one_line_error(run: &Run, op: &str, names: &[&str]) {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "crhook {}: stderr must be one line, got:\n{}",
        run.args.join(" "),
        run.stderr
    );
    let prefix = format!("crhook: {op}:");
    assert!(
        lines[0].starts_with(&prefix),
        "crhook {}: expected {prefix:?}, got {:?}",
        run.args.join(" "),
        lines[0]
    );
    for n in names {
        assert!(
            lines[0].contains(n),
            "crhook {}: error should name {n:?}: {}",
            run.args.join(" "),
            lines[0]
        );
    }
}

/// crhook with an empty environment, so CRTOOLS_SCRIPT_ACTION or CRHOOK_* in the test
/// runner's environment cannot change what is tested.
fn crhook_clean(args: &[&str]) -> Run {
    let out = Command::new(crhook_bin())
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["checkpoint"],
        &["checkpoint", "--pid", "1"],
        &[
            "checkpoint",
            "--pid",
            "1",
            "--netns",
            "/run/netns/x",
            "--images",
            "/tmp/i",
        ],
        &["checkpoint", "--pid", "notapid", "--images", "/tmp/i"],
        &[
            "checkpoint",
            "--pid",
            "1",
            "--id",
            "c1",
            "--images",
            "/tmp/i",
        ],
        &[
            "checkpoint",
            "--netns",
            "/run/netns/x",
            "--root",
            "/run/runc",
            "--images",
            "/tmp/i",
        ],
        &[
            "checkpoint",
            "--netns",
            "/run/netns/x",
            "--images",
            "/tmp/i",
            "--leave-locked",
        ],
        &[
            "restore",
            "--pid",
            "1",
            "--images",
            "/tmp/i",
            "--external",
            "eth0=veth0",
        ],
        &[
            "restore",
            "--pid",
            "1",
            "--images",
            "/tmp/i",
            "--external",
            "veth:eth0=much-too-long-name0",
        ],
        &["diff", "--bundle", "/tmp/b", "--pid", "1"],
        &["show"],
        &["show", "--magics", "/tmp/x"],
        &["show", "/tmp/x", "--format", "yaml"],
        &["--log-format", "xml", "show", "--magics"],
        &["--log-level", "loud", "show", "--magics"],
        &["lock"],
        &["hook", "--bogus"],
    ];
    for args in cases {
        let run = crhook_clean(args);
        run.expect_code(2);
        one_line_error(&run, "usage", &[]);
        assert!(
            run.stdout.is_empty(),
            "crhook {}: usage error printed on stdout: {}",
            args.join(" "),
            run.stdout
        );
    }
}

#[test]
fn help_and_version_exit_0() {
    let run = crhook_clean(&["--help"]);
    run.expect_success();
    for sub in [
        "checkpoint",
        "restore",
        "diff",
        "show",
        "lock",
        "unlock",
        "hook",
    ] {
        assert!(
            run.stdout.contains(sub),
            "--help lists {sub}: {}",
            run.stdout
        );
    }
    let run = crhook_clean(&["--version"]);
    run.expect_success();
    assert!(
        run.stdout.contains(env!("CARGO_PKG_VERSION")),
        "{}",
        run.stdout
    );
}

#[test]
fn show_magics_prints_the_core_table() {
    let run = crhook_clean(&["show", "--magics"]);
    run.expect_success();
    let got: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(got, crhook_core::magics_json());
    let kinds = got["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), crhook_core::KINDS.len());
    for k in crhook_core::KINDS {
        assert!(
            kinds
                .iter()
                .any(|j| j["name"] == k.name && j["file"] == k.file),
            "kind {} missing from show --magics",
            k.name
        );
    }
}

/// An image directory written by the library, holding one address.
fn write_image(dir: &Path) {
    let mut w = ImageWriter::create(dir).unwrap();
    let addr = Address {
        family: 2,
        ifindex: 7,
        ifname: "eth0".into(),
        address: vec![192, 0, 2, 10],
        local: vec![192, 0, 2, 10],
        prefix_len: 24,
        valid_lft: u32::MAX,
        preferred_lft: u32::MAX,
        ..Address::default()
    };
    w.write(Kind::Addresses, &[addr]).unwrap();
    let source = NamespaceIdentity {
        dev: 4,
        ino: 4026532000,
        target: "/run/netns/test".into(),
        hostname: "h".into(),
        ..Default::default()
    };
    w.finish(source, vec![]).unwrap();
}

#[test]
fn show_decodes_a_directory_the_library_wrote() {
    let tmp = TempDir::new("cli-show");
    let dir = tmp.path().join("netstate");
    write_image(&dir);
    let dir_s = dir.display().to_string();

    let run = crhook_clean(&["show", &dir_s]);
    run.expect_success();
    let got: Value = serde_json::from_str(&run.stdout).unwrap();
    let want: Value =
        serde_json::from_str(&crhook_core::show(&dir, ShowFormat::Json).unwrap()).unwrap();
    assert_eq!(got, want, "the binary prints what the library decodes");
    let files = got.as_array().unwrap();
    assert_eq!(files[0]["magic"], "inventory");
    let addrs = files
        .iter()
        .find(|f| f["magic"] == "addresses")
        .expect("addresses.img shown");
    assert_eq!(addrs["entries"][0]["ifname"], "eth0");

    let run = crhook_clean(&[
        "show",
        &format!("{dir_s}/addresses.img"),
        "--format",
        "text",
    ]);
    run.expect_success();
    assert!(
        run.stdout.contains("addresses") && run.stdout.contains("eth0"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_paths_give_one_line_errors_naming_the_object() {
    let tmp = TempDir::new("cli-bad");
    let missing = tmp.join("no-such-image");
    let run = crhook_clean(&["show", &missing]);
    run.expect_code(1);
    one_line_error(&run, "show", &[&missing]);

    let garbage = tmp.join("links.img");
    std::fs::write(&garbage, b"not an image at all").unwrap();
    let run = crhook_clean(&["show", &garbage]);
    run.expect_code(1);
    one_line_error(&run, "show", &[&garbage]);

    // a directory without an inventory is not an image
    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let run = crhook_clean(&["show", &empty]);
    run.expect_code(1);
    one_line_error(&run, "show", &[&empty]);

    let bundle = tmp.join("no-bundle");
    let run = crhook_clean(&["checkpoint", "--bundle", &bundle]);
    run.expect_code(1);
    one_line_error(&run, "checkpoint", &[&format!("{bundle}/config.json")]);

    // diff reports errors with 2, not 1 (1 means "different")
    let run = crhook_clean(&["diff", "--bundle", &bundle]);
    run.expect_code(2);
    one_line_error(&run, "diff", &[&format!("{bundle}/config.json")]);
}

#[test]
fn bad_namespaces_give_one_line_errors_naming_the_path() {
    require_root();
    let tmp = TempDir::new("cli-badns");
    let images = tmp.join("netstate");
    let not_ns = tmp.join("plain-file");
    std::fs::write(&not_ns, b"").unwrap();
    let gone = format!("/run/netns/{}", crhook_tests::unique_name("absent"));
    for (op, code) in [
        ("checkpoint", 1),
        ("restore", 1),
        ("diff", 2),
        ("lock", 1),
        ("unlock", 1),
    ] {
        for path in [&not_ns, &gone] {
            let mut args = vec![op, "--netns", path.as_str()];
            if op != "lock" && op != "unlock" {
                args.extend(["--images", images.as_str()]);
            }
            let run = crhook_clean(&args);
            run.expect_code(code);
            one_line_error(&run, op, &[path]);
        }
    }
    assert!(
        !Path::new(&images).exists(),
        "a failed checkpoint left {images} behind"
    );
}

#[test]
fn json_logs_use_runc_keys() {
    let tmp = TempDir::new("cli-log");
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let state = format!(
        r#"{{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":1,"bundle":"{}"}}"#,
        bundle.display()
    );

    let check = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        assert!(!lines.is_empty(), "no log lines");
        for l in lines {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
            for key in ["level", "msg", "time"] {
                assert!(
                    v.get(key).and_then(Value::as_str).is_some(),
                    "log line lacks {key}: {l}"
                );
            }
            assert!(
                ["error", "warning", "info", "debug", "trace"]
                    .contains(&v["level"].as_str().unwrap()),
                "{l}"
            );
            let time = v["time"].as_str().unwrap();
            assert!(
                time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
                "RFC 3339 UTC time: {time}"
            );
        }
    };

    // to stderr
    let out = run_with_stdin(
        &["--log-format", "json", "--log-level", "debug", "hook"],
        &state,
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    check(&stderr);
    assert!(stderr.contains("nothing to restore"), "{stderr}");

    // to a file, appended
    let log = tmp.join("crhook.log");
    for _ in 0..2 {
        let out = run_with_stdin(
            &[
                "--log",
                &log,
                "--log-format",
                "json",
                "--log-level",
                "info",
                "hook",
            ],
            &state,
            &[],
        );
        assert_eq!(out.status.code(), Some(0));
        assert!(
            out.stderr.is_empty(),
            "logs went to stderr despite --log: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    check(&text);
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("nothing to restore"))
            .count(),
        2,
        "{text}"
    );

    // a failure is logged too (at error), besides the line on stderr
    let run = crhook_clean(&[
        "--log",
        &log,
        "--log-format",
        "json",
        "show",
        "/nonexistent-image",
    ]);
    run.expect_code(1);
    one_line_error(&run, "show", &["/nonexistent-image"]);
    let text = std::fs::read_to_string(&log).unwrap();
    check(&text);
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("/nonexistent-image"),
        "{last}"
    );

    // the same through the environment, which is all a CRIU action script gets
    let log2 = tmp.join("env.log");
    let out = run_with_stdin(
        &["hook"],
        &state,
        &[
            ("CRHOOK_LOG", log2.as_str()),
            ("CRHOOK_LOG_FORMAT", "json"),
            ("CRHOOK_LOG_LEVEL", "info"),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    check(&std::fs::read_to_string(&log2).unwrap());
}

fn run_with_stdin(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(crhook_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A bundle whose config.json carries `namespaces`.
fn bundle_with(dir: &Path, namespaces: Value) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "root": {"path": "rootfs"},
        "process": {"cwd": "/", "args": ["sleep", "1000"], "user": {"uid": 0, "gid": 0}},
        "linux": {"namespaces": namespaces},
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
}

#[test]
fn bundle_config_netns_path_is_the_target() {
    let tmp = TempDir::new("cli-bundle");
    let bundle = tmp.path().join("b");
    let netns = format!("/run/netns/{}", crhook_tests::unique_name("never-made"));
    bundle_with(
        &bundle,
        serde_json::json!([{"type": "pid"}, {"type": "network", "path": netns}]),
    );
    let b = bundle.display().to_string();
    // the namespace does not exist: the error names the path config.json gave, and the
    // default image directory <bundle>/netstate
    let run = crhook_clean(&["diff", "--bundle", &b]);
    run.expect_code(2);
    one_line_error(&run, "diff", &[&netns, &format!("{b}/netstate")]);
    // --images overrides the default
    let run = crhook_clean(&["checkpoint", "--bundle", &b, "--images", "/tmp/elsewhere"]);
    run.expect_code(1);
    one_line_error(&run, "checkpoint", &[&netns, "/tmp/elsewhere"]);
}

#[test]
fn bundle_without_netns_path_needs_an_id_and_reads_runc_state() {
    let tmp = TempDir::new("cli-state");
    let bundle = tmp.path().join("b");
    bundle_with(
        &bundle,
        serde_json::json!([{"type": "network"}, {"type": "mount"}]),
    );
    let b = bundle.display().to_string();
    let root = tmp.path().join("runc-root");
    let r = root.display().to_string();

    let run = crhook_clean(&["diff", "--bundle", &b]);
    run.expect_code(2);
    one_line_error(&run, "diff", &["--id"]);

    // no state for the id
    let run = crhook_clean(&["diff", "--bundle", &b, "--id", "c1", "--root", &r]);
    run.expect_code(2);
    one_line_error(&run, "diff", &["c1", &format!("{r}/c1/state.json")]);

    // a state whose pid now belongs to a process started at another time is refused
    let me = std::process::id();
    std::fs::create_dir_all(root.join("c1")).unwrap();
    let state = |start: u64| serde_json::json!({"id": "c1", "init_process_pid": me, "init_process_start": start, "extra": true});
    std::fs::write(
        root.join("c1/state.json"),
        state(start_time(me) + 1).to_string(),
    )
    .unwrap();
    let run = crhook_clean(&["diff", "--bundle", &b, "--id", "c1", "--root", &r]);
    run.expect_code(2);
    one_line_error(&run, "diff", &["c1", &me.to_string(), "another process"]);

    // the right start time: the target is /proc/PID/ns/net (here the test's own namespace,
    // and the images do not exist, so diff still fails, naming both)
    std::fs::write(
        root.join("c1/state.json"),
        state(start_time(me)).to_string(),
    )
    .unwrap();
    let run = crhook_clean(&[
        "diff",
        "--bundle",
        &b,
        "--id",
        "c1",
        "--root",
        &r,
        "--images",
        &tmp.join("none"),
    ]);
    run.expect_code(2);
    one_line_error(
        &run,
        "diff",
        &[&format!("/proc/{me}/ns/net"), &tmp.join("none")],
    );
}

#[test]
fn bundle_checkpoint_through_runc_state_captures_the_container_namespace() {
    require_root();
    let ns = TestNs::new("cli-bstate");
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["addr", "add", "198.51.100.7/32", "dev", "lo"]);
    let sleeper = Sleeper::start(&ns);
    let tmp = TempDir::new("cli-bstate");
    let bundle = tmp.path().join("b");
    bundle_with(&bundle, serde_json::json!([{"type": "network"}]));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("ctr")).unwrap();
    let state = serde_json::json!({
        "id": "ctr",
        "init_process_pid": sleeper.pid(),
        "init_process_start": start_time(sleeper.pid()),
        "config": {},
    });
    std::fs::write(root.join("ctr/state.json"), state.to_string()).unwrap();

    let b = bundle.display().to_string();
    let r = root.display().to_string();
    crhook(
        None,
        &["checkpoint", "--bundle", &b, "--id", "ctr", "--root", &r],
        &[],
    )
    .expect_success();
    let image = ImageDir::open(&bundle.join("netstate")).unwrap();
    let source = image.inventory().source.clone().unwrap();
    let ns_meta = std::fs::metadata(ns.path()).unwrap();
    assert_eq!(
        (source.dev, source.ino),
        (ns_meta.dev(), ns_meta.ino()),
        "captured the container's namespace"
    );
    // and diff through the same bundle sees no difference
    crhook(
        None,
        &["diff", "--bundle", &b, "--id", "ctr", "--root", &r],
        &[],
    )
    .expect_success();
}

#[test]
fn a_reader_that_went_away_is_not_an_error() {
    // `crhook show ... | head`: stdout is a pipe whose reader is already gone
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    let out = Command::new(crhook_bin())
        .args(["show", "--magics"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn lock_refuses_crhooks_own_namespace_without_the_flag() {
    require_root();
    let host = TestNs::host();
    let own = host.path_str();
    let run = crhook(Some(&host), &["lock", "--netns", &own], &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    one_line_error(
        &run,
        "lock",
        &["namespace crhook runs in", "--allow-host-netns"],
    );
    let tables = host.sh("/usr/sbin/nft list tables");
    assert!(
        !tables.contains("crhook-lock"),
        "no lock was taken: {tables}"
    );
    crhook(
        Some(&host),
        &["lock", "--netns", &own, "--allow-host-netns"],
        &[],
    )
    .expect_success();
    assert!(host.sh("/usr/sbin/nft list tables").contains("crhook-lock"));
    crhook(Some(&host), &["unlock", "--netns", &own], &[]).expect_success();
    assert!(!host.sh("/usr/sbin/nft list tables").contains("crhook-lock"));
}

/// Checkpoint seals with the host key `CRHOOK_IMAGE_KEY` names (created 0600 on first use),
/// else the configuration's `image_key`; the variable wins; an unsafe key file fails the
/// checkpoint before anything is written.
#[test]
fn checkpoint_seals_with_the_configured_host_key() {
    require_root();
    let ns = TestNs::new("cli-seal");
    ns.ip(&["link", "set", "lo", "up"]);
    let tmp = TempDir::new("cli-seal");
    let netns = ns.path_str();
    let env_key = tmp.path().join("keys/env.key");
    let conf_key = tmp.path().join("keys/conf.key");
    let config = tmp.path().join("crhook.toml");
    std::fs::write(
        &config,
        format!("image_key = {:?}\n", conf_key.display().to_string()),
    )
    .unwrap();
    let config = config.display().to_string();
    let trust_of = |images: &Path, key: &Path| {
        let key = crhook_core::HostKey::load(key).unwrap().unwrap();
        let d = ImageDir::open_with(images, Some(&key), &crhook_core::Limits::default()).unwrap();
        d.trust().clone()
    };

    let a = tmp.path().join("a");
    let env = [
        ("CRHOOK_IMAGE_KEY", env_key.to_str().unwrap()),
        ("CRHOOK_CONFIG", config.as_str()),
    ];
    crhook(
        None,
        &[
            "checkpoint",
            "--netns",
            &netns,
            "--images",
            a.to_str().unwrap(),
        ],
        &env,
    )
    .expect_success();
    assert_eq!(std::fs::metadata(&env_key).unwrap().mode() & 0o777, 0o600);
    assert!(
        trust_of(&a, &env_key).is_sealed(),
        "the variable wins over the file"
    );
    assert!(!conf_key.exists());

    let b = tmp.path().join("b");
    crhook(
        None,
        &[
            "checkpoint",
            "--netns",
            &netns,
            "--images",
            b.to_str().unwrap(),
        ],
        &[("CRHOOK_CONFIG", &config)],
    )
    .expect_success();
    assert!(trust_of(&b, &conf_key).is_sealed());
    assert_eq!(trust_of(&b, &env_key).name(), "foreign-key");

    let loose = tmp.path().join("keys/loose.key");
    std::fs::copy(&env_key, &loose).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let c = tmp.path().join("c");
    let run = crhook(
        None,
        &[
            "checkpoint",
            "--netns",
            &netns,
            "--images",
            c.to_str().unwrap(),
        ],
        &[("CRHOOK_IMAGE_KEY", loose.to_str().unwrap())],
    );
    run.expect_code(1);
    one_line_error(&run, "checkpoint", &[loose.to_str().unwrap(), "chmod 600"]);
    assert!(!c.exists(), "nothing written with an unsafe key");
}
