//! The IPv6 multicast route `multicast ff00::/8 table local` the kernel adds for a device
//! when IPv6 is configured on it while it is up, or when it comes up with carrier. Restore
//! adds addresses while links are down, so a device that comes up without carrier (a tun
//! nobody holds yet) would miss the route it had; restore adds it as the kernel would (an
//! existing one answers EEXIST, which counts as done). It goes with its link on rollback.

use netlink_packet_core::NLM_F_CREATE;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::nl::{Nl, Req};

/// The request the kernel's own add would be, for live device `ifindex`.
pub fn request(ifindex: u32) -> Req {
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
    m.attributes.push(RouteAttribute::Oif(ifindex));
    m.attributes.push(RouteAttribute::Priority(256));
    Req::Route(RouteNetlinkMessage::NewRoute(m))
}

/// Adds the multicast route of each (live ifindex, name) in `nl`'s namespace.
pub fn restore(nl: &mut Nl, devices: &[(u32, String)]) -> std::result::Result<(), Vec<String>> {
    if devices.is_empty() {
        return Ok(());
    }
    let reqs: Vec<Req> = devices.iter().map(|(i, _)| request(*i)).collect();
    let results = nl
        .batch(&reqs, NLM_F_CREATE, "add multicast routes")
        .map_err(|e| vec![crate::error::chain(&e)])?;
    let errors: Vec<String> = results
        .into_iter()
        .zip(devices)
        .filter_map(|(r, (_, name))| match r {
            Err(e) if e.errno != libc::EEXIST => Some(format!(
                "add multicast route of {name} in {}: {e}",
                nl.netns()
            )),
            _ => None,
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}
