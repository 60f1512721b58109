//! Reconciliation: make this host match the view, declaratively.
//!
//! Every pass starts with the port-security rules on the veths of the local endpoints
//! ([`crate::port_security`]), loaded with the edge's table in one `nft` transaction.
//!
//! The view says what each network with a local endpoint should have here ([`Desired`]): its
//! bridge and TAP in the data plane with a forwarding table, and one veth per local endpoint.
//! [`Agent::reconcile`] compares that with what it has built ([`Applied`]) and does the
//! difference: sets up and tears down networks, swaps tables, builds and removes veths. A veth
//! that is already there (after a restart) is adopted: put back on its bridge, not rebuilt.
//!
//! The network edge is part of the same pass (`edge`): ovnet's nftables table is loaded
//! before any bridge is built, the gateway goes on the bridge in `setup`, a container's default
//! route is added with its veth, and the resolvers and IPv4 forwarding follow once the
//! networks are up.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use ovnet_dataplane::{DataplaneError, NetworkTable, Vni};

use crate::domain::{Endpoint, EndpointId, Name, Network, Owner};
use crate::edge;
use crate::error::ConnectFailure;
use crate::host::{self, bridge_name, veth_name, HostError};
use crate::port_security::Port;
use crate::view::{Desired, View};

use super::edge::EdgeState;
use super::Agent;

/// A network as built on this host.
#[derive(Debug)]
pub(super) struct Applied {
    /// The network's name, for the log.
    pub name: Name,
    /// The table the data plane runs.
    pub table: NetworkTable,
    /// The veths built, by endpoint: their host ends.
    pub veths: BTreeMap<EndpointId, String>,
}

/// What the agent knows and what it has built; behind the agent's one lock.
#[derive(Debug, Default)]
pub(super) struct Local {
    /// The cluster as the agent knows it.
    pub view: View,
    /// Networks built on this host, by VNI.
    pub applied: BTreeMap<Vni, Applied>,
    /// Endpoints whose veth could not be built, with the record that failed: not tried again
    /// until the record changes.
    failed: HashMap<EndpointId, Endpoint>,
    /// The edge: nftables table, resolvers, forwarding.
    pub edge: EdgeState,
    /// The VNI conflicts last logged, so that each is logged once.
    conflicts: BTreeMap<Vni, (Name, Vec<Name>)>,
}

/// What one pass of [`Agent::reconcile`] could not do.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Local endpoints left without a veth, and why.
    pub failed: HashMap<EndpointId, ConnectFailure>,
}

/// Why a network could not be set up on this host.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
}

impl Local {
    /// The devices the agent has built and keeps: bridges, TAPs and veths.
    pub(super) fn devices(&self) -> HashSet<String> {
        let mut keep = HashSet::new();
        for (vni, a) in &self.applied {
            keep.insert(bridge_name(vni.get()));
            keep.insert(host::tap_name(vni.get()));
            keep.extend(a.veths.values().cloned());
        }
        keep
    }
}

/// The veths of the local endpoints (built, or about to be), with what each endpoint may
/// send from it.
fn guarded_ports(desired: &[Desired]) -> Vec<Port> {
    desired
        .iter()
        .flat_map(|d| {
            d.endpoints.iter().map(|ep| Port {
                veth: veth_name(&ep.id),
                vni: d.network.vni.get(),
                mac: ep.mac,
                ipv4: ep.ipv4,
                ipv6: ep.mac.ipv6_link_local(),
            })
        })
        .collect()
}

impl Agent {
    /// Makes the data plane and the host devices match the view, then publishes the result
    /// for the readers ([`super::published`]).
    pub(super) async fn reconcile(&self, local: &mut Local) -> Outcome {
        let outcome = self.reconcile_pass(local).await;
        self.published
            .publish(super::published::Published::of(local));
        outcome
    }

