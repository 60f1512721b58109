//! The cluster store: ovnet's records in etcd, typed, with every change made in one etcd
//! transaction so that agents racing for the same name, VNI, subnet or address get exactly one
//! winner and the others a clear error.
//!
//! It is not the data plane and keeps no cache: every call reads etcd. The agent keeps its own
//! view with [`Store::snapshot`] followed by [`Store::watch`].
//!
//! # Key layout
//!
//! All keys live under a configurable prefix `{p}` (default `/ovnet/`); values are
//! prost-encoded `ovnet.v1` messages unless noted.
//!
//! | key | value | |
//! |---|---|---|
//! | `{p}networks/{name}` | `Network` | the record; the key is the name claim |
//! | `{p}vnis/{vni}` | network ID | claim |
//! | `{p}subnets/{network_addr}_{len}` | network ID | claim (e.g. `10.0.0.0_24`) |
//! | `{p}endpoints/{network_id}/{endpoint_name}` | `Endpoint` | the record; name claim within the network |
//! | `{p}ips/{network_id}/{ipv4}` | endpoint ID | claim |
//! | `{p}nodes/{name}` | `Node` | persistent registration |
//! | `{p}alive/{name}` | empty | attached to the node's lease: liveness |
//! | `{p}vteps/{network_id}/{ip}:{port}` | `ExternalVtep` | |
//!
//! Liveness is apart from allocation: endpoints and address claims are not on any lease, so an
//! agent that dies keeps its containers' addresses until they are disconnected.
//!
//! # Consistency
//!
//! - Claims are created with `create_revision == 0` compares, records changed with
//!   `mod_revision == <read revision>` compares, both in the transaction that writes them.
//! - Subnet overlap cannot be a single-key compare: [`Store::create_network`] reads all networks
//!   at a revision `R`, decides in Rust, and its transaction also requires that no key under
//!   `{p}subnets/` was modified after `R`.
//! - A lost race re-reads and decides again: a value the user pinned then fails with the
//!   precise reason (name taken, VNI used by network X, subnet overlaps network X); a value the
//!   store chose is chosen again. After [`MAX_ATTEMPTS`] lost races the result is
//!   [`StoreError::Conflict`].
//! - Every etcd call is bounded by [`StoreConfig::timeout`]; an etcd that does not answer gives
//!   [`StoreError::Unavailable`], never a hang.

mod error;
mod keys;
mod liveness;
mod time;
mod watch;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use ipnet::Ipv4Net;
use ovnet_proto::{Endpoint, ExternalVtep, Message, Network, Node};

use crate::ipam;

pub use error::StoreError;
pub use keys::{Keys, RecordKey, DEFAULT_PREFIX};
pub use liveness::{KeepAlive, Lease};
pub use time::{now_rfc3339, rfc3339};
pub use watch::{Record, Watch, WatchEvent};

/// How many times an operation re-reads and retries after losing a race.
pub const MAX_ATTEMPTS: usize = 8;
/// Default bound on each etcd call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default etcd endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";
/// The UDP port of VXLAN (IANA, RFC 7348), used when a VTEP's port is given as 0.
pub const VXLAN_PORT: u16 = 4789;
/// The only driver.
pub const DRIVER: &str = "overlay";

/// Where the store is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix; a trailing `/` is added if missing.
    pub prefix: String,
    /// Bound on each etcd call (and on connecting).
    pub timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![DEFAULT_ENDPOINT.to_owned()],
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// What `docker network create` takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Network name, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    pub name: String,
    /// Empty or `"overlay"`.
    pub driver: String,
    /// IPv4 CIDR; `None` means the first free /24 of 10.0.0.0/8.
    pub subnet: Option<String>,
    /// Gateway inside `subnet`; `None` means its first host. Needs `subnet`.
    pub gateway: Option<String>,
    /// `None` means the lowest free VNI from 256.
    pub vni: Option<u32>,
    /// `None` means 1450.
    pub mtu: Option<u32>,
    /// User labels.
    pub labels: HashMap<String, String>,
}

impl From<ovnet_proto::CreateNetworkRequest> for NetworkSpec {
    fn from(r: ovnet_proto::CreateNetworkRequest) -> Self {
        Self {
            name: r.name,
            driver: r.driver,
            subnet: r.subnet,
            gateway: r.gateway,
            vni: r.vni,
            mtu: r.mtu,
            labels: r.labels,
        }
    }
}

