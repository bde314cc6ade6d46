//! `crhook show PATH [--format json|text]` and `crhook show --magics`. Unprivileged: only
//! crhook-core is involved.

use crhook_core::ShowFormat;

use crate::cli::{ShowArgs, ShowFormatArg};

pub fn run(args: &ShowArgs) -> anyhow::Result<()> {
    if args.magics {
        let text = serde_json::to_string_pretty(&crhook_core::magics_json())?;
        return super::print_out(&text);
    }
    let Some(path) = &args.path else {
        anyhow::bail!("no PATH given");
    };
    let format = match args.format {
        ShowFormatArg::Json => ShowFormat::Json,
        ShowFormatArg::Text => ShowFormat::Text,
    };
    // ImageError names the file and the offset already
    let text = crhook_core::show(path, format)?;
    super::print_out(text.trim_end())
}
