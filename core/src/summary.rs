//! The summary `crhook show DIR --format text` prints before the details, the way
//! `criu show` and `checkpointctl inspect` open: what was captured, when and where, then per
//! family how many objects and the few facts a person looks for first (link kinds and
//! state, addresses per link, routes per table, firewall tables with their rule counts,
//! sysctls that differ from the kernel's defaults, tun files).
//!
//! It reads `show`'s JSON (already humanized), so it needs nothing but the files. Two facts
//! come from outside, through [`ShowContext`]: the kernel's sysctl defaults (read in a fresh
//! namespace, which needs privilege core must not ask for) and the firewall tables in rule
//! syntax (`rendered` in each nf_tables table, put there by the binary).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// What the summary and the text rendering use beside the files.
#[derive(Debug, Clone, Default)]
pub struct ShowContext {
    /// sysctl values of a fresh namespace on this kernel, by path; None when unknown
    pub sysctl_defaults: Option<BTreeMap<Vec<String>, String>>,
    /// why something is shown in a rawer form than usual (printed under the summary)
    pub notes: Vec<String>,
    /// what the seal says, judged with this host's key (see [`crate::seal_status`])
    pub seal: Option<String>,
}

/// Longest list the summary prints in full; longer ones end in "... and N more".
const LIST: usize = 12;

fn entries<'a>(files: &'a [Value], magic: &str) -> &'a [Value] {
    files
        .iter()
        .find(|f| f["magic"] == magic)
        .and_then(|f| f["entries"].as_array())
        .map_or(&[], Vec::as_slice)
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// Civil date of a Unix time, UTC (Howard Hinnant's days-to-civil).
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Lines `  key  value` with the keys padded to one column.
struct Lines(Vec<(usize, String, String)>);

impl Lines {
    fn add(&mut self, depth: usize, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((depth, key.into(), value.into()));
    }

    /// `items` under a heading at `depth + 1`, at most [`LIST`] of them.
    fn list(&mut self, depth: usize, items: Vec<(String, String)>) {
        let total = items.len();
        for (k, v) in items.into_iter().take(LIST) {
            self.add(depth + 1, k, v);
        }
        if total > LIST {
            self.add(depth + 1, "...", format!("and {} more", total - LIST));
        }
    }

    /// Keys padded to one column per run of lines at the same depth (the headings share
    /// one, each list under a heading has its own), at most 28 wide.
    fn render(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.0.len() {
            let d = self.0[i].0;
            let run = self.0[i..].iter().take_while(|(x, _, _)| *x == d).count();
            let group = if d == 0 {
                self.0
                    .iter()
                    .filter(|(x, _, _)| *x == 0)
                    .collect::<Vec<_>>()
            } else {
                self.0[i..i + run].iter().collect()
            };
            let w = group
                .iter()
                .map(|(_, k, _)| k.chars().count())
                .max()
                .unwrap_or(0)
                .min(28);
            for (_, k, v) in &self.0[i..i + run] {
                let pad = "  ".repeat(d + 1);
                if v.is_empty() {
                    out.push_str(&format!("{pad}{k}\n"));
                } else {
                    out.push_str(&format!("{pad}{k:<w$}  {v}\n"));
                }
            }
            i += run;
        }
        out
    }
}

fn link_line(l: &Value) -> String {
    let flags = n(l, "flags");
    let mut parts = Vec::new();
    let kind = s(l, "kind");
    parts.push(if flags & 0x8 != 0 {
        "loopback".to_string()
    } else if kind.is_empty() {
        "device".to_string()
    } else {
        kind.to_string()
    });
    parts.push(if flags & 0x1 != 0 { "up" } else { "down" }.to_string());
    if n(l, "mtu") != 0 {
        parts.push(format!("mtu {}", n(l, "mtu")));
    }
    let mac = s(l, "mac");
    if !mac.is_empty() && flags & 0x8 == 0 {
        parts.push(mac.to_string());
    }
    if let Some(master) = l["master_name"].as_str().filter(|m| !m.is_empty()) {
        parts.push(format!("master {master}"));
    }
    let veth = &l["info"]["Veth"];
    if veth.is_object() {
        let peer = s(veth, "peer_name");
        let ns = s(veth, "peer_netns");
        match (peer.is_empty(), ns.is_empty()) {
            (false, false) => parts.push(format!("peer {peer} in {ns}")),
            (false, true) => parts.push(format!("peer {peer}")),
            _ => {}
        }
    }
    parts.join(", ")
}

