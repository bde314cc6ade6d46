//! Restoring links: plan (conflicts, what exists, where each veth peer goes, which ifindexes
//! can be pinned), then create level by level (a macvlan after its lower device), masters,
//! settings and port settings, and finally up. Creation is journaled as delete-by-name, so
//! rollback works whatever ifindex the kernel gave; deleting a veth removes its peer too.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;

use crhook_proto::{self as pb};
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;

use super::Socks;
use crate::api::RestoreOptions;
use crate::error::Result;
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock, Undo};
use crate::link::capture::{dump, names as dump_names};
use crate::link::create::{
    altnames_request, create_request, delete_request, ipv6_token_request, master_request,
    restore_settings_request, settings_request, slave_request, up_request, PeerSpec, IFF_UP,
};
use crate::link::view::{names, view};
use crate::netns::NetNs;
use crate::nl::{Nl, Req};

/// Where a veth's outer end goes.
pub struct PeerPlan {
    pub sock: Sock,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub txqlen: u32,
    pub pin: u32,
    pub master: Option<String>,
    pub up: bool,
    pub port: Vec<pb::RawAttr>,
}

#[derive(Default)]
pub struct LinkPlan {
    /// saved indexes to create, in saved order
    pub create: Vec<usize>,
    /// same-namespace veth: creator -> the peer it creates
    pub partner: HashMap<usize, usize>,
    pub pinned: HashSet<usize>,
    pub peers: HashMap<usize, PeerPlan>,
    /// links made on a lower device in another namespace: the socket of that namespace
    pub lowers: HashMap<usize, Sock>,
    /// saved lo (or another link that always exists) to configure
    pub configure: Vec<(usize, pb::Link)>,
    pub present: usize,
    pub conflicts: Vec<String>,
}

fn is_loopback(l: &pb::Link) -> bool {
    l.flags & libc::IFF_LOOPBACK as u32 != 0
}

/// Opens (once) the namespace a peer lives in and returns its socket slot.
fn peer_sock(socks: &mut Socks, ns: NetNs) -> Result<Sock> {
    if ns.same_as(&socks.host_ns) {
        return Ok(Sock::Host);
    }
    if let Some(i) = socks.peers.iter().position(|(n, _, _)| n.same_as(&ns)) {
        return Ok(Sock::Peer(i));
    }
    let name = ns.name().to_string();
    let mut nl = ns.run(|| Nl::new(&name))?;
    let links = dump(&mut nl)?;
    socks.peers.push((ns, nl, links));
    Ok(Sock::Peer(socks.peers.len() - 1))
}

