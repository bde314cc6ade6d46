//! An independent view of a namespace, for comparing two of them without crhook's code.
//!
//! Everything is read with iproute2 (`ip -d -j link`, `ip -j addr`, `ip -j route show table
//! all` for both families, `ip -j rule`, `ip -j neigh show nud all` and `proxy`) and one
//! `grep -r` over `/proc/sys/net` inside the namespace, then normalised so that only state a
//! restore is responsible for remains:
//! - links keep their ifindex (crhook pins them) but lose `operstate` (it lags carrier
//!   changes), the qdisc of a down link (noop before the first up, the default after), `link_netnsid` (ids are assigned per pair of namespaces on first use), STP
//!   timers and state of bridges and bridge ports, and learned-entry counters;
//! - finite address lifetimes become `"finite"` (they count down), `forever` stays;
//! - routes lose `expires` and `cache`; a locked metric is invisible in `ip -j` (iproute2
//!   prints "lock" in text only), so the text lines with `lock` are kept too;
//! - neighbours: only PERMANENT and NOARP entries, without the NOARP entries the kernel makes
//!   itself for multicast, broadcast and unspecified destinations;
//! - sysctls: every readable key, minus a few that are counters or per-namespace random.
//!
//! Three things finish asynchronously after links change and must be over before a capture,
//! or two identical namespaces look different: linkwatch (a carrier change reaches the
//! RUNNING flag, operstate and the LINKDOWN flag of routes up to a second later), IPv6 DAD
//! (an address is `tentative` and its local route missing for about a second) and STP (ports
//! pass listening and learning, and while a bridge's topology change is flagged the kernel
//! reports its ageing time as twice the forward delay instead of the configured value).
//! [`settle`] waits for all three.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ns::{check_output, TestNs};

/// Bridge attributes that are timers, STP state or counters, not configuration.
const BRIDGE_DYNAMIC: &[&str] = &[
    "hello_timer",
    "tcn_timer",
    "topology_change_timer",
    "gc_timer",
    "topology_change",
    "topology_change_detected",
    "root_port",
    "root_path_cost",
    "fdb_n_learned",
];

/// Bridge port attributes that are timers, STP state or counters.
const PORT_DYNAMIC: &[&str] = &[
    "state",
    "hold_timer",
    "message_age_timer",
    "forward_delay_timer",
    "topology_change_ack",
    "config_pending",
    "designated_port",
    "designated_cost",
    "designated_bridge",
    "designated_root",
    "mcast_n_groups",
    "mcast_eht_hosts_cnt",
];

/// Link attributes that change without anyone configuring them.
const LINK_DYNAMIC: &[&str] = &["operstate", "link_netnsid", "stats", "stats64"];

/// Sysctl keys (below /proc/sys/net, `/`-separated) that legitimately differ between two
/// namespaces configured alike: counters, and keys the kernel fills with random data per
/// namespace on first use. A `*` matches one path component.
pub const SYSCTL_IGNORED: &[&str] = &[
    "netfilter/nf_conntrack_count",
    "ipv4/tcp_fastopen_key",
    "ipv6/conf/*/stable_secret",
];

/// The normalised state of one namespace. Serialisable, so a test can keep the state of a
/// namespace it is about to delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NsState {
    /// the namespace it was read from (not compared)
    pub name: String,
    /// `ip -d -j link`, by ifname
    pub links: BTreeMap<String, Value>,
    /// `ip -j addr`'s addr_info, by ifname, in the kernel's order
    pub addrs: BTreeMap<String, Vec<Value>>,
    /// v4 and v6 routes of every table, sorted (a multiset)
    pub routes: Vec<Value>,
    /// text lines of routes with a locked metric, sorted
    pub route_locks: Vec<String>,
    /// v4 rules in the kernel's order (it matters for equal priorities)
    pub rules4: Vec<Value>,
    pub rules6: Vec<Value>,
    /// permanent and noarp neighbours, sorted
    pub neighbours: Vec<Value>,
    /// proxy neighbours, sorted
    pub proxies: Vec<Value>,
    /// every readable key below /proc/sys/net but [`SYSCTL_IGNORED`]
    pub sysctls: BTreeMap<String, String>,
}

