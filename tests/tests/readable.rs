//! Output a person reads: `diff` shows changed firewall rules as `iptables-save` and `nft`
//! print them and a changed field as one short line (`link veth0: mac A -> B`), restore's
//! conflicts use the same words, `show --format text` lists firewall images in rule syntax
//! and opens a directory with a summary, the completion scripts and manual pages parse, and
//! progress appears on a terminal only. Needs root (namespaces), a built `crhook`, and
//! iptables-nft, nft, bash, man-db and `script` (util-linux), which `.ci/install-deps`
//! installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crhook_tests::{crhook, crhook_bin, require_root, TempDir, TestNs};
use serde_json::Value;

/// An absolute path to `name` in the system directories; panics naming what is missing.
fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} not found in /usr/sbin, /usr/bin, /sbin, /bin (see .ci/install-deps)")
        })
}

/// A namespace holding one iptables-nft rule, one native nft table with a rule and a set.
fn firewalled(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    let ipt = tool("iptables-nft");
    let nft = tool("nft");
    let ipt = ipt.display();
    let nft = nft.display();
    ns.sh(&format!(
        "{ipt} -A INPUT -p tcp --dport 8080 -j ACCEPT && {ipt} -A INPUT -s 10.1.2.3/32 -j DROP && \
         {nft} add table inet web && \
         {nft} add chain inet web in '{{ type filter hook input priority 0; policy accept; }}' && \
         {nft} add rule inet web in tcp dport 8080 accept && \
         {nft} add set inet web blk '{{ type ipv4_addr; elements = {{ 192.0.2.1 }}; }}'"
    ));
    ns
}

fn checkpoint(ns: &TestNs, images: &str) {
    crhook(
        None,
        &["checkpoint", "--netns", &ns.path_str(), "--images", images],
        &[],
    )
    .expect_success();
}

#[test]
fn changed_iptables_and_nft_rules_diff_in_rule_syntax() {
    require_root();
    let a = firewalled("rsx");
    let tmp = TempDir::new("rsx");
    let images = tmp.join("images");
    checkpoint(&a, &images);
    let (ipt, nft) = (tool("iptables-nft"), tool("nft"));
    let (ipt, nft) = (ipt.display(), nft.display());
    a.sh(&format!(
        "{ipt} -R INPUT 1 -p tcp --dport 8081 -j ACCEPT && {nft} flush chain inet web in && \
         {nft} add rule inet web in tcp dport 8081 accept && \
         {nft} add element inet web blk '{{ 192.0.2.2 }}'"
    ));
    let run = crhook(
        None,
        &["diff", "--netns", &a.path_str(), "--images", &images],
        &[],
    );
    run.expect_code(1);
    let out = &run.stdout;
    for want in [
        "firewall iptables-nft table filter chain INPUT: rule 1",
        "saved -A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
        "live  -A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT",
        "firewall nft table inet web chain in: rule 1",
        "saved tcp dport 8080 accept",
        "live  tcp dport 8081 accept",
        "firewall nft table inet web set blk: element only live: 192.0.2.2",
    ] {
        assert!(out.contains(want), "diff lacks {want:?}:\n{out}");
    }
    assert!(
        !out.contains("cmp(") && !out.contains("payload("),
        "kernel attributes instead of rule syntax:\n{out}"
    );
    assert!(
        !out.contains("10.1.2.3"),
        "an unchanged rule is reported:\n{out}"
    );

    let run = crhook(
        None,
        &[
            "diff",
            "--netns",
            &a.path_str(),
            "--images",
            &images,
            "--format",
            "json",
        ],
        &[],
    );
    run.expect_code(1);
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("diff --format json: {e}:\n{}", run.stdout));
    let found = v.as_array().into_iter().flatten().any(|d| {
        d["kind"] == "firewall"
            && d["field"] == "rule 1"
            && d["saved"] == "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT"
            && d["live"] == "-A INPUT -p tcp -m tcp --dport 8081 -j ACCEPT"
    });
    assert!(found, "no structured rule change in:\n{}", run.stdout);
}

