//! The reports of this host's data plane: `ovctl stats` (per-network counters and drop
//! reasons) and `ovctl dataplane` (workers, steering, offloads), as text and as JSON.

use std::collections::BTreeMap;

use ovnet_proto::{DataplaneStatus, NetworkStats};
use serde::Serialize;

use super::pretty;

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
/// `drops: none` when nothing was dropped. Where frames did not fit the path to their peer, a
/// line before the drops says how many were answered with ICMP "too big" and how many went
/// for the host to fragment: `  path mtu: 12 too-big answers, 1 fragmented`. The agent's
/// `(no network)` entry (drops before a network was known) has VNI 0 and is shown without
/// one.
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
            let pmtu = if s.too_big_answers > 0 || s.fragmented > 0 {
                format!(
                    "  path mtu: {} too-big answers, {} fragmented\n",
                    s.too_big_answers, s.fragmented
                )
            } else {
                String::new()
            };
            format!(
                "{title}\n  tx: {} packets, {} bytes\n  rx: {} packets, {} bytes\n{pmtu}  drops: {drops}\n",
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
    too_big_answers: u64,
    fragmented: u64,
}

/// `ovctl stats --json`: an array of `{name, vni, tx_packets, tx_bytes, rx_packets, rx_bytes,
/// drops: {reason: count}, too_big_answers, fragmented}`, the field names of the proto's
/// `NetworkStats`.
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
            too_big_answers: s.too_big_answers,
            fragmented: s.fragmented,
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
    out += &format!("poll window: {} us\ntime slice: {slice}\n", d.poll_us);
    if d.offloads.is_empty() {
        // An older agent: the two booleans only.
        out += &format!(
            "UDP GSO: {}\nUDP tunnel GSO: {}\n",
            on_off(d.udp_gso),
            on_off(d.tunnel_gso)
        );
    }
    for o in &d.offloads {
        out += &format!("{}: {}", offload_name(&o.name), o.state);
        if !o.reason.is_empty() {
            out += &format!(" ({})", o.reason);
        }
        if !o.since.is_empty() {
            out += &format!(" since {}", o.since);
        }
        out.push('\n');
    }
    out
}

/// How an offload is named for people.
fn offload_name(name: &str) -> &str {
    match name {
        "udp_gso" => "UDP GSO",
        "udp_gro" => "UDP GRO",
        "udp_coalesce" => "UDP coalescing",
        "tunnel_gso" => "UDP tunnel GSO",
        other => other,
    }
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
    offloads: Vec<OffloadJson<'a>>,
}

#[derive(Debug, Serialize)]
struct OffloadJson<'a> {
    name: &'a str,
    state: &'a str,
    reason: &'a str,
    since: &'a str,
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
        offloads: d
            .offloads
            .iter()
            .map(|o| OffloadJson {
                name: &o.name,
                state: &o.state,
                reason: &o.reason,
                since: &o.since,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovnet_proto::v1::OffloadStatus;

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
                ..Default::default()
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
        let pmtu = NetworkStats {
            name: "big".into(),
            vni: 258,
            too_big_answers: 12,
            fragmented: 1,
            drops: [("too_big".to_string(), 14)].into(),
            ..Default::default()
        };
        assert_eq!(
            stats(&[pmtu]),
            "big (vni 258)\n  tx: 0 packets, 0 bytes\n  rx: 0 packets, 0 bytes\n  \
             path mtu: 12 too-big answers, 1 fragmented\n  drops: too_big=14\n"
        );
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
            offloads: vec![],
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
        // An agent that reports each offload's state.
        let states = DataplaneStatus {
            offloads: vec![
                OffloadStatus {
                    name: "udp_gso".into(),
                    state: "on".into(),
                    ..Default::default()
                },
                OffloadStatus {
                    name: "tunnel_gso".into(),
                    state: "turned off".into(),
                    reason: "uplink ovu4789 refused a frame".into(),
                    since: "2026-12-05T00:00:00.000000000Z".into(),
                },
            ],
            ..sample_dataplane()
        };
        assert!(
            dataplane(&states).ends_with(
                "time slice: 100 us\nUDP GSO: on\nUDP tunnel GSO: turned off (uplink ovu4789 \
                 refused a frame) since 2026-12-05T00:00:00.000000000Z\n"
            ),
            "{}",
            dataplane(&states)
        );
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
        },
        "too_big_answers": 0,
        "fragmented": 0
    },
    {
        "name": "other",
        "vni": 257,
        "tx_packets": 0,
        "tx_bytes": 0,
        "rx_packets": 0,
        "rx_bytes": 0,
        "drops": {},
        "too_big_answers": 0,
        "fragmented": 0
    }
]
"#
        );
    }
}
