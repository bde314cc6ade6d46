//! What goes into a benchmark namespace, written as the files the fast builders take:
//! `ip -batch` scripts for links and for addresses, routes and rules, and
//! `iptables-restore`/`ip6tables-restore` input for the firewall.
//!
//! The link script is also the baseline's restore script (iproute2 has no `ip link save`), so
//! it creates the links in the same order in every namespace: a fresh namespace hands out
//! ifindexes from 1 upwards, so the ifindexes the saved `ip addr save`/`ip route save` dumps
//! refer to come out the same.
//!
//! Addresses and routes sit on the veth ends that are not bridge ports, the bridges and the
//! ifb devices. Persistent tun/tap devices (`ip tuntap add`) have no queue attached, so they
//! stay NO-CARRIER once up, and every route through them (their prefix routes too) is dumped
//! with the `linkdown` flag, which `ip route restore` sends back and the kernel refuses
//! ("Invalid rtm_flags - can not contain DEAD or LINKDOWN"): with addresses on them the
//! baseline could not restore the namespace at all.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::summary::thousands;

/// One namespace size. Links: veth pairs `a<i>`/`b<i>` (both ends inside), persistent tun
/// `t<i>` and tap `p<i>` devices, bridges `br<i>` with veth ends `b<i>` as ports, and ifb
/// devices `f<i>`, created in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub name: &'static str,
    /// the short name the report uses (S, M, L, XL)
    pub short: &'static str,
    /// veth pairs, both ends inside the namespace (2 links each)
    pub pairs: usize,
    pub tuns: usize,
    pub taps: usize,
    pub bridges: usize,
    /// veth ends enslaved to each bridge (`b<i>`, from `b0` up)
    pub ports_per_bridge: usize,
    pub ifbs: usize,
    /// addresses over the veth ends that are not bridge ports, the bridges and the ifb
    /// devices, about one in five IPv6
    pub addrs: usize,
    /// routes over four tables (main, 100, 200, 300), one in ten IPv6
    pub routes: usize,
    /// iptables rules (ip6tables gets a tenth as many more)
    pub fw_rules: usize,
    /// policy rules (`ip rule`), one in four IPv6
    pub policy_rules: usize,
    /// veth ends `a<i>` given traffic control (see [`tc_batch`]), and as many ifb devices
    /// given a tbf
    pub tc_links: usize,
}

/// A typical pod: one veth pair and one tun device.
pub const SMALL: Size = Size {
    name: "small",
    short: "S",
    pairs: 1,
    tuns: 1,
    taps: 0,
    bridges: 0,
    ports_per_bridge: 0,
    ifbs: 0,
    addrs: 5,
    routes: 10,
    fw_rules: 50,
    policy_rules: 4,
    tc_links: 0,
};

/// 100 links: 30 veth pairs, 5 tun, 5 tap, 5 bridges (2 ports each), 25 ifb.
pub const MEDIUM: Size = Size {
    name: "medium",
    short: "M",
    pairs: 30,
    tuns: 5,
    taps: 5,
    bridges: 5,
    ports_per_bridge: 2,
    ifbs: 25,
    addrs: 1_000,
    routes: 10_000,
    fw_rules: 5_000,
    policy_rules: 20,
    tc_links: 20,
};

/// 1,000 links: 300 veth pairs, 50 tun, 50 tap, 50 bridges (2 ports each), 250 ifb.
pub const LARGE: Size = Size {
    name: "large",
    short: "L",
    pairs: 300,
    tuns: 50,
    taps: 50,
    bridges: 50,
    ports_per_bridge: 2,
    ifbs: 250,
    addrs: 10_000,
    routes: 100_000,
    fw_rules: 50_000,
    policy_rules: 40,
    tc_links: 200,
};

/// Twice the large size, to show whether the cost per object stays flat; opt-in only.
pub const XL: Size = Size {
    name: "xl",
    short: "XL",
    pairs: 600,
    tuns: 100,
    taps: 100,
    bridges: 100,
    ports_per_bridge: 2,
    ifbs: 500,
    addrs: 20_000,
    routes: 200_000,
    fw_rules: 100_000,
    policy_rules: 80,
    tc_links: 400,
};

