//! crhook-core: crhook's image files and everything that needs no privilege to handle them.
//!
//! Owns: the magic-number table ([`magic`]), the byte format of one file ([`format`], framing,
//! checksums, limits, version policy), reading and writing one file ([`file`]), writing an image
//! directory crash-safely ([`ImageWriter`]) and opening one with full verification
//! ([`ImageDir`]), the table-driven [`show`], [`StatsRecorder`], and the ext-file
//! [`PluginRegistry`].
//!
//! Must not: touch namespaces, netlink, processes or async runtimes (no tokio, nix, netlink or
//! clap here), so `crhook show` works unprivileged on any machine. The wire schema itself lives
//! in `crhook-proto`, re-exported as [`proto`].

pub mod dir;
pub mod error;
pub mod file;
pub mod format;
pub mod frame;
pub mod magic;
pub mod plugin;
pub mod show;
pub mod stats;
mod text;
pub mod writer;

pub use crhook_proto as proto;
pub use prost;

pub use dir::ImageDir;
pub use error::ImageError;
pub use file::{
    decode_file, decode_raw_file, encode_file, encode_raw_file, read_file, read_file_with_limits,
    try_encode_file, verify_framing, write_file,
};
pub use format::{Limits, FORMAT_VERSION};
pub use magic::{file_magic, magics_json, Kind, KindInfo, CRHOOK_MAGIC, KINDS};
pub use plugin::{ExtFilePlugin, FileInfo, PluginRegistry};
pub use show::{show, ShowFormat};
pub use stats::{stats_json, StatsRecorder};
pub use writer::ImageWriter;
