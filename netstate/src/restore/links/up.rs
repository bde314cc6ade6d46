//! Bringing links up as saved, with their IPv6 tokens and multicast routes, and the veth far
//! ends.

use std::collections::HashSet;

use crhook_proto as pb;

use super::{is_loopback, send, LinkPlan, Socks};
use crate::ifmap::IfMap;
use crate::journal::Journal;
use crate::link::create::{ipv6_token_request, up_request, IFF_UP};
use crate::nl::{Nl, Req};

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
    let veths = p
        .create
        .iter()
        .chain(p.partner.values())
        .map(|&i| &saved[i])
        .filter(|l| l.kind == "veth" && l.flags & IFF_UP != 0)
        .map(|l| l.name.as_str());
    settle_state(&mut socks.target, veths).map_err(|e| vec![crate::error::chain(&e)])?;
    let devices: Vec<(u32, String)> = p
        .create
        .iter()
        .chain(p.partner.values())
        .map(|&i| &saved[i])
        .filter(|l| l.flags & IFF_UP != 0 && !is_loopback(l) && v6_links.contains(&l.ifindex))
        .filter_map(|l| Some((ifs.live(l.ifindex)?, l.name.clone())))
        .collect();
    crate::route::multicast::restore(&mut socks.target, &devices)?;
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
                socks
                    .get(pp.sock)
                    .map_err(|e| vec![crate::error::chain(&e)])?,
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
                Ok(()) => journal.made(1),
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

/// Settles now the link state the kernel holds back for `names`: a carrier change counts as
/// urgent for linkwatch only now and then (a tun's never), and it runs at most 100 links per
/// pass, at most a pass a second otherwise, so after a restore of 1,000 links `ip link` (a
/// dump, which does not settle) showed hundreds of up veths as `state UNKNOWN` for seconds,
/// and an up tun device with no queue as `state UNKNOWN` without NO-CARRIER instead of
/// `state DOWN`. A single-link RTM_GETLINK makes the kernel run that link's pending event
/// first (`rtnl_getlink` -> `linkwatch_sync_dev`). Restore asks for tun devices right after
/// making them, while they are down (where turning the carrier off costs no queue
/// deactivation: after link up, 400 links took 120 ms at L), and for the veths once they are
/// up (their carrier on: nothing to wait for).
pub(super) fn settle_state<'n>(
    nl: &mut Nl,
    names: impl Iterator<Item = &'n str>,
) -> crate::error::Result<()> {
    /// IFLA_IFNAME; IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS: the answers leave out the counters
    const IFLA_IFNAME: u16 = 3;
    const IFLA_EXT_MASK: u16 = 29;
    const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
    let mut reqs = Vec::new();
    for name in names {
        let mut m = crate::nla::MsgBuf::new(&[0u8; 16]);
        // the name NUL-terminated, as the kernel parses IFLA_IFNAME
        m.put(IFLA_IFNAME, &[name.as_bytes(), &[0]].concat())?;
        m.put_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)?;
        reqs.push(m.into_req(libc::RTM_GETLINK));
    }
    nl.batch(&reqs, 0, "settle the state of links made")
        .map(drop)
}
