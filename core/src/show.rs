//! `show`: decodes image files to JSON or readable text, driven by one registry row per kind
//! (the kind's magic-table row plus a decoder to JSON). Adding a kind is adding a row here and
//! one in magic.rs; a test checks every kind has a row.
//!
//! Byte fields that hold addresses are rendered readably here, not in the schema: fields
//! named like addresses become "10.0.0.1" / "fe80::1", hardware addresses "02:00:00:00:00:01",
//! other bytes lower-case hex. Enum fields stored as numbers get their schema names.

use std::path::Path;

use crhook_proto::{
    Address, ExtFile, FirewallRuleset, Inventory, Link, Neighbour, NexthopObject, Route, Rule,
    Seal, SkippedFile, Stats, Sysctl, TcObject, TunFile,
};
use serde_json::{json, Map, Value};

use crate::dir::ImageDir;
use crate::error::ImageError;
use crate::file::{decode_file, kind_of_name, read_bytes};
use crate::format::{version_string, Limits};
use crate::frame;
use crate::magic::Kind;
use crate::summary::ShowContext;
use crate::text::render_text;

/// Decodes a whole file's bytes to one JSON value per entry.
pub type Decoder = fn(&Path, &[u8]) -> Result<Vec<Value>, ImageError>;

/// One row of the show registry.
#[derive(Clone, Copy)]
pub struct ShowRow {
    pub kind: Kind,
    pub decode: Decoder,
}

fn to_json<M>(file: &Path, kind: Kind, bytes: &[u8]) -> Result<Vec<Value>, ImageError>
where
    M: prost::Message + Default + serde::Serialize,
{
    let entries: Vec<M> = decode_file(file, kind, bytes, &Limits::default())?;
    entries
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).map_err(|e| ImageError::Usage {
                op: "show",
                file: file.to_path_buf(),
                what: format!("cannot render {} as JSON: {e}", kind.info().message),
            })?;
            humanize(&mut v);
            Ok(v)
        })
        .collect()
}

/// The registry, in kind order.
pub static SHOW_ROWS: &[ShowRow] = &[
    ShowRow {
        kind: Kind::Inventory,
        decode: |p, b| to_json::<Inventory>(p, Kind::Inventory, b),
    },
    ShowRow {
        kind: Kind::Links,
        decode: |p, b| to_json::<Link>(p, Kind::Links, b),
    },
    ShowRow {
        kind: Kind::Addresses,
        decode: |p, b| to_json::<Address>(p, Kind::Addresses, b),
    },
    ShowRow {
        kind: Kind::Routes,
        decode: |p, b| to_json::<Route>(p, Kind::Routes, b),
    },
    ShowRow {
        kind: Kind::Nexthops,
        decode: |p, b| to_json::<NexthopObject>(p, Kind::Nexthops, b),
    },
    ShowRow {
        kind: Kind::Rules,
        decode: |p, b| to_json::<Rule>(p, Kind::Rules, b),
    },
    ShowRow {
        kind: Kind::Neighbours,
        decode: |p, b| to_json::<Neighbour>(p, Kind::Neighbours, b),
    },
    ShowRow {
        kind: Kind::Tc,
        decode: |p, b| to_json::<TcObject>(p, Kind::Tc, b),
    },
    ShowRow {
        kind: Kind::Sysctls,
        decode: |p, b| to_json::<Sysctl>(p, Kind::Sysctls, b),
    },
    ShowRow {
        kind: Kind::Firewall,
        decode: |p, b| to_json::<FirewallRuleset>(p, Kind::Firewall, b),
    },
    ShowRow {
        kind: Kind::TunFiles,
        decode: |p, b| to_json::<TunFile>(p, Kind::TunFiles, b),
    },
    ShowRow {
        kind: Kind::ExtFiles,
        decode: |p, b| to_json::<ExtFile>(p, Kind::ExtFiles, b),
    },
    ShowRow {
        kind: Kind::SkippedFiles,
        decode: |p, b| to_json::<SkippedFile>(p, Kind::SkippedFiles, b),
    },
    ShowRow {
        kind: Kind::StatsDump,
        decode: |p, b| to_json::<Stats>(p, Kind::StatsDump, b),
    },
    ShowRow {
        kind: Kind::StatsRestore,
        decode: |p, b| to_json::<Stats>(p, Kind::StatsRestore, b),
    },
    ShowRow {
        kind: Kind::Seal,
        decode: |p, b| to_json::<Seal>(p, Kind::Seal, b),
    },
];