impl NsState {
    /// Waits for the namespace to [`settle`], then reads it.
    pub fn capture(ns: &TestNs) -> NsState {
        settle(ns);
        Self::capture_now(ns)
    }

    /// Reads the namespace as it is, without waiting for DAD or STP.
    pub fn capture_now(ns: &TestNs) -> NsState {
        let links = as_array(ip_json(ns, &["-d", "link", "show"]))
            .into_iter()
            .map(|l| (name_of(&l), normalize_link(l)))
            .collect();
        let addrs = as_array(ip_json(ns, &["addr", "show"]))
            .into_iter()
            .map(|l| {
                let info = as_array(l.get("addr_info").cloned().unwrap_or(Value::Null));
                (name_of(&l), info.into_iter().map(normalize_addr).collect())
            })
            .collect();
        let mut routes: Vec<Value> =
            as_array(ip_json(ns, &["-4", "route", "show", "table", "all"]))
                .into_iter()
                .chain(as_array(ip_json(
                    ns,
                    &["-6", "route", "show", "table", "all"],
                )))
                .map(normalize_route)
                .collect();
        sort_values(&mut routes);
        let mut route_locks: Vec<String> = ["-4", "-6"]
            .iter()
            .flat_map(|fam| {
                ns.ip(&[fam, "route", "show", "table", "all"])
                    .lines()
                    .filter(|l| l.contains(" lock "))
                    .map(|l| format!("{fam} {}", l.trim()))
                    .collect::<Vec<_>>()
            })
            .collect();
        route_locks.sort();
        let rules4 = as_array(ip_json(ns, &["-4", "rule", "show"]));
        let rules6 = as_array(ip_json(ns, &["-6", "rule", "show"]));
        let mut neighbours: Vec<Value> = as_array(ip_json(ns, &["neigh", "show", "nud", "all"]))
            .into_iter()
            .filter(user_neighbour)
            .collect();
        sort_values(&mut neighbours);
        let mut proxies = as_array(ip_json(ns, &["neigh", "show", "proxy"]));
        sort_values(&mut proxies);
        NsState {
            name: ns.name().to_string(),
            links,
            addrs,
            routes,
            route_locks,
            rules4,
            rules6,
            neighbours,
            proxies,
            sysctls: sysctls(ns),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("NsState serialises")
    }

    pub fn from_json(s: &str) -> NsState {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("parse saved NsState: {e}"))
    }

    /// ifindex of every link, by name.
    pub fn ifindexes(&self) -> BTreeMap<String, u64> {
        self.links
            .iter()
            .filter_map(|(n, l)| Some((n.clone(), l.get("ifindex")?.as_u64()?)))
            .collect()
    }
}

/// `ip -n NS -j ARGS...` parsed. An empty answer (some `ip` versions print nothing for an
/// empty list) is an empty array.
pub fn ip_json(ns: &TestNs, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    let out = ns.ip(&full);
    if out.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!(
            "ip -n {} {}: bad JSON: {e}\n{out}",
            ns.name(),
            full.join(" ")
        )
    })
}

fn as_array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

