//! The network lock: one nftables table owned by crhook that drops every packet in and out of
//! the namespace except on loopback, so nothing changes (connections, counters, conntrack,
//! dynamic sets) while the namespace is saved.
//!
//! The chains sit at the prerouting and output hooks, the first hooks a received and a
//! locally sent packet meet, at the lowest priority there is, so they run before raw,
//! conntrack, defragmentation and every user chain; forwarded traffic enters through
//! prerouting too. Locking replaces the table in one nfnetlink transaction (declare,
//! delete, add; built in nfnl/lock.rs, no program started), so locking twice or over a
//! half-made lock leaves exactly one lock. Where the kernel lacks nf_tables the lock is an
//! iptables chain `crhook-lock` in the raw table of both families, jumped to
//! first from PREROUTING and OUTPUT. Capture leaves both out of the image.

use super::capture::Tools;
use super::exec::{Backend, Family, Run, Xtables};
use super::xt;
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;

pub(crate) const NFT_TABLE: &str = "crhook-lock";
pub(crate) const XT_CHAIN: &str = "crhook-lock";

const XT_LOCK: &str = "*raw
:crhook-lock - [0:0]
-A crhook-lock -i lo -j ACCEPT
-A crhook-lock -o lo -j ACCEPT
-A crhook-lock -j DROP
-I PREROUTING 1 -j crhook-lock
-I OUTPUT 1 -j crhook-lock
COMMIT
";

/// A lock found in the namespace.
enum Found {
    Nft,
    /// the raw table of one iptables backend holds the chain; the text is its save output
    Xt(Xtables, String),
}

/// The form a lock took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// crhook's nf_tables table
    Nft,
    /// the iptables chain, where nf_tables was unavailable
    Xtables,
}

/// Locks the namespace (idempotent).
pub fn lock(ns: &NetNs) -> Result<()> {
    lock_with(ns, false).map(drop)
}

/// [`lock`] whose nf_tables table lives only as long as `ns`'s netfilter socket (this
/// process): for a lock taken and removed by one crhook run, which SIGKILL must not leave
/// behind. Unlock it through the same handle.
pub fn lock_owned(ns: &NetNs) -> Result<()> {
    lock_with(ns, true).map(drop)
}

/// [`lock`] (`owned`: [`lock_owned`]), saying which form the lock took.
pub(crate) fn lock_with(ns: &NetNs, owned: bool) -> Result<Form> {
    let nft_err = match super::nfnl::lock_table(ns, owned) {
        Ok(()) => return Ok(Form::Nft),
        Err(e) => e,
    };
    // the kernel may lack nf_tables: the legacy backend still works
    tracing::warn!("{nft_err}; locking with iptables instead");
    lock_xtables_with(ns, &Tools::probe())
        .map(|()| Form::Xtables)
        .map_err(|e| NetstateError::invalid(format!("{nft_err}; and with iptables: {e}")))
}

/// Removes the nf_tables lock this run took where no other lock was found before it: one
/// transaction, without first looking for every form of lock as [`unlock`] does (a table
/// dump and two proc files, 0.2-0.3 ms at the small size, all inside the lock window).
pub(crate) fn unlock_nft(ns: &NetNs) -> Result<()> {
    super::nfnl::unlock_table(ns)
}

/// The iptables form of the lock, which [`lock`] falls back to where nft is unavailable.
/// Public so that it can be tested and chosen where nftables is unwanted.
pub fn lock_xtables(ns: &NetNs) -> Result<()> {
    lock_xtables_with(ns, &Tools::probe())
}

