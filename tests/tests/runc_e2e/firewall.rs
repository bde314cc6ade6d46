//! The firewall as the end-to-end tests compare it.

use crhook_tests::TestNs;

/// iptables-save and ip6tables-save without comments and counters (what a restore must
/// reproduce), then `nft list ruleset` with counter values left out: what a user compares.
///
/// Nothing else is ignored. CRIU locks a restored namespace with iptables after
/// setup-namespaces and unlocks it after network-unlock; under iptables-nft the unlock leaves
/// the empty base chains (and an empty `filter` table) its lock created, and crhook removes
/// them at pre-resume. Any of them still there, or anything else a lock leaves behind,
/// CRIU's or crhook's, shows here.
pub fn firewall(ns: &TestNs) -> String {
    let xt = ns.sh("iptables-save; ip6tables-save");
    let xt = xt.lines().filter(|l| !l.starts_with('#')).map(|l| {
        strip_between(l, '[', ']', |inner| {
            inner
                .split(':')
                .all(|p| p.chars().all(|c| c.is_ascii_digit()))
        })
        .trim_end()
        .to_string()
    });
    let nft = ns.sh("nft list ruleset");
    let nft = nft.lines().map(|l| match l.find("counter packets") {
        Some(i) => format!("{}counter", &l[..i]),
        None => l.to_string(),
    });
    xt.chain(std::iter::once("--- nft".to_string()))
        .chain(nft)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Removes `[...]` groups whose inside satisfies `pred` (iptables-save's `[packets:bytes]`).
pub fn strip_between(l: &str, open: char, close: char, pred: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut rest = l;
    while let Some(i) = rest.find(open) {
        match rest[i..].find(close) {
            Some(j) if pred(&rest[i + 1..i + j]) => {
                out.push_str(&rest[..i]);
                rest = &rest[i + j + 1..];
            }
            _ => {
                out.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