/// The registry row of `kind`.
pub fn show_row(kind: Kind) -> Option<&'static ShowRow> {
    SHOW_ROWS.iter().find(|r| r.kind == kind)
}

/// Output format of [`show`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ShowFormat {
    #[default]
    Json,
    Text,
}

impl std::str::FromStr for ShowFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(ShowFormat::Json),
            "text" => Ok(ShowFormat::Text),
            _ => Err(format!("unknown format {s:?} (json or text)")),
        }
    }
}

/// One file as JSON: `{"file", "magic" (kind name), "message", "version", "entries"}`.
pub fn show_bytes(path: &Path, bytes: &[u8]) -> Result<Value, ImageError> {
    let kind = frame::peek_kind(path, bytes)?;
    if let Some(named) = kind_of_name(path) {
        if named != kind {
            return Err(ImageError::KindMismatch {
                file: path.to_path_buf(),
                offset: 4,
                found: kind.to_string(),
                expected: format!("{named} (by its name)"),
                why: "kind magic vs file name",
            });
        }
    }
    let header = frame::parse(path, bytes, Some(kind), &Limits::default())?.header;
    let row = show_row(kind).ok_or_else(|| ImageError::Usage {
        op: "show",
        file: path.to_path_buf(),
        what: format!("no show row for {kind}"),
    })?;
    let entries = (row.decode)(path, bytes)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    Ok(json!({
        "file": name,
        "magic": kind.name(),
        "message": kind.info().message,
        "version": version_string((header.major, header.minor)),
        "entries": entries,
    }))
}

fn show_file(path: &Path) -> Result<Value, ImageError> {
    let bytes = read_bytes(path, &Limits::default())?;
    show_bytes(path, &bytes)
}

/// The files of an image directory as JSON values, inventory first, then every listed kind,
/// (a child image: each parent's inventory after its own, with its `dir`, and every kind it takes
/// from its parents read where it is held), then `stats-restore.img` when a restore left one, then `seal.img` when the image is sealed
/// (shown, not verified: `show` holds no key).
pub fn show_dir(dir: &Path) -> Result<Vec<Value>, ImageError> {
    let image = ImageDir::open(dir)?;
    let mut out = Vec::new();
    if let Some(bytes) = image.read_bytes(Kind::Inventory)? {
        out.push(show_bytes(&dir.join(Kind::Inventory.file_name()), &bytes)?);
    }
    // a child image: the inventory of every parent up the chain, each naming its directory
    for parent in image.chain().skip(1) {
        if let Some(bytes) = parent.read_bytes(Kind::Inventory)? {
            let mut v = show_bytes(&parent.path().join(Kind::Inventory.file_name()), &bytes)?;
            v["dir"] = json!(parent.path().display().to_string());
            out.push(v);
        }
    }
    for kind in image.kinds() {
        // a kind the child takes from its parent chain is shown from the image that holds it
        let holder = image.chain().find(|d| d.lists(kind)).unwrap_or(&image);
        if let Some(bytes) = image.read_bytes(kind)? {
            let mut v = show_bytes(&holder.path().join(kind.file_name()), &bytes)?;
            if holder.path() != dir {
                v["dir"] = json!(holder.path().display().to_string());
            }
            out.push(v);
        }
    }
    for kind in [Kind::StatsRestore, Kind::Seal] {
        let extra = dir.join(kind.file_name());
        if !image.has(kind) && extra.symlink_metadata().is_ok() {
            out.push(show_file(&extra)?);
        }
    }
    Ok(out)
}

