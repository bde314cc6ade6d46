//! Index → `/proc` name tables for the per-device values the kernel puts in netlink dumps.
//!
//! Written from the kernel's uapi headers (`linux/ip.h` `IPV4_DEVCONF_*`, `linux/ipv6.h`
//! `DEVCONF_*`, `linux/neighbour.h` `NDTPA_*`) and the sysctl tables that name the files
//! (`net/ipv4/devinet.c`, `net/ipv6/addrconf.c`, `net/core/neighbour.c`).
//!
//! A name is listed only where the netlink value converts to the exact text `/proc` prints, for
//! every HZ. Everything else (names missing here, and names the running kernel has beyond the
//! array it sent) is read from `/proc` for every device instead.

/// How a netlink value becomes the text of its `/proc` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// the same signed integer (`proc_dointvec` and friends)
    Int,
    /// the same number, printed unsigned (`proc_douintvec`: the netlink array is s32, so
    /// 4294967295 arrives as -1)
    U32,
    /// netlink carries `jiffies_to_msecs(j)`, `/proc` prints `j / HZ` (`proc_dointvec_jiffies`).
    /// `ms / 1000` equals `j / HZ` for every HZ up to 1000: `jiffies_to_msecs` is
    /// `floor(j * 1000 / HZ)`, and nested floors of positive divisions compose.
    MsToSec,
}

impl Unit {
    /// The number `/proc` prints for netlink value `v`.
    pub fn convert(self, v: i64) -> i64 {
        match self {
            Unit::Int => v,
            // the kernel stored a u32 in an s32 slot: reinterpret the low 32 bits
            Unit::U32 => v & 0xffff_ffff,
            // C and Rust both truncate toward zero, as do_proc_dointvec_jiffies_conv does
            Unit::MsToSec => v / 1000,
        }
    }

    pub fn format(self, v: i64) -> String {
        self.convert(v).to_string()
    }
}

/// Whether `text` is exactly how `/proc` prints `v` (decimal, `-` for negatives), without
/// allocating: apply compares every per-device key of an image this way.
pub fn prints_as(text: &str, v: i64) -> bool {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        // a decimal digit: u % 10 < 10
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    text.as_bytes() == &buf[i..]
}

/// `IFLA_INET_CONF`: `IPV4_DEVCONF_*` is 1-based, the array is `[IPV4_DEVCONF_X - 1]`.
/// Every value is a plain int in `in_device.cnf.data[]`, which `/proc` prints with
/// `proc_dointvec`, so all of them are [`Unit::Int`].
pub const IPV4_DEVCONF: &[&str] = &[
    "forwarding",                         // 1 IPV4_DEVCONF_FORWARDING
    "mc_forwarding",                      // 2 MC_FORWARDING (read-only file, never captured)
    "proxy_arp",                          // 3
    "accept_redirects",                   // 4
    "secure_redirects",                   // 5
    "send_redirects",                     // 6
    "shared_media",                       // 7
    "rp_filter",                          // 8
    "accept_source_route",                // 9
    "bootp_relay",                        // 10
    "log_martians",                       // 11
    "tag",                                // 12
    "arp_filter",                         // 13 ARPFILTER
    "medium_id",                          // 14
    "disable_xfrm",                       // 15 NOXFRM
    "disable_policy",                     // 16 NOPOLICY
    "force_igmp_version",                 // 17
    "arp_announce",                       // 18
    "arp_ignore",                         // 19
    "promote_secondaries",                // 20
    "arp_accept",                         // 21
    "arp_notify",                         // 22
    "accept_local",                       // 23
    "src_valid_mark",                     // 24 SRC_VMARK
    "proxy_arp_pvlan",                    // 25
    "route_localnet",                     // 26
    "igmpv2_unsolicited_report_interval", // 27 (stored in ms, printed as is)
    "igmpv3_unsolicited_report_interval", // 28
    "ignore_routes_with_linkdown",        // 29
    "drop_unicast_in_l2_multicast",       // 30
    "drop_gratuitous_arp",                // 31
    "bc_forwarding",                      // 32
    "arp_evict_nocarrier",                // 33
];

