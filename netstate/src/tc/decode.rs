//! Dumped tc messages (struct tcmsg, struct tcamsg and their attributes) to pb::TcObject, by
//! hand, keeping what a request may carry and dropping what only a dump reports: statistics,
//! counters (`TCA_U32_PCNT`, a mark's hit count), action timestamps (`*_TM`), reference and
//! bind counts, hardware state. Filter and action options are walked attribute by attribute
//! and re-emitted with their type bits as dumped; qdisc and class options are kept whole
//! (several kinds put a bare struct there, netem a struct followed by attributes).

use crhook_proto as pb;

use super::{bpf::BpfSeen, TCA_ACT_TAB};
use crate::ifmap::IfMap;
use crate::nla::{self, align4, attrs, NLA_F_NESTED};

/// sizeof(struct tcmsg)
pub(crate) const TCMSG_LEN: usize = 20;
/// sizeof(struct tcamsg)
pub(crate) const TCAMSG_LEN: usize = 4;

pub(crate) const TCA_KIND: u16 = 1;
pub(crate) const TCA_OPTIONS: u16 = 2;
const TCA_RATE: u16 = 5;
const TCA_STAB: u16 = 8;
pub(crate) const TCA_CHAIN: u16 = 11;
const TCA_INGRESS_BLOCK: u16 = 13;
const TCA_EGRESS_BLOCK: u16 = 14;

const TCA_ACT_KIND: u16 = 1;
const TCA_ACT_OPTIONS: u16 = 2;
const TCA_ACT_INDEX: u16 = 3;
const TCA_ACT_STATS: u16 = 4;
const TCA_ACT_PAD: u16 = 5;
const TCA_ACT_USED_HW_STATS: u16 = 9;
const TCA_ACT_IN_HW_COUNT: u16 = 10;

/// sizeof(struct tcf_t): install, lastuse, expires, firstuse
const TCF_T_LEN: usize = 32;
/// struct tc_gen { index, capab, action, refcnt, bindcnt }: refcnt and bindcnt offsets
const GEN_REFCNT: usize = 12;
const GEN_BINDCNT: usize = 16;
/// struct tc_mirred { tc_gen; int eaction; u32 ifindex }
const MIRRED_IFINDEX: usize = 24;
/// struct tc_police { index, action, limit, burst, mtu, rate, peakrate, refcnt, bindcnt, .. }
const POLICE_REFCNT: usize = 44;
const POLICE_BINDCNT: usize = 48;
/// struct tc_u32_mark { val, mask, success }: the hit count
const U32_MARK_SUCCESS: usize = 8;
/// struct tc_htb_glob { version, rate2quantum, defcls, debug, direct_pkts }
const HTB_GLOB_DIRECT_PKTS: usize = 16;
const TCA_HTB_INIT: u16 = 2;

/// The tcmsg header of a dumped qdisc, class or filter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TcHeader {
    pub ifindex: u32,
    pub handle: u32,
    pub parent: u32,
    pub info: u32,
}

/// A rebuilt attribute list: bytes, and where ifindexes sit in them.
#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    devrefs: Vec<(usize, u32)>,
}

impl Out {
    /// Appends one attribute, returning where its value starts.
    fn put(&mut self, kind: u16, value: &[u8]) -> Result<usize, String> {
        let len = u16::try_from(4 + value.len())
            .map_err(|_| format!("attribute {kind} of {} bytes", value.len()))?;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        Ok(at)
    }

    fn put_nested(&mut self, kind: u16, inner: Out) -> Result<(), String> {
        let at = self.put(kind, &inner.buf)?;
        self.devrefs
            .extend(inner.devrefs.into_iter().map(|(o, i)| (o + at, i)));
        Ok(())
    }
}

/// Zeroes `len` bytes at `off` of a copy of `v` (a counter inside a struct).
fn zeroed(v: &[u8], spans: &[usize]) -> Vec<u8> {
    let mut c = v.to_vec();
    for &off in spans {
        if let Some(s) = c.get_mut(off..off + 4) {
            s.fill(0);
        }
    }
    c
}

pub(crate) fn header(h: &[u8]) -> TcHeader {
    TcHeader {
        ifindex: nla::u32_at(h, 4),
        handle: nla::u32_at(h, 8),
        parent: nla::u32_at(h, 12),
        info: nla::u32_at(h, 16),
    }
}

