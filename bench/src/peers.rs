//! The peers series of `ovnet-bench growth`: 2, 8, 32... hosts (agents on the underlay
//! switch, [`Cluster`]) on one network with one container each. For each host count:
//!
//! - the agents' memory, descriptors, threads and idle CPU, as in the networks series;
//! - 64-byte UDP from host 1's container to host 2's while every agent's forwarding table
//!   holds every peer, charged to those two agents: does a bigger table slow a unicast flow?
//! - a flood of 64-byte broadcasts from host 1's container ([`Flood`]), counted at every other
//!   container: host 1's agent sends one copy per peer (head-end replication), so the copies it
//!   can make per second are shared by more peers as they grow, each getting 1/(N-1) of them;
//!   its CPU per copy, and all agents' per frame delivered, say whether a copy gets dearer.
//!
//! Storm control is off ([`crate::topology::agent_env`]): the flood measures replication, not
//! the default limit of broadcasts per second.

use anyhow::Result;
use serde_json::{json, Map, Value};

use crate::flood::Flood;
use crate::growth::{agent_cost, cell, cost_table, say, wait_reachable, AgentCost, UdpRun};
use crate::procstat;
use crate::scale::{container_ip, Cluster, BROADCAST};
use crate::topology::Binaries;

/// The flood's figures at one host count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FloodCost {
    /// Broadcasts host 1's container sent per second, thousands.
    pub sent_kpps: f64,
    /// Frames per second the slowest receiving container took, thousands.
    pub slowest_kpps: f64,
    /// Frames per second all receiving containers took together, thousands.
    pub delivered_kpps: f64,
    /// Host 1's agent's CPU per copy delivered to a container, µs: the head end, which sends
    /// one copy per peer of every broadcast it takes from its container (a broadcast it cannot
    /// take in time is dropped at its container's TAP and costs it nothing).
    pub head_end_us_per_copy: Option<f64>,
    /// All agents' CPU per frame delivered to a container, µs.
    pub cpu_us_per_delivered: Option<f64>,
}

/// Lines of the head end's log kept when a flood reached a host not at all.
const LOG_TAIL: usize = 30;

/// Headings of [`FloodCost::cells`].
const FLOOD_COLUMNS: [&str; 5] = [
    "flood sent (kpps)",
    "received, slowest host (kpps)",
    "delivered, all hosts (kpps)",
    "host 1's agent CPU per copy delivered (µs)",
    "all agents' CPU per frame delivered (µs)",
];

impl FloodCost {
    fn cells(&self) -> Vec<String> {
        vec![
            cell(Some(self.sent_kpps), 1),
            cell(Some(self.slowest_kpps), 1),
            cell(Some(self.delivered_kpps), 1),
            cell(self.head_end_us_per_copy, 2),
            cell(self.cpu_us_per_delivered, 2),
        ]
    }
}

/// One step of the peers series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStep {
    /// Hosts on the network.
    pub hosts: u8,
    /// What the agents cost; the UDP figures are host 1's and host 2's agents'.
    pub cost: AgentCost,
    /// The flood, if it was measured.
    pub flood: Option<FloodCost>,
    /// When a host received none of the flood: the head end's data-plane counters and log.
    pub diagnosis: Option<String>,
}

impl PeerStep {
    /// The JSON of this step.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("hosts".into(), json!(self.hosts));
        self.cost.add_json(&mut obj);
        let flood = self.flood.as_ref().map(|f| {
            json!({
                "sent_kpps": f.sent_kpps,
                "slowest_receiver_kpps": f.slowest_kpps,
                "delivered_kpps": f.delivered_kpps,
                "head_end_cpu_us_per_copy_delivered": f.head_end_us_per_copy,
                "all_agents_cpu_us_per_frame_delivered": f.cpu_us_per_delivered,
            })
        });
        obj.insert("flood_64b".into(), json!(flood));
        obj.insert("diagnosis".into(), json!(self.diagnosis));
        Value::Object(obj)
    }
}

/// The table of the peers series.
pub fn table(steps: &[PeerStep]) -> String {
    let rows = steps.iter().map(|s| {
        let flood = match &s.flood {
            Some(f) => f.cells(),
            None => FLOOD_COLUMNS.iter().map(|_| "-".to_string()).collect(),
        };
        (s.hosts.to_string(), &s.cost, flood)
    });
    cost_table("peers (hosts)", &FLOOD_COLUMNS, rows)
}

/// CPU `ticks` per `count` events, µs.
fn us_per(ticks: Option<u64>, count: u64) -> Option<f64> {
    ticks
        .filter(|_| count > 0)
        .map(|t| procstat::seconds(t) * 1e6 / count as f64)
}

