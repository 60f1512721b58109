//! Endpoints in etcd: attach a container (claiming its name in the network, its address and
//! its published ports in one transaction), look one up, detach it (freeing its address and
//! ports), list a network's.
//!
//! A published port is claimed on the endpoint's node, `{p}ports/{node}/{proto}/{ip}:{port}`.
//! `0.0.0.0` collides with every address of its port, which no single-key compare can say:
//! the planner checks it on the node's claims as read, and a transaction that publishes also
//! requires that no claim of the node changed after that read (as subnets do for networks).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use ovnet_proto::Message;

use super::{committed_at, Found, Record, Stamped, Store};
use crate::domain::plan::{self, EndpointRequest, Taken};
use crate::domain::time::now_rfc3339;
use crate::domain::{Endpoint, EndpointId, Name, NetworkId};
use crate::error::{AgentError, NotFound};

fn not_connected(name: &str, network: &Name) -> AgentError {
    NotFound::Endpoint {
        container: name.to_owned(),
        network: network.clone(),
    }
    .into()
}

impl Store {
    /// Adds to a transaction the claim of `ep`'s published ports on its node: each host port
    /// must be free, and no port of the node may have changed since `revision` (the snapshot
    /// the endpoint was planned on).
    pub(super) fn claim_ports(
        &self,
        ep: &Endpoint,
        revision: i64,
        when: &mut Vec<Compare>,
        then: &mut Vec<TxnOp>,
    ) {
        if ep.ports.is_empty() {
            return;
        }
        when.push(
            Compare::mod_revision(self.keys.ports(&ep.node), CompareOp::Less, revision + 1)
                .with_prefix(),
        );
        for p in &ep.ports {
            let k_port = self.keys.port(&ep.node, &p.host);
            when.push(Compare::create_revision(
                k_port.clone(),
                CompareOp::Equal,
                0,
            ));
            then.push(TxnOp::put(k_port, ep.id.to_string(), None));
        }
    }

    /// Attaches a container to a network (name, ID or ID prefix): claims its name in the
    /// network and an address (the requested one, or the lowest free), with docker's MAC for
    /// it ([`plan::plan_endpoint`]). Returns the endpoint and the revision that created it.
    pub async fn create_endpoint(
        &self,
        network: &str,
        req: &EndpointRequest,
    ) -> Result<Stamped<Endpoint>, AgentError> {
        let op = format!("connect {} to network {network}", req.name);
        self.retry(&op, || Box::pin(self.try_create_endpoint(network, req)))
            .await
    }

    /// One attempt of [`Store::create_endpoint`]: read, decide, claim; `None` after a lost race.
    async fn try_create_endpoint(
        &self,
        network: &str,
        req: &EndpointRequest,
    ) -> Result<Option<Stamped<Endpoint>>, AgentError> {
        let Found {
            network: net,
            mod_revision,
            revision,
        } = self.find_network(network).await?;
        let k_ep = self.keys.endpoint(&net.id, req.name.as_str());
        let (_, existing) = self
            .range_opts(&k_ep, GetOptions::new().with_revision(revision))
            .await?;
        let (_, claims) = self.range(&self.keys.ips(&net.id), revision).await?;
        let held = if req.ports.is_empty() {
            Vec::new()
        } else {
            self.range(&self.keys.ports(&req.node), revision).await?.1
        };
        let taken = Taken {
            name: !existing.is_empty(),
            addresses: claims
                .iter()
                .filter_map(|kv| self.keys.parse_ip(&net.id, kv.key()))
                .collect::<HashSet<Ipv4Addr>>(),
            ports: held
                .iter()
                .filter_map(|kv| self.keys.parse_port(&req.node, kv.key()))
                .collect(),
        };
        let ep = plan::plan_endpoint(req, &net, &taken, EndpointId::random(), now_rfc3339())?;
        let k_ip = self.keys.ip(&net.id, ep.ipv4);
        let mut when = vec![
            Compare::mod_revision(
                self.keys.network(net.name.as_str()),
                CompareOp::Equal,
                mod_revision,
            ),
            Compare::create_revision(k_ep.clone(), CompareOp::Equal, 0),
            Compare::create_revision(k_ip.clone(), CompareOp::Equal, 0),
        ];
        let mut then = vec![
            TxnOp::put(k_ep, ep.to_proto().encode_to_vec(), None),
            TxnOp::put(k_ip, ep.id.to_string(), None),
        ];
        self.claim_ports(&ep, revision, &mut when, &mut then);
        let txn = Txn::new().when(when).and_then(then);
        let resp = self.txn(txn).await?;
        Ok(resp.succeeded().then(|| Stamped {
            record: ep,
            revision: committed_at(&resp),
        }))
    }

    /// One endpoint of a network (name, ID or ID prefix) by its name.
    pub async fn get_endpoint(&self, network: &str, name: &str) -> Result<Endpoint, AgentError> {
        let Found {
            network: net,
            revision,
            ..
        } = self.find_network(network).await?;
        let (_, kvs) = self
            .range_opts(
                &self.keys.endpoint(&net.id, name),
                GetOptions::new().with_revision(revision),
            )
            .await?;
        match kvs.first().and_then(|kv| self.decode(kv)) {
            Some(Ok(Record::Endpoint(ep))) => Ok(ep),
            Some(Err(e)) => Err(e),
            _ => Err(not_connected(name, &net.name)),
        }
    }

    /// Detaches a container: deletes its endpoint and frees its address. Returns the removed
    /// endpoint and the revision that removed it.
    pub async fn delete_endpoint(
        &self,
        network: &str,
        name: &str,
    ) -> Result<Stamped<Endpoint>, AgentError> {
        self.retry(&format!("disconnect {name} from network {network}"), || {
            Box::pin(self.try_delete_endpoint(network, name))
        })
        .await
    }

    /// One attempt of [`Store::delete_endpoint`]: read, decide, claim; `None` after a lost race.
    async fn try_delete_endpoint(
        &self,
        network: &str,
        name: &str,
    ) -> Result<Option<Stamped<Endpoint>>, AgentError> {
        let Found {
            network: net,
            revision,
            ..
        } = self.find_network(network).await?;
        let k_ep = self.keys.endpoint(&net.id, name);
        let (_, kvs) = self
            .range_opts(&k_ep, GetOptions::new().with_revision(revision))
            .await?;
        let Some(kv) = kvs.first() else {
            return Err(not_connected(name, &net.name));
        };
        let ep = match self.decode(kv) {
            Some(Ok(Record::Endpoint(ep))) => ep,
            Some(Err(e)) => return Err(e),
            _ => return Err(not_connected(name, &net.name)),
        };
        let mut then = vec![
            TxnOp::delete(k_ep.clone(), None),
            TxnOp::delete(self.keys.ip(&net.id, ep.ipv4), None),
        ];
        then.extend(
            ep.ports
                .iter()
                .map(|p| TxnOp::delete(self.keys.port(&ep.node, &p.host), None)),
        );
        let txn = Txn::new()
            .when([Compare::mod_revision(
                k_ep,
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then(then);
        let resp = self.txn(txn).await?;
        Ok(resp.succeeded().then(|| Stamped {
            record: ep,
            revision: committed_at(&resp),
        }))
    }

    /// The endpoints of one network (by exact ID), by name.
    pub async fn list_endpoints(
        &self,
        network_id: &NetworkId,
    ) -> Result<Vec<Endpoint>, AgentError> {
        let (_, kvs) = self.range(&self.keys.endpoints(network_id), 0).await?;
        Ok(self.records(&kvs, |r| match r {
            Record::Endpoint(e) => Some(e),
            _ => None,
        }))
    }
}
