//! Plain file access to `/proc/sys/net` of the calling thread's namespace, and the rules that
//! decide which files are keys.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;

use crhook_proto as pb;

use crate::error::{NetstateError, Result};

pub const ROOT: &str = "/proc/sys/net";

pub fn proc_path<S: AsRef<str>>(path: &[S]) -> PathBuf {
    let mut p = PathBuf::from(ROOT);
    for c in path {
        p.push(c.as_ref());
    }
    p
}

/// The error of a failed read or write, naming the file and the namespace.
pub fn io_error<S: AsRef<str>>(
    op: &str,
    path: &[S],
    netns: &str,
    source: io::Error,
) -> NetstateError {
    NetstateError::Io {
        op: op.to_string(),
        path: PathBuf::from(format!("{} in {netns}", proc_path(path).display())),
        source,
    }
}

/// Reads a sysctl file whole and drops the one trailing newline the kernel adds. Everything
/// else (tabs between fields, as in `ip_local_port_range`) is kept, so a write puts back
/// exactly what was read.
pub fn read(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match f.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        // a sysctl handler fills the whole request unless the value ends: a short read is
        // the end, which saves the read(2) that would return 0 (thousands of files per
        // capture)
        if n < chunk.len() {
            break;
        }
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Bytes [`DirReader::read`] asks of its first read(2). A sysctl read allocates and zeroes a
/// kernel buffer of the size asked (`proc_sys_call_handler`), and values are a few bytes; one
/// that fills this is read again whole from offset 0 (an integer handler prints nothing at a
/// later offset, so a cut value cannot be continued).
const FIRST_READ: usize = 128;

/// Runs a system call again while it fails with EINTR.
fn retry(mut f: impl FnMut() -> nix::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// Reads many keys below one directory through a descriptor of it: each key costs an
/// `openat` of a short relative path, `read`s into a buffer kept across keys, and a `close`,
/// with no allocation but the value's. Opening a sysctl file walks every path component
/// with the global sysctl lock taken per component (procfs cannot use the lockless path
/// walk here), so a two-component relative path opens faster than the seven of the full
/// path. The directory belongs to the namespace of the thread that opened it.
pub struct DirReader {
    dir: OwnedFd,
    path: Vec<u8>,
    buf: Vec<u8>,
}

impl DirReader {
    /// Opens `ROOT/rel`; `Ok(None)` if it does not exist.
    pub fn open<S: AsRef<str>>(rel: &[S]) -> io::Result<Option<DirReader>> {
        DirReader::at(&proc_path(rel))
    }

    fn at(p: &Path) -> io::Result<Option<DirReader>> {
        match fcntl::open(
            p,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => Ok(Some(DirReader {
                dir,
                path: Vec::with_capacity(128),
                buf: vec![0; 4096],
            })),
            Err(nix::errno::Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The key at `rel` below the directory, as [`read`] gives it.
    pub fn read<S: AsRef<str>>(&mut self, rel: &[S]) -> io::Result<String> {
        let fd = self.open_file(rel)?;
        self.read_fd(&fd)
    }

    /// The file `name` right below the directory: its value when it is a key file
    /// ([`is_key_file`]), `Ok(None)` when it is not. The mode comes from the open descriptor:
    /// a `statx` of the name before opening it would look the name up a second time, and
    /// procfs lookups (the global sysctl lock per component, no lockless walk) are most of
    /// what a key costs. A file that cannot be opened is an error, for the caller to tell a
    /// key it cannot read from a file that is not a key.
    pub fn read_key(&mut self, name: &str) -> io::Result<Option<String>> {
        let fd = self.open_file(&[name])?;
        let st = nix::sys::stat::fstat(&fd)?;
        if !is_key_mode(st.st_mode) {
            return Ok(None);
        }
        self.read_fd(&fd).map(Some)
    }

    fn open_file<S: AsRef<str>>(&mut self, rel: &[S]) -> io::Result<OwnedFd> {
        self.path.clear();
        for (i, c) in rel.iter().enumerate() {
            if i > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(c.as_ref().as_bytes());
        }
        Ok(fcntl::openat(
            &self.dir,
            self.path.as_slice(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn read_fd(&mut self, fd: &OwnedFd) -> io::Result<String> {
        let first = self.buf.get_mut(..FIRST_READ).unwrap_or_default();
        let mut len = retry(|| nix::unistd::read(fd, first))?;
        if len == FIRST_READ {
            // maybe cut short: read it whole again from the start, as `read` does
            len = 0;
            loop {
                if len == self.buf.len() {
                    self.buf.resize(2 * len, 0);
                }
                let chunk = self.buf.get_mut(len..).unwrap_or_default();
                let at = libc::off_t::try_from(len).map_err(io::Error::other)?;
                let n = retry(|| nix::sys::uio::pread(fd, chunk, at))?;
                let short = n < chunk.len();
                len += n;
                // as in `read`: a short read is the end
                if short {
                    break;
                }
            }
        }
        let mut v = self.buf.get(..len).unwrap_or_default();
        if let Some(rest) = v.strip_suffix(b"\n") {
            v = rest;
        }
        String::from_utf8(v.to_vec()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// One `write(2)` of the whole value: a sysctl parses each write on its own, so a value
/// split over two writes would be two values.
pub fn write(path: &Path, value: &str) -> io::Result<()> {
    crate::floor::sysctl(path, value);
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write {n} of {}", value.len()),
        ));
    }
    Ok(())
}

/// A key is a regular file its owner may both read and write (`ipv4/route/flush` is
/// write-only, `*/mc_forwarding` and the `nf_conntrack_count` style counters read-only).
pub fn is_key_file(meta: &std::fs::Metadata) -> bool {
    meta.is_file() && meta.permissions().mode() & 0o600 == 0o600
}

/// [`is_key_file`] for a raw `st_mode`.
fn is_key_mode(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFREG && mode & 0o600 == 0o600
}

/// Keys left out although readable and writable, because another key holds the same state
/// and writing both would be redundant or lossy:
/// - `ipv4/conf/all/forwarding` is the variable behind `ipv4/ip_forward` (kept);
/// - `*/neigh/*/base_reachable_time` and `retrans_time` are the `_ms` keys in s and USER_HZ
///   ticks (the `_ms` forms keep full precision); `unres_qlen` is `unres_qlen_bytes` divided
///   by a packet truesize (writing it would round the bytes value);
/// - `ipv6/route/gc_min_interval` is `gc_min_interval_ms` in seconds;
/// - `ipv6/conf/*/mtu` follows the link MTU (and RA MTU options); links carry their MTU.
pub fn is_excluded<S: AsRef<str>>(path: &[S]) -> bool {
    let p: Vec<&str> = path.iter().map(|s| s.as_ref()).collect();
    matches!(
        p.as_slice(),
        ["ipv4", "conf", "all", "forwarding"]
            | [
                "ipv4" | "ipv6",
                "neigh",
                _,
                "base_reachable_time" | "retrans_time" | "unres_qlen"
            ]
            | ["ipv6", "route", "gc_min_interval"]
            | ["ipv6", "conf", _, "mtu"]
    )
}

/// The device a per-device key belongs to: `[family, conf|neigh, DEVICE, name]`, where
/// `all` and `default` are not devices.
pub fn device_of<S: AsRef<str>>(path: &[S]) -> Option<&str> {
    match path {
        [_, dir, dev, _] if matches!(dir.as_ref(), "conf" | "neigh") => {
            let d = dev.as_ref();
            (d != "all" && d != "default").then_some(d)
        }
        _ => None,
    }
}

/// Per-device directories whose values come from netlink: `ipv4|ipv6/conf|neigh/DEVICE`.
fn is_netlink_device_dir(path: &[String]) -> bool {
    match path {
        [fam, dir, dev] => {
            matches!(fam.as_str(), "ipv4" | "ipv6")
                && matches!(dir.as_str(), "conf" | "neigh")
                && dev != "all"
                && dev != "default"
        }
        _ => false,
    }
}

/// The directories whose subdirectories are `all`, `default` and one per device:
/// `ipv4|ipv6/conf|neigh`.
fn holds_device_dirs(path: &[String]) -> bool {
    match path {
        [fam, dir] => {
            matches!(fam.as_str(), "ipv4" | "ipv6") && matches!(dir.as_str(), "conf" | "neigh")
        }
        _ => false,
    }
}

/// Rejects a path that could leave `/proc/sys/net` or name nothing: an image is input.
pub fn check_path<S: AsRef<str>>(path: &[S]) -> Result<()> {
    let bad = path.is_empty()
        || path.iter().any(|c| {
            let c = c.as_ref();
            // one pass over the bytes: this runs for every key of an image
            c.is_empty() || c == "." || c == ".." || c.bytes().any(|b| b == b'/' || b == 0)
        });
    if bad {
        let shown: Vec<&str> = path.iter().map(|c| c.as_ref()).collect();
        return Err(NetstateError::invalid(format!(
            "invalid sysctl key {shown:?} in image"
        )));
    }
    Ok(())
}

/// The sorted names of the key files in a directory (`None` if it does not exist).
pub fn list_keys(dir: &[String], netns: &str) -> Result<Option<Vec<String>>> {
    let p = proc_path(dir);
    let rd = match std::fs::read_dir(&p) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("list sysctls", dir, netns, e)),
    };
    let mut names = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| io_error("list sysctls", dir, netns, e))?;
        let Ok(meta) = ent.metadata() else { continue };
        if is_key_file(&meta) {
            names.push(ent.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(Some(names))
}

/// Walks `/proc/sys/net` and reads every key, skipping the per-device directories of
/// `ipv4`/`ipv6` `conf` and `neigh` when `skip_devices` (their values come from netlink).
/// Files that fail to read are not keys (`ipv6/conf/*/stable_secret` gives EIO while unset).
pub fn walk(netns: &str, skip_devices: bool) -> Result<Vec<pb::Sysctl>> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk_dir(&mut path, netns, skip_devices, &mut out)?;
    Ok(out)
}

fn walk_dir(
    path: &mut Vec<String>,
    netns: &str,
    skip_devices: bool,
    out: &mut Vec<pb::Sysctl>,
) -> Result<()> {
    if skip_devices && holds_device_dirs(path) {
        // Listing `ipv4/conf` and the like makes procfs instantiate an entry per device (8 ms
        // at 2,000 links for the four) only for the walk to skip them: these directories hold
        // nothing but a directory per device, `all` and `default` (devinet.c, addrconf.c and
        // neighbour.c register "net/ipv4/conf/%s", "net/ipv6/conf/%s", "net/%s/neigh/%s"),
        // so the walk goes straight to `all` and `default`, in the order a listing sorts.
        for name in ["all", "default"] {
            path.push(name.to_string());
            walk_dir(path, netns, skip_devices, out)?;
            path.pop();
        }
        return Ok(());
    }
    let p = proc_path(path);
    let rd = match std::fs::read_dir(&p) {
        Ok(rd) => rd,
        // a device directory vanishes when its device goes away mid-walk (and `all` is
        // absent from the neigh directories)
        Err(e) if e.kind() == io::ErrorKind::NotFound && !path.is_empty() => return Ok(()),
        Err(e) => return Err(io_error("list sysctls", path, netns, e)),
    };
    // The directory entry's type needs no stat (procfs fills in d_type); only files are
    // stat'ed, for their mode. `ipv4/conf` and the like hold a directory per device.
    let mut ents = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| io_error("list sysctls", path, netns, e))?;
        let Ok(ft) = ent.file_type() else { continue };
        ents.push((
            ent.file_name().to_string_lossy().into_owned(),
            ft.is_dir(),
            ent,
        ));
    }
    ents.sort_by(|a, b| a.0.cmp(&b.0));
    // the files open relative to this directory, once it holds a key
    let mut dir: Option<Option<DirReader>> = None;
    for (name, is_dir, ent) in ents {
        path.push(name);
        if is_dir {
            if !(skip_devices && is_netlink_device_dir(path)) {
                walk_dir(path, netns, skip_devices, out)?;
            }
        } else if !is_excluded(path) {
            let reader = match path.split_last() {
                Some((_, parent)) => dir
                    .get_or_insert_with(|| DirReader::open(parent).ok().flatten())
                    .as_mut(),
                None => None,
            };
            let value = match (reader, path.last()) {
                // the mode from the opened file (one lookup of the name instead of two)
                (Some(r), Some(name)) => r.read_key(name),
                _ => match ent.metadata() {
                    Ok(m) if is_key_file(&m) => read(&proc_path(path)).map(Some),
                    _ => Ok(None),
                },
            };
            match value {
                Ok(Some(value)) => out.push(pb::Sysctl {
                    path: path.clone(),
                    value,
                }),
                Ok(None) => {}
                // a file that is not a key may refuse to open (`ipv4/route/flush` is
                // write-only): only a key's failure is worth a word
                Err(e) if ent.metadata().is_ok_and(|m| is_key_file(&m)) => {
                    tracing::debug!("sysctl {} in {netns} not readable: {e}", path.join("/"))
                }
                Err(_) => {}
            }
        }
        path.pop();
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split('/').map(String::from).collect()
    }

    #[test]
    fn devices_with_dots_stay_one_component() {
        let p = vec![
            "ipv4".to_string(),
            "conf".into(),
            "eth0.100".into(),
            "forwarding".into(),
        ];
        assert_eq!(device_of(&p), Some("eth0.100"));
        assert_eq!(
            proc_path(&p),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
        assert_eq!(device_of(&v("ipv4/conf/all/forwarding")), None);
        assert_eq!(device_of(&v("ipv6/conf/default/accept_ra")), None);
        assert_eq!(device_of(&v("ipv6/neigh/v.1/retrans_time_ms")), Some("v.1"));
        assert_eq!(device_of(&v("ipv4/tcp_rmem")), None);
        assert_eq!(device_of(&v("netfilter/nf_log/2")), None);
    }

    #[test]
    fn netlink_device_dirs() {
        assert!(is_netlink_device_dir(&v("ipv4/conf/eth0.100")));
        assert!(is_netlink_device_dir(&v("ipv6/neigh/lo")));
        assert!(!is_netlink_device_dir(&v("ipv4/conf/all")));
        assert!(!is_netlink_device_dir(&v("ipv6/conf/default")));
        assert!(!is_netlink_device_dir(&v("mpls/conf/eth0")));
        assert!(!is_netlink_device_dir(&v("ipv4/neigh")));
        assert!(holds_device_dirs(&v("ipv4/conf")));
        assert!(holds_device_dirs(&v("ipv6/neigh")));
        assert!(!holds_device_dirs(&v("mpls/conf")));
        assert!(!holds_device_dirs(&v("ipv4/conf/all")));
        assert!(!holds_device_dirs(&v("ipv4")));
    }

    #[test]
    fn dir_reader_reads_what_read_does() {
        // this process's own namespace: reading needs no privilege
        let mut core = DirReader::open(&["core"])
            .unwrap()
            .expect("/proc/sys/net/core");
        let want = read(&proc_path(&["core", "somaxconn"])).unwrap();
        assert_eq!(core.read(&["somaxconn"]).unwrap(), want);
        assert!(!want.is_empty() && !want.ends_with('\n'), "{want:?}");
        let mut ipv4 = DirReader::open(&["ipv4"]).unwrap().unwrap();
        // fields keep their tab; the reused buffer holds no rest of a longer value
        let range = ipv4.read(&["ip_local_port_range"]).unwrap();
        assert!(range.contains('\t'), "{range:?}");
        assert_eq!(
            range,
            read(&proc_path(&["ipv4", "ip_local_port_range"])).unwrap()
        );
        assert_eq!(
            ipv4.read(&["conf", "lo", "forwarding"]).unwrap(),
            read(&proc_path(&["ipv4", "conf", "lo", "forwarding"])).unwrap()
        );
        let e = ipv4
            .read(&["conf", "no-such-device", "forwarding"])
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(DirReader::open(&["no-such-directory"]).unwrap().is_none());
    }

    #[test]
    fn dir_reader_grows_past_one_page() {
        let dir = std::env::temp_dir().join(format!("crhook-dir-reader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let long: String = (0..3000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        std::fs::write(dir.join("long"), format!("{long}{long}{long}\n")).unwrap();
        std::fs::write(dir.join("short"), "1\n").unwrap();
        // around the first read's size, newline included
        let edge = |n: usize| "e".repeat(n);
        for n in FIRST_READ - 2..=FIRST_READ + 1 {
            std::fs::write(dir.join(format!("edge{n}")), format!("{}\n", edge(n))).unwrap();
        }
        let mut r = DirReader::at(&dir).unwrap().unwrap();
        let got = r.read(&["long"]);
        let short = r.read(&["short"]);
        let edges: Vec<_> = (FIRST_READ - 2..=FIRST_READ + 1)
            .map(|n| r.read(&[format!("edge{n}")]).unwrap())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.unwrap(), format!("{long}{long}{long}"));
        assert_eq!(short.unwrap(), "1");
        for (i, e) in edges.iter().enumerate() {
            assert_eq!(*e, edge(FIRST_READ - 2 + i));
        }
    }

    #[test]
    fn duplicates_are_excluded() {
        assert!(is_excluded(&v("ipv4/conf/all/forwarding")));
        assert!(!is_excluded(&v("ipv4/conf/default/forwarding")));
        assert!(!is_excluded(&v("ipv4/ip_forward")));
        assert!(is_excluded(&v("ipv4/neigh/v.1/base_reachable_time")));
        assert!(!is_excluded(&v("ipv4/neigh/v.1/base_reachable_time_ms")));
        assert!(is_excluded(&v("ipv6/neigh/default/retrans_time")));
        assert!(is_excluded(&v("ipv6/neigh/lo/unres_qlen")));
        assert!(!is_excluded(&v("ipv6/neigh/lo/unres_qlen_bytes")));
        assert!(is_excluded(&v("ipv6/conf/eth0/mtu")));
        assert!(is_excluded(&v("ipv6/route/gc_min_interval")));
        assert!(!is_excluded(&v("ipv6/route/gc_min_interval_ms")));
    }

    #[test]
    fn hostile_paths_are_rejected() {
        for bad in [
            vec![],
            v("../../sysrq-trigger"),
            v("ipv4/conf/./x"),
            v("ipv4//x"),
            vec!["a/b".to_string()],
        ] {
            let e = check_path(&bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid sysctl key"), "{e}");
        }
        assert!(check_path(&v("ipv4/conf/eth0.100/forwarding")).is_ok());
    }
}
