//! Finding the network-device files that processes of a namespace hold, through /proc.
//!
//! A process belongs to the namespace when /proc/PID/ns/net is the same nsfs inode (device,
//! inode) as the target: paths differ between bind mounts and /proc links, identities do not.
//! Only the main thread's namespace counts; crhook's own process is never scanned (its
//! namespace thread sits in the target while its descriptors are its own business).
//!
//! Files are recognised by what they are, not by the name the holder opened them under (in a
//! container that name is relative to another root): the character device number from
//! stat(/proc/PID/fd/N), mapped through /proc/misc (`tun`, `vhost-net`) and /proc/devices
//! (`macvtap`, `ipvtap` majors). Sockets, pipes and anonymous inodes are skipped before any
//! stat: they are the process's business, not crhook's. A process whose namespace link
//! crhook may not read (EACCES, as for a sandbox's init) is skipped.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// What kind of network-device file a descriptor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// /dev/net/tun
    Tun,
    /// another network-device file, offered to plugins: "vhost-net", "macvtap", "ipvtap"
    Other(String),
}

/// One descriptor of a network-device file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub pid: u32,
    pub fd: i32,
    /// readlink(/proc/PID/fd/FD)
    pub path: String,
    pub class: Class,
    /// (major, minor) of the character device
    pub rdev: (u32, u32),
}

/// Character devices that are network-device files, from /proc/misc and /proc/devices.
#[derive(Debug, Clone, Default)]
pub struct DevTable {
    misc_major: u32,
    misc: HashMap<u32, String>,
    majors: HashMap<u32, String>,
}

const NET_MISC: &[&str] = &["tun", "vhost-net"];
const NET_MAJORS: &[&str] = &["macvtap", "ipvtap"];

impl DevTable {
    pub fn load() -> Result<DevTable> {
        let misc = read_proc(Path::new("/proc/misc"))?;
        let devices = read_proc(Path::new("/proc/devices"))?;
        Ok(DevTable::parse(&misc, &devices))
    }

    pub fn parse(misc: &str, devices: &str) -> DevTable {
        let mut t = DevTable {
            misc_major: 10,
            ..Default::default()
        };
        for line in misc.lines() {
            if let Some((minor, name)) = num_name(line) {
                if NET_MISC.contains(&name) {
                    t.misc.insert(minor, name.to_string());
                }
            }
        }
        // tun and vhost-net have fixed minors; a module not loaded yet is simply absent from
        // /proc/misc, and then no process can hold its file either
        let chars = devices.split("Block devices:").next().unwrap_or_default();
        for line in chars.lines() {
            if let Some((major, name)) = num_name(line) {
                if name == "misc" {
                    t.misc_major = major;
                }
                if NET_MAJORS.contains(&name) {
                    t.majors.insert(major, name.to_string());
                }
            }
        }
        t
    }

    pub fn classify(&self, major: u32, minor: u32) -> Option<Class> {
        if major == self.misc_major {
            return match self.misc.get(&minor).map(String::as_str) {
                Some("tun") => Some(Class::Tun),
                Some(n) => Some(Class::Other(n.to_string())),
                None => None,
            };
        }
        self.majors.get(&major).map(|n| Class::Other(n.clone()))
    }
}

fn num_name(line: &str) -> Option<(u32, &str)> {
    let mut it = line.split_whitespace();
    let n = it.next()?.parse().ok()?;
    Some((n, it.next()?))
}

fn read_proc(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).map_err(|source| NetstateError::Io {
        op: "read".into(),
        path: p.to_path_buf(),
        source,
    })
}

/// The process vanished (or never was): not an error while walking /proc.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

