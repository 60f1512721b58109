//! [`AgentError`]: why an operation of the agent failed, as a typed value.
//!
//! Every layer returns it (the planners, the store, the host side, the operations), and each
//! variant's `Display` is the one docker-like line the user sees (`ovctl` prints it after
//! `Error: `). What kind of failure it is, for a caller, is the variant: the gRPC API maps the
//! outer variants onto status codes in one function (`crate::api`), and nothing else looks at
//! the text.

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use ovnet_wire::Vni;

use crate::domain::identity::NodeTaken;
use crate::domain::ipam::IpamError;
use crate::domain::ports::{BadPort, HostPort};
use crate::domain::records::BadRecord;
use crate::domain::runtime::BadRuntimeValue;
use crate::domain::values::{BadIfName, Name, NodeName};
use crate::host::{HostError, NetnsError};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request is wrong on its face: fix the request.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The network, endpoint or VTEP asked for does not exist.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// A name or a pinned value is taken.
    #[error(transparent)]
    Exists(#[from] Exists),
    /// A resource is used by something else, or used up.
    #[error(transparent)]
    InUse(#[from] InUse),
    /// The container's network namespace is not there.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The host refused a step taken before anything was claimed (e.g. listing the
    /// container's interfaces).
    #[error(transparent)]
    Host(#[from] HostError),
    /// Other agents kept changing the same records and retrying did not get through; nothing
    /// was changed, and the operation may be tried again.
    #[error("could not {0}: other agents kept changing the same records, try again")]
    Conflict(String),
    /// etcd did not answer in time, or refused the connection.
    #[error("etcd at {endpoints} is unreachable: start it or pass --etcd")]
    Unavailable {
        /// The configured endpoints, comma-separated.
        endpoints: String,
        /// What failed, for logs ("range: no answer within 3s", a transport error...).
        cause: String,
    },
    /// The node name is held by another host.
    #[error(transparent)]
    NodeTaken(#[from] NodeTaken),
    /// etcd refused this agent's TLS or credentials, or the configuration of them is wrong.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// etcd answered with an error that is not about reaching it.
    #[error("internal error: etcd {op} failed: {source}")]
    Etcd {
        /// The call ("range", "txn", "lease grant"...).
        op: &'static str,
        /// etcd's answer.
        source: etcd_client::Error,
    },
    /// A record the operation needs is damaged.
    #[error("internal error: corrupt record at {key}: {problem}")]
    Corrupt {
        /// Its etcd key.
        key: String,
        /// What is wrong with it.
        problem: BadRecord,
    },
    /// The endpoint was claimed, but this host could not build its side; the claim was
    /// released again.
    #[error("connecting {container} to network {network}: {cause}")]
    Connect {
        /// The container.
        container: Name,
        /// The network, by name.
        network: Name,
        /// What went wrong on the host.
        cause: ConnectFailure,
    },
}

/// Why etcd does not let this agent in: the TLS and user flags, and etcd's answers to them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// A certificate or key file that cannot be read.
    #[error("reading {flag} {path}: {cause}")]
    File {
        /// The flag that names it.
        flag: &'static str,
        /// The file.
        path: String,
        /// Why.
        cause: String,
    },
    /// Only one of the client certificate and its key.
    #[error("--etcd-certfile and --etcd-keyfile go together: pass both")]
    CertWithoutKey,
    /// Certificate flags with an `http://` URL, or `https://` and `http://` mixed.
    #[error(
        "--etcd-cafile, --etcd-certfile and --etcd-keyfile need https:// etcd URLs, not {url}"
    )]
    TlsOverPlain {
        /// The URL.
        url: String,
    },
    /// A user without a password.
    #[error("--etcd-username needs a password: pass --etcd-password or set OVNET_ETCD_PASSWORD")]
    UserWithoutPassword,
    /// A password without a user.
    #[error("--etcd-password needs --etcd-username")]
    PasswordWithoutUser,
    /// etcd's certificate is not signed by the CA given (or no CA was given).
    #[error("{}", untrusted(url, ca.as_deref(), cause))]
    UntrustedServer {
        /// The member.
        url: String,
        /// `--etcd-cafile`, if given.
        ca: Option<String>,
        /// What is wrong with it.
        cause: String,
    },
    /// etcd's certificate is signed by the CA but not valid for this URL (name, dates).
    #[error("etcd at {url} has a certificate that is not valid for it: {cause}")]
    BadServerCertificate {
        /// The member.
        url: String,
        /// What is wrong with it.
        cause: String,
    },
    /// etcd refused the client certificate given.
    #[error(
        "etcd at {url} refused our client certificate {cert} (--etcd-certfile): is it signed \
         by the CA etcd trusts (its --trusted-ca-file)?"
    )]
    ClientCertificateRefused {
        /// The member.
        url: String,
        /// `--etcd-certfile`.
        cert: String,
    },
    /// etcd wants a client certificate and none was given.
    #[error(
        "etcd at {url} requires a client certificate: pass --etcd-certfile and --etcd-keyfile"
    )]
    ClientCertificateRequired {
        /// The member.
        url: String,
    },
    /// An `https://` URL to an etcd that serves plain HTTP.
    #[error("etcd at {url} does not speak TLS: use an http:// URL")]
    NotTls {
        /// The member.
        url: String,
    },
    /// Wrong user or password.
    #[error("etcd at {url} refused user {user:?}: wrong --etcd-username or --etcd-password")]
    LoginRefused {
        /// The member.
        url: String,
        /// The user.
        user: String,
    },
    /// etcd has authentication on and no user was given.
    #[error("etcd at {url} requires a user: pass --etcd-username and --etcd-password")]
    LoginRequired {
        /// The member.
        url: String,
    },
    /// The user may not read or write the agent's keys.
    #[error(
        "etcd user {user:?} may not {what} the keys under {prefix}: grant its role readwrite \
         on {prefix} with --prefix (etcdctl role grant-permission ROLE readwrite {prefix} \
         --prefix)"
    )]
    Denied {
        /// The user ("" without one).
        user: String,
        /// "read" or "write".
        what: &'static str,
        /// The key prefix.
        prefix: String,
    },
}

