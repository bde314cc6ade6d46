//! Privileged tests of firewall capture, check, restore, rollback, CR_IPTABLES and the
//! network lock. Each test makes its own namespaces (`crh-fw-<tag>-<pid>`) and removes them on
//! drop; without root they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use crhook_netstate::crhook_proto::{FirewallRuleset, FirewallSource};
use crhook_netstate::firewall;
use crhook_netstate::{FirewallOptions, Target};

const BUSYBOX: &str = "/bin/busybox";

mod common;
use common::nft::{
    attr_span, chain_names, contains, nftables, payloads, rule_chain, set_names, table_label,
    table_labels, table_mut,
};
use common::TestNs;

/// A test namespace of these tests: `crh-fw-<tag>-<pid>`.
fn fw_ns(tag: &str) -> TestNs {
    TestNs::new("fw", tag)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("crh-fw-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// iptables-save output without comments, with counters zeroed, tables sorted by name.
fn xt_norm(text: &str) -> String {
    let mut tables: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let line = match line.strip_prefix('[') {
            Some(r) => r
                .split_once("] ")
                .map(|(_, x)| x.to_string())
                .unwrap_or_default(),
            None => line.to_string(),
        };
        let line = match line.strip_prefix(':') {
            Some(d) => {
                let mut it = d.split_whitespace();
                format!(
                    ":{} {} [0:0]",
                    it.next().unwrap_or(""),
                    it.next().unwrap_or("")
                )
            }
            None => line,
        };
        if line.starts_with('*') || tables.is_empty() {
            tables.push(String::new());
        }
        if let Some(t) = tables.last_mut() {
            t.push_str(&line);
            t.push('\n');
        }
    }
    tables.sort();
    tables.concat()
}

/// `nft list ruleset` with counter values and expiry removed and, inside each table, the
/// chain/set/map blocks sorted (nft lists chains in creation order, which restore changes).
fn nft_norm(text: &str) -> String {
    let mut out = Vec::new();
    let mut table: Option<(String, Vec<String>)> = None;
    let mut block = String::new();
    for raw in text.lines() {
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let mut words: Vec<&str> = Vec::new();
        let toks: Vec<&str> = raw.split_whitespace().collect();
        let mut i = 0;
        while i < toks.len() {
            if toks[i] == "packets" && toks.get(i + 2) == Some(&"bytes") {
                i += 4;
            } else if toks[i] == "expires" {
                i += 2;
            } else {
                words.push(toks[i]);
                i += 1;
            }
        }
        let line = words.join(" ");
        if raw.starts_with("table ") {
            table = Some((line, Vec::new()));
        } else if raw == "}" {
            if let Some((head, mut blocks)) = table.take() {
                blocks.sort();
                out.push(format!("{head}\n{}}}", blocks.concat()));
            }
        } else if raw.starts_with('\t') && !raw.starts_with("\t\t") && raw.trim() == "}" {
            block.push_str("}\n");
            if let Some((_, blocks)) = table.as_mut() {
                blocks.push(std::mem::take(&mut block));
            }
        } else {
            block.push_str(&line);
            block.push('\n');
        }
    }
    out.sort();
    out.join("\n")
}

/// Everything the firewall tools show in a namespace, normalised.
fn dump(ns: &TestNs) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for cmd in [
        "iptables-save",
        "ip6tables-save",
        "iptables-legacy-save",
        "ip6tables-legacy-save",
    ] {
        v.push((
            cmd.to_string(),
            xt_norm(&ns.sh(&format!("/usr/sbin/{cmd}"))),
        ));
    }
    v.push(("nft".into(), nft_norm(&ns.sh("/usr/sbin/nft list ruleset"))));
    v
}

fn assert_same(a: &TestNs, b: &TestNs) {
    for ((cmd, x), (_, y)) in dump(a).into_iter().zip(dump(b)) {
        assert_eq!(x, y, "{cmd} differs between {} and {}", a.name, b.name);
    }
}

fn assert_empty(ns: &TestNs) {
    for (cmd, text) in dump(ns) {
        let rules = text
            .lines()
            .filter(|l| {
                l.starts_with("-A")
                    || (l.starts_with(':') && !l.contains(" ACCEPT "))
                    || l.starts_with("table")
            })
            .count();
        assert_eq!(rules, 0, "{cmd} in {} is not empty:\n{text}", ns.name);
    }
}

/// Native tables. `portmap` is an interval map: a hash set lists its elements in an order
/// of its own (see `hash_set_elements_compare_in_any_order`), an interval one in key order.
const NATIVE: &str = r#"table inet crhtest {
	counter cnt1 {
		packets 5 bytes 100
	}
	set allowed {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 192.168.1.1 }
	}
	map portmap {
		type inet_service : ipv4_addr
		flags interval
		elements = { 80 : 10.0.0.1, 443 : 10.0.0.2 }
	}
	chain in {
		type filter hook input priority 10; policy accept;
		ip saddr @allowed counter packets 3 bytes 30 accept comment "hello"
		meta mark 0x10 counter name "cnt1"
	}
	chain pre {
		type nat hook prerouting priority -100; policy accept;
		dnat ip to tcp dport map @portmap
	}
}
table netdev crhtest2 {
	chain c {
		meta l4proto udp drop
	}
}
"#;

