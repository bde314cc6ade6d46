//! One file per subcommand. Each `run` returns `anyhow::Result`, with context naming the
//! operation added here at the command boundary; `main` prints the chain on one line.

pub mod checkpoint;
pub mod completions;
pub mod criu;
pub mod diff;
pub mod hook;
pub mod lock;
pub mod man;
pub mod restore;
pub mod show;

use crhook_netstate::{Adopt, FirewallOptions};

/// Firewall options shared by every command that captures or rebuilds: the counters flag,
/// and `CR_IPTABLES`/`CR_IP6TABLES` from the environment (CRIU's variables, so a setup that
/// already sets them for CRIU keeps working). An empty value counts as unset.
pub fn firewall_options(counters: bool) -> FirewallOptions {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    FirewallOptions {
        counters,
        cr_iptables: var("CR_IPTABLES"),
        cr_ip6tables: var("CR_IP6TABLES"),
        skip: false,
        nft_text: false,
    }
}

/// The plugin directory for the modes that have no flags (hook, CRIU action script): the
/// variable, else the config file's.
pub fn plugin_dir_from_env() -> Option<std::path::PathBuf> {
    std::env::var_os("CRHOOK_PLUGIN_DIR")
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .or_else(|| crate::config::get().plugin_dir.clone())
}

/// Adopt from the flags plus the config file's `restore.adopt`; `runtime_mode` (hook, CRIU)
/// adopts the runtime's links unless the config file says otherwise.
pub fn adopt(args: &crate::cli::AdoptArgs, runtime_mode: bool) -> Adopt {
    let config = crate::config::get();
    let mut a = if runtime_mode {
        config.runtime_adopt()
    } else {
        Adopt {
            links: config.restore.adopt.clone(),
            runtime: false,
        }
    };
    a.runtime |= args.adopt_runtime;
    for l in &args.adopt {
        if !a.links.contains(l) {
            a.links.push(l.clone());
        }
    }
    a
}

/// The flags' remaps, then the config file's.
pub fn remaps(args: &crate::cli::AdoptArgs) -> anyhow::Result<Vec<crhook_netstate::Remap>> {
    let mut r = args.remaps.clone();
    r.extend(crate::config::get().remaps()?);
    Ok(r)
}

/// Prints stats as JSON on stdout (`--print-stats`).
pub fn print_stats(stats: &crhook_netstate::crhook_proto::Stats) -> anyhow::Result<()> {
    let json = crhook_core::stats_json(stats);
    let text = serde_json::to_string_pretty(&json)?;
    print_out(&text)
}

/// Writes `text` and a newline on stdout. A reader that went away (`crhook show | head`)
/// is not an error: what it wanted it got, and `println!` would panic there instead.
pub fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    crate::progress::clear();
    let mut out = std::io::stdout().lock();
    match out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.map_err(|e| anyhow::anyhow!("write to stdout: {e}")),
    }
}
