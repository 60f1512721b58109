//! The etcd key layout, built and parsed in one place, and what a record key holds.
//!
//! Every key is `{prefix}{kind}/...`; the layout is documented in [`crate::store`]. Names follow
//! [`Name`]'s rule (no `/`) and IDs are hex, so splitting a key on `/` is unambiguous; a key
//! that does not parse into a [`RecordKey`] (a claim, a foreign or malformed key) is not a
//! record. [`decode_record`] is the store's edge: the bytes under a record key become a typed
//! [`Record`] that agrees with its key, or a [`BadRecord`].

use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use ovnet_wire::Vni;

use crate::domain::ports::{HostPort, Protocol};
use crate::domain::records::BadRecord;
use crate::domain::{Endpoint, ExternalVtep, Name, Network, NetworkId, Node, NodeName};

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "/ovnet/";

/// Builds the keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// Which record a key holds (claims such as `vnis/` are not records and have no variant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// `{p}networks/{name}`
    Network {
        /// Network name.
        name: Name,
    },
    /// `{p}endpoints/{network_id}/{name}`
    Endpoint {
        /// Network ID.
        network_id: NetworkId,
        /// Endpoint (container) name.
        name: Name,
    },
    /// `{p}nodes/{name}`
    Node {
        /// Node name.
        name: NodeName,
    },
    /// `{p}alive/{name}` (leased)
    Alive {
        /// Node name.
        name: NodeName,
    },
    /// `{p}vteps/{network_id}/{ip}:{port}`
    Vtep {
        /// Network ID.
        network_id: NetworkId,
        /// Underlay address and UDP port.
        addr: SocketAddrV4,
    },
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `{p}networks/{name}`
    Network(Network),
    /// `{p}endpoints/{network_id}/{name}`
    Endpoint(Endpoint),
    /// `{p}nodes/{name}`
    Node(Node),
    /// `{p}alive/{name}`: the node with this name is alive (put) or dead (delete).
    Alive(NodeName),
    /// `{p}vteps/{network_id}/{ip}:{port}`
    Vtep(ExternalVtep),
}

impl Record {
    /// The key the record is stored under.
    pub fn key(&self) -> RecordKey {
        match self {
            Record::Network(n) => RecordKey::Network {
                name: n.name.clone(),
            },
            Record::Endpoint(e) => RecordKey::Endpoint {
                network_id: e.network_id.clone(),
                name: e.name.clone(),
            },
            Record::Node(n) => RecordKey::Node {
                name: n.name.clone(),
            },
            Record::Alive(name) => RecordKey::Alive { name: name.clone() },
            Record::Vtep(v) => RecordKey::Vtep {
                network_id: v.network_id.clone(),
                addr: v.addr,
            },
        }
    }
}

/// The record stored under `key`, checked: it decodes, every field is valid, and it is the
/// record its key says (a network stored under another network's name is refused).
pub fn decode_record(key: &RecordKey, value: &[u8]) -> Result<Record, BadRecord> {
    fn same<T: PartialEq + ToString>(
        field: &'static str,
        stored: &T,
        key: &T,
    ) -> Result<(), BadRecord> {
        if stored == key {
            Ok(())
        } else {
            Err(BadRecord::NotItsKey {
                field,
                value: stored.to_string(),
            })
        }
    }
    Ok(match key {
        RecordKey::Network { name } => {
            let n = Network::decode(value)?;
            same("name", &n.name, name)?;
            Record::Network(n)
        }
        RecordKey::Endpoint { network_id, name } => {
            let e = Endpoint::decode(value)?;
            same("network_id", &e.network_id, network_id)?;
            same("name", &e.name, name)?;
            Record::Endpoint(e)
        }
        RecordKey::Node { name } => {
            let n = Node::decode(value)?;
            same("name", &n.name, name)?;
            Record::Node(n)
        }
        RecordKey::Alive { name } => Record::Alive(name.clone()),
        RecordKey::Vtep { network_id, addr } => {
            let v = ExternalVtep::decode(value)?;
            same("network_id", &v.network_id, network_id)?;
            same("ip and port", &v.addr, addr)?;
            Record::Vtep(v)
        }
    })
}

