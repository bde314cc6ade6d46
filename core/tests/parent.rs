//! Child images (format 2.0): an image written against a parent, whose unchanged kinds are
//! read from the parent chain. The golden child (core/tests/golden/v2.0-child/) names the
//! 1.2 golden image as its parent (`../v1.2`, pinned by the SHA-256 of its inventory) and
//! carries links and routes itself. Regenerate with
//! `CRHOOK_BLESS=1 cargo test -p crhook-core --test parent`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use crhook_core::proto::{FirewallRuleset, Link, ParentImage, Route, Sysctl};
use crhook_core::{HostKey, ImageDir, ImageError, ImageWriter, Kind, Limits, Trust};

fn golden_child() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v2.0-child")
}

fn child_links() -> Vec<Link> {
    let mut l = links();
    if let Some(eth0) = l.get_mut(1) {
        eth0.mtu = 9000;
    }
    l
}

fn child_routes() -> Vec<Route> {
    routes().into_iter().take(1).collect()
}

/// Kinds the golden child takes from its parent.
const INHERITED: [Kind; 8] = [
    Kind::Addresses,
    Kind::Nexthops,
    Kind::Rules,
    Kind::Neighbours,
    Kind::Sysctls,
    Kind::Firewall,
    Kind::TunFiles,
    Kind::ExtFiles,
];

/// Writes a child of the image at `parent` (named `rel` from the child) at `dir`.
fn write_child(
    dir: &Path,
    parent: &Path,
    rel: &str,
    key: Option<HostKey>,
    source: crhook_core::proto::NamespaceIdentity,
) -> Result<PathBuf, ImageError> {
    let digest =
        crhook_core::seal::sha256(&fs::read(parent.join("inventory.img")).map_err(|e| {
            ImageError::Io {
                op: "read",
                file: parent.into(),
                source: e,
            }
        })?);
    let mut w = ImageWriter::create(dir)?;
    if let Some(k) = key {
        w.set_key(k);
    }
    w.set_capture_time(UNIX_EPOCH + Duration::new(CAPTURE_SEC + 60, CAPTURE_NSEC));
    w.set_parent(
        ParentImage {
            path: rel.into(),
            inventory_sha256: digest.to_vec(),
        },
        INHERITED.to_vec(),
    );
    w.write(Kind::Links, &child_links())?;
    w.write(Kind::Routes, &child_routes())?;
    w.write(Kind::SkippedFiles, &skipped_files())?;
    w.write(Kind::StatsDump, &stats(2500))?;
    w.finish(source, Vec::new())
}

fn bless() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("CRHOOK_BLESS").as_deref() == Ok("1") {
            write_child(
                &golden_child(),
                &golden_dir_v1_2(),
                "../v1.2",
                Some(golden_key()),
                source(),
            )
            .expect("bless golden child");
        }
    });
}

/// The golden child and its parent copied into a temporary directory, to be damaged.
fn copy_chain(t: &TempDir) -> Result<PathBuf, Box<dyn std::error::Error>> {
    for (from, to) in [(golden_dir_v1_2(), "v1.2"), (golden_child(), "child")] {
        fs::create_dir_all(t.join(to))?;
        for e in fs::read_dir(&from)? {
            let e = e?;
            fs::copy(e.path(), t.join(to).join(e.file_name()))?;
        }
    }
    Ok(t.join("child"))
}

fn open(dir: &Path) -> Result<ImageDir, ImageError> {
    ImageDir::open_with(dir, Some(&golden_key()), &Limits::default())
}

#[test]
fn golden_child_reads_the_whole_chain() -> Result<(), Box<dyn std::error::Error>> {
    bless();
    let d = open(&golden_child())?;
    let inv = d.inventory();
    assert_eq!((inv.format_major, inv.format_minor), (2, 0));
    assert_eq!(
        inv.parent.as_ref().map(|p| p.path.as_str()),
        Some("../v1.2")
    );
    assert_eq!(
        d.trust(),
        &Trust::Sealed {
            key_id: golden_key().id()
        }
    );
    assert_eq!(d.chain().count(), 2);
    assert_eq!(d.from_parent().collect::<Vec<_>>(), INHERITED.to_vec());
    // its own kinds
    assert_eq!(d.read::<Link>(Kind::Links)?, child_links());
    assert_eq!(d.read::<Route>(Kind::Routes)?, child_routes());
    // the parent's
    assert_eq!(d.read::<Sysctl>(Kind::Sysctls)?, sysctls());
    assert_eq!(d.read::<FirewallRuleset>(Kind::Firewall)?, firewall());
    assert!(d.has(Kind::Firewall) && d.has(Kind::Links));
    assert!(!golden_child().join("firewall.img").exists());
    // a reader of format 1.x refuses the inventory's major before it reads anything else
    let inv_bytes = fs::read(golden_child().join("inventory.img"))?;
    assert_eq!(&inv_bytes[..12], b"\x89CRHINVT\x02\x00\x00\x00");
    let links = fs::read(golden_child().join("links.img"))?;
    assert_eq!(&links[8..12], b"\x01\x00\x02\x00");
    Ok(())
}

