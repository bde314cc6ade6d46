//! sample_plugin: an external crhook ext-file plugin for macvtap character devices
//! (`/dev/tapN`, where N is the ifindex of the macvtap link), speaking protocol version 1 of
//! docs/plugins.md. Install it by copying (or linking) it into the plugin directory; its file
//! name there is the plugin's name, stored in every file it claims.
//!
//! - claim: a descriptor whose path is `/dev/tap<digits>` and which is a character device of
//!   the `macvtap` major (/proc/devices).
//! - dump: the payload names the macvtap link (crhook runs plugins inside the namespace, so
//!   if_indextoname answers there) and the file's O_NONBLOCK: `{"ifname":..,"nonblock":..}`.
//! - restore: looks the link up by name again (its ifindex may differ after restore), opens
//!   `/dev/tap<ifindex>`, answers `{"fd": N}` and holds the file until stdin is closed.
//!
//! A queue's state (vnet header size, offloads) is not carried: this is a sample.

use std::ffi::{CStr, CString};
use std::fs::OpenOptions;
use std::io::{BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};

use serde_json::{json, Value};

fn main() {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    if let Err(e) = stdin.read_line(&mut line) {
        answer(&json!({ "error": format!("read request: {e}") }));
        std::process::exit(1);
    }
    let req: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => {
            answer(&json!({ "error": format!("request is not JSON: {e}") }));
            std::process::exit(1);
        }
    };
    if req["crhook_plugin"] != json!(1) {
        answer(
            &json!({ "error": format!("unsupported protocol version {}", req["crhook_plugin"]) }),
        );
        std::process::exit(1);
    }
    let r = match req["op"].as_str() {
        Some("claim") => Ok(json!({ "claim": claims(&req["file"]) })),
        Some("dump") => dump(&req["file"]).map(|p| json!({ "payload": p })),
        Some("restore") => restore(&req["payload"], &mut stdin),
        other => Err(format!("unknown op {other:?}")),
    };
    match r {
        Ok(v) => answer(&v),
        Err(e) => {
            answer(&json!({ "error": e }));
            std::process::exit(1);
        }
    }
}

fn answer(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// N of `/dev/tapN`.
fn tap_index(path: &str) -> Option<u32> {
    let n = path.strip_prefix("/dev/tap")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn macvtap_major() -> Option<u32> {
    let devices = std::fs::read_to_string("/proc/devices").ok()?;
    let chars = devices.split("Block devices:").next()?;
    chars.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let major = it.next()?.parse().ok()?;
        (it.next()? == "macvtap").then_some(major)
    })
}

fn claims(file: &Value) -> bool {
    let (Some(pid), Some(fd), Some(path)) = (
        file["pid"].as_u64(),
        file["fd"].as_i64(),
        file["path"].as_str(),
    ) else {
        return false;
    };
    if tap_index(path).is_none() {
        return false;
    }
    let Ok(meta) = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")) else {
        return false;
    };
    meta.file_type().is_char_device() && Some(libc::major(meta.rdev())) == macvtap_major()
}

fn dump(file: &Value) -> Result<String, String> {
    let path = file["path"].as_str().ok_or("file without path")?;
    let index = tap_index(path).ok_or_else(|| format!("{path} is not /dev/tapN"))?;
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: if_indextoname writes at most IF_NAMESIZE bytes into `buf`, which is that long.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(format!(
            "no link with ifindex {index} for {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: on success if_indextoname left a NUL-terminated name in `buf`.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let flags = file["fdinfo"]
        .as_str()
        .and_then(|i| i.lines().find_map(|l| l.strip_prefix("flags:")))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0);
    let nonblock = flags & libc::O_NONBLOCK as u32 != 0;
    Ok(json!({ "ifname": name, "nonblock": nonblock }).to_string())
}

fn restore(payload: &Value, stdin: &mut impl Read) -> Result<Value, String> {
    let p: Value = serde_json::from_str(payload.as_str().ok_or("payload is not a string")?)
        .map_err(|e| format!("payload is not JSON: {e}"))?;
    let name = p["ifname"].as_str().ok_or("payload without ifname")?;
    let c = CString::new(name).map_err(|e| format!("ifname {name:?}: {e}"))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(format!(
            "no link named {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let path = format!("/dev/tap{index}");
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if p["nonblock"].as_bool() == Some(true) {
        o.custom_flags(libc::O_NONBLOCK);
    }
    let f = o.open(&path).map_err(|e| format!("open {path}: {e}"))?;
    answer(&json!({ "fd": f.as_raw_fd() }));
    // hold the file until crhook has copied it and closed our stdin
    let mut rest = Vec::new();
    let _ = stdin.read_to_end(&mut rest);
    drop(f);
    std::process::exit(0);
}
