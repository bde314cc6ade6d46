//! tun_holder: a process that holds tun/tap files the way a VPN daemon or a VM monitor does,
//! for trying `crhook checkpoint` on tun files (and for crhook's tests).
//!
//! ```text
//! tun_holder [--mq NAME] [--tap NAME [--owner UID]] [--open PATH]...
//! ```
//!
//! - `--mq NAME`: a multi-queue tun device with two queues; the second queue is detached
//!   (TUNSETQUEUE IFF_DETACH_QUEUE) and the first is duplicated (dup), so three descriptors
//!   refer to two open files.
//! - `--tap NAME`: a tap device with a virtio-net header (IFF_VNET_HDR, header size 12),
//!   owned by `--owner UID` (TUNSETOWNER) when given.
//! - `--open PATH`: opens PATH read-write and holds it (a macvtap `/dev/tapN`, say).
//!
//! No device is made persistent: they live as long as this process. Run it inside the
//! namespace (`ip netns exec NS tun_holder ...`). It prints one JSON line with its pid and
//! descriptor numbers, then holds everything until its stdin reaches end of file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};

use anyhow::{bail, Context};
use crhook_netstate::link::tun::{
    open_tun, set_iff, IfReq, IFF_DETACH_QUEUE, IFF_MULTI_QUEUE, IFF_NO_PI, IFF_TAP, IFF_TUN,
    IFF_VNET_HDR, TUNSETOWNER, TUNSETQUEUE, TUNSETVNETHDRSZ,
};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut mq, mut tap, mut owner, mut open) = (None, None, None, Vec::new());
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--mq" => mq = Some(val()?),
            "--tap" => tap = Some(val()?),
            "--owner" => owner = Some(val()?.parse::<u32>().context("--owner: not a uid")?),
            "--open" => open.push(val()?),
            _ => bail!("usage: tun_holder [--mq NAME] [--tap NAME [--owner UID]] [--open PATH]..."),
        }
    }
    // every descriptor stays open until exit: ownership goes to raw fds on purpose
    let mut report = serde_json::Map::new();
    report.insert("pid".into(), json!(std::process::id()));
    if let Some(name) = mq {
        let flags = IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE;
        let q0 = open_tun()?;
        set_iff(&q0, &name, flags)?;
        let q1 = open_tun()?;
        set_iff(&q1, &name, flags)?;
        queue(&q1, IFF_DETACH_QUEUE).context("detach the second queue")?;
        let dup = q0.try_clone().context("dup the first queue")?;
        report.insert(
            "mq".into(),
            json!({ "device": name, "queues": [keep(q0), keep(q1)], "dup": keep(dup), "detached": 1 }),
        );
    }
    if let Some(name) = tap {
        let f = open_tun()?;
        set_iff(&f, &name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)?;
        ioctl_int(&f, TUNSETVNETHDRSZ, 12).context("TUNSETVNETHDRSZ")?;
        if let Some(uid) = owner {
            // SAFETY: TUNSETOWNER takes the uid by value and touches no user memory.
            let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETOWNER, libc::c_ulong::from(uid)) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error()).context("TUNSETOWNER");
            }
        }
        report.insert("tap".into(), json!({ "device": name, "fd": keep(f) }));
    }
    let mut opened = Vec::new();
    for p in open {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .with_context(|| format!("open {p}"))?;
        opened.push(json!({ "path": p, "fd": keep(f) }));
    }
    report.insert("open".into(), json!(opened));
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::Value::Object(report))?;
    out.flush()?;
    drop(out);
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    Ok(())
}

fn keep(f: File) -> RawFd {
    f.into_raw_fd()
}

fn queue(f: &File, flags: u16) -> std::io::Result<()> {
    let mut req = IfReq::new("", flags);
    // SAFETY: TUNSETQUEUE reads a struct ifreq; `req` is a live, correctly sized one.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETQUEUE, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn ioctl_int(f: &File, req: libc::c_ulong, v: libc::c_int) -> std::io::Result<()> {
    let mut v = v;
    // SAFETY: these ioctls read one int through the pointer; `v` is a live int.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
