//! The far end of a veth: the state that lives in the other namespace on the peer device and
//! dies with the pair when the captured namespace is deleted. Its addresses (a veth to a
//! sibling namespace with `10.77.0.2/24` there), the routes whose device it is (Calico's
//! `10.251.0.5/32 dev caliXYZ scope link`, the only route to the pod), its permanent
//! neighbours and its per-device sysctls (`proxy_arp`, `forwarding`, `rp_filter`, ...). Only
//! what depends on that one device: nothing else of the other namespace is read into the image.
//!
//! Sysctls are read from `/proc/sys/net/{ipv4,ipv6}/{conf,neigh}/DEV/` inside that namespace
//! and kept where they differ from the same key under `default` (what a new device gets), and
//! only writable ones (`stable_secret` reads EIO until set); `mtu` under ipv6/conf follows the
//! device, and the neigh keys are compared only where `neigh/default` exists (the first
//! namespace has it, others do not). The other families come from one dump per namespace, shared by every veth whose
//! peer lives there.

use std::collections::BTreeMap;
use std::path::Path;

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::netns::NetNs;
use crate::nl::Nl;

/// One namespace's addresses, routes and neighbours, dumped once.
pub struct Dumped {
    addresses: Vec<pb::Address>,
    routes: Vec<pb::Route>,
    neighbours: Vec<pb::Neighbour>,
}

/// Dumps what far ends in `ns` may own; `ifs` names that namespace's links.
pub fn dump(ns: &NetNs, ifs: &IfMap) -> Result<Dumped> {
    let name = ns.name().to_string();
    ns.run(|| {
        let mut nl = Nl::new(&name)?;
        Ok(Dumped {
            addresses: crate::addr::capture(&mut nl, ifs)?
                .into_iter()
                // the kernel makes the link-local address itself when the device comes up
                .filter(|a| !crate::addr::kernel_ll(a))
                .collect(),
            routes: crate::route::capture(&mut nl, ifs)?,
            neighbours: crate::neigh::capture(&mut nl, ifs)?,
        })
    })
}

const SYSCTL_DIRS: [(&str, &str); 4] = [
    ("ipv4", "conf"),
    ("ipv6", "conf"),
    ("ipv4", "neigh"),
    ("ipv6", "neigh"),
];

/// The writable per-device sysctls of `dev` that differ from `default`, read in `ns`.
fn sysctls(ns: &NetNs, dev: &str) -> Result<Vec<pb::Sysctl>> {
    let dev = dev.to_string();
    ns.run(move || {
        let mut out = Vec::new();
        for (family, kind) in SYSCTL_DIRS {
            let base = Path::new("/proc/sys/net").join(family).join(kind);
            let read_dir = |d: &Path| -> BTreeMap<String, String> {
                let mut m = BTreeMap::new();
                let Ok(rd) = std::fs::read_dir(d) else {
                    return m;
                };
                for e in rd.filter_map(|e| e.ok()) {
                    use std::os::unix::fs::PermissionsExt;
                    let writable = e
                        .metadata()
                        .is_ok_and(|md| md.is_file() && md.permissions().mode() & 0o200 != 0);
                    if !writable {
                        continue;
                    }
                    if let Ok(v) = std::fs::read_to_string(e.path()) {
                        m.insert(
                            e.file_name().to_string_lossy().into_owned(),
                            v.trim().to_string(),
                        );
                    }
                }
                m
            };
            let defaults = read_dir(&base.join("default"));
            if defaults.is_empty() {
                // neigh/default exists only in the first namespace: without the value a new
                // device gets, a differing one cannot be told apart
                continue;
            }
            for (k, v) in read_dir(&base.join(&dev)) {
                // the device's IPv6 MTU follows the device's own
                if (family, kind, k.as_str()) == ("ipv6", "conf", "mtu") {
                    continue;
                }
                if defaults.get(&k) != Some(&v) {
                    out.push(pb::Sysctl {
                        path: vec![family.into(), kind.into(), dev.clone(), k],
                        value: v,
                    });
                }
            }
        }
        Ok(out)
    })
}

/// The far-end state of peer device `dev` in `ns`, from that namespace's dump.
pub fn of(ns: &NetNs, d: &Dumped, dev: &str) -> Result<pb::FarEnd> {
    Ok(pb::FarEnd {
        addresses: d
            .addresses
            .iter()
            .filter(|a| a.ifname == dev)
            .cloned()
            .collect(),
        routes: d
            .routes
            .iter()
            .filter(|r| r.oif_name == dev)
            .cloned()
            .collect(),
        neighbours: d
            .neighbours
            .iter()
            .filter(|n| n.ifname == dev)
            .cloned()
            .collect(),
        sysctls: sysctls(ns, dev)?,
    })
}

/// The far end as `diff` and restore's plan compare it: each object as a person names it,
/// sorted (routes normalised like their family: no cache info, no ifindexes).
pub fn view(f: &pb::FarEnd) -> serde_json::Value {
    let mut addresses: Vec<String> = f.addresses.iter().map(crate::addr::describe).collect();
    let mut routes: Vec<String> = f
        .routes
        .iter()
        .map(|r| {
            let mut c = r.clone();
            crate::route::normalize(&mut c);
            crate::route::describe(&c)
        })
        .collect();
    let mut neighbours: Vec<String> = f.neighbours.iter().map(crate::neigh::describe).collect();
    let mut sysctls: Vec<String> = f
        .sysctls
        .iter()
        .map(|s| format!("{}={}", s.path.join("."), s.value))
        .collect();
    for v in [&mut addresses, &mut routes, &mut neighbours, &mut sysctls] {
        v.sort();
    }
    serde_json::json!({
        "addresses": addresses,
        "routes": routes,
        "neighbours": neighbours,
        "sysctls": sysctls,
    })
}
