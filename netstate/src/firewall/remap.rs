//! Address remapping in saved firewall state: nf_tables payloads (through `nfnl::remap`),
//! iptables-save text (legacy tables, `CR_IPTABLES` output, images from before nfnetlink
//! capture) and nft text.
//!
//! iptables text is rewritten option by option, never by a search over the line: only the
//! values of the options that take addresses change (`-s`/`--source`, `-d`/`--destination`
//! with an optional `/len` or dotted mask and comma lists; `--to-destination`,
//! `--to-source`, `--to` with ranges and ports; `--gateway`; `--src-range`/`--dst-range`),
//! and quoted strings (comments) are copied as they are. nft text is rewritten token by token:
//! a word that is wholly an address or a prefix is one in nft's grammar.

use std::net::IpAddr;

use crhook_proto::{FirewallRuleset, FirewallSource};

use crate::transform::remap::Remaps;

/// Remaps one saved ruleset in place; true when something changed. An nf_tables payload that
/// cannot be walked is left as it is (restore's replay reports it if it is broken).
pub fn remap(m: &Remaps, r: &mut FirewallRuleset) -> bool {
    let mut changed = false;
    for t in &mut r.tables {
        match super::nfnl::remap_table(t, m) {
            Ok(n) => changed |= n > 0,
            Err(e) => tracing::warn!(table = %t.name, "remap nf_tables table: {e}"),
        }
    }
    if r.text.is_empty() {
        return changed;
    }
    let text = if r.source == FirewallSource::Nft as i32 {
        remap_nft_text(m, &r.text)
    } else {
        remap_iptables_text(m, &r.text)
    };
    if text != r.text {
        r.text = text;
        changed = true;
    }
    changed
}

/// Options whose value is an address list (`addr[/len]`, comma separated).
const ADDRESS_OPTS: &[&str] = &["-s", "--source", "--src", "-d", "--destination", "--dst"];
/// Options whose value is a NAT target (`addr[-addr][:port[-port]]`, IPv6 in brackets).
const NAT_OPTS: &[&str] = &["--to-destination", "--to-source", "--to"];
/// Options whose value is one host address or a range `a-b`.
const HOST_OPTS: &[&str] = &["--gateway", "--src-range", "--dst-range"];

/// Splits a line into tokens and the spaces between them, keeping quoted strings whole.
fn tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (b, mut i) = (line.as_bytes(), 0);
    while i < b.len() {
        let start = i;
        if b[i] == b' ' || b[i] == b'\t' {
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
                i += 1;
            }
        } else {
            let mut quoted = false;
            while i < b.len() && (quoted || (b[i] != b' ' && b[i] != b'\t')) {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                } else if b[i] == b'"' {
                    quoted = !quoted;
                }
                i += 1;
            }
        }
        out.push(&line[start..i]);
    }
    out
}

pub(crate) fn remap_iptables_text(m: &Remaps, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !(line.starts_with("-A ") || line.starts_with("-I ")) {
            out.push_str(line);
            continue;
        }
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        let toks = tokens(body);
        let mut want: Option<&str> = None;
        for t in toks {
            if t.trim().is_empty() {
                out.push_str(t);
                continue;
            }
            match want.take() {
                Some(opt) if t == "!" => {
                    out.push_str(t);
                    want = Some(opt);
                }
                Some(opt) if ADDRESS_OPTS.contains(&opt) => out.push_str(&remap_list(m, t)),
                Some(opt) if NAT_OPTS.contains(&opt) => out.push_str(&remap_nat(m, t)),
                Some(_) => out.push_str(&remap_range(m, t)),
                None => {
                    if ADDRESS_OPTS.contains(&t) || NAT_OPTS.contains(&t) || HOST_OPTS.contains(&t)
                    {
                        want = Some(t);
                    }
                    out.push_str(t);
                }
            }
        }
        out.push_str(nl);
    }
    out
}

/// `a[/len],b[/len]`: each element a prefix (a dotted mask counts when contiguous).
fn remap_list(m: &Remaps, v: &str) -> String {
    v.split(',')
        .map(|e| remap_prefix(m, e).unwrap_or_else(|| e.to_string()))
        .collect::<Vec<_>>()
        .join(",")
}