fn untrusted(url: &str, ca: Option<&str>, cause: &str) -> String {
    match ca {
        Some(ca) => format!(
            "etcd at {url} has a certificate not signed by the CA of --etcd-cafile {ca} \
             ({cause})"
        ),
        None => format!(
            "etcd at {url} has a certificate this agent cannot check ({cause}): pass the CA \
             that signed it with --etcd-cafile"
        ),
    }
}

/// A request that is wrong on its face.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// A name, subnet, gateway, VNI, MTU or requested address the IPAM rules refuse.
    #[error(transparent)]
    Value(IpamError),
    /// An interface name the kernel would not take.
    #[error(transparent)]
    IfName(#[from] BadIfName),
    /// A container id or owner that cannot be one.
    #[error(transparent)]
    Runtime(#[from] BadRuntimeValue),
    /// A driver other than overlay.
    #[error("driver {0:?} is not supported: ovnet only provides \"overlay\"")]
    Driver(String),
    /// `--gateway` without `--subnet`.
    #[error("invalid gateway {0}: a gateway can only be given together with a subnet")]
    GatewayWithoutSubnet(String),
    /// A requested endpoint address that is not an IPv4 address.
    #[error("invalid address {0}: not an IPv4 address")]
    Address(String),
    /// An external VTEP address that is not an IPv4 address.
    #[error("invalid vtep address {0}: not an IPv4 address")]
    VtepAddress(String),
    /// An external VTEP port above 65535.
    #[error("invalid vtep port {0}: must be 1..=65535")]
    VtepPort(u32),
    /// A published port that cannot be one.
    #[error(transparent)]
    Port(BadPort),
    /// Ports to publish on an internal network.
    #[error("network {0} is internal: ports cannot be published on it")]
    PublishOnInternal(Name),
    /// No network named in the request.
    #[error("a network name or ID is required")]
    NoNetwork,
    /// An ID prefix that more than one network's ID starts with.
    #[error("network {query} is ambiguous ({matches} matches found based on ID prefix)")]
    Ambiguous {
        /// The prefix.
        query: String,
        /// How many networks it matches.
        matches: usize,
    },
    /// No etcd endpoint configured.
    #[error("no etcd endpoint given")]
    NoEtcdEndpoint,
    /// An etcd endpoint that is not a URL.
    #[error("invalid etcd endpoint {endpoints}: {cause}")]
    EtcdEndpoint {
        /// The endpoints, comma-separated.
        endpoints: String,
        /// What is wrong.
        cause: String,
    },
}

/// Something asked for that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    /// No network with this name, ID or ID prefix.
    #[error("network {0} not found")]
    Network(String),
    /// No endpoint of this name in the network.
    #[error("container {container} is not connected to network {network}")]
    Endpoint {
        /// The container, as asked for.
        container: String,
        /// The network, by name.
        network: Name,
    },
    /// No reservation of this address by this node (Docker's IPAM hands addresses out before
    /// the endpoint exists).
    #[error(
        "address {ip} of network {network} is not reserved on this host: its reservation was \
         released or taken; ask for an address again"
    )]
    Reservation {
        /// The address.
        ip: Ipv4Addr,
        /// The network, by name.
        network: Name,
    },
    /// No such external VTEP in the network.
    #[error("vtep {addr} not found in network {network}")]
    Vtep {
        /// The VTEP.
        addr: SocketAddrV4,
        /// The network, by name.
        network: Name,
    },
}

