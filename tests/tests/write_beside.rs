//! A checkpoint writes the image files of the netlink families (and the sysctls) while the
//! firewall is still being dumped. A `CR_IPTABLES` command slow enough to be dumped last
//! shows it: it lists the image's temporary directory before it ends. Ending well, the image
//! is complete and equal to the namespace; failing, the checkpoint leaves nothing at the
//! image path, neither an image nor the temporary directory with the files written so far.
//! Needs root and a built `crhook`.

use std::path::Path;

use crhook_tests::{crhook, require_root, TempDir, TestNs};

fn small(tag: &str) -> TestNs {
    let ns = TestNs::new(tag);
    ns.ip_batch(
        "link set lo up\nlink add va type veth peer name vb\naddr add 10.61.0.1/24 dev va\nlink set va up\nlink set vb up\nroute add 10.62.0.0/16 via 10.61.0.2\n",
    );
    ns
}

/// A `CR_IPTABLES` save command that waits (up to 5 s) until `links.img` is in the temporary
/// directory of the image `images` in `dir`, records what that directory holds in
/// `dir/seen-FAMILY`, prints nothing and exits with `code` (restore and diff find no such
/// directory and go straight on).
fn slow_save(dir: &Path, images: &str, code: i32) -> String {
    let tmp = format!("{}/.{images}.crhook-new-*/", dir.display());
    let seen = format!("{}/seen-$CR_IPTABLES_FAMILY", dir.display());
    format!(
        "for i in $(seq 100); do ls -a {tmp} 2>/dev/null | grep -qx links.img && break; \
         sleep 0.05; done; ls -a {tmp} > {seen} 2>/dev/null; exit {code}"
    )
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
    let save = slow_save(tmp.path(), "images", 0);
    let target = ns.path_str();
    for extra in [&[][..], &["--lock"][..]] {
        let _ = std::fs::remove_dir_all(&images);
        let mut args = vec!["checkpoint", "--netns", &target, "--images", &images];
        args.extend_from_slice(extra);
        crhook(Some(&host), &args, &[("CR_IPTABLES", &save)]).expect_success();
        let during = seen(tmp.path());
        for f in ["links.img", "addresses.img", "routes.img"] {
            assert!(
                during.lines().any(|l| l == f),
                "checkpoint {extra:?}: {f} was not written while the firewall was dumped: {during}"
            );
        }
        // a locked checkpoint reads the sysctls after the unlock, after the firewall
        assert_eq!(
            during.lines().any(|l| l == "sysctls.img"),
            extra.is_empty(),
            "checkpoint {extra:?}: sysctls.img beside the firewall dump: {during}"
        );
        assert!(
            !during.lines().any(|l| l == "inventory.img"),
            "checkpoint {extra:?}: the inventory was written before the firewall: {during}"
        );
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
    let save = slow_save(tmp.path(), "images", 3);
    let target = ns.path_str();
    for extra in [&[][..], &["--lock"][..]] {
        let mut args = vec!["checkpoint", "--netns", &target, "--images", &images];
        args.extend_from_slice(extra);
        let run = crhook(Some(&host), &args, &[("CR_IPTABLES", &save)]);
        assert_ne!(run.code, Some(0), "checkpoint {extra:?} succeeded: {run:?}");
        assert!(
            run.stderr.contains("CR_IPTABLES") && run.stderr.contains("status 3"),
            "checkpoint {extra:?}: {}",
            run.stderr
        );
        let during = seen(tmp.path());
        assert!(
            during.lines().any(|l| l == "links.img"),
            "checkpoint {extra:?}: no file was written while the firewall was dumped: {during}"
        );
        let left: Vec<String> = names(tmp.path())
            .into_iter()
            .filter(|n| !n.starts_with("seen-"))
            .collect();
        assert!(
            left.is_empty(),
            "checkpoint {extra:?}: a failed checkpoint left {left:?}"
        );
        assert!(
            !ns.sh("/usr/sbin/nft list tables").contains("crhook-lock"),
            "checkpoint {extra:?}: the lock outlived the failed checkpoint"
        );
    }
}
