//! Finding where the other end of a veth lives. The kernel reports a peer outside the
//! namespace as IFLA_LINK (its ifindex there) plus IFLA_LINK_NETNSID, an id that only means
//! something relative to the dumping namespace. RTM_GETNSID with NETNSA_FD asks the target
//! which id it gave a candidate namespace; the candidates are, in order: the namespace crhook
//! runs in (the host), the named namespaces under /run/netns, then every process's namespace.

use std::collections::HashSet;
use std::os::fd::AsRawFd;

use crhook_proto::{self as pb};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;

use super::capture::{convert, dump, names};
use crate::error::Result;
use crate::netns::NetNs;
use crate::nl::Nl;

pub struct Candidate {
    pub ns: NetNs,
    pub place: pb::PeerPlace,
    /// name under /run/netns for PEER_NAMED, else empty
    pub named: String,
    pub pid: u32,
    nsid: Option<i32>,
    links: Option<Vec<LinkMessage>>,
    /// addresses, routes and neighbours of this namespace, for far ends (dumped once)
    far: Option<super::far_end::Dumped>,
}

pub struct PeerFinder {
    target: (u64, u64),
    cands: Vec<Candidate>,
    scanned_named: bool,
    scanned_procs: bool,
}

impl PeerFinder {
    /// `host` is the namespace crhook runs in; `target` the one being captured.
    pub fn new(host: NetNs, target: &NetNs) -> PeerFinder {
        PeerFinder {
            target: target.identity(),
            cands: vec![Candidate {
                ns: host,
                place: pb::PeerPlace::PeerHost,
                named: String::new(),
                pid: 0,
                nsid: None,
                links: None,
                far: None,
            }],
            scanned_named: false,
            scanned_procs: false,
        }
    }

    fn seen(&self) -> HashSet<(u64, u64)> {
        let mut s: HashSet<_> = self.cands.iter().map(|c| c.ns.identity()).collect();
        s.insert(self.target);
        s
    }

