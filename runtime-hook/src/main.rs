//! crhook: checkpoint and restore the network namespace of a container.
//!
//! `main` parses the command line, sets up logging, builds a current-thread runtime (the
//! library moves every namespace-bound step to its own OS thread, so one runtime thread is
//! enough), dispatches, and maps the result to the exit status of DESIGN.md: 0 success,
//! 1 failure, 2 usage error; `diff` 0 identical, 1 different, 2 error. Every error ends as one
//! line on stderr: `crhook: <operation>: <cause chain joined with ": ">`.

mod cli;
mod commands;
mod config;
mod fd_socket;
mod logging;
mod progress;
mod signals;
mod target;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use cli::{Cli, Command};

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    fixed_mmap_threshold();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    // `show`, `completions` and `man` need no configuration: a broken config file must not
    // stop them
    let needs_config = !matches!(
        cli.command,
        Some(Command::Show(_) | Command::Completions(_) | Command::Man(_))
    );
    let config = match config::Config::load() {
        Ok((c, _)) => c,
        Err(e) if needs_config => {
            say(&format!("crhook: {}", one_line(&e)));
            return ExitCode::from(EXIT_FAILURE);
        }
        Err(_) => config::Config::default(),
    };
    let level = match cli.log_level {
        Some(l) => l,
        None => config
            .log_level()
            .ok()
            .flatten()
            .unwrap_or(cli::LogLevel::Warn),
    };
    let format = match cli.log_format {
        Some(f) => f,
        None => config
            .log_format()
            .ok()
            .flatten()
            .unwrap_or(cli::LogFormat::Text),
    };
    let file = cli.log_file.clone().or_else(|| config.log.file.clone());
    if let Some(key) = config.image_key_override() {
        // before any thread exists (logging and the runtime start below); the library reads
        // the host key's path from this variable in every mode
        std::env::set_var(crhook_core::seal::KEY_ENV, key);
    }
    config::set(config);
    let log_to_file = match logging::init(level, file.as_deref(), format) {
        Ok(f) => f,
        Err(e) => {
            say(&format!("crhook: logging: {e:#}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say(&format!("crhook: start runtime: {e}"));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(dispatch(cli.command, log_to_file, cli.quiet))
}

/// Buffers of 1 MiB and more get their own mapping, returned to the system when freed. glibc
/// otherwise raises its threshold to the largest buffer freed so far (up to 32 MiB), and the
/// image files and netlink batches of a large restore then come from heaps that keep their
/// pages: measured at 1,000 links and 100,000 routes, peak RSS 186 MiB -> 170 MiB. Set before
/// any thread exists (a process-wide setting; an embedder of the library chooses its own).
fn fixed_mmap_threshold() {
    // SAFETY: mallopt only changes allocator parameters; no other thread is running yet
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

async fn dispatch(command: Option<Command>, log_to_file: bool, quiet: bool) -> ExitCode {
    let fail = |op: &str, e: anyhow::Error, code: u8| {
        if log_to_file {
            tracing::error!("{op}: {e:#}");
        }
        say(&format!("crhook: {op}: {}", one_line(&e)));
        ExitCode::from(code)
    };
    let done = |op: &str, r: anyhow::Result<()>| match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(op, e, EXIT_FAILURE),
    };
    // the spinner lives while the command runs and is wiped before any output
    let spin = |op: &str| progress::start(op, quiet);
    match command {
        Some(Command::Checkpoint(a)) => {
            let p = spin("checkpoint");
            let r = commands::checkpoint::run(&a).await;
            drop(p);
            done("checkpoint", r)
        }
        Some(Command::Restore(a)) => {
            let p = spin("restore");
            let r = commands::restore::run(&a).await;
            drop(p);
            done("restore", r)
        }
        Some(Command::Diff(a)) => {
            let p = spin("diff");
            let r = commands::diff::run(&a).await;
            drop(p);
            match r {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => fail("diff", e, 2),
            }
        }
        Some(Command::Show(a)) => done("show", commands::show::run(&a)),
        Some(Command::Completions(a)) => done("completions", commands::completions::run(&a)),
        Some(Command::Man(a)) => done("man", commands::man::run(&a)),
        Some(Command::Lock(a)) => done("lock", commands::lock::lock(&a).await),
        Some(Command::Unlock(a)) => done("unlock", commands::lock::unlock(&a).await),
        Some(Command::Recover(a)) => done("recover", commands::lock::recover(&a).await),
        Some(Command::Hook(a)) => done("hook", commands::hook::run(&a).await),
        None => match std::env::var(commands::criu::ACTION_VAR) {
            Ok(action) => {
                let op = format!("criu action {action}");
                done(&op, commands::criu::run(&action).await)
            }
            Err(_) => {
                say(&format!(
                    "crhook: usage: a subcommand is required (or run as a CRIU action script with {} set); try 'crhook --help'",
                    commands::criu::ACTION_VAR
                ));
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

/// Writes the one error line on stderr. A stderr nobody reads cannot be reported anywhere,
/// so a failed write is ignored (`eprintln!` would panic).
fn say(line: &str) {
    use std::io::Write;
    progress::clear();
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The anyhow chain on one line: messages joined with ": ", newlines inside any of them
/// (a program's stderr, say) folded into spaces.
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    text.split('\n')
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// clap's errors are several lines (message, tip, usage); the contract is one line and exit 2.
/// `--help` and `--version` print in full and exit 0.
fn usage_error(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        _ => {
            // The message is the first paragraph: "error: ..." and, for missing arguments,
            // one indented line per argument. Tip and usage paragraphs follow a blank line.
            let rendered = e.render().to_string();
            let msg: Vec<&str> = rendered
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let msg = msg.join(" ");
            let msg = msg.strip_prefix("error: ").unwrap_or(&msg);
            say(&format!("crhook: usage: {msg}; try 'crhook --help'"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}
