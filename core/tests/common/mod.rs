//! Shared test helpers: temporary directories cleaned up on Drop, and the deterministic image
//! (a few entries of every kind) that the golden files hold, sealed with [`golden_key`].

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use crhook_core::proto::*;
use crhook_core::{HostKey, ImageError, ImageWriter, Kind};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh directory under the system temp dir, removed on Drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "crhook-core-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Entries in a directory, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The golden files of the format this build writes (1.3).
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.3")
}

/// The golden files of format 1.2, read but no longer written (sealed with [`golden_key`]).
pub fn golden_dir_v1_2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.2")
}

/// The golden files of format 1.1, read but no longer written.
pub fn golden_dir_v1_1() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.1")
}

/// The key the golden images of formats 1.2 and 1.3 are sealed with: bytes 0..32.
pub fn golden_key() -> HostKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    HostKey::from_bytes(k)
}

/// The golden files of format 1.0, read but no longer written.
pub fn golden_dir_v1_0() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.0")
}

pub const CAPTURE_SEC: u64 = 1_700_000_000;
pub const CAPTURE_NSEC: u32 = 123_456_789;

pub fn raw(kind: u32, value: &[u8]) -> RawAttr {
    RawAttr {
        kind,
        value: value.to_vec(),
    }
}

pub fn links() -> Vec<Link> {
    vec![
        Link {
            ifindex: 1,
            name: "lo".into(),
            mac: vec![0; 6],
            broadcast: vec![0; 6],
            mtu: 65536,
            txqlen: 1000,
            flags: 0x1_0049,
            operstate: 0,
            num_tx_queues: 1,
            num_rx_queues: 1,
            ..Default::default()
        },
        Link {
            ifindex: 2,
            name: "eth0".into(),
            kind: "veth".into(),
            mac: vec![0x02, 0x42, 0xac, 0x11, 0x00, 0x02],
            broadcast: vec![0xff; 6],
            mtu: 1500,
            txqlen: 1000,
            flags: 0x1_1043,
            alias: "uplink".into(),
            operstate: 6,
            addr_gen_mode: Some(0),
            alt_names: vec!["uplink0".into()],
            info: Some(link::Info::Veth(Veth {
                peer_name: "veth1234".into(),
                peer_ifindex: 17,
                peer_mac: vec![0x02, 0x00, 0x00, 0x00, 0x00, 0x11],
                peer_place: PeerPlace::PeerHost as i32,
                peer_mtu: 1500,
                peer_up: true,
                peer_master: "cni0".into(),
                peer_ns_dev: 4,
                peer_ns_ino: 4_026_531_840,
                ..Default::default()
            })),
            extra_raw: vec![raw(58, &[1, 0, 0, 0])],
            ..Default::default()
        },
        Link {
            ifindex: 3,
            name: "br0".into(),
            kind: "bridge".into(),
            mac: vec![0x02, 0, 0, 0, 0, 3],
            mtu: 1500,
            info: Some(link::Info::Bridge(Bridge {
                stp_state: 0,
                forward_delay: 1500,
                hello_time: 200,
                max_age: 2000,
                ageing_time: 30000,
                priority: 32768,
                vlan_protocol: 0x8100,
                vlan_default_pvid: 1,
                ..Default::default()
            })),
            info_data_raw: vec![raw(46, &[0])],
            ..Default::default()
        },
        Link {
            ifindex: 4,
            name: "tap0".into(),
            kind: "tun".into(),
            mac: vec![0x02, 0, 0, 0, 0, 4],
            mtu: 1500,
            master: 3,
            info: Some(link::Info::Tun(Tun {
                tun_type: 2,
                pi: false,
                vnet_hdr: true,
                persist: true,
                owner: Some(1000),
                num_queues: 1,
                ..Default::default()
            })),
            slave_kind: "bridge".into(),
            bridge_port: Some(BridgePort {
                cost: 100,
                priority: 32,
                learning: true,
                unicast_flood: true,
                mcast_flood: true,
                bcast_flood: true,
                state: 3,
                ..Default::default()
            }),
            ..Default::default()
        },
        Link {
            ifindex: 5,
            name: "vx0".into(),
            kind: "vxlan".into(),
            mac: vec![0x02, 0, 0, 0, 0, 5],
            mtu: 1450,
            link: 2,
            info: Some(link::Info::Vxlan(Vxlan {
                vni: 42,
                port: 4789,
                local: vec![10, 0, 0, 2],
                remote: vec![239, 1, 1, 1],
                group: true,
                lower: "eth0".into(),
                ttl: 16,
                learning: true,
                ageing: 300,
                ..Default::default()
            })),
            ..Default::default()
        },
    ]
}

