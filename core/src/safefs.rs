//! File access an image cannot steer. Images travel (registries, archives, other hosts) and
//! crhook runs as root, so a name inside an image directory is never trusted to be what it
//! says: everything there is opened relative to a directory descriptor, one path component
//! at a time, never through a symlink, and checked with `fstat` on the descriptor it will be
//! read from (no check-then-open race).
//!
//! Kernel behaviour this relies on:
//! - `openat2(2)` (Linux 5.6) with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS` fails with `ELOOP` on any symlink and `EXDEV` on any escape from
//!   the directory. Where it is missing (`ENOSYS`; seccomp profiles that predate it answer
//!   `ENOSYS` or `EPERM`) crhook falls back to `openat` with `O_NOFOLLOW` on a name it has
//!   checked is one component, which refuses the same things.
//! - `O_NONBLOCK`: opening a FIFO with no writer blocks forever without it (a planted FIFO hung
//!   restore); with it the open returns and `fstat` shows the FIFO, which is refused. Device
//!   nodes are refused by `fstat` too, before any read (`/dev/zero` never ends).
//! - `O_CREAT | O_EXCL` never follows a symlink at the name: it fails with `EEXIST` even for a
//!   dangling one, so a planted link cannot redirect a write.
//! - `flock(2)` locks belong to the open file description and vanish when the process dies,
//!   whatever pid namespace it ran in: a writer holds one on its temporary directory, and a
//!   later writer removes only temporary directories it can lock (pids were not comparable
//!   across pid namespaces, and a reused pid kept a dead writer's leftovers forever).
//! - A directory descriptor is listed through `/proc/self/fd/N` (the magic link resolves to
//!   the open directory itself, not to whatever now has its name).
//! - `getrandom(2)` (Linux 3.17) for temporary names and keys; `/dev/urandom` where missing.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `struct open_how` of linux/openat2.h (version 0, 24 bytes). libc's copy is
/// `#[non_exhaustive]`, so it cannot be built outside libc.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// True for a name that is exactly one path component: not empty, not `.` or `..`, no `/`,
/// no NUL.
pub(crate) fn one_component(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn checked(name: &OsStr) -> io::Result<CString> {
    if !one_component(name) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    cstring(name)
}

fn fd_result(rc: libc::c_int) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: rc is a descriptor the kernel just returned to us and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

fn unit_result(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Opens the directory at `path` (named by the operator, so symlinks in its parents are
/// followed; the last component must not be one).
pub(crate) fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    let c = cstring(path.as_os_str())?;
    // SAFETY: c is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    fd_result(rc).map(File::from)
}

/// Opens the directory at `path`, following symlinks (an operator's path, e.g. a parent).
pub fn open_dir(path: &Path) -> io::Result<File> {
    let c = cstring(path.as_os_str())?;
    // SAFETY: c is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    fd_result(rc).map(File::from)
}

/// Opens directory `name` inside `dir`, not following a symlink there.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let c = checked(name)?;
    // SAFETY: dir is an open descriptor for the duration of the call; c outlives it.
    let rc = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    fd_result(rc).map(File::from)
}

/// Opens the parent of directory `dir` (`..` from its descriptor: where it really is, not
/// where a path says).
pub(crate) fn open_parent(dir: BorrowedFd<'_>) -> io::Result<File> {
    // SAFETY: dir is open for the call; the name is a static NUL-terminated string.
    let rc = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c"..".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    fd_result(rc).map(File::from)
}

/// Opens `name` inside `dir` for reading, refusing symlinks and escapes, without blocking on
/// a FIFO. The caller must `fstat` the result before reading (as `file::read_at` does).
pub fn open_beneath(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let c = checked(name)?;
    let flags =
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    let how = OpenHow {
        // flags are non-negative bit masks
        flags: flags as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: dir is open for the call; c and how live until it returns; the size passed is
    // the size of the struct passed, version 0 of open_how.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if rc >= 0 {
        let fd =
            libc::c_int::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        return fd_result(fd).map(File::from);
    }
    let err = io::Error::last_os_error();
    if !matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
        return Err(err);
    }
    // SAFETY: as above; c is one checked component, so O_NOFOLLOW covers every symlink.
    let rc = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    fd_result(rc).map(File::from)
}

/// Creates `name` in `dir` for writing; fails if anything (a symlink included) is there.
pub fn create_excl(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<File> {
    let c = checked(name)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: dir is open for the call; c outlives it; mode is passed as the variadic
    // argument open(2) expects with O_CREAT.
    let rc = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) };
    fd_result(rc).map(File::from)
}

/// Creates directory `name` in `dir`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = checked(name)?;
    // SAFETY: dir is open for the call; c outlives it.
    unit_result(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) })
}

