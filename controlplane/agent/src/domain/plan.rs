//! What to claim: the create-network and create-endpoint decisions as pure functions.
//!
//! A request first becomes a checked value on its own ([`NetworkSpec::check`],
//! [`EndpointSpec::check`]): names, subnet, gateway, VNI, MTU, interface name and address are
//! parsed once, here. Then, on every attempt of the store's transaction loop, a planner takes
//! the records the store just read and decides the new record ([`plan_network`],
//! [`plan_endpoint`]); the store claims what it decided in one transaction, and on a lost race
//! reads again and asks again. A value the user pinned that turns out to be taken fails with
//! the precise reason; a value the planner chose is simply chosen again.
//!
//! No etcd, no clock, no randomness here: the new record's ID and time stamp are given.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv4Net;
use ovnet_wire::{MacAddr, Vni, VXLAN_PORT};

use super::ipam;
use super::ports::{self, HostPort, PortMapping};
use super::records::{Endpoint, Network, DRIVER};
use super::runtime::{ContainerId, Owner};
use super::values::{EndpointId, IfName, Name, NetworkId, NodeName};
use crate::error::{AgentError, Exists, InUse, Invalid};

/// What `docker network create` takes, as it arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Network name.
    pub name: String,
    /// Empty or `"overlay"`.
    pub driver: String,
    /// IPv4 CIDR; `None` means the first free /24 of 10.0.0.0/8.
    pub subnet: Option<String>,
    /// Gateway inside `subnet`; `None` means its first host. Needs `subnet`.
    pub gateway: Option<String>,
    /// `None` means the lowest free VNI from 256.
    pub vni: Option<u32>,
    /// `None` means 1450 here; the agent first fills in the cluster's default
    /// ([`super::mtu::default_network_mtu`]).
    pub mtu: Option<u32>,
    /// User labels.
    pub labels: HashMap<String, String>,
    /// `--internal`.
    pub internal: bool,
}

/// A [`NetworkSpec`] whose every value has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRequest {
    /// The name.
    pub name: Name,
    /// A pinned subnet.
    pub subnet: Option<Ipv4Net>,
    /// A pinned gateway (only with a pinned subnet).
    pub gateway: Option<Ipv4Addr>,
    /// A pinned VNI.
    pub vni: Option<Vni>,
    /// The MTU.
    pub mtu: u32,
    /// User labels.
    pub labels: HashMap<String, String>,
    /// `--internal`.
    pub internal: bool,
}

impl NetworkSpec {
    /// Checks every value on its own; what depends on other networks is [`plan_network`]'s.
    pub fn check(self) -> Result<NetworkRequest, AgentError> {
        let name = Name::parse("network", &self.name)?;
        if !self.driver.is_empty() && self.driver != DRIVER {
            return Err(Invalid::Driver(self.driver).into());
        }
        let subnet = self.subnet.as_deref().map(ipam::parse_subnet).transpose()?;
        let gateway = match (self.gateway, &subnet) {
            (Some(gw), Some(net)) => Some(ipam::parse_gateway(net, &gw)?),
            (Some(gw), None) => return Err(Invalid::GatewayWithoutSubnet(gw).into()),
            (None, _) => None,
        };
        let vni = self.vni.map(ipam::parse_vni).transpose()?;
        super::values::check_labels(&self.labels)?;
        let mtu = self.mtu.unwrap_or(ipam::DEFAULT_MTU);
        ipam::check_mtu(mtu)?;
        Ok(NetworkRequest {
            name,
            subnet,
            gateway,
            vni,
            mtu,
            labels: self.labels,
            internal: self.internal,
        })
    }
}

