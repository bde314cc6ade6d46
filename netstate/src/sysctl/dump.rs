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
    pub neigh4: Option<HashMap<u16, u64>>,
    pub neigh6: Option<HashMap<u16, u64>>,
}

/// Every device of the calling thread's namespace: from the caller's link dump if given,
/// else from a dump of its own; with `neigh`, also the neigh parameters.
pub(super) fn devices(
    nl: &mut Nl,
    link_dump: Option<&[LinkMessage]>,
    neigh: bool,
) -> Result<Vec<Dev>> {
    let mut devs = Vec::new();
    let mut by_index = HashMap::new();
    match link_dump {
        Some(links) => {
            for l in links {
                by_index.insert(l.header.index, devs.len());
                devs.push(dev_from_link(l));
            }
        }
        None => {
            let req = Req::Raw {
                msg_type: libc::RTM_GETLINK,
                payload: vec![0; IFINFOMSG_LEN],
            };
            for (ty, msg) in nl.dump_raw(&req, "dump links for sysctls")? {
                if ty != libc::RTM_NEWLINK {
                    continue;
                }
                if let Some((index, d)) = dev_from_raw_link(&msg) {
                    by_index.insert(index, devs.len());
                    devs.push(d);
                }
            }
        }
    }
    if neigh {
        neigh_params(nl, &by_index, &mut devs)?;
    }
    Ok(devs)
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
fn neigh_params(nl: &mut Nl, by_index: &HashMap<u32, usize>, devs: &mut [Dev]) -> Result<()> {
    let req = Req::Raw {
        msg_type: libc::RTM_GETNEIGHTBL,
        payload: vec![0; NDTMSG_LEN],
    };
    for (ty, msg) in nl.dump_raw(&req, "dump neighbour tables for sysctls")? {
        if ty != libc::RTM_NEWNEIGHTBL {
            continue;
        }
        let v6 = match msg.first().map(|f| i32::from(*f)) {
            Some(libc::AF_INET) => false,
            Some(libc::AF_INET6) => true,
            _ => continue,
        };
        let Some(body) = msg.get(NDTMSG_LEN..) else {
            continue;
        };
        for (_, params) in attrs(body).filter(|(t, _)| *t == NDTA_PARMS) {
            let vals: HashMap<u16, u64> = attrs(params)
                .filter_map(|(t, b)| {
                    // values are u32 or u64 (msecs); read them generically so unknown
                    // attributes do not need a match arm
                    let v = match b.len() {
                        4 => u64::from(u32::from_ne_bytes(b.try_into().ok()?)),
                        8 => u64::from_ne_bytes(b.try_into().ok()?),
                        _ => return None,
                    };
                    Some((t, v))
                })
                .collect();
            let Some(ifindex) = vals.get(&NDTPA_IFINDEX).copied() else {
                continue;
            };
            let Some(d) = u32::try_from(ifindex)
                .ok()
                .and_then(|x| by_index.get(&x))
                .and_then(|i| devs.get_mut(*i))
            else {
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

    #[test]
    fn truncated_attributes_end_the_walk() {
        let mut b = nla(1, &[1, 2, 3, 4]);
        b.extend_from_slice(&[200, 0, 2, 0, 9]);
        let got: Vec<_> = attrs(&b).collect();
        assert_eq!(got, [(1, &[1u8, 2, 3, 4][..])]);
        assert!(dev_from_raw_link(&[0; 3]).is_none());
    }
}
