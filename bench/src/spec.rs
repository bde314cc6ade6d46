//! What goes into a benchmark namespace, written as the files the fast builders take:
//! `ip -batch` scripts for links and for addresses, routes and rules, and
//! `iptables-restore`/`ip6tables-restore` input for the firewall.
//!
//! The link script is also the baseline's restore script (iproute2 has no `ip link save`), so
//! it creates the links in the same order in every namespace: a fresh namespace hands out
//! ifindexes from 1 upwards, so the ifindexes the saved `ip addr save`/`ip route save` dumps
//! refer to come out the same.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

/// One namespace size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub name: &'static str,
    /// veth pairs, both ends inside the namespace (2 links each)
    pub pairs: usize,
    /// addresses over all links, one in five IPv6
    pub addrs: usize,
    /// routes over three tables (main, 100, 200), one in ten IPv6
    pub routes: usize,
    /// iptables rules (ip6tables gets a tenth as many more)
    pub fw_rules: usize,
    /// policy rules (`ip rule`), one in four IPv6
    pub policy_rules: usize,
}

pub const SMALL: Size = Size {
    name: "small",
    pairs: 5,
    addrs: 100,
    routes: 100,
    fw_rules: 100,
    policy_rules: 8,
};

pub const MEDIUM: Size = Size {
    name: "medium",
    pairs: 100,
    addrs: 2_000,
    routes: 10_000,
    fw_rules: 2_000,
    policy_rules: 20,
};

pub const LARGE: Size = Size {
    name: "large",
    pairs: 1_000,
    addrs: 10_000,
    routes: 100_000,
    fw_rules: 50_000,
    policy_rules: 40,
};

/// User chains the firewall rules are spread over, each jumped to from INPUT.
const CHAINS: usize = 10;

impl Size {
    pub fn by_name(name: &str) -> Option<Size> {
        [SMALL, MEDIUM, LARGE].into_iter().find(|s| s.name == name)
    }

    pub fn links(&self) -> usize {
        self.pairs * 2
    }

    pub fn ip6_fw_rules(&self) -> usize {
        self.fw_rules / 10
    }

    /// One line for the report: what the namespace holds.
    pub fn describe(&self) -> String {
        format!(
            "{}: {} veth pairs ({} links), {} addresses, {} routes in 3 tables, {} iptables + {} ip6tables rules, {} policy rules",
            self.name,
            self.pairs,
            self.links(),
            self.addrs,
            self.routes,
            self.fw_rules,
            self.ip6_fw_rules(),
            self.policy_rules
        )
    }
}

/// Link `k`: the pairs are `a<i>`/`b<i>`, numbered a0 b0 a1 b1 ...
fn link_name(k: usize) -> String {
    let side = if k.is_multiple_of(2) { 'a' } else { 'b' };
    format!("{side}{}", k / 2)
}

/// The IPv4 /24 of link `k`: 10.(100 + k/256).(k%256).0/24 (k < 39,936).
fn link_net4(k: usize) -> (usize, usize) {
    (100 + k / 256, k % 256)
}

/// `ip -batch` script creating the links and, with `up`, setting them (and lo) up.
pub fn links_batch(size: &Size, up: bool) -> String {
    let mut s = String::from("link set lo up\n");
    for i in 0..size.pairs {
        // Infallible: writing to a String.
        let _ = writeln!(s, "link add a{i} type veth peer name b{i}");
    }
    if up {
        for k in 0..size.links() {
            let _ = writeln!(s, "link set {} up", link_name(k));
        }
    }
    s
}

/// `ip -batch` script with the addresses, routes and IPv4 policy rules (the IPv6 ones are
/// [`rules6_batch`]: `ip rule` takes its family from the `-6` option only, which a batch line
/// cannot carry).
///
/// Address `j` sits on link `j % links` as host `j / links + 1`; every fifth host is IPv6
/// (`nodad`, so no address is tentative when captured), host 1 is always IPv4, so each link
/// has the on-link subnet its IPv4 gateway routes need. IPv6 routes go via fe80::1 on a link,
/// which needs no IPv6 address.
pub fn state_batch(size: &Size) -> String {
    let links = size.links();
    let mut s = String::new();
    for j in 0..size.addrs {
        let k = j % links;
        let h = j / links + 1;
        let dev = link_name(k);
        if h.is_multiple_of(5) {
            let _ = writeln!(s, "addr add fd00:0:0:{k:x}::{h:x}/64 dev {dev} nodad");
        } else {
            let (x, y) = link_net4(k);
            let _ = writeln!(s, "addr add 10.{x}.{y}.{h}/24 dev {dev}");
        }
    }
    for j in 0..size.routes {
        let k = j % links;
        let table = match j % 3 {
            0 => "main",
            1 => "100",
            _ => "200",
        };
        if j % 10 == 9 {
            let (hi, lo) = (j >> 16, j & 0xffff);
            let dev = link_name(k);
            let _ = writeln!(
                s,
                "route add fd10:{hi:x}:{lo:x}::/64 via fe80::1 dev {dev} table {table}"
            );
        } else {
            let (x, y) = link_net4(k);
            let (a, b, c) = (20 + (j >> 16), (j >> 8) & 0xff, j & 0xff);
            let _ = writeln!(
                s,
                "route add {a}.{b}.{c}.0/24 via 10.{x}.{y}.254 table {table}"
            );
        }
    }
    for i in (0..size.policy_rules).filter(|i| i % 4 != 3) {
        let table = if i % 2 == 0 { 100 } else { 200 };
        let _ = writeln!(
            s,
            "rule add from 20.{}.0.0/16 table {table} pref {}",
            i % 256,
            1000 + i
        );
    }
    s
}

