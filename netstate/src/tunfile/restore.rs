//! Reopening the saved files once their devices exist again.
//!
//! Everything runs on one thread inside the namespace: a /dev/net/tun open is bound to the
//! namespace of the thread that opens it (TUNSETIFF looks the device up there), and ext-file
//! plugins reopen their files "in the calling thread's namespaces". Files come back in id
//! order (the order capture found them), tun and ext entries interleaved.

use std::os::fd::OwnedFd;

use crhook_core::ExtFilePlugin;
use crhook_proto as pb;
use serde_json::{json, Value};

use super::tun_plugin::{self, TunPlugin};
use super::ErrorSink;
use crate::api::{RestoreOptions, RestoredFile};
use crate::error::{NetstateError, Result};
use crate::netns::NetNs;
use crate::snapshot::Snapshot;

/// [`super::restore`] with extra plugins registered last (one named like an earlier plugin
/// replaces it).
pub fn restore_with_plugins(
    ns: &NetNs,
    snap: &Snapshot,
    opts: &RestoreOptions,
    extra: Vec<Box<dyn ExtFilePlugin>>,
) -> Result<Vec<RestoredFile>> {
    enum Entry<'a> {
        Tun(&'a pb::TunFile),
        Ext(&'a pb::ExtFile),
    }
    let mut entries: Vec<(u32, Entry<'_>)> = snap
        .tun_files
        .iter()
        .map(|t| (t.id, Entry::Tun(t)))
        .chain(snap.ext_files.iter().map(|e| (e.id, Entry::Ext(e))))
        .collect();
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    entries.sort_by_key(|(id, _)| *id);
    let registry = if snap.ext_files.is_empty() {
        None
    } else {
        let sink = ErrorSink::default();
        Some(super::registry(
            ns,
            opts.plugin_dir.as_deref(),
            TunPlugin::default(),
            extra,
            &sink,
        )?)
    };
    let netns = ns.name().to_string();
    ns.run(|| {
        let mut out = Vec::with_capacity(entries.len());
        for (_, e) in &entries {
            match e {
                Entry::Tun(t) => {
                    let f = tun_plugin::open(t)?;
                    out.push(RestoredFile {
                        header: tun_header(t),
                        fd: OwnedFd::from(f),
                    });
                }
                Entry::Ext(x) => {
                    let fd = registry
                        .as_ref()
                        .ok_or_else(|| NetstateError::invalid("plugin registry missing"))?
                        .require(&x.plugin)
                        .and_then(|p| p.restore(&x.payload))
                        .map_err(|e| {
                            NetstateError::invalid(format!(
                                "restore ext file {} ({}) in {netns}: {}",
                                x.id,
                                x.path,
                                super::chain(&e)
                            ))
                        })?;
                    out.push(RestoredFile {
                        header: ext_header(x),
                        fd,
                    });
                }
            }
        }
        Ok(out)
    })
}

fn holders(h: &[pb::FileHolder]) -> Value {
    Value::Array(
        h.iter()
            .map(|h| json!({ "pid": h.pid, "fd": h.fd }))
            .collect(),
    )
}

/// The hand-off header of a tun file: which descriptors it was, on which device, how.
pub fn tun_header(t: &pb::TunFile) -> Value {
    json!({
        "id": t.id,
        "kind": "tun",
        "holders": holders(&t.holders),
        "device": t.device,
        "flags": t.flags,
        "detached": t.detached,
        "vnet_hdr_sz": t.vnet_hdr_sz,
    })
}

/// The hand-off header of a file a plugin restored.
pub fn ext_header(x: &pb::ExtFile) -> Value {
    json!({
        "id": x.id,
        "kind": "ext",
        "plugin": x.plugin,
        "path": x.path,
        "holders": holders(&x.holders),
        "device": "",
        "flags": 0,
        "detached": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_holders_device_and_queue_state() {
        let t = pb::TunFile {
            id: 2,
            device: "mq0".into(),
            flags: 0x1101,
            detached: true,
            holders: vec![
                pb::FileHolder { pid: 10, fd: 3 },
                pb::FileHolder { pid: 10, fd: 5 },
            ],
            vnet_hdr_sz: 10,
            file_flags: 0,
        };
        assert_eq!(
            tun_header(&t),
            json!({"id": 2, "kind": "tun", "holders": [{"pid": 10, "fd": 3}, {"pid": 10, "fd": 5}],
                   "device": "mq0", "flags": 0x1101, "detached": true, "vnet_hdr_sz": 10})
        );
        let x = pb::ExtFile {
            id: 3,
            plugin: "sample".into(),
            payload: b"x".to_vec(),
            holders: vec![pb::FileHolder { pid: 11, fd: 7 }],
            path: "/dev/tap6".into(),
        };
        let h = ext_header(&x);
        assert_eq!(h["plugin"], "sample");
        assert_eq!(h["holders"][0]["fd"], 7);
        assert_eq!(h["detached"], false);
    }
}
