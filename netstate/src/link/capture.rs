//! Link capture: one RTM_GETLINK dump of the target, converted to `crhook_proto::Link`, with
//! veth peers followed into whichever namespace holds them.

use std::collections::HashMap;

use crhook_proto::{self as pb};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, InfoData, InfoKind, InfoPortKind, LinkAttribute, LinkInfo,
    LinkMessage, Prop,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::kinds;
use super::peer::PeerFinder;
use super::raw::{split, value_of};
use crate::error::Result;
use crate::nl::Nl;

pub fn dump(nl: &mut Nl) -> Result<Vec<LinkMessage>> {
    let msgs = nl.dump(
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
        "dump links",
    )?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect())
}

/// An `RTM_GETLINK` dump request for an empty `ifinfomsg` that asks the kernel to leave out
/// the statistics (`RTEXT_FILTER_SKIP_STATS` in `IFLA_EXT_MASK`): a quarter of each message
/// (the link's and IPv6's counters), which readers of a few attributes do not need.
pub(crate) fn link_request() -> Vec<u8> {
    const IFLA_EXT_MASK: u16 = 29;
    const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
    let mut b = vec![0; 16];
    b.extend_from_slice(&8u16.to_ne_bytes());
    b.extend_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
    b.extend_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    b
}

/// (ifindex, name) of every link, from a dump read raw: what a caller that needs only names
/// asks, without decoding each link whole (1,000 links decoded take ~5 MiB).
pub fn index_names(nl: &mut Nl) -> Result<Vec<(u32, String)>> {
    raw(nl, "dump link names", |index, _, attrs| {
        ifname(attrs).map(|n| (index, n))
    })
}

/// The `IFLA_IFNAME` among a link message's attributes.
fn ifname(attrs: &[u8]) -> Option<String> {
    const IFLA_IFNAME: u16 = 3;
    crate::nla::attrs(attrs)
        .map_while(|a| a.ok())
        .find(|a| a.ty() == IFLA_IFNAME)
        .map(|a| a.string())
}

/// What `keep` makes of each link's (ifindex, flags, attribute bytes), from a link dump read
/// raw (nothing decoded), `what` naming the dump in errors.
pub fn raw<T>(
    nl: &mut Nl,
    what: &str,
    mut keep: impl FnMut(u32, u32, &[u8]) -> Option<T>,
) -> Result<Vec<T>> {
    raw_messages(nl, what, |msg| {
        let (index, flags) = (crate::nla::u32_at(msg, 4), crate::nla::u32_at(msg, 8));
        keep(index, flags, msg.get(16..).unwrap_or_default())
    })
}

