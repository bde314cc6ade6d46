//! Golden files of every released format (core/tests/golden/vMAJOR.MINOR/): every later
//! crhook must read them, and today's encoder must reproduce those of the format it writes
//! (1.3) byte for byte. 1.0 differs from 1.1 only in the header's minor version and in its
//! firewall rulesets (text only; 1.1 adds the nfnetlink source and its tables). 1.2 adds a
//! SHA-256 of every file to the inventory and `seal.img` (sealed with `golden_key()`); its
//! other files differ from 1.1 only in the header's minor version. Regenerate the current
//! directory only for a deliberate change that keeps the older ones readable, with
//! `CRHOOK_BLESS=1 cargo test -p crhook-core --test golden` (a new format version gets a new
//! directory instead).

mod common;

use std::fs;

use common::*;
use crhook_core::proto::{Inventory, Seal, Stats};
use crhook_core::{decode_file, encode_file, read_file, HostKey, ImageDir, Kind, Limits, Trust};

#[test]
fn golden_v1_0_reads_with_the_current_reader() -> Result<(), Box<dyn std::error::Error>> {
    reads_with_the_current_reader(&golden_dir_v1_0(), 0, firewall_v1_0())
}

#[test]
fn golden_v1_1_reads_with_the_current_reader() -> Result<(), Box<dyn std::error::Error>> {
    reads_with_the_current_reader(&golden_dir_v1_1(), 1, firewall())
}

#[test]
fn golden_v1_2_reads_with_the_current_reader() -> Result<(), Box<dyn std::error::Error>> {
    reads_with_the_current_reader(&golden_dir_v1_2(), 2, firewall())
}

#[test]
fn golden_v1_3_reads_with_the_current_reader() -> Result<(), Box<dyn std::error::Error>> {
    reads_with_the_current_reader(&golden_dir(), 3, firewall())
}

/// Older images have no seal: they read as unsealed with any key; 1.2's and 1.3's are sealed
/// with the golden key, foreign to any other (or to none).
#[test]
fn golden_trust_verdicts() -> Result<(), Box<dyn std::error::Error>> {
    bless_if_asked();
    let key = golden_key();
    let other = HostKey::from_bytes([7; 32]);
    for old in [golden_dir_v1_0(), golden_dir_v1_1()] {
        let d = ImageDir::open_with(&old, Some(&key), &Limits::default())?;
        assert_eq!(d.trust(), &Trust::Unsealed, "{}", old.display());
    }
    let sealed = |k: Option<&HostKey>| -> Result<Trust, crhook_core::ImageError> {
        Ok(ImageDir::open_with(&golden_dir(), k, &Limits::default())?
            .trust()
            .clone())
    };
    assert_eq!(sealed(Some(&key))?, Trust::Sealed { key_id: key.id() });
    assert_eq!(
        sealed(Some(&other))?,
        Trust::ForeignKey { key_id: key.id() }
    );
    assert_eq!(sealed(None)?, Trust::ForeignKey { key_id: key.id() });
    let v12 = ImageDir::open_with(&golden_dir_v1_2(), Some(&key), &Limits::default())?;
    assert_eq!(v12.trust(), &Trust::Sealed { key_id: key.id() });
    let inv = ImageDir::open(&golden_dir())?;
    for f in &inv.inventory().files {
        let bytes = fs::read(golden_dir().join(&f.name))?;
        assert_eq!(f.sha256, crhook_core::seal::sha256(&bytes), "{}", f.name);
    }
    Ok(())
}

