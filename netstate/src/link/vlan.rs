//! Bridge VLANs (`bridge vlan show`): per port, and the bridge device's own (`self`). Read
//! from an AF_BRIDGE link dump with IFLA_EXT_MASK RTEXT_FILTER_BRVLAN, each VLAN one
//! IFLA_BRIDGE_VLAN_INFO (`struct bridge_vlan_info { u16 flags; u16 vid; }`) in IFLA_AF_SPEC;
//! set with RTM_SETLINK and removed with RTM_DELLINK of family AF_BRIDGE carrying the same,
//! plus IFLA_BRIDGE_FLAGS = BRIDGE_FLAGS_SELF for the bridge device itself. A kernel built
//! without VLAN filtering reports none (and refuses a set with EOPNOTSUPP), so images of
//! such hosts have none and restore sends none; a port joining a bridge gets the bridge's
//! `default_pvid` by itself, so restore makes the list equal to the saved one rather than
//! adding to it. netlink-packet-route decodes AF_BRIDGE's AF_SPEC only partly (and not the
//! requests), hence by hand.

use std::collections::HashMap;

use crhook_proto as pb;

use crate::error::Result;
use crate::nl::{Nl, Req};
use crate::nla::{self, attrs, MsgBuf};

const AF_BRIDGE: u8 = 7;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_EXT_MASK: u16 = 29;
const RTEXT_FILTER_BRVLAN: u32 = 1 << 1;
const IFLA_BRIDGE_FLAGS: u16 = 0;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const BRIDGE_FLAGS_SELF: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
/// flags that are state of the listing, not of the VLAN: MASTER, RANGE_BEGIN, RANGE_END
const LISTING_FLAGS: u32 = 0x1 | 0x8 | 0x10;

/// (ifindex, VLANs) of one AF_BRIDGE link message; None for another family or no VLANs.
pub fn decode(payload: &[u8]) -> std::result::Result<Option<(u32, Vec<pb::BridgeVlan>)>, String> {
    let (h, list) = nla::split(payload, 16, "bridge link")?;
    if h[0] != AF_BRIDGE {
        return Ok(None);
    }
    let ifindex = nla::u32_at(h, 4);
    let mut out = Vec::new();
    for a in list {
        let a = a?;
        if a.ty() != IFLA_AF_SPEC {
            continue;
        }
        for x in attrs(a.value) {
            let x = x?;
            if x.ty() != IFLA_BRIDGE_VLAN_INFO {
                continue;
            }
            if x.value.len() < 4 {
                return Err(format!("IFLA_BRIDGE_VLAN_INFO of {} bytes", x.value.len()));
            }
            out.push(pb::BridgeVlan {
                flags: u32::from(nla::u16_at(x.value, 0)) & !LISTING_FLAGS,
                vid: u32::from(nla::u16_at(x.value, 2)),
            });
        }
    }
    Ok((!out.is_empty()).then_some((ifindex, out)))
}

/// The VLANs of every bridge port and bridge in `nl`'s namespace, by ifindex.
pub fn capture(nl: &mut Nl) -> Result<HashMap<u32, Vec<pb::BridgeVlan>>> {
    let mut header = [0u8; 16];
    header[0] = AF_BRIDGE;
    let mut m = MsgBuf::new(&header);
    m.put_u32(IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN)?;
    let op = "dump bridge vlans";
    let req = m.into_req(RTM_GETLINK);
    let mut out = HashMap::new();
    for (ty, p) in nl.dump_raw(&req, op)? {
        if ty != RTM_NEWLINK {
            continue;
        }
        if let Some((i, v)) = decode(&p).map_err(|what| nla::decode_error(op, nl.netns(), what))? {
            out.insert(i, v);
        }
    }
    Ok(out)
}