/// A name or a pinned value that is taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exists {
    /// The network name.
    #[error("network with name {0} already exists")]
    Network(Name),
    /// The VNI.
    #[error("vni {vni} is already used by network {network}")]
    Vni {
        /// The VNI asked for.
        vni: Vni,
        /// The network that has it.
        network: Name,
    },
    /// The container name in the network.
    #[error("endpoint with name {name} already exists in network {network}")]
    Endpoint {
        /// The container.
        name: Name,
        /// The network, by name.
        network: Name,
    },
    /// The same namespace is connected already.
    #[error("container {netns} is already connected to network {network} as {name}")]
    Container {
        /// The namespace as the user gave it.
        netns: String,
        /// The network, by name.
        network: Name,
        /// The endpoint that holds it.
        name: Name,
    },
    /// The external VTEP.
    #[error("vtep {addr} already exists in network {network}")]
    Vtep {
        /// The VTEP.
        addr: SocketAddrV4,
        /// The network, by name.
        network: Name,
    },
}

/// A resource used by something else, or used up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InUse {
    /// A pinned subnet overlapping another network's.
    #[error("subnet {subnet} overlaps with subnet {other} of network {network}")]
    Subnet {
        /// The subnet asked for.
        subnet: Ipv4Net,
        /// The one it overlaps.
        other: Ipv4Net,
        /// The network that has it.
        network: Name,
    },
    /// The default pool is full.
    #[error("no free /{len} left in {pool}: pass a subnet")]
    NoSubnet {
        /// The pool.
        pool: Ipv4Net,
        /// Prefix length of default subnets.
        len: u8,
    },
    /// Every automatic VNI is taken.
    #[error("no free vni left")]
    NoVni,
    /// A requested address another endpoint holds.
    #[error("address already in use: {ip} in network {network}")]
    Address {
        /// The address.
        ip: Ipv4Addr,
        /// The network, by name.
        network: Name,
    },
    /// A requested address that is the gateway.
    #[error("address already in use: {0} is the network's gateway")]
    Gateway(Ipv4Addr),
    /// The subnet has no free address.
    #[error("no available IPv4 addresses on this network's address pools: {network} ({id})")]
    NoAddress {
        /// The network, by name.
        network: Name,
        /// Its ID.
        id: String,
    },
    /// `network rm` of a network with endpoints.
    #[error(
        "error while removing network: network {network} id {id} has active endpoints ({})",
        endpoints.join(", ")
    )]
    ActiveEndpoints {
        /// The network, by name.
        network: Name,
        /// Its ID.
        id: String,
        /// Its endpoints' names.
        endpoints: Vec<String>,
    },
    /// A host port published on the node already (docker's words).
    #[error("Bind for {0} failed: port is already allocated")]
    Port(HostPort),
    /// A host port a process of the host holds, or an address the host does not have.
    #[error("failed to bind host port {host}/{}: {cause}", host.protocol)]
    HostPort {
        /// The port.
        host: HostPort,
        /// Why binding it failed, as Go (and so docker) words it: "address already in use".
        cause: String,
    },
    /// `network disconnect` on a node that does not serve the endpoint.
    #[error("container {container} is connected on node {node}: disconnect it there")]
    OtherNode {
        /// The container.
        container: Name,
        /// The node that serves it.
        node: NodeName,
    },
}