/// What `keep` makes of each whole link message (`ifinfomsg` and attributes) of a link dump
/// read raw; a dump the kernel restarts is taken again from the start.
fn raw_messages<T>(
    nl: &mut Nl,
    what: &str,
    mut keep: impl FnMut(&[u8]) -> Option<T>,
) -> Result<Vec<T>> {
    let req = crate::nl::Req::Raw {
        msg_type: libc::RTM_GETLINK,
        payload: link_request(),
    };
    let mut out = Vec::new();
    nl.dump_visit(&req, what, &mut |v| {
        match v {
            crate::nl::Visit::Restart => out.clear(),
            crate::nl::Visit::Msg(ty, msg) if ty == libc::RTM_NEWLINK && msg.len() >= 16 => {
                out.extend(keep(msg))
            }
            crate::nl::Visit::Msg(..) => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// ifindex -> name of every link of a raw dump.
fn raw_names(dump: &RawLinks) -> HashMap<u32, String> {
    dump.messages()
        .filter_map(|m| Some((crate::nla::u32_at(m, 4), ifname(m.get(16..)?)?)))
        .collect()
}

pub fn names(dump: &[LinkMessage]) -> HashMap<u32, String> {
    dump.iter()
        .map(|m| (m.header.index, link_name(m)))
        .collect()
}

pub fn link_name(m: &LinkMessage) -> String {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// Converts one dumped link. `names` resolves ifindexes of this namespace.
pub fn convert(m: &LinkMessage, names: &HashMap<u32, String>) -> pb::Link {
    let mut l = pb::Link {
        ll_tracked: true,
        ifindex: m.header.index,
        flags: m.header.flags.bits(),
        ..Default::default()
    };
    let mut info_data = Vec::new();
    let mut slave_data = Vec::new();
    let mut link_netnsid = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(v) => l.mac = v.clone(),
            LinkAttribute::Broadcast(v) => l.broadcast = v.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::TxQueueLen(v) => l.txqlen = *v,
            LinkAttribute::IfAlias(v) => l.alias = v.clone(),
            LinkAttribute::Group(v) => l.group = *v,
            LinkAttribute::Controller(v) => l.master = *v,
            LinkAttribute::Link(v) => l.link = *v,
            LinkAttribute::LinkNetNsId(v) => link_netnsid = Some(*v),
            LinkAttribute::OperState(s) => l.operstate = u32::from(u8::from(*s)),
            LinkAttribute::Mode(v) => l.linkmode = u32::from(u8::from(*v)),
            LinkAttribute::MinMtu(v) => l.min_mtu = *v,
            LinkAttribute::MaxMtu(v) => l.max_mtu = *v,
            LinkAttribute::NumTxQueues(v) => l.num_tx_queues = *v,
            LinkAttribute::NumRxQueues(v) => l.num_rx_queues = *v,
            LinkAttribute::GsoMaxSize(v) => l.gso_max_size = *v,
            LinkAttribute::GsoMaxSegs(v) => l.gso_max_segs = *v,
            LinkAttribute::GroMaxSize(v) => l.gro_max_size = *v,
            LinkAttribute::NetnsImmutable(v) => l.netns_local = *v,
            LinkAttribute::PropList(props) => {
                for p in props {
                    if let Prop::AltIfName(n) = p {
                        l.alt_names.push(n.clone());
                    }
                }
            }
            LinkAttribute::AfSpecUnspec(specs) => {
                for s in specs {
                    if let AfSpecUnspec::Inet6(v6) = s {
                        for x in v6 {
                            match x {
                                AfSpecInet6::AddrGenMode(g) => {
                                    l.addr_gen_mode = Some(u32::from(u8::from(g)))
                                }
                                AfSpecInet6::Token(t) if !t.is_unspecified() => {
                                    l.ipv6_token = t.octets().to_vec()
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = kind_name(k),
                        LinkInfo::Data(d) => info_data = data_attrs(d),
                        LinkInfo::PortKind(k) => l.slave_kind = port_kind_name(k),
                        LinkInfo::PortData(d) => slave_data = split(&value_of(d)),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l.link_other_netns = link_netnsid.is_some();
    let lower = if l.link_other_netns {
        String::new()
    } else {
        names.get(&l.link).cloned().unwrap_or_default()
    };
    let info_data = kinds::keep_info_data(&l.kind, info_data);
    l.info = match l.kind.as_str() {
        "veth" => Some(pb::link::Info::Veth(pb::Veth {
            peer_ifindex: l.link,
            peer_place: if link_netnsid.is_some() {
                pb::PeerPlace::PeerUnknown as i32
            } else {
                pb::PeerPlace::PeerSame as i32
            },
            peer_name: if link_netnsid.is_none() {
                lower.clone()
            } else {
                String::new()
            },
            ..Default::default()
        })),
        "tun" => Some(pb::link::Info::Tun(kinds::decode_tun(&info_data))),
        "bridge" => Some(pb::link::Info::Bridge(kinds::decode_bridge(&info_data))),
        "macvlan" | "macvtap" => Some(pb::link::Info::Macvlan(kinds::decode_macvlan(
            &info_data, lower,
        ))),
        "vxlan" => {
            let vl = super::raw::find(&info_data, kinds::IFLA_VXLAN_LINK)
                .and_then(super::raw::u32_of)
                .and_then(|i| names.get(&i).cloned())
                .unwrap_or_default();
            Some(pb::link::Info::Vxlan(kinds::decode_vxlan(&info_data, vl)))
        }
        "vlan" => Some(pb::link::Info::Vlan(kinds::decode_vlan(&info_data, lower))),
        "ipvlan" | "ipvtap" => Some(pb::link::Info::Ipvlan(kinds::decode_ipvlan(
            &info_data, lower,
        ))),
        _ => None,
    };
    // tun devices carry only reported state in IFLA_INFO_DATA; the typed view is the setting
    l.info_data_raw = if l.kind == "tun" {
        Vec::new()
    } else {
        info_data
    };
    if !l.slave_kind.is_empty() {
        let port_no = kinds::decode_bridge_port(&slave_data).port_no;
        let kept = kinds::keep_slave_data(&l.slave_kind, slave_data);
        if l.slave_kind == "bridge" {
            let mut bp = kinds::decode_bridge_port(&kept);
            bp.raw = Vec::new();
            bp.port_no = port_no;
            l.bridge_port = Some(bp);
        }
        l.slave_data_raw = kept;
    }
    l
}

fn data_attrs(d: &InfoData) -> Vec<pb::RawAttr> {
    match d {
        // the kernel never reports IFLA_VETH_PEER; nothing to keep
        InfoData::Veth(_) => Vec::new(),
        other => split(&value_of(other)),
    }
}

pub fn kind_name(k: &InfoKind) -> String {
    k.to_string()
}

fn port_kind_name(k: &InfoPortKind) -> String {
    k.to_string()
}

/// A link dump as the kernel sent it (each message's `ifinfomsg` and attributes; the
/// statistics left out, `link_request`), each link decoded only while it is read: 2,000
/// links decoded at once took 26.6 MiB, most of a link-heavy checkpoint's peak; so they are
/// ~5 MiB.
#[derive(Debug, Default)]
pub struct RawLinks(Vec<Vec<u8>>);

impl RawLinks {
    /// Dumps the links of `nl`'s namespace.
    pub fn dump(nl: &mut Nl, what: &str) -> Result<RawLinks> {
        Ok(RawLinks(raw_messages(nl, what, |m| Some(m.to_vec()))?))
    }

    /// Each message as the kernel sent it.
    pub fn messages(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }

    /// Each link decoded in turn, or why one does not decode.
    pub fn decoded(&self) -> impl Iterator<Item = Result<LinkMessage>> + '_ {
        self.0.iter().map(|m| decode(m))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One link message (`ifinfomsg` and attributes) decoded.
pub(crate) fn decode(msg: &[u8]) -> Result<LinkMessage> {
    use netlink_packet_core::Parseable;
    let index = crate::nla::u32_at(msg, 4);
    LinkMessage::parse(msg).map_err(|e| {
        crate::error::NetstateError::invalid(format!("decode link {index} of a link dump: {e}"))
    })
}

/// Captures every link of the namespace `nl` is bound to; veth peers outside it are looked up
/// through `peers`. The dump comes back raw, for the readers of what the links do not keep
/// (the sysctls' device values, XDP programs).
pub fn capture(nl: &mut Nl, peers: &mut PeerFinder) -> Result<(Vec<pb::Link>, RawLinks)> {
    let dump = RawLinks::dump(nl, "dump links")?;
    let names = raw_names(&dump);
    let mut links = Vec::with_capacity(dump.len());
    for m in dump.decoded() {
        let m = m?;
        let mut l = convert(&m, &names);
        let nsid = m.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkNetNsId(i) => Some(*i),
            _ => None,
        });
        match (&mut l.info, nsid) {
            // both ends here: the peer's own entry carries its settings
            (Some(pb::link::Info::Veth(v)), Some(nsid)) => peers.describe(nl, nsid, v)?,
            (Some(pb::link::Info::Veth(_)), None) => {}
            (_, Some(nsid)) if l.link != 0 => {
                let lw = peers.describe_lower(nl, nsid, l.link)?;
                match &mut l.info {
                    Some(pb::link::Info::Macvlan(x)) => x.lower = lw.name.clone(),
                    Some(pb::link::Info::Ipvlan(x)) => x.lower = lw.name.clone(),
                    Some(pb::link::Info::Vlan(x)) => x.lower = lw.name.clone(),
                    _ => {}
                }
                l.lower = Some(lw);
            }
            _ => {}
        }
        links.push(l);
    }
    if links
        .iter()
        .any(|l| l.kind == "bridge" || l.slave_kind == "bridge")
    {
        let mut vlans = super::vlan::capture(nl)?;
        for l in &mut links {
            l.bridge_vlans = vlans.remove(&l.ifindex).unwrap_or_default();
        }
    }
    Ok((links, dump))
}
