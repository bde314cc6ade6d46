//! Readable parameters of tc objects, the way `tc` prints them (`rate 10Mbit burst 4Kb lat
//! 400ms`), for diff, show and errors. Decoded from the saved option bytes: through
//! netlink-packet-route where it models the kind (fq_codel, u32, matchall, mirred), by hand
//! for the rest (tbf, htb, fifos, prio, netem, sfq, fq, gact, police). A kind modelled by
//! neither shows its options as hex, so a change is still reported.

use crhook_proto as pb;
use netlink_packet_core::{NlasIterator, Parseable};
use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcFilterMatchAllOption,
    TcFilterU32Option, TcMirrorActionType, TcQdiscFqCodelOption,
};

use super::{handle_str, ty};
use crate::nla::{self, attrs, hex};

/// One readable parameter: name and value (`rate`, `10Mbit`); a bare word has no value.
pub type Param = (String, String);

fn p(k: &str, v: impl Into<String>) -> Param {
    (k.to_string(), v.into())
}

/// The parameters joined: `rate 10Mbit burst 4Kb lat 400ms`.
pub fn summary(o: &pb::TcObject) -> String {
    if let Some(b) = &o.bpf {
        return format!("{} (eBPF, not carried)", super::bpf::describe(b));
    }
    params(o)
        .into_iter()
        .map(|(k, v)| if v.is_empty() { k } else { format!("{k} {v}") })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The parameters of one object; `options` as hex where the kind is not modelled.
pub fn params(o: &pb::TcObject) -> Vec<Param> {
    let b = o.options.as_slice();
    let r = match (ty(o), o.kind.as_str()) {
        (pb::TcType::TcQdisc, "tbf") => tbf(b),
        (pb::TcType::TcQdisc, "htb") => htb_qdisc(b),
        (pb::TcType::TcClass, "htb") => htb_class(b),
        (pb::TcType::TcQdisc, "pfifo" | "pfifo_head_drop") => fifo(b, "p"),
        (pb::TcType::TcQdisc, "bfifo") => fifo(b, "b"),
        (pb::TcType::TcQdisc, "prio" | "pfifo_fast") => prio(b),
        (pb::TcType::TcQdisc, "netem") => netem(b),
        (pb::TcType::TcQdisc, "sfq") => sfq(b),
        (pb::TcType::TcQdisc, "fq") => fq(b),
        (pb::TcType::TcQdisc, "fq_codel") => fq_codel(b),
        (pb::TcType::TcQdisc, "ingress" | "clsact") => Some(Vec::new()),
        (pb::TcType::TcFilter, "u32") => u32_filter(o),
        (pb::TcType::TcFilter, "matchall") => matchall(o),
        (pb::TcType::TcAction, _) => Some(action(o, b)),
        (pb::TcType::TcChain, "") => Some(Vec::new()),
        (pb::TcType::TcChain, k) => Some(vec![p("template", k), p("options", hex(b))]),
        _ => None,
    };
    let mut v = r.unwrap_or_else(|| vec![p("options", hex(b))]);
    if matches!(ty(o), pb::TcType::TcQdisc | pb::TcType::TcClass) {
        v.insert(0, p("handle", handle_str(o.handle)));
    }
    v
}

/// `10Mbit`: bits per second with tc's decimal units.
pub fn rate_str(bytes_per_sec: u64) -> String {
    let mut r = bytes_per_sec.saturating_mul(8) as f64;
    let units = ["bit", "Kbit", "Mbit", "Gbit", "Tbit"];
    let mut i = 0;
    while i < units.len() - 1 && r >= 1000.0 {
        r /= 1000.0;
        i += 1;
    }
    format!("{}{}", g3(r), units[i])
}

/// `4Kb`, `1600b`, `2Mb` as tc prints sizes.
pub fn size_str(b: u64) -> String {
    if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{}Mb", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{}Kb", b >> 10)
    } else {
        format!("{b}b")
    }
}

/// `400ms`, `3.28ms`, `90us`, `1.5s` from microseconds.
pub fn time_str(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{}s", g3(us / 1_000_000.0))
    } else if us >= 1000.0 {
        format!("{}ms", g3(us / 1000.0))
    } else {
        format!("{}us", g3(us))
    }
}

