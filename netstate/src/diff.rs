//! `diff`: the live namespace against the images, with the normalisation restore uses (the
//! families' `normalize`, links by name through `link::view`). One line per difference.

use std::borrow::Cow;
use std::collections::HashSet;
use std::mem::take;

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
    let mut c = capture(ns, host, &fw, parts)?;
    c.sysctls_into_snapshot();
    Ok(c.snapshot)
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
    differences(saved, live, with_firewall)
}

/// Differences between two snapshots (saved first); their families are compared where they
/// are, not copied.
pub fn differences(
    mut saved: Snapshot,
    mut live: Snapshot,
    with_firewall: bool,
) -> Vec<Difference> {
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
    let (s, l) = (&mut saved, &mut live);
    family::diff_owned::<Addresses>(take(&mut s.addresses), take(&mut l.addresses), &mut out);
    family::diff_owned::<Nexthops>(take(&mut s.nexthops), take(&mut l.nexthops), &mut out);
    family::diff_owned::<Routes>(take(&mut s.routes), take(&mut l.routes), &mut out);
    family::diff_owned::<Rules>(take(&mut s.rules), take(&mut l.rules), &mut out);
    family::diff_owned::<Neighbours>(take(&mut s.neighbours), take(&mut l.neighbours), &mut out);
    crate::tc::diff(&saved.tc, &live.tc, &mut out);
    diff_by(
        "sysctl",
        sysctl_views(&saved.sysctls),
        sysctl_views(&live.sysctls),
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

fn sysctl_views(v: &[crhook_proto::Sysctl]) -> Vec<(String, SysctlView<'_>)> {
    v.iter()
        .map(|s| (crate::sysctl::key(s), SysctlView::of(s)))
        .collect()
}

/// A sysctl as diff compares and shows it (as `crhook_proto::Sysctl` is shown), borrowed:
/// its value normalised (`sysctl::normalize`), copied only where that changes it. Cloning
/// both sides' keys cost a diff at 1,000 links some 80 MiB.
#[derive(serde::Serialize, PartialEq)]
struct SysctlView<'a> {
    path: &'a [String],
    value: Cow<'a, str>,
}

impl<'a> SysctlView<'a> {
    fn of(s: &'a crhook_proto::Sysctl) -> Self {
        SysctlView {
            path: &s.path,
            value: crate::sysctl::normalized_cow(&s.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_values_compare_normalised_and_show_as_saved_keys_do() {
        let key = |v: &str| crhook_proto::Sysctl {
            path: vec!["ipv4".into(), "ip_local_port_range".into()],
            value: v.into(),
        };
        let (tabbed, spaced, other) = (key("32768\t60999"), key(" 32768  60999 "), key("1 2"));
        let plain = key("32768 60999");
        for k in [&tabbed, &spaced] {
            assert!(matches!(SysctlView::of(k).value, Cow::Owned(_)));
            assert!(SysctlView::of(k) == SysctlView::of(&plain));
        }
        assert!(matches!(SysctlView::of(&plain).value, Cow::Borrowed(_)));
        assert!(SysctlView::of(&other) != SysctlView::of(&plain));
        let mut normalized = tabbed.clone();
        crate::sysctl::normalize(&mut normalized);
        assert_eq!(
            serde_json::to_value(SysctlView::of(&tabbed)).ok(),
            serde_json::to_value(&normalized).ok()
        );
        let mut out = Vec::new();
        diff_by(
            "sysctl",
            vec![("k".to_string(), SysctlView::of(&tabbed))],
            vec![("k".to_string(), SysctlView::of(&other))],
            &mut out,
        );
        assert_eq!(
            out.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["sysctl k: value 32768 60999 -> 1 2"]
        );
    }
}