fn reads_with_the_current_reader(
    golden: &std::path::Path,
    minor: u32,
    fw: Vec<crhook_core::proto::FirewallRuleset>,
) -> Result<(), Box<dyn std::error::Error>> {
    bless_if_asked();
    let dir = ImageDir::open(golden)?;
    let inv = dir.inventory();
    assert_eq!((inv.format_major, inv.format_minor), (1, minor));
    assert_eq!(inv.crhook_version, "0.1.0");
    assert_eq!(
        (inv.capture_time_sec, inv.capture_time_nsec),
        (CAPTURE_SEC, CAPTURE_NSEC)
    );
    assert_eq!(inv.source.as_ref(), Some(&source()));
    assert_eq!(inv.warnings, warnings());
    let mut names: Vec<&str> = inv.files.iter().map(|f| f.name.as_str()).collect();
    // tc.img is new in 1.3; older images read as having no traffic control
    if minor < 3 {
        assert!(dir
            .read::<crhook_core::proto::TcObject>(Kind::Tc)?
            .is_empty());
        names.insert(6, "tc.img");
    } else {
        assert_eq!(
            dir.read::<crhook_core::proto::TcObject>(Kind::Tc)?,
            tc_objects()
        );
    }
    assert_eq!(
        names,
        [
            "links.img",
            "addresses.img",
            "routes.img",
            "nexthops.img",
            "rules.img",
            "neighbours.img",
            "tc.img",
            "sysctls.img",
            "firewall.img",
            "tun-files.img",
            "ext-files.img",
            "skipped-files.img",
            "stats-dump.img"
        ]
    );
    assert_eq!(inv.files[0].kind, "links");
    assert_eq!(inv.files[0].entries, 5);

    assert_eq!(dir.read::<crhook_core::proto::Link>(Kind::Links)?, links());
    assert_eq!(
        dir.read::<crhook_core::proto::Address>(Kind::Addresses)?,
        addresses()
    );
    assert_eq!(
        dir.read::<crhook_core::proto::Route>(Kind::Routes)?,
        routes()
    );
    assert_eq!(
        dir.read::<crhook_core::proto::NexthopObject>(Kind::Nexthops)?,
        nexthops()
    );
    assert_eq!(dir.read::<crhook_core::proto::Rule>(Kind::Rules)?, rules());
    assert_eq!(
        dir.read::<crhook_core::proto::Neighbour>(Kind::Neighbours)?,
        neighbours()
    );
    assert_eq!(
        dir.read::<crhook_core::proto::Sysctl>(Kind::Sysctls)?,
        sysctls()
    );
    assert_eq!(
        dir.read::<crhook_core::proto::FirewallRuleset>(Kind::Firewall)?,
        fw
    );
    assert_eq!(
        dir.read::<crhook_core::proto::TunFile>(Kind::TunFiles)?,
        tun_files()
    );
    assert_eq!(
        dir.read::<crhook_core::proto::ExtFile>(Kind::ExtFiles)?,
        ext_files()
    );
    assert_eq!(
        dir.read::<crhook_core::proto::SkippedFile>(Kind::SkippedFiles)?,
        skipped_files()
    );
    assert_eq!(dir.read::<Stats>(Kind::StatsDump)?, stats(2000));

    // stats-restore.img sits beside the image, outside the inventory.
    assert!(!dir.has(Kind::StatsRestore));
    assert!(dir.read::<Stats>(Kind::StatsRestore)?.is_empty());
    let restore: Vec<Stats> = read_file(&golden.join("stats-restore.img"), Kind::StatsRestore)?;
    assert_eq!(restore, stats(3000));

    // A few decoded values spelled out, so a fixture edit cannot silently move both sides.
    let l = &dir.read::<crhook_core::proto::Link>(Kind::Links)?[1];
    assert_eq!(l.name, "eth0");
    assert_eq!(l.mac, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
    let a = &dir.read::<crhook_core::proto::Address>(Kind::Addresses)?[0];
    assert_eq!(
        (a.address.as_slice(), a.prefix_len),
        (&[10u8, 0, 0, 2][..], 24)
    );
    Ok(())
}

#[test]
fn golden_v1_3_encode_is_byte_identical() -> Result<(), Box<dyn std::error::Error>> {
    bless_if_asked();
    for kind in Kind::ALL {
        let path = golden_dir().join(kind.file_name());
        let on_disk = fs::read(&path)?;
        match (fixture_bytes(kind), kind) {
            (Some(bytes), _) => assert!(
                bytes == on_disk,
                "{} differs from the encoder",
                path.display()
            ),
            (None, Kind::Seal) => {
                // the seal is the golden key's over the inventory's bytes
                let inv = fs::read(golden_dir().join(Kind::Inventory.file_name()))?;
                assert_eq!(encode_file(kind, &[golden_key().seal(&inv)]), on_disk);
                let back: Vec<Seal> = decode_file(&path, kind, &on_disk, &Limits::default())?;
                assert_eq!(back[0].key_id, golden_key().id().0);
            }
            (None, _) => {
                // The inventory records the crhook version, so compare bytes → struct → bytes.
                let inv: Vec<Inventory> = decode_file(&path, kind, &on_disk, &Limits::default())?;
                assert_eq!(encode_file(kind, &inv), on_disk);
            }
        }
    }
    Ok(())
}

#[test]
fn golden_header_bytes() -> Result<(), Box<dyn std::error::Error>> {
    bless_if_asked();
    let old = fs::read(golden_dir_v1_0().join("links.img"))?;
    assert_eq!(&old[..12], b"\x89CRHLINK\x01\x00\x00\x00");
    let v11 = fs::read(golden_dir_v1_1().join("links.img"))?;
    assert_eq!(&v11[..12], b"\x89CRHLINK\x01\x00\x01\x00");
    let b = fs::read(golden_dir().join("links.img"))?;
    let v12 = fs::read(golden_dir_v1_2().join("links.img"))?;
    assert_eq!(&v12[..12], b"\x89CRHLINK\x01\x00\x02\x00");
    assert_eq!(&b[..12], b"\x89CRHLINK\x01\x00\x03\x00");
    // the four differ in the version only
    assert_eq!(&old[12..old.len() - 4], &b[12..b.len() - 4]);
    assert_eq!(&v11[12..v11.len() - 4], &b[12..b.len() - 4]);
    assert_eq!(&v12[12..v12.len() - 4], &b[12..b.len() - 4]);
    let t = b.len() - 16;
    assert_eq!(&b[t..t + 4], b"\x89END");
    assert_eq!(u64::from_le_bytes(b[t + 4..t + 12].try_into()?), 5);
    assert_eq!(
        u32::from_le_bytes(b[t + 12..].try_into()?),
        crc32c::crc32c(&b[..b.len() - 4])
    );
    Ok(())
}