impl Keys {
    /// Keys under `prefix`; a missing trailing `/` is added, an empty prefix means
    /// [`DEFAULT_PREFIX`].
    pub fn new(prefix: &str) -> Self {
        let mut prefix = if prefix.is_empty() {
            DEFAULT_PREFIX.to_owned()
        } else {
            prefix.to_owned()
        };
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    /// The prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}networks/`
    pub fn networks(&self) -> String {
        format!("{}networks/", self.prefix)
    }

    /// `{p}networks/{name}` → `Network`
    pub fn network(&self, name: &str) -> String {
        format!("{}networks/{name}", self.prefix)
    }

    /// `{p}vnis/{vni}` → network ID (claim)
    pub fn vni(&self, vni: Vni) -> String {
        format!("{}vnis/{vni}", self.prefix)
    }

    /// `{p}subnets/`
    pub fn subnets(&self) -> String {
        format!("{}subnets/", self.prefix)
    }

    /// `{p}subnets/{network_addr}_{len}` → network ID (claim)
    pub fn subnet(&self, net: &Ipv4Net) -> String {
        format!(
            "{}subnets/{}_{}",
            self.prefix,
            net.network(),
            net.prefix_len()
        )
    }

    /// `{p}endpoints/`
    pub fn all_endpoints(&self) -> String {
        format!("{}endpoints/", self.prefix)
    }

    /// `{p}endpoints/{network_id}/`
    pub fn endpoints(&self, network_id: &NetworkId) -> String {
        format!("{}endpoints/{network_id}/", self.prefix)
    }

    /// `{p}endpoints/{network_id}/{name}` → `Endpoint`
    pub fn endpoint(&self, network_id: &NetworkId, name: &str) -> String {
        format!("{}endpoints/{network_id}/{name}", self.prefix)
    }

    /// `{p}ips/{network_id}/`
    pub fn ips(&self, network_id: &NetworkId) -> String {
        format!("{}ips/{network_id}/", self.prefix)
    }

    /// `{p}ips/{network_id}/{ipv4}` → endpoint ID (claim)
    pub fn ip(&self, network_id: &NetworkId, ip: Ipv4Addr) -> String {
        format!("{}ips/{network_id}/{ip}", self.prefix)
    }

    /// `{p}reservations/`
    pub fn all_reservations(&self) -> String {
        format!("{}reservations/", self.prefix)
    }

    /// `{p}reservations/{network_id}/`
    pub fn reservations(&self, network_id: &NetworkId) -> String {
        format!("{}reservations/{network_id}/", self.prefix)
    }

    /// `{p}reservations/{network_id}/{ipv4}` → `Reservation`
    pub fn reservation(&self, network_id: &NetworkId, ip: Ipv4Addr) -> String {
        format!("{}reservations/{network_id}/{ip}", self.prefix)
    }

    /// `{p}ports/{node}/`
    pub fn ports(&self, node: &NodeName) -> String {
        format!("{}ports/{node}/", self.prefix)
    }

    /// `{p}ports/{node}/{protocol}/{ip}:{port}` → endpoint ID (claim of a published port)
    pub fn port(&self, node: &NodeName, host: &HostPort) -> String {
        format!(
            "{}ports/{node}/{}/{}:{}",
            self.prefix, host.protocol, host.ip, host.port
        )
    }

    /// The host port claimed by a key under [`Keys::ports`] of `node`.
    pub fn parse_port(&self, node: &NodeName, key: &[u8]) -> Option<HostPort> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.ports(node))?;
        let (protocol, addr) = rest.split_once('/')?;
        let addr: SocketAddrV4 = addr.parse().ok()?;
        if protocol.is_empty() || addr.port() == 0 {
            return None;
        }
        Some(HostPort {
            protocol: protocol.parse::<Protocol>().ok()?,
            ip: *addr.ip(),
            port: addr.port(),
        })
    }

    /// `{p}nodes/`
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// `{p}nodes/{name}` → `Node`
    pub fn node(&self, name: &NodeName) -> String {
        format!("{}nodes/{name}", self.prefix)
    }

    /// `{p}alive/`
    pub fn alives(&self) -> String {
        format!("{}alive/", self.prefix)
    }

    /// `{p}alive/{name}` → empty, leased
    pub fn alive(&self, name: &NodeName) -> String {
        format!("{}alive/{name}", self.prefix)
    }

    /// `{p}vteps/`
    pub fn all_vteps(&self) -> String {
        format!("{}vteps/", self.prefix)
    }

    /// `{p}vteps/{network_id}/`
    pub fn vteps(&self, network_id: &NetworkId) -> String {
        format!("{}vteps/{network_id}/", self.prefix)
    }

    /// `{p}vteps/{network_id}/{ip}:{port}` → `ExternalVtep`
    pub fn vtep(&self, network_id: &NetworkId, addr: SocketAddrV4) -> String {
        format!("{}vteps/{network_id}/{addr}", self.prefix)
    }

    /// The address claimed by a key under [`Keys::ips`] of `network_id`.
    pub fn parse_ip(&self, network_id: &NetworkId, key: &[u8]) -> Option<Ipv4Addr> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.ips(network_id))?
            .parse()
            .ok()
    }

    /// Which record `key` holds, or `None` for claims, foreign and malformed keys.
    pub fn parse(&self, key: &[u8]) -> Option<RecordKey> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        let (kind, rest) = rest.split_once('/')?;
        match kind {
            "networks" => Some(RecordKey::Network {
                name: Name::parse("network", rest).ok()?,
            }),
            "nodes" => Some(RecordKey::Node {
                name: NodeName::parse(rest).ok()?,
            }),
            "alive" => Some(RecordKey::Alive {
                name: NodeName::parse(rest).ok()?,
            }),
            "endpoints" => {
                let (id, name) = two_segments(rest)?;
                Some(RecordKey::Endpoint {
                    network_id: NetworkId::parse(id).ok()?,
                    name: Name::parse("container", name).ok()?,
                })
            }
            "vteps" => {
                let (id, addr) = two_segments(rest)?;
                Some(RecordKey::Vtep {
                    network_id: NetworkId::parse(id).ok()?,
                    addr: addr.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

/// `a/b` as `(a, b)`, when `b` has no `/` of its own.
fn two_segments(s: &str) -> Option<(&str, &str)> {
    s.split_once('/').filter(|(_, b)| !b.contains('/'))
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::{endpoint, network};
    use ovnet_proto::Message;

    fn id(c: char) -> NetworkId {
        NetworkId::parse(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn layout() {
        let k = Keys::new("/t");
        let ab = id('a');
        let a64 = "a".repeat(64);
        assert_eq!(k.prefix(), "/t/");
        assert_eq!(k.network("demo"), "/t/networks/demo");
        assert_eq!(k.vni(Vni::new(256).unwrap()), "/t/vnis/256");
        assert_eq!(
            k.subnet(&"10.0.1.0/24".parse().unwrap()),
            "/t/subnets/10.0.1.0_24"
        );
        assert_eq!(k.endpoint(&ab, "web1"), format!("/t/endpoints/{a64}/web1"));
        assert_eq!(
            k.ip(&ab, Ipv4Addr::new(10, 0, 0, 2)),
            format!("/t/ips/{a64}/10.0.0.2")
        );
        let n1 = NodeName::parse("n1").unwrap();
        assert_eq!(k.node(&n1), "/t/nodes/n1");
        assert_eq!(k.alive(&n1), "/t/alive/n1");
        assert_eq!(
            k.vtep(&ab, "192.0.2.1:4789".parse().unwrap()),
            format!("/t/vteps/{a64}/192.0.2.1:4789")
        );
        assert_eq!(
            k.parse_ip(&ab, k.ip(&ab, Ipv4Addr::new(10, 0, 0, 2)).as_bytes()),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        assert_eq!(
            k.reservation(&ab, Ipv4Addr::new(10, 0, 0, 2)),
            format!("/t/reservations/{a64}/10.0.0.2")
        );
        assert_eq!(Keys::new("").prefix(), DEFAULT_PREFIX);
        let hp = HostPort {
            protocol: Protocol::Udp,
            ip: Ipv4Addr::UNSPECIFIED,
            port: 53,
        };
        assert_eq!(k.port(&n1, &hp), "/t/ports/n1/udp/0.0.0.0:53");
        assert_eq!(k.parse_port(&n1, k.port(&n1, &hp).as_bytes()), Some(hp));
        let n2 = NodeName::parse("n2").unwrap();
        assert_eq!(k.parse_port(&n2, k.port(&n1, &hp).as_bytes()), None);
        for bad in [
            "/t/ports/n1/udp/0.0.0.0:0",
            "/t/ports/n1/sctp/0.0.0.0:53",
            "/t/ports/n1//0.0.0.0:53",
            "/t/ports/n1/udp",
        ] {
            assert_eq!(k.parse_port(&n1, bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn parse_round_trips() {
        let k = Keys::default();
        let ab = id('a');
        let addr: SocketAddrV4 = "192.0.2.1:4789".parse().unwrap();
        let n1 = NodeName::parse("n1").unwrap();
        let name = |s: &str| Name::parse("network", s).unwrap();
        let cases = [
            (k.network("demo"), RecordKey::Network { name: name("demo") }),
            (
                k.endpoint(&ab, "web1"),
                RecordKey::Endpoint {
                    network_id: ab.clone(),
                    name: name("web1"),
                },
            ),
            (k.node(&n1), RecordKey::Node { name: n1.clone() }),
            (k.alive(&n1), RecordKey::Alive { name: n1.clone() }),
            (
                k.vtep(&ab, addr),
                RecordKey::Vtep {
                    network_id: ab.clone(),
                    addr,
                },
            ),
        ];
        for (key, want) in cases {
            assert_eq!(k.parse(key.as_bytes()), Some(want), "{key}");
        }
        let a64 = "a".repeat(64);
        for other in [
            k.vni(Vni::new(1).unwrap()),
            k.subnet(&"10.0.0.0/24".parse().unwrap()),
            k.ip(&ab, *addr.ip()),
            k.reservation(&ab, *addr.ip()),
            "/other/networks/demo".to_owned(),
            k.networks(),
            format!("{}x/y", k.networks()),
            format!("/ovnet/vteps/{a64}/192.0.2.1"),
            format!("/ovnet/endpoints/{a64}"),
            format!("/ovnet/endpoints/{a64}/a/b"),
            "/ovnet/endpoints/ab/web1".to_owned(),
            "/ovnet/networks/-bad".to_owned(),
            "/ovnet/networks/é".to_owned(),
        ] {
            assert_eq!(k.parse(other.as_bytes()), None, "{other}");
        }
        assert_eq!(k.parse(b"/ovnet/networks/\xff"), None);
    }

    #[test]
    fn a_record_must_be_the_one_its_key_names() {
        let net = network("demo", 256, "10.0.0.0/24");
        let bytes = net.to_proto().encode_to_vec();
        let key = RecordKey::Network {
            name: Name::parse("network", "demo").unwrap(),
        };
        assert_eq!(
            decode_record(&key, &bytes),
            Ok(Record::Network(net.clone()))
        );
        let elsewhere = RecordKey::Network {
            name: Name::parse("network", "other").unwrap(),
        };
        assert_eq!(
            decode_record(&elsewhere, &bytes).unwrap_err().to_string(),
            "name \"demo\" does not match its key"
        );
        let ep = endpoint(&net, "web1", "host1", 2);
        let key = RecordKey::Endpoint {
            network_id: id('b'),
            name: ep.name.clone(),
        };
        assert_eq!(
            decode_record(&key, &ep.to_proto().encode_to_vec())
                .unwrap_err()
                .to_string(),
            format!("network_id \"{}\" does not match its key", net.id)
        );
    }
}
