//! The configuration file, `/etc/crhook/crhook.toml` (or the file `CRHOOK_CONFIG` names), for
//! the modes that get no flags: CRIU runs its action script without arguments and with its own
//! environment, and Podman passes runc (and so its hooks) only `PATH` and `XDG_RUNTIME_DIR`,
//! so `CRHOOK_LOG*` never arrive there. Flags and variables win over the file; the file wins
//! over built-in defaults.
//!
//! ```toml
//! plugin_dir = "/usr/lib/crhook/plugins"
//! images_roots = ["/var/lib/crhook"]     # where an io.crhook.images annotation may point
//! image_key = "/etc/crhook/cluster.key"  # the host key that seals and vouches for images
//!
//! [log]
//! level = "info"            # error, warn, info, debug, trace
//! file = "/var/log/crhook.log"
//! format = "json"           # text or json (runc's log line shape)
//!
//! [restore]
//! adopt_runtime = true      # hook and CRIU modes: keep the links the runtime made (default)
//! adopt = ["net1"]          # more links to keep as they are, every mode
//! remap = ["10.88.0.0/16=10.89.0.0/16"]
//! trust_images = false      # let images this host did not seal place things outside
//! host_bridges = ["cni0"]    # ... but let any image put a veth's far end in this namespace
//!                            # attached to one of these bridges
//! allow_lost = ["bpf"]      # restore without eBPF programs (tc bpf, XDP) instead of refusing
//! ```
//!
//! `image_key` reaches the library as `CRHOOK_IMAGE_KEY` (which, when set, wins over the
//! file), the variable every mode honours: the key is read where the image is written or
//! opened, and CRIU's action scripts and runtime hooks get no flags to carry it.
//!
//! A missing default file is no configuration; a missing file that `CRHOOK_CONFIG` names, an
//! unreadable one, an unknown key or a bad value is an error naming the file and the key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::cli::{LogFormat, LogLevel};

static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();

/// The configuration `main` loaded (defaults before that, and in unit tests).
pub fn get() -> &'static Config {
    CONFIG.get_or_init(Config::default)
}

/// Installs the loaded configuration; the first call wins.
pub fn set(c: Config) {
    let _ = CONFIG.set(c);
}

pub const DEFAULT_PATH: &str = "/etc/crhook/crhook.toml";
pub const ENV: &str = "CRHOOK_CONFIG";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub restore: RestoreConfig,
    pub plugin_dir: Option<PathBuf>,
    /// the host key file (default /etc/crhook/image.key)
    pub image_key: Option<PathBuf>,
    /// directories under which the hook reads images an annotation names
    pub images_roots: Option<Vec<PathBuf>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: Option<String>,
    pub file: Option<PathBuf>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// hook and CRIU modes: adopt every link the runtime made (default true)
    pub adopt_runtime: Option<bool>,
    #[serde(default)]
    pub adopt: Vec<String>,
    #[serde(default)]
    pub remap: Vec<String>,
    /// let images not sealed with this host's key place things outside the target
    pub trust_images: Option<bool>,
    /// bridges of the namespace crhook runs in that any image may attach a veth's far end
    /// to (the one placement outside the target an untrusted image may make)
    #[serde(default)]
    pub host_bridges: Vec<String>,
    /// state restore may leave behind instead of refusing the image (`bpf`)
    #[serde(default)]
    pub allow_lost: Vec<String>,
}

