//! Where the value of each `/proc` name of a per-device directory sits in a device's netlink
//! view, shared by capture and apply.

use super::dump::Dev;
use super::tables::{self, Unit};

/// The per-device directories whose values netlink carries, as numbered everywhere in this
/// module's callers (`Item::dir`, capture's layouts).
pub(super) const DIRS: [(&str, &str); 4] = [
    ("ipv4", "conf"),
    ("ipv6", "conf"),
    ("ipv4", "neigh"),
    ("ipv6", "neigh"),
];

/// Where netlink carries a `/proc` name's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Src {
    /// slot of `IFLA_INET_CONF`
    Inet(usize),
    /// slot of `IFLA_INET6_CONF`
    Inet6(usize, Unit),
    /// `NDTPA_*` type of the device's `NDTA_PARMS`
    Neigh(u16, Unit),
}

/// The netlink source of name `name` in directory kind `k` of [`DIRS`], if the tables map
/// it exactly.
pub(super) fn source(k: usize, name: &str) -> Option<Src> {
    match k {
        0 => tables::ipv4_slot(name).map(Src::Inet),
        1 => tables::ipv6_slot(name).map(|(i, u)| Src::Inet6(i, u)),
        2 | 3 => tables::neigh_attr(name).map(|(t, u)| Src::Neigh(t, u)),
        _ => None,
    }
}

/// Whether the device's netlink view has directory kind `k`.
pub(super) fn has(d: &Dev, k: usize) -> bool {
    match k {
        0 => d.inet.is_some(),
        1 => d.inet6.is_some(),
        2 => d.neigh4.is_some(),
        _ => d.neigh6.is_some(),
    }
}

/// The number `/proc` prints for the value at `src` of directory kind `k`, if the kernel
/// sent that slot or attribute.
pub(super) fn value(d: &Dev, k: usize, src: Src) -> Option<i64> {
    match src {
        Src::Inet(i) => d.inet.as_ref()?.get(i).map(|v| i64::from(*v)),
        Src::Inet6(i, unit) => d
            .inet6
            .as_ref()?
            .get(i)
            .map(|v| unit.convert(i64::from(*v))),
        Src::Neigh(ty, unit) => {
            let params = if k == 2 { &d.neigh4 } else { &d.neigh6 };
            // msecs of an int jiffies value and small counters: they fit an i64
            i64::try_from(params.as_ref()?.get(ty)?)
                .ok()
                .map(|v| unit.convert(v))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_values_by_kind() {
        assert_eq!(source(0, "rp_filter"), Some(Src::Inet(7)));
        assert_eq!(
            source(1, "router_solicitation_interval"),
            Some(Src::Inet6(8, Unit::MsToSec))
        );
        assert_eq!(
            source(2, "gc_stale_time"),
            Some(Src::Neigh(6, Unit::MsToSec))
        );
        assert_eq!(source(3, "locktime"), None);
        assert_eq!(source(1, "regen_min_advance"), None);
        assert_eq!(source(4, "rp_filter"), None);

        let d = Dev {
            inet: Some(vec![1; 8]),
            inet6: Some(vec![0, 0, 0, 0, 0, 0, 0, 0, 4999]),
            ..Dev::default()
        };
        assert!(has(&d, 0) && has(&d, 1) && !has(&d, 2) && !has(&d, 3));
        assert_eq!(value(&d, 0, Src::Inet(7)), Some(1));
        // a slot past the array the kernel sent
        assert_eq!(value(&d, 0, Src::Inet(8)), None);
        assert_eq!(value(&d, 1, Src::Inet6(8, Unit::MsToSec)), Some(4));
        assert_eq!(value(&d, 2, Src::Neigh(6, Unit::MsToSec)), None);
    }
}
