//! Golden tests: tc messages a 6.18 kernel dumped (tbf, ingress, an htb class, a u32 filter
//! with a mirred action), and, for kinds that kernel lacks (netem, fq_codel, fq, sfq, prio,
//! flower, matchall, gact, police, bpf), messages built as those kernels dump them. Each is
//! decoded, checked field by field and as text, and its add request checked byte for byte.

#![allow(clippy::unwrap_used)]

use crhook_proto as pb;

use super::decode::{decode, standalone_actions};
use super::*;
use crate::nla::{req_bytes, unhex};

/// Saved: lo 1, vb 2, va 3, ifb0 4 (the namespace the fixtures were dumped in); restored as
/// vb 12, va 13, ifb0 14.
fn links(off: u32) -> Vec<(u32, String)> {
    vec![
        (1, "lo".into()),
        (2 + off, "vb".into()),
        (3 + off, "va".into()),
        (4 + off, "ifb0".into()),
    ]
}

fn saved() -> IfMap {
    IfMap::from_names(links(0))
}

fn moved() -> IfMap {
    IfMap::by_name(links(0), links(10))
}

/// `tc qdisc add dev vb root tbf rate 10mbit burst 4kb latency 400ms` (handle 8018:), dumped
/// with its statistics and TCA_HW_OFFLOAD.
const TBF: &str = "000000000200000000001880ffffffff0300000008000100746266002c000200280001000001000000000000d012130000000000000000000000000020b1070000c800000000000005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000";
/// `tc qdisc add dev vb ingress`
const INGRESS: &str = "00000000020000000000fffff1ffffff010000000c000100696e6772657373000400020005000c00000000003000070014000100000000000000000000000000000000001800030000000000000000000000000000000000000000002c00030000000000000000000000000000000000000000000000000000000000000000000000000000000000";
/// `tc class add dev va parent 1: classid 1:10 htb rate 30mbit ceil 100mbit`
const HTB_CLASS: &str = "000000000300000010000100ffffffff0000000008000100687462003400020030000100000100000000000070383900000100000000000020bcbe00001a0000d0070000400d0300000000000000000048000700140001000000000000000000000000000000000018000300000000000000000000000000000000000000000018000400000000000000000000000000001a0000d00700002c0003000000000000000000000000000000000000000000000000000000000000000000000000000000000018000400000000000000000000000000001a0000d0070000";
/// `tc filter add dev vb parent ffff: protocol all u32 match u32 0 0 action mirred egress
/// redirect dev ifb0`: the classifier's line, its root hash table, the key.
const U32_LINE: &str = "0000000002000000000000000000ffff000300c0080001007533320008000b0000000000";
const U32_HT: &str = "0000000002000000000000800000ffff000300c0080001007533320008000b00000000000c0002000800040001000000";
const U32_KEY: &str = "0000000002000000000800800000ffff000300c0080001007533320008000b0000000000e0000200240005000100010000000000000000000000000000000000000000000000000000000000080002000000008008000b0008000000a8000700a40001000b0001006d69727265640000440004001400010000000000000000000000000000000000140007000000000000000000000000000000000018000300000000000000000000000000000000000000000008000a0000000000480002002000020001000000000000000400000001000000010000000100000004000000240001000201000000000000020100000000000000000000000000000000000000000000";