/// Rules of every kind in every backend and family.
fn populate(ns: &TestNs) {
    ns.sh(r#"set -e
iptables -N MYCHAIN
iptables -A MYCHAIN -s 10.9.0.0/16 -j RETURN
iptables -A MYCHAIN -j LOG --log-prefix "crhook test "
iptables -A INPUT -p tcp --dport 22 -m comment --comment "ssh in" -j ACCEPT
iptables -A INPUT -j MYCHAIN
iptables -A MYCHAIN -p tcp -m multiport --dports 80,443 -j ACCEPT
iptables -A MYCHAIN ! -p udp -m length --length 100:200 -j RETURN
iptables -A MYCHAIN -p tcp -j REJECT --reject-with tcp-reset
iptables -P FORWARD DROP
iptables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 10.1.1.1:80
iptables -t nat -A POSTROUTING -s 10.0.0.0/8 -j SNAT --to-source 192.0.2.1
iptables -t mangle -A PREROUTING -p udp --dport 53 -j MARK --set-mark 0x42
iptables -t mangle -A OUTPUT -m mark --mark 0x42 -j ACCEPT
iptables -t raw -A PREROUTING -p udp --dport 123 -j CT --notrack
iptables -t security -A INPUT -p tcp --dport 443 -j ACCEPT
ip6tables -N SIX
ip6tables -A SIX -p tcp --dport 25 -j REJECT
ip6tables -A INPUT -j SIX
ip6tables -A SIX -p udp -m multiport --dports 53,853 -j ACCEPT
ip6tables -P INPUT DROP
ip6tables -t nat -A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination [fd00::1]:80
ip6tables -t nat -A POSTROUTING -s fd00::/64 -j SNAT --to-source 2001:db8::1
ip6tables -t mangle -A OUTPUT -p udp -j MARK --set-mark 7
ip6tables -t raw -A OUTPUT -p udp --dport 123 -j CT --notrack
ip6tables -t security -A OUTPUT -p tcp --dport 443 -m comment --comment "six sec" -j ACCEPT
iptables-legacy -N LEG
iptables-legacy -A LEG -s 192.0.2.0/24 -m comment --comment "legacy rule" -j DROP
iptables-legacy -A INPUT -j LEG
iptables-legacy -t nat -A POSTROUTING -o eth9 -j MASQUERADE
iptables-legacy -t mangle -A PREROUTING -j MARK --set-mark 0x99
ip6tables-legacy -A OUTPUT -d 2001:db8::/32 -j REJECT
ip6tables-legacy -P FORWARD DROP
"#);
    ns.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NATIVE}EOF\n"));
}

fn sources(rs: &[FirewallRuleset]) -> Vec<FirewallSource> {
    rs.iter()
        .map(|r| FirewallSource::try_from(r.source).expect("known source"))
        .collect()
}

/// An error and its causes, as one line.
fn chain_of(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn round_trip_of_every_backend_family_and_native_table() {
    let a = fw_ns("rta");
    let b = fw_ns("rtb");
    populate(&a);
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    // every nf_tables table, iptables-nft's and native ones alike, in one ruleset first;
    // legacy rules as text after it
    assert_eq!(
        sources(&saved),
        [
            FirewallSource::Nftables,
            FirewallSource::IptablesLegacy,
            FirewallSource::Ip6tablesLegacy,
        ]
    );
    let mut want: Vec<String> = ["ip", "ip6"]
        .iter()
        .flat_map(|f| {
            ["filter", "nat", "mangle", "raw", "security"]
                .iter()
                .map(move |t| format!("{f} {t}"))
        })
        .chain(["inet crhtest".into(), "netdev crhtest2".into()])
        .collect();
    want.sort();
    assert_eq!(table_labels(&saved), want);
    assert!(!saved[0].counters);
    assert!(
        saved[1].text.contains("-A LEG -s 192.0.2.0/24"),
        "{}",
        saved[1].text
    );
    assert!(
        saved[2].text.contains("-A OUTPUT -d 2001:db8::/32"),
        "{}",
        saved[2].text
    );

    let bns = b.ns();
    firewall::check(&bns, &saved, &opts).expect("check");
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    assert_empty(&b);
    let undo = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert!(undo.warnings.is_empty(), "{:?}", undo.warnings);
    assert_same(&a, &b);
    let d = firewall::diff(&saved, &firewall::capture(&bns, &opts).expect("capture b"));
    assert!(d.is_empty(), "{d:#?}");
    // counters are reset by default
    assert!(a
        .sh("nft list counter inet crhtest cnt1")
        .contains("packets 5 bytes 100"));
    let cnt = b.sh("nft list counter inet crhtest cnt1");
    assert!(cnt.contains("packets 0 bytes 0"), "{cnt}");
    let chain = b.sh("nft list chain inet crhtest in");
    assert!(
        chain.contains("counter packets 0 bytes 0 accept comment \"hello\""),
        "{chain}"
    );

    // a second restore finds everything in place and changes nothing
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    let again = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore again");
    assert!(again.is_empty());
    assert_same(&a, &b);
}

/// Native nftables features the nfnetlink path carries as the kernel's messages: a named
/// counter and quota, an interval set, a verdict map, an anonymous set, a jump to a user
/// chain, a chain bound to a rule, and a netdev table hooked to a device (`crhv0`).
const FEATURES: &str = r#"table inet feat {
	counter hits {
		packets 5 bytes 100
	}
	quota q1 {
		over 100 mbytes
	}
	set nets {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 172.16.0.0-172.16.0.255, 192.168.1.1 }
	}
	map vm {
		type ipv4_addr : verdict
		flags interval
		elements = { 10.0.0.1 : accept, 10.0.0.2 : jump sub }
	}
	chain sub {
		tcp dport 22 counter accept
		counter name "hits"
	}
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport { 80, 443 } accept
		ip saddr @nets jump sub
		ip saddr vmap @vm
		quota name "q1" drop
		meta mark 0x5 jump { counter; accept; }
	}
}
table netdev edge {
	chain ingress {
		type filter hook ingress device "crhv0" priority 0; policy accept;
		udp dport 53 counter drop
	}
}
"#;

