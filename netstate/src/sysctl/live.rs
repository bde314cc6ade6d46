//! The live per-device values apply compares an image against, read once per apply the way
//! capture reads them: one link dump, and one neighbour-table dump when the plan has
//! per-device `neigh` keys. Values are looked up key by key rather than collected into a map
//! of every key (at 2,000 links that map of 240,000 paths cost more than the dumps).
//! Keys with no exact netlink counterpart are not held here: apply reads their files.

use std::collections::HashMap;

use super::capture;
use super::dump::{self, Dev};
use super::layout::{self, Src, DIRS};
use super::plan::{Item, Plan};
use crate::error::Result;
use crate::nl::Nl;

pub(super) struct Live {
    devs: Vec<Dev>,
    /// `Plan::devs` index → `devs` index.
    dev_map: Vec<Option<usize>>,
    /// Per entry of [`DIRS`], by `Plan::names` index: where netlink carries the value, for
    /// the names this kernel's device directories have.
    srcs: [Vec<Option<Src>>; 4],
}

impl Live {
    /// Dumps the calling thread's namespace for the devices and names of `plan`.
    pub fn read(nl: &mut Nl, plan: &Plan<'_>) -> Result<Live> {
        let devs = dump::devices(nl, None, plan.has_neigh)?;
        let by_name: HashMap<&str, usize> = devs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.as_str(), i))
            .collect();
        let dev_map = plan
            .devs
            .iter()
            .map(|d| by_name.get(d.as_str()).copied())
            .collect();
        let mut srcs: [Vec<Option<Src>>; 4] = Default::default();
        for (k, (fam, dir)) in DIRS.iter().enumerate() {
            let with_dir = devs.iter().filter(|d| layout::has(d, k));
            let Some(names) = capture::template(fam, dir, with_dir, nl.netns())? else {
                continue;
            };
            srcs[k] = plan
                .names
                .iter()
                .map(|n| {
                    names
                        .binary_search_by(|t| t.as_str().cmp(n))
                        .ok()
                        .and_then(|_| layout::source(k, n))
                })
                .collect();
        }
        Ok(Live {
            devs,
            dev_map,
            srcs,
        })
    }

    /// The number `/proc` prints for a planned per-device key, if the dump carries it
    /// exactly.
    pub fn get(&self, it: &Item) -> Option<i64> {
        let k = it.dir()?;
        let src = (*self.srcs.get(k)?.get(it.name())?)?;
        let d = self.devs.get((*self.dev_map.get(it.dev()?)?)?)?;
        layout::value(d, k, src)
    }
}
