//! `diff`: the live namespace against the images, with the normalisation restore uses (the
//! families' `normalize`, links by name through `link::view`). One line per difference.

use std::collections::HashSet;

use crate::api::{DiffOptions, Difference, FirewallOptions};
use crate::capture_all::{capture, Parts};
use crate::error::Result;
use crate::family::{self, diff_by, Addresses, Neighbours, Nexthops, Routes, Rules};
use crate::link::view::{names, view};
use crate::netns::{NetNs, Target};
use crate::snapshot::Snapshot;

pub fn run(
    target: &Target,
    images: &std::path::Path,
    opts: &DiffOptions,
) -> Result<Vec<Difference>> {
    crate::progress::step(&format!("read {}", images.display()));
    let dir = crate::snapshot::open_unchanged(images, "diff")?;
    let saved = Snapshot::read(&dir)?;
    let ns = NetNs::open(target)?;
    crate::progress::step(&format!("capture {}", ns.name()));
    let host = NetNs::current()?;
    compare_with(&ns, &host, saved, opts)
}

/// The live namespace against `saved` after the same transforms restore makes (adopt,
/// remap): a remapped restore diffs identical. Adopted links' own records are the runtime's
/// and not compared; everything on them is.
pub fn compare_with(
    ns: &NetNs,
    host: &NetNs,
    mut saved: Snapshot,
    opts: &DiffOptions,
) -> Result<Vec<Difference>> {
    let fw = &opts.firewall;
    let live = capture_live(ns, host, &saved, fw)?;
    let t = crate::transform::apply(
        &mut saved,
        &live.links,
        &live.addresses,
        &opts.adopt,
        &opts.remaps,
    )?;
    Ok(differences_adopted(saved, live, !fw.skip, &t.adopted_set()))
}

fn capture_live(
    ns: &NetNs,
    host: &NetNs,
    saved: &Snapshot,
    fw: &FirewallOptions,
) -> Result<Snapshot> {
    let parts = Parts {
        firewall: !fw.skip,
        sysctls: true,
        routes_encoded: false,
    };
    // an image from before nfnetlink capture is compared with the live state as the tools
    // print it
    let mut fw = fw.clone();
    fw.nft_text |= !saved.firewall.is_empty()
        && !saved
            .firewall
            .iter()
            .any(|r| r.source == crhook_proto::FirewallSource::Nftables as i32);
    Ok(capture(ns, host, &fw, parts)?.snapshot)
}

/// The live namespace against `saved` as it is (already transformed); `adopted` links' own
/// records are left out of the comparison.
pub fn compare(
    ns: &NetNs,
    host: &NetNs,
    saved: &Snapshot,
    fw: &FirewallOptions,
    adopted: &HashSet<String>,
) -> Result<Vec<Difference>> {
    let live = capture_live(ns, host, saved, fw)?;
    Ok(differences_adopted(saved.clone(), live, !fw.skip, adopted))
}

fn differences_adopted(
    mut saved: Snapshot,
    mut live: Snapshot,
    with_firewall: bool,
    adopted: &HashSet<String>,
) -> Vec<Difference> {
    // kernel-made link-local addresses count where the image tracks them (see addr/mod.rs),
    // and never on an adopted link, whose addresses the runtime's MAC decides
    let tracked: HashSet<&str> = saved
        .links
        .iter()
        .filter(|l| l.ll_tracked && !adopted.contains(&l.name))
        .map(|l| l.name.as_str())
        .collect();
    let keep = |a: &crhook_proto::Address| {
        !crate::addr::kernel_ll(a) || tracked.contains(a.ifname.as_str())
    };
    let saved_addrs = std::mem::take(&mut saved.addresses);
    saved.addresses = saved_addrs.into_iter().filter(|a| keep(a)).collect();
    live.addresses.retain(|a| keep(a));
    let by_name: std::collections::HashMap<&str, &crhook_proto::Link> =
        saved.links.iter().map(|l| (l.name.as_str(), l)).collect();
    for l in &mut live.links {
        if let Some(s) = by_name.get(l.name.as_str()) {
            crate::link::view::forget_unknown_far_end(s, l);
            crate::ethtool::forget_unrecorded(s, l);
        }
    }
    crate::transform::drop_adopted_links(&mut saved.links, adopted);
    crate::transform::drop_adopted_links(&mut live.links, adopted);
    differences(&saved, &live, with_firewall)
}

/// Differences between two snapshots (saved first).
pub fn differences(saved: &Snapshot, live: &Snapshot, with_firewall: bool) -> Vec<Difference> {
    let mut out = Vec::new();
    let (sn, ln) = (names(&saved.links), names(&live.links));
    diff_by(
        "link",
        saved
            .links
            .iter()
            .map(|l| (l.name.clone(), view(l, &sn)))
            .collect(),
        live.links
            .iter()
            .map(|l| (l.name.clone(), view(l, &ln)))
            .collect(),
        &mut out,
    );
    crate::ethtool::diff(&saved.links, &live.links, &mut out);
    family::diff::<Addresses>(&saved.addresses, &live.addresses, &mut out);
    family::diff::<Nexthops>(&saved.nexthops, &live.nexthops, &mut out);
    family::diff::<Routes>(&saved.routes, &live.routes, &mut out);
    family::diff::<Rules>(&saved.rules, &live.rules, &mut out);
    family::diff::<Neighbours>(&saved.neighbours, &live.neighbours, &mut out);
    crate::tc::diff(&saved.tc, &live.tc, &mut out);
    let norm = |v: &[crhook_proto::Sysctl]| -> Vec<(String, crhook_proto::Sysctl)> {
        v.iter()
            .map(|s| {
                let mut c = s.clone();
                crate::sysctl::normalize(&mut c);
                (crate::sysctl::key(&c), c)
            })
            .collect()
    };
    diff_by(
        "sysctl",
        norm(&saved.sysctls),
        norm(&live.sysctls),
        &mut out,
    );
    // link flags as `ip link` names them, not as a number
    for d in out
        .iter_mut()
        .filter(|d| d.kind == "link" && d.field == "flags")
    {
        d.saved = crate::fields::link_flags(&d.saved);
        d.live = crate::fields::link_flags(&d.live);
    }
    if with_firewall {
        out.extend(crate::firewall::diff(&saved.firewall, &live.firewall));
    }
    out
}
