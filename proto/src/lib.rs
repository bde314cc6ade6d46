//! crhook-proto: the protobuf messages of every crhook image kind, generated at build time
//! from `proto/crhook/*.proto` by prost-build with protox (no protoc binary needed).
//!
//! Owns the wire schema only (the types, and [`schema`]: their wire layout for memory
//! budgets); framing, magic numbers and versions live in crhook-core.

#![allow(clippy::all)]

pub use prost;
pub use prost::Message;

pub mod schema;

include!(concat!(env!("OUT_DIR"), "/crhook.rs"));
