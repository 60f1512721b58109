//! Networks in etcd: create (claiming name, VNI and subnet in one transaction), look up, list,
//! remove (refused while the network has endpoints).

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use ovnet_proto::Message;

use super::{Found, Record, RecordKey, Store};
use crate::domain::plan::{self, NetworkRequest};
use crate::domain::time::now_rfc3339;
use crate::domain::{Network, NetworkId};
use crate::error::{AgentError, InUse};

impl Store {
    /// Creates a network, choosing what `req` leaves unset ([`plan::plan_network`]).
    pub async fn create_network(&self, req: &NetworkRequest) -> Result<Network, AgentError> {
        self.retry(&format!("create network {}", req.name), || {
            Box::pin(self.try_create_network(req))
        })
        .await
    }

    /// One attempt of [`Store::create_network`]: read, decide, claim; `None` after a lost race.
    async fn try_create_network(
        &self,
        req: &NetworkRequest,
    ) -> Result<Option<Network>, AgentError> {
        let (rev, kvs) = self.range(&self.keys.networks(), 0).await?;
        let existing = self.records(&kvs, |r| match r {
            Record::Network(n) => Some(n),
            _ => None,
        });
        let net = plan::plan_network(req, &existing, NetworkId::random(), now_rfc3339())?;
        let k_name = self.keys.network(net.name.as_str());
        let k_vni = self.keys.vni(net.vni);
        let k_subnet = self.keys.subnet(&net.subnet);
        let txn = Txn::new()
            .when([
                Compare::create_revision(k_name.clone(), CompareOp::Equal, 0),
                Compare::create_revision(k_vni.clone(), CompareOp::Equal, 0),
                Compare::create_revision(k_subnet.clone(), CompareOp::Equal, 0),
                // No subnet claimed since the read: the overlap check still holds.
                Compare::mod_revision(self.keys.subnets(), CompareOp::Less, rev + 1).with_prefix(),
            ])
            .and_then([
                TxnOp::put(k_name, net.to_proto().encode_to_vec(), None),
                TxnOp::put(k_vni, net.id.to_string(), None),
                TxnOp::put(k_subnet, net.id.to_string(), None),
            ]);
        Ok(self.txn(txn).await?.succeeded().then_some(net))
    }

    /// Finds a network by exact ID, then exact name, then unique ID prefix (like docker).
    pub async fn get_network(&self, name_or_id: &str) -> Result<Network, AgentError> {
        Ok(self.find_network(name_or_id).await?.network)
    }

    /// All networks, by name.
    pub async fn list_networks(&self) -> Result<Vec<Network>, AgentError> {
        let (_, kvs) = self.range(&self.keys.networks(), 0).await?;
        // Keys are returned in key order, i.e. by name.
        Ok(self.records(&kvs, |r| match r {
            Record::Network(n) => Some(n),
            _ => None,
        }))
    }

    /// Removes a network with its VNI and subnet claims and its external VTEPs, refused while
    /// it has endpoints. Returns the removed record.
    pub async fn remove_network(&self, name_or_id: &str) -> Result<Network, AgentError> {
        self.retry(&format!("remove network {name_or_id}"), || {
            Box::pin(self.try_remove_network(name_or_id))
        })
        .await
    }

    /// One attempt of [`Store::remove_network`]: read, decide, claim; `None` after a lost race.
    async fn try_remove_network(&self, name_or_id: &str) -> Result<Option<Network>, AgentError> {
        let Found {
            network: net,
            mod_revision,
            revision,
        } = self.find_network(name_or_id).await?;
        let (_, eps) = self.range(&self.keys.endpoints(&net.id), revision).await?;
        if !eps.is_empty() {
            // Names come from the keys: a damaged record still blocks the removal.
            let endpoints = eps
                .iter()
                .filter_map(|kv| match self.keys.parse(kv.key()) {
                    Some(RecordKey::Endpoint { name, .. }) => Some(name.to_string()),
                    _ => None,
                })
                .collect();
            return Err(InUse::ActiveEndpoints {
                network: net.name.clone(),
                id: net.id.to_string(),
                endpoints,
            }
            .into());
        }
        let prefix = || Some(DeleteOptions::new().with_prefix());
        let txn = Txn::new()
            .when([
                Compare::mod_revision(
                    self.keys.network(net.name.as_str()),
                    CompareOp::Equal,
                    mod_revision,
                ),
                // No endpoint appeared since we looked.
                Compare::create_revision(self.keys.endpoints(&net.id), CompareOp::Equal, 0)
                    .with_prefix(),
            ])
            .and_then([
                TxnOp::delete(self.keys.network(net.name.as_str()), None),
                TxnOp::delete(self.keys.vni(net.vni), None),
                TxnOp::delete(self.keys.subnet(&net.subnet), None),
                TxnOp::delete(self.keys.vteps(&net.id), prefix()),
                TxnOp::delete(self.keys.ips(&net.id), prefix()),
                TxnOp::delete(self.keys.reservations(&net.id), prefix()),
            ]);
        Ok(self.txn(txn).await?.succeeded().then_some(net))
    }
}
