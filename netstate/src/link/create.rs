//! Link requests: create (ifindex and MAC pinned), settings, master, up/down, delete.

use std::os::fd::RawFd;

use crhook_proto::{self as pb};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoKind, InfoPortData, InfoPortKind,
    InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, Prop,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::kinds;
use super::raw::join;
use crate::nl::Req;

/// ifi_flags bits a user sets (`ip link set ... arp off / promisc on / allmulticast on /
/// multicast on / dynamic on`); RUNNING, LOWER_UP, DORMANT and UP are state or set later.
pub const USER_FLAGS: u32 = (libc::IFF_NOARP
    | libc::IFF_PROMISC
    | libc::IFF_ALLMULTI
    | libc::IFF_MULTICAST
    | libc::IFF_DYNAMIC
    | libc::IFF_DEBUG
    | libc::IFF_AUTOMEDIA
    | libc::IFF_NOTRAILERS
    | libc::IFF_PORTSEL) as u32;
pub const IFF_UP: u32 = libc::IFF_UP as u32;

fn base(ifindex: u32) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = ifindex;
    m
}

/// Attributes every created device gets: name, MAC, MTU, queue lengths and counts.
///
/// A veth made with its queue counts has all its queues in use until restore's channels
/// step sets the saved ones, and a veth peer made without them gets one in use after it is
/// registered (`veth_init_queues`): either way taking a tx queue away waits for an RCU grace
/// period under RTNL. Measured at M, the peers' waits cost least where they are (links
/// phase, ~50 µs each) and the other ends' beside the nf_tables transaction (features phase,
/// off the critical path), while moving the peers' there too made that phase outlast the
/// transaction (each wait ~1 ms while the transaction keeps the other core in the kernel).
fn common_attrs(l: &pb::Link, with_queues: bool) -> Vec<LinkAttribute> {
    let mut a = vec![LinkAttribute::IfName(l.name.clone())];
    if !l.mac.is_empty() && l.mac.iter().any(|b| *b != 0) {
        a.push(LinkAttribute::Address(l.mac.clone()));
    }
    if l.mtu != 0 {
        a.push(LinkAttribute::Mtu(l.mtu));
    }
    a.push(LinkAttribute::TxQueueLen(l.txqlen));
    if with_queues {
        if l.num_tx_queues != 0 {
            a.push(LinkAttribute::NumTxQueues(l.num_tx_queues));
        }
        if l.num_rx_queues != 0 {
            a.push(LinkAttribute::NumRxQueues(l.num_rx_queues));
        }
    }
    a
}

/// Where and how to create the other end of a veth.
pub struct PeerSpec {
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub txqlen: u32,
    /// ifindex to pin in the peer's namespace, 0 to let the kernel choose
    pub ifindex: u32,
    /// the peer's namespace when it is not the one the request is sent to
    pub netns_fd: Option<RawFd>,
}

impl PeerSpec {
    pub fn from_link(p: &pb::Link, pin: bool) -> PeerSpec {
        PeerSpec {
            name: p.name.clone(),
            mac: p.mac.clone(),
            mtu: p.mtu,
            txqlen: p.txqlen,
            ifindex: if pin { p.ifindex } else { 0 },
            netns_fd: None,
        }
    }
}