/// Measures `hosts` hosts on one network with `duration` seconds per window.
pub fn run(hosts: u8, duration: u32, bins: &Binaries) -> Result<PeerStep> {
    let mut c = Cluster::start(hosts, bins)?;
    c.create_network()?;
    say(&format!("{hosts} peers: a container on every host"));
    let mut containers = Vec::new();
    for k in 1..=hosts {
        crate::interrupt::check()?;
        containers.push(c.connect(k)?);
    }
    // Every container answers host 1's: each agent knows every peer before anything is timed.
    for k in 2..=hosts {
        wait_reachable(&c, &containers[0], &container_ip(k).to_string())?;
    }
    let pids = c.agent_pids();
    say(&format!("{hosts} peers: idle for {duration} s"));
    let mut cost = agent_cost(&pids, duration)?;
    say(&format!(
        "{hosts} peers: UDP 64 B from host 1 to host 2 for {duration} s"
    ));
    let server_ip = container_ip(2).to_string();
    UdpRun {
        client: &containers[0],
        server: &containers[1],
        server_ip: &server_ip,
        charged: &pids[..2],
        duration,
        tag: &format!("peers-{hosts}"),
    }
    .run(&mut c, &mut cost)?;

    say(&format!(
        "{hosts} peers: flood of 64 B broadcasts from host 1 for {duration} s"
    ));
    let all_before = procstat::total_of(&pids);
    let head_before = procstat::total_of(&pids[..1]);
    let flood = Flood::start(
        &mut c.tb,
        &containers[0],
        &containers[1..],
        BROADCAST,
        duration,
    )?;
    let run = flood.finish(&mut c.tb)?;
    let all = all_before
        .zip(procstat::total_of(&pids))
        .map(|(b, a)| a.saturating_sub(b));
    let head = head_before
        .zip(procstat::total_of(&pids[..1]))
        .map(|(b, a)| a.saturating_sub(b));
    let delivered = run.received.iter().sum();
    let f = FloodCost {
        sent_kpps: run.sent.per_second() / 1000.0,
        slowest_kpps: run.slowest_per_second() / 1000.0,
        delivered_kpps: run.delivered_per_second() / 1000.0,
        head_end_us_per_copy: us_per(head, delivered),
        cpu_us_per_delivered: us_per(all, delivered),
    };
    say(&format!(
        "{hosts} peers: flood {:.1} kpps sent, {:.1} kpps to the slowest host, {:?} µs per copy at the head end",
        f.sent_kpps,
        f.slowest_kpps,
        f.head_end_us_per_copy.map(|u| (u * 100.0).round() / 100.0)
    ));
    let diagnosis = if run.received.contains(&0) {
        let counters = c.ovctl(0, &["dataplane", "--json"])?;
        let log = c.tb.log(c.agents[0].2).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(LOG_TAIL).collect();
        // Another process restoring the shared neighbour table's size mid-run starves the
        // underlay's ARP: say what it is now.
        let gc_thresh3 = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
            .unwrap_or_default();
        let text = format!(
            "a host received none of the flood; gc_thresh3 {}; host 1's data plane: {counters}\nthe end of its agent's log:\n{}",
            gc_thresh3.trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        say(&format!("{hosts} peers: {text}"));
        Some(text)
    } else {
        None
    };
    say(&format!("{hosts} peers: tearing down"));
    Ok(PeerStep {
        hosts,
        cost,
        flood: Some(f),
        diagnosis,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> PeerStep {
        PeerStep {
            hosts: 8,
            cost: AgentCost {
                rss_kib: vec![8192; 8],
                fds: vec![36; 8],
                threads: vec![7; 8],
                idle_core_percent: Some(0.05),
                udp_kpps: Some(120.0),
                cpu_us_per_packet: Some(4.5),
            },
            flood: Some(FloodCost {
                sent_kpps: 100.0,
                slowest_kpps: 40.0,
                delivered_kpps: 300.0,
                head_end_us_per_copy: Some(12.5),
                cpu_us_per_delivered: Some(3.0),
            }),
            diagnosis: None,
        }
    }

    #[test]
    fn the_table_has_the_cost_and_the_flood() {
        let unflooded = PeerStep {
            hosts: 32,
            flood: None,
            ..step()
        };
        let t = table(&[step(), unflooded]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[0].starts_with("| peers (hosts) | agent RSS (MiB) |"),
            "{t}"
        );
        assert_eq!(lines[1].matches("---").count(), 12, "{t}");
        assert_eq!(
            lines[2],
            "| 8 | 8.0 | 36 | 7 | 0.05 | 120.0 | 4.50 | 100.0 | 40.0 | 300.0 | 12.50 | 3.00 |"
        );
        assert!(lines[3].ends_with("| 4.50 | - | - | - | - | - |"), "{t}");
    }

    #[test]
    fn the_json_has_both() {
        let j = step().to_json();
        assert_eq!(j["hosts"], 8);
        assert_eq!(j["agent_threads"][7], 7);
        assert_eq!(j["flood_64b"]["head_end_cpu_us_per_copy_delivered"], 12.5);
        let none = PeerStep {
            flood: None,
            ..step()
        }
        .to_json();
        assert!(none["flood_64b"].is_null());
    }

    #[test]
    fn cpu_per_event() {
        let tps = procstat::ticks_per_second();
        assert_eq!(us_per(Some(tps), 1_000_000), Some(1.0));
        assert_eq!(us_per(Some(tps), 0), None);
        assert_eq!(us_per(None, 10), None);
    }
}
