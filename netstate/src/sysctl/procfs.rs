//! Plain file access to `/proc/sys/net` of the calling thread's namespace, and the rules that
//! decide which files are keys.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// One `write(2)` of the whole value: a sysctl parses each write on its own, so a value
/// split over two writes would be two values.
pub fn write(path: &Path, value: &str) -> io::Result<()> {
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
    let p = proc_path(path);
    let rd = match std::fs::read_dir(&p) {
        Ok(rd) => rd,
        // a device directory vanishes when its device goes away mid-walk
        Err(e) if e.kind() == io::ErrorKind::NotFound && !path.is_empty() => return Ok(()),
        Err(e) => return Err(io_error("list sysctls", path, netns, e)),
    };
    let mut ents = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| io_error("list sysctls", path, netns, e))?;
        let Ok(meta) = ent.metadata() else { continue };
        ents.push((ent.file_name().to_string_lossy().into_owned(), meta));
    }
    ents.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in ents {
        path.push(name);
        if meta.is_dir() {
            if !(skip_devices && is_netlink_device_dir(path)) {
                walk_dir(path, netns, skip_devices, out)?;
            }
        } else if is_key_file(&meta) && !is_excluded(path) {
            match read(&proc_path(path)) {
                Ok(value) => out.push(pb::Sysctl {
                    path: path.clone(),
                    value,
                }),
                Err(e) => tracing::debug!("sysctl {} in {netns} not readable: {e}", path.join("/")),
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
