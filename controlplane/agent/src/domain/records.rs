//! The cluster's records as typed values, and their wire form.
//!
//! In etcd and on the API a record is an `ovnet.v1` protobuf message whose fields are mostly
//! text. [`Network::decode`] and its siblings turn the bytes of an etcd value into a record whose
//! every field has been checked (a VNI in range, a subnet, a unicast MAC, an ID of hex digits…);
//! a value that does not decode or does not check is a [`BadRecord`] naming the field, for the
//! store to skip with a warning. `to_proto` gives the message back, for etcd and the API.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use ovnet_proto::Message;
use ovnet_wire::{MacAddr, Vni, VXLAN_PORT};

use super::ports::PortMapping;
use super::runtime::{ContainerId, Owner};
use super::values::{EndpointId, IfName, Name, NetworkId, NodeId, NodeName};
use super::{ipam, mtu};

/// The only driver ovnet provides, `docker network create -d overlay`.
pub const DRIVER: &str = "overlay";

/// Why the bytes of a record are not a usable record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    /// Not a protobuf message of the expected type.
    #[error("{0}")]
    Decode(#[from] prost::DecodeError),
    /// A field whose value cannot be what the field says.
    #[error("bad {field} {value:?}")]
    Field {
        /// The field, as in the `.proto`.
        field: &'static str,
        /// Its value, as stored.
        value: String,
    },
    /// A field that says another record than the key it is stored under.
    #[error("{field} {value:?} does not match its key")]
    NotItsKey {
        /// The field, as in the `.proto`.
        field: &'static str,
        /// Its value, as stored.
        value: String,
    },
}

fn field<T, E>(field: &'static str, value: &str, parsed: Result<T, E>) -> Result<T, BadRecord> {
    parsed.map_err(|_| BadRecord::Field {
        field,
        value: value.to_owned(),
    })
}

/// A port as stored: 0 means the VXLAN port (4789).
fn port(name: &'static str, p: u32) -> Result<u16, BadRecord> {
    match p {
        0 => Ok(VXLAN_PORT),
        p => field(name, &p.to_string(), u16::try_from(p)),
    }
}

/// A network: one VXLAN segment with its subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Fixed at creation.
    pub id: NetworkId,
    /// Unique in the cluster.
    pub name: Name,
    /// Unique in the cluster.
    pub vni: Vni,
    /// The network's addresses; overlaps no other network's.
    pub subnet: Ipv4Net,
    /// A host of `subnet`, never given to an endpoint.
    pub gateway: Ipv4Addr,
    /// MTU of the container interfaces, the bridge and the TAP.
    pub mtu: u32,
    /// RFC 3339 time of creation.
    pub created: String,
    /// The user's labels.
    pub labels: HashMap<String, String>,
    /// Sealed: no default route, nothing leaves the overlay, no published ports, no upstream
    /// DNS (`docker network create --internal`).
    pub internal: bool,
}

impl Network {
    /// A stored network.
    pub fn decode(bytes: &[u8]) -> Result<Network, BadRecord> {
        let m = ovnet_proto::Network::decode(bytes)?;
        Ok(Network {
            id: field("id", &m.id, NetworkId::parse(&m.id))?,
            name: field("name", &m.name, Name::parse("network", &m.name))?,
            vni: field("vni", &m.vni.to_string(), ipam::parse_vni(m.vni))?,
            subnet: field("subnet", &m.subnet, m.subnet.parse::<Ipv4Net>())?,
            gateway: field("gateway", &m.gateway, m.gateway.parse())?,
            mtu: field(
                "mtu",
                &m.mtu.to_string(),
                ipam::check_mtu(m.mtu).map(|()| m.mtu),
            )?,
            created: m.created,
            labels: {
                let l = m.labels;
                let bytes: usize = l.iter().map(|(k, v)| k.len() + v.len()).sum();
                field(
                    "labels",
                    &format!("{bytes} bytes"),
                    super::values::check_labels(&l),
                )?;
                l
            },
            internal: m.internal,
        })
    }

    /// The message stored in etcd and returned by the API.
    pub fn to_proto(&self) -> ovnet_proto::Network {
        ovnet_proto::Network {
            id: self.id.to_string(),
            name: self.name.to_string(),
            vni: self.vni.get(),
            subnet: self.subnet.to_string(),
            gateway: self.gateway.to_string(),
            mtu: self.mtu,
            created: self.created.clone(),
            labels: self.labels.clone(),
            driver: DRIVER.to_owned(),
            internal: self.internal,
        }
    }
}

