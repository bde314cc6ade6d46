//! A minimal node agent built on the crhook library: the embedding example.
//!
//! One-shot:
//!   agent checkpoint|restore|diff|unlock (--pid PID | --netns PATH) --images DIR [--parent DIR]
//! Node-agent loop (what examples/kubernetes/daemonset.yaml runs):
//!   agent watch SPOOL
//! reads request files `SPOOL/*.json` such as
//!   {"verb": "checkpoint", "pid": 4242, "images": "/var/lib/kubelet/checkpoints/x/netstate"}
//! (or "netns": "/run/netns/cni-...") and answers each with `SPOOL/<name>.result` holding
//! `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. A checkpoint request may name a
//! `"parent"` image (an earlier checkpoint of the same namespace): the agent keeps one
//! `Tracker` per namespace it checkpointed, subscribed to its notifications between requests,
//! so a checkpoint against a parent it wrote dumps only the families that changed since.
//!
//! The library does its namespace work on threads of its own, so a current-thread runtime is
//! all an embedder needs; it also installs no logger and never exits the process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use crhook_netstate::crhook_core::HostKey;
use crhook_netstate::{CheckpointOptions, NetNs, RestoreOptions, Target, Tracker};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
struct Request {
    verb: String,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    netns: Option<PathBuf>,
    images: PathBuf,
    #[serde(default)]
    parent: Option<PathBuf>,
}

/// One tracker per namespace (by nsfs device and inode), kept between requests.
type Trackers = HashMap<(u64, u64), Arc<Mutex<Tracker>>>;

impl Request {
    fn target(&self) -> anyhow::Result<Target> {
        match (self.pid, &self.netns) {
            (Some(pid), None) => Ok(Target::Pid(pid)),
            (None, Some(path)) => Ok(Target::Netns(path.clone())),
            _ => bail!("name exactly one of pid and netns"),
        }
    }
}

/// Runs one request and describes the result as JSON.
async fn handle(req: &Request, trackers: &mut Trackers) -> anyhow::Result<Value> {
    let target = req.target()?;
    match req.verb.as_str() {
        "checkpoint" => {
            let opts = CheckpointOptions {
                lock: true,
                parent: req.parent.clone(),
                ..CheckpointOptions::default()
            };
            let ns = NetNs::open(&target)?;
            let tracker = match trackers.get(&ns.identity()) {
                Some(t) => Arc::clone(t),
                None => {
                    let t = Arc::new(Mutex::new(Tracker::new(&ns)?));
                    trackers.insert(ns.identity(), Arc::clone(&t));
                    t
                }
            };
            let key = HostKey::load_or_create(&HostKey::configured_path())?;
            let stats =
                crhook_netstate::checkpoint_tracked(&target, &req.images, &opts, key, tracker)
                    .await?;
            Ok(json!({ "stats": crhook_netstate::crhook_core::stats_json(&stats) }))
        }
        "restore" => {
            let out =
                crhook_netstate::restore(&target, &req.images, &RestoreOptions::default()).await?;
            Ok(json!({
                "stats": crhook_netstate::crhook_core::stats_json(&out.stats),
                "warnings": out.warnings,
            }))
        }
        "diff" => {
            let d = crhook_netstate::diff(&target, &req.images).await?;
            let lines: Vec<String> = d.iter().map(ToString::to_string).collect();
            Ok(json!({ "identical": lines.is_empty(), "differences": lines }))
        }
        "unlock" => Ok(json!({ "was_locked": crhook_netstate::unlock(&target).await? })),
        other => bail!("unknown verb {other:?} (checkpoint, restore, diff, unlock)"),
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Request> {
    let (verb, rest) = args.split_first().context("no verb")?;
    let mut req = Request {
        verb: verb.clone(),
        pid: None,
        netns: None,
        images: PathBuf::new(),
        parent: None,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pid" => req.pid = Some(value.parse().with_context(|| format!("--pid {value}"))?),
            "--netns" => req.netns = Some(value.into()),
            "--images" => req.images = value.into(),
            "--parent" => req.parent = Some(value.into()),
            other => bail!("unknown option {other}"),
        }
    }
    if req.images.as_os_str().is_empty() {
        bail!("--images DIR is required");
    }
    Ok(req)
}

/// Handles every pending request in `spool` once. A request is renamed to `.working` first,
/// so a crash never runs it twice.
fn serve_once(
    rt: &tokio::runtime::Runtime,
    spool: &Path,
    trackers: &mut Trackers,
) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(spool).with_context(|| format!("read spool {}", spool.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let working = path.with_extension("working");
        std::fs::rename(&path, &working).with_context(|| format!("claim {}", path.display()))?;
        let result = std::fs::read(&working)
            .context("read request")
            .and_then(|b| serde_json::from_slice::<Request>(&b).context("parse request"))
            .and_then(|req| rt.block_on(handle(&req, trackers)));
        let answer = match result {
            Ok(mut v) => {
                v["ok"] = json!(true);
                v
            }
            Err(e) => json!({ "ok": false, "error": format!("{e:#}") }),
        };
        let out = path.with_extension("result");
        std::fs::write(&out, serde_json::to_vec_pretty(&answer)?)
            .with_context(|| format!("write {}", out.display()))?;
        std::fs::remove_file(&working).with_context(|| format!("remove {}", working.display()))?;
        println!("{}: {}", path.display(), answer["ok"]);
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent: start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut trackers = Trackers::new();
    let result = match args.first().map(String::as_str) {
        Some("watch") => match args.get(1) {
            Some(spool) => loop {
                if let Err(e) = serve_once(&rt, Path::new(spool), &mut trackers) {
                    break Err(e);
                }
                std::thread::sleep(Duration::from_secs(1));
            },
            None => Err(anyhow::anyhow!("usage: agent watch SPOOL")),
        },
        _ => parse_args(&args)
            .and_then(|req| rt.block_on(handle(&req, &mut trackers)))
            .map(|v| println!("{v}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