/// The veth pair FEATURES' netdev chain hooks, both ends inside the namespace.
fn veth_inside(ns: &TestNs) {
    ns.sh("set -e
ip link add crhv0 type veth peer name crhv1
ip link set crhv0 up
ip link set crhv1 up");
}

#[test]
fn native_nft_features_round_trip_over_nfnetlink() {
    let a = fw_ns("nfa");
    let b = fw_ns("nfb");
    veth_inside(&a);
    veth_inside(&b);
    a.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{FEATURES}EOF\n"));
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    assert_eq!(sources(&saved), [FirewallSource::Nftables]);
    assert_eq!(table_labels(&saved), ["inet feat", "netdev edge"]);
    let tables = &nftables(&saved).tables;
    let feat = tables.iter().find(|t| t.name == "feat").expect("inet feat");
    assert_eq!(feat.objects.len(), 2, "counter and quota");
    let chains = chain_names(feat);
    assert_eq!(chains.len(), 3, "{chains:?}");
    assert!(chains.contains(&"in".into()) && chains.contains(&"sub".into()));
    assert!(
        chains.iter().any(|c| c.starts_with("__chain")),
        "the bound chain: {chains:?}"
    );
    let sets = set_names(feat);
    assert_eq!(sets.len(), 3, "{sets:?}");
    assert!(sets.contains(&"nets".into()) && sets.contains(&"vm".into()));
    assert!(
        sets.iter().any(|s| s.starts_with("__set")),
        "the anonymous set: {sets:?}"
    );
    let edge = tables.iter().find(|t| t.name == "edge").expect("edge");
    assert!(contains(&edge.chains[0], b"crhv0\0"), "the hooked device");

    // into a fresh namespace with the same veth
    let bns = b.ns();
    firewall::check(&bns, &saved, &opts).expect("check");
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    let undo = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert!(undo.warnings.is_empty(), "{:?}", undo.warnings);
    let ruleset = |ns: &TestNs| nft_norm(&ns.sh("/usr/sbin/nft list ruleset"));
    let want = ruleset(&a);
    assert!(
        want.contains("jump {") && want.contains("tcp dport { 80, 443 }"),
        "{want}"
    );
    assert_eq!(want, ruleset(&b));
    let d = firewall::diff(&saved, &firewall::capture(&bns, &opts).expect("capture b"));
    assert!(d.is_empty(), "{d:#?}");

    // in place: nothing to report, nothing to do
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    let again = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore again");
    assert!(again.is_empty());
    assert_eq!(want, ruleset(&b));

    // one rule changed in the target: diff names that rule of that chain, nothing else
    let listed = b.sh("/usr/sbin/nft -a list chain inet feat sub");
    let handle = listed
        .lines()
        .find(|l| l.contains("tcp dport 22 "))
        .and_then(|l| l.rsplit_once("# handle "))
        .map(|(_, h)| h.trim().to_string())
        .unwrap_or_else(|| panic!("no handle in {listed}"));
    b.sh(&format!(
        "/usr/sbin/nft replace rule inet feat sub handle {handle} tcp dport 2222 counter accept"
    ));
    let d = firewall::diff(&saved, &firewall::capture(&bns, &opts).expect("capture b"));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(
        (
            d[0].kind.as_str(),
            d[0].object.as_str(),
            d[0].field.as_str()
        ),
        ("firewall", "nft table inet feat chain sub", "rule 1"),
        "{d:#?}"
    );
    // in rule syntax, as nft lists the saved and the live table
    assert_eq!(d[0].saved, "tcp dport 22 counter accept", "{d:#?}");
    assert_eq!(d[0].live, "tcp dport 2222 counter accept", "{d:#?}");
    // without the tools, the kernel's attributes: the port in network order, 22 then 2222
    let d = firewall::diff_with(
        &saved,
        &firewall::capture(&bns, &opts).expect("capture b"),
        false,
    );
    assert!(
        d[0].saved.contains("0016") && d[0].live.contains("08ae"),
        "{d:#?}"
    );
}

#[test]
fn hash_set_elements_compare_in_any_order() {
    let a = fw_ns("hsa");
    let b = fw_ns("hsb");
    let hosts: Vec<String> = (1..=32).map(|i| format!("10.0.0.{i}")).collect();
    let ports: Vec<String> = (1..=32)
        .map(|i| format!("{} : 10.0.1.{i}", 1000 + i))
        .collect();
    a.sh(&format!(
        "/usr/sbin/nft -f - <<'EOF'
table inet h {{
	set s {{ type ipv4_addr; elements = {{ {} }}; }}
	map m {{ type inet_service : ipv4_addr; elements = {{ {} }}; }}
}}
EOF
",
        hosts.join(", "),
        ports.join(", ")
    ));
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    let bns = b.ns();
    firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    // the sets are equal (nft lists elements sorted)
    assert_eq!(
        nft_norm(&a.sh("/usr/sbin/nft list ruleset")),
        nft_norm(&b.sh("/usr/sbin/nft list ruleset"))
    );
    let d = firewall::diff(&saved, &firewall::capture(&bns, &opts).expect("capture b"));
    assert!(d.is_empty(), "{d:#?}");
    let conflicts = firewall::conflicts(&bns, &saved, &opts).expect("conflicts");
    assert!(conflicts.is_empty(), "{conflicts:?}");
    let again = firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore again");
    assert!(again.is_empty());
}

#[test]
fn counters_are_kept_only_when_asked() {
    let a = fw_ns("cta");
    let b = fw_ns("ctb");
    let c = fw_ns("ctc");
    a.sh("printf '*filter\\n:INPUT ACCEPT [7:700]\\n[5:300] -A INPUT -p tcp --dport 22 -j ACCEPT\\nCOMMIT\\n' | iptables-restore -c");
    a.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NATIVE}EOF\n"));
    let keep = FirewallOptions {
        counters: true,
        ..Default::default()
    };
    let saved = firewall::capture(&a.ns(), &keep).expect("capture");
    firewall::restore(&b.ns(), &saved, &keep)
        .map_err(|(e, _)| e)
        .expect("restore");
    let xt = b.sh("iptables-save -c");
    assert!(
        xt.contains("[5:300] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{xt}"
    );
    assert!(xt.contains(":INPUT ACCEPT [7:700]"), "{xt}");
    assert!(b
        .sh("nft list counter inet crhtest cnt1")
        .contains("packets 5 bytes 100"));

    let plain = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &plain).expect("capture");
    firewall::restore(&c.ns(), &saved, &plain)
        .map_err(|(e, _)| e)
        .expect("restore");
    let xt = c.sh("iptables-save -c");
    assert!(
        xt.contains("[0:0] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{xt}"
    );
    assert!(xt.contains(":INPUT ACCEPT [0:0]"), "{xt}");
    assert!(c
        .sh("nft list counter inet crhtest cnt1")
        .contains("packets 0 bytes 0"));
}

#[test]
fn undo_puts_back_what_was_live() {
    let a = fw_ns("uda");
    let fresh = fw_ns("udf");
    let busy = fw_ns("udb");
    populate(&a);
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");

    // into an empty namespace: undo leaves it empty again
    let undo = firewall::restore(&fresh.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert_same(&a, &fresh);
    let errors = undo.undo(&fresh.ns());
    assert!(errors.is_empty(), "{errors:?}");
    assert_empty(&fresh);
    assert!(
        !fresh.sh("/usr/sbin/nft list tables").contains("table"),
        "tables left behind"
    );

    // into a namespace with other rules: conflicts name the sources, undo is exact
    busy.sh(r#"set -e
printf '*filter\n:INPUT ACCEPT [3:4]\n[1:2] -A INPUT -s 198.51.100.1/32 -j DROP\nCOMMIT\n' | iptables-restore -c
iptables -t nat -N OTHER
iptables-legacy -A OUTPUT -d 198.51.100.2 -j DROP
nft add table inet crhtest
nft add chain inet crhtest x
nft add rule inet crhtest x meta mark 0x7 accept
nft add table inet unrelated
"#);
    let before = dump(&busy);
    let before_counters = busy.sh("iptables-save -c | grep -v '^#'");
    let conflicts = firewall::conflicts(&busy.ns(), &saved, &opts).expect("conflicts");
    // nf_tables state per table (a user chain counts as content, as for iptables-save, so
    // ip nat with only the empty chain OTHER differs too)
    assert_eq!(
        conflicts,
        [
            "nftables: live table ip filter differs from the saved one",
            "nftables: live table ip nat differs from the saved one",
            "nftables: live table inet crhtest differs from the saved one",
            "nftables: live table inet unrelated is not in the image",
            "iptables-legacy: the live ruleset differs from the saved one (live tables filter, saved tables mangle, nat, filter)",
        ]
    );
    let undo = firewall::restore(&busy.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert_ne!(dump(&busy), before);
    let errors = undo.undo(&busy.ns());
    assert!(errors.is_empty(), "{errors:?}");
    let after = dump(&busy);
    for ((cmd, x), (_, y)) in before.iter().zip(&after) {
        if cmd.contains("legacy") {
            // legacy tables cannot be unregistered: the ones restore added stay, empty
            let rules = |t: &str| {
                t.lines()
                    .filter(|l| l.starts_with("-A") || l.contains(" - ["))
                    .map(String::from)
                    .collect::<Vec<_>>()
            };
            assert_eq!(rules(x), rules(y), "{cmd} not rolled back");
        } else {
            assert_eq!(x, y, "{cmd} not rolled back");
        }
    }
    assert_eq!(
        busy.sh("iptables-save -c | grep -v '^#'"),
        before_counters,
        "counters not rolled back"
    );
}

#[test]
fn rejected_rulesets_fail_check_and_leave_the_target_untouched() {
    let a = fw_ns("rja");
    let b = fw_ns("rjb");
    populate(&a);
    let opts = FirewallOptions::default();
    let bns = b.ns();

    // an image in the text form (iptables-nft-save and nft text, as before nfnetlink capture)
    // is still checked with the tools
    let text_opts = FirewallOptions {
        nft_text: true,
        ..Default::default()
    };
    let text = firewall::capture(&a.ns(), &text_opts).expect("capture text");
    assert_eq!(
        sources(&text),
        [
            FirewallSource::IptablesNft,
            FirewallSource::IptablesLegacy,
            FirewallSource::Ip6tablesNft,
            FirewallSource::Ip6tablesLegacy,
            FirewallSource::Nft
        ]
    );
    let edit = |source: FirewallSource, f: &dyn Fn(&str) -> String| -> Vec<FirewallRuleset> {
        text.iter()
            .cloned()
            .map(|mut r| {
                if r.source == source as i32 {
                    let t = f(&r.text);
                    assert_ne!(t, r.text, "the edit changed nothing");
                    r.text = t;
                }
                r
            })
            .collect()
    };

    // a target that is neither a chain nor an extension: iptables-nft's --test misses it
    let bad = edit(FirewallSource::IptablesNft, &|t| {
        t.replacen("-A INPUT -j MYCHAIN", "-A INPUT -j NOSUCHTARGET", 1)
    });
    let e = firewall::check(&bns, &bad, &opts)
        .expect_err("check must reject")
        .to_string();
    assert!(
        e.contains("iptables-nft") && e.contains("NOSUCHTARGET"),
        "{e}"
    );

    // a match iptables cannot load: the tool's --test rejects it, its stderr is in the error
    let bad = edit(FirewallSource::Ip6tablesNft, &|t| {
        t.replacen("-A INPUT -j SIX", "-A INPUT -m nosuchmatch -j SIX", 1)
    });
    let e = firewall::check(&bns, &bad, &opts)
        .expect_err("check must reject")
        .to_string();
    assert!(
        e.contains("ip6tables-nft") && e.contains("--test") && e.contains("nosuchmatch"),
        "{e}"
    );

    // nft -c rejects a jump to a missing chain
    let nft_bad = edit(FirewallSource::Nft, &|t| {
        t.replacen(
            "meta mark 0x00000010",
            "jump nosuchchain\n\t\tmeta mark 0x00000010",
            1,
        )
    });
    let e = firewall::check(&bns, &nft_bad, &opts)
        .expect_err("check must reject")
        .to_string();
    assert!(
        e.contains("check nft ruleset") && e.contains("nosuchchain"),
        "{e}"
    );

    // legacy text, in the text form and in the nfnetlink one alike
    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    for image in [&text, &saved] {
        let bad: Vec<FirewallRuleset> = image
            .iter()
            .cloned()
            .map(|mut r| {
                if r.source == FirewallSource::IptablesLegacy as i32 {
                    r.text = r
                        .text
                        .replacen("-A INPUT -j LEG", "-A INPUT -j NOSUCHLEG", 1);
                    assert!(r.text.contains("NOSUCHLEG"), "{}", r.text);
                }
                r
            })
            .collect();
        let e = firewall::check(&bns, &bad, &opts)
            .expect_err("check must reject")
            .to_string();
        assert!(
            e.contains("iptables-legacy") && e.contains("NOSUCHLEG"),
            "{e}"
        );
    }

    assert_empty(&b);
    assert_eq!(
        b.sh("cat /proc/net/ip_tables_names /proc/net/ip6_tables_names"),
        "",
        "legacy tables appeared"
    );

    // restore of the text form fails atomically and its undo leaves nothing
    let (e, undo) = firewall::restore(&bns, &nft_bad, &opts).expect_err("restore must fail");
    assert!(e.to_string().contains("restore nft ruleset"), "{e}");
    let errors = undo.undo(&bns);
    assert!(errors.is_empty(), "{errors:?}");
    assert_empty(&b);

    // The nfnetlink form: only the kernel reads the saved messages, so check has nothing to
    // test; restore replays every table in one transaction, which the kernel refuses whole,
    // and the error names the message it refused. The target holds state of its own, some
    // of which (ip filter, inet crhtest) the transaction would have replaced.
    b.sh(r#"set -e
iptables -A INPUT -s 198.51.100.7/32 -j DROP
nft add table inet crhtest
nft add chain inet crhtest x
nft add rule inet crhtest x meta mark 0x7 accept
nft add table inet unrelated
"#);
    let rejected = |bad: &[FirewallRuleset], what: &str| {
        // (its legacy --test makes the empty legacy tables the image names, so the target
        // is taken after it)
        firewall::check(&bns, bad, &opts).expect("check does not read nf_tables messages");
        let before = b.sh("/usr/sbin/nft -a list ruleset");
        let before_dump = dump(&b);
        let (e, undo) = firewall::restore(&bns, bad, &opts).expect_err("restore must fail");
        let e = chain_of(&e);
        assert!(
            e.contains(&format!("restore nftables tables: {what}")),
            "{e}"
        );
        assert!(e.contains("No such file or directory"), "{e}");
        // the refused transaction changed nothing, and nothing ran after it
        assert!(undo.is_empty(), "{undo:?}");
        assert_eq!(
            b.sh("/usr/sbin/nft -a list ruleset"),
            before,
            "{what}: target changed"
        );
        assert_eq!(dump(&b), before_dump, "{what}: target changed");
    };

    // a jump to a chain the table lacks
    let mut bad = saved.clone();
    let mut n = 0;
    for r in &mut table_mut(&mut bad, "ip filter").rules {
        if rule_chain(r) == "INPUT" && contains(r, b"MYCHAIN\0") {
            let at = r
                .windows(8)
                .position(|w| w == b"MYCHAIN\0")
                .expect("found above");
            let mut v = r.to_vec();
            v[at..at + 7].copy_from_slice(b"NOCHAIN");
            *r = v.into();
            n += 1;
        }
    }
    assert_eq!(n, 1, "one rule of ip filter INPUT jumps to MYCHAIN");
    rejected(&bad, "rule of chain ip filter INPUT");

    // a rule of a chain the table lacks
    let mut bad = saved.clone();
    let t = table_mut(&mut bad, "inet crhtest");
    let r = t
        .rules
        .iter_mut()
        .find(|r| rule_chain(r) == "in")
        .expect("a rule of chain in");
    let at = attr_span(r, 2).expect("chain attribute").start;
    let mut v = r.to_vec();
    v[at..at + 2].copy_from_slice(b"zz");
    *r = v.into();
    rejected(&bad, "rule of chain inet crhtest zz");

    // an expression no kernel module provides
    let mut bad = saved.clone();
    let t = table_mut(&mut bad, "netdev crhtest2");
    assert_eq!(t.rules.len(), 1);
    let r = &mut t.rules[0];
    let at = r
        .windows(5)
        .position(|w| w == b"meta\0")
        .expect("the rule's meta expression");
    let mut v = r.to_vec();
    v[at..at + 4].copy_from_slice(b"mxta");
    *r = v.into();
    rejected(&bad, "rule of chain netdev crhtest2 c");
}

#[test]
fn criu_and_crhook_lock_artefacts_are_left_out() {
    let a = fw_ns("cra");
    a.sh(r#"set -e
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
printf '*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n' | iptables-restore --noflush
printf '*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n' | ip6tables-legacy-restore --noflush
nft add table inet CRIU-4242
nft add chain inet CRIU-4242 output '{ type filter hook output priority 0; policy drop; }'
nft add rule inet CRIU-4242 output meta mark 0xc114 accept
"#);
    // crhook's own locks, both forms
    let ans = a.ns();
    firewall::lock(&ans).expect("lock");
    firewall::lock_xtables(&ans).expect("iptables lock");
    let live = a.sh("/usr/sbin/nft list ruleset");
    assert!(
        live.contains("table inet crhook-lock") && live.contains("jump crhook-lock"),
        "{live}"
    );

    let opts = FirewallOptions::default();
    let saved = firewall::capture(&ans, &opts).expect("capture");
    // the legacy ip6 filter table held the CRIU lock alone: nothing of it is saved
    assert_eq!(sources(&saved), [FirewallSource::Nftables]);
    // no lock table; iptables-nft's raw tables stay, without the lock chain and jumps
    assert_eq!(table_labels(&saved), ["ip filter", "ip raw", "ip6 raw"]);
    for t in &nftables(&saved).tables {
        for p in payloads(t) {
            for artefact in [&b"CRIU"[..], b"crhook-lock"] {
                assert!(
                    !contains(p, artefact),
                    "{} keeps {}",
                    table_label(t),
                    String::from_utf8_lossy(artefact)
                );
            }
        }
        let rules = if t.name == "filter" { 1 } else { 0 };
        assert_eq!(t.rules.len(), rules, "{}", table_label(t));
    }

    // what comes back: the user's rule, no lock
    let b = fw_ns("crb");
    let bns = b.ns();
    firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert!(!firewall::is_locked(&bns).expect("is_locked"));
    let text = b.sh("iptables-save; ip6tables-save; nft list ruleset");
    for artefact in ["CRIU", "0xc114", "crhook-lock"] {
        assert!(!text.contains(artefact), "{artefact} in\n{text}");
    }
    assert!(
        text.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT"),
        "{text}"
    );
}

/// A wrapper standing in for a user's CR_IPTABLES command: it records its action, family,
/// namespace and environment, and does the job with the nf_tables tools.
fn wrapper(dir: &Path) -> PathBuf {
    let script = dir.join("wrapper.sh");
    let log = dir.join("log");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
echo "$1 $CR_IPTABLES_ACTION $CR_IPTABLES_FAMILY $(readlink /proc/self/ns/net)" >> {log}
env | sort | tr '\n' ' ' > {log}.env
case "$CR_IPTABLES_ACTION/$CR_IPTABLES_FAMILY" in
save/ipv4) exec iptables-save ;;
save/ipv6) exec ip6tables-save ;;
restore/ipv4) exec iptables-restore -w ;;
restore/ipv6) exec ip6tables-restore -w ;;
esac
echo "unexpected $CR_IPTABLES_ACTION $CR_IPTABLES_FAMILY" >&2
exit 9
"#,
            log = log.display()
        ),
    )
    .expect("write wrapper");
    let st = Command::new("/bin/chmod")
        .arg("755")
        .arg(&script)
        .status()
        .expect("chmod");
    assert!(st.success());
    script
}

