//! An unlocked checkpoint writes the image files of the netlink families and the sysctls
//! while the firewall is still being dumped; a locked one writes nothing until the unlock. A
//! `CR_IPTABLES` command slow enough to be dumped last shows it: it lists the image's
//! temporary directory before it ends. Ending well, the image is complete and equal to the
//! namespace; failing, the checkpoint leaves nothing at the image path, neither an image nor
//! the temporary directory with the files written so far, and no lock. Needs root and a
//! built `crhook`.

use std::path::Path;

use crhook_tests::{crhook, require_root, TempDir, TestNs};

fn small(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    ns.ip_batch(
        "link set lo up\nlink add va type veth peer name vb\naddr add 10.61.0.1/24 dev va\nlink set va up\nlink set vb up\nroute add 10.62.0.0/16 via 10.61.0.2\n",
    );
    ns
}

/// A `CR_IPTABLES` save command that waits until the temporary directory of the image
/// `images` in `dir` holds `files` image files (for at most 5 s; 0.3 s with `locked`, when none
/// should come), records what it holds in `dir/seen-FAMILY`, prints nothing and exits with
/// `code` (diff finds no such directory and goes straight on).
fn slow_save(dir: &Path, images: &str, files: usize, locked: bool, code: i32) -> String {
    let tmp = format!("{}/.{images}.crhook-new-*/", dir.display());
    let seen = format!("{}/seen-$CR_IPTABLES_FAMILY", dir.display());
    let tries = if locked { 6 } else { 100 };
    format!(
        "for i in $(seq {tries}); do n=$(ls -a {tmp} 2>/dev/null | grep -c '[.]img$'); \
         [ \"$n\" -ge {files} ] && break; sleep 0.05; done; \
         ls -a {tmp} > {seen} 2>/dev/null; exit {code}"
    )
}

/// The image files in a listing of the temporary directory.
fn files(listing: &str) -> Vec<&str> {
    listing.lines().filter(|l| l.ends_with(".img")).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn seen(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("seen-ipv4")).unwrap_or_default()
}

#[test]
fn files_written_beside_the_firewall_dump_make_a_complete_image() {
    require_root();
    let host = TestNs::host();
    let ns = small("wbok");
    let tmp = TempDir::new("wbok");
    let images = tmp.join("images");
    let target = ns.path_str();
    for locked in [false, true] {
        let _ = std::fs::remove_dir_all(&images);
        let save = slow_save(tmp.path(), "images", 8, locked, 0);
        let mut args = vec!["checkpoint", "--netns", &target, "--images", &images];
        if locked {
            args.push("--lock");
        }
        crhook(Some(&host), &args, &[("CR_IPTABLES", &save)]).expect_success();
        let during = seen(tmp.path());
        let written = files(&during);
        if locked {
            assert!(
                written.is_empty(),
                "a locked checkpoint wrote {written:?} before the unlock"
            );
        } else {
            let mut want = vec![
                "addresses.img",
                "links.img",
                "neighbours.img",
                "nexthops.img",
                "routes.img",
                "rules.img",
                "sysctls.img",
                "tc.img",
            ];
            want.sort_unstable();
            let mut got = written.clone();
            got.sort_unstable();
            assert_eq!(
                got, want,
                "files written while the firewall was dumped (the inventory, firewall and \
                 stats come after it)"
            );
        }
        crhook(
            Some(&host),
            &["diff", "--netns", &target, "--images", &images],
            &[("CR_IPTABLES", &save)],
        )
        .expect_success();
    }
    let files = names(Path::new(&images));
    for f in [
        "links.img",
        "addresses.img",
        "routes.img",
        "sysctls.img",
        "firewall.img",
        "stats-dump.img",
        "inventory.img",
        "seal.img",
    ] {
        assert!(files.iter().any(|n| n == f), "{f} missing: {files:?}");
    }
}

#[test]
fn a_firewall_failure_after_files_were_written_leaves_no_image() {
    require_root();
    let host = TestNs::host();
    let ns = small("wbfail");
    let tmp = TempDir::new("wbfail");
    let images = tmp.join("images");
    let target = ns.path_str();
    for locked in [false, true] {
        let save = slow_save(tmp.path(), "images", 1, locked, 3);
        let mut args = vec!["checkpoint", "--netns", &target, "--images", &images];
        if locked {
            args.push("--lock");
        }
        let run = crhook(Some(&host), &args, &[("CR_IPTABLES", &save)]);
        assert_ne!(
            run.code,
            Some(0),
            "checkpoint (locked: {locked}) succeeded: {run:?}"
        );
        assert!(
            run.stderr.contains("CR_IPTABLES") && run.stderr.contains("status 3"),
            "checkpoint (locked: {locked}): {}",
            run.stderr
        );
        let during = seen(tmp.path());
        assert_eq!(
            !files(&during).is_empty(),
            !locked,
            "checkpoint (locked: {locked}): files written while the firewall was dumped: {during}"
        );
        let left: Vec<String> = names(tmp.path())
            .into_iter()
            .filter(|n| !n.starts_with("seen-"))
            .collect();
        assert!(
            left.is_empty(),
            "checkpoint (locked: {locked}): a failed checkpoint left {left:?}"
        );
        assert!(
            !ns.sh("/usr/sbin/nft list tables").contains("crhook-lock"),
            "checkpoint (locked: {locked}): the lock outlived the failed checkpoint"
        );
    }
}
