//! docs/crhook.magic: generated from the magic table, kept in sync, and understood by file(1).
//! `CRHOOK_BLESS=1 cargo test -p crhook-core --test magic_file` rewrites it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::TempDir;
use crhook_core::proto::Link;
use crhook_core::{encode_file, file_magic, Kind};

const FILE: &str = "/usr/bin/file";

fn magic_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/crhook.magic")
}

#[test]
fn magic_file_in_sync() {
    let want = file_magic();
    if std::env::var("CRHOOK_BLESS").as_deref() == Ok("1") {
        std::fs::write(magic_path(), &want).expect("write docs/crhook.magic");
    }
    let have = std::fs::read_to_string(magic_path()).expect("read docs/crhook.magic");
    assert!(
        have == want,
        "docs/crhook.magic is stale: rerun with CRHOOK_BLESS=1"
    );
}

#[test]
fn file_command_names_every_kind() {
    assert!(
        Path::new(FILE).is_file(),
        "{FILE} is missing: install the `file` package (.ci/install-deps does)"
    );
    let t = TempDir::new("magic");
    for k in Kind::ALL {
        let p = t.join(k.file_name());
        std::fs::write(&p, encode_file::<Link>(k, &[])).expect("write");
        let out = Command::new(FILE)
            .arg("-m")
            .arg(magic_path())
            .arg("-b")
            .arg(&p)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .expect("run file");
        let text = String::from_utf8_lossy(&out.stdout);
        let (major, minor) = crhook_core::FORMAT_VERSION;
        let want = format!(
            "crhook image, {} ({}), format {major}.{minor}",
            k.name(),
            k.info().message
        );
        assert_eq!(
            text.trim(),
            want,
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Not a crhook image: file(1) must not claim it.
    let p = t.join("other.bin");
    std::fs::write(&p, b"hello world\n").expect("write");
    let out = Command::new(FILE)
        .arg("-m")
        .arg(magic_path())
        .arg("-b")
        .arg(&p)
        .env_clear()
        .output()
        .expect("run file");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("crhook"));
}

#[test]
fn format_doc_lists_every_kind() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/image-format.md"),
    )
    .expect("read docs/image-format.md");
    // Table columns are padded for reading; compare with runs of spaces collapsed.
    let doc = doc
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    for k in Kind::ALL {
        let i = k.info();
        let row = format!("`{}` | `{}` |", i.file, crhook_core::magic::hex(i.magic));
        assert!(doc.contains(&row), "docs/image-format.md lacks {row}");
        assert!(
            doc.contains(&format!("`{}`", i.message)),
            "docs lack {}",
            i.message
        );
    }
    assert!(doc.contains(&crhook_core::magic::hex(crhook_core::CRHOOK_MAGIC)));
    assert!(doc.contains(&crhook_core::magic::hex(crhook_core::magic::TRAILER_MAGIC)));
}
