//! Creating the planned links (down), then masters, settings and port settings, and the
//! veth far ends' master and port settings in their own namespace.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;

use crhook_proto as pb;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;

use super::{check, delete_by_name, send, LinkPlan, Socks};
use crate::ifmap::IfMap;
use crate::journal::{Journal, Sock};
use crate::link::capture::names as dump_names;
use crate::link::create::{
    altnames_request, create_request, master_request, restore_settings_request, settings_request,
    slave_request, PeerSpec,
};
use crate::link::view::names;
use crate::netns::NetNs;
use crate::nl::{Nl, Req};

fn live_map(saved: &[pb::Link], nl: &mut Nl) -> std::result::Result<IfMap, Vec<String>> {
    let live = crate::link::capture::index_names(nl).map_err(|e| vec![crate::error::chain(&e)])?;
    Ok(IfMap::by_name(
        saved.iter().map(|l| (l.ifindex, l.name.clone())),
        live,
    ))
}

/// Logs the deletion of each link of the target `names` gives before they are made
/// (settled after).
fn intend_delete<'n>(
    journal: &mut Journal,
    names: impl IntoIterator<Item = &'n str>,
) -> std::result::Result<(), Vec<String>> {
    let undos: Vec<(Req, String)> = names
        .into_iter()
        .map(|name| (delete_by_name(name), format!("delete link {name}")))
        .collect();
    journal
        .intend(undos.iter().map(|(r, w)| (Sock::Target, r, w.as_str())))
        .map_err(|e| vec![e])
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
        journal
            .ahead(
                Sock::Target,
                &restore_settings_request(live),
                &format!("restore settings of {}", live.name),
            )
            .map_err(|e| vec![e])?;
    }
    // tun/tap: ioctls on a thread inside the namespace
    let tuns: Vec<usize> = p
        .create
        .iter()
        .copied()
        .filter(|&i| saved[i].kind == "tun")
        .collect();
    let mut specs = Vec::with_capacity(tuns.len());
    for &i in &tuns {
        let l = &saved[i];
        let Some(pb::link::Info::Tun(t)) = &l.info else {
            return Err(vec![format!(
                "link {}: tun device without tun settings in the image",
                l.name
            )]);
        };
        specs.push((
            l.name.as_str(),
            *t,
            p.pinned.contains(&i).then_some(l.ifindex),
        ));
    }
    if !specs.is_empty() {
        intend_delete(journal, specs.iter().map(|(name, ..)| *name))?;
        // all on one thread inside the namespace: a thread each, started while the firewall
        // is built on the other core, took 2-10 ms for 10 devices
        let made = ns.run(|| {
            for (n, (name, t, pin)) in specs.iter().enumerate() {
                if let Err(e) = crate::link::tun::create(name, t, *pin) {
                    return Ok((n, Some((*name, e))));
                }
            }
            Ok((specs.len(), None))
        });
        let (n, failed) = match made {
            Ok(m) => m,
            Err(e) => (0, Some((specs[0].0, e))),
        };
        journal
            .settle((0..specs.len()).map(|k| k < n))
            .map_err(|e| vec![e])?;
        if let Some((name, e)) = failed {
            return Err(vec![format!(
                "create tun device {name} in {netns}: {}",
                crate::error::chain(&e)
            )]);
        }
        super::up::settle_state(&mut socks.target, specs.iter().map(|(name, ..)| *name))
            .map_err(|e| vec![crate::error::chain(&e)])?;
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
                match p.peers.get(&i) {
                    Some(pp) => Some(PeerSpec {
                        name: pp.name.clone(),
                        mac: pp.mac.clone(),
                        mtu: pp.mtu,
                        txqlen: pp.txqlen,
                        ifindex: pp.pin,
                        netns_fd: Some(
                            socks
                                .ns_fd(pp.sock)
                                .map_err(|e| vec![crate::error::chain(&e)])?,
                        ),
                    }),
                    None => None,
                }
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
        intend_delete(journal, level.iter().map(|&i| saved[i].name.as_str()))?;
        let results = socks
            .target
            .batch(&reqs, NLM_F_CREATE | NLM_F_EXCL, "create links")
            .map_err(|e| vec![crate::error::chain(&e)])?;
        journal
            .settle(results.iter().map(Result::is_ok))
            .map_err(|e| vec![e])?;
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
    bridge_vlans(saved, &touched, &ifs, &netns, socks, journal)?;
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
                socks
                    .get(pp.sock)
                    .map_err(|e| vec![crate::error::chain(&e)])?,
                &r,
                &[format!("attach veth peer {} to {m}", pp.name)],
                &pnetns,
                journal,
                0,
            )?;
            if let Some(r) = slave_request("bridge", &pp.port, pidx) {
                send(
                    socks
                        .get(pp.sock)
                        .map_err(|e| vec![crate::error::chain(&e)])?,
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
    let nl = socks.get(sock).map_err(|e| vec![crate::error::chain(&e)])?;
    intend_delete(journal, [l.name.as_str()])?;
    let r = nl.request(req, NLM_F_CREATE | NLM_F_EXCL, "create link");
    journal
        .settle([matches!(r, Ok(Ok(())))])
        .map_err(|e| vec![e])?;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Err(vec![format!(
                "create link {} ({}) on {lower_name} in {where_}: {e}",
                l.name, l.kind
            )])
        }
        Err(e) => return Err(vec![crate::error::chain(&e)]),
    }
    journal.check().map_err(|e| vec![e])
}

/// Makes the VLANs of each bridge and bridge port restore made equal to the saved ones (a
/// port that joined got the bridge's default PVID). Images without any VLAN (hosts without
/// VLAN filtering) leave the kernel's defaults alone.
fn bridge_vlans(
    saved: &[pb::Link],
    touched: &[usize],
    ifs: &IfMap,
    netns: &str,
    socks: &mut Socks,
    journal: &mut Journal,
) -> std::result::Result<(), Vec<String>> {
    if saved.iter().all(|l| l.bridge_vlans.is_empty()) {
        return Ok(());
    }
    let live =
        crate::link::vlan::capture(&mut socks.target).map_err(|e| vec![crate::error::chain(&e)])?;
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    for &i in touched {
        let l = &saved[i];
        let Some(idx) = ifs.live(l.ifindex) else {
            continue;
        };
        let now = live.get(&idx).map(Vec::as_slice).unwrap_or_default();
        for (v, add) in crate::link::vlan::changes(&l.bridge_vlans, now) {
            reqs.push(
                crate::link::vlan::request(idx, v, add, l.kind == "bridge")
                    .map_err(|e| vec![crate::error::chain(&e)])?,
            );
            what.push(format!(
                "{} bridge vlan {} of {}",
                if add { "set" } else { "remove" },
                v.vid,
                l.name
            ));
        }
    }
    send(&mut socks.target, &reqs, &what, netns, journal, 0)
}
