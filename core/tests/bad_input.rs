//! Every bad input the reader rejects, each checking that the message names the file, the
//! offset (where there is one) and the problem.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use crhook_core::frame::{fix_checksum, Encoder};
use crhook_core::proto::{Inventory, Link};
use crhook_core::{
    decode_file, encode_file, encode_raw_file, read_file, read_file_with_limits, ImageDir,
    ImageError, Kind, Limits,
};

fn err_of<T: std::fmt::Debug>(r: Result<T, ImageError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn decode_links(bytes: &[u8]) -> Result<Vec<Link>, ImageError> {
    decode_file(
        Path::new("links.img"),
        Kind::Links,
        bytes,
        &Limits::default(),
    )
}

fn small_links() -> Vec<u8> {
    encode_file(
        Kind::Links,
        &[
            Link {
                ifindex: 1,
                name: "lo".into(),
                ..Default::default()
            },
            Link {
                ifindex: 2,
                name: "eth0".into(),
                mac: vec![2, 0, 0, 0, 0, 1],
                ..Default::default()
            },
        ],
    )
}

fn write_links(dir: &TempDir, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join("links.img");
    fs::write(&p, bytes).expect("write test file");
    p
}

#[test]
fn empty_file() {
    let t = TempDir::new("empty");
    let p = write_links(&t, b"");
    let msg = err_of(read_file::<Link>(&p, Kind::Links));
    assert_eq!(msg, format!("read {}: offset 0: empty file", p.display()));
}

#[test]
fn truncated_file_missing_its_trailer() {
    let t = TempDir::new("trunc");
    let full = small_links();
    let p = write_links(&t, &full[..full.len() - 5]);
    let msg = err_of(read_file::<Link>(&p, Kind::Links));
    let at = full.len() - 5 - 16;
    assert!(
        msg.starts_with(&format!(
            "read {}: offset {at}: truncated: no trailer",
            p.display()
        )),
        "{msg}"
    );
}

#[test]
fn truncated_inside_the_header() {
    let msg = err_of(decode_links(&small_links()[..6]));
    assert_eq!(
        msg,
        "read links.img: offset 6: truncated: file is 6 bytes, the header needs 12"
    );
    let msg = err_of(decode_links(&small_links()[..20]));
    assert_eq!(
        msg,
        "read links.img: offset 20: truncated: file is 20 bytes, header and trailer need 28"
    );
}

#[test]
fn wrong_crhook_magic() {
    let mut b = small_links();
    b[..4].copy_from_slice(b"\x7fELF");
    let msg = err_of(decode_links(&b));
    assert_eq!(
        msg,
        "read links.img: offset 0: magic 0x464c457f is not the crhook magic 0x48524389: not a crhook image"
    );
}

#[test]
fn unknown_kind_magic() {
    let mut b = small_links();
    b[4..8].copy_from_slice(b"XXXX");
    let msg = err_of(decode_links(&b));
    assert_eq!(
        msg,
        "read links.img: offset 4: unknown kind magic 0x58585858"
    );
}

#[test]
fn file_whose_kind_does_not_match_its_name() {
    let t = TempDir::new("kind");
    let addr = encode_file(Kind::Addresses, &addresses());
    let p = write_links(&t, &addr);
    let msg = err_of(read_file::<Link>(&p, Kind::Links));
    assert_eq!(
        msg,
        format!(
            "read {}: offset 4: file holds addresses (magic 0x52444441) but links (magic 0x4b4e494c) was expected (kind magic)",
            p.display()
        )
    );
    // Asking for another kind than the name says is refused before reading.
    let p = write_links(&t, &small_links());
    let msg = err_of(read_file::<Link>(&p, Kind::Routes));
    assert_eq!(
        msg,
        format!(
            "read {}: named for links, but routes was requested (a routes image is named routes.img)",
            p.display()
        )
    );
}

#[test]
fn flipped_bit_anywhere_is_an_error_never_a_panic() {
    let good = small_links();
    assert!(decode_links(&good).is_ok());
    for i in 0..good.len() {
        for bit in 0..8 {
            let mut b = good.clone();
            b[i] ^= 1 << bit;
            let r = std::panic::catch_unwind(|| decode_links(&b));
            let msg = match r {
                Err(_) => panic!("panic at byte {i} bit {bit}"),
                Ok(Ok(_)) => panic!("byte {i} bit {bit} flipped and the file still decoded"),
                Ok(Err(e)) => e.to_string(),
            };
            assert!(
                msg.starts_with("read links.img: offset "),
                "byte {i}: {msg}"
            );
        }
    }
}

#[test]
fn flipped_bit_names_the_checksum() {
    let mut b = small_links();
    b[20] ^= 0x10;
    let msg = err_of(decode_links(&b));
    let at = b.len() - 4;
    assert!(
        msg.starts_with(&format!(
            "read links.img: offset {at}: checksum mismatch: stored crc32c 0x"
        )),
        "{msg}"
    );
}

#[test]
fn entry_length_beyond_the_limit() {
    let mut b = encode_raw_file(Kind::Links, &[b"\x08\x01"]);
    b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    fix_checksum(&mut b);
    let msg = err_of(decode_links(&b));
    assert_eq!(
        msg,
        "read links.img: offset 12: entry length 4294967295 exceeds limit 67108864"
    );
    let small = Limits {
        max_entry: 1,
        ..Limits::default()
    };
    let b = small_links();
    let msg = err_of(decode_file::<Link>(
        Path::new("links.img"),
        Kind::Links,
        &b,
        &small,
    ));
    assert!(
        msg.starts_with("read links.img: offset 12: entry length ")
            && msg.ends_with("exceeds limit 1"),
        "{msg}"
    );
}

#[test]
fn entry_length_past_end_of_file() {
    let mut b = encode_raw_file(Kind::Links, &[b"\x08\x01"]);
    b[12..16].copy_from_slice(&1000u32.to_le_bytes());
    fix_checksum(&mut b);
    let msg = err_of(decode_links(&b));
    assert_eq!(
        msg,
        "read links.img: offset 12: truncated: entry 0 length 1000 runs past the end of the entries (2 bytes left before offset 18)"
    );
}

#[test]
fn entry_count_and_file_size_limits() {
    let b = small_links();
    let few = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    let msg = err_of(decode_file::<Link>(
        Path::new("links.img"),
        Kind::Links,
        &b,
        &few,
    ));
    let at = b.len() - 12;
    assert_eq!(
        msg,
        format!("read links.img: offset {at}: entry count 2 exceeds limit 1")
    );
    let tiny = Limits {
        max_file: 10,
        ..Limits::default()
    };
    let t = TempDir::new("limit");
    let p = write_links(&t, &b);
    let msg = err_of(read_file_with_limits::<Link>(&p, Kind::Links, &tiny));
    assert_eq!(
        msg,
        format!(
            "read {}: offset 0: file size {} exceeds limit 10",
            p.display(),
            b.len()
        )
    );
}

#[test]
fn entry_that_is_not_protobuf() {
    let b = encode_raw_file(Kind::Links, &[b"\x08\x01", b"\xff\xff\xff"]);
    let r = decode_links(&b);
    let e = r.expect_err("decode error");
    assert_eq!(
        e.to_string(),
        "read links.img: offset 18: entry 1: invalid crhook.Link"
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn future_major_version_is_refused_naming_both() {
    let mut e = Encoder::with_version(Kind::Links, (3, 0));
    let _ = e.push_raw(b"");
    let msg = err_of(decode_links(&e.finish()));
    assert_eq!(
        msg,
        "read links.img: offset 8: format 3.0 is newer than this crhook reads (2.0)"
    );
}

#[test]
fn newer_minor_version_is_read() {
    let mut e = Encoder::with_version(Kind::Links, (1, 7));
    let _ = e.push_raw(b"\x08\x05");
    let links = decode_links(&e.finish()).expect("minor 1.7 reads");
    assert_eq!(links[0].ifindex, 5);
}

#[test]
fn major_zero_was_never_written() {
    let msg = err_of(decode_links(
        &Encoder::with_version(Kind::Links, (0, 9)).finish(),
    ));
    assert_eq!(
        msg,
        "read links.img: offset 8: format 0.9 was never written by crhook"
    );
}

#[test]
fn missing_inventory() {
    let t = TempDir::new("noinv");
    write_links(&t, &small_links());
    let msg = err_of(ImageDir::open(t.path()));
    assert_eq!(
        msg,
        format!(
            "open image {}: no inventory.img: not a crhook image, or its checkpoint did not finish",
            t.path().display()
        )
    );
}

#[test]
fn file_listed_but_absent() {
    let t = TempDir::new("absent");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    fs::remove_file(dir.join("routes.img")).expect("remove");
    let msg = err_of(ImageDir::open(&dir));
    assert_eq!(
        msg,
        format!(
            "verify {}: listed in inventory.img but absent",
            dir.join("routes.img").display()
        )
    );
}

#[test]
fn size_mismatch_vs_inventory() {
    let t = TempDir::new("size");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    let p = dir.join("links.img");
    let mut b = fs::read(&p).expect("read");
    let old = b.len();
    b.extend_from_slice(b"junk");
    fs::write(&p, &b).expect("write");
    let msg = err_of(ImageDir::open(&dir));
    assert_eq!(
        msg,
        format!(
            "verify {}: size {} bytes does not match inventory ({old} bytes)",
            p.display(),
            old + 4
        )
    );
}

#[test]
fn same_size_other_content_fails_the_inventory_checksum() {
    let t = TempDir::new("crc");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    let p = dir.join("sysctls.img");
    let mut s = sysctls();
    s[0].value = "0".into();
    fs::write(&p, encode_file(Kind::Sysctls, &s)).expect("write");
    let msg = err_of(ImageDir::open(&dir));
    assert!(
        msg.starts_with(&format!("verify {}: crc32c 0x", p.display()))
            && msg.contains("does not match inventory (0x"),
        "{msg}"
    );
}

fn rewrite_inventory(dir: &Path, f: impl FnOnce(&mut Inventory)) {
    let p = dir.join("inventory.img");
    let mut inv: Vec<Inventory> = read_file(&p, Kind::Inventory).expect("inventory");
    f(&mut inv[0]);
    fs::write(&p, encode_file(Kind::Inventory, &inv)).expect("write inventory");
}

#[test]
fn entry_count_mismatch_vs_inventory() {
    let t = TempDir::new("count");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    rewrite_inventory(&dir, |inv| inv.files[0].entries = 9);
    let msg = err_of(ImageDir::open(&dir));
    assert_eq!(
        msg,
        format!(
            "verify {}: holds 5 entries, inventory says 9",
            dir.join("links.img").display()
        )
    );
}

#[test]
fn inventory_of_a_future_major() {
    let t = TempDir::new("invmajor");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    rewrite_inventory(&dir, |inv| inv.format_major = 3);
    let msg = err_of(ImageDir::open(&dir));
    assert_eq!(
        msg,
        format!(
            "read {}: offset 12: format 3.3 is newer than this crhook reads (2.0)",
            dir.join("inventory.img").display()
        )
    );
}

#[test]
fn inventory_naming_a_path_outside_the_directory() {
    let t = TempDir::new("escape");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    rewrite_inventory(&dir, |inv| inv.files[0].name = "../links.img".into());
    let msg = err_of(ImageDir::open(&dir));
    assert_eq!(
        msg,
        format!(
            "verify {}: lists \"../links.img\", which is not a plain image file name",
            dir.join("inventory.img").display()
        )
    );
}

#[test]
fn unknown_kind_from_a_newer_minor_is_checked_then_skipped() {
    let t = TempDir::new("future-kind");
    let dir = write_fixture(&t.join("img")).expect("fixture");
    let extra = b"future bytes";
    fs::write(dir.join("future.img"), extra).expect("write");
    rewrite_inventory(&dir, |inv| {
        inv.format_minor = 3;
        inv.files.push(crhook_core::proto::InventoryFile {
            name: "future.img".into(),
            kind: "future".into(),
            size: extra.len() as u64,
            crc32c: crhook_core::frame::body_crc(extra),
            entries: 1,
            ..Default::default()
        });
    });
    let image = ImageDir::open(&dir).expect("open newer minor");
    assert_eq!(image.unknown_files().len(), 1);
    assert_eq!(image.read::<Link>(Kind::Links).expect("links").len(), 5);
}