fn log_lines(dir: &Path) -> Vec<String> {
    let s = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let _ = std::fs::remove_file(dir.join("log"));
    s.lines().map(String::from).collect()
}

/// NATIVE's tables as nft lists them, normalised.
fn native(ns: &TestNs) -> String {
    let text =
        ns.sh("/usr/sbin/nft list table inet crhtest && /usr/sbin/nft list table netdev crhtest2");
    assert!(text.contains("chain pre"), "{text}");
    nft_norm(&text)
}

#[test]
fn cr_iptables_replaces_save_and_restore_in_the_namespace() {
    let dir = TempDir::new("cr");
    let w = wrapper(&dir.0);
    let a = fw_ns("cria");
    let b = fw_ns("crib");
    a.sh("iptables -A INPUT -p tcp --dport 22 -j ACCEPT && ip6tables -A INPUT -p tcp --dport 23 -j DROP");
    a.sh(&format!("/usr/sbin/nft -f - <<'EOF'\n{NATIVE}EOF\n"));
    let opts = FirewallOptions {
        cr_iptables: Some(format!("{} both", w.display())),
        ..Default::default()
    };

    let saved = firewall::capture(&a.ns(), &opts).expect("capture");
    assert_eq!(
        sources(&saved),
        [
            FirewallSource::Nftables,
            FirewallSource::CrIptablesV4,
            FirewallSource::CrIptablesV6,
        ]
    );
    // the command owns iptables-nft's tables of both families: only native tables are
    // read over nfnetlink
    assert_eq!(table_labels(&saved), ["inet crhtest", "netdev crhtest2"]);
    assert!(saved[1].text.contains("--dport 22") && saved[2].text.contains("--dport 23"));
    let ina = format!("net:[{}]", a.inode());
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("both save ipv4 {ina}"),
            format!("both save ipv6 {ina}")
        ]
    );
    let env = std::fs::read_to_string(dir.0.join("log.env")).expect("env record");
    // the user's command gets crhook's environment (as CRIU gives it its own) plus the two
    // variables; cargo's variables stand for the caller's here
    for var in [
        "CR_IPTABLES_ACTION=save",
        "CR_IPTABLES_FAMILY=ipv6",
        "PATH=",
        "CARGO_MANIFEST_DIR=",
    ] {
        assert!(env.contains(var), "{var} missing from {env}");
    }

    firewall::check(&b.ns(), &saved, &opts).expect("check");
    let undo = firewall::restore(&b.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    let inb = format!("net:[{}]", b.inode());
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("both save ipv4 {inb}"),
            format!("both save ipv6 {inb}"),
            format!("both restore ipv4 {inb}"),
            format!("both restore ipv6 {inb}"),
        ]
    );
    assert_eq!(
        xt_norm(&a.sh("iptables-save")),
        xt_norm(&b.sh("iptables-save"))
    );
    assert_eq!(
        xt_norm(&a.sh("ip6tables-save")),
        xt_norm(&b.sh("ip6tables-save"))
    );
    assert_eq!(native(&a), native(&b));
    drop(undo);

    // CR_IP6TABLES serves IPv6 alone
    let c = fw_ns("cric");
    let split = FirewallOptions {
        cr_iptables: Some(format!("{} four", w.display())),
        cr_ip6tables: Some(format!("{} six", w.display())),
        ..Default::default()
    };
    let saved = firewall::capture(&a.ns(), &split).expect("capture");
    assert_eq!(table_labels(&saved), ["inet crhtest", "netdev crhtest2"]);
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("four save ipv4 {ina}"),
            format!("six save ipv6 {ina}")
        ]
    );
    firewall::restore(&c.ns(), &saved, &split)
        .map_err(|(e, _)| e)
        .expect("restore");
    let inc = format!("net:[{}]", c.inode());
    assert_eq!(
        log_lines(&dir.0),
        [
            format!("four save ipv4 {inc}"),
            format!("six save ipv6 {inc}"),
            format!("four restore ipv4 {inc}"),
            format!("six restore ipv6 {inc}"),
        ]
    );
    assert_eq!(
        xt_norm(&a.sh("ip6tables-save")),
        xt_norm(&c.sh("ip6tables-save"))
    );
    assert_eq!(native(&a), native(&c));
}

