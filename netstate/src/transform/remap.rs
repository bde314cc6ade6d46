//! Address remapping: `--remap OLD=NEW`, single addresses or prefixes, IPv4 or IPv6.
//!
//! A remap of a prefix keeps the host part: with `10.88.0.0/16=10.89.0.0/16`, `10.88.3.4`
//! becomes `10.89.3.4`. What is remapped depends on what the bytes mean:
//! - an address of a host (an interface address, a gateway, a preferred source, a neighbour,
//!   a NAT target) is remapped when it lies inside OLD;
//! - a prefix (a route's destination, a rule's selector, `iptables -s 10.88.0.0/24`) is
//!   remapped when it lies wholly inside OLD, i.e. its length is at least OLD's. A prefix that
//!   contains OLD (`10.0.0.0/8` for OLD `10.88.0.9`) means more than the old address and is
//!   left alone.
//!
//! When several remaps match, the most specific OLD wins.

use std::net::IpAddr;
use std::str::FromStr;

use ipnetwork::IpNetwork;

/// One `OLD=NEW` mapping. Both sides have the same family and prefix length.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Remap {
    pub old: IpNetwork,
    pub new: IpNetwork,
}

impl FromStr for Remap {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (old, new) = s.split_once('=').ok_or_else(|| {
            format!("remap {s:?}: expected OLD=NEW (an address or a prefix each)")
        })?;
        let parse = |v: &str| {
            IpNetwork::from_str(v.trim())
                .map_err(|e| format!("remap {s:?}: {v:?} is not an address or prefix: {e}"))
        };
        Remap::new(parse(old)?, parse(new)?).map_err(|e| format!("remap {s:?}: {e}"))
    }
}

impl std::fmt::Display for Remap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |n: &IpNetwork| {
            if n.prefix() == full_len(n.ip()) {
                n.ip().to_string()
            } else {
                n.to_string()
            }
        };
        write!(f, "{}={}", show(&self.old), show(&self.new))
    }
}