/// Why a claimed endpoint could not be given its host side.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailure {
    /// Building the veth failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The network's bridge, TAP or data-plane entry could not be set up here.
    #[error("network {0} could not be set up on this host (see the agent's log)")]
    NetworkDown(Name),
    /// The host's NAT and filter rules (ovnet's nftables table) could not be applied, so the
    /// container would be neither isolated nor reachable as asked.
    #[error("{0}")]
    Edge(String),
}

impl From<IpamError> for AgentError {
    fn from(e: IpamError) -> Self {
        match e {
            IpamError::AddressIsGateway(ip) => InUse::Gateway(ip).into(),
            e => Invalid::Value(e).into(),
        }
    }
}

impl From<BadIfName> for AgentError {
    fn from(e: BadIfName) -> Self {
        Invalid::IfName(e).into()
    }
}

impl AgentError {
    /// Classifies an etcd-client error: transport failures and timeouts are
    /// [`AgentError::Unavailable`], anything else [`AgentError::Etcd`].
    pub(crate) fn from_etcd(e: etcd_client::Error, endpoints: &str, op: &'static str) -> Self {
        use etcd_client::Error as E;
        use tonic::Code;
        let unavailable = match &e {
            E::TransportError(_) | E::IoError(_) => true,
            E::GRpcStatus(s) => matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ),
            _ => false,
        };
        if unavailable {
            AgentError::Unavailable {
                endpoints: endpoints.to_owned(),
                cause: format!("{op}: {e}"),
            }
        } else {
            AgentError::Etcd { op, source: e }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_docker_like_line() {
        let e = AgentError::Unavailable {
            endpoints: "http://127.0.0.1:2379".into(),
            cause: "range: no answer within 3s".into(),
        };
        assert_eq!(
            e.to_string(),
            "etcd at http://127.0.0.1:2379 is unreachable: start it or pass --etcd"
        );
        let e = AgentError::from(IpamError::InvalidVni(0));
        assert_eq!(
            e.to_string(),
            "invalid vni 0: must be between 1 and 16777215"
        );
        assert!(matches!(e, AgentError::Invalid(_)));
        // The one rule of the IPAM that is about use, not form.
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let e = AgentError::from(IpamError::AddressIsGateway(gw));
        assert!(matches!(e, AgentError::InUse(InUse::Gateway(_))), "{e:?}");
        assert_eq!(
            e.to_string(),
            "address already in use: 10.0.0.1 is the network's gateway"
        );
        let e = AgentError::from(InUse::ActiveEndpoints {
            network: Name::parse("network", "demo").unwrap(),
            id: "ab12".into(),
            endpoints: vec!["web1".into(), "web2".into()],
        });
        assert_eq!(
            e.to_string(),
            "error while removing network: network demo id ab12 has active endpoints (web1, web2)"
        );
        let e = AgentError::Conflict("create network demo".into());
        assert_eq!(
            e.to_string(),
            "could not create network demo: other agents kept changing the same records, try again"
        );
    }
}
