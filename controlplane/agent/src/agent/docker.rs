//! The operations Docker's network and IPAM plugin needs beyond `ovctl`'s ([`crate::docker`]
//! is the adapter that calls them).
//!
//! Docker asks for an address first (IPAM `RequestAddress`), then creates and joins the
//! endpoint, and moves the container's interface into the container itself. So: an address is
//! reserved on its own ([`Agent::reserve_address`]); the endpoint is created on its
//! reservation under Docker's endpoint ID, its veth left whole in the agent's namespace for
//! Docker to move ([`Agent::join_reserved`]); and it is found again by that ID when Docker
//! deletes it ([`Agent::find_local_endpoint`]), also after an agent restart.

use std::net::Ipv4Addr;

use crate::domain::plan::EndpointSpec;
use crate::domain::reservation::Reservation;
use crate::domain::{Endpoint, EndpointId, Network, NetworkId, Owner};
use crate::edge::host::probe;
use crate::error::{AgentError, InUse, Invalid};
use crate::host;
use crate::store::Record;

use super::Agent;

/// What an endpoint joining through Docker brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerJoin {
    /// The ovnet network.
    pub network: NetworkId,
    /// Docker's endpoint ID, which the endpoint keeps as its own.
    pub endpoint: EndpointId,
    /// The container's name.
    pub container: String,
    /// Docker's container ID, if known.
    pub container_id: String,
    /// The container's network namespace as Docker names it (its sandbox key), which may not
    /// exist yet: Docker creates it when the container starts.
    pub sandbox: String,
    /// The address reserved for it.
    pub ipv4: Ipv4Addr,
    /// Host ports to publish to it (`docker run -p`).
    pub publish: Vec<ovnet_proto::PortMapping>,
}

impl Agent {
    /// The network whose subnet is exactly `subnet`, if any.
    pub async fn network_with_subnet(
        &self,
        subnet: ipnet::Ipv4Net,
    ) -> Result<Option<Network>, AgentError> {
        Ok(self
            .store
            .list_networks()
            .await?
            .into_iter()
            .find(|n| n.subnet == subnet))
    }

    /// Reserves an address of `network` for an endpoint to come: `requested` if it is free,
    /// else the lowest free one.
    pub async fn reserve_address(
        &self,
        network: &NetworkId,
        requested: Option<Ipv4Addr>,
    ) -> Result<Reservation, AgentError> {
        let r = self
            .store
            .reserve_address(network.as_str(), requested, &self.cfg.node)
            .await?;
        log::info!("reserved {} in network {network}", r.ipv4);
        Ok(r)
    }

    /// Releases this node's reservation of `ip` in `network`; false if it holds none (the
    /// endpoint took it, or it was released already).
    pub async fn release_reservation(
        &self,
        network: &NetworkId,
        ip: Ipv4Addr,
    ) -> Result<bool, AgentError> {
        let released = self
            .store
            .release_reservation(network, ip, &self.cfg.node)
            .await?;
        if released {
            log::info!("released the reservation of {ip} in network {network}");
        }
        Ok(released)
    }

    /// This node's reservations.
    pub async fn reservations(&self) -> Result<Vec<Reservation>, AgentError> {
        self.store.list_reservations(&self.cfg.node).await
    }

    /// Creates a Docker endpoint on its reserved address and builds its veth, the container
    /// end left in the agent's namespace under [`host::handoff_name`] for Docker to move.
    pub async fn join_reserved(&self, j: DockerJoin) -> Result<Endpoint, AgentError> {
        let mut local = self.local.lock().await;
        let found = self.store.find_network(j.network.as_str()).await?;
        let req = EndpointSpec {
            name: j.container,
            node: self.cfg.node.to_string(),
            netns: j.sandbox,
            ifname: host::handoff_name(&j.endpoint),
            ipv4: None,
            container_id: j.container_id,
            owner: Owner::Docker.as_str().to_owned(),
            publish: j.publish,
        }
        .check()?;
        if found.network.internal && !req.ports.is_empty() {
            return Err(Invalid::PublishOnInternal(found.network.name.clone()).into());
        }
        for p in &req.ports {
            probe(&p.host).map_err(|cause| InUse::HostPort {
                host: p.host,
                cause,
            })?;
        }
        let claimed = self
            .store
            .create_reserved_endpoint(&found.network.id, j.ipv4, &req, &j.endpoint)
            .await?;
        self.settle(&mut local, &found, claimed).await
    }

    /// This node's endpoint with ID `id`, from the view, or from etcd if the view lacks it
    /// (right after a start, before the first snapshot).
    pub async fn find_local_endpoint(
        &self,
        id: &EndpointId,
    ) -> Result<Option<Endpoint>, AgentError> {
        let mine = |e: &Endpoint| e.id == *id && e.node == self.cfg.node;
        if let Some(e) = self
            .local
            .lock()
            .await
            .view
            .local_endpoints(&self.cfg.node)
            .find(|e| mine(e))
        {
            return Ok(Some(e.clone()));
        }
        let (_, state) = self.store.snapshot().await?;
        Ok(state.endpoints.into_iter().find(mine))
    }

    /// Disconnects this node's endpoint `ep` (found with [`Agent::find_local_endpoint`]).
    pub async fn disconnect_endpoint(&self, ep: &Endpoint) -> Result<(), AgentError> {
        let mut local = self.local.lock().await;
        match self
            .store
            .get_endpoint(ep.network_id.as_str(), ep.name.as_str())
            .await
        {
            Ok(now) if now.id == ep.id => {}
            // Gone already (an `ovctl network disconnect`, a network removed meanwhile), or
            // the name is another endpoint's by now.
            Ok(_) | Err(AgentError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        let gone = match self
            .store
            .delete_endpoint(ep.network_id.as_str(), ep.name.as_str())
            .await
        {
            Ok(gone) => gone,
            // Gone already (an `ovctl network disconnect`, a network removed meanwhile).
            Err(AgentError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        local
            .view
            .delete(&Record::Endpoint(ep.clone()).key(), gone.revision);
        self.reconcile(&mut local).await;
        log::info!("disconnected {} ({})", ep.name, ep.id);
        Ok(())
    }
}