/// A dumped qdisc, class or filter.
pub(crate) fn decode(ty: pb::TcType, payload: &[u8], ifs: &IfMap) -> Result<pb::TcObject, String> {
    let (h, list) = nla::split(payload, TCMSG_LEN, "tc")?;
    let h = header(h);
    let mut o = pb::TcObject {
        r#type: ty as i32,
        ifindex: h.ifindex,
        ifname: if h.ifindex == super::TCM_IFINDEX_MAGIC_BLOCK {
            String::new()
        } else {
            ifs.name(h.ifindex)
        },
        handle: h.handle,
        parent: h.parent,
        info: if ty == pb::TcType::TcFilter {
            h.info
        } else {
            0
        },
        ..Default::default()
    };
    let mut options: Option<&[u8]> = None;
    for at in list {
        let at = at?;
        match at.ty() {
            TCA_KIND => o.kind = at.string(),
            TCA_OPTIONS => options = Some(at.value),
            TCA_CHAIN => o.chain = at.u32()?,
            TCA_RATE | TCA_STAB | TCA_INGRESS_BLOCK | TCA_EGRESS_BLOCK => o.raw.push(at.raw()),
            // statistics, hardware state, dump flags: not state a request sets
            _ => {}
        }
    }
    let Some(opts) = options else {
        return Ok(o);
    };
    if ty == pb::TcType::TcFilter {
        let mut bpf = BpfSeen::default();
        let out = filter_options(&o.kind, opts, &mut bpf)?;
        o.options = out.buf;
        o.devrefs = devrefs(out.devrefs, ifs);
        o.bpf = bpf.take();
    } else if o.kind == "htb" && ty == pb::TcType::TcQdisc {
        o.options = htb_qdisc(opts)?;
    } else {
        o.options = opts.to_vec();
    }
    Ok(o)
}

fn devrefs(v: Vec<(usize, u32)>, ifs: &IfMap) -> Vec<pb::TcDevRef> {
    v.into_iter()
        .map(|(off, ifindex)| pb::TcDevRef {
            offset: off as u32,
            ifindex,
            ifname: ifs.name(ifindex),
        })
        .collect()
}

/// htb's TCA_HTB_INIT carries the count of packets sent unclassified: zeroed. Its version
/// is dumped as HTB_VER (0x30011) but an add accepts only HTB_VER >> 16 (else EINVAL).
fn htb_qdisc(opts: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Out::default();
    for at in attrs(opts) {
        let at = at?;
        if at.ty() == TCA_HTB_INIT {
            let mut g = zeroed(at.value, &[HTB_GLOB_DIRECT_PKTS]);
            let version = nla::u32_at(&g, 0);
            if let Some(v) = g.get_mut(..4).filter(|_| version > 0xFFFF) {
                v.copy_from_slice(&(version >> 16).to_ne_bytes());
            }
            out.put(at.kind, &g)?;
        } else {
            out.put(at.kind, at.value)?;
        }
    }
    Ok(out.buf)
}

/// Per classifier: the attribute holding its actions, its counters, its flags.
fn classifier(kind: &str) -> (Option<u16>, &'static [u16], Option<u16>) {
    match kind {
        "u32" => (Some(7), &[9], Some(11)),
        "matchall" => (Some(2), &[4], Some(3)),
        "flower" => (Some(3), &[], Some(22)),
        "bpf" => (Some(1), &[], Some(9)),
        "basic" => (Some(3), &[5], None),
        "fw" => (Some(4), &[], None),
        "route" => (Some(6), &[], None),
        "cgroup" => (Some(1), &[], None),
        "flow" => (Some(9), &[], None),
        _ => (None, &[], None),
    }
}

/// TCA_CLS_FLAGS_IN_HW | TCA_CLS_FLAGS_NOT_IN_HW: where the kernel put a filter, reported
/// in dumps and refused in requests ("Invalid filter flags").
const CLS_FLAGS_HW_STATE: u32 = 1 << 2 | 1 << 3;

const TCA_U32_MARK: u16 = 10;

fn filter_options(kind: &str, opts: &[u8], bpf: &mut BpfSeen) -> Result<Out, String> {
    let (act, counters, flags) = classifier(kind);
    let mut out = Out::default();
    for at in attrs(opts) {
        let at = at?;
        let t = at.ty();
        if counters.contains(&t) {
            continue;
        }
        if Some(t) == flags {
            let f = at.u32()? & !CLS_FLAGS_HW_STATE;
            if f != 0 {
                out.put(at.kind, &f.to_ne_bytes())?;
            }
        } else if Some(t) == act {
            out.put_nested(at.kind, actions(at.value, bpf)?)?;
        } else if kind == "u32" && t == TCA_U32_MARK {
            out.put(at.kind, &zeroed(at.value, &[U32_MARK_SUCCESS]))?;
        } else {
            out.put(at.kind, at.value)?;
        }
    }
    if kind == "bpf" {
        bpf.classifier(opts)?;
    }
    Ok(out)
}

/// A list of actions (nested, one per order number) as a filter dumps it.
fn actions(list: &[u8], bpf: &mut BpfSeen) -> Result<Out, String> {
    let mut out = Out::default();
    for at in attrs(list) {
        let at = at?;
        out.put_nested(at.kind, action(at.value, bpf)?)?;
    }
    Ok(out)
}

