//! The command line, as DESIGN.md fixes it. Only definitions live here; `main.rs` parses and
//! dispatches, each subcommand is a file under `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use crhook_netstate::{ExternalVeth, Remap};

/// Checkpoint and restore everything inside a network namespace.
///
/// Run with no subcommand while CRTOOLS_SCRIPT_ACTION is set, crhook acts as a CRIU action
/// script (network-lock/pre-dump: capture; setup-namespaces: restore; network-unlock: unlock).
#[derive(Debug, Parser)]
#[command(name = "crhook", version, about, long_about = None)]
pub struct Cli {
    /// error, warn, info, debug or trace [default: the config file's, else warn]
    #[arg(long, global = true, env = "CRHOOK_LOG_LEVEL")]
    pub log_level: Option<LogLevel>,

    /// append log lines to FILE instead of stderr
    #[arg(long = "log", global = true, value_name = "FILE", env = "CRHOOK_LOG")]
    pub log_file: Option<PathBuf>,

    /// text, or json lines with runc's keys (level, msg, time) [default: the config file's,
    /// else text]
    #[arg(long, global = true, env = "CRHOOK_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// no progress on stderr (shown only when stderr is a terminal and a checkpoint, restore
    /// or diff runs longer than a second)
    #[arg(long, short, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture the namespace into an image directory
    Checkpoint(CheckpointArgs),
    /// Rebuild the namespace from an image directory, all or nothing
    Restore(RestoreArgs),
    /// Compare the live namespace with an image directory (exit 0 same, 1 different, 2 error)
    Diff(DiffArgs),
    /// Decode an image file or directory
    Show(ShowArgs),
    /// Drop all traffic in and out of the namespace except loopback
    Lock(LockArgs),
    /// Remove crhook's lock from the namespace
    Unlock(LockArgs),
    /// Undo the half restore a killed crhook left in the namespace (from its journal)
    Recover(RecoverArgs),
    /// OCI runtime hook: reads the container state JSON on stdin and restores its network
    Hook(HookArgs),
    /// Print a shell completion script on stdout
    Completions(CompletionsArgs),
    /// Print the manual page of crhook or of one subcommand on stdout, as roff
    Man(ManArgs),
}

/// TARGET := --netns PATH | --pid PID | --bundle DIR [--id ID] [--root DIR]
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub which: TargetWhich,

    // `requires = "bundle"` alone does not hold: clap waives a requirement that conflicts with
    // a present argument, and --bundle conflicts with --pid and --netns. Hence the conflicts.
    /// container id, to find the running container of --bundle in the runtime's state
    #[arg(long, value_name = "ID", requires = "bundle", conflicts_with_all = ["netns", "pid"])]
    pub id: Option<String>,

    /// the runtime's state directory (runc's --root)
    #[arg(long, value_name = "DIR", default_value = "/run/runc", conflicts_with_all = ["netns", "pid"])]
    pub root: PathBuf,
}

