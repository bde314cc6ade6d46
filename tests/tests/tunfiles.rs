//! tun files and ext-file plugins: a process holding a two-queue tun (one queue detached, one
//! descriptor duplicated) and a vnet_hdr tap owned by another uid, none persistent, is
//! captured, dies (its devices vanish), and its files come back in a new namespace: three
//! descriptors, each on the right device, one detached, and a packet written to the tun
//! arrives on the device. The sample external plugin claims a macvtap file and reopens it.
//!
//! Privileged: run as root. Helper programs come from the examples package: build them
//! first (`cargo build -p crhook-examples -p crhook`, same profile as the tests).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crhook_core::{ImageDir, ImageWriter, ShowFormat};
use crhook_netstate::crhook_proto as pb;
use crhook_netstate::link::tun::{
    IfReq, IFF_DETACH_QUEUE, IFF_MULTI_QUEUE, IFF_TAP, IFF_VNET_HDR, TUNGETIFF,
};
use crhook_netstate::snapshot::Snapshot;
use crhook_netstate::{tunfile, CheckpointOptions, NetNs, RestoreOptions, RestoredFile};
use crhook_tests::{crhook, crhook_bin, ip_bin, require_root, wait_until, TempDir, TestNs};
use serde_json::Value;

/// A program of the examples package, built beside the crhook binary.
fn example_bin(name: &str) -> PathBuf {
    let bin = crhook_bin().with_file_name(name);
    if !bin.is_file() {
        panic!(
            "{name} not found at {}; build it first: `cargo build -p crhook-examples` (same profile as the tests)",
            bin.display()
        );
    }
    bin
}

/// tun_holder running inside a namespace; killed on Drop.
struct Holder {
    child: Child,
    report: Value,
}

