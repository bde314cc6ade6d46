//! iptables-save text: filtering, a comparable model, merging and small generated scripts.
//!
//! The saved text stays what the tool printed (header comments included) minus lock
//! artefacts; comparisons go through [`Canon`], which ignores comments, counters, the order
//! of chains and builtin chains that hold nothing (iptables-nft makes base chains only when
//! used, iptables-save prints all of them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::exec::Family;

/// Chains that belong to a network lock, never to the user's ruleset: CRIU's and ours.
pub(crate) const LOCK_CHAINS: [&str; 2] = ["CRIU", super::lock::XT_CHAIN];
/// The packet mark CRIU's lock lets through (`SOCCR_MARK`).
const CRIU_MARK: &str = "0xc114";

/// Splits a rule into words the way iptables-save quotes them (`--comment "a b"`).
pub(crate) fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// A rule line split into its optional `[pkts:bytes]` prefix, chain and the rest.
fn split_rule(line: &str) -> Option<(Option<&str>, &str, &str)> {
    let (counters, rest) = match line.strip_prefix('[') {
        Some(r) => {
            let end = r.find(']')?;
            (Some(&line[..end + 2]), r[end + 1..].trim_start())
        }
        None => (None, line),
    };
    let rest = rest.strip_prefix("-A ")?;
    let (chain, spec) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((counters, chain, spec))
}

/// The target of a rule (`-j X`, `-g X`) and whether it is a goto.
fn target(spec: &str) -> Option<(String, bool)> {
    let w = words(spec);
    w.iter().enumerate().find_map(|(i, t)| match t.as_str() {
        "-j" | "--jump" => w.get(i + 1).map(|x| (x.clone(), false)),
        "-g" | "--goto" => w.get(i + 1).map(|x| (x.clone(), true)),
        _ => None,
    })
}

fn is_lock_rule(chain: &str, spec: &str) -> bool {
    if LOCK_CHAINS.contains(&chain) {
        return true;
    }
    // most rules name neither a lock chain nor a mark: a substring test spares splitting
    // every rule of a 50,000-rule ruleset into words
    if !LOCK_CHAINS.iter().any(|c| spec.contains(c)) && !spec.contains("--mark") {
        return false;
    }
    if target(spec).is_some_and(|(t, _)| LOCK_CHAINS.contains(&t.as_str())) {
        return true;
    }
    let w = words(spec);
    w.windows(2).any(|p| {
        p[0] == "--mark"
            && p[1]
                .split('/')
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case(CRIU_MARK))
    })
}

/// Builtin chains (base chains in nftables terms) that exist per (table) in the nftables
/// view; a builtin chain missing here and empty in the text is left out of the saved text so
/// that restore does not create a base chain the original did not have.
pub(crate) type BaseChains = HashMap<String, HashSet<String>>;

