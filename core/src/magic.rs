//! The one table of magic numbers: every image kind, its file name, its magic and the protobuf
//! message its entries hold.
//!
//! Nothing else in crhook spells a magic number. The same table generates the `file(1)` magic
//! source (`docs/crhook.magic`, checked against [`file_magic`] by a test) and the JSON printed by
//! `crhook show --magics`, so other tools can identify crhook images without linking crhook.
//!
//! Magic numbers are stored little-endian; each kind's magic is four ASCII letters so a hex dump
//! names the kind, and the crhook magic starts with 0x89 (as PNG does) so a file that went
//! through a 7-bit channel or a text-mode copy fails the check.

use std::fmt;

use crate::format::FORMAT_VERSION;

/// First four bytes of every crhook image file: `89 43 52 48` ("\x89CRH") on disk.
pub const CRHOOK_MAGIC: u32 = u32::from_le_bytes([0x89, b'C', b'R', b'H']);

/// Four bytes that open the trailer of every file: `89 45 4e 44` ("\x89END") on disk.
pub const TRAILER_MAGIC: u32 = u32::from_le_bytes([0x89, b'E', b'N', b'D']);

/// The kinds of image file. The order is the order files are listed in an inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Inventory,
    Links,
    Addresses,
    Routes,
    Nexthops,
    Rules,
    Neighbours,
    /// `tc.img`: qdiscs, classes, filters and actions (format 1.3).
    Tc,
    Sysctls,
    Firewall,
    TunFiles,
    ExtFiles,
    SkippedFiles,
    StatsDump,
    StatsRestore,
    /// `seal.img`: vouches for the inventory; never listed in it (format 1.2).
    Seal,
}

/// One row of the magic table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: Kind,
    /// Short name used in inventories, `show` and messages ("links").
    pub name: &'static str,
    /// File name inside an image directory ("links.img").
    pub file: &'static str,
    /// The kind's magic, the second u32 of the file.
    pub magic: u32,
    /// Fully qualified protobuf message of each entry ("crhook.Link").
    pub message: &'static str,
}

const fn tag(t: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*t)
}

/// The table, one row per kind, in enum order.
pub const KINDS: &[KindInfo] = &KIND_TABLE;

// Indexed by `Kind as usize`: the array has one row per variant (its length is the variant
// count, `Kind::ALL.len()`) and the compile-time check below proves each row sits at its
// variant's index, so `KIND_TABLE[kind as usize]` cannot go out of bounds or pick a wrong row.
const KIND_TABLE: [KindInfo; Kind::ALL.len()] = [
    row(
        Kind::Inventory,
        "inventory",
        "inventory.img",
        b"INVT",
        "crhook.Inventory",
    ),
    row(Kind::Links, "links", "links.img", b"LINK", "crhook.Link"),
    row(
        Kind::Addresses,
        "addresses",
        "addresses.img",
        b"ADDR",
        "crhook.Address",
    ),
    row(
        Kind::Routes,
        "routes",
        "routes.img",
        b"ROUT",
        "crhook.Route",
    ),
    row(
        Kind::Nexthops,
        "nexthops",
        "nexthops.img",
        b"NHOP",
        "crhook.NexthopObject",
    ),
    row(Kind::Rules, "rules", "rules.img", b"RULE", "crhook.Rule"),
    row(
        Kind::Neighbours,
        "neighbours",
        "neighbours.img",
        b"NEIG",
        "crhook.Neighbour",
    ),
    row(Kind::Tc, "tc", "tc.img", b"TCTL", "crhook.TcObject"),
    row(
        Kind::Sysctls,
        "sysctls",
        "sysctls.img",
        b"SYSC",
        "crhook.Sysctl",
    ),
    row(
        Kind::Firewall,
        "firewall",
        "firewall.img",
        b"FWAL",
        "crhook.FirewallRuleset",
    ),
    row(
        Kind::TunFiles,
        "tun-files",
        "tun-files.img",
        b"TUNF",
        "crhook.TunFile",
    ),
    row(
        Kind::ExtFiles,
        "ext-files",
        "ext-files.img",
        b"EXTF",
        "crhook.ExtFile",
    ),
    row(
        Kind::SkippedFiles,
        "skipped-files",
        "skipped-files.img",
        b"SKIP",
        "crhook.SkippedFile",
    ),
    row(
        Kind::StatsDump,
        "stats-dump",
        "stats-dump.img",
        b"STDU",
        "crhook.Stats",
    ),
    row(
        Kind::StatsRestore,
        "stats-restore",
        "stats-restore.img",
        b"STRE",
        "crhook.Stats",
    ),
    row(Kind::Seal, "seal", "seal.img", b"SEAL", "crhook.Seal"),
];

