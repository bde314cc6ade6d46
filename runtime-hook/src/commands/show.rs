//! `crhook show PATH [--format json|text]` and `crhook show --magics`.
//!
//! Decoding is crhook-core's and needs no privilege. Two additions need a private network
//! namespace, so root, and are left out (with a note saying so) without it: nf_tables tables
//! in rule syntax (replayed there and listed by `nft`/`iptables-nft-save`, see
//! `crhook_netstate::firewall::syntax`; added to JSON as each table's `rendered`) and, in a
//! directory's text summary, which sysctls differ from the kernel's defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use crhook_core::{Kind, ShowContext, ShowFormat};
use crhook_netstate::crhook_proto::{FirewallRuleset, FirewallSource};
use crhook_netstate::firewall::syntax;
use serde_json::{json, Value};

use crate::cli::{ShowArgs, ShowFormatArg};

pub fn run(args: &ShowArgs) -> anyhow::Result<()> {
    if args.magics {
        let text = serde_json::to_string_pretty(&crhook_core::magics_json())?;
        return super::print_out(&text);
    }
    let Some(path) = &args.path else {
        anyhow::bail!("no PATH given");
    };
    let format = match args.format {
        ShowFormatArg::Json => ShowFormat::Json,
        ShowFormatArg::Text => ShowFormat::Text,
    };
    // ImageError names the file and the offset already
    let mut value = crhook_core::show_json(path)?;
    let mut cx = ShowContext::default();
    let dir = path.is_dir();
    let files: Vec<&mut Value> = match &mut value {
        Value::Array(files) => files.iter_mut().collect(),
        one => vec![one],
    };
    for file in files {
        if file["magic"] == Kind::Firewall.name() {
            let img = if dir {
                // a child image shows its parent's firewall from the parent's directory
                let holder = file["dir"].as_str().map_or(path.clone(), PathBuf::from);
                holder.join(Kind::Firewall.file_name())
            } else {
                path.clone()
            };
            add_rule_syntax(&img, file, &mut cx.notes)?;
        }
    }
    if dir {
        // judged with this host's key where it can be read; a file alone has no seal
        let seal = crhook_core::seal_status(path);
        if let Value::Array(files) = &mut value {
            if let Some(f) = files.iter_mut().find(|f| f["magic"] == Kind::Seal.name()) {
                f["verified"] = Value::String(seal.clone());
            }
        }
        cx.seal = Some(seal);
    }
    if dir && format == ShowFormat::Text {
        cx.sysctl_defaults = crhook_netstate::sysctl::kernel_defaults().ok().map(|v| {
            v.into_iter()
                .map(|s| (s.path, s.value))
                .collect::<BTreeMap<_, _>>()
        });
    }
    let text = crhook_core::show_value(path, &value, format, &cx)?;
    super::print_out(text.trim_end())
}

/// Puts each nf_tables table of firewall image `img` in rule syntax into its JSON
/// (`rendered`: `label`, `syntax` (`iptables-save` or `nft`) and `text`), or the reason it
/// could not be (`rendered.error`).
fn add_rule_syntax(img: &Path, file: &mut Value, notes: &mut Vec<String>) -> anyhow::Result<()> {
    let rulesets: Vec<FirewallRuleset> = crhook_core::read_file(img, Kind::Firewall)
        .with_context(|| format!("read {}", img.display()))?;
    let tables: Vec<_> = rulesets
        .iter()
        .filter(|r| r.source == FirewallSource::Nftables as i32)
        .flat_map(|r| r.tables.iter())
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    let rendered: Vec<Value> = match syntax::render(&tables) {
        Ok(v) => v
            .into_iter()
            .map(|r| match r {
                Ok(t) => json!({
                    "label": t.label(),
                    "syntax": if t.iptables.is_some() { "iptables-save" } else { "nft" },
                    "text": t.text(),
                }),
                Err(e) => json!({ "error": e }),
            })
            .collect(),
        Err(e) => {
            let why = crhook_netstate::error::chain(&e);
            notes.push(format!(
                "nf_tables tables are shown as kernel messages: listing them in rule syntax needs root (a private network namespace): {why}"
            ));
            let short = format!("rule syntax needs root: {why}");
            vec![json!({ "error": short }); tables.len()]
        }
    };
    let mut it = rendered.into_iter();
    let entries = file["entries"].as_array_mut().map(|v| v.iter_mut());
    for (r, e) in rulesets.iter().zip(entries.into_iter().flatten()) {
        if r.source != FirewallSource::Nftables as i32 {
            continue;
        }
        if let Some(ts) = e["tables"].as_array_mut() {
            for t in ts {
                if let (Some(obj), Some(v)) = (t.as_object_mut(), it.next()) {
                    obj.insert("rendered".into(), v);
                }
            }
        }
    }
    Ok(())
}
