//! Device features (`ethtool -k`/`-K`: checksum and segmentation offloads, GRO, ...) over the
//! ethtool generic netlink family: capture per link, and restore on the links restore makes.
//!
//! Hand-written rather than through the `ethtool` crate of the rust-netlink family: that crate
//! is asynchronous (netlink-proto connections driven by a tokio runtime), while every netlink
//! socket crhook opens in a namespace is made and used on that namespace's own thread, which
//! has no runtime and must not build one (DESIGN.md: netstate never builds a runtime; only
//! the binary does). The three requests needed (CTRL_CMD_GETFAMILY, ETHTOOL_MSG_STRSET_GET,
//! ETHTOOL_MSG_FEATURES_GET/SET) are a few dozen lines on the synchronous socket
//! ([`crate::nl::Nl`]) every other family uses, and the capture stays one dump per namespace.
//!
//! What is saved: per link, the features a user can change (the `hw` bitset, minus those the
//! device reports `nochange`), as the user wants them (`wanted`), by name (bit numbers move
//! between kernels; names do not): `Link.features_on` and `Link.features_off`. A device's
//! defaults are whatever a fresh device of its kind starts with; restore reads them from the
//! link it just made and sends only the difference, so a link nobody touched costs no request.
//! Fixed features (`[fixed]` in `ethtool -k`) and the active set follow from these and the
//! driver; they are not saved. Channels (`ethtool -l`: queues in use, a veth's for one) are
//! saved as the counts of a device that reports them and set the same way after creation.
//!
//! Kernel behaviour this relies on:
//! - The dump answers one message per device, bitsets compact (u32 words, host order) when
//!   ETHTOOL_FLAG_COMPACT_BITSETS is set; names come once from the `netdev-features` string set.
//! - A set request names the features it changes (a verbose bitset without NOMASK changes only
//!   the bits listed) and, with ETHTOOL_FLAG_OMIT_REPLY, answers with an ack alone.

use std::collections::HashMap;

use crhook_proto as pb;

use crate::error::{NetstateError, Result};
use crate::nl::Nl;
use crate::nla::{self, attrs, MsgBuf, NLA_F_NESTED};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

const ETHTOOL_MSG_STRSET_GET: u8 = 1;
const ETHTOOL_MSG_FEATURES_GET: u8 = 11;
const ETHTOOL_MSG_FEATURES_SET: u8 = 12;
const ETHTOOL_MSG_CHANNELS_GET: u8 = 17;
const ETHTOOL_MSG_CHANNELS_SET: u8 = 18;
const ETHTOOL_GENL_VERSION: u8 = 1;

const ETHTOOL_A_HEADER_DEV_INDEX: u16 = 1;
const ETHTOOL_A_HEADER_DEV_NAME: u16 = 2;
const ETHTOOL_A_HEADER_FLAGS: u16 = 3;
const ETHTOOL_FLAG_COMPACT_BITSETS: u32 = 1;
const ETHTOOL_FLAG_OMIT_REPLY: u32 = 2;

const ETHTOOL_A_STRSET_HEADER: u16 = 1;
const ETHTOOL_A_STRSET_STRINGSETS: u16 = 2;
const ETHTOOL_A_STRINGSETS_STRINGSET: u16 = 1;
const ETHTOOL_A_STRINGSET_ID: u16 = 1;
const ETHTOOL_A_STRINGSET_STRINGS: u16 = 3;
const ETHTOOL_A_STRING_INDEX: u16 = 1;
const ETHTOOL_A_STRING_VALUE: u16 = 2;
const ETH_SS_FEATURES: u32 = 4;

const ETHTOOL_A_FEATURES_HEADER: u16 = 1;
const ETHTOOL_A_FEATURES_HW: u16 = 2;
const ETHTOOL_A_FEATURES_WANTED: u16 = 3;
const ETHTOOL_A_FEATURES_NOCHANGE: u16 = 5;

const ETHTOOL_A_CHANNELS_HEADER: u16 = 1;
/// ETHTOOL_A_CHANNELS_{RX,TX,OTHER,COMBINED}_COUNT
const ETHTOOL_A_CHANNELS_COUNTS: [u16; 4] = [6, 7, 8, 9];

