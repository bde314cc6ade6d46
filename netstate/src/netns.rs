//! Network namespace handles and the one place crhook enters a namespace.
//!
//! A thread's network namespace decides where a netlink socket, a `/dev/net/tun` open, a
//! `/proc/sys/net` access and a spawned child land, and a netlink socket stays bound to the
//! namespace it was created in. So `setns` is called here only, and only on a fresh OS thread
//! that exits afterwards (never on a tokio worker or blocking-pool thread, which are reused),
//! or in a child between fork and exec. `/proc/1/ns/net` may not be openable even by root in
//! sandboxes, so nothing here relies on it: the thread simply dies instead of switching back.
//! The same holds for `unshare(CLONE_NEWNET)`, which makes the private namespaces crhook
//! lists saved firewall rules and reads sysctl defaults in ([`NetNs::private`]).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::error::{NetstateError, Result};

/// Which namespace to act on, as the command line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// a path to an nsfs file: `/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount
    Netns(PathBuf),
    /// the network namespace of a process
    Pid(u32),
}

impl Target {
    pub fn path(&self) -> PathBuf {
        match self {
            Target::Netns(p) => p.clone(),
            Target::Pid(pid) => PathBuf::from(format!("/proc/{pid}/ns/net")),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path().display())
    }
}

/// An open network namespace: the nsfs file, kept open so the namespace cannot vanish or be
/// replaced under us, and its identity (device, inode).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    name: String,
    dev: u64,
    ino: u64,
    /// NETLINK_NETFILTER socket, opened on first use and kept while this handle lives (see
    /// [`NetNs::with_netfilter`])
    netfilter: std::sync::Mutex<Option<crate::nl::Nl>>,
}

impl NetNs {
    pub fn open(target: &Target) -> Result<NetNs> {
        Self::open_path(&target.path())
    }

    pub fn open_path(path: &Path) -> Result<NetNs> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| NetstateError::Netns {
            op: "open network namespace",
            path: name.clone(),
            source,
        })?;
        let meta = file.metadata().map_err(|source| NetstateError::Netns {
            op: "stat network namespace",
            path: name.clone(),
            source,
        })?;
        // An nsfs inode answers NS_GET_NSTYPE; a plain file does not. Checking the type here
        // turns "setns: Invalid argument" later into a message naming the path.
        // SAFETY: ioctl NS_GET_NSTYPE takes no argument and only reads the fd.
        let ty = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        if ty != libc::CLONE_NEWNET {
            return Err(NetstateError::Netns {
                op: "open network namespace",
                path: name,
                source: std::io::Error::other("not a network namespace"),
            });
        }
        Ok(NetNs {
            file,
            name,
            dev: meta.dev(),
            ino: meta.ino(),
            netfilter: Default::default(),
        })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs> {
        Self::open_path(Path::new("/proc/thread-self/ns/net"))
    }

    /// A new, empty network namespace that nothing but this handle (and the sockets and
    /// children made through it) holds: a fresh thread calls `unshare(CLONE_NEWNET)`, opens
    /// its own nsfs file and exits. The kernel frees the namespace when the last reference
    /// goes, so dropping the handle is the whole cleanup, and a crhook killed by SIGKILL
    /// leaves nothing behind (a `ip netns add` name would stay mounted under /run/netns).
    /// Needs CAP_SYS_ADMIN; `label` names it in errors.
    pub fn private(label: &str) -> Result<NetNs> {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
                    NetstateError::Netns {
                        op: "create network namespace",
                        path: label.to_string(),
                        source: std::io::Error::from(e),
                    }
                })?;
                let mut ns = Self::current()?;
                ns.name = label.to_string();
                Ok(ns)
            });
            h.join()
                .map_err(|_| NetstateError::invalid(format!("thread creating {label} panicked")))?
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// (st_dev, st_ino) of the nsfs inode: equal identities are the same namespace.
    pub fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): a number the kernel gives each
    /// namespace once and never reuses while it runs, unlike the nsfs inode. 0 on kernels
    /// without it.
    pub fn cookie(&self) -> Result<u64> {
        const SO_NETNS_COOKIE: libc::c_int = 71;
        self.run(|| {
            use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
            // SAFETY: socket(2) with constant arguments; the result is checked below
            let fd =
                unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(NetstateError::Io {
                    op: "open a socket to read the namespace cookie".into(),
                    path: std::path::PathBuf::from(&self.name),
                    source: std::io::Error::last_os_error(),
                });
            }
            // SAFETY: fd was just returned by socket(2) and is owned by nothing else
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut cookie: u64 = 0;
            let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
            // SAFETY: cookie and len are valid for writes of the sizes passed
            let r = unsafe {
                libc::getsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    SO_NETNS_COOKIE,
                    (&mut cookie as *mut u64).cast(),
                    &mut len,
                )
            };
            Ok(if r == 0 { cookie } else { 0 })
        })
    }

    pub fn same_as(&self, other: &NetNs) -> bool {
        self.identity() == other.identity()
    }

    pub fn try_clone(&self) -> Result<NetNs> {
        Ok(NetNs {
            file: self
                .file
                .try_clone()
                .map_err(|source| NetstateError::Netns {
                    op: "duplicate namespace handle",
                    path: self.name.clone(),
                    source,
                })?,
            name: self.name.clone(),
            dev: self.dev,
            ino: self.ino,
            netfilter: Default::default(),
        })
    }

    /// Runs `f` with the namespace's NETLINK_NETFILTER socket, opened inside it on first use
    /// and kept until this handle is dropped. Closing one costs up to an RCU grace period
    /// (about 10 ms here) while nf_tables has a finished transaction to free, so a socket per
    /// request would put that wait inside the lock window (lock, capture, unlock). A socket
    /// whose request failed is dropped, so no stale answer reaches the next one. A socket with
    /// nothing left to do can be released without that wait ([`NetNs::release_netfilter`]).
    pub(crate) fn with_netfilter<T>(
        &self,
        f: impl FnOnce(&mut crate::nl::Nl) -> Result<T>,
    ) -> Result<T> {
        let mut slot = self
            .netfilter
            .lock()
            .map_err(|_| NetstateError::invalid("netfilter socket lock poisoned"))?;
        let mut nl = match slot.take() {
            Some(nl) => nl,
            None => {
                let name = self.name.clone();
                self.run(move || {
                    crate::nl::Nl::with_protocol(
                        &name,
                        netlink_sys::protocols::NETLINK_NETFILTER,
                        "NETLINK_NETFILTER",
                    )
                })?
            }
        };
        let r = f(&mut nl);
        if r.is_ok() {
            *slot = Some(nl);
        }
        r
    }

    /// Hands the NETLINK_NETFILTER socket, if one is open, to the kernel to release
    /// (handoff.rs), so that neither this call nor the process's exit waits for nf_tables'
    /// destroy work. Only for a socket that owns no table any more (after an unlock went
    /// through); a later request opens a new socket.
    pub(crate) fn release_netfilter(&self) {
        let nl = self.netfilter.lock().ok().and_then(|mut slot| slot.take());
        if let Some(nl) = nl {
            let fd = nl.raw_fd();
            crate::handoff::release(nl, fd);
        }
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Run `f` on a fresh OS thread that has entered this namespace; the thread exits
    /// afterwards, so no other code ever runs in the wrong namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send,
        F: FnOnce() -> Result<T> + Send,
    {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                self.enter_this_thread()?;
                f()
            });
            h.join().map_err(|_| {
                NetstateError::invalid(format!("worker thread in {} panicked", self.name))
            })?
        })
    }

    /// Like [`NetNs::run`] but awaitable: the closure runs on its own OS thread while the
    /// caller's runtime keeps going.
    pub async fn run_async<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let ns = self.try_clone()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("crhook-netns".into())
            .spawn(move || {
                let r = ns.enter_this_thread().and_then(|()| f());
                let _ = tx.send(r);
            })
            .map_err(|source| NetstateError::Netns {
                op: "spawn namespace thread for",
                path: self.name.clone(),
                source,
            })?;
        rx.await.map_err(|_| {
            NetstateError::invalid(format!("worker thread in {} panicked", self.name))
        })?
    }

    fn enter_this_thread(&self) -> Result<()> {
        // unshare(CLONE_FS) is not needed: only the network namespace changes, and it is
        // per-thread. The thread never returns to the pool.
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| NetstateError::Netns {
            op: "enter network namespace",
            path: self.name.clone(),
            source: std::io::Error::from(e),
        })
    }

    /// A command whose child enters this namespace between fork and exec.
    pub fn command(&self, program: &Path) -> Result<Command> {
        let mut cmd = Command::new(program);
        let fd = self
            .file
            .try_clone()
            .map_err(|source| NetstateError::Netns {
                op: "duplicate namespace handle",
                path: self.name.clone(),
                source,
            })?;
        // SAFETY: the closure only calls setns(2), which is async-signal-safe, on an fd that
        // stays open until the child execs (the File moves into the closure).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(cmd)
    }
}