    /// One reconcile pass.
    async fn reconcile_pass(&self, local: &mut Local) -> Outcome {
        let conflicts = local.view.vni_conflicts();
        if conflicts != local.conflicts {
            for (vni, (winner, losers)) in &conflicts {
                log::warn!(
                    "networks {} claim VNI {vni} of network {winner}: they are ignored",
                    losers
                        .iter()
                        .map(Name::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            local.conflicts = conflicts;
        }
        let desired = local.view.desired(&self.cfg.node);
        let wanted: HashSet<Vni> = desired.iter().map(|d| d.network.vni).collect();
        let gone: Vec<Vni> = local
            .applied
            .keys()
            .filter(|v| !wanted.contains(v))
            .copied()
            .collect();
        for vni in gone {
            if let Some(a) = local.applied.remove(&vni) {
                self.teardown(vni, a).await;
            }
        }
        // The edge's table and port security's in one `nft` transaction, before any bridge
        // or veth of the pass is built: a veth is guarded from the moment it exists.
        let change = self.guard.prepare(guarded_ports(&desired)).await;
        let rules = self.apply_rules(&mut local.edge, &desired, change).await;
        let mut outcome = Outcome::default();
        let mut built = Vec::new();
        for d in &desired {
            let vni = d.network.vni;
            if let Entry::Vacant(slot) = local.applied.entry(vni) {
                match self.setup(&d.network, &d.table).await {
                    Ok(()) => {
                        log::info!("network {} (VNI {vni}) is up on this host", d.network.name);
                        slot.insert(Applied {
                            name: d.network.name.clone(),
                            table: d.table.clone(),
                            veths: BTreeMap::new(),
                        });
                    }
                    Err(e) => {
                        log::error!("setting up network {} on this host: {e}", d.network.name);
                        for ep in &d.endpoints {
                            let down = ConnectFailure::NetworkDown(d.network.name.clone());
                            outcome.failed.insert(ep.id.clone(), down);
                        }
                        continue;
                    }
                }
            }
            let Some(a) = local.applied.get_mut(&vni) else {
                continue;
            };
            if a.table != d.table {
                match self.dp.update_network(vni, &d.table) {
                    Ok(()) => a.table = d.table.clone(),
                    Err(e) => log::error!("updating network {}: {e}", d.network.name),
                }
            }
            self.reconcile_veths(d, a, &mut local.failed, &mut outcome, &mut built)
                .await;
        }
        match rules {
            // Not isolated, not reachable as asked: the containers this pass plumbed fail.
            Err(e) => {
                for id in built {
                    outcome
                        .failed
                        .entry(id)
                        .or_insert_with(|| ConnectFailure::Edge(e.clone()));
                }
            }
            Ok(()) => self.ensure_forwarding(&mut local.edge, &desired),
        }
        let applied = &local.applied;
        self.reconcile_resolvers(&mut local.edge, &local.view, &desired, |v| {
            applied.contains_key(&v)
        })
        .await;
        let local_ids: HashSet<&EndpointId> = desired
            .iter()
            .flat_map(|d| &d.endpoints)
            .map(|e| &e.id)
            .collect();
        local.failed.retain(|id, _| local_ids.contains(id));
        outcome
    }

    /// Builds the veths of `d`'s local endpoints that `a` lacks, removes those of endpoints
    /// that are gone; the endpoints given a veth (built or adopted) are added to `built`.
    async fn reconcile_veths(
        &self,
        d: &Desired,
        a: &mut Applied,
        failed: &mut HashMap<EndpointId, Endpoint>,
        outcome: &mut Outcome,
        built: &mut Vec<EndpointId>,
    ) {
        let wanted: HashSet<&EndpointId> = d.endpoints.iter().map(|e| &e.id).collect();
        let gone: Vec<EndpointId> = a
            .veths
            .keys()
            .filter(|id| !wanted.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(veth) = a.veths.remove(&id) {
                if let Err(e) = host::delete_link(&veth).await {
                    log::warn!("{e}");
                }
            }
        }
        for ep in &d.endpoints {
            if a.veths.contains_key(&ep.id) || failed.get(&ep.id) == Some(ep) {
                continue;
            }
            match self.plumb(&d.network, ep).await {
                Ok(veth) => {
                    failed.remove(&ep.id);
                    a.veths.insert(ep.id.clone(), veth);
                    built.push(ep.id.clone());
                }
                Err(e) => {
                    log::error!(
                        "building the veth of {} in network {}: {e}",
                        ep.name,
                        d.network.name
                    );
                    failed.insert(ep.id.clone(), ep.clone());
                    outcome.failed.insert(ep.id.clone(), e);
                }
            }
        }
    }

    /// Gives endpoint `ep` of network `n` its veth, or adopts the one a previous run left
    /// (putting it back on the bridge, which may be new). Returns the veth's host end.
    async fn plumb(&self, n: &Network, ep: &Endpoint) -> Result<String, ConnectFailure> {
        let veth = veth_name(&ep.id);
        let bridge = bridge_name(n.vni.get());
        if host::link_exists(&veth) {
            host::reattach(&veth, &bridge).await?;
            return Ok(veth);
        }
        if ep.owner == Owner::Docker {
            // Docker moves the interface into the container itself, after the join.
            host::handoff_veth(&host::HandoffLink {
                container_end: ep.ifname.as_str(),
                host_veth: &veth,
                bridge: &bridge,
                mac: ep.mac.0,
                mtu: n.mtu,
                gso_max_segs: self.dp.tso_segments(n.mtu),
            })
            .await?;
            return Ok(veth);
        }
        let path = host::netns_path(&ep.netns).map_err(HostError::from)?;
        host::connect_container(&host::ContainerLink {
            netns_path: &path,
            ifname: ep.ifname.as_str(),
            host_veth: &veth,
            bridge: &bridge,
            mac: ep.mac.0,
            ipv4: ep.ipv4,
            prefix: n.subnet.prefix_len(),
            mtu: n.mtu,
            gso_max_segs: self.dp.tso_segments(n.mtu),
            route_via: (!n.internal).then_some(n.gateway),
        })
        .await?;
        Ok(veth)
    }

    async fn setup(&self, n: &Network, table: &NetworkTable) -> Result<(), SetupError> {
        let bridge = host::ensure_bridge(n.vni.get(), n.mtu).await?;
        edge::host::set_gateway(&bridge, &n.subnet, n.gateway).await?;
        // The data plane opens the network's TAP, with its own offloads and queues.
        self.dp
            .add_network(n.vni, &host::tap_name(n.vni.get()), n.mtu, table)?;
        if let Err(e) = host::attach_tap(n.vni.get()).await {
            if let Err(e2) = self.dp.remove_network(n.vni) {
                log::warn!("removing VNI {} from the data plane: {e2}", n.vni);
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn teardown(&self, vni: Vni, a: Applied) {
        for veth in a.veths.values() {
            if let Err(e) = host::delete_link(veth).await {
                log::warn!("{e}");
            }
        }
        if let Err(e) = self.dp.remove_network(vni) {
            log::warn!("removing VNI {vni} from the data plane: {e}");
        }
        if let Err(e) = host::delete_link(&bridge_name(vni.get())).await {
            log::warn!("{e}");
        }
        log::info!(
            "network {} (VNI {vni}) is down on this host (no local endpoints)",
            a.name
        );
    }
}