/// The network `req` becomes next to `existing`: its name must be free; its subnet is the
/// pinned one if it overlaps none (else the first free /24 of the default pool); its VNI the
/// pinned one if unused (else the lowest free from 256); its gateway the pinned one or the
/// subnet's first host.
pub fn plan_network(
    req: &NetworkRequest,
    existing: &[Network],
    id: NetworkId,
    created: String,
) -> Result<Network, AgentError> {
    if existing.iter().any(|n| n.name == req.name) {
        return Err(Exists::Network(req.name.clone()).into());
    }
    let subnet = match req.subnet {
        Some(s) => {
            if let Some(n) = existing.iter().find(|n| ipam::overlaps(&s, &n.subnet)) {
                return Err(InUse::Subnet {
                    subnet: s,
                    other: n.subnet,
                    network: n.name.clone(),
                }
                .into());
            }
            s
        }
        None => {
            let used: Vec<Ipv4Net> = existing.iter().map(|n| n.subnet).collect();
            ipam::next_free_subnet(&used).ok_or(InUse::NoSubnet {
                pool: ipam::DEFAULT_POOL,
                len: ipam::DEFAULT_SUBNET_LEN,
            })?
        }
    };
    let vni = match req.vni {
        Some(v) => {
            if let Some(n) = existing.iter().find(|n| n.vni == v) {
                return Err(Exists::Vni {
                    vni: v,
                    network: n.name.clone(),
                }
                .into());
            }
            v
        }
        None => {
            let used: HashSet<Vni> = existing.iter().map(|n| n.vni).collect();
            ipam::lowest_free_vni(&used).ok_or(InUse::NoVni)?
        }
    };
    Ok(Network {
        id,
        name: req.name.clone(),
        vni,
        subnet,
        gateway: req.gateway.unwrap_or_else(|| ipam::first_host(&subnet)),
        mtu: req.mtu,
        created,
        labels: req.labels.clone(),
        internal: req.internal,
    })
}

/// What `docker network connect` takes, plus where the endpoint lives, as it arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSpec {
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
    /// The runtime's id of the container; empty for none.
    pub container_id: String,
    /// `"ovctl"`, `"docker"` or `"cni"`; empty means `"ovctl"`.
    pub owner: String,
    /// Host ports to publish to the endpoint on its node.
    pub publish: Vec<ovnet_proto::PortMapping>,
}

/// An [`EndpointSpec`] whose every value has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    /// The container's name.
    pub name: Name,
    /// The node that serves it.
    pub node: NodeName,
    /// Its network namespace, as given.
    pub netns: String,
    /// The interface inside it.
    pub ifname: IfName,
    /// A requested address.
    pub ipv4: Option<Ipv4Addr>,
    /// The runtime's id of the container.
    pub container_id: Option<ContainerId>,
    /// Who asks.
    pub owner: Owner,
    /// Host ports to publish.
    pub ports: Vec<PortMapping>,
}

impl EndpointSpec {
    /// Checks every value on its own; what depends on the network is [`plan_endpoint`]'s.
    pub fn check(self) -> Result<EndpointRequest, AgentError> {
        let name = Name::parse("container", &self.name)?;
        let node = NodeName::parse(&self.node)?;
        let ifname = if self.ifname.is_empty() {
            IfName::eth(0)
        } else {
            IfName::parse(&self.ifname)?
        };
        Ok(EndpointRequest {
            name,
            node,
            netns: self.netns,
            ifname,
            ipv4: self.ipv4.as_deref().map(parse_address).transpose()?,
            container_id: ContainerId::parse_optional(&self.container_id).map_err(Invalid::from)?,
            owner: Owner::parse(&self.owner).map_err(Invalid::from)?,
            ports: self
                .publish
                .iter()
                .map(PortMapping::from_proto)
                .collect::<Result<_, _>>()
                .map_err(Invalid::Port)?,
        })
    }
}

/// A requested endpoint address.
pub fn parse_address(s: &str) -> Result<Ipv4Addr, Invalid> {
    s.trim().parse().map_err(|_| Invalid::Address(s.to_owned()))
}

/// An external VTEP's address as a request gives it: IPv4 and a port, 0 meaning the VXLAN
/// port (4789).
pub fn parse_vtep(ip: &str, port: u32) -> Result<SocketAddrV4, Invalid> {
    let addr = ip
        .trim()
        .parse::<Ipv4Addr>()
        .map_err(|_| Invalid::VtepAddress(ip.to_owned()))?;
    let port = match port {
        0 => VXLAN_PORT,
        p => u16::try_from(p).map_err(|_| Invalid::VtepPort(p))?,
    };
    Ok(SocketAddrV4::new(addr, port))
}

