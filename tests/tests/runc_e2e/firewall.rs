//! The firewall as the end-to-end tests compare it.

use crhook_tests::TestNs;

/// iptables-save and ip6tables-save without comments and counters (what a restore must
/// reproduce), then nft's view of the same tables (where a leftover lock would show).
///
/// CRIU locks a restored namespace with iptables (`-I INPUT/OUTPUT -j CRIU` in both families)
/// after setup-namespaces and unlocks it after network-unlock. Under iptables-nft the unlock
/// deletes the rules and the CRIU chain but not the tables and base chains the lock created,
/// so the restored namespace gains empty, policy-accept INPUT/OUTPUT base chains, and an
/// empty `filter` table where it had none. They filter nothing, and `crhook diff` treats them
/// as absent; so does this comparison: tables holding nothing but empty built-in chains with
/// policy ACCEPT, and empty policy-accept base chains, are dropped. Every rule, policy and
/// user chain is still compared, and anything else a lock leaves behind, CRIU's or crhook's,
/// still shows.
pub fn firewall(ns: &TestNs) -> String {
    let xt = ns.sh("iptables-save; ip6tables-save");
    let xt: Vec<String> = xt
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            strip_between(l, '[', ']', |inner| {
                inner
                    .split(':')
                    .all(|p| p.chars().all(|c| c.is_ascii_digit()))
            })
            .trim_end()
            .to_string()
        })
        .collect();
    let xt = drop_empty_accept_tables(&xt);
    let nft = ns.sh("nft list ruleset");
    let nft = drop_empty_accept_base_chains(&nft);
    let nft = nft.lines().map(|l| match l.find("counter packets") {
        Some(i) => format!("{}counter", &l[..i]),
        None => l.to_string(),
    });
    xt.into_iter()
        .chain(std::iter::once("--- nft".to_string()))
        .chain(nft)
        .collect::<Vec<_>>()
        .join("\n")
}

/// iptables-save lines without `*table ... COMMIT` blocks that declare only built-in chains
/// with policy ACCEPT and hold no rule.
pub fn drop_empty_accept_tables(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Vec<String> = Vec::new();
    for l in lines {
        if l.starts_with('*') {
            block = vec![l.clone()];
        } else if l == "COMMIT" && !block.is_empty() {
            let empty = block[1..]
                .iter()
                .all(|c| c.starts_with(':') && c.ends_with(" ACCEPT"));
            if !empty {
                out.append(&mut block);
                out.push(l.clone());
            }
            block.clear();
        } else if !block.is_empty() {
            block.push(l.clone());
        } else {
            out.push(l.clone());
        }
    }
    out
}

/// `nft list ruleset` without base chains that hold no rule and accept by policy, and
/// without tables left empty by that.
pub fn drop_empty_accept_base_chains(text: &str) -> String {
    let mut tables: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    let mut chain: Option<Vec<String>> = None;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("table ") {
            tables.push((line.to_string(), Vec::new()));
        } else if t.starts_with("chain ") || t.starts_with("set ") || t.starts_with("map ") {
            chain = Some(vec![line.to_string()]);
        } else if t == "}" && chain.is_some() {
            let mut c = chain.take().unwrap();
            c.push(line.to_string());
            let body: Vec<&String> = c[1..c.len() - 1]
                .iter()
                .filter(|l| !l.trim().is_empty())
                .collect();
            let empty_accept = c[0].trim().starts_with("chain ")
                && body.len() == 1
                && body[0].contains(" hook ")
                && body[0].contains("policy accept;");
            if !empty_accept {
                tables.last_mut().unwrap().1.push(c);
            }
        } else if let Some(c) = chain.as_mut() {
            c.push(line.to_string());
        }
    }
    let mut out = Vec::new();
    for (head, chains) in tables {
        if chains.is_empty() {
            continue;
        }
        out.push(head);
        for c in chains {
            out.extend(c);
        }
        out.push("}".to_string());
    }
    out.join("\n")
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
