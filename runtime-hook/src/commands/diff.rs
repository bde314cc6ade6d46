//! `crhook diff TARGET --images DIR`: one line per difference on stdout. The caller maps
//! `Ok(true)` (identical) to exit 0, `Ok(false)` to 1 and an error to 2.

use anyhow::Context;

use crate::cli::DiffArgs;
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
    let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
    if !lines.is_empty() {
        super::print_out(&lines.join("\n"))?;
    }
    Ok(differences.is_empty())
}
