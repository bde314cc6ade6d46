//! The hostile-image corpus: every way an image has been (or could be) turned against the root
//! process that restores it, each built by [`build`] from a valid, sealed image (CRCs and
//! inventory kept consistent, so the hostile part is what gets tested), each refused by name
//! with nothing in the image directory changed, without hanging and without allocating what
//! the image asks for (a thread-local allocation counter watches the reading thread).
//!
//! Cases that are not about the seal are sealed with the host key, so the refusal comes from
//! the file or budget checks and not from trust. Seal cases end in a [`Trust`] verdict, and
//! `require_sealed` (what restore calls before placing anything outside the target) refuses
//! them naming the verdict.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "hostile/forge.rs"]
mod forge;
#[path = "hostile/meter.rs"]
mod meter;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use crhook_core::frame::Encoder;
use crhook_core::proto::{
    Address, ExtFile, FirewallRuleset, Inventory, Link, Neighbour, NexthopObject, Route, Rule,
    SkippedFile, Stats, Sysctl, TunFile,
};
use crhook_core::{
    encode_file, write_file, HostKey, ImageDir, ImageError, ImageWriter, Kind, Limits, Trust,
};
use forge::swap_alias;
use meter::metered;

// ---- the corpus ---------------------------------------------------------------------------

fn host_key() -> HostKey {
    HostKey::from_bytes([42; 32])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    InventorySymlinkToDevZero,
    InventorySymlinkToAValidInventory,
    InventoryFifo,
    InventoryCharDevice,
    ListedFileSymlinkToDevZero,
    ListedFileFifo,
    SealSymlink,
    ImageDirectorySymlink,
    EntryCountOverLimit,
    EntriesOverMemory,
    RepeatedFieldsOverMemory,
    RepeatedElementsOverLimit,
    InventoryHugeRepeatedField,
    ProtobufGroup,
    WrongSeal,
    ForeignKey,
    MissingSeal,
    InventoryEditedAfterSealing,
    FileSwappedSameSizeAndCrc,
    SealGarbage,
}

