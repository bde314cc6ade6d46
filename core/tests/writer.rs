//! ImageWriter crash safety: nothing appears at the final path before finish, a dropped writer
//! leaves nothing behind, foreign directories are refused untouched, old images are replaced.

mod common;

use std::fs;

use common::*;
use crhook_core::proto::{Link, Stats};
use crhook_core::{read_file, write_file, ImageDir, ImageWriter, Kind};

fn one_link(name: &str) -> Vec<Link> {
    vec![Link {
        ifindex: 1,
        name: name.into(),
        ..Default::default()
    }]
}

#[test]
fn dropped_writer_leaves_no_directory() {
    let t = TempDir::new("drop");
    let fin = t.join("img");
    {
        let mut w = ImageWriter::create(&fin).expect("create");
        w.write(Kind::Links, &one_link("lo")).expect("write");
        // the file itself is written on a thread of its own (it may or may not be there
        // yet): the drop below waits for that thread before removing the directory
        assert!(w.temp_dir().is_dir());
        assert!(!fin.exists(), "nothing at the final path before finish");
        assert!(w.bytes_written() > 0);
    }
    assert!(!fin.exists());
    assert_eq!(list(t.path()), Vec::<String>::new(), "temp dir removed");
}

#[test]
fn finished_image_opens_and_leaves_no_temp() {
    let t = TempDir::new("finish");
    let fin = t.join("img");
    let mut w = ImageWriter::create(&fin).expect("create");
    w.write(Kind::Links, &one_link("lo")).expect("write");
    w.write_raw(Kind::Firewall, &[]).expect("write raw");
    let out = w.finish(source(), vec!["w".into()]).expect("finish");
    assert_eq!(out, fin);
    assert_eq!(list(t.path()), ["img"]);
    assert_eq!(list(&fin), ["firewall.img", "inventory.img", "links.img"]);
    let d = ImageDir::open(&fin).expect("open");
    assert!(d.has(Kind::Links) && d.has(Kind::Firewall) && !d.has(Kind::Routes));
    assert_eq!(d.inventory().warnings, ["w"]);
    assert_eq!(d.inventory().crhook_version, env!("CARGO_PKG_VERSION"));
    assert!(d
        .read::<crhook_core::proto::Route>(Kind::Routes)
        .expect("routes")
        .is_empty());
}

#[test]
fn foreign_directory_is_refused_untouched() {
    let t = TempDir::new("foreign");
    let fin = t.join("img");
    fs::create_dir(&fin).expect("mkdir");
    fs::write(fin.join("notes.txt"), b"mine").expect("write");
    let msg = ImageWriter::create(&fin).err().map(|e| e.to_string());
    assert_eq!(
        msg,
        Some(format!(
            "create image {}: holds \"notes.txt\", which crhook did not write; refusing to replace a directory that is not a crhook image",
            fin.display()
        ))
    );
    assert_eq!(list(&fin), ["notes.txt"]);
    assert_eq!(fs::read(fin.join("notes.txt")).expect("read"), b"mine");
    assert_eq!(list(t.path()), ["img"], "no temp dir left");
}

#[test]
fn image_dir_with_a_foreign_file_is_refused_too() {
    let t = TempDir::new("mixed");
    let fin = write_fixture(&t.join("img")).expect("fixture");
    fs::write(fin.join("notes.txt"), b"mine").expect("write");
    assert!(ImageWriter::create(&fin).is_err());
    assert!(fin.join("notes.txt").is_file() && fin.join("links.img").is_file());
}

#[test]
fn foreign_files_appearing_before_finish_are_refused_untouched() {
    let t = TempDir::new("race");
    let fin = t.join("img");
    let mut w = ImageWriter::create(&fin).expect("create");
    w.write(Kind::Links, &one_link("lo")).expect("write");
    fs::create_dir(&fin).expect("mkdir");
    fs::write(fin.join("data.bin"), b"x").expect("write");
    let r = w.finish(source(), vec![]);
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with(&format!(
            "replace image {}: holds \"data.bin\"",
            fin.display()
        )),
        "{msg}"
    );
    assert_eq!(list(&fin), ["data.bin"]);
    assert_eq!(list(t.path()), ["img"], "temp dir removed");
}

#[test]
fn a_file_at_the_final_path_is_refused() {
    let t = TempDir::new("file");
    let fin = t.join("img");
    fs::write(&fin, b"x").expect("write");
    let msg = ImageWriter::create(&fin)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("exists and is not a directory"), "{msg}");
    assert_eq!(fs::read(&fin).expect("read"), b"x");
}

#[test]
fn existing_image_is_replaced_whole() {
    let t = TempDir::new("replace");
    let fin = write_fixture(&t.join("img")).expect("fixture");
    assert!(fin.join("routes.img").is_file() && fin.join("stats-restore.img").is_file());
    let mut w = ImageWriter::create(&fin).expect("create over an image");
    w.write(Kind::Links, &one_link("new0")).expect("write");
    w.finish(source(), vec![]).expect("finish");
    assert_eq!(list(&fin), ["inventory.img", "links.img"]);
    let d = ImageDir::open(&fin).expect("open");
    assert_eq!(d.read::<Link>(Kind::Links).expect("links")[0].name, "new0");
    assert_eq!(list(t.path()), ["img"], "old image and temp dir gone");
}

