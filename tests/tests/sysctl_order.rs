//! The sysctls restore writes after its early phase go in beside the firewall transaction,
//! before the links come up, and those the firewall may bring into existence (`netfilter`,
//! `bridge`) after it: every kind comes back (namespace-wide, per device, neighbour tables,
//! conntrack), with an early key that DAD suspension touches meanwhile, the firewall and the
//! addresses beside them. Needs root and a built `crhook`.

use crhook_tests::{diff, move_through, require_root, Moved, TestNs};

/// (key below /proc/sys/net, value): each differs from a fresh namespace's.
const KEYS: &[(&[&str], &str)] = &[
    (
        &["netfilter", "nf_conntrack_tcp_timeout_established"],
        "600",
    ),
    (&["core", "somaxconn"], "2048"),
    (&["ipv4", "conf", "all", "forwarding"], "0"),
    (&["ipv4", "conf", "sv0", "rp_filter"], "2"),
    (&["ipv6", "conf", "sv0", "forwarding"], "1"),
    (&["ipv6", "conf", "sv0", "hop_limit"], "33"),
    (&["ipv4", "neigh", "sv0", "gc_stale_time"], "77"),
    // an early key, which restore sets to 0 while links come up
    (&["ipv6", "conf", "sv1", "accept_dad"], "2"),
];

/// `key` with its device replaced by `lo` (a fresh namespace has no `sv0`).
fn on_lo(key: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = key.iter().map(|c| c.to_string()).collect();
    if k.len() == 4 && k[2].starts_with("sv") {
        k[2] = "lo".into();
    }
    k
}

fn rules(ns: &TestNs) -> String {
    ns.sh("iptables-save | grep -v '^#'")
}

#[test]
fn late_sysctls_beside_the_firewall_come_back() {
    require_root();
    let host = TestNs::host();
    let fresh = TestNs::new("sof");
    for (k, v) in KEYS {
        let d = on_lo(k);
        let d: Vec<&str> = d.iter().map(String::as_str).collect();
        assert_ne!(
            fresh.sysctl(&d),
            *v,
            "{k:?} is {v} in a fresh namespace already"
        );
    }
    let a = TestNs::new("soa");
    a.ip_batch(
        "link set lo up\n\
         link add sv0 type veth peer name sv1\n\
         addr add 10.71.0.1/24 dev sv0\n\
         addr add fd00:71::1/64 dev sv0 nodad\n\
         link set sv0 up\n\
         link set sv1 up\n",
    );
    a.sh(
        "iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT && \
         iptables -A INPUT -i sv0 -p tcp --dport 22 -j ACCEPT",
    );
    for (k, v) in KEYS {
        a.set_sysctl(k, v);
    }
    let want: Vec<String> = KEYS.iter().map(|(k, _)| a.sysctl(k)).collect();
    let want_rules = rules(&a);
    let Moved {
        ns: b,
        images,
        dir: _dir,
    } = move_through(&host, a, "sysctl-order");
    let got: Vec<String> = KEYS.iter().map(|(k, _)| b.sysctl(k)).collect();
    assert_eq!(got, want, "keys {KEYS:?}");
    assert_eq!(rules(&b), want_rules);
    diff(&host, &b, &images).expect_success();
}