/// What must happen: opening or reading fails with an error containing the text (`{dir}`
/// stands for the image directory), or the image reads with this verdict, which
/// `require_sealed` refuses.
enum Want {
    Refused(&'static str),
    Verdict(&'static str, &'static str),
}

fn want(case: Case) -> Want {
    use Case::*;
    use Want::*;
    match case {
        InventorySymlinkToDevZero | InventorySymlinkToAValidInventory => {
            Refused("open {dir}/inventory.img: is a symlink; image files are never followed")
        }
        InventoryFifo => {
            Refused("open {dir}/inventory.img: is a fifo, not a regular file; refusing it")
        }
        InventoryCharDevice => Refused(
            "open {dir}/inventory.img: is a character device, not a regular file; refusing it",
        ),
        ListedFileSymlinkToDevZero => {
            Refused("open {dir}/links.img: is a symlink; image files are never followed")
        }
        ListedFileFifo => {
            Refused("open {dir}/routes.img: is a fifo, not a regular file; refusing it")
        }
        SealSymlink => Refused("open {dir}/seal.img: is a symlink; image files are never followed"),
        ImageDirectorySymlink => {
            Refused("open image {dir}: is a symlink; name the image directory itself")
        }
        EntryCountOverLimit => Refused(
            "read {dir}/links.img: offset 16000020: entry count 4000001 exceeds limit 4000000",
        ),
        // {links}: the file's 4,000,028 bytes, then a million Links and the Vec's malloc header
        EntriesOverMemory => Refused(
            "read {dir}/links.img: offset 4000016: decoded memory {links} exceeds limit 536870912",
        ),
        RepeatedFieldsOverMemory => Refused("read {dir}/routes.img: offset 12: decoded memory"),
        RepeatedElementsOverLimit => {
            // the entry itself counts as one element
            Refused("read {dir}/sysctls.img: offset 12: repeated elements 16000002 exceeds limit 16000000")
        }
        InventoryHugeRepeatedField => {
            // the inventory, its 13 files, its one warning and the 16,000,001 added
            Refused("read {dir}/inventory.img: offset 12: repeated elements 16000016 exceeds limit 16000000")
        }
        ProtobufGroup => Refused(
            "read {dir}/links.img: offset 12: entry 0: protobuf groups, which crhook never writes",
        ),
        WrongSeal => Verdict(
            "bad-seal",
            "image seal does not verify: the MAC of inventory.img does not match",
        ),
        ForeignKey => Verdict(
            "foreign-key",
            "image sealed with key 4bb06f8e4e3a7715, which this host does not hold",
        ),
        MissingSeal => Verdict("unsealed", "image not sealed (no seal.img)"),
        InventoryEditedAfterSealing => Verdict(
            "bad-seal",
            "image seal does not verify: the MAC of inventory.img does not match",
        ),
        FileSwappedSameSizeAndCrc => Verdict(
            "bad-seal",
            "image seal does not verify: links.img: sha256 does not match the sealed inventory",
        ),
        SealGarbage => Verdict(
            "bad-seal",
            "image seal does not verify: read {dir}/seal.img: offset 0: magic",
        ),
    }
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid path string for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo {}", p.display());
}

fn mknod_dev_zero(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid path string; makedev(1, 5) is /dev/zero's number.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 5)) };
    assert_eq!(rc, 0, "mknod {} (needs root)", p.display());
}

fn replace(p: &Path, f: impl FnOnce(&Path)) {
    fs::remove_file(p).unwrap();
    f(p);
}

/// A sealed image holding only `kind`, whose entries are the raw `entries` (framed, counted
/// and listed correctly: the inventory and the seal vouch for them).
fn raw_image(dir: &Path, kind: Kind, entries: &[&[u8]]) -> PathBuf {
    let mut w = ImageWriter::create(dir).unwrap();
    w.set_key(host_key());
    w.write_raw(kind, entries).unwrap();
    w.finish(source(), vec![]).unwrap()
}

fn rewrite_inventory(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let p = dir.join("inventory.img");
    let inv: Vec<Inventory> = crhook_core::read_file(&p, Kind::Inventory).unwrap();
    let mut bytes = encode_file(Kind::Inventory, &inv);
    edit(&mut bytes);
    fs::write(&p, bytes).unwrap();
}

/// Builds `case` under `base`; returns the path to hand to `ImageDir::open_with`.
fn build(case: Case, base: &Path) -> PathBuf {
    use Case::*;
    let dir = base.join("img");
    let sealed = || write_fixture_with(&dir, Some(host_key())).unwrap();
    match case {
        InventorySymlinkToDevZero => {
            let d = sealed();
            replace(&d.join("inventory.img"), |p| {
                std::os::unix::fs::symlink("/dev/zero", p).unwrap()
            });
        }
        InventorySymlinkToAValidInventory => {
            let other = write_fixture_with(&base.join("other"), Some(host_key())).unwrap();
            let d = sealed();
            let target = other.join("inventory.img");
            replace(&d.join("inventory.img"), |p| {
                std::os::unix::fs::symlink(&target, p).unwrap()
            });
        }
        InventoryFifo => replace(&sealed().join("inventory.img"), mkfifo),
        InventoryCharDevice => replace(&sealed().join("inventory.img"), mknod_dev_zero),
        ListedFileSymlinkToDevZero => replace(&sealed().join("links.img"), |p| {
            std::os::unix::fs::symlink("/dev/zero", p).unwrap()
        }),
        ListedFileFifo => replace(&sealed().join("routes.img"), mkfifo),
        SealSymlink => {
            let other = write_fixture_with(&base.join("other"), Some(host_key())).unwrap();
            let target = other.join("seal.img");
            replace(&sealed().join("seal.img"), |p| {
                std::os::unix::fs::symlink(&target, p).unwrap()
            });
        }
        ImageDirectorySymlink => {
            let real = write_fixture_with(&base.join("real"), Some(host_key())).unwrap();
            std::os::unix::fs::symlink(&real, &dir).unwrap();
        }
        EntryCountOverLimit => {
            // 4,000,001 empty entries: 4 bytes each, every one a valid (empty) Link
            let empty: Vec<&[u8]> = vec![b""; 4_000_001];
            raw_image(&dir, Kind::Links, &empty);
        }
        EntriesOverMemory => {
            // 4 MB of empty entries, each a 760-byte Link once decoded
            let empty: Vec<&[u8]> = vec![b""; 1_000_000];
            raw_image(&dir, Kind::Links, &empty);
        }
        RepeatedFieldsOverMemory => {
            // one route of 8 million empty multipath elements: 3 bytes each on disk, a
            // 120-byte NextHop each in memory
            let one: &[u8] = &[0x8a, 0x01, 0x00];
            raw_image(&dir, Kind::Routes, &[&one.repeat(8_000_000)]);
        }
        RepeatedElementsOverLimit => {
            // a sysctl whose path has 16,000,001 empty components
            raw_image(&dir, Kind::Sysctls, &[&[0x0a, 0x00].repeat(16_000_001)]);
        }
        InventoryHugeRepeatedField => {
            let d = sealed();
            // 16,000,001 empty warnings appended to the one inventory entry
            rewrite_inventory(&d, |b| {
                let entry_len = u32::from_le_bytes(b[12..16].try_into().unwrap()) as usize;
                let mut payload = b[16..16 + entry_len].to_vec();
                payload.extend([0x42, 0x00].repeat(16_000_001));
                let mut e = Encoder::new(Kind::Inventory);
                e.push_raw(&payload).unwrap();
                *b = e.finish();
            });
        }
        ProtobufGroup => {
            // field 99 as a start group / end group pair: crhook never writes groups
            raw_image(&dir, Kind::Links, &[&[0x9b, 0x06, 0x9c, 0x06]]);
        }
        WrongSeal => {
            let d = sealed();
            let seal: Vec<crhook_core::proto::Seal> =
                crhook_core::read_file(&d.join("seal.img"), Kind::Seal).unwrap();
            let mut s = seal[0].clone();
            s.mac[0] ^= 1;
            fs::write(d.join("seal.img"), encode_file(Kind::Seal, &[s])).unwrap();
        }
        ForeignKey => {
            write_fixture_with(&dir, Some(HostKey::from_bytes([7; 32]))).unwrap();
        }
        MissingSeal => fs::remove_file(sealed().join("seal.img")).unwrap(),
        InventoryEditedAfterSealing => {
            let d = sealed();
            let p = d.join("inventory.img");
            let mut inv: Vec<Inventory> = crhook_core::read_file(&p, Kind::Inventory).unwrap();
            inv[0].warnings.clear();
            fs::write(&p, encode_file(Kind::Inventory, &inv)).unwrap();
        }
        FileSwappedSameSizeAndCrc => {
            let d = sealed();
            let p = d.join("links.img");
            let mut b = fs::read(&p).unwrap();
            let before = crhook_core::frame::body_crc(&b);
            swap_alias(&mut b);
            assert_eq!(crhook_core::frame::body_crc(&b), before);
            fs::write(&p, &b).unwrap();
        }
        SealGarbage => fs::write(sealed().join("seal.img"), b"not a seal at all").unwrap(),
    }
    dir
}

// ---- running a case -----------------------------------------------------------------------

/// What restore does with an image: open it with the host key and read every kind.
/// Opens `dir` as `open_with` does, or `deferred` as restore does (each file checked when
/// read), and reads every kind.
fn read_all(dir: &Path, deferred: bool) -> Result<Trust, ImageError> {
    let open = if deferred {
        ImageDir::open_deferred
    } else {
        ImageDir::open_with
    };
    let d = open(dir, Some(&host_key()), &Limits::default())?;
    d.require_sealed("restore")?;
    d.read::<Link>(Kind::Links)?;
    d.read::<Address>(Kind::Addresses)?;
    d.read::<Route>(Kind::Routes)?;
    d.read::<NexthopObject>(Kind::Nexthops)?;
    d.read::<Rule>(Kind::Rules)?;
    d.read::<Neighbour>(Kind::Neighbours)?;
    d.read::<Sysctl>(Kind::Sysctls)?;
    d.read::<FirewallRuleset>(Kind::Firewall)?;
    d.read::<TunFile>(Kind::TunFiles)?;
    d.read::<ExtFile>(Kind::ExtFiles)?;
    d.read::<SkippedFile>(Kind::SkippedFiles)?;
    d.read::<Stats>(Kind::StatsDump)?;
    Ok(d.trust().clone())
}

/// Every path under `dir` with its type, size and a digest of its bytes (symlinks, FIFOs
/// and devices are not opened), to prove a refusal changed nothing.
fn state(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let m = fs::symlink_metadata(e.path()).unwrap();
        let digest = if m.is_file() {
            format!(
                "{:x?}",
                &crhook_core::seal::sha256(&fs::read(e.path()).unwrap())[..8]
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{} {:?} {} {digest}",
            e.path().display(),
            m.file_type(),
            m.len()
        ));
        if m.is_dir() {
            out.extend(state(&e.path()));
        }
    }
    out.sort();
    out
}

