//! ovnet's protobuf schema (`proto/ovnet.proto`, package `ovnet.v1`), compiled with prost/tonic.
//!
//! It holds two things:
//! - the records the agents keep in etcd ([`Network`], [`Endpoint`], [`Node`], [`ExternalVtep`]),
//!   prost-encoded, one message per key;
//! - the `Agent` gRPC service that `ovctl` calls, with a generated client
//!   ([`AgentClient`]) and server ([`AgentServer`], implement [`Agent`]).
//!
//! It contains no logic: validation, key layout and allocation live in the agent's store.

/// Generated code for package `ovnet.v1`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("ovnet.v1");
}

pub use v1::agent_client::AgentClient;
pub use v1::agent_server::{Agent, AgentServer};
pub use v1::{
    AddVtepRequest, Attachment, ConnectRequest, CreateNetworkRequest, DataplaneRequest,
    DataplaneStatus, DisconnectRequest, DisconnectResponse, Endpoint, ExternalVtep,
    InspectNetworkRequest, ListAttachmentsRequest, ListAttachmentsResponse, ListNetworksRequest,
    ListNetworksResponse, ListNodesRequest, ListNodesResponse, ListVtepsRequest, ListVtepsResponse,
    Network, NetworkDetail, NetworkStats, Node, NodeStatus, Peer, PortMapping,
    RemoveNetworkRequest, RemoveNetworkResponse, RemoveVtepRequest, RemoveVtepResponse,
    StatsRequest, StatsResponse,
};

/// Re-exported so users can encode/decode records without naming prost themselves.
pub use prost::Message;

/// Key of the gRPC response metadata entries that carry warnings, one entry per warning: a
/// call that succeeded but did something the user should know about (`CreateNetwork` with an
/// MTU some node's underlay cannot carry). `ovctl` prints each as `WARNING: ...` on stderr.
pub const WARNING_METADATA: &str = "ovnet-warning";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_round_trips() {
        let mut n = Network {
            id: "ab".repeat(32),
            name: "demo".into(),
            vni: 256,
            subnet: "10.0.0.0/24".into(),
            gateway: "10.0.0.1".into(),
            mtu: 1450,
            created: "2020-04-10T14:47:27.897140984Z".into(),
            driver: "overlay".into(),
            ..Default::default()
        };
        n.labels.insert("env".into(), "test".into());
        let bytes = n.encode_to_vec();
        assert_eq!(Network::decode(bytes.as_slice()).unwrap(), n);
    }

    #[test]
    fn optional_fields_distinguish_unset_from_zero() {
        let req = CreateNetworkRequest {
            name: "demo".into(),
            vni: Some(0),
            ..Default::default()
        };
        let back = CreateNetworkRequest::decode(req.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.vni, Some(0));
        assert_eq!(back.subnet, None);
    }
}