fn name_of(link: &Value) -> String {
    link.get("ifname")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

fn sort_values(v: &mut [Value]) {
    v.sort_by_cached_key(|x| x.to_string());
}

fn remove_keys(v: &mut Value, keys: &[&str]) {
    if let Value::Object(m) = v {
        for k in keys {
            m.remove(*k);
        }
    }
}

/// Drops what changes by itself from one `ip -d -j link` entry.
pub fn normalize_link(mut l: Value) -> Value {
    remove_keys(&mut l, LINK_DYNAMIC);
    let up = l
        .get("flags")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == "UP"));
    if !up {
        // A link never up shows qdisc "noop"; once up and down again it keeps the default
        // qdisc it was given (noqueue, pfifo_fast...), which is attached again on the next up
        // either way. On a down link the two mean the same.
        remove_keys(&mut l, &["qdisc"]);
    }
    if let Some(info) = l.get_mut("linkinfo") {
        let is_bridge = info_kind(info) == Some("bridge");
        if let Some(d) = info.get_mut("info_data") {
            if is_bridge {
                remove_keys(d, BRIDGE_DYNAMIC);
            }
        }
        if let Some(d) = info.get_mut("info_slave_data") {
            remove_keys(d, PORT_DYNAMIC);
        }
    }
    l
}

fn info_kind(info: &Value) -> Option<&str> {
    info.get("info_kind").and_then(Value::as_str)
}

/// Finite lifetimes count down; keep only whether they are finite.
pub fn normalize_addr(mut a: Value) -> Value {
    if let Value::Object(m) = &mut a {
        for k in ["valid_life_time", "preferred_life_time"] {
            if let Some(v) = m.get_mut(k) {
                if v.as_u64() != Some(u64::from(u32::MAX)) {
                    *v = Value::String("finite".into());
                }
            }
        }
    }
    a
}

pub fn normalize_route(mut r: Value) -> Value {
    remove_keys(&mut r, &["expires", "cache"]);
    r
}

/// Permanent and noarp entries a user made, not the kernel's own noarp entries for
/// multicast, broadcast and unspecified destinations (made whenever such a packet leaves).
fn user_neighbour(n: &Value) -> bool {
    let states: Vec<&str> = n
        .get("state")
        .and_then(Value::as_array)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let permanent = states.contains(&"PERMANENT");
    let noarp = states.contains(&"NOARP");
    if permanent {
        return true;
    }
    if !noarp {
        return false;
    }
    match n
        .get("dst")
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<std::net::IpAddr>().ok())
    {
        Some(std::net::IpAddr::V4(a)) => {
            !(a.is_multicast() || a.is_broadcast() || a.is_unspecified())
        }
        Some(std::net::IpAddr::V6(a)) => !(a.is_multicast() || a.is_unspecified()),
        None => true,
    }
}

fn sysctl_ignored(key: &str) -> bool {
    SYSCTL_IGNORED.iter().any(|pat| {
        let p: Vec<&str> = pat.split('/').collect();
        let k: Vec<&str> = key.split('/').collect();
        p.len() == k.len() && p.iter().zip(&k).all(|(p, k)| *p == "*" || p == k)
    })
}