/// `live` is the target's links as capture sees them (veth peers resolved).
pub fn plan(
    saved: &[pb::Link],
    live_links: &[pb::Link],
    socks: &mut Socks,
    opts: &RestoreOptions,
) -> Result<LinkPlan> {
    let mut p = LinkPlan::default();
    let live_by_name: HashMap<&str, &pb::Link> =
        live_links.iter().map(|l| (l.name.as_str(), l)).collect();
    let used: HashSet<u32> = live_links.iter().map(|l| l.ifindex).collect();
    let saved_names = names(saved);
    let saved_by_name: HashMap<&str, usize> = saved
        .iter()
        .enumerate()
        .map(|(i, l)| (l.name.as_str(), i))
        .collect();
    let lname = names(live_links);
    let mut handled = HashSet::new();
    for (i, l) in saved.iter().enumerate() {
        if handled.contains(&i) {
            continue;
        }
        if let Some(existing) = live_by_name.get(l.name.as_str()) {
            let (sv, lv) = (view(l, &saved_names), view(existing, &lname));
            if is_loopback(l) && is_loopback(existing) {
                if sv == lv {
                    p.present += 1;
                } else {
                    p.configure.push((i, (*existing).clone()));
                }
                continue;
            }
            if sv == lv {
                p.present += 1;
                continue;
            }
            let diffs = crate::family::field_diffs(&sv, &lv);
            let what = crate::family::describe_diffs(&diffs);
            p.conflicts.push(format!(
                "link {}: exists as {} with {}",
                l.name,
                if existing.kind.is_empty() {
                    "device"
                } else {
                    &existing.kind
                },
                what
            ));
            continue;
        }
        if l.kind.is_empty() && !is_loopback(l) {
            p.conflicts.push(format!(
                "link {}: a device without a kind (physical or made by a driver) cannot be created; create it first",
                l.name
            ));
            continue;
        }
        if l.link_other_netns && l.kind != "veth" {
            match plan_lower(l, socks) {
                Ok(Ok(sock)) => {
                    p.lowers.insert(i, sock);
                }
                Ok(Err(c)) => {
                    p.conflicts.push(c);
                    continue;
                }
                Err(e) => {
                    p.conflicts
                        .push(format!("link {}: {}", l.name, crate::error::chain(&e)));
                    continue;
                }
            }
        }
        if !used.contains(&l.ifindex) {
            p.pinned.insert(i);
        }
        if let Some(pb::link::Info::Veth(v)) = &l.info {
            if v.peer_place == pb::PeerPlace::PeerSame as i32 {
                match saved_by_name.get(v.peer_name.as_str()) {
                    Some(&j) if live_by_name.contains_key(v.peer_name.as_str()) => {
                        p.conflicts.push(format!(
                            "link {}: its veth peer {} already exists alone",
                            l.name, saved[j].name
                        ));
                    }
                    Some(&j) => {
                        handled.insert(j);
                        p.partner.insert(i, j);
                        if !used.contains(&saved[j].ifindex) {
                            p.pinned.insert(j);
                        }
                    }
                    None => p.conflicts.push(format!(
                        "link {}: veth peer {} missing from the image",
                        l.name, v.peer_name
                    )),
                }
            } else {
                match plan_peer(l, v, socks, opts) {
                    Ok(Ok(pp)) => {
                        p.peers.insert(i, pp);
                    }
                    Ok(Err(c)) => p.conflicts.push(c),
                    Err(e) => {
                        p.conflicts
                            .push(format!("link {}: {}", l.name, crate::error::chain(&e)))
                    }
                }
            }
        }
        p.create.push(i);
    }
    Ok(p)
}

fn plan_peer(
    l: &pb::Link,
    v: &pb::Veth,
    socks: &mut Socks,
    opts: &RestoreOptions,
) -> Result<std::result::Result<PeerPlan, String>> {
    let ext = opts.externals.iter().find(|e| e.inner == l.name);
    let (ns, name, master, up) = if let Some(e) = ext {
        (
            socks.host_ns.try_clone()?,
            e.outer.clone(),
            e.bridge.clone(),
            true,
        )
    } else {
        let master = (!v.peer_master.is_empty()).then(|| v.peer_master.clone());
        let place = Place {
            place: v.peer_place,
            netns: &v.peer_netns,
            pid: v.peer_pid,
            ns: (v.peer_ns_dev, v.peer_ns_ino),
        };
        let ns = match place.open(socks)? {
            Ok(ns) => ns,
            Err(where_) => {
                return Ok(Err(format!(
                    "link {}: veth peer {} lived in {where_} (map it with --external veth:{}=NAME)",
                    l.name, v.peer_name, l.name
                )))
            }
        };
        (ns, v.peer_name.clone(), master, v.peer_up)
    };
    let sock = peer_sock(socks, ns)?;
    wait_for_dying_peer(socks, sock, &name)?;
    let plinks = socks.links_of(sock);
    let pnames = dump_names(plinks);
    if pnames.values().any(|n| *n == name) {
        return Ok(Err(format!(
            "link {}: its veth peer name {} is taken in {}",
            l.name,
            name,
            socks.name_of(sock)
        )));
    }
    if let Some(m) = &master {
        if !pnames.values().any(|n| n == m) {
            return Ok(Err(format!(
                "link {}: the veth peer's master {} does not exist in {}",
                l.name,
                m,
                socks.name_of(sock)
            )));
        }
    }
    let pin = if ext.is_none() && !plinks.iter().any(|m| m.header.index == v.peer_ifindex) {
        v.peer_ifindex
    } else {
        0
    };
    Ok(Ok(PeerPlan {
        sock,
        name,
        mac: v.peer_mac.clone(),
        mtu: v.peer_mtu,
        txqlen: v.peer_txqlen,
        pin,
        master,
        up,
        port: v
            .peer_bridge_port
            .as_ref()
            .map(|b| b.raw.clone())
            .unwrap_or_default(),
    }))
}

