//! The restore journal on disk. Every change restore makes is announced here before it is
//! made (write-ahead), so that a restore killed at any point — SIGKILL from a runtime whose
//! hook timed out, the OOM killer, a node agent crashing — can be undone by the next crhook run
//! on the same target (`crhook recover TARGET`, or the next `restore`, which recovers first).
//! A rollback in the same process replays the same log, so the one undo path is exercised by
//! every rollback test.
//!
//! Where: `/run/crhook/journal/<dev>-<ino>.journal` (overridable per restore), named by the
//! target namespace's identity — the only name a later run on "the same target" can compute,
//! whether it names it by path, pid or bundle. `/run` is a tmpfs: a reboot takes the
//! namespaces and their journals together. The directories are made 0700 and must be owned by
//! crhook's user and writable by no one else; the file is created under a random name, locked
//! (`flock`, held for the whole restore: a live restore's journal is never taken as stale, in
//! any pid namespace) and only then renamed into place.
//!
//! Format: records, each a little-endian u32 body length, a tag byte and the body. The header
//! (JSON) names the target, the host and the peer namespaces; an intent (binary, it may hold
//! 100,000 route deletions) lists netlink undo requests, written before their batch is sent; a
//! settle names the entries of the last intent (or firewall step) that were not applied (their
//! request failed, so undoing them could remove an object restore did not make); sysctl
//! records hold a key's previous value, written before the key is; firewall records hold one
//! step's undo (JSON). A record cut short by a kill is ignored: what it announced was not yet
//! done. No fsync: the journal guards against the process dying, not the machine (which takes
//! the namespaces with it).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crhook_core::safefs;

use super::Sock;
use crate::error::{NetstateError, Result};
use crate::firewall::StepUndo;
use crate::netns::NetNs;
use crate::nl::Req;

/// Where restore journals live unless the caller says otherwise.
pub const DEFAULT_DIR: &str = "/run/crhook/journal";

const HEADER: u8 = 1;
const INTENT: u8 = 2;
const SETTLE: u8 = 3;
const SYSCTL: u8 = 4;
const FIREWALL: u8 = 5;
const FEATURES: u8 = 6;

/// Who wrote the journal and the namespaces its entries go to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub target: String,
    pub target_id: (u64, u64),
    /// the target's namespace cookie (never reused while the machine runs, unlike an inode
    /// number): a journal whose namespace is gone must not be replayed into a new namespace
    /// that happens to get the same inode; 0 where the kernel has no cookies
    #[serde(default)]
    pub target_cookie: u64,
    /// the namespace crhook ran in (where `Sock::Host` entries go)
    pub host_id: (u64, u64),
    /// `Sock::Peer(i)` entries go to `peers[i]`: its path and identity
    pub peers: Vec<(String, (u64, u64))>,
    pub pid: u32,
}

/// One netlink undo request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlEntry {
    pub sock: Sock,
    pub msg_type: u16,
    pub payload: Vec<u8>,
    pub what: String,
}