fn full_len(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl Remap {
    pub fn new(old: IpNetwork, new: IpNetwork) -> Result<Remap, String> {
        if old.is_ipv4() != new.is_ipv4() {
            return Err("OLD and NEW are of different address families".into());
        }
        if old.prefix() != new.prefix() {
            return Err(format!(
                "OLD is a /{} and NEW a /{}; a remap keeps the host part, so both need the same prefix length",
                old.prefix(),
                new.prefix()
            ));
        }
        // canonical: the network address of each side
        let canon = |n: IpNetwork| IpNetwork::new(n.network(), n.prefix()).unwrap_or(n);
        Ok(Remap {
            old: canon(old),
            new: canon(new),
        })
    }

    /// A single address to another.
    pub fn host(old: IpAddr, new: IpAddr) -> Result<Remap, String> {
        let n = |a: IpAddr| IpNetwork::new(a, full_len(a)).map_err(|e| e.to_string());
        Remap::new(n(old)?, n(new)?)
    }

    /// `ip` with OLD's network part replaced by NEW's.
    fn map(&self, ip: IpAddr) -> IpAddr {
        match (ip, self.old.mask(), self.new.network()) {
            (IpAddr::V4(a), IpAddr::V4(m), IpAddr::V4(n)) => {
                let (a, m, n) = (u32::from(a), u32::from(m), u32::from(n));
                IpAddr::V4(((n & m) | (a & !m)).into())
            }
            (IpAddr::V6(a), IpAddr::V6(m), IpAddr::V6(n)) => {
                let (a, m, n) = (u128::from(a), u128::from(m), u128::from(n));
                IpAddr::V6(((n & m) | (a & !m)).into())
            }
            _ => ip,
        }
    }
}

/// The remaps in force for one restore or diff, most specific first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remaps(Vec<Remap>);

impl Remaps {
    pub fn new(mut v: Vec<Remap>) -> Remaps {
        v.sort_by_key(|r| std::cmp::Reverse(r.old.prefix()));
        v.dedup();
        Remaps(v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn list(&self) -> &[Remap] {
        &self.0
    }

    /// Whether some remap's OLD covers `ip` (as a host address).
    pub fn covers(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.old.contains(ip))
    }

    /// The new address of a host address, if a remap applies.
    pub fn host(&self, ip: IpAddr) -> Option<IpAddr> {
        self.prefix(ip, full_len(ip))
    }

    /// The new network address of prefix `ip/len`, if it lies wholly inside a remap's OLD.
    pub fn prefix(&self, ip: IpAddr, len: u8) -> Option<IpAddr> {
        self.0
            .iter()
            .find(|r| len >= r.old.prefix() && r.old.contains(ip))
            .map(|r| r.map(ip))
    }

    /// Remaps address bytes (4 or 16) in place as a host address; true when changed.
    pub fn host_bytes(&self, b: &mut [u8]) -> bool {
        let len = match b.len() {
            4 => 32,
            16 => 128,
            _ => return false,
        };
        self.prefix_bytes(b, len)
    }

    /// Remaps prefix bytes (4 or 16, `len` bits significant) in place; true when changed.
    pub fn prefix_bytes(&self, b: &mut [u8], len: u32) -> bool {
        let Some(ip) = ip_of(b) else { return false };
        let Ok(len) = u8::try_from(len) else {
            return false;
        };
        match self.prefix(ip, len) {
            Some(new) if new != ip => {
                write_ip(b, new);
                true
            }
            _ => false,
        }
    }
}

/// Remaps from `OLD=NEW` strings, for tests.
#[cfg(test)]
pub(crate) fn parse_all(v: &[&str]) -> Remaps {
    Remaps::new(
        v.iter()
            .map(|s| s.parse::<Remap>().expect("valid remap"))
            .collect(),
    )
}

/// The address in 4 or 16 bytes.
pub fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn write_ip(b: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => b.copy_from_slice(&a.octets()),
        IpAddr::V6(a) => b.copy_from_slice(&a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Remap {
        s.parse().expect("valid remap")
    }

    #[test]
    fn parses_hosts_and_prefixes() {
        assert_eq!(
            r("10.88.0.9=10.88.0.11").to_string(),
            "10.88.0.9=10.88.0.11"
        );
        assert_eq!(
            r("10.88.1.7/16=10.89.0.0/16").to_string(),
            "10.88.0.0/16=10.89.0.0/16"
        );
        assert_eq!(r("fd00::1=fd00::2").to_string(), "fd00::1=fd00::2");
    }

    #[test]
    fn rejects_bad_remaps_by_name() {
        let e = "10.0.0.1".parse::<Remap>().unwrap_err();
        assert!(e.contains("expected OLD=NEW"), "{e}");
        let e = "10.0.0.1=fd00::1".parse::<Remap>().unwrap_err();
        assert!(e.contains("different address families"), "{e}");
        let e = "10.0.0.0/16=10.1.0.0/24".parse::<Remap>().unwrap_err();
        assert!(e.contains("same prefix length"), "{e}");
        let e = "10.0.0.x=10.0.0.1".parse::<Remap>().unwrap_err();
        assert!(e.contains("not an address or prefix"), "{e}");
    }

    #[test]
    fn host_remap_touches_only_that_host() {
        let m = Remaps::new(vec![r("10.88.0.9=10.88.0.11")]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(m.host(ip("10.88.0.9")), Some(ip("10.88.0.11")));
        assert_eq!(m.host(ip("10.88.0.10")), None);
        assert_eq!(m.prefix(ip("10.88.0.9"), 32), Some(ip("10.88.0.11")));
        // a prefix that contains the old host means more than it
        assert_eq!(m.prefix(ip("10.88.0.0"), 16), None);
    }

    #[test]
    fn prefix_remap_keeps_host_part_and_most_specific_wins() {
        let m = Remaps::new(vec![
            r("10.88.0.0/16=10.89.0.0/16"),
            r("10.88.0.9=192.168.5.5"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(m.host(ip("10.88.3.4")), Some(ip("10.89.3.4")));
        assert_eq!(m.host(ip("10.88.0.9")), Some(ip("192.168.5.5")));
        assert_eq!(m.prefix(ip("10.88.5.0"), 24), Some(ip("10.89.5.0")));
        assert_eq!(m.prefix(ip("10.0.0.0"), 8), None);
        let mut b = vec![10, 88, 7, 7];
        assert!(m.host_bytes(&mut b));
        assert_eq!(b, vec![10, 89, 7, 7]);
        let mut b = vec![1, 2, 3];
        assert!(!m.host_bytes(&mut b));
    }

    #[test]
    fn ipv6_prefix_remap() {
        let m = Remaps::new(vec![r("fd00:1::/64=fd00:2::/64")]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(m.host(ip("fd00:1::5")), Some(ip("fd00:2::5")));
        assert_eq!(m.host(ip("fd00:3::5")), None);
    }
}
