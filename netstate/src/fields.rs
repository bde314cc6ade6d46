//! One field of a saved object against the live one, as a person reads it: the dotted path
//! of the leaf that differs (`info.peer_mac`, `raw[2].value`), values the way `ip` prints
//! them (MACs and other bytes in hex, addresses dotted). `diff` lines and restore's conflicts
//! are both made of these, through [`crate::api::change_text`], so one object never shows as
//! a record per side: records and lists are walked down to their leaves, also where one side
//! has none (a link whose kind changed).

use serde::Serialize;
use serde_json::Value;

/// One field that differs between a saved object and the live one, values as `ip` prints
/// them (MACs in hex, addresses dotted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub saved: String,
    pub live: String,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::api::change_text(
            &self.field,
            &self.saved,
            &self.live,
        ))
    }
}

/// Every leaf field that differs, as a dotted path (`veth.peer_mac`), values formatted the
/// way `ip` prints them.
pub fn field_diffs<O: Serialize>(saved: &O, live: &O) -> Vec<FieldChange> {
    let s = serde_json::to_value(saved).unwrap_or_default();
    let l = serde_json::to_value(live).unwrap_or_default();
    let mut out = Vec::new();
    walk_diffs("", &s, &l, &mut out);
    if out.is_empty() && s != l {
        out.push(FieldChange {
            field: "value".into(),
            saved: fmt_value("", &s),
            live: fmt_value("", &l),
        });
    }
    out
}

/// Leaves a record or list only one side has is shown by, one line each; a larger one is
/// one line that counts them (`far_end.sysctls none -> 35 items`).
const ONE_SIDED_LEAVES: usize = 6;

fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(m) => m.values().map(leaves).sum(),
        Value::Array(a) if a.is_empty() => 0,
        Value::Array(a) if !is_bytes(v) => a.iter().map(leaves).sum(),
        Value::Null => 0,
        _ => 1,
    }
}

/// Nothing there: absent, or an empty list or record (protobuf does not tell them apart).
fn is_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// "35 items", "a record of 12 fields": a one-sided record or list too large to list.
fn count_of(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("{} items", a.len()),
        _ => format!("a record of {} fields", leaves(v)),
    }
}

fn walk_diffs(path: &str, s: &Value, l: &Value, out: &mut Vec<FieldChange>) {
    if s == l || (is_nothing(s) && is_nothing(l)) {
        return;
    }
    let one_sided = |v: &Value| {
        (v.is_object() || (v.is_array() && !is_bytes(v))) && leaves(v) > ONE_SIDED_LEAVES
    };
    if (s.is_null() && one_sided(l)) || (l.is_null() && one_sided(s)) {
        let show = |v: &Value| {
            if v.is_null() {
                "none".to_string()
            } else {
                count_of(v)
            }
        };
        out.push(FieldChange {
            field: if path.is_empty() {
                "value".into()
            } else {
                path.to_string()
            },
            saved: show(s),
            live: show(l),
        });
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    // a oneof's variant name adds nothing to the path
    let key = |k: &str| {
        if k.chars().next().is_some_and(char::is_uppercase) {
            path.to_string()
        } else {
            join(k)
        }
    };
    let null = Value::Null;
    let empty = serde_json::Map::new();
    match (s, l) {
        // records, also where one side has none (a link's kind-specific settings when the
        // kind changed): field by field, so no line holds a whole record
        (Value::Object(_), Value::Object(_) | Value::Null) | (Value::Null, Value::Object(_)) => {
            let (so, lo) = (
                s.as_object().unwrap_or(&empty),
                l.as_object().unwrap_or(&empty),
            );
            for (k, sv) in so {
                walk_diffs(&key(k), sv, lo.get(k).unwrap_or(&null), out);
            }
            for (k, lv) in lo {
                if !so.contains_key(k) {
                    walk_diffs(&key(k), &null, lv, out);
                }
            }
        }
        // lists other than byte strings (raw attributes, names): item by item, `field[i]`
        (Value::Array(_), Value::Array(_) | Value::Null) | (Value::Null, Value::Array(_))
            if !(is_bytes(s) && is_bytes(l)) =>
        {
            let none = Vec::new();
            let (sa, la) = (s.as_array().unwrap_or(&none), l.as_array().unwrap_or(&none));
            for i in 0..sa.len().max(la.len()) {
                walk_diffs(
                    &format!("{path}[{i}]"),
                    sa.get(i).unwrap_or(&null),
                    la.get(i).unwrap_or(&null),
                    out,
                );
            }
        }
        _ => out.push(FieldChange {
            field: if path.is_empty() {
                "value".into()
            } else {
                path.to_string()
            },
            saved: fmt_value(path, s),
            live: fmt_value(path, l),
        }),
    }
}

/// A byte string as serde gives it (a list of numbers up to 255), or nothing at all.
fn is_bytes(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().all(|x| x.as_u64().is_some_and(|n| n <= 255)),
        _ => false,
    }
}