/// One record read back.
#[derive(Debug)]
pub(crate) enum Record {
    Intent(u32, Vec<NlEntry>),
    /// the record settled and the indexes of its entries that were not applied
    Settle(u32, Vec<u32>),
    Sysctl {
        sock: Sock,
        path: Vec<String>,
        old: String,
    },
    Firewall(u32, StepUndo),
    /// a link's device features before restore changed them
    Features {
        link: String,
        before: crate::ethtool::Features,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FeaturesBody {
    link: String,
    before: crate::ethtool::Features,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SysctlBody {
    sock: Sock,
    path: Vec<String>,
    old: String,
}

/// The open journal of a running restore; cloned into the threads that write sysctls.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Sink>>,
    /// the number of the next intent or firewall record (settles name the one they settle:
    /// the firewall may be restored on its own thread while links go in)
    seq: Arc<AtomicU32>,
    /// the directory holding the file; None for a journal kept in memory
    dir: Option<Arc<File>>,
    name: Arc<String>,
}

/// Where records go: the file, or memory where no journal directory can be had (a rollback
/// still replays it; a killed restore cannot be recovered then).
enum Sink {
    File(File),
    Memory(Vec<u8>),
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Log({})", self.name)
    }
}

/// What a journal directory holds for a target.
pub enum Found {
    None,
    /// a restore of it is running (the journal's lock is held)
    Busy(PathBuf),
    /// a journal nobody holds: a restore died; the file is locked by us now
    Stale {
        file: File,
        path: PathBuf,
        dir: File,
        name: String,
    },
}

fn io_err(op: &str, path: &Path, source: std::io::Error) -> NetstateError {
    NetstateError::Io {
        op: op.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

fn file_name(id: (u64, u64)) -> String {
    format!("{}-{}.journal", id.0, id.1)
}

/// Opens `dir`, creating it (and a missing parent) 0700, and refuses it unless crhook's user
/// owns it and no one else may write it: a journal there would be theirs to plant.
fn open_dir(dir: &Path) -> Result<File> {
    let (Some(parent), Some(base)) = (dir.parent(), dir.file_name()) else {
        return Err(NetstateError::invalid(format!(
            "journal directory {}: not a directory path",
            dir.display()
        )));
    };
    let up = match safefs::open_dir(parent) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => open_dir(parent)?,
        Err(e) => return Err(io_err("open journal directory", parent, e)),
    };
    let d = match safefs::open_dir_at(up.as_fd(), base) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            match safefs::mkdir_at(up.as_fd(), base, 0o700) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(io_err("create journal directory", dir, e))
                }
                _ => safefs::open_dir_at(up.as_fd(), base),
            }
        }
        r => r,
    }
    .map_err(|e| io_err("open journal directory", dir, e))?;
    let m = d
        .metadata()
        .map_err(|e| io_err("stat journal directory", dir, e))?;
    if m.uid() != safefs::euid() || m.mode() & 0o022 != 0 {
        return Err(NetstateError::invalid(format!(
            "journal directory {}: owned by uid {} with mode {:o}; it must be crhook's own and writable by no one else",
            dir.display(),
            m.uid(),
            m.mode() & 0o7777
        )));
    }
    Ok(d)
}

/// Looks for the journal of namespace `id` in `dir`.
pub fn find(dir: &Path, id: (u64, u64)) -> Result<Found> {
    let d = match safefs::open_dir(dir) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Found::None),
        Err(e) => return Err(io_err("open journal directory", dir, e)),
    };
    let name = file_name(id);
    let path = dir.join(&name);
    let file = match safefs::open_beneath(d.as_fd(), OsStr::new(&name)) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Found::None),
        Err(e) => return Err(io_err("open restore journal", &path, e)),
    };
    if !safefs::try_lock(file.as_fd()).map_err(|e| io_err("lock restore journal", &path, e))? {
        return Ok(Found::Busy(path));
    }
    let m = file
        .metadata()
        .map_err(|e| io_err("stat restore journal", &path, e))?;
    if !m.is_file() || m.uid() != safefs::euid() || m.mode() & 0o022 != 0 {
        return Err(NetstateError::invalid(format!(
            "restore journal {}: not a regular file of crhook's own, writable by it alone",
            path.display()
        )));
    }
    // removed by the run that held it before us
    if m.nlink() == 0 {
        return Ok(Found::None);
    }
    Ok(Found::Stale {
        file,
        path,
        dir: d,
        name,
    })
}

/// Removes a stale journal found by [`find`] (after its undo ran).
pub fn remove_stale(dir: &File, name: &str, path: &Path) -> Result<()> {
    safefs::unlink_at(dir.as_fd(), OsStr::new(name), 0)
        .map_err(|e| io_err("remove restore journal", path, e))
}

impl Log {
    /// Starts the journal of a restore into namespace `header.target_id`. Fails when one is
    /// there already (the caller recovers a stale one first).
    pub fn create(dir: &Path, header: &Header) -> Result<Log> {
        let d = open_dir(dir)?;
        let tmp = format!(
            ".{}.tmp",
            safefs::random_name().map_err(|e| io_err("name restore journal", dir, e))?
        );
        let file = safefs::create_excl(d.as_fd(), OsStr::new(&tmp), 0o600)
            .map_err(|e| io_err("create restore journal", &dir.join(&tmp), e))?;
        let name = file_name(header.target_id);
        let d = Arc::new(d);
        safefs::try_lock(file.as_fd())
            .map_err(|e| io_err("lock restore journal", &dir.join(&tmp), e))?;
        let log = Log {
            sink: Arc::new(Mutex::new(Sink::File(file))),
            seq: Arc::default(),
            dir: Some(d.clone()),
            name: Arc::new(tmp.clone()),
        };
        let placed = (|| {
            let body =
                serde_json::to_vec(header).map_err(|e| NetstateError::invalid(e.to_string()))?;
            log.append(HEADER, &body)?;
            safefs::rename_at(
                d.as_fd(),
                OsStr::new(&tmp),
                OsStr::new(&name),
                libc::RENAME_NOREPLACE,
            )
            .map_err(|e| io_err("place restore journal", &dir.join(&name), e))
        })();
        if let Err(e) = placed {
            let _ = safefs::unlink_at(d.as_fd(), OsStr::new(&tmp), 0);
            return Err(e);
        }
        Ok(Log {
            name: Arc::new(name),
            ..log
        })
    }