#[test]
fn a_failing_cr_iptables_command_fails_with_its_stderr() {
    let a = fw_ns("crf");
    let opts = FirewallOptions {
        cr_iptables: Some("echo boom-from-wrapper >&2; exit 3".into()),
        ..Default::default()
    };
    let e = firewall::capture(&a.ns(), &opts)
        .expect_err("capture must fail")
        .to_string();
    assert!(
        e.contains("CR_IPTABLES") && e.contains("boom-from-wrapper") && e.contains("status 3"),
        "{e}"
    );

    let saved = vec![FirewallRuleset {
        source: FirewallSource::CrIptablesV4 as i32,
        text: "*filter\nCOMMIT\n".into(),
        counters: false,
        program: "test".into(),
        tables: Vec::new(),
    }];
    // restore without the command the image needs is refused before anything runs
    let e = firewall::check(&a.ns(), &saved, &FirewallOptions::default())
        .expect_err("needs CR_IPTABLES")
        .to_string();
    assert!(e.contains("CR_IPTABLES"), "{e}");
    let failing = FirewallOptions {
        cr_iptables: Some("[ \"$CR_IPTABLES_ACTION\" = save ] || { cat >/dev/null; echo restore-refused >&2; exit 4; }".into()),
        ..Default::default()
    };
    let (e, undo) = firewall::restore(&a.ns(), &saved, &failing).expect_err("restore must fail");
    assert!(
        e.to_string().contains("restore-refused") && e.to_string().contains("restore ipv4"),
        "{e}"
    );
    assert!(!undo.is_empty());
}

