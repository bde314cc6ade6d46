//! What an application adds to the network a runtime built for it, and how a test checks it
//! is there, read back with `ip -j`, `iptables-save` and `/proc/sys/net` (never crhook).
//!
//! The runtime (Podman's netavark, a CNI plugin) makes `eth0` with the pod address and a
//! default route. The app then adds, inside the same namespace, state that neither the
//! runtime nor CRIU carries across a checkpoint: an extra address on `eth0`, a tun device
//! with an address, a route in table 100, a rule that selects that table by the *pod
//! address*, a permanent neighbour, two sysctls, and iptables rules of which two name the pod
//! address and one does not. When the pod comes back with a new address (a new pod, a new
//! CNI allocation), the pieces that named the old address must name the new one.
//!
//! [`AppState::missing`] lists every piece that is not there (with a given pod address), so
//! the same reader checks both "all back" and, on a fresh namespace, "none there yet" — the
//! tests do the latter first, which shows the reader can see absence.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{ip_json, TestNs};

/// Extra address the app puts on `eth0` (outside any runtime's pod range).
pub const EXTRA_V4: &str = "192.168.77.5";
/// The tun device the app makes, and its address.
pub const TUN: &str = "tun0";
pub const TUN_V4: &str = "10.210.0.5";
/// Destination of the app's route in table 100.
pub const TABLE100_DST: &str = "10.99.0.0/24";
/// Link-layer address of the app's permanent neighbour.
pub const NEIGH_MAC: &str = "02:00:00:00:00:fa";
/// The app's rule priority.
pub const RULE_PREF: u64 = 100;

/// How many separate pieces [`AppState::missing`] checks.
pub const PIECES: usize = 11;

/// The app state of one pod: `pod_ip` is the runtime's address on `eth0`, `gateway` the
/// runtime's gateway, `neighbour` an unused address inside the pod subnet.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pod_ip: String,
    pub gateway: String,
    pub neighbour: String,
}

impl AppState {
    /// Adds the app state to `ns` (the pod's namespace; `eth0` must exist and be up).
    pub fn apply(&self, ns: &TestNs) {
        let AppState {
            pod_ip,
            gateway,
            neighbour,
        } = self;
        ns.ip_batch(&format!(
            "addr add {EXTRA_V4}/24 dev eth0\n\
             tuntap add dev {TUN} mode tun\n\
             addr add {TUN_V4}/24 dev {TUN}\n\
             link set {TUN} up\n\
             route add {TABLE100_DST} via {gateway} dev eth0 table 100\n\
             rule add from {pod_ip} lookup 100 pref {RULE_PREF}\n\
             neigh add {neighbour} lladdr {NEIGH_MAC} dev eth0 nud permanent\n"
        ));
        ns.set_sysctl(&["ipv4", "conf", "eth0", "rp_filter"], "2");
        ns.set_sysctl(&["ipv6", "conf", "all", "forwarding"], "1");
        for rule in [
            format!("iptables -A INPUT -d {pod_ip}/32 -p tcp --dport 8080 -j ACCEPT"),
            format!(
                "iptables -t nat -A PREROUTING -p tcp --dport 80 -j DNAT --to-destination \
                 {pod_ip}:8080"
            ),
            "iptables -A INPUT -p udp --dport 53 -j ACCEPT".to_string(),
        ] {
            ns.sh(&rule);
        }
    }

