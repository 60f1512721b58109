//! The agent's runtime: keeps its [`View`] of the cluster in step with etcd, turns it into
//! data-plane tables and host devices (reconciliation), and carries out the operations that
//! change this host (connect, disconnect).
//!
//! One lock serialises everything that touches the host and the data plane: the watch loop's
//! reconciliations and the API's connect/disconnect. While etcd is unreachable the view and
//! the data plane stay as they were, so established traffic keeps flowing; the watch loop
//! re-lists and re-watches when etcd is back. On start the agent adopts what a previous run left
//! (bridges, container veths), removes what no record explains, and drops the records of
//! containers that vanished while it was down.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::Ipv4Net;
use ovnet_dataplane::{CounterSnapshot, Dataplane, DataplaneReport, NetworkTable, Vni};
use ovnet_proto::{Endpoint, Network, Node};
use tokio::sync::Mutex;
use tonic::Status;

use crate::host::{self, bridge_name, tap_name, veth_name};
use crate::store::{EndpointSpec, KeepAlive, Record, RecordKey, Store, StoreError, WatchEvent};
use crate::view::View;

/// How long the watch loop waits before retrying an etcd that failed.
const RETRY: Duration = Duration::from_secs(1);

/// What an agent is told at start.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This node's name.
    pub node: String,
    /// This node's VTEP (underlay address and VXLAN port).
    pub vtep: SocketAddr,
    /// TTL of the liveness lease.
    pub lease_ttl: Duration,
}

/// A network as currently programmed on this host.
#[derive(Debug)]
struct Applied {
    table: NetworkTable,
}

#[derive(Debug, Default)]
struct Local {
    view: View,
    /// Programmed networks, by VNI.
    applied: BTreeMap<u32, Applied>,
}

/// One host's agent.
#[derive(Debug)]
pub struct Agent {
    cfg: AgentConfig,
    store: Store,
    dp: Dataplane,
    local: Mutex<Local>,
    keepalive: Mutex<Option<KeepAlive>>,
}

