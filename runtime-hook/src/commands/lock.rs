//! `crhook lock TARGET` and `crhook unlock TARGET`

use anyhow::Context;

use crate::cli::LockArgs;
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
