//! Traffic control in `diff` and `restore --verify`: objects paired by identity, then compared
//! by their readable parameters (`qdisc eth0 root tbf: rate 10Mbit -> 20Mbit`), and by their
//! bytes where the parameters do not show what changed.

use std::collections::HashMap;

use crhook_proto as pb;

use super::params::{params, summary};
use super::{normalize, object, type_word};
use crate::api::Difference;
use crate::family::{field_diffs, keys, Tc};

/// The parameters by name, repeated ones (`match`, `action`) joined in order.
fn by_name(o: &pb::TcObject) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in params(o) {
        match out.iter_mut().find(|(n, _)| *n == k) {
            Some((_, old)) => {
                old.push_str("; ");
                old.push_str(&v);
            }
            None => out.push((k, v)),
        }
    }
    out
}

fn whole(o: &pb::TcObject) -> String {
    let s = summary(o);
    if s.is_empty() {
        "present".into()
    } else {
        s
    }
}

/// Appends one line per differing parameter, and one per object on one side only.
pub fn diff(saved: &[pb::TcObject], live: &[pb::TcObject], out: &mut Vec<Difference>) {
    let live_keys = keys::<Tc>(live);
    let live_map: HashMap<&str, &pb::TcObject> =
        live_keys.iter().map(String::as_str).zip(live).collect();
    let saved_keys = keys::<Tc>(saved);
    let line = |o: &pb::TcObject, field: &str, s: String, l: String| Difference {
        kind: type_word(o).into(),
        object: object(o),
        field: field.into(),
        saved: s,
        live: l,
    };
    for (k, s) in saved_keys.iter().zip(saved) {
        let Some(l) = live_map.get(k.as_str()) else {
            out.push(line(s, "-", whole(s), "absent".into()));
            continue;
        };
        let (mut ns, mut nl) = (s.clone(), (*l).clone());
        normalize(&mut ns);
        normalize(&mut nl);
        if ns == nl {
            continue;
        }
        if s.kind != l.kind {
            out.push(line(s, "kind", s.kind.clone(), l.kind.clone()));
            continue;
        }
        let (ps, pl) = (by_name(s), by_name(l));
        let mut any = false;
        for (name, sv) in &ps {
            let lv = pl
                .iter()
                .find(|(n, _)| n == name)
                .map_or("absent", |(_, v)| v.as_str());
            if sv != lv {
                out.push(line(s, name, sv.clone(), lv.to_string()));
                any = true;
            }
        }
        for (name, lv) in &pl {
            if !ps.iter().any(|(n, _)| n == name) {
                out.push(line(s, name, "absent".into(), lv.clone()));
                any = true;
            }
        }
        if !any {
            for c in field_diffs(&ns, &nl) {
                out.push(line(s, &c.field, c.saved, c.live));
            }
        }
    }
    let saved_set: std::collections::HashSet<&str> =
        saved_keys.iter().map(String::as_str).collect();
    for (k, l) in live_keys.iter().zip(live) {
        if !saved_set.contains(k.as_str()) {
            out.push(line(l, "-", "absent".into(), whole(l)));
        }
    }
}