/// RTM_SETLINK (`add`) or RTM_DELLINK of one VLAN on live device `ifindex`; `own` for the
/// bridge device itself.
pub fn request(ifindex: u32, v: &pb::BridgeVlan, add: bool, own: bool) -> Result<Req> {
    let bad =
        || crate::error::NetstateError::invalid(format!("bridge vlan {} out of range", v.vid));
    let vid = u16::try_from(v.vid).map_err(|_| bad())?;
    let flags = u16::try_from(v.flags & !LISTING_FLAGS).map_err(|_| bad())?;
    let spec = nla::nested(|m| {
        if own {
            m.put_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF)?;
        }
        let mut info = flags.to_ne_bytes().to_vec();
        info.extend_from_slice(&vid.to_ne_bytes());
        m.put(IFLA_BRIDGE_VLAN_INFO, &info)
    })?;
    let mut header = [0u8; 16];
    header[0] = AF_BRIDGE;
    header[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    let mut m = MsgBuf::new(&header);
    m.put(IFLA_AF_SPEC | NLA_F_NESTED, &spec)?;
    Ok(m.into_req(if add { RTM_SETLINK } else { RTM_DELLINK }))
}

/// What makes the live list of a device equal to the saved one: (vlan, add) pairs, removals
/// first (the default PVID a port got on joining, when the image has it otherwise).
pub fn changes<'a>(
    saved: &'a [pb::BridgeVlan],
    live: &'a [pb::BridgeVlan],
) -> Vec<(&'a pb::BridgeVlan, bool)> {
    let mut out: Vec<(&pb::BridgeVlan, bool)> = live
        .iter()
        .filter(|l| !saved.iter().any(|s| s.vid == l.vid))
        .map(|l| (l, false))
        .collect();
    out.extend(
        saved
            .iter()
            .filter(|s| !live.contains(s))
            .map(|s| (s, true)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nla::{hex, unhex};

    /// An AF_BRIDGE RTM_NEWLINK answer for port 5 as the kernel sends it with
    /// RTEXT_FILTER_BRVLAN: ifinfomsg, IFLA_IFNAME "vp", IFLA_MASTER 4, then IFLA_AF_SPEC with
    /// vid 1 (PVID|UNTAGGED) and vid 10 and 20 (tagged).
    const PORT_DUMP: &str = "07000100050000004310010000000000\
                             0700030076700000\
                             08000a0004000000\
                             1c001a80\
                             0800020006000100\
                             0800020000000a00\
                             0800020000001400";

    #[test]
    fn a_ports_vlans_decode_from_the_dump() {
        let p = unhex(PORT_DUMP);
        let (i, v) = decode(&p).expect("decode").expect("vlans");
        assert_eq!(i, 5);
        let got: Vec<(u32, u32)> = v.iter().map(|x| (x.vid, x.flags)).collect();
        assert_eq!(got, [(1, 6), (10, 0), (20, 0)]);
    }

    #[test]
    fn requests_carry_one_vlan_and_self_for_the_bridge() {
        let v = pb::BridgeVlan { vid: 10, flags: 2 };
        let r = request(5, &v, true, false).expect("request");
        let (ty, bytes) = crate::nla::req_bytes(&r);
        assert_eq!(ty, RTM_SETLINK);
        assert_eq!(
            hex(bytes),
            "07000000050000000000000000000000".to_string() + "0c001a800800020002000a00"
        );
        let r = request(4, &v, false, true).expect("request");
        let (ty, bytes) = crate::nla::req_bytes(&r);
        assert_eq!(ty, RTM_DELLINK);
        assert_eq!(
            hex(bytes),
            "07000000040000000000000000000000".to_string()
                + "14001a8006000000020000000800020002000a00"
        );
        // decoding the request's own AF_SPEC gives the VLAN back
        let (_, back) = decode(bytes).expect("decode").expect("vlan");
        assert_eq!(back, vec![pb::BridgeVlan { vid: 10, flags: 2 }]);
    }

    #[test]
    fn changes_remove_the_default_pvid_and_add_the_saved() {
        let saved = vec![pb::BridgeVlan { vid: 10, flags: 6 }];
        let live = vec![pb::BridgeVlan { vid: 1, flags: 6 }];
        let c = changes(&saved, &live);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].0.vid, c[0].1), (1, false));
        assert_eq!((c[1].0.vid, c[1].1), (10, true));
        assert!(changes(&saved, &saved).is_empty());
    }
}
