//! Where the far end of a veth or the lower device of a link goes: the namespace the image
//! names, opened again and checked before anything is created.

use crhook_proto as pb;
use netlink_packet_route::link::LinkAttribute;

use super::{PeerPlan, Socks};
use crate::api::RestoreOptions;
use crate::error::Result;
use crate::journal::Sock;
use crate::link::capture::{dump, names as dump_names};
use crate::netns::NetNs;
use crate::nl::Nl;

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

pub(super) fn plan_peer(
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
                    "veth peer {} lived in {where_} (map it with --external veth:{}=NAME)",
                    v.peer_name, l.name
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
            "its veth peer name {} is taken in {}",
            name,
            socks.name_of(sock)
        )));
    }
    if let Some(m) = &master {
        if !pnames.values().any(|n| n == m) {
            return Ok(Err(format!(
                "the veth peer's master {} does not exist in {}",
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
                    // a name under /run/netns, never a path: an absolute name or `..` would
                    // reach any namespace file the image chose
                    if self.netns.is_empty()
                        || self.netns.contains('/')
                        || self.netns == "."
                        || self.netns == ".."
                    {
                        return Ok(Err(format!(
                            "a named namespace {:?} that is not a plain name",
                            self.netns
                        )));
                    }
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
pub(super) fn plan_lower(
    l: &pb::Link,
    socks: &mut Socks,
) -> Result<std::result::Result<Sock, String>> {
    let Some(lw) = &l.lower else {
        return Ok(Err(format!(
            "({}) its lower device is in another namespace the image does not name",
            l.kind
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
                "({}) its lower device {} lived in {where_}",
                l.kind, lw.name
            )))
        }
    };
    let sock = peer_sock(socks, ns)?;
    if !dump_names(socks.links_of(sock))
        .values()
        .any(|n| *n == lw.name)
    {
        return Ok(Err(format!(
            "({}) its lower device {} does not exist in {}",
            l.kind,
            lw.name,
            socks.name_of(sock)
        )));
    }
    Ok(Ok(sock))
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