/// Exactly one of the three ways to name the namespace.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct TargetWhich {
    /// an nsfs path: /run/netns/NAME, /proc/PID/ns/net or a bind mount of one
    #[arg(long, value_name = "PATH")]
    pub netns: Option<PathBuf>,

    /// the network namespace of process PID
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// an OCI bundle: the namespace path in its config.json, else the runtime's state for --id
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// image directory to write (default with --bundle: DIR/netstate)
    #[arg(long, value_name = "DIR", required_unless_present = "bundle")]
    pub images: Option<PathBuf>,
    /// lock the namespace while capturing
    #[arg(long)]
    pub lock: bool,
    /// keep the lock after the checkpoint (undo with `crhook unlock`)
    #[arg(long, requires = "lock")]
    pub leave_locked: bool,
    /// write a child image of the image in DIR (an earlier checkpoint of the same
    /// namespace): families unchanged since are read from it, and with --lock only what
    /// changes during the unlocked dump is dumped again while locked
    #[arg(long, value_name = "DIR")]
    pub parent: Option<PathBuf>,
    /// print the checkpoint's stats as JSON on stdout
    #[arg(long)]
    pub print_stats: bool,
    /// keep firewall packet and byte counters
    #[arg(long)]
    pub firewall_counters: bool,
    /// fail when a network-device file no plugin claims is open
    #[arg(long)]
    pub strict_files: bool,
    /// directory of ext-file plugins
    #[arg(long, value_name = "DIR", env = "CRHOOK_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// image directory to read (default with --bundle: DIR/netstate)
    #[arg(long, value_name = "DIR", required_unless_present = "bundle")]
    pub images: Option<PathBuf>,
    /// put the outer end of veth INNER here as OUTER, attached to BRIDGE
    #[arg(long = "external", value_name = "veth:INNER=OUTER[@BRIDGE]")]
    pub externals: Vec<ExternalVeth>,
    /// print the restore's stats as JSON on stdout
    #[arg(long)]
    pub print_stats: bool,
    /// allow restoring into the namespace crhook itself runs in
    #[arg(long)]
    pub allow_host_netns: bool,
    /// restore firewall packet and byte counters
    #[arg(long)]
    pub firewall_counters: bool,
    /// hand the restored files (tun queues, ext files) to the Unix socket at PATH
    #[arg(long, value_name = "PATH")]
    pub fd_socket: Option<PathBuf>,
    /// compare the namespace with the images afterwards
    #[arg(long)]
    pub verify: bool,
    /// directory of ext-file plugins
    #[arg(long, value_name = "DIR", env = "CRHOOK_PLUGIN_DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub adopt: AdoptArgs,
    /// let an image not sealed with this host's key place veth peers and devices outside the
    /// target (in the host or another namespace), as a sealed image may
    #[arg(long)]
    pub trust_images: bool,
    /// restore without state the image records but cannot carry, instead of refusing it;
    /// WHAT is `bpf` (eBPF programs in tc filters and actions, XDP programs) (repeatable)
    #[arg(long, value_name = "WHAT", value_parser = ["bpf"])]
    pub allow_lost: Vec<String>,
    /// print what restore would do (adopted links, remaps, per family keep/add/replace and
    /// every conflict) and change nothing; exit 1 when it would refuse
    #[arg(long, conflicts_with_all = ["verify", "fd_socket", "print_stats"])]
    pub dry_run: bool,
}

/// Links a runtime made and addresses that moved: shared by restore and diff, so a remapped
/// restore diffs identical.
#[derive(Debug, Clone, Args)]
pub struct AdoptArgs {
    /// keep the live link IFNAME as the runtime made it (MAC, host end, its addresses and
    /// routes) and layer the image's other state on it; its new address replaces the saved
    /// one everywhere (repeatable)
    #[arg(long = "adopt", value_name = "IFNAME")]
    pub adopt: Vec<String>,
    /// adopt every link the target holds before restore, lo aside (for diff: every link of
    /// the image that exists live)
    #[arg(long)]
    pub adopt_runtime: bool,
    /// replace address or prefix OLD with NEW wherever it appears: addresses, routes, rules,
    /// neighbours, iptables and nf_tables rules (repeatable; IPv4 or IPv6)
    #[arg(long = "remap", value_name = "OLD=NEW")]
    pub remaps: Vec<Remap>,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// image directory to compare with (default with --bundle: DIR/netstate)
    #[arg(long, value_name = "DIR", required_unless_present = "bundle")]
    pub images: Option<PathBuf>,
    #[command(flatten)]
    pub adopt: AdoptArgs,
    /// text: one line per differing field; json: an array of {kind, object, field, saved,
    /// live} for programs
    #[arg(long, default_value = "text")]
    pub format: DiffFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiffFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// an image file or an image directory
    #[arg(
        value_name = "PATH",
        required_unless_present = "magics",
        conflicts_with = "magics"
    )]
    pub path: Option<PathBuf>,
    /// output format
    #[arg(long, default_value = "json")]
    pub format: ShowFormatArg,
    /// print the table of magic numbers as JSON
    #[arg(long)]
    pub magics: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowFormatArg {
    Json,
    Text,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// allow locking the namespace crhook itself runs in (it cuts this host off, SSH
    /// included, until `crhook unlock`)
    #[arg(long)]
    pub allow_host_netns: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// image directory (default: annotation io.crhook.images, else <bundle>/netstate)
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// the shell to complete for
    #[arg(value_name = "SHELL")]
    pub shell: CompletionShell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// the subcommand whose page to print (default: crhook's own)
    #[arg(value_name = "SUBCOMMAND", value_parser = clap::builder::PossibleValuesParser::new(SUBCOMMANDS))]
    pub subcommand: Option<String>,
}

/// The subcommands' names, for `crhook man SUBCOMMAND` (a test holds it to [`Command`]).
pub const SUBCOMMANDS: [&str; 10] = [
    "checkpoint",
    "restore",
    "diff",
    "show",
    "lock",
    "unlock",
    "recover",
    "hook",
    "completions",
    "man",
];

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn man_knows_every_subcommand() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        assert_eq!(names, SUBCOMMANDS);
    }
}