    /// The iptables rules (as `iptables-save` prints them) the app state has, by table, with
    /// the pod address `ip`.
    pub fn iptables_rules(ip: &str) -> BTreeMap<&'static str, Vec<String>> {
        BTreeMap::from([
            (
                "filter",
                vec![
                    format!("-A INPUT -d {ip}/32 -p tcp -m tcp --dport 8080 -j ACCEPT"),
                    "-A INPUT -p udp -m udp --dport 53 -j ACCEPT".to_string(),
                ],
            ),
            (
                "nat",
                vec![format!(
                    "-A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination {ip}:8080"
                )],
            ),
        ])
    }

    /// Every piece of the app state that is not in `ns` with pod address `ip` (the rule and
    /// two iptables rules name it), one readable line each. Empty: all there.
    pub fn missing(&self, ns: &TestNs, ip: &str) -> Vec<String> {
        let mut missing = Vec::new();
        let mut need = |ok: bool, what: String| {
            if !ok {
                missing.push(what);
            }
        };
        let eth0 = addrs_of(ns, "eth0");
        need(
            eth0.iter().any(|(a, p)| a == EXTRA_V4 && *p == 24),
            format!("address {EXTRA_V4}/24 on eth0 (eth0 has {eth0:?})"),
        );
        let tun = link(ns, TUN);
        let kind = tun
            .as_ref()
            .and_then(|l| l.pointer("/linkinfo/info_kind"))
            .and_then(Value::as_str);
        let up = tun.as_ref().is_some_and(|l| has_flag(l, "UP"));
        need(
            kind == Some("tun") && up,
            format!("{TUN}: a tun device, up (kind {kind:?}, up {up})"),
        );
        let tun_addrs = if tun.is_some() {
            addrs_of(ns, TUN)
        } else {
            Vec::new()
        };
        need(
            tun_addrs.iter().any(|(a, p)| a == TUN_V4 && *p == 24),
            format!("address {TUN_V4}/24 on {TUN} (it has {tun_addrs:?})"),
        );
        let t100 = table_routes(ns, "100");
        need(
            t100.iter().any(|r| {
                r["dst"] == TABLE100_DST
                    && r["gateway"] == self.gateway.as_str()
                    && r["dev"] == "eth0"
            }),
            format!(
                "route {TABLE100_DST} via {} dev eth0 table 100 (table 100: {})",
                self.gateway,
                Value::Array(t100.clone())
            ),
        );
        let rules = as_vec(ip_json(ns, &["-4", "rule", "show"]));
        let ours: Vec<&Value> = rules
            .iter()
            .filter(|r| r["priority"].as_u64() == Some(RULE_PREF))
            .collect();
        need(
            ours.len() == 1
                && ours[0]["src"] == ip
                && ours[0].get("srclen").is_none()
                && ours[0]["table"] == "100",
            format!("rule {RULE_PREF}: from {ip} lookup 100 (rules at {RULE_PREF}: {ours:?})"),
        );
        let neigh = as_vec(ip_json(
            ns,
            &["neigh", "show", "dev", "eth0", "nud", "permanent"],
        ));
        need(
            neigh.iter().any(|n| {
                n["dst"] == self.neighbour.as_str()
                    && n["lladdr"] == NEIGH_MAC
                    && n["state"]
                        .as_array()
                        .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))
            }),
            format!(
                "permanent neighbour {} lladdr {NEIGH_MAC} on eth0 (permanent on eth0: {})",
                self.neighbour,
                Value::Array(neigh.clone())
            ),
        );
        for (key, want) in [
            (&["ipv4", "conf", "eth0", "rp_filter"][..], "2"),
            (&["ipv6", "conf", "all", "forwarding"][..], "1"),
        ] {
            let got = ns.sysctl(key);
            need(
                got == want,
                format!("sysctl net.{} = {want} (is {got})", key.join(".")),
            );
        }
        let saved = iptables_rules(ns);
        for (table, rules) in Self::iptables_rules(ip) {
            let have = saved.get(table).cloned().unwrap_or_default();
            for r in rules {
                need(
                    have.contains(&r),
                    format!("iptables -t {table}: `{r}` (table {table} has {have:?})"),
                );
            }
        }
        missing
    }

    /// Panics listing every missing piece unless all of the app state is in `ns` with pod
    /// address `ip`, and the iptables rules are exactly the app's (in its order, nothing
    /// added: no CRIU lock rule, no duplicate).
    pub fn assert_present(&self, ns: &TestNs, ip: &str, when: &str) {
        let missing = self.missing(ns, ip);
        assert!(
            missing.is_empty(),
            "{when}: app state missing in {}:\n  {}",
            ns.name(),
            missing.join("\n  ")
        );
        let got = iptables_rules(ns);
        let want: BTreeMap<String, Vec<String>> = Self::iptables_rules(ip)
            .into_iter()
            .map(|(t, r)| (t.to_string(), r))
            .collect();
        assert_eq!(got, want, "{when}: iptables rules in {}", ns.name());
    }

    /// Panics unless none of the app state is in `ns` yet (for a fresh pod): shows the reader
    /// tells absence from presence.
    pub fn assert_absent(&self, ns: &TestNs, ip: &str) {
        let missing = self.missing(ns, ip);
        assert_eq!(
            missing.len(),
            PIECES,
            "a fresh pod should have none of the app state, but only these are missing:\n  {}",
            missing.join("\n  ")
        );
    }
}

