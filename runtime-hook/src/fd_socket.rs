//! `restore --fd-socket PATH`: hands the restored files (tun queues, ext files) to the process
//! that will own them, as one message on a Unix stream socket: a JSON header line
//! `{"files":[...]}` (one object per file, in image order) with every descriptor attached as
//! SCM_RIGHTS, in the same order. The kernel caps one SCM_RIGHTS message at 253 descriptors
//! (SCM_MAX_FD); more are refused here rather than split, so the receiver reads exactly one
//! message. On a stream socket the bytes may arrive in pieces; the descriptors ride with the
//! first one.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{bail, Context};
use crhook_netstate::RestoredFile;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// The kernel's SCM_MAX_FD.
const MAX_FDS: usize = 253;

pub fn send(path: &Path, files: &[RestoredFile]) -> anyhow::Result<()> {
    if files.len() > MAX_FDS {
        bail!(
            "{} files exceed the {MAX_FDS} descriptors one message can carry",
            files.len()
        );
    }
    let headers: Vec<serde_json::Value> = files.iter().map(|f| f.header.clone()).collect();
    let mut line = serde_json::to_vec(&serde_json::json!({ "files": headers }))?;
    line.push(b'\n');
    let fds: Vec<RawFd> = files.iter().map(|f| f.fd.as_raw_fd()).collect();

    let mut stream = UnixStream::connect(path).context("connect")?;
    let cmsgs: Vec<ControlMessage<'_>> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    let sent = sendmsg::<UnixAddr>(
        stream.as_raw_fd(),
        &[IoSlice::new(&line)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(std::io::Error::from)
    .context("send header and descriptors")?;
    if let Some(rest) = line.get(sent..) {
        stream.write_all(rest).context("send header")?;
    }
    tracing::info!(socket = %path.display(), files = files.len(), "restored files handed off");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, IoSliceMut, Read};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::net::UnixListener;

    use nix::sys::socket::{recvmsg, ControlMessageOwned};

    #[test]
    fn header_and_fds_arrive_in_one_message() {
        let dir = std::env::temp_dir().join(format!("crhook-fdsock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).unwrap();

        let (r, w) = nix::unistd::pipe().unwrap();
        let files = vec![RestoredFile {
            header: serde_json::json!({"device": "tap0", "fds": [3]}),
            fd: w,
        }];
        let sock2 = sock.clone();
        let t = std::thread::spawn(move || send(&sock2, &files));
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<UnixAddr>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .unwrap();
            let mut fds = Vec::new();
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(f) = c {
                    fds.extend(f);
                }
            }
            (msg.bytes, fds)
        };
        t.join().unwrap().unwrap();
        let mut rest = Vec::new();
        BufReader::new(&conn).read_until(b'\n', &mut rest).unwrap();
        let mut all = buf[..n].to_vec();
        all.extend(rest);
        let header: serde_json::Value = serde_json::from_slice(&all).unwrap();
        assert_eq!(header["files"][0]["device"], "tap0");
        assert_eq!(fds.len(), 1);
        // the received descriptor is the pipe's write end: writing to it reaches `r`
        // SAFETY: the fd was just received via SCM_RIGHTS and is owned by nobody else.
        let mut wfile = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        wfile.write_all(b"ok").unwrap();
        drop(wfile);
        let mut got = String::new();
        let mut r = std::fs::File::from(r);
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "ok");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
