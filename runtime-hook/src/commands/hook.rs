//! `crhook hook [--images DIR]`: the OCI runtime hook (createRuntime or prestart).
//!
//! The runtime writes the container state JSON on stdin. It is parsed leniently: runtimes send
//! statuses the spec does not list (runc sends `starting`; `paused` occurs too) and extra
//! fields, both of which the oci-spec crate's `State` rejects, so only the fields used here are
//! read and everything else is ignored. The hook may run with an empty environment (runc
//! passes exactly the hook's `env`), so nothing here relies on PATH or HOME.
//!
//! Images: `--images`, else the annotation `io.crhook.images` (the state's, then config.json's;
//! a relative path is taken relative to the bundle), else `<bundle>/netstate`.
//!
//! Annotations are the pod's to set (CRI-O copies pod annotations into the OCI spec), so an
//! annotated directory is used only under a root the operator configured (`images_roots` in
//! the config file, default `/var/lib/crhook`), never inside the container's rootfs, and only
//! when it and every directory above it are owned by root and writable by nobody else: an
//! image shipped in the container's own image, or in a directory anyone can write, is never
//! read. The flag and `<bundle>/netstate` are the operator's and the runtime's own.
//!
//! Decisions where the spec is silent:
//! - no images directory: exit 0 after an info log. A hook configured for every container
//!   (hooks.d `always`) must not break containers that were never checkpointed.
//! - no pid (or pid 0, as in poststop states): exit 0 after an info log; there is no namespace
//!   to restore into.
//! - an images directory that exists but is damaged or incomplete is an error: the library
//!   verifies it before touching the namespace, so the container is left as created.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use crhook_netstate::{RestoreOptions, Target};
use serde_json::Value;

use crate::cli::HookArgs;

/// Largest state accepted on stdin; real states are a few hundred bytes to a few KiB
/// (annotations), and the bound keeps a runaway writer from exhausting memory.
pub const MAX_STATE: u64 = 1 << 20;

/// Annotation naming the image directory.
pub const IMAGES_ANNOTATION: &str = "io.crhook.images";

/// The fields of the container state crhook uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookState {
    pub id: String,
    pub status: String,
    pub pid: Option<u32>,
    pub bundle: Option<PathBuf>,
    pub annotations: BTreeMap<String, String>,
}

impl HookState {
    /// Lenient parse: any status, unknown fields ignored, annotations whose values are not
    /// strings skipped (with a warning), a pid of 0 treated as absent.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<HookState> {
        let v: Value = serde_json::from_slice(bytes).context("parse container state")?;
        let Some(obj) = v.as_object() else {
            bail!("container state is not a JSON object");
        };
        let str_field = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let pid = match obj.get("pid") {
            None | Some(Value::Null) => None,
            Some(p) => match p.as_u64() {
                Some(0) => None,
                Some(n) => Some(
                    u32::try_from(n)
                        .with_context(|| format!("container state: pid {n} out of range"))?,
                ),
                None => bail!("container state: pid {p} is not a process id"),
            },
        };
        let bundle = obj
            .get("bundle")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
            .map(PathBuf::from);
        Ok(HookState {
            id: str_field("id"),
            status: str_field("status"),
            pid,
            bundle,
            annotations: string_map(obj.get("annotations"), "container state"),
        })
    }
}

/// The string entries of an annotations object; anything else is logged and skipped.
fn string_map(v: Option<&Value>, whose: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v.as_str() {
                    Some(s) => {
                        out.insert(k.clone(), s.to_string());
                    }
                    None => tracing::warn!("{whose}: annotation {k} is not a string; ignored"),
                }
            }
        }
        Some(_) => tracing::warn!("{whose}: annotations is not an object; ignored"),
    }
    out
}

/// Annotations of the bundle's config.json. A missing config.json yields none (the state and
/// the flag can still name the images); one that does not parse is an error.
fn config_annotations(bundle: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = bundle.join("config.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "bundle config {} not found; using no annotations",
                path.display()
            );
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(e).with_context(|| format!("read bundle config {}", path.display())),
    };
    let v: Value = serde_json::from_slice(&text)
        .with_context(|| format!("parse bundle config {}", path.display()))?;
    Ok(string_map(v.get("annotations"), "bundle config"))
}

/// Where the images are, by the precedence in the module doc.
pub fn images_dir(flag: Option<&Path>, state: &HookState) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    let annotated = |m: &BTreeMap<String, String>| {
        let v = m.get(IMAGES_ANNOTATION)?;
        if v.trim().is_empty() {
            tracing::warn!("annotation {IMAGES_ANNOTATION} is empty; ignored");
            return None;
        }
        Some(PathBuf::from(v))
    };
    let from_config = match &state.bundle {
        Some(b) if annotated(&state.annotations).is_none() => annotated(&config_annotations(b)?),
        _ => None,
    };
    let Some(bundle) = &state.bundle else {
        return annotated(&state.annotations)
            .filter(|p| p.is_absolute())
            .context("container state has no bundle, and no absolute --images or io.crhook.images names the images");
    };
    Ok(match annotated(&state.annotations).or(from_config) {
        // join keeps an absolute p as it is
        Some(p) => checked_annotation(&bundle.join(p), bundle)?,
        None => bundle.join("netstate"),
    })
}