pub fn addresses() -> Vec<Address> {
    vec![
        Address {
            family: 2,
            ifindex: 2,
            ifname: "eth0".into(),
            address: vec![10, 0, 0, 2],
            prefix_len: 24,
            local: vec![10, 0, 0, 2],
            broadcast: vec![10, 0, 0, 255],
            label: "eth0".into(),
            flags: 0x80,
            valid_lft: u32::MAX,
            preferred_lft: u32::MAX,
            ..Default::default()
        },
        Address {
            family: 10,
            ifindex: 2,
            ifname: "eth0".into(),
            address: vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            prefix_len: 64,
            flags: 0x82,
            valid_lft: 3600,
            preferred_lft: 1800,
            metric: Some(256),
            raw: vec![raw(9, &[0xde, 0xad])],
            ..Default::default()
        },
    ]
}

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            family: 2,
            table: 254,
            protocol: 3,
            route_type: 1,
            gateway: vec![10, 0, 0, 1],
            oif: 2,
            oif_name: "eth0".into(),
            ..Default::default()
        },
        Route {
            family: 2,
            table: 100,
            dst: vec![192, 168, 0, 0],
            dst_len: 16,
            protocol: 4,
            route_type: 1,
            priority: Some(10),
            prefsrc: vec![10, 0, 0, 2],
            multipath: vec![
                NextHop {
                    gateway: vec![10, 0, 0, 1],
                    ifindex: 2,
                    ifname: "eth0".into(),
                    weight: 1,
                    ..Default::default()
                },
                NextHop {
                    gateway: vec![10, 0, 0, 3],
                    ifindex: 2,
                    ifname: "eth0".into(),
                    weight: 3,
                    ..Default::default()
                },
            ],
            metrics: vec![Metric {
                kind: 2,
                value: 1400,
            }],
            ..Default::default()
        },
        Route {
            family: 10,
            table: 254,
            dst: vec![0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst_len: 48,
            route_type: 6,
            pref: Some(0),
            ..Default::default()
        },
    ]
}

pub fn nexthops() -> Vec<NexthopObject> {
    vec![
        NexthopObject {
            id: 1,
            family: 2,
            gateway: vec![10, 0, 0, 1],
            oif: 2,
            oif_name: "eth0".into(),
            protocol: 4,
            ..Default::default()
        },
        NexthopObject {
            id: 10,
            group: vec![NexthopGroupMember { id: 1, weight: 1 }],
            protocol: 4,
            ..Default::default()
        },
    ]
}

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            family: 2,
            priority: Some(100),
            table: 100,
            action: 1,
            src: vec![10, 0, 0, 0],
            src_len: 8,
            fwmark: Some(0x10),
            fwmask: Some(0xff),
            ..Default::default()
        },
        Rule {
            family: 10,
            priority: Some(200),
            table: 200,
            action: 1,
            iifname: "eth0".into(),
            uid_start: Some(1000),
            uid_end: Some(2000),
            ..Default::default()
        },
    ]
}

pub fn neighbours() -> Vec<Neighbour> {
    vec![
        Neighbour {
            family: 2,
            ifindex: 2,
            ifname: "eth0".into(),
            dst: vec![10, 0, 0, 1],
            lladdr: vec![0x02, 0x42, 0xac, 0x11, 0x00, 0x01],
            state: 0x80,
            ..Default::default()
        },
        Neighbour {
            family: 10,
            ifindex: 2,
            ifname: "eth0".into(),
            dst: vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            state: 0x80,
            flags: 0x08,
            ..Default::default()
        },
    ]
}

pub fn sysctls() -> Vec<Sysctl> {
    vec![
        Sysctl {
            path: vec!["ipv4".into(), "ip_forward".into()],
            value: "1".into(),
        },
        Sysctl {
            path: vec![
                "ipv4".into(),
                "conf".into(),
                "eth0.100".into(),
                "rp_filter".into(),
            ],
            value: "2".into(),
        },
        Sysctl {
            path: vec!["ipv4".into(), "ip_local_port_range".into()],
            value: "32768\t60999".into(),
        },
    ]
}

