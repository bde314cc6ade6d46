//! Routes of every table, IPv4 and IPv6: capture, the requests that add and delete them,
//! identity, restore order and the canonical form diff compares.
//!
//! Kernel behaviour this relies on:
//! - `rtm_table` is 8 bits; tables above 255 arrive as RT_TABLE_COMPAT (252) with the real id
//!   in RTA_TABLE, which is therefore the one read and always sent.
//! - Routes the kernel makes for addresses (connected routes, the local table's local and
//!   broadcast entries, `fe80::/64`, `ff00::/8`) carry protocol kernel (2); router
//!   advertisements add protocol ra (9); RTM_F_CLONED marks cache entries. None of these is
//!   user state. User routes in the local table (protocol boot or static) are.
//! - A route using a nexthop object (RTA_NH_ID) is also dumped with the nexthop's gateway,
//!   device and flags (nexthop compat mode), but an add carrying both is refused ("Nexthop
//!   specification and nexthop id are mutually exclusive"), so only the id is kept.
//! - An add with RTNH_F_DEAD or RTNH_F_LINKDOWN is refused (EINVAL); they are link state and
//!   are cleared. Of RTA_CACHEINFO only the remaining lifetime of an IPv6 route is kept
//!   (`expires`, in seconds; the kernel counts it in USER_HZ ticks), and sent back as
//!   RTA_EXPIRES, which sets it (IPv4 routes have no lifetime).
//! - IPv6 multipath routes are dumped as one route with RTA_MULTIPATH and are added back the
//!   same way, in one request.
//! - Identity: an IPv4 add with NLM_F_EXCL fails when table, prefix, tos and priority match;
//!   IPv6 keeps routes of one prefix and metric on different devices apart, so its identity
//!   adds the source prefix and the device. Such IPv6 routes are still refused with
//!   NLM_F_EXCL (EEXIST) once one of them exists: the second comes only from an add with
//!   NLM_F_APPEND, which [`split_appended`] sets apart for the caller.

mod decode;
mod encode;
pub mod multicast;
#[cfg(test)]
mod tests;

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req, Visit};
use crate::nla::{self, ip_str, prefix_str, AF_INET, AF_INET6};

pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;

pub const RTNH_F_DEAD: u32 = 1;
pub const RTNH_F_PERVASIVE: u32 = 2;
pub const RTNH_F_ONLINK: u32 = 4;
pub const RTNH_F_OFFLOAD: u32 = 8;
pub const RTNH_F_LINKDOWN: u32 = 16;
pub const RTNH_F_UNRESOLVED: u32 = 32;
pub const RTNH_F_TRAP: u32 = 64;
pub const RTM_F_CLONED: u32 = 0x200;
pub const RTM_F_OFFLOAD: u32 = 0x4000;
pub const RTM_F_TRAP: u32 = 0x8000;
pub const RTM_F_OFFLOAD_FAILED: u32 = 0x2000_0000;
/// Flags that describe the state of links or hardware, not the route.
pub const ROUTE_STATE_FLAGS: u32 = RTNH_F_DEAD
    | RTNH_F_LINKDOWN
    | RTNH_F_OFFLOAD
    | RTNH_F_UNRESOLVED
    | RTNH_F_TRAP
    | RTM_F_OFFLOAD
    | RTM_F_TRAP
    | RTM_F_OFFLOAD_FAILED;
/// The flags an add may carry.
pub const ROUTE_SEND_FLAGS: u32 = RTNH_F_ONLINK | RTNH_F_PERVASIVE;

pub const RTPROT_KERNEL: u32 = 2;
pub const RTPROT_RA: u32 = 9;

pub const RTN_UNICAST: u32 = 1;

/// Dumps the routes of every table, IPv4 then IPv6, leaving out what the kernel made.
pub fn capture(nl: &mut Nl, ifs: &IfMap) -> Result<Vec<pb::Route>> {
    let mut out = Vec::new();
    let mut start = 0;
    each_route(nl, ifs, &mut |g| match g {
        Got::Start => start = out.len(),
        Got::Route(r) => out.push(*r),
        Got::Restart => out.truncate(start),
    })?;
    // a dump of 100,000 routes grows the list to room for 131,072 (10 MiB unused)
    out.shrink_to_fit();
    Ok(out)
}