/// Where a peer or lower device lived, as the image records it.
struct Place<'a> {
    place: i32,
    netns: &'a str,
    pid: u32,
    ns: (u64, u64),
}

impl Place<'_> {
    /// Opens that namespace again, or says (for the error) why it cannot.
    fn open(&self, socks: &Socks) -> Result<std::result::Result<NetNs, String>> {
        Ok(
            match pb::PeerPlace::try_from(self.place).unwrap_or(pb::PeerPlace::PeerUnknown) {
                pb::PeerPlace::PeerHost => Ok(socks.host_ns.try_clone()?),
                pb::PeerPlace::PeerNamed => {
                    let path = std::path::PathBuf::from("/run/netns").join(self.netns);
                    NetNs::open_path(&path)
                        .map_err(|e| format!("{}: {}", path.display(), crate::error::chain(&e)))
                }
                pb::PeerPlace::PeerProcess => {
                    let path = std::path::PathBuf::from(format!("/proc/{}/ns/net", self.pid));
                    match NetNs::open_path(&path) {
                        Ok(ns) if ns.identity() == self.ns => Ok(ns),
                        _ => Err(format!("the namespace of pid {}, which is gone", self.pid)),
                    }
                }
                _ => Err("a namespace crhook could not identify".to_string()),
            },
        )
    }
}

/// The namespace of a lower device that lives outside the target, and that it is there.
fn plan_lower(l: &pb::Link, socks: &mut Socks) -> Result<std::result::Result<Sock, String>> {
    let Some(lw) = &l.lower else {
        return Ok(Err(format!(
            "link {} ({}): its lower device is in another namespace the image does not name",
            l.name, l.kind
        )));
    };
    let place = Place {
        place: lw.place,
        netns: &lw.netns,
        pid: lw.pid,
        ns: (lw.ns_dev, lw.ns_ino),
    };
    let ns = match place.open(socks)? {
        Ok(ns) => ns,
        Err(where_) => {
            return Ok(Err(format!(
                "link {} ({}): its lower device {} lived in {where_}",
                l.name, l.kind, lw.name
            )))
        }
    };
    let sock = peer_sock(socks, ns)?;
    if !dump_names(socks.links_of(sock))
        .values()
        .any(|n| *n == lw.name)
    {
        return Ok(Err(format!(
            "link {} ({}): its lower device {} does not exist in {}",
            l.name,
            l.kind,
            lw.name,
            socks.name_of(sock)
        )));
    }
    Ok(Ok(sock))
}

