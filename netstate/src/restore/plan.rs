//! The restore plan as a caller sees it: per family what is kept, what the runtime's version
//! replaces, what is added, and every conflict; the links adopted and the remaps in force.
//! `crhook restore --dry-run` prints it; a library caller inspects it. Built from the same
//! preparation restore applies, so what it shows is what restore would do.

use serde::Serialize;

use super::Prepared;
use crate::family::{Addresses, Conflict, Family, Neighbours, Nexthops, Routes, Rules, Tc};

/// One family's part of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FamilyPlan {
    pub kind: String,
    /// saved objects already live and identical: left alone
    pub keep: usize,
    /// saved objects on an adopted link that the runtime holds otherwise: its version stays
    pub runtime_kept: usize,
    /// what restore adds, as each is named in errors
    pub add: Vec<String>,
    /// what restore replaces (a live object that differs and is restore's to change)
    pub replace: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub netns: String,
    /// links kept as the runtime made them
    pub adopted: Vec<String>,
    /// remaps in force, `OLD=NEW`, most specific first (explicit and automatic)
    pub remaps: Vec<String>,
    /// of those, the ones found from adopted links' addresses
    pub auto_remaps: Vec<String>,
    pub families: Vec<FamilyPlan>,
    pub conflicts: Vec<Conflict>,
}

fn family<F: Family>(p: &crate::family::Plan<F::Obj>) -> FamilyPlan {
    FamilyPlan {
        kind: F::KIND.into(),
        keep: p.present,
        runtime_kept: p.runtime_kept,
        add: p.to_add.iter().map(F::describe).collect(),
        replace: Vec::new(),
    }
}

impl Plan {
    pub(super) fn of(p: &Prepared, netns: &str) -> Plan {
        let l = &p.links;
        let links = FamilyPlan {
            kind: "link".into(),
            keep: l.present,
            runtime_kept: l.adopted.len(),
            add: l
                .create
                .iter()
                .chain(l.partner.values())
                .map(|&i| {
                    let s = &p.snap.links[i];
                    match l.peers.get(&i) {
                        Some(pp) => format!(
                            "link {} ({}, far end {}{})",
                            s.name,
                            s.kind,
                            pp.name,
                            pp.master
                                .as_ref()
                                .map(|m| format!(" on {m}"))
                                .unwrap_or_default()
                        ),
                        None => format!("link {} ({})", s.name, s.kind),
                    }
                })
                .collect(),
            replace: l
                .configure
                .iter()
                .map(|(i, _)| format!("settings of link {}", p.snap.links[*i].name))
                .collect(),
        };
        let firewall = FamilyPlan {
            kind: "firewall".into(),
            keep: 0,
            runtime_kept: 0,
            add: p
                .firewall
                .iter()
                .flat_map(|r| {
                    let tables: Vec<String> = r
                        .tables
                        .iter()
                        .map(|t| {
                            format!(
                                "nf_tables table {} {} ({} rules)",
                                crate::firewall::family_label(t.family),
                                t.name,
                                t.rules.len()
                            )
                        })
                        .collect();
                    if tables.is_empty() {
                        vec![format!("{} ruleset", r.program)]
                    } else {
                        tables
                    }
                })
                .collect(),
            replace: Vec::new(),
        };
        let sysctls = FamilyPlan {
            kind: "sysctl".into(),
            keep: 0,
            runtime_kept: 0,
            add: if p.snap.sysctls.is_empty() {
                Vec::new()
            } else {
                vec![format!(
                    "{} saved values, written where the live value differs",
                    p.snap.sysctls.len()
                )]
            },
            replace: Vec::new(),
        };
        Plan {
            netns: netns.to_string(),
            adopted: p.transformed.adopted.clone(),
            remaps: p
                .transformed
                .remaps
                .list()
                .iter()
                .map(ToString::to_string)
                .collect(),
            auto_remaps: p
                .transformed
                .auto_remaps
                .iter()
                .map(ToString::to_string)
                .collect(),
            families: vec![
                links,
                firewall,
                family::<Addresses>(&p.addresses),
                family::<Nexthops>(&p.nexthops),
                family::<Routes>(&p.routes),
                family::<Rules>(&p.rules),
                family::<Neighbours>(&p.neighbours),
                family::<Tc>(&p.tc),
                sysctls,
            ],
            conflicts: p.conflicts.clone(),
        }
    }

    /// The plan as text: a header, one line per family, then what is added and every conflict.
    pub fn render(&self) -> String {
        let mut out = format!("restore plan for {}\n", self.netns);
        if !self.adopted.is_empty() {
            out.push_str(&format!("adopt: {}\n", self.adopted.join(", ")));
        }
        for r in &self.remaps {
            let auto = if self.auto_remaps.contains(r) {
                " (from an adopted link)"
            } else {
                ""
            };
            out.push_str(&format!("remap: {r}{auto}\n"));
        }
        for f in &self.families {
            if f.keep + f.runtime_kept + f.add.len() + f.replace.len() == 0 {
                continue;
            }
            out.push_str(&format!(
                "{}: keep {}, keep runtime's {}, add {}, replace {}\n",
                f.kind,
                f.keep,
                f.runtime_kept,
                f.add.len(),
                f.replace.len()
            ));
        }
        for f in &self.families {
            for a in &f.add {
                out.push_str(&format!("  add {a}\n"));
            }
            for r in &f.replace {
                out.push_str(&format!("  replace {r}\n"));
            }
        }
        for c in &self.conflicts {
            out.push_str(&format!("  conflict {c}\n"));
        }
        if self.conflicts.is_empty() {
            out.push_str("no conflicts: restore would proceed\n");
        } else {
            out.push_str(&format!(
                "{} conflict(s): restore would refuse and change nothing\n",
                self.conflicts.len()
            ));
        }
        out
    }
}
