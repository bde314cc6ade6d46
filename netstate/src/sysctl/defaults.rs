//! The kernel's own sysctl values for a network namespace, to tell which saved keys a user
//! changed: every key of a fresh namespace, read in a private one ([`NetNs::private`]) by
//! the `/proc` walk (a fresh namespace has only `lo`, so the walk is quick). Needs the
//! privilege to create a namespace; callers without it show no comparison.
//!
//! [`NetNs::private`]: crate::netns::NetNs::private

use crhook_proto as pb;

use crate::error::Result;
use crate::netns::NetNs;

/// Every sysctl of a fresh namespace on this kernel.
pub fn kernel_defaults() -> Result<Vec<pb::Sysctl>> {
    let ns = NetNs::private("private namespace for reading sysctl defaults")?;
    let name = ns.name().to_string();
    ns.run(move || super::capture_proc_walk(&name))
}