impl Agent {
    /// An agent over a running data plane and a store handle. Nothing runs until
    /// [`Agent::run_sync`] and [`Agent::run_registration`] are spawned.
    pub fn new(cfg: AgentConfig, store: Store, dp: Dataplane) -> Agent {
        Agent {
            cfg,
            store,
            dp,
            local: Mutex::new(Local::default()),
            keepalive: Mutex::new(None),
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.cfg.node
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn node_record(&self) -> Node {
        Node {
            name: self.cfg.node.clone(),
            vtep_ip: self.cfg.vtep.ip().to_string(),
            vtep_port: u32::from(self.cfg.vtep.port()),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            started: crate::store::now_rfc3339(),
        }
    }

    /// Registers the node and keeps its liveness lease, retrying while etcd is unreachable.
    pub async fn run_registration(&self) {
        let node = self.node_record();
        let mut warned = false;
        loop {
            match self.store.register_node(&node, self.cfg.lease_ttl).await {
                Ok(lease) => {
                    log::info!(
                        "registered node {} with VTEP {} (lease ttl {:?})",
                        node.name,
                        self.cfg.vtep,
                        lease.ttl
                    );
                    *self.keepalive.lock().await = Some(self.store.keep_alive(node, lease));
                    return;
                }
                Err(e) => {
                    if !warned {
                        log::warn!("registering node {}: {e}; retrying", node.name);
                        warned = true;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Stops renewing the lease and revokes it, so peers withdraw this VTEP at once.
    pub async fn deregister(&self) {
        if let Some(ka) = self.keepalive.lock().await.take() {
            if let Err(e) = ka.stop().await {
                log::warn!("revoking the liveness lease: {e}");
            }
        }
    }

    /// Follows etcd forever: snapshot, reconcile, watch; re-list after any watch failure.
    pub async fn run_sync(&self) {
        let mut recovered = false;
        let mut warned = false;
        loop {
            let (rev, state) = match self.store.snapshot().await {
                Ok(s) => s,
                Err(e) => {
                    if !warned {
                        log::warn!("listing the cluster state: {e}; forwarding continues with the last known state");
                        warned = true;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if warned {
                log::info!("etcd is reachable again; state re-listed at revision {rev}");
                warned = false;
            }
            {
                let mut local = self.local.lock().await;
                local.view = View::from_state(state);
                if !recovered {
                    self.recover(&mut local).await;
                    recovered = true;
                }
                self.reconcile(&mut local).await;
            }
            let mut watch = match self.store.watch(rev + 1).await {
                Ok(w) => w,
                Err(e) => {
                    log::warn!("watching the cluster state: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            while let Some(ev) = watch.next().await {
                if let WatchEvent::Resync { reason } = &ev {
                    log::info!("watch ended ({reason}); re-listing");
                    break;
                }
                let mut local = self.local.lock().await;
                local.view.apply(&ev);
                self.reconcile(&mut local).await;
            }
        }
    }

    /// Makes the data plane and the host devices match the view.
    async fn reconcile(&self, local: &mut Local) {
        let desired = local.view.desired(&self.cfg.node);
        let wanted: HashSet<u32> = desired.iter().map(|d| d.network.vni).collect();
        let gone: Vec<u32> = local
            .applied
            .keys()
            .filter(|v| !wanted.contains(v))
            .copied()
            .collect();
        for vni in gone {
            self.teardown(vni).await;
            local.applied.remove(&vni);
        }
        for d in desired {
            let vni = d.network.vni;
            match local.applied.get_mut(&vni) {
                Some(a) if a.table == d.table => {}
                Some(a) => match self
                    .dp
                    .update_network(Vni::new(vni).expect("VNIs in etcd are valid"), &d.table)
                {
                    Ok(()) => a.table = d.table,
                    Err(e) => log::error!("updating network {}: {e}", d.network.name),
                },
                None => match self.setup(&d.network, &d.table).await {
                    Ok(()) => {
                        log::info!("network {} (VNI {vni}) is up on this host", d.network.name);
                        local.applied.insert(vni, Applied { table: d.table });
                    }
                    Err(e) => {
                        log::error!("setting up network {} on this host: {e}", d.network.name)
                    }
                },
            }
        }
    }

    async fn setup(&self, n: &Network, table: &NetworkTable) -> Result<(), String> {
        let vni = Vni::new(n.vni).ok_or_else(|| format!("invalid VNI {}", n.vni))?;
        host::ensure_bridge(n.vni, n.mtu)
            .await
            .map_err(|e| e.to_string())?;
        // The data plane opens the network's TAP, with its own offloads and queues.
        self.dp
            .add_network(vni, &tap_name(n.vni), n.mtu, table)
            .map_err(|e| e.to_string())?;
        if let Err(e) = host::attach_tap(n.vni).await {
            if let Err(e2) = self.dp.remove_network(vni) {
                log::warn!("removing VNI {vni} from the data plane: {e2}");
            }
            return Err(e.to_string());
        }
        Ok(())
    }

    async fn teardown(&self, vni: u32) {
        if let Some(v) = Vni::new(vni) {
            if let Err(e) = self.dp.remove_network(v) {
                log::warn!("removing VNI {vni} from the data plane: {e}");
            }
        }
        if let Err(e) = host::delete_link(&bridge_name(vni)).await {
            log::warn!("{e}");
        }
        log::info!("network with VNI {vni} is down on this host (no local endpoints)");
    }

    /// After (re)start: forget endpoints whose container vanished, adopt surviving veths, and
    /// remove devices no record explains.
    async fn recover(&self, local: &mut Local) {
        let mine: Vec<Endpoint> = local
            .view
            .local_endpoints(&self.cfg.node)
            .cloned()
            .collect();
        let mut surviving = Vec::with_capacity(mine.len());
        for ep in mine {
            if host::link_exists(&veth_name(&ep.id)) {
                surviving.push(ep);
                continue;
            }
            // Its veth is gone: the container's namespace was deleted while we were away.
            log::info!(
                "container {} vanished while the agent was down: releasing its endpoint {}",
                ep.name,
                ep.ipv4
            );
            match self.store.delete_endpoint(&ep.network_id, &ep.name).await {
                Ok(_) | Err(StoreError::NotFound(_)) => local.view.delete(&RecordKey::Endpoint {
                    network_id: ep.network_id.clone(),
                    name: ep.name.clone(),
                }),
                Err(e) => log::warn!("releasing endpoint {}: {e}", ep.name),
            }
        }
        self.reconcile(local).await;
        let mut keep: HashSet<String> = HashSet::new();
        for vni in local.applied.keys() {
            keep.insert(bridge_name(*vni));
            keep.insert(tap_name(*vni));
        }
        for ep in &surviving {
            let veth = veth_name(&ep.id);
            keep.insert(veth.clone());
            if let Some(n) = local.view.network_by_id(&ep.network_id) {
                if let Err(e) = host::reattach(&veth, &bridge_name(n.vni)).await {
                    log::warn!("{e}");
                }
            }
        }
        let ours = ["ovbr", "ovtap", "ovv"];
        match host::links_with_prefix(host::DEVICE_PREFIX).await {
            Ok(links) => {
                for l in links {
                    if ours.iter().any(|p| l.starts_with(p)) && !keep.contains(&l) {
                        log::info!("removing stale device {l}");
                        if let Err(e) = host::delete_link(&l).await {
                            log::warn!("{e}");
                        }
                    }
                }
            }
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Connects a container (network namespace) to a network: claims its name and address in
    /// etcd, builds the host side, and undoes the claim if the host side fails.
    pub async fn connect(
        &self,
        network: &str,
        container: &str,
        netns: &str,
        ipv4: Option<String>,
    ) -> Result<Endpoint, Status> {
        let netns = if netns.is_empty() { container } else { netns };
        let path = host::netns_path(netns).map_err(Status::failed_precondition)?;
        let mut local = self.local.lock().await;
        let net = self.store.get_network(network).await?;
        let already = local.view.endpoints_of(&net.id).find(|e| {
            e.node == self.cfg.node
                && host::netns_path(&e.netns).ok().as_deref() == Some(path.as_str())
        });
        if let Some(e) = already {
            return Err(Status::already_exists(format!(
                "container {netns} is already connected to network {} as {}",
                net.name, e.name
            )));
        }
        let ifname = host::free_ifname(&path)
            .await
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let ep = self
            .store
            .create_endpoint(EndpointSpec {
                network: net.id.clone(),
                name: container.to_string(),
                node: self.cfg.node.clone(),
                netns: netns.to_string(),
                ifname: ifname.clone(),
                ipv4,
            })
            .await?;
        local.view.put(Record::Network(net.clone()));
        local.view.put(Record::Endpoint(ep.clone()));
        self.reconcile(&mut local).await;
        let result = if local.applied.contains_key(&net.vni) {
            let prefix = net
                .subnet
                .parse::<Ipv4Net>()
                .map(|s| s.prefix_len())
                .unwrap_or(24);
            host::connect_container(&host::ContainerLink {
                netns_path: &path,
                ifname: &ifname,
                host_veth: &veth_name(&ep.id),
                bridge: &bridge_name(net.vni),
                mac: &ep.mac,
                cidr: &format!("{}/{prefix}", ep.ipv4),
                mtu: net.mtu,
                gso_max_segs: self.dp.tso_segments(net.mtu),
            })
            .await
            .map_err(|e| e.to_string())
        } else {
            Err(format!(
                "network {} could not be set up on this host (see the agent's log)",
                net.name
            ))
        };
        if let Err(e) = result {
            // Nothing half-created: release the claims and whatever the host side did.
            if let Err(e2) = self.store.delete_endpoint(&net.id, &ep.name).await {
                log::error!(
                    "releasing endpoint {} after a failed connect: {e2}",
                    ep.name
                );
            }
            local.view.delete(&RecordKey::Endpoint {
                network_id: net.id.clone(),
                name: ep.name.clone(),
            });
            self.reconcile(&mut local).await;
            return Err(Status::internal(format!(
                "connecting {container} to network {}: {e}",
                net.name
            )));
        }
        log::info!(
            "connected {container} to {} as {} {}/{}",
            net.name,
            ep.ifname,
            ep.ipv4,
            ep.mac
        );
        Ok(ep)
    }

    /// Disconnects a container of this node from a network.
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<(), Status> {
        let mut local = self.local.lock().await;
        let ep = self.store.get_endpoint(network, container).await?;
        if ep.node != self.cfg.node {
            return Err(Status::failed_precondition(format!(
                "container {container} is connected on node {}: disconnect it there",
                ep.node
            )));
        }
        // The record first: if etcd fails, nothing changed; if the device removal then fails,
        // the next start removes the stale veth.
        self.store
            .delete_endpoint(&ep.network_id, container)
            .await?;
        if let Err(e) = host::disconnect_container(&veth_name(&ep.id)).await {
            log::warn!("{e}");
        }
        local.view.delete(&RecordKey::Endpoint {
            network_id: ep.network_id.clone(),
            name: ep.name.clone(),
        });
        self.reconcile(&mut local).await;
        log::info!("disconnected {container} from {network}");
        Ok(())
    }

    /// The data plane's workers and the offloads it uses.
    pub fn dataplane(&self) -> DataplaneReport {
        self.dp.report()
    }

    /// Data-plane counters of each network programmed on this host, by name; plus the drops
    /// that happened before a network was known, under `None`.
    pub async fn stats(&self) -> (Vec<(Network, CounterSnapshot)>, CounterSnapshot) {
        let local = self.local.lock().await;
        let mut out = Vec::new();
        for n in local.view.networks.values() {
            if !local.applied.contains_key(&n.vni) {
                continue;
            }
            if let Some(c) = Vni::new(n.vni).and_then(|v| self.dp.counters(v)) {
                out.push((n.clone(), c));
            }
        }
        (out, self.dp.global_counters())
    }
}
