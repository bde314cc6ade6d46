//! The host key: created safely on first use, and refused whenever someone other than root
//! could read or replace it. Needs root (chown, and the ownership checks assume uid 0).

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::TempDir;
use crhook_core::{HostKey, ImageError};

fn err(r: Result<impl std::fmt::Debug, ImageError>) -> String {
    match r {
        Ok(v) => panic!("expected a refusal, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn created_on_first_use_0600_in_a_0700_directory() {
    let t = TempDir::new("key-new");
    let p = t.join("etc/crhook/image.key");
    assert!(HostKey::load(&p).unwrap().is_none(), "load never creates");
    assert!(!p.exists());
    let k = HostKey::load_or_create(&p).unwrap();
    let m = fs::metadata(&p).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.len(), 32);
    assert_eq!(
        fs::metadata(t.join("etc/crhook")).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(HostKey::load(&p).unwrap().map(|k| k.id()), Some(k.id()));
    assert_eq!(HostKey::load_or_create(&p).unwrap().id(), k.id());
    // nothing else left beside it
    let names: Vec<_> = fs::read_dir(t.join("etc/crhook"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["image.key"]);
}

#[test]
fn concurrent_first_uses_agree_on_one_key() {
    let t = TempDir::new("key-race");
    let p = t.join("image.key");
    let ids: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| HostKey::load_or_create(&p).unwrap().id()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    assert_eq!(fs::read_dir(t.path()).unwrap().count(), 1);
}

#[test]
fn unsafe_key_files_are_refused() {
    let t = TempDir::new("key-bad");
    let good = t.join("good.key");
    HostKey::load_or_create(&good).unwrap();

    let link = t.join("link.key");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    assert_eq!(
        err(HostKey::load_or_create(&link)),
        format!(
            "host key {}: is a symlink; name the key file itself",
            link.display()
        )
    );

    let open = t.join("open.key");
    fs::copy(&good, &open).unwrap();
    chmod(&open, 0o644);
    assert_eq!(
        err(HostKey::load(&open)),
        format!(
            "host key {}: is accessible to group or others (mode 0644); chmod 600 it",
            open.display()
        )
    );

    let short = t.join("short.key");
    fs::write(&short, [1u8; 31]).unwrap();
    chmod(&short, 0o600);
    assert_eq!(
        err(HostKey::load(&short)),
        format!(
            "host key {}: holds 31 bytes; a host key is 32 random bytes",
            short.display()
        )
    );

    let fifo = t.join("fifo.key");
    let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid path string for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0);
    assert_eq!(
        err(HostKey::load_or_create(&fifo)),
        format!("host key {}: is a fifo, not a regular file", fifo.display())
    );

    let theirs = t.join("theirs.key");
    fs::copy(&good, &theirs).unwrap();
    chmod(&theirs, 0o600);
    std::os::unix::fs::chown(&theirs, Some(1000), Some(1000)).unwrap();
    assert_eq!(
        err(HostKey::load(&theirs)),
        format!(
            "host key {}: is owned by uid 1000, not root; anyone who can change it can forge trust",
            theirs.display()
        )
    );
}

#[test]
fn a_key_in_a_directory_others_can_write_is_refused() {
    let t = TempDir::new("key-dir");
    let d = t.path().join("shared");
    fs::create_dir(&d).unwrap();
    let p = d.join("image.key");
    HostKey::load_or_create(&p).unwrap();
    chmod(&d, 0o1777);
    assert_eq!(
        err(HostKey::load(&p)),
        format!(
            "host key {}: lies in {}, which others can write (owner uid 0, mode 1777); anyone who can change the directory can swap the key",
            p.display(),
            d.display()
        )
    );
    // and nothing is created there either
    let q = d.join("new.key");
    assert!(HostKey::load_or_create(&q).is_err());
    assert!(!q.exists());
}