/// Removes lock artefacts (CRIU's chain and mark, crhook's chain) when `strip_locks`, zeroes
/// the chain counters unless `counters`, and with `base` drops empty builtin chains nftables
/// did not have.
pub(crate) fn clean(
    text: &str,
    counters: bool,
    base: Option<&BaseChains>,
    strip_locks: bool,
) -> String {
    let is_lock_rule = |chain: &str, spec: &str| strip_locks && is_lock_rule(chain, spec);
    // which chains have rules left, per table, to know what may be pruned
    let mut used: HashSet<(String, String)> = HashSet::new();
    let mut table = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
        } else if let Some((_, chain, spec)) = split_rule(line) {
            if !is_lock_rule(chain, spec) {
                used.insert((table.clone(), chain.to_string()));
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    table.clear();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.trim().to_string();
        } else if let Some(decl) = line.strip_prefix(':') {
            let mut it = decl.split_whitespace();
            let name = it.next().unwrap_or("");
            let policy = it.next().unwrap_or("-");
            if strip_locks && LOCK_CHAINS.contains(&name) {
                continue;
            }
            if let Some(base) = base {
                let exists = base.get(&table).is_some_and(|s| s.contains(name));
                if policy == "ACCEPT"
                    && !exists
                    && !used.contains(&(table.clone(), name.to_string()))
                {
                    continue;
                }
            }
            if !counters {
                out.push_str(&format!(":{name} {policy} [0:0]\n"));
                continue;
            }
        } else if let Some((prefix, chain, spec)) = split_rule(line) {
            if is_lock_rule(chain, spec) {
                continue;
            }
            if !counters && prefix.is_some() {
                out.push_str(format!("-A {chain} {spec}").trim_end());
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A comparable form of a ruleset: table -> chain -> (policy, rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Canon {
    pub tables: BTreeMap<String, BTreeMap<String, (String, Vec<String>)>>,
    /// table order as the text had it (for rendering merged texts)
    order: Vec<String>,
    /// chain order per table as the text declared it
    chain_order: BTreeMap<String, Vec<String>>,
}

impl Canon {
    pub(crate) fn parse(text: &str) -> Canon {
        let mut c = Canon::default();
        let mut table: Option<String> = None;
        for line in text.lines() {
            let line = line.trim_end();
            if let Some(t) = line.strip_prefix('*') {
                let t = t.trim().to_string();
                if !c.tables.contains_key(&t) {
                    c.order.push(t.clone());
                }
                c.tables.entry(t.clone()).or_default();
                table = Some(t);
            } else if line == "COMMIT" {
                table = None;
            } else if let (Some(t), Some(decl)) = (table.as_ref(), line.strip_prefix(':')) {
                let mut it = decl.split_whitespace();
                let (Some(name), policy) = (it.next(), it.next().unwrap_or("-")) else {
                    continue;
                };
                c.declare(t, name, policy);
            } else if let (Some(t), Some((_, chain, spec))) = (table.as_ref(), split_rule(line)) {
                c.declare(t, chain, "-");
                if let Some(ch) = c.tables.get_mut(t).and_then(|m| m.get_mut(chain)) {
                    ch.1.push(spec.trim().to_string());
                }
            }
        }
        c
    }

    fn declare(&mut self, table: &str, chain: &str, policy: &str) {
        let chains = self.tables.entry(table.to_string()).or_default();
        if !chains.contains_key(chain) {
            self.chain_order
                .entry(table.to_string())
                .or_default()
                .push(chain.to_string());
        }
        let e = chains
            .entry(chain.to_string())
            .or_insert_with(|| (policy.to_string(), Vec::new()));
        if policy != "-" {
            e.0 = policy.to_string();
        }
    }

    /// Equal up to empty builtin chains and empty tables.
    pub(crate) fn same(&self, other: &Canon) -> bool {
        self.essential() == other.essential()
    }

    /// Has every rule of `chains` (one table of another Canon) in the same chains of
    /// `table` (what adding them with `--noflush` would add again).
    pub(crate) fn contains_table(
        &self,
        table: &str,
        chains: &BTreeMap<String, (String, Vec<String>)>,
    ) -> bool {
        chains.iter().all(|(chain, (_, rules))| {
            self.tables
                .get(table)
                .and_then(|t| t.get(chain))
                .is_some_and(|(_, have)| rules.iter().all(|r| have.contains(r)))
        })
    }

    /// Holds no rule, no user chain and no policy other than ACCEPT.
    pub(crate) fn is_empty(&self) -> bool {
        self.essential().is_empty()
    }

    pub(crate) fn essential(&self) -> BTreeMap<&str, BTreeMap<&str, (&str, &[String])>> {
        let mut m = BTreeMap::new();
        for (t, chains) in &self.tables {
            let kept: BTreeMap<&str, (&str, &[String])> = chains
                .iter()
                .filter(|(_, (p, r))| !(p == "ACCEPT" && r.is_empty()))
                .map(|(n, (p, r))| (n.as_str(), (p.as_str(), r.as_slice())))
                .collect();
            if !kept.is_empty() {
                m.insert(t.as_str(), kept);
            }
        }
        m
    }

    pub(crate) fn table_names(&self) -> Vec<String> {
        self.order.clone()
    }

    /// Folds `other` in: chains are united, rules of `other` follow ours in each chain, and a
    /// builtin chain drops if either side drops (two backends both had to accept a packet).
    pub(crate) fn merge(&mut self, other: &Canon) {
        for t in &other.order {
            if !self.order.contains(t) {
                self.order.push(t.clone());
            }
            let (Some(theirs), Some(order)) = (other.tables.get(t), other.chain_order.get(t))
            else {
                continue;
            };
            for name in order {
                let Some((policy, rules)) = theirs.get(name) else {
                    continue;
                };
                let chains = self.tables.entry(t.clone()).or_default();
                if !chains.contains_key(name) {
                    self.chain_order
                        .entry(t.clone())
                        .or_default()
                        .push(name.clone());
                }
                let ours = chains
                    .entry(name.clone())
                    .or_insert_with(|| (policy.clone(), Vec::new()));
                if ours.0 == "ACCEPT" && policy != "-" {
                    ours.0 = policy.clone();
                }
                ours.1.extend(rules.iter().cloned());
            }
        }
    }

    /// Renders iptables-restore input without counters.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for t in &self.order {
            let Some(chains) = self.tables.get(t) else {
                continue;
            };
            out.push_str(&format!("*{t}\n"));
            let order = self.chain_order.get(t).cloned().unwrap_or_default();
            for name in &order {
                if let Some((p, _)) = chains.get(name) {
                    out.push_str(&format!(":{name} {p} [0:0]\n"));
                }
            }
            for name in &order {
                if let Some((_, rules)) = chains.get(name) {
                    for r in rules {
                        out.push_str(&format!("-A {name} {r}\n"));
                    }
                }
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

/// The sections of `text` for the given tables, verbatim (used to put back what was live).
pub(crate) fn sections(text: &str, tables: &[String]) -> String {
    let mut out = String::new();
    let mut keep = false;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            keep = tables.iter().any(|x| x == t.trim());
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
        if line.trim_end() == "COMMIT" {
            keep = false;
        }
    }
    out
}

/// A script that empties `tables` as far as iptables-restore can: all rules flushed, user
/// chains deleted, builtin chains back to ACCEPT. (Legacy tables cannot be unregistered from
/// userspace; they vanish with the namespace.)
pub(crate) fn reset_script(saved: &Canon, tables: &[String]) -> String {
    let mut out = String::new();
    for t in tables {
        out.push_str(&format!("*{t}\n"));
        if let Some(chains) = saved.tables.get(t) {
            for (name, (policy, _)) in chains {
                if policy != "-" {
                    out.push_str(&format!(":{name} ACCEPT [0:0]\n"));
                }
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// Directories iptables loads its extensions from.
fn xtables_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("XTABLES_LIBDIR")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    for root in ["/usr/lib", "/lib", "/usr/lib64", "/lib64", "/usr/libexec"] {
        dirs.push(Path::new(root).join("xtables"));
        if let Ok(rd) = std::fs::read_dir(root) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().contains("-linux-") {
                    dirs.push(e.path().join("xtables"));
                }
            }
        }
    }
    dirs.retain(|d| d.join("libxt_standard.so").exists());
    dirs
}

/// Jumps to chains the table does not declare. iptables-nft-restore `--test` accepts them (an
/// unknown `-j X` is taken as a jump to a chain, which only the commit finds missing), so
/// check() looks for them: a target is fine when it is a chain of its table, a verdict, or an
/// extension iptables can load. Returns nothing when the extension directory is unknown.
pub(crate) fn unknown_targets(text: &str, family: Family) -> Vec<String> {
    let dirs = xtables_dirs();
    if dirs.is_empty() {
        return Vec::new();
    }
    let fam = match family {
        Family::V4 => "libipt_",
        Family::V6 => "libip6t_",
    };
    let ext = |t: &str| {
        dirs.iter().any(|d| {
            d.join(format!("libxt_{t}.so")).exists() || d.join(format!("{fam}{t}.so")).exists()
        })
    };
    let canon = Canon::parse(text);
    let mut bad = Vec::new();
    for (table, chains) in &canon.tables {
        for (chain, (_, rules)) in chains {
            for r in rules {
                let Some((t, goto)) = target(r) else { continue };
                let known = chains.contains_key(&t)
                    || (!goto
                        && (["ACCEPT", "DROP", "RETURN", "QUEUE"].contains(&t.as_str())
                            || ext(&t)));
                if !known {
                    bad.push(format!("table {table} chain {chain}: rule \"-A {chain} {r}\" jumps to {t}, which is neither a chain of the table nor a target extension"));
                }
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRIU_LOCKED: &str = "# Generated by iptables-save v1.8.9 (nf_tables) on Sat\n*filter\n:INPUT ACCEPT [5:300]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:CRIU - [0:0]\n:MINE - [0:0]\n[1:2] -A INPUT -j CRIU\n[0:0] -A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"ssh -j CRIU\" -j ACCEPT\n[0:0] -A OUTPUT -j CRIU\n[0:0] -A CRIU -m mark --mark 0xc114 -j ACCEPT\n[0:0] -A CRIU -j DROP\n[0:0] -A MINE -j RETURN\nCOMMIT\n# Completed on Sat\n";

    #[test]
    fn lock_artefacts_and_counters_are_removed() {
        let c = clean(CRIU_LOCKED, false, None, true);
        assert_eq!(
            c,
            "# Generated by iptables-save v1.8.9 (nf_tables) on Sat\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:MINE - [0:0]\n-A INPUT -p tcp -m tcp --dport 22 -m comment --comment \"ssh -j CRIU\" -j ACCEPT\n-A MINE -j RETURN\nCOMMIT\n# Completed on Sat\n"
        );
        let kept = clean(CRIU_LOCKED, true, None, true);
        assert!(kept.contains(":INPUT ACCEPT [5:300]"));
        assert!(kept.contains("[0:0] -A MINE -j RETURN"));
        assert!(!kept.contains("CRIU -"));
    }

    #[test]
    fn crhook_lock_chain_is_removed() {
        let t = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:crhook-lock - [0:0]\n-A PREROUTING -j crhook-lock\n-A crhook-lock -i lo -j ACCEPT\n-A crhook-lock -j DROP\nCOMMIT\n";
        assert_eq!(
            clean(t, false, None, true),
            "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn empty_builtin_chains_absent_from_nftables_are_pruned() {
        let t = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n";
        let mut base = BaseChains::new();
        base.insert(
            "filter".into(),
            ["INPUT", "FORWARD"].iter().map(|s| s.to_string()).collect(),
        );
        assert_eq!(
            clean(t, false, Some(&base), true),
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn canon_ignores_comments_counters_and_empty_builtins() {
        let a = Canon::parse("# x\n*filter\n:INPUT ACCEPT [3:4]\n:OUTPUT ACCEPT [0:0]\n[1:1] -A INPUT -j DROP\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n");
        let b = Canon::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n");
        assert!(a.same(&b));
        let c = Canon::parse("*filter\n:INPUT DROP [0:0]\n-A INPUT -j DROP\nCOMMIT\n");
        assert!(!a.same(&c));
        assert!(Canon::parse("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n").is_empty());
        assert!(!Canon::parse("*nat\n:X - [0:0]\nCOMMIT\n").is_empty());
    }

    #[test]
    fn merge_unites_chains_and_keeps_drop_policies() {
        let mut a =
            Canon::parse("*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n-A INPUT -j A\nCOMMIT\n");
        let b = Canon::parse("*filter\n:INPUT DROP [0:0]\n:B - [0:0]\n-A INPUT -j B\nCOMMIT\n*raw\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n");
        a.merge(&b);
        assert_eq!(
            a.render(),
            "*filter\n:INPUT DROP [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A INPUT -j B\nCOMMIT\n*raw\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j ACCEPT\nCOMMIT\n"
        );
    }

    #[test]
    fn sections_and_reset() {
        let t = "# c\n*filter\n:INPUT DROP [0:0]\n:X - [0:0]\nCOMMIT\n*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
        assert_eq!(
            sections(t, &["nat".into()]),
            "*nat\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
        );
        assert_eq!(
            reset_script(&Canon::parse(t), &["filter".into()]),
            "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"
        );
    }

    #[test]
    fn words_follow_iptables_quoting() {
        assert_eq!(
            words(r#"-m comment --comment "a \"b\" c" -j X"#),
            vec!["-m", "comment", "--comment", "a \"b\" c", "-j", "X"]
        );
    }
}
