//! tun/tap devices. They cannot be created over rtnetlink (tun's validate op answers
//! EOPNOTSUPP): crhook opens /dev/net/tun on a thread inside the namespace, pins the ifindex
//! with TUNSETIFINDEX before TUNSETIFF, and makes the device persistent with owner and group.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crhook_proto as pb;

use crate::error::{NetstateError, Result};

// _IOW('T', n, int) and _IOR: linux/if_tun.h
pub const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
pub const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
pub const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
pub const TUNSETGROUP: libc::c_ulong = 0x4004_54ce;
pub const TUNGETIFF: libc::c_ulong = 0x8004_54d2;
pub const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
pub const TUNSETQUEUE: libc::c_ulong = 0x4004_54d9;
pub const TUNSETIFINDEX: libc::c_ulong = 0x4004_54da;

pub const IFF_TUN: u16 = 0x0001;
pub const IFF_TAP: u16 = 0x0002;
pub const IFF_NO_PI: u16 = 0x1000;
pub const IFF_VNET_HDR: u16 = 0x4000;
pub const IFF_MULTI_QUEUE: u16 = 0x0100;
pub const IFF_ATTACH_QUEUE: u16 = 0x0200;
pub const IFF_DETACH_QUEUE: u16 = 0x0400;

/// struct ifreq as TUNSETIFF reads it: a name and the flags at the start of the union.
#[repr(C)]
pub struct IfReq {
    pub name: [u8; libc::IFNAMSIZ],
    pub flags: u16,
    _pad: [u8; 22],
}

impl IfReq {
    pub fn new(name: &str, flags: u16) -> IfReq {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags,
            _pad: [0; 22],
        };
        let b = name.as_bytes();
        let n = b.len().min(libc::IFNAMSIZ - 1);
        r.name[..n].copy_from_slice(&b[..n]);
        r
    }
}

/// IFF_* flags TUNSETIFF needs to recreate a device like `t`.
pub fn tun_flags(t: &pb::Tun) -> u16 {
    let mut f = if t.tun_type == u32::from(IFF_TUN) {
        IFF_TUN
    } else {
        IFF_TAP
    };
    if !t.pi {
        f |= IFF_NO_PI;
    }
    if t.vnet_hdr {
        f |= IFF_VNET_HDR;
    }
    if t.multi_queue {
        f |= IFF_MULTI_QUEUE;
    }
    f
}

pub fn open_tun() -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|source| NetstateError::Io {
            op: "open".into(),
            path: "/dev/net/tun".into(),
            source,
        })
}

fn ioctl_int(
    f: &File,
    req: libc::c_ulong,
    arg: libc::c_ulong,
    what: &str,
    name: &str,
) -> Result<()> {
    // SAFETY: these tun ioctls take an integer argument by value and touch no user memory.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), req, arg) };
    if rc < 0 {
        return Err(NetstateError::Io {
            op: format!("{what} on tun device {name}"),
            path: "/dev/net/tun".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Attaches the open `/dev/net/tun` file `f` to device `name` with `flags` (TUNSETIFF).
pub fn set_iff(f: &File, name: &str, flags: u16) -> Result<()> {
    let mut req = IfReq::new(name, flags);
    // SAFETY: TUNSETIFF reads and writes a struct ifreq; `req` is a live, correctly sized one.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(NetstateError::Io {
            op: format!("attach to tun device {name} (TUNSETIFF)"),
            path: "/dev/net/tun".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Creates a persistent tun/tap device named `name` in the calling thread's namespace.
/// Must run on the namespace thread. Returns the still-open file (the caller may keep it as a
/// queue or drop it).
pub fn create(name: &str, t: &pb::Tun, ifindex: Option<u32>) -> Result<File> {
    crate::floor::tun(name, t, ifindex);
    let f = open_tun()?;
    if let Some(i) = ifindex {
        // unlike the others, TUNSETIFINDEX reads its argument through a pointer
        let v: libc::c_uint = i;
        // SAFETY: TUNSETIFINDEX copies an unsigned int from the pointer, which is a live local.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFINDEX, &v as *const libc::c_uint) };
        if rc < 0 {
            return Err(NetstateError::Io {
                op: format!("pin ifindex {i} of tun device {name} (TUNSETIFINDEX)"),
                path: "/dev/net/tun".into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    set_iff(&f, name, tun_flags(t))?;
    if let Some(o) = t.owner {
        ioctl_int(
            &f,
            TUNSETOWNER,
            libc::c_ulong::from(o),
            "set owner (TUNSETOWNER)",
            name,
        )?;
    }
    if let Some(g) = t.group {
        ioctl_int(
            &f,
            TUNSETGROUP,
            libc::c_ulong::from(g),
            "set group (TUNSETGROUP)",
            name,
        )?;
    }
    ioctl_int(
        &f,
        TUNSETPERSIST,
        1,
        "make persistent (TUNSETPERSIST)",
        name,
    )?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_layout_matches_the_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        let r = IfReq::new("tap0", IFF_TAP | IFF_NO_PI);
        assert_eq!(&r.name[..5], b"tap0\0");
        assert_eq!(r.flags, 0x1002);
    }

    #[test]
    fn flags_follow_the_saved_settings() {
        let t = pb::Tun {
            tun_type: 2,
            pi: false,
            vnet_hdr: true,
            multi_queue: true,
            ..Default::default()
        };
        assert_eq!(
            tun_flags(&t),
            IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE
        );
        let t = pb::Tun {
            tun_type: 1,
            pi: true,
            ..Default::default()
        };
        assert_eq!(tun_flags(&t), IFF_TUN);
    }
}
