//! The namespace's nftables tables, listed over nfnetlink (NFT_MSG_GETTABLE dump).
//!
//! `nft list tables` (nft 1.0.6) loads every rule of every table into its cache just to print
//! table names: 0.6-1.3 s and 166 MB with 50,000 iptables-nft rules, and crhook asks on every
//! checkpoint (is a lock there?) and capture. The kernel answers the table dump in
//! microseconds. netlink-packet-route covers rtnetlink only, so this dump is hand-written.

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::nftx::TableId;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFTA_TABLE_NAME: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HDR: usize = 16;
/// struct nfgenmsg: family, version, res_id (big endian)
const NFGEN: usize = 4;

fn family_name(f: u8) -> String {
    match f {
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        other => format!("family{other}"),
    }
}

/// Lists the tables of `ns` (on a thread inside it).
pub(crate) fn list(ns: &NetNs) -> Result<Vec<TableId>> {
    let name = ns.name().to_string();
    ns.run(move || dump(&name))
}

fn io(netns: &str, op: &str, source: std::io::Error) -> NetstateError {
    NetstateError::Netlink {
        op: op.to_string(),
        object: "nftables tables".into(),
        netns: netns.to_string(),
        source,
    }
}

fn dump(netns: &str) -> Result<Vec<TableId>> {
    let mut sock =
        Socket::new(NETLINK_NETFILTER).map_err(|e| io(netns, "open nfnetlink for", e))?;
    sock.bind_auto()
        .map_err(|e| io(netns, "bind nfnetlink for", e))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| io(netns, "connect nfnetlink for", e))?;
    let mut req = Vec::with_capacity(HDR + NFGEN);
    req.extend_from_slice(&((HDR + NFGEN) as u32).to_ne_bytes());
    req.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    let flags: u16 = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0, 0, 0, 0]);
    sock.send(&req, 0)
        .map_err(|e| io(netns, "send table dump for", e))?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = sock
            .recv(&mut &mut buf[..], 0)
            .map_err(|e| io(netns, "receive table dump for", e))?;
        if let Some(done) = parse(&buf[..n], &mut out).map_err(|e| io(netns, "dump", e))? {
            if done {
                return Ok(out);
            }
        }
    }
}

/// Parses one datagram of the dump; Some(true) at NLMSG_DONE.
fn parse(buf: &[u8], out: &mut Vec<TableId>) -> std::io::Result<Option<bool>> {
    let mut off = 0;
    while off + HDR <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < HDR || off + len > buf.len() {
            return Err(std::io::Error::other(format!("bad message length {len}")));
        }
        let body = &buf[off + HDR..off + len];
        match ty {
            NLMSG_DONE => return Ok(Some(true)),
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(-libc::EIO);
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            t if t == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE && body.len() >= NFGEN => {
                let family = family_name(body[0]);
                let mut a = NFGEN;
                while a + 4 <= body.len() {
                    let alen = u16::from_ne_bytes([body[a], body[a + 1]]) as usize;
                    let aty = u16::from_ne_bytes([body[a + 2], body[a + 3]]) & 0x3fff;
                    if alen < 4 || a + alen > body.len() {
                        break;
                    }
                    if aty == NFTA_TABLE_NAME {
                        let v = &body[a + 4..a + alen];
                        let v = v.split(|b| *b == 0).next().unwrap_or(&[]);
                        out.push(TableId {
                            family: family.clone(),
                            name: String::from_utf8_lossy(v).into_owned(),
                        });
                    }
                    a += (alen + 3) & !3;
                }
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(Some(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NEWTABLE message as the kernel sends it for `table inet crhook-lock`, then DONE.
    #[test]
    fn golden_table_dump_is_parsed() {
        let mut m = Vec::new();
        let name = b"crhook-lock\0";
        let attr_len = 4 + name.len();
        let len = HDR + NFGEN + ((attr_len + 3) & !3);
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE).to_ne_bytes());
        m.extend_from_slice(&[2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(&[1, 0, 0, 0]);
        m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        m.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
        m.extend_from_slice(name);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m.extend_from_slice(&(HDR as u32 + 4).to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0; 14]);
        let mut out = Vec::new();
        assert_eq!(parse(&m, &mut out).ok(), Some(Some(true)));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].family.as_str(), out[0].name.as_str()),
            ("inet", "crhook-lock")
        );
    }
}
