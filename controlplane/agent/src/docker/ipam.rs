//! The `IpamDriver` calls: ovnet hands out the subnets and addresses of its networks itself,
//! so they are unique across hosts and shared with `ovctl`'s endpoints.
//!
//! A pool ID is the subnet. An endpoint's address is reserved in etcd for this node when
//! Docker asks for it, and becomes the endpoint's when it joins; the gateway is the ovnet
//! network's and is never reserved.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::State;
use ipnet::Ipv4Net;

use super::driver::agent_failure;
use super::options::{choose_pool, parse_pool_id};
use super::protocol::{
    AddressAnswer, AddressSpaces, Answer, Body, Failure, IpamCapabilities, PoolAnswer,
    ReleaseAddress, ReleasePool, Reply, RequestAddress, RequestPool, REQUEST_ADDRESS_TYPE,
};
use super::Plugin;
use crate::domain::ipam;
use crate::domain::Network;

/// ovnet's one address space: every ovnet subnet is unique in the cluster.
pub const ADDRESS_SPACE: &str = "ovnet";

pub(super) async fn capabilities() -> Reply {
    Answer::json(&IpamCapabilities {
        requires_mac_address: false,
        requires_request_replay: false,
    })
}

pub(super) async fn address_spaces() -> Reply {
    Answer::json(&AddressSpaces {
        local_default_address_space: ADDRESS_SPACE,
        global_default_address_space: ADDRESS_SPACE,
    })
}

pub(super) async fn request_pool(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<RequestPool>,
) -> Reply {
    if r.v6 {
        return Err(Failure::failed("ovnet networks are IPv4 only: drop --ipv6"));
    }
    if let Some(k) = r.options.keys().next() {
        return Err(Failure::failed(format!(
            "unknown IPAM option {k:?}: ovnet takes no --ipam-opt"
        )));
    }
    if !r.sub_pool.is_empty() && r.sub_pool != r.pool {
        return Err(Failure::failed(
            "ovnet hands out addresses from the whole subnet: drop --ip-range",
        ));
    }
    let existing = p.agent.list_networks().await.map_err(agent_failure)?;
    let subnet = choose_pool(&r.pool, &existing).map_err(Failure::failed)?;
    Answer::json(&PoolAnswer {
        pool_id: subnet.to_string(),
        pool: subnet.to_string(),
        data: HashMap::new(),
    })
}

pub(super) async fn release_pool(Body(r): Body<ReleasePool>) -> Reply {
    // The subnet is the ovnet network's, which `DeleteNetwork` looks after.
    parse_pool_id(&r.pool_id).map_err(Failure::failed)?;
    Ok(Answer::empty())
}

/// `ip` with `subnet`'s prefix length, as Docker wants an address.
fn with_prefix(ip: Ipv4Addr, subnet: Ipv4Net) -> String {
    format!("{ip}/{}", subnet.prefix_len())
}

fn answer(ip: Ipv4Addr, subnet: Ipv4Net) -> Reply {
    Answer::json(&AddressAnswer {
        address: with_prefix(ip, subnet),
        data: HashMap::new(),
    })
}

pub(super) async fn request_address(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<RequestAddress>,
) -> Reply {
    let subnet = parse_pool_id(&r.pool_id).map_err(Failure::failed)?;
    let requested = match r.address.trim() {
        "" => None,
        a => Some(
            a.parse::<Ipv4Addr>()
                .map_err(|_| Failure::failed(format!("invalid address {a:?}: not IPv4")))?,
        ),
    };
    let gateway =
        r.options.get(REQUEST_ADDRESS_TYPE.0).map(String::as_str) == Some(REQUEST_ADDRESS_TYPE.1);
    if gateway {
        return match (p.network_with_subnet(subnet).await?, requested) {
            (Some(net), Some(gw)) if gw != net.gateway => Err(Failure::failed(format!(
                "ovnet network {} with subnet {subnet} has gateway {}: drop --gateway or give \
                 that one",
                net.name, net.gateway
            ))),
            (Some(net), _) => answer(net.gateway, subnet),
            (None, Some(gw)) => {
                let gw = ipam::parse_gateway(&subnet, &gw.to_string())
                    .map_err(|e| Failure::failed(e.to_string()))?;
                answer(gw, subnet)
            }
            (None, None) => answer(ipam::first_host(&subnet), subnet),
        };
    }
    let net = p.network_for_pool(subnet).await?;
    let r = p
        .agent
        .reserve_address(&net.id, requested)
        .await
        .map_err(agent_failure)?;
    answer(r.ipv4, subnet)
}

impl Plugin {
    /// The ovnet network of a pool: the one with its subnet, or, if there is none yet (the
    /// container came before dockerd showed the new network, or another host removed it),
    /// one made from dockerd's network with this subnet.
    async fn network_for_pool(&self, subnet: Ipv4Net) -> Result<Network, Failure> {
        if let Some(net) = self.network_with_subnet(subnet).await? {
            return Ok(net);
        }
        let networks = self
            .dockerd
            .networks(&self.name)
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        let info = networks
            .into_iter()
            .find(|n| {
                n.ipam
                    .config
                    .first()
                    .and_then(|c| ipam::parse_subnet(&c.subnet).ok())
                    == Some(subnet)
            })
            .ok_or_else(|| {
                Failure::failed(format!(
                    "no ovnet network has subnet {subnet}, and dockerd has no {} network with it \
                     (an address asked for while a network is created: ovnet keeps no \
                     --aux-address)",
                    self.name
                ))
            })?;
        // The listing has no endpoints; what ensure_network reads is there.
        self.ensure_network(&info).await
    }
}

pub(super) async fn release_address(
    State(p): State<Arc<Plugin>>,
    Body(r): Body<ReleaseAddress>,
) -> Reply {
    let subnet = parse_pool_id(&r.pool_id).map_err(Failure::failed)?;
    let ip: Ipv4Addr = r
        .address
        .trim()
        .parse()
        .map_err(|_| Failure::failed(format!("invalid address {:?}: not IPv4", r.address)))?;
    let Some(net) = p.network_with_subnet(subnet).await? else {
        // The network went, and its claims with it.
        return Ok(Answer::empty());
    };
    if ip != net.gateway {
        // An endpoint that joined gave its address back when it was deleted; only a
        // reservation never taken is left to release.
        p.agent
            .release_reservation(&net.id, ip)
            .await
            .map_err(agent_failure)?;
    }
    Ok(Answer::empty())
}
