//! Ext-file plugins (after CRIU's ext-file plugins): an open file crhook cannot carry natively
//! is offered to each registered plugin in registration order; the first that claims it dumps
//! an opaque payload, stored once per open file description as an `ExtFile` entry under the
//! plugin's name. On restore the plugin named in the entry opens the file itself and returns
//! the descriptor, which crhook then hands to the holders.
//!
//! This module only keeps the registry; finding open files (walking /proc) and passing
//! descriptors to processes belong to crhook-netstate. Plugins must not block for long: they
//! run inside a checkpoint while the namespace may be locked.

use std::os::fd::OwnedFd;

use crate::error::ImageError;

/// An open file as crhook found it in /proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub pid: u32,
    pub fd: i32,
    /// Target of /proc/PID/fd/FD (`/dev/net/tun`, `socket:[1234]`, ...).
    pub path: String,
    /// Contents of /proc/PID/fdinfo/FD.
    pub fdinfo: String,
}

/// A handler for one family of files crhook does not carry itself.
pub trait ExtFilePlugin: Send + Sync {
    /// Stored in each `ExtFile` entry; must stay stable across crhook versions.
    fn name(&self) -> &str;
    /// Whether this plugin handles `f`. Cheap and side-effect free.
    fn claims(&self, f: &FileInfo) -> bool;
    /// The payload that lets `restore` reopen the file.
    fn dump(&self, f: &FileInfo) -> Result<Vec<u8>, ImageError>;
    /// Reopens the file from its payload, in the calling thread's namespaces.
    fn restore(&self, payload: &[u8]) -> Result<OwnedFd, ImageError>;
}

/// The registered plugins, asked in registration order.
#[derive(Default)]
pub struct PluginRegistry {
    plugins: Vec<Box<dyn ExtFilePlugin>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl PluginRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a plugin. One registered under the same name before is replaced (in its place in
    /// the order), so an embedder can override a built-in.
    pub fn register(&mut self, plugin: Box<dyn ExtFilePlugin>) {
        match self.plugins.iter_mut().find(|p| p.name() == plugin.name()) {
            Some(slot) => *slot = plugin,
            None => self.plugins.push(plugin),
        }
    }

    /// The first plugin, in registration order, that claims `f`.
    pub fn find_claimant(&self, f: &FileInfo) -> Option<&dyn ExtFilePlugin> {
        self.plugins
            .iter()
            .find(|p| p.claims(f))
            .map(|p| p.as_ref())
    }

    /// The plugin named `name`, for restore.
    pub fn by_name(&self, name: &str) -> Option<&dyn ExtFilePlugin> {
        self.plugins
            .iter()
            .find(|p| p.name() == name)
            .map(|p| p.as_ref())
    }

    /// Like [`by_name`](Self::by_name), with the error restore reports for an image that
    /// needs a plugin this build does not have.
    pub fn require(&self, name: &str) -> Result<&dyn ExtFilePlugin, ImageError> {
        self.by_name(name).ok_or_else(|| ImageError::Plugin {
            plugin: name.to_string(),
            op: "not registered: the image holds a file only this plugin can restore".into(),
            source: None,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.plugins.iter().map(|p| p.name())
    }

    pub fn len(&self) -> usize {
        self.plugins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    struct Prefix {
        name: &'static str,
        prefix: &'static str,
    }

    impl ExtFilePlugin for Prefix {
        fn name(&self) -> &str {
            self.name
        }
        fn claims(&self, f: &FileInfo) -> bool {
            f.path.starts_with(self.prefix)
        }
        fn dump(&self, f: &FileInfo) -> Result<Vec<u8>, ImageError> {
            Ok(f.path.as_bytes().to_vec())
        }
        fn restore(&self, _payload: &[u8]) -> Result<OwnedFd, ImageError> {
            File::open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| ImageError::plugin(self.name, "open /dev/null", e))
        }
    }

    fn info(path: &str) -> FileInfo {
        FileInfo {
            pid: 1,
            fd: 3,
            path: path.into(),
            fdinfo: String::new(),
        }
    }

    #[test]
    fn first_claimant_wins_and_names_resolve() -> Result<(), ImageError> {
        let mut r = PluginRegistry::new();
        assert!(r.is_empty());
        r.register(Box::new(Prefix {
            name: "tun",
            prefix: "/dev/net/tun",
        }));
        r.register(Box::new(Prefix {
            name: "dev",
            prefix: "/dev/",
        }));
        assert_eq!(r.len(), 2);
        let c = r
            .find_claimant(&info("/dev/net/tun"))
            .map(|p| p.name().to_string());
        assert_eq!(c.as_deref(), Some("tun"));
        let c = r
            .find_claimant(&info("/dev/zero"))
            .map(|p| p.name().to_string());
        assert_eq!(c.as_deref(), Some("dev"));
        assert!(r.find_claimant(&info("socket:[1]")).is_none());
        let p = r.require("dev")?;
        assert_eq!(p.dump(&info("/dev/zero"))?, b"/dev/zero");
        let _fd = p.restore(b"")?;
        let missing = r.require("criu-sk").err().map(|e| e.to_string());
        assert_eq!(
            missing.as_deref(),
            Some("plugin criu-sk: not registered: the image holds a file only this plugin can restore")
        );
        Ok(())
    }

    #[test]
    fn same_name_replaces_in_place() {
        let mut r = PluginRegistry::new();
        r.register(Box::new(Prefix {
            name: "a",
            prefix: "/x",
        }));
        r.register(Box::new(Prefix {
            name: "b",
            prefix: "/",
        }));
        r.register(Box::new(Prefix {
            name: "a",
            prefix: "/y",
        }));
        assert_eq!(r.names().collect::<Vec<_>>(), ["a", "b"]);
        let c = r.find_claimant(&info("/y")).map(|p| p.name().to_string());
        assert_eq!(c.as_deref(), Some("a"));
        let c = r.find_claimant(&info("/x")).map(|p| p.name().to_string());
        assert_eq!(c.as_deref(), Some("b"));
    }
}
