//! Kind-specific link settings. Every IFLA_INFO_DATA / IFLA_INFO_SLAVE_DATA attribute is kept
//! raw (so kinds crhook does not model, and attributes newer than it, survive exactly); the
//! typed messages here are a decoded view for `show` and `diff`. Attribute numbers are the
//! kernel's uapi values (include/uapi/linux/if_link.h). Read-only attributes (timers, ids,
//! counters) are dropped at capture: the kernel reports them but refuses or ignores them on
//! create, and they drift on their own.

use crhook_proto::{self as pb, RawAttr};

use super::raw::{find, u16_of, u32_of, u8_of};

/// IFLA_BR_* that are state, not settings: ROOT_ID..GC_TIMER (10-19), FDB_FLUSH (21),
/// PAD (40), MCAST_QUERIER_STATE (47), FDB_N_LEARNED (48, NLA_REJECT in br_policy).
const BRIDGE_READ_ONLY: &[u16] = &[10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 40, 47, 48];
/// IFLA_BRPORT_*: STATE (1, follows STP and carrier), ROOT_ID..FLUSH (13-24), PAD (26),
/// MRP_RING_OPEN/MRP_IN_OPEN (35, 36), MCAST_EHT_HOSTS_CNT (38), MCAST_N_GROUPS (41).
const BRPORT_READ_ONLY: &[u16] = &[
    1, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26, 35, 36, 38, 41,
];
/// IFLA_MACVLAN_MACADDR_COUNT (6), IFLA_MACVLAN_BC_QUEUE_LEN_USED (8).
const MACVLAN_READ_ONLY: &[u16] = &[6, 8];

pub const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_TTL_INHERIT: u16 = 28;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BR_MULTI_BOOLOPT: u16 = 46;
const IFLA_VXLAN_REMCSUM_TX: u16 = 21;
const IFLA_VXLAN_REMCSUM_RX: u16 = 22;
pub const IFLA_BRPORT_BACKUP_PORT: u16 = 34;
const IFLA_MACVLAN_MACADDR_MODE: u16 = 3;
const IFLA_MACVLAN_MACADDR_DATA: u16 = 5;
const MACVLAN_MACADDR_SET: u32 = 3;

fn drop_listed(attrs: Vec<RawAttr>, list: &[u16]) -> Vec<RawAttr> {
    attrs
        .into_iter()
        .filter(|a| !list.contains(&(a.kind as u16 & 0x3fff)))
        .collect()
}

/// Settings worth keeping from a kind's IFLA_INFO_DATA.
pub fn keep_info_data(kind: &str, attrs: Vec<RawAttr>) -> Vec<RawAttr> {
    match kind {
        "bridge" => drop_listed(attrs, BRIDGE_READ_ONLY),
        "macvlan" | "macvtap" => drop_listed(attrs, MACVLAN_READ_ONLY),
        _ => attrs,
    }
}

pub fn keep_slave_data(slave_kind: &str, attrs: Vec<RawAttr>) -> Vec<RawAttr> {
    match slave_kind {
        "bridge" => drop_listed(attrs, BRPORT_READ_ONLY),
        _ => attrs,
    }
}

/// IFLA_INFO_DATA to send when creating a link of `kind`; `remap` turns a saved ifindex into
/// the live one for attributes that name a link.
pub fn create_info_data(
    kind: &str,
    attrs: &[RawAttr],
    remap: &dyn Fn(u32) -> Option<u32>,
) -> Option<Vec<RawAttr>> {
    match kind {
        // made with ioctls, never over rtnetlink (tun_validate returns EOPNOTSUPP)
        "tun" => None,
        "vxlan" => Some(
            attrs
                .iter()
                .filter_map(|a| {
                    // TTL_INHERIT is dumped as a u8 but its policy is NLA_FLAG: a payload is
                    // rejected (ERANGE), so send it bare when set and not at all when clear
                    if a.kind as u16 & 0x3fff == IFLA_VXLAN_TTL_INHERIT {
                        return (u8_of(a).unwrap_or(0) != 0).then(|| RawAttr {
                            kind: a.kind,
                            value: Vec::new(),
                        });
                    }
                    // REMCSUM_TX/RX: the kernel counts the attribute's presence, not its
                    // value, when it works out which header bits are in use, and then refuses
                    // the saved RESERVED_BITS as overlapping; a clear one is the default anyway
                    let k = a.kind as u16 & 0x3fff;
                    if (k == IFLA_VXLAN_REMCSUM_TX || k == IFLA_VXLAN_REMCSUM_RX)
                        && u8_of(a) == Some(0)
                    {
                        return None;
                    }
                    Some(remap_u32(a, IFLA_VXLAN_LINK, remap))
                })
                .collect(),
        ),
        "macvlan" | "macvtap" => {
            let mut v = attrs.to_vec();
            // the dump lists source-mode MACs; creating them takes MACADDR_MODE=SET first
            if find(&v, IFLA_MACVLAN_MACADDR_DATA).is_some() {
                v.retain(|a| a.kind as u16 & 0x3fff != IFLA_MACVLAN_MACADDR_MODE);
                v.insert(
                    0,
                    RawAttr {
                        kind: u32::from(IFLA_MACVLAN_MACADDR_MODE),
                        value: MACVLAN_MACADDR_SET.to_ne_bytes().to_vec(),
                    },
                );
            }
            Some(v)
        }
        // VLAN_FILTERING is always dumped, but a kernel built without bridge VLAN filtering
        // refuses the attribute whatever its value (EOPNOTSUPP); off is the default
        // MULTI_BOOLOPT is dumped with every option in its mask; options a kernel lacks
        // support for (VLAN snooping, MST) refuse even "off", so only the ones on are sent
        // (all boolopts default to off)
        "bridge" => Some(
            attrs
                .iter()
                .filter(|a| {
                    !(a.kind as u16 & 0x3fff == IFLA_BR_VLAN_FILTERING && u8_of(a) == Some(0))
                })
                .filter_map(|a| {
                    if a.kind as u16 & 0x3fff != IFLA_BR_MULTI_BOOLOPT {
                        return Some(a.clone());
                    }
                    let on = u32_of(a)?;
                    (on != 0).then(|| {
                        let mut value = on.to_ne_bytes().to_vec();
                        value.extend_from_slice(&on.to_ne_bytes());
                        RawAttr {
                            kind: a.kind,
                            value,
                        }
                    })
                })
                .collect(),
        ),
        _ => Some(attrs.to_vec()),
    }
}