/// `IFLA_INET6_CONF`: `DEVCONF_*` is 0-based, the array is `[DEVCONF_X]` of s32, filled by
/// `ipv6_store_devconf()`. `None` marks slots with no exact `/proc` counterpart:
/// `DEVCONF_MTU6` ("mtu" follows the link MTU and RA MTU options; the link carries it),
/// `DEVCONF_STABLE_SECRET` (the kernel leaves the slot 0; the secret is read from `/proc`).
/// `/proc` names without a slot at all (`regen_min_advance`, `ra_honor_pio_life`,
/// `ra_honor_pio_pflag` on 6.18) are read from `/proc` too.
pub const IPV6_DEVCONF: &[Option<(&str, Unit)>] = &[
    Some(("forwarding", Unit::Int)),           // 0 DEVCONF_FORWARDING
    Some(("hop_limit", Unit::Int)),            // 1 HOPLIMIT
    None,                                      // 2 MTU6
    Some(("accept_ra", Unit::Int)),            // 3
    Some(("accept_redirects", Unit::Int)),     // 4
    Some(("autoconf", Unit::Int)),             // 5
    Some(("dad_transmits", Unit::Int)),        // 6
    Some(("router_solicitations", Unit::Int)), // 7 RTR_SOLICITS
    Some(("router_solicitation_interval", Unit::MsToSec)), // 8 RTR_SOLICIT_INTERVAL
    Some(("router_solicitation_delay", Unit::MsToSec)), // 9 RTR_SOLICIT_DELAY
    Some(("use_tempaddr", Unit::Int)),         // 10
    Some(("temp_valid_lft", Unit::Int)),       // 11
    Some(("temp_prefered_lft", Unit::Int)),    // 12
    Some(("regen_max_retry", Unit::Int)),      // 13
    Some(("max_desync_factor", Unit::Int)),    // 14
    Some(("max_addresses", Unit::Int)),        // 15
    Some(("force_mld_version", Unit::Int)),    // 16
    Some(("accept_ra_defrtr", Unit::Int)),     // 17
    Some(("accept_ra_pinfo", Unit::Int)),      // 18
    Some(("accept_ra_rtr_pref", Unit::Int)),   // 19
    Some(("router_probe_interval", Unit::MsToSec)), // 20 RTR_PROBE_INTERVAL
    Some(("accept_ra_rt_info_max_plen", Unit::Int)), // 21
    Some(("proxy_ndp", Unit::Int)),            // 22
    Some(("optimistic_dad", Unit::Int)),       // 23
    Some(("accept_source_route", Unit::Int)),  // 24
    Some(("mc_forwarding", Unit::Int)),        // 25 (read-only file, never captured)
    Some(("disable_ipv6", Unit::Int)),         // 26
    Some(("accept_dad", Unit::Int)),           // 27
    Some(("force_tllao", Unit::Int)),          // 28
    Some(("ndisc_notify", Unit::Int)),         // 29
    // stored in jiffies, printed by proc_dointvec_ms_jiffies = jiffies_to_msecs: exact
    Some(("mldv1_unsolicited_report_interval", Unit::Int)), // 30
    Some(("mldv2_unsolicited_report_interval", Unit::Int)), // 31
    Some(("suppress_frag_ndisc", Unit::Int)),               // 32
    Some(("accept_ra_from_local", Unit::Int)),              // 33
    Some(("use_optimistic", Unit::Int)),                    // 34
    Some(("accept_ra_mtu", Unit::Int)),                     // 35
    None,                                                   // 36 STABLE_SECRET
    Some(("use_oif_addrs_only", Unit::Int)),                // 37
    Some(("accept_ra_min_hop_limit", Unit::Int)),           // 38
    Some(("ignore_routes_with_linkdown", Unit::Int)),       // 39
    Some(("drop_unicast_in_l2_multicast", Unit::Int)),      // 40
    Some(("drop_unsolicited_na", Unit::Int)),               // 41
    Some(("keep_addr_on_down", Unit::Int)),                 // 42
    Some(("router_solicitation_max_interval", Unit::MsToSec)), // 43 RTR_SOLICIT_MAX_INTERVAL
    Some(("seg6_enabled", Unit::Int)),                      // 44
    Some(("seg6_require_hmac", Unit::Int)),                 // 45
    Some(("enhanced_dad", Unit::Int)),                      // 46
    Some(("addr_gen_mode", Unit::Int)),                     // 47
    Some(("disable_policy", Unit::Int)),                    // 48
    Some(("accept_ra_rt_info_min_plen", Unit::Int)),        // 49
    Some(("ndisc_tclass", Unit::Int)),                      // 50
    Some(("rpl_seg_enabled", Unit::Int)),                   // 51
    Some(("ra_defrtr_metric", Unit::U32)),                  // 52 (proc_douintvec_minmax)
    Some(("ioam6_enabled", Unit::Int)),                     // 53 (u8)
    Some(("ioam6_id", Unit::U32)),                          // 54 (proc_douintvec_minmax)
    Some(("ioam6_id_wide", Unit::U32)), // 55 (proc_douintvec, default 0xffffffff)
    Some(("ndisc_evict_nocarrier", Unit::Int)), // 56 (u8)
    Some(("accept_untracked_na", Unit::Int)), // 57
    Some(("accept_ra_min_lft", Unit::Int)), // 58
    Some(("force_forwarding", Unit::Int)), // 59 (u8)
];

