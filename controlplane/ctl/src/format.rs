//! What `ovctl` prints: the `docker network ls`-style tables, the `docker network inspect` JSON
//! array and the `stats` report.
//!
//! Pure functions from the agent's protobuf messages to strings, so that every byte users (and
//! their scripts) see is pinned by the unit tests below. No I/O, no RPC.

use std::collections::BTreeMap;

use ovnet_proto::{
    DataplaneStatus, Endpoint, ExternalVtep, Network, NetworkDetail, NetworkStats, NodeStatus,
};
use serde::Serialize;

/// Length of the IDs `ls` shows, as docker does without `--no-trunc`.
pub const SHORT_ID_LEN: usize = 12;

/// Docker's tabwriter settings (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` in the docker CLI's
/// formatter): a column is at least 10 characters wide and 3 wider than its widest cell.
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// The first [`SHORT_ID_LEN`] characters of an ID (all of it if it is shorter).
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID_LEN).unwrap_or(id)
}

/// Lays out a header and rows like docker's tabwriter: every column but the last is padded to
/// `max(10, widest cell + 3)`; the last is not padded, so lines carry no trailing spaces.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            s.push_str(cell);
            if i + 1 < cols {
                let width = (widths[i] + PADDING).max(MIN_WIDTH);
                let pad = width.saturating_sub(cell.chars().count());
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(AsRef::as_ref));
    }
    out
}

/// `ovctl network ls`: `NETWORK ID  NAME  DRIVER  SCOPE`, sorted by name like docker. With
/// `quiet`, only the IDs, one a line; `no_trunc` shows the full 64-character IDs.
pub fn network_ls(networks: &[Network], quiet: bool, no_trunc: bool) -> String {
    let mut nets: Vec<&Network> = networks.iter().collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let id = |n: &Network| {
        if no_trunc {
            n.id.clone()
        } else {
            short_id(&n.id).to_string()
        }
    };
    if quiet {
        return nets.iter().map(|n| id(n) + "\n").collect();
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                id(n),
                n.name.clone(),
                driver(n).to_string(),
                "global".to_string(),
            ]
        })
        .collect();
    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
}

fn driver(n: &Network) -> &str {
    if n.driver.is_empty() {
        "overlay"
    } else {
        &n.driver
    }
}

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
        internal: false,
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

/// `ovctl network inspect`: a JSON array with one object per network, in the order given
/// (`[]` when there is none, like docker).
pub fn inspect(details: &[NetworkDetail]) -> String {
    let empty = Network::default();
    let objs: Vec<InspectJson<'_>> = details.iter().map(|d| inspect_json(d, &empty)).collect();
    pretty(&objs)
}

/// `ovctl network vtep ls`: `IP  PORT`, sorted by address then port.
pub fn vtep_ls(vteps: &[ExternalVtep]) -> String {
    let mut v: Vec<&ExternalVtep> = vteps.iter().collect();
    v.sort_by_key(|v| {
        (
            v.ip.parse::<std::net::Ipv4Addr>().ok(),
            v.ip.clone(),
            v.port,
        )
    });
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| vec![v.ip.clone(), v.port.to_string()])
        .collect();
    table(&["IP", "PORT"], &rows)
}

/// `ovctl node ls`: `NAME  VTEP  ALIVE`, sorted by name; VTEP as `ip:port`, ALIVE `yes`/`no`.
pub fn node_ls(nodes: &[NodeStatus]) -> String {
    let empty = ovnet_proto::Node::default();
    let mut v: Vec<(&ovnet_proto::Node, bool)> = nodes
        .iter()
        .map(|s| (s.node.as_ref().unwrap_or(&empty), s.alive))
        .collect();
    v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|(n, alive)| {
            vec![
                n.name.clone(),
                format!("{}:{}", n.vtep_ip, n.vtep_port),
                if *alive { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "VTEP", "ALIVE"], &rows)
}

/// Non-zero drop counters, sorted by reason name.
fn nonzero_drops(s: &NetworkStats) -> BTreeMap<&str, u64> {
    s.drops
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| (r.as_str(), *n))
        .collect()
}