/// A value as a person reads it: byte strings as MACs (6 bytes, or a field named like one),
/// IPv4/IPv6 addresses (4/16 bytes) or hex; other arrays and objects as compact JSON.
fn fmt_value(field: &str, v: &Value) -> String {
    let bytes: Option<Vec<u8>> = v.as_array().and_then(|a| {
        a.iter()
            .map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect()
    });
    match (v, bytes) {
        (Value::Null, _) => "none".into(),
        (Value::Array(a), Some(b)) if !a.is_empty() => {
            let leaf = field.rsplit('.').next().unwrap_or(field);
            let macish = leaf.contains("mac") || leaf == "lladdr" || leaf == "broadcast";
            if b.len() == 6 || (macish && b.len() != 4 && b.len() != 16) {
                b.iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            } else if b.len() == 4 || b.len() == 16 {
                crate::nla::ip_str(&b)
            } else {
                b.iter().map(|x| format!("{x:02x}")).collect()
            }
        }
        (Value::String(s), _) => s.clone(),
        _ => v.to_string(),
    }
}

/// "mtu 1500 -> 1400, kind veth -> macvlan" (saved, then live), the way diff prints one
/// field, long values shortened and at most [`MAX_LISTED`] fields, so a conflict stays one
/// readable line.
pub fn describe_diffs(d: &[FieldChange]) -> String {
    let short = |v: &str| -> String {
        if v.chars().count() > 60 {
            format!("{}...", v.chars().take(57).collect::<String>())
        } else {
            v.to_string()
        }
    };
    let mut parts: Vec<String> = d
        .iter()
        .take(MAX_LISTED)
        .map(|c| crate::api::change_text(&c.field, &short(&c.saved), &short(&c.live)))
        .collect();
    if d.len() > MAX_LISTED {
        parts.push(format!(
            "and {} more (crhook diff lists them)",
            d.len() - MAX_LISTED
        ));
    }
    parts.join(", ")
}

/// A link's IFF_* flags the way `ip link` prints them (`<BROADCAST,MULTICAST,UP>`); a value
/// that is not a number is returned as it is.
pub fn link_flags(v: &str) -> String {
    const NAMES: [(u32, &str); 19] = [
        (0x1, "UP"),
        (0x2, "BROADCAST"),
        (0x4, "DEBUG"),
        (0x8, "LOOPBACK"),
        (0x10, "POINTOPOINT"),
        (0x20, "NOTRAILERS"),
        (0x40, "RUNNING"),
        (0x80, "NOARP"),
        (0x100, "PROMISC"),
        (0x200, "ALLMULTI"),
        (0x400, "MASTER"),
        (0x800, "SLAVE"),
        (0x1000, "MULTICAST"),
        (0x2000, "PORTSEL"),
        (0x4000, "AUTOMEDIA"),
        (0x8000, "DYNAMIC"),
        (0x1_0000, "LOWER_UP"),
        (0x2_0000, "DORMANT"),
        (0x4_0000, "ECHO"),
    ];
    let Ok(n) = v.parse::<u32>() else {
        return v.to_string();
    };
    let mut names: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| n & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    let known = NAMES.iter().fold(0, |a, (bit, _)| a | bit);
    if n & !known != 0 {
        names.push(format!("{:#x}", n & !known));
    }
    format!("<{}>", names.join(","))
}

/// Fields a one-line conflict names before it says how many more there are.
const MAX_LISTED: usize = 8;

/// Why restore refuses one object: which object, what is wrong, the fields that differ and,
/// where one exists, the option that resolves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// family: "link", "address", "route", "firewall", ...
    pub kind: String,
    /// the object as a person names it ("link eth0", "address 10.0.0.1/24 dev eth0"); empty
    /// when `problem` says it all
    pub object: String,
    pub problem: String,
    pub fields: Vec<FieldChange>,
    pub hint: Option<String>,
}