/// What a network holds that a new endpoint must not take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Taken {
    /// Whether the endpoint's name is taken in the network.
    pub name: bool,
    /// Addresses claimed by the network's endpoints.
    pub addresses: HashSet<Ipv4Addr>,
    /// Host ports published on the endpoint's node (by endpoints of any network).
    pub ports: Vec<HostPort>,
}

/// The endpoint `req` becomes in `net`: a requested address must be a free host of the subnet
/// other than the gateway; otherwise the lowest free one; the MAC is docker's for the address.
/// Ports are published only on a network that is not internal, and only where none collides
/// with a port published on the node already ([`ports::check_free`]).
pub fn plan_endpoint(
    req: &EndpointRequest,
    net: &Network,
    taken: &Taken,
    id: EndpointId,
    created: String,
) -> Result<Endpoint, AgentError> {
    if let Some(ip) = req.ipv4 {
        ipam::check_requested_ip(&net.subnet, net.gateway, ip)?;
    }
    if net.internal && !req.ports.is_empty() {
        return Err(Invalid::PublishOnInternal(net.name.clone()).into());
    }
    ports::check_free(&req.ports, &taken.ports).map_err(InUse::Port)?;
    if taken.name {
        return Err(Exists::Endpoint {
            name: req.name.clone(),
            network: net.name.clone(),
        }
        .into());
    }
    let ip = match req.ipv4 {
        Some(ip) if taken.addresses.contains(&ip) => {
            return Err(InUse::Address {
                ip,
                network: net.name.clone(),
            }
            .into())
        }
        Some(ip) => ip,
        None => {
            ipam::next_free_ip(&net.subnet, net.gateway, &taken.addresses).ok_or_else(|| {
                InUse::NoAddress {
                    network: net.name.clone(),
                    id: net.id.to_string(),
                }
            })?
        }
    };
    Ok(Endpoint {
        id,
        network_id: net.id.clone(),
        name: req.name.clone(),
        node: req.node.clone(),
        mac: MacAddr::from_ipv4_docker(ip),
        ipv4: ip,
        netns: req.netns.clone(),
        ifname: req.ifname.clone(),
        created,
        container_id: req.container_id.clone(),
        owner: req.owner,
        ports: req.ports.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::network;

    fn spec(name: &str) -> NetworkSpec {
        NetworkSpec {
            name: name.into(),
            ..Default::default()
        }
    }

    fn plan(req: NetworkSpec, existing: &[Network]) -> Result<Network, AgentError> {
        plan_network(&req.check()?, existing, NetworkId::random(), "now".into())
    }

    #[test]
    fn network_defaults_fill_the_gaps() {
        let first = plan(spec("a"), &[]).unwrap();
        assert_eq!(
            (first.subnet.to_string(), first.gateway.to_string()),
            ("10.0.0.0/24".into(), "10.0.0.1".into())
        );
        assert_eq!((first.vni.get(), first.mtu), (256, 1450));
        let pinned = NetworkSpec {
            subnet: Some("10.0.1.0/24".into()),
            vni: Some(257),
            ..spec("b")
        };
        let second = plan(pinned, std::slice::from_ref(&first)).unwrap();
        let third = plan(spec("c"), &[first, second]).unwrap();
        assert_eq!(third.subnet.to_string(), "10.0.2.0/24");
        assert_eq!(third.vni.get(), 258);
    }

    #[test]
    fn pinned_values_that_are_taken_say_by_whom() {
        let demo = network("demo", 256, "10.0.0.0/24");
        let existing = [demo];
        let e = plan(spec("demo"), &existing).unwrap_err();
        assert_eq!(e.to_string(), "network with name demo already exists");
        let overlapping = NetworkSpec {
            subnet: Some("10.0.0.128/25".into()),
            ..spec("x")
        };
        assert_eq!(
            plan(overlapping, &existing).unwrap_err().to_string(),
            "subnet 10.0.0.128/25 overlaps with subnet 10.0.0.0/24 of network demo"
        );
        let same_vni = NetworkSpec {
            vni: Some(256),
            ..spec("x")
        };
        assert_eq!(
            plan(same_vni, &existing).unwrap_err().to_string(),
            "vni 256 is already used by network demo"
        );
        let full = [network("all", 300, "10.0.0.0/8")];
        assert_eq!(
            plan(spec("x"), &full).unwrap_err().to_string(),
            "no free /24 left in 10.0.0.0/8: pass a subnet"
        );
    }

    #[test]
    fn a_network_spec_is_checked_on_its_own() {
        let bad = |s: NetworkSpec| s.check().unwrap_err().to_string();
        assert_eq!(
            bad(NetworkSpec {
                driver: "bridge".into(),
                ..spec("x")
            }),
            "driver \"bridge\" is not supported: ovnet only provides \"overlay\""
        );
        assert_eq!(
            bad(NetworkSpec {
                gateway: Some("10.0.0.1".into()),
                ..spec("x")
            }),
            "invalid gateway 10.0.0.1: a gateway can only be given together with a subnet"
        );
        assert_eq!(
            bad(NetworkSpec {
                vni: Some(0),
                ..spec("x")
            }),
            "invalid vni 0: must be between 1 and 16777215"
        );
        assert_eq!(
            bad(spec("a/b")),
            "invalid network name \"a/b\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
    }

    #[test]
    fn vtep_addresses_default_to_the_vxlan_port() {
        assert_eq!(
            parse_vtep("192.0.2.1", 0),
            Ok("192.0.2.1:4789".parse().unwrap())
        );
        assert_eq!(
            parse_vtep("192.0.2.1", 70000).unwrap_err().to_string(),
            "invalid vtep port 70000: must be 1..=65535"
        );
        assert_eq!(
            parse_vtep("nope", 1).unwrap_err().to_string(),
            "invalid vtep address nope: not an IPv4 address"
        );
    }

    fn ep(name: &str, ipv4: Option<&str>) -> EndpointRequest {
        EndpointSpec {
            name: name.into(),
            node: "host1".into(),
            netns: name.into(),
            ipv4: ipv4.map(Into::into),
            ..EndpointSpec::default()
        }
        .check()
        .unwrap()
    }

    fn plan_ep(
        req: &EndpointRequest,
        net: &Network,
        taken: &Taken,
    ) -> Result<Endpoint, AgentError> {
        plan_endpoint(req, net, taken, EndpointId::random(), "now".into())
    }

    #[test]
    fn endpoints_get_the_lowest_free_address_and_dockers_mac() {
        let net = network("demo", 256, "10.0.0.0/24");
        let mut taken = Taken::default();
        let a = plan_ep(&ep("a", None), &net, &taken).unwrap();
        assert_eq!(a.ipv4, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(a.mac.to_string(), "02:42:0a:00:00:02");
        assert_eq!(a.ifname, "eth0");
        taken.addresses.insert(a.ipv4);
        let b = plan_ep(&ep("b", None), &net, &taken).unwrap();
        assert_eq!(b.ipv4, Ipv4Addr::new(10, 0, 0, 3));
        let c = plan_ep(&ep("c", Some("10.0.0.50")), &net, &taken).unwrap();
        assert_eq!(c.mac.to_string(), "02:42:0a:00:00:32");
    }

    #[test]
    fn endpoint_refusals() {
        let net = network("demo", 256, "10.0.0.0/24");
        let taken = Taken {
            name: false,
            addresses: [Ipv4Addr::new(10, 0, 0, 2)].into(),
            ports: Vec::new(),
        };
        let msg = |r: Result<Endpoint, AgentError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(plan_ep(&ep("a", Some("10.0.0.2")), &net, &taken)),
            "address already in use: 10.0.0.2 in network demo"
        );
        assert_eq!(
            msg(plan_ep(&ep("a", Some("10.0.0.1")), &net, &taken)),
            "address already in use: 10.0.0.1 is the network's gateway"
        );
        assert_eq!(
            msg(plan_ep(&ep("a", Some("10.1.2.3")), &net, &taken)),
            "invalid address 10.1.2.3: it does not belong to any of this network's subnets"
        );
        let named = Taken {
            name: true,
            ..Taken::default()
        };
        assert_eq!(
            msg(plan_ep(&ep("a", None), &net, &named)),
            "endpoint with name a already exists in network demo"
        );
        let tiny = network("tiny", 257, "192.168.9.0/30");
        let full = Taken {
            name: false,
            addresses: [Ipv4Addr::new(192, 168, 9, 2)].into(),
            ports: Vec::new(),
        };
        assert!(msg(plan_ep(&ep("a", None), &tiny, &full))
            .starts_with("no available IPv4 addresses on this network's address pools: tiny ("));
        let bad = EndpointSpec {
            ifname: "a-very-long-ifname".into(),
            ..EndpointSpec::default()
        };
        assert!(matches!(
            EndpointSpec {
                name: "w".into(),
                node: "n".into(),
                ..bad
            }
            .check(),
            Err(AgentError::Invalid(Invalid::IfName(_)))
        ));
        assert!(matches!(
            EndpointSpec {
                name: "w".into(),
                node: "n".into(),
                ipv4: Some("not-an-ip".into()),
                ..EndpointSpec::default()
            }
            .check(),
            Err(AgentError::Invalid(Invalid::Address(_)))
        ));
    }

    fn publishing(ports: &[(&str, u32, u32)]) -> EndpointRequest {
        EndpointSpec {
            name: "web".into(),
            node: "host1".into(),
            publish: ports
                .iter()
                .map(|&(ip, host, ctr)| ovnet_proto::PortMapping {
                    host_ip: ip.into(),
                    host_port: host,
                    container_port: ctr,
                    protocol: String::new(),
                })
                .collect(),
            ..EndpointSpec::default()
        }
        .check()
        .unwrap()
    }

    #[test]
    fn published_ports_are_claimed_once_per_node_in_dockers_words() {
        let net = network("demo", 256, "10.0.0.0/24");
        let held = Taken {
            ports: vec![HostPort {
                protocol: ports::Protocol::Tcp,
                ip: Ipv4Addr::UNSPECIFIED,
                port: 8080,
            }],
            ..Taken::default()
        };
        let msg = |r: Result<Endpoint, AgentError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(plan_ep(&publishing(&[("", 8080, 80)]), &net, &held)),
            "Bind for 0.0.0.0:8080 failed: port is already allocated"
        );
        // 0.0.0.0 holds every address of the port.
        assert_eq!(
            msg(plan_ep(
                &publishing(&[("192.168.50.1", 8080, 80)]),
                &net,
                &held
            )),
            "Bind for 192.168.50.1:8080 failed: port is already allocated"
        );
        let ok = plan_ep(&publishing(&[("", 8081, 80)]), &net, &held).unwrap();
        assert_eq!(ok.ports.len(), 1);
        assert_eq!(ok.ports[0].to_string(), "0.0.0.0:8081:80/tcp");
    }

    #[test]
    fn internal_networks_publish_nothing() {
        let sealed = Network {
            internal: true,
            ..network("sealed", 256, "10.0.0.0/24")
        };
        let e = plan_ep(&publishing(&[("", 8080, 80)]), &sealed, &Taken::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "network sealed is internal: ports cannot be published on it"
        );
        assert!(plan_ep(&publishing(&[]), &sealed, &Taken::default()).is_ok());
        let bad = EndpointSpec {
            name: "w".into(),
            node: "n".into(),
            publish: vec![ovnet_proto::PortMapping {
                host_port: 80,
                container_port: 80,
                protocol: "sctp".into(),
                ..Default::default()
            }],
            ..EndpointSpec::default()
        };
        assert!(matches!(
            bad.check(),
            Err(AgentError::Invalid(Invalid::Port(_)))
        ));
    }
}