/// RTM_NEWLINK creating `l` (down). `remap` maps saved ifindexes of lower links to live ones.
/// None for kinds that are not created over netlink (tun, loopback).
pub fn create_request(
    l: &pb::Link,
    pin: bool,
    remap: &dyn Fn(u32) -> Option<u32>,
    peer: Option<&PeerSpec>,
) -> Option<Req> {
    if l.kind.is_empty() || l.kind == "tun" {
        return None;
    }
    let mut m = base(if pin { l.ifindex } else { 0 });
    m.attributes = common_attrs(l, true);
    if l.link != 0 && !l.link_other_netns && l.kind != "veth" {
        m.attributes
            .push(LinkAttribute::Link(remap(l.link).unwrap_or(l.link)));
    }
    let kind = InfoKind::from(l.kind.as_str());
    let data = if l.kind == "veth" {
        let p = peer?;
        let mut pm = base(p.ifindex);
        pm.attributes.push(LinkAttribute::IfName(p.name.clone()));
        if !p.mac.is_empty() {
            pm.attributes.push(LinkAttribute::Address(p.mac.clone()));
        }
        if p.mtu != 0 {
            pm.attributes.push(LinkAttribute::Mtu(p.mtu));
        }
        pm.attributes.push(LinkAttribute::TxQueueLen(p.txqlen));
        if let Some(fd) = p.netns_fd {
            pm.attributes.push(LinkAttribute::NetNsFd(fd));
        }
        Some(InfoData::Veth(InfoVeth::Peer(pm)))
    } else {
        let attrs = kinds::create_info_data(&l.kind, &l.info_data_raw, remap)?;
        (!attrs.is_empty()).then(|| InfoData::Other(join(&attrs)))
    };
    let mut info = vec![LinkInfo::Kind(kind)];
    if let Some(d) = data {
        info.push(LinkInfo::Data(d));
    }
    m.attributes.push(LinkAttribute::LinkInfo(info));
    Some(Req::Route(RouteNetlinkMessage::NewLink(m)))
}

/// Settings applied after creation and enslaving, with the link still down: flags other than
/// UP, MTU (again: enslaving changes a bridge's MTU), txqueuelen, alias, group, addrgenmode.
/// IN6_ADDR_GEN_MODE_STABLE_PRIVACY
const IN6_ADDR_GEN_MODE_STABLE_PRIVACY: u32 = 2;

pub fn settings_request(l: &pb::Link, live: u32) -> Req {
    let mut m = base(live);
    m.header.flags = LinkFlags::from_bits_retain(l.flags & USER_FLAGS);
    m.header.change_mask = LinkFlags::from_bits_retain(USER_FLAGS);
    if l.mtu != 0 {
        m.attributes.push(LinkAttribute::Mtu(l.mtu));
    }
    // a tap made with TUNSETIFF gets a random MAC; the saved one goes on afterwards
    if matches!(&l.info, Some(pb::link::Info::Tun(t)) if t.tun_type == 2) && l.mac.len() == 6 {
        m.attributes.push(LinkAttribute::Address(l.mac.clone()));
    }
    m.attributes.push(LinkAttribute::TxQueueLen(l.txqlen));
    if !l.alias.is_empty() {
        m.attributes.push(LinkAttribute::IfAlias(l.alias.clone()));
    }
    m.attributes.push(LinkAttribute::Group(l.group));
    // offload sizes a user can set (`ip link set ... gso_max_size/gso_max_segs/gro_max_size`)
    if l.gso_max_size != 0 {
        m.attributes.push(LinkAttribute::GsoMaxSize(l.gso_max_size));
    }
    if l.gso_max_segs != 0 {
        m.attributes.push(LinkAttribute::GsoMaxSegs(l.gso_max_segs));
    }
    if l.gro_max_size != 0 {
        m.attributes.push(LinkAttribute::GroMaxSize(l.gro_max_size));
    }
    // Stable privacy (2) is refused (EINVAL) until the device or the default has a
    // stable_secret, which the early sysctl phase writes after the links are configured;
    // writing the secret sets the mode itself, and the mode's own sysctl follows it.
    if let Some(g) = l
        .addr_gen_mode
        .filter(|g| *g != IN6_ADDR_GEN_MODE_STABLE_PRIVACY)
    {
        m.attributes
            .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
                vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::from(g as u8))],
            )]));
    }
    Req::Route(RouteNetlinkMessage::SetLink(m))
}

/// The settings of a link that already exists, to put back on rollback.
pub fn restore_settings_request(l: &pb::Link) -> Req {
    let mut r = settings_request(l, l.ifindex);
    if let Req::Route(RouteNetlinkMessage::SetLink(m)) = &mut r {
        m.header.flags = LinkFlags::from_bits_retain(l.flags & (USER_FLAGS | IFF_UP));
        m.header.change_mask = LinkFlags::from_bits_retain(USER_FLAGS | IFF_UP);
    }
    r
}

