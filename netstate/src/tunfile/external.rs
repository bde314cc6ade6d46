//! External ext-file plugins: executables in a plugin directory, speaking JSON over stdin and
//! stdout (protocol version 1, documented in docs/plugins.md).
//!
//! Each call runs the executable once, by absolute path, inside the target network namespace
//! (entered between fork and exec), with an empty environment apart from `PATH` and
//! `CRHOOK_PLUGIN_API`, stderr captured into the error, and a timeout. The request is one JSON
//! line on stdin; the answer is the first line of stdout. A plugin's name is its file name,
//! stored in every ext entry it claims, so it must not change between checkpoint and restore.
//!
//! A JSON answer cannot carry a descriptor, so on `restore` the plugin opens the file, names
//! the descriptor number in its answer and keeps it open until its stdin reaches end of file;
//! crhook copies the descriptor out of the plugin with pidfd_getfd in between. This works for
//! plugins in any language, shell included.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crhook_core::{ExtFilePlugin, FileInfo, ImageError};
use serde_json::{json, Value};

use super::sys;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// Protocol version sent in every request as `crhook_plugin`.
pub const PROTOCOL_VERSION: u32 = 1;
/// How long one call may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct ExternalPlugin {
    name: String,
    path: PathBuf,
    ns: NetNs,
    timeout: Duration,
    /// failures of `claims`, which cannot return an error through the trait; capture reports
    /// them after asking
    errors: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for ExternalPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