/// The firewall rulesets of the 1.0 golden files: text only.
pub fn firewall_v1_0() -> Vec<FirewallRuleset> {
    vec![
        FirewallRuleset {
            source: FirewallSource::IptablesNft as i32,
            text: "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
                .into(),
            counters: false,
            program: "/usr/sbin/iptables-nft-save".into(),
            tables: Vec::new(),
        },
        FirewallRuleset {
            source: FirewallSource::Ip6tablesNft as i32,
            text: "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n".into(),
            counters: true,
            program: "/usr/sbin/ip6tables-nft-save".into(),
            tables: Vec::new(),
        },
    ]
}

/// The firewall rulesets of the 1.1 golden files: one nfnetlink ruleset with a table of one
/// chain and one rule, then the 1.0 text rulesets.
pub fn firewall() -> Vec<FirewallRuleset> {
    let attr = |ty: u16, v: &[u8]| -> Vec<u8> {
        let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(v);
        while !a.len().is_multiple_of(4) {
            a.push(0);
        }
        a
    };
    let table = [
        vec![2, 0, 0, 0],
        attr(1, b"filter\0"),
        attr(2, &0u32.to_be_bytes()),
    ]
    .concat();
    let chain = [
        vec![2, 0, 0, 0],
        attr(1, b"filter\0"),
        attr(3, b"INPUT\0"),
        attr(
            4,
            &[attr(1, &1u32.to_be_bytes()), attr(2, &0u32.to_be_bytes())].concat(),
        ),
        attr(5, &1u32.to_be_bytes()),
        attr(7, b"filter\0"),
    ]
    .concat();
    let counter = [
        attr(1, b"counter\0"),
        attr(2, &[attr(1, &[0; 8]), attr(2, &[0; 8])].concat()),
    ]
    .concat();
    let rule = [
        vec![2, 0, 0, 0],
        attr(1, b"filter\0"),
        attr(2, b"INPUT\0"),
        attr(4, &attr(1, &counter)),
    ]
    .concat();
    let mut out = vec![FirewallRuleset {
        source: FirewallSource::Nftables as i32,
        text: String::new(),
        counters: false,
        program: "nfnetlink".into(),
        tables: vec![NftTable {
            family: 2,
            name: "filter".into(),
            table: table.into(),
            chains: vec![chain.into()],
            rules: vec![rule.into()],
            ..Default::default()
        }],
    }];
    out.extend(firewall_v1_0());
    out
}

pub fn tun_files() -> Vec<TunFile> {
    vec![TunFile {
        id: 1,
        device: "tap0".into(),
        flags: 0x4002,
        holders: vec![FileHolder { pid: 42, fd: 7 }, FileHolder { pid: 43, fd: 3 }],
        vnet_hdr_sz: 12,
        ..Default::default()
    }]
}

pub fn ext_files() -> Vec<ExtFile> {
    vec![ExtFile {
        id: 2,
        plugin: "example".into(),
        payload: vec![0, 1, 2, 0xff],
        holders: vec![FileHolder { pid: 42, fd: 9 }],
        path: "/dev/example".into(),
    }]
}

pub fn skipped_files() -> Vec<SkippedFile> {
    vec![SkippedFile {
        pid: 42,
        fd: 11,
        path: "socket:[12345]".into(),
        reason: "no plugin claims sockets".into(),
    }]
}

pub fn stats(total: u64) -> Vec<Stats> {
    let mut s = Stats {
        phases: vec![
            Phase {
                name: "links".into(),
                duration_us: 120,
            },
            Phase {
                name: "write".into(),
                duration_us: 80,
            },
        ],
        bytes_written: 4096,
        netlink_requests: 12,
        warnings: 1,
        warning_messages: vec!["socket:[12345] skipped".into()],
        total_us: total,
        locked_us: 50,
        bytes_read: 0,
        ..Default::default()
    };
    s.counts.insert("links".into(), 5);
    s.counts.insert("routes".into(), 3);
    vec![s]
}

pub fn source() -> NamespaceIdentity {
    NamespaceIdentity {
        dev: 4,
        ino: 4_026_532_999,
        target: "/proc/42/ns/net".into(),
        hostname: "golden".into(),
        ..Default::default()
    }
}