fn remap_prefix(m: &Remaps, e: &str) -> Option<String> {
    let (addr, len) = match e.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (e, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let full = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match len {
        None => full,
        Some(l) => match l.parse::<u8>() {
            Ok(b) if b <= full => b,
            _ => mask_bits(l.parse::<IpAddr>().ok()?)?,
        },
    };
    let new = m.prefix(ip, bits)?;
    Some(match len {
        Some(l) => format!("{new}/{l}"),
        None => new.to_string(),
    })
}

/// Length of a contiguous dotted mask.
fn mask_bits(mask: IpAddr) -> Option<u8> {
    let (v, width) = match mask {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let ones = v.leading_ones();
    (v.count_ones() == ones && ones <= width).then(|| u8::try_from(ones).ok())?
}

/// `addr[-addr][:port[-port]]`, `[v6][-[v6]][:port]` or a bare IPv6 address.
fn remap_nat(m: &Remaps, v: &str) -> String {
    if v.parse::<IpAddr>().is_ok() {
        return remap_range(m, v);
    }
    let (addrs, ports) = if v.starts_with('[') {
        match v.rfind("]:") {
            Some(i) => (&v[..=i], &v[i + 1..]),
            None => (v, ""),
        }
    } else {
        match v.find(':') {
            Some(i) => (&v[..i], &v[i..]),
            None => (v, ""),
        }
    };
    format!("{}{ports}", remap_range(m, addrs))
}

/// `a` or `a-b`, each possibly in brackets.
fn remap_range(m: &Remaps, v: &str) -> String {
    v.split('-')
        .map(|p| {
            let inner = p.trim_start_matches('[').trim_end_matches(']');
            match inner.parse::<IpAddr>().ok().and_then(|ip| m.host(ip)) {
                Some(new) => p.replace(inner, &new.to_string()),
                None => p.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// nft text: every word that is an address or a prefix.
pub(crate) fn remap_nft_text(m: &Remaps, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let mut quoted = false;
    let flush = |word: &mut String, out: &mut String| {
        let w = std::mem::take(word);
        if !w.contains(['.', ':']) {
            out.push_str(&w);
            return;
        }
        if let Some(n) = remap_prefix(m, &w) {
            out.push_str(&n);
            return;
        }
        // an IPv4 address with a port: `10.88.0.9:80`
        match w.rsplit_once(':') {
            Some((a, port)) if a.parse::<std::net::Ipv4Addr>().is_ok() => {
                match remap_prefix(m, a) {
                    Some(n) => out.push_str(&format!("{n}:{port}")),
                    None => out.push_str(&w),
                }
            }
            _ => out.push_str(&w),
        }
    };
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        let part_of_word = !quoted && (c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/'));
        if part_of_word {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[&str]) -> Remaps {
        crate::transform::remap::parse_all(v)
    }

    #[test]
    fn iptables_options_that_take_addresses() {
        let m = m(&["10.88.0.9=10.88.0.11"]);
        let text = "*nat\n:PREROUTING ACCEPT [0:0]\n\
            -A PREROUTING -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.88.0.9:8080\n\
            -A POSTROUTING -s 10.88.0.9/32 -j SNAT --to-source 10.88.0.9-10.88.0.9\n\
            COMMIT\n*filter\n\
            -A INPUT -d 10.88.0.9/32 -p tcp -m tcp --dport 8080 -j ACCEPT\n\
            -A INPUT ! -s 10.88.0.9/32,10.1.0.0/16 -m comment --comment \"from 10.88.0.9 \" -j DROP\n\
            -A INPUT -s 10.88.0.0/16 -j ACCEPT\n\
            -A INPUT -m mark --mark 0xa580009 -j ACCEPT\n\
            -A INPUT -m iprange --src-range 10.88.0.9-10.88.0.20 -j ACCEPT\n\
            COMMIT\n";
        let out = remap_iptables_text(&m, text);
        assert!(out.contains("--to-destination 10.88.0.11:8080"), "{out}");
        assert!(
            out.contains("-s 10.88.0.11/32 -j SNAT --to-source 10.88.0.11-10.88.0.11"),
            "{out}"
        );
        assert!(out.contains("-A INPUT -d 10.88.0.11/32 -p tcp"), "{out}");
        assert!(out.contains("! -s 10.88.0.11/32,10.1.0.0/16"), "{out}");
        assert!(
            out.contains("--comment \"from 10.88.0.9 \""),
            "comments stay: {out}"
        );
        assert!(
            out.contains("-A INPUT -s 10.88.0.0/16 -j ACCEPT"),
            "a containing prefix stays: {out}"
        );
        assert!(out.contains("--mark 0xa580009"), "{out}");
        assert!(out.contains("--src-range 10.88.0.11-10.88.0.20"), "{out}");
        assert!(out.contains(":PREROUTING ACCEPT [0:0]\n"), "{out}");
    }

    #[test]
    fn iptables_prefixes_and_masks_and_ipv6() {
        let m = m(&["10.88.0.0/16=10.89.0.0/16", "fd00::9=fd00::11"]);
        let text = "-A INPUT -s 10.88.0.0/255.255.0.0 -j ACCEPT\n\
                    -A INPUT -d 10.88.4.0/24 -j ACCEPT\n\
                    -A INPUT -d fd00::9/128 -j ACCEPT\n\
                    -A PREROUTING -j DNAT --to-destination [fd00::9]:80\n";
        let out = remap_iptables_text(&m, text);
        assert!(out.contains("-s 10.89.0.0/255.255.0.0"), "{out}");
        assert!(out.contains("-d 10.89.4.0/24"), "{out}");
        assert!(out.contains("-d fd00::11/128"), "{out}");
        assert!(out.contains("--to-destination [fd00::11]:80"), "{out}");
    }

    #[test]
    fn nft_text_words() {
        let m = m(&["10.88.0.9=10.88.0.11"]);
        let text = "table ip t {\n\tchain c {\n\t\tip daddr 10.88.0.9 tcp dport 8080 accept comment \"10.88.0.9\"\n\t\tip saddr 10.88.0.0/16 accept\n\t\tdnat to 10.88.0.9:80\n\t}\n}\n";
        let out = remap_nft_text(&m, text);
        assert!(out.contains("ip daddr 10.88.0.11 tcp dport 8080"), "{out}");
        assert!(out.contains("comment \"10.88.0.9\""), "{out}");
        assert!(out.contains("ip saddr 10.88.0.0/16"), "{out}");
        assert!(out.contains("dnat to 10.88.0.11:80"), "{out}");
    }
}
