//! Interface index bookkeeping. Saved addresses, routes, rules and neighbours refer to links by
//! ifindex; restore pins the saved ifindex where it is free, and where it is not (a CNI plugin
//! made eth0 first) maps the saved index to the live one by name.

use std::collections::HashMap;

#[derive(Debug, Default, Clone)]
pub struct IfMap {
    /// saved ifindex -> live ifindex
    saved_to_live: HashMap<u32, u32>,
    /// saved ifindex -> name
    saved_names: HashMap<u32, String>,
    /// live ifindex -> name
    live_names: HashMap<u32, String>,
}

impl IfMap {
    /// Identity map of one namespace's links (capture side).
    pub fn from_names(names: impl IntoIterator<Item = (u32, String)>) -> IfMap {
        let mut m = IfMap::default();
        for (i, n) in names {
            m.saved_to_live.insert(i, i);
            m.saved_names.insert(i, n.clone());
            m.live_names.insert(i, n);
        }
        m
    }

    /// Maps saved links to live ones by name.
    pub fn by_name(
        saved: impl IntoIterator<Item = (u32, String)>,
        live: impl IntoIterator<Item = (u32, String)>,
    ) -> IfMap {
        let mut m = IfMap::default();
        let mut live_by_name = HashMap::new();
        for (i, n) in live {
            live_by_name.insert(n.clone(), i);
            m.live_names.insert(i, n);
        }
        for (i, n) in saved {
            if let Some(l) = live_by_name.get(&n) {
                m.saved_to_live.insert(i, *l);
            }
            m.saved_names.insert(i, n);
        }
        m
    }

    /// The live ifindex for a saved one.
    pub fn live(&self, saved: u32) -> Option<u32> {
        self.saved_to_live.get(&saved).copied()
    }

    pub fn saved_name(&self, saved: u32) -> Option<&str> {
        self.saved_names.get(&saved).map(String::as_str)
    }

    pub fn live_name(&self, live: u32) -> Option<&str> {
        self.live_names.get(&live).map(String::as_str)
    }

    /// Name of an ifindex on the capture side (same as saved_name).
    pub fn name(&self, ifindex: u32) -> String {
        self.saved_names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("if{ifindex}"))
    }
}

/// The link maps the families' golden tests share: saved lo=1, vb=2, va=3, and the same links
/// restored as lo=1, vb=12, va=13.
#[cfg(test)]
pub mod fixtures {
    use super::IfMap;

    fn links(vb: u32, va: u32) -> [(u32, String); 3] {
        [
            (1, "lo".to_string()),
            (vb, "vb".to_string()),
            (va, "va".to_string()),
        ]
    }

    pub fn saved() -> IfMap {
        IfMap::from_names(links(2, 3))
    }

    pub fn moved() -> IfMap {
        IfMap::by_name(links(2, 3), links(12, 13))
    }
}
