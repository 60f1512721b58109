//! The agent: its operations, and the runtime that keeps this host in step with the cluster.
//!
//! - this file: [`Agent`] and the operations every front end calls (the gRPC API today; a
//!   Docker network/IPAM plugin or a CNI plugin would be other thin adapters over the same
//!   calls). Cluster-wide reads and writes (networks, external VTEPs, nodes) go straight to
//!   the store, so a network created on one host is listed on every other at once. Each
//!   operation that changes something is logged once, here.
//! - `connect`: connect and disconnect, the operations that change this host.
//! - `registration`: claiming the node's name, its liveness lease, leaving.
//! - `liveness`: which other nodes are up: their lease, or their data plane heard lately.
//! - `attachments`: this node's endpoints as a runtime looks them up (by container id and
//!   interface), for the CNI plugin.
//! - `docker`: what Docker's plugin needs beyond that: addresses reserved before their
//!   endpoint, endpoints whose interface Docker moves itself, found again by Docker's ID.
//! - `sync`: following etcd (snapshot, watch, re-list), and what happens at start.
//! - `reconcile`: making bridges, TAPs, veths and the data plane match the view.
//! - `underlay`: the node's underlay MTU, read and kept current in its record.
//! - `edge`: the same for the network edge: ovnet's nftables table, IPv4 forwarding, the
//!   per-network DNS resolvers.
//!
//! One lock serialises everything that touches the host and the data plane: the watch loop's
//! reconciliations and connect/disconnect. While etcd is unreachable the view and the data
//! plane stay as they were, so established traffic keeps flowing; the watch loop re-lists and
//! re-watches when etcd is back.
//!
//! The data plane runs in the agent's process. When the agent stops it revokes its liveness
//! lease, so the other agents withdraw this host's VTEP at once, and the data plane stops with
//! it: containers on this host keep reaching each other over their network's bridge, traffic to
//! and from other hosts stops until the agent is back. A restarted agent adopts what the
//! previous run left (bridges, container veths), releases the endpoints of containers that
//! vanished meanwhile and removes the devices no record explains.

mod attachments;
mod connect;
mod docker;
mod edge;
mod liveness;
mod published;
mod reconcile;
mod registration;
mod sync;
mod underlay;

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use ovnet_dataplane::{CounterSnapshot, Dataplane, DataplaneReport, DropReason};
use tokio::sync::Mutex;

use crate::domain::plan::NetworkSpec;
use crate::domain::{mtu, Endpoint, ExternalVtep, Network, Node, NodeId, NodeName};
use crate::edge::EdgeConfig;
use crate::error::AgentError;
use crate::health::{Health, HealthSnapshot};
use crate::port_security::Guard;
use crate::store::{KeepAlive, Store};

pub use attachments::{Attachment, AttachmentFilter};
pub use connect::ConnectSpec;
pub use docker::DockerJoin;
pub use edge::DnsCounters;
pub use liveness::{NodeLiveness, HEARD_WINDOW};
use reconcile::Local;
pub use underlay::UNDERLAY_POLL;

/// What an agent is told at start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub node: NodeName,
    /// This host's identity, which holds the name.
    pub node_id: NodeId,
    /// Take the name from another host whose agent is down (`--replace-node`).
    pub replace_node: bool,
    /// This node's VTEP (underlay address and VXLAN port).
    pub vtep: SocketAddrV4,
    /// TTL of the liveness lease.
    pub lease_ttl: Duration,
    /// Hold each local container to its own MAC and addresses on its veth
    /// ([`crate::port_security`]).
    pub port_security: bool,
    /// The network edge: the `nft` program, the upstream resolvers.
    pub edge: EdgeConfig,
}

/// One host's agent.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    store: Store,
    dp: Dataplane,
    /// What the agent built and knows; held while the host is changed.
    local: Mutex<Local>,
    /// What readers need of `local`, as of the last reconcile pass: read without its lock.
    published: published::Board,
    keepalive: Mutex<Option<KeepAlive>>,
    /// Whether the node's name is claimed.
    registered: tokio::sync::watch::Sender<bool>,
    health: Arc<Health>,
    guard: Guard,
}

/// A network with everything attached to it, for `inspect`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkDetail {
    /// The network.
    pub network: Network,
    /// Its endpoints, by name.
    pub endpoints: Vec<Endpoint>,
    /// The nodes that serve its endpoints, by name.
    pub peers: Vec<Node>,
    /// Its external VTEPs.
    pub vteps: Vec<ExternalVtep>,
}

