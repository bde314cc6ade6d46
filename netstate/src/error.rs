//! The one error type of crhook-netstate. Netlink answers carry only an errno, so every call
//! site adds the operation, the object and the namespace.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetstateError {
    #[error("{op} {path}")]
    Netns {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {object} in {netns}")]
    Netlink {
        op: String,
        object: String,
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {object} in {netns}: {message}")]
    NetlinkExt {
        op: String,
        object: String,
        netns: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {op} in {netns}: {what}")]
    Protocol {
        op: String,
        netns: String,
        what: String,
    },
    #[error("{op} {path}")]
    Io {
        op: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} in {netns} {status}: {stderr}")]
    Program {
        program: String,
        netns: String,
        status: String,
        stderr: String,
    },
    #[error(transparent)]
    Image(#[from] crhook_core::ImageError),
    #[error("restore into {netns} refused, {} conflict(s): {}", conflicts.len(), join(conflicts))]
    Conflicts {
        netns: String,
        conflicts: Vec<crate::fields::Conflict>,
    },
    #[error("restore into {netns} failed and was rolled back: {}", errors.join("; "))]
    RolledBack { netns: String, errors: Vec<String> },
    #[error("restore into {netns} failed and rollback was incomplete: {}", errors.join("; "))]
    RollbackFailed { netns: String, errors: Vec<String> },
    #[error("{what}")]
    Invalid { what: String },
    #[error("{what}")]
    Unsupported { what: String },
}

pub type Result<T, E = NetstateError> = std::result::Result<T, E>;

impl NetstateError {
    pub fn invalid(what: impl Into<String>) -> Self {
        NetstateError::Invalid { what: what.into() }
    }
}

/// The error and all its sources on one line ("a: b: c"), for messages that collect several
/// errors as text.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn join(c: &[crate::fields::Conflict]) -> String {
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
