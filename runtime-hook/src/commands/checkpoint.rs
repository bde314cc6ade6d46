//! `crhook checkpoint TARGET --images DIR [--lock] [--parent DIR]`

use anyhow::Context;
use crhook_netstate::CheckpointOptions;

use crate::cli::CheckpointArgs;
use crate::target;

pub async fn run(args: &CheckpointArgs) -> anyhow::Result<()> {
    crate::signals::install();
    let resolved = target::resolve(&args.target)?;
    let images = resolved.images(args.images.as_deref())?;
    let opts = CheckpointOptions {
        lock: args.lock,
        leave_locked: args.leave_locked,
        firewall: super::firewall_options(args.firewall_counters),
        strict_files: args.strict_files,
        plugin_dir: args.plugin_dir.clone(),
        parent: args.parent.clone(),
    };
    let stats = crhook_netstate::checkpoint(&resolved.target, &images, &opts)
        .await
        .with_context(|| format!("{} into {}", resolved.target, images.display()))?;
    // what the checkpoint knowingly did not carry (also listed in the inventory)
    for w in &stats.warning_messages {
        tracing::warn!("{w}");
    }
    tracing::info!(target = %resolved.target, images = %images.display(), "checkpoint written");
    if args.print_stats {
        super::print_stats(&stats)?;
    }
    Ok(())
}