    /// A journal kept in memory: rollback works as ever, recovery after a kill does not.
    pub fn memory(header: &Header) -> Result<Log> {
        let log = Log {
            sink: Arc::new(Mutex::new(Sink::Memory(Vec::new()))),
            seq: Arc::default(),
            dir: None,
            name: Arc::new(format!("journal of {} in memory", header.target)),
        };
        let body = serde_json::to_vec(header).map_err(|e| NetstateError::invalid(e.to_string()))?;
        log.append(HEADER, &body)?;
        Ok(log)
    }

    /// Whether the journal outlives the process (it is on disk).
    pub fn durable(&self) -> bool {
        self.dir.is_some()
    }

    fn append(&self, tag: u8, body: &[u8]) -> Result<()> {
        let len = u32::try_from(body.len() + 1)
            .map_err(|_| NetstateError::invalid("restore journal record over 4 GiB"))?;
        let mut rec = Vec::with_capacity(body.len() + 5);
        rec.extend_from_slice(&len.to_le_bytes());
        rec.push(tag);
        rec.extend_from_slice(body);
        match &mut *self.sink.lock().map_err(|_| poisoned())? {
            Sink::File(f) => f
                .write_all(&rec)
                .map_err(|e| io_err("write restore journal", Path::new(self.name.as_str()), e)),
            Sink::Memory(m) => {
                m.extend_from_slice(&rec);
                Ok(())
            }
        }
    }

    /// Announces netlink undo requests before the changes they undo are sent; returns the
    /// record's number, for [`Log::settle`].
    pub fn intent<'a>(
        &self,
        entries: impl IntoIterator<Item = (Sock, &'a Req, &'a str)>,
    ) -> Result<u32> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut body = seq.to_le_bytes().to_vec();
        let mut n = 0u32;
        body.extend_from_slice(&[0; 4]);
        for (sock, req, what) in entries {
            put_sock(&mut body, sock);
            // type, then the payload's length once it is written in place
            let at = body.len();
            body.extend_from_slice(&[0; 6]);
            let ty = req.payload_into(&mut body);
            let len = (body.len() - at - 6) as u32;
            body[at..at + 2].copy_from_slice(&ty.to_le_bytes());
            body[at + 2..at + 6].copy_from_slice(&len.to_le_bytes());
            put_bytes(&mut body, what.as_bytes());
            n += 1;
        }
        body[4..8].copy_from_slice(&n.to_le_bytes());
        self.append(INTENT, &body)?;
        Ok(seq)
    }

    /// Names the entries of intent or firewall record `seq` that were not applied.
    pub fn settle(&self, seq: u32, failed: &[u32]) -> Result<()> {
        if failed.is_empty() {
            return Ok(());
        }
        let body: Vec<u8> = std::iter::once(seq)
            .chain(failed.iter().copied())
            .flat_map(u32::to_le_bytes)
            .collect();
        self.append(SETTLE, &body)
    }

    /// Announces a sysctl write: `old` is the value before it.
    pub fn sysctl(&self, sock: Sock, path: &[String], old: &str) -> Result<()> {
        let body = serde_json::to_vec(&SysctlBody {
            sock,
            path: path.to_vec(),
            old: old.to_string(),
        })
        .map_err(|e| NetstateError::invalid(e.to_string()))?;
        self.append(SYSCTL, &body)
    }

    /// Announces a firewall step by its undo; returns the record's number.
    pub(crate) fn firewall(&self, u: &StepUndo) -> Result<u32> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut body = seq.to_le_bytes().to_vec();
        serde_json::to_writer(&mut body, u).map_err(|e| NetstateError::invalid(e.to_string()))?;
        self.append(FIREWALL, &body)?;
        Ok(seq)
    }

    /// Announces a change of link `link`'s device features: `before` is what it had.
    pub fn features(&self, link: &str, before: &crate::ethtool::Features) -> Result<()> {
        let body = serde_json::to_vec(&FeaturesBody {
            link: link.to_string(),
            before: before.clone(),
        })
        .map_err(|e| NetstateError::invalid(e.to_string()))?;
        self.append(FEATURES, &body)
    }

    /// Everything written so far, read back from the open file.
    pub(crate) fn read_back(&self) -> Result<(Header, Vec<Record>)> {
        let name = Path::new(self.name.as_str());
        match &*self.sink.lock().map_err(|_| poisoned())? {
            Sink::File(f) => {
                let fd = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f));
                let mut r = File::open(&fd).map_err(|e| io_err("read restore journal", name, e))?;
                read(&mut r, name)
            }
            Sink::Memory(m) => read(&mut m.as_slice(), name),
        }
    }

    /// Removes the journal: the restore finished, or its rollback ran.
    pub fn remove(self) -> Result<()> {
        match &self.dir {
            Some(d) => safefs::unlink_at(d.as_fd(), OsStr::new(self.name.as_str()), 0)
                .map_err(|e| io_err("remove restore journal", Path::new(self.name.as_str()), e)),
            None => Ok(()),
        }
    }
}