/// `-A` lines of `iptables-save` in `ns`, by table (tables without rules are absent).
pub fn iptables_rules(ns: &TestNs) -> BTreeMap<String, Vec<String>> {
    let text = ns.sh("iptables-save");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut table = String::new();
    for l in text.lines() {
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if l.starts_with("-A ") {
            out.entry(table.clone()).or_default().push(l.to_string());
        }
    }
    out
}

/// `iptables-save` and `ip6tables-save` of `ns` without comments (they carry a timestamp)
/// and without `[packets:bytes]` counters: what must not change when nothing is restored.
pub fn iptables_text(ns: &TestNs) -> String {
    ns.sh("iptables-save; ip6tables-save")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') && l.ends_with(']') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// IPv4 routes of table `table`; none when the table does not exist (the kernel makes a
/// table with its first route, and `ip route show table N` fails with "FIB table does not
/// exist" before that).
pub fn table_routes(ns: &TestNs, table: &str) -> Vec<Value> {
    let out = ns.try_ip(&["-j", "-4", "route", "show", "table", table]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("FIB table does not exist") {
        return Vec::new();
    }
    let text = crate::ns::check_output(
        &format!("ip -n {} -j -4 route show table {table}", ns.name()),
        &out,
    );
    if text.trim().is_empty() {
        return Vec::new();
    }
    as_vec(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("ip route show table {table}: bad JSON: {e}\n{text}")),
    )
}

/// (address, prefix length) of every address on `link`, both families, in the kernel's order.
pub fn addrs_of(ns: &TestNs, link: &str) -> Vec<(String, u64)> {
    as_vec(ip_json(ns, &["addr", "show", "dev", link]))
        .iter()
        .flat_map(|l| as_vec(l["addr_info"].clone()))
        .filter_map(|a| Some((a["local"].as_str()?.to_string(), a["prefixlen"].as_u64()?)))
        .collect()
}

/// `ip -d -j link show dev LINK`, or None when there is no such link.
pub fn link(ns: &TestNs, name: &str) -> Option<Value> {
    if !ns.link_exists(name) {
        return None;
    }
    Some(ns.link_json(name))
}