/// What `docker network connect` takes, plus where the endpoint lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Network name, ID or unique ID prefix.
    pub network: String,
    /// Endpoint (container) name, unique within the network.
    pub name: String,
    /// Node (agent) that serves the endpoint.
    pub node: String,
    /// Network namespace as the user gave it; stored as is.
    pub netns: String,
    /// Interface name inside the container; empty means `eth0`.
    pub ifname: String,
    /// Requested IPv4 address; `None` means the lowest free one.
    pub ipv4: Option<String>,
}

/// Everything under the prefix at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Networks, by name.
    pub networks: Vec<Network>,
    /// Endpoints of all networks, by network ID then name.
    pub endpoints: Vec<Endpoint>,
    /// Registered nodes, by name, with whether their liveness lease is held.
    pub nodes: Vec<(Node, bool)>,
    /// External VTEPs of all networks, by network ID then address.
    pub vteps: Vec<ExternalVtep>,
}

/// A handle on the cluster store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Store {
    client: Client,
    keys: Keys,
    endpoints: String,
    timeout: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A network together with the revision its record was last modified at.
struct Found {
    net: Network,
    mod_rev: i64,
    /// The revision the lookup read at.
    rev: i64,
}

impl Store {
    /// Creates the client. Connecting is lazy: an etcd that is down shows up as
    /// [`StoreError::Unavailable`] on the first call (see [`Store::ping`]).
    pub async fn connect(config: StoreConfig) -> Result<Store, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoint given".to_owned()));
        }
        let endpoints = config.endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            // HTTP/2 pings on open streams, so a watch or a lease keep-alive on a vanished
            // etcd breaks instead of waiting forever.
            .with_keep_alive(Duration::from_secs(5), config.timeout);
        let client = match tokio::time::timeout(
            config.timeout,
            Client::connect(&config.endpoints, Some(options)),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(etcd_client::Error::InvalidUri(e))) => {
                return Err(StoreError::Invalid(format!(
                    "invalid etcd endpoint {endpoints}: {e}"
                )))
            }
            Ok(Err(e)) => return Err(StoreError::from_etcd(e, &endpoints, "connect")),
            Err(_) => {
                return Err(StoreError::Unavailable {
                    endpoints,
                    cause: format!("connect: no answer within {:?}", config.timeout),
                })
            }
        };
        Ok(Store {
            client,
            keys: Keys::new(&config.prefix),
            endpoints,
            timeout: config.timeout,
        })
    }

    /// The underlying etcd client (for tests and tools; ovnet code should use the typed calls).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Checks that etcd answers; returns its current revision.
    pub async fn ping(&self) -> Result<i64, StoreError> {
        let (rev, _) = self
            .range_opts(self.keys.prefix(), GetOptions::new().with_count_only())
            .await?;
        Ok(rev)
    }

    // ---------------------------------------------------------------------------------------
    // Networks
    // ---------------------------------------------------------------------------------------

    /// Creates a network, choosing the values `spec` leaves unset (see [`NetworkSpec`]).
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network, StoreError> {
        ipam::validate_name("network", &spec.name)?;
        if !spec.driver.is_empty() && spec.driver != DRIVER {
            return Err(StoreError::Invalid(format!(
                "driver {:?} is not supported: ovnet only provides \"overlay\"",
                spec.driver
            )));
        }
        let pinned_subnet = spec.subnet.as_deref().map(ipam::parse_subnet).transpose()?;
        let pinned_gateway = match (&spec.gateway, &pinned_subnet) {
            (Some(gw), Some(net)) => Some(ipam::parse_gateway(net, gw)?),
            (Some(gw), None) => {
                return Err(StoreError::Invalid(format!(
                    "invalid gateway {gw}: a gateway can only be given together with a subnet"
                )))
            }
            (None, _) => None,
        };
        if let Some(vni) = spec.vni {
            ipam::validate_vni(vni)?;
        }
        let mtu = spec.mtu.unwrap_or(ipam::DEFAULT_MTU);
        ipam::validate_mtu(mtu)?;

        for attempt in 1..=MAX_ATTEMPTS {
            let (rev, kvs) = self.range(&self.keys.networks(), 0).await?;
            let existing: Vec<Network> = kvs
                .iter()
                .filter_map(|kv| self.decode_or_warn(kv))
                .collect();
            if existing.iter().any(|n| n.name == spec.name) {
                return Err(StoreError::AlreadyExists(format!(
                    "network with name {} already exists",
                    spec.name
                )));
            }
            let used: Vec<(Ipv4Net, &Network)> = existing
                .iter()
                .filter_map(|n| n.subnet.parse().ok().map(|s| (s, n)))
                .collect();
            let subnet = match pinned_subnet {
                Some(s) => {
                    if let Some((u, n)) = used.iter().find(|(u, _)| ipam::overlaps(&s, u)) {
                        return Err(StoreError::InUse(format!(
                            "subnet {s} overlaps with subnet {u} of network {}",
                            n.name
                        )));
                    }
                    s
                }
                None => {
                    let nets: Vec<Ipv4Net> = used.iter().map(|(s, _)| *s).collect();
                    ipam::next_free_subnet(&nets).ok_or_else(|| {
                        StoreError::InUse(format!(
                            "no free /{} left in {}: pass a subnet",
                            ipam::DEFAULT_SUBNET_LEN,
                            ipam::DEFAULT_POOL
                        ))
                    })?
                }
            };
            let vni = match spec.vni {
                Some(v) => {
                    if let Some(n) = existing.iter().find(|n| n.vni == v) {
                        return Err(StoreError::AlreadyExists(format!(
                            "vni {v} is already used by network {}",
                            n.name
                        )));
                    }
                    v
                }
                None => {
                    let used: HashSet<u32> = existing.iter().map(|n| n.vni).collect();
                    ipam::lowest_free_vni(&used)
                        .ok_or_else(|| StoreError::InUse("no free vni left".to_owned()))?
                }
            };
            let net = Network {
                id: random_id(),
                name: spec.name.clone(),
                vni,
                subnet: subnet.to_string(),
                gateway: pinned_gateway
                    .unwrap_or_else(|| ipam::first_host(&subnet))
                    .to_string(),
                mtu,
                created: now_rfc3339(),
                labels: spec.labels.clone(),
                driver: DRIVER.to_owned(),
            };
            let k_name = self.keys.network(&net.name);
            let k_vni = self.keys.vni(vni);
            let k_subnet = self.keys.subnet(&subnet);
            let txn = Txn::new()
                .when([
                    Compare::create_revision(k_name.clone(), CompareOp::Equal, 0),
                    Compare::create_revision(k_vni.clone(), CompareOp::Equal, 0),
                    Compare::create_revision(k_subnet.clone(), CompareOp::Equal, 0),
                    Compare::mod_revision(self.keys.subnets(), CompareOp::Less, rev + 1)
                        .with_prefix(),
                ])
                .and_then([
                    TxnOp::put(k_name, net.encode_to_vec(), None),
                    TxnOp::put(k_vni, net.id.clone(), None),
                    TxnOp::put(k_subnet, net.id.clone(), None),
                ]);
            if self.txn(txn).await?.succeeded() {
                log::info!(
                    "created network {} id {} subnet {} vni {}",
                    net.name,
                    net.id,
                    net.subnet,
                    net.vni
                );
                return Ok(net);
            }
            log::debug!(
                "create network {}: lost a race (attempt {attempt}), re-reading",
                spec.name
            );
        }
        Err(conflict(&format!("create network {}", spec.name)))
    }

    /// Finds a network by exact ID, then exact name, then unique ID prefix (like docker).
    pub async fn get_network(&self, name_or_id: &str) -> Result<Network, StoreError> {
        Ok(self.find_network(name_or_id).await?.net)
    }

    /// All networks, by name.
    pub async fn list_networks(&self) -> Result<Vec<Network>, StoreError> {
        let (_, kvs) = self.range(&self.keys.networks(), 0).await?;
        // Keys are returned in key order, i.e. by name.
        Ok(kvs
            .iter()
            .filter_map(|kv| self.decode_or_warn(kv))
            .collect())
    }

    /// Removes a network with its VNI and subnet claims and its external VTEPs, refused while
    /// it has endpoints. Returns the removed record.
    pub async fn remove_network(&self, name_or_id: &str) -> Result<Network, StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let Found { net, mod_rev, rev } = self.find_network(name_or_id).await?;
            let (_, eps) = self.range(&self.keys.endpoints(&net.id), rev).await?;
            if !eps.is_empty() {
                let names: Vec<String> = eps
                    .iter()
                    .filter_map(|kv| match self.keys.parse(kv.key()) {
                        Some(RecordKey::Endpoint { name, .. }) => Some(name),
                        _ => None,
                    })
                    .collect();
                return Err(StoreError::InUse(format!(
                    "error while removing network: network {} id {} has active endpoints ({})",
                    net.name,
                    net.id,
                    names.join(", ")
                )));
            }
            let mut ops = vec![
                TxnOp::delete(self.keys.network(&net.name), None),
                TxnOp::delete(self.keys.vni(net.vni), None),
                TxnOp::delete(
                    self.keys.vteps(&net.id),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
                TxnOp::delete(
                    self.keys.ips(&net.id),
                    Some(etcd_client::DeleteOptions::new().with_prefix()),
                ),
            ];
            if let Ok(subnet) = net.subnet.parse::<Ipv4Net>() {
                ops.push(TxnOp::delete(self.keys.subnet(&subnet), None));
            }
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(self.keys.network(&net.name), CompareOp::Equal, mod_rev),
                    // No endpoint appeared since we looked.
                    Compare::create_revision(self.keys.endpoints(&net.id), CompareOp::Equal, 0)
                        .with_prefix(),
                ])
                .and_then(ops);
            if self.txn(txn).await?.succeeded() {
                log::info!("removed network {} id {}", net.name, net.id);
                return Ok(net);
            }
            log::debug!("remove network {name_or_id}: lost a race (attempt {attempt}), re-reading");
        }
        Err(conflict(&format!("remove network {name_or_id}")))
    }

    // ---------------------------------------------------------------------------------------
    // Endpoints
    // ---------------------------------------------------------------------------------------

    /// Attaches a container to a network: claims its name in the network and an address (the
    /// requested one, or the lowest free), derives its MAC.
    pub async fn create_endpoint(&self, spec: EndpointSpec) -> Result<Endpoint, StoreError> {
        ipam::validate_name("container", &spec.name)?;
        ipam::validate_name("node", &spec.node)?;
        let ifname = if spec.ifname.is_empty() {
            "eth0".to_owned()
        } else {
            spec.ifname.clone()
        };
        if ifname.len() > 15
            || ifname == "."
            || ifname == ".."
            || ifname
                .chars()
                .any(|c| c == '/' || c.is_whitespace() || c == ':')
        {
            return Err(StoreError::Invalid(format!(
                "invalid interface name {ifname:?}: 1 to 15 characters, no '/', ':' or spaces"
            )));
        }
        let requested = match &spec.ipv4 {
            None => None,
            Some(s) => Some(s.trim().parse::<Ipv4Addr>().map_err(|_| {
                StoreError::Invalid(format!("invalid address {s}: not an IPv4 address"))
            })?),
        };

        for attempt in 1..=MAX_ATTEMPTS {
            let Found { net, mod_rev, rev } = self.find_network(&spec.network).await?;
            let (subnet, gateway) = subnet_and_gateway(&net)?;
            if let Some(ip) = requested {
                ipam::check_requested_ip(&subnet, gateway, ip)?;
            }
            let k_ep = self.keys.endpoint(&net.id, &spec.name);
            let (_, existing) = self
                .range_opts(&k_ep, GetOptions::new().with_revision(rev))
                .await?;
            if !existing.is_empty() {
                return Err(endpoint_exists(&spec.name, &net.name));
            }
            let ips_prefix = self.keys.ips(&net.id);
            let (_, claims) = self.range(&ips_prefix, rev).await?;
            let used: HashSet<Ipv4Addr> = claims
                .iter()
                .filter_map(|kv| {
                    std::str::from_utf8(kv.key())
                        .ok()?
                        .strip_prefix(&ips_prefix)?
                        .parse()
                        .ok()
                })
                .collect();
            let ip = match requested {
                Some(ip) if used.contains(&ip) => {
                    return Err(StoreError::InUse(format!(
                        "address already in use: {ip} in network {}",
                        net.name
                    )))
                }
                Some(ip) => ip,
                None => ipam::next_free_ip(&subnet, gateway, &used).ok_or_else(|| {
                    StoreError::InUse(format!(
                        "no available IPv4 addresses on this network's address pools: {} ({})",
                        net.name, net.id
                    ))
                })?,
            };
            let ep = Endpoint {
                id: random_id(),
                network_id: net.id.clone(),
                name: spec.name.clone(),
                node: spec.node.clone(),
                mac: ipam::mac_for(ip),
                ipv4: ip.to_string(),
                netns: spec.netns.clone(),
                ifname: ifname.clone(),
                created: now_rfc3339(),
            };
            let k_ip = self.keys.ip(&net.id, ip);
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(self.keys.network(&net.name), CompareOp::Equal, mod_rev),
                    Compare::create_revision(k_ep.clone(), CompareOp::Equal, 0),
                    Compare::create_revision(k_ip.clone(), CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put(k_ep, ep.encode_to_vec(), None),
                    TxnOp::put(k_ip, ep.id.clone(), None),
                ]);
            if self.txn(txn).await?.succeeded() {
                log::info!(
                    "connected {} to network {} as {} on node {}",
                    ep.name,
                    net.name,
                    ep.ipv4,
                    ep.node
                );
                return Ok(ep);
            }
            log::debug!(
                "connect {} to {}: lost a race (attempt {attempt}), re-reading",
                spec.name,
                spec.network
            );
        }
        Err(conflict(&format!(
            "connect {} to network {}",
            spec.name, spec.network
        )))
    }

    /// One endpoint of a network (name, ID or ID prefix) by its name.
    pub async fn get_endpoint(&self, network: &str, name: &str) -> Result<Endpoint, StoreError> {
        let Found { net, rev, .. } = self.find_network(network).await?;
        let (_, kvs) = self
            .range_opts(
                &self.keys.endpoint(&net.id, name),
                GetOptions::new().with_revision(rev),
            )
            .await?;
        match kvs.first() {
            Some(kv) => self.decode(kv),
            None => Err(not_connected(name, &net.name)),
        }
    }

    /// Detaches a container: deletes its endpoint and frees its address. Returns the removed
    /// endpoint.
    pub async fn delete_endpoint(&self, network: &str, name: &str) -> Result<Endpoint, StoreError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let Found { net, rev, .. } = self.find_network(network).await?;
            let k_ep = self.keys.endpoint(&net.id, name);
            let (_, kvs) = self
                .range_opts(&k_ep, GetOptions::new().with_revision(rev))
                .await?;
            let Some(kv) = kvs.first() else {
                return Err(not_connected(name, &net.name));
            };
            let ep: Endpoint = self.decode(kv)?;
            let mut ops = vec![TxnOp::delete(k_ep.clone(), None)];
            if let Ok(ip) = ep.ipv4.parse::<Ipv4Addr>() {
                ops.push(TxnOp::delete(self.keys.ip(&net.id, ip), None));
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    k_ep,
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then(ops);
            if self.txn(txn).await?.succeeded() {
                log::info!("disconnected {name} from network {}", net.name);
                return Ok(ep);
            }
            log::debug!("disconnect {name} from {network}: lost a race (attempt {attempt})");
        }
        Err(conflict(&format!(
            "disconnect {name} from network {network}"
        )))
    }

    /// The endpoints of one network (by exact ID), by name.
    pub async fn list_endpoints(&self, network_id: &str) -> Result<Vec<Endpoint>, StoreError> {
        let (_, kvs) = self.range(&self.keys.endpoints(network_id), 0).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| self.decode_or_warn(kv))
            .collect())
    }

    // ---------------------------------------------------------------------------------------
    // External VTEPs
    // ---------------------------------------------------------------------------------------

    /// Adds an external VTEP to a network (name, ID or ID prefix). Port 0 means 4789.
    pub async fn add_vtep(
        &self,
        network: &str,
        ip: &str,
        port: u32,
    ) -> Result<ExternalVtep, StoreError> {
        let (ip, port) = parse_vtep(ip, port)?;
        for attempt in 1..=MAX_ATTEMPTS {
            let Found { net, mod_rev, .. } = self.find_network(network).await?;
            let key = self.keys.vtep(&net.id, ip, port);
            let vtep = ExternalVtep {
                network_id: net.id.clone(),
                ip: ip.to_string(),
                port: u32::from(port),
            };
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(self.keys.network(&net.name), CompareOp::Equal, mod_rev),
                    Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                ])
                .and_then([TxnOp::put(key.clone(), vtep.encode_to_vec(), None)])
                .or_else([TxnOp::get(key, None)]);
            let resp = self.txn(txn).await?;
            if resp.succeeded() {
                log::info!("added vtep {ip}:{port} to network {}", net.name);
                return Ok(vtep);
            }
            if txn_got_key(&resp) {
                return Err(StoreError::AlreadyExists(format!(
                    "vtep {ip}:{port} already exists in network {}",
                    net.name
                )));
            }
            log::debug!("add vtep {ip}:{port} to {network}: lost a race (attempt {attempt})");
        }
        Err(conflict(&format!(
            "add vtep {ip}:{port} to network {network}"
        )))
    }

    /// Removes an external VTEP from a network (name, ID or ID prefix). Port 0 means 4789.
    pub async fn remove_vtep(&self, network: &str, ip: &str, port: u32) -> Result<(), StoreError> {
        let (ip, port) = parse_vtep(ip, port)?;
        let net = self.get_network(network).await?;
        let mut kv = self.client.kv_client();
        let resp = self
            .call("delete", kv.delete(self.keys.vtep(&net.id, ip, port), None))
            .await?;
        if resp.deleted() == 0 {
            return Err(StoreError::NotFound(format!(
                "vtep {ip}:{port} not found in network {}",
                net.name
            )));
        }
        log::info!("removed vtep {ip}:{port} from network {}", net.name);
        Ok(())
    }

    /// The external VTEPs of one network (by exact ID).
    pub async fn list_vteps(&self, network_id: &str) -> Result<Vec<ExternalVtep>, StoreError> {
        let (_, kvs) = self.range(&self.keys.vteps(network_id), 0).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| self.decode_or_warn(kv))
            .collect())
    }

    // ---------------------------------------------------------------------------------------
    // Nodes
    // ---------------------------------------------------------------------------------------

    /// Registers (or re-registers) a node: writes `{p}nodes/{name}` and, on a new lease of
    /// `ttl` (rounded up to whole seconds), `{p}alive/{name}`. Keep the lease with
    /// [`Store::keep_alive`].
    pub async fn register_node(&self, node: &Node, ttl: Duration) -> Result<Lease, StoreError> {
        ipam::validate_name("node", &node.name)?;
        if node.vtep_ip.parse::<Ipv4Addr>().is_err() {
            return Err(StoreError::Invalid(format!(
                "invalid vtep address {:?} for node {}: not an IPv4 address",
                node.vtep_ip, node.name
            )));
        }
        if node.vtep_port == 0 || node.vtep_port > u32::from(u16::MAX) {
            return Err(StoreError::Invalid(format!(
                "invalid vtep port {} for node {}",
                node.vtep_port, node.name
            )));
        }
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        let mut lc = self.client.lease_client();
        let grant = self.call("lease grant", lc.grant(secs, None)).await?;
        let lease = Lease {
            id: grant.id(),
            ttl: Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1)),
        };
        let txn = Txn::new().and_then([
            TxnOp::put(self.keys.node(&node.name), node.encode_to_vec(), None),
            TxnOp::put(
                self.keys.alive(&node.name),
                Vec::new(),
                Some(PutOptions::new().with_lease(lease.id)),
            ),
        ]);
        self.txn(txn).await?;
        log::info!(
            "registered node {} (vtep {}:{}) with lease {:x}, ttl {:?}",
            node.name,
            node.vtep_ip,
            node.vtep_port,
            lease.id,
            lease.ttl
        );
        Ok(lease)
    }

    /// Revokes a lease: the node's `{p}alive/` key goes at once, its registration stays.
    pub async fn revoke_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let mut lc = self.client.lease_client();
        match self.call("lease revoke", lc.revoke(lease.id)).await {
            Ok(_) => Ok(()),
            // Already expired or revoked: the goal is reached.
            Err(StoreError::Internal(m)) if m.contains("lease not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a node's registration and liveness key (for decommissioning a host).
    pub async fn remove_node(&self, name: &str) -> Result<(), StoreError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(self.keys.node(name), None),
            TxnOp::delete(self.keys.alive(name), None),
        ]);
        let resp = self.txn(txn).await?;
        let deleted = resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Delete(d) => d.deleted() > 0,
            _ => false,
        });
        if deleted {
            Ok(())
        } else {
            Err(StoreError::NotFound(format!("node {name} not found")))
        }
    }

    /// Registered nodes, by name, with whether their liveness key exists.
    pub async fn list_nodes(&self) -> Result<Vec<(Node, bool)>, StoreError> {
        let (rev, nodes) = self.range(&self.keys.nodes(), 0).await?;
        let (_, alive) = self.range(&self.keys.alives(), rev).await?;
        let alive: HashSet<String> = alive
            .iter()
            .filter_map(|kv| match self.keys.parse(kv.key()) {
                Some(RecordKey::Alive { name }) => Some(name),
                _ => None,
            })
            .collect();
        Ok(nodes
            .iter()
            .filter_map(|kv| self.decode_or_warn::<Node>(kv))
            .map(|n| {
                let up = alive.contains(&n.name);
                (n, up)
            })
            .collect())
    }

    // ---------------------------------------------------------------------------------------
    // Snapshot and watch
    // ---------------------------------------------------------------------------------------

    /// Everything under the prefix at one revision. Follow it with `watch(revision + 1)`.
    pub async fn snapshot(&self) -> Result<(i64, State), StoreError> {
        let (rev, kvs) = self.range(self.keys.prefix(), 0).await?;
        let mut state = State::default();
        let mut nodes = Vec::new();
        let mut alive = HashSet::new();
        for kv in &kvs {
            match self.keys.parse(kv.key()) {
                Some(RecordKey::Network { .. }) => state.networks.extend(self.decode_or_warn(kv)),
                Some(RecordKey::Endpoint { .. }) => state.endpoints.extend(self.decode_or_warn(kv)),
                Some(RecordKey::Node { .. }) => nodes.extend(self.decode_or_warn::<Node>(kv)),
                Some(RecordKey::Alive { name }) => {
                    alive.insert(name);
                }
                Some(RecordKey::Vtep { .. }) => state.vteps.extend(self.decode_or_warn(kv)),
                None => {}
            }
        }
        state.nodes = nodes
            .into_iter()
            .map(|n| {
                let up = alive.contains(&n.name);
                (n, up)
            })
            .collect();
        Ok((rev, state))
    }

    // ---------------------------------------------------------------------------------------
    // Plumbing
    // ---------------------------------------------------------------------------------------

    /// Runs one etcd call under the timeout, classifying its failure.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let e = StoreError::from_etcd(e, &self.endpoints, what);
                if let StoreError::Unavailable { cause, .. } = &e {
                    log::debug!("etcd at {} unreachable: {cause}", self.endpoints);
                }
                Err(e)
            }
            Err(_) => {
                log::debug!(
                    "etcd at {} unreachable: {what}: no answer within {:?}",
                    self.endpoints,
                    self.timeout
                );
                Err(self.unavailable(format!("{what}: no answer within {:?}", self.timeout)))
            }
        }
    }

    fn unavailable(&self, cause: String) -> StoreError {
        StoreError::Unavailable {
            endpoints: self.endpoints.clone(),
            cause,
        }
    }

    /// All keys under `prefix`, at `revision` (0: the latest). Returns the revision read at.
    async fn range(&self, prefix: &str, revision: i64) -> Result<(i64, Vec<KeyValue>), StoreError> {
        let mut opts = GetOptions::new().with_prefix();
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        self.range_opts(prefix, opts).await
    }

    async fn range_opts(
        &self,
        key: &str,
        opts: GetOptions,
    ) -> Result<(i64, Vec<KeyValue>), StoreError> {
        let mut kv = self.client.kv_client();
        let mut resp = self.call("range", kv.get(key, Some(opts))).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((rev, resp.take_kvs()))
    }

    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        let mut kv = self.client.kv_client();
        self.call("txn", kv.txn(txn)).await
    }

    fn decode<M: Message + Default>(&self, kv: &KeyValue) -> Result<M, StoreError> {
        M::decode(kv.value()).map_err(|e| {
            StoreError::Internal(format!(
                "corrupt record at {}: {e}",
                String::from_utf8_lossy(kv.key())
            ))
        })
    }

    /// Decodes a record from a listing; a corrupt one is logged and skipped so that one bad
    /// value does not hide all the others.
    fn decode_or_warn<M: Message + Default>(&self, kv: &KeyValue) -> Option<M> {
        self.decode(kv).map_err(|e| log::warn!("skipping {e}")).ok()
    }

    /// Resolves a network name, ID or unique ID prefix, reading all networks at one revision.
    async fn find_network(&self, name_or_id: &str) -> Result<Found, StoreError> {
        if name_or_id.is_empty() {
            return Err(StoreError::Invalid(
                "a network name or ID is required".to_owned(),
            ));
        }
        let (rev, kvs) = self.range(&self.keys.networks(), 0).await?;
        let nets: Vec<(Network, i64)> = kvs
            .iter()
            .filter_map(|kv| self.decode_or_warn(kv).map(|n| (n, kv.mod_revision())))
            .collect();
        let pick = |(net, mod_rev): &(Network, i64)| Found {
            net: net.clone(),
            mod_rev: *mod_rev,
            rev,
        };
        if let Some(f) = nets.iter().find(|(n, _)| n.id == name_or_id) {
            return Ok(pick(f));
        }
        if let Some(f) = nets.iter().find(|(n, _)| n.name == name_or_id) {
            return Ok(pick(f));
        }
        let matches: Vec<&(Network, i64)> = nets
            .iter()
            .filter(|(n, _)| n.id.starts_with(name_or_id))
            .collect();
        match matches.as_slice() {
            [one] => Ok(pick(one)),
            [] => Err(StoreError::NotFound(format!(
                "network {name_or_id} not found"
            ))),
            many => Err(StoreError::Invalid(format!(
                "network {name_or_id} is ambiguous ({} matches found based on ID prefix)",
                many.len()
            ))),
        }
    }
}

