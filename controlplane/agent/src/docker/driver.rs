//! The `NetworkDriver` calls, and how a Docker network finds its ovnet network.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use ipnet::Ipv4Net;
use serde_json::Map;

use super::dockerd::NetworkInfo;
use super::ipam::ADDRESS_SPACE;
use super::options::{
    check_fits, create_options, driver_options, endpoint_mac, parse_cidr_address, published_ports,
    Wanted, CREATED_BY,
};
use super::protocol::{
    Answer, Body, Capabilities, CreateEndpoint, CreateEndpointAnswer, CreateNetwork, DeleteNetwork,
    Discovery, EndpointRef, Failure, Interface, InterfaceName, Join, JoinAnswer, OperInfo,
    ProgramExternalConnectivity, Reply,
};
use super::Plugin;
use crate::agent::DockerJoin;
use crate::domain::ipam;
use crate::domain::plan::NetworkSpec;
use crate::domain::{EndpointId, Network};
use crate::error::AgentError;

/// How long, after `CreateNetwork`, the plugin waits for dockerd to show the new network (it
/// does as soon as `CreateNetwork` has returned).
const NAME_WAIT: Duration = Duration::from_secs(30);

/// The prefix Docker gives the interface in the container (`eth0`, `eth1`...).
const DST_PREFIX: &str = "eth";

/// An operation of the agent that failed: its one line.
pub(super) fn agent_failure(e: AgentError) -> Failure {
    Failure::failed(e.to_string())
}

pub(super) async fn capabilities() -> Reply {
    Answer::json(&Capabilities {
        scope: "local",
        connectivity_scope: "global",
    })
}

impl Plugin {
    /// The ovnet network with `subnet`, created from dockerd's network `info` (named after
    /// it) if there is none yet.
    pub(super) async fn ensure_network(&self, info: &NetworkInfo) -> Result<Network, Failure> {
        let _one_at_a_time = self.creating.lock().await;
        let Some(pool) = info.ipam.config.first() else {
            return Err(Failure::failed(format!(
                "docker network {} has no subnet: create it with --ipam-driver {}",
                info.name, self.name
            )));
        };
        let subnet =
            ipam::parse_subnet(&pool.subnet).map_err(|e| Failure::failed(e.to_string()))?;
        let gateway = match pool.gateway.trim() {
            "" => None,
            g => Some(
                g.parse::<Ipv4Addr>()
                    .map_err(|_| Failure::failed(format!("invalid gateway {g:?}")))?,
            ),
        };
        let options = driver_options(&info.options).map_err(Failure::failed)?;
        let wanted = Wanted {
            gateway,
            options,
            internal: info.internal,
        };
        let fits = |net: Network| -> Result<Network, Failure> {
            check_fits(&net, &wanted).map_err(Failure::failed)?;
            self.bind(&info.id, &net.id);
            Ok(net)
        };
        if let Some(net) = self.network_with_subnet(subnet).await? {
            return fits(net);
        }
        let mut labels = info.labels.clone();
        labels.insert(CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned());
        let spec = NetworkSpec {
            name: info.name.clone(),
            subnet: Some(subnet.to_string()),
            gateway: gateway.map(|g| g.to_string()),
            vni: wanted.options.vni,
            mtu: wanted.options.mtu,
            labels,
            internal: info.internal,
            ..NetworkSpec::default()
        };
        match self.agent.create_network(spec).await {
            Ok(net) => fits(net),
            Err(e) => {
                // Another host may have created it just now.
                if let Some(net) = self.network_with_subnet(subnet).await? {
                    return fits(net);
                }
                Err(self.explain(e, &info.name, subnet).await)
            }
        }
    }

    /// A failed creation of ovnet network `name` for a Docker network with `subnet`, with
    /// what to do when the name is an ovnet network of another subnet.
    async fn explain(&self, e: AgentError, name: &str, subnet: Ipv4Net) -> Failure {
        if let AgentError::Exists(_) = e {
            if let Ok(nets) = self.agent.list_networks().await {
                if let Some(n) = nets.iter().find(|n| n.name == name) {
                    return Failure::failed(format!(
                        "ovnet network {name} has subnet {}, but this Docker network got \
                         {subnet}: remove it and create it again with --subnet {}",
                        n.subnet, n.subnet
                    ));
                }
            }
        }
        agent_failure(e)
    }

    /// The ovnet network with exactly `subnet`.
    pub(super) async fn network_with_subnet(
        &self,
        subnet: Ipv4Net,
    ) -> Result<Option<Network>, Failure> {
        self.agent
            .network_with_subnet(subnet)
            .await
            .map_err(agent_failure)
    }

