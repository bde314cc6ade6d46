//! Log setup: text, or JSON lines shaped like runc's (`{"level":"info","msg":"...","time":"..."}`)
//! so a runtime that collects runc's log can collect crhook's the same way. Logs go to stderr
//! unless `--log FILE` names a file; the final error line is printed by `main`, not here.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{LogFormat, LogLevel};

/// Installs the global subscriber: the log (level-filtered; to stderr around the progress
/// spinner, or to a file) and the progress layer, which alone sees progress events. Returns
/// whether logs go to a file (then `main` also logs the final error there, since stderr
/// alone would not reach the log's reader).
pub fn init(level: LogLevel, file: Option<&Path>, format: LogFormat) -> anyhow::Result<bool> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let progress_target = crhook_core::stats::PROGRESS_TARGET;
    let log_filter = Targets::new()
        .with_default(filter)
        .with_target(progress_target, LevelFilter::OFF);
    let base = tracing_subscriber::fmt::layer().with_ansi(false);
    let to_file = file.is_some();
    type Boxed = Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>;
    let log: Boxed = match (file, format) {
        (Some(path), LogFormat::Text) => base.with_writer(Mutex::new(open_log(path)?)).boxed(),
        (Some(path), LogFormat::Json) => base
            .event_format(RuncJson)
            .with_writer(Mutex::new(open_log(path)?))
            .boxed(),
        (None, LogFormat::Text) => base.with_writer(crate::progress::Stderr).boxed(),
        (None, LogFormat::Json) => base
            .event_format(RuncJson)
            .with_writer(crate::progress::Stderr)
            .boxed(),
    };
    let progress = crate::progress::ProgressLayer
        .with_filter(Targets::new().with_target(progress_target, LevelFilter::TRACE));
    tracing_subscriber::registry()
        .with(log.with_filter(log_filter))
        .with(progress)
        .try_init()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("install log subscriber")?;
    Ok(to_file)
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open log file {}", path.display()))
}

/// One JSON object per line with runc's (logrus's) keys: `level` (lowercase, "warning" for
/// warn as logrus spells it), `msg`, `time` (RFC 3339, UTC); other event fields keep their names.
pub struct RuncJson;

impl<S, N> FormatEvent<S, N> for RuncJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let mut fields = JsonFields(Map::new());
        event.record(&mut fields);
        let mut obj = Map::new();
        obj.insert(
            "level".into(),
            Value::from(level_name(*event.metadata().level())),
        );
        obj.insert(
            "msg".into(),
            fields
                .0
                .remove("message")
                .unwrap_or_else(|| Value::from("")),
        );
        obj.insert("time".into(), Value::from(time));
        for (k, v) in fields.0 {
            // a field named like one of runc's keys must not overwrite it
            let key = if obj.contains_key(&k) {
                format!("fields.{k}")
            } else {
                k
            };
            obj.insert(key, v);
        }
        let line = serde_json::to_string(&Value::Object(obj)).map_err(|_| fmt::Error)?;
        writeln!(w, "{line}")
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

struct JsonFields(Map<String, Value>);

impl Visit for JsonFields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
}
