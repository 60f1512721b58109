//! The messages of Docker's remote network driver and remote IPAM protocols (libnetwork's
//! `docs/remote.md` and `docs/ipam.md`), as serde types, and their HTTP framing.
//!
//! Every call is an HTTP POST to `/<Interface>.<Method>` with a JSON body (empty for the
//! handshake and the capability calls); the answer is JSON, `{"Err": "..."}` for a failure.
//! Requests are read leniently: a field this dockerd does not send is its zero value, a field
//! a later one adds is ignored, so ovnet keeps working across Docker versions. What a field
//! *says* is checked where it is used.
//!
//! [`Body`] is the extractor every handler takes: a body larger than [`MAX_BODY`] or that is
//! not the JSON the call expects is answered 413 or 400 with a `{"Err"}` saying so, before any
//! handler runs.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest request body taken. dockerd's requests are well under a kilobyte; the largest,
/// `CreateNetwork`, grows with the `-o` options only.
pub const MAX_BODY: usize = 64 * 1024;

/// The media type of the plugin protocol's answers.
pub const CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// A JSON object of any shape (Docker's `Options`).
pub type Options = Map<String, Value>;

/// `null` (which dockerd sends for an empty map or list) as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Network driver
// ---------------------------------------------------------------------------------------------

/// `/Plugin.Activate`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Activate {
    /// `["NetworkDriver", "IpamDriver"]`.
    pub implements: Vec<&'static str>,
}

/// `/NetworkDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Capabilities {
    /// Where allocations are made: `"local"` (ovnet allocates in etcd itself; dockerd has no
    /// cluster store to offer).
    pub scope: &'static str,
    /// How far the network reaches: `"global"`, across hosts.
    pub connectivity_scope: &'static str,
}

/// One address pool of a network (`IPv4Data` / `IPv6Data`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamData {
    /// The IPAM driver's address space (ovnet's is [`super::ipam::ADDRESS_SPACE`]).
    pub address_space: String,
    /// The subnet, CIDR.
    pub pool: String,
    /// The gateway, CIDR (address with the subnet's prefix length).
    pub gateway: String,
    /// Addresses the user set aside (`--aux-address`).
    #[serde(deserialize_with = "null_default")]
    pub aux_addresses: HashMap<String, String>,
}

/// `/NetworkDriver.CreateNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateNetwork {
    /// dockerd's network ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's options: `com.docker.network.generic` holds the `-o` options.
    #[serde(deserialize_with = "null_default")]
    pub options: Options,
    /// The IPv4 pools.
    #[serde(rename = "IPv4Data", deserialize_with = "null_default")]
    pub ipv4_data: Vec<IpamData>,
    /// The IPv6 pools.
    #[serde(rename = "IPv6Data", deserialize_with = "null_default")]
    pub ipv6_data: Vec<IpamData>,
}

/// `/NetworkDriver.DeleteNetwork`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeleteNetwork {
    /// dockerd's network ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// The interface of an endpoint, as Docker sends it and as the driver completes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Interface {
    /// IPv4 address with prefix length, from the IPAM driver.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// IPv6 address with prefix length.
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    /// MAC address (`docker run --mac-address`), or the one the driver gives.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `/NetworkDriver.CreateEndpoint`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateEndpoint {
    /// dockerd's network ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// What Docker already decided (the address).
    #[serde(deserialize_with = "null_default")]
    pub interface: Option<Interface>,
    /// Endpoint options (`com.docker.network.portmap`, `...exposedports`).
    #[serde(deserialize_with = "null_default")]
    pub options: Options,
}

/// The answer to `CreateEndpoint`: the interface's missing parts (the MAC), or nothing.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointAnswer {
    /// `None` when Docker gave everything already.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<Interface>,
}

/// `/NetworkDriver.DeleteEndpoint`, `/NetworkDriver.EndpointOperInfo`, `/NetworkDriver.Leave`,
/// `/NetworkDriver.RevokeExternalConnectivity`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointRef {
    /// dockerd's network ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `/NetworkDriver.EndpointOperInfo`'s answer.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OperInfo {
    /// Shown by `docker network inspect --verbose` (ovnet's view of the endpoint).
    pub value: Map<String, Value>,
}

/// `/NetworkDriver.Join`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Join {
    /// dockerd's network ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The container's network namespace (a path), which may not exist yet.
    pub sandbox_key: String,
    /// Join options.
    #[serde(deserialize_with = "null_default")]
    pub options: Options,
}