/// One action's attributes: kind, options (per kind), index, cookie, flags.
pub(crate) fn action_kind(a: &[u8]) -> Result<String, String> {
    for at in attrs(a) {
        let at = at?;
        if at.ty() == TCA_ACT_KIND {
            return Ok(at.string());
        }
    }
    Ok(String::new())
}

fn action(a: &[u8], bpf: &mut BpfSeen) -> Result<Out, String> {
    let kind = action_kind(a)?;
    let mut out = Out::default();
    for at in attrs(a) {
        let at = at?;
        match at.ty() {
            TCA_ACT_STATS | TCA_ACT_PAD | TCA_ACT_USED_HW_STATS | TCA_ACT_IN_HW_COUNT => {}
            TCA_ACT_OPTIONS => out.put_nested(at.kind, action_options(&kind, at.value, bpf)?)?,
            _ => {
                out.put(at.kind, at.value)?;
            }
        }
    }
    Ok(out)
}

/// Per action kind: (timestamp attribute, parameters attribute, refcnt and bindcnt offsets).
fn action_layout(kind: &str) -> (u16, u16, [usize; 2]) {
    match kind {
        "police" => (6, 1, [POLICE_REFCNT, POLICE_BINDCNT]),
        "csum" | "nat" | "connmark" | "ctinfo" => (2, 1, [GEN_REFCNT, GEN_BINDCNT]),
        // mirred, gact, bpf, skbedit, tunnel_key, vlan, pedit, skbmod, simple, mpls, ct, ...
        _ => (1, 2, [GEN_REFCNT, GEN_BINDCNT]),
    }
}

/// The parameters of one action, reference counts and timestamps removed.
fn action_options(kind: &str, opts: &[u8], bpf: &mut BpfSeen) -> Result<Out, String> {
    let (tm, parms, counts) = action_layout(kind);
    let mut out = Out::default();
    for at in attrs(opts) {
        let at = at?;
        let t = at.ty();
        if t == tm && at.value.len() == TCF_T_LEN {
            continue;
        }
        if t == parms {
            let v = zeroed(at.value, &counts);
            let start = out.put(at.kind, &v)?;
            if kind == "mirred" && v.len() >= MIRRED_IFINDEX + 4 {
                out.devrefs
                    .push((start + MIRRED_IFINDEX, nla::u32_at(&v, MIRRED_IFINDEX)));
            }
            continue;
        }
        out.put(at.kind, at.value)?;
    }
    if kind == "bpf" {
        bpf.action(opts)?;
    }
    Ok(out)
}

/// Standalone actions of one RTM_GETACTION dump answer: (kind, index, attributes) of each
/// action made on its own (`tc actions add`), not of those a filter made and owns (their
/// reference count equals their bind count: they die with the filter).
pub(crate) fn standalone_actions(payload: &[u8], ifs: &IfMap) -> Result<Vec<pb::TcObject>, String> {
    let (_, list) = nla::split(payload, TCAMSG_LEN, "tc action")?;
    let mut found = Vec::new();
    for at in list {
        let at = at?;
        if at.ty() != TCA_ACT_TAB {
            continue;
        }
        for a in attrs(at.value) {
            let a = a?;
            let kind = action_kind(a.value)?;
            let (_, parms, [rc, bc]) = action_layout(&kind);
            let mut index = 0;
            let mut standalone = false;
            for x in attrs(a.value) {
                let x = x?;
                match x.ty() {
                    TCA_ACT_INDEX => index = x.u32()?,
                    TCA_ACT_OPTIONS => {
                        for p in attrs(x.value) {
                            let p = p?;
                            if p.ty() == parms {
                                standalone = nla::u32_at(p.value, rc) > nla::u32_at(p.value, bc);
                                // every kind's parameters open with the index; dumps
                                // carry no TCA_ACT_INDEX
                                if index == 0 {
                                    index = nla::u32_at(p.value, 0);
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            if !standalone {
                continue;
            }
            let mut seen = BpfSeen::default();
            let out = action(a.value, &mut seen)?;
            found.push(pb::TcObject {
                r#type: pb::TcType::TcAction as i32,
                handle: index,
                kind,
                options: out.buf,
                devrefs: devrefs(out.devrefs, ifs),
                bpf: seen.take(),
                ..Default::default()
            });
        }
    }
    Ok(found)
}

/// The TCA_ACT_TAB request attribute for one action of `kind` (a dump filter, a delete).
pub(crate) fn act_tab(kind: &str, index: Option<u32>) -> Result<Vec<u8>, String> {
    let mut one = Out::default();
    let mut k = kind.as_bytes().to_vec();
    k.push(0);
    one.put(TCA_ACT_KIND, &k)?;
    if let Some(i) = index {
        one.put(TCA_ACT_INDEX, &i.to_ne_bytes())?;
    }
    let mut tab = Out::default();
    tab.put_nested(1 | NLA_F_NESTED, one)?;
    let mut top = Out::default();
    top.put_nested(TCA_ACT_TAB | NLA_F_NESTED, tab)?;
    Ok(top.buf)
}