/// A container attached to a network: its name in the network, its address and MAC, and the
/// node that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Fixed at connect; names the host end of the veth.
    pub id: EndpointId,
    /// The network.
    pub network_id: NetworkId,
    /// The container's name, unique in the network.
    pub name: Name,
    /// The node whose agent built the endpoint's veth.
    pub node: NodeName,
    /// Docker's MAC for the address (`02:42` and the four address bytes).
    pub mac: MacAddr,
    /// An address of the network's subnet.
    pub ipv4: Ipv4Addr,
    /// The container's network namespace as the user gave it (a name or a path).
    pub netns: String,
    /// The interface inside the container.
    pub ifname: IfName,
    /// RFC 3339 time of connect.
    pub created: String,
    /// The runtime's id of the container, if a runtime made the endpoint.
    pub container_id: Option<ContainerId>,
    /// The front end that made it.
    pub owner: Owner,
    /// Host ports of its node published to it, in the order given.
    pub ports: Vec<PortMapping>,
}

impl Endpoint {
    /// A stored endpoint.
    pub fn decode(bytes: &[u8]) -> Result<Endpoint, BadRecord> {
        let m = ovnet_proto::Endpoint::decode(bytes)?;
        let mac = m
            .mac
            .parse::<MacAddr>()
            .ok()
            .filter(MacAddr::is_unicast)
            .ok_or(());
        Ok(Endpoint {
            id: field("id", &m.id, EndpointId::parse(&m.id))?,
            network_id: field("network_id", &m.network_id, NetworkId::parse(&m.network_id))?,
            name: field("name", &m.name, Name::parse("container", &m.name))?,
            node: field("node", &m.node, NodeName::parse(&m.node))?,
            mac: field("mac", &m.mac, mac)?,
            ipv4: field("ipv4", &m.ipv4, m.ipv4.parse())?,
            ifname: field("ifname", &m.ifname, IfName::parse(&m.ifname))?,
            container_id: field(
                "container_id",
                &m.container_id,
                ContainerId::parse_optional(&m.container_id),
            )?,
            owner: field("owner", &m.owner, Owner::parse(&m.owner))?,
            ports: m
                .ports
                .iter()
                .map(|p| {
                    let value = format!(
                        "{}:{}:{}/{}",
                        p.host_ip, p.host_port, p.container_port, p.protocol
                    );
                    field("ports", &value, PortMapping::from_proto(p))
                })
                .collect::<Result<_, _>>()?,
            netns: m.netns,
            created: m.created,
        })
    }

    /// The message stored in etcd and returned by the API.
    pub fn to_proto(&self) -> ovnet_proto::Endpoint {
        ovnet_proto::Endpoint {
            id: self.id.to_string(),
            network_id: self.network_id.to_string(),
            name: self.name.to_string(),
            node: self.node.to_string(),
            mac: self.mac.to_string(),
            ipv4: self.ipv4.to_string(),
            netns: self.netns.clone(),
            ifname: self.ifname.to_string(),
            created: self.created.clone(),
            container_id: self
                .container_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            owner: self.owner.as_str().to_owned(),
            ports: self.ports.iter().map(PortMapping::to_proto).collect(),
        }
    }
}

/// A host running an agent, registered in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique in the cluster.
    pub name: NodeName,
    /// Where peers send this node's VXLAN datagrams.
    pub vtep: SocketAddrV4,
    /// The agent's version.
    pub agent_version: String,
    /// RFC 3339 time the agent started.
    pub started: String,
    /// MTU of the underlay device holding the VTEP address (for an address on the loopback,
    /// of the routes to the peers), as the agent last read it; `None`: unknown (the agent
    /// predates the field, or knows no route to a peer yet). See [`super::mtu`].
    pub underlay_mtu: Option<u32>,
    /// The host that holds the name; `None` in records written before ids existed.
    pub node_id: Option<NodeId>,
}

impl Node {
    /// A stored node.
    pub fn decode(bytes: &[u8]) -> Result<Node, BadRecord> {
        let m = ovnet_proto::Node::decode(bytes)?;
        let ip: Ipv4Addr = field("vtep_ip", &m.vtep_ip, m.vtep_ip.parse())?;
        let node_id = match m.node_id.as_str() {
            "" => None,
            id => Some(field("node_id", id, NodeId::parse(id))?),
        };
        Ok(Node {
            name: field("name", &m.name, NodeName::parse(&m.name))?,
            vtep: SocketAddrV4::new(ip, port("vtep_port", m.vtep_port)?),
            agent_version: m.agent_version,
            started: m.started,
            underlay_mtu: mtu::parse_underlay_mtu(m.underlay_mtu)?,
            node_id,
        })
    }