/// The interface Docker moves into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InterfaceName {
    /// Its name in the driver's namespace.
    pub src_name: String,
    /// The name prefix in the container (Docker appends an index: `eth0`, `eth1`...).
    pub dst_prefix: String,
}

/// `/NetworkDriver.Join`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinAnswer {
    /// The veth end to move.
    pub interface_name: InterfaceName,
    /// The default route's next hop; empty for none (an internal network).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// No `docker_gwbridge` for this endpoint: ovnet's gateway is the way out.
    pub disable_gateway_service: bool,
}

/// `/NetworkDriver.DiscoverNew`, `/NetworkDriver.DiscoverDelete`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Discovery {
    /// 1: a node; others are not sent to plugins today.
    pub discovery_type: i64,
    /// What was discovered.
    pub discovery_data: Value,
}

/// `/NetworkDriver.ProgramExternalConnectivity`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ProgramExternalConnectivity {
    /// dockerd's network ID.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// dockerd's endpoint ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Options (the published ports again).
    #[serde(deserialize_with = "null_default")]
    pub options: Options,
}

// ---------------------------------------------------------------------------------------------
// IPAM driver
// ---------------------------------------------------------------------------------------------

/// `/IpamDriver.GetCapabilities`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamCapabilities {
    /// False: ovnet derives the MAC from the address, Docker need not make one up.
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    /// False: the allocations live in etcd, dockerd need not replay them after a restart.
    pub requires_request_replay: bool,
}

/// `/IpamDriver.GetDefaultAddressSpaces`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressSpaces {
    /// For local-scope networks.
    pub local_default_address_space: &'static str,
    /// For global-scope networks.
    pub global_default_address_space: &'static str,
}

/// `/IpamDriver.RequestPool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestPool {
    /// The address space.
    pub address_space: String,
    /// `--subnet`, or empty.
    pub pool: String,
    /// `--ip-range`, or empty.
    pub sub_pool: String,
    /// `--ipam-opt` options.
    #[serde(deserialize_with = "null_default")]
    pub options: HashMap<String, String>,
    /// True for the IPv6 pool of `--ipv6`.
    #[serde(rename = "V6")]
    pub v6: bool,
}

/// `/IpamDriver.RequestPool`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolAnswer {
    /// What Docker passes back in the address calls: the subnet.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The subnet, CIDR.
    pub pool: String,
    /// Nothing.
    pub data: HashMap<String, String>,
}

/// `/IpamDriver.ReleasePool`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleasePool {
    /// A pool ID [`PoolAnswer`] gave.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `/IpamDriver.RequestAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestAddress {
    /// A pool ID [`PoolAnswer`] gave.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// A requested address (`--ip`, `--gateway`), or empty.
    pub address: String,
    /// `RequestAddressType` says the gateway is asked for.
    #[serde(deserialize_with = "null_default")]
    pub options: HashMap<String, String>,
}

/// `/IpamDriver.RequestAddress`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddressAnswer {
    /// The address with the subnet's prefix length.
    pub address: String,
    /// Nothing.
    pub data: HashMap<String, String>,
}

/// `/IpamDriver.ReleaseAddress`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReleaseAddress {
    /// A pool ID [`PoolAnswer`] gave.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address, without prefix length.
    pub address: String,
}

/// The option of `RequestAddress` that says the gateway is asked for, and its value.
pub const REQUEST_ADDRESS_TYPE: (&str, &str) = ("RequestAddressType", "com.docker.network.gateway");

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

/// A failed call: its HTTP status and the one line for `{"Err": ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 400 for a request that cannot be read, 404 for an unknown method, 413 for one too
    /// large, 500 for an operation that failed.
    pub status: StatusCode,
    /// What went wrong, as the user should read it.
    pub message: String,
}

impl Failure {
    /// An operation that failed: 500 with the message.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// A request that cannot be read: 400.
    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// The JSON body of a failure.
#[derive(Debug, Serialize)]
struct ErrBody<'a> {
    #[serde(rename = "Err")]
    err: &'a str,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&ErrBody { err: &self.message })
            .unwrap_or_else(|_| b"{\"Err\":\"ovnet: error\"}".to_vec());
        (self.status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    }
}

/// A successful answer, serialised with the protocol's media type.
#[derive(Debug)]
pub struct Answer(pub Vec<u8>);

impl Answer {
    /// `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Result<Answer, Failure> {
        serde_json::to_vec(value)
            .map(Answer)
            .map_err(|e| Failure::failed(format!("ovnet: encoding the answer: {e}")))
    }

    /// `{}`, the answer of calls that return nothing.
    pub fn empty() -> Answer {
        Answer(b"{}".to_vec())
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            self.0,
        )
            .into_response()
    }
}

