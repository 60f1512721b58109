//! The agent's gRPC API (`ovnet.v1.Agent`), served on a unix socket for `ovctl`.
//!
//! Cluster-wide reads and writes (networks, external VTEPs, nodes) go straight to the store, so
//! a network created on one host is listed on every other at once. Connect and disconnect change
//! this host and go through the [`Agent`]. Errors carry a docker-like sentence in the status
//! message, ready for `ovctl` to print.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ovnet_dataplane::CounterSnapshot;
use ovnet_proto::v1::{
    AddVtepRequest, ConnectRequest, CreateNetworkRequest, DataplaneRequest, DataplaneStatus,
    DisconnectRequest, DisconnectResponse, Endpoint, ExternalVtep, InspectNetworkRequest,
    ListNetworksRequest, ListNetworksResponse, ListNodesRequest, ListNodesResponse,
    ListVtepsRequest, ListVtepsResponse, Network, NetworkDetail, NetworkStats, NodeStatus, Peer,
    RemoveNetworkRequest, RemoveNetworkResponse, RemoveVtepRequest, RemoveVtepResponse,
    StatsRequest, StatsResponse,
};
use tonic::{Request, Response, Status};

use crate::agent::Agent;
use crate::store::NetworkSpec;

/// The service implementation.
#[derive(Debug, Clone)]
pub struct Api {
    agent: Arc<Agent>,
}

impl Api {
    /// The API of `agent`.
    pub fn new(agent: Arc<Agent>) -> Api {
        Api { agent }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn network_stats(name: &str, vni: u32, c: &CounterSnapshot) -> NetworkStats {
    NetworkStats {
        name: name.to_string(),
        vni,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        drops: c.drops().map(|(r, n)| (r.name().to_string(), n)).collect(),
    }
}

#[tonic::async_trait]
impl ovnet_proto::Agent for Api {
    async fn create_network(
        &self,
        req: Request<CreateNetworkRequest>,
    ) -> Result<Response<Network>, Status> {
        let spec = NetworkSpec::from(req.into_inner());
        let net = self.agent.store().create_network(spec).await?;
        log::info!(
            "created network {} (VNI {}, {})",
            net.name,
            net.vni,
            net.subnet
        );
        Ok(Response::new(net))
    }

    async fn list_networks(
        &self,
        _: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        let networks = self.agent.store().list_networks().await?;
        Ok(Response::new(ListNetworksResponse { networks }))
    }

    async fn inspect_network(
        &self,
        req: Request<InspectNetworkRequest>,
    ) -> Result<Response<NetworkDetail>, Status> {
        let store = self.agent.store();
        let net = store.get_network(&req.get_ref().name_or_id).await?;
        let endpoints = store.list_endpoints(&net.id).await?;
        let vteps = store.list_vteps(&net.id).await?;
        let nodes = store.list_nodes().await?;
        let names: BTreeSet<&str> = endpoints.iter().map(|e| e.node.as_str()).collect();
        let peers = nodes
            .iter()
            .filter(|(n, _)| names.contains(n.name.as_str()))
            .map(|(n, _)| Peer {
                name: n.name.clone(),
                ip: n.vtep_ip.clone(),
                port: n.vtep_port,
            })
            .collect();
        Ok(Response::new(NetworkDetail {
            network: Some(net),
            endpoints,
            peers,
            vteps,
        }))
    }

    async fn remove_network(
        &self,
        req: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        let net = self
            .agent
            .store()
            .remove_network(&req.get_ref().name_or_id)
            .await?;
        log::info!("removed network {}", net.name);
        Ok(Response::new(RemoveNetworkResponse {}))
    }

    async fn connect_container(
        &self,
        req: Request<ConnectRequest>,
    ) -> Result<Response<Endpoint>, Status> {
        let r = req.into_inner();
        let ep = self
            .agent
            .connect(&r.network, &r.container, &r.netns, r.ipv4)
            .await?;
        Ok(Response::new(ep))
    }

    async fn disconnect_container(
        &self,
        req: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectResponse>, Status> {
        let r = req.into_inner();
        self.agent.disconnect(&r.network, &r.container).await?;
        Ok(Response::new(DisconnectResponse {}))
    }

    async fn add_vtep(
        &self,
        req: Request<AddVtepRequest>,
    ) -> Result<Response<ExternalVtep>, Status> {
        let r = req.into_inner();
        let v = self
            .agent
            .store()
            .add_vtep(&r.network, &r.ip, r.port)
            .await?;
        log::info!(
            "added external VTEP {}:{} to network {}",
            v.ip,
            v.port,
            r.network
        );
        Ok(Response::new(v))
    }

    async fn remove_vtep(
        &self,
        req: Request<RemoveVtepRequest>,
    ) -> Result<Response<RemoveVtepResponse>, Status> {
        let r = req.into_inner();
        self.agent
            .store()
            .remove_vtep(&r.network, &r.ip, r.port)
            .await?;
        Ok(Response::new(RemoveVtepResponse {}))
    }

    async fn list_vteps(
        &self,
        req: Request<ListVtepsRequest>,
    ) -> Result<Response<ListVtepsResponse>, Status> {
        let store = self.agent.store();
        let net = store.get_network(&req.get_ref().network).await?;
        let vteps = store.list_vteps(&net.id).await?;
        Ok(Response::new(ListVtepsResponse { vteps }))
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let nodes = self
            .agent
            .store()
            .list_nodes()
            .await?
            .into_iter()
            .map(|(node, alive)| NodeStatus {
                node: Some(node),
                alive,
            })
            .collect();
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn stats(&self, req: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let filter = req.into_inner().network;
        let (nets, global) = self.agent.stats().await;
        let mut networks: Vec<NetworkStats> = nets
            .iter()
            .filter(|(n, _)| match &filter {
                Some(f) => n.name == *f || n.id.starts_with(f.as_str()),
                None => true,
            })
            .map(|(n, c)| network_stats(&n.name, n.vni, c))
            .collect();
        if let Some(f) = &filter {
            if networks.is_empty() {
                // Distinguish "no such network" from "no local endpoints".
                let net = self.agent.store().get_network(f).await?;
                networks.push(network_stats(
                    &net.name,
                    net.vni,
                    &CounterSnapshot::default(),
                ));
            }
        } else if global.total_dropped() > 0 {
            // Drops that happened before a network was known (bad header, unknown VNI).
            networks.push(network_stats("(no network)", 0, &global));
        }
        Ok(Response::new(StatsResponse { networks }))
    }

    async fn dataplane(
        &self,
        _req: Request<DataplaneRequest>,
    ) -> Result<Response<DataplaneStatus>, Status> {
        let r = self.agent.dataplane();
        Ok(Response::new(DataplaneStatus {
            worker_busy_per_mille: r.busy_per_mille,
            steering: r.steering,
            flows_moved: r.flows_moved,
            poll_us: micros(r.poll),
            udp_gso: r.udp_gso,
            tunnel_gso: r.tunnel_gso,
            slice_us: r.slice.map_or(0, micros),
        }))
    }
}