/// Every size, smallest first.
pub const ALL: [Size; 4] = [SMALL, MEDIUM, LARGE, XL];

/// Most user chains the firewall rules are spread over, each jumped to from INPUT.
const CHAINS: usize = 10;

/// Route tables, in the order routes are spread over them.
const TABLES: [&str; 4] = ["main", "100", "200", "300"];

impl Size {
    /// A size by its name or short name, any case.
    pub fn by_name(name: &str) -> Option<Size> {
        ALL.into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(name) || s.short.eq_ignore_ascii_case(name))
    }

    pub fn links(&self) -> usize {
        self.pairs * 2 + self.tuns + self.taps + self.bridges + self.ifbs
    }

    fn ports(&self) -> usize {
        (self.bridges * self.ports_per_bridge).min(self.pairs)
    }

    pub fn ip6_fw_rules(&self) -> usize {
        self.fw_rules / 10
    }

    /// tc objects: per tc link an htb qdisc, three classes, a u32 filter, a leaf pfifo, an
    /// ingress qdisc and its mirred filter; a tbf on as many ifb devices.
    pub fn tc_objects(&self) -> usize {
        self.tc_links * TC_PER_LINK + self.tc_links.min(self.ifbs)
    }

    /// Everything the namespace holds that capture and restore handle one by one: links,
    /// addresses, routes, policy rules, firewall rules of both families and tc objects.
    pub fn objects(&self) -> usize {
        self.links()
            + self.tc_objects()
            + self.addrs
            + self.routes
            + self.policy_rules
            + self.fw_rules
            + self.ip6_fw_rules()
    }

    /// One line for the report: what the namespace holds.
    pub fn describe(&self) -> String {
        let n = thousands;
        let plural = |k: usize, one: &str, many: &str| {
            format!("{} {}", n(k), if k == 1 { one } else { many })
        };
        let kinds: Vec<String> = [
            (self.pairs > 0).then(|| plural(self.pairs, "veth pair", "veth pairs")),
            (self.tuns > 0).then(|| format!("{} tun", n(self.tuns))),
            (self.taps > 0).then(|| format!("{} tap", n(self.taps))),
            (self.bridges > 0).then(|| {
                format!(
                    "{} with {} veth ends as ports",
                    plural(self.bridges, "bridge", "bridges"),
                    n(self.ports())
                )
            }),
            (self.ifbs > 0).then(|| format!("{} ifb", n(self.ifbs))),
        ]
        .into_iter()
        .flatten()
        .collect();
        let tc = if self.tc_links > 0 {
            format!(
                ", {} tc objects on {} links (htb tree, ingress mirred to an ifb, tbf)",
                n(self.tc_objects()),
                n(self.tc_links + self.tc_links.min(self.ifbs))
            )
        } else {
            String::new()
        };
        format!(
            "{} ({}): {} links ({}), {} addresses, {} routes in 4 tables, {} iptables + {} \
             ip6tables rules, {} policy rules{tc}: {} objects",
            self.short,
            self.name,
            n(self.links()),
            kinds.join(", "),
            n(self.addrs),
            n(self.routes),
            n(self.fw_rules),
            n(self.ip6_fw_rules()),
            n(self.policy_rules),
            n(self.objects())
        )
    }
}

/// One link of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    name: String,
    /// the bridge it is a port of
    master: Option<String>,
    /// carries addresses and routes (not a bridge port, not a tun/tap: see the module doc)
    addressed: bool,
}

