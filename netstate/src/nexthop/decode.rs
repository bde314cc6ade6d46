//! RTM_NEWNEXTHOP (a dump answer) to pb::NexthopObject, by hand (see the module notes).

use crhook_proto as pb;

use super::{RTNH_F_DEAD, RTNH_F_LINKDOWN};
use crate::ifmap::IfMap;
use crate::nla::{self, NLA_F_NESTED};

pub(crate) const NHA_ID: u16 = 1;
pub(crate) const NHA_GROUP: u16 = 2;
pub(crate) const NHA_GROUP_TYPE: u16 = 3;
pub(crate) const NHA_BLACKHOLE: u16 = 4;
pub(crate) const NHA_OIF: u16 = 5;
pub(crate) const NHA_GATEWAY: u16 = 6;
pub(crate) const NHA_FDB: u16 = 11;
const NHA_RES_GROUP: u16 = 12;
const NHA_OP_FLAGS: u16 = 14;
const NHA_GROUP_STATS: u16 = 15;
const NHA_HW_STATS_USED: u16 = 17;
const NHA_RES_GROUP_UNBALANCED_TIME: u16 = 4;

/// sizeof(struct nhmsg)
pub(crate) const NHMSG_LEN: usize = 8;
/// sizeof(struct nexthop_grp)
pub(crate) const NH_GRP_LEN: usize = 8;

pub(crate) fn decode(payload: &[u8], ifs: &IfMap) -> Result<pb::NexthopObject, String> {
    let (h, attrs) = nla::split(payload, NHMSG_LEN, "nexthop")?;
    let mut nh = pb::NexthopObject {
        family: u32::from(h[0]),
        protocol: u32::from(h[2]),
        flags: nla::u32_at(h, 4) & !(RTNH_F_DEAD | RTNH_F_LINKDOWN),
        ..Default::default()
    };
    for at in attrs {
        let at = at?;
        match at.ty() {
            NHA_ID => nh.id = at.u32()?,
            NHA_GROUP => {
                if at.value.len() % NH_GRP_LEN != 0 {
                    return Err(format!("NHA_GROUP of {} bytes", at.value.len()));
                }
                for g in at.value.chunks_exact(NH_GRP_LEN) {
                    let w = u32::from(g[4]) | (u32::from(g[5]) << 8);
                    nh.group.push(pb::NexthopGroupMember {
                        id: nla::u32_at(g, 0),
                        weight: w + 1,
                    });
                }
            }
            NHA_GROUP_TYPE => nh.group_type = u32::from(at.u16()?),
            NHA_BLACKHOLE => nh.blackhole = true,
            NHA_OIF => {
                nh.oif = at.u32()?;
                nh.oif_name = ifs.name(nh.oif);
            }
            NHA_GATEWAY => nh.gateway = at.value.to_vec(),
            NHA_FDB => nh.fdb = true,
            NHA_RES_GROUP => {
                // keep the configuration (buckets, timers); drop the dump-only running time and
                // its alignment pad (type 0), which the add's strict parser refuses
                let mut kept = Vec::new();
                for inner in nla::attrs(at.value) {
                    let inner = inner?;
                    if inner.ty() == NHA_RES_GROUP_UNBALANCED_TIME || inner.ty() == 0 {
                        continue;
                    }
                    let len = u16::try_from(4 + inner.value.len())
                        .map_err(|_| "NHA_RES_GROUP too long".to_string())?;
                    kept.extend_from_slice(&len.to_ne_bytes());
                    kept.extend_from_slice(&inner.kind.to_ne_bytes());
                    kept.extend_from_slice(inner.value);
                    kept.resize(nla::align4(kept.len()), 0);
                }
                nh.raw.push(pb::RawAttr {
                    kind: u32::from(NHA_RES_GROUP | NLA_F_NESTED),
                    value: kept,
                });
            }
            // reply metadata and counters, not configuration
            NHA_OP_FLAGS | NHA_GROUP_STATS | NHA_HW_STATS_USED => {}
            _ => nh.raw.push(at.raw()),
        }
    }
    if nh.id == 0 {
        return Err("nexthop without NHA_ID".into());
    }
    Ok(nh)
}
