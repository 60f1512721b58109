//! ovnet's VXLAN forwarding engine (RFC 7348): per-VNI forwarding tables, the encap and decap
//! decisions, drop counters, and the worker threads that move frames between TAP devices and
//! the UDP underlay.
//!
//! Layers, bottom up: [`ovnet_wire`] parses and builds packets (no I/O); [`fdb`] holds the
//! forwarding state; [`encap`] and [`decap`] decide what happens to one packet as pure
//! functions; [`dataplane`] runs them on OS threads over [`ovnet_sys`]' TAPs and sockets.
//!
//! This crate knows nothing of etcd, gRPC or async runtimes: the control plane drives it through
//! [`Dataplane`]'s handful of calls and reads its [`CounterSnapshot`]s. No packet from the
//! network or a TAP can make it panic; every drop is counted by [`DropReason`].

#![forbid(unsafe_code)]

pub mod counters;
pub mod dataplane;
pub mod decap;
pub mod encap;
pub mod fdb;
pub mod peers;
mod steer;
mod worker;

#[cfg(test)]
mod testutil;

pub use counters::{CounterSnapshot, DropReason};
pub use dataplane::{
    Dataplane, DataplaneConfig, DataplaneError, DataplaneReport, DEFAULT_POLL, DEFAULT_SLICE,
};
pub use fdb::{FloodEntry, NetworkTable};
pub use ovnet_wire::{MacAddr, Vni};
pub use peers::{HeartbeatCounters, PeerHeard, HEARTBEAT_INTERVAL};