impl NetNs {
    /// [`NetNs::command`] for the firewall tools crhook runs itself (`iptables-restore`,
    /// `nft`, ...): the child also gets a private mount namespace in which every mount is
    /// read-only except `/run` (the xtables lock lives there), so text a tool is fed cannot
    /// make it write a file anywhere. Where mount namespaces cannot be had (no
    /// CAP_SYS_ADMIN, a kernel before 5.12 without `mount_setattr`) the child runs as
    /// [`NetNs::command`] makes it: the image text is checked before any tool sees it anyway.
    pub fn confined_command(&self, program: &Path) -> Result<Command> {
        let mut cmd = self.command(program)?;
        // SAFETY: the closure makes raw system calls only (unshare, mount, mount_setattr),
        // which are async-signal-safe, on static strings and a struct on its stack.
        unsafe {
            cmd.pre_exec(|| {
                confine_mounts();
                Ok(())
            });
        }
        Ok(cmd)
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// In a forked child: a private mount namespace, everything read-only but `/run`. Best
/// effort by design (see [`NetNs::confined_command`]); a step that fails leaves the child
/// as confined as the steps before made it, never less than unconfined.
fn confine_mounts() {
    let attr = |set: u64, clr: u64| MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: raw system calls on static NUL-terminated strings and a stack struct whose size
    // is passed with it.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return;
        }
        let none = std::ptr::null::<libc::c_char>();
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return;
        }
        // /run as a mount of its own, so it can stay writable below a read-only root
        if libc::mount(
            c"/run".as_ptr(),
            c"/run".as_ptr(),
            none,
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return;
        }
        let ro = attr(MOUNT_ATTR_RDONLY, 0);
        if libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::AT_RECURSIVE,
            &ro as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) != 0
        {
            return;
        }
        let rw = attr(0, MOUNT_ATTR_RDONLY);
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/run".as_ptr(),
            libc::AT_RECURSIVE,
            &rw as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
    }
}

const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