/// `ip -6 -batch` script with the IPv6 policy rules (one in four of them).
pub fn rules6_batch(size: &Size) -> String {
    let mut s = String::new();
    for i in (0..size.policy_rules).filter(|i| i % 4 == 3) {
        let table = if i % 2 == 0 { 100 } else { 200 };
        let _ = writeln!(
            s,
            "rule add from fd10:{i:x}::/32 table {table} pref {}",
            1000 + i
        );
    }
    s
}

/// `iptables-restore` (or `ip6tables-restore`) input: user chains jumped to from INPUT, rules
/// spread over them, every one with a numeric port or ICMP type.
pub fn firewall(size: &Size, v6: bool) -> String {
    let count = if v6 {
        size.ip6_fw_rules()
    } else {
        size.fw_rules
    };
    let mut s =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in 0..CHAINS {
        let _ = writeln!(s, ":BENCH-{c} - [0:0]");
    }
    for c in 0..CHAINS {
        let _ = writeln!(s, "-A INPUT -j BENCH-{c}");
    }
    for j in 0..count.saturating_sub(CHAINS) {
        let chain = j % CHAINS;
        let src = if v6 {
            format!("fd20::{:x}:{:x}/128", j >> 16, j & 0xffff)
        } else {
            format!(
                "30.{}.{}.{}/32",
                (j >> 16) & 0xff,
                (j >> 8) & 0xff,
                j & 0xff
            )
        };
        let port = 1 + j % 65_000;
        let rule = match j % 4 {
            0 => format!("-s {src} -p tcp -m tcp --dport {port} -j ACCEPT"),
            1 => format!("-s {src} -p udp -m udp --dport {port} -j DROP"),
            2 => format!(
                "-s {src} -p tcp -m multiport --dports {port},{} -j ACCEPT",
                port + 1
            ),
            _ => format!("-s {src} -p tcp -m tcp --sport {port} -j RETURN"),
        };
        let _ = writeln!(s, "-A BENCH-{chain} {rule}");
    }
    s.push_str("COMMIT\n");
    s
}

/// Writes the builder files into `dir`; returns their paths.
pub struct SpecFiles {
    pub links: std::path::PathBuf,
    /// the links created but left down (where crhook restores the firewall)
    pub links_down: std::path::PathBuf,
    pub state: std::path::PathBuf,
    pub rules6: std::path::PathBuf,
    pub fw4: std::path::PathBuf,
    pub fw6: std::path::PathBuf,
}

pub fn write_spec(size: &Size, dir: &Path) -> Result<SpecFiles> {
    let files = SpecFiles {
        links: dir.join("links.batch"),
        links_down: dir.join("links-down.batch"),
        state: dir.join("state.batch"),
        rules6: dir.join("rules6.batch"),
        fw4: dir.join("fw4.rules"),
        fw6: dir.join("fw6.rules"),
    };
    for (path, text) in [
        (&files.links, links_batch(size, true)),
        (&files.links_down, links_batch(size, false)),
        (&files.state, state_batch(size)),
        (&files.rules6, rules6_batch(size)),
        (&files.fw4, firewall(size, false)),
        (&files.fw6, firewall(size, true)),
    ] {
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_size() {
        let s = MEDIUM;
        let state = state_batch(&s);
        assert_eq!(
            state.lines().filter(|l| l.starts_with("addr add")).count(),
            s.addrs
        );
        assert_eq!(
            state.lines().filter(|l| l.starts_with("route add")).count(),
            s.routes
        );
        let rules6 = rules6_batch(&s);
        let rules = state.lines().chain(rules6.lines());
        assert_eq!(
            rules.filter(|l| l.contains("rule add")).count(),
            s.policy_rules
        );
        let fw = firewall(&s, false);
        assert_eq!(
            fw.lines().filter(|l| l.starts_with("-A")).count(),
            s.fw_rules
        );
        let links = links_batch(&s, true);
        assert_eq!(
            links.lines().filter(|l| l.contains("type veth")).count(),
            s.pairs
        );
    }

    #[test]
    fn addresses_and_routes_are_unique() {
        let s = LARGE;
        let state = state_batch(&s);
        let mut seen = std::collections::HashSet::new();
        for l in state
            .lines()
            .filter(|l| l.starts_with("addr add") || l.starts_with("route add"))
        {
            let key = l.split_whitespace().nth(2).unwrap_or_default().to_owned();
            assert!(seen.insert(key), "duplicate in {l}");
        }
    }
}