/// Every link, in creation order (a veth pair counts as its two ends, `a` first).
fn link_list(size: &Size) -> Vec<Link> {
    let mut v = Vec::with_capacity(size.links());
    let per = size.ports_per_bridge.max(1);
    for i in 0..size.pairs {
        v.push(Link {
            name: format!("a{i}"),
            master: None,
            addressed: true,
        });
        let master = (i < size.ports()).then(|| format!("br{}", i / per));
        v.push(Link {
            name: format!("b{i}"),
            addressed: master.is_none(),
            master,
        });
    }
    for (prefix, n, addressed) in [
        ("t", size.tuns, false),
        ("p", size.taps, false),
        ("br", size.bridges, true),
        ("f", size.ifbs, true),
    ] {
        v.extend((0..n).map(|i| Link {
            name: format!("{prefix}{i}"),
            master: None,
            addressed,
        }));
    }
    v
}

/// The links that carry addresses and routes, in creation order.
fn addressed(size: &Size) -> Vec<String> {
    link_list(size)
        .into_iter()
        .filter(|l| l.addressed)
        .map(|l| l.name)
        .collect()
}

/// The IPv4 /24 of addressed link `k`: 10.(100 + k/256).(k%256).0/24 (k < 39,936).
fn link_net4(k: usize) -> (usize, usize) {
    (100 + k / 256, k % 256)
}

/// `ip -batch` script creating the links, enslaving the bridge ports and, with `up`, setting
/// every link (and lo) up.
pub fn links_batch(size: &Size, up: bool) -> String {
    let mut s = String::from("link set lo up\n");
    // Infallible: writing to a String.
    for i in 0..size.pairs {
        let _ = writeln!(s, "link add a{i} type veth peer name b{i}");
    }
    for i in 0..size.tuns {
        let _ = writeln!(s, "tuntap add name t{i} mode tun");
    }
    for i in 0..size.taps {
        let _ = writeln!(s, "tuntap add name p{i} mode tap");
    }
    for i in 0..size.bridges {
        let _ = writeln!(s, "link add br{i} type bridge");
    }
    for i in 0..size.ifbs {
        let _ = writeln!(s, "link add f{i} type ifb");
    }
    let links = link_list(size);
    for l in &links {
        if let Some(m) = &l.master {
            let _ = writeln!(s, "link set {} master {m}", l.name);
        }
    }
    if up {
        for l in &links {
            let _ = writeln!(s, "link set {} up", l.name);
        }
    }
    s
}

/// tc objects per link of [`tc_batch`] (the tbf on an ifb aside).
const TC_PER_LINK: usize = 8;

/// `tc -batch` script: on each of the first `tc_links` veth ends `a<i>` the shapes the tc
/// tests use (an htb root with three classes, a u32 filter into one, a pfifo leaf; an ingress
/// qdisc whose u32 filter redirects to an ifb with mirred), and a tbf on as many ifb devices.
pub fn tc_batch(size: &Size) -> String {
    let mut s = String::new();
    let ifbs = size.ifbs.max(1);
    for i in 0..size.tc_links.min(size.pairs) {
        let d = format!("a{i}");
        let _ = writeln!(s, "qdisc add dev {d} root handle 1: htb default 20");
        let _ = writeln!(
            s,
            "class add dev {d} parent 1: classid 1:1 htb rate 100mbit"
        );
        let _ = writeln!(
            s,
            "class add dev {d} parent 1:1 classid 1:10 htb rate 30mbit ceil 100mbit"
        );
        let _ = writeln!(
            s,
            "class add dev {d} parent 1:1 classid 1:20 htb rate 10mbit"
        );
        let _ = writeln!(
            s,
            "filter add dev {d} parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.0/8 flowid 1:10"
        );
        let _ = writeln!(s, "qdisc add dev {d} parent 1:10 handle 10: pfifo limit 50");
        let _ = writeln!(s, "qdisc add dev {d} handle ffff: ingress");
        let _ = writeln!(
            s,
            "filter add dev {d} parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev f{}",
            i % ifbs
        );
    }
    for i in 0..size.tc_links.min(size.ifbs) {
        let _ = writeln!(
            s,
            "qdisc add dev f{i} root tbf rate 10mbit burst 4kb latency 400ms"
        );
    }
    s
}