#[test]
fn a_mac_change_is_one_short_line_in_diff_and_in_restore_conflicts() {
    require_root();
    let host = TestNs::host();
    let a = TestNs::new("mac");
    a.ip(&[
        "link",
        "add",
        "veth0",
        "type",
        "veth",
        "peer",
        "name",
        "hv0",
        "netns",
        host.name(),
    ]);
    a.ip(&["link", "set", "veth0", "address", "02:00:00:00:00:01"]);
    let tmp = TempDir::new("mac");
    let images = tmp.join("images");
    checkpoint(&a, &images);
    a.ip(&["link", "set", "veth0", "address", "02:00:00:00:00:02"]);

    let run = crhook(
        None,
        &["diff", "--netns", &a.path_str(), "--images", &images],
        &[],
    );
    run.expect_code(1);
    let mac_lines: Vec<&str> = run.stdout.lines().filter(|l| l.contains("mac")).collect();
    assert_eq!(
        mac_lines,
        ["link veth0: mac 02:00:00:00:00:01 -> 02:00:00:00:00:02"],
        "diff:\n{}",
        run.stdout
    );
    for l in run.stdout.lines() {
        assert!(l.chars().count() <= 80, "line wider than a screen: {l}");
    }

    // restore refuses the link that differs, naming the field the same way, on one line
    let run = crhook(
        None,
        &["restore", "--netns", &a.path_str(), "--images", &images],
        &[],
    );
    run.expect_code(1);
    let err = crhook_tests::one_error_line(&run.stderr);
    assert!(
        err.contains(
            "link veth0: exists as veth with differences (saved -> live): mac 02:00:00:00:00:01 -> 02:00:00:00:00:02"
        ),
        "{err}"
    );
    assert!(
        !err.contains('{') && !err.contains("[2, 0,"),
        "raw record in: {err}"
    );
}

