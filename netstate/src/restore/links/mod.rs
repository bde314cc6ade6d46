//! Restoring links: plan (conflicts, what exists, where each veth peer goes, which ifindexes
//! can be pinned), then create level by level (a macvlan after its lower device), masters,
//! settings and port settings, and finally up. Creation is journaled as delete-by-name, so
//! rollback works whatever ifindex the kernel gave; deleting a veth removes its peer too.

mod create;
pub mod far_end;
pub mod ll;
mod peers;
mod up;

pub use create::create;
pub use up::up;

use std::collections::{HashMap, HashSet};

use crhook_proto::{self as pb};
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;

use super::Socks;
use crate::api::RestoreOptions;
use crate::error::Result;
use crate::family::Conflict;
use crate::journal::{Journal, Sock};
use crate::link::create::delete_request;
use crate::link::view::{names, view};
use crate::nl::{Nl, Req};
use crate::transform::Remap;

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
    /// saved links whose live namesake the runtime made and restore keeps as it is
    pub adopted: Vec<usize>,
    pub conflicts: Vec<Conflict>,
    /// a link of the target (lo included) was up before restore: the target passed traffic
    pub target_up: bool,
}

/// Kinds whose kind-specific attributes cannot name a namespace or a device outside the
/// target: an untrusted image may create these with the raw settings it carries (a veth's
/// peer crhook builds itself; tun devices are made with ioctls).
const PLAIN_KINDS: &[&str] = &[
    "veth",
    "tun",
    "bridge",
    "macvlan",
    "macvtap",
    "vxlan",
    "vlan",
    "ipvlan",
    "ipvtap",
    "dummy",
    "ifb",
    "bond",
    "vrf",
    "geneve",
    "gre",
    "gretap",
    "ip6gre",
    "ip6gretap",
    "ipip",
    "sit",
    "ip6tnl",
    "wireguard",
];

/// Why an image that is not trusted may not create `l`: a veth peer it would place outside
/// the target (unless `--external` names where), a device on a lower device outside it, or
/// raw settings of a kind that may name a namespace.
fn outside_target(l: &pb::Link, opts: &RestoreOptions, why: &str) -> Option<Conflict> {
    let refuse = |what: String, hint: String| Conflict {
        kind: "link".into(),
        object: format!("link {}", l.name),
        problem: format!("the image is {why}; it may not {what}"),
        fields: Vec::new(),
        hint: Some(hint),
    };
    if let Some(pb::link::Info::Veth(v)) = &l.info {
        let outside = v.peer_place != pb::PeerPlace::PeerSame as i32;
        // a far end in the host on a bridge the operator listed is a placement they chose
        let on_listed_bridge = v.peer_place == pb::PeerPlace::PeerHost as i32
            && !v.peer_master.is_empty()
            && opts.host_bridges.contains(&v.peer_master);
        if outside && !on_listed_bridge && !opts.externals.iter().any(|e| e.inner == l.name) {
            return Some(refuse(
                format!("place the veth peer {} outside the target", v.peer_name),
                format!(
                    "restore it with this host's key, pass --trust-images, name the place with --external veth:{}=NAME[@BRIDGE], or list its bridge in the config's host_bridges",
                    l.name
                ),
            ));
        }
    }
    if l.link_other_netns && l.kind != "veth" {
        return Some(refuse(
            format!(
                "make a {} on a lower device outside the target",
                if l.kind.is_empty() { "device" } else { &l.kind }
            ),
            "pass --trust-images".into(),
        ));
    }
    if !l.info_data_raw.is_empty() && !PLAIN_KINDS.contains(&l.kind.as_str()) {
        return Some(refuse(
            format!("create a {} from raw settings crhook does not know", l.kind),
            "pass --trust-images".into(),
        ));
    }
    None
}

pub(crate) fn is_loopback(l: &pb::Link) -> bool {
    l.flags & libc::IFF_LOOPBACK as u32 != 0
}

fn conflict(l: &pb::Link, what: impl Into<String>) -> Conflict {
    Conflict {
        kind: "link".into(),
        object: format!("link {}", l.name),
        problem: what.into(),
        fields: Vec::new(),
        hint: None,
    }
}