fn check(
    results: Vec<std::result::Result<(), crate::nl::NlError>>,
    what: &[String],
    netns: &str,
) -> std::result::Result<(), Vec<String>> {
    let errs: Vec<String> = results
        .into_iter()
        .zip(what)
        .filter_map(|(r, w)| r.err().map(|e| format!("{w} in {netns}: {e}")))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

fn live_map(saved: &[pb::Link], nl: &mut Nl) -> std::result::Result<IfMap, Vec<String>> {
    let live = dump(nl).map_err(|e| vec![crate::error::chain(&e)])?;
    Ok(IfMap::by_name(
        saved.iter().map(|l| (l.ifindex, l.name.clone())),
        live.iter()
            .map(|m| (m.header.index, crate::link::capture::link_name(m))),
    ))
}

/// Creates every planned link (down), then masters, settings and port settings.
pub fn create(
    saved: &[pb::Link],
    p: &LinkPlan,
    ns: &NetNs,
    socks: &mut Socks,
    journal: &mut Journal,
) -> std::result::Result<IfMap, Vec<String>> {
    let netns = ns.name().to_string();
    // lo and other always-present links: remember their settings before touching them
    for (_, live) in &p.configure {
        journal.push(Undo::Req {
            sock: Sock::Target,
            req: restore_settings_request(live),
            what: format!("restore settings of {}", live.name),
        });
    }
    // tun/tap: ioctls on a thread inside the namespace
    let tuns: Vec<usize> = p
        .create
        .iter()
        .copied()
        .filter(|&i| saved[i].kind == "tun")
        .collect();
    for &i in &tuns {
        let l = &saved[i];
        let Some(pb::link::Info::Tun(t)) = &l.info else {
            return Err(vec![format!(
                "link {}: tun device without tun settings in the image",
                l.name
            )]);
        };
        let pin = p.pinned.contains(&i).then_some(l.ifindex);
        let (name, t) = (l.name.clone(), *t);
        ns.run(move || crate::link::tun::create(&name, &t, pin).map(drop))
            .map_err(|e| {
                vec![format!(
                    "create tun device {} in {netns}: {}",
                    l.name,
                    crate::error::chain(&e)
                )]
            })?;
        journal.push(Undo::Req {
            sock: Sock::Target,
            req: delete_by_name(&l.name),
            what: format!("delete link {}", l.name),
        });
        journal.check().map_err(|e| vec![e])?;
    }
    // the rest level by level: a link whose lower device is also being created waits for it
    let creating: HashMap<u32, usize> = p.create.iter().map(|&i| (saved[i].ifindex, i)).collect();
    let lower_of = |l: &pb::Link| -> Option<u32> {
        if l.kind == "vxlan" {
            crate::link::raw::find(&l.info_data_raw, crate::link::kinds::IFLA_VXLAN_LINK)
                .and_then(crate::link::raw::u32_of)
        } else if l.link != 0 && !l.link_other_netns && l.kind != "veth" {
            Some(l.link)
        } else {
            None
        }
    };
    let mut done: HashSet<usize> = tuns.iter().copied().collect();
    let mut ifs = live_map(saved, &mut socks.target)?;
    while done.len() < p.create.len() {
        let level: Vec<usize> = p
            .create
            .iter()
            .copied()
            .filter(|i| !done.contains(i))
            .filter(|&i| {
                lower_of(&saved[i])
                    .and_then(|lw| creating.get(&lw))
                    .is_none_or(|j| done.contains(j))
            })
            .collect();
        if level.is_empty() {
            return Err(vec![
                "links: circular lower-device references in the image".into()
            ]);
        }
        let mut reqs = Vec::new();
        let mut what = Vec::new();
        let mut made = Vec::new();
        for &i in level.iter().filter(|i| p.lowers.contains_key(i)) {
            create_on_outer_lower(
                &saved[i],
                p.lowers[&i],
                p.pinned.contains(&i),
                ns,
                socks,
                journal,
            )?;
            made.push(i);
        }
        let level: Vec<usize> = level
            .into_iter()
            .filter(|i| !p.lowers.contains_key(i))
            .collect();
        for &i in &level {
            let l = &saved[i];
            let peer = if let Some(&j) = p.partner.get(&i) {
                Some(PeerSpec::from_link(&saved[j], p.pinned.contains(&j)))
            } else {
                p.peers.get(&i).map(|pp| PeerSpec {
                    name: pp.name.clone(),
                    mac: pp.mac.clone(),
                    mtu: pp.mtu,
                    txqlen: pp.txqlen,
                    ifindex: pp.pin,
                    netns_fd: Some(socks.ns_fd(pp.sock)),
                })
            };
            let remap = |x: u32| ifs.live(x);
            match create_request(l, p.pinned.contains(&i), &remap, peer.as_ref()) {
                Some(r) => {
                    reqs.push(r);
                    what.push(format!("create link {} ({})", l.name, l.kind));
                }
                None => {
                    return Err(vec![format!(
                        "link {} ({}): cannot be created over netlink",
                        l.name, l.kind
                    )])
                }
            }
        }
        let results = socks
            .target
            .batch(&reqs, NLM_F_CREATE | NLM_F_EXCL, "create links")
            .map_err(|e| vec![crate::error::chain(&e)])?;
        for (k, r) in results.iter().enumerate() {
            if r.is_ok() {
                let name = &saved[level[k]].name;
                journal.push(Undo::Req {
                    sock: Sock::Target,
                    req: delete_by_name(name),
                    what: format!("delete link {name}"),
                });
            }
        }
        check(results, &what, &netns)?;
        journal.check().map_err(|e| vec![e])?;
        done.extend(level);
        done.extend(made);
        ifs = live_map(saved, &mut socks.target)?;
    }
    // masters, then settings (MTU after enslaving), then port settings
    let mut touched: Vec<usize> = p
        .create
        .iter()
        .copied()
        .chain(p.partner.values().copied())
        .chain(p.configure.iter().map(|(i, _)| *i))
        .collect();
    // enslave bridge ports in their saved port-number order, which is the order the kernel
    // numbers them in
    touched.sort_by_key(|&i| (saved[i].bridge_port.as_ref().map_or(0, |b| b.port_no), i));
    let saved_names = names(saved);
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    for &i in &touched {
        let l = &saved[i];
        if l.master != 0 {
            let (Some(live), Some(m)) = (ifs.live(l.ifindex), ifs.live(l.master)) else {
                return Err(vec![format!(
                    "link {}: master {} missing",
                    l.name,
                    saved_names.get(&l.master).cloned().unwrap_or_default()
                )]);
            };
            reqs.push(master_request(live, m));
            what.push(format!("set master of {}", l.name));
        }
    }
    send(&mut socks.target, &reqs, &what, &netns, journal, 0)?;
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    for &i in &touched {
        let l = &saved[i];
        let Some(live) = ifs.live(l.ifindex) else {
            continue;
        };
        reqs.push(settings_request(l, live));
        what.push(format!("configure link {}", l.name));
        if let Some(r) = altnames_request(live, &l.alt_names) {
            reqs.push(r);
            what.push(format!("add alternative names of {}", l.name));
        }
        let remap = |x: u32| ifs.live(x);
        let port = crate::link::kinds::slave_data_to_send(&l.slave_data_raw, &remap);
        if let Some(r) = slave_request(&l.slave_kind, &port, live) {
            reqs.push(r);
            what.push(format!("configure {} port {}", l.slave_kind, l.name));
        }
    }
    send(&mut socks.target, &reqs, &what, &netns, journal, 0)?;
    // outer ends of veth pairs: master and port settings in their namespace
    for (&i, pp) in &p.peers {
        let pl = socks
            .links_refresh(pp.sock)
            .map_err(|e| vec![crate::error::chain(&e)])?;
        let pn = dump_names(&pl);
        let find = |n: &str| pn.iter().find(|(_, v)| v.as_str() == n).map(|(k, _)| *k);
        let Some(pidx) = find(&pp.name) else {
            return Err(vec![format!(
                "link {}: veth peer {} did not appear in {}",
                saved[i].name,
                pp.name,
                socks.name_of(pp.sock)
            )]);
        };
        let pnetns = socks.name_of(pp.sock);
        if let Some(m) = &pp.master {
            let Some(midx) = find(m) else {
                return Err(vec![format!(
                    "veth peer {}: master {m} vanished from {pnetns}",
                    pp.name
                )]);
            };
            let r = vec![master_request(pidx, midx)];
            send(
                socks.get(pp.sock),
                &r,
                &[format!("attach veth peer {} to {m}", pp.name)],
                &pnetns,
                journal,
                0,
            )?;
            if let Some(r) = slave_request("bridge", &pp.port, pidx) {
                send(
                    socks.get(pp.sock),
                    &[r],
                    &[format!("configure bridge port {}", pp.name)],
                    &pnetns,
                    journal,
                    0,
                )?;
            }
        }
    }
    Ok(ifs)
}

/// Brings links up as saved (and veth outer ends), and sets IPv6 tokens, which need the
/// device up.
pub fn up(
    saved: &[pb::Link],
    p: &LinkPlan,
    ifs: &IfMap,
    v6_links: &HashSet<u32>,
    socks: &mut Socks,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let netns = socks.target.netns().to_string();
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    let touched = p
        .create
        .iter()
        .copied()
        .chain(p.partner.values().copied())
        .chain(p.configure.iter().map(|(i, _)| *i));
    let mut tokens = Vec::new();
    for i in touched {
        let l = &saved[i];
        let Some(live) = ifs.live(l.ifindex) else {
            continue;
        };
        if l.flags & IFF_UP != 0 {
            reqs.push(up_request(live, true));
            what.push(format!("bring up {}", l.name));
        }
        if !l.ipv6_token.is_empty() {
            if let Some(r) = ipv6_token_request(live, &l.ipv6_token) {
                tokens.push(r);
            }
        }
    }
    send_up(&mut socks.target, reqs, what, &netns, journal)?;
    multicast_routes(saved, p, ifs, v6_links, socks)?;
    let tw: Vec<String> = tokens
        .iter()
        .map(|_| "set ipv6 token".to_string())
        .collect();
    send(&mut socks.target, &tokens, &tw, &netns, journal, 0)?;
    for pp in p.peers.values() {
        if !pp.up {
            continue;
        }
        let pl = socks
            .links_refresh(pp.sock)
            .map_err(|e| vec![crate::error::chain(&e)])?;
        if let Some(m) = pl
            .iter()
            .find(|m| crate::link::capture::link_name(m) == pp.name)
        {
            let r = vec![up_request(m.header.index, true)];
            let pnetns = socks.name_of(pp.sock);
            send(
                socks.get(pp.sock),
                &r,
                &[format!("bring up veth peer {}", pp.name)],
                &pnetns,
                journal,
                0,
            )?;
        }
    }
    Ok(())
}

/// Sends a batch of changes whose undo is covered by an earlier journal entry (the link's own
/// deletion, or the saved settings of an existing link); counts each as a change.
fn send(
    nl: &mut Nl,
    reqs: &[Req],
    what: &[String],
    netns: &str,
    journal: &mut Journal,
    flags: u16,
) -> std::result::Result<(), Vec<String>> {
    if reqs.is_empty() {
        return Ok(());
    }
    let results = nl
        .batch(reqs, flags, "configure links")
        .map_err(|e| vec![crate::error::chain(&e)])?;
    let n_ok = results.iter().filter(|r| r.is_ok()).count();
    check(results, what, netns)?;
    for _ in 0..n_ok {
        journal.push(Undo::Nothing);
    }
    journal.check().map_err(|e| vec![e])?;
    Ok(())
}

pub fn delete_by_name(name: &str) -> Req {
    let mut r = delete_request(0);
    if let Req::Route(RouteNetlinkMessage::DelLink(m)) = &mut r {
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
    }
    r
}

/// The socket fd of a namespace, for IFLA_NET_NS_FD.
pub fn fd_of(ns: &NetNs) -> i32 {
    ns.fd().as_raw_fd()
}

/// The kernel adds `multicast ff00::/8 table local` for a device when IPv6 is configured on
/// it while it is up, or when it comes up with carrier. Restore adds addresses while links
/// are down, so a device that comes up without carrier (a tun nobody holds yet) would miss
/// the route it had; it is added here as the kernel would (an existing one answers EEXIST).
/// Removed with the link on rollback.
fn multicast_routes(
    saved: &[pb::Link],
    p: &LinkPlan,
    ifs: &IfMap,
    v6_links: &HashSet<u32>,
    socks: &mut Socks,
) -> std::result::Result<(), Vec<String>> {
    use netlink_packet_route::route::{
        RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
    };
    use netlink_packet_route::AddressFamily;
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    for &i in p.create.iter().chain(p.partner.values()) {
        let l = &saved[i];
        if l.flags & IFF_UP == 0 || is_loopback(l) || !v6_links.contains(&l.ifindex) {
            continue;
        }
        let Some(live) = ifs.live(l.ifindex) else {
            continue;
        };
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet6;
        m.header.destination_prefix_length = 8;
        m.header.table = 255;
        m.header.protocol = RouteProtocol::Kernel;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Multicast;
        m.attributes.push(RouteAttribute::Table(255));
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(
                std::net::Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            )));
        m.attributes.push(RouteAttribute::Oif(live));
        m.attributes.push(RouteAttribute::Priority(256));
        reqs.push(Req::Route(RouteNetlinkMessage::NewRoute(m)));
        what.push(format!("add multicast route of {}", l.name));
    }
    if reqs.is_empty() {
        return Ok(());
    }
    let netns = socks.target.netns().to_string();
    let results = socks
        .target
        .batch(&reqs, NLM_F_CREATE, "add multicast routes")
        .map_err(|e| vec![crate::error::chain(&e)])?;
    let results = results
        .into_iter()
        .map(|r| match r {
            Err(e) if e.errno == libc::EEXIST => Ok(()),
            other => other,
        })
        .collect();
    check(results, &what, &netns)
}