#[test]
fn show_prints_the_chain() -> Result<(), Box<dyn std::error::Error>> {
    bless();
    let text = crhook_core::show(&golden_child(), crhook_core::ShowFormat::Text)?;
    assert!(text.contains("chain"), "{text}");
    assert!(text.contains("v1.2 (format 1.2)"), "{text}");
    assert!(text.contains("from its parent: addresses"), "{text}");
    Ok(())
}

#[test]
fn missing_parent_is_refused_by_name() -> Result<(), Box<dyn std::error::Error>> {
    bless();
    let t = TempDir::new("parent-missing");
    let child = copy_chain(&t)?;
    fs::remove_dir_all(t.join("v1.2"))?;
    let e = open(&child).expect_err("a child without its parent opened");
    let msg = e.to_string();
    assert!(
        msg.contains("parent image") && msg.contains("v1.2"),
        "{msg}"
    );
    assert!(msg.contains("missing"), "{msg}");
    Ok(())
}

#[test]
fn changed_parent_is_refused_by_name() -> Result<(), Box<dyn std::error::Error>> {
    bless();
    let t = TempDir::new("parent-changed");
    let child = copy_chain(&t)?;
    // a new image written over the parent's place: another inventory
    let mut w = ImageWriter::create(&t.join("v1.2"))?;
    w.write(Kind::Links, &links())?;
    w.finish(source(), Vec::new())?;
    let e = open(&child).expect_err("a changed parent was accepted");
    let msg = format!(
        "{e} / {}",
        std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        msg.contains("parent image") && msg.contains("v1.2"),
        "{msg}"
    );
    assert!(msg.contains("sha256 does not match"), "{msg}");
    Ok(())
}

#[test]
fn damaged_parent_file_is_refused_by_name() -> Result<(), Box<dyn std::error::Error>> {
    bless();
    let t = TempDir::new("parent-damaged");
    let child = copy_chain(&t)?;
    let f = t.join("v1.2").join("firewall.img");
    let mut b = fs::read(&f)?;
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    fs::write(&f, b)?;
    let e = open(&child).expect_err("a damaged parent was accepted");
    let msg = e.to_string();
    assert!(
        msg.contains("parent image") && msg.contains("damaged"),
        "{msg}"
    );
    let cause = std::error::Error::source(&e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(cause.contains("firewall.img"), "{cause}");
    Ok(())
}

#[test]
fn parent_of_another_namespace_is_refused() -> Result<(), Box<dyn std::error::Error>> {
    let t = TempDir::new("parent-other-ns");
    let parent = write_fixture_with(&t.join("p"), None)?;
    let mut other = source();
    other.ino += 1;
    let child = write_child(&t.join("c"), &parent, "../p", None, other)?;
    let e = open(&child).expect_err("a parent of another namespace was accepted");
    assert!(e.to_string().contains("another network namespace"), "{e}");
    Ok(())
}

#[test]
fn chain_of_three_reads_through() -> Result<(), Box<dyn std::error::Error>> {
    let t = TempDir::new("parent-three");
    let p = write_fixture_with(&t.join("a"), Some(golden_key()))?;
    let b = write_child(&t.join("b"), &p, "../a", Some(golden_key()), source())?;
    // c takes everything but the stats from b, which takes most from a
    let digest = crhook_core::seal::sha256(&fs::read(b.join("inventory.img"))?);
    let mut w = ImageWriter::create(&t.join("c"))?;
    w.set_key(golden_key());
    let kinds: Vec<Kind> = Kind::ALL
        .iter()
        .copied()
        .filter(|k| {
            !matches!(
                k,
                Kind::Inventory | Kind::Seal | Kind::StatsRestore | Kind::StatsDump
            )
        })
        .collect();
    w.set_parent(
        ParentImage {
            path: "../b".into(),
            inventory_sha256: digest.to_vec(),
        },
        kinds,
    );
    assert!(
        w.write(Kind::Links, &links()).is_err(),
        "an inherited kind was written"
    );
    w.write(Kind::StatsDump, &stats(1))?;
    let c = w.finish(source(), Vec::new())?;
    let d = open(&c)?;
    assert_eq!(d.chain().count(), 3);
    assert_eq!(d.read::<Link>(Kind::Links)?, child_links());
    assert_eq!(d.read::<FirewallRuleset>(Kind::Firewall)?, firewall());
    assert_eq!(
        d.trust(),
        &Trust::Sealed {
            key_id: golden_key().id()
        }
    );
    Ok(())
}

/// A parent's files that no child takes from it are never read, so they are not checked
/// either: restoring a child costs what restoring a whole image does.
#[test]
fn parent_files_the_child_does_not_take_are_not_read() -> Result<(), Box<dyn std::error::Error>> {
    bless();
    let t = TempDir::new("parent-unneeded");
    let child = copy_chain(&t)?;
    // the child carries its own routes
    fs::write(t.join("v1.2").join("routes.img"), b"not an image")?;
    let d = open(&child)?;
    assert_eq!(d.read::<Route>(Kind::Routes)?, child_routes());
    assert_eq!(d.read::<FirewallRuleset>(Kind::Firewall)?, firewall());
    let parent = d.parent().expect("a parent");
    assert!(!parent.lists(Kind::Routes) && parent.lists(Kind::Firewall));
    Ok(())
}