/// An annotated image directory, if it may be read (see the module notes); a directory that
/// does not exist is returned as it is (nothing to restore).
fn checked_annotation(dir: &Path, bundle: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(real) = std::fs::canonicalize(dir) else {
        return Ok(dir.to_path_buf());
    };
    let roots = crate::config::get().images_roots();
    let under = roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .any(|r| real.starts_with(&r));
    if !under {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        bail!(
            "annotation {IMAGES_ANNOTATION} names {}, which is not under the image roots ({}); set images_roots in the config file",
            dir.display(),
            list.join(", ")
        );
    }
    if let Ok(rootfs) = std::fs::canonicalize(bundle.join("rootfs")) {
        if real.starts_with(&rootfs) {
            bail!(
                "annotation {IMAGES_ANNOTATION} names {}, inside the container's own rootfs",
                dir.display()
            );
        }
    }
    let mut at = Some(real.as_path());
    while let Some(d) = at {
        let md = std::fs::metadata(d).with_context(|| format!("stat {}", d.display()))?;
        if md.uid() != 0 || md.mode() & 0o022 != 0 {
            bail!(
                "annotation {IMAGES_ANNOTATION} names {}, but {} is not owned by root or is writable by others",
                dir.display(),
                d.display()
            );
        }
        at = d.parent();
    }
    Ok(real)
}

fn read_state() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_STATE + 1)
        .read_to_end(&mut buf)
        .context("read container state from stdin")?;
    if buf.len() as u64 > MAX_STATE {
        bail!("container state on stdin exceeds {MAX_STATE} bytes");
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        bail!("container state on stdin is empty");
    }
    Ok(buf)
}

pub async fn run(args: &HookArgs) -> anyhow::Result<()> {
    crate::signals::install();
    let state = HookState::parse(&read_state()?)?;
    tracing::debug!(id = %state.id, status = %state.status, pid = ?state.pid, "hook invoked");
    let images = images_dir(args.images.as_deref(), &state)?;
    if !images.exists() {
        tracing::info!(id = %state.id, images = %images.display(), "no images: nothing to restore");
        return Ok(());
    }
    let Some(pid) = state.pid else {
        tracing::info!(id = %state.id, status = %state.status, "no pid in container state: nothing to restore into");
        return Ok(());
    };
    let target = Target::Pid(pid);
    // the runtime made its own network before this runs: keep its links (config may say
    // otherwise), the old pod address remapped to the new one
    let none = crate::cli::AdoptArgs {
        adopt: Vec::new(),
        adopt_runtime: false,
        remaps: Vec::new(),
    };
    let opts = RestoreOptions {
        firewall: super::firewall_options(false),
        plugin_dir: super::plugin_dir_from_env(),
        adopt: super::adopt(&none, true),
        remaps: super::remaps(&none)?,
        trust_images: crate::config::get().restore.trust_images.unwrap_or(false),
        host_bridges: crate::config::get().restore.host_bridges.clone(),
        allow_lost: crate::config::get().restore.allow_lost.clone(),
        ..RestoreOptions::default()
    };
    let outcome = crhook_netstate::restore(&target, &images, &opts)
        .await
        .with_context(|| {
            format!(
                "container {} ({target}) from {}",
                state.id,
                images.display()
            )
        })?;
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(id = %state.id, %target, images = %images.display(), "container network restored");
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lenient_statuses_and_extra_fields() {
        for status in ["creating", "created", "starting", "paused", "whatever"] {
            let s = format!(
                r#"{{"ociVersion":"1.0.2-dev","id":"c1","status":"{status}","pid":42,"bundle":"/b","extra":{{"x":1}},"annotations":{{"a":"b","n":3}}}}"#
            );
            let st = HookState::parse(s.as_bytes()).unwrap();
            assert_eq!(st.status, status);
            assert_eq!(st.pid, Some(42));
            assert_eq!(st.bundle.as_deref(), Some(Path::new("/b")));
            assert_eq!(
                st.annotations.len(),
                1,
                "the non-string annotation is skipped"
            );
        }
    }

    #[test]
    fn pid_zero_is_absent_and_bad_pid_is_refused() {
        assert_eq!(
            HookState::parse(br#"{"pid":0,"bundle":"/b"}"#).unwrap().pid,
            None
        );
        assert_eq!(HookState::parse(br#"{"bundle":"/b"}"#).unwrap().pid, None);
        assert!(HookState::parse(br#"{"pid":-1}"#).is_err());
        assert!(HookState::parse(br#"{"pid":"x"}"#).is_err());
        assert!(HookState::parse(br#"[1]"#).is_err());
    }

    #[test]
    fn images_precedence() {
        let mut st = HookState::parse(br#"{"pid":1,"bundle":"/nonexistent-bundle"}"#).unwrap();
        assert_eq!(
            images_dir(Some(Path::new("/i")), &st).unwrap(),
            PathBuf::from("/i")
        );
        assert_eq!(
            images_dir(None, &st).unwrap(),
            PathBuf::from("/nonexistent-bundle/netstate")
        );
        st.annotations
            .insert(IMAGES_ANNOTATION.into(), "rel".into());
        assert_eq!(
            images_dir(None, &st).unwrap(),
            PathBuf::from("/nonexistent-bundle/rel")
        );
        st.annotations
            .insert(IMAGES_ANNOTATION.into(), "/abs".into());
        assert_eq!(images_dir(None, &st).unwrap(), PathBuf::from("/abs"));
        st.annotations.insert(IMAGES_ANNOTATION.into(), " ".into());
        assert_eq!(
            images_dir(None, &st).unwrap(),
            PathBuf::from("/nonexistent-bundle/netstate")
        );
        st.bundle = None;
        assert!(images_dir(None, &st).is_err());
    }
}
