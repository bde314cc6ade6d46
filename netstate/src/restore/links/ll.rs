//! Link-local addresses without the kernel's IPv6 autoconfiguration at link up.
//!
//! Bringing a link up makes the kernel generate its link-local address (and start DAD, join
//! its solicited-node group, walk the IPv6 FIB) under RTNL, one link at a time: 436 ms for
//! the 1,000 links of the benchmark's L. The image already holds every link-local address the
//! kernel made (they are tracked, see `addr::kernel_ll`), so restore switches the kernel's
//! generation off on the links it makes (`addr_gen_mode` none, over netlink, after the early
//! sysctls), brings the links up, puts the saved `addr_gen_mode` back, and adds the saved
//! link-locals itself with the other IPv6 addresses (no DAD: added with IFA_F_NODAD, then
//! replaced with their saved flags, which clears it; see `v6_addresses` in apply.rs; and
//! `accept_dad` suspended meanwhile, see `dad.rs`). The mode set over netlink regenerates
//! nothing (only the sysctl does); a link that gets carrier after its mode is back and before
//! restore adds its link-local generates it itself (the same address; `accept_dad` still
//! suspended, so not tentative). Links whose mode the image or sysctls give as anything but
//! EUI-64 (random and stable privacy come from a secret the early sysctls write, and writing
//! the mode's sysctl regenerates the address at once), links with a saved `stable_secret`,
//! links whose image tracks no link-local, and links that keep DAD (a saved tentative
//! address), are left to the kernel as before. The link-locals are
//! added with NLM_F_REPLACE: should the kernel have made one all the same (an early sysctl
//! write of the mode on a namespace whose default differs), it is the same address.

use crhook_proto as pb;
use netlink_packet_route::link::{AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute};
use netlink_packet_route::RouteNetlinkMessage;

use super::{send, LinkPlan, Socks};
use crate::ifmap::IfMap;
use crate::journal::Journal;
use crate::nl::Req;

const IN6_ADDR_GEN_MODE_EUI64: u32 = 0;
const IN6_ADDR_GEN_MODE_NONE: u8 = 1;

/// The links restore makes the link-locals of itself, and those addresses.
#[derive(Debug, Default)]
pub struct Quiet {
    /// (live index, saved mode, name)
    links: Vec<(u32, u8, String)>,
    /// the saved kernel-made link-locals of those links
    pub addresses: Vec<pb::Address>,
}

impl Quiet {
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The live indexes of the quiet links restore gave a saved link-local: should the
    /// kernel's address configuration take one of them as ready only later, what it makes
    /// then is that same address, already there and not tentative (see `dad::settle`).
    pub fn with_own_ll(&self) -> std::collections::HashSet<u32> {
        let named: std::collections::HashSet<&str> =
            self.addresses.iter().map(|a| a.ifname.as_str()).collect();
        self.links
            .iter()
            .filter(|(_, _, n)| named.contains(n.as_str()))
            .map(|&(i, _, _)| i)
            .collect()
    }
}

/// The links of `p` restore makes whose kernel-made link-locals the image tracks and whose
/// saved mode is EUI-64 (or none recorded), less those that `keep` DAD or whose saved
/// `sysctls` give another mode or a secret; `kernel_ll` is the image's kernel-made
/// link-locals.
pub fn plan(
    saved: &[pb::Link],
    p: &LinkPlan,
    ifs: &IfMap,
    kernel_ll: &[pb::Address],
    keep: &[String],
    sysctls: &crate::sysctl::Saved,
) -> Quiet {
    // devices whose saved sysctls give another mode, or a secret
    let moded: std::collections::HashSet<&str> = sysctls
        .iter()
        .filter(|s| s.len() == 4 && s.part(0) == Some("ipv6") && s.part(1) == Some("conf"))
        .filter_map(|s| {
            let key = s.last()?;
            let other =
                (key == "addr_gen_mode" && s.value().trim() != "0") || key == "stable_secret";
            other.then_some(s.part(2)).flatten()
        })
        .collect();
    let mut q = Quiet::default();
    for &i in p.create.iter().chain(p.partner.values()) {
        let l = &saved[i];
        let mode = l.addr_gen_mode.unwrap_or(IN6_ADDR_GEN_MODE_EUI64);
        if !l.ll_tracked
            || super::is_loopback(l)
            || keep.contains(&l.name)
            || moded.contains(l.name.as_str())
            || mode != IN6_ADDR_GEN_MODE_EUI64
        {
            continue;
        }
        let Some(live) = ifs.live(l.ifindex) else {
            continue;
        };
        q.links.push((live, mode as u8, l.name.clone()));
        q.addresses
            .extend(kernel_ll.iter().filter(|a| a.ifname == l.name).cloned());
    }
    q
}

fn mode_request(live: u32, mode: u8) -> Req {
    let mut m = netlink_packet_route::link::LinkMessage::default();
    m.header.index = live;
    m.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::from(mode))],
        )]));
    Req::Route(RouteNetlinkMessage::SetLink(m))
}

/// Switches the kernel's link-local generation off on the quiet links (they are down). Their
/// undo is their deletion.
pub fn silence(q: &Quiet, socks: &mut Socks, journal: &mut Journal) -> Result<(), Vec<String>> {
    set(q, socks, journal, |_| IN6_ADDR_GEN_MODE_NONE, "off")
}

/// Puts the saved mode back once the links are up. Nothing to undo: restore made these
/// links.
pub fn resume(q: &Quiet, socks: &mut Socks, journal: &mut Journal) -> Result<(), Vec<String>> {
    set(q, socks, journal, |m| m, "back to its saved value")
}

fn set(
    q: &Quiet,
    socks: &mut Socks,
    journal: &mut Journal,
    mode: impl Fn(u8) -> u8,
    how: &str,
) -> Result<(), Vec<String>> {
    let (reqs, what) = requests(q, mode, how);
    let netns = socks.target.netns().to_string();
    send(&mut socks.target, &reqs, &what, &netns, journal, 0)
}

/// The requests setting the quiet links' mode to `mode(saved)`, and what each is for.
fn requests(q: &Quiet, mode: impl Fn(u8) -> u8, how: &str) -> (Vec<Req>, Vec<String>) {
    let reqs = q
        .links
        .iter()
        .map(|(i, m, _)| mode_request(*i, mode(*m)))
        .collect();
    let what = q
        .links
        .iter()
        .map(|(_, _, n)| format!("set IPv6 address generation of {n} {how}"))
        .collect();
    (reqs, what)
}
