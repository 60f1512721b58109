//! Connect and disconnect: the operations that change this host.
//!
//! Both go store → view → reconcile: the endpoint is claimed (or released) in etcd, the result
//! is put in the view at once, and the reconciler builds (or removes) the veth as it does every
//! other device. A connect whose host side cannot be built releases its claim again, so nothing
//! is left half-created.
//!
//! Published ports are asked of the host first (a port a process of the host holds is refused
//! before anything is claimed), then claimed with the endpoint. A container that is a named
//! namespace gets `/etc/netns/NAME/resolv.conf` pointing at its network's resolver
//! ([`crate::edge::resolv_conf`]), removed when it leaves that network.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::domain::plan::EndpointSpec;
use crate::domain::{Endpoint, Name};
use crate::edge::host::probe;
use crate::edge::resolv_conf::{self, Written, NETNS_ETC};
use crate::error::{AgentError, Exists, InUse, Invalid};
use crate::host;
use crate::store::{Found, Record, Stamped};

use super::reconcile::Local;
use super::Agent;

/// What connecting a container takes: what `docker network connect` gives, and what a CNI or
/// Docker plugin passes (a namespace path, an interface name, a requested address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectSpec {
    /// Network name, ID or unique ID prefix.
    pub network: String,
    /// The container's name; the endpoint's name in the network.
    pub container: String,
    /// Its network namespace: a name under `/var/run/netns` or a path; empty means the
    /// container's name.
    pub netns: String,
    /// The interface inside the container; `None` means the first free `ethN`.
    pub ifname: Option<String>,
    /// A requested address; `None` means the lowest free one.
    pub ipv4: Option<String>,
    /// The runtime's id of the container (empty: none), kept in the endpoint.
    pub container_id: String,
    /// Who asks: `"ovctl"`, `"docker"`, `"cni"`; empty means `"ovctl"`.
    pub owner: String,
    /// Host ports to publish to the container (`-p`), on this node.
    pub publish: Vec<ovnet_proto::PortMapping>,
}

impl Agent {
    /// Connects a container (network namespace) to a network: claims its name and address in
    /// etcd and builds the host side; undoes the claim if the host side fails.
    pub async fn connect(&self, spec: ConnectSpec) -> Result<Endpoint, AgentError> {
        let netns = if spec.netns.is_empty() {
            spec.container.clone()
        } else {
            spec.netns
        };
        let path = host::netns_path(&netns)?;
        if !self.is_registered() {
            return Err(self
                .store
                .unavailable(format!("node {} is not registered yet", self.cfg.node)));
        }
        // The container's interfaces are read before the lock is taken: a command on a
        // namespace never holds up the rest of the agent.
        let ifname = match spec.ifname {
            Some(i) => i,
            None => host::free_ifname(&path).await?.to_string(),
        };
        let mut local = self.local.lock().await;
        let found = self.store.find_network(&spec.network).await?;
        let net = found.network.clone();
        let already = local.view.endpoints_of(&net.id).find(|e| {
            e.node == self.cfg.node
                && host::netns_path(&e.netns).ok().as_deref() == Some(path.as_str())
        });
        if let Some(e) = already {
            return Err(Exists::Container {
                netns,
                network: net.name.clone(),
                name: e.name.clone(),
            }
            .into());
        }
        let req = EndpointSpec {
            name: spec.container,
            node: self.cfg.node.to_string(),
            netns,
            ifname,
            ipv4: spec.ipv4,
            container_id: spec.container_id,
            owner: spec.owner,
            publish: spec.publish,
        }
        .check()?;
        if net.internal && !req.ports.is_empty() {
            return Err(Invalid::PublishOnInternal(net.name.clone()).into());
        }
        for p in &req.ports {
            probe(&p.host).map_err(|cause| InUse::HostPort {
                host: p.host,
                cause,
            })?;
        }
        let claimed = self.store.create_endpoint(net.id.as_str(), &req).await?;
        self.settle(&mut local, &found, claimed).await
    }