fn table_name(id: u64) -> String {
    match id {
        253 => "default".into(),
        254 => "main".into(),
        255 => "local".into(),
        t => format!("table {t}"),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line per firewall table: its name as the tools know it and what it holds.
fn firewall(lines: &mut Lines, rulesets: &[Value]) {
    let mut items = Vec::new();
    for r in rulesets {
        let source = s(r, "source");
        if let Some(tables) = r["tables"].as_array().filter(|t| !t.is_empty()) {
            for t in tables {
                let count = |k: &str| t[k].as_array().map_or(0, Vec::len);
                let label = t["rendered"]["label"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| {
                        format!("nf_tables {} {}", nft_family(n(t, "family")), s(t, "name"))
                    });
                let mut what = vec![
                    plural(count("chains"), "chain", "chains"),
                    plural(count("rules"), "rule", "rules"),
                ];
                if count("sets") > 0 {
                    what.push(plural(count("sets"), "set", "sets"));
                }
                if count("objects") > 0 {
                    what.push(plural(count("objects"), "object", "objects"));
                }
                items.push((label, what.join(", ")));
            }
            continue;
        }
        let text = s(r, "text");
        if text.is_empty() {
            continue;
        }
        let rules = text.lines().filter(|l| l.starts_with("-A ")).count();
        let what = if rules > 0 || text.lines().any(|l| l.starts_with('*')) {
            plural(rules, "rule", "rules")
        } else {
            plural(
                text.lines().filter(|l| !l.trim().is_empty()).count(),
                "line",
                "lines",
            )
        };
        items.push((source.to_lowercase().replace('_', "-"), what));
    }
    lines.add(0, "firewall", plural(items.len(), "table", "tables"));
    lines.list(0, items);
}

/// The nft name of an NFPROTO family number.
pub fn nft_family(f: u64) -> String {
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

/// The default a saved key is compared with: the same key in a fresh namespace, else, for a
/// device's key, the `default` directory's (new devices copy it).
fn default_of<'a>(defaults: &'a BTreeMap<Vec<String>, String>, path: &[String]) -> Option<&'a str> {
    if let Some(v) = defaults.get(path) {
        return Some(v);
    }
    if path.len() == 4 && (path[1] == "conf" || path[1] == "neigh") {
        let mut p = path.to_vec();
        p[2] = "default".into();
        return defaults.get(&p).map(String::as_str);
    }
    None
}

fn sysctls(lines: &mut Lines, saved: &[Value], cx: &ShowContext) {
    let Some(defaults) = &cx.sysctl_defaults else {
        lines.add(
            0,
            "sysctls",
            format!(
                "{} saved (kernel defaults unknown: reading them needs root)",
                saved.len()
            ),
        );
        return;
    };
    let words = |v: &str| v.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut changed = Vec::new();
    for e in saved {
        let path: Vec<String> = e["path"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let value = words(s(e, "value"));
        if let Some(d) = default_of(defaults, &path) {
            if words(d) != value {
                changed.push((path.join("/"), format!("{value} (default {})", words(d))));
            }
        }
    }
    lines.add(
        0,
        "sysctls",
        format!(
            "{} saved, {} changed from the kernel defaults",
            saved.len(),
            changed.len()
        ),
    );
    lines.list(0, changed);
}

/// The summary of an image directory's files (as [`crate::show::show_dir`] gives them).
pub fn summary(dir: &Path, files: &[Value], cx: &ShowContext) -> String {
    let mut l = Lines(Vec::new());
    if let Some(inv) = entries(files, "inventory").first() {
        let src = &inv["source"];
        let mut from = s(src, "target").to_string();
        if !s(src, "hostname").is_empty() {
            from.push_str(&format!(" on {}", s(src, "hostname")));
        }
        l.add(
            0,
            "captured",
            format!(
                "{} from {from} (crhook {}, image format {}.{})",
                utc(n(inv, "capture_time_sec")),
                s(inv, "crhook_version"),
                n(inv, "format_major"),
                n(inv, "format_minor")
            ),
        );
    }
    if let Some(seal) = &cx.seal {
        l.add(0, "seal", seal.clone());
    }
    let chain: Vec<&Value> = files.iter().filter(|f| f["magic"] == "inventory").collect();
    if chain.len() > 1 {
        l.add(0, "chain", format!("{} images, child first", chain.len()));
        for (i, f) in chain.iter().enumerate() {
            let inv = f["entries"].get(0).unwrap_or(&Value::Null);
            let at = f["dir"]
                .as_str()
                .map_or(dir.display().to_string(), str::to_string);
            let from: Vec<&str> = inv["from_parent"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let line = if from.is_empty() {
                format!("{at} (format {})", s(f, "version"))
            } else {
                format!(
                    "{at} (format {}; from its parent: {})",
                    s(f, "version"),
                    from.join(", ")
                )
            };
            l.add(1, i.to_string(), line);
        }
    }
    let links = entries(files, "links");
    l.add(0, "links", links.len().to_string());
    l.list(
        0,
        links
            .iter()
            .map(|x| (s(x, "name").to_string(), link_line(x)))
            .collect(),
    );

    let addrs = entries(files, "addresses");
    let mut per_link: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for a in addrs {
        let ip = if s(a, "local").is_empty() {
            s(a, "address")
        } else {
            s(a, "local")
        };
        per_link
            .entry(s(a, "ifname"))
            .or_default()
            .push(format!("{ip}/{}", n(a, "prefix_len")));
    }
    l.add(0, "addresses", addrs.len().to_string());
    l.list(
        0,
        per_link
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.join(", ")))
            .collect(),
    );

    let routes = entries(files, "routes");
    // main, local and default first, as `ip route show table all` reads best, then by id
    let mut per_table: BTreeMap<(u8, u64), usize> = BTreeMap::new();
    for r in routes {
        let t = n(r, "table");
        let rank = match t {
            254 => 0,
            255 => 1,
            253 => 2,
            _ => 3,
        };
        *per_table.entry((rank, t)).or_default() += 1;
    }
    l.add(0, "routes", routes.len().to_string());
    l.list(
        0,
        per_table
            .into_iter()
            .map(|((_, t), c)| (table_name(t), c.to_string()))
            .collect(),
    );
    for (magic, name) in [
        ("rules", "rules"),
        ("nexthops", "nexthops"),
        ("neighbours", "neighbours"),
    ] {
        l.add(0, name, entries(files, magic).len().to_string());
    }
    let tc = entries(files, "tc");
    if !tc.is_empty() {
        l.add(0, "tc objects", tc.len().to_string());
        l.list(
            0,
            tc.iter()
                .map(|o| {
                    let what = s(o, "type").trim_start_matches("TC_").to_lowercase();
                    let dev = match s(o, "ifname") {
                        "" => "-".to_string(),
                        d => d.to_string(),
                    };
                    (dev, format!("{what} {} {}", s(o, "kind"), s(o, "summary")))
                })
                .collect(),
        );
    }
    firewall(&mut l, entries(files, "firewall"));
    sysctls(&mut l, entries(files, "sysctls"), cx);
    let tuns = entries(files, "tun-files");
    l.add(0, "tun files", tuns.len().to_string());
    l.list(
        0,
        tuns.iter()
            .map(|t| {
                let holders = t["holders"].as_array().map_or(0, Vec::len);
                (
                    s(t, "device").to_string(),
                    plural(holders, "holder", "holders"),
                )
            })
            .collect(),
    );
    if let Some(inv) = entries(files, "inventory").first() {
        if let Some(w) = inv["warnings"].as_array().filter(|w| !w.is_empty()) {
            l.add(0, "warnings", w.len().to_string());
            l.list(
                0,
                w.iter()
                    .map(|x| ("-".to_string(), x.as_str().unwrap_or("").to_string()))
                    .collect(),
            );
        }
    }
    let mut out = format!("crhook image directory {}\n", dir.display());
    out.push_str(&l.render());
    for note in &cx.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn summary_names_what_a_person_looks_for() {
        let files = vec![
            json!({"magic": "inventory", "entries": [{"capture_time_sec": 1_700_000_000u64, "crhook_version": "0.1.0",
                "format_major": 1, "format_minor": 1, "source": {"target": "/run/netns/web", "hostname": "vm"}}]}),
            json!({"magic": "links", "entries": [
                {"name": "lo", "flags": 73, "mtu": 65536, "mac": "00:00:00:00:00:00"},
                {"name": "eth0", "kind": "veth", "flags": 4099, "mtu": 1500, "mac": "02:00:00:00:00:01",
                 "info": {"Veth": {"peer_name": "veth-web", "peer_netns": "host"}}}]}),
            json!({"magic": "addresses", "entries": [
                {"ifname": "eth0", "local": "10.0.0.2", "prefix_len": 24},
                {"ifname": "eth0", "address": "fd00::2", "prefix_len": 64}]}),
            json!({"magic": "routes", "entries": [{"table": 254}, {"table": 254}, {"table": 100}]}),
            json!({"magic": "firewall", "entries": [{"source": "NFTABLES", "tables": [
                {"family": 2, "name": "filter", "chains": ["00", "00"], "rules": ["00"],
                 "rendered": {"label": "iptables-nft table filter"}},
                {"family": 1, "name": "web", "chains": ["00"], "rules": ["00", "00"], "sets": ["00"]}]}]}),
            json!({"magic": "sysctls", "entries": [
                {"path": ["ipv4", "ip_forward"], "value": "1"},
                {"path": ["ipv4", "conf", "eth0", "rp_filter"], "value": "2"},
                {"path": ["ipv4", "conf", "eth0", "forwarding"], "value": "0"},
                {"path": ["ipv4", "tcp_rmem"], "value": "4096\t131072\t6291456"}]}),
        ];
        let defaults: BTreeMap<Vec<String>, String> = [
            (vec!["ipv4", "ip_forward"], "0"),
            (vec!["ipv4", "conf", "default", "rp_filter"], "0"),
            (vec!["ipv4", "conf", "default", "forwarding"], "0"),
            (vec!["ipv4", "tcp_rmem"], "4096 131072 6291456"),
        ]
        .into_iter()
        .map(|(p, v)| (p.into_iter().map(String::from).collect(), v.to_string()))
        .collect();
        let cx = ShowContext {
            sysctl_defaults: Some(defaults),
            notes: Vec::new(),
            seal: Some("sealed with this host's key 0102030405060708".into()),
        };
        let t = summary(Path::new("/i"), &files, &cx);
        assert!(t.starts_with("crhook image directory /i\n"), "{t}");
        assert!(t.contains("captured    2023-11-14 22:13:20 UTC from /run/netns/web on vm (crhook 0.1.0, image format 1.1)"), "{t}");
        assert!(
            t.contains("\n  seal        sealed with this host's key 0102030405060708\n"),
            "{t}"
        );
        assert!(
            t.contains("    eth0  veth, up, mtu 1500, 02:00:00:00:00:01, peer veth-web in host\n"),
            "{t}"
        );
        assert!(t.contains("    lo    loopback, up, mtu 65536\n"), "{t}");
        assert!(t.contains("    eth0  10.0.0.2/24, fd00::2/64\n"), "{t}");
        assert!(
            t.contains("  routes      3\n    main       2\n    table 100  1\n"),
            "{t}"
        );
        assert!(t.contains("  firewall    2 tables\n    iptables-nft table filter  2 chains, 1 rule\n    nf_tables inet web         1 chain, 2 rules, 1 set\n"), "{t}");
        assert!(
            t.contains("  sysctls     4 saved, 2 changed from the kernel defaults\n    ipv4/ip_forward           1 (default 0)\n    ipv4/conf/eth0/rp_filter  2 (default 0)\n"),
            "{t}"
        );
        assert!(t.contains("2 changed from the kernel defaults"), "{t}");
        assert!(t.contains("ipv4/conf/eth0/rp_filter"), "{t}");
        assert!(
            !t.contains("tcp_rmem"),
            "whitespace alone is no change: {t}"
        );
    }
}