/// Master (0 = none).
pub fn master_request(live: u32, master: u32) -> Req {
    let mut m = base(live);
    m.attributes.push(LinkAttribute::Controller(master));
    Req::Route(RouteNetlinkMessage::SetLink(m))
}

/// Port settings (IFLA_INFO_SLAVE_DATA): sent as RTM_NEWLINK on the existing device, since
/// RTM_SETLINK does not reach the master's slave_changelink.
pub fn slave_request(slave_kind: &str, attrs: &[pb::RawAttr], live: u32) -> Option<Req> {
    if attrs.is_empty() || slave_kind.is_empty() {
        return None;
    }
    let mut m = base(live);
    let pk = match slave_kind {
        "bridge" => InfoPortKind::Bridge,
        "bond" => InfoPortKind::Bond,
        "vrf" => InfoPortKind::Vrf,
        "team" => InfoPortKind::Team,
        other => InfoPortKind::Other(other.to_string()),
    };
    m.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::PortKind(pk),
        LinkInfo::PortData(InfoPortData::Other(join(attrs))),
    ]));
    Some(Req::Route(RouteNetlinkMessage::NewLink(m)))
}

pub fn up_request(live: u32, up: bool) -> Req {
    let mut m = base(live);
    m.header.flags = LinkFlags::from_bits_retain(if up { IFF_UP } else { 0 });
    m.header.change_mask = LinkFlags::from_bits_retain(IFF_UP);
    Req::Route(RouteNetlinkMessage::SetLink(m))
}

pub fn ipv6_token_request(live: u32, token: &[u8]) -> Option<Req> {
    let t: [u8; 16] = token.try_into().ok()?;
    let mut m = base(live);
    m.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::Token(std::net::Ipv6Addr::from(t))],
        )]));
    Some(Req::Route(RouteNetlinkMessage::SetLink(m)))
}

/// Alternative names (`ip link property add altname`): RTM_NEWLINKPROP, one request per link.
pub fn altnames_request(live: u32, names: &[String]) -> Option<Req> {
    if names.is_empty() {
        return None;
    }
    let mut m = base(live);
    m.attributes.push(LinkAttribute::PropList(
        names.iter().map(|n| Prop::AltIfName(n.clone())).collect(),
    ));
    Some(Req::Route(RouteNetlinkMessage::NewLinkProp(m)))
}