    /// After an endpoint was claimed in etcd: puts it in the view and builds its host side;
    /// if that fails, releases the claim again, so nothing is left half-created.
    pub(super) async fn settle(
        &self,
        local: &mut Local,
        found: &Found,
        claimed: Stamped<Endpoint>,
    ) -> Result<Endpoint, AgentError> {
        let net = found.network.clone();
        let ep = claimed.record;
        // The watch will report both later; the view takes them now.
        local
            .view
            .put(Record::Network(net.clone()), found.mod_revision);
        local
            .view
            .put(Record::Endpoint(ep.clone()), claimed.revision);
        let mut outcome = self.reconcile(local).await;
        if let Some(cause) = outcome.failed.remove(&ep.id) {
            // Nothing half-created: release the claim; the reconciler removes whatever the
            // host side did. (Should etcd refuse, the endpoint stays marked failed here and
            // is released at the next start, its veth being missing.)
            match self
                .store
                .delete_endpoint(net.id.as_str(), ep.name.as_str())
                .await
            {
                Ok(gone) => local
                    .view
                    .delete(&Record::Endpoint(ep.clone()).key(), gone.revision),
                Err(e) => log::error!("releasing endpoint {} after a failed connect: {e}", ep.name),
            }
            self.reconcile(local).await;
            return Err(AgentError::Connect {
                container: ep.name,
                network: net.name,
                cause,
            });
        }
        log::info!(
            "connected {} to {} as {} {}/{} ({}){}",
            ep.name,
            net.name,
            ep.ifname,
            ep.ipv4,
            ep.mac,
            ep.netns,
            published(&ep)
        );
        point_at_resolver(&ep.netns, &net.name, net.gateway);
        Ok(ep)
    }

    /// Disconnects a container of this node from a network.
    pub async fn disconnect(&self, network: &str, container: &str) -> Result<(), AgentError> {
        let mut local = self.local.lock().await;
        let ep = self.store.get_endpoint(network, container).await?;
        if ep.node != self.cfg.node {
            return Err(InUse::OtherNode {
                container: ep.name,
                node: ep.node,
            }
            .into());
        }
        let net_name = local
            .view
            .network_by_id(&ep.network_id)
            .map(|n| n.name.clone());
        let netns = ep.netns.clone();
        // The record first: if etcd fails, nothing changed; if removing the veth then fails,
        // the next start removes the stale device.
        let gone = self
            .store
            .delete_endpoint(ep.network_id.as_str(), ep.name.as_str())
            .await?;
        local
            .view
            .delete(&Record::Endpoint(ep).key(), gone.revision);
        self.reconcile(&mut local).await;
        if let Some(n) = net_name {
            forget_resolver(&netns, &n);
        }
        log::info!("disconnected {container} from {network}");
        Ok(())
    }
}

/// ` publishing 0.0.0.0:8080:80/tcp, ...` for the log, or nothing.
fn published(ep: &Endpoint) -> String {
    if ep.ports.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ep.ports.iter().map(ToString::to_string).collect();
    format!(" publishing {}", list.join(", "))
}

/// Points a named namespace's resolv.conf at its network's resolver; a failure is logged, the
/// connect stands (the container works, by address).
fn point_at_resolver(netns: &str, network: &Name, gateway: Ipv4Addr) {
    let Some(ns) = resolv_conf::named(netns) else {
        return;
    };
    match resolv_conf::write(Path::new(NETNS_ETC), ns, network.as_str(), gateway) {
        Ok(Written::Done(path)) => log::debug!("{} points at {gateway}", path.display()),
        Ok(Written::Kept(path)) => log::info!(
            "kept {}, which ovnet did not write for network {network}: point it at {gateway} \
             for the network's names",
            path.display()
        ),
        Err(e) => log::warn!(
            "writing {NETNS_ETC}/{ns}/resolv.conf: {e}: the container resolves names only if \
             its resolv.conf says nameserver {gateway}"
        ),
    }
}

/// Removes the resolv.conf ovnet wrote for a named namespace on `network`.
pub(super) fn forget_resolver(netns: &str, network: &Name) {
    let Some(ns) = resolv_conf::named(netns) else {
        return;
    };
    if let Err(e) = resolv_conf::remove(Path::new(NETNS_ETC), ns, network.as_str()) {
        log::warn!("removing {NETNS_ETC}/{ns}/resolv.conf: {e}");
    }
}
