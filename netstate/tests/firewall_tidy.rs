//! Privileged tests of `firewall::tidy`: the empty iptables-nft base chains and tables a
//! CRIU-style lock leaves behind go, and `iptables-save`, `ip6tables-save` and
//! `nft list ruleset` show the image's state again; what the image has stays. Each test makes
//! its own namespaces (`crh-fwt-<tag>-<pid>`) and removes them on drop; without root they fail.

use crhook_netstate::crhook_proto::FirewallRuleset;
use crhook_netstate::firewall;
use crhook_netstate::FirewallOptions;

mod common;
use common::nft::{chain_names, nftables, table_label, table_labels};
use common::TestNs;

/// What the tidy tests do with a test namespace (`crh-fwt-<tag>-<pid>`).
trait TidyNs {
    fn view(&self) -> String;
    fn capture(&self) -> Vec<FirewallRuleset>;
    fn tidy(&self, saved: &[FirewallRuleset]) -> Vec<String>;
}

impl TidyNs for TestNs {
    /// What a user compares: the three tools' output, comment lines (dates) left out.
    fn view(&self) -> String {
        let mut out = String::new();
        for cmd in [
            "/usr/sbin/iptables-save",
            "/usr/sbin/ip6tables-save",
            "/usr/sbin/nft list ruleset",
        ] {
            out.push_str(&format!("--- {cmd}\n"));
            for l in self.sh(cmd).lines().filter(|l| !l.starts_with('#')) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn capture(&self) -> Vec<FirewallRuleset> {
        firewall::capture(&self.ns(), &FirewallOptions::default()).expect("capture firewall")
    }

    fn tidy(&self, saved: &[FirewallRuleset]) -> Vec<String> {
        firewall::tidy(&self.ns(), saved, &FirewallOptions::default()).expect("tidy")
    }
}

/// CRIU's lock and unlock of a restored namespace, as its `iptables-restore` scripts do it.
const CRIU_LOCK: &str = "*filter
:CRIU - [0:0]
-I INPUT -j CRIU
-I OUTPUT -j CRIU
-A CRIU -m mark --mark 0xc114 -j ACCEPT
-A CRIU -j DROP
COMMIT
";
const CRIU_UNLOCK: &str = "*filter
:CRIU - [0:0]
-D INPUT -j CRIU
-D OUTPUT -j CRIU
-X CRIU
COMMIT
";

fn criu_lock(t: &TestNs) {
    t.sh(&format!(
        "printf '%s' '{CRIU_LOCK}' | /usr/sbin/iptables-restore -w --noflush && \
         printf '%s' '{CRIU_LOCK}' | /usr/sbin/ip6tables-restore -w --noflush"
    ));
}

fn criu_unlock(t: &TestNs) {
    t.sh(&format!(
        "printf '%s' '{CRIU_UNLOCK}' | /usr/sbin/iptables-restore -w --noflush && \
         printf '%s' '{CRIU_UNLOCK}' | /usr/sbin/ip6tables-restore -w --noflush"
    ));
}

#[test]
fn residue_of_add_and_delete_goes_when_the_image_has_no_filter_table() {
    let t = TestNs::new("fwt", "nof");
    t.sh(
        "/usr/sbin/iptables -t nat -A POSTROUTING -s 10.77.0.0/30 -o eth0 -j MASQUERADE
/usr/sbin/nft add table inet mine
/usr/sbin/nft add chain inet mine input '{ type filter hook input priority 0; policy accept; }'",
    );
    let saved = t.capture();
    let want = t.view();
    assert!(!want.contains("*filter"), "{want}");

    t.sh("set -e
/usr/sbin/iptables -A INPUT -j ACCEPT
/usr/sbin/iptables -D INPUT -j ACCEPT
/usr/sbin/iptables -A OUTPUT -j ACCEPT
/usr/sbin/iptables -D OUTPUT -j ACCEPT
/usr/sbin/ip6tables -A INPUT -j ACCEPT
/usr/sbin/ip6tables -D INPUT -j ACCEPT");
    let dirty = t.view();
    assert!(dirty.contains("*filter"), "{dirty}");
    assert!(dirty.contains("table ip6 filter"), "{dirty}");
    assert_ne!(dirty, want);

    let done = t.tidy(&saved);
    assert_eq!(
        done,
        [
            "removed empty chain INPUT (policy ACCEPT) from iptables-nft table ip filter",
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter",
            "removed empty chain INPUT (policy ACCEPT) from iptables-nft table ip6 filter",
            "removed empty iptables-nft table ip filter",
            "removed empty iptables-nft table ip6 filter",
        ]
    );
    assert_eq!(t.view(), want);
    // idempotent
    assert!(t.tidy(&saved).is_empty());
    assert_eq!(t.view(), want);
}

#[test]
fn criu_lock_residue_goes_and_what_the_image_has_stays() {
    let t = TestNs::new("fwt", "mix");
    // IPv4 filter table with INPUT (a rule) and FORWARD (DROP) but no OUTPUT base chain; no
    // IPv6 table at all
    t.sh("set -e
/usr/sbin/iptables -A INPUT -p tcp --dport 8080 -j ACCEPT
/usr/sbin/iptables -P FORWARD DROP");
    let saved = t.capture();
    let want = t.view();

    criu_lock(&t);
    // while the lock is there, nothing is touched
    let locked = t.view();
    assert!(t.tidy(&saved).is_empty());
    assert_eq!(t.view(), locked);

    criu_unlock(&t);
    let dirty = t.view();
    assert!(dirty.contains("chain OUTPUT"), "{dirty}");
    assert_ne!(dirty, want);
    let done = t.tidy(&saved);
    assert_eq!(
        done,
        [
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter",
            "removed empty chain INPUT (policy ACCEPT) from iptables-nft table ip6 filter",
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip6 filter",
            "removed empty iptables-nft table ip6 filter",
        ]
    );
    assert_eq!(t.view(), want);
}

#[test]
fn an_image_with_the_chains_keeps_them() {
    let t = TestNs::new("fwt", "has");
    // the image itself has empty INPUT and OUTPUT base chains in both families
    t.sh("set -e
for x in /usr/sbin/iptables /usr/sbin/ip6tables; do
  $x -A INPUT -j ACCEPT; $x -D INPUT -j ACCEPT
  $x -A OUTPUT -j ACCEPT; $x -D OUTPUT -j ACCEPT
done");
    let saved = t.capture();
    let want = t.view();
    assert!(want.contains("table ip filter"), "{want}");
    assert!(want.contains("table ip6 filter"), "{want}");
    // the image holds them as nf_tables tables
    assert_eq!(table_labels(&saved), ["ip filter", "ip6 filter"]);
    for t in &nftables(&saved).tables {
        assert_eq!(chain_names(t), ["INPUT", "OUTPUT"], "{}", table_label(t));
    }

    criu_lock(&t);
    criu_unlock(&t);
    assert_eq!(t.view(), want);
    assert!(t.tidy(&saved).is_empty());
    assert_eq!(t.view(), want);

    // the same residue with an image that lacks the chains goes
    let done = t.tidy(&[]);
    assert_eq!(done.len(), 6, "{done:?}");
    assert!(!t.view().contains("filter"), "{}", t.view());
}

#[test]
fn rules_policies_user_chains_and_native_tables_stay() {
    let t = TestNs::new("fwt", "keep");
    let saved = t.capture();
    // an empty namespace: the nf_tables ruleset, with no table, and nothing else
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(nftables(&saved).tables.is_empty(), "{saved:?}");
    // none of this is in the (empty) image, and none of it is residue
    t.sh("set -e
/usr/sbin/iptables -A INPUT -j ACCEPT
/usr/sbin/iptables -P FORWARD DROP
/usr/sbin/iptables -t mangle -N MINE
/usr/sbin/nft add table ip raw
/usr/sbin/nft add chain ip raw PREROUTING '{ type filter hook prerouting priority -300; policy accept; }'
/usr/sbin/nft add set ip raw s '{ type ipv4_addr; }'
/usr/sbin/nft add table inet filter
/usr/sbin/nft add chain inet filter INPUT '{ type filter hook input priority 0; policy accept; }'
/usr/sbin/iptables -A OUTPUT -j ACCEPT
/usr/sbin/iptables -D OUTPUT -j ACCEPT");
    let before = t.view();
    let done = t.tidy(&saved);
    // only the empty OUTPUT chain and the raw table's empty PREROUTING (its set keeps the
    // table)
    assert_eq!(
        done,
        [
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter",
            "removed empty chain PREROUTING (policy ACCEPT) from iptables-nft table ip raw",
        ]
    );
    let after = t.view();
    assert_ne!(after, before);
    for kept in [
        "-A INPUT -j ACCEPT",
        ":FORWARD DROP",
        ":MINE - [0:0]",
        "set s {",
        "table inet filter {",
    ] {
        assert!(after.contains(kept), "{kept} missing from\n{after}");
    }
    assert!(after.contains("table ip raw {"), "{after}");
}

/// Images written before nfnetlink capture hold iptables-nft-save and nft text; they are
/// compared by the tables and chains the text declares, and the residue goes all the same.
#[test]
fn images_of_the_text_form_are_compared_by_name() {
    let t = TestNs::new("fwt", "text");
    t.sh("set -e
/usr/sbin/iptables -A INPUT -p tcp --dport 8080 -j ACCEPT
/usr/sbin/iptables -P FORWARD DROP
/usr/sbin/ip6tables -t security -N MINE
/usr/sbin/nft add table inet mine
/usr/sbin/nft add chain inet mine input '{ type filter hook input priority 0; policy accept; }'");
    let opts = FirewallOptions {
        nft_text: true,
        ..Default::default()
    };
    let saved = firewall::capture(&t.ns(), &opts).expect("capture as text");
    assert!(
        saved
            .iter()
            .all(|r| r.tables.is_empty() && !r.text.is_empty()),
        "{saved:?}"
    );
    let want = t.view();

    criu_lock(&t);
    criu_unlock(&t);
    // the images lack ip filter OUTPUT and ip6 filter; ip6 security has a user chain
    assert_eq!(
        t.tidy(&saved),
        [
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter",
            "removed empty chain INPUT (policy ACCEPT) from iptables-nft table ip6 filter",
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip6 filter",
            "removed empty iptables-nft table ip6 filter",
        ]
    );
    assert_eq!(t.view(), want);
    assert!(t.tidy(&saved).is_empty());
}

/// A lock still in place, CRIU's nftables table or crhook's own, stops tidying; once it is
/// gone the residue goes.
#[test]
fn a_lock_table_stops_tidying() {
    let t = TestNs::new("fwt", "lockt");
    let saved = t.capture();
    t.sh("set -e
/usr/sbin/iptables -A OUTPUT -j ACCEPT
/usr/sbin/iptables -D OUTPUT -j ACCEPT
/usr/sbin/nft add table inet CRIU-42");
    let dirty = t.view();
    assert!(t.tidy(&saved).is_empty());
    assert_eq!(t.view(), dirty);
    t.sh("/usr/sbin/nft delete table inet CRIU-42");
    let ns = t.ns();
    firewall::lock(&ns).expect("lock");
    assert!(t.tidy(&saved).is_empty());
    firewall::unlock(&ns).expect("unlock");
    assert_eq!(
        t.tidy(&saved),
        [
            "removed empty chain OUTPUT (policy ACCEPT) from iptables-nft table ip filter",
            "removed empty iptables-nft table ip filter",
        ]
    );
    assert!(!t.view().contains("filter"), "{}", t.view());
}
