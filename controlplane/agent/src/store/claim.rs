//! Claiming a node name: the record `{p}nodes/{name}` says which host (node id) holds it, and
//! [`Store::claim_node`] writes it and the leased `{p}alive/{name}` in one transaction that
//! holds only if neither changed since it read them (the decision is
//! [`crate::domain::identity::decide`]). Two agents racing for a name: one wins, the other
//! reads again and is refused.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};
use ovnet_proto::Message;

use super::{Lease, Record, Store};
use crate::domain::identity::{self, Claim};
use crate::domain::Node;
use crate::error::AgentError;

impl Store {
    /// Registers `node` under its name, with a new liveness lease of `ttl` (rounded up to
    /// whole seconds): as a fresh name, a restart of the host that holds it, or, with
    /// `replace`, taking it from a host whose agent is down. Refused with
    /// [`AgentError::NodeTaken`] otherwise, having changed nothing.
    pub async fn claim_node(
        &self,
        node: &Node,
        ttl: Duration,
        replace: bool,
    ) -> Result<(Lease, Claim), AgentError> {
        let lease = self.grant(ttl).await?;
        let claimed = self
            .retry(&format!("register node {}", node.name), || {
                Box::pin(self.try_claim(node, lease, replace))
            })
            .await;
        if claimed.is_err() {
            // Nothing holds it; etcd would drop it after the TTL anyway.
            let _ = self.revoke_lease(&lease).await;
        }
        claimed.map(|c| (lease, c))
    }

    /// One attempt of [`Store::claim_node`]: read, decide, claim; `None` after a lost race.
    async fn try_claim(
        &self,
        node: &Node,
        lease: Lease,
        replace: bool,
    ) -> Result<Option<Claim>, AgentError> {
        let k_node = self.keys.node(&node.name);
        let k_alive = self.keys.alive(&node.name);
        let (rev, kvs) = self.range_opts(&k_node, GetOptions::new()).await?;
        let (_, alive) = self
            .range_opts(
                &k_alive,
                GetOptions::new().with_revision(rev).with_keys_only(),
            )
            .await?;
        let (held, mod_revision) = match kvs.first() {
            None => (None, 0),
            Some(kv) => match self.decode(kv) {
                Some(Ok(Record::Node(n))) => (Some(n), kv.mod_revision()),
                // A damaged record holds nothing: it is replaced (if unchanged meanwhile).
                other => {
                    if let Some(Err(e)) = other {
                        log::warn!("{e}: registering over it");
                    }
                    (None, kv.mod_revision())
                }
            },
        };
        let claim = identity::decide(node, held.as_ref(), !alive.is_empty(), replace)?;
        let mut when = vec![Compare::mod_revision(
            k_node.clone(),
            CompareOp::Equal,
            mod_revision,
        )];
        if matches!(claim, Claim::Replace(_)) {
            // Still down: a holder that came back keeps its name.
            when.push(Compare::create_revision(
                k_alive.clone(),
                CompareOp::Equal,
                0,
            ));
        }
        let txn = Txn::new().when(when).and_then([
            TxnOp::put(k_node, node.to_proto().encode_to_vec(), None),
            TxnOp::put(
                k_alive,
                Vec::new(),
                Some(PutOptions::new().with_lease(lease.id)),
            ),
        ]);
        Ok(self.txn(txn).await?.succeeded().then_some(claim))
    }
}