fn subnet_and_gateway(net: &Network) -> Result<(Ipv4Net, Ipv4Addr), StoreError> {
    let subnet = net.subnet.parse::<Ipv4Net>().map_err(|_| {
        StoreError::Internal(format!(
            "network {} has a corrupt subnet {:?}",
            net.name, net.subnet
        ))
    })?;
    let gateway = net.gateway.parse::<Ipv4Addr>().map_err(|_| {
        StoreError::Internal(format!(
            "network {} has a corrupt gateway {:?}",
            net.name, net.gateway
        ))
    })?;
    Ok((subnet, gateway))
}

fn parse_vtep(ip: &str, port: u32) -> Result<(Ipv4Addr, u16), StoreError> {
    let addr = ip.trim().parse::<Ipv4Addr>().map_err(|_| {
        StoreError::Invalid(format!("invalid vtep address {ip}: not an IPv4 address"))
    })?;
    let port = match port {
        0 => VXLAN_PORT,
        p => u16::try_from(p).map_err(|_| {
            StoreError::Invalid(format!("invalid vtep port {p}: must be 1..=65535"))
        })?,
    };
    Ok((addr, port))
}

fn txn_got_key(resp: &etcd_client::TxnResponse) -> bool {
    resp.op_responses().iter().any(|r| match r {
        TxnOpResponse::Get(g) => !g.kvs().is_empty(),
        _ => false,
    })
}

fn endpoint_exists(name: &str, network: &str) -> StoreError {
    StoreError::AlreadyExists(format!(
        "endpoint with name {name} already exists in network {network}"
    ))
}

fn not_connected(name: &str, network: &str) -> StoreError {
    StoreError::NotFound(format!(
        "container {name} is not connected to network {network}"
    ))
}

fn conflict(what: &str) -> StoreError {
    StoreError::Conflict(format!(
        "could not {what}: other agents kept changing the same records, try again"
    ))
}

/// 64 random lowercase hex characters, like a docker ID.
fn random_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex() {
        let a = random_id();
        assert_eq!(a.len(), 64);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, random_id());
    }

    #[test]
    fn vtep_ports() {
        assert_eq!(
            parse_vtep("192.0.2.1", 0).unwrap(),
            (Ipv4Addr::new(192, 0, 2, 1), VXLAN_PORT)
        );
        assert!(parse_vtep("192.0.2.1", 70000).is_err());
        assert!(parse_vtep("nope", 1).is_err());
    }
}
