//! crhook-core: crhook's image files and everything that needs no privilege to handle them.
//!
//! Owns: the magic-number table ([`magic`]), the byte format of one file ([`format`](mod@format),
//! framing, checksums, limits, version policy), memory budgets for decoding ([`budget`]), reading
//! and writing one file ([`file`](mod@file)), writing an image directory crash-safely and sealed
//! ([`ImageWriter`]), opening one (a child image with its parent chain) with full verification and
//! a trust verdict ([`ImageDir`], [`Trust`]), the host key ([`HostKey`]), the table-driven
//! [`show`](mod@show), [`StatsRecorder`], and the ext-file [`PluginRegistry`].
//!
//! Images are untrusted input: they travel between hosts and registries, and crhook runs as
//! root. Trust comes from the operator's key, never from the image ([`seal`]); files in an
//! image are opened so that no name in it can point elsewhere (safefs.rs); nothing read from
//! an image sizes an allocation before it is checked against [`Limits`].
//!
//! Must not: touch namespaces, netlink, processes or async runtimes (no tokio, nix, netlink or
//! clap here), so `crhook show` works unprivileged on any machine. The wire schema itself lives
//! in `crhook-proto`, re-exported as [`proto`].

pub mod budget;
pub mod dir;
mod encoded;
pub mod error;
pub mod file;
pub mod format;
pub mod frame;
mod listed;
pub mod magic;
mod place;
pub mod plugin;
pub mod safefs;
pub mod seal;
pub mod show;
pub mod stats;
pub mod summary;
mod text;
pub mod writer;

pub use crhook_proto as proto;
pub use prost;

pub use dir::ImageDir;
pub use encoded::Encoded;
pub use error::ImageError;
pub use file::{
    decode_file, decode_raw_file, encode_file, encode_raw_file, read_file, read_file_with_limits,
    try_encode_file, verify_framing, write_file, write_file_unsynced,
};
pub use format::{Limits, FORMAT_VERSION};
pub use magic::{file_magic, magics_json, Kind, KindInfo, CRHOOK_MAGIC, KINDS};
pub use plugin::{ExtFilePlugin, FileInfo, PluginRegistry};
pub use seal::{seal_status, HostKey, KeyId, Trust};
pub use show::{show, show_json, show_value, ShowFormat};
pub use stats::{stats_json, StatsRecorder};
pub use summary::ShowContext;
pub use writer::ImageWriter;
