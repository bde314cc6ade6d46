//! crhook's lock table, built over nfnetlink, is the table `nft -f` makes from its text form
//! (docs: netstate/src/firewall/lock.rs), locking twice leaves one lock, and unlocking removes
//! it. Needs root.

mod common;

use common::TestNs;
use crhook_netstate::firewall;

const NFT_LOCK: &str = "table inet crhook-lock {
\tchain prerouting {
\t\ttype filter hook prerouting priority -2147483648; policy drop;
\t\tiif lo accept
\t}
\tchain output {
\t\ttype filter hook output priority -2147483648; policy drop;
\t\toif lo accept
\t}
}
";

fn listing(ns: &TestNs) -> String {
    ns.sh("/usr/sbin/nft list ruleset")
}

#[test]
fn lock_over_nfnetlink_equals_the_nft_text_form() {
    let by_nft = TestNs::new("lk", "nft");
    let by_nl = TestNs::new("lk", "nl");
    by_nft.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NFT_LOCK}EOF\n"));
    let want = listing(&by_nft);
    assert!(want.contains("iif \"lo\" accept"), "{want}");

    firewall::lock(&by_nl.ns()).expect("lock");
    assert_eq!(listing(&by_nl), want);
    assert!(firewall::is_locked(&by_nl.ns()).expect("is_locked"));
    // a second lock replaces the first: still one table, the same
    firewall::lock(&by_nl.ns()).expect("lock again");
    assert_eq!(listing(&by_nl), want);

    assert!(firewall::unlock(&by_nl.ns()).expect("unlock"));
    assert_eq!(listing(&by_nl), "");
    assert!(!firewall::is_locked(&by_nl.ns()).expect("is_locked"));
    assert!(!firewall::unlock(&by_nl.ns()).expect("unlock again"));
}
