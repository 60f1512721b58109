//! What `ovctl` prints: the `docker network ls`-style tables ([`tables`]), the
//! `docker network inspect` JSON array ([`mod@inspect`]) and the data-plane reports
//! ([`reports`]).
//!
//! Pure functions from the agent's protobuf messages to strings, so that every byte users (and
//! their scripts) see is pinned by unit tests. No I/O, no RPC.

mod inspect;
mod reports;
mod tables;

use ovnet_proto::Network;
use serde::Serialize;

pub use inspect::inspect;
pub use reports::{dataplane, dataplane_json, stats, stats_json};
pub use tables::{network_ls, node_ls, vtep_ls};

/// A network's driver as shown: "overlay" for a record that names none.
fn driver(n: &Network) -> &str {
    if n.driver.is_empty() {
        "overlay"
    } else {
        &n.driver
    }
}

/// Serializes with a 4-space indent, as the docker CLI does, and a final newline.
fn pretty<T: Serialize>(value: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    value
        .serialize(&mut ser)
        .expect("serializing strings, numbers and maps with string keys cannot fail");
    let mut s = String::from_utf8(buf).expect("serde_json writes UTF-8");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use ovnet_proto::{Endpoint, Network, NetworkDetail, Peer};

    pub(crate) fn demo() -> Network {
        Network {
            id: "3d430f3338a2c3496e9edeccc880f0a7affa06522b4249497ef6c4cd6571eaa9".into(),
            name: "demo".into(),
            vni: 256,
            subnet: "10.0.0.0/24".into(),
            gateway: "10.0.0.1".into(),
            mtu: 1450,
            created: "2020-04-10T14:47:27.897140984Z".into(),
            labels: [("env".to_string(), "test".to_string())].into(),
            driver: "overlay".into(),
            internal: false,
        }
    }

    fn endpoint(id: char, name: &str, node: &str, last: u8) -> Endpoint {
        Endpoint {
            id: id.to_string().repeat(64),
            network_id: demo().id,
            name: name.into(),
            node: node.into(),
            mac: format!("02:42:0a:00:00:{last:02x}"),
            ipv4: format!("10.0.0.{last}"),
            netns: name.into(),
            ifname: "eth0".into(),
            created: "2020-04-10T14:50:00.000000001Z".into(),
            ..Default::default()
        }
    }

    /// The sample of the brief: demo with web1 on node1 and web2 on node2.
    pub(crate) fn detail() -> NetworkDetail {
        NetworkDetail {
            network: Some(demo()),
            // Out of ID order on purpose: Containers is keyed and sorted by endpoint ID.
            endpoints: vec![
                endpoint('b', "web2", "node2", 3),
                endpoint('a', "web1", "node1", 2),
            ],
            peers: vec![
                Peer {
                    name: "node1".into(),
                    ip: "192.168.205.10".into(),
                    port: 4789,
                },
                Peer {
                    name: "node2".into(),
                    ip: "192.168.205.11".into(),
                    port: 4789,
                },
            ],
            vteps: vec![],
        }
    }
}