    fn add_named(&mut self) {
        self.scanned_named = true;
        let mut seen = self.seen();
        let Ok(rd) = std::fs::read_dir("/run/netns") else {
            return;
        };
        let mut entries: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Ok(ns) = NetNs::open_path(&e.path()) else {
                continue;
            };
            if !seen.insert(ns.identity()) {
                continue;
            }
            self.cands.push(Candidate {
                ns,
                place: pb::PeerPlace::PeerNamed,
                named: e.file_name().to_string_lossy().into_owned(),
                pid: 0,
                nsid: None,
                links: None,
                far: None,
            });
        }
    }

    fn add_processes(&mut self) {
        self.scanned_procs = true;
        let mut seen = self.seen();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut pids: Vec<u32> = rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        for pid in pids {
            let path = format!("/proc/{pid}/ns/net");
            let Ok(ns) = NetNs::open_path(std::path::Path::new(&path)) else {
                continue;
            };
            if !seen.insert(ns.identity()) {
                continue;
            }
            self.cands.push(Candidate {
                ns,
                place: pb::PeerPlace::PeerProcess,
                named: String::new(),
                pid,
                nsid: None,
                links: None,
                far: None,
            });
        }
    }

    /// The candidate the target calls `nsid`, scanning further sources only when needed.
    fn find(&mut self, target: &mut Nl, nsid: i32) -> Result<Option<usize>> {
        let mut idx = self.match_nsid(target, nsid, 0)?;
        if idx.is_none() && !self.scanned_named {
            let from = self.cands.len();
            self.add_named();
            idx = self.match_nsid(target, nsid, from)?;
        }
        if idx.is_none() && !self.scanned_procs {
            let from = self.cands.len();
            self.add_processes();
            idx = self.match_nsid(target, nsid, from)?;
        }
        Ok(idx)
    }

    /// The links of candidate `i`, dumped once.
    fn links(&mut self, i: usize) -> Result<&[LinkMessage]> {
        let c = &mut self.cands[i];
        if c.links.is_none() {
            let name = c.ns.name().to_string();
            let mut nl = c.ns.run(move || Nl::new(&name))?;
            c.links = Some(dump(&mut nl)?);
        }
        Ok(c.links.as_deref().unwrap_or_default())
    }

    /// Where the lower device (ifindex `lower` in the namespace the target calls `nsid`) of a
    /// macvlan, macvtap, ipvlan or vlan lives.
    pub fn describe_lower(&mut self, target: &mut Nl, nsid: i32, lower: u32) -> Result<pb::Lower> {
        let Some(i) = self.find(target, nsid)? else {
            return Ok(pb::Lower {
                place: pb::PeerPlace::PeerUnknown as i32,
                ..Default::default()
            });
        };
        let name = self
            .links(i)?
            .iter()
            .find(|m| m.header.index == lower)
            .map(super::capture::link_name)
            .unwrap_or_default();
        let c = &self.cands[i];
        let (ns_dev, ns_ino) = c.ns.identity();
        Ok(pb::Lower {
            place: c.place as i32,
            netns: c.named.clone(),
            pid: c.pid,
            name,
            ns_dev,
            ns_ino,
        })
    }

    /// Fills the peer fields of `v` for a veth whose peer is in the namespace the target calls
    /// `nsid`. Leaves `PEER_UNKNOWN` if no candidate matches.
    pub fn describe(&mut self, target: &mut Nl, nsid: i32, v: &mut pb::Veth) -> Result<()> {
        let Some(i) = self.find(target, nsid)? else {
            v.peer_place = pb::PeerPlace::PeerUnknown as i32;
            return Ok(());
        };
        let links = self.links(i)?.to_vec();
        let names = names(&links);
        let c = &self.cands[i];
        v.peer_place = c.place as i32;
        v.peer_netns = c.named.clone();
        v.peer_pid = c.pid;
        let (dev, ino) = c.ns.identity();
        v.peer_ns_dev = dev;
        v.peer_ns_ino = ino;
        if let Some(m) = links.iter().find(|m| m.header.index == v.peer_ifindex) {
            let p = convert(m, &names);
            v.peer_name = p.name;
            v.peer_mac = p.mac;
            v.peer_mtu = p.mtu;
            v.peer_txqlen = p.txqlen;
            v.peer_up = p.flags & libc::IFF_UP as u32 != 0;
            v.peer_master = if p.master != 0 {
                names.get(&p.master).cloned().unwrap_or_default()
            } else {
                String::new()
            };
            if let Some(mut bp) = p.bridge_port {
                bp.raw = p.slave_data_raw;
                v.peer_bridge_port = Some(bp);
            }
            if self.cands[i].far.is_none() {
                let ifs = crate::ifmap::IfMap::from_names(
                    links
                        .iter()
                        .map(|m| (m.header.index, super::capture::link_name(m))),
                );
                self.cands[i].far = Some(super::far_end::dump(&self.cands[i].ns, &ifs)?);
            }
            let c = &self.cands[i];
            if let Some(d) = &c.far {
                v.far_end = Some(super::far_end::of(&c.ns, d, &v.peer_name)?);
            }
        }
        Ok(())
    }

    fn match_nsid(&mut self, target: &mut Nl, nsid: i32, from: usize) -> Result<Option<usize>> {
        for i in from..self.cands.len() {
            if self.cands[i].nsid.is_none() {
                let id = nsid_of(target, &self.cands[i].ns)?;
                self.cands[i].nsid = Some(id);
            }
            if self.cands[i].nsid == Some(nsid) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// The id `target` gave the namespace `other` (-1 when none).
pub fn nsid_of(target: &mut Nl, other: &NetNs) -> Result<i32> {
    let mut m = NsidMessage::default();
    m.attributes
        .push(NsidAttribute::Fd(other.fd().as_raw_fd() as u32));
    let reply = target.get(RouteNetlinkMessage::GetNsId(m), "get nsid")?;
    Ok(match reply {
        Some(RouteNetlinkMessage::NewNsId(r)) => r
            .attributes
            .iter()
            .find_map(|a| match a {
                NsidAttribute::Id(i) => Some(*i),
                _ => None,
            })
            .unwrap_or(-1),
        _ => -1,
    })
}
