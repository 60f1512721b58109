//! The agent's gRPC API (`ovnet.v1.Agent`), served on a unix socket for `ovctl`.
//!
//! A thin adapter: each call turns its request into the agent's own terms, calls the
//! [`Agent`] operation, and turns the answer into protobuf. It is also the one place where an
//! [`AgentError`] becomes a gRPC [`Status`] ([`status`]): the code says what kind of failure it
//! is, the message is the error's docker-like sentence, ready for `ovctl` to print.

use std::sync::Arc;
use std::time::Duration;

use ovnet_dataplane::{CounterSnapshot, Offload, OffloadState};
use ovnet_proto::v1::{
    AddVtepRequest, Attachment, ConnectRequest, CreateNetworkRequest, DataplaneRequest,
    DataplaneStatus, DisconnectRequest, DisconnectResponse, Endpoint, ExternalVtep,
    InspectNetworkRequest, ListAttachmentsRequest, ListAttachmentsResponse, ListNetworksRequest,
    ListNetworksResponse, ListNodesRequest, ListNodesResponse, ListVtepsRequest, ListVtepsResponse,
    Network, NetworkDetail, NetworkStats, NodeStatus, OffloadStatus, Peer, RemoveNetworkRequest,
    RemoveNetworkResponse, RemoveVtepRequest, RemoveVtepResponse, StatsRequest, StatsResponse,
    StatusRequest,
};
use ovnet_proto::WARNING_METADATA;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Response, Status};

use crate::agent::{Agent, AttachmentFilter, ConnectSpec};
use crate::api_socket::caller;
use crate::domain::plan::{parse_vtep, NetworkSpec};
use crate::domain::time::rfc3339;
use crate::error::AgentError;

/// The service implementation.
#[derive(Debug, Clone)]
pub struct Api {
    agent: Arc<Agent>,
}

impl Api {
    /// The API of `agent`.
    pub fn new(agent: Arc<Agent>) -> Api {
        Api { agent }
    }
}