    /// Waits until dockerd shows network `id`, then gives it its ovnet network.
    async fn create_when_named(self: Arc<Self>, id: String) {
        let deadline = Instant::now() + NAME_WAIT;
        let mut last = String::from("not listed yet");
        while Instant::now() < deadline {
            match self.dockerd.network(&id).await {
                Ok(Some(info)) => {
                    match self.ensure_network(&info).await {
                        Ok(net) => log::info!(
                            "docker network {} is ovnet network {} ({})",
                            info.name,
                            net.name,
                            net.subnet
                        ),
                        Err(f) => log::error!("docker network {}: {}", info.name, f.message),
                    }
                    return;
                }
                Ok(None) => {}
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        log::warn!(
            "docker network {id} did not show in dockerd within {NAME_WAIT:?} ({last}); its \
             ovnet network is made with its first container"
        );
    }
}

pub(super) async fn create_network(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<CreateNetwork>,
) -> Reply {
    let (options, internal) = create_options(&r.options).map_err(Failure::failed)?;
    if !r.ipv6_data.is_empty() {
        return Err(Failure::failed("ovnet networks are IPv4 only: drop --ipv6"));
    }
    let [pool] = r.ipv4_data.as_slice() else {
        return Err(Failure::failed(
            "an ovnet network has exactly one IPv4 subnet: give at most one --subnet",
        ));
    };
    if pool.address_space != ADDRESS_SPACE {
        return Err(Failure::failed(format!(
            "ovnet hands out its networks' addresses itself: pass --ipam-driver {}",
            p.name
        )));
    }
    if !pool.aux_addresses.is_empty() {
        // Docker reserved them through RequestAddress already; it gives them back when this
        // creation fails.
        return Err(Failure::failed(
            "ovnet keeps no --aux-address: every address of an ovnet network is a container's, \
             its gateway's, or free",
        ));
    }
    let subnet = ipam::parse_subnet(&pool.pool).map_err(|e| Failure::failed(e.to_string()))?;
    let gateway = match pool.gateway.trim() {
        "" => None,
        g => Some(parse_cidr_address(g).map_err(Failure::failed)?.0),
    };
    let wanted = Wanted {
        gateway,
        options,
        internal,
    };
    match p.network_with_subnet(subnet).await? {
        Some(net) => {
            check_fits(&net, &wanted).map_err(Failure::failed)?;
            p.bind(&r.network_id, &net.id);
            log::info!(
                "docker network {} joins ovnet network {} ({subnet})",
                r.network_id,
                net.name
            );
        }
        None => {
            tokio::spawn(p.clone().create_when_named(r.network_id.clone()));
        }
    }
    Ok(Answer::empty())
}

pub(super) async fn delete_network(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<DeleteNetwork>,
) -> Reply {
    let id = match p.unbind(&r.network_id) {
        Some(id) => Some(id),
        None => p.bound_elsewhere(&r.network_id).await,
    };
    let Some(id) = id else {
        log::info!(
            "docker network {} removed; no ovnet network known for it",
            r.network_id
        );
        return Ok(Answer::empty());
    };
    // Docker's network goes in any case: the ovnet network is shared with every other host,
    // and stays while anything is on it.
    match p.agent.inspect_network(id.as_str()).await {
        Ok(d) if d.network.labels.get(CREATED_BY.0).map(String::as_str) != Some(CREATED_BY.1) => {
            log::info!(
                "docker network {} removed; ovnet network {} stays (not created by Docker)",
                r.network_id,
                d.network.name
            );
        }
        Ok(d) if !d.endpoints.is_empty() => log::info!(
            "docker network {} removed; ovnet network {} stays: {} endpoint(s) on it",
            r.network_id,
            d.network.name,
            d.endpoints.len()
        ),
        Ok(d) => match p.agent.remove_network(d.network.id.as_str()).await {
            Ok(_) => {}
            Err(AgentError::InUse(e)) => log::info!("ovnet network stays: {e}"),
            Err(e) => log::warn!("removing ovnet network {}: {e}", d.network.name),
        },
        Err(AgentError::NotFound(_)) => {}
        Err(e) => log::warn!("docker network {} removed: {e}", r.network_id),
    }
    Ok(Answer::empty())
}

impl Plugin {
    /// The ovnet network of Docker network `id`, asking dockerd (after an agent restart the
    /// plugin knows no binding).
    async fn bound_elsewhere(&self, id: &str) -> Option<crate::domain::NetworkId> {
        let info = match self.dockerd.network(id).await {
            Ok(Some(info)) => info,
            _ => self
                .dockerd
                .networks(&self.name)
                .await
                .ok()?
                .into_iter()
                .find(|n| n.id == id)?,
        };
        let subnet = ipam::parse_subnet(&info.ipam.config.first()?.subnet).ok()?;
        self.network_with_subnet(subnet).await.ok()?.map(|n| n.id)
    }
}

pub(super) async fn create_endpoint(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<CreateEndpoint>,
) -> Reply {
    let iface = r.interface.unwrap_or_default();
    if !iface.address_ipv6.is_empty() {
        return Err(Failure::failed("ovnet networks are IPv4 only"));
    }
    if iface.address.is_empty() {
        return Err(Failure::failed(format!(
            "Docker gave the endpoint no address: create the network with --ipam-driver {}",
            p.name
        )));
    }
    // Refused here already if unreadable; published at the join.
    published_ports(&r.options).map_err(Failure::failed)?;
    let (ip, subnet) = parse_cidr_address(&iface.address).map_err(Failure::failed)?;
    let Some(net) = p.network_with_subnet(subnet).await? else {
        return Err(Failure::failed(format!(
            "no ovnet network has subnet {subnet} (removed meanwhile?): remove the Docker \
             network and create it again"
        )));
    };
    let mac = endpoint_mac(ip, &iface.mac_address).map_err(Failure::failed)?;
    p.bind(&r.network_id, &net.id);
    let interface = iface.mac_address.is_empty().then(|| Interface {
        mac_address: mac.to_string(),
        ..Interface::default()
    });
    Answer::json(&CreateEndpointAnswer { interface })
}

pub(super) async fn join(State(p): State<Arc<Plugin>>, Body(r): Body<Join>) -> Reply {
    let endpoint = EndpointId::parse(&r.endpoint_id).map_err(|e| Failure::failed(e.to_string()))?;
    let info = p
        .dockerd
        .network(&r.network_id)
        .await
        .map_err(|e| Failure::failed(e.to_string()))?
        .ok_or_else(|| {
            Failure::failed(format!("dockerd does not know network {}", r.network_id))
        })?;
    let (key, entry) = info.endpoint(&r.endpoint_id).ok_or_else(|| {
        Failure::failed(format!(
            "dockerd lists no endpoint {} in network {}",
            r.endpoint_id, info.name
        ))
    })?;
    let (ip, subnet) = parse_cidr_address(&entry.ipv4_address).map_err(Failure::failed)?;
    let net = match p.network_with_subnet(subnet).await? {
        Some(net) => net,
        None => p.ensure_network(&info).await?,
    };
    // A joined endpoint is listed under its container's ID; a joining one under `ep-<id>`.
    let container_id = match key.strip_prefix("ep-") {
        None => key.to_owned(),
        Some(_) => match p.dockerd.container_id(&entry.name).await {
            Ok(id) => id.unwrap_or_default(),
            Err(e) => {
                log::debug!("{e}");
                String::new()
            }
        },
    };
    let ep = p
        .agent
        .join_reserved(DockerJoin {
            network: net.id.clone(),
            endpoint,
            container: entry.name.clone(),
            container_id,
            sandbox: r.sandbox_key,
            ipv4: ip,
            publish: published_ports(&r.options).map_err(Failure::failed)?,
        })
        .await
        .map_err(agent_failure)?;
    p.bind(&r.network_id, &net.id);
    Answer::json(&JoinAnswer {
        interface_name: InterfaceName {
            src_name: ep.ifname.to_string(),
            dst_prefix: DST_PREFIX.to_owned(),
        },
        // An internal network has no way out: no default route.
        gateway: if net.internal {
            String::new()
        } else {
            net.gateway.to_string()
        },
        disable_gateway_service: true,
    })
}

pub(super) async fn leave(Body(_): Body<EndpointRef>) -> Reply {
    // Docker takes the interface out of the container after this call; DeleteEndpoint then
    // removes the veth and the endpoint.
    Ok(Answer::empty())
}

pub(super) async fn delete_endpoint(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<EndpointRef>,
) -> Reply {
    let Ok(id) = EndpointId::parse(&r.endpoint_id) else {
        return Err(Failure::failed(format!(
            "invalid endpoint ID {:?}",
            r.endpoint_id
        )));
    };
    match p
        .agent
        .find_local_endpoint(&id)
        .await
        .map_err(agent_failure)?
    {
        Some(ep) => p
            .agent
            .disconnect_endpoint(&ep)
            .await
            .map_err(agent_failure)?,
        None => log::debug!("docker endpoint {id} has no ovnet endpoint (never joined)"),
    }
    Ok(Answer::empty())
}

pub(super) async fn oper_info(Body(_): Body<EndpointRef>) -> Reply {
    Answer::json(&OperInfo { value: Map::new() })
}

pub(super) async fn discover(Body(_): Body<Discovery>) -> Reply {
    // ovnet's nodes find each other in etcd.
    Ok(Answer::empty())
}

pub(super) async fn program_external(Body(_): Body<ProgramExternalConnectivity>) -> Reply {
    Ok(Answer::empty())
}

pub(super) async fn revoke_external(Body(_): Body<EndpointRef>) -> Reply {
    Ok(Answer::empty())
}