fn poisoned() -> NetstateError {
    NetstateError::invalid("restore journal: a writer panicked")
}

fn put_sock(b: &mut Vec<u8>, s: Sock) {
    let (tag, i) = match s {
        Sock::Target => (0u8, 0u32),
        Sock::Host => (1, 0),
        Sock::Peer(i) => (2, i as u32),
    };
    b.push(tag);
    b.extend_from_slice(&i.to_le_bytes());
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as u32).to_le_bytes());
    b.extend_from_slice(v);
}

/// A cursor over one record's body; every read is bounds-checked (the file may be cut).
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn intent(body: &[u8]) -> Option<(u32, Vec<NlEntry>)> {
    let mut c = Cur(body);
    let seq = c.u32()?;
    let n = c.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let sock = match (c.u8()?, c.u32()?) {
            (0, _) => Sock::Target,
            (1, _) => Sock::Host,
            (2, i) => Sock::Peer(i as usize),
            _ => return None,
        };
        let msg_type = c.u16()?;
        let payload = c.bytes()?.to_vec();
        let what = String::from_utf8_lossy(c.bytes()?).into_owned();
        out.push(NlEntry {
            sock,
            msg_type,
            payload,
            what,
        });
    }
    c.0.is_empty().then_some((seq, out))
}

/// Reads a journal: its header and every whole record (a record cut short ends the read).
pub(crate) fn read(r: &mut dyn Read, path: &Path) -> Result<(Header, Vec<Record>)> {
    let mut buf = Vec::new();
    r.read_to_end(&mut buf)
        .map_err(|e| io_err("read restore journal", path, e))?;
    let bad =
        |what: &str| NetstateError::invalid(format!("restore journal {}: {what}", path.display()));
    let mut c = Cur(&buf);
    let mut header = None;
    let mut records = Vec::new();
    while let Some(len) = c.u32() {
        let Some(rec) = c.take(len as usize) else {
            break;
        };
        let Some((&tag, body)) = rec.split_first() else {
            return Err(bad("empty record"));
        };
        match tag {
            HEADER => header = Some(serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?),
            INTENT => {
                let (seq, v) = intent(body).ok_or_else(|| bad("malformed intent record"))?;
                records.push(Record::Intent(seq, v))
            }
            SETTLE => {
                let mut v = body
                    .chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                let seq = v.next().ok_or_else(|| bad("empty settle record"))?;
                records.push(Record::Settle(seq, v.collect()))
            }
            SYSCTL => {
                let s: SysctlBody =
                    serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
                records.push(Record::Sysctl {
                    sock: s.sock,
                    path: s.path,
                    old: s.old,
                })
            }
            FIREWALL => {
                let (seq, json) = body
                    .split_first_chunk::<4>()
                    .ok_or_else(|| bad("short firewall record"))?;
                records.push(Record::Firewall(
                    u32::from_le_bytes(*seq),
                    serde_json::from_slice(json).map_err(|e| bad(&e.to_string()))?,
                ))
            }
            FEATURES => {
                let f: FeaturesBody =
                    serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
                records.push(Record::Features {
                    link: f.link,
                    before: f.before,
                })
            }
            t => return Err(bad(&format!("unknown record type {t}"))),
        }
    }
    let header = header.ok_or_else(|| bad("no header"))?;
    Ok((header, records))
}

/// The header of the namespaces a restore works in.
pub fn header(ns: &NetNs, host: &NetNs, peers: &[&NetNs]) -> Header {
    Header {
        target: ns.name().to_string(),
        target_id: ns.identity(),
        target_cookie: ns.cookie().unwrap_or(0),
        host_id: host.identity(),
        peers: peers
            .iter()
            .map(|p| (p.name().to_string(), p.identity()))
            .collect(),
        pid: std::process::id(),
    }
}
