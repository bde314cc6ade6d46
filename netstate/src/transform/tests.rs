use super::*;

fn addr(dev: &str, a: [u8; 4], len: u32, secondary: bool) -> pb::Address {
    pb::Address {
        family: 2,
        ifname: dev.into(),
        local: a.to_vec(),
        address: a.to_vec(),
        prefix_len: len,
        flags: if secondary {
            crate::addr::IFA_F_SECONDARY
        } else {
            0
        },
        ..Default::default()
    }
}

fn link(name: &str, lo: bool) -> pb::Link {
    pb::Link {
        name: name.into(),
        flags: if lo { libc::IFF_LOOPBACK as u32 } else { 0 },
        ..Default::default()
    }
}

#[test]
fn runtime_address_replaces_the_saved_one_in_its_subnet() {
    // saved: an app address first, then the pod address; live: the new pod address
    let saved = vec![
        addr("eth0", [192, 168, 77, 5], 24, false),
        addr("eth0", [10, 88, 0, 9], 16, false),
        addr("tun0", [10, 210, 0, 5], 24, false),
    ];
    let live = vec![addr("eth0", [10, 88, 0, 11], 16, false)];
    let r = auto_remaps(&saved, &live, &["eth0".into()], &Remaps::default());
    assert_eq!(
        r,
        vec!["10.88.0.9=10.88.0.11".parse::<Remap>().expect("remap")]
    );
}

#[test]
fn no_remap_when_the_runtime_kept_the_address_or_an_explicit_one_covers_it() {
    let saved = vec![addr("eth0", [10, 88, 0, 9], 16, false)];
    let same = vec![addr("eth0", [10, 88, 0, 9], 16, false)];
    assert!(auto_remaps(&saved, &same, &["eth0".into()], &Remaps::default()).is_empty());
    let live = vec![addr("eth0", [10, 88, 0, 11], 16, false)];
    let explicit = Remaps::new(vec!["10.88.0.9=10.88.0.12".parse().expect("remap")]);
    assert!(auto_remaps(&saved, &live, &["eth0".into()], &explicit).is_empty());
    // a link that is not adopted gets nothing
    assert!(auto_remaps(&saved, &live, &["eth1".into()], &Remaps::default()).is_empty());
}

#[test]
fn other_subnet_takes_the_first_primary() {
    let saved = vec![
        addr("eth0", [10, 244, 1, 7], 24, false),
        addr("eth0", [10, 244, 1, 8], 24, true),
    ];
    let live = vec![addr("eth0", [10, 244, 2, 3], 24, false)];
    let r = auto_remaps(&saved, &live, &["eth0".into()], &Remaps::default());
    assert_eq!(
        r,
        vec!["10.244.1.7=10.244.2.3".parse::<Remap>().expect("remap")]
    );
}

#[test]
fn adopt_runtime_takes_every_live_link_but_lo_and_named_links_must_exist() {
    let live = vec![link("lo", true), link("eth0", false), link("net1", false)];
    let a = Adopt {
        links: vec![],
        runtime: true,
    };
    assert_eq!(
        adopted_names(&a, &live).expect("names"),
        vec!["eth0", "net1"]
    );
    let a = Adopt {
        links: vec!["eth9".into()],
        runtime: false,
    };
    let e = adopted_names(&a, &live)
        .expect_err("missing link")
        .to_string();
    assert!(
        e.contains("adopt link eth9") && e.contains("no link"),
        "{e}"
    );
}

#[test]
fn apply_remaps_every_family_and_reports_it() {
    let mut snap = Snapshot {
        links: vec![link("lo", true), link("eth0", false)],
        addresses: vec![addr("eth0", [10, 88, 0, 9], 16, false)],
        rules: vec![pb::Rule {
            family: 2,
            src: vec![10, 88, 0, 9],
            src_len: 32,
            table: 100,
            ..Default::default()
        }],
        ..Default::default()
    };
    let live_links = vec![link("lo", true), link("eth0", false)];
    let live_addrs = vec![addr("eth0", [10, 88, 0, 11], 16, false)];
    let a = Adopt {
        links: vec![],
        runtime: true,
    };
    let t = apply(&mut snap, &live_links, &live_addrs, &a, &[]).expect("transform");
    assert_eq!(t.adopted, vec!["eth0"]);
    assert_eq!(t.remapped.addresses, 1);
    assert_eq!(t.remapped.rules, 1);
    assert_eq!(snap.addresses[0].local, vec![10, 88, 0, 11]);
    assert_eq!(snap.rules[0].src, vec![10, 88, 0, 11]);
}

#[test]
fn an_explicit_remap_of_the_pod_address_leaves_other_addresses_alone() {
    let saved = vec![
        addr("eth0", [10, 203, 250, 2], 24, false),
        addr("eth0", [192, 168, 77, 5], 24, false),
    ];
    let live = vec![addr("eth0", [10, 203, 250, 3], 24, false)];
    let explicit = Remaps::new(vec!["10.203.250.2=10.203.250.3".parse().expect("remap")]);
    assert!(auto_remaps(&saved, &live, &["eth0".into()], &explicit).is_empty());
}
