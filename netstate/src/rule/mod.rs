//! Policy routing rules, IPv4 and IPv6: capture, the requests that add and delete them,
//! identity and the canonical form diff compares.
//!
//! Kernel behaviour this relies on:
//! - Every namespace starts with rules of protocol kernel (2): IPv4 priorities 0 (local),
//!   32766 (main) and 32767 (default), IPv6 0 and 32766. They are left out.
//! - `fib_rule_hdr.table` is 8 bits: tables above 255 arrive as RT_TABLE_COMPAT with the id in
//!   FRA_TABLE, which is therefore the one read and sent.
//! - A rule without FRA_PRIORITY gets one chosen by the kernel, and the dump omits
//!   FRA_PRIORITY for priority 0; so priority is always saved (0 when absent) and always sent.
//! - The dump always carries FRA_SUPPRESS_PREFIXLEN, -1 meaning unset; that is saved as unset.
//! - Of the header flags only FIB_RULE_INVERT (`not`) is a request; UNRESOLVED (a goto whose
//!   target does not exist yet) and IIF/OIF_DETACHED (the named device is absent) are state.
//!   The kernel resolves a goto when its target rule is added, so rules restore in any order.

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use crhook_proto as pb;

use crate::error::Result;
use crate::ifmap::IfMap;
use crate::nl::{Nl, Req};
use crate::nla::{self, prefix_str, AF_INET, AF_INET6};

pub(crate) const RTM_NEWRULE: u16 = 32;
pub(crate) const RTM_DELRULE: u16 = 33;
pub(crate) const RTM_GETRULE: u16 = 34;

pub const FIB_RULE_INVERT: u32 = 2;

pub const FR_ACT_TO_TBL: u32 = 1;
pub const FR_ACT_GOTO: u32 = 2;
pub const FR_ACT_NOP: u32 = 3;
pub const FR_ACT_BLACKHOLE: u32 = 6;
pub const FR_ACT_UNREACHABLE: u32 = 7;
pub const FR_ACT_PROHIBIT: u32 = 8;

/// Dumps IPv4 then IPv6 rules, leaving out the kernel's defaults.
/// Rules name their devices, never index them, so `_ifs` is not needed.
pub fn capture(nl: &mut Nl, _ifs: &IfMap) -> Result<Vec<pb::Rule>> {
    let mut out = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let req = Req::Raw {
            msg_type: RTM_GETRULE,
            payload: vec![family, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let op = if family == AF_INET {
            "dump IPv4 rules"
        } else {
            "dump IPv6 rules"
        };
        for (ty, payload) in nl.dump_raw(&req, op)? {
            if ty != RTM_NEWRULE {
                continue;
            }
            match decode::decode(&payload) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(what) => return Err(nla::decode_error(op, nl.netns(), what)),
            }
        }
    }
    Ok(out)
}

/// RTM_NEWRULE for a saved rule. Rules name their devices, so `ifs` is not needed.
pub fn add_request(r: &pb::Rule, _ifs: &IfMap) -> Result<Req> {
    encode::encode(r, RTM_NEWRULE)
}

/// RTM_DELRULE: the kernel deletes the rule matching every selector given, so the request
/// carries the same selectors as the add.
pub fn del_request(r: &pb::Rule, _ifs: &IfMap) -> Result<Req> {
    encode::encode(r, RTM_DELRULE)
}

fn family_name(f: u32) -> &'static str {
    if f == u32::from(AF_INET6) {
        "inet6"
    } else {
        "inet"
    }
}

/// Everything the kernel compares when it refuses a duplicate (NLM_F_EXCL): priority, every
/// selector, the action and its table or target; in `ip rule` words.
pub fn key(r: &pb::Rule) -> String {
    let mut k = format!("{} pref {}", family_name(r.family), r.priority.unwrap_or(0));
    if r.flags & FIB_RULE_INVERT != 0 {
        k.push_str(" not");
    }
    if r.src_len != 0 || !r.src.is_empty() {
        k.push_str(&format!(
            " from {}",
            prefix_str(r.family, &r.src, r.src_len)
        ));
    } else {
        k.push_str(" from all");
    }
    if r.dst_len != 0 || !r.dst.is_empty() {
        k.push_str(&format!(" to {}", prefix_str(r.family, &r.dst, r.dst_len)));
    }
    if r.tos != 0 {
        k.push_str(&format!(" tos {:#x}", r.tos));
    }
    if let Some(d) = r.dscp {
        k.push_str(&format!(" dscp {d}"));
    }
    match (r.fwmark, r.fwmask) {
        (Some(m), Some(mask)) => k.push_str(&format!(" fwmark {m:#x}/{mask:#x}")),
        (Some(m), None) => k.push_str(&format!(" fwmark {m:#x}")),
        (None, Some(mask)) => k.push_str(&format!(" fwmark 0/{mask:#x}")),
        (None, None) => {}
    }
    if !r.iifname.is_empty() {
        k.push_str(&format!(" iif {}", r.iifname));
    }
    if !r.oifname.is_empty() {
        k.push_str(&format!(" oif {}", r.oifname));
    }
    if let (Some(s), Some(e)) = (r.uid_start, r.uid_end) {
        k.push_str(&format!(" uidrange {s}-{e}"));
    }
    if let Some(p) = r.ip_proto {
        k.push_str(&format!(" ipproto {p}"));
    }
    if let (Some(s), Some(e)) = (r.sport_start, r.sport_end) {
        k.push_str(&format!(" sport {s}-{e}"));
    }
    if let (Some(s), Some(e)) = (r.dport_start, r.dport_end) {
        k.push_str(&format!(" dport {s}-{e}"));
    }
    if let Some(t) = r.tun_id {
        k.push_str(&format!(" tun_id {t}"));
    }
    if let Some(l) = r.l3mdev {
        k.push_str(&format!(" l3mdev {l}"));
    }
    if let Some(f) = r.flow {
        k.push_str(&format!(" realms {f:#x}"));
    }
    for a in &r.raw {
        let hex: String = a.value.iter().map(|b| format!("{b:02x}")).collect();
        k.push_str(&format!(" attr{}={hex}", a.kind));
    }
    match r.action {
        FR_ACT_TO_TBL => k.push_str(&format!(" lookup {}", r.table)),
        FR_ACT_GOTO => k.push_str(&format!(" goto {}", r.goto.unwrap_or(0))),
        FR_ACT_NOP => k.push_str(" nop"),
        FR_ACT_BLACKHOLE => k.push_str(" blackhole"),
        FR_ACT_UNREACHABLE => k.push_str(" unreachable"),
        FR_ACT_PROHIBIT => k.push_str(" prohibit"),
        a => k.push_str(&format!(" action {a} table {}", r.table)),
    }
    if let Some(p) = r.suppress_prefixlen {
        k.push_str(&format!(" suppress_prefixlength {p}"));
    }
    if let Some(g) = r.suppress_ifgroup {
        k.push_str(&format!(" suppress_ifgroup {g}"));
    }
    k
}

/// `rule inet pref 100 from all fwmark 0x10/0xff lookup 100`.
pub fn describe(r: &pb::Rule) -> String {
    format!("rule {}", key(r))
}

/// Rules carry no ifindex and nothing that drifts; the canonical form is the rule itself.
pub fn normalize(_r: &mut pb::Rule) {}
