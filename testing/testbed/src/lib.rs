//! Test bed for ovnet's integration tests and benchmark: simulated hosts in Linux network
//! namespaces on a veth underlay, containers on host bridges, a private etcd, child processes.
//!
//! Layout of one [`Testbed`] (every namespace name carries the test bed's id, so test beds run
//! in parallel within and across processes):
//!
//! ```text
//! ov{id}u   underlay: bridge ulbr 192.168.50.254/24, etcd on :2379
//!   ├─ h1 ── eth0 192.168.50.1/24  in ov{id}h1   (host 1)
//!   └─ h2 ── eth0 192.168.50.2/24  in ov{id}h2   (host 2)
//! ov{id}c{k} container: eth0 ── vc{k} in its host's namespace, on a host bridge (e.g. br0)
//! ov{id}n{label} bare namespace (only lo), for the code under test to plumb
//! ov{id}nrtra, ov{id}nrtrb  routers of a routed underlay (hosts in 172.20.{n}.0/24)
//! ```
//!
//! It is not a network emulator: no delay, loss or bandwidth shaping (use `tc` via
//! [`Testbed::exec`]). It needs root and iproute2. It never touches the root namespace's links
//! or routes; dropping a `Testbed` (also during a panic) kills its processes and deletes its
//! namespaces, and [`sweep_stale`] removes what a killed earlier run left behind.
//! IPv6 is disabled in every namespace it creates, to keep captures free of ND/MLD noise.
//!
//! Tests that cannot run on this host (a missing kernel feature or privilege) call [`skip`],
//! which says why where `cargo test` shows it and counts it.
//!
//! All `unsafe` (four syscalls) lives in the private `sys` module.

#![deny(unsafe_code)]

mod bed;
mod cmd;
mod etcd;
pub mod http;
mod names;
mod skip;
#[allow(unsafe_code)]
mod sys;
mod traffic;

pub use bed::{
    Container, Host, Pid, RoutedHost, Testbed, DIRECT_LINK, ROUTED_LINK, UNDERLAY_BRIDGE,
    UNDERLAY_BRIDGE_IP, UNDERLAY_BRIDGE_MAC,
};
pub use cmd::{in_netns, ns_path, run, NETNS_DIR};
pub use etcd::{EtcdOptions, EtcdTls, ETCD_CLIENT_PORT, ETCD_METRICS_PORT, ETCD_PEER_PORT};
pub use names::sweep_stale;
pub use skip::{kernel_at_least, kernel_release, skip, SKIP_LOG_ENV};
pub use traffic::{ping, tcp_transfer_verified, udp_burst_verified, PingStats, UdpBurst};