/// Name under which [`Agent::stats`] reports the drops that happened before a network was
/// known (bad header, unknown VNI), with VNI 0.
pub const NO_NETWORK: &str = "(no network)";

/// What `ovctl doctor` asks of the agent: who it is, whether it follows etcd, what it set up.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    /// This node's name.
    pub node: NodeName,
    /// Its VTEP.
    pub vtep: SocketAddrV4,
    /// The etcd client URLs it was given.
    pub etcd: Vec<String>,
    /// Whether it follows etcd and keeps its lease.
    pub health: HealthSnapshot,
    /// Networks set up on this host: name, VNI, MTU.
    pub networks: Vec<(String, u32, u32)>,
    /// Devices it owns in the host namespace, sorted.
    pub devices: Vec<String>,
}

/// Traffic with one peer VTEP, for the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerTraffic {
    /// The peer's underlay address.
    pub addr: std::net::IpAddr,
    /// The node registered with that VTEP address, if any (external VTEPs have none).
    pub node: Option<String>,
    /// What the data plane counted.
    pub counters: ovnet_dataplane::PeerSnapshot,
    /// How long ago the peer was last heard (`None`: never).
    pub heard: Option<Duration>,
}

/// A network's data-plane counters on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkCounters {
    /// The network's name, or [`NO_NETWORK`].
    pub name: String,
    /// Its VNI; 0 for [`NO_NETWORK`].
    pub vni: u32,
    /// The counters.
    pub counters: CounterSnapshot,
}

impl Agent {
    /// An agent over a running data plane and a store handle. Nothing runs until
    /// [`Agent::run_sync`] and [`Agent::run_registration`] are spawned.
    pub fn new(cfg: AgentConfig, store: Store, dp: Dataplane) -> Agent {
        Agent {
            store,
            dp,
            local: Mutex::new(Local::default()),
            published: published::Board::default(),
            keepalive: Mutex::new(None),
            registered: tokio::sync::watch::Sender::new(false),
            health: Arc::new(Health::default()),
            guard: Guard::new(cfg.port_security, cfg.edge.nft.clone()),
            cfg,
        }
    }

    /// Whether the agent follows etcd and keeps its lease.
    pub fn health(&self) -> HealthSnapshot {
        self.health.snapshot()
    }

    /// Creates a network, choosing what `spec` leaves unset (warnings are logged; see
    /// [`Agent::create_network_warned`]).
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network, AgentError> {
        Ok(self.create_network_warned(spec).await?.0)
    }

    /// Creates a network, choosing what `spec` leaves unset: an unset MTU is the smallest
    /// the registered nodes' underlays carry ([`mtu::default_network_mtu`]). Returns it with
    /// the warnings a user should see: one per node whose underlay cannot carry the MTU.
    pub async fn create_network_warned(
        &self,
        mut spec: NetworkSpec,
    ) -> Result<(Network, Vec<String>), AgentError> {
        let nodes: Vec<Node> = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        spec.mtu = Some(spec.mtu.unwrap_or_else(|| mtu::default_network_mtu(&nodes)));
        let req = spec.check()?;
        let net = self.store.create_network(&req).await?;
        log::info!(
            "created {}network {} id {} (VNI {}, subnet {}, MTU {})",
            if net.internal { "internal " } else { "" },
            net.name,
            net.id,
            net.vni,
            net.subnet,
            net.mtu
        );
        let warnings = mtu::mtu_warnings(net.mtu, &nodes);
        for w in &warnings {
            log::warn!("network {}: {w}", net.name);
        }
        Ok((net, warnings))
    }

    /// All networks, by name.
    pub async fn list_networks(&self) -> Result<Vec<Network>, AgentError> {
        self.store.list_networks().await
    }

