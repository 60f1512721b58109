//! Reservations in etcd: an address claimed before its endpoint exists (Docker's IPAM asks
//! for an address first), released again, or taken over by the endpoint when it is created.
//!
//! A reservation is two keys written together: the address's ordinary claim
//! `{p}ips/{network_id}/{ip}` (value: the reservation's endpoint ID), which every other
//! connect and reservation respects, and the [`Reservation`] record at
//! `{p}reservations/{network_id}/{ip}` saying which node holds it. Creating the endpoint
//! compares the claim's value and the record's revision, so an endpoint never takes an address
//! whose reservation was released meanwhile.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use ovnet_proto::Message;

use super::{committed_at, Found, Stamped, Store};
use crate::domain::plan::{self, EndpointRequest, Taken};
use crate::domain::reservation::{plan_reservation, Reservation};
use crate::domain::time::now_rfc3339;
use crate::domain::{Endpoint, EndpointId, NetworkId, NodeName};
use crate::error::{AgentError, NotFound};

impl Store {
    /// Reserves an address of `network` (name, ID or ID prefix) for `node`: the `requested`
    /// one if it is free, else the lowest free one.
    pub async fn reserve_address(
        &self,
        network: &str,
        requested: Option<Ipv4Addr>,
        node: &NodeName,
    ) -> Result<Reservation, AgentError> {
        let op = format!("reserve an address in network {network}");
        self.retry(&op, || {
            Box::pin(self.try_reserve_address(network, requested, node))
        })
        .await
    }