#[test]
fn show_text_lists_firewall_rules_in_rule_syntax_and_opens_with_a_summary() {
    require_root();
    let a = firewalled("shw");
    a.set_sysctl(&["core", "somaxconn"], "1024");
    let tmp = TempDir::new("shw");
    let images = tmp.join("images");
    checkpoint(&a, &images);

    let fw = format!("{images}/firewall.img");
    let run = crhook(None, &["show", &fw, "--format", "text"], &[]);
    run.expect_success();
    let out = &run.stdout;
    for want in [
        "iptables-nft table filter (nf_tables ip filter, as iptables-save prints it):",
        "-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT",
        "-A INPUT -s 10.1.2.3/32 -j DROP",
        "nft table inet web (nf_tables inet web, as nft prints it):",
        "table inet web {",
        "tcp dport 8080 accept",
        "elements = { 192.0.2.1 }",
    ] {
        assert!(out.contains(want), "show lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("rules:"), "payloads in hex:\n{out}");

    let run = crhook(None, &["show", &fw], &[]);
    run.expect_success();
    let v: Value = serde_json::from_str(&run.stdout).expect("show JSON");
    let tables = v["entries"][0]["tables"].as_array().expect("tables");
    let filter = tables
        .iter()
        .find(|t| t["name"] == "filter")
        .expect("table filter");
    assert_eq!(filter["rendered"]["syntax"], "iptables-save");
    assert!(
        filter["rendered"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("-A INPUT -p tcp -m tcp --dport 8080 -j ACCEPT")),
        "{filter}"
    );
    assert!(
        filter["rules"].is_array(),
        "the structured form stays: {filter}"
    );

    let run = crhook(None, &["show", &images, "--format", "text"], &[]);
    run.expect_success();
    let out = &run.stdout;
    assert!(
        out.starts_with(&format!("crhook image directory {images}\n")),
        "{out}"
    );
    let summary = &out[..out.find("inventory.img:").expect("details")];
    for want in [
        "captured",
        "links",
        "iptables-nft table filter",
        "nft table inet web",
        "core/somaxconn",
        "1024 (default 4096)",
        "tun files",
    ] {
        assert!(summary.contains(want), "summary lacks {want:?}:\n{summary}");
    }
    assert!(
        summary.contains("1 changed from the kernel defaults"),
        "only somaxconn was changed:\n{summary}"
    );
}

#[test]
fn completion_scripts_and_manual_pages_parse() {
    let tmp = TempDir::new("docs");
    let script = tmp.join("crhook.bash");
    let run = crhook(None, &["completions", "bash"], &[]);
    run.expect_success();
    std::fs::write(&script, &run.stdout).expect("write completion script");
    let out = Command::new(tool("bash"))
        .args(["-n", &script])
        .output()
        .expect("bash -n");
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(run.stdout.contains("checkpoint") && run.stdout.contains("--images"));
    for shell in ["zsh", "fish"] {
        let run = crhook(None, &["completions", shell], &[]);
        run.expect_success();
        assert!(run.stdout.contains("crhook"), "{shell}: {}", run.stdout);
    }

    let pages = [
        "",
        "checkpoint",
        "restore",
        "diff",
        "show",
        "lock",
        "unlock",
        "recover",
        "hook",
        "completions",
        "man",
    ];
    for page in pages {
        let args: Vec<&str> = if page.is_empty() {
            vec!["man"]
        } else {
            vec!["man", page]
        };
        let run = crhook(None, &args, &[]);
        run.expect_success();
        let file = tmp.join(&format!("crhook-{page}.1"));
        std::fs::write(&file, &run.stdout).expect("write page");
        let out = Command::new(tool("man"))
            .args(["--warnings", "-l", &file])
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .expect("man -l");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "man -l crhook {page}: {stderr}"
        );
        assert!(text.contains("SYNOPSIS"), "crhook {page}: {text}");
    }
}

/// Runs `crhook ARGS` on a pseudo-terminal (`script`), with the progress delay at 0 so the
/// outcome does not depend on the machine's speed; returns all it wrote there.
fn on_a_terminal(args: &[&str]) -> String {
    let mut cmdline = crhook_bin().display().to_string();
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(a);
    }
    let out = Command::new(tool("script"))
        .args(["-qec", &cmdline, "/dev/null"])
        .env("CRHOOK_PROGRESS_DELAY_MS", "0")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn progress_shows_on_a_terminal_and_not_in_a_pipe() {
    require_root();
    let a = firewalled("prg");
    let b = TestNs::new("prg2");
    let tmp = TempDir::new("prg");
    let images = tmp.join("images");
    let (ns, ns2) = (a.path_str(), b.path_str());

    let tty = on_a_terminal(&["checkpoint", "--netns", &ns, "--images", &images]);
    assert!(
        tty.contains("checkpoint") && tty.contains("capture"),
        "no progress on the terminal: {tty:?}"
    );
    let tty = on_a_terminal(&["restore", "--netns", &ns2, "--images", &images]);
    assert!(
        tty.contains("restore"),
        "no progress on the terminal: {tty:?}"
    );
    let tty = on_a_terminal(&["diff", "--netns", &ns2, "--images", &images]);
    assert!(tty.contains("diff"), "no progress on the terminal: {tty:?}");

    let quiet = tmp.join("quiet");
    let tty = on_a_terminal(&["checkpoint", "-q", "--netns", &ns, "--images", &quiet]);
    assert!(tty.trim().is_empty(), "--quiet printed: {tty:?}");

    let piped = tmp.join("piped");
    let env = [("CRHOOK_PROGRESS_DELAY_MS", "0"), ("TERM", "xterm")];
    let run = crhook(
        None,
        &["checkpoint", "--netns", &ns, "--images", &piped],
        &env,
    );
    run.expect_success();
    assert!(
        run.stderr.is_empty(),
        "progress in a pipe: {:?}",
        run.stderr
    );
    let run = crhook(None, &["diff", "--netns", &ns2, "--images", &piped], &env);
    run.expect_success();
    assert!(run.stderr.is_empty() && run.stdout.is_empty(), "{run:?}");
}