impl Holder {
    fn spawn(ns: &TestNs, args: &[&str]) -> Holder {
        let mut child = Command::new(ip_bin())
            .args(["netns", "exec", ns.name()])
            .arg(example_bin("tun_holder"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn tun_holder in {}: {e}", ns.name()));
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let report: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "tun_holder {args:?} in {}: no report ({e}): {line:?}",
                ns.name()
            )
        });
        Holder { child, report }
    }

    fn pid(&self) -> u32 {
        self.report["pid"].as_u64().unwrap() as u32
    }

    fn fd(&self, v: &Value) -> i32 {
        v.as_i64().unwrap() as i32
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_ns(ns: &TestNs) -> NetNs {
    NetNs::open_path(&ns.path()).unwrap()
}

/// The tun links of a namespace as crhook captures them.
fn tun_links(ns: &NetNs) -> Vec<pb::Link> {
    let name = ns.name().to_string();
    let links = ns
        .run(move || {
            let mut nl = crhook_netstate::nl::Nl::new(&name)?;
            let msgs = crhook_netstate::link::capture::dump(&mut nl)?;
            let names = crhook_netstate::link::capture::names(&msgs);
            Ok(msgs
                .iter()
                .map(|m| crhook_netstate::link::capture::convert(m, &names))
                .collect::<Vec<_>>())
        })
        .unwrap();
    links.into_iter().filter(|l| l.kind == "tun").collect()
}

fn tun_of(l: &pb::Link) -> pb::Tun {
    match &l.info {
        Some(pb::link::Info::Tun(t)) => *t,
        other => panic!("link {} has no tun settings: {other:?}", l.name),
    }
}

/// (device, flags) TUNGETIFF reports for a descriptor.
fn getiff(fd: &OwnedFd) -> (String, u16) {
    let mut req = IfReq::new("", 0);
    // SAFETY: TUNGETIFF writes a struct ifreq; `req` is a live, correctly sized one.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNGETIFF, &mut req as *mut IfReq) };
    assert!(rc >= 0, "TUNGETIFF: {}", std::io::Error::last_os_error());
    let end = req.name.iter().position(|&b| b == 0).unwrap();
    (
        String::from_utf8_lossy(&req.name[..end]).into_owned(),
        req.flags,
    )
}

/// One IPv4/UDP packet 10.255.0.2 -> 10.255.0.1 (a tun without packet information).
fn probe_packet() -> Vec<u8> {
    let payload = b"crhook probe";
    let total = (28 + payload.len()) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 255, 0, 2, 10, 255, 0, 1,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let mut s: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    ip[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    ip.extend_from_slice(&[0, 9, 0, 9]);
    ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}

fn rx_packets(ns: &TestNs, dev: &str) -> u64 {
    let v: Value = serde_json::from_str(&ns.ip(&["-s", "-j", "link", "show", "dev", dev])).unwrap();
    v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

fn write_images(snap: &Snapshot, dir: &std::path::Path) {
    let mut w = ImageWriter::create(dir).unwrap();
    snap.write(&mut w).unwrap();
    w.finish(Default::default(), Vec::new()).unwrap();
}

/// Recreates the saved tun devices in `ns` the way restore does: persistent, owner and group
/// as saved.
fn create_devices(ns: &NetNs, links: &[pb::Link]) {
    let links = links.to_vec();
    ns.run(move || {
        for l in &links {
            crhook_netstate::link::tun::create(&l.name, &tun_of(l), None).map(drop)?;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn tun_files_are_saved_once_per_open_file_and_come_back_attached() {
    require_root();
    let a = TestNs::new("tunf");
    let holder = Holder::spawn(&a, &["--mq", "mq0", "--tap", "tp0", "--owner", "1000"]);
    let pid = holder.pid();
    let q0 = holder.fd(&holder.report["mq"]["queues"][0]);
    let q1 = holder.fd(&holder.report["mq"]["queues"][1]);
    let dup = holder.fd(&holder.report["mq"]["dup"]);
    let tapfd = holder.fd(&holder.report["tap"]["fd"]);

    let ns = open_ns(&a);
    let mut snap = Snapshot {
        links: tun_links(&ns),
        ..Default::default()
    };
    assert_eq!(snap.links.len(), 2, "mq0 and tp0: {:?}", snap.links);
    for l in &snap.links {
        assert!(
            !tun_of(l).persist,
            "{} must not be persistent before capture",
            l.name
        );
    }
    let mut warnings = Vec::new();
    tunfile::capture(&ns, &mut snap, &CheckpointOptions::default(), &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(snap.skipped_files.is_empty(), "{:?}", snap.skipped_files);
    assert!(snap.ext_files.is_empty());
    assert_eq!(
        snap.tun_files.len(),
        3,
        "four descriptors, three open files: {:#?}",
        snap.tun_files
    );

    let by_fd = |fd: i32| {
        snap.tun_files
            .iter()
            .find(|t| t.holders.iter().any(|h| h.pid == pid && h.fd == fd))
            .unwrap_or_else(|| panic!("no tun file held at fd {fd}: {:#?}", snap.tun_files))
    };
    let first = by_fd(q0);
    assert_eq!(first.device, "mq0");
    let mut hs: Vec<i32> = first.holders.iter().map(|h| h.fd).collect();
    hs.sort();
    assert_eq!(hs, {
        let mut v = vec![q0, dup];
        v.sort();
        v
    });
    assert!(!first.detached);
    assert!(first.flags & u32::from(IFF_MULTI_QUEUE) != 0);
    let second = by_fd(q1);
    assert_eq!(second.device, "mq0");
    assert!(second.detached, "the second queue was detached: {second:?}");
    assert_eq!(second.holders.len(), 1);
    let tap = by_fd(tapfd);
    assert_eq!(tap.device, "tp0");
    assert_eq!(
        tap.flags & u32::from(IFF_TAP | IFF_VNET_HDR),
        u32::from(IFF_TAP | IFF_VNET_HDR)
    );
    assert_eq!(tap.vnet_hdr_sz, 12);
    let tp0 = snap.links.iter().find(|l| l.name == "tp0").unwrap();
    assert_eq!(tun_of(tp0).owner, Some(1000));
    let ids: Vec<u32> = snap.tun_files.iter().map(|t| t.id).collect();
    assert_eq!(ids, [1, 2, 3]);

    // the image carries them, and show lists them
    let img = TempDir::new("tunf-img");
    let dir = img.path().join("images");
    write_images(&snap, &dir);
    let back = Snapshot::read(&ImageDir::open(&dir).unwrap()).unwrap();
    assert_eq!(back.tun_files, snap.tun_files);
    let text = crhook_core::show(&dir, ShowFormat::Text).unwrap();
    assert!(
        text.contains("mq0") && text.contains("tp0"),
        "show lists the tun files:\n{text}"
    );
    let run = crhook(None, &["show", &dir.display().to_string()], &[]);
    run.expect_success();
    assert!(
        run.stdout.contains("mq0") && run.stdout.contains("detached"),
        "crhook show:\n{}",
        run.stdout
    );

    // the holder dies: its devices, never persistent, go with it
    holder.stop();
    wait_until(
        "mq0 and tp0 to vanish with their holder",
        Duration::from_secs(10),
        || !a.link_exists("mq0") && !a.link_exists("tp0"),
    );

    let b = TestNs::new("tunf-r");
    let nb = open_ns(&b);
    create_devices(&nb, &snap.links);
    let files = tunfile::restore(&nb, &snap, &RestoreOptions::default()).unwrap();
    assert_eq!(files.len(), 3, "exactly three descriptors");
    let mut detached = 0;
    for (f, t) in files.iter().zip(&snap.tun_files) {
        assert_eq!(f.header["id"], t.id);
        assert_eq!(f.header["device"], t.device.as_str());
        let (dev, flags) = getiff(&f.fd);
        assert_eq!(dev, t.device, "descriptor {} is on the saved device", t.id);
        let is_detached = flags & IFF_DETACH_QUEUE != 0;
        assert_eq!(is_detached, t.detached, "queue state of file {}", t.id);
        assert_eq!(f.header["detached"], is_detached);
        detached += usize::from(is_detached);
    }
    assert_eq!(detached, 1);
    let mq0 = b.link_json("mq0");
    assert_eq!(mq0["linkinfo"]["info_data"]["numqueues"], 1, "{mq0}");
    assert_eq!(mq0["linkinfo"]["info_data"]["numdisabled"], 1, "{mq0}");
    let tp0 = b.link_json("tp0");
    // ip prints the owner by name when the uid has one
    let owner = nix::unistd::User::from_uid(1000.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "1000".into());
    assert_eq!(
        tp0["linkinfo"]["info_data"]["user"],
        owner.as_str(),
        "{tp0}"
    );

    // a packet written to the attached tun queue arrives on the device
    b.ip(&["link", "set", "mq0", "up"]);
    let before = rx_packets(&b, "mq0");
    let attached = files
        .iter()
        .find(|f| f.header["device"] == "mq0" && f.header["detached"] == false)
        .unwrap();
    let mut w = std::fs::File::from(attached.fd.try_clone().unwrap());
    let pkt = probe_packet();
    assert_eq!(w.write(&pkt).unwrap(), pkt.len());
    wait_until(
        "the probe packet to be counted on mq0",
        Duration::from_secs(5),
        || rx_packets(&b, "mq0") > before,
    );

    // persistence: kept until the hand-off, then released; the devices then live as long as
    // their files
    assert_eq!(b.link_json("mq0")["linkinfo"]["info_data"]["persist"], true);
    tunfile::release_persist(&nb, &snap).unwrap();
    for dev in ["mq0", "tp0"] {
        let j = b.link_json(dev);
        assert_eq!(j["linkinfo"]["info_data"]["persist"], false, "{dev}: {j}");
    }
    drop(w);
    drop(files);
    wait_until(
        "released devices to vanish with their last file",
        Duration::from_secs(10),
        || !b.link_exists("mq0") && !b.link_exists("tp0"),
    );
}

/// A veth with a macvtap on it, pinned to `index`, in `ns`; returns /dev/tap<index>.
fn macvtap(ns: &TestNs, index: u32) -> String {
    ns.ip(&["link", "add", "ve0", "type", "veth", "peer", "name", "ve1"]);
    ns.ip(&[
        "link",
        "add",
        "link",
        "ve0",
        "name",
        "mvt0",
        "index",
        &index.to_string(),
        "type",
        "macvtap",
    ]);
    let dev = format!("/dev/tap{index}");
    wait_until(&format!("{dev} to appear"), Duration::from_secs(5), || {
        std::path::Path::new(&dev).exists()
    });
    dev
}

fn plugin_dir(tmp: &TempDir, name: &str) -> PathBuf {
    let dir = tmp.path().join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(example_bin("sample_plugin"), dir.join(name)).unwrap();
    dir
}

fn script_plugin(dir: &std::path::Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_sample_plugin_claims_a_macvtap_file_and_reopens_it() {
    require_root();
    // pin the macvtap's ifindex: /dev/tapN nodes share one devtmpfs across namespaces
    let base = 20_000 + (std::process::id() % 10_000) * 2;
    let a = TestNs::new("tunf-ext");
    let dev = macvtap(&a, base);
    let holder = Holder::spawn(&a, &["--open", &dev]);
    let fd = holder.fd(&holder.report["open"][0]["fd"]);
    let ns = open_ns(&a);

    // no plugin: recorded as skipped, with a warning; strict: refused
    let mut snap = Snapshot::default();
    let mut warnings = Vec::new();
    tunfile::capture(&ns, &mut snap, &CheckpointOptions::default(), &mut warnings).unwrap();
    assert_eq!(snap.skipped_files.len(), 1, "{:?}", snap.skipped_files);
    let s = &snap.skipped_files[0];
    assert_eq!(
        (s.pid, s.fd, s.path.as_str()),
        (holder.pid(), fd, dev.as_str())
    );
    assert!(s.reason.contains("macvtap device file"), "{}", s.reason);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("no plugin claimed it"),
        "{}",
        warnings[0]
    );
    let strict = CheckpointOptions {
        strict_files: true,
        ..Default::default()
    };
    let e = tunfile::capture(&ns, &mut Snapshot::default(), &strict, &mut Vec::new()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("strict files") && msg.contains(&dev), "{msg}");

    // the sample plugin claims it
    let tmp = TempDir::new("tunf-plugins");
    let dir = plugin_dir(&tmp, "macvtap-sample");
    let opts = CheckpointOptions {
        plugin_dir: Some(dir.clone()),
        ..Default::default()
    };
    let mut snap = Snapshot::default();
    let mut warnings = Vec::new();
    tunfile::capture(&ns, &mut snap, &opts, &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(snap.skipped_files.is_empty());
    assert_eq!(snap.ext_files.len(), 1);
    let x = &snap.ext_files[0];
    assert_eq!(x.plugin, "macvtap-sample");
    assert_eq!(x.path, dev);
    assert_eq!(
        x.holders,
        [pb::FileHolder {
            pid: holder.pid(),
            fd
        }]
    );
    let payload: Value = serde_json::from_slice(&x.payload).unwrap();
    assert_eq!(payload["ifname"], "mvt0");

    holder.stop();
    a.delete();

    // restore: a new namespace with the macvtap at another ifindex; the plugin finds it by name
    let b = TestNs::new("tunf-ext-r");
    let dev_b = macvtap(&b, base + 1);
    let nb = open_ns(&b);
    let ropts = RestoreOptions {
        plugin_dir: Some(dir.clone()),
        ..Default::default()
    };
    let files: Vec<RestoredFile> = tunfile::restore(&nb, &snap, &ropts).unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].header["plugin"], "macvtap-sample");
    assert_eq!(files[0].header["holders"][0]["fd"], fd);
    let got = std::fs::metadata(format!("/proc/self/fd/{}", files[0].fd.as_raw_fd())).unwrap();
    let want = std::fs::metadata(&dev_b).unwrap();
    assert!(got.file_type().is_char_device());
    assert_eq!(
        got.rdev(),
        want.rdev(),
        "the restored descriptor is {dev_b}"
    );

    // an image naming a plugin this restore does not have
    let e = tunfile::restore(&nb, &snap, &RestoreOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("macvtap-sample") && e.contains("not registered"),
        "{e}"
    );
}

#[test]
fn broken_plugins_are_reported_by_name() {
    require_root();
    let base = 40_000 + (std::process::id() % 10_000) * 2;
    let a = TestNs::new("tunf-bad");
    let dev = macvtap(&a, base);
    let _holder = Holder::spawn(&a, &["--open", &dev]);
    let ns = open_ns(&a);
    let tmp = TempDir::new("tunf-bad-plugins");
    // the error of a capture with plugin directory `dir`
    let capture_in = |dir: std::path::PathBuf| {
        let opts = CheckpointOptions {
            plugin_dir: Some(dir),
            ..Default::default()
        };
        tunfile::capture(&ns, &mut Snapshot::default(), &opts, &mut Vec::new())
            .unwrap_err()
            .to_string()
    };
    let capture_with = |body: &str| {
        let dir = tmp.path().join(format!("p{}", body.len()));
        std::fs::create_dir_all(&dir).unwrap();
        script_plugin(&dir, "broken", body);
        capture_in(dir)
    };
    let e = capture_with("echo not-json");
    assert!(
        e.contains("plugin broken") && e.contains("answer is not JSON"),
        "{e}"
    );
    let e = capture_with("echo '{\"error\":\"cannot look\"}'; exit 3");
    assert!(e.contains("plugin error: cannot look"), "{e}");
    let e = capture_with("echo '{\"claim\":true}' >/dev/null; echo oops >&2; exit 1");
    assert!(
        e.contains("no answer on stdout") && e.contains("oops"),
        "{e}"
    );
    let e = capture_with("read line; case \"$line\" in *claim*) echo '{\"claim\":true}';; *) echo '{\"payload\":7}';; esac");
    assert!(e.contains("lacks a string \"payload\""), "{e}");

    // a plugin file still open for writing for a moment (ETXTBSY) is run once it is not
    let dir = tmp.path().join("busy");
    std::fs::create_dir_all(&dir).unwrap();
    script_plugin(&dir, "busy", "echo not-json");
    let writer = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("busy"))
        .unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        drop(writer);
    });
    let e = capture_in(dir);
    release.join().unwrap();
    assert!(e.contains("answer is not JSON"), "the busy plugin ran: {e}");

    // a plugin directory may not replace the built-in tun plugin
    let dir = tmp.path().join("shadow");
    std::fs::create_dir_all(&dir).unwrap();
    script_plugin(&dir, "tun", "exit 0");
    let e = capture_in(dir);
    assert!(e.contains("would replace the built-in tun plugin"), "{e}");
}

#[test]
fn checkpoint_and_restore_hand_the_files_over_the_fd_socket() {
    require_root();
    let a = TestNs::new("tunf-cli");
    let holder = Holder::spawn(&a, &["--mq", "mq0", "--tap", "tp0", "--owner", "1000"]);
    // up, so that restore brings it up before the hand-off and the probe can pass (a tun
    // that is down answers writes with EIO)
    a.ip(&["link", "set", "mq0", "up"]);
    let img = TempDir::new("tunf-cli-img");
    let images = img.join("images");
    crhook(
        None,
        &["checkpoint", "--netns", &a.path_str(), "--images", &images],
        &[],
    )
    .expect_success();
    let show = crhook(None, &["show", &images, "--format", "text"], &[]);
    show.expect_success();
    assert!(
        show.stdout.contains("mq0") && show.stdout.contains("tp0"),
        "{}",
        show.stdout
    );
    holder.stop();
    wait_until(
        "the holder's devices to vanish",
        Duration::from_secs(10),
        || !a.link_exists("mq0") && !a.link_exists("tp0"),
    );

    let b = TestNs::new("tunf-cli-r");
    let sock = img.join("fd.sock");
    let mut recv = Command::new(example_bin("fd_receiver"))
        .args([sock.as_str(), "--probe", "--hold"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("fd_receiver to listen", Duration::from_secs(5), || {
        std::path::Path::new(&sock).exists()
    });
    let run = crhook(
        None,
        &[
            "restore",
            "--netns",
            &b.path_str(),
            "--images",
            &images,
            "--fd-socket",
            &sock,
        ],
        &[],
    );
    if run.code != Some(0) {
        let _ = recv.kill();
        let _ = recv.wait();
    }
    run.expect_success();
    let mut line = String::new();
    BufReader::new(recv.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let report: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("receiver report ({e}): {line:?}"));
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "exactly three descriptors: {report:#}");
    let mut detached = 0;
    for f in files {
        assert_eq!(f["live"]["device"], f["header"]["device"], "{f}");
        assert_eq!(f["live"]["detached"], f["header"]["detached"], "{f}");
        detached += usize::from(f["live"]["detached"] == true);
    }
    assert_eq!(detached, 1, "{report:#}");
    let probed: Vec<&Value> = files
        .iter()
        .filter(|f| f.get("probe_bytes").is_some())
        .collect();
    assert_eq!(
        probed.len(),
        1,
        "one attached tun queue was probed: {report:#}"
    );
    assert!(
        probed[0]["probe_bytes"].as_u64().is_some_and(|n| n > 0),
        "{report:#}"
    );
    assert!(rx_packets(&b, "mq0") >= 1, "the probe arrived on mq0");

    // `crhook restore --fd-socket` released persistence once the receiver had the files,
    // through its own still-open copies: both devices (saved non-persistent) now live only
    // through the receiver's descriptors
    assert_eq!(
        b.link_json("mq0")["linkinfo"]["info_data"]["persist"],
        false
    );
    assert_eq!(
        b.link_json("tp0")["linkinfo"]["info_data"]["persist"],
        false
    );
    drop(recv.stdin.take());
    let _ = recv.wait();
    wait_until(
        "mq0 and tp0 to vanish with the receiver's files",
        Duration::from_secs(10),
        || !b.link_exists("mq0") && !b.link_exists("tp0"),
    );
}

#[test]
fn a_shell_plugin_hands_back_a_descriptor_it_holds_open() {
    require_root();
    let a = TestNs::new("tunf-sh");
    let ns = open_ns(&a);
    let tmp = TempDir::new("tunf-sh-plugins");
    // the restore half of the shell plugin in docs/plugins.md, opening /dev/null
    script_plugin(
        tmp.path(),
        "nullfile",
        r#"read -r req
case "$req" in
  *'"op":"restore"'*) exec 5<>/dev/null; echo '{"fd":5}'; cat >/dev/null ;;
  *) echo '{"error":"unexpected request"}'; exit 1 ;;
esac"#,
    );
    let sink = tunfile::ErrorSink::default();
    let reg = tunfile::registry(
        &ns,
        Some(tmp.path()),
        tunfile::TunPlugin::default(),
        Vec::new(),
        &sink,
    )
    .unwrap();
    assert_eq!(reg.names().collect::<Vec<_>>(), ["tun", "nullfile"]);
    let fd = reg.require("nullfile").unwrap().restore(b"").unwrap();
    let got = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
    let want = std::fs::metadata("/dev/null").unwrap();
    assert_eq!(
        (got.dev(), got.ino(), got.rdev()),
        (want.dev(), want.ino(), want.rdev())
    );
}