pub fn slave_data_to_send(attrs: &[RawAttr], remap: &dyn Fn(u32) -> Option<u32>) -> Vec<RawAttr> {
    attrs
        .iter()
        .map(|a| remap_u32(a, IFLA_BRPORT_BACKUP_PORT, remap))
        .collect()
}

fn remap_u32(a: &RawAttr, kind: u16, remap: &dyn Fn(u32) -> Option<u32>) -> RawAttr {
    if a.kind as u16 & 0x3fff == kind {
        if let Some(v) = u32_of(a).and_then(remap) {
            return RawAttr {
                kind: a.kind,
                value: v.to_ne_bytes().to_vec(),
            };
        }
    }
    a.clone()
}

fn flag_u8(attrs: &[RawAttr], k: u16) -> bool {
    find(attrs, k).and_then(u8_of).unwrap_or(0) != 0
}
fn get_u32(attrs: &[RawAttr], k: u16) -> u32 {
    find(attrs, k).and_then(u32_of).unwrap_or(0)
}
fn get_u16(attrs: &[RawAttr], k: u16) -> u32 {
    u32::from(find(attrs, k).and_then(u16_of).unwrap_or(0))
}
fn get_be16(attrs: &[RawAttr], k: u16) -> u32 {
    u32::from(
        find(attrs, k)
            .and_then(u16_of)
            .map(u16::from_be)
            .unwrap_or(0),
    )
}
fn get_bytes(attrs: &[RawAttr], k: u16) -> Vec<u8> {
    find(attrs, k).map(|a| a.value.clone()).unwrap_or_default()
}

/// IFLA_TUN_* (netlink-packet-route returns them undecoded, so crhook decodes them itself):
/// OWNER 1, GROUP 2, TYPE 3, PI 4, VNET_HDR 5, PERSIST 6, MULTI_QUEUE 7, NUM_QUEUES 8,
/// NUM_DISABLED_QUEUES 9. OWNER and GROUP are absent when unset.
pub fn decode_tun(a: &[RawAttr]) -> pb::Tun {
    pb::Tun {
        tun_type: u32::from(find(a, 3).and_then(u8_of).unwrap_or(0)),
        pi: flag_u8(a, 4),
        vnet_hdr: flag_u8(a, 5),
        persist: flag_u8(a, 6),
        multi_queue: flag_u8(a, 7),
        owner: find(a, 1).and_then(u32_of),
        group: find(a, 2).and_then(u32_of),
        num_queues: get_u32(a, 8),
        num_disabled_queues: get_u32(a, 9),
    }
}

pub fn decode_bridge(a: &[RawAttr]) -> pb::Bridge {
    pb::Bridge {
        forward_delay: get_u32(a, 1),
        hello_time: get_u32(a, 2),
        max_age: get_u32(a, 3),
        ageing_time: get_u32(a, 4),
        stp_state: get_u32(a, 5),
        priority: get_u16(a, 6),
        vlan_filtering: flag_u8(a, 7),
        vlan_protocol: get_be16(a, 8),
        group_fwd_mask: get_u16(a, 9),
        mcast_snooping: flag_u8(a, 23),
        vlan_default_pvid: get_u16(a, 39),
    }
}