pub fn delete_request(live: u32) -> Req {
    Req::Route(RouteNetlinkMessage::DelLink(base(live)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};

    fn bytes(r: &Req) -> Vec<u8> {
        let Req::Route(m) = r else {
            panic!("raw request")
        };
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(m.clone()),
        );
        msg.finalize();
        let mut v = vec![0; msg.buffer_len()];
        msg.serialize(&mut v);
        v
    }

    fn parse(b: &[u8]) -> RouteNetlinkMessage {
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(b).map(|m| m.payload) {
            Ok(NetlinkPayload::InnerMessage(m)) => m,
            other => panic!("not an rtnetlink message: {other:?}"),
        }
    }

    #[test]
    fn stable_privacy_is_left_to_the_sysctls() {
        let has_gen_mode = |g: u32| {
            let l = pb::Link {
                name: "v0".into(),
                addr_gen_mode: Some(g),
                ..Default::default()
            };
            let Req::Route(RouteNetlinkMessage::SetLink(m)) = settings_request(&l, 7) else {
                panic!("a setlink request")
            };
            m.attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::AfSpecUnspec(_)))
        };
        assert!(has_gen_mode(1));
        assert!(has_gen_mode(3));
        assert!(!has_gen_mode(IN6_ADDR_GEN_MODE_STABLE_PRIVACY));
    }

    /// The request as the kernel would read it, and its IFLA_LINKINFO.
    fn sent(r: &Req) -> (LinkMessage, Vec<LinkInfo>) {
        let RouteNetlinkMessage::NewLink(m) = parse(&bytes(r)) else {
            panic!("not newlink")
        };
        let info = m
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(i) => Some(i.clone()),
                _ => None,
            })
            .unwrap_or_default();
        (m, info)
    }

    fn link(kind: &str) -> pb::Link {
        pb::Link {
            ifindex: 7,
            name: "x0".into(),
            kind: kind.into(),
            mac: vec![2, 0, 0, 0, 0, 1],
            mtu: 1400,
            txqlen: 500,
            ..Default::default()
        }
    }

    /// Kinds this kernel lacks are covered by golden messages: what crhook sends for them must
    /// parse back (by the crate's independent decoder) to the kind and settings saved.
    #[test]
    fn golden_create_requests_for_kinds_this_kernel_lacks() {
        // dummy: no data
        let r = create_request(&link("dummy"), true, &|i| Some(i), None)
            .unwrap_or_else(|| panic!("no request"));
        let (m, _) = sent(&r);
        assert_eq!(m.header.index, 7);
        assert!(m.attributes.contains(&LinkAttribute::IfName("x0".into())));
        assert!(m.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(m
            .attributes
            .contains(&LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Dummy
            )])));

        // vlan id 100 over ifindex 3 (saved) which is ifindex 9 live
        let mut v = link("vlan");
        v.link = 3;
        v.info_data_raw = vec![pb::RawAttr {
            kind: 1,
            value: 100u16.to_ne_bytes().to_vec(),
        }];
        let r = create_request(&v, false, &|i| (i == 3).then_some(9), None)
            .unwrap_or_else(|| panic!("no request"));
        let (m, info) = sent(&r);
        assert_eq!(m.header.index, 0);
        assert!(m.attributes.contains(&LinkAttribute::Link(9)));
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Vlan));
        assert!(
            matches!(&info[1], LinkInfo::Data(InfoData::Vlan(d)) if d.contains(&netlink_packet_route::link::InfoVlan::Id(100)))
        );

        // ipvlan mode l3 (1) flags 0
        let mut i = link("ipvlan");
        i.link = 3;
        i.info_data_raw = vec![pb::RawAttr {
            kind: 1,
            value: 1u16.to_ne_bytes().to_vec(),
        }];
        let r =
            create_request(&i, true, &|x| Some(x), None).unwrap_or_else(|| panic!("no request"));
        let (_, info) = sent(&r);
        assert!(
            matches!(&info[1], LinkInfo::Data(InfoData::IpVlan(d)) if d.contains(&netlink_packet_route::link::InfoIpVlan::Mode(netlink_packet_route::link::IpVlanMode::L3)))
        );
    }

    #[test]
    fn veth_peer_carries_name_mac_index_and_namespace() {
        let peer = PeerSpec {
            name: "host0".into(),
            mac: vec![2, 0, 0, 0, 0, 2],
            mtu: 1400,
            txqlen: 1000,
            ifindex: 33,
            netns_fd: Some(5),
        };
        let r = create_request(&link("veth"), true, &|i| Some(i), Some(&peer))
            .unwrap_or_else(|| panic!("no request"));
        let (_, info) = sent(&r);
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) = &info[1] else {
            panic!("no peer")
        };
        assert_eq!(p.header.index, 33);
        assert!(p
            .attributes
            .contains(&LinkAttribute::IfName("host0".into())));
        assert!(p.attributes.contains(&LinkAttribute::NetNsFd(5)));
        assert!(p
            .attributes
            .contains(&LinkAttribute::Address(vec![2, 0, 0, 0, 0, 2])));
    }

    #[test]
    fn tun_and_loopback_are_not_created_over_netlink() {
        assert!(create_request(&link("tun"), true, &|i| Some(i), None).is_none());
        assert!(create_request(&link(""), true, &|i| Some(i), None).is_none());
    }
}