/// What a handler returns.
pub type Reply = Result<Answer, Failure>;

/// A request's JSON body as `T`, or a 400/413 [`Failure`] naming what is wrong with it.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// Parses a request body: the JSON object `T` (an empty body is `{}`). Only an object: serde
/// would otherwise read a struct from an array too.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Failure> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| Failure::bad_request(format!("ovnet: the request is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(Failure::bad_request(
            "ovnet: the request is not a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        Failure::bad_request(format!(
            "ovnet: the request is not what the call takes: {e}"
        ))
    })
}

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Failure;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("ovnet: the request is larger than {MAX_BODY} bytes")
            } else {
                format!("ovnet: reading the request: {}", e.body_text())
            };
            Failure { status, message }
        })?;
        parse_body(&bytes).map(Body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerds_requests_parse_with_missing_and_extra_fields() {
        let r: CreateNetwork = parse_body(
            br#"{"NetworkID":"51d1","Options":{"com.docker.network.enable_ipv6":false,
            "com.docker.network.generic":{"com.docker.network.driver.mtu":"1400"}},
            "IPv4Data":[{"AddressSpace":"ovnet","Gateway":"10.0.0.1/24","Pool":"10.0.0.0/24"}],
            "IPv6Data":[],"SomethingNew":42}"#,
        )
        .unwrap();
        assert_eq!(r.network_id, "51d1");
        assert_eq!(r.ipv4_data[0].gateway, "10.0.0.1/24");
        assert!(r.ipv6_data.is_empty());
        let r: Join = parse_body(br#"{"NetworkID":"a","EndpointID":"b"}"#).unwrap();
        assert_eq!((r.sandbox_key.as_str(), r.options.len()), ("", 0));
        let r: RequestPool = parse_body(b"").unwrap();
        assert!(r.options.is_empty() && !r.v6 && r.pool.is_empty());
        let r: RequestAddress =
            parse_body(br#"{"PoolID":"10.0.0.0/24","Address":"","Options":null}"#).unwrap();
        assert!(r.options.is_empty());
        let r: CreateNetwork =
            parse_body(br#"{"NetworkID":"n","Options":null,"IPv4Data":null}"#).unwrap();
        assert!(r.options.is_empty() && r.ipv4_data.is_empty());
        let r: CreateEndpoint = parse_body(
            br#"{"NetworkID":"n","EndpointID":"e","Interface":{"Address":"10.0.0.2/24",
            "AddressIPv6":"","MacAddress":""},"Options":{"com.docker.network.portmap":[]}}"#,
        )
        .unwrap();
        assert_eq!(r.interface.unwrap().address, "10.0.0.2/24");
    }

    #[test]
    fn what_is_not_the_expected_json_is_a_bad_request() {
        for bad in [
            b"{".as_slice(),
            b"[]",
            b"null",
            b"{\"NetworkID\": 5}",
            b"\xff\xfe",
            b"{\"Options\": \"x\"}",
        ] {
            let e = parse_body::<CreateNetwork>(bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(
                e.message.starts_with("ovnet: the request is not "),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn answers_have_dockers_field_names() {
        let j = JoinAnswer {
            interface_name: InterfaceName {
                src_name: "ovc1".into(),
                dst_prefix: "eth".into(),
            },
            gateway: String::new(),
            disable_gateway_service: true,
        };
        assert_eq!(
            serde_json::to_string(&j).unwrap(),
            r#"{"InterfaceName":{"SrcName":"ovc1","DstPrefix":"eth"},"DisableGatewayService":true}"#
        );
        let c = CreateEndpointAnswer {
            interface: Some(Interface {
                mac_address: "02:42:0a:00:00:02".into(),
                ..Interface::default()
            }),
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"Interface":{"MacAddress":"02:42:0a:00:00:02"}}"#
        );
        assert_eq!(
            serde_json::to_string(&CreateEndpointAnswer::default()).unwrap(),
            "{}"
        );
        let caps = IpamCapabilities {
            requires_mac_address: false,
            requires_request_replay: false,
        };
        assert_eq!(
            serde_json::to_string(&caps).unwrap(),
            r#"{"RequiresMACAddress":false,"RequiresRequestReplay":false}"#
        );
        let p = PoolAnswer {
            pool_id: "10.0.0.0/24".into(),
            pool: "10.0.0.0/24".into(),
            data: HashMap::new(),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"PoolID":"10.0.0.0/24","Pool":"10.0.0.0/24","Data":{}}"#
        );
    }
}