/// [`capture`] into an image file of routes as the dump is read: (the file, its entries).
/// What a checkpoint holds is then the file (3.8 MiB at 100,000 routes), not the routes
/// (~44 MiB decoded).
pub fn capture_encoded(nl: &mut Nl, ifs: &IfMap) -> Result<(Vec<u8>, u64)> {
    let mut e = crhook_core::frame::Encoder::new(crhook_core::Kind::Routes);
    let mut start = e.mark();
    let mut too_large = None;
    each_route(nl, ifs, &mut |g| match g {
        Got::Start => start = e.mark(),
        Got::Route(r) => {
            if e.push_message(&r).is_err() {
                too_large.get_or_insert_with(|| describe(&r));
            }
        }
        Got::Restart => e.truncate(start),
    })?;
    if let Some(r) = too_large {
        return Err(crate::error::NetstateError::invalid(format!(
            "{r} in {}: too large for an image entry",
            nl.netns()
        )));
    }
    let n = e.count();
    Ok((e.finish(), n))
}

/// What [`each_route`] hands its caller.
enum Got {
    /// a family's dump begins
    Start,
    Route(Box<pb::Route>),
    /// the family's dump begins again: drop its routes so far
    Restart,
}

/// Hands every route the dumps (IPv4, then IPv6) carry to `f` as it is decoded.
fn each_route(nl: &mut Nl, ifs: &IfMap, f: &mut dyn FnMut(Got)) -> Result<()> {
    for family in [AF_INET, AF_INET6] {
        let req = Req::Raw {
            msg_type: RTM_GETROUTE,
            payload: vec![family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let op = if family == AF_INET {
            "dump IPv4 routes"
        } else {
            "dump IPv6 routes"
        };
        let netns = nl.netns().to_string();
        f(Got::Start);
        nl.dump_visit(&req, op, &mut |v| {
            let (ty, payload) = match v {
                Visit::Restart => {
                    f(Got::Restart);
                    return Ok(());
                }
                Visit::Msg(ty, payload) => (ty, payload),
            };
            if ty != RTM_NEWROUTE {
                return Ok(());
            }
            match decode::decode(payload, ifs) {
                Ok(Some(r)) => f(Got::Route(Box::new(r))),
                Ok(None) => {}
                Err(what) => return Err(nla::decode_error(op, &netns, what)),
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// RTM_NEWROUTE for a saved route, its links mapped to the live ones.
pub fn add_request(r: &pb::Route, ifs: &IfMap) -> Result<Req> {
    encode::add(r, ifs)
}

/// RTM_DELROUTE matching exactly this route.
pub fn del_request(r: &pb::Route, ifs: &IfMap) -> Result<Req> {
    encode::del(r, ifs)
}

fn is_v6(r: &pb::Route) -> bool {
    r.family == u32::from(AF_INET6)
}

/// Identity: `DST/LEN [tos T] table T metric P` for IPv4, `DST/LEN [from SRC/LEN] table T
/// metric P [dev D]` for IPv6 (see the module notes).
pub fn key(r: &pb::Route) -> String {
    let mut k = prefix_str(r.family, &r.dst, r.dst_len);
    if r.tos != 0 {
        k.push_str(&format!(" tos {:#x}", r.tos));
    }
    if is_v6(r) && (r.src_len != 0 || !r.src.is_empty()) {
        k.push_str(&format!(
            " from {}",
            prefix_str(r.family, &r.src, r.src_len)
        ));
    }
    k.push_str(&format!(
        " table {} metric {}",
        r.table,
        r.priority.unwrap_or(0)
    ));
    if is_v6(r) && !r.oif_name.is_empty() {
        k.push_str(&format!(" dev {}", r.oif_name));
    }
    k
}

/// The name `ip route` uses for a route type.
pub fn type_name(t: u32) -> String {
    match t {
        0 => "unspec".into(),
        1 => "unicast".into(),
        2 => "local".into(),
        3 => "broadcast".into(),
        4 => "anycast".into(),
        5 => "multicast".into(),
        6 => "blackhole".into(),
        7 => "unreachable".into(),
        8 => "prohibit".into(),
        9 => "throw".into(),
        10 => "nat".into(),
        11 => "xresolve".into(),
        n => format!("type {n}"),
    }
}

/// `route 10.0.0.0/8 via 10.1.1.2 dev eth0 table 100`, with the type when not unicast.
pub fn describe(r: &pb::Route) -> String {
    let mut d = String::from("route ");
    if r.route_type != RTN_UNICAST {
        d.push_str(&type_name(r.route_type));
        d.push(' ');
    }
    d.push_str(&prefix_str(r.family, &r.dst, r.dst_len));
    if r.src_len != 0 {
        d.push_str(&format!(
            " from {}",
            prefix_str(r.family, &r.src, r.src_len)
        ));
    }
    if !r.gateway.is_empty() {
        d.push_str(&format!(" via {}", ip_str(&r.gateway)));
    }
    if r.nh_id != 0 {
        d.push_str(&format!(" nhid {}", r.nh_id));
    }
    if !r.oif_name.is_empty() {
        d.push_str(&format!(" dev {}", r.oif_name));
    }
    d.push_str(&format!(" table {}", r.table));
    if let Some(p) = r.priority {
        d.push_str(&format!(" metric {p}"));
    }
    d
}

/// [`describe`] of the route an RTM_NEWROUTE or RTM_DELROUTE payload names (its device by
/// index: the request holds no name); None when it is not one.
pub(crate) fn describe_request(payload: &[u8]) -> Option<String> {
    let ifs = IfMap::default();
    let mut r = decode::decode(payload, &ifs).ok()??;
    r.oif_name = match r.oif {
        0 => String::new(),
        i => format!("ifindex {i}"),
    };
    Some(describe(&r))
}

/// Canonical form for comparison: no ifindexes (names stay), no link or hardware state flags.
pub fn normalize(r: &mut pb::Route) {
    // a lifetime compares as "finite", whatever time has passed
    r.expires = r.expires.min(1);
    r.oif = 0;
    r.iif = 0;
    r.flags &= !ROUTE_STATE_FLAGS;
    for h in &mut r.multipath {
        h.ifindex = 0;
        h.flags &= !ROUTE_STATE_FLAGS;
    }
}

/// Splits `routes` (keeping their order) into the routes added with NLM_F_EXCL and those the
/// kernel refuses with it although they coexist with another: same family, table, prefix,
/// source, tos and metric as an earlier route, on another device or gateway (made with `ip
/// route append`; IPv6 keeps such routes of different devices apart and so does `key`). Add
/// the second after the others with NLM_F_CREATE|NLM_F_APPEND.
pub fn split_appended(routes: &[pb::Route]) -> (Vec<&pb::Route>, Vec<&pb::Route>) {
    let mut slots = Slots::with_capacity(routes.len());
    routes.iter().partition(|r| slots.first(r))
}

/// The slots taken by routes seen so far (see [`split_appended`]), each by a hash of what
/// routes in one slot share (family, table, prefix, source, tos, metric): 8 bytes per route
/// whatever it holds. Two routes whose slots collide are both still added, the second merely
/// with NLM_F_APPEND and after the others.
pub struct Slots(std::collections::HashSet<u64>);

impl Slots {
    pub fn with_capacity(n: usize) -> Self {
        Slots(std::collections::HashSet::with_capacity(n))
    }

    /// Whether `r` is the first route of its slot.
    pub fn first(&mut self, r: &pb::Route) -> bool {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (
            r.family,
            r.table,
            r.dst.as_slice(),
            r.dst_len,
            r.src.as_slice(),
            r.src_len,
            r.tos,
            r.priority,
        )
            .hash(&mut h);
        self.0.insert(h.finish())
    }
}

fn has_gateway(r: &pb::Route) -> bool {
    !r.gateway.is_empty()
        || !r.via.is_empty()
        || r.multipath
            .iter()
            .any(|h| !h.gateway.is_empty() || !h.via.is_empty())
}

/// Orders routes for adding: routes without a gateway (they make gateways reachable) first,
/// then routes with one, then routes using nexthop objects. Stable within each group. The
/// caller retries ENETUNREACH failures in a further pass (a gateway reachable only through
/// another gateway route).
pub fn restore_order(routes: &mut [pb::Route]) {
    routes.sort_by_key(order_rank);
}

/// A route's place in [`restore_order`]: direct routes, then routes through a gateway, then
/// routes through a nexthop object.
pub fn order_rank(r: &pb::Route) -> u8 {
    if r.nh_id != 0 {
        2
    } else if has_gateway(r) {
        1
    } else {
        0
    }
}