/// renameat2(2) within one directory; `flags` 0, `RENAME_NOREPLACE` or `RENAME_EXCHANGE`.
pub fn rename_at(
    dir: BorrowedFd<'_>,
    from: &OsStr,
    to: &OsStr,
    flags: libc::c_uint,
) -> io::Result<()> {
    let (a, b) = (checked(from)?, checked(to)?);
    // SAFETY: dir is open for the call; both strings outlive it; renameat2 keeps no pointer.
    unit_result(unsafe {
        libc::renameat2(
            dir.as_raw_fd(),
            a.as_ptr(),
            dir.as_raw_fd(),
            b.as_ptr(),
            flags,
        )
    })
}

/// unlinkat(2); `flags` 0 or `AT_REMOVEDIR`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr, flags: libc::c_int) -> io::Result<()> {
    let c = checked(name)?;
    // SAFETY: dir is open for the call; c outlives it.
    unit_result(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })
}

/// The names in an open directory.
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let proc = format!("/proc/self/fd/{}", dir.as_raw_fd());
    std::fs::read_dir(proc)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// Removes directory `name` in `dir` and the files in it (crhook's image directories hold no
/// subdirectories; one that does is left in place with the error). Nothing is followed.
pub(crate) fn remove_flat_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    use std::os::fd::AsFd;
    let d = open_dir_at(dir, name)?;
    for entry in list(d.as_fd())? {
        unlink_at(d.as_fd(), &entry, 0)?;
    }
    unlink_at(dir, name, libc::AT_REMOVEDIR)
}

/// Takes an exclusive `flock` without waiting: `Ok(false)` when another open file description
/// (another writer, in any pid namespace) holds it.
pub fn try_lock(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: fd is open for the duration of the call.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Fills `buf` from getrandom(2), or /dev/urandom where the kernel lacks it.
pub(crate) fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or_default();
        // SAFETY: rest is a writable buffer of rest.len() bytes that outlives the call.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOSYS) => {
                    return File::open("/dev/urandom")?.read_exact(rest);
                }
                _ => return Err(e),
            }
        }
        // n is non-negative here and at most rest.len()
        done += n.unsigned_abs();
    }
    Ok(())
}

/// 16 random hex digits, for temporary names nobody can predict.
pub fn random_name() -> io::Result<String> {
    let mut b = [0u8; 8];
    fill_random(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The effective uid crhook runs as.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// What a file type is called in messages.
pub(crate) fn type_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn components() {
        assert!(one_component(OsStr::new("links.img")));
        for bad in ["", ".", "..", "a/b", "/x", "a\0b"] {
            assert!(!one_component(OsStr::new(bad)), "{bad:?}");
        }
    }

    #[test]
    fn random_names_differ() -> io::Result<()> {
        let (a, b) = (random_name()?, random_name()?);
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn symlinks_fifos_and_escapes_are_not_opened() -> io::Result<()> {
        let base = std::env::temp_dir().join(format!("crhook-safefs-{}", random_name()?));
        std::fs::create_dir(&base)?;
        let run = || -> io::Result<()> {
            std::fs::write(base.join("real.img"), b"x")?;
            std::os::unix::fs::symlink("/dev/zero", base.join("zero.img"))?;
            std::os::unix::fs::symlink("real.img", base.join("link.img"))?;
            let c = cstring(base.join("fifo.img").as_os_str())?;
            // SAFETY: c is a valid path string for the call.
            unit_result(unsafe { libc::mkfifo(c.as_ptr(), 0o600) })?;
            let d = open_dir(&base)?;
            assert!(open_beneath(d.as_fd(), OsStr::new("real.img")).is_ok());
            for name in ["zero.img", "link.img"] {
                let e = open_beneath(d.as_fd(), OsStr::new(name)).err();
                assert_eq!(
                    e.and_then(|e| e.raw_os_error()),
                    Some(libc::ELOOP),
                    "{name}"
                );
            }
            // returns at once (O_NONBLOCK) and says what it is
            let f = open_beneath(d.as_fd(), OsStr::new("fifo.img"))?;
            assert_eq!(type_name(f.metadata()?.file_type()), "fifo");
            assert!(open_beneath(d.as_fd(), OsStr::new("../x")).is_err());
            // O_EXCL does not follow a dangling link
            std::os::unix::fs::symlink("/nonexistent-crhook", base.join("dangling"))?;
            let e = create_excl(d.as_fd(), OsStr::new("dangling"), 0o600).err();
            assert_eq!(e.and_then(|e| e.raw_os_error()), Some(libc::EEXIST));
            assert!(!Path::new("/nonexistent-crhook").exists());
            Ok(())
        };
        let r = run();
        let _ = std::fs::remove_dir_all(&base);
        r
    }

    #[test]
    fn locks_exclude_other_descriptions() -> io::Result<()> {
        let base = std::env::temp_dir().join(format!("crhook-safefs-lock-{}", random_name()?));
        std::fs::create_dir(&base)?;
        let a = open_dir(&base)?;
        let b = open_dir(&base)?;
        let first = try_lock(a.as_fd())?;
        let second = try_lock(b.as_fd())?;
        drop(a);
        let after = try_lock(b.as_fd())?;
        let _ = std::fs::remove_dir_all(&base);
        assert!(first && !second && after);
        Ok(())
    }
}