/// Up to three significant digits, no trailing zeros (printf's `%.3g` for these ranges).
fn g3(x: f64) -> String {
    let d = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{x:.d$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// psched ticks (64 ns each, PSCHED_SHIFT 6) to microseconds.
fn ticks_us(t: u32) -> f64 {
    f64::from(t) * 64.0 / 1000.0
}

fn attr_u32(b: &[u8], want: u16) -> Option<u32> {
    attr(b, want).map(|v| nla::u32_at(v, 0))
}

fn attr_u64(b: &[u8], want: u16) -> Option<u64> {
    attr(b, want).and_then(|v| v.get(..8)?.try_into().ok().map(u64::from_ne_bytes))
}

fn attr(b: &[u8], want: u16) -> Option<&[u8]> {
    attrs(b)
        .filter_map(|a| a.ok())
        .find(|a| a.ty() == want)
        .map(|a| a.value)
}

/// struct tc_ratespec { cell_log, linklayer, overhead, cell_align, mpu, rate }: the rate.
fn ratespec(b: &[u8], off: usize) -> u64 {
    u64::from(nla::u32_at(b, off + 8))
}

fn tbf(b: &[u8]) -> Option<Vec<Param>> {
    // struct tc_tbf_qopt { rate, peakrate, limit, buffer, mtu }
    let q = attr(b, 1)?;
    let rate = attr_u64(b, 4).unwrap_or_else(|| ratespec(q, 0));
    let (limit, buffer) = (nla::u32_at(q, 24), nla::u32_at(q, 28));
    let burst_s = ticks_us(buffer) / 1e6;
    let mut v = vec![
        p("rate", rate_str(rate)),
        p("burst", size_str((rate as f64 * burst_s).round() as u64)),
    ];
    if rate > 0 {
        let lat = 1e6 * f64::from(limit) / rate as f64 - ticks_us(buffer);
        v.push(p("lat", time_str(lat.max(0.0))));
    }
    let peak = attr_u64(b, 5).unwrap_or_else(|| ratespec(q, 12));
    if peak > 0 {
        v.push(p("peakrate", rate_str(peak)));
    }
    Some(v)
}

fn htb_qdisc(b: &[u8]) -> Option<Vec<Param>> {
    let g = attr(b, 2)?;
    let mut v = vec![
        p("r2q", nla::u32_at(g, 4).to_string()),
        p("default", format!("0x{:x}", nla::u32_at(g, 8))),
    ];
    if let Some(q) = attr_u32(b, 5) {
        v.push(p("direct_qlen", q.to_string()));
    }
    Some(v)
}

fn htb_class(b: &[u8]) -> Option<Vec<Param>> {
    // struct tc_htb_opt { rate, ceil, buffer, cbuffer, quantum, level, prio }
    let o = attr(b, 1)?;
    let rate = attr_u64(b, 6).unwrap_or_else(|| ratespec(o, 0));
    let ceil = attr_u64(b, 7).unwrap_or_else(|| ratespec(o, 12));
    let burst = |t: u32, r: u64| size_str((r as f64 * ticks_us(t) / 1e6).round() as u64);
    Some(vec![
        p("prio", nla::u32_at(o, 40).to_string()),
        p("quantum", nla::u32_at(o, 32).to_string()),
        p("rate", rate_str(rate)),
        p("ceil", rate_str(ceil)),
        p("burst", burst(nla::u32_at(o, 24), rate)),
        p("cburst", burst(nla::u32_at(o, 28), ceil)),
    ])
}

fn fifo(b: &[u8], unit: &str) -> Option<Vec<Param>> {
    (b.len() >= 4).then(|| vec![p("limit", format!("{}{unit}", nla::u32_at(b, 0)))])
}

fn prio(b: &[u8]) -> Option<Vec<Param>> {
    // struct tc_prio_qopt { int bands; u8 priomap[16] }
    let map = b.get(4..20)?;
    let map: Vec<String> = map.iter().map(u8::to_string).collect();
    Some(vec![
        p("bands", nla::u32_at(b, 0).to_string()),
        p("priomap", map.join(" ")),
    ])
}

fn percent(x: u32) -> String {
    format!("{}%", g3(f64::from(x) * 100.0 / f64::from(u32::MAX)))
}

fn netem(b: &[u8]) -> Option<Vec<Param>> {
    // struct tc_netem_qopt { latency, limit, loss, gap, duplicate, jitter }, then attributes
    if b.len() < 24 {
        return None;
    }
    let rest = &b[24..];
    let lat = attr_u64(rest, 10).map_or(ticks_us(nla::u32_at(b, 0)), |ns| ns as f64 / 1000.0);
    let jit = attr_u64(rest, 11).map_or(ticks_us(nla::u32_at(b, 20)), |ns| ns as f64 / 1000.0);
    let mut v = vec![p("limit", nla::u32_at(b, 4).to_string())];
    if lat > 0.0 {
        v.push(p("delay", time_str(lat)));
    }
    if jit > 0.0 {
        v.push(p("jitter", time_str(jit)));
    }
    for (name, off) in [("loss", 8), ("duplicate", 16)] {
        let x = nla::u32_at(b, off);
        if x > 0 {
            v.push(p(name, percent(x)));
        }
    }
    if nla::u32_at(b, 12) > 0 {
        v.push(p("gap", nla::u32_at(b, 12).to_string()));
    }
    if let Some(r) = attr_u64(rest, 8) {
        v.push(p("rate", rate_str(r)));
    }
    Some(v)
}

fn sfq(b: &[u8]) -> Option<Vec<Param>> {
    // struct tc_sfq_qopt { quantum, perturb_period, limit, divisor, flows }
    (b.len() >= 20).then(|| {
        vec![
            p("limit", format!("{}p", nla::u32_at(b, 8))),
            p("quantum", size_str(u64::from(nla::u32_at(b, 0)))),
            p("perturb", format!("{}sec", nla::u32_at(b, 4))),
            p("divisor", nla::u32_at(b, 12).to_string()),
        ]
    })
}

fn fq(b: &[u8]) -> Option<Vec<Param>> {
    let mut v = Vec::new();
    for (name, t) in [
        ("limit", 1u16),
        ("flow_limit", 2),
        ("quantum", 3),
        ("buckets", 8),
    ] {
        if let Some(x) = attr_u32(b, t) {
            v.push(match name {
                "limit" | "flow_limit" => p(name, format!("{x}p")),
                "buckets" => p(name, (1u64 << x.min(31)).to_string()),
                _ => p(name, size_str(u64::from(x))),
            });
        }
    }
    if let Some(r) = attr_u32(b, 7).filter(|r| *r != u32::MAX) {
        v.push(p("maxrate", rate_str(u64::from(r))));
    }
    Some(v)
}

fn fq_codel(b: &[u8]) -> Option<Vec<Param>> {
    let mut v = Vec::new();
    for nla in NlasIterator::new(b) {
        let opt = TcQdiscFqCodelOption::parse(&nla.ok()?).ok()?;
        match opt {
            TcQdiscFqCodelOption::Limit(x) => v.push(p("limit", format!("{x}p"))),
            TcQdiscFqCodelOption::Flows(x) => v.push(p("flows", x.to_string())),
            TcQdiscFqCodelOption::Quantum(x) => v.push(p("quantum", x.to_string())),
            TcQdiscFqCodelOption::Target(x) => v.push(p("target", time_str(f64::from(x)))),
            TcQdiscFqCodelOption::Interval(x) => v.push(p("interval", time_str(f64::from(x)))),
            TcQdiscFqCodelOption::MemoryLimit(x) => {
                v.push(p("memory_limit", size_str(u64::from(x))))
            }
            TcQdiscFqCodelOption::Ecn(x) => v.push(p(if x == 0 { "noecn" } else { "ecn" }, "")),
            _ => {}
        }
    }
    Some(v)
}

/// TCA_U32_DIVISOR of a u32 filter's options.
pub(crate) fn u32_divisor(b: &[u8]) -> Option<u32> {
    attr_u32(b, 4)
}

fn u32_filter(o: &pb::TcObject) -> Option<Vec<Param>> {
    let mut v = Vec::new();
    for nla in NlasIterator::new(o.options.as_slice()) {
        match TcFilterU32Option::parse(&nla.ok()?).ok()? {
            TcFilterU32Option::Divisor(d) => v.push(p("divisor", d.to_string())),
            TcFilterU32Option::Link(l) => v.push(p("link", handle_str(l))),
            TcFilterU32Option::ClassId(c) => v.push(p(
                "flowid",
                handle_str(u32::from(c.major) << 16 | u32::from(c.minor)),
            )),
            TcFilterU32Option::Selector(s) => {
                for k in &s.keys {
                    v.push(p(
                        "match",
                        format!("{:08x}/{:08x} at {}", k.val, k.mask, k.off),
                    ));
                }
                if s.keys.is_empty() {
                    v.push(p("match", "all"));
                }
            }
            TcFilterU32Option::Action(acts) => v.extend(actions(o, &acts)),
            _ => {}
        }
    }
    Some(v)
}

fn matchall(o: &pb::TcObject) -> Option<Vec<Param>> {
    let mut v = Vec::new();
    for nla in NlasIterator::new(o.options.as_slice()) {
        match TcFilterMatchAllOption::parse(&nla.ok()?).ok()? {
            TcFilterMatchAllOption::ClassId(c) => v.push(p(
                "flowid",
                handle_str(u32::from(c.major) << 16 | u32::from(c.minor)),
            )),
            TcFilterMatchAllOption::Action(acts) => v.extend(actions(o, &acts)),
            _ => {}
        }
    }
    Some(v)
}

/// The device name a saved ifindex inside `o` refers to.
fn dev_name(o: &pb::TcObject, ifindex: u32) -> String {
    o.devrefs
        .iter()
        .find(|d| d.ifindex == ifindex)
        .map_or_else(|| format!("if{ifindex}"), |d| d.ifname.clone())
}

/// `action mirred egress redirect dev ifb0` for each action the crate decodes.
fn actions(o: &pb::TcObject, acts: &[TcAction]) -> Vec<Param> {
    let mut v = Vec::new();
    for a in acts {
        let mut kind = String::new();
        let mut text = String::new();
        for attr in &a.attributes {
            match attr {
                TcActionAttribute::Kind(k) => kind = k.clone(),
                TcActionAttribute::Options(opts) => {
                    for opt in opts {
                        if let TcActionOption::Mirror(TcActionMirrorOption::Parms(m)) = opt {
                            let how = match m.eaction {
                                TcMirrorActionType::EgressRedir => "egress redirect",
                                TcMirrorActionType::EgressMirror => "egress mirror",
                                TcMirrorActionType::IngressRedir => "ingress redirect",
                                TcMirrorActionType::IngressMirror => "ingress mirror",
                                _ => "other",
                            };
                            text = format!("{how} dev {}", dev_name(o, m.ifindex));
                        }
                    }
                }
                _ => {}
            }
        }
        let val = if text.is_empty() {
            kind
        } else {
            format!("{kind} {text}")
        };
        v.push(p("action", val));
    }
    v
}

/// TC_ACT_* verdicts as tc names them.
fn verdict(x: u32) -> String {
    match x as i32 {
        -1 => "continue".into(),
        0 => "pass".into(),
        1 => "reclassify".into(),
        2 => "drop".into(),
        3 => "pipe".into(),
        4 => "stolen".into(),
        7 => "trap".into(),
        n => format!("{n}"),
    }
}

/// A standalone action's attributes (kind, options, index).
fn action(o: &pb::TcObject, b: &[u8]) -> Vec<Param> {
    let Some(opts) = attr(b, 2) else {
        return vec![p("options", hex(b))];
    };
    match o.kind.as_str() {
        "mirred" => match attr(opts, 2) {
            Some(m) => {
                let how = match nla::u32_at(m, 20) {
                    1 => "egress redirect",
                    2 => "egress mirror",
                    3 => "ingress redirect",
                    4 => "ingress mirror",
                    _ => "other",
                };
                vec![p(how, format!("dev {}", dev_name(o, nla::u32_at(m, 24))))]
            }
            None => vec![p("options", hex(opts))],
        },
        "gact" => match attr(opts, 2) {
            Some(g) => vec![p("action", verdict(nla::u32_at(g, 8)))],
            None => vec![p("options", hex(opts))],
        },
        "police" => match attr(opts, 1) {
            // struct tc_police { index, action, limit, burst, mtu, rate, .. }
            Some(t) => {
                let rate = attr_u64(opts, 8).unwrap_or_else(|| ratespec(t, 20));
                let burst = (rate as f64 * ticks_us(nla::u32_at(t, 12)) / 1e6).round() as u64;
                vec![
                    p("rate", rate_str(rate)),
                    p("burst", size_str(burst)),
                    p("conform-exceed", verdict(nla::u32_at(t, 4))),
                ]
            }
            None => vec![p("options", hex(opts))],
        },
        _ => vec![p("options", hex(opts))],
    }
}