fn run(case: Case) {
    run_in(case, false);
    run_in(case, true);
}

/// What opening with `open_deferred` and reading must give: as `want`, except that a file
/// changed under a valid sealed inventory fails its read instead of spoiling the verdict.
fn want_deferred(case: Case) -> Want {
    match case {
        Case::FileSwappedSameSizeAndCrc => Want::Refused(
            "verify {dir}/links.img: sha256 does not match the sealed inventory: the image was changed after it was sealed",
        ),
        _ => want(case),
    }
}

fn run_in(case: Case, deferred: bool) {
    let t = TempDir::new("hostile");
    let dir = build(case, t.path());
    let before = state(t.path());
    let shown = dir.display().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.clone();
    std::thread::spawn(move || {
        let _ = tx.send(metered(|| read_all(&d, deferred)));
    });
    // a FIFO or /dev/zero used to hang restore or read for 10 s and more
    let (result, peak) = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{case:?}: reading the image hung"));
    assert_eq!(
        state(t.path()),
        before,
        "{case:?} changed the image directory"
    );
    // nothing near what the image asks for: the biggest case is a 40 MB file, read whole
    assert!(
        peak < 160 << 20,
        "{case:?}: the reading thread held {peak} bytes at once"
    );
    let err = match result {
        Ok(trust) => panic!("{case:?} was accepted as {trust:?}"),
        Err(e) => e,
    };
    let msg = err.to_string();
    let want = if deferred {
        want_deferred(case)
    } else {
        want(case)
    };
    match want {
        Want::Refused(text) => {
            let links = 4_000_028 + 1_000_000 * std::mem::size_of::<Link>() + 16;
            let text = text
                .replace("{dir}", &shown)
                .replace("{links}", &links.to_string());
            assert!(
                msg.contains(&text),
                "{case:?}:\n  got  {msg}\n  want {text}"
            );
        }
        Want::Verdict(name, text) => {
            let text = text.replace("{dir}", &shown);
            let ImageError::Untrusted { trust, .. } = &err else {
                panic!("{case:?}: expected a verdict, got {msg}");
            };
            assert_eq!(trust.name(), name, "{case:?}: {msg}");
            assert!(
                msg.starts_with(&format!("restore {shown}: {text}")),
                "{case:?}:\n  got  {msg}\n  want {text}"
            );
        }
    }
}