/// An image file as one JSON value, or an image directory as an array of them.
pub fn show_json(path: &Path) -> Result<Value, ImageError> {
    if path.is_dir() {
        Ok(Value::Array(show_dir(path)?))
    } else {
        show_file(path)
    }
}

/// Shows an image file or an image directory.
pub fn show(path: &Path, format: ShowFormat) -> Result<String, ImageError> {
    show_value(path, &show_json(path)?, format, &ShowContext::default())
}

/// Prints what [`show_json`] gave (perhaps with more added, such as firewall rules in rule
/// syntax): pretty JSON, or text, a directory's opening with a summary.
pub fn show_value(
    path: &Path,
    value: &Value,
    format: ShowFormat,
    cx: &ShowContext,
) -> Result<String, ImageError> {
    match format {
        ShowFormat::Json => serde_json::to_string_pretty(value).map_err(|e| ImageError::Usage {
            op: "show",
            file: path.to_path_buf(),
            what: format!("cannot print JSON: {e}"),
        }),
        ShowFormat::Text => Ok(match value {
            Value::Array(files) => format!(
                "{}\n{}",
                crate::summary::summary(path, files, cx),
                render_text(value)
            ),
            one => render_text(one),
        }),
    }
}

/// Fields whose bytes are IP addresses (or, for `broadcast` on links, a MAC).
const IP_KEYS: &[&str] = &[
    "address",
    "local",
    "broadcast",
    "gateway",
    "dst",
    "src",
    "prefsrc",
    "remote",
    "ipv6_token",
];
/// Fields whose bytes are hardware addresses.
const MAC_KEYS: &[&str] = &["mac", "lladdr", "peer_mac"];
/// Other byte fields, shown as hex.
const HEX_KEYS: &[&str] = &[
    "value", "payload", "table", "sha256", "key_id", "mac", "options", "tag",
];
/// Lists of byte strings (nf_tables message payloads), each shown as hex.
const HEX_LIST_KEYS: &[&str] = &[
    "chains",
    "objects",
    "flowtables",
    "sets",
    "elements",
    "rules",
];

fn as_bytes(v: &Value) -> Option<Vec<u8>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
        .collect()
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_string(b: &[u8]) -> String {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return std::net::Ipv4Addr::from(a).to_string();
    }
    if let Ok(a) = <[u8; 16]>::try_from(b) {
        return std::net::Ipv6Addr::from(a).to_string();
    }
    mac_string(b)
}

/// RTA_VIA: struct rtvia { u16 family (host order); u8 addr[]; }.
fn via_string(b: &[u8]) -> String {
    let Some((fam, addr)) = b.split_first_chunk::<2>() else {
        return hex_string(b);
    };
    match (u16::from_ne_bytes(*fam), addr.len()) {
        (2, 4) | (10, 16) => ip_string(addr),
        _ => hex_string(b),
    }
}

fn enum_name(key: &str, n: i64) -> Option<&'static str> {
    let n = i32::try_from(n).ok()?;
    match key {
        "peer_place" => crhook_proto::PeerPlace::try_from(n)
            .ok()
            .map(|e| e.as_str_name()),
        "source" => crhook_proto::FirewallSource::try_from(n)
            .ok()
            .map(|e| e.as_str_name()),
        // only tc objects have a field of this name
        "type" => crhook_proto::TcType::try_from(n)
            .ok()
            .map(|e| e.as_str_name()),
        _ => None,
    }
}

