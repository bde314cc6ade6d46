//! `crhook lock TARGET`, `crhook unlock TARGET` and `crhook recover TARGET`: the commands that
//! put a namespace back in a state a person can work with.

use anyhow::Context;

use crate::cli::{LockArgs, RecoverArgs};
use crate::target;

pub async fn lock(args: &LockArgs) -> anyhow::Result<()> {
    let resolved = target::resolve(&args.target)?;
    let own = crhook_netstate::NetNs::open(&resolved.target)
        .and_then(|ns| Ok(ns.same_as(&crhook_netstate::NetNs::current()?)))
        .with_context(|| resolved.target.to_string())?;
    if own && !args.allow_host_netns {
        anyhow::bail!(
            "{}: that is the namespace crhook runs in, and a lock would cut this host off; pass --allow-host-netns to lock it",
            resolved.target
        );
    }
    crhook_netstate::lock(&resolved.target)
        .await
        .with_context(|| resolved.target.to_string())?;
    tracing::info!(target = %resolved.target, "namespace locked");
    Ok(())
}

pub async fn unlock(args: &LockArgs) -> anyhow::Result<()> {
    let resolved = target::resolve(&args.target)?;
    let was_locked = crhook_netstate::unlock(&resolved.target)
        .await
        .with_context(|| resolved.target.to_string())?;
    if was_locked {
        tracing::info!(target = %resolved.target, "namespace unlocked");
    } else {
        tracing::info!(target = %resolved.target, "namespace was not locked");
    }
    Ok(())
}

/// Undoes the half restore a killed crhook left (its journal under /run/crhook/journal);
/// says on stdout what it did, or that there was nothing to do.
pub async fn recover(args: &RecoverArgs) -> anyhow::Result<()> {
    let resolved = target::resolve(&args.target)?;
    let r = crhook_netstate::recover(&resolved.target, None)
        .await
        .with_context(|| resolved.target.to_string())?;
    match r.journal {
        Some(j) => println!(
            "{}: undid the half restore of crhook pid {} ({} changes; journal {} removed)",
            resolved.target,
            r.pid,
            r.entries,
            j.display()
        ),
        None => println!("{}: no half restore to undo", resolved.target),
    }
    Ok(())
}
