//! The apply plan: the saved keys of one phase in write order, borrowed from the image, with
//! each saved device name mapped to its live name once.
//!
//! Nothing here is allocated per key: at 2,000 links an image holds 240,000 per-device keys,
//! and cloning each path (four strings) cost more than the netlink dump apply compares them
//! against.

use std::collections::{HashMap, HashSet};

use super::layout::DIRS;
use super::procfs;
use super::saved::{Key, Saved};
use super::{is_early, Phase, EARLY, FIREWALLED};
use crate::error::{NetstateError, Result};

/// Write order groups: `ip_forward`, `conf/all`, `conf/default`, `neigh/default`, other
/// namespace-wide keys, then per-device keys: the Early names in [`EARLY`] order, the rest.
const RANKS: usize = 5 + EARLY.len() + 1;

/// One planned key; 16 bytes, as a plan holds one per key of the image.
pub(super) struct Item {
    /// The key's index in the saved keys.
    key: u32,
    /// The last path component, as an index into `Plan::names`.
    name: u32,
    /// For a device key, its live name as an index into `Plan::devs`.
    dev: Option<u32>,
    /// For a device key under one of [`DIRS`], its index there.
    dir: Option<u8>,
}

impl Item {
    pub fn name(&self) -> usize {
        self.name as usize
    }

    pub fn dev(&self) -> Option<usize> {
        self.dev.map(|d| d as usize)
    }

    pub fn dir(&self) -> Option<usize> {
        self.dir.map(usize::from)
    }
}

pub(super) struct Plan<'a> {
    saved: &'a Saved,
    /// Items by write-order rank; [`Plan::items`] walks them in order.
    ranks: Vec<Vec<Item>>,
    /// Live device names, indexed by `Item::dev`.
    pub devs: Vec<String>,
    /// Last path components, indexed by `Item::name`.
    pub names: Vec<&'a str>,
    name_ids: HashMap<&'a str, usize>,
    /// Whether any per-device `neigh` key is planned (apply then dumps the neighbour tables).
    pub has_neigh: bool,
}

impl<'a> Plan<'a> {
    /// The keys of `phase` in write order: `ip_forward`, then `conf/all`, `conf/default`,
    /// `neigh/default` (they propagate), other namespace-wide keys, then per-device keys,
    /// Early ones first in [`EARLY`] order. Early takes the [`EARLY`] names of `ipv6/conf/*`,
    /// `all` and `default` included. `rename` maps a saved device name to its live name;
    /// `None` drops that device's keys. Equal ranks keep the saved order.
    pub fn new(
        saved: &'a Saved,
        phase: Phase,
        rename: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Plan<'a>> {
        let mut ranks: Vec<Vec<Item>> = (0..RANKS).map(|_| Vec::new()).collect();
        let mut devs = Vec::new();
        let mut dev_ids: HashMap<&'a str, Option<usize>> = HashMap::new();
        // the keys of one device come together: remember the last device's answer
        let mut last_dev: Option<(&'a str, Option<usize>)> = None;
        let mut names = Interner::default();
        let mut has_neigh = false;
        // the components of the key at hand (one buffer for all)
        let mut path: Vec<&'a str> = Vec::new();
        for (index, s) in saved.iter().enumerate() {
            let p = |i: usize| s.part(i).unwrap_or_default();
            // conf/all and conf/default of these names are Early too: `all/disable_ipv6` set
            // after addresses exist would flush every device's IPv6 addresses
            let early = s.len() == 4 && is_early(p(0), p(1), p(3));
            let firewalled = FIREWALLED.contains(&p(0));
            let wanted = match phase {
                Phase::Early => early,
                Phase::Late => true,
                Phase::Rest => !early && !firewalled,
                Phase::Firewalled => !early && firewalled,
            };
            // each phase checks its own keys (together the phases take every key once)
            if !wanted {
                continue;
            }
            path.clear();
            path.extend(s.path());
            procfs::check_path(&path)?;
            let saved_dev = procfs::device_of(&path).and(s.part(2));
            let rank = match saved_dev {
                Some(_) => {
                    5 + EARLY
                        .iter()
                        .position(|e| *e == p(3))
                        .filter(|_| early)
                        .unwrap_or(EARLY.len())
                }
                None => match (s.len(), p(0), p(1), p(2)) {
                    (2, "ipv4", "ip_forward", _) => 0,
                    (4, _, "conf", "all") => 1,
                    (4, _, "conf", "default") => 2,
                    (4, _, "neigh", "default") => 3,
                    _ => 4,
                },
            };
            let dev = match saved_dev {
                None => None,
                Some(d) => {
                    let id = match last_dev {
                        Some((l, id)) if l == d => id,
                        _ => *dev_ids.entry(d).or_insert_with(|| {
                            rename(d).map(|live| {
                                devs.push(live);
                                devs.len() - 1
                            })
                        }),
                    };
                    last_dev = Some((d, id));
                    match id {
                        Some(id) => Some(id),
                        None => continue,
                    }
                }
            };
            let dir = dev.and_then(|_| DIRS.iter().position(|d| *d == (p(0), p(1))));
            has_neigh |= dev.is_some() && p(1) == "neigh";
            let name = names.id(s.last().unwrap_or_default());
            let item = Item {
                key: small(index)?,
                name: small(name)?,
                dev: dev.map(small).transpose()?,
                dir: dir.and_then(|d| u8::try_from(d).ok()),
            };
            if let Some(r) = ranks.get_mut(rank) {
                r.push(item);
            }
        }
        Ok(Plan {
            saved,
            ranks,
            devs,
            names: names.names,
            name_ids: names.ids,
            has_neigh,
        })
    }

    /// The items in write order.
    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.ranks.iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.ranks.iter().all(Vec::is_empty)
    }

