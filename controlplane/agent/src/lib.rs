//! The ovnet agent as a library: one per host, it keeps the cluster's state in etcd, programs
//! the data plane from it and serves the gRPC API that `ovctl` uses.
//!
//! From the edges in:
//! - [`api`]: the gRPC service `ovctl` talks to; a thin adapter over [`agent`]'s operations,
//!   and the only place where an error becomes a gRPC status.
//! - [`docker`]: Docker's network and IPAM plugin, another adapter over the same operations.
//! - [`store`]: etcd: the key layout, the transactions that claim what a planner decided,
//!   liveness, snapshot and watch. Records are typed where they are read.
//! - [`host`]: the host side of a network: bridge, TAP, container veths, built over
//!   [`netlink`] (no `ip` processes).
//! - [`port_security`]: the nftables rules that hold each container to its own MAC and
//!   addresses on its veth.
//! - [`edge`]: the network edge: the gateway on every host, the way out (masquerade) and in
//!   (published ports) through ovnet's nftables table, the per-network DNS resolvers.
//! - [`domain`]: typed values and records, the IPAM rules and the create-network and
//!   create-endpoint planners, as pure functions.
//! - [`view`]: the agent's copy of the cluster and what it implies for this host (pure).
//! - [`agent`]: the operations, following etcd, and reconciling the host with the view.
//! - [`error`]: [`error::AgentError`], what every operation can fail with.
//! - [`flags`], [`state`], [`supervise`]: the process around it: flags by subject, the state
//!   directory (the node id), and the watch over its long-running tasks.
//! - [`metrics`]: Prometheus metrics, `/healthz` and `/readyz` over HTTP.
//! - [`health`]: whether the agent follows etcd and keeps its lease (`/readyz`, metrics).

#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod api_socket;
pub mod docker;
pub mod domain;
pub mod edge;
pub mod error;
pub mod flags;
pub mod health;
pub mod host;
pub mod metrics;
pub mod netlink;
pub mod port_security;
pub mod state;
pub mod store;
pub mod supervise;
pub mod view;
