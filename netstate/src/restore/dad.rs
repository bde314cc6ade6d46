//! Addresses usable the moment restore returns: no duplicate address detection for what had
//! passed it.
//!
//! An IPv6 address added while its link is down is marked tentative, and DAD runs when the
//! link comes up: for one to two seconds `bind()` to it fails with EADDRNOTAVAIL, while CRIU
//! restores sockets right after its `setup-namespaces` action and a runtime starts the
//! container right after `createRuntime`. The kernel skips DAD when both
//! `net.ipv6.conf.all.accept_dad` and the device's `accept_dad` are below 1, but it decides
//! once, in `addrconf_dad_begin`, when the address is added (on a down link the address then
//! waits in state DAD, and link up resumes the probes without asking again). So restore sets
//! both to 0 before it adds addresses and keeps them there while links come up (the
//! link-local address the kernel makes at up asks then), then writes back what the early
//! sysctl phase left there (the saved values). Sending IFA_F_NODAD alone
//! would work too, but the flag stays on the address (`ip -6 addr` shows `nodad`), which the
//! original did not have; restore sends it and then replaces the address with its saved
//! flags, which clears it, because a tentative address that skips DAD makes the kernel walk
//! the whole IPv6 FIB (see `v6_addresses` in apply.rs). Devices with an address that was itself tentative or had failed DAD
//! at checkpoint keep DAD. The link-local address the kernel makes at link up skips DAD the
//! same way.
//!
//! The links whose link-locals restore adds itself (`links/ll.rs`, address generation off
//! while they come up) are suspended too: the kernel may still make a link-local on one of
//! them as a carrier comes after its mode is back (a fresh-clone CI run found one tentative
//! right after restore when they were left out).

use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