/// The MAC address of `link`.
pub fn mac_of(ns: &TestNs, name: &str) -> String {
    ns.link_json(name)["address"]
        .as_str()
        .unwrap_or_else(|| panic!("link {name} in {} has no address", ns.name()))
        .to_string()
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

fn as_vec(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Whether the match of an address at `text[i..i + len]` is a whole address: not part of a
/// longer one (`10.0.0.3` in `10.0.0.30`, `110.0.0.3` or `10.0.0.3.4`).
fn whole_at(text: &str, i: usize, len: usize) -> bool {
    let b = text.as_bytes();
    let before_ok = i
        .checked_sub(1)
        .is_none_or(|j| !(b[j].is_ascii_digit() || b[j] == b'.'));
    let after_ok = match b.get(i + len) {
        None => true,
        // a '.' after ends a sentence unless a digit follows
        Some(b'.') => !b.get(i + len + 1).is_some_and(u8::is_ascii_digit),
        Some(c) => !c.is_ascii_digit(),
    };
    before_ok && after_ok
}

/// Whether `text` names the IPv4 address `ip` as a whole address (`10.0.0.3` is not named by
/// `10.0.0.30` or `110.0.0.3`).
pub fn mentions_ip(text: &str, ip: &str) -> bool {
    text.match_indices(ip)
        .any(|(i, _)| whole_at(text, i, ip.len()))
}

/// `text` with every whole-address mention of `old` replaced by `new` (see [`mentions_ip`]):
/// what a remap from `old` to `new` makes of a saved firewall.
pub fn replace_ip(text: &str, old: &str, new: &str) -> String {
    let mut out = String::new();
    let mut last = 0;
    for (i, _) in text.match_indices(old) {
        if whole_at(text, i, old.len()) {
            out.push_str(&text[last..i]);
            out.push_str(new);
            last = i + old.len();
        }
    }
    out.push_str(&text[last..]);
    out
}

/// Panics unless `eth0` in `ns` is the runtime's: MAC `mac`, IPv4 addresses exactly
/// `ip/prefix` plus, `with_app`, the app's extra address; exactly one default route, via
/// `gateway` on `eth0`.
pub fn assert_runtime_eth0(
    ns: &TestNs,
    (ip, prefix): (&str, u64),
    mac: &str,
    gateway: &str,
    with_app: bool,
    when: &str,
) {
    assert_eq!(
        mac_of(ns, "eth0"),
        mac,
        "{when}: MAC of eth0 in {}",
        ns.name()
    );
    let mut want = vec![(ip.to_string(), prefix)];
    if with_app {
        want.push((EXTRA_V4.to_string(), 24));
    }
    want.sort();
    let mut v4: Vec<(String, u64)> = addrs_of(ns, "eth0")
        .into_iter()
        .filter(|(a, _)| a.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    v4.sort();
    assert_eq!(v4, want, "{when}: IPv4 addresses of eth0 in {}", ns.name());
    let defaults = as_vec(ip_json(ns, &["-4", "route", "show", "default"]));
    assert!(
        defaults.len() == 1 && defaults[0]["gateway"] == gateway && defaults[0]["dev"] == "eth0",
        "{when}: want one default route via {gateway} dev eth0 in {}, got {}",
        ns.name(),
        Value::Array(defaults.clone())
    );
}

/// Panics naming where, unless no link, route, rule, neighbour or firewall rule in `ns` names
/// `ip` (the old pod address after a restore onto a new one).
/// The app state's rule and iptables rules name `new_ip`, the runtime's new address, where
/// they named the old one.
pub fn assert_rule_and_iptables_remapped(ns: &TestNs, new_ip: &str) {
    let rules = ns.ip(&["rule", "show"]);
    assert!(
        rules.contains(&format!("from {new_ip} lookup 100")),
        "ip rule:\n{rules}"
    );
    let saved = ns.sh("iptables-save");
    for want in [
        format!("-d {new_ip}/32"),
        format!("--to-destination {new_ip}:8080"),
    ] {
        assert!(
            saved.contains(&want),
            "`{want}` not in iptables-save:\n{saved}"
        );
    }
}

pub fn assert_ip_gone(ns: &TestNs, ip: &str) {
    for l in as_vec(ip_json(ns, &["addr", "show"])) {
        for a in as_vec(l["addr_info"].clone()) {
            assert_ne!(
                a["local"].as_str(),
                Some(ip),
                "old address {ip} is still on link {} in {}",
                l["ifname"],
                ns.name()
            );
        }
    }
    let sources: [(&str, String); 5] = [
        (
            "ip route show table all",
            ns.ip(&["-4", "route", "show", "table", "all"]),
        ),
        ("ip rule", ns.ip(&["-4", "rule", "show"])),
        ("ip neigh", ns.ip(&["neigh", "show", "nud", "all"])),
        ("iptables-save", ns.sh("iptables-save")),
        ("nft list ruleset", ns.sh("nft list ruleset")),
    ];
    for (what, text) in sources {
        let lines: Vec<&str> = text.lines().filter(|l| mentions_ip(l, ip)).collect();
        assert!(
            lines.is_empty(),
            "old address {ip} still in `{what}` of {}:\n{}",
            ns.name(),
            lines.join("\n")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{mentions_ip, replace_ip};

    #[test]
    fn replaces_whole_addresses_only() {
        assert_eq!(
            replace_ip(
                "-A INPUT -d 10.88.0.3/32 -j X\n--to-destination 10.88.0.3:8080 10.88.0.30 110.88.0.3 10.88.0.3",
                "10.88.0.3",
                "10.88.0.9"
            ),
            "-A INPUT -d 10.88.0.9/32 -j X\n--to-destination 10.88.0.9:8080 10.88.0.30 110.88.0.3 10.88.0.9"
        );
    }

    #[test]
    fn mentions_whole_addresses_only() {
        assert!(mentions_ip(
            "-A INPUT -d 10.88.0.3/32 -j ACCEPT",
            "10.88.0.3"
        ));
        assert!(mentions_ip("--to-destination 10.88.0.3:8080", "10.88.0.3"));
        assert!(mentions_ip("from 10.88.0.3 lookup 100", "10.88.0.3"));
        assert!(mentions_ip("10.88.0.3", "10.88.0.3"));
        assert!(mentions_ip("at 10.88.0.3.", "10.88.0.3"));
        assert!(!mentions_ip("-d 10.88.0.30/32", "10.88.0.3"));
        assert!(!mentions_ip("-d 110.88.0.3/32", "10.88.0.3"));
        assert!(!mentions_ip("-d 1.10.88.0.3", "10.88.0.3"));
        assert!(!mentions_ip("10.88.0.3.4", "10.88.0.3"));
    }
}