#[test]
fn empty_existing_directory_is_used() {
    let t = TempDir::new("emptydir");
    let fin = t.join("img");
    fs::create_dir(&fin).expect("mkdir");
    let mut w = ImageWriter::create(&fin).expect("create");
    w.write(Kind::Links, &one_link("lo")).expect("write");
    w.finish(source(), vec![]).expect("finish");
    assert_eq!(list(&fin), ["inventory.img", "links.img"]);
}

#[test]
fn missing_parents_are_created() {
    let t = TempDir::new("parents");
    let fin = t.join("a/b/img");
    let w = ImageWriter::create(&fin).expect("create");
    w.finish(source(), vec![]).expect("finish");
    assert!(ImageDir::open(&fin).is_ok());
}

#[test]
fn inventory_and_repeated_kinds_are_refused() {
    let t = TempDir::new("usage");
    let mut w = ImageWriter::create(&t.join("img")).expect("create");
    let inv = w
        .write::<Link>(Kind::Inventory, &[])
        .err()
        .map(|e| e.to_string());
    assert!(inv.is_some_and(|m| m.ends_with("the inventory is written by finish(), not write()")));
    w.write(Kind::Links, &one_link("a")).expect("first");
    let again = w
        .write(Kind::Links, &one_link("b"))
        .err()
        .map(|e| e.to_string());
    assert!(again.is_some_and(|m| m.ends_with("links was already written to this image")));
}

#[test]
fn stats_restore_written_later_is_tolerated() {
    let t = TempDir::new("stats");
    let mut w = ImageWriter::create(&t.join("img")).expect("create");
    w.write(Kind::Links, &one_link("lo")).expect("write");
    let fin = w.finish(source(), vec![]).expect("finish");
    let p = fin.join("stats-restore.img");
    let n = write_file(&p, Kind::StatsRestore, &stats(7)).expect("write stats");
    assert_eq!(n, fs::metadata(&p).expect("stat").len());
    let d = ImageDir::open(&fin).expect("open with stats-restore.img present");
    assert!(!d.has(Kind::StatsRestore));
    let back: Vec<Stats> = read_file(&p, Kind::StatsRestore).expect("read");
    assert_eq!(back[0].total_us, 7);
    // An image with stats-restore.img is still an image the next checkpoint may replace.
    let w = ImageWriter::create(&fin).expect("replace");
    w.finish(source(), vec![]).expect("finish");
    assert_eq!(list(&fin), ["inventory.img"]);
}

#[test]
fn a_symlink_at_the_final_path_is_refused_not_followed() {
    let t = TempDir::new("link");
    let elsewhere = t.join("elsewhere");
    fs::create_dir(&elsewhere).expect("mkdir");
    fs::write(elsewhere.join("keep"), b"x").expect("write");
    let fin = t.join("img");
    std::os::unix::fs::symlink(&elsewhere, &fin).expect("symlink");
    let msg = ImageWriter::create(&fin)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains("exists and is not a directory (symlinks are not followed)"),
        "{msg}"
    );
    assert!(fs::symlink_metadata(&fin)
        .expect("stat")
        .file_type()
        .is_symlink());
    assert_eq!(list(&elsewhere), ["keep"]);
    assert_eq!(list(t.path()), ["elsewhere", "img"], "no temp dir left");
}

#[test]
fn sealed_with_a_key_the_image_is_trusted_by_that_key_only() {
    let t = TempDir::new("sealed");
    let key = crhook_core::HostKey::from_bytes([9; 32]);
    let mut w = ImageWriter::create(&t.join("img")).expect("create");
    // random, unpredictable temp names: nothing derived from the pid
    let tmp = w.temp_dir();
    let tmp_name = tmp.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(tmp_name.starts_with(".img.crhook-new-"), "{tmp_name}");
    assert!(
        !tmp_name.contains(&std::process::id().to_string()),
        "{tmp_name}"
    );
    w.set_key(key.clone());
    w.write(Kind::Links, &one_link("lo")).expect("write");
    let fin = w.finish(source(), vec![]).expect("finish");
    assert_eq!(list(&fin), ["inventory.img", "links.img", "seal.img"]);
    let limits = crhook_core::Limits::default();
    let d = ImageDir::open_with(&fin, Some(&key), &limits).expect("open");
    assert_eq!(d.trust(), &crhook_core::Trust::Sealed { key_id: key.id() });
    assert!(d.require_sealed("restore").is_ok());
    assert_eq!(d.inventory().files[0].sha256.len(), 32);
    let other = crhook_core::HostKey::from_bytes([8; 32]);
    let d = ImageDir::open_with(&fin, Some(&other), &limits).expect("open");
    assert_eq!(d.trust().name(), "foreign-key");
    // an image with seal.img is still one a later checkpoint may replace
    let w = ImageWriter::create(&fin).expect("replace");
    w.finish(source(), vec![]).expect("finish");
    assert_eq!(list(&fin), ["inventory.img"]);
}