/// `live` is the target's links as capture sees them (veth peers resolved); `adopted` the
/// links kept as the runtime made them; `would_remap` the address remaps an adopt of a link
/// would bring (for the hint of a conflict).
pub fn plan(
    saved: &[pb::Link],
    live_links: &[pb::Link],
    socks: &mut Socks,
    opts: &RestoreOptions,
    adopted: &HashSet<String>,
    would_remap: &HashMap<String, Vec<Remap>>,
    untrusted: Option<&str>,
) -> Result<LinkPlan> {
    let mut p = LinkPlan {
        target_up: live_links
            .iter()
            .any(|l| l.flags & crate::link::create::IFF_UP != 0),
        ..LinkPlan::default()
    };
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
            if adopted.contains(&l.name) && !is_loopback(l) {
                p.adopted.push(i);
                continue;
            }
            let mut existing_view = (*existing).clone();
            crate::link::view::forget_unknown_far_end(l, &mut existing_view);
            crate::ethtool::forget_unrecorded(l, &mut existing_view);
            let (sv, lv) = (view(l, &saved_names), view(&existing_view, &lname));
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
            let mut hint = format!(
                "pass --adopt {} (or --adopt-runtime) to keep the live link as the runtime made it",
                l.name
            );
            if let Some(r) = would_remap.get(&l.name) {
                let r: Vec<String> = r.iter().map(ToString::to_string).collect();
                hint.push_str(&format!(
                    "; its address then maps as --remap {}",
                    r.join(" --remap ")
                ));
            }
            p.conflicts.push(Conflict {
                kind: "link".into(),
                object: format!("link {}", l.name),
                problem: format!(
                    "exists as {} with",
                    if existing.kind.is_empty() {
                        "device"
                    } else {
                        &existing.kind
                    }
                ),
                fields: crate::family::field_diffs(&sv, &lv),
                hint: Some(hint),
            });
            continue;
        }
        let raw_ok = [&l.info_data_raw, &l.slave_data_raw, &l.extra_raw]
            .into_iter()
            .chain(l.bridge_port.as_ref().map(|b| &b.raw))
            .try_for_each(|a| crate::link::raw::check(a));
        if let Err(e) = raw_ok {
            p.conflicts.push(conflict(l, e));
            continue;
        }
        if let Some(why) = untrusted {
            if let Some(c) = outside_target(l, opts, why) {
                p.conflicts.push(c);
                continue;
            }
        }
        if l.kind.is_empty() && !is_loopback(l) {
            p.conflicts.push(conflict(
                l,
                "a device without a kind (physical or made by a driver) cannot be created; create it first",
            ));
            continue;
        }
        if l.link_other_netns && l.kind != "veth" {
            match peers::plan_lower(l, socks) {
                Ok(Ok(sock)) => {
                    p.lowers.insert(i, sock);
                }
                Ok(Err(c)) => {
                    p.conflicts.push(conflict(l, c));
                    continue;
                }
                Err(e) => {
                    p.conflicts.push(conflict(l, crate::error::chain(&e)));
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
                        p.conflicts.push(conflict(
                            l,
                            format!("its veth peer {} already exists alone", saved[j].name),
                        ));
                    }
                    Some(&j) => {
                        handled.insert(j);
                        p.partner.insert(i, j);
                        if !used.contains(&saved[j].ifindex) {
                            p.pinned.insert(j);
                        }
                    }
                    None => p.conflicts.push(conflict(
                        l,
                        format!("veth peer {} missing from the image", v.peer_name),
                    )),
                }
            } else {
                match peers::plan_peer(l, v, socks, opts) {
                    Ok(Ok(pp)) => {
                        p.peers.insert(i, pp);
                    }
                    Ok(Err(c)) => p.conflicts.push(conflict(l, c)),
                    Err(e) => p.conflicts.push(conflict(l, crate::error::chain(&e))),
                }
            }
        }
        p.create.push(i);
    }
    Ok(p)
}

pub(crate) fn check(
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
/// Sends a batch of changes whose undo is covered by an earlier journal entry (the link's own
/// deletion, or the saved settings of an existing link); counts each as a change.
pub(crate) fn send(
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
    journal.made(n_ok);
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