impl Config {
    /// The file `CRHOOK_CONFIG` names, else the default path if it exists.
    pub fn load() -> anyhow::Result<(Config, Option<PathBuf>)> {
        match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            Some(p) => {
                let p = PathBuf::from(p);
                Ok((Config::read(&p)?, Some(p)))
            }
            None => {
                let p = Path::new(DEFAULT_PATH);
                if p.exists() {
                    Ok((Config::read(p)?, Some(p.to_path_buf())))
                } else {
                    Ok((Config::default(), None))
                }
            }
        }
    }

    pub fn read(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("config {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (a caret under the column); one line here
            anyhow::anyhow!("{}", e.message().trim())
        })?;
        c.log_level()?;
        c.log_format()?;
        c.remaps()?;
        Ok(c)
    }

    pub fn log_level(&self) -> anyhow::Result<Option<LogLevel>> {
        self.log
            .level
            .as_deref()
            .map(|v| {
                <LogLevel as clap::ValueEnum>::from_str(v, true).map_err(|_| {
                    anyhow::anyhow!("log.level {v:?}: expected error, warn, info, debug or trace")
                })
            })
            .transpose()
    }

    pub fn log_format(&self) -> anyhow::Result<Option<LogFormat>> {
        self.log
            .format
            .as_deref()
            .map(|v| {
                <LogFormat as clap::ValueEnum>::from_str(v, true)
                    .map_err(|_| anyhow::anyhow!("log.format {v:?}: expected text or json"))
            })
            .transpose()
    }

    pub fn remaps(&self) -> anyhow::Result<Vec<crhook_netstate::Remap>> {
        self.restore
            .remap
            .iter()
            .map(|r| {
                r.parse()
                    .map_err(|e: String| anyhow::anyhow!("restore.remap: {e}"))
            })
            .collect()
    }

    /// The host key file the configuration names, unless `CRHOOK_IMAGE_KEY` names one (the
    /// variable wins, as flags and variables win over the file everywhere).
    pub fn image_key_override(&self) -> Option<&Path> {
        let env_set = std::env::var_os(crhook_core::seal::KEY_ENV).is_some_and(|v| !v.is_empty());
        self.image_key.as_deref().filter(|_| !env_set)
    }

    /// Where an `io.crhook.images` annotation may point (default `/var/lib/crhook`).
    pub fn images_roots(&self) -> Vec<PathBuf> {
        self.images_roots
            .clone()
            .unwrap_or_else(|| vec![PathBuf::from("/var/lib/crhook")])
    }

    /// Adopt for the runtime modes (hook, CRIU): the runtime's links by default.
    pub fn runtime_adopt(&self) -> crhook_netstate::Adopt {
        crhook_netstate::Adopt {
            links: self.restore.adopt.clone(),
            runtime: self.restore.adopt_runtime.unwrap_or(true),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn full_file_parses() {
        let c = Config::parse(
            r#"
plugin_dir = "/p"
image_key = "/etc/crhook/cluster.key"
[log]
level = "info"
file = "/var/log/crhook.log"
format = "json"
[restore]
adopt_runtime = false
adopt = ["net1"]
remap = ["10.88.0.0/16=10.89.0.0/16"]
"#,
        )
        .unwrap();
        assert_eq!(c.log_level().unwrap(), Some(LogLevel::Info));
        assert_eq!(c.log_format().unwrap(), Some(LogFormat::Json));
        assert_eq!(c.remaps().unwrap().len(), 1);
        let a = c.runtime_adopt();
        assert!(!a.runtime);
        assert_eq!(a.links, vec!["net1"]);
        assert_eq!(c.plugin_dir.as_deref(), Some(Path::new("/p")));
        assert_eq!(
            c.image_key.as_deref(),
            Some(Path::new("/etc/crhook/cluster.key"))
        );
    }

    #[test]
    fn empty_file_means_defaults() {
        let c = Config::parse("").unwrap();
        assert!(c.runtime_adopt().runtime);
        assert_eq!(c.log_level().unwrap(), None);
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::parse("[log]\nlevel = \"loud\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.level \"loud\""), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[restore]\nremap = [\"10.0.0.1\"]\n").unwrap_err()
        );
        assert!(e.contains("restore.remap") && e.contains("OLD=NEW"), "{e}");
        let e = format!("{:#}", Config::parse("[restor]\n").unwrap_err());
        assert!(e.contains("unknown field `restor`"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
