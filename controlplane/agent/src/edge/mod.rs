//! The network edge: what joins a network's containers to the world beyond the overlay, on
//! every host where the network has containers.
//!
//! - **Gateway.** The network's gateway address (its first host by default) is on the
//!   network's bridge on every such host, with the same MAC everywhere ([`gateway_mac`]),
//!   so a container's gateway is always its own host. The data plane knows it (ARP for it is
//!   the bridge's to answer, frames to or from it never cross the overlay, frames from the
//!   overlay claiming it are spoofed). Containers of networks that are not internal get a
//!   default route through it.
//! - **The way out and the way in** ([`nft`]): ovnet's own nftables table masquerades what
//!   leaves a network, DNATs published ports, and filters forwarding so that turning IPv4
//!   forwarding on exposes no container and keeps networks apart.
//! - **Names** ([`dns`]): one [`ovnet_dns::Resolver`] per network at its gateway, port 53,
//!   serving the zone built from the view; [`resolv_conf`] points named namespaces at it.
//!
//! This module holds the decisions and the host commands; the agent's reconciler
//! (`crate::agent`) runs them with the rest of a network's host side.

pub mod dns;
pub mod host;
pub mod nft;
pub mod resolv_conf;

use std::net::{Ipv4Addr, SocketAddr};

use ovnet_dataplane::Gateway;
use ovnet_wire::MacAddr;

use crate::host::bridge_name;
use crate::view::Desired;
use nft::{EdgeSpec, NetworkEdge, Nft, Published};

/// How the agent runs the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeConfig {
    /// The `nft` program.
    pub nft: Nft,
    /// Upstream resolvers for names outside the cluster; `None`: the nameservers of the host's
    /// `/etc/resolv.conf`, read when a network's resolver starts.
    pub dns_upstreams: Option<Vec<SocketAddr>>,
}

/// The gateway's MAC on every host: docker's scheme for an address (`02:42` and its four
/// bytes), like an endpoint's. The gateway is never an endpoint's address, so no endpoint has
/// it.
pub fn gateway_mac(gateway: Ipv4Addr) -> MacAddr {
    MacAddr::from_ipv4_docker(gateway)
}

/// The gateway as the data plane's table holds it.
pub fn gateway(ip: Ipv4Addr) -> Gateway {
    Gateway {
        ip,
        mac: gateway_mac(ip),
    }
}

/// What the table must hold for the networks this host should have (`desired`, in VNI
/// order): each one's bridge, subnet, gateway and whether it is internal, and the ports
/// published to its endpoints here.
pub fn spec(desired: &[Desired]) -> EdgeSpec {
    EdgeSpec {
        networks: desired
            .iter()
            .map(|d| NetworkEdge {
                bridge: bridge_name(d.network.vni.get()),
                subnet: d.network.subnet,
                gateway: d.network.gateway,
                internal: d.network.internal,
                published: d
                    .endpoints
                    .iter()
                    .flat_map(|e| {
                        e.ports.iter().map(|p| Published {
                            mapping: *p,
                            container_ip: e.ipv4,
                        })
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::PortMapping;
    use crate::domain::records::tests::{endpoint, network};
    use crate::domain::{Network, NodeName};
    use crate::store::Record;
    use crate::view::View;

    #[test]
    fn the_gateway_mac_is_derived_like_an_endpoints() {
        assert_eq!(
            gateway_mac("10.0.0.1".parse().unwrap()).to_string(),
            "02:42:0a:00:00:01"
        );
    }

    #[test]
    fn the_spec_follows_the_local_endpoints_and_their_ports() {
        let front = network("front", 256, "10.0.0.0/24");
        let back = Network {
            internal: true,
            ..network("back", 300, "10.0.1.0/24")
        };
        let mut web = endpoint(&front, "web", "host1", 2);
        web.ports.push(
            PortMapping::from_proto(&ovnet_proto::PortMapping {
                host_ip: String::new(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            })
            .unwrap(),
        );
        let mut v = View::default();
        v.put(Record::Network(front.clone()), 1);
        v.put(Record::Network(back.clone()), 2);
        v.put(Record::Endpoint(web), 3);
        v.put(Record::Endpoint(endpoint(&back, "db", "host1", 2)), 4);
        // A port published on another host is that host's business.
        let mut far = endpoint(&front, "far", "host2", 3);
        far.ports = vec![PortMapping::from_proto(&ovnet_proto::PortMapping {
            host_ip: String::new(),
            host_port: 9090,
            container_port: 90,
            protocol: "udp".into(),
        })
        .unwrap()];
        v.put(Record::Endpoint(far), 5);
        let s = spec(&v.desired(&NodeName::parse("host1").unwrap()));
        assert_eq!(s.networks.len(), 2);
        let (f, b) = (&s.networks[0], &s.networks[1]);
        assert_eq!((f.bridge.as_str(), f.internal), ("ovbr256", false));
        assert_eq!(f.gateway.to_string(), "10.0.0.1");
        assert_eq!(f.published.len(), 1);
        assert_eq!(f.published[0].container_ip.to_string(), "10.0.0.2");
        assert_eq!(f.published[0].mapping.to_string(), "0.0.0.0:8080:80/tcp");
        assert_eq!((b.bridge.as_str(), b.internal), ("ovbr300", true));
        assert!(b.published.is_empty());
        assert!(spec(&v.desired(&NodeName::parse("host3").unwrap()))
            .networks
            .is_empty());
    }
}