    /// The saved key of an item; a device key's live device name is [`Plan::dev`].
    fn key(&self, it: &Item) -> Key<'a> {
        // every item was made from a key of `saved`
        self.saved.get(it.key as usize).unwrap_or_default()
    }

    /// The saved value of a key.
    pub fn value(&self, it: &Item) -> &'a str {
        self.key(it).value()
    }

    /// The live device name of a per-device key.
    pub fn dev(&self, it: &Item) -> Option<&str> {
        it.dev().and_then(|i| self.devs.get(i)).map(String::as_str)
    }

    /// The last path component of a key.
    pub fn name(&self, it: &Item) -> &'a str {
        self.names.get(it.name()).copied().unwrap_or_default()
    }

    /// The live path of a key.
    pub fn path(&self, it: &Item) -> Vec<String> {
        let dev = self.dev(it);
        let key = self.key(it);
        key.path()
            .enumerate()
            .map(|(i, c)| match dev {
                Some(d) if i == 2 => d.to_string(),
                _ => c.to_string(),
            })
            .collect()
    }

    /// Appends the live path of a key joined with '/'.
    pub fn write_path(&self, it: &Item, out: &mut String) {
        let dev = self.dev(it);
        for (i, c) in self.key(it).path().enumerate() {
            if i > 0 {
                out.push('/');
            }
            match dev {
                Some(d) if i == 2 => out.push_str(d),
                _ => out.push_str(c),
            }
        }
    }

    /// The index of a last path component, if any planned key ends in it.
    pub fn name_id(&self, name: &str) -> Option<usize> {
        self.name_ids.get(name).copied()
    }
}

/// An index kept in 32 bits (an image would need billions of keys to overflow it).
fn small(i: usize) -> Result<u32> {
    u32::try_from(i).map_err(|_| NetstateError::invalid("too many sysctl keys in image"))
}

/// Numbers the last path components. Every device has the same keys in the same order, so
/// the name that followed the previous one last time is tried before hashing.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, usize>,
    names: Vec<&'a str>,
    next: Vec<Option<usize>>,
    prev: Option<usize>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, name: &'a str) -> usize {
        let guess = self.prev.and_then(|p| self.next.get(p).copied().flatten());
        let id = match guess {
            Some(g) if self.names.get(g) == Some(&name) => g,
            _ => {
                let Interner {
                    ids, names, next, ..
                } = &mut *self;
                let id = *ids.entry(name).or_insert_with(|| {
                    names.push(name);
                    next.push(None);
                    names.len() - 1
                });
                if let Some(slot) = self.prev.and_then(|p| self.next.get_mut(p)) {
                    *slot = Some(id);
                }
                id
            }
        };
        self.prev = Some(id);
        id
    }
}

/// Live paths of planned keys, tested against plan items by name first, so that testing
/// every item of a large plan against a few paths looks up only likely matches: per-device
/// keys of [`DIRS`] by device name, the rest by their path joined with '/' (no component
/// contains one: [`procfs::check_path`]), written into a buffer kept across lookups.
pub(super) struct PathSet {
    /// live device name → (index in [`DIRS`], name index) of its keys in the set
    devs: HashMap<String, Vec<(usize, usize)>>,
    paths: HashSet<String>,
    names: Vec<bool>,
    scratch: String,
}

