//! The ovnet agent as a library: one per host, it keeps the cluster's state in etcd, programs
//! the data plane from it and serves the gRPC API that `ovctl` uses.
//!
//! - [`ipam`]: address management as pure functions (names, subnets, VNIs, IPs, MACs).
//! - [`store`]: the typed, transactional layer over etcd: records, claims, liveness, watch.
//! - [`view`]: the agent's copy of the cluster and the forwarding tables it implies (pure).
//! - [`host`]: the host side of a network: bridge, TAP, container veths.
//! - [`agent`]: the runtime: sync with etcd, reconcile, connect and disconnect.
//! - [`api`]: the gRPC service `ovctl` talks to.

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod host;
pub mod ipam;
pub mod store;
pub mod view;