/// `ip -batch` script with the addresses, routes and IPv4 policy rules (the IPv6 ones are
/// [`rules6_batch`]: `ip rule` takes its family from the `-6` option only, which a batch line
/// cannot carry).
///
/// Address `j` sits on addressed link `j % links` as host `h = j / links + 1`; host 1 is
/// always IPv4, so each link has the on-link subnet its IPv4 gateway routes need, and one
/// address in five after that is IPv6 (`nodad`, so none is tentative when captured). IPv6
/// routes go via fe80::1 on a link, which needs no IPv6 address.
pub fn state_batch(size: &Size) -> String {
    let links = addressed(size);
    let n = links.len();
    let mut s = String::new();
    for j in 0..size.addrs {
        let k = j % n;
        let h = j / n + 1;
        let dev = &links[k];
        if h > 1 && j % 5 == 4 {
            let _ = writeln!(s, "addr add fd00:0:0:{k:x}::{h:x}/64 dev {dev} nodad");
        } else {
            let (x, y) = link_net4(k);
            let _ = writeln!(s, "addr add 10.{x}.{y}.{h}/24 dev {dev}");
        }
    }
    for j in 0..size.routes {
        let k = j % n;
        let v6 = j % 10 == 9;
        // j % 10 == 9 is always odd, so j % 4 would put every IPv6 route in tables 100 and 300
        let table = TABLES[if v6 { (j / 10) % 4 } else { j % 4 }];
        if v6 {
            let (hi, lo) = (j >> 16, j & 0xffff);
            let dev = &links[k];
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
        let _ = writeln!(
            s,
            "rule add from 20.{}.0.0/16 table {} pref {}",
            i % 256,
            TABLES[1 + i % 3],
            1000 + i
        );
    }
    s
}

/// `ip -6 -batch` script with the IPv6 policy rules (one in four of them).
pub fn rules6_batch(size: &Size) -> String {
    let mut s = String::new();
    for i in (0..size.policy_rules).filter(|i| i % 4 == 3) {
        let _ = writeln!(
            s,
            "rule add from fd10:{i:x}::/32 table {} pref {}",
            TABLES[1 + i % 3],
            1000 + i
        );
    }
    s
}

/// `iptables-restore` (or `ip6tables-restore`) input: up to ten user chains jumped to from
/// INPUT, rules spread over them, every one with a numeric port; the jumps count as rules.
pub fn firewall(size: &Size, v6: bool) -> String {
    let count = if v6 {
        size.ip6_fw_rules()
    } else {
        size.fw_rules
    };
    let chains = (count / 5).clamp(1, CHAINS);
    let mut s =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for c in 0..chains {
        let _ = writeln!(s, ":BENCH-{c} - [0:0]");
    }
    for c in 0..chains.min(count) {
        let _ = writeln!(s, "-A INPUT -j BENCH-{c}");
    }
    for j in 0..count.saturating_sub(chains) {
        let chain = j % chains;
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

/// The builder files of one size.
pub struct SpecFiles {
    pub links: PathBuf,
    /// the links created but left down (where crhook restores the firewall)
    pub links_down: PathBuf,
    pub state: PathBuf,
    pub rules6: PathBuf,
    pub fw4: PathBuf,
    pub fw6: PathBuf,
    /// `tc -batch` input (empty for sizes without traffic control)
    pub tc: PathBuf,
}

/// Writes the builder files into `dir`; returns their paths.
pub fn write_spec(size: &Size, dir: &Path) -> Result<SpecFiles> {
    let files = SpecFiles {
        links: dir.join("links.batch"),
        links_down: dir.join("links-down.batch"),
        state: dir.join("state.batch"),
        rules6: dir.join("rules6.batch"),
        fw4: dir.join("fw4.rules"),
        fw6: dir.join("fw6.rules"),
        tc: dir.join("tc.batch"),
    };
    for (path, text) in [
        (&files.links, links_batch(size, true)),
        (&files.links_down, links_batch(size, false)),
        (&files.state, state_batch(size)),
        (&files.rules6, rules6_batch(size)),
        (&files.fw4, firewall(size, false)),
        (&files.fw6, firewall(size, true)),
        (&files.tc, tc_batch(size)),
    ] {
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str, pred: impl Fn(&str) -> bool) -> usize {
        text.lines().filter(|l| pred(l)).count()
    }

    #[test]
    fn counts_match_every_size() {
        for s in ALL {
            let state = state_batch(&s);
            assert_eq!(count(&state, |l| l.starts_with("addr add")), s.addrs);
            assert_eq!(count(&state, |l| l.starts_with("route add")), s.routes);
            let rules6 = rules6_batch(&s);
            let rules = count(&state, |l| l.starts_with("rule add"))
                + count(&rules6, |l| l.starts_with("rule add"));
            assert_eq!(rules, s.policy_rules);
            assert_eq!(
                count(&firewall(&s, false), |l| l.starts_with("-A")),
                s.fw_rules
            );
            assert_eq!(
                count(&firewall(&s, true), |l| l.starts_with("-A")),
                s.ip6_fw_rules()
            );
            let links = links_batch(&s, true);
            let created = count(&links, |l| l.contains(" add ")) + s.pairs;
            assert_eq!(created, s.links(), "{}", s.name);
            assert_eq!(count(&links, |l| l.ends_with(" up")), s.links() + 1);
            assert_eq!(count(&links, |l| l.contains(" master ")), s.ports());
            // every addressed link gets host 1, the IPv4 subnet its gateway routes use
            assert!(s.addrs >= addressed(&s).len(), "{}", s.name);
            let tc = tc_batch(&s);
            assert_eq!(
                count(&tc, |l| l.contains(" add ")),
                s.tc_objects(),
                "{}",
                s.name
            );
            assert!(s.tc_links <= s.pairs, "{}", s.name);
        }
    }

    #[test]
    fn sizes_are_as_specified() {
        assert_eq!(SMALL.links(), 3);
        assert_eq!(MEDIUM.links(), 100);
        assert_eq!(LARGE.links(), 1_000);
        assert_eq!(XL.links(), 2_000);
        assert_eq!(Size::by_name("L"), Some(LARGE));
        assert_eq!(Size::by_name("xl"), Some(XL));
        assert_eq!(Size::by_name("huge"), None);
        assert_eq!(
            SMALL.describe(),
            "S (small): 3 links (1 veth pair, 1 tun), 5 addresses, 10 routes in 4 tables, \
             50 iptables + 5 ip6tables rules, 4 policy rules: 77 objects"
        );
    }

    #[test]
    fn small_has_one_ipv6_address() {
        let state = state_batch(&SMALL);
        assert_eq!(count(&state, |l| l.starts_with("addr add fd00:")), 1);
    }

    #[test]
    fn addresses_and_routes_are_unique() {
        let state = state_batch(&XL);
        let mut seen = std::collections::HashSet::new();
        for l in state
            .lines()
            .filter(|l| l.starts_with("addr add") || l.starts_with("route add"))
        {
            let key = l.split_whitespace().nth(2).unwrap_or_default().to_owned();
            assert!(seen.insert(key), "duplicate in {l}");
        }
    }

    #[test]
    fn routes_use_all_four_tables_in_both_families() {
        let state = state_batch(&MEDIUM);
        for t in TABLES {
            let suffix = format!(" table {t}");
            assert!(
                count(&state, |l| l.starts_with("route add fd")
                    && l.ends_with(&suffix))
                    > 0
            );
            assert!(
                count(&state, |l| l.starts_with("route add 2")
                    && l.ends_with(&suffix))
                    > 0
            );
        }
    }

    #[test]
    fn bridge_ports_and_tun_tap_carry_nothing() {
        let state = state_batch(&LARGE);
        let on = |dev: &str| {
            let (mid, end) = (format!("dev {dev} "), format!("dev {dev}"));
            count(&state, |l| l.contains(&mid) || l.ends_with(&end))
        };
        for dev in ["b0", "t0", "p0"] {
            assert_eq!(on(dev), 0, "{dev}");
        }
        for dev in ["a0", "b100", "br0", "f0"] {
            assert!(on(dev) > 0, "{dev}");
        }
    }
}