pub fn decode_bridge_port(a: &[RawAttr]) -> pb::BridgePort {
    pb::BridgePort {
        state: u32::from(find(a, 1).and_then(u8_of).unwrap_or(0)),
        priority: get_u16(a, 2),
        cost: get_u32(a, 3),
        hairpin: flag_u8(a, 4),
        guard: flag_u8(a, 5),
        root_block: flag_u8(a, 6),
        protect: flag_u8(a, 6),
        fast_leave: flag_u8(a, 7),
        learning: flag_u8(a, 8),
        unicast_flood: flag_u8(a, 9),
        proxyarp: flag_u8(a, 10),
        mcast_flood: flag_u8(a, 27),
        bcast_flood: flag_u8(a, 30),
        isolated: flag_u8(a, 33),
        raw: Vec::new(),
        port_no: get_u16(a, 18),
    }
}

pub fn decode_macvlan(a: &[RawAttr], lower: String) -> pb::Macvlan {
    pb::Macvlan {
        mode: get_u32(a, 1),
        flags: get_u16(a, 2),
        lower,
    }
}

pub fn decode_vxlan(a: &[RawAttr], lower: String) -> pb::Vxlan {
    let group4 = get_bytes(a, 2);
    let group6 = get_bytes(a, 16);
    let remote = if group4.is_empty() { group6 } else { group4 };
    let local4 = get_bytes(a, 4);
    let local = if local4.is_empty() {
        get_bytes(a, 17)
    } else {
        local4
    };
    let is_multicast = match remote.len() {
        4 => remote[0] >= 224 && remote[0] <= 239,
        16 => remote[0] == 0xff,
        _ => false,
    };
    let range = get_bytes(a, 10);
    let (lo, hi) = if range.len() == 4 {
        (
            u32::from(u16::from_be_bytes([range[0], range[1]])),
            u32::from(u16::from_be_bytes([range[2], range[3]])),
        )
    } else {
        (0, 0)
    };
    pb::Vxlan {
        vni: get_u32(a, 1),
        port: get_be16(a, 15),
        local,
        remote,
        group: is_multicast,
        lower,
        ttl: u32::from(find(a, 5).and_then(u8_of).unwrap_or(0)),
        tos: u32::from(find(a, 6).and_then(u8_of).unwrap_or(0)),
        learning: flag_u8(a, 7),
        ageing: get_u32(a, 8),
        port_low: lo,
        port_high: hi,
    }
}

pub fn decode_vlan(a: &[RawAttr], lower: String) -> pb::Vlan {
    pb::Vlan {
        id: get_u16(a, 1),
        flags: find(a, 2).and_then(u32_of).unwrap_or(0),
        protocol: get_be16(a, 5),
        lower,
    }
}

pub fn decode_ipvlan(a: &[RawAttr], lower: String) -> pb::Ipvlan {
    pb::Ipvlan {
        mode: get_u16(a, 1),
        flags: get_u16(a, 2),
        lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> RawAttr {
        RawAttr {
            kind: u32::from(kind),
            value: value.to_vec(),
        }
    }

    #[test]
    fn bridge_state_attributes_are_dropped_and_settings_kept() {
        let kept = keep_info_data(
            "bridge",
            vec![
                attr(5, &1u32.to_ne_bytes()),
                attr(16, &7u64.to_ne_bytes()),
                attr(48, &[0; 4]),
            ],
        );
        assert_eq!(kept.iter().map(|a| a.kind).collect::<Vec<_>>(), vec![5]);
        assert_eq!(decode_bridge(&kept).stp_state, 1);
    }

    #[test]
    fn vxlan_lower_link_is_remapped() {
        let a = vec![attr(1, &42u32.to_ne_bytes()), attr(3, &5u32.to_ne_bytes())];
        let out = create_info_data("vxlan", &a, &|i| (i == 5).then_some(9)).unwrap_or_default();
        assert_eq!(u32_of(&out[1]), Some(9));
        assert_eq!(u32_of(&out[0]), Some(42));
    }

    #[test]
    fn vxlan_ttl_inherit_is_sent_as_a_flag() {
        let off = create_info_data("vxlan", &[attr(28, &[0])], &|i| Some(i)).unwrap_or_default();
        assert!(off.is_empty());
        let on = create_info_data("vxlan", &[attr(28, &[1])], &|i| Some(i)).unwrap_or_default();
        assert_eq!(on, vec![attr(28, &[])]);
    }

    #[test]
    fn tun_attributes_decode() {
        let a = vec![
            attr(1, &1000u32.to_ne_bytes()),
            attr(3, &[2]),
            attr(4, &[0]),
            attr(5, &[1]),
            attr(6, &[1]),
            attr(7, &[1]),
            attr(8, &2u32.to_ne_bytes()),
            attr(9, &1u32.to_ne_bytes()),
        ];
        let t = decode_tun(&a);
        assert_eq!(t.tun_type, 2);
        assert!(!t.pi && t.vnet_hdr && t.persist && t.multi_queue);
        assert_eq!((t.owner, t.group), (Some(1000), None));
        assert_eq!((t.num_queues, t.num_disabled_queues), (2, 1));
    }
}
