//! The built-in `tun` plugin: claims /dev/net/tun files, dumps a queue's state and reopens it.
//!
//! Capture reads the queue through a copy of the holder's descriptor (pidfd_getfd): the copy
//! is the same open file description, so TUNGETIFF answers for that very queue. What this
//! kernel (6.18) answers, and what capture relies on:
//! - attached queue: the device name and the device's IFF_* flags;
//! - detached queue of a multi-queue device: the same, plus IFF_DETACH_QUEUE (fdinfo `iff:`
//!   still names the device);
//! - a file never attached: EBADFD, and fdinfo `iff:` is empty.
//!
//! Bit 0x1000 of TUNGETIFF is IFF_NOFILTER (no socket filter on the queue), which has the
//! value of IFF_NO_PI, so `pi` comes from the device (IFLA_TUN_PI), never from this bit.
//! The payload is a `TunFile` without id and holders; capture stores it in tun-files.img.

use std::fs::File;
use std::os::fd::OwnedFd;

use crhook_core::prost::Message;
use crhook_core::{ExtFilePlugin, FileInfo, ImageError};
use crhook_proto as pb;

use super::procfs;
use super::sys;
use crate::link::tun::{
    open_tun, set_iff, IFF_DETACH_QUEUE, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_TUN, IFF_VNET_HDR,
};

pub const NAME: &str = "tun";

/// The device flags a queue is reattached with.
const KEPT: u16 = IFF_TUN | IFF_TAP | IFF_VNET_HDR | IFF_MULTI_QUEUE;

#[derive(Debug, Default)]
pub struct TunPlugin {
    /// device name -> whether packet information is on (IFLA_TUN_PI), for the devices of the
    /// namespace being captured
    pi: std::collections::HashMap<String, bool>,
}

impl TunPlugin {
    pub fn new(pi: std::collections::HashMap<String, bool>) -> TunPlugin {
        TunPlugin { pi }
    }

    /// Reads the queue behind `f`; `device` is empty for a file never attached.
    pub fn read(&self, f: &FileInfo) -> Result<pb::TunFile, ImageError> {
        let what = || format!("read tun file fd {} of process {}", f.fd, f.pid);
        let pidfd = sys::pidfd_open(f.pid).map_err(|e| ImageError::plugin(NAME, what(), e))?;
        let copy =
            sys::pidfd_getfd(&pidfd, f.fd).map_err(|e| ImageError::plugin(NAME, what(), e))?;
        let mut t = pb::TunFile {
            file_flags: procfs::file_flags(&f.fdinfo),
            ..Default::default()
        };
        match sys::get_iff(&copy) {
            Ok((device, flags)) => {
                t.detached = flags & IFF_DETACH_QUEUE != 0;
                let pi = self
                    .pi
                    .get(&device)
                    .copied()
                    .unwrap_or(flags & IFF_NO_PI == 0);
                t.flags = u32::from(flags & KEPT) | if pi { 0 } else { u32::from(IFF_NO_PI) };
                t.device = device;
                t.vnet_hdr_sz = sys::get_vnet_hdr_sz(&copy).map_err(|e| {
                    ImageError::plugin(NAME, format!("{} (TUNGETVNETHDRSZ)", what()), e)
                })?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBADFD) => {
                // never attached: nothing but the open file to give back
            }
            Err(e) => {
                return Err(ImageError::plugin(
                    NAME,
                    format!("{} (TUNGETIFF)", what()),
                    e,
                ))
            }
        }
        Ok(t)
    }
}

/// Opens /dev/net/tun in the calling thread's namespace and makes it the queue `t` was:
/// attached to its device with its flags, vnet header size set, detached again if it was.
pub fn open(t: &pb::TunFile) -> crate::error::Result<File> {
    let f = open_tun()?;
    let err = |op: &str, source: std::io::Error| crate::error::NetstateError::Io {
        op: format!("{op} on tun file {} of device {}", t.id, t.device),
        path: "/dev/net/tun".into(),
        source,
    };
    if !t.device.is_empty() {
        let flags = u16::try_from(t.flags & u32::from(KEPT | IFF_NO_PI)).unwrap_or(0);
        set_iff(&f, &t.device, flags)?;
        if t.flags & u32::from(IFF_VNET_HDR) != 0 && t.vnet_hdr_sz > 0 {
            sys::set_vnet_hdr_sz(&f, t.vnet_hdr_sz)
                .map_err(|e| err("set vnet header size (TUNSETVNETHDRSZ)", e))?;
        }
        if t.detached {
            sys::set_queue(&f, IFF_DETACH_QUEUE)
                .map_err(|e| err("detach queue (TUNSETQUEUE)", e))?;
        }
    }
    if t.file_flags & libc::O_NONBLOCK as u32 != 0 {
        sys::set_nonblock(&f).map_err(|e| err("set O_NONBLOCK", e))?;
    }
    Ok(f)
}

impl ExtFilePlugin for TunPlugin {
    fn name(&self) -> &str {
        NAME
    }

    /// By path, or by the `iff:` line only tun files have in fdinfo (the path a holder used
    /// may be another name for the same device node).
    fn claims(&self, f: &FileInfo) -> bool {
        f.path == "/dev/net/tun" || procfs::fdinfo_field(&f.fdinfo, "iff").is_some()
    }

    fn dump(&self, f: &FileInfo) -> Result<Vec<u8>, ImageError> {
        Ok(self.read(f)?.encode_to_vec())
    }

    fn restore(&self, payload: &[u8]) -> Result<OwnedFd, ImageError> {
        let t = pb::TunFile::decode(payload)
            .map_err(|e| ImageError::plugin(NAME, "decode tun file payload", e))?;
        open(&t)
            .map(OwnedFd::from)
            .map_err(|e| ImageError::plugin(NAME, "reopen tun file", e))
    }
}