fn nla(ty: u16, v: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
    b.extend_from_slice(&ty.to_ne_bytes());
    b.extend_from_slice(v);
    b.resize(crate::nla::align4(b.len()), 0);
    b
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn z(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn u32b(x: u32) -> Vec<u8> {
    x.to_ne_bytes().to_vec()
}

fn u64b(x: u64) -> Vec<u8> {
    x.to_ne_bytes().to_vec()
}

/// A dumped qdisc/class/filter: tcmsg, then `attrs`.
fn dumped(ifindex: u32, handle: u32, parent: u32, info: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut b = tcmsg(ifindex, handle, parent, info);
    b.extend(cat(attrs));
    b
}

/// What a dump adds that is not state: statistics (TCA_STATS2, TCA_STATS), hardware state.
fn dump_noise() -> Vec<Vec<u8>> {
    vec![nla(12, &[0]), nla(7, &nla(1, &[0; 16])), nla(3, &[0; 36])]
}

fn dec(ty: pb::TcType, hexed: &str) -> pb::TcObject {
    decode(ty, &unhex(hexed), &saved()).unwrap()
}

/// The add request of `o` into the moved namespace: (type, payload).
fn add(o: &pb::TcObject) -> (u16, Vec<u8>) {
    let r = add_request(o, &moved()).unwrap();
    let (t, p) = req_bytes(&r);
    (t, p.to_vec())
}

/// An add request as the kernel wants it: tcmsg, kind, (chain), options.
fn want_add(o: &pb::TcObject, ifindex: u32, opts: &[u8]) -> Vec<u8> {
    let mut b = tcmsg(ifindex, o.handle, o.parent, o.info);
    b.extend(nla(1, &z(&o.kind)));
    if ty(o) == pb::TcType::TcFilter {
        b.extend(nla(11, &u32b(o.chain)));
    }
    b.extend(nla(2, opts));
    b
}

#[test]
fn tbf_from_a_kernel_dump() {
    let o = dec(pb::TcType::TcQdisc, TBF);
    assert_eq!(
        (o.ifname.as_str(), o.handle, o.parent, o.kind.as_str()),
        ("vb", 0x8018_0000, TC_H_ROOT, "tbf")
    );
    assert!(o.raw.is_empty(), "statistics and hw state dropped: {o:?}");
    assert_eq!(o.options.len(), 0x2c - 4);
    assert_eq!(
        params::summary(&o),
        "handle 8018: rate 10Mbit burst 4Kb lat 400ms"
    );
    assert_eq!(key(&o), "vb root");
    assert_eq!(
        describe(&o),
        "qdisc vb root tbf handle 8018: rate 10Mbit burst 4Kb lat 400ms"
    );
    let (t, p) = add(&o);
    assert_eq!(t, RTM_NEWQDISC);
    assert_eq!(p, want_add(&o, 12, &o.options));
    // bytes -> struct -> bytes: the request decodes to the same object
    let mut back = decode(pb::TcType::TcQdisc, &p, &IfMap::from_names(links(10))).unwrap();
    back.ifindex = o.ifindex;
    assert_eq!(back, o);
    let del = del_request(&o, &moved()).unwrap();
    let (t, p) = req_bytes(&del);
    assert_eq!(t, RTM_DELQDISC);
    assert_eq!(&p[..TCMSG_LEN], &tcmsg(12, 0x8018_0000, TC_H_ROOT, 0)[..]);
}

#[test]
fn ingress_and_an_htb_class_from_kernel_dumps() {
    let q = dec(pb::TcType::TcQdisc, INGRESS);
    assert_eq!((q.handle, q.parent), (0xFFFF_0000, TC_H_INGRESS));
    assert_eq!(key(&q), "vb ingress");
    assert!(q.options.is_empty());
    assert_eq!(add(&q).1, want_add(&q, 12, &[]));
    let c = dec(pb::TcType::TcClass, HTB_CLASS);
    assert_eq!((c.ifname.as_str(), c.handle), ("va", 0x0001_0010));
    assert_eq!(key(&c), "va 1:10");
    assert_eq!(
        params::summary(&c),
        "handle 1:10 prio 0 quantum 200000 rate 30Mbit ceil 100Mbit burst 1597b cburst 1600b"
    );
    let (t, p) = add(&c);
    assert_eq!(t, RTM_NEWTCLASS);
    assert_eq!(p, want_add(&c, 13, &c.options));
}

#[test]
fn u32_with_mirred_from_a_kernel_dump() {
    // the classifier's own line and the kernel's root hash table are not saved
    assert!(!user_filter(&dec(pb::TcType::TcFilter, U32_LINE)));
    assert!(!user_filter(&dec(pb::TcType::TcFilter, U32_HT)));
    let f = dec(pb::TcType::TcFilter, U32_KEY);
    assert!(user_filter(&f));
    assert_eq!(
        (f.handle, f.parent, f.info >> 16, f.chain),
        (0x8000_0800, 0xFFFF_0000, 49152, 0)
    );
    assert_eq!(
        key(&f),
        "vb parent ffff: chain 0 pref 49152 protocol all handle 800:0:800"
    );
    assert_eq!(
        params::summary(&f),
        "match 00000000/00000000 at 0 action mirred egress redirect dev ifb0"
    );
    assert_eq!(f.devrefs.len(), 1);
    let d = &f.devrefs[0];
    assert_eq!((d.ifindex, d.ifname.as_str()), (4, "ifb0"));
    let at = d.offset as usize;
    assert_eq!(crate::nla::u32_at(&f.options, at), 4);
    // what the key's options hold now: selector and hash as dumped, the hw-state flag gone,
    // the action without statistics, hw count and timestamps, its counts zeroed
    let sel = unhex("0100010000000000000000000000000000000000000000000000000000000000");
    let parms = unhex("0100000000000000040000000000000000000000010000000400000000000000");
    let mirred = cat(&[nla(1, &z("mirred")), nla(2, &nla(2, &parms[..28]))]);
    let want = cat(&[
        nla(5, &sel),
        nla(2, &u32b(0x8000_0000)),
        nla(7, &nla(1, &mirred)),
    ]);
    assert_eq!(f.options, want);
    let (t, p) = add(&f);
    assert_eq!(t, RTM_NEWTFILTER);
    let mut live = want.clone();
    live[at..at + 4].copy_from_slice(&14u32.to_ne_bytes());
    assert_eq!(p, want_add(&f, 12, &live));
    // normalized, the saved and the restored filter compare equal
    let mut back = decode(pb::TcType::TcFilter, &p, &IfMap::from_names(links(10))).unwrap();
    let mut orig = f.clone();
    normalize(&mut back);
    normalize(&mut orig);
    back.devrefs[0].ifname = orig.devrefs[0].ifname.clone();
    assert_eq!(back, orig);
}

#[test]
fn a_device_missing_at_restore_is_named() {
    let f = dec(pb::TcType::TcFilter, U32_KEY);
    let ifs = IfMap::by_name(links(0), vec![(12, "vb".to_string())]);
    let e = add_request(&f, &ifs).err().unwrap().to_string();
    assert!(e.contains("ifb0") && e.contains("does not exist"), "{e}");
}

/// A golden message for a kind this kernel lacks: `attrs` around `opts` dumped, decoded, and
/// re-added with `want_opts`.
fn golden(
    ty: pb::TcType,
    kind: &str,
    opts: Vec<u8>,
    want_opts: &[u8],
    summary: &str,
) -> pb::TcObject {
    let (handle, parent, info) = match ty {
        pb::TcType::TcFilter => (1, 0xFFFF_FFF2, 0x0001_0300),
        _ => (0x0001_0000, TC_H_ROOT, 0),
    };
    let mut attrs = vec![nla(1, &z(kind)), nla(2, &opts)];
    attrs.extend(dump_noise());
    let o = decode(ty, &dumped(3, handle, parent, info, &attrs), &saved()).unwrap();
    assert_eq!(o.options, want_opts, "{kind} options");
    assert_eq!(params::summary(&o), summary, "{kind} text");
    assert_eq!(add(&o).1, want_add(&o, 13, want_opts), "{kind} request");
    o
}

#[test]
fn netem_fq_codel_fq_sfq_prio_qdiscs() {
    // struct tc_netem_qopt { latency 100 ms in 64 ns ticks, limit, loss 1%, gap, dup, jitter }
    let mut netem = cat(&[
        u32b(1_562_500),
        u32b(1000),
        u32b(42_949_673),
        u32b(0),
        u32b(0),
        u32b(0),
    ]);
    netem.extend(nla(10, &u64b(100_000_000)));
    netem.extend(nla(11, &u64b(0)));
    golden(
        pb::TcType::TcQdisc,
        "netem",
        netem.clone(),
        &netem,
        "handle 1: limit 1000 delay 100ms loss 1%",
    );
    let codel = cat(&[
        nla(1, &u32b(5000)),
        nla(2, &u32b(10240)),
        nla(3, &u32b(100_000)),
        nla(4, &u32b(1)),
        nla(6, &u32b(1514)),
        nla(5, &u32b(1024)),
        nla(9, &u32b(32 << 20)),
    ]);
    golden(
        pb::TcType::TcQdisc,
        "fq_codel",
        codel.clone(),
        &codel,
        "handle 1: target 5ms limit 10240p interval 100ms ecn quantum 1514 flows 1024 memory_limit 32Mb",
    );
    let fq = cat(&[
        nla(1, &u32b(10000)),
        nla(2, &u32b(100)),
        nla(3, &u32b(3028)),
        nla(7, &u32b(u32::MAX)),
        nla(8, &u32b(10)),
    ]);
    golden(
        pb::TcType::TcQdisc,
        "fq",
        fq.clone(),
        &fq,
        "handle 1: limit 10000p flow_limit 100p quantum 3028b buckets 1024",
    );
    // struct tc_sfq_qopt_v1 starts with struct tc_sfq_qopt
    let mut sfq = cat(&[u32b(1514), u32b(10), u32b(127), u32b(1024), u32b(128)]);
    sfq.extend([0u8; 44]);
    golden(
        pb::TcType::TcQdisc,
        "sfq",
        sfq.clone(),
        &sfq,
        "handle 1: limit 127p quantum 1514b perturb 10sec divisor 1024",
    );
    let mut prio = u32b(3);
    prio.extend([1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    golden(
        pb::TcType::TcQdisc,
        "prio",
        prio.clone(),
        &prio,
        "handle 1: bands 3 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1",
    );
}

/// A gact action as a filter dumps it: kind, options (timestamps, parms with counts),
/// statistics, hw count.
fn gact_dumped(verdict: u32, refcnt: u32, bindcnt: u32) -> Vec<u8> {
    cat(&[
        nla(1, &z("gact")),
        nla(
            2,
            &cat(&[
                nla(1, &[7; 32]),
                nla(
                    2,
                    &cat(&[u32b(5), u32b(0), u32b(verdict), u32b(refcnt), u32b(bindcnt)]),
                ),
            ]),
        ),
        nla(4, &nla(1, &[9; 16])),
        nla(10, &u32b(0)),
    ])
}

fn gact_saved(verdict: u32) -> Vec<u8> {
    cat(&[
        nla(1, &z("gact")),
        nla(
            2,
            &nla(
                2,
                &cat(&[u32b(5), u32b(0), u32b(verdict), u32b(0), u32b(0)]),
            ),
        ),
    ])
}

#[test]
fn flower_and_matchall_filters_with_gact() {
    // flower: eth type ip, ip proto tcp, in software only (dumped with NOT_IN_HW), a drop
    let flower = cat(&[
        nla(8, &0x0800u16.to_be_bytes()),
        nla(9, &[6]),
        nla(22, &u32b(2 | 8)),
        nla(3, &nla(1, &gact_dumped(2, 1, 1))),
    ]);
    let want = cat(&[
        nla(8, &0x0800u16.to_be_bytes()),
        nla(9, &[6]),
        nla(22, &u32b(2)),
        nla(3, &nla(1, &gact_saved(2))),
    ]);
    let o = golden(
        pb::TcType::TcFilter,
        "flower",
        flower,
        &want,
        &format!("options {}", crate::nla::hex(&want)),
    );
    assert_eq!(key(&o), "va ingress chain 0 pref 1 protocol all handle 0x1");
    // matchall: classid 1:1, a pass, its packet counter and hw flag dropped
    let ma = cat(&[
        nla(1, &u32b(0x0001_0001)),
        nla(2, &nla(1, &gact_dumped(0, 1, 1))),
        nla(3, &u32b(8)),
        nla(4, &[0; 16]),
    ]);
    let want = cat(&[nla(1, &u32b(0x0001_0001)), nla(2, &nla(1, &gact_saved(0)))]);
    golden(
        pb::TcType::TcFilter,
        "matchall",
        ma,
        &want,
        "flowid 1:1 action gact",
    );
}

#[test]
fn standalone_gact_and_police_actions() {
    // struct tc_police: index 9, action drop, limit, burst (ticks for 10 KB at 1 Mbit/s),
    // mtu, rate (125000 B/s), peakrate, refcnt 1, bindcnt 0, capab
    let mut tbf = cat(&[u32b(9), u32b(2), u32b(0), u32b(1_280_000), u32b(2040)]);
    tbf.extend([0u8; 8]);
    tbf.extend(u32b(125_000));
    tbf.extend([0u8; 12]);
    tbf.extend(cat(&[u32b(1), u32b(0), u32b(0)]));
    let police = cat(&[
        nla(1, &z("police")),
        nla(2, &cat(&[nla(1, &tbf), nla(6, &[3; 32])])),
        nla(3, &u32b(9)),
    ]);
    let mut payload = vec![0u8; 4];
    payload.extend(nla(
        TCA_ACT_TAB,
        &cat(&[
            nla(1, &gact_dumped(2, 1, 0)),
            // made by a filter: dies with it, not saved
            nla(2, &gact_dumped(2, 1, 1)),
            nla(3, &police),
        ]),
    ));
    let acts = standalone_actions(&payload, &saved()).unwrap();
    assert_eq!(acts.len(), 2, "{acts:?}");
    assert_eq!(acts[0].options, gact_saved(2));
    assert_eq!(
        (acts[0].handle, key(&acts[0]).as_str()),
        (5, "gact index 5")
    );
    assert_eq!(params::summary(&acts[0]), "action drop");
    let p = &acts[1];
    assert_eq!((p.kind.as_str(), p.handle), ("police", 9));
    assert_eq!(
        params::summary(p),
        "rate 1Mbit burst 10Kb conform-exceed drop"
    );
    let (t, req) = add(p);
    assert_eq!(t, RTM_NEWACTION);
    let mut zeroed_tbf = tbf.clone();
    zeroed_tbf[44..48].fill(0);
    let one = cat(&[
        nla(1, &z("police")),
        nla(2, &nla(1, &zeroed_tbf)),
        nla(3, &u32b(9)),
    ]);
    let mut want = vec![0u8; 4];
    want.extend(nla(
        TCA_ACT_TAB | NLA_F_NESTED,
        &nla(1 | NLA_F_NESTED, &one),
    ));
    assert_eq!(req, want);
    let del = del_request(p, &moved()).unwrap();
    let (t, req) = req_bytes(&del);
    assert_eq!(t, RTM_DELACTION);
    let one = cat(&[nla(1, &z("police")), nla(3, &u32b(9))]);
    let mut want = vec![0u8; 4];
    want.extend(nla(
        TCA_ACT_TAB | NLA_F_NESTED,
        &nla(1 | NLA_F_NESTED, &one),
    ));
    assert_eq!(req, want);
}

use crate::nla::NLA_F_NESTED;

/// A `bpf` classifier on va's clsact ingress with `opts`, as dumped.
fn bpf_filter(opts: &[u8]) -> pb::TcObject {
    let mut attrs = vec![nla(1, &z("bpf")), nla(2, opts)];
    attrs.extend(dump_noise());
    let msg = dumped(3, 1, 0xFFFF_FFF2, 0xC000_0300, &attrs);
    decode(pb::TcType::TcFilter, &msg, &saved()).unwrap()
}

#[test]
fn an_ebpf_classifier_is_recorded_and_not_carried() {
    let opts = cat(&[
        nla(7, &z("prog.o:[classifier]")),
        nla(9, &u32b(1)),
        nla(10, &unhex("59f4a931744dcdc6")),
        nla(11, &u32b(97)),
    ]);
    let f = bpf_filter(&opts);
    let p = f.bpf.as_ref().unwrap();
    assert_eq!(
        (p.id, p.name.as_str(), crate::nla::hex(&p.tag).as_str()),
        (97, "prog.o:[classifier]", "59f4a931744dcdc6")
    );
    assert_eq!(lost(std::slice::from_ref(&f)).len(), 1);
    assert_eq!(
        lost_text(&f),
        "filter va ingress chain 0 pref 49152 protocol all handle 0x1 bpf runs eBPF prog 97 \
         tag 59f4a931744dcdc6 name prog.o:[classifier]"
    );
    let e = add_request(&f, &moved()).err().unwrap().to_string();
    assert!(
        e.contains("eBPF program 97") && e.contains("cannot be carried"),
        "{e}"
    );
    // classic BPF is dumped with its instructions and carried
    let classic = cat(&[
        nla(4, &1u16.to_ne_bytes()),
        nla(5, &unhex("0600000000000000")),
        nla(9, &u32b(1)),
    ]);
    let f = bpf_filter(&classic);
    assert!(f.bpf.is_none());
    assert!(add_request(&f, &moved()).is_ok());
}

#[test]
fn a_bpf_action_inside_a_u32_filter_marks_the_filter() {
    let act = cat(&[
        nla(1, &z("bpf")),
        nla(
            2,
            &cat(&[nla(2, &[0; 20]), nla(6, &z("act")), nla(9, &u32b(31))]),
        ),
    ]);
    let opts = cat(&[nla(5, &[0; 16]), nla(7, &nla(1, &act))]);
    let f = decode(
        pb::TcType::TcFilter,
        &dumped(
            3,
            0x8000_0800,
            0xFFFF_0000,
            0x0001_0300,
            &[nla(1, &z("u32")), nla(2, &opts)],
        ),
        &saved(),
    )
    .unwrap();
    assert_eq!(f.bpf.as_ref().map(|p| p.id), Some(31));
}

#[test]
fn parents_come_before_children_and_filters_last() {
    let q = |h: u32, p: u32| pb::TcObject {
        r#type: pb::TcType::TcQdisc as i32,
        handle: h,
        parent: p,
        kind: "pfifo".into(),
        ..Default::default()
    };
    let c = |h: u32, p: u32| pb::TcObject {
        r#type: pb::TcType::TcClass as i32,
        handle: h,
        parent: p,
        ..Default::default()
    };
    // as a dump may list them: leaf qdisc, classes out of order, then the root
    let objs = vec![
        q(0x0010_0000, 0x0001_0010),
        c(0x0001_0010, 0x0001_0001),
        c(0x0001_0001, TC_H_ROOT),
        q(0x0001_0000, TC_H_ROOT),
        q(0x0020_0000, 0x8001_0001),
        q(0x8001_0000, 0x0001_0020),
        c(0x0001_0020, 0x0001_0000),
    ];
    let sorted = parents_first(objs);
    let pos = |h: u32, t: pb::TcType| {
        sorted
            .iter()
            .position(|o| o.handle == h && ty(o) == t)
            .unwrap()
    };
    use pb::TcType::{TcClass as C, TcQdisc as Q};
    assert!(pos(0x0001_0000, Q) < pos(0x0001_0001, C));
    assert!(pos(0x0001_0001, C) < pos(0x0001_0010, C));
    assert!(pos(0x0001_0010, C) < pos(0x0010_0000, Q));
    assert!(pos(0x0001_0020, C) < pos(0x8001_0000, Q));
    assert!(pos(0x8001_0000, Q) < pos(0x0020_0000, Q));
    let mut all = vec![
        pb::TcObject {
            r#type: pb::TcType::TcFilter as i32,
            ..Default::default()
        },
        pb::TcObject {
            r#type: pb::TcType::TcAction as i32,
            ..Default::default()
        },
    ];
    all.extend(sorted);
    restore_order(&mut all);
    assert_eq!(ty(&all[all.len() - 1]), pb::TcType::TcFilter);
    assert_eq!(ty(&all[all.len() - 2]), pb::TcType::TcAction);
}

#[test]
fn readable_units() {
    assert_eq!(params::rate_str(1_250_000), "10Mbit");
    assert_eq!(params::rate_str(187_500), "1.5Mbit");
    assert_eq!(params::rate_str(100), "800bit");
    assert_eq!(params::size_str(4096), "4Kb");
    assert_eq!(params::size_str(1600), "1600b");
    assert_eq!(params::size_str(2 << 20), "2Mb");
    assert_eq!(params::time_str(400_000.0), "400ms");
    assert_eq!(params::time_str(3276.8), "3.28ms");
    assert_eq!(params::time_str(90.0), "90us");
    assert_eq!(handle_str(0xFFFF_FFF3), "egress");
    assert_eq!(protocol_str(0x0000_0008), "ip");
}

#[test]
fn a_chain_with_a_flower_template() {
    // `tc chain add dev va ingress chain 9 flower dst_mac 00:00:00:00:00:00/ff:...`: flower
    // keeps the template's keys as options
    let tmpl = cat(&[nla(4, &[0; 6]), nla(5, &[0xff; 6])]);
    let mut attrs = vec![nla(11, &u32b(9)), nla(1, &z("flower")), nla(2, &tmpl)];
    attrs.extend(dump_noise());
    let c = decode(
        pb::TcType::TcChain,
        &dumped(3, 0, 0xFFFF_FFF2, 0, &attrs),
        &saved(),
    )
    .unwrap();
    assert_eq!((c.chain, c.kind.as_str()), (9, "flower"));
    assert_eq!(key(&c), "va ingress chain 9");
    assert_eq!(
        describe(&c),
        format!(
            "chain va ingress chain 9 template flower options {}",
            crate::nla::hex(&tmpl)
        )
    );
    let (t, p) = add(&c);
    assert_eq!(t, RTM_NEWCHAIN);
    let mut want = tcmsg(13, 0, 0xFFFF_FFF2, 0);
    want.extend(cat(&[
        nla(11, &u32b(9)),
        nla(1, &z("flower")),
        nla(2, &tmpl),
    ]));
    assert_eq!(p, want);
    let del = del_request(&c, &moved()).unwrap();
    let (t, p) = req_bytes(&del);
    assert_eq!(t, RTM_DELCHAIN);
    let mut want = tcmsg(13, 0, 0xFFFF_FFF2, 0);
    want.extend(nla(11, &u32b(9)));
    assert_eq!(p, want);
}
