//! The kernel's own link-locals reconciled at the end of a restore: exactly the saved ones
//! on the links restore made.

use std::collections::HashSet;

use super::applying::Applying;
use super::links;
use crate::error::NetstateError;
use crate::family::{self, Addresses};
use crate::ifmap::IfMap;
use crate::journal::Sock;

/// Ends with exactly the saved kernel-made link-local addresses on the links restore made
/// (from images that track them): one the kernel made during the rebuild that the image does
/// not have goes (a bridge whose only port is a tap nobody holds has none, but gets one when a
/// carrier shows for a moment), and one the image has that the kernel did not make (no
/// carrier now) is added. Both are undone with their link.
pub(super) fn link_locals(
    cx: &mut Applying,
    links: &[crhook_proto::Link],
    lp: &links::LinkPlan,
    saved: &[crhook_proto::Address],
) -> std::result::Result<(), Vec<String>> {
    let ours: HashSet<&str> = lp
        .create
        .iter()
        .chain(lp.partner.values())
        .map(|&i| &links[i])
        .filter(|l| l.ll_tracked && !links::is_loopback(l))
        .map(|l| l.name.as_str())
        .collect();
    if ours.is_empty() {
        return Ok(());
    }
    let err = |e: NetstateError| vec![crate::error::chain(&e)];
    let target = &mut cx.socks.target;
    // names only: a raw dump, not every link decoded whole
    let live_names = crate::link::capture::index_names(target).map_err(err)?;
    // live addresses carry live indexes; saved ones saved indexes, mapped by name
    let ifs = IfMap::from_names(live_names.iter().cloned());
    let saved_ifs = IfMap::by_name(
        links.iter().map(|l| (l.ifindex, l.name.clone())),
        live_names,
    );
    // link-locals are IPv6: the IPv4 addresses (most of them at L) are not dumped
    let live: Vec<_> = crate::addr::capture_family(target, &ifs, crate::nla::AF_INET6)
        .map_err(err)?
        .into_iter()
        .filter(|a| crate::addr::kernel_ll(a) && ours.contains(a.ifname.as_str()))
        .collect();
    let key = |a: &crhook_proto::Address| (a.ifname.clone(), crate::addr::local_of(a).to_vec());
    let saved_keys: HashSet<_> = saved.iter().map(key).collect();
    let live_keys: HashSet<_> = live.iter().map(key).collect();
    let extra: Vec<_> = live
        .iter()
        .filter(|a| !saved_keys.contains(&key(a)))
        .collect();
    let mut reqs = Vec::new();
    let mut what = Vec::new();
    for a in &extra {
        reqs.push(crate::addr::del_request(a, &ifs).map_err(err)?);
        what.push(format!("remove kernel-made {}", crate::addr::describe(a)));
    }
    if !reqs.is_empty() {
        let results = target
            .batch(&reqs, 0, "remove kernel-made addresses")
            .map_err(err)?;
        let failed: Vec<String> = results
            .into_iter()
            .zip(&what)
            .filter_map(|(r, w)| match r {
                // gone by itself meanwhile
                Err(e) if e.errno == libc::EADDRNOTAVAIL => None,
                Err(e) => Some(format!("{w} in {}: {e}", target.netns())),
                Ok(()) => None,
            })
            .collect();
        if !failed.is_empty() {
            return Err(failed);
        }
        cx.journal.made(1);
        cx.journal.check().map_err(|e| vec![e])?;
    }
    let missing: Vec<_> = saved
        .iter()
        .filter(|a| ours.contains(a.ifname.as_str()) && !live_keys.contains(&key(a)))
        .cloned()
        .collect();
    family::apply::<Addresses>(target, Sock::Target, &missing, &saved_ifs, cx.journal)
}