// A new variant fails to compile here until it is given a row in KIND_TABLE and a place in
// Kind::ALL (and a row in show.rs's registry, which a test checks).
const fn is_last_variant(kind: Kind) -> bool {
    match kind {
        Kind::Seal => true,
        Kind::Inventory
        | Kind::Links
        | Kind::Addresses
        | Kind::Routes
        | Kind::Nexthops
        | Kind::Rules
        | Kind::Neighbours
        | Kind::Tc
        | Kind::Sysctls
        | Kind::Firewall
        | Kind::TunFiles
        | Kind::ExtFiles
        | Kind::SkippedFiles
        | Kind::StatsDump
        | Kind::StatsRestore => false,
    }
}

const _: () = {
    assert!(is_last_variant(Kind::ALL[Kind::ALL.len() - 1]));
    let mut i = 0;
    while i < KIND_TABLE.len() {
        assert!(
            KIND_TABLE[i].kind as usize == i,
            "KIND_TABLE is not in enum order"
        );
        assert!(Kind::ALL[i] as usize == i, "Kind::ALL is not in enum order");
        i += 1;
    }
};

const fn row(
    kind: Kind,
    name: &'static str,
    file: &'static str,
    magic: &[u8; 4],
    message: &'static str,
) -> KindInfo {
    KindInfo {
        kind,
        name,
        file,
        magic: tag(magic),
        message,
    }
}

impl Kind {
    /// Every kind, in table order.
    pub const ALL: [Kind; 16] = [
        Kind::Inventory,
        Kind::Links,
        Kind::Addresses,
        Kind::Routes,
        Kind::Nexthops,
        Kind::Rules,
        Kind::Neighbours,
        Kind::Tc,
        Kind::Sysctls,
        Kind::Firewall,
        Kind::TunFiles,
        Kind::ExtFiles,
        Kind::SkippedFiles,
        Kind::StatsDump,
        Kind::StatsRestore,
        Kind::Seal,
    ];