/// `ovctl stats`: one block per network, blocks separated by an empty line:
///
/// ```text
/// demo (vni 256)
///   tx: 10 packets, 1000 bytes
///   rx: 8 packets, 800 bytes
///   drops: no_route=1 unknown_vtep=3
/// ```
///
/// `drops: none` when nothing was dropped. The agent's `(no network)` entry (drops before a
/// network was known) has VNI 0 and is shown without one.
pub fn stats(networks: &[NetworkStats]) -> String {
    let blocks: Vec<String> = networks
        .iter()
        .map(|s| {
            let title = if s.vni == 0 {
                s.name.clone()
            } else {
                format!("{} (vni {})", s.name, s.vni)
            };
            let drops = nonzero_drops(s);
            let drops = if drops.is_empty() {
                "none".to_string()
            } else {
                drops
                    .iter()
                    .map(|(r, n)| format!("{r}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            format!(
                "{title}\n  tx: {} packets, {} bytes\n  rx: {} packets, {} bytes\n  drops: {drops}\n",
                s.tx_packets, s.tx_bytes, s.rx_packets, s.rx_bytes
            )
        })
        .collect();
    blocks.join("\n")
}

#[derive(Debug, Serialize)]
struct StatsJson<'a> {
    name: &'a str,
    vni: u32,
    tx_packets: u64,
    tx_bytes: u64,
    rx_packets: u64,
    rx_bytes: u64,
    /// Non-zero counters only, sorted by reason.
    drops: BTreeMap<&'a str, u64>,
}

/// `ovctl stats --json`: an array of `{name, vni, tx_packets, tx_bytes, rx_packets, rx_bytes,
/// drops: {reason: count}}`, the field names of the proto's `NetworkStats`.
pub fn stats_json(networks: &[NetworkStats]) -> String {
    let v: Vec<StatsJson<'_>> = networks
        .iter()
        .map(|s| StatsJson {
            name: &s.name,
            vni: s.vni,
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            rx_packets: s.rx_packets,
            rx_bytes: s.rx_bytes,
            drops: nonzero_drops(s),
        })
        .collect();
    pretty(&v)
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `ovctl dataplane`: the workers' load, flow steering and the offloads in use:
///
/// ```text
/// workers: 2, flows steered by load, 1 moved
///   worker 0: 62.5 % busy
///   worker 1: 0.0 % busy
/// poll window: 100 us
/// time slice: 100 us
/// UDP GSO: on
/// UDP tunnel GSO: on
/// ```
pub fn dataplane(d: &DataplaneStatus) -> String {
    let workers = d.worker_busy_per_mille.len();
    let steering = if d.steering {
        format!(", flows steered by load, {} moved", d.flows_moved)
    } else if workers > 1 {
        ", flows spread by hash".to_string()
    } else {
        String::new()
    };
    let mut out = format!("workers: {workers}{steering}\n");
    for (i, b) in d.worker_busy_per_mille.iter().enumerate() {
        out += &format!("  worker {i}: {}.{} % busy\n", b / 10, b % 10);
    }
    let slice = if d.slice_us == 0 {
        "the kernel's default".to_string()
    } else {
        format!("{} us", d.slice_us)
    };
    out += &format!(
        "poll window: {} us\ntime slice: {slice}\nUDP GSO: {}\nUDP tunnel GSO: {}\n",
        d.poll_us,
        on_off(d.udp_gso),
        on_off(d.tunnel_gso)
    );
    out
}

#[derive(Debug, Serialize)]
struct DataplaneJson<'a> {
    worker_busy_per_mille: &'a [u32],
    steering: bool,
    flows_moved: u64,
    poll_us: u32,
    slice_us: u32,
    udp_gso: bool,
    tunnel_gso: bool,
}

/// `ovctl dataplane --json`: the fields of the proto's `DataplaneStatus`.
pub fn dataplane_json(d: &DataplaneStatus) -> String {
    pretty(&DataplaneJson {
        worker_busy_per_mille: &d.worker_busy_per_mille,
        steering: d.steering,
        flows_moved: d.flows_moved,
        poll_us: d.poll_us,
        slice_us: d.slice_us,
        udp_gso: d.udp_gso,
        tunnel_gso: d.tunnel_gso,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovnet_proto::{Node, Peer};

    fn demo() -> Network {
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
        }
    }

    /// The sample of the brief: demo with web1 on node1 and web2 on node2.
    fn detail() -> NetworkDetail {
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

    #[test]
    fn short_ids() {
        assert_eq!(short_id(&demo().id), "3d430f3338a2");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn ls_matches_docker_layout() {
        let other = Network {
            id: "0e7bef3f143a".repeat(5) + "abcd",
            name: "a-much-longer-name".into(),
            driver: String::new(),
            ..demo()
        };
        let out = network_ls(&[demo(), other], false, false);
        assert_eq!(
            out,
            "NETWORK ID     NAME                 DRIVER    SCOPE\n\
             0e7bef3f143a   a-much-longer-name   overlay   global\n\
             3d430f3338a2   demo                 overlay   global\n"
        );
    }

    #[test]
    fn ls_with_short_names_keeps_docker_minimum_width() {
        assert_eq!(
            network_ls(&[demo()], false, false),
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             3d430f3338a2   demo      overlay   global\n"
        );
        assert_eq!(
            network_ls(&[], false, false),
            "NETWORK ID   NAME      DRIVER    SCOPE\n"
        );
    }

    #[test]
    fn ls_quiet_and_no_trunc() {
        assert_eq!(network_ls(&[demo()], true, false), "3d430f3338a2\n");
        assert_eq!(
            network_ls(&[demo()], true, true),
            format!("{}\n", demo().id)
        );
        assert_eq!(network_ls(&[], true, false), "");
        let full = network_ls(&[demo()], false, true);
        assert!(full.lines().nth(1).unwrap().starts_with(&demo().id));
    }

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

    #[test]
    fn vtep_table_sorts_addresses_numerically() {
        let v = |ip: &str, port| ExternalVtep {
            network_id: demo().id,
            ip: ip.into(),
            port,
        };
        let out = vtep_ls(&[v("192.168.1.10", 4789), v("192.168.1.9", 4790)]);
        assert_eq!(
            out,
            "IP             PORT\n\
             192.168.1.9    4790\n\
             192.168.1.10   4789\n"
        );
        assert_eq!(vtep_ls(&[]), "IP        PORT\n");
    }

    #[test]
    fn node_table() {
        let n = |name: &str, ip: &str, alive| NodeStatus {
            node: Some(Node {
                name: name.into(),
                vtep_ip: ip.into(),
                vtep_port: 4789,
                agent_version: "0.1.0".into(),
                started: "2020-04-10T14:00:00Z".into(),
            }),
            alive,
        };
        let out = node_ls(&[
            n("node2", "192.168.205.11", false),
            n("node1", "192.168.205.10", true),
        ]);
        assert_eq!(
            out,
            "NAME      VTEP                  ALIVE\n\
             node1     192.168.205.10:4789   yes\n\
             node2     192.168.205.11:4789   no\n"
        );
    }

    fn sample_stats() -> Vec<NetworkStats> {
        vec![
            NetworkStats {
                name: "demo".into(),
                vni: 256,
                tx_packets: 10,
                tx_bytes: 1000,
                rx_packets: 8,
                rx_bytes: 800,
                drops: [
                    ("unknown_vtep".to_string(), 3),
                    ("no_route".to_string(), 1),
                    ("truncated".to_string(), 0),
                ]
                .into(),
            },
            NetworkStats {
                name: "other".into(),
                vni: 257,
                ..Default::default()
            },
            NetworkStats {
                name: "(no network)".into(),
                vni: 0,
                drops: [("bad_flags".to_string(), 2)].into(),
                ..Default::default()
            },
        ]
    }

    #[test]
    fn stats_text() {
        assert_eq!(
            stats(&sample_stats()),
            "demo (vni 256)\n  tx: 10 packets, 1000 bytes\n  rx: 8 packets, 800 bytes\n  drops: no_route=1 unknown_vtep=3\n\
             \n\
             other (vni 257)\n  tx: 0 packets, 0 bytes\n  rx: 0 packets, 0 bytes\n  drops: none\n\
             \n\
             (no network)\n  tx: 0 packets, 0 bytes\n  rx: 0 packets, 0 bytes\n  drops: bad_flags=2\n"
        );
        assert_eq!(stats(&[]), "");
    }

    fn sample_dataplane() -> DataplaneStatus {
        DataplaneStatus {
            worker_busy_per_mille: vec![625, 0],
            steering: true,
            flows_moved: 1,
            poll_us: 100,
            udp_gso: true,
            tunnel_gso: false,
            slice_us: 100,
        }
    }

    #[test]
    fn dataplane_text() {
        assert_eq!(
            dataplane(&sample_dataplane()),
            "workers: 2, flows steered by load, 1 moved\n  worker 0: 62.5 % busy\n  \
             worker 1: 0.0 % busy\npoll window: 100 us\ntime slice: 100 us\nUDP GSO: on\n\
             UDP tunnel GSO: off\n"
        );
        let one = DataplaneStatus {
            worker_busy_per_mille: vec![7],
            steering: false,
            slice_us: 0,
            ..sample_dataplane()
        };
        assert!(
            dataplane(&one).starts_with("workers: 1\n  worker 0: 0.7 % busy\n"),
            "{}",
            dataplane(&one)
        );
        assert!(
            dataplane(&one).contains("\ntime slice: the kernel's default\n"),
            "{}",
            dataplane(&one)
        );
        let hashed = DataplaneStatus {
            steering: false,
            ..sample_dataplane()
        };
        assert!(
            dataplane(&hashed).starts_with("workers: 2, flows spread by hash\n"),
            "{}",
            dataplane(&hashed)
        );
    }

    #[test]
    fn dataplane_as_json() {
        let v: serde_json::Value =
            serde_json::from_str(&dataplane_json(&sample_dataplane())).unwrap();
        assert_eq!(v["worker_busy_per_mille"], serde_json::json!([625, 0]));
        assert_eq!(v["steering"], true);
        assert_eq!(v["flows_moved"], 1);
        assert_eq!(v["poll_us"], 100);
        assert_eq!(v["slice_us"], 100);
        assert_eq!(v["udp_gso"], true);
        assert_eq!(v["tunnel_gso"], false);
    }

    #[test]
    fn stats_as_json() {
        let out = stats_json(&sample_stats()[..2]);
        assert_eq!(
            out,
            r#"[
    {
        "name": "demo",
        "vni": 256,
        "tx_packets": 10,
        "tx_bytes": 1000,
        "rx_packets": 8,
        "rx_bytes": 800,
        "drops": {
            "no_route": 1,
            "unknown_vtep": 3
        }
    },
    {
        "name": "other",
        "vni": 257,
        "tx_packets": 0,
        "tx_bytes": 0,
        "rx_packets": 0,
        "rx_bytes": 0,
        "drops": {}
    }
]
"#
        );
    }
}
