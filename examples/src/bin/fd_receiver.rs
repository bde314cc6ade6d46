//! fd_receiver: the other end of `crhook restore --fd-socket PATH`.
//!
//! ```text
//! fd_receiver PATH [--probe] [--hold]
//! ```
//!
//! Listens on the Unix stream socket PATH, accepts one connection and reads crhook's one
//! message: a JSON header line `{"files":[...]}` (one object per file, in order: `id`,
//! `kind`, `holders` [{pid, fd}], `device`, `flags`, `detached`, and `plugin`/`path` for
//! files a plugin restored) with every descriptor attached as SCM_RIGHTS, in the same order.
//! The descriptors ride with the first bytes; the rest of the line may follow in later reads.
//!
//! Prints one JSON line: each header with the descriptor number it arrived as and what the
//! descriptor is now (`live`: the device and flags TUNGETIFF reports, whether the queue is
//! detached). `--probe` writes one IPv4/UDP packet into every attached tun (not tap)
//! descriptor and reports the bytes written (`probe_bytes`, or `probe_error`: a device that
//! is down answers EIO): the packet arrives on the device as received traffic. `--hold` keeps the descriptors until stdin reaches end of file; a real receiver
//! would put each descriptor where its `holders` say (dup2 in the restored process).

use std::fs::File;
use std::io::{BufRead, BufReader, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;

use anyhow::{bail, Context};
use crhook_netstate::link::tun::{IfReq, IFF_DETACH_QUEUE, IFF_NO_PI, IFF_TAP, TUNGETIFF};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use serde_json::{json, Value};

/// The kernel's SCM_MAX_FD: crhook never sends more in one message.
const MAX_FDS: usize = 253;

fn main() -> anyhow::Result<()> {
    let mut path = None;
    let (mut probe, mut hold) = (false, false);
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--probe" => probe = true,
            "--hold" => hold = true,
            _ if path.is_none() && !a.starts_with('-') => path = Some(a),
            _ => bail!("usage: fd_receiver PATH [--probe] [--hold]"),
        }
    }
    let Some(path) = path else {
        bail!("usage: fd_receiver PATH [--probe] [--hold]");
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).with_context(|| format!("listen on {path}"))?;
    // tell whoever started us that crhook may connect now
    eprintln!("listening on {path}");
    let (conn, _) = listener.accept().context("accept")?;
    let (header, fds) = receive(&conn)?;
    let files = header["files"].as_array().cloned().unwrap_or_default();
    if files.len() != fds.len() {
        bail!(
            "header lists {} files but {} descriptors arrived",
            files.len(),
            fds.len()
        );
    }
    let mut report = Vec::new();
    for (h, fd) in files.iter().zip(&fds) {
        let mut entry = json!({ "header": h, "fd": fd.as_raw_fd(), "live": live(fd) });
        if probe && h["kind"] == "tun" && h["detached"] == false {
            let flags = h["flags"].as_u64().unwrap_or(0);
            if flags & u64::from(IFF_TAP) == 0 {
                let pi = flags & u64::from(IFF_NO_PI) == 0;
                match write_probe(fd, pi) {
                    Ok(n) => entry["probe_bytes"] = json!(n),
                    // EIO: the device is down
                    Err(e) => entry["probe_error"] = json!(format!("{e:#}")),
                }
            }
        }
        report.push(entry);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({ "files": report }))?;
    out.flush()?;
    drop(out);
    if hold {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    }
    drop(fds);
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// One header line and the descriptors attached to the first bytes of it.
fn receive(conn: &std::os::unix::net::UnixStream) -> anyhow::Result<(Value, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<UnixAddr>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receive header and descriptors")?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().context("read control messages")? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            for fd in raw {
                // SAFETY: the kernel just installed this descriptor in our table for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        bail!("descriptors were truncated (more than {MAX_FDS}?)");
    }
    let n = msg.bytes;
    let mut line = buf[..n].to_vec();
    if !line.contains(&b'\n') {
        BufReader::new(conn)
            .read_until(b'\n', &mut line)
            .context("read the rest of the header")?;
    }
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let header: Value = serde_json::from_slice(&line[..end]).context("header is not JSON")?;
    Ok((header, fds))
}

/// What a received descriptor is now: for a tun file, its device and queue state.
fn live(fd: &OwnedFd) -> Value {
    let mut req = IfReq::new("", 0);
    // SAFETY: TUNGETIFF writes a struct ifreq; `req` is a live, correctly sized one. On a
    // descriptor that is not a tun file the ioctl fails and nothing is written.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        return json!({ "path": target, "tungetiff": std::io::Error::last_os_error().to_string() });
    }
    let end = req
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(req.name.len());
    json!({
        "device": String::from_utf8_lossy(&req.name[..end]),
        "flags": req.flags,
        "detached": req.flags & IFF_DETACH_QUEUE != 0,
    })
}

/// Writes one IPv4/UDP packet 10.255.0.2:9 -> 10.255.0.1:9 into a tun queue.
fn write_probe(fd: &OwnedFd, pi: bool) -> anyhow::Result<usize> {
    let mut pkt = Vec::new();
    if pi {
        pkt.extend_from_slice(&[0, 0, 0x08, 0x00]);
    }
    let payload = b"crhook probe";
    let total = u16::try_from(20 + 8 + payload.len())?;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 255, 0, 2, 10, 255, 0, 1,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    pkt.extend_from_slice(&ip);
    let udp_len = u16::try_from(8 + payload.len())?;
    pkt.extend_from_slice(&[0, 9, 0, 9]);
    pkt.extend_from_slice(&udp_len.to_be_bytes());
    pkt.extend_from_slice(&[0, 0]);
    pkt.extend_from_slice(payload);
    let mut f = File::from(fd.try_clone().context("dup descriptor")?);
    let n = f.write(&pkt).context("write probe packet")?;
    Ok(n)
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !u16::try_from(s).unwrap_or(u16::MAX)
}
