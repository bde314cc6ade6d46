//! Links: capture (every kind, veth peers followed across namespaces) and rebuild (created
//! down with ifindex and MAC pinned, masters, MTU after enslaving, port settings, then up).

pub mod capture;
pub mod create;
pub mod far_end;
pub mod kinds;
pub mod peer;
pub mod raw;
pub mod tun;
pub mod view;
pub mod vlan;

pub use capture::{capture, RawLinks};
pub use peer::PeerFinder;