#[test]
fn cr_iptables_gets_the_callers_environment() {
    let a = fw_ns("cre");
    // CRIU runs `sh -c "$CR_IPTABLES"` with its own environment; crhook passes its own the
    // same way (the tools crhook runs itself keep a clean one)
    // SAFETY of the set_var: the variable is unique to this test; no other test reads it.
    std::env::set_var("CRHOOK_TEST_CALLER_MARK", "hello-from-caller");
    let opts = FirewallOptions {
        cr_iptables: Some(
            "[ \"$CRHOOK_TEST_CALLER_MARK\" = hello-from-caller ] || { echo caller-variable-missing >&2; exit 5; }; \
             [ -n \"$PATH\" ] || { echo no-path >&2; exit 6; }; \
             printf '*filter\\n:INPUT ACCEPT [0:0]\\n# %s %s\\nCOMMIT\\n' \"$CR_IPTABLES_ACTION\" \"$CR_IPTABLES_FAMILY\""
                .into(),
        ),
        cr_ip6tables: None,
        ..Default::default()
    };
    let saved = firewall::capture(&a.ns(), &opts).expect("capture sees the caller's variable");
    let text: Vec<&str> = saved
        .iter()
        .filter(|r| r.source == FirewallSource::CrIptablesV4 as i32)
        .map(|r| r.text.as_str())
        .collect();
    assert_eq!(text.len(), 1, "{saved:?}");
    assert!(text[0].contains("# save ipv4"), "{}", text[0]);
    std::env::remove_var("CRHOOK_TEST_CALLER_MARK");
    let e = firewall::capture(&a.ns(), &opts)
        .expect_err("without the variable the command fails")
        .to_string();
    assert!(e.contains("caller-variable-missing"), "{e}");
}