/// Every readable file under /proc/sys/net inside `ns`, keyed by its path below
/// /proc/sys/net, read by one `grep -r` (a shell loop spawning `cat` per file is 100x slower
/// with a few thousand keys). Interface names cannot contain ':' or '/', so the first ':' of
/// each line ends the path. Multi-line values are joined with '\n'; write-only and
/// unreadable files (EACCES, EIO) are skipped, the same way on both sides of a comparison.
pub fn sysctls(ns: &TestNs) -> BTreeMap<String, String> {
    // grep exits 2 when some file was unreadable even with -s; that is expected here.
    let out = ns.exec(&["grep", "-r", "-s", "-H", "-a", "", "/proc/sys/net"]);
    if out.stdout.is_empty() {
        check_output(&format!("grep /proc/sys/net in {}", ns.name()), &out);
        panic!("grep /proc/sys/net in {}: no output", ns.name());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let Some((path, value)) = line.split_once(':') else {
            continue;
        };
        let Some(key) = path.strip_prefix("/proc/sys/net/") else {
            continue;
        };
        if sysctl_ignored(key) {
            continue;
        }
        map.entry(key.to_string())
            .and_modify(|v| {
                v.push('\n');
                v.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    map
}

/// `Ok` when no carrier change, DAD or STP transition is pending in `ns` (see the module doc);
/// otherwise what is still pending.
pub fn is_settled(ns: &TestNs) -> Result<(), String> {
    let links = as_array(ip_json(ns, &["-d", "link", "show"]));
    for l in &links {
        let name = name_of(l);
        let flags: Vec<&str> = l
            .get("flags")
            .and_then(Value::as_array)
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let operstate = l.get("operstate").and_then(Value::as_str).unwrap_or("");
        if flags.contains(&"UP") {
            // LOWER_UP is the carrier now; RUNNING (shown as the absence of NO-CARRIER) and
            // the LINKDOWN flag of routes follow it only when linkwatch runs, up to a second
            // later.
            let lower = flags.contains(&"LOWER_UP");
            let no_carrier = flags.contains(&"NO-CARRIER");
            if (!lower && !no_carrier) || (lower && no_carrier && operstate == "DOWN") {
                return Err(format!("link {name}: carrier change not yet propagated"));
            }
        }
        let info = l.get("linkinfo");
        if let Some(d) = info.and_then(|i| i.get("info_data")) {
            let is_bridge = info.and_then(info_kind) == Some("bridge");
            let stp = d.get("stp_state").and_then(Value::as_u64).unwrap_or(0) != 0;
            if is_bridge && stp {
                for k in ["topology_change", "topology_change_detected"] {
                    if d.get(k).and_then(Value::as_u64).unwrap_or(0) != 0 {
                        return Err(format!("bridge {name}: {k}"));
                    }
                }
            }
        }
        if let Some(s) = info
            .and_then(|i| i.get("info_slave_data"))
            .and_then(|d| d.get("state"))
            .and_then(Value::as_str)
        {
            if s == "listening" || s == "learning" {
                return Err(format!("bridge port {name}: {s}"));
            }
        }
    }
    for l in as_array(ip_json(ns, &["addr", "show"])) {
        let carrier = l
            .get("flags")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == "LOWER_UP"));
        if !carrier {
            // Without carrier DAD never starts; the address stays tentative on both sides.
            continue;
        }
        for a in as_array(l.get("addr_info").cloned().unwrap_or(Value::Null)) {
            if a.get("tentative").and_then(Value::as_bool) == Some(true) {
                return Err(format!("{} {} tentative", name_of(&l), a["local"]));
            }
        }
    }
    Ok(())
}

/// Waits (up to 60 s) until [`is_settled`]: carrier changes propagated, DAD done on every
/// link with carrier, STP ports out of listening/learning and no topology change flagged.
pub fn settle(ns: &TestNs) {
    let start = std::time::Instant::now();
    loop {
        let last = match is_settled(ns) {
            Ok(()) => return,
            Err(e) => e,
        };
        if start.elapsed() > Duration::from_secs(60) {
            panic!("namespace {} did not settle within 60 s: {last}", ns.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Captures both namespaces (each after it settles) and compares them.
pub fn compare_namespaces(a: &TestNs, b: &TestNs) -> Vec<String> {
    compare_states(&NsState::capture(a), &NsState::capture(b))
}

/// Readable differences between two states, one per line: `what: <a> | <b>`. Empty when
/// they are the same.
pub fn compare_states(a: &NsState, b: &NsState) -> Vec<String> {
    let mut out = Vec::new();
    compare_maps("link", &a.links, &b.links, &mut out, |p, x, y, o| {
        diff_json(p, x, y, o)
    });
    compare_maps(
        "addresses of",
        &a.addrs,
        &b.addrs,
        &mut out,
        |p, x, y, o| {
            if x.len() == y.len() {
                for (i, (xa, ya)) in x.iter().zip(y).enumerate() {
                    diff_json(&format!("{p}[{i}] {}", addr_name(xa)), xa, ya, o);
                }
            } else {
                o.push(format!(
                    "{p}: {} | {}",
                    x.iter().map(addr_name).collect::<Vec<_>>().join(" "),
                    y.iter().map(addr_name).collect::<Vec<_>>().join(" ")
                ));
            }
        },
    );
    compare_multisets("route", &a.routes, &b.routes, &mut out);
    compare_multisets("locked route", &a.route_locks, &b.route_locks, &mut out);
    compare_ordered("ipv4 rules", &a.rules4, &b.rules4, &mut out);
    compare_ordered("ipv6 rules", &a.rules6, &b.rules6, &mut out);
    compare_multisets("neighbour", &a.neighbours, &b.neighbours, &mut out);
    compare_multisets("proxy neighbour", &a.proxies, &b.proxies, &mut out);
    // The per-device keys of a link that exists on one side only would bury everything
    // else; the link's own line already says it is missing.
    let one_sided: Vec<&String> = a
        .links
        .keys()
        .filter(|k| !b.links.contains_key(*k))
        .chain(b.links.keys().filter(|k| !a.links.contains_key(*k)))
        .collect();
    let per_device = |key: &str| {
        let c: Vec<&str> = key.split('/').collect();
        c.len() > 3 && (c[1] == "conf" || c[1] == "neigh") && one_sided.iter().any(|l| *l == c[2])
    };
    let mut hidden = 0usize;
    compare_maps("sysctl", &a.sysctls, &b.sysctls, &mut out, |p, x, y, o| {
        if x != y {
            o.push(format!("{p}: {x:?} | {y:?}"));
        }
    });
    out.retain(|d| {
        let hide = d
            .strip_prefix("sysctl ")
            .and_then(|r| r.split(':').next())
            .is_some_and(&per_device);
        hidden += usize::from(hide);
        !hide
    });
    if hidden > 0 {
        out.push(format!(
            "({hidden} per-device sysctls of links present on one side only not listed)"
        ));
    }
    out
}

fn addr_name(a: &Value) -> String {
    format!(
        "{}/{}",
        a.get("local").and_then(Value::as_str).unwrap_or("?"),
        a.get("prefixlen").map(Value::to_string).unwrap_or_default()
    )
}

fn compare_maps<T>(
    what: &str,
    a: &BTreeMap<String, T>,
    b: &BTreeMap<String, T>,
    out: &mut Vec<String>,
    mut each: impl FnMut(&str, &T, &T, &mut Vec<String>),
) {
    for (k, x) in a {
        match b.get(k) {
            Some(y) => each(&format!("{what} {k}"), x, y, out),
            None => out.push(format!("{what} {k}: present | missing")),
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        out.push(format!("{what} {k}: missing | present"));
    }
}

fn compare_multisets<T: PartialEq + std::fmt::Display>(
    what: &str,
    a: &[T],
    b: &[T],
    out: &mut Vec<String>,
) {
    let mut rest: Vec<&T> = b.iter().collect();
    for x in a {
        match rest.iter().position(|y| *y == x) {
            Some(i) => {
                rest.remove(i);
            }
            None => out.push(format!("{what} {x}: present | missing")),
        }
    }
    for y in rest {
        out.push(format!("{what} {y}: missing | present"));
    }
}

fn compare_ordered(what: &str, a: &[Value], b: &[Value], out: &mut Vec<String>) {
    if a != b {
        let show = |v: &[Value]| {
            v.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(format!("{what}: [{}] | [{}]", show(a), show(b)));
    }
}

/// Field-by-field difference of two JSON values, naming the path of each.
pub fn diff_json(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, xv) in x {
                match y.get(k) {
                    Some(yv) => diff_json(&format!("{path}.{k}"), xv, yv, out),
                    None => out.push(format!("{path}.{k}: {xv} | missing")),
                }
            }
            for (k, yv) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: missing | {yv}"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (xv, yv)) in x.iter().zip(y).enumerate() {
                diff_json(&format!("{path}[{i}]"), xv, yv, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} | {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finite_lifetimes_compare_equal_forever_does_not() {
        let a = normalize_addr(json!({"local": "10.0.0.1", "valid_life_time": 3574u64}));
        let b = normalize_addr(json!({"local": "10.0.0.1", "valid_life_time": 3590u64}));
        let c = normalize_addr(json!({"local": "10.0.0.1", "valid_life_time": 4294967295u64}));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn kernel_multicast_noarp_entries_are_not_user_state() {
        assert!(!user_neighbour(
            &json!({"dst": "ff02::16", "state": ["NOARP"]})
        ));
        assert!(!user_neighbour(
            &json!({"dst": "224.0.0.22", "state": ["NOARP"]})
        ));
        assert!(!user_neighbour(
            &json!({"dst": "0.0.0.0", "state": ["NOARP"]})
        ));
        assert!(user_neighbour(
            &json!({"dst": "10.4.0.9", "state": ["NOARP"]})
        ));
        assert!(user_neighbour(
            &json!({"dst": "ff02::16", "state": ["PERMANENT"]})
        ));
        assert!(!user_neighbour(
            &json!({"dst": "10.4.0.2", "state": ["FAILED"]})
        ));
    }

    #[test]
    fn bridge_timers_are_dropped_settings_kept() {
        let l = normalize_link(json!({"ifname": "br0", "operstate": "UP", "linkinfo": {
            "info_kind": "bridge",
            "info_data": {"hello_timer": 1.2, "gc_timer": 3.0, "ageing_time": 30000}}}));
        assert_eq!(
            l,
            json!({"ifname": "br0", "linkinfo": {"info_kind": "bridge",
            "info_data": {"ageing_time": 30000}}})
        );
    }

    #[test]
    fn diff_names_the_field() {
        let mut out = Vec::new();
        diff_json(
            "link ve0",
            &json!({"mtu": 1400, "a": [1, 2]}),
            &json!({"mtu": 1500, "a": [1, 3]}),
            &mut out,
        );
        // serde_json keeps object keys sorted
        assert_eq!(
            out,
            vec!["link ve0.a[1]: 2 | 3", "link ve0.mtu: 1400 | 1500"]
        );
    }

    #[test]
    fn ignored_sysctls_match_by_component() {
        assert!(sysctl_ignored("ipv6/conf/eth0/stable_secret"));
        assert!(!sysctl_ignored("ipv6/conf/eth0/x/stable_secret"));
        assert!(sysctl_ignored("netfilter/nf_conntrack_count"));
        assert!(!sysctl_ignored("ipv4/ip_forward"));
    }

    #[test]
    fn multiset_reports_both_sides() {
        let mut out = Vec::new();
        compare_multisets("route", &[1, 2, 2], &[2, 3, 2], &mut out);
        assert_eq!(
            out,
            vec!["route 1: present | missing", "route 3: missing | present"]
        );
    }

    #[test]
    fn sysctls_of_a_missing_link_collapse_into_one_line() {
        let empty = NsState {
            name: "a".into(),
            links: BTreeMap::new(),
            addrs: BTreeMap::new(),
            routes: vec![],
            route_locks: vec![],
            rules4: vec![],
            rules6: vec![],
            neighbours: vec![],
            proxies: vec![],
            sysctls: BTreeMap::new(),
        };
        let mut b = empty.clone();
        b.links.insert("x0".into(), json!({"ifname": "x0"}));
        for k in [
            "ipv4/conf/x0/forwarding",
            "ipv6/neigh/x0/locktime",
            "ipv4/ip_forward",
        ] {
            b.sysctls.insert(k.into(), "1".into());
        }
        let out = compare_states(&empty, &b);
        assert_eq!(
            out,
            vec![
                "link x0: missing | present".to_string(),
                "sysctl ipv4/ip_forward: missing | present".to_string(),
                "(2 per-device sysctls of links present on one side only not listed)".to_string(),
            ]
        );
    }
}