fn humanize_field(key: &str, v: &mut Value) {
    if HEX_LIST_KEYS.contains(&key) {
        if let Some(list) = v.as_array() {
            let hexes: Option<Vec<Value>> = list
                .iter()
                .map(|x| x.is_array().then(|| as_bytes(x)).flatten())
                .map(|b| b.map(|b| Value::String(hex_string(&b))))
                .collect();
            if let Some(h) = hexes {
                *v = Value::Array(h);
                return;
            }
        }
    }
    if v.is_array() {
        let byte_key = IP_KEYS.contains(&key)
            || MAC_KEYS.contains(&key)
            || HEX_KEYS.contains(&key)
            || key == "via";
        if byte_key {
            if let Some(b) = as_bytes(v) {
                let s = if b.is_empty() {
                    String::new()
                } else if MAC_KEYS.contains(&key) {
                    mac_string(&b)
                } else if IP_KEYS.contains(&key) {
                    ip_string(&b)
                } else if key == "via" {
                    via_string(&b)
                } else {
                    hex_string(&b)
                };
                *v = Value::String(s);
                return;
            }
        }
    }
    if key == "crc32c" {
        if let Some(n) = v.as_u64() {
            *v = Value::String(format!("0x{n:08x}"));
            return;
        }
    }
    if let Some(name) = v.as_i64().and_then(|n| enum_name(key, n)) {
        *v = Value::String(name.to_string());
        return;
    }
    humanize(v);
}

/// Rewrites byte arrays and enum numbers in a decoded message into readable strings.
pub fn humanize(v: &mut Value) {
    match v {
        Value::Object(map) => humanize_map(map),
        Value::Array(items) => items.iter_mut().for_each(humanize),
        _ => {}
    }
}

fn humanize_map(map: &mut Map<String, Value>) {
    for (k, v) in map.iter_mut() {
        humanize_field(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_row() {
        for k in Kind::ALL {
            assert!(show_row(k).is_some(), "{k} has no show row");
        }
        assert_eq!(SHOW_ROWS.len(), Kind::ALL.len());
    }

    #[test]
    fn addresses_are_readable() {
        let mut v = json!({
            "address": [10, 0, 0, 1],
            "gateway": [254, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            "mac": [2, 0, 0, 0, 0, 1],
            "broadcast": [255, 255, 255, 255, 255, 255],
            "dst": [],
            "via": [10, 0, 254, 128, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            "raw": [{"kind": 5, "value": [1, 2, 171]}],
            "alt_names": ["a"],
            "veth": {"peer_mac": [2, 0, 0, 0, 0, 2], "peer_place": 2},
            "source": 1,
        });
        humanize(&mut v);
        assert_eq!(v["address"], "10.0.0.1");
        assert_eq!(v["gateway"], "fe80::1");
        assert_eq!(v["mac"], "02:00:00:00:00:01");
        assert_eq!(v["broadcast"], "ff:ff:ff:ff:ff:ff");
        assert_eq!(v["dst"], "");
        assert_eq!(v["via"], "fe80::2");
        assert_eq!(v["raw"][0]["value"], "0102ab");
        assert_eq!(v["alt_names"][0], "a");
        assert_eq!(v["veth"]["peer_mac"], "02:00:00:00:00:02");
        assert_eq!(v["veth"]["peer_place"], "PEER_HOST");
        assert_eq!(v["source"], "IPTABLES_NFT");
    }

    #[test]
    fn nf_tables_payloads_are_hex() {
        let mut v = serde_json::json!({
            "tables": [{"family": 2, "name": "filter", "table": [2, 0, 0, 0],
                        "chains": [[2, 0, 0, 0], [10, 0, 0, 1]], "rules": []}]
        });
        humanize(&mut v);
        let t = &v["tables"][0];
        assert_eq!(t["table"], "02000000");
        assert_eq!(t["chains"], serde_json::json!(["02000000", "0a000001"]));
        assert_eq!(t["family"], 2);
    }

    #[test]
    fn format_parses() {
        assert_eq!("json".parse::<ShowFormat>(), Ok(ShowFormat::Json));
        assert_eq!("text".parse::<ShowFormat>(), Ok(ShowFormat::Text));
        assert!("yaml".parse::<ShowFormat>().is_err());
    }
}
