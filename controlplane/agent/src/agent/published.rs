//! What the agent's readers need of its state (`status`, `stats`, the metrics' peers and DNS
//! counters, the underlay watch), published at the end of every reconcile pass. They read it
//! without the agent's lock, which is held while the host is changed: a host command that takes
//! long (an `ip`, `nft` or `nsenter` up to its timeout) never holds up a status call, a metrics
//! scrape, a health check or `ovctl doctor`.

use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use ovnet_dns::CounterReader;

use ovnet_dataplane::Vni;

use crate::domain::{Name, NetworkId, NodeName};

use super::reconcile::Local;

/// A network set up on this host.
#[derive(Debug, Clone)]
pub(super) struct BuiltNetwork {
    pub name: Name,
    pub id: NetworkId,
    pub vni: Vni,
    pub mtu: u32,
}

/// A registered node, as the readers need it.
#[derive(Debug, Clone)]
pub(super) struct KnownNode {
    pub name: NodeName,
    pub vtep: Ipv4Addr,
    pub underlay_mtu: Option<u32>,
}

/// The agent's state as of its last reconcile pass.
#[derive(Debug, Default)]
pub(super) struct Published {
    /// Networks set up on this host, by name.
    pub networks: Vec<BuiltNetwork>,
    /// Devices the agent owns in the host namespace (bridges, TAPs, veths), sorted.
    pub devices: Vec<String>,
    /// Every registered node.
    pub nodes: Vec<KnownNode>,
    /// The DNS resolvers running on this host, by network.
    pub resolvers: Vec<(Name, CounterReader)>,
}

impl Published {
    /// What `local` holds now.
    pub fn of(local: &Local) -> Published {
        let mut networks: Vec<BuiltNetwork> = local
            .view
            .networks()
            .filter(|n| local.applied.contains_key(&n.vni))
            .map(|n| BuiltNetwork {
                name: n.name.clone(),
                id: n.id.clone(),
                vni: n.vni,
                mtu: n.mtu,
            })
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        let mut devices: Vec<String> = local.devices().into_iter().collect();
        devices.sort();
        Published {
            networks,
            devices,
            nodes: local
                .view
                .nodes()
                .map(|n| KnownNode {
                    name: n.name.clone(),
                    vtep: *n.vtep.ip(),
                    underlay_mtu: n.underlay_mtu,
                })
                .collect(),
            resolvers: local.edge.counter_readers(),
        }
    }
}

/// The latest [`Published`] state, swapped whole.
#[derive(Debug, Default)]
pub(super) struct Board(RwLock<Arc<Published>>);

impl Board {
    /// The state as of the last pass.
    pub fn read(&self) -> Arc<Published> {
        // A writer panicking mid-swap leaves the old Arc in place: still a whole state.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes `p`.
    pub fn publish(&self, p: Published) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
    }
}
