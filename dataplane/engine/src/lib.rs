//! ovnet's VXLAN forwarding engine (RFC 7348): per-VNI forwarding tables, the encap and decap
//! decisions, drop counters, and the threads that move frames between TAP devices and the UDP
//! underlay.
//!
//! Layers, bottom up; every module depends only on those above it in this list:
//! - Decisions, no I/O: [`fdb`] (forwarding state), [`encap`] and [`decap`] (what happens to
//!   one packet, as pure functions over [`ovnet_wire`]'s views), [`port_security`] (what a
//!   container may send), [`storm`] (replication budgets), `steer` (which peer worker a flow
//!   goes to), [`counters`] (drop reasons and traffic counts), [`peers`] (traffic per peer
//!   VTEP).
//! - State: [`config`], [`clock`] (the ageing clock, injectable), [`capability`] (offloads
//!   accepted and refused), `network` (one VNI as the packet path sees it, its TAP), `uplink`
//!   (UDP tunnel GSO), `pacing` (poll window, load meter).
//! - Paths, over [`ovnet_sys`]' TAPs and sockets: `receive` (underlay to TAP), `pmtu` (the
//!   ICMP "too big" answers to frames that do not fit their path, rate-limited) and `send`
//!   (TAP to underlay: trains, segmentation, socket choice).
//! - Threads: `shared` (what they share), `worker` (the packet loop), `housekeeping` (the
//!   chores on a clock), and [`dataplane`], the handle that starts them.
//!
//! This crate knows nothing of etcd, gRPC or async runtimes: the control plane drives it through
//! [`Dataplane`]'s handful of calls and reads its [`CounterSnapshot`]s and
//! [`DataplaneReport`]. No packet from the network or a TAP can make it panic; every drop is
//! counted by [`DropReason`].

#![forbid(unsafe_code)]

mod buffer;
pub mod capability;
pub mod clock;
pub mod config;
pub mod counters;
pub mod dataplane;
pub mod decap;
pub mod encap;
pub mod fdb;
pub mod heartbeat;
mod housekeeping;
mod network;
mod pacing;
pub mod peers;
mod pmtu;
pub mod port_security;
mod receive;
mod send;
mod shared;
mod steer;
pub mod storm;
mod uplink;
mod worker;

#[cfg(test)]
mod testutil;

pub use capability::{Offload, OffloadState};
pub use clock::Clock;
pub use config::{
    default_workers, DataplaneConfig, DataplaneError, DEFAULT_POLL, DEFAULT_SEND_PATIENCE,
    DEFAULT_SLICE, MAX_WORKERS,
};
pub use counters::{CounterSnapshot, DropReason};
pub use dataplane::{Dataplane, DataplaneReport};
pub use fdb::{FloodEntry, Gateway, NetworkTable, DEFAULT_MAX_LEARNED};
pub use heartbeat::{HeartbeatCounters, PeerHeard, HEARTBEAT_INTERVAL};
pub use ovnet_wire::{MacAddr, Vni, VXLAN_PORT};
pub use peers::PeerSnapshot;
pub use send::tso_segments;
pub use storm::BumLimits;
