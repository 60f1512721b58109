//! Liveness of the other nodes, from two sources: the etcd lease each agent keeps, and the
//! heartbeats its data plane sends ([`ovnet_dataplane::peers`]). A node is up while its lease
//! is held OR this host heard its data plane within [`HEARD_WINDOW`]; its VTEP leaves the
//! tables and flood lists only when both are gone. So a host cut off from etcd but not from
//! its peers keeps every path (its lease expires, its heartbeats go on), and a host that
//! really dies (agent and data plane gone) is withdrawn once its lease expires.
//!
//! Every [`HEARTBEAT_INTERVAL`] [`Agent::run_liveness`] names the peers to the data plane
//! (every registered node but this one) and puts the nodes heard lately in the view; a change
//! reconciles the tables.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use ovnet_dataplane::HEARTBEAT_INTERVAL;

use crate::domain::{Node, NodeName};
use crate::error::AgentError;

use super::Agent;

/// How recently a node's data plane must have been heard to count as up without its lease:
/// three heartbeats.
pub const HEARD_WINDOW: Duration = Duration::from_secs(3);

/// A node as `node ls` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLiveness {
    /// The node.
    pub node: Node,
    /// Whether its etcd lease is held.
    pub lease: bool,
    /// How long ago this host heard its data plane (`None`: never, or it is this host).
    pub heard: Option<Duration>,
}

impl NodeLiveness {
    /// Up: its lease is held or it was heard within [`HEARD_WINDOW`].
    pub fn alive(&self) -> bool {
        self.lease || self.heard.is_some_and(|h| h <= HEARD_WINDOW)
    }
}

impl Agent {
    /// Keeps the data plane's peers and the view's heard nodes current, forever.
    pub async fn run_liveness(&self) {
        let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut named: Vec<SocketAddr> = Vec::new();
        loop {
            ticker.tick().await;
            let mut local = self.local.lock().await;
            let mut peers: Vec<SocketAddr> = local
                .view
                .nodes()
                .filter(|n| n.name != self.cfg.node)
                .map(|n| SocketAddr::V4(n.vtep))
                .collect();
            peers.sort();
            peers.dedup();
            if peers != named {
                self.dp.set_peers(&peers);
                named = peers;
            }
            let heard = self.heard_nodes(local.view.nodes());
            let before: BTreeSet<NodeName> = local
                .view
                .nodes()
                .filter(|n| local.view.is_up(&n.name))
                .map(|n| n.name.clone())
                .collect();
            if local.view.set_heard(heard) {
                let after: BTreeSet<NodeName> = local
                    .view
                    .nodes()
                    .filter(|n| local.view.is_up(&n.name))
                    .map(|n| n.name.clone())
                    .collect();
                for n in after.difference(&before) {
                    log::info!("node {n} is up again: its data plane is heard");
                }
                for n in before.difference(&after) {
                    log::warn!(
                        "node {n} is down: no lease and not heard for {HEARD_WINDOW:?}; its VTEP \
                         is withdrawn"
                    );
                }
                if before != after {
                    self.reconcile(&mut local).await;
                }
            }
        }
    }

    /// The nodes among `nodes` whose data plane was heard within [`HEARD_WINDOW`].
    fn heard_nodes<'a>(&self, nodes: impl Iterator<Item = &'a Node>) -> BTreeSet<NodeName> {
        let heard = self.heard_by_vtep();
        nodes
            .filter(|n| n.name != self.cfg.node)
            .filter(|n| {
                heard
                    .get(&SocketAddr::V4(n.vtep))
                    .is_some_and(|h| *h <= HEARD_WINDOW)
            })
            .map(|n| n.name.clone())
            .collect()
    }

    fn heard_by_vtep(&self) -> HashMap<SocketAddr, Duration> {
        self.dp
            .heard()
            .into_iter()
            .filter_map(|p| Some((p.vtep, p.since?)))
            .collect()
    }

    /// The registered nodes, by name: their lease (from etcd) and when this host last heard
    /// their data plane.
    pub async fn node_liveness(&self) -> Result<Vec<NodeLiveness>, AgentError> {
        let heard = self.heard_by_vtep();
        Ok(self
            .store
            .list_nodes()
            .await?
            .into_iter()
            .map(|(node, lease)| {
                let heard = if node.name == self.cfg.node {
                    None
                } else {
                    heard.get(&SocketAddr::V4(node.vtep)).copied()
                };
                NodeLiveness { node, lease, heard }
            })
            .collect())
    }
}