const ETHTOOL_A_BITSET_BITS: u16 = 3;
const ETHTOOL_A_BITSET_VALUE: u16 = 4;
const ETHTOOL_A_BITSETS_BIT: u16 = 1;
const ETHTOOL_A_BITSET_BIT_NAME: u16 = 2;
const ETHTOOL_A_BITSET_BIT_VALUE: u16 = 3;

/// The changeable features of one device as the user wants them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Features {
    pub on: Vec<String>,
    pub off: Vec<String>,
}

/// An ethtool generic netlink socket of one namespace, with the family's id and the names of
/// the feature bits.
pub struct Ethtool {
    nl: Nl,
    family: u16,
    names: Vec<String>,
}

fn genl(cmd: u8, version: u8) -> [u8; 4] {
    [cmd, version, 0, 0]
}

impl Ethtool {
    /// Opens the family on `nl` (a NETLINK_GENERIC socket made on the namespace's thread);
    /// `None` where the kernel has no ethtool netlink (built without CONFIG_ETHTOOL_NETLINK).
    pub fn open(mut nl: Nl) -> Result<Option<Ethtool>> {
        let mut m = MsgBuf::new(&genl(CTRL_CMD_GETFAMILY, 2));
        m.put(CTRL_ATTR_FAMILY_NAME, b"ethtool\0")?;
        let reply = match nl.get_raw(
            &m.into_req(GENL_ID_CTRL),
            "look up genetlink family ethtool",
        ) {
            Ok(r) => r,
            Err(NetstateError::Netlink { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let op = "look up genetlink family ethtool";
        let Some((_, p)) = reply else {
            return Ok(None);
        };
        let mut family = None;
        for a in attrs(p.get(4..).unwrap_or(&[])) {
            let a = a.map_err(|w| nla::decode_error(op, nl.netns(), w))?;
            if a.ty() == CTRL_ATTR_FAMILY_ID {
                family = Some(a.u16().map_err(|w| nla::decode_error(op, nl.netns(), w))?);
            }
        }
        let Some(family) = family else {
            return Ok(None);
        };
        let mut e = Ethtool {
            nl,
            family,
            names: Vec::new(),
        };
        e.names = e.feature_names()?;
        Ok(Some(e))
    }

    fn err(&self, op: &str, what: String) -> NetstateError {
        nla::decode_error(op, self.nl.netns(), what)
    }

    /// The `netdev-features` string set: the name of every feature bit.
    fn feature_names(&mut self) -> Result<Vec<String>> {
        let op = "read ethtool feature names";
        let mut m = MsgBuf::new(&genl(ETHTOOL_MSG_STRSET_GET, ETHTOOL_GENL_VERSION));
        let set = nla::nested(|s| s.put_u32(ETHTOOL_A_STRINGSET_ID, ETH_SS_FEATURES))?;
        let sets = nla::nested(|s| s.put(ETHTOOL_A_STRINGSETS_STRINGSET | NLA_F_NESTED, &set))?;
        // an empty header (no device: the global sets), without which the kernel says EINVAL
        m.put(ETHTOOL_A_STRSET_HEADER | NLA_F_NESTED, &[])?;
        m.put(ETHTOOL_A_STRSET_STRINGSETS | NLA_F_NESTED, &sets)?;
        let Some((_, p)) = self.nl.get_raw(&m.into_req(self.family), op)? else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = Vec::new();
        let body = p.get(4..).unwrap_or(&[]);
        let parsed = (|| -> std::result::Result<(), String> {
            for sets in walk(body, ETHTOOL_A_STRSET_STRINGSETS)? {
                for set in walk(sets, ETHTOOL_A_STRINGSETS_STRINGSET)? {
                    for strings in walk(set, ETHTOOL_A_STRINGSET_STRINGS)? {
                        for s in attrs(strings) {
                            let s = s?;
                            let (mut idx, mut name) = (None, String::new());
                            for f in attrs(s.value) {
                                let f = f?;
                                match f.ty() {
                                    ETHTOOL_A_STRING_INDEX => idx = Some(f.u32()? as usize),
                                    ETHTOOL_A_STRING_VALUE => name = f.string(),
                                    _ => {}
                                }
                            }
                            if let Some(i) = idx {
                                if names.len() <= i {
                                    names.resize(i + 1, String::new());
                                }
                                names[i] = name;
                            }
                        }
                    }
                }
            }
            Ok(())
        })();
        parsed.map_err(|w| self.err(op, w))?;
        Ok(names)
    }

    /// Every device's changeable features as wanted: (ifindex, name, features).
    pub fn dump(&mut self) -> Result<Vec<(u32, String, Features)>> {
        let op = "dump device features";
        let mut m = MsgBuf::new(&genl(ETHTOOL_MSG_FEATURES_GET, ETHTOOL_GENL_VERSION));
        let hdr = nla::nested(|h| h.put_u32(ETHTOOL_A_HEADER_FLAGS, ETHTOOL_FLAG_COMPACT_BITSETS))?;
        m.put(ETHTOOL_A_FEATURES_HEADER | NLA_F_NESTED, &hdr)?;
        let msgs = self.nl.dump_raw(&m.into_req(self.family), op)?;
        msgs.iter()
            .map(|(_, p)| {
                decode_features(p.get(4..).unwrap_or(&[]), &self.names).map_err(|w| self.err(op, w))
            })
            .collect()
    }

    /// Every device's features by name.
    pub fn dump_by_name(&mut self) -> Result<HashMap<String, Features>> {
        Ok(self.dump()?.into_iter().map(|(_, n, f)| (n, f)).collect())
    }

    /// The features of the device `name` now (none when it has gone).
    pub fn dump_one(&mut self, name: &str) -> Result<Features> {
        Ok(self.dump_by_name()?.remove(name).unwrap_or_default())
    }

    /// Fills `features_on`/`features_off` and `channels` of every link from two dumps.
    pub fn fill(&mut self, links: &mut [pb::Link]) -> Result<()> {
        let mut all: HashMap<u32, Features> =
            self.dump()?.into_iter().map(|(i, _, f)| (i, f)).collect();
        let mut channels: HashMap<u32, pb::Channels> = self
            .dump_channels()?
            .into_iter()
            .map(|(i, _, c)| (i, c))
            .collect();
        for l in links {
            if let Some(f) = all.remove(&l.ifindex) {
                l.features_on = f.on;
                l.features_off = f.off;
            }
            // a tun/tap device's channels are the queues processes attached (it has no
            // set-channels operation): the tun files restore hands back bring them
            let c = channels.remove(&l.ifindex);
            l.channels = if l.kind == "tun" { None } else { c };
        }
        Ok(())
    }

    /// The channels of every device that reports them: (ifindex, name, counts in use). A
    /// dump leaves out devices without channels.
    pub fn dump_channels(&mut self) -> Result<Vec<(u32, String, pb::Channels)>> {
        let op = "dump device channels";
        let mut m = MsgBuf::new(&genl(ETHTOOL_MSG_CHANNELS_GET, ETHTOOL_GENL_VERSION));
        m.put(ETHTOOL_A_CHANNELS_HEADER | NLA_F_NESTED, &[])?;
        let msgs = self.nl.dump_raw(&m.into_req(self.family), op)?;
        msgs.iter()
            .map(|(_, p)| decode_channels(p.get(4..).unwrap_or(&[])).map_err(|w| self.err(op, w)))
            .collect()
    }

    /// Sets the channel counts of `want` that differ from `live` on the link `name`; whether
    /// it sent anything.
    pub fn apply_channels(
        &mut self,
        name: &str,
        want: &pb::Channels,
        live: &pb::Channels,
    ) -> Result<bool> {
        let pairs = [
            (want.rx, live.rx),
            (want.tx, live.tx),
            (want.other, live.other),
            (want.combined, live.combined),
        ];
        if pairs.iter().all(|(w, l)| w == l) {
            return Ok(false);
        }
        let mut m = MsgBuf::new(&genl(ETHTOOL_MSG_CHANNELS_SET, ETHTOOL_GENL_VERSION));
        let hdr =
            nla::nested(|h| h.put(ETHTOOL_A_HEADER_DEV_NAME, &[name.as_bytes(), &[0]].concat()))?;
        m.put(ETHTOOL_A_CHANNELS_HEADER | NLA_F_NESTED, &hdr)?;
        for (attr, (w, l)) in ETHTOOL_A_CHANNELS_COUNTS.iter().zip(pairs) {
            if w != l {
                m.put_u32(*attr, w)?;
            }
        }
        let op = format!(
            "set channels of {name} (rx {} tx {} other {} combined {})",
            want.rx, want.tx, want.other, want.combined
        );
        self.send(m, op)?;
        Ok(true)
    }

    /// Sends one set request; its error names `op`.
    fn send(&mut self, m: MsgBuf, op: String) -> Result<()> {
        match self.nl.request(m.into_req(self.family), 0, &op)? {
            Ok(()) => Ok(()),
            Err(e) => Err(NetstateError::Netlink {
                op,
                object: String::new(),
                netns: self.nl.netns().to_string(),
                source: e.io(),
            }),
        }
    }

    /// Sets the saved wanted state of `want` on the live link `name`, sending only the
    /// features whose live wanted state differs and that the live device lets change; `live`
    /// is that device's current state. Returns how many features changed.
    pub fn apply(&mut self, name: &str, want: &Features, live: &Features) -> Result<usize> {
        let mut changes: Vec<(&str, bool)> = Vec::new();
        for (list, on) in [(&want.on, true), (&want.off, false)] {
            for f in list {
                let now_on = live.on.contains(f);
                let changeable = now_on || live.off.contains(f);
                if changeable && now_on != on {
                    changes.push((f, on));
                }
            }
        }
        if changes.is_empty() {
            return Ok(0);
        }
        let mut m = MsgBuf::new(&genl(ETHTOOL_MSG_FEATURES_SET, ETHTOOL_GENL_VERSION));
        let hdr = nla::nested(|h| {
            h.put(ETHTOOL_A_HEADER_DEV_NAME, &[name.as_bytes(), &[0]].concat())?;
            h.put_u32(ETHTOOL_A_HEADER_FLAGS, ETHTOOL_FLAG_OMIT_REPLY)
        })?;
        m.put(ETHTOOL_A_FEATURES_HEADER | NLA_F_NESTED, &hdr)?;
        let bits = nla::nested(|b| {
            for (f, on) in &changes {
                let bit = nla::nested(|x| {
                    x.put(ETHTOOL_A_BITSET_BIT_NAME, &[f.as_bytes(), &[0]].concat())?;
                    if *on {
                        x.put(ETHTOOL_A_BITSET_BIT_VALUE, &[])?;
                    }
                    Ok(())
                })?;
                b.put(ETHTOOL_A_BITSETS_BIT | NLA_F_NESTED, &bit)?;
            }
            Ok(())
        })?;
        let wanted = nla::nested(|w| w.put(ETHTOOL_A_BITSET_BITS | NLA_F_NESTED, &bits))?;
        m.put(ETHTOOL_A_FEATURES_WANTED | NLA_F_NESTED, &wanted)?;
        let what: Vec<String> = changes
            .iter()
            .map(|(f, on)| format!("{f} {}", if *on { "on" } else { "off" }))
            .collect();
        let op = format!("set features of {name} ({})", what.join(", "));
        self.send(m, op)?;
        Ok(changes.len())
    }
}

/// The values of the attributes of type `want` in `b`.
fn walk(b: &[u8], want: u16) -> std::result::Result<Vec<&[u8]>, String> {
    let mut v = Vec::new();
    for a in attrs(b) {
        let a = a?;
        if a.ty() == want {
            v.push(a.value);
        }
    }
    Ok(v)
}

/// The device (index, name) a reply's header names.
fn reply_header(b: &[u8]) -> std::result::Result<(u32, String), String> {
    let (mut ifindex, mut dev) = (0, String::new());
    for h in attrs(b) {
        let h = h?;
        match h.ty() {
            ETHTOOL_A_HEADER_DEV_INDEX => ifindex = h.u32()?,
            ETHTOOL_A_HEADER_DEV_NAME => dev = h.string(),
            _ => {}
        }
    }
    Ok((ifindex, dev))
}

/// One CHANNELS_GET answer (after the genetlink header): the device and its counts in use.
pub(crate) fn decode_channels(
    body: &[u8],
) -> std::result::Result<(u32, String, pb::Channels), String> {
    let (mut ifindex, mut dev) = (0, String::new());
    let mut counts = [0u32; 4];
    for a in attrs(body) {
        let a = a?;
        if a.ty() == ETHTOOL_A_CHANNELS_HEADER {
            (ifindex, dev) = reply_header(a.value)?;
        } else if let Some(i) = ETHTOOL_A_CHANNELS_COUNTS.iter().position(|t| *t == a.ty()) {
            counts[i] = a.u32()?;
        }
    }
    let [rx, tx, other, combined] = counts;
    Ok((
        ifindex,
        dev,
        pb::Channels {
            rx,
            tx,
            other,
            combined,
        },
    ))
}

/// A compact bitset's words (ETHTOOL_A_BITSET_VALUE), as bit numbers set.
fn bits(b: &[u8]) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for a in attrs(b) {
        let a = a?;
        if a.ty() == ETHTOOL_A_BITSET_VALUE {
            for (w, word) in a.value.chunks_exact(4).enumerate() {
                let v = nla::u32_at(word, 0);
                for i in 0..32 {
                    if v & (1 << i) != 0 {
                        out.push(w * 32 + i);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// One FEATURES_GET answer (after the genetlink header): the device (index, name) and its
/// changeable features, by name.
pub(crate) fn decode_features(
    body: &[u8],
    names: &[String],
) -> std::result::Result<(u32, String, Features), String> {
    let mut ifindex = 0;
    let mut dev = String::new();
    let (mut hw, mut wanted, mut nochange) = (Vec::new(), Vec::new(), Vec::new());
    for a in attrs(body) {
        let a = a?;
        match a.ty() {
            ETHTOOL_A_FEATURES_HEADER => (ifindex, dev) = reply_header(a.value)?,
            ETHTOOL_A_FEATURES_HW => hw = bits(a.value)?,
            ETHTOOL_A_FEATURES_WANTED => wanted = bits(a.value)?,
            ETHTOOL_A_FEATURES_NOCHANGE => nochange = bits(a.value)?,
            _ => {}
        }
    }
    let mut f = Features::default();
    for b in hw {
        if nochange.contains(&b) {
            continue;
        }
        let Some(name) = names.get(b).filter(|n| !n.is_empty()) else {
            continue;
        };
        if wanted.contains(&b) {
            f.on.push(name.clone());
        } else {
            f.off.push(name.clone());
        }
    }
    Ok((ifindex, dev, f))
}

/// Opens the ethtool family inside `ns` (the socket made on the namespace's thread).
pub fn open_in(ns: &crate::netns::NetNs) -> Result<Option<Ethtool>> {
    let name = ns.name().to_string();
    let nl = ns.run(|| {
        Nl::with_protocol(
            &name,
            netlink_sys::protocols::NETLINK_GENERIC,
            "NETLINK_GENERIC",
        )
    })?;
    Ethtool::open(nl)
}

/// A live link compared with a saved one that records no features (an older image): its
/// features are left out of the comparison.
pub fn forget_unrecorded(saved_link: &pb::Link, live: &mut pb::Link) {
    if saved(saved_link).is_none() {
        live.features_on.clear();
        live.features_off.clear();
    }
    if saved_link.channels.is_none() {
        live.channels = None;
    }
}

/// Feature changes of links both sides hold, one line per feature as `ethtool -k` names it
/// (`link eth0: feature tx-generic-segmentation off -> on`), replacing the positional lines
/// the link comparison makes of the two lists.
pub fn diff(saved_links: &[pb::Link], live: &[pb::Link], out: &mut Vec<crate::api::Difference>) {
    out.retain(|d| {
        !(d.kind == "link"
            && (d.field.starts_with("features_on") || d.field.starts_with("features_off")))
    });
    let live: HashMap<&str, &pb::Link> = live.iter().map(|l| (l.name.as_str(), l)).collect();
    for s in saved_links {
        let (Some(want), Some(l)) = (saved(s), live.get(s.name.as_str())) else {
            continue;
        };
        let state = |f: &Features, name: &str| {
            if f.on.iter().any(|x| x == name) {
                "on"
            } else if f.off.iter().any(|x| x == name) {
                "off"
            } else {
                "absent"
            }
        };
        let now = Features {
            on: l.features_on.clone(),
            off: l.features_off.clone(),
        };
        let mut names: Vec<&String> = want.on.iter().chain(&want.off).collect();
        let extra: Vec<&String> = now
            .on
            .iter()
            .chain(&now.off)
            .filter(|n| !names.contains(n))
            .collect();
        names.extend(extra);
        for n in names {
            let (a, b) = (state(&want, n), state(&now, n));
            if a != b {
                out.push(crate::api::Difference {
                    kind: "link".into(),
                    object: s.name.clone(),
                    field: format!("feature {n}"),
                    saved: a.into(),
                    live: b.into(),
                });
            }
        }
    }
}

/// The features a saved link records; `None` for links saved without them (older images, or a
/// device whose features cannot change).
pub fn saved(l: &pb::Link) -> Option<Features> {
    (!l.features_on.is_empty() || !l.features_off.is_empty()).then(|| Features {
        on: l.features_on.clone(),
        off: l.features_off.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::nla::unhex;

    /// ETHTOOL_MSG_FEATURES_GET_REPLY for a veth after `ethtool -K v0 tx off gso off`
    /// (6.18, compact bitsets), genetlink header included.
    const V0: &str = "0b01000014000180080001000300000007000200763000002400028008000200400000000c000400e949dd4f2e63000a0c000500ffffffffffffffff1c0003800400010008000200400000000c000400e101dd4f0e6100001c0004800400010008000200400000000c000400e101c04f0c6100001c0005800400010008000200400000000c0004000004000000000000";

    fn names() -> Vec<String> {
        (0..64).map(|i| format!("f{i}")).collect()
    }

    #[test]
    fn changeable_features_by_name_from_a_kernel_reply() {
        let b = unhex(V0);
        let (ifindex, dev, f) = decode_features(&b[4..], &names()).unwrap();
        assert_eq!((ifindex, dev.as_str()), (3, "v0"));
        let n = |v: &[usize]| v.iter().map(|i| format!("f{i}")).collect::<Vec<_>>();
        assert_eq!(
            f.on,
            n(
                &[
                    0, 5, 6, 7, 8, 16, 18, 19, 20, 22, 23, 24, 25, 26, 27, 30, 33, 34, 35, 40, 45,
                    46
                ]
            )
        );
        // hw bits that are wanted off; bit 10 (nochange) is left out
        assert_eq!(f.off, n(&[3, 11, 14, 37, 41, 57, 59]));
    }

    /// ETHTOOL_MSG_CHANNELS_GET_REPLY for a veth after `ethtool -L v0 rx 1 tx 1`
    const CHANNELS: &str = "1201000014000180080001000300000007000200763000000800020002000000080006000100000008000300020000000800070001000000";

    #[test]
    fn channels_from_a_kernel_reply() {
        let b = unhex(CHANNELS);
        let (ifindex, dev, c) = decode_channels(&b[4..]).unwrap();
        assert_eq!((ifindex, dev.as_str()), (3, "v0"));
        assert_eq!(
            c,
            pb::Channels {
                rx: 1,
                tx: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn saved_features_of_old_images_are_not_compared() {
        let old = pb::Link::default();
        let mut live = pb::Link {
            features_off: vec!["rx-gro-list".into()],
            ..Default::default()
        };
        assert!(saved(&old).is_none());
        live.channels = Some(pb::Channels::default());
        forget_unrecorded(&old, &mut live);
        assert!(live.features_off.is_empty() && live.channels.is_none());
    }
}