    async fn try_reserve_address(
        &self,
        network: &str,
        requested: Option<Ipv4Addr>,
        node: &NodeName,
    ) -> Result<Option<Reservation>, AgentError> {
        let Found {
            network: net,
            mod_revision,
            revision,
        } = self.find_network(network).await?;
        let taken = self.claimed(&net.id, revision).await?;
        let r = plan_reservation(
            &net,
            requested,
            &taken,
            node,
            EndpointId::random(),
            now_rfc3339(),
        )?;
        let k_ip = self.keys.ip(&net.id, r.ipv4);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(
                    self.keys.network(net.name.as_str()),
                    CompareOp::Equal,
                    mod_revision,
                ),
                Compare::create_revision(k_ip.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(k_ip, r.endpoint_id.to_string(), None),
                TxnOp::put(
                    self.keys.reservation(&net.id, r.ipv4),
                    r.to_proto().encode_to_vec(),
                    None,
                ),
            ]);
        Ok(self.txn(txn).await?.succeeded().then_some(r))
    }

    /// The addresses claimed in a network, at `revision`.
    async fn claimed(
        &self,
        network_id: &NetworkId,
        revision: i64,
    ) -> Result<HashSet<Ipv4Addr>, AgentError> {
        let (_, claims) = self.range(&self.keys.ips(network_id), revision).await?;
        Ok(claims
            .iter()
            .filter_map(|kv| self.keys.parse_ip(network_id, kv.key()))
            .collect())
    }

    /// The reservation of `ip` in a network (exact ID) at `revision` (0: the latest), with the
    /// revision it was written at; `None` if there is none.
    async fn reservation_at(
        &self,
        network_id: &NetworkId,
        ip: Ipv4Addr,
        revision: i64,
    ) -> Result<Option<(Reservation, i64)>, AgentError> {
        let mut opts = GetOptions::new();
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let key = self.keys.reservation(network_id, ip);
        let (_, kvs) = self.range_opts(&key, opts).await?;
        let Some(kv) = kvs.first() else {
            return Ok(None);
        };
        let r = decode_reservation(kv)?;
        Ok(Some((r, kv.mod_revision())))
    }

    /// Releases `node`'s reservation of `ip` in a network (exact ID): the record and, if it
    /// still holds the reservation's value, the claim. `Ok(false)` if `node` holds none there
    /// (released already, taken by its endpoint, or another node's).
    pub async fn release_reservation(
        &self,
        network_id: &NetworkId,
        ip: Ipv4Addr,
        node: &NodeName,
    ) -> Result<bool, AgentError> {
        self.retry(
            &format!("release the reservation of {ip} in network {network_id}"),
            || Box::pin(self.try_release_reservation(network_id, ip, node)),
        )
        .await
    }

    async fn try_release_reservation(
        &self,
        network_id: &NetworkId,
        ip: Ipv4Addr,
        node: &NodeName,
    ) -> Result<Option<bool>, AgentError> {
        let Some((r, mod_revision)) = self.reservation_at(network_id, ip, 0).await? else {
            return Ok(Some(false));
        };
        if r.node != *node {
            return Ok(Some(false));
        }
        let k_res = self.keys.reservation(network_id, ip);
        let k_ip = self.keys.ip(network_id, ip);
        let (_, claim) = self.range_opts(&k_ip, GetOptions::new()).await?;
        let mut when = vec![Compare::mod_revision(
            k_res.clone(),
            CompareOp::Equal,
            mod_revision,
        )];
        let mut ops = vec![TxnOp::delete(k_res, None)];
        match claim.first() {
            // The claim goes only while it is still the reservation's.
            Some(kv) => {
                when.push(Compare::mod_revision(
                    k_ip.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                ));
                if kv.value() == r.endpoint_id.as_str().as_bytes() {
                    ops.push(TxnOp::delete(k_ip, None));
                }
            }
            None => when.push(Compare::create_revision(k_ip, CompareOp::Equal, 0)),
        }
        let txn = Txn::new().when(when).and_then(ops);
        Ok(self.txn(txn).await?.succeeded().then_some(true))
    }

    /// Every reservation `node` holds, in key order.
    pub async fn list_reservations(&self, node: &NodeName) -> Result<Vec<Reservation>, AgentError> {
        let (_, kvs) = self.range(&self.keys.all_reservations(), 0).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| match decode_reservation(kv) {
                Ok(r) => Some(r),
                Err(e) => {
                    log::warn!("skipping a reservation: {e}");
                    None
                }
            })
            .filter(|r| r.node == *node)
            .collect())
    }

    /// Creates the endpoint `req` in a network (exact ID) on the address `ip` its node
    /// (`req.node`) reserved for it, under `id`: the endpoint's record and name claim appear,
    /// the address's claim takes `id`, the reservation goes, in one transaction.
    pub async fn create_reserved_endpoint(
        &self,
        network_id: &NetworkId,
        ip: Ipv4Addr,
        req: &EndpointRequest,
        id: &EndpointId,
    ) -> Result<Stamped<Endpoint>, AgentError> {
        let op = format!("connect {} to network {network_id}", req.name);
        let req = EndpointRequest {
            ipv4: Some(ip),
            ..req.clone()
        };
        self.retry(&op, || {
            Box::pin(self.try_create_reserved_endpoint(network_id, ip, &req, id))
        })
        .await
    }

    async fn try_create_reserved_endpoint(
        &self,
        network_id: &NetworkId,
        ip: Ipv4Addr,
        req: &EndpointRequest,
        id: &EndpointId,
    ) -> Result<Option<Stamped<Endpoint>>, AgentError> {
        let Found {
            network: net,
            mod_revision,
            revision,
        } = self.find_network(network_id.as_str()).await?;
        let not_reserved = |ip| NotFound::Reservation {
            ip,
            network: net.name.clone(),
        };
        let (r, r_revision) = match self.reservation_at(&net.id, ip, revision).await? {
            Some((r, rev)) if r.node == req.node => (r, rev),
            _ => return Err(not_reserved(ip).into()),
        };
        let k_ep = self.keys.endpoint(&net.id, req.name.as_str());
        let (_, existing) = self
            .range_opts(&k_ep, GetOptions::new().with_revision(revision))
            .await?;
        let mut addresses = self.claimed(&net.id, revision).await?;
        addresses.remove(&ip);
        let held = if req.ports.is_empty() {
            Vec::new()
        } else {
            self.range(&self.keys.ports(&req.node), revision).await?.1
        };
        let taken = Taken {
            name: !existing.is_empty(),
            addresses,
            ports: held
                .iter()
                .filter_map(|kv| self.keys.parse_port(&req.node, kv.key()))
                .collect(),
        };
        let ep = plan::plan_endpoint(req, &net, &taken, id.clone(), now_rfc3339())?;
        let k_ip = self.keys.ip(&net.id, ip);
        let k_res = self.keys.reservation(&net.id, ip);
        let mut when = vec![
            Compare::mod_revision(
                self.keys.network(net.name.as_str()),
                CompareOp::Equal,
                mod_revision,
            ),
            Compare::create_revision(k_ep.clone(), CompareOp::Equal, 0),
            Compare::mod_revision(k_res.clone(), CompareOp::Equal, r_revision),
            Compare::value(k_ip.clone(), CompareOp::Equal, r.endpoint_id.to_string()),
        ];
        let mut then = vec![
            TxnOp::put(k_ep, ep.to_proto().encode_to_vec(), None),
            TxnOp::put(k_ip, ep.id.to_string(), None),
            TxnOp::delete(k_res, None),
        ];
        // Published ports are claimed as `create_endpoint` claims them.
        self.claim_ports(&ep, revision, &mut when, &mut then);
        let resp = self.txn(Txn::new().when(when).and_then(then)).await?;
        Ok(resp.succeeded().then(|| Stamped {
            record: ep,
            revision: committed_at(&resp),
        }))
    }
}

/// The reservation stored at `kv`, checked against its key.
fn decode_reservation(kv: &KeyValue) -> Result<Reservation, AgentError> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let corrupt = |problem| AgentError::Corrupt {
        key: key.clone(),
        problem,
    };
    let r = Reservation::decode(kv.value()).map_err(corrupt)?;
    // `.../reservations/{network_id}/{ip}`: the record must be the one its key names.
    let mut tail = key.rsplit('/');
    let (ip, id) = (tail.next(), tail.next());
    if ip != Some(r.ipv4.to_string().as_str()) || id != Some(r.network_id.as_str()) {
        return Err(corrupt(crate::domain::records::BadRecord::NotItsKey {
            field: "network_id and ipv4",
            value: format!("{}/{}", r.network_id, r.ipv4),
        }));
    }
    Ok(r)
}
