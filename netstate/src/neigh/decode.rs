//! RTM_NEWNEIGH (a dump answer) to pb::Neighbour, with the verdict on whether it is user state.

use crhook_proto as pb;

use super::{family_ok, NTF_EXT_LEARNED, NTF_PROXY, NUD_NOARP, NUD_PERMANENT};
use crate::ifmap::IfMap;
use crate::nla;

pub(crate) const NDA_DST: u16 = 1;
pub(crate) const NDA_LLADDR: u16 = 2;
const NDA_CACHEINFO: u16 = 3;
const NDA_PROBES: u16 = 4;
pub(crate) const NDA_PROTOCOL: u16 = 12;
const NDA_FLAGS_EXT: u16 = 15;
const NTF_EXT_MANAGED: u32 = 0x01;

/// sizeof(struct ndmsg)
pub(crate) const NDMSG_LEN: usize = 12;

const RTN_LOCAL: u32 = 2;
const RTN_BROADCAST: u32 = 3;
const RTN_MULTICAST: u32 = 5;

pub(crate) enum Verdict {
    Keep(pb::Neighbour),
    /// a NOARP entry of a unicast destination: kept unless its device makes every entry NOARP
    NoarpUnicast(pb::Neighbour),
    Skip,
}

fn multicast_or_broadcast(dst: &[u8]) -> bool {
    match dst {
        [a, ..] if dst.len() == 16 => *a == 0xff,
        [a, b, c, d] => {
            (*a & 0xf0) == 0xe0 || [*a, *b, *c, *d] == [255; 4] || [*a, *b, *c, *d] == [0; 4]
        }
        _ => false,
    }
}

pub(crate) fn decode(payload: &[u8], ifs: &IfMap) -> Result<Verdict, String> {
    let (h, attrs) = nla::split(payload, NDMSG_LEN, "neighbour")?;
    if !family_ok(h[0]) {
        return Ok(Verdict::Skip);
    }
    let ifindex = nla::u32_at(h, 4);
    let mut n = pb::Neighbour {
        family: u32::from(h[0]),
        ifindex,
        ifname: if ifindex == 0 {
            String::new()
        } else {
            ifs.name(ifindex)
        },
        state: u32::from(nla::u16_at(h, 8)),
        flags: u32::from(h[10]),
        ntype: u32::from(h[11]),
        ..Default::default()
    };
    let mut managed = false;
    for at in attrs {
        let at = at?;
        match at.ty() {
            NDA_DST => n.dst = at.value.to_vec(),
            NDA_LLADDR => n.lladdr = at.value.to_vec(),
            NDA_PROTOCOL => n.protocol = Some(u32::from(at.u8()?)),
            // statistics of the resolution machinery
            NDA_CACHEINFO | NDA_PROBES => {}
            NDA_FLAGS_EXT => {
                managed = at.u32()? & NTF_EXT_MANAGED != 0;
                n.raw.push(at.raw());
            }
            _ => n.raw.push(at.raw()),
        }
    }
    if n.flags & NTF_PROXY != 0
        || n.state & NUD_PERMANENT != 0
        || n.flags & NTF_EXT_LEARNED != 0
        || managed
    {
        return Ok(Verdict::Keep(n));
    }
    if n.state & NUD_NOARP == 0 {
        return Ok(Verdict::Skip);
    }
    let kernel_made = matches!(n.ntype, RTN_LOCAL | RTN_BROADCAST | RTN_MULTICAST)
        || multicast_or_broadcast(&n.dst)
        || n.lladdr.is_empty();
    if kernel_made {
        return Ok(Verdict::Skip);
    }
    Ok(Verdict::NoarpUnicast(n))
}
