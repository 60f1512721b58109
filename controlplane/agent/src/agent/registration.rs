//! The node's registration: claiming its name at start (refused, the agent stops having
//! changed nothing), keeping its liveness lease, and leaving at shutdown.
//!
//! Nothing that changes the host or etcd on the node's behalf happens before the name is
//! claimed: the watch loop waits for it ([`Agent::registered`]), and so do connects.

use std::time::Duration;

use crate::domain::identity::Claim;
use crate::domain::time::now_rfc3339;
use crate::domain::Node;
use crate::error::AgentError;

use super::Agent;

/// How long registration waits before retrying an etcd that failed.
const RETRY: Duration = Duration::from_secs(1);

impl Agent {
    pub(super) fn node_record(&self) -> Node {
        Node {
            name: self.cfg.node.clone(),
            vtep: self.cfg.vtep,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            started: now_rfc3339(),
            node_id: Some(self.cfg.node_id.clone()),
            underlay_mtu: self.underlay_mtu(),
        }
    }

    /// Claims the node's name and keeps its liveness lease, retrying while etcd is
    /// unreachable. Returns only with the reason the agent must stop: the name is held by
    /// another host (at start), or was taken over by one (later).
    pub async fn run_registration(&self) -> AgentError {
        let node = self.node_record();
        let mut warned = false;
        let (lease, claim) = loop {
            match self
                .store
                .claim_node(&node, self.cfg.lease_ttl, self.cfg.replace_node)
                .await
            {
                Ok(done) => break done,
                Err(e @ (AgentError::NodeTaken(_) | AgentError::Access(_))) => return e,
                Err(e) => {
                    self.health.lease_failed(&e);
                    if !warned {
                        log::warn!("registering node {}: {e}; retrying", node.name);
                        warned = true;
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        match &claim {
            Claim::Fresh | Claim::Restart => {}
            Claim::Replace(old) => log::warn!(
                "took node name {} over from node id {} (VTEP {}) with --replace-node: the \
                 endpoints it served are released",
                node.name,
                old.node_id
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), ToString::to_string),
                old.vtep
            ),
        }
        log::info!(
            "registered node {} (node id {}) with VTEP {} (lease {:x}, ttl {:?})",
            node.name,
            self.cfg.node_id,
            node.vtep,
            lease.id,
            lease.ttl
        );
        self.health.lease_kept();
        let ka = self.store.keep_alive(node, lease, self.health.clone());
        let lost = ka.lost();
        *self.keepalive.lock().await = Some(ka);
        self.registered.send_replace(true);
        AgentError::NodeTaken(lost.await)
    }

    /// Waits until the node's name is claimed.
    pub(super) async fn registered(&self) {
        let mut rx = self.registered.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Whether the node's name is claimed.
    pub(super) fn is_registered(&self) -> bool {
        *self.registered.borrow()
    }

    /// Tells the peers' data planes that this one goes (after [`Agent::deregister`]): with the
    /// lease revoked and no heartbeat heard, they withdraw this VTEP at once.
    pub fn farewell(&self) {
        self.dp.farewell();
    }

    /// Stops renewing the lease and revokes it, so peers withdraw this VTEP at once.
    pub async fn deregister(&self) {
        self.health.lease_released();
        if let Some(ka) = self.keepalive.lock().await.take() {
            if let Err(e) = ka.stop().await {
                log::warn!("revoking the liveness lease: {e}");
            }
        }
    }
}
