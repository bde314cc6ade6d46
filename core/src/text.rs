//! Readable text rendering of `show`'s JSON: one header line per file, one line per entry with
//! the fields that are set (`key=value`, nested messages in braces), and multi-line strings
//! (firewall rulesets) printed below their entry, indented.

use serde_json::Value;

/// Renders a file object or an array of file objects (an image directory).
pub fn render_text(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Array(files) => {
            for (i, f) in files.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                render_file(f, &mut out);
            }
        }
        other => render_file(other, &mut out),
    }
    out
}

fn render_file(f: &Value, out: &mut String) {
    let entries = f["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    out.push_str(&format!(
        "{}: {} ({}), format {}, {} {}\n",
        f["file"].as_str().unwrap_or("?"),
        f["magic"].as_str().unwrap_or("?"),
        f["message"].as_str().unwrap_or("?"),
        f["version"].as_str().unwrap_or("?"),
        entries.len(),
        if entries.len() == 1 {
            "entry"
        } else {
            "entries"
        },
    ));
    let firewall = f["magic"] == "firewall";
    for (i, e) in entries.iter().enumerate() {
        if firewall && e["tables"].as_array().is_some_and(|t| !t.is_empty()) {
            firewall_entry(i, e, out);
            continue;
        }
        let mut blocks = Vec::new();
        let line = fields(e, "", &mut blocks);
        out.push_str(&format!("  [{i}] {line}\n"));
        for (key, text) in blocks {
            out.push_str(&format!("      {key}:\n"));
            for l in text.lines() {
                out.push_str("        ");
                out.push_str(l);
                out.push('\n');
            }
        }
    }
}

fn indented(out: &mut String, pad: &str, text: &str) {
    for l in text.lines() {
        out.push_str(pad);
        out.push_str(l);
        out.push('\n');
    }
}

/// An nf_tables ruleset: each table in rule syntax when `rendered` holds it (iptables-save
/// text for iptables-nft's tables, nft's for the others), else its message payloads in hex.
fn firewall_entry(i: usize, e: &Value, out: &mut String) {
    let mut head = e.clone();
    if let Some(m) = head.as_object_mut() {
        m.remove("tables");
    }
    out.push_str(&format!("  [{i}] {}\n", fields(&head, "", &mut Vec::new())));
    for t in e["tables"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let r = &t["rendered"];
        let family = crate::summary::nft_family(t["family"].as_u64().unwrap_or(0));
        let name = t["name"].as_str().unwrap_or("?");
        if let (Some(label), Some(text)) = (r["label"].as_str(), r["text"].as_str()) {
            let syntax = r["syntax"].as_str().unwrap_or("nft");
            out.push_str(&format!(
                "      {label} (nf_tables {family} {name}, as {syntax} prints it):\n"
            ));
            indented(out, "        ", text);
            continue;
        }
        let why = r["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "      nf_tables table {family} {name} (kernel messages in hex{why}):\n"
        ));
        for key in [
            "table",
            "chains",
            "objects",
            "flowtables",
            "sets",
            "elements",
            "rules",
        ] {
            match &t[key] {
                Value::String(h) if !h.is_empty() => out.push_str(&format!("        {key}: {h}\n")),
                Value::Array(items) if !items.is_empty() => {
                    out.push_str(&format!("        {key}:\n"));
                    for x in items {
                        out.push_str(&format!("          {}\n", scalar(x)));
                    }
                }
                _ => {}
            }
        }
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s)
            if !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('"') =>
        {
            s.clone()
        }
        other => other.to_string(),
    }
}

/// `key=value` pairs of the set fields of an object; multi-line strings go to `blocks`.
fn fields(v: &Value, prefix: &str, blocks: &mut Vec<(String, String)>) -> String {
    match v {
        Value::Object(map) => map
            .iter()
            .filter(|(_, x)| !is_unset(x))
            .map(|(k, x)| {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match x {
                    Value::String(s) if s.contains('\n') => {
                        blocks.push((path, s.clone()));
                        format!("{k}=<{} lines below>", s.lines().count())
                    }
                    Value::Object(_) => format!("{k}={{{}}}", fields(x, &path, blocks)),
                    // Long lists of messages (an inventory's files) read better one per line.
                    Value::Array(items)
                        if prefix.is_empty()
                            && items.len() > 3
                            && items.iter().all(Value::is_object) =>
                    {
                        let lines: Vec<String> =
                            items.iter().map(|i| fields(i, &path, blocks)).collect();
                        blocks.push((path, lines.join("\n")));
                        format!("{k}=<{} below>", items.len())
                    }
                    Value::Array(items) => {
                        let parts: Vec<String> = items
                            .iter()
                            .map(|i| match i {
                                Value::Object(_) => format!("{{{}}}", fields(i, &path, blocks)),
                                other => scalar(other),
                            })
                            .collect();
                        format!("{k}=[{}]", parts.join(", "))
                    }
                    other => format!("{k}={}", scalar(other)),
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => scalar(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_set_fields_and_blocks() {
        let v = json!({
            "file": "firewall.img", "magic": "firewall", "message": "crhook.FirewallRuleset",
            "version": "1.0",
            "entries": [
                {"source": "IPTABLES_NFT", "text": "*filter\nCOMMIT\n", "counters": false,
                 "info": {"veth": {"peer_name": "h0", "peer_mtu": 0}}, "alt": ["a b"]}
            ]
        });
        let t = render_text(&v);
        assert!(
            t.starts_with("firewall.img: firewall (crhook.FirewallRuleset), format 1.0, 1 entry\n")
        );
        assert!(t.contains("[0] "), "{t}");
        assert!(t.contains("source=IPTABLES_NFT"), "{t}");
        assert!(t.contains("text=<2 lines below>"), "{t}");
        assert!(t.contains("info={veth={peer_name=h0}}"), "{t}");
        assert!(t.contains("alt=[\"a b\"]"), "{t}");
        assert!(!t.contains("counters"), "{t}");
        assert!(
            t.contains("      text:\n        *filter\n        COMMIT\n"),
            "{t}"
        );
    }

    #[test]
    fn long_lists_of_messages_go_below() {
        let files: Vec<Value> = (0..4).map(|i| json!({"name": format!("f{i}")})).collect();
        let v = json!({"file": "inventory.img", "entries": [{"files": files}]});
        let t = render_text(&v);
        assert!(
            t.contains("[0] files=<4 below>\n      files:\n        name=f0\n"),
            "{t}"
        );
    }
}