/// tc.img (format 1.3): a tbf root qdisc and a u32 filter redirecting to another device.
pub fn tc_objects() -> Vec<TcObject> {
    vec![
        TcObject {
            r#type: TcType::TcQdisc as i32,
            ifname: "eth0".into(),
            ifindex: 2,
            handle: 0x8001_0000,
            parent: 0xFFFF_FFFF,
            kind: "tbf".into(),
            options: vec![8, 0, 1, 0, 0, 0, 0, 0],
            summary: "handle 8001: rate 10Mbit burst 4Kb lat 400ms".into(),
            ..Default::default()
        },
        TcObject {
            r#type: TcType::TcFilter as i32,
            ifname: "eth0".into(),
            ifindex: 2,
            handle: 0x8000_0800,
            parent: 0xFFFF_0000,
            info: 0xC000_0300,
            kind: "u32".into(),
            options: vec![8, 0, 7, 0, 3, 0, 0, 0],
            devrefs: vec![TcDevRef {
                offset: 4,
                ifindex: 3,
                ifname: "ifb0".into(),
            }],
            summary: "action mirred egress redirect dev ifb0".into(),
            ..Default::default()
        },
    ]
}

pub fn warnings() -> Vec<String> {
    vec!["socket:[12345] held by pid 42 fd 11: no plugin claims sockets".into()]
}

/// Writes the golden image (every kind but the inventory, plus stats-restore.img outside the
/// inventory, as a restore leaves it) at `dir`, sealed with [`golden_key`].
pub fn write_fixture(dir: &Path) -> Result<PathBuf, ImageError> {
    write_fixture_with(dir, Some(golden_key()))
}

/// [`write_fixture`], sealed with `key` (or not at all).
pub fn write_fixture_with(dir: &Path, key: Option<HostKey>) -> Result<PathBuf, ImageError> {
    let mut w = ImageWriter::create(dir)?;
    if let Some(k) = key {
        w.set_key(k);
    }
    w.set_capture_time(UNIX_EPOCH + Duration::new(CAPTURE_SEC, CAPTURE_NSEC));
    w.write(Kind::Links, &links())?;
    w.write(Kind::Addresses, &addresses())?;
    w.write(Kind::Routes, &routes())?;
    w.write(Kind::Nexthops, &nexthops())?;
    w.write(Kind::Rules, &rules())?;
    w.write(Kind::Neighbours, &neighbours())?;
    w.write(Kind::Tc, &tc_objects())?;
    w.write(Kind::Sysctls, &sysctls())?;
    w.write(Kind::Firewall, &firewall())?;
    w.write(Kind::TunFiles, &tun_files())?;
    w.write(Kind::ExtFiles, &ext_files())?;
    w.write(Kind::SkippedFiles, &skipped_files())?;
    w.write(Kind::StatsDump, &stats(2000))?;
    let out = w.finish(source(), warnings())?;
    crhook_core::write_file(
        &out.join(Kind::StatsRestore.file_name()),
        Kind::StatsRestore,
        &stats(3000),
    )?;
    Ok(out)
}

/// Every kind's fixture entries encoded, for byte comparison with the golden files.
pub fn fixture_bytes(kind: Kind) -> Option<Vec<u8>> {
    use crhook_core::encode_file;
    Some(match kind {
        Kind::Inventory | Kind::Seal => return None,
        Kind::Links => encode_file(kind, &links()),
        Kind::Addresses => encode_file(kind, &addresses()),
        Kind::Routes => encode_file(kind, &routes()),
        Kind::Nexthops => encode_file(kind, &nexthops()),
        Kind::Rules => encode_file(kind, &rules()),
        Kind::Neighbours => encode_file(kind, &neighbours()),
        Kind::Tc => encode_file(kind, &tc_objects()),
        Kind::Sysctls => encode_file(kind, &sysctls()),
        Kind::Firewall => encode_file(kind, &firewall()),
        Kind::TunFiles => encode_file(kind, &tun_files()),
        Kind::ExtFiles => encode_file(kind, &ext_files()),
        Kind::SkippedFiles => encode_file(kind, &skipped_files()),
        Kind::StatsDump => encode_file(kind, &stats(2000)),
        Kind::StatsRestore => encode_file(kind, &stats(3000)),
    })
}

/// With CRHOOK_BLESS=1, rewrites the golden directory from the fixture (once per test binary).
pub fn bless_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("CRHOOK_BLESS").as_deref() == Ok("1") {
            write_fixture(&golden_dir()).expect("bless golden v1.3");
            eprintln!("blessed {}", golden_dir().display());
        }
    });
}
