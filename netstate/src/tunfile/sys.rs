//! The raw system calls tun-file capture needs and libc or nix do not wrap: `pidfd_open`,
//! `pidfd_getfd`, `kcmp(KCMP_FILE)`, and the tun ioctls that read a queue's state.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::link::tun::{IfReq, TUNGETIFF, TUNSETQUEUE, TUNSETVNETHDRSZ};

/// _IOR('T', 215, int): linux/if_tun.h
pub const TUNGETVNETHDRSZ: libc::c_ulong = 0x8004_54d7;
/// enum kcmp_type in linux/kcmp.h
const KCMP_FILE: libc::c_int = 0;

/// A pidfd for `pid` (pidfd_open(2)).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new descriptor or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(rc)
}

/// A descriptor in this process for the open file description `fd` of the process behind
/// `pidfd` (pidfd_getfd(2)): both refer to the same file, so its offset, flags and tun queue
/// state are shared. Needs ptrace access to the process (root has it).
pub fn pidfd_getfd(pidfd: &OwnedFd, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes a live pidfd, a descriptor number and flags by value and
    // returns a new descriptor (close-on-exec) or -1.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    owned(rc)
}

/// Whether `fd1` of `pid1` and `fd2` of `pid2` are the same open file description.
pub fn same_file(pid1: u32, fd1: RawFd, pid2: u32, fd2: RawFd) -> io::Result<bool> {
    let p1 = libc::pid_t::try_from(pid1).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    let p2 = libc::pid_t::try_from(pid2).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kcmp compares kernel objects named by pids and descriptor numbers; all
    // arguments are plain integers and no memory is passed.
    let rc = unsafe { libc::syscall(libc::SYS_kcmp, p1, p2, KCMP_FILE, fd1, fd2) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // 0 equal, 1 less, 2 greater (3: incomparable, not returned for KCMP_FILE)
    Ok(rc == 0)
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// TUNGETIFF: the device a queue belongs to and the device's IFF_* flags. On a detached
/// queue of a multi-queue device the kernel adds IFF_DETACH_QUEUE; a file never attached
/// answers EBADFD. Bit 0x1000 is IFF_NOFILTER here (set when no socket filter is attached),
/// which has the value of IFF_NO_PI: callers take `pi` from the link instead.
pub fn get_iff(f: &impl AsRawFd) -> io::Result<(String, u16)> {
    let mut req = IfReq::new("", 0);
    // SAFETY: TUNGETIFF writes a struct ifreq; `req` is a live, correctly sized one.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNGETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    let name = String::from_utf8_lossy(&req.name[..end]).into_owned();
    Ok((name, req.flags))
}

/// TUNGETVNETHDRSZ: the device's virtio-net header size.
pub fn get_vnet_hdr_sz(f: &impl AsRawFd) -> io::Result<i32> {
    let mut sz: libc::c_int = 0;
    // SAFETY: TUNGETVNETHDRSZ writes one int; `sz` is a live int.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNGETVNETHDRSZ, &mut sz as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sz)
}

/// TUNSETVNETHDRSZ.
pub fn set_vnet_hdr_sz(f: &File, sz: i32) -> io::Result<()> {
    let mut v: libc::c_int = sz;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer; `v` is a live int.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETVNETHDRSZ, &mut v as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETQUEUE with IFF_ATTACH_QUEUE or IFF_DETACH_QUEUE.
pub fn set_queue(f: &impl AsRawFd, flags: u16) -> io::Result<()> {
    let mut req = IfReq::new("", flags);
    // SAFETY: TUNSETQUEUE reads a struct ifreq; `req` is a live, correctly sized one.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETQUEUE, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// TUNSETPERSIST on any queue of a device.
pub fn set_persist(f: &impl AsRawFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes an integer by value and touches no user memory.
    let rc = unsafe {
        libc::ioctl(
            f.as_raw_fd(),
            crate::link::tun::TUNSETPERSIST,
            libc::c_ulong::from(on),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// _IO('T', 227): linux/if_tun.h
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;

/// The (dev, ino) identity of the network namespace the device of a tun queue lives in
/// (TUNGETDEVNETNS, which returns a new descriptor of that namespace).
pub fn dev_netns(f: &impl AsRawFd) -> io::Result<(u64, u64)> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(f.as_raw_fd(), TUNGETDEVNETNS) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the ioctl just returned this descriptor, owned by nobody else.
    let ns = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let md = ns.metadata()?;
    use std::os::unix::fs::MetadataExt;
    Ok((md.dev(), md.ino()))
}

/// Sets O_NONBLOCK on an open file (the one status flag a holder is likely to rely on).
pub fn set_nonblock(f: &File) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take and return plain integers on a live descriptor.
    let fl = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn kcmp_groups_dups_and_separates_opens() {
        let me = std::process::id();
        let a = File::open("/dev/null").unwrap();
        let b = File::open("/dev/null").unwrap();
        let a2 = a.try_clone().unwrap();
        assert!(
            same_file(me, a.as_raw_fd(), me, a2.as_raw_fd()).unwrap(),
            "dup is one file"
        );
        assert!(
            !same_file(me, a.as_raw_fd(), me, b.as_raw_fd()).unwrap(),
            "two opens are two files"
        );
        let gone = same_file(me, a.as_raw_fd(), me, 100_000).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn pidfd_getfd_returns_the_same_open_file() {
        let me = pidfd_open(std::process::id()).unwrap();
        let a = File::open("/dev/null").unwrap();
        let got = pidfd_getfd(&me, a.as_raw_fd()).unwrap();
        let pid = std::process::id();
        assert!(same_file(pid, a.as_raw_fd(), pid, got.as_raw_fd()).unwrap());
    }

    #[test]
    fn tun_ioctls_on_a_plain_file_fail_with_an_errno() {
        let f = File::open("/dev/null").unwrap();
        let e = get_iff(&f).unwrap_err();
        assert!(e.raw_os_error().is_some());
    }
}
