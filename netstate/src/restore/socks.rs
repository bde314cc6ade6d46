//! The sockets restore works through, one per namespace it touches, and the links each held
//! when last dumped.

use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_route::link::LinkMessage;

use crate::error::{NetstateError, Result};
use crate::journal::Sock;
use crate::link::capture::dump;
use crate::netns::NetNs;
use crate::nl::Nl;

/// The sockets restore works through: the target, the host (the namespace crhook runs in), and
/// any other namespace a veth peer goes to. Netlink sockets stay bound to the namespace they
/// were opened in, so one thread can drive them all.
pub struct Socks {
    pub target: Nl,
    pub target_links: Vec<LinkMessage>,
    pub host_ns: NetNs,
    pub host: Nl,
    pub host_links: Vec<LinkMessage>,
    pub peers: Vec<(NetNs, Nl, Vec<LinkMessage>)>,
}

impl Socks {
    /// The socket of `s`; a peer slot restore never opened is an error, never another
    /// namespace's socket.
    pub fn get(&mut self, s: Sock) -> Result<&mut Nl> {
        match s {
            Sock::Target => Ok(&mut self.target),
            Sock::Host => Ok(&mut self.host),
            Sock::Peer(i) => {
                self.peers.get_mut(i).map(|p| &mut p.1).ok_or_else(|| {
                    NetstateError::invalid(format!("no socket for peer namespace {i}"))
                })
            }
        }
    }

    pub fn links_of(&self, s: Sock) -> &[LinkMessage] {
        match s {
            Sock::Target => &self.target_links,
            Sock::Host => &self.host_links,
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.2.as_slice())
                .unwrap_or_default(),
        }
    }

    pub fn links_refresh(&mut self, s: Sock) -> Result<Vec<LinkMessage>> {
        let l = dump(self.get(s)?)?;
        match s {
            Sock::Target => self.target_links = l.clone(),
            Sock::Host => self.host_links = l.clone(),
            Sock::Peer(i) => {
                if let Some(p) = self.peers.get_mut(i) {
                    p.2 = l.clone();
                }
            }
        }
        Ok(l)
    }

    /// The namespace of `s`.
    pub fn ns_of(&self, s: Sock) -> Result<&NetNs> {
        match s {
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| &p.0)
                .ok_or_else(|| NetstateError::invalid(format!("no peer namespace {i}"))),
            Sock::Host => Ok(&self.host_ns),
            Sock::Target => Err(NetstateError::invalid(
                "the target's namespace is not a peer's",
            )),
        }
    }

    pub fn name_of(&self, s: Sock) -> String {
        match s {
            Sock::Target => self.target.netns().to_string(),
            Sock::Host => "the host namespace".to_string(),
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.0.name().to_string())
                .unwrap_or_default(),
        }
    }

    /// The namespace descriptor of `s` (for IFLA_NET_NS_FD); the target's is not here.
    pub fn ns_fd(&self, s: Sock) -> Result<RawFd> {
        match s {
            Sock::Peer(i) => self
                .peers
                .get(i)
                .map(|p| p.0.fd().as_raw_fd())
                .ok_or_else(|| NetstateError::invalid(format!("no peer namespace {i}"))),
            Sock::Host => Ok(self.host_ns.fd().as_raw_fd()),
            Sock::Target => Err(NetstateError::invalid(
                "the target's own namespace descriptor is not a peer's",
            )),
        }
    }
}