impl Conflict {
    /// A conflict described by one sentence.
    pub fn text(kind: &str, what: impl Into<String>) -> Conflict {
        Conflict {
            kind: kind.into(),
            object: String::new(),
            problem: what.into(),
            fields: Vec::new(),
            hint: None,
        }
    }
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.object.is_empty() {
            write!(f, "{}: ", self.object)?;
        }
        f.write_str(&self.problem)?;
        if !self.fields.is_empty() {
            write!(
                f,
                " differences (saved -> live): {}",
                describe_diffs(&self.fields)
            )?;
        }
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shown(s: Value, l: Value) -> Vec<String> {
        field_diffs(&s, &l)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn macs_are_hex_and_each_field_is_its_own_change() {
        let s = json!({"name": "eth0", "mac": [2, 0, 0, 0, 0, 1], "mtu": 1500,
                       "info": {"Veth": {"peer_name": "h0", "peer_mac": [2, 0, 0, 0, 0, 9]}}});
        let l = json!({"name": "eth0", "mac": [2, 0, 0, 0, 0, 2], "mtu": 1400,
                       "info": {"Veth": {"peer_name": "h1", "peer_mac": [2, 0, 0, 0, 0, 9]}}});
        assert_eq!(
            shown(s, l),
            [
                "info.peer_name h0 -> h1",
                "mac 02:00:00:00:00:01 -> 02:00:00:00:00:02",
                "mtu 1500 -> 1400"
            ]
        );
    }

    #[test]
    fn records_and_lists_are_walked_to_their_leaves() {
        // a kind that changed: no line holds a whole record
        let s = json!({"info": {"Veth": {"peer_name": "h0", "peer_mtu": 1500}}});
        let l = json!({"info": {"Macvlan": {"mode": 4}}});
        assert_eq!(
            shown(s, l),
            [
                "info.peer_mtu 1500 -> none",
                "info.peer_name h0 -> none",
                "info.mode none -> 4"
            ]
        );
        let s = json!({"raw": [{"kind": 5, "value": [1, 2]}, {"kind": 9, "value": [3]}]});
        let l = json!({"raw": [{"kind": 5, "value": [1, 3]}]});
        assert_eq!(
            shown(s, l),
            [
                "raw[0].value 0102 -> 0103",
                "raw[1].kind 9 -> none",
                "raw[1].value 03 -> none"
            ]
        );
        assert_eq!(
            shown(json!({"dst": [10, 0, 0, 1]}), json!({"dst": [10, 0, 0, 2]})),
            ["dst 10.0.0.1 -> 10.0.0.2"]
        );
    }

    #[test]
    fn a_large_one_sided_record_is_counted_and_nothing_equals_empty() {
        let many: Vec<String> = (0..35).map(|i| format!("k{i}=1")).collect();
        let s = json!({"far_end": null, "routes": null});
        let l = json!({"far_end": {"sysctls": many, "addresses": []}, "routes": []});
        assert_eq!(shown(s, l), ["far_end none -> a record of 35 fields"]);
        let s = json!({"sysctls": null});
        let l = json!({"sysctls": many});
        assert_eq!(shown(s, l), ["sysctls none -> 35 items"]);
    }

    #[test]
    fn link_flags_read_as_ip_prints_them() {
        assert_eq!(link_flags("4099"), "<UP,BROADCAST,MULTICAST>");
        assert_eq!(link_flags("65609"), "<UP,LOOPBACK,RUNNING,LOWER_UP>");
        assert_eq!(link_flags("none"), "none");
    }

    #[test]
    fn a_conflict_names_a_few_fields_and_counts_the_rest() {
        let d: Vec<FieldChange> = (0..10)
            .map(|i| FieldChange {
                field: format!("f{i}"),
                saved: "1".into(),
                live: "2".into(),
            })
            .collect();
        let t = describe_diffs(&d);
        assert!(t.starts_with("f0 1 -> 2, f1 1 -> 2, "), "{t}");
        assert!(
            t.ends_with("f7 1 -> 2, and 2 more (crhook diff lists them)"),
            "{t}"
        );
    }
}
