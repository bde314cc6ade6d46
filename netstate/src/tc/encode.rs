//! Requests that add and delete saved tc objects, devices mapped to the live namespace.

use crhook_proto as pb;

use super::decode::{act_tab, TCAMSG_LEN, TCA_CHAIN, TCA_KIND, TCA_OPTIONS};
use super::{
    describe, tcmsg, ty, RTM_DELACTION, RTM_DELCHAIN, RTM_DELQDISC, RTM_DELTCLASS, RTM_DELTFILTER,
    RTM_NEWACTION, RTM_NEWCHAIN, RTM_NEWQDISC, RTM_NEWTCLASS, RTM_NEWTFILTER, TCA_ACT_TAB,
    TCM_IFINDEX_MAGIC_BLOCK,
};
use crate::error::{NetstateError, Result};
use crate::ifmap::IfMap;
use crate::nl::Req;
use crate::nla::{self, MsgBuf, NLA_F_NESTED};

fn live_dev(o: &pb::TcObject, ifs: &IfMap) -> Result<u32> {
    if o.ifindex == TCM_IFINDEX_MAGIC_BLOCK {
        return Ok(o.ifindex);
    }
    nla::live_ifindex(ifs, o.ifindex, &o.ifname, || describe(o))
}

/// The options with every saved ifindex replaced by the live index of the same device.
pub(crate) fn patched_options(o: &pb::TcObject, ifs: &IfMap) -> Result<Vec<u8>> {
    let mut opts = o.options.clone();
    for d in &o.devrefs {
        let live = nla::live_ifindex(ifs, d.ifindex, &d.ifname, || describe(o))?;
        let at = d.offset as usize;
        let slot = opts.get_mut(at..at + 4).ok_or_else(|| {
            NetstateError::invalid(format!(
                "{}: device reference at byte {at} is past its {} bytes of options",
                describe(o),
                o.options.len()
            ))
        })?;
        slot.copy_from_slice(&live.to_ne_bytes());
    }
    Ok(opts)
}

fn kind_z(kind: &str) -> Vec<u8> {
    let mut k = kind.as_bytes().to_vec();
    k.push(0);
    k
}

pub(crate) fn add(o: &pb::TcObject, ifs: &IfMap) -> Result<Req> {
    if let Some(p) = &o.bpf {
        return Err(NetstateError::invalid(format!(
            "{}: runs eBPF program {}, which cannot be carried",
            describe(o),
            p.id
        )));
    }
    let msg_type = match ty(o) {
        pb::TcType::TcQdisc => RTM_NEWQDISC,
        pb::TcType::TcClass => RTM_NEWTCLASS,
        pb::TcType::TcFilter => RTM_NEWTFILTER,
        pb::TcType::TcAction => return action(o, ifs, RTM_NEWACTION, true),
        pb::TcType::TcChain => return chain(o, ifs, RTM_NEWCHAIN),
        pb::TcType::TcXdp | pb::TcType::TcUnspec => {
            return Err(NetstateError::invalid(format!(
                "{}: not a tc object restore can add",
                describe(o)
            )))
        }
    };
    let mut m = head(o, ifs)?;
    m.put(TCA_OPTIONS, &patched_options(o, ifs)?)?;
    m.put_raw(&o.raw)?;
    Ok(m.into_req(msg_type))
}

pub(crate) fn del(o: &pb::TcObject, ifs: &IfMap) -> Result<Req> {
    let msg_type = match ty(o) {
        pb::TcType::TcQdisc => RTM_DELQDISC,
        pb::TcType::TcClass => RTM_DELTCLASS,
        pb::TcType::TcFilter => RTM_DELTFILTER,
        pb::TcType::TcAction => return action(o, ifs, RTM_DELACTION, false),
        pb::TcType::TcChain => return chain(o, ifs, RTM_DELCHAIN),
        pb::TcType::TcXdp | pb::TcType::TcUnspec => {
            return Err(NetstateError::invalid(format!(
                "{}: not a tc object restore can delete",
                describe(o)
            )))
        }
    };
    Ok(head(o, ifs)?.into_req(msg_type))
}

/// The identity every request about `o` carries: tcmsg on the live device, kind, chain.
fn head(o: &pb::TcObject, ifs: &IfMap) -> Result<MsgBuf> {
    let mut m = MsgBuf::new(&tcmsg(live_dev(o, ifs)?, o.handle, o.parent, o.info));
    m.put(TCA_KIND, &kind_z(&o.kind))?;
    if ty(o) == pb::TcType::TcFilter {
        m.put_u32(TCA_CHAIN, o.chain)?;
    }
    Ok(m)
}

/// RTM_NEWCHAIN (with the template, if any) or RTM_DELCHAIN.
fn chain(o: &pb::TcObject, ifs: &IfMap, msg_type: u16) -> Result<Req> {
    let mut m = MsgBuf::new(&tcmsg(live_dev(o, ifs)?, 0, o.parent, 0));
    m.put_u32(TCA_CHAIN, o.chain)?;
    if msg_type == RTM_NEWCHAIN && !o.kind.is_empty() {
        m.put(TCA_KIND, &kind_z(&o.kind))?;
        m.put(TCA_OPTIONS, &o.options)?;
    }
    Ok(m.into_req(msg_type))
}

/// RTM_NEWACTION with the saved attributes, or RTM_DELACTION by kind and index.
fn action(o: &pb::TcObject, ifs: &IfMap, msg_type: u16, full: bool) -> Result<Req> {
    let mut payload = vec![0u8; TCAMSG_LEN];
    if full {
        let tab = nla::nested(|n| n.put(1 | NLA_F_NESTED, &patched_options(o, ifs)?))?;
        let mut m = MsgBuf::new(&payload);
        m.put(TCA_ACT_TAB | NLA_F_NESTED, &tab)?;
        return Ok(m.into_req(msg_type));
    }
    payload.extend(
        act_tab(&o.kind, Some(o.handle))
            .map_err(|w| NetstateError::invalid(format!("{}: {w}", describe(o))))?,
    );
    Ok(Req::Raw { msg_type, payload })
}
