//! The `docker network inspect` JSON array: the same keys, in the same order, with the same
//! 4-space indent as docker prints for an overlay network.

use std::collections::BTreeMap;

use ovnet_proto::{Endpoint, Network, NetworkDetail, PortMapping};
use serde::Serialize;

use super::{driver, pretty};

/// One network as `docker network inspect` shows it; field order is the JSON key order.
#[derive(Debug, Serialize)]
struct InspectJson<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Id")]
    id: &'a str,
    #[serde(rename = "Created")]
    created: &'a str,
    #[serde(rename = "Scope")]
    scope: &'static str,
    #[serde(rename = "Driver")]
    driver: &'a str,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: IpamJson<'a>,
    #[serde(rename = "Internal")]
    internal: bool,
    #[serde(rename = "Attachable")]
    attachable: bool,
    /// Keyed by endpoint ID; a BTreeMap sorts the keys as Go's encoding/json does.
    #[serde(rename = "Containers")]
    containers: BTreeMap<&'a str, ContainerJson<'a>>,
    #[serde(rename = "Options")]
    options: BTreeMap<&'static str, String>,
    #[serde(rename = "Labels")]
    labels: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "Peers")]
    peers: Vec<PeerJson<'a>>,
}

#[derive(Debug, Serialize)]
struct IpamJson<'a> {
    #[serde(rename = "Driver")]
    driver: &'static str,
    /// Always `null`: ovnet has no IPAM options.
    #[serde(rename = "Options")]
    options: Option<BTreeMap<String, String>>,
    #[serde(rename = "Config")]
    config: Vec<IpamConfigJson<'a>>,
}

#[derive(Debug, Serialize)]
struct IpamConfigJson<'a> {
    #[serde(rename = "Subnet")]
    subnet: &'a str,
    #[serde(rename = "Gateway")]
    gateway: &'a str,
}

#[derive(Debug, Serialize)]
struct ContainerJson<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "EndpointID")]
    endpoint_id: &'a str,
    #[serde(rename = "MacAddress")]
    mac_address: &'a str,
    #[serde(rename = "IPv4Address")]
    ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    ipv6_address: &'static str,
    #[serde(rename = "Node")]
    node: &'a str,
    /// Published ports in the shape of `docker inspect`'s `NetworkSettings.Ports`:
    /// `"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`; left out when there are none.
    #[serde(rename = "Ports", skip_serializing_if = "BTreeMap::is_empty")]
    ports: BTreeMap<String, Vec<PortBindingJson<'a>>>,
}

#[derive(Debug, Serialize)]
struct PortBindingJson<'a> {
    #[serde(rename = "HostIp")]
    host_ip: &'a str,
    #[serde(rename = "HostPort")]
    host_port: String,
}

/// An endpoint's published ports keyed by `CTRPORT/PROTO`, as docker shows them.
fn ports_json(ports: &[PortMapping]) -> BTreeMap<String, Vec<PortBindingJson<'_>>> {
    let mut out: BTreeMap<String, Vec<PortBindingJson<'_>>> = BTreeMap::new();
    for p in ports {
        let proto = if p.protocol.is_empty() {
            "tcp"
        } else {
            p.protocol.as_str()
        };
        out.entry(format!("{}/{proto}", p.container_port))
            .or_default()
            .push(PortBindingJson {
                host_ip: if p.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    &p.host_ip
                },
                host_port: p.host_port.to_string(),
            });
    }
    out
}

#[derive(Debug, Serialize)]
struct PeerJson<'a> {
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "IP")]
    ip: &'a str,
}

/// `10.0.0.2` in `10.0.0.0/24` → `10.0.0.2/24`, as docker shows container addresses.
fn with_prefix(ip: &str, subnet: &str) -> String {
    match subnet.split_once('/') {
        Some((_, len)) if !ip.is_empty() => format!("{ip}/{len}"),
        _ => ip.to_string(),
    }
}

fn container_json<'a>(ep: &'a Endpoint, subnet: &str) -> ContainerJson<'a> {
    ContainerJson {
        name: &ep.name,
        endpoint_id: &ep.id,
        mac_address: &ep.mac,
        ipv4_address: with_prefix(&ep.ipv4, subnet),
        ipv6_address: "",
        node: &ep.node,
        ports: ports_json(&ep.ports),
    }
}

