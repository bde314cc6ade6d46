//! eBPF programs on a device's data path (a `bpf` classifier or action running a loaded
//! program, an XDP program): recorded, never carried. A program is kernel memory referenced by
//! id; its instructions, maps and their contents are not in any dump, so restore cannot make
//! it again. Checkpoint records the program's id, tag, name and where it was attached; restore
//! refuses an image holding one unless the caller accepts the loss (`--allow-lost bpf`).
//!
//! A classic BPF classifier (`tc filter ... bpf bytecode ...`) is dumped with its
//! instructions (TCA_BPF_OPS) and is carried like any other filter.

use std::os::fd::{FromRawFd, OwnedFd};

use crhook_proto as pb;
use netlink_packet_route::link::{LinkAttribute, LinkXdp, XdpAttached};

use crate::nla::attrs;

const TCA_BPF_NAME: u16 = 7;
const TCA_BPF_TAG: u16 = 10;
const TCA_BPF_ID: u16 = 11;
const TCA_ACT_BPF_NAME: u16 = 6;
const TCA_ACT_BPF_TAG: u16 = 8;
const TCA_ACT_BPF_ID: u16 = 9;

/// The first eBPF program met while decoding one object.
#[derive(Default)]
pub(crate) struct BpfSeen {
    prog: Option<pb::BpfProgram>,
}

impl BpfSeen {
    /// A `bpf` classifier's options.
    pub fn classifier(&mut self, opts: &[u8]) -> Result<(), String> {
        self.find(opts, [TCA_BPF_ID, TCA_BPF_TAG, TCA_BPF_NAME])
    }

    /// A `bpf` action's options.
    pub fn action(&mut self, opts: &[u8]) -> Result<(), String> {
        self.find(opts, [TCA_ACT_BPF_ID, TCA_ACT_BPF_TAG, TCA_ACT_BPF_NAME])
    }

    fn find(&mut self, opts: &[u8], [id, tag, name]: [u16; 3]) -> Result<(), String> {
        if self.prog.is_some() {
            return Ok(());
        }
        let mut p = pb::BpfProgram::default();
        for at in attrs(opts) {
            let at = at?;
            match at.ty() {
                t if t == id => p.id = at.u32()?,
                t if t == tag => p.tag = at.value.to_vec(),
                t if t == name => p.name = at.string(),
                _ => {}
            }
        }
        // no id: classic BPF, whose instructions the dump holds
        if p.id != 0 {
            self.prog = Some(p);
        }
        Ok(())
    }

    pub fn take(self) -> Option<pb::BpfProgram> {
        self.prog
    }
}

/// Whether a raw link message says an XDP program is attached (`IFLA_XDP_ATTACHED` other
/// than `XDP_ATTACHED_NONE`; the kernel sends `IFLA_XDP` for every link).
fn xdp_attached(msg: &[u8]) -> bool {
    const IFLA_XDP: u16 = 43;
    const IFLA_XDP_ATTACHED: u16 = 2;
    crate::nla::attrs(msg.get(16..).unwrap_or_default())
        .map_while(|a| a.ok())
        .filter(|a| a.ty() == IFLA_XDP)
        .any(|x| {
            crate::nla::attrs(x.value)
                .map_while(|a| a.ok())
                .any(|a| a.ty() == IFLA_XDP_ATTACHED && a.value.first().is_some_and(|v| *v != 0))
        })
}

/// XDP programs attached to the links of a link dump, one entry each, with the name and tag
/// the kernel reports for the program id (empty where it cannot be asked).
pub(crate) fn xdp_programs(links: &crate::link::RawLinks) -> Vec<pb::TcObject> {
    let mut out = Vec::new();
    // only the links with a program attached are decoded (again); a link that does not
    // decode failed the link capture already
    let attached = links
        .messages()
        .filter(|m| xdp_attached(m))
        .filter_map(|m| crate::link::capture::decode(m).ok());
    for m in attached {
        let name = crate::link::capture::link_name(&m);
        for a in &m.attributes {
            let LinkAttribute::Xdp(xdp) = a else { continue };
            let mut mode = "";
            let mut ids = Vec::new();
            for x in xdp {
                match x {
                    LinkXdp::Attached(XdpAttached::Driver) => mode = "driver",
                    LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = "generic",
                    LinkXdp::Attached(XdpAttached::Hardware) => mode = "offload",
                    LinkXdp::Attached(XdpAttached::Multiple) => mode = "multi",
                    LinkXdp::ProgId(id) if mode != "multi" => ids.push((*id, mode)),
                    LinkXdp::DrvProgId(id) => ids.push((*id, "driver")),
                    LinkXdp::SkbProgId(id) => ids.push((*id, "generic")),
                    LinkXdp::HwProgId(id) => ids.push((*id, "offload")),
                    _ => {}
                }
            }
            for (id, how) in ids {
                let how = if how.is_empty() { mode } else { how };
                let mut p = prog_info(id).unwrap_or_default();
                p.id = id;
                p.attach = format!("xdp {how} on {name}");
                out.push(pb::TcObject {
                    r#type: pb::TcType::TcXdp as i32,
                    ifindex: m.header.index,
                    ifname: name.clone(),
                    kind: "xdp".into(),
                    summary: describe(&p),
                    bpf: Some(p),
                    ..Default::default()
                });
            }
        }
    }
    out
}

/// `prog 17 tag 0123456789abcdef name pass_all`
pub(crate) fn describe(p: &pb::BpfProgram) -> String {
    let mut d = format!("prog {}", p.id);
    if !p.tag.is_empty() {
        d.push_str(&format!(" tag {}", crate::nla::hex(&p.tag)));
    }
    if !p.name.is_empty() {
        d.push_str(&format!(" name {}", p.name));
    }
    d
}

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// offsets in struct bpf_prog_info
const INFO_TAG: usize = 8;
const INFO_NAME: usize = 64;
const INFO_LEN: usize = 80;

/// Tag and name of a loaded program, through bpf(2) (needs CAP_SYS_ADMIN or CAP_BPF).
fn prog_info(id: u32) -> Option<pb::BpfProgram> {
    // union bpf_attr for BPF_PROG_GET_FD_BY_ID: prog_id, next_id, open_flags
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    // SAFETY: bpf(2) reads `size` bytes of `attr`, a live buffer of that length.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_GET_FD_BY_ID,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = [0u8; INFO_LEN];
    let mut attr = [0u8; 128];
    // info_by_fd: bpf_fd u32, info_len u32, info u64
    attr[..4].copy_from_slice(&std::os::fd::AsRawFd::as_raw_fd(&fd).to_ne_bytes());
    attr[4..8].copy_from_slice(&(INFO_LEN as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    // SAFETY: `attr` points the kernel at `info`, INFO_LEN writable bytes that outlive the
    // call; the kernel writes at most info_len bytes there.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if r != 0 {
        return None;
    }
    let name = &info[INFO_NAME..INFO_LEN];
    let name = name.split(|b| *b == 0).next().unwrap_or(&[]);
    Some(pb::BpfProgram {
        id,
        tag: info[INFO_TAG..INFO_TAG + 8].to_vec(),
        name: String::from_utf8_lossy(name).into_owned(),
        attach: String::new(),
    })
}
