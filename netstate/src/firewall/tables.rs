//! The namespace's nftables tables, listed over nfnetlink (NFT_MSG_GETTABLE dump).
//!
//! `nft list tables` (nft 1.0.6) loads every rule of every table into its cache just to print
//! table names: 0.6-1.3 s and 166 MB with 50,000 iptables-nft rules, and crhook asks on every
//! checkpoint (is a lock there?) and capture. The kernel answers the table dump in
//! microseconds. netlink-packet-route covers rtnetlink only, so the messages are hand-built;
//! the socket, framing and acks are `Nl`'s.

use super::nftx::TableId;
use crate::error::Result;
use crate::link::raw::{find, split};
use crate::netns::NetNs;
use crate::nl::Req;

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFTA_TABLE_NAME: u16 = 1;
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

/// Lists the tables of `ns` (the socket is opened on a thread inside it).
pub(crate) fn list(ns: &NetNs) -> Result<Vec<TableId>> {
    let req = Req::Raw {
        msg_type: (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
        payload: vec![0; NFGEN],
    };
    let msgs = ns.with_netfilter(|nl| nl.dump_raw(&req, "dump nftables tables"))?;
    Ok(msgs
        .iter()
        .filter_map(|(ty, payload)| table(*ty, payload))
        .collect())
}

/// One NFT_MSG_NEWTABLE payload (nfgenmsg, then attributes) as a table id.
fn table(ty: u16, payload: &[u8]) -> Option<TableId> {
    if ty != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE || payload.len() < NFGEN {
        return None;
    }
    let attrs = split(&payload[NFGEN..]);
    let name = find(&attrs, NFTA_TABLE_NAME)?;
    let name = name.value.split(|b| *b == 0).next().unwrap_or(&[]);
    Some(TableId {
        family: family_name(payload[0]),
        name: String::from_utf8_lossy(name).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload the kernel sends for `table inet crhook-lock`.
    #[test]
    fn golden_table_message_is_parsed() {
        let mut p = vec![1, 0, 0, 0];
        let name = b"crhook-lock\0";
        p.extend_from_slice(&((4 + name.len()) as u16).to_ne_bytes());
        p.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
        p.extend_from_slice(name);
        let t = table((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE, &p);
        let t = t.expect("a table");
        assert_eq!(
            (t.family.as_str(), t.name.as_str()),
            ("inet", "crhook-lock")
        );
        assert!(table((NFNL_SUBSYS_NFTABLES << 8) | 3, &p).is_none());
    }
}