fn lock_xtables_with(ns: &NetNs, tools: &Tools) -> Result<()> {
    for family in [Family::V4, Family::V6] {
        let mut last = None;
        let mut done = false;
        for backend in [Backend::Nft, Backend::Legacy] {
            let Some(x) = tools.xt(backend, family) else {
                continue;
            };
            match lock_one(ns, x) {
                Ok(()) => {
                    done = true;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if !done {
            return Err(last.unwrap_or_else(|| NetstateError::Unsupported {
                what: format!(
                    "lock {}: neither nft nor {} found in /usr/sbin, /sbin, /usr/bin, /bin",
                    ns.name(),
                    if family == Family::V4 {
                        "iptables-restore"
                    } else {
                        "ip6tables-restore"
                    }
                ),
            }));
        }
    }
    Ok(())
}

fn lock_one(ns: &NetNs, x: &Xtables) -> Result<()> {
    if has_chain(&raw_table(ns, x)?) {
        return Ok(());
    }
    x.apply_noflush(ns, XT_LOCK, "lock")
}

fn raw_table(ns: &NetNs, x: &Xtables) -> Result<String> {
    let purpose = format!("look for the lock with {}:", x.label());
    Ok(Run {
        program: &x.save,
        args: &["-t", "raw"],
        env: &[],
        stdin: None,
        purpose: &purpose,
    }
    .run(ns)?
    .stdout)
}

fn has_chain(raw: &str) -> bool {
    raw.lines().any(|l| {
        l.strip_prefix(':')
            .and_then(|d| d.split_whitespace().next())
            == Some(XT_CHAIN)
    })
}

/// The script removing the chain and every jump to it, from the raw table's save output.
fn unlock_script(raw: &str) -> String {
    let mut out = String::from("*raw\n");
    for line in raw.lines() {
        let line = line.trim_end();
        let rule = line
            .strip_prefix("-A ")
            .or_else(|| line.split_once("] -A ").map(|(_, r)| r));
        let Some(rule) = rule else { continue };
        let (chain, spec) = rule.split_once(' ').unwrap_or((rule, ""));
        let w = xt::words(spec);
        let jumps = w
            .windows(2)
            .any(|p| (p[0] == "-j" || p[0] == "-g") && p[1] == XT_CHAIN);
        if chain != XT_CHAIN && jumps {
            out.push_str(&format!("-D {chain} {spec}\n"));
        }
    }
    out.push_str(&format!("-F {XT_CHAIN}\n-X {XT_CHAIN}\nCOMMIT\n"));
    out
}

fn find(ns: &NetNs, tools: &Tools) -> Result<Vec<Found>> {
    let mut found = Vec::new();
    let tables = super::nfnl::table_ids(ns).ok();
    // the legacy backend's table names of both families, read once when first needed
    let mut legacy: Option<[String; 2]> = None;
    if let Some(tables) = tables.as_ref() {
        if tables
            .iter()
            .any(|t| t.family == "inet" && t.name == NFT_TABLE)
        {
            found.push(Found::Nft);
        }
    }
    for family in [Family::V4, Family::V6] {
        for backend in [Backend::Nft, Backend::Legacy] {
            let Some(x) = tools.xt(backend, family) else {
                continue;
            };
            // look without bringing a table into existence: nftables lists its tables, and
            // the legacy raw table exists only when the proc file names it
            let present = match backend {
                Backend::Nft => tables.as_ref().is_none_or(|t| {
                    t.iter()
                        .any(|id| id.family == family.nft_family() && id.name == "raw")
                }),
                Backend::Legacy => {
                    let names = match legacy.as_ref() {
                        Some(n) => n,
                        None => legacy.insert(legacy_names(ns)?),
                    };
                    has_raw(names, family)
                }
            };
            if present {
                let raw = raw_table(ns, x)?;
                if has_chain(&raw) {
                    found.push(Found::Xt(x.clone(), raw));
                }
            }
        }
    }
    Ok(found)
}

/// The legacy backend's table names of IPv4 and IPv6, read on one namespace thread.
fn legacy_names(ns: &NetNs) -> Result<[String; 2]> {
    let [v4, v6] = super::exec::read_ns_procs(ns, ["ip_tables_names", "ip6_tables_names"])?;
    Ok([v4, v6])
}

fn has_raw(names: &[String; 2], family: Family) -> bool {
    let i = match family {
        Family::V4 => 0,
        Family::V6 => 1,
    };
    names[i].lines().any(|l| l.trim() == "raw")
}

/// Removes every crhook lock from the namespace (idempotent); true if there was one.
pub fn unlock(ns: &NetNs) -> Result<bool> {
    let tools = Tools::probe();
    let found = find(ns, &tools)?;
    for f in &found {
        match f {
            Found::Nft => super::nfnl::unlock_table(ns)?,
            Found::Xt(x, raw) => {
                x.apply_noflush(ns, &unlock_script(raw), "unlock")?;
            }
        }
    }
    Ok(!found.is_empty())
}

/// Whether a crhook lock (either form) is in place.
pub fn is_locked(ns: &NetNs) -> Result<bool> {
    Ok(!find(ns, &Tools::probe())?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlock_script_deletes_jumps_then_the_chain() {
        let raw = "# Generated\n*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:crhook-lock - [0:0]\n-A PREROUTING -j crhook-lock\n-A PREROUTING -p udp -j NOTRACK\n[3:4] -A OUTPUT -j crhook-lock\n-A crhook-lock -i lo -j ACCEPT\n-A crhook-lock -j DROP\nCOMMIT\n";
        assert!(has_chain(raw));
        assert!(!has_chain(
            "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j crhook-lockx\nCOMMIT\n"
        ));
        assert_eq!(
            unlock_script(raw),
            "*raw\n-D PREROUTING -j crhook-lock\n-D OUTPUT -j crhook-lock\n-F crhook-lock\n-X crhook-lock\nCOMMIT\n"
        );
    }
}