macro_rules! corpus {
    ($($name:ident => $case:ident,)*) => {
        $(#[test] fn $name() { run(Case::$case) })*

        /// Every case has a test above.
        #[test]
        fn corpus_is_complete() {
            let named = [$(Case::$case),*];
            for c in ALL {
                assert!(named.contains(&c), "{c:?} has no test");
            }
        }
    };
}

const ALL: [Case; 20] = [
    Case::InventorySymlinkToDevZero,
    Case::InventorySymlinkToAValidInventory,
    Case::InventoryFifo,
    Case::InventoryCharDevice,
    Case::ListedFileSymlinkToDevZero,
    Case::ListedFileFifo,
    Case::SealSymlink,
    Case::ImageDirectorySymlink,
    Case::EntryCountOverLimit,
    Case::EntriesOverMemory,
    Case::RepeatedFieldsOverMemory,
    Case::RepeatedElementsOverLimit,
    Case::InventoryHugeRepeatedField,
    Case::ProtobufGroup,
    Case::WrongSeal,
    Case::ForeignKey,
    Case::MissingSeal,
    Case::InventoryEditedAfterSealing,
    Case::FileSwappedSameSizeAndCrc,
    Case::SealGarbage,
];

corpus! {
    inventory_symlink_to_dev_zero => InventorySymlinkToDevZero,
    inventory_symlink_to_a_valid_inventory => InventorySymlinkToAValidInventory,
    inventory_fifo => InventoryFifo,
    inventory_char_device => InventoryCharDevice,
    listed_file_symlink_to_dev_zero => ListedFileSymlinkToDevZero,
    listed_file_fifo => ListedFileFifo,
    seal_symlink => SealSymlink,
    image_directory_symlink => ImageDirectorySymlink,
    entry_count_over_limit => EntryCountOverLimit,
    entries_over_memory => EntriesOverMemory,
    repeated_fields_over_memory => RepeatedFieldsOverMemory,
    repeated_elements_over_limit => RepeatedElementsOverLimit,
    inventory_huge_repeated_field => InventoryHugeRepeatedField,
    protobuf_group => ProtobufGroup,
    wrong_seal => WrongSeal,
    foreign_key => ForeignKey,
    missing_seal => MissingSeal,
    inventory_edited_after_sealing => InventoryEditedAfterSealing,
    file_swapped_same_size_and_crc => FileSwappedSameSizeAndCrc,
    seal_garbage => SealGarbage,
}

/// The control: the same image untouched reads whole and sealed.
#[test]
fn the_sealed_image_itself_is_trusted() {
    let t = TempDir::new("hostile-ok");
    let dir = write_fixture_with(&t.join("img"), Some(host_key())).unwrap();
    for deferred in [false, true] {
        assert_eq!(
            read_all(&dir, deferred).unwrap(),
            Trust::Sealed {
                key_id: host_key().id()
            }
        );
    }
}

/// A same-size, same-crc32c swap of a file in an unsealed image passes every check but the
/// seal's: crc32c detects accidents, not intent. (This is why sealed images list SHA-256.)
#[test]
fn crc_forgery_passes_an_unsealed_image() {
    let t = TempDir::new("hostile-crc");
    let dir = write_fixture_with(&t.join("img"), None).unwrap();
    let p = dir.join("links.img");
    let mut b = fs::read(&p).unwrap();
    swap_alias(&mut b);
    fs::write(&p, &b).unwrap();
    let d = ImageDir::open_with(&dir, Some(&host_key()), &Limits::default()).unwrap();
    assert_eq!(d.trust(), &Trust::Unsealed);
    assert_eq!(d.read::<Link>(Kind::Links).unwrap()[1].alias, "evil!!");
}

/// A sealed file changed after `open` is never read: the first read hands out the bytes
/// `open` checked, and a later read of the changed file is refused.
#[test]
fn sealed_file_changed_after_open_is_refused_on_read() {
    let t = TempDir::new("hostile-late");
    let dir = write_fixture_with(&t.join("img"), Some(host_key())).unwrap();
    let d = ImageDir::open_with(&dir, Some(&host_key()), &Limits::default()).unwrap();
    let p = dir.join("links.img");
    let mut b = fs::read(&p).unwrap();
    let before = b.clone();
    swap_alias(&mut b);
    assert_ne!(b, before);
    fs::write(&p, &b).unwrap();
    let links = d.read::<Link>(Kind::Links).unwrap();
    assert_ne!(links[1].alias, "evil!!");
    let msg = d.read::<Link>(Kind::Links).unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "verify {}: sha256 does not match the sealed inventory (changed since the image was opened)",
            p.display()
        )
    );
}