    /// The message stored in etcd and returned by the API.
    pub fn to_proto(&self) -> ovnet_proto::Node {
        ovnet_proto::Node {
            name: self.name.to_string(),
            vtep_ip: self.vtep.ip().to_string(),
            vtep_port: u32::from(self.vtep.port()),
            agent_version: self.agent_version.clone(),
            started: self.started.clone(),
            underlay_mtu: self.underlay_mtu.unwrap_or(0),
            node_id: self
                .node_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        }
    }
}

/// A VTEP outside ovnet (a switch, a kernel vxlan device) in a network's flood list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalVtep {
    /// The network.
    pub network_id: NetworkId,
    /// Its underlay address and UDP port.
    pub addr: SocketAddrV4,
}

impl ExternalVtep {
    /// A stored external VTEP.
    pub fn decode(bytes: &[u8]) -> Result<ExternalVtep, BadRecord> {
        let m = ovnet_proto::ExternalVtep::decode(bytes)?;
        let ip: Ipv4Addr = field("ip", &m.ip, m.ip.parse())?;
        Ok(ExternalVtep {
            network_id: field("network_id", &m.network_id, NetworkId::parse(&m.network_id))?,
            addr: SocketAddrV4::new(ip, port("port", m.port)?),
        })
    }

    /// The message stored in etcd and returned by the API.
    pub fn to_proto(&self) -> ovnet_proto::ExternalVtep {
        ovnet_proto::ExternalVtep {
            network_id: self.network_id.to_string(),
            ip: self.addr.ip().to_string(),
            port: u32::from(self.addr.port()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A network record as the store writes it.
    pub(crate) fn network(name: &str, vni: u32, subnet: &str) -> Network {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        Network {
            id: NetworkId::random(),
            name: Name::parse("network", name).unwrap(),
            vni: Vni::new(vni).unwrap(),
            subnet,
            gateway: ipam::first_host(&subnet),
            mtu: 1450,
            created: "2020-04-10T14:47:27.897140984Z".into(),
            labels: HashMap::new(),
            internal: false,
        }
    }

    /// An endpoint of `net` on `node` at the `last`-th address of a /24.
    pub(crate) fn endpoint(net: &Network, name: &str, node: &str, last: u8) -> Endpoint {
        let [a, b, c, _] = net.subnet.network().octets();
        let ipv4 = Ipv4Addr::new(a, b, c, last);
        Endpoint {
            id: EndpointId::random(),
            network_id: net.id.clone(),
            name: Name::parse("container", name).unwrap(),
            node: NodeName::parse(node).unwrap(),
            mac: MacAddr::from_ipv4_docker(ipv4),
            ipv4,
            netns: name.into(),
            ifname: IfName::eth(0),
            created: "2020-04-10T14:50:00.000000001Z".into(),
            container_id: None,
            owner: Owner::Ovctl,
            ports: Vec::new(),
        }
    }

    #[test]
    fn records_round_trip_through_their_wire_form() {
        let net = network("demo", 256, "10.0.0.0/24");
        let bytes = net.to_proto().encode_to_vec();
        assert_eq!(Network::decode(&bytes).unwrap(), net);
        let sealed = Network {
            internal: true,
            ..net.clone()
        };
        assert_eq!(
            Network::decode(&sealed.to_proto().encode_to_vec()).unwrap(),
            sealed
        );
        assert_eq!(net.to_proto().driver, "overlay");
        let mut ep = endpoint(&net, "web1", "host1", 2);
        assert_eq!(ep.to_proto().mac, "02:42:0a:00:00:02");
        ep.ports.push(
            PortMapping::from_proto(&ovnet_proto::PortMapping {
                host_ip: "0.0.0.0".into(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            })
            .unwrap(),
        );
        assert_eq!(
            Endpoint::decode(&ep.to_proto().encode_to_vec()).unwrap(),
            ep
        );
        assert_eq!(
            (
                ep.to_proto().container_id.as_str(),
                ep.to_proto().owner.as_str()
            ),
            ("", "ovctl")
        );
        let cni = Endpoint {
            container_id: Some(ContainerId::parse(&"ab".repeat(32)).unwrap()),
            owner: Owner::Cni,
            ..ep.clone()
        };
        assert_eq!(
            Endpoint::decode(&cni.to_proto().encode_to_vec()).unwrap(),
            cni
        );
        let node = Node {
            name: NodeName::parse("host1").unwrap(),
            vtep: "192.168.50.1:4789".parse().unwrap(),
            agent_version: "0.1.0".into(),
            started: "2020-04-10T14:00:00Z".into(),
            underlay_mtu: Some(1400),
            node_id: Some(NodeId::random()),
        };
        assert_eq!(
            Node::decode(&node.to_proto().encode_to_vec()).unwrap(),
            node
        );
        let v = ExternalVtep {
            network_id: net.id.clone(),
            addr: "192.0.2.1:8472".parse().unwrap(),
        };
        assert_eq!(
            ExternalVtep::decode(&v.to_proto().encode_to_vec()).unwrap(),
            v
        );
    }

    #[test]
    fn port_zero_means_the_vxlan_port() {
        let m = ovnet_proto::ExternalVtep {
            network_id: NetworkId::random().to_string(),
            ip: "192.0.2.1".into(),
            port: 0,
        };
        let v = ExternalVtep::decode(&m.encode_to_vec()).unwrap();
        assert_eq!(v.addr.port(), 4789);
    }

    /// A hostile or damaged record is refused at decoding, naming the field: nothing after
    /// the store's edge ever sees it.
    #[test]
    fn hostile_records_are_refused_naming_the_field() {
        let net = network("demo", 256, "10.0.0.0/24");
        let ep = endpoint(&net, "web1", "host1", 2);
        let bad_net = |f: fn(&mut ovnet_proto::Network)| {
            let mut m = net.to_proto();
            f(&mut m);
            Network::decode(&m.encode_to_vec()).unwrap_err().to_string()
        };
        assert_eq!(bad_net(|m| m.vni = 0), "bad vni \"0\"");
        assert_eq!(bad_net(|m| m.vni = 1 << 24), "bad vni \"16777216\"");
        assert_eq!(
            bad_net(|m| m.subnet = "10.0.0.0/33".into()),
            "bad subnet \"10.0.0.0/33\""
        );
        assert_eq!(bad_net(|m| m.gateway = "gw".into()), "bad gateway \"gw\"");
        assert_eq!(bad_net(|m| m.mtu = 0), "bad mtu \"0\"");
        assert_eq!(bad_net(|m| m.name = "a/b".into()), "bad name \"a/b\"");
        assert_eq!(bad_net(|m| m.id = "ID".into()), "bad id \"ID\"");
        let bad_ep = |f: fn(&mut ovnet_proto::Endpoint)| {
            let mut m = ep.to_proto();
            f(&mut m);
            Endpoint::decode(&m.encode_to_vec())
                .unwrap_err()
                .to_string()
        };
        // A non-ASCII ID would once have been cut in the middle of a character.
        let id = format!("{}€", "a".repeat(61));
        let mut m = ep.to_proto();
        m.id = id.clone();
        assert_eq!(
            Endpoint::decode(&m.encode_to_vec())
                .unwrap_err()
                .to_string(),
            format!("bad id {id:?}")
        );
        assert_eq!(
            bad_ep(|m| m.mac = "not-a-mac".into()),
            "bad mac \"not-a-mac\""
        );
        assert_eq!(
            bad_ep(|m| m.mac = "ff:ff:ff:ff:ff:ff".into()),
            "bad mac \"ff:ff:ff:ff:ff:ff\""
        );
        assert_eq!(bad_ep(|m| m.ipv4 = "10.0.0".into()), "bad ipv4 \"10.0.0\"");
        assert_eq!(bad_ep(|m| m.node = String::new()), "bad node \"\"");
        assert_eq!(bad_ep(|m| m.ifname = "a/b".into()), "bad ifname \"a/b\"");
        assert_eq!(
            bad_ep(|m| m.container_id = "-x".into()),
            "bad container_id \"-x\""
        );
        assert_eq!(bad_ep(|m| m.owner = "who".into()), "bad owner \"who\"");
        assert_eq!(
            bad_ep(|m| m.ports = vec![ovnet_proto::PortMapping {
                host_ip: String::new(),
                host_port: 0,
                container_port: 80,
                protocol: "tcp".into(),
            }]),
            "bad ports \":0:80/tcp\""
        );
        let mut n = ovnet_proto::Node {
            name: "host1".into(),
            vtep_ip: "nonsense".into(),
            vtep_port: 4789,
            ..Default::default()
        };
        assert_eq!(
            Node::decode(&n.encode_to_vec()).unwrap_err().to_string(),
            "bad vtep_ip \"nonsense\""
        );
        n.vtep_ip = "192.168.50.1".into();
        n.vtep_port = 70_000;
        assert_eq!(
            Node::decode(&n.encode_to_vec()).unwrap_err().to_string(),
            "bad vtep_port \"70000\""
        );
        n.vtep_port = 4789;
        n.underlay_mtu = 9;
        assert_eq!(
            Node::decode(&n.encode_to_vec()).unwrap_err().to_string(),
            "bad underlay_mtu \"9\""
        );
        // Written before the field existed: unknown, not refused.
        n.underlay_mtu = 0;
        assert_eq!(Node::decode(&n.encode_to_vec()).unwrap().underlay_mtu, None);
        assert!(matches!(
            Network::decode(b"\xff\xff\xff"),
            Err(BadRecord::Decode(_))
        ));
    }
}