    /// A network (name, ID or unique ID prefix) with its endpoints, peers and external VTEPs.
    pub async fn inspect_network(&self, name_or_id: &str) -> Result<NetworkDetail, AgentError> {
        let network = self.store.get_network(name_or_id).await?;
        let endpoints = self.store.list_endpoints(&network.id).await?;
        let vteps = self.store.list_vteps(&network.id).await?;
        let peers = self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| endpoints.iter().any(|e| e.node == n.name))
            .collect();
        Ok(NetworkDetail {
            network,
            endpoints,
            peers,
            vteps,
        })
    }

    /// Removes a network (name, ID or unique ID prefix) that has no endpoints.
    pub async fn remove_network(&self, name_or_id: &str) -> Result<Network, AgentError> {
        let net = self.store.remove_network(name_or_id).await?;
        log::info!("removed network {} id {}", net.name, net.id);
        Ok(net)
    }

    /// Adds an external VTEP to a network's flood list.
    pub async fn add_vtep(
        &self,
        network: &str,
        addr: SocketAddrV4,
    ) -> Result<ExternalVtep, AgentError> {
        let v = self.store.add_vtep(network, addr).await?;
        log::info!("added external VTEP {addr} to network {network}");
        Ok(v)
    }

    /// Removes an external VTEP from a network.
    pub async fn remove_vtep(&self, network: &str, addr: SocketAddrV4) -> Result<(), AgentError> {
        self.store.remove_vtep(network, addr).await?;
        log::info!("removed external VTEP {addr} from network {network}");
        Ok(())
    }

    /// A network's external VTEPs.
    pub async fn list_vteps(&self, network: &str) -> Result<Vec<ExternalVtep>, AgentError> {
        let net = self.store.get_network(network).await?;
        self.store.list_vteps(&net.id).await
    }

    /// The registered nodes, by name, with whether each one's agent is alive.
    pub async fn list_nodes(&self) -> Result<Vec<(Node, bool)>, AgentError> {
        self.store.list_nodes().await
    }

    /// This agent's own state.
    pub async fn status(&self) -> AgentStatus {
        let (mut networks, mut devices) = {
            let p = self.published.read();
            let networks: Vec<(String, u32, u32)> = p
                .networks
                .iter()
                .map(|n| (n.name.to_string(), n.vni.get(), n.mtu))
                .collect();
            (networks, p.devices.clone())
        };
        let uplink = format!("ovu{}", self.cfg.vtep.port());
        if crate::host::link_exists(&uplink) {
            devices.push(uplink);
        }
        networks.sort();
        devices.sort();
        AgentStatus {
            node: self.cfg.node.clone(),
            vtep: self.cfg.vtep,
            etcd: self
                .store
                .endpoints()
                .split(',')
                .map(str::to_owned)
                .collect(),
            health: self.health.snapshot(),
            networks,
            devices,
        }
    }

    /// Traffic per peer VTEP, with the node behind each address; and the datagrams of peers
    /// beyond the data plane's bound, counted together.
    pub async fn peers(&self) -> (Vec<PeerTraffic>, u64) {
        let (peers, overflow) = self.dp.peers();
        let p = self.published.read();
        let traffic = peers
            .into_iter()
            .map(|(addr, counters, heard)| PeerTraffic {
                addr,
                node: p
                    .nodes
                    .iter()
                    .find(|n| std::net::IpAddr::V4(n.vtep) == addr)
                    .map(|n| n.name.to_string()),
                counters,
                heard,
            })
            .collect();
        (traffic, overflow)
    }

    /// The data plane's workers and the offloads it uses.
    pub fn dataplane(&self) -> DataplaneReport {
        self.dp.report()
    }

    /// Data-plane counters of the networks set up on this host, by name, with the drops that
    /// happened before a network was known last ([`NO_NETWORK`], only if there were any).
    /// With a `network` (name or ID prefix), only that one; a network of the cluster with no
    /// endpoint here has zero counters.
    pub async fn stats(&self, network: Option<&str>) -> Result<Vec<NetworkCounters>, AgentError> {
        let counters = |name: &str, vni: u32, counters: CounterSnapshot| NetworkCounters {
            name: name.to_owned(),
            vni,
            counters,
        };
        let mut out: Vec<NetworkCounters> = {
            let p = self.published.read();
            p.networks
                .iter()
                .filter(|n| network.is_none_or(|f| n.name == f || n.id.as_str().starts_with(f)))
                .filter_map(|n| {
                    Some(counters(
                        n.name.as_str(),
                        n.vni.get(),
                        self.dp.counters(n.vni)?,
                    ))
                })
                .collect()
        };
        // Drops on the containers' veths count with the data plane's, under the same names.
        let guarded = self.guard.counts().await;
        for n in &mut out {
            for (&(vni, reason), &count) in guarded.range((n.vni, DropReason::ALL[0])..) {
                if vni != n.vni {
                    break;
                }
                n.counters.add_drops(reason, count);
            }
        }
        match network {
            Some(f) if out.is_empty() => {
                // "No such network" is an error; "no endpoint here" is zeros.
                let net = self.store.get_network(f).await?;
                out.push(counters(
                    net.name.as_str(),
                    net.vni.get(),
                    CounterSnapshot::default(),
                ));
            }
            Some(_) => {}
            None => {
                let global = self.dp.global_counters();
                if global.total_dropped() > 0 {
                    out.push(counters(NO_NETWORK, 0, global));
                }
            }
        }
        Ok(out)
    }
}