fn inspect_json<'a>(d: &'a NetworkDetail, empty: &'a Network) -> InspectJson<'a> {
    let n = d.network.as_ref().unwrap_or(empty);
    let vni = n.vni.to_string();
    InspectJson {
        name: &n.name,
        id: &n.id,
        created: &n.created,
        scope: "global",
        driver: driver(n),
        enable_ipv6: false,
        ipam: IpamJson {
            driver: "default",
            options: None,
            config: vec![IpamConfigJson {
                subnet: &n.subnet,
                gateway: &n.gateway,
            }],
        },
        internal: n.internal,
        attachable: true,
        containers: d
            .endpoints
            .iter()
            .map(|ep| (ep.id.as_str(), container_json(ep, &n.subnet)))
            .collect(),
        options: BTreeMap::from([
            (
                "com.docker.network.driver.overlay.vxlanid_list",
                vni.clone(),
            ),
            ("vxlanid", vni),
            ("mtu", n.mtu.to_string()),
        ]),
        labels: n
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        peers: d
            .peers
            .iter()
            .map(|p| PeerJson {
                name: &p.name,
                ip: &p.ip,
            })
            .collect(),
    }
}

/// `ovctl network inspect`: a JSON array with one object per network, in the order given
/// (`[]` when there is none, like docker).
pub fn inspect(details: &[NetworkDetail]) -> String {
    let empty = Network::default();
    let objs: Vec<InspectJson<'_>> = details.iter().map(|d| inspect_json(d, &empty)).collect();
    pretty(&objs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::{demo, detail};

    #[test]
    fn inspect_is_docker_json() {
        let expected = r#"[
    {
        "Name": "demo",
        "Id": "3d430f3338a2c3496e9edeccc880f0a7affa06522b4249497ef6c4cd6571eaa9",
        "Created": "2020-04-10T14:47:27.897140984Z",
        "Scope": "global",
        "Driver": "overlay",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": [
                {
                    "Subnet": "10.0.0.0/24",
                    "Gateway": "10.0.0.1"
                }
            ]
        },
        "Internal": false,
        "Attachable": true,
        "Containers": {
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": {
                "Name": "web1",
                "EndpointID": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "MacAddress": "02:42:0a:00:00:02",
                "IPv4Address": "10.0.0.2/24",
                "IPv6Address": "",
                "Node": "node1"
            },
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb": {
                "Name": "web2",
                "EndpointID": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                "MacAddress": "02:42:0a:00:00:03",
                "IPv4Address": "10.0.0.3/24",
                "IPv6Address": "",
                "Node": "node2"
            }
        },
        "Options": {
            "com.docker.network.driver.overlay.vxlanid_list": "256",
            "mtu": "1450",
            "vxlanid": "256"
        },
        "Labels": {
            "env": "test"
        },
        "Peers": [
            {
                "Name": "node1",
                "IP": "192.168.205.10"
            },
            {
                "Name": "node2",
                "IP": "192.168.205.11"
            }
        ]
    }
]
"#;
        assert_eq!(inspect(&[detail()]), expected);
    }

    #[test]
    fn internal_networks_and_published_ports_show_as_in_docker() {
        let mut d = detail();
        d.network.as_mut().unwrap().internal = true;
        let m = |ip: &str, h: u32, c: u32, p: &str| PortMapping {
            host_ip: ip.into(),
            host_port: h,
            container_port: c,
            protocol: p.into(),
        };
        d.endpoints[1].ports = vec![
            m("0.0.0.0", 8080, 80, "tcp"),
            m("192.168.50.1", 8443, 443, "tcp"),
            m("192.168.50.1", 8081, 80, "tcp"),
            m("", 5353, 53, "udp"),
        ];
        let out = inspect(&[d]);
        assert!(out.contains("        \"Internal\": true,\n"), "{out}");
        let want = r#"                "Node": "node1",
                "Ports": {
                    "443/tcp": [
                        {
                            "HostIp": "192.168.50.1",
                            "HostPort": "8443"
                        }
                    ],
                    "53/udp": [
                        {
                            "HostIp": "0.0.0.0",
                            "HostPort": "5353"
                        }
                    ],
                    "80/tcp": [
                        {
                            "HostIp": "0.0.0.0",
                            "HostPort": "8080"
                        },
                        {
                            "HostIp": "192.168.50.1",
                            "HostPort": "8081"
                        }
                    ]
                }
            },"#;
        assert!(out.contains(want), "{out}");
        // web2 publishes nothing: no Ports key at all.
        assert_eq!(out.matches("\"Ports\"").count(), 1, "{out}");
    }

    #[test]
    fn inspect_of_nothing_and_of_an_empty_network() {
        assert_eq!(inspect(&[]), "[]\n");
        let d = NetworkDetail {
            network: Some(Network {
                labels: Default::default(),
                ..demo()
            }),
            ..Default::default()
        };
        let out = inspect(&[d]);
        assert!(out.contains("        \"Containers\": {},\n"), "{out}");
        assert!(out.contains("        \"Labels\": {},\n"), "{out}");
        assert!(out.contains("        \"Peers\": []\n"), "{out}");
    }
}
