//! Progress on stderr for the commands that can take seconds (checkpoint, restore, diff): a
//! spinner with the elapsed time, the step under way, the phases done and object counts.
//! It is drawn only when stderr is a terminal, only once the command has run for a second
//! (a quick command prints nothing extra), never with `--quiet`, and it is wiped before
//! anything else is written, so stdout, logs and the final error line never interleave with it.
//!
//! The library reports progress as tracing events with target
//! [`crhook_core::stats::PROGRESS_TARGET`] (core's `StatsRecorder` on every phase and count,
//! netstate on its steps); [`ProgressLayer`] turns them into the spinner's message. So the
//! library takes no callback in its options and never prints. One command runs per process,
//! so the spinner's state is one static.
//!
//! `CRHOOK_PROGRESS_DELAY_MS` replaces the one-second delay (tests use 0, so whether the
//! spinner appears does not depend on how fast the machine is).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;

pub const DELAY_VAR: &str = "CRHOOK_PROGRESS_DELAY_MS";
const DELAY: Duration = Duration::from_secs(1);

struct State {
    bar: ProgressBar,
    step: String,
    done: Vec<String>,
    counts: BTreeMap<String, u64>,
}

impl State {
    fn message(&self) -> String {
        let mut parts = Vec::new();
        if !self.step.is_empty() {
            parts.push(self.step.clone());
        }
        if !self.done.is_empty() {
            // the last few: the line must fit a terminal
            let from = self.done.len().saturating_sub(4);
            parts.push(format!("done: {}", self.done[from..].join(", ")));
        }
        if !self.counts.is_empty() {
            let c: Vec<String> = self
                .counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            parts.push(c.join(", "));
        }
        parts.join(" | ")
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn state() -> MutexGuard<'static, Option<State>> {
    // a panic while drawing leaves nothing worth protecting: keep going with what is there
    STATE.lock().unwrap_or_else(|p| p.into_inner())
}

/// The spinner of one command; wiped when dropped.
pub struct Progress {
    stop: Option<mpsc::Sender<()>>,
    shower: Option<JoinHandle<()>>,
}

/// Starts the spinner for `op` ("restore"), hidden until the delay has passed; does nothing
/// with `quiet` or when stderr is not a terminal.
pub fn start(op: &str, quiet: bool) -> Progress {
    if quiet || !std::io::stderr().is_terminal() {
        return Progress {
            stop: None,
            shower: None,
        };
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    let style = ProgressStyle::with_template("{spinner} {prefix} {elapsed} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_prefix(op.to_string());
    *state() = Some(State {
        bar,
        step: String::new(),
        done: Vec::new(),
        counts: BTreeMap::new(),
    });
    let delay = std::env::var(DELAY_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DELAY, Duration::from_millis);
    let (tx, rx) = mpsc::channel::<()>();
    let shower = std::thread::Builder::new()
        .name("crhook-progress".into())
        .spawn(move || {
            if rx.recv_timeout(delay) == Err(mpsc::RecvTimeoutError::Timeout) {
                if let Some(s) = state().as_ref() {
                    s.bar.set_draw_target(ProgressDrawTarget::stderr());
                    s.bar.set_message(s.message());
                    s.bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
        })
        .ok();
    Progress {
        stop: Some(tx),
        shower,
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.shower.take() {
            let _ = h.join();
        }
        clear();
    }
}

/// Wipes the spinner for good (before the command's own output).
pub fn clear() {
    if let Some(s) = state().take() {
        s.bar.finish_and_clear();
    }
}

/// Writes `bytes` on stderr, the spinner lifted out of the way while it does.
fn write_stderr(bytes: &[u8]) {
    let write = || {
        let _ = std::io::stderr().lock().write_all(bytes);
    };
    match state().as_ref() {
        Some(s) => s.bar.suspend(write),
        None => write(),
    }
}

/// The log's stderr: each line written with the spinner lifted.
pub struct Stderr;

pub struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            write_stderr(&self.0);
        }
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::new())
    }
}

/// Feeds progress events into the spinner.
pub struct ProgressLayer;

#[derive(Default)]
struct Fields {
    step: Option<String>,
    phase: Option<String>,
    kind: Option<String>,
    count: Option<u64>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "step" => self.step = Some(value.to_string()),
            "phase" => self.phase = Some(value.to_string()),
            "kind" => self.kind = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "count" {
            self.count = Some(value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for ProgressLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let mut guard = state();
        let Some(s) = guard.as_mut() else { return };
        if let Some(step) = f.step {
            s.step = step;
        }
        if let Some(phase) = f.phase {
            if !s.done.contains(&phase) {
                s.done.push(phase);
            }
        }
        if let (Some(kind), Some(n)) = (f.kind, f.count) {
            let c = s.counts.entry(kind).or_insert(0);
            *c = c.saturating_add(n);
        }
        s.bar.set_message(s.message());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_lists_step_recent_phases_and_counts() {
        let s = State {
            bar: ProgressBar::hidden(),
            step: "capturing".into(),
            done: ["read", "plan", "links", "firewall", "addresses"]
                .map(String::from)
                .to_vec(),
            counts: [("routes".to_string(), 1200), ("links".to_string(), 3)].into(),
        };
        assert_eq!(
            s.message(),
            "capturing | done: plan, links, firewall, addresses | links 3, routes 1200"
        );
    }
}
