//! A node's record changing while its agent runs: the underlay MTU it reports
//! ([`crate::domain::mtu`]) is written again when the agent sees it change. (Registration and
//! liveness are [`super::liveness`]'s.)

use etcd_client::{Txn, TxnOp};
use ovnet_proto::Message;

use super::Store;
use crate::domain::Node;
use crate::error::AgentError;

impl Store {
    /// Writes `{p}nodes/{name}` again with `node`'s values (its liveness key is untouched);
    /// returns the revision of the write.
    pub async fn update_node(&self, node: &Node) -> Result<i64, AgentError> {
        let txn = Txn::new().and_then([TxnOp::put(
            self.keys.node(&node.name),
            node.to_proto().encode_to_vec(),
            None,
        )]);
        let resp = self.txn(txn).await?;
        Ok(resp.header().map_or(0, |h| h.revision()))
    }
}