/// A damaged file of a sealed image reads as damaged (its crc32c named), opened either way,
/// not as a file changed after sealing.
#[test]
fn a_damaged_file_of_a_sealed_image_reads_as_damaged() {
    let t = TempDir::new("hostile-damaged");
    let dir = write_fixture_with(&t.join("img"), Some(host_key())).unwrap();
    let p = dir.join("links.img");
    let mut b = fs::read(&p).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0x20;
    fs::write(&p, &b).unwrap();
    for deferred in [false, true] {
        let msg = read_all(&dir, deferred).unwrap_err().to_string();
        let want = format!("verify {}: crc32c 0x", p.display());
        assert!(
            msg.starts_with(&want) && msg.contains("does not match inventory"),
            "deferred {deferred}: {msg}"
        );
    }
}

/// Restore writes stats-restore.img into the image directory: a symlink planted there, or at
/// the temporary name older crhook used (`.stats-restore.img.tmp-PID`), redirects nothing.
#[test]
fn stats_written_over_planted_symlinks_touch_nothing_else() {
    let t = TempDir::new("hostile-stats");
    let dir = write_fixture_with(&t.join("img"), Some(host_key())).unwrap();
    let victim = t.join("victim");
    fs::write(&victim, b"precious").unwrap();
    fs::remove_file(dir.join("stats-restore.img")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("stats-restore.img")).unwrap();
    let old_tmp = dir.join(format!(".stats-restore.img.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
    write_file(
        &dir.join("stats-restore.img"),
        Kind::StatsRestore,
        &stats(1),
    )
    .unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    let m = fs::symlink_metadata(dir.join("stats-restore.img")).unwrap();
    assert!(
        m.is_file(),
        "the symlink was replaced by the file, not followed"
    );
    assert!(fs::symlink_metadata(&old_tmp)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// The budgets are per image: many files each within the per-file budget still stop at the
/// total.
#[test]
fn total_budget_spans_files() {
    let t = TempDir::new("hostile-total");
    let dir = write_fixture_with(&t.join("img"), Some(host_key())).unwrap();
    let limits = Limits {
        max_total_memory: 4096,
        ..Limits::default()
    };
    let d = ImageDir::open_with(&dir, Some(&host_key()), &limits).unwrap();
    let r = (|| -> Result<(), ImageError> {
        for _ in 0..64 {
            d.read::<Link>(Kind::Links)?;
        }
        Ok(())
    })();
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("image memory") && msg.ends_with("exceeds limit 4096"),
        "{msg}"
    );
    assert!(d.memory_used() <= 4096);
}

/// An image big enough to be checked on several threads at `open` reads whole and sealed, and
/// a damaged file in it is refused by name as in a small one.
#[test]
fn big_images_are_checked_file_by_file() {
    let t = TempDir::new("hostile-big");
    let write = |dir: &Path| {
        let mut w = ImageWriter::create(dir).unwrap();
        w.set_key(host_key());
        let routes: Vec<Route> = (0..80_000u32)
            .map(|i| Route {
                family: 2,
                table: 254,
                dst: i.to_be_bytes().to_vec(),
                dst_len: 32,
                ..Default::default()
            })
            .collect();
        w.write(Kind::Routes, &routes).unwrap();
        w.write(Kind::Links, &common::links()).unwrap();
        w.write(Kind::Sysctls, &common::sysctls()).unwrap();
        w.finish(common::source(), Vec::new()).unwrap()
    };
    let dir = write(&t.join("img"));
    let size: u64 = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        size > 1 << 20,
        "{size} bytes: too small to be checked on threads"
    );
    let d = ImageDir::open_with(&dir, Some(&host_key()), &Limits::default()).unwrap();
    assert!(d.trust().is_sealed());
    assert_eq!(d.read::<Route>(Kind::Routes).unwrap().len(), 80_000);
    assert_eq!(d.read::<Link>(Kind::Links).unwrap(), common::links());

    let p = dir.join("links.img");
    let mut b = fs::read(&p).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff;
    fs::write(&p, &b).unwrap();
    let msg = ImageDir::open_with(&dir, Some(&host_key()), &Limits::default())
        .map(drop)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!("read {}: ", p.display())) && msg.contains("crc32c"),
        "{msg}"
    );
}

