//! The netlink view of per-device sysctls: per link, the conf arrays of `IFLA_AF_SPEC`
//! (`IFLA_INET_CONF`, `IFLA_INET6_CONF`), and per device the neigh parameters of the
//! `RTM_GETNEIGHTBL` dump.
//!
//! Dumps made here are walked raw, reading only those attributes: the crate's parser builds
//! every attribute of every link, which at 2,000 links cost more than the dump itself, and
//! its conf structs stop at the slots it knows. A link dump the caller already parsed (the
//! checkpoint shares one) is read through the crate instead.

use std::collections::HashMap;

use netlink_packet_core::Emitable;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, LinkAttribute, LinkMessage,
};

use super::tables::NDTPA_IFINDEX;
use crate::error::Result;
use crate::nl::{Nl, Req};

/// `sizeof(struct ifinfomsg)`
const IFINFOMSG_LEN: usize = 16;
/// `sizeof(struct ndtmsg)`
const NDTMSG_LEN: usize = 4;
const IFLA_IFNAME: u16 = 3;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_INET_CONF: u16 = 1;
const IFLA_INET6_CONF: u16 = 2;
const NDTA_PARMS: u16 = 6;

/// One device's netlink view: the conf arrays as the kernel laid them out, and the neigh
/// parameters by `NDTPA_*` type.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Dev {
    pub name: String,
    pub inet: Option<Vec<i32>>,
    pub inet6: Option<Vec<i32>>,
    pub neigh4: Option<NeighParms>,
    pub neigh6: Option<NeighParms>,
}

/// One `NDTA_PARMS`: values by `NDTPA_*` type. Types are small (`NDTPA_MAX` is 19 on 6.18);
/// a vector indexed by type is cheaper than a map for the 4,000 of a 2,000-link dump.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct NeighParms(Vec<Option<u64>>);

impl NeighParms {
    /// Attribute types kept; [`tables::NEIGH_PARMS`](super::tables::NEIGH_PARMS) maps
    /// lower ones only.
    const MAX_TYPE: u16 = 64;

    pub fn get(&self, ty: u16) -> Option<u64> {
        self.0.get(usize::from(ty)).copied().flatten()
    }

    fn set(&mut self, ty: u16, v: u64) {
        if ty >= Self::MAX_TYPE {
            return;
        }
        let i = usize::from(ty);
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        if let Some(slot) = self.0.get_mut(i) {
            *slot = Some(v);
        }
    }
}

/// Every device of the calling thread's namespace: from the caller's link dump if given,
/// else from a dump of its own; with `neigh`, also the neigh parameters.
pub(super) fn devices(
    nl: &mut Nl,
    link_dump: Option<&[LinkMessage]>,
    neigh: bool,
) -> Result<Vec<Dev>> {
    let (mut devs, by_index) = links(nl, link_dump)?;
    if neigh {
        neigh_params(nl, &by_index, &mut devs)?;
    }
    Ok(devs)
}

/// The devices of a raw link dump, without neigh parameters; and their positions by ifindex.
pub(super) fn raw_links(dump: &crate::link::RawLinks) -> (Vec<Dev>, HashMap<u32, usize>) {
    let mut devs = Vec::new();
    let mut by_index = HashMap::new();
    for (index, d) in dump.messages().filter_map(dev_from_raw_link) {
        by_index.insert(index, devs.len());
        devs.push(d);
    }
    (devs, by_index)
}

/// The devices of the caller's link dump if given, else of a dump of its own, without neigh
/// parameters; and their positions by ifindex.
pub(super) fn links(
    nl: &mut Nl,
    link_dump: Option<&[LinkMessage]>,
) -> Result<(Vec<Dev>, HashMap<u32, usize>)> {
    let Some(links) = link_dump else {
        let dump = crate::link::RawLinks::dump(nl, "dump links for sysctls")?;
        return Ok(raw_links(&dump));
    };
    let mut devs = Vec::new();
    let mut by_index = HashMap::new();
    for l in links {
        by_index.insert(l.header.index, devs.len());
        devs.push(dev_from_link(l));
    }
    Ok((devs, by_index))
}

/// The attributes in `b`: (type without flags, value), through the crate's attribute walker.
/// Stops at the first malformed one.
fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    crate::nla::attrs(b)
        .map_while(|a| a.ok())
        .map(|a| (a.ty(), a.value))
}