/// Devices whose saved addresses include one that was tentative or had failed DAD at
/// checkpoint: those keep DAD.
pub fn keeps<'a>(addresses: impl IntoIterator<Item = &'a crhook_proto::Address>) -> Vec<&'a str> {
    let mut v: Vec<&str> = addresses
        .into_iter()
        .filter(|a| a.flags & (crate::addr::IFA_F_TENTATIVE | crate::addr::IFA_F_DADFAILED) != 0)
        .map(|a| a.ifname.as_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The devices to restore without DAD: every saved link but lo, and every device a saved
/// IPv6 address is on, less `keep` (see [`keeps`]).
pub fn devices(
    links: &[crhook_proto::Link],
    addresses: &[crhook_proto::Address],
    keep: &[String],
) -> Vec<String> {
    let mut v: Vec<String> = addresses
        .iter()
        .filter(|a| a.family == libc::AF_INET6 as u32)
        .map(|a| a.ifname.clone())
        .chain(
            links
                .iter()
                .filter(|l| l.flags & libc::IFF_LOOPBACK as u32 == 0)
                .map(|l| l.name.clone()),
        )
        .filter(|n| !keep.contains(n))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The indexes of the links with carrier (IFF_LOWER_UP), from a link dump read raw (only
/// each message's header is looked at).
fn with_carrier(nl: &mut crate::nl::Nl) -> Result<std::collections::HashSet<u32>> {
    let carrier =
        |index, flags: u32, _: &[u8]| (flags & libc::IFF_LOWER_UP as u32 != 0).then_some(index);
    Ok(crate::link::capture::raw(nl, "dump links", carrier)?
        .into_iter()
        .collect())
}

fn path(dev: &str) -> std::path::PathBuf {
    std::path::Path::new("/proc/sys/net/ipv6/conf")
        .join(dev)
        .join("accept_dad")
}

/// The accept_dad values changed, to write back.
#[derive(Debug, Default)]
pub struct Suspended {
    saved: Vec<(String, String)>,
}

impl Suspended {
    /// Whether nothing was changed (nothing to wait for, nothing to write back).
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty()
    }
}

/// Sets accept_dad to 0 on `devices` and on `all`, remembering what was there. A device
/// without IPv6 (no such file) is skipped.
pub fn suspend(ns: &NetNs, devices: &[String], log: &crate::journal::Log) -> Result<Suspended> {
    if devices.is_empty() {
        return Ok(Suspended::default());
    }
    let log = log.clone();
    let devs: Vec<String> = std::iter::once("all".to_string())
        .chain(devices.iter().cloned())
        .collect();
    ns.run(move || {
        let mut s = Suspended::default();
        for d in devs {
            let p = path(&d);
            let Ok(v) = std::fs::read_to_string(&p) else {
                continue;
            };
            let v = v.trim().to_string();
            if v == "0" || v.starts_with('-') {
                continue;
            }
            // in the journal first: a restore killed now leaves DAD off otherwise
            let key = ["ipv6", "conf", d.as_str(), "accept_dad"].map(String::from);
            log.sysctl(crate::journal::Sock::Target, &key, &v)?;
            crate::floor::sysctl(&p, "0");
            std::fs::write(&p, "0").map_err(|source| NetstateError::Io {
                op: "suspend duplicate address detection: write".into(),
                path: p.clone(),
                source,
            })?;
            s.saved.push((d, v));
        }
        Ok(s)
    })
}

/// Links up with carrier and IPv6 on, each with whether the kernel's address configuration
/// has taken it as ready (IF_READY in IFLA_INET6_FLAGS): it sets that in the same RTNL
/// section in which it makes the link's own link-local, after link up, when the link's
/// carrier work has run.
fn carrier_links(nl: &mut crate::nl::Nl) -> Result<Vec<(u32, bool)>> {
    const IFLA_AF_SPEC: u16 = 26;
    const IFLA_INET6_FLAGS: u16 = 1;
    const IFLA_INET6_CONF: u16 = 2;
    const DEVCONF_DISABLE_IPV6: usize = 26;
    const IF_READY: u32 = 0x8000_0000;
    let up = (libc::IFF_UP | libc::IFF_LOWER_UP) as u32;
    fn find(buf: &[u8], ty: u16) -> Option<crate::nla::Attr<'_>> {
        crate::nla::attrs(buf)
            .map_while(|a| a.ok())
            .find(|a| a.ty() == ty)
    }
    crate::link::capture::raw(nl, "dump links", |index, flags, attrs| {
        if flags & up != up {
            return None;
        }
        let inet6 = find(find(attrs, IFLA_AF_SPEC)?.value, libc::AF_INET6 as u16)?;
        let ready = find(inet6.value, IFLA_INET6_FLAGS)
            .is_some_and(|a| a.u32().is_ok_and(|f| f & IF_READY != 0));
        let off = find(inet6.value, IFLA_INET6_CONF).is_some_and(|c| {
            let at = DEVCONF_DISABLE_IPV6 * 4;
            c.value.len() >= at + 4 && crate::nla::u32_at(c.value, at) != 0
        });
        (!off).then_some((index, ready))
    })
}

/// Waits (up to 1 s) for the kernel's address configuration and DAD work, which run after
/// the link-up request returns and read accept_dad when they run, to finish on every device
/// not in `keep`: writing accept_dad back before then would start DAD after all. Only
/// devices with carrier count: on one without (a tap nobody holds yet) the kernel starts no
/// DAD until carrier comes, and its addresses stay tentative whatever restore does. Done
/// when none of their addresses is tentative and every such device whose link-local the
/// kernel makes is ready (its own link-local made, see [`carrier_links`]; without that wait
/// a link-local the kernel made after the settle looked was tentative right after restore,
/// 1 run in 15 of the `usable` tests).
///
/// The devices of `own_ll` are not waited for: restore added their saved link-local itself,
/// so what the kernel makes once it takes one as ready is that address, there already and
/// not tentative (the kernel finds it exists), and the addresses already there are not
/// tentative either, which is all DAD would look at then. The kernel takes a device as ready
/// when the link watcher has handled its carrier; it handles some changes (a bridge's, whose
/// carrier follows its ports) at most once a second, and waiting for those made the settle
/// poll for its whole second on 140 of the 300 bridges at L, dumping every link each time.
pub fn settle(
    nl: &mut crate::nl::Nl,
    ifs: &crate::ifmap::IfMap,
    keep: &[&str],
    own_ll: &std::collections::HashSet<u32>,
) -> Result<()> {
    const IFA_F_TENTATIVE: u8 = 0x40;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let req = crate::nl::Req::Raw {
        msg_type: crate::addr::RTM_GETADDR,
        payload: vec![libc::AF_INET6 as u8, 0, 0, 0, 0, 0, 0, 0],
    };
    let counts = |i: u32| !ifs.live_name(i).is_some_and(|n| keep.contains(&n));
    loop {
        let links = carrier_links(nl)?;
        let unready = links
            .iter()
            .any(|&(i, ready)| !ready && counts(i) && !own_ll.contains(&i));
        let carrier: std::collections::HashSet<u32> = links.iter().map(|&(i, _)| i).collect();
        let tentative = nl
            .dump_raw(&req, "dump IPv6 addresses")?
            .iter()
            .any(|(ty, p)| {
                *ty == crate::addr::RTM_NEWADDR
                    && p.len() >= 8
                    && p[2] & IFA_F_TENTATIVE != 0
                    && carrier.contains(&crate::nla::u32_at(p, 4))
                    && counts(crate::nla::u32_at(p, 4))
            });
        if !(unready || tentative) || std::time::Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Writes back what [`suspend`] changed; every error is returned, none stops the others.
pub fn resume(ns: &NetNs, s: Suspended) -> Vec<String> {
    if s.saved.is_empty() {
        return Vec::new();
    }
    match ns.run(move || {
        let mut errors = Vec::new();
        for (d, v) in s.saved {
            let p = path(&d);
            // a device deleted meanwhile (rollback) has nothing to write back
            if p.exists() {
                crate::floor::sysctl(&p, &v);
                if let Err(e) = std::fs::write(&p, &v) {
                    errors.push(format!("write back {}: {e}", p.display()));
                }
            }
        }
        Ok(errors)
    }) {
        Ok(e) => e,
        Err(e) => vec![crate::error::chain(&e)],
    }
}

/// For `restore --verify`: IPv6 addresses on a device with carrier that are tentative now
/// though they were not at checkpoint (normalised comparison ignores the flag, so `diff`
/// cannot see it).
pub fn tentative_now(
    nl: &mut crate::nl::Nl,
    saved: &[crhook_proto::Address],
) -> Result<Vec<String>> {
    let ready = with_carrier(nl)?;
    let ifs = crate::ifmap::IfMap::from_names(crate::link::capture::index_names(nl)?);
    let was_tentative: std::collections::HashSet<String> = saved
        .iter()
        .filter(|a| a.flags & crate::addr::IFA_F_TENTATIVE != 0)
        .map(crate::addr::key)
        .collect();
    Ok(crate::addr::capture(nl, &ifs)?
        .iter()
        .filter(|a| {
            a.flags & crate::addr::IFA_F_TENTATIVE != 0
                && ready.contains(&a.ifindex)
                && !was_tentative.contains(&crate::addr::key(a))
        })
        .map(|a| {
            format!(
                "{} is tentative (it was not at checkpoint)",
                crate::addr::describe(a)
            )
        })
        .collect())
}