/// A file big enough to be hashed while it decodes (4 MiB and more) is refused as a small one
/// is: swapped under a sealed inventory with the same size and crc32c, its read fails, decoded
/// or kept encoded, and nothing decoded from it is handed out.
#[test]
fn a_big_sealed_file_swapped_is_refused_while_hashed_beside() {
    let t = TempDir::new("hostile-beside");
    let mut links = common::links();
    links.extend((0..48u32).map(|i| Link {
        ifindex: 100 + i,
        name: format!("f{i}"),
        alias: "x".repeat(100_000),
        ..Default::default()
    }));
    let dir = {
        let mut w = ImageWriter::create(&t.join("img")).unwrap();
        w.set_key(host_key());
        w.write(Kind::Links, &links).unwrap();
        w.finish(common::source(), Vec::new()).unwrap()
    };
    let p = dir.join("links.img");
    assert!(fs::metadata(&p).unwrap().len() >= 4 << 20);
    let open = || ImageDir::open_deferred(&dir, Some(&host_key()), &Limits::default()).unwrap();
    assert_eq!(open().read::<Link>(Kind::Links).unwrap(), links);
    assert_eq!(open().read_encoded(Kind::Links).unwrap().len(), links.len());

    let mut b = fs::read(&p).unwrap();
    swap_alias(&mut b);
    fs::write(&p, &b).unwrap();
    let want = format!(
        "verify {}: sha256 does not match the sealed inventory: the image was changed after it was sealed",
        p.display()
    );
    assert_eq!(
        open().read::<Link>(Kind::Links).unwrap_err().to_string(),
        want
    );
    assert_eq!(
        open().read_encoded(Kind::Links).unwrap_err().to_string(),
        want
    );
}