fn ints(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|w| i32::from_ne_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// (ifindex, view) of one `RTM_NEWLINK` payload.
fn dev_from_raw_link(msg: &[u8]) -> Option<(u32, Dev)> {
    let index = u32::from_ne_bytes(msg.get(4..8)?.try_into().ok()?);
    let mut d = Dev::default();
    for (ty, v) in attrs(msg.get(IFINFOMSG_LEN..)?) {
        match ty {
            IFLA_IFNAME => {
                let name = v.split(|c| *c == 0).next().unwrap_or_default();
                d.name = String::from_utf8_lossy(name).into_owned();
            }
            IFLA_AF_SPEC => {
                for (family, spec) in attrs(v) {
                    let want = match i32::from(family) {
                        libc::AF_INET => IFLA_INET_CONF,
                        libc::AF_INET6 => IFLA_INET6_CONF,
                        _ => continue,
                    };
                    let conf = attrs(spec).find(|(t, _)| *t == want).map(|(_, c)| ints(c));
                    if i32::from(family) == libc::AF_INET {
                        d.inet = conf;
                    } else {
                        d.inet6 = conf;
                    }
                }
            }
            _ => {}
        }
    }
    Some((index, d))
}

/// The view of a link the crate parsed. Its conf structs emit the kernel's array layout up
/// to the last slot the crate knows; names past that are read from `/proc`.
pub(super) fn dev_from_link(l: &LinkMessage) -> Dev {
    let mut d = Dev::default();
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => d.name = n.clone(),
            LinkAttribute::AfSpecUnspec(specs) => {
                for s in specs {
                    match s {
                        AfSpecUnspec::Inet(v) => {
                            for x in v {
                                if let AfSpecInet::DevConf(c) = x {
                                    d.inet = Some(to_ints(c));
                                }
                            }
                        }
                        AfSpecUnspec::Inet6(v) => {
                            for x in v {
                                if let AfSpecInet6::DevConf(c) = x {
                                    d.inet6 = Some(to_ints(c));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    d
}

fn to_ints(c: &impl Emitable) -> Vec<i32> {
    let mut b = vec![0u8; c.buffer_len()];
    c.emit(&mut b);
    ints(&b)
}

/// Per-device neigh parameters from `RTM_GETNEIGHTBL`: one `NDTA_PARMS` per device that
/// carries `NDTPA_IFINDEX` (the table's own defaults carry none and are skipped).
pub(super) fn neigh_params(
    nl: &mut Nl,
    by_index: &HashMap<u32, usize>,
    devs: &mut [Dev],
) -> Result<()> {
    let req = Req::Raw {
        msg_type: libc::RTM_GETNEIGHTBL,
        payload: vec![0; NDTMSG_LEN],
    };
    for (ty, msg) in nl.dump_raw(&req, "dump neighbour tables for sysctls")? {
        if ty != libc::RTM_NEWNEIGHTBL {
            continue;
        }
        let Some((v6, per_dev)) = neigh_table(&msg) else {
            continue;
        };
        for (ifindex, vals) in per_dev {
            let Some(d) = by_index.get(&ifindex).and_then(|i| devs.get_mut(*i)) else {
                continue;
            };
            if v6 {
                d.neigh6 = Some(vals);
            } else {
                d.neigh4 = Some(vals);
            }
        }
    }
    Ok(())
}

/// One `RTM_NEWNEIGHTBL` payload: whether it is the IPv6 table, and the parameters of each
/// device it carries by ifindex. `None` for tables of other families.
fn neigh_table(msg: &[u8]) -> Option<(bool, Vec<(u32, NeighParms)>)> {
    let v6 = match i32::from(*msg.first()?) {
        libc::AF_INET => false,
        libc::AF_INET6 => true,
        _ => return None,
    };
    let per_dev = attrs(msg.get(NDTMSG_LEN..)?)
        .filter(|(t, _)| *t == NDTA_PARMS)
        .filter_map(|(_, params)| {
            let vals = parms(params);
            let ifindex = u32::try_from(vals.get(NDTPA_IFINDEX)?).ok()?;
            Some((ifindex, vals))
        })
        .collect();
    Some((v6, per_dev))
}

/// The values of one `NDTA_PARMS`: u32 or u64 (msecs), read generically so that unknown
/// attributes need no match arm.
fn parms(b: &[u8]) -> NeighParms {
    let mut vals = NeighParms::default();
    for (t, b) in attrs(b) {
        let v = match b.len() {
            4 => b.try_into().map(|a| u64::from(u32::from_ne_bytes(a))),
            8 => b.try_into().map(u64::from_ne_bytes),
            _ => continue,
        };
        if let Ok(v) = v {
            vals.set(t, v);
        }
    }
    vals
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn nla(ty: u16, value: &[u8]) -> Vec<u8> {
        let len = u16::try_from(4 + value.len()).unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&len.to_ne_bytes());
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(value);
        while b.len() % 4 != 0 {
            b.push(0);
        }
        b
    }

    fn words(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn raw_link_gives_name_and_both_conf_arrays() {
        let mut msg = vec![0u8; IFINFOMSG_LEN];
        msg[4..8].copy_from_slice(&7u32.to_ne_bytes());
        msg.extend(nla(IFLA_IFNAME, b"v.1\0"));
        // flags bit set as the kernel sends nested attributes
        let inet = nla(0x8000 | 2, &nla(IFLA_INET_CONF, &words(&[1, 0, 2])));
        let inet6 = nla(
            10,
            &[nla(1, &[0; 4]), nla(IFLA_INET6_CONF, &words(&[0, 64, -1]))].concat(),
        );
        msg.extend(nla(0x8000 | IFLA_AF_SPEC, &[inet, inet6].concat()));
        let (index, d) = dev_from_raw_link(&msg).unwrap();
        assert_eq!(index, 7);
        assert_eq!(
            d,
            Dev {
                name: "v.1".into(),
                inet: Some(vec![1, 0, 2]),
                inet6: Some(vec![0, 64, -1]),
                ..Dev::default()
            }
        );
    }

    /// An `RTM_NEWNEIGHTBL` of the IPv6 table as the kernel lays it out: the table's own
    /// parameters (no ifindex), then a device's, whose times are u64 msecs.
    #[test]
    fn neigh_table_gives_per_device_parameters() {
        let mut msg = vec![libc::AF_INET6 as u8, 0, 0, 0];
        msg.extend(nla(1, b"ndisc_cache\0")); // NDTA_NAME
        let u32a = |ty: u16, v: u32| nla(ty, &v.to_ne_bytes());
        let u64a = |ty: u16, v: u64| nla(ty, &v.to_ne_bytes());
        let table = [u32a(16, 212_992), u64a(4, 30_000)].concat();
        msg.extend(nla(0x8000 | NDTA_PARMS, &table));
        let dev = [
            u32a(NDTPA_IFINDEX, 3),
            u32a(16, 101_376),                 // NDTPA_QUEUE_LENBYTES
            u64a(4, 12_340),                   // NDTPA_BASE_REACHABLE_TIME
            u64a(12, 1_000),                   // NDTPA_ANYCAST_DELAY
            u64a(15, 0),                       // NDTPA_LOCKTIME
            u32a(40, 9),                       // a type newer than this code
            u32a(NeighParms::MAX_TYPE + 1, 1), // past what is kept
            nla(13, &[1, 2]),                  // a length neither u32 nor u64
        ]
        .concat();
        msg.extend(nla(0x8000 | NDTA_PARMS, &dev));
        msg.extend(nla(2, &7u32.to_ne_bytes())); // NDTA_THRESH1, outside the parameters

        let (v6, per_dev) = neigh_table(&msg).unwrap();
        assert!(v6);
        assert_eq!(
            per_dev.len(),
            1,
            "the table's own parameters carry no ifindex"
        );
        let (ifindex, p) = &per_dev[0];
        assert_eq!(*ifindex, 3);
        assert_eq!(p.get(16), Some(101_376));
        assert_eq!(p.get(4), Some(12_340));
        assert_eq!(p.get(12), Some(1_000));
        assert_eq!(p.get(15), Some(0));
        assert_eq!(p.get(40), Some(9));
        assert_eq!(p.get(NeighParms::MAX_TYPE + 1), None);
        assert_eq!(p.get(13), None);
        assert_eq!(p.get(5), None);

        msg[0] = libc::AF_INET as u8;
        assert!(!neigh_table(&msg).unwrap().0);
        msg[0] = libc::AF_BRIDGE as u8;
        assert!(neigh_table(&msg).is_none());
    }

    #[test]
    fn link_request_asks_for_no_statistics() {
        let b = crate::link::capture::link_request();
        assert_eq!(b.len(), IFINFOMSG_LEN + 8);
        assert!(b[..IFINFOMSG_LEN].iter().all(|x| *x == 0));
        let got: Vec<_> = attrs(&b[IFINFOMSG_LEN..]).collect();
        assert_eq!(got, [(29, &8u32.to_ne_bytes()[..])]);
    }

    #[test]
    fn truncated_attributes_end_the_walk() {
        let mut b = nla(1, &[1, 2, 3, 4]);
        b.extend_from_slice(&[200, 0, 2, 0, 9]);
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(got, [(1, &[1u8, 2, 3, 4][..])]);
        assert!(dev_from_raw_link(&[0; 3]).is_none());
    }
}
