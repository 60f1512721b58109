//! A node's record changing while its agent runs: the underlay MTU it reports
//! ([`crate::domain::mtu`]) is written again when the agent sees it change, by the host that
//! holds the name only. (Claiming the name is `claim`'s, the lease [`super::liveness`]'s.)

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use ovnet_proto::Message;

use super::{Record, Store};
use crate::domain::identity::{self, Claim};
use crate::domain::Node;
use crate::error::AgentError;

/// What [`Store::record_underlay_mtu`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderlayRecord {
    /// Written; the record said `was` before.
    Written {
        /// The MTU the record said before.
        was: Option<u32>,
    },
    /// The record already says so.
    Unchanged,
    /// No record under the name, or another host's: nothing written (registering is
    /// registration's business).
    NotHeld,
}

impl Store {
    /// Sets the underlay MTU in the record of node `me` (its name, node id and VTEP as this
    /// host registers them) to `mtu`, if this host holds the name: read, check, write in one
    /// transaction that holds only if the record did not change meanwhile.
    pub async fn record_underlay_mtu(
        &self,
        me: &Node,
        mtu: u32,
    ) -> Result<UnderlayRecord, AgentError> {
        self.retry(
            &format!("record the underlay MTU of node {}", me.name),
            || Box::pin(self.try_record_underlay_mtu(me, mtu)),
        )
        .await
    }

    /// One attempt of [`Store::record_underlay_mtu`]; `None` after a lost race.
    async fn try_record_underlay_mtu(
        &self,
        me: &Node,
        mtu: u32,
    ) -> Result<Option<UnderlayRecord>, AgentError> {
        let key = self.keys.node(&me.name);
        let (_, kvs) = self.range_opts(&key, GetOptions::new()).await?;
        let Some(kv) = kvs.first() else {
            return Ok(Some(UnderlayRecord::NotHeld));
        };
        let Some(Ok(Record::Node(mut held))) = self.decode(kv) else {
            return Ok(Some(UnderlayRecord::NotHeld));
        };
        // The one rule for "this host holds the name": registering would be a restart.
        if identity::decide(me, Some(&held), true, false) != Ok(Claim::Restart) {
            return Ok(Some(UnderlayRecord::NotHeld));
        }
        if held.underlay_mtu == Some(mtu) {
            return Ok(Some(UnderlayRecord::Unchanged));
        }
        let was = held.underlay_mtu.replace(mtu);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::put(key, held.to_proto().encode_to_vec(), None)]);
        let written = self.txn(txn).await?.succeeded();
        Ok(written.then_some(UnderlayRecord::Written { was }))
    }
}
