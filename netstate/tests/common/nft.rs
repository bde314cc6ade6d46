//! Reading and editing the nf_tables state of a capture: the one `NFTABLES` ruleset, whose
//! tables are saved NFT_MSG_NEW* payloads (struct nfgenmsg, then netlink attributes).

use crhook_netstate::crhook_proto::{FirewallRuleset, FirewallSource, NftTable};

/// The one nf_tables ruleset of a capture (read over nfnetlink, so no text).
pub fn nftables(rs: &[FirewallRuleset]) -> &FirewallRuleset {
    let mut it = rs
        .iter()
        .filter(|r| r.source == FirewallSource::Nftables as i32);
    let r = it.next().expect("an nftables ruleset");
    assert!(it.next().is_none(), "one nftables ruleset: {rs:?}");
    assert!(r.text.is_empty(), "{:?}", r.text);
    assert_eq!(r.program, "nfnetlink");
    r
}

/// "ip filter", as nft names a table.
pub fn table_label(t: &NftTable) -> String {
    let family = match t.family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        other => panic!("unknown nf_tables family {other}"),
    };
    format!("{family} {}", t.name)
}

/// The tables of the capture's nf_tables ruleset, sorted.
pub fn table_labels(rs: &[FirewallRuleset]) -> Vec<String> {
    let mut v: Vec<String> = nftables(rs).tables.iter().map(table_label).collect();
    v.sort();
    v
}

/// The saved table `label` ("ip filter") of a capture, to edit.
pub fn table_mut<'a>(rs: &'a mut [FirewallRuleset], label: &str) -> &'a mut NftTable {
    rs.iter_mut()
        .filter(|r| r.source == FirewallSource::Nftables as i32)
        .flat_map(|r| r.tables.iter_mut())
        .find(|t| table_label(t) == label)
        .unwrap_or_else(|| panic!("no saved table {label}"))
}

/// Every saved message payload of a table.
pub fn payloads(t: &NftTable) -> impl Iterator<Item = &crhook_proto::prost::bytes::Bytes> {
    std::iter::once(&t.table)
        .chain(&t.chains)
        .chain(&t.objects)
        .chain(&t.flowtables)
        .chain(&t.sets)
        .chain(&t.elements)
        .chain(&t.rules)
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Where the value of top-level attribute `ty` lies in a payload.
pub fn attr_span(p: &[u8], ty: u16) -> Option<std::ops::Range<usize>> {
    // after struct nfgenmsg
    let mut i = 4;
    while i + 4 <= p.len() {
        let len = usize::from(u16::from_ne_bytes([p[i], p[i + 1]]));
        // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
        let t = u16::from_ne_bytes([p[i + 2], p[i + 3]]) & 0x3fff;
        if len < 4 || i + len > p.len() {
            return None;
        }
        if t == ty {
            return Some(i + 4..i + len);
        }
        i += (len + 3) & !3;
    }
    None
}

/// The string value of top-level attribute `ty`.
pub fn attr_string(p: &[u8], ty: u16) -> String {
    let r = attr_span(p, ty).unwrap_or_else(|| panic!("no attribute {ty}"));
    String::from_utf8_lossy(&p[r])
        .trim_end_matches('\0')
        .to_string()
}

/// NFTA_RULE_CHAIN of a saved rule.
pub fn rule_chain(p: &[u8]) -> String {
    attr_string(p, 2)
}

/// The names of saved chains (NFTA_CHAIN_NAME), sorted.
pub fn chain_names(t: &NftTable) -> Vec<String> {
    let mut v: Vec<String> = t.chains.iter().map(|p| attr_string(p, 3)).collect();
    v.sort();
    v
}

/// The names of saved sets (NFTA_SET_NAME), sorted.
pub fn set_names(t: &NftTable) -> Vec<String> {
    let mut v: Vec<String> = t.sets.iter().map(|p| attr_string(p, 2)).collect();
    v.sort();
    v
}
