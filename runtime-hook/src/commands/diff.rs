//! `crhook diff TARGET --images DIR [--format text|json]`: one line per differing field on
//! stdout (`link eth0: mac 02:00:00:00:00:01 -> 02:00:00:00:00:02`; a change too wide for a
//! screen takes a line per side; firewall rules in `iptables-save`/`nft` syntax), or a JSON
//! array of `{kind, object, field, saved, live}`. The caller maps `Ok(true)` (identical) to
//! exit 0, `Ok(false)` to 1 and an error to 2.

use anyhow::Context;

use crate::cli::{DiffArgs, DiffFormat};
use crate::target;

pub async fn run(args: &DiffArgs) -> anyhow::Result<bool> {
    let resolved = target::resolve(&args.target)?;
    let images = resolved.images(args.images.as_deref())?;
    let opts = crhook_netstate::DiffOptions {
        firewall: super::firewall_options(false),
        adopt: super::adopt(&args.adopt, false),
        remaps: super::remaps(&args.adopt)?,
    };
    let differences = crhook_netstate::diff_opts(&resolved.target, &images, &opts)
        .await
        .with_context(|| format!("{} against {}", resolved.target, images.display()))?;
    match args.format {
        DiffFormat::Text => {
            let lines: Vec<String> = differences.iter().map(|d| format!("{d:#}")).collect();
            if !lines.is_empty() {
                super::print_out(&lines.join("\n"))?;
            }
        }
        DiffFormat::Json => {
            super::print_out(&serde_json::to_string_pretty(&differences)?)?;
        }
    }
    Ok(differences.is_empty())
}