/// Not ours to look at: some sandboxes deny even root /proc/PID/ns of their init (EACCES).
/// Such a process's descriptors are beyond pidfd_getfd and kcmp as well, so it is skipped.
fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// Pids of the processes whose network namespace is `ns`, in ascending order, without
/// crhook's own.
pub fn processes_in(ns: &NetNs) -> Result<Vec<u32>> {
    let me = std::process::id();
    let rd = std::fs::read_dir("/proc").map_err(|source| NetstateError::Io {
        op: "list processes in".into(),
        path: PathBuf::from("/proc"),
        source,
    })?;
    let mut pids = Vec::new();
    for e in rd {
        let e = e.map_err(|source| NetstateError::Io {
            op: "list processes in".into(),
            path: PathBuf::from("/proc"),
            source,
        })?;
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let p = PathBuf::from(format!("/proc/{pid}/ns/net"));
        match std::fs::metadata(&p) {
            Ok(m) if (m.dev(), m.ino()) == ns.identity() => pids.push(pid),
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(e) if denied(&e) => {
                tracing::debug!(pid, "process not inspectable, skipped: {e}");
            }
            Err(source) => {
                return Err(NetstateError::Io {
                    op: format!(
                        "read the network namespace of process {pid} for {}:",
                        ns.name()
                    ),
                    path: p,
                    source,
                })
            }
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// The network-device files process `pid` holds, by descriptor number. A process that exits
/// meanwhile holds nothing.
pub fn device_files(pid: u32, table: &DevTable) -> Result<Vec<Candidate>> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if gone(&e) => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetstateError::Io {
                op: "list descriptors in".into(),
                path: dir,
                source,
            })
        }
    };
    let mut out = Vec::new();
    for e in rd {
        let Ok(e) = e else { continue };
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let link = e.path();
        let path = match std::fs::read_link(&link) {
            Ok(p) => p.display().to_string(),
            Err(e) if gone(&e) => continue,
            Err(source) => {
                return Err(NetstateError::Io {
                    op: "read descriptor link".into(),
                    path: link,
                    source,
                })
            }
        };
        // "socket:[..]", "pipe:[..]", "anon_inode:..": never device files
        if !path.starts_with('/') {
            continue;
        }
        let meta = match std::fs::metadata(&link) {
            Ok(m) => m,
            Err(e) if gone(&e) => continue,
            Err(source) => {
                return Err(NetstateError::Io {
                    op: "stat descriptor".into(),
                    path: link,
                    source,
                })
            }
        };
        if !meta.file_type().is_char_device() {
            continue;
        }
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        if let Some(class) = table.classify(major, minor) {
            out.push(Candidate {
                pid,
                fd,
                path,
                class,
                rdev: (major, minor),
            });
        }
    }
    out.sort_by_key(|c| c.fd);
    Ok(out)
}

/// /proc/PID/fdinfo/FD; empty when the process is gone.
pub fn fdinfo(pid: u32, fd: i32) -> Result<String> {
    let p = PathBuf::from(format!("/proc/{pid}/fdinfo/{fd}"));
    match std::fs::read_to_string(&p) {
        Ok(s) => Ok(s),
        Err(e) if gone(&e) => Ok(String::new()),
        Err(source) => Err(NetstateError::Io {
            op: "read".into(),
            path: p,
            source,
        }),
    }
}

/// A field of fdinfo ("iff", "flags"), trimmed.
pub fn fdinfo_field<'a>(fdinfo: &'a str, key: &str) -> Option<&'a str> {
    fdinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// The open(2) status flags fdinfo prints in octal.
pub fn file_flags(fdinfo: &str) -> u32 {
    fdinfo_field(fdinfo, "flags")
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MISC: &str = " 10 misc\n200 tun\n238 vhost-net\n183 hw_random\n";
    const DEVICES: &str =
        "Character devices:\n  1 mem\n 10 misc\n246 macvtap\n245 ipvtap\n\nBlock devices:\n246 fake\n  7 loop\n";

    #[test]
    fn device_table_maps_numbers_to_network_files() {
        let t = DevTable::parse(MISC, DEVICES);
        assert_eq!(t.classify(10, 200), Some(Class::Tun));
        assert_eq!(t.classify(10, 238), Some(Class::Other("vhost-net".into())));
        assert_eq!(
            t.classify(10, 183),
            None,
            "misc devices other than tun and vhost-net"
        );
        assert_eq!(t.classify(246, 3), Some(Class::Other("macvtap".into())));
        assert_eq!(t.classify(245, 0), Some(Class::Other("ipvtap".into())));
        assert_eq!(t.classify(1, 3), None);
        assert_eq!(t.classify(7, 0), None, "block majors are not char majors");
    }

    #[test]
    fn fdinfo_fields() {
        let info = "pos:\t0\nflags:\t02104002\nmnt_id:\t66\nino:\t105\niff:\tmq0\n";
        assert_eq!(fdinfo_field(info, "iff"), Some("mq0"));
        assert_eq!(file_flags(info), 0o2104002);
        assert!(file_flags(info) & libc::O_NONBLOCK as u32 != 0);
        assert_eq!(fdinfo_field("iff:\t\n", "iff"), Some(""));
        assert_eq!(file_flags("pos: 0\n"), 0);
    }

    #[test]
    fn this_process_is_never_listed() {
        let ns = crate::netns::NetNs::current().expect("open own namespace");
        let pids = processes_in(&ns).expect("walk /proc");
        assert!(!pids.contains(&std::process::id()));
    }
}
