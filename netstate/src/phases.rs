//! What both checkpoints (checkpoint.rs, a whole image; incremental.rs, a child image) do
//! alike: record the namespace's identity, warn about a lock an earlier run left, take the
//! lock, and read the sysctls once the lock is gone.

use std::time::Instant;

use crhook_core::StatsRecorder;
use crhook_proto as pb;

use crate::api::CheckpointOptions;
use crate::error::Result;
use crate::firewall::LockForm;
use crate::netns::{NetNs, Target};

/// The identity an image records of the namespace it comes from: nsfs device and inode,
/// how it was named, the host, and the namespace cookie (which tells a reused inode apart).
pub fn identity(ns: &NetNs, target: &Target) -> pb::NamespaceIdentity {
    let (dev, ino) = ns.identity();
    pb::NamespaceIdentity {
        dev,
        ino,
        target: target.to_string(),
        hostname: nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default(),
        cookie: ns.cookie().unwrap_or(0),
    }
}

/// The warning for a lock an earlier crhook run left in `ns`, if there is one.
pub fn stale_lock(ns: &NetNs) -> Result<Option<String>> {
    Ok(crate::firewall::is_locked(ns)?.then(|| {
        format!(
            "{}: found a network lock left by an earlier crhook run; it is not captured (crhook unlock removes it)",
            ns.name()
        )
    }))
}

/// A lock a checkpoint took.
pub struct Locked {
    /// when the lock held
    pub at: Instant,
    form: LockForm,
    /// no lock was there before this one (the [`stale_lock`] check found none)
    alone: bool,
}

/// Locks `ns` for a checkpoint; returns when the lock holds. `alone`: [`stale_lock`] found no
/// earlier lock.
pub fn take_lock(
    ns: &NetNs,
    opts: &CheckpointOptions,
    stats: &mut StatsRecorder,
    alone: bool,
) -> Result<Locked> {
    let t = Instant::now();
    // a lock that ends with this run dies with this process, SIGKILL included
    let form = crate::firewall::lock_with(ns, !opts.leave_locked)?;
    stats.phase("lock", t.elapsed());
    Ok(Locked {
        at: Instant::now(),
        form,
        alone,
    })
}

/// Removes the lock [`take_lock`] took: its nf_tables table straight away when it is the only
/// lock there was, else every lock found (`firewall::unlock`), an earlier run's included.
///
/// Once the lock is gone, the netfilter socket owns nothing any more and is handed to the
/// kernel to release (handoff.rs): the unlock's commit left destroy work that releasing the
/// socket would wait for, an RCU grace period (12 ms) that nothing here needs.
pub fn remove_lock(ns: &NetNs, lock: &Locked) -> Result<()> {
    if lock.alone && lock.form == LockForm::Nft {
        crate::firewall::unlock_nft(ns)?;
    } else {
        crate::firewall::unlock(ns)?;
    }
    ns.release_netfilter();
    Ok(())
}

/// Every sysctl, read after a locked capture has unlocked (they are not what traffic
/// changes, and reading them is most of a capture's time).
pub(crate) fn sysctls_unlocked(
    ns: &NetNs,
    stats: &mut StatsRecorder,
) -> Result<crate::sysctl::Saved> {
    let t = Instant::now();
    let name = ns.name().to_string();
    let (v, n) = ns.run(|| {
        let mut snl = crate::nl::Nl::new(&name)?;
        let v = crate::sysctl::capture_saved(&mut snl, None)?;
        Ok((v, snl.requests))
    })?;
    stats.add_netlink_requests(n);
    stats.phase("sysctls", t.elapsed());
    Ok(v)
}