/// The executables of `dir`, sorted by file name (hidden files and non-executables skipped),
/// as plugins that run inside `ns`. Failures of `claims` are appended to `errors`.
pub fn load_dir(
    dir: &Path,
    ns: &NetNs,
    errors: Arc<Mutex<Vec<String>>>,
) -> Result<Vec<ExternalPlugin>> {
    let io_err = |op: &str, source| NetstateError::Io {
        op: op.into(),
        path: dir.to_path_buf(),
        source,
    };
    let dir = std::fs::canonicalize(dir).map_err(|e| io_err("open plugin directory", e))?;
    let rd = std::fs::read_dir(&dir).map_err(|e| io_err("list plugin directory", e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| io_err("list plugin directory", e))?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let path = dir.join(&name);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        if name == super::tun_plugin::NAME {
            return Err(NetstateError::invalid(format!(
                "plugin directory {}: an executable named {name} would replace the built-in tun plugin",
                dir.display()
            )));
        }
        out.push(ExternalPlugin {
            name,
            path,
            ns: ns.try_clone()?,
            timeout: TIMEOUT,
            errors: Arc::clone(&errors),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

impl ExternalPlugin {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: impl Into<String>, cause: impl std::fmt::Display) -> ImageError {
        ImageError::plugin(
            self.name.clone(),
            op,
            std::io::Error::other(format!(
                "{} in {}: {cause}",
                self.path.display(),
                self.ns.name()
            )),
        )
    }

    fn request(&self, op: &str, mut body: Value) -> Vec<u8> {
        if let Some(m) = body.as_object_mut() {
            m.insert("crhook_plugin".into(), json!(PROTOCOL_VERSION));
            m.insert("op".into(), json!(op));
            m.insert("netns".into(), json!(self.ns.name()));
        }
        let mut line = body.to_string().into_bytes();
        line.push(b'\n');
        line
    }

    fn spawn(&self, op: &str) -> Result<Child, ImageError> {
        let mut cmd = self
            .ns
            .command(&self.path)
            .map_err(|e| self.err(format!("{op}: prepare"), e))?;
        cmd.env_clear()
            .env("PATH", PATH_ENV)
            .env("CRHOOK_PLUGIN_API", PROTOCOL_VERSION.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A plugin file still open for writing somewhere cannot be executed (ETXTBSY): one
        // just installed, or, in a process that embeds crhook, written by one thread while
        // another forks (the child holds the descriptor until its exec). That lasts
        // moments: tried again for up to ~100 ms.
        let mut tries = 0;
        loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                r => return r.map_err(|e| self.err(format!("{op}: run"), e)),
            }
        }
    }

    /// One call: request on stdin (then closed), answer from stdout, exit status 0.
    fn call(&self, op: &str, body: Value) -> Result<Value, ImageError> {
        let deadline = Instant::now() + self.timeout;
        let mut child = self.spawn(op)?;
        let out = Output::collect(&mut child);
        let mut stdin = child.stdin.take();
        let wrote = stdin.as_mut().map(|s| s.write_all(&self.request(op, body)));
        drop(stdin);
        let status = wait(&mut child, deadline);
        let first = out.first_line(deadline);
        let stderr = out.stderr();
        let status = status.map_err(|e| self.err(op, with_stderr(e, &stderr)))?;
        // a plugin may answer without reading its request; a failed write matters only when
        // no answer came
        let answer = first
            .and_then(|l| parse_answer(l.as_deref()))
            .map_err(|e| match wrote {
                Some(Err(w)) => self.err(
                    op,
                    with_stderr(format!("{e} (writing the request: {w})"), &stderr),
                ),
                _ => self.err(op, with_stderr(e, &stderr)),
            })?;
        if !status.success() {
            return Err(self.err(op, with_stderr(format!("exited with {status}"), &stderr)));
        }
        Ok(answer)
    }

    /// restore: the plugin answers with a descriptor number and holds the file open until its
    /// stdin closes; the descriptor is copied out of it in between.
    fn take_fd(&self, child: &mut Child, payload: &str) -> Result<OwnedFd, ImageError> {
        let deadline = Instant::now() + self.timeout;
        let out = Output::collect(child);
        let mut stdin: Option<ChildStdin> = child.stdin.take();
        let req = self.request("restore", json!({ "payload": payload }));
        if let Some(Err(e)) = stdin.as_mut().map(|s| s.write_all(&req)) {
            return Err(self.err("restore: write request", with_stderr(e, &out.stderr())));
        }
        let answer = match out
            .first_line(deadline)
            .and_then(|l| parse_answer(l.as_deref()))
        {
            Ok(v) => v,
            Err(e) => {
                drop(stdin);
                let _ = wait(child, deadline);
                return Err(self.err("restore", with_stderr(e, &out.stderr())));
            }
        };
        let fd = answer
            .get("fd")
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| {
                self.err(
                    "restore",
                    format!("answer lacks a descriptor number \"fd\": {answer}"),
                )
            })?;
        let got = sys::pidfd_open(child.id()).and_then(|p| sys::pidfd_getfd(&p, fd));
        drop(stdin);
        let status = wait(child, deadline);
        let stderr = out.stderr();
        let got = got.map_err(|e| {
            self.err(
                format!("restore: take descriptor {fd} from the plugin"),
                with_stderr(e, &stderr),
            )
        })?;
        match status {
            Ok(s) if s.success() => Ok(got),
            Ok(s) => Err(self.err("restore", with_stderr(format!("exited with {s}"), &stderr))),
            Err(e) => Err(self.err("restore", with_stderr(e, &stderr))),
        }
    }
}

fn with_stderr(e: impl std::fmt::Display, stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        e.to_string()
    } else {
        format!("{e}: {}", s.lines().collect::<Vec<_>>().join(" / "))
    }
}

/// The plugin's output, read on threads of their own so a chatty plugin never blocks.
struct Output {
    /// the first stdout line (None: end of file without one)
    first: mpsc::Receiver<Option<String>>,
    stderr: mpsc::Receiver<String>,
}

