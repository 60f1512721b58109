//! External VTEPs in etcd: add one to a network's flood list, remove it, list a network's.

use std::net::SocketAddrV4;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use ovnet_proto::Message;

use super::members::Retry;
use super::{Found, Record, Store};
use crate::domain::{ExternalVtep, NetworkId};
use crate::error::{AgentError, Exists, NotFound};

impl Store {
    /// Adds an external VTEP to a network (name, ID or ID prefix).
    pub async fn add_vtep(
        &self,
        network: &str,
        addr: SocketAddrV4,
    ) -> Result<ExternalVtep, AgentError> {
        self.retry(&format!("add vtep {addr} to network {network}"), || {
            Box::pin(self.try_add_vtep(network, addr))
        })
        .await
    }

    /// One attempt of [`Store::add_vtep`]: read, decide, claim; `None` after a lost race.
    async fn try_add_vtep(
        &self,
        network: &str,
        addr: SocketAddrV4,
    ) -> Result<Option<ExternalVtep>, AgentError> {
        let Found {
            network: net,
            mod_revision,
            ..
        } = self.find_network(network).await?;
        let key = self.keys.vtep(&net.id, addr);
        let vtep = ExternalVtep {
            network_id: net.id.clone(),
            addr,
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(
                    self.keys.network(net.name.as_str()),
                    CompareOp::Equal,
                    mod_revision,
                ),
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([TxnOp::put(
                key.clone(),
                vtep.to_proto().encode_to_vec(),
                None,
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(Some(vtep));
        }
        let there = resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Get(g) => !g.kvs().is_empty(),
            _ => false,
        });
        if there {
            return Err(Exists::Vtep {
                addr,
                network: net.name,
            }
            .into());
        }
        Ok(None)
    }

    /// Removes an external VTEP from a network (name, ID or ID prefix).
    pub async fn remove_vtep(&self, network: &str, addr: SocketAddrV4) -> Result<(), AgentError> {
        let net = self.get_network(network).await?;
        let key = self.keys.vtep(&net.id, addr);
        let resp = self
            .call("delete", Retry::IfUnsent, |c| {
                let key = key.clone();
                async move { c.kv_client().delete(key, None).await }
            })
            .await?;
        if resp.deleted() == 0 {
            return Err(NotFound::Vtep {
                addr,
                network: net.name,
            }
            .into());
        }
        Ok(())
    }

    /// The external VTEPs of one network (by exact ID), by address.
    pub async fn list_vteps(
        &self,
        network_id: &NetworkId,
    ) -> Result<Vec<ExternalVtep>, AgentError> {
        let (_, kvs) = self.range(&self.keys.vteps(network_id), 0).await?;
        Ok(self.records(&kvs, |r| match r {
            Record::Vtep(v) => Some(v),
            _ => None,
        }))
    }
}