impl PathSet {
    pub fn new(plan: &Plan<'_>) -> PathSet {
        PathSet {
            devs: HashMap::new(),
            paths: HashSet::new(),
            names: vec![false; plan.names.len()],
            scratch: String::new(),
        }
    }

    /// Adds a path; one no planned key ends in cannot match and is dropped.
    pub fn insert(&mut self, plan: &Plan<'_>, path: Vec<String>) {
        let Some(id) = path.last().and_then(|n| plan.name_id(n)) else {
            return;
        };
        if let Some(b) = self.names.get_mut(id) {
            *b = true;
        }
        match path.as_slice() {
            [fam, dir, dev, _]
                if procfs::device_of(&path).is_some()
                    && DIRS.contains(&(fam.as_str(), dir.as_str())) =>
            {
                let k = DIRS
                    .iter()
                    .position(|d| *d == (fam.as_str(), dir.as_str()))
                    .unwrap_or_default();
                self.devs.entry(dev.clone()).or_default().push((k, id));
            }
            _ => {
                self.paths.insert(path.join("/"));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.devs.is_empty() && self.paths.is_empty()
    }

    pub fn contains(&mut self, plan: &Plan<'_>, it: &Item) -> bool {
        if self.names.get(it.name()) != Some(&true) {
            return false;
        }
        if let (Some(k), Some(dev)) = (it.dir(), plan.dev(it)) {
            return self
                .devs
                .get(dev)
                .is_some_and(|keys| keys.contains(&(k, it.name())));
        }
        self.scratch.clear();
        plan.write_path(it, &mut self.scratch);
        self.paths.contains(self.scratch.as_str())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::sysctl::test_key as s;

    fn paths(plan: &Plan<'_>) -> Vec<String> {
        plan.items().map(|i| plan.path(i).join("/")).collect()
    }

    #[test]
    fn plan_orders_propagating_keys_first() {
        let saved = vec![
            s("ipv4/conf/v.1/rp_filter", "2"),
            s("core/somaxconn", "1024"),
            s("ipv6/conf/v.1/accept_dad", "0"),
            s("ipv4/conf/default/rp_filter", "1"),
            s("ipv6/conf/v.1/disable_ipv6", "1"),
            s("ipv4/conf/all/rp_filter", "1"),
            s("ipv4/ip_forward", "1"),
            s("ipv6/conf/default/accept_dad", "0"),
            s("ipv6/conf/all/disable_ipv6", "1"),
            s("netfilter/nf_conntrack_max", "4096"),
            s("bridge/bridge-nf-call-iptables", "0"),
        ];
        let id = |d: &str| Some(d.to_string());
        let saved = Saved::from_pb(&saved);
        let late = Plan::new(&saved, Phase::Late, &id).unwrap();
        assert_eq!(
            paths(&late),
            [
                "ipv4/ip_forward",
                "ipv4/conf/all/rp_filter",
                "ipv6/conf/all/disable_ipv6",
                "ipv4/conf/default/rp_filter",
                "ipv6/conf/default/accept_dad",
                "core/somaxconn",
                "netfilter/nf_conntrack_max",
                "bridge/bridge-nf-call-iptables",
                "ipv6/conf/v.1/disable_ipv6",
                "ipv6/conf/v.1/accept_dad",
                "ipv4/conf/v.1/rp_filter",
            ]
        );
        assert!(!late.has_neigh);
        let early = Plan::new(&saved, Phase::Early, &id).unwrap();
        assert_eq!(
            paths(&early),
            [
                "ipv6/conf/all/disable_ipv6",
                "ipv6/conf/default/accept_dad",
                "ipv6/conf/v.1/disable_ipv6",
                "ipv6/conf/v.1/accept_dad"
            ]
        );
        // beside the firewall: no Early name (DAD is suspended meanwhile), nothing the
        // firewall may bring into existence
        let rest = Plan::new(&saved, Phase::Rest, &id).unwrap();
        assert_eq!(
            paths(&rest),
            [
                "ipv4/ip_forward",
                "ipv4/conf/all/rp_filter",
                "ipv4/conf/default/rp_filter",
                "core/somaxconn",
                "ipv4/conf/v.1/rp_filter",
            ]
        );
        let fw = Plan::new(&saved, Phase::Firewalled, &id).unwrap();
        assert_eq!(
            paths(&fw),
            [
                "netfilter/nf_conntrack_max",
                "bridge/bridge-nf-call-iptables"
            ]
        );
        // the three take every key of Late once
        let mut split: Vec<String> = [paths(&early), paths(&rest), paths(&fw)].concat();
        let mut all = paths(&late);
        split.sort();
        all.sort();
        assert_eq!(split, all);
    }

    #[test]
    fn plan_renames_devices_once_and_skips_unmapped_ones() {
        let saved = vec![
            s("ipv4/conf/eth0.100/rp_filter", "2"),
            s("ipv4/conf/gone/rp_filter", "2"),
            s("ipv4/neigh/eth0.100/locktime", "250"),
        ];
        let calls = std::cell::Cell::new(0);
        let rename = |d: &str| {
            calls.set(calls.get() + 1);
            match d {
                "eth0.100" => Some("eth1.100".to_string()),
                _ => None,
            }
        };
        let saved = Saved::from_pb(&saved);
        let late = Plan::new(&saved, Phase::Late, &rename).unwrap();
        assert_eq!(
            paths(&late),
            [
                "ipv4/conf/eth1.100/rp_filter",
                "ipv4/neigh/eth1.100/locktime"
            ]
        );
        assert_eq!(calls.get(), 2, "one rename per saved device");
        assert!(late.has_neigh);
        let dirs: Vec<_> = late.items().map(Item::dir).collect();
        assert_eq!(dirs, [Some(0), Some(2)]);
        assert_eq!(late.names, ["rp_filter", "locktime"]);
    }

    #[test]
    fn plan_rejects_paths_leaving_proc_sys_net() {
        let saved = vec![s("../../sysrq-trigger", "b")];
        let saved = Saved::from_pb(&saved);
        let e = Plan::new(&saved, Phase::Late, &|d| Some(d.to_string()))
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "invalid sysctl key [\"..\", \"..\", \"sysrq-trigger\"] in image"
        );
        // each phase checks the keys it writes
        let rest = Plan::new(&saved, Phase::Rest, &|d| Some(d.to_string()));
        assert!(rest.is_err());
        let saved = vec![s("netfilter/../../sysrq-trigger", "b")];
        let saved = Saved::from_pb(&saved);
        let fw = Plan::new(&saved, Phase::Firewalled, &|d| Some(d.to_string()));
        assert!(fw.is_err());
    }

    #[test]
    fn path_set_matches_live_paths() {
        let saved = vec![
            s("ipv4/conf/a/forwarding", "1"),
            s("ipv6/conf/a/forwarding", "1"),
            s("ipv4/conf/a/rp_filter", "1"),
            s("ipv4/conf/all/forwarding", "1"),
            s("mpls/conf/a/input", "1"),
            s("core/somaxconn", "1"),
        ];
        let rename = |_: &str| Some("b".to_string());
        let saved = Saved::from_pb(&saved);
        let plan = Plan::new(&saved, Phase::Late, &rename).unwrap();
        let mut set = PathSet::new(&plan);
        assert!(set.is_empty());
        let joined: Vec<String> = plan
            .items()
            .map(|it| {
                let mut j = String::new();
                plan.write_path(it, &mut j);
                assert_eq!(j, plan.path(it).join("/"));
                j
            })
            .collect();
        assert!(joined.contains(&"mpls/conf/b/input".to_string()));
        let v = |p: &str| p.split('/').map(String::from).collect::<Vec<_>>();
        set.insert(&plan, v("ipv4/conf/b/forwarding"));
        set.insert(&plan, v("ipv4/conf/b/accept_redirects"));
        set.insert(&plan, v("ipv4/conf/all/forwarding"));
        set.insert(&plan, v("mpls/conf/b/input"));
        assert!(!set.is_empty());
        let hits: Vec<String> = plan
            .items()
            .filter(|i| set.contains(&plan, i))
            .map(|i| plan.path(i).join("/"))
            .collect();
        assert_eq!(
            hits,
            [
                "ipv4/conf/all/forwarding",
                "ipv4/conf/b/forwarding",
                "mpls/conf/b/input"
            ]
        );
        // no planned key ends in accept_redirects: dropped
        assert_eq!(set.devs.len(), 1);
        assert_eq!(set.devs["b"], [(0, 0)]);
        assert_eq!(set.paths.len(), 2);
    }

    #[test]
    fn interner_numbers_names_whatever_the_order() {
        let mut n = Interner::default();
        let ids: Vec<usize> = ["a", "b", "c", "a", "b", "c", "a", "c", "b", "x", "b"]
            .iter()
            .map(|s| n.id(s))
            .collect();
        assert_eq!(ids, [0, 1, 2, 0, 1, 2, 0, 2, 1, 3, 1]);
        assert_eq!(n.names, ["a", "b", "c", "x"]);
    }
}
