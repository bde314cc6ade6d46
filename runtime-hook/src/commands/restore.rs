//! `crhook restore TARGET --images DIR`

use anyhow::Context;
use crhook_netstate::RestoreOptions;

use crate::cli::RestoreArgs;
use crate::{fd_socket, target};

pub async fn run(args: &RestoreArgs) -> anyhow::Result<()> {
    crate::signals::install();
    let resolved = target::resolve(&args.target)?;
    let images = resolved.images(args.images.as_deref())?;
    let config = crate::config::get();
    let opts = RestoreOptions {
        externals: args.externals.clone(),
        allow_host_netns: args.allow_host_netns,
        firewall: super::firewall_options(args.firewall_counters),
        verify: args.verify,
        plugin_dir: args
            .plugin_dir
            .clone()
            .or_else(|| config.plugin_dir.clone()),
        adopt: super::adopt(&args.adopt, false),
        remaps: super::remaps(&args.adopt)?,
        trust_images: args.trust_images || config.restore.trust_images.unwrap_or(false),
        host_bridges: crate::config::get().restore.host_bridges.clone(),
        journal_dir: None,
        allow_lost: args
            .allow_lost
            .iter()
            .chain(&config.restore.allow_lost)
            .cloned()
            .collect(),
    };
    if args.dry_run {
        let (snap, trust) = crhook_netstate::Snapshot::read_dir_trusted(&images)
            .with_context(|| format!("read {}", images.display()))?;
        let plan = crhook_netstate::plan_trusting(&resolved.target, &snap, &opts, &trust)
            .await
            .with_context(|| format!("plan {} from {}", resolved.target, images.display()))?;
        super::print_out(plan.render().trim_end())?;
        if !plan.conflicts.is_empty() {
            anyhow::bail!(
                "dry run of {}: restore would refuse, {} conflict(s)",
                resolved.target,
                plan.conflicts.len()
            );
        }
        return Ok(());
    }
    let outcome = crhook_netstate::restore(&resolved.target, &images, &opts)
        .await
        .with_context(|| format!("{} from {}", resolved.target, images.display()))?;
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(target = %resolved.target, images = %images.display(), "namespace restored");
    if let Some(path) = &args.fd_socket {
        fd_socket::send(path, &outcome.files)
            .with_context(|| format!("hand restored files to {}", path.display()))?;
        // the receiver holds the files now: devices that lived only through them stop being
        // persistent (restore made them persistent so nothing vanished before the hand-off)
        crhook_netstate::tunfile::release_persist_in(&resolved.target, &images)
            .with_context(|| format!("release tun devices in {}", resolved.target))?;
    }
    if args.print_stats {
        super::print_stats(&outcome.stats)?;
    }
    Ok(())
}