/// `NDTA_PARMS` attributes of an `RTM_GETNEIGHTBL` dump → per-device neigh file.
/// Times arrive in ms (`nla_put_msecs`). Left out, so read from `/proc`: `anycast_delay`,
/// `proxy_delay`, `locktime`. `/proc` prints their jiffies in USER_HZ ticks
/// (`jiffies_to_clock_t`), which rounds differently from `jiffies_to_msecs` when HZ does not
/// divide 1000 (e.g. HZ=300); and the msecs are the low 32 bits of `1000 / HZ * jiffies`, so
/// below HZ=1000 several jiffies values share one netlink value (at HZ=250, j and
/// j + 2^30), and the netlink value does not say what `/proc` prints.
/// Left out entirely (duplicates of one variable): `NDTPA_QUEUE_LEN`/`unres_qlen` (the
/// bytes form is kept), `base_reachable_time` and `retrans_time` (the `_ms` forms are kept).
pub const NEIGH_PARMS: &[(u16, &str, Unit)] = &[
    (4, "base_reachable_time_ms", Unit::Int), // NDTPA_BASE_REACHABLE_TIME
    (5, "retrans_time_ms", Unit::Int),        // NDTPA_RETRANS_TIME
    (6, "gc_stale_time", Unit::MsToSec),      // NDTPA_GC_STALETIME (proc_dointvec_jiffies)
    (7, "delay_first_probe_time", Unit::MsToSec), // NDTPA_DELAY_PROBE_TIME
    (9, "app_solicit", Unit::Int),            // NDTPA_APP_PROBES
    (10, "ucast_solicit", Unit::Int),         // NDTPA_UCAST_PROBES
    (11, "mcast_solicit", Unit::Int),         // NDTPA_MCAST_PROBES
    (14, "proxy_qlen", Unit::Int),            // NDTPA_PROXY_QLEN
    (16, "unres_qlen_bytes", Unit::Int),      // NDTPA_QUEUE_LENBYTES
    (17, "mcast_resolicit", Unit::Int),       // NDTPA_MCAST_REPROBES
    (19, "interval_probe_time_ms", Unit::Int), // NDTPA_INTERVAL_PROBE_TIME_MS
];

pub const NDTPA_IFINDEX: u16 = 1;

/// Position in `IFLA_INET_CONF` (0-based array slot) of a `/proc` name.
pub fn ipv4_slot(name: &str) -> Option<usize> {
    IPV4_DEVCONF.iter().position(|n| *n == name)
}

/// Position in `IFLA_INET6_CONF` of a `/proc` name, with its unit.
pub fn ipv6_slot(name: &str) -> Option<(usize, Unit)> {
    IPV6_DEVCONF
        .iter()
        .enumerate()
        .find_map(|(i, e)| e.filter(|(n, _)| *n == name).map(|(_, u)| (i, u)))
}