impl Output {
    fn collect(child: &mut Child) -> Output {
        let (tx, first) = mpsc::channel();
        match child.stdout.take() {
            Some(out) => {
                std::thread::spawn(move || {
                    let mut r = BufReader::new(out);
                    let mut line = String::new();
                    let got = matches!(r.read_line(&mut line), Ok(n) if n > 0);
                    let _ = tx.send(got.then_some(line));
                    let _ = std::io::copy(&mut r, &mut std::io::sink());
                });
            }
            None => {
                let _ = tx.send(None);
            }
        }
        let (tx, stderr) = mpsc::channel();
        match child.stderr.take() {
            Some(mut e) => {
                std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = e.by_ref().take(64 * 1024).read_to_string(&mut s);
                    let _ = std::io::copy(&mut e, &mut std::io::sink());
                    let _ = tx.send(s);
                });
            }
            None => {
                let _ = tx.send(String::new());
            }
        }
        Output { first, stderr }
    }

    fn first_line(&self, deadline: Instant) -> std::result::Result<Option<String>, String> {
        self.first
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| "timed out waiting for the answer".to_string())
    }

    /// stderr once the plugin has exited; a descendant still holding the pipe gets a
    /// moment, then whatever arrived is enough.
    fn stderr(&self) -> String {
        self.stderr
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default()
    }
}

/// Waits for the child until `deadline`; kills it (it is ours) when the time is up.
fn wait(
    child: &mut Child,
    deadline: Instant,
) -> std::result::Result<std::process::ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Ok(s),
            Ok(None) => {}
            Err(e) => return Err(format!("wait: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timed out".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn parse_answer(line: Option<&str>) -> std::result::Result<Value, String> {
    let line = line.ok_or("no answer on stdout")?;
    let v: Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("answer is not JSON ({e}): {:?}", line.trim()))?;
    if !v.is_object() {
        return Err(format!("answer is not a JSON object: {}", line.trim()));
    }
    if let Some(e) = v.get("error") {
        return Err(match e.as_str() {
            Some(s) => format!("plugin error: {s}"),
            None => format!("plugin error: {e}"),
        });
    }
    Ok(v)
}

fn file_json(f: &FileInfo) -> Value {
    json!({ "pid": f.pid, "fd": f.fd, "path": f.path, "fdinfo": f.fdinfo })
}

impl ExtFilePlugin for ExternalPlugin {
    fn name(&self) -> &str {
        &self.name
    }

    fn claims(&self, f: &FileInfo) -> bool {
        let r = self
            .call("claim", json!({ "file": file_json(f) }))
            .and_then(|v| match v.get("claim").and_then(Value::as_bool) {
                Some(b) => Ok(b),
                None => Err(self.err("claim", format!("answer lacks a boolean \"claim\": {v}"))),
            });
        match r {
            Ok(b) => b,
            Err(e) => {
                if let Ok(mut errs) = self.errors.lock() {
                    errs.push(format!(
                        "{} (asked about fd {} of process {}, {})",
                        super::chain(&e),
                        f.fd,
                        f.pid,
                        f.path
                    ));
                }
                false
            }
        }
    }

    fn dump(&self, f: &FileInfo) -> Result<Vec<u8>, ImageError> {
        let v = self.call("dump", json!({ "file": file_json(f) }))?;
        match v.get("payload").and_then(Value::as_str) {
            Some(p) => Ok(p.as_bytes().to_vec()),
            None => Err(self.err("dump", format!("answer lacks a string \"payload\": {v}"))),
        }
    }

    fn restore(&self, payload: &[u8]) -> Result<OwnedFd, ImageError> {
        let payload = std::str::from_utf8(payload)
            .map_err(|e| self.err("restore", format!("stored payload is not UTF-8: {e}")))?;
        let mut child = self.spawn("restore")?;
        let r = self.take_fd(&mut child, payload);
        if r.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_checked() {
        assert_eq!(
            parse_answer(Some("{\"claim\":true}\n")).ok(),
            Some(json!({"claim": true}))
        );
        assert_eq!(
            parse_answer(None).err().as_deref(),
            Some("no answer on stdout")
        );
        assert!(parse_answer(Some("claim"))
            .err()
            .is_some_and(|e| e.starts_with("answer is not JSON")));
        assert_eq!(
            parse_answer(Some("[1]")).err().as_deref(),
            Some("answer is not a JSON object: [1]")
        );
        assert_eq!(
            parse_answer(Some("{\"error\":\"no such device\"}"))
                .err()
                .as_deref(),
            Some("plugin error: no such device")
        );
    }
}
