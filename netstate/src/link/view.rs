//! The comparable form of a link: what `diff` reports and what restore calls "identical".
//! Indexes become names (they are pinned where free, but a pre-populated namespace may force
//! others), and state the kernel changes by itself (operstate, carrier flags, queue
//! attachment counts, peer namespace inode numbers) is left out.

use std::collections::HashMap;

use crhook_proto::{self as pb};
use serde_json::Value;

use super::create::{IFF_UP, USER_FLAGS};

const IFLA_BR_AGEING_TIME: u16 = 4;

pub fn view(l: &pb::Link, names: &HashMap<u32, String>) -> Value {
    let mut c = l.clone();
    c.flags &= USER_FLAGS | IFF_UP;
    c.operstate = 0;
    c.ifindex = 0;
    c.link = 0;
    c.master = 0;
    // a property of the image, not of the link
    c.ll_tracked = false;
    if let Some(lw) = &mut c.lower {
        lw.ns_dev = 0;
        lw.ns_ino = 0;
        lw.pid = 0;
    }
    // port numbers follow the order ports joined; a gap left by a removed port cannot be
    // recreated, and the number is not a setting
    if let Some(bp) = &mut c.bridge_port {
        bp.port_no = 0;
    }
    match &mut c.info {
        Some(pb::link::Info::Veth(v)) => {
            v.peer_ifindex = 0;
            v.peer_ns_dev = 0;
            v.peer_ns_ino = 0;
            v.peer_pid = 0;
            if let Some(bp) = &mut v.peer_bridge_port {
                bp.port_no = 0;
            }
        }
        Some(pb::link::Info::Tun(t)) => {
            t.num_queues = 0;
            t.num_disabled_queues = 0;
        }
        // with STP on, the kernel reports the effective ageing time, which it drops to the
        // forward delay during a topology change: not a setting anyone made
        Some(pb::link::Info::Bridge(b)) if b.stp_state != 0 => {
            b.ageing_time = 0;
            c.info_data_raw
                .retain(|a| a.kind as u16 & 0x3fff != IFLA_BR_AGEING_TIME);
        }
        _ => {}
    }
    let far = match &mut c.info {
        Some(pb::link::Info::Veth(v)) => v.far_end.take(),
        _ => None,
    };
    let mut v = serde_json::to_value(&c).unwrap_or_default();
    if let Some(f) = far {
        if let Some(o) = v.as_object_mut() {
            o.insert("far_end".into(), super::far_end::view(&f));
        }
    }
    if let Some(o) = v.as_object_mut() {
        let name_of = |i: u32| -> Value {
            if i == 0 {
                Value::Null
            } else {
                Value::String(names.get(&i).cloned().unwrap_or_else(|| format!("if{i}")))
            }
        };
        o.insert("master".into(), name_of(l.master));
        if !l.link_other_netns && l.kind != "veth" {
            o.insert("link".into(), name_of(l.link));
        }
        o.remove("ifindex");
        o.remove("operstate");
    }
    v
}

/// An image from before far ends were kept says nothing about them: `live`'s far end is
/// dropped when `saved` has none, so the two compare on what the image knows.
pub fn forget_unknown_far_end(saved: &pb::Link, live: &mut pb::Link) {
    if let (Some(pb::link::Info::Veth(s)), Some(pb::link::Info::Veth(l))) =
        (&saved.info, &mut live.info)
    {
        if s.far_end.is_none() {
            l.far_end = None;
        }
    }
}

/// Names by ifindex of a list of links.
pub fn names(links: &[pb::Link]) -> HashMap<u32, String> {
    links.iter().map(|l| (l.ifindex, l.name.clone())).collect()
}