fn ping(from: &TestNs, to: &str) -> bool {
    from.ok(&format!("{BUSYBOX} ping -c1 -W1 {to} >/dev/null 2>&1"))
}

fn veth_pair(a: &TestNs, b: &TestNs) {
    let pid = std::process::id() % 100000;
    a.sh(&format!(
        "set -e; ip link add cfa{pid} type veth peer name cfb{pid} netns {b}; ip addr add 10.213.0.1/24 dev cfa{pid}; ip link set cfa{pid} up; ip link set lo up",
        b = b.name
    ));
    b.sh(&format!("set -e; ip addr add 10.213.0.2/24 dev cfb{pid}; ip link set cfb{pid} up; ip link set lo up"));
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn lock_stops_traffic_and_unlock_resumes_it() {
    let a = fw_ns("lka");
    let b = fw_ns("lkb");
    let c = fw_ns("lkc");
    veth_pair(&a, &b);
    b.sh("iptables -A INPUT -p tcp --dport 22 -j ACCEPT");
    assert!(ping(&a, "10.213.0.2"), "no traffic before the lock");
    let target = Target::Netns(b.path());
    let bns = b.ns();
    assert!(!firewall::is_locked(&bns).expect("is_locked"));

    block_on(crhook_netstate::lock(&target)).expect("lock");
    block_on(crhook_netstate::lock(&target)).expect("lock twice");
    assert!(firewall::is_locked(&bns).expect("is_locked"));
    assert_eq!(
        b.sh("nft list table inet crhook-lock")
            .matches("accept")
            .count(),
        2,
        "one lock, not two"
    );
    assert!(!ping(&a, "10.213.0.2"), "traffic passes the lock");
    assert!(!ping(&b, "10.213.0.1"), "traffic leaves through the lock");
    assert!(ping(&b, "127.0.0.1"), "loopback is locked too");

    // a capture while locked holds no lock, and restores unlocked
    let opts = FirewallOptions::default();
    let saved = firewall::capture(&bns, &opts).expect("capture");
    assert_eq!(sources(&saved), [FirewallSource::Nftables]);
    assert_eq!(table_labels(&saved), ["ip filter"]);
    for t in &nftables(&saved).tables {
        assert!(payloads(t).all(|p| !contains(p, b"crhook-lock")), "{t:?}");
    }
    firewall::restore(&c.ns(), &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore");
    assert!(!firewall::is_locked(&c.ns()).expect("is_locked"));

    // the lock survives a firewall restore into the locked namespace
    assert!(firewall::conflicts(&bns, &saved, &opts)
        .expect("conflicts")
        .is_empty());
    b.sh("iptables -F INPUT");
    firewall::restore(&bns, &saved, &opts)
        .map_err(|(e, _)| e)
        .expect("restore while locked");
    assert!(firewall::is_locked(&bns).expect("is_locked"));
    assert!(!ping(&a, "10.213.0.2"), "restore removed the lock");

    assert!(block_on(crhook_netstate::unlock(&target)).expect("unlock"));
    assert!(!firewall::is_locked(&bns).expect("is_locked"));
    assert!(ping(&a, "10.213.0.2"), "no traffic after unlock");
    assert!(!block_on(crhook_netstate::unlock(&target)).expect("unlock twice"));
    assert!(
        b.sh("iptables-save").contains("--dport 22 -j ACCEPT"),
        "unlock touched the user's rules"
    );
}

#[test]
fn iptables_lock_fallback_works_the_same() {
    let a = fw_ns("lxa");
    let b = fw_ns("lxb");
    veth_pair(&a, &b);
    assert!(ping(&a, "10.213.0.2"));
    let bns = b.ns();
    firewall::lock_xtables(&bns).expect("lock");
    firewall::lock_xtables(&bns).expect("lock twice");
    assert_eq!(
        b.sh("iptables-save -t raw")
            .matches("-j crhook-lock")
            .count(),
        2,
        "one lock, not two"
    );
    assert!(firewall::is_locked(&bns).expect("is_locked"));
    assert!(!ping(&a, "10.213.0.2"), "traffic passes the lock");
    assert!(ping(&b, "127.0.0.1"), "loopback is locked too");
    let saved = firewall::capture(&bns, &FirewallOptions::default()).expect("capture");
    // the raw tables stay, without the lock chain or the jumps to it
    assert_eq!(sources(&saved), [FirewallSource::Nftables]);
    assert_eq!(table_labels(&saved), ["ip raw", "ip6 raw"]);
    for t in &nftables(&saved).tables {
        assert!(t.rules.is_empty(), "{t:?}");
        assert!(payloads(t).all(|p| !contains(p, b"crhook-lock")), "{t:?}");
    }
    assert!(firewall::unlock(&bns).expect("unlock"));
    assert!(!firewall::is_locked(&bns).expect("is_locked"));
    assert!(ping(&a, "10.213.0.2"), "no traffic after unlock");
    assert!(!firewall::unlock(&bns).expect("unlock twice"));
}