/// After `ip netns del`, the old namespace is dismantled asynchronously, and the outer end of
/// its veth lingers in the host for a moment. A restore started right away would call that a
/// conflict, so when the name is held by a veth whose peer is in another namespace, wait a
/// little (up to 3 s) for it to go.
fn wait_for_dying_peer(socks: &mut Socks, sock: Sock, name: &str) -> Result<()> {
    use netlink_packet_route::link::{InfoKind, LinkInfo};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let lingering = socks.links_of(sock).iter().any(|m| {
            crate::link::capture::link_name(m) == name
                && m.attributes.iter().any(|a| matches!(a, LinkAttribute::LinkNetNsId(_)))
                && m.attributes.iter().any(|a| {
                    matches!(a, LinkAttribute::LinkInfo(i) if i.contains(&LinkInfo::Kind(InfoKind::Veth)))
                })
        });
        if !lingering || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        socks.links_refresh(sock)?;
    }
}

/// A macvlan, macvtap, ipvlan or vlan whose lower device lives in another namespace (made on
/// the host's eth0 and moved in, as CNI plugins do): created by a request sent in the lower's
/// namespace, where IFLA_LINK is resolved, with IFLA_NET_NS_FD placing the new device in the
/// target directly (ifindex pinned there).
fn create_on_outer_lower(
    l: &pb::Link,
    sock: Sock,
    pin: bool,
    ns: &NetNs,
    socks: &mut Socks,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let lower_name = l.lower.as_ref().map(|x| x.name.clone()).unwrap_or_default();
    let lower = socks
        .links_of(sock)
        .iter()
        .find(|m| crate::link::capture::link_name(m) == lower_name)
        .map(|m| m.header.index)
        .ok_or_else(|| {
            vec![format!(
                "link {}: lower device {lower_name} vanished",
                l.name
            )]
        })?;
    let mut c = l.clone();
    c.link_other_netns = false;
    c.link = lower;
    let Some(mut req) = create_request(&c, pin, &|x| Some(x), None) else {
        return Err(vec![format!(
            "link {} ({}): cannot be created over netlink",
            l.name, l.kind
        )]);
    };
    if let Req::Route(RouteNetlinkMessage::NewLink(m)) = &mut req {
        m.attributes
            .push(LinkAttribute::NetNsFd(ns.fd().as_raw_fd()));
    }
    let where_ = socks.name_of(sock);
    match socks
        .get(sock)
        .request(req, NLM_F_CREATE | NLM_F_EXCL, "create link")
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(vec![format!(
                "create link {} ({}) on {lower_name} in {where_}: {e}",
                l.name, l.kind
            )])
        }
        Err(e) => return Err(vec![crate::error::chain(&e)]),
    }
    journal.push(Undo::Req {
        sock: Sock::Target,
        req: delete_by_name(&l.name),
        what: format!("delete link {}", l.name),
    });
    journal.check().map_err(|e| vec![e])
}

/// Brings links up. A macvlan whose MAC another macvlan on the same lower device still holds
/// answers EADDRINUSE; right after `ip netns del` that other one is the old namespace's, which
/// the kernel is still dismantling, so those are retried for up to 3 s.
fn send_up(
    nl: &mut Nl,
    mut reqs: Vec<Req>,
    mut what: Vec<String>,
    netns: &str,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        if reqs.is_empty() {
            return Ok(());
        }
        let results = nl
            .batch(&reqs, 0, "bring links up")
            .map_err(|e| vec![crate::error::chain(&e)])?;
        let mut again = (Vec::new(), Vec::new());
        let mut failed = Vec::new();
        for ((r, w), res) in reqs.into_iter().zip(what).zip(results) {
            match res {
                Ok(()) => journal.push(Undo::Nothing),
                Err(e) if e.errno == libc::EADDRINUSE && std::time::Instant::now() < deadline => {
                    again.0.push(r);
                    again.1.push(w);
                }
                Err(e) => failed.push(format!("{w} in {netns}: {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(failed);
        }
        journal.check().map_err(|e| vec![e])?;
        (reqs, what) = again;
        if !reqs.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