/// The gRPC status of a failed operation: the code by the kind of failure, the message as the
/// user should read it.
pub fn status(e: AgentError) -> Status {
    let msg = e.to_string();
    match e {
        AgentError::Invalid(_) => Status::invalid_argument(msg),
        AgentError::NotFound(_) => Status::not_found(msg),
        AgentError::Exists(_) => Status::already_exists(msg),
        AgentError::InUse(_)
        | AgentError::Netns(_)
        | AgentError::Host(_)
        | AgentError::NodeTaken(_) => Status::failed_precondition(msg),
        AgentError::Conflict(_) => Status::aborted(msg),
        AgentError::Unavailable { .. } | AgentError::Access(_) => Status::unavailable(msg),
        AgentError::Etcd { .. } | AgentError::Corrupt { .. } | AgentError::Connect { .. } => {
            Status::internal(msg)
        }
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// Logs a call that changes something with who made it (the socket's peer credentials);
/// reads are logged at debug level.
fn audit<T>(req: &Request<T>, what: std::fmt::Arguments<'_>, changes: bool) {
    if changes {
        log::info!("API: {what} (by {})", caller(req));
    } else {
        log::debug!("API: {what} (by {})", caller(req));
    }
}

/// The answer to a call: the operation's result in protobuf, or its error as a status.
fn answer<T, U>(result: Result<T, AgentError>, to_proto: impl FnOnce(T) -> U) -> Answer<U> {
    result.map(|v| Response::new(to_proto(v))).map_err(status)
}

/// A warning as a gRPC metadata value: printable ASCII, anything else as `?`.
fn warning_value(w: &str) -> MetadataValue<Ascii> {
    let printable: String = w
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    MetadataValue::try_from(printable.as_str()).unwrap_or_else(|_| MetadataValue::from_static("?"))
}

fn offload_status(o: Offload, st: &OffloadState) -> OffloadStatus {
    let (state, reason, since) = match st {
        OffloadState::Off => ("off", String::new(), String::new()),
        OffloadState::On => ("on", String::new(), String::new()),
        OffloadState::Unavailable(why) => ("unavailable", why.clone(), String::new()),
        OffloadState::TurnedOff { reason, at } => ("turned off", reason.clone(), rfc3339(*at)),
    };
    OffloadStatus {
        name: o.name().to_owned(),
        state: state.to_owned(),
        reason,
        since,
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn network_stats(name: String, vni: u32, c: &CounterSnapshot) -> NetworkStats {
    NetworkStats {
        name,
        vni,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        drops: c.drops().map(|(r, n)| (r.name().to_string(), n)).collect(),
        too_big_answers: c.too_big_answers,
        fragmented: c.fragmented,
    }
}

impl From<CreateNetworkRequest> for NetworkSpec {
    fn from(r: CreateNetworkRequest) -> Self {
        Self {
            name: r.name,
            driver: r.driver,
            subnet: r.subnet,
            gateway: r.gateway,
            vni: r.vni,
            mtu: r.mtu,
            labels: r.labels,
            internal: r.internal,
        }
    }
}

#[tonic::async_trait]
impl ovnet_proto::Agent for Api {
    async fn create_network(&self, req: Request<CreateNetworkRequest>) -> Answer<Network> {
        audit(
            &req,
            format_args!("create network {:?}", req.get_ref().name),
            true,
        );
        let spec = NetworkSpec::from(req.into_inner());
        let (net, warnings) = self
            .agent
            .create_network_warned(spec)
            .await
            .map_err(status)?;
        // Warnings travel beside the record, in the response metadata.
        let mut resp = Response::new(net.to_proto());
        for w in warnings {
            resp.metadata_mut()
                .append(WARNING_METADATA, warning_value(&w));
        }
        Ok(resp)
    }

    async fn list_networks(
        &self,
        req: Request<ListNetworksRequest>,
    ) -> Answer<ListNetworksResponse> {
        audit(&req, format_args!("list networks"), false);
        answer(self.agent.list_networks().await, |nets| {
            ListNetworksResponse {
                networks: nets.iter().map(|n| n.to_proto()).collect(),
            }
        })
    }

    async fn inspect_network(&self, req: Request<InspectNetworkRequest>) -> Answer<NetworkDetail> {
        audit(
            &req,
            format_args!("inspect network {:?}", req.get_ref().name_or_id),
            false,
        );
        let detail = self.agent.inspect_network(&req.get_ref().name_or_id).await;
        answer(detail, |d| NetworkDetail {
            network: Some(d.network.to_proto()),
            endpoints: d.endpoints.iter().map(|e| e.to_proto()).collect(),
            peers: d
                .peers
                .iter()
                .map(|n| Peer {
                    name: n.name.to_string(),
                    ip: n.vtep.ip().to_string(),
                    port: u32::from(n.vtep.port()),
                })
                .collect(),
            vteps: d.vteps.iter().map(|v| v.to_proto()).collect(),
        })
    }

    async fn remove_network(
        &self,
        req: Request<RemoveNetworkRequest>,
    ) -> Answer<RemoveNetworkResponse> {
        audit(
            &req,
            format_args!("remove network {:?}", req.get_ref().name_or_id),
            true,
        );
        let removed = self.agent.remove_network(&req.get_ref().name_or_id).await;
        answer(removed, |_| RemoveNetworkResponse {})
    }

    async fn connect_container(&self, req: Request<ConnectRequest>) -> Answer<Endpoint> {
        {
            let r = req.get_ref();
            let what = format_args!(
                "connect {:?} to {:?} (netns {:?})",
                r.container, r.network, r.netns
            );
            audit(&req, what, true);
        }
        let r = req.into_inner();
        let spec = ConnectSpec {
            network: r.network,
            container: r.container,
            netns: r.netns,
            ifname: (!r.ifname.is_empty()).then_some(r.ifname),
            ipv4: r.ipv4,
            container_id: r.container_id,
            owner: r.owner,
            publish: r.publish,
        };
        answer(self.agent.connect(spec).await, |e| e.to_proto())
    }

    async fn disconnect_container(
        &self,
        req: Request<DisconnectRequest>,
    ) -> Answer<DisconnectResponse> {
        let r = req.get_ref();
        audit(
            &req,
            format_args!("disconnect {:?} from {:?}", r.container, r.network),
            true,
        );
        let r = req.into_inner();
        let done = self.agent.disconnect(&r.network, &r.container).await;
        answer(done, |()| DisconnectResponse {})
    }

    async fn add_vtep(&self, req: Request<AddVtepRequest>) -> Answer<ExternalVtep> {
        let r = req.get_ref();
        audit(
            &req,
            format_args!("add VTEP {}:{} to {:?}", r.ip, r.port, r.network),
            true,
        );
        let r = req.into_inner();
        let addr = parse_vtep(&r.ip, r.port).map_err(|e| status(e.into()))?;
        answer(self.agent.add_vtep(&r.network, addr).await, |v| {
            v.to_proto()
        })
    }

    async fn remove_vtep(&self, req: Request<RemoveVtepRequest>) -> Answer<RemoveVtepResponse> {
        let r = req.get_ref();
        audit(
            &req,
            format_args!("remove VTEP {}:{} from {:?}", r.ip, r.port, r.network),
            true,
        );
        let r = req.into_inner();
        let addr = parse_vtep(&r.ip, r.port).map_err(|e| status(e.into()))?;
        let done = self.agent.remove_vtep(&r.network, addr).await;
        answer(done, |()| RemoveVtepResponse {})
    }

    async fn list_vteps(&self, req: Request<ListVtepsRequest>) -> Answer<ListVtepsResponse> {
        audit(
            &req,
            format_args!("list VTEPs of {:?}", req.get_ref().network),
            false,
        );
        answer(self.agent.list_vteps(&req.get_ref().network).await, |vs| {
            ListVtepsResponse {
                vteps: vs.iter().map(|v| v.to_proto()).collect(),
            }
        })
    }

    async fn list_nodes(&self, req: Request<ListNodesRequest>) -> Answer<ListNodesResponse> {
        audit(&req, format_args!("list nodes"), false);
        answer(self.agent.node_liveness().await, |nodes| {
            ListNodesResponse {
                nodes: nodes
                    .into_iter()
                    .map(|n| NodeStatus {
                        alive: n.alive(),
                        lease: n.lease,
                        heard_ms: n
                            .heard
                            .map(|h| u64::try_from(h.as_millis()).unwrap_or(u64::MAX)),
                        node: Some(n.node.to_proto()),
                    })
                    .collect(),
            }
        })
    }

    async fn stats(&self, req: Request<StatsRequest>) -> Answer<StatsResponse> {
        audit(&req, format_args!("stats"), false);
        let filter = req.into_inner().network;
        answer(self.agent.stats(filter.as_deref()).await, |nets| {
            StatsResponse {
                networks: nets
                    .into_iter()
                    .map(|n| network_stats(n.name, n.vni, &n.counters))
                    .collect(),
            }
        })
    }

    async fn status(&self, _: Request<StatusRequest>) -> Answer<ovnet_proto::v1::AgentStatus> {
        let s = self.agent.status().await;
        let h = s.health;
        Ok(Response::new(ovnet_proto::v1::AgentStatus {
            node: s.node.to_string(),
            vtep_ip: s.vtep.ip().to_string(),
            vtep_port: u32::from(s.vtep.port()),
            etcd_endpoints: s.etcd,
            synced: h.synced,
            sync_error: h.sync_error.unwrap_or_default(),
            lease_alive: h.lease_alive,
            lease_error: h.lease_error.unwrap_or_default(),
            revision: h.revision,
            networks: s
                .networks
                .into_iter()
                .map(|(name, vni, mtu)| ovnet_proto::v1::LocalNetwork { name, vni, mtu })
                .collect(),
            devices: s.devices,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn dataplane(&self, _: Request<DataplaneRequest>) -> Answer<DataplaneStatus> {
        let r = self.agent.dataplane();
        Ok(Response::new(DataplaneStatus {
            worker_busy_per_mille: r.busy_per_mille,
            steering: r.steering,
            flows_moved: r.flows_moved,
            poll_us: micros(r.poll),
            udp_gso: r.udp_gso,
            tunnel_gso: r.tunnel_gso,
            slice_us: r.slice.map_or(0, micros),
            offloads: r
                .offloads
                .iter()
                .map(|(o, st)| offload_status(*o, st))
                .collect(),
        }))
    }

    async fn list_attachments(
        &self,
        req: Request<ListAttachmentsRequest>,
    ) -> Answer<ListAttachmentsResponse> {
        let r = req.into_inner();
        let filter = AttachmentFilter {
            network: r.network,
            container_id: r.container_id,
            ifname: r.ifname,
            owner: r.owner,
        };
        answer(self.agent.attachments(&filter).await, |found| {
            ListAttachmentsResponse {
                attachments: found
                    .into_iter()
                    .map(|a| Attachment {
                        endpoint: Some(a.endpoint.to_proto()),
                        network: Some(a.network.to_proto()),
                        host_ifname: a.host_ifname,
                    })
                    .collect(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ipam::IpamError;
    use crate::error::{InUse, Invalid, NotFound};
    use tonic::Code;

    #[test]
    fn each_kind_of_failure_has_its_code_and_keeps_its_sentence() {
        let cases: Vec<(AgentError, Code)> = vec![
            (Invalid::NoNetwork.into(), Code::InvalidArgument),
            (IpamError::InvalidVni(0).into(), Code::InvalidArgument),
            (NotFound::Network("nope".into()).into(), Code::NotFound),
            (InUse::NoVni.into(), Code::FailedPrecondition),
            (
                IpamError::AddressIsGateway("10.0.0.1".parse().unwrap()).into(),
                Code::FailedPrecondition,
            ),
            (
                crate::host::NetnsError::Name("x".into()).into(),
                Code::FailedPrecondition,
            ),
            (AgentError::Conflict("x".into()), Code::Aborted),
            (
                AgentError::Unavailable {
                    endpoints: "http://127.0.0.1:2379".into(),
                    cause: "range".into(),
                },
                Code::Unavailable,
            ),
        ];
        for (e, code) in cases {
            let msg = e.to_string();
            let s = status(e);
            assert_eq!(s.code(), code, "{msg}");
            assert_eq!(s.message(), msg);
        }
    }
}