    /// The kind's row of [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        &KIND_TABLE[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn file_name(self) -> &'static str {
        self.info().file
    }

    pub fn magic(self) -> u32 {
        self.info().magic
    }

    /// The kind whose image file is called `name` ("links.img"), given a bare file name.
    pub fn from_file_name(name: &str) -> Option<Kind> {
        KINDS.iter().find(|i| i.file == name).map(|i| i.kind)
    }

    /// The kind called `name` ("links"), as inventories spell it.
    pub fn from_name(name: &str) -> Option<Kind> {
        KINDS.iter().find(|i| i.name == name).map(|i| i.kind)
    }

    pub fn from_magic(magic: u32) -> Option<Kind> {
        KINDS.iter().find(|i| i.magic == magic).map(|i| i.kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A magic number as `file(1)` and humans write it.
pub fn hex(magic: u32) -> String {
    format!("0x{magic:08x}")
}

/// The table as JSON, for `crhook show --magics`.
pub fn magics_json() -> serde_json::Value {
    let kinds: Vec<serde_json::Value> = KINDS
        .iter()
        .map(|i| {
            serde_json::json!({
                "name": i.name,
                "file": i.file,
                "magic": hex(i.magic),
                "magic_le_bytes": String::from_utf8_lossy(&i.magic.to_le_bytes()),
                "message": i.message,
            })
        })
        .collect();
    serde_json::json!({
        "crhook_magic": hex(CRHOOK_MAGIC),
        "trailer_magic": hex(TRAILER_MAGIC),
        "byte_order": "little-endian",
        "format_version": format!("{}.{}", FORMAT_VERSION.0, FORMAT_VERSION.1),
        "kinds": kinds,
    })
}

/// `file(1)` magic source for every kind, generated from the table. `docs/crhook.magic` is
/// this text; use it with `file -m docs/crhook.magic IMAGE`.
pub fn file_magic() -> String {
    let mut s = String::new();
    s.push_str(
        "# crhook image files. Generated by crhook_core::magic::file_magic(); do not edit:\n",
    );
    s.push_str("# regenerate with `CRHOOK_BLESS=1 cargo test -p crhook-core --test magic_file`.\n");
    s.push_str(
        "# Layout: u32le crhook magic, u32le kind magic, u16le major, u16le minor, entries.\n",
    );
    s.push_str(&format!(
        "0\tulelong\t{}\tcrhook image\n",
        hex(CRHOOK_MAGIC)
    ));
    s.push_str("!:mime\tapplication/x-crhook-image\n");
    for i in KINDS {
        s.push_str(&format!(
            ">4\tulelong\t{}\t\\b, {} ({})\n",
            hex(i.magic),
            i.name,
            i.message
        ));
    }
    s.push_str(">4\tdefault\tx\t\\b, unknown kind\n");
    s.push_str(">8\tuleshort\tx\t\\b, format %u\n");
    s.push_str(">10\tuleshort\tx\t\\b.%u\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn table_is_in_enum_order() {
        assert_eq!(KINDS.len(), Kind::ALL.len());
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(KINDS[i].kind, *k);
            assert_eq!(*k as usize, i);
            assert_eq!(k.info().kind, *k);
        }
    }

    #[test]
    fn magics_names_and_files_are_unique() {
        let magics: HashSet<u32> = KINDS.iter().map(|i| i.magic).collect();
        let names: HashSet<&str> = KINDS.iter().map(|i| i.name).collect();
        let files: HashSet<&str> = KINDS.iter().map(|i| i.file).collect();
        assert_eq!(magics.len(), KINDS.len());
        assert_eq!(names.len(), KINDS.len());
        assert_eq!(files.len(), KINDS.len());
        assert!(!magics.contains(&CRHOOK_MAGIC));
        assert!(!magics.contains(&TRAILER_MAGIC));
        for i in KINDS {
            assert_eq!(i.file, format!("{}.img", i.name));
        }
    }

    #[test]
    fn lookups_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_file_name(k.file_name()), Some(k));
            assert_eq!(Kind::from_name(k.name()), Some(k));
            assert_eq!(Kind::from_magic(k.magic()), Some(k));
        }
        assert_eq!(Kind::from_file_name("links"), None);
        assert_eq!(Kind::from_magic(0), None);
        assert_eq!(Kind::Links.to_string(), "links");
    }

    #[test]
    fn magic_bytes_on_disk() {
        assert_eq!(&CRHOOK_MAGIC.to_le_bytes(), b"\x89CRH");
        assert_eq!(&Kind::Links.magic().to_le_bytes(), b"LINK");
    }

    #[test]
    fn magics_json_lists_every_kind() {
        let v = magics_json();
        let kinds = v["kinds"].as_array().map(Vec::len);
        assert_eq!(kinds, Some(KINDS.len()));
        assert_eq!(v["crhook_magic"], "0x48524389");
        assert_eq!(v["kinds"][1]["name"], "links");
        assert_eq!(v["kinds"][1]["magic_le_bytes"], "LINK");
    }
}