/// `NDTPA_*` attribute type of a per-device neigh `/proc` name, with its unit.
pub fn neigh_attr(name: &str) -> Option<(u16, Unit)> {
    NEIGH_PARMS
        .iter()
        .find(|(_, n, _)| *n == name)
        .map(|(t, _, u)| (*t, *u))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ipv4_indexes_follow_the_uapi_enum() {
        // IPV4_DEVCONF_MAX is 33 since 5.16 (ARP_EVICT_NOCARRIER)
        assert_eq!(IPV4_DEVCONF.len(), 33);
        assert_eq!(ipv4_slot("forwarding"), Some(0)); // IPV4_DEVCONF_FORWARDING = 1
        assert_eq!(ipv4_slot("rp_filter"), Some(7)); // = 8
        assert_eq!(ipv4_slot("arp_ignore"), Some(18)); // = 19
        assert_eq!(ipv4_slot("src_valid_mark"), Some(23)); // SRC_VMARK = 24
        assert_eq!(ipv4_slot("arp_evict_nocarrier"), Some(32)); // = 33
        assert_eq!(ipv4_slot("nonexistent"), None);
    }

    #[test]
    fn ipv6_indexes_follow_the_uapi_enum() {
        assert_eq!(IPV6_DEVCONF.len(), 60); // DEVCONF_MAX on 6.18
        assert_eq!(ipv6_slot("forwarding"), Some((0, Unit::Int)));
        assert_eq!(ipv6_slot("accept_ra"), Some((3, Unit::Int)));
        assert_eq!(ipv6_slot("disable_ipv6"), Some((26, Unit::Int)));
        assert_eq!(ipv6_slot("accept_dad"), Some((27, Unit::Int)));
        assert_eq!(
            ipv6_slot("router_solicitation_max_interval"),
            Some((43, Unit::MsToSec))
        );
        assert_eq!(ipv6_slot("addr_gen_mode"), Some((47, Unit::Int)));
        assert_eq!(ipv6_slot("force_forwarding"), Some((59, Unit::Int)));
        // no exact counterpart: read from /proc or left out
        assert_eq!(ipv6_slot("mtu"), None);
        assert_eq!(ipv6_slot("stable_secret"), None);
        assert_eq!(ipv6_slot("regen_min_advance"), None);
    }

    #[test]
    fn names_are_unique() {
        let v4: HashSet<_> = IPV4_DEVCONF.iter().collect();
        assert_eq!(v4.len(), IPV4_DEVCONF.len());
        let v6: Vec<_> = IPV6_DEVCONF.iter().flatten().map(|(n, _)| n).collect();
        let set: HashSet<_> = v6.iter().collect();
        assert_eq!(set.len(), v6.len());
        let ne: HashSet<_> = NEIGH_PARMS.iter().map(|(t, _, _)| t).collect();
        assert_eq!(ne.len(), NEIGH_PARMS.len());
    }

    #[test]
    fn neigh_duplicates_and_userhz_keys_are_not_mapped() {
        for n in [
            "base_reachable_time",
            "retrans_time",
            "unres_qlen",
            "anycast_delay",
            "proxy_delay",
            "locktime",
        ] {
            assert_eq!(neigh_attr(n), None, "{n}");
        }
        assert_eq!(neigh_attr("base_reachable_time_ms"), Some((4, Unit::Int)));
        assert_eq!(neigh_attr("gc_stale_time"), Some((6, Unit::MsToSec)));
    }

    #[test]
    fn units_format_like_proc() {
        assert_eq!(Unit::Int.format(-1), "-1");
        assert_eq!(Unit::U32.format(-1), "4294967295");
        assert_eq!(Unit::U32.format(1024), "1024");
        assert_eq!(Unit::MsToSec.format(4000), "4");
        assert_eq!(Unit::MsToSec.format(4999), "4");
        assert_eq!(Unit::MsToSec.format(-1500), "-1");
    }

    #[test]
    fn prints_as_matches_to_string() {
        for v in [0, 1, -1, 9, 10, 4294967295, i64::MAX, i64::MIN, -1500] {
            assert!(prints_as(&v.to_string(), v), "{v}");
        }
        for (text, v) in [
            ("01", 1),
            ("+1", 1),
            (" 1", 1),
            ("1", -1),
            ("", 0),
            ("10", 1),
        ] {
            assert!(!prints_as(text, v), "{text:?} {v}");
        }
    }
}
