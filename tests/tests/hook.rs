//! `crhook hook`: the OCI runtime hook as runc, Podman and CRI-O run it — container state on
//! stdin, possibly an empty environment, failure reported as one line on stderr.
#![allow(clippy::unwrap_used)]

#[path = "support/process.rs"]
mod process;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crhook_tests::{crhook, crhook_bin, require_root, NsState, TempDir, TestNs};
use serde_json::{json, Value};

use process::Sleeper;

/// Runs `crhook ARGS` with `stdin` and exactly `env` (runc passes exactly the hook's env).
fn hook(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(crhook_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // a hook that refuses early closes stdin; a broken pipe here is part of what is tested
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_one_line_failure(out: &Output, names: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "hook should fail; stderr: {err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("crhook: hook: "), "{err}");
    for n in names {
        assert!(lines[0].contains(n), "error should name {n:?}: {err}");
    }
}

/// The info log lines (JSON) of a successful hook run that found nothing to restore, and the
/// image directory it looked in.
fn images_looked_at(out: &Output) -> PathBuf {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(0), "hook failed: {err}");
    for l in err.lines() {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        if v["msg"] == "no images: nothing to restore" {
            return PathBuf::from(v["images"].as_str().unwrap());
        }
    }
    panic!("no 'nothing to restore' log line in:\n{err}");
}

const LOG: &[&str] = &["--log-format", "json", "--log-level", "info", "hook"];

fn bundle(tmp: &TempDir, annotations: Option<Value>) -> PathBuf {
    let b = tmp.path().join("bundle");
    std::fs::create_dir_all(&b).unwrap();
    let mut config = json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
    if let Some(a) = annotations {
        config["annotations"] = a;
    }
    std::fs::write(b.join("config.json"), config.to_string()).unwrap();
    b
}

fn state(bundle: &Path, status: &str, pid: u32, annotations: Option<Value>) -> Vec<u8> {
    let mut s = json!({
        "ociVersion": "1.0.2-dev",
        "id": "ctr-1",
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "rootfs": "/nonexistent",
        "created": "2024-05-01T10:00:00Z",
        "owner": "",
        "use_systemd": false,
    });
    if let Some(a) = annotations {
        s["annotations"] = a;
    }
    s.to_string().into_bytes()
}

#[test]
fn lenient_state_parsing_accepts_any_status_and_extra_fields() {
    let tmp = TempDir::new("hook-lenient");
    let b = bundle(&tmp, None);
    for status in [
        "creating",
        "created",
        "running",
        "stopped",
        "starting",
        "paused",
        "no-such-status",
    ] {
        let out = hook(LOG, &state(&b, status, 1, None), &[]);
        assert_eq!(
            images_looked_at(&out),
            b.join("netstate"),
            "status {status}"
        );
    }
    // fields of other shapes than the spec's are ignored
    let odd = json!({"id": 7, "status": ["x"], "pid": 1, "bundle": b, "nested": {"deep": [1, 2]}});
    let out = hook(LOG, odd.to_string().as_bytes(), &[]);
    assert_eq!(images_looked_at(&out), b.join("netstate"));
}

#[test]
fn image_directory_precedence_and_odd_annotations() {
    let tmp = TempDir::new("hook-annot");
    let key = "io.crhook.images";
    let cfg_dir = tmp.path().join("from-config");
    let st_dir = tmp.path().join("from-state");
    let b = bundle(&tmp, Some(json!({ key: cfg_dir, "other": "x" })));

    // config.json's annotation
    let out = hook(LOG, &state(&b, "creating", 1, None), &[]);
    assert_eq!(images_looked_at(&out), cfg_dir);
    // the state's annotation wins over config.json's
    let out = hook(
        LOG,
        &state(&b, "creating", 1, Some(json!({ key: st_dir }))),
        &[],
    );
    assert_eq!(images_looked_at(&out), st_dir);
    // --images wins over both
    let flag_dir = tmp.join("from-flag");
    let args = [
        "--log-format",
        "json",
        "--log-level",
        "info",
        "hook",
        "--images",
        flag_dir.as_str(),
    ];
    let out = hook(
        &args,
        &state(&b, "creating", 1, Some(json!({ key: st_dir }))),
        &[],
    );
    assert_eq!(images_looked_at(&out), PathBuf::from(&flag_dir));
    // a relative annotation is relative to the bundle
    let out = hook(
        LOG,
        &state(&b, "creating", 1, Some(json!({ key: "saved/net" }))),
        &[],
    );
    assert_eq!(images_looked_at(&out), b.join("saved/net"));
    // odd values are ignored: empty, not a string; then config.json's applies
    for odd in [
        json!({ key: "" }),
        json!({ key: "   " }),
        json!({ key: 42 }),
        json!({ key: null }),
        json!(["x"]),
        json!("str"),
    ] {
        let out = hook(LOG, &state(&b, "creating", 1, Some(odd.clone())), &[]);
        assert_eq!(images_looked_at(&out), cfg_dir, "state annotations {odd}");
    }

    // no annotation anywhere: <bundle>/netstate
    let tmp2 = TempDir::new("hook-annot2");
    let b2 = bundle(&tmp2, Some(json!({"unrelated": "1"})));
    let out = hook(LOG, &state(&b2, "creating", 1, None), &[]);
    assert_eq!(images_looked_at(&out), b2.join("netstate"));
    // config.json's annotations of the wrong shape are ignored
    let tmp3 = TempDir::new("hook-annot3");
    let b3 = bundle(&tmp3, Some(json!([1, 2])));
    let out = hook(LOG, &state(&b3, "creating", 1, None), &[]);
    assert_eq!(images_looked_at(&out), b3.join("netstate"));
}

#[test]
fn bad_state_on_stdin_is_a_one_line_failure() {
    for (input, expect) in [
        (&b""[..], "empty"),
        (&b"   \n"[..], "empty"),
        (&b"{not json"[..], "parse container state"),
        (&b"[1,2]"[..], "not a JSON object"),
        (&br#"{"pid": -4, "bundle": "/b"}"#[..], "pid"),
        (&br#"{"pid": 1}"#[..], "no bundle"),
    ] {
        let out = hook(&["hook"], input, &[]);
        assert_one_line_failure(&out, &[expect]);
    }
    // more than 1 MiB is refused without reading it all
    let big = vec![b' '; (1 << 20) + 10];
    let out = hook(&["hook"], &big, &[]);
    assert_one_line_failure(&out, &["exceeds"]);
    // a config.json that is not JSON, when it is needed for the annotation
    let tmp = TempDir::new("hook-badcfg");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("config.json"), b"{{{").unwrap();
    let out = hook(&["hook"], &state(&b, "creating", 1, None), &[]);
    assert_one_line_failure(&out, &[&format!("{}/config.json", b.display())]);
}

#[test]
fn missing_images_exit_0_even_with_an_empty_environment() {
    let tmp = TempDir::new("hook-noimg");
    let b = bundle(&tmp, None);
    // env_clear: no PATH, no HOME, nothing
    let out = hook(&["hook"], &state(&b, "creating", 1, None), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    // a state without a pid (poststop) is not an error either
    let st = json!({"id": "c", "status": "stopped", "bundle": b}).to_string();
    let out = hook(&["hook"], st.as_bytes(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Shapes `ns` a little: lo up, a veth pair inside, addresses, a route in table 100.
fn shape(ns: &TestNs) {
    ns.ip_batch(
        "link set lo up\n\
         link add hk0 type veth peer name hk1\n\
         link set hk0 address 02:00:00:00:77:01 up\n\
         link set hk1 up\n\
         addr add 192.0.2.77/24 dev hk0\n\
         route add 198.51.100.0/24 via 192.0.2.1 dev hk0 table 100\n",
    );
}

#[test]
fn failing_restore_is_one_line_nonzero_and_leaves_the_namespace_untouched() {
    require_root();
    let ns = TestNs::new("hook-fail");
    shape(&ns);
    let before = NsState::capture(&ns);
    let init = Sleeper::start(&ns);
    let tmp = TempDir::new("hook-fail");
    let b = bundle(&tmp, None);

    // images that exist but are not an image: no inventory, a damaged file
    let images = b.join("netstate");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("links.img"), b"\x89CRHgarbage").unwrap();
    let out = hook(&["hook"], &state(&b, "creating", init.pid(), None), &[]);
    assert_one_line_failure(&out, &["ctr-1", &images.display().to_string()]);
    assert_eq!(
        NsState::capture(&ns),
        before,
        "a failed restore changed the namespace"
    );

    // a pid that does not exist
    let out = hook(&["hook"], &state(&b, "creating", 0x3fff_fff0, None), &[]);
    assert_one_line_failure(&out, &["ctr-1"]);
}

#[test]
fn hook_restores_the_images_into_the_container_namespace() {
    require_root();
    let a = TestNs::new("hook-src");
    shape(&a);
    crhook_tests::settle(&a);
    let tmp = TempDir::new("hook-ok");
    let b = bundle(&tmp, None);
    let images = b.join("netstate");
    crhook(
        None,
        &[
            "checkpoint",
            "--netns",
            &a.path_str(),
            "--images",
            &images.display().to_string(),
        ],
        &[],
    )
    .expect_success();
    let want = NsState::capture(&a);

    let target = TestNs::new("hook-dst");
    let init = Sleeper::start(&target);
    // as runc runs it: createRuntime, status "creating", empty environment
    let out = hook(&["hook"], &state(&b, "creating", init.pid(), None), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let diffs = crhook_tests::compare_states(&want, &NsState::capture(&target));
    assert!(
        diffs.is_empty(),
        "restored namespace differs:\n{}",
        diffs.join("\n")
    );
}

/// oci-hooks(5) validation as Podman and CRI-O do it (containers/common pkg/hooks 1.0.0).
#[test]
fn hooks_d_example_is_valid_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("examples/oci/crhook-hook.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], "1.0.0");
    let path = v["hook"]["path"].as_str().unwrap();
    assert!(
        Path::new(path).is_absolute(),
        "hook.path must be absolute: {path}"
    );
    let args: Vec<&str> = v["hook"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args.first(), Some(&"crhook"), "args[0] is the program name");
    assert!(v["hook"]["timeout"].as_u64().unwrap() > 0);
    let valid = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    let stages = v["stages"].as_array().unwrap();
    assert!(!stages.is_empty());
    for s in stages {
        assert!(valid.contains(&s.as_str().unwrap()), "unknown stage {s}");
    }
    let when = v["when"].as_object().unwrap();
    assert!(
        when.get("always") == Some(&json!(true))
            || when.contains_key("annotations")
            || when.contains_key("commands"),
        "when needs a condition"
    );
    let annotations = when["annotations"].as_object().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        vec![r"^io\.crhook\.images$"]
    );

    // the args work: a container without images is left alone
    let tmp = TempDir::new("hook-example");
    let b = bundle(&tmp, None);
    let out = hook(&args[1..], &state(&b, "creating", 1, None), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // config.json snippet: a createRuntime hook whose args parse and log JSON to --log
    let text = std::fs::read_to_string(root.join("examples/oci/config-snippet.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v["annotations"]["io.crhook.images"].as_str().is_some());
    let h = &v["hooks"]["createRuntime"][0];
    assert!(Path::new(h["path"].as_str().unwrap()).is_absolute());
    let log = tmp.join("hook.log");
    let args: Vec<String> = h["args"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|a| {
            if a == "/run/crhook.log" {
                log.clone()
            } else {
                a.as_str().unwrap().to_string()
            }
        })
        .collect();
    assert!(args.iter().any(|a| a == &log), "the snippet logs to a file");
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.insert(0, "--log-level=info");
    let out = hook(&argv, &state(&b, "creating", 1, None), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let logged = std::fs::read_to_string(&log).unwrap();
    let line: Value = serde_json::from_str(logged.lines().last().unwrap()).unwrap();
    assert_eq!(line["msg"], "no images: nothing to restore");
}

// ---- CRIU action-script mode: crhook with no subcommand and CRTOOLS_SCRIPT_ACTION set ----

/// crhook as CRIU runs it: no arguments, an environment of exactly `env`.
fn criu_action(env: &[(&str, &str)]) -> Output {
    hook(&[], b"", env)
}

#[test]
fn criu_actions_without_work_exit_0_with_an_empty_environment() {
    let tmp = TempDir::new("criu-noop");
    for action in [
        "pre-restore",
        "post-dump",
        "post-restore",
        "pre-resume",
        "post-resume",
        "no-such-action",
    ] {
        let out = criu_action(&[("CRTOOLS_SCRIPT_ACTION", action)]);
        assert_eq!(out.status.code(), Some(0), "{action}: {}", stderr(&out));
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{action}: {}",
            stderr(&out)
        );
    }
    // setup-namespaces without images (a dump made without crhook): nothing to restore
    let out = criu_action(&[
        ("CRTOOLS_SCRIPT_ACTION", "setup-namespaces"),
        ("CRTOOLS_IMAGE_DIR", tmp.path().to_str().unwrap()),
        ("CRTOOLS_INIT_PID", "1"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // network-unlock for a task that is gone: its namespace, and any lock in it, went with it
    let out = criu_action(&[
        ("CRTOOLS_SCRIPT_ACTION", "network-unlock"),
        ("CRTOOLS_INIT_PID", "1073741800"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn criu_actions_missing_their_variables_fail_in_one_line() {
    let out = criu_action(&[("CRTOOLS_SCRIPT_ACTION", "network-lock")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("crhook: criu action network-lock: ") && err.contains("CRTOOLS_INIT_PID"),
        "{err}"
    );
    let out = criu_action(&[
        ("CRTOOLS_SCRIPT_ACTION", "pre-dump"),
        ("CRTOOLS_INIT_PID", "1"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CRTOOLS_IMAGE_DIR"), "{err}");
    let out = criu_action(&[
        ("CRTOOLS_SCRIPT_ACTION", "network-unlock"),
        ("CRTOOLS_INIT_PID", "x1"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("\"x1\""), "{}", stderr(&out));
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

/// The CRIU image directory as CRIU names it: `/proc/<pid>/fd/<n>` of a descriptor it holds.
struct HeldDir {
    _dir: std::fs::File,
    proc_path: String,
}

impl HeldDir {
    fn open(path: &Path) -> HeldDir {
        use std::os::fd::AsRawFd;
        let dir = std::fs::File::open(path).unwrap();
        let proc_path = format!("/proc/{}/fd/{}", std::process::id(), dir.as_raw_fd());
        HeldDir {
            _dir: dir,
            proc_path,
        }
    }
}

#[test]
fn criu_actions_capture_once_restore_and_unlock() {
    require_root();
    let a = TestNs::new("criu-src");
    shape(&a);
    crhook_tests::settle(&a);
    let want = NsState::capture(&a);
    let init_a = Sleeper::start(&a);
    let tmp = TempDir::new("criu-act");
    let held = HeldDir::open(tmp.path());
    let images = tmp.path().join("netstate");
    let pid_a = init_a.pid().to_string();
    let dump_env = |action| {
        [
            ("CRTOOLS_SCRIPT_ACTION", action),
            ("CRTOOLS_IMAGE_DIR", held.proc_path.as_str()),
            ("CRTOOLS_INIT_PID", pid_a.as_str()),
        ]
    };

    // network-lock first (no pre-dump): capture, and the namespace stays locked
    let out = criu_action(&dump_env("network-lock"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    crhook_core::ImageDir::open(&images).unwrap();
    let ns_a = crhook_netstate::NetNs::open_path(&a.path()).unwrap();
    assert!(
        crhook_netstate::firewall::is_locked(&ns_a).unwrap(),
        "network-lock leaves the namespace locked"
    );
    // every action fires twice: the second finds the complete image and writes nothing
    let first = inode(&images);
    for action in ["network-lock", "pre-dump"] {
        let out = criu_action(&dump_env(action));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(
            inode(&images),
            first,
            "{action} fired again rewrote the image"
        );
    }
    // network-unlock (twice) leaves nothing of the lock
    for _ in 0..2 {
        let out = criu_action(&dump_env("network-unlock"));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            !crhook_netstate::firewall::is_locked(&ns_a).unwrap(),
            "lock left behind"
        );
    }
    assert_eq!(
        NsState::capture(&a),
        want,
        "lock and unlock changed the namespace"
    );
    assert!(
        !a.sh("nft list ruleset").contains("crhook"),
        "lock table left behind"
    );

    // setup-namespaces (twice) restores into the new task's namespace
    let b = TestNs::new("criu-dst");
    let init_b = Sleeper::start(&b);
    let pid_b = init_b.pid().to_string();
    for _ in 0..2 {
        let out = criu_action(&[
            ("CRTOOLS_SCRIPT_ACTION", "setup-namespaces"),
            ("CRTOOLS_IMAGE_DIR", held.proc_path.as_str()),
            ("CRTOOLS_INIT_PID", pid_b.as_str()),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let diffs = crhook_tests::compare_states(&want, &NsState::capture(&b));
    assert!(
        diffs.is_empty(),
        "restored namespace differs:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn annotated_images_are_read_only_under_the_configured_roots() {
    require_root();
    use std::os::unix::fs::PermissionsExt;
    let key = "io.crhook.images";
    // an existing directory in the system's temporary directory: not under the roots
    let tmp = TempDir::new("hook-roots");
    let b = bundle(&tmp, None);
    let outside = tmp.path().join("images");
    std::fs::create_dir_all(&outside).unwrap();
    let out = hook(
        &["hook"],
        &state(&b, "creating", 1, Some(json!({ key: outside }))),
        &[],
    );
    assert_one_line_failure(&out, &["not under the image roots", "/var/lib/crhook"]);

    // under the default root, but inside the container's own rootfs
    let root = TempDir::under(Path::new("/var/lib/crhook"), "hook-roots");
    let b2 = root.path().join("bundle");
    let inside = b2.join("rootfs/images");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::write(b2.join("config.json"), r#"{"ociVersion":"1.0.2"}"#).unwrap();
    let out = hook(
        &["hook"],
        &state(&b2, "creating", 1, Some(json!({ key: inside }))),
        &[],
    );
    assert_one_line_failure(&out, &["inside the container's own rootfs"]);

    // under the root, but in a directory others can write
    let open = root.path().join("open/images");
    std::fs::create_dir_all(&open).unwrap();
    std::fs::set_permissions(
        root.path().join("open"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let out = hook(
        &["hook"],
        &state(&b, "creating", 1, Some(json!({ key: open }))),
        &[],
    );
    assert_one_line_failure(&out, &["writable by others"]);

    // a root the operator configured
    let conf = tmp.path().join("crhook.toml");
    std::fs::write(
        &conf,
        format!("images_roots = [{:?}]\n", tmp.path().display().to_string()),
    )
    .unwrap();
    let out = hook(
        &["hook"],
        &state(&b, "creating", 1, Some(json!({ key: outside }))),
        &[("CRHOOK_CONFIG", conf.to_str().unwrap())],
    );
    // /tmp itself is writable by everyone: still refused, by that rule
    assert_one_line_failure(&out, &["writable by others"]);
}
