//! Cost as the work grows (`ovnet-bench growth`), in two series:
//!
//! - **networks**: two hosts with an agent each, and 1, 16, 128... networks, each with one
//!   container per host. At each step: each agent's resident memory, open descriptors and
//!   threads, its CPU with nothing to do, and 64-byte UDP through the first network (received
//!   packets per second and the agents' CPU per packet) while the others sit idle: what an
//!   extra network costs when unused, and whether it slows the busy one;
//! - **peers** ([`crate::peers`]): 2, 8, 32... hosts on one network.
//!
//! This module holds what both series share (the agents' figures, the UDP run, the table
//! cells) and [`run_all`], which runs both, prints their tables, writes the JSON and, with
//! `--plot`, the PNG of [`crate::plot`].

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::args::GrowthArgs;
use crate::iperf;
use crate::peers::{self, PeerStep};
use crate::plot;
use crate::procstat;
use crate::scale::{rss_kib, Cluster, NeighThresholds};
use crate::topology::Binaries;
use crate::{interrupt, stats};

/// iperf3's port.
const PORT: &str = "5201";
/// How long a container gets to answer its first ping.
const REACH_TIMEOUT: Duration = Duration::from_secs(30);

/// What the agents cost at one step of either series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentCost {
    /// Each agent's resident memory, KiB.
    pub rss_kib: Vec<u64>,
    /// Each agent's open descriptors.
    pub fds: Vec<u64>,
    /// Each agent's threads.
    pub threads: Vec<u64>,
    /// The agents' CPU over the idle window, in percent of a core per agent.
    pub idle_core_percent: Option<f64>,
    /// 64-byte UDP between two containers: datagrams received per second, thousands.
    pub udp_kpps: Option<f64>,
    /// The two agents' CPU per datagram received meanwhile, µs.
    pub cpu_us_per_packet: Option<f64>,
}

/// Headings of [`AgentCost::cells`].
pub const COST_COLUMNS: [&str; 6] = [
    "agent RSS (MiB)",
    "descriptors",
    "threads",
    "idle CPU per agent (% core)",
    "UDP 64 B (kpps)",
    "agent CPU per packet (µs)",
];

impl AgentCost {
    /// The mean of the agents' resident memory, MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        mean(&self.rss_kib).map(|k| k / 1024.0)
    }

    /// The table cells under [`COST_COLUMNS`]: means over the agents.
    pub fn cells(&self) -> Vec<String> {
        vec![
            cell(self.rss_mib(), 1),
            cell(mean(&self.fds), 0),
            cell(mean(&self.threads), 0),
            cell(self.idle_core_percent, 2),
            cell(self.udp_kpps, 1),
            cell(self.cpu_us_per_packet, 2),
        ]
    }

    /// Adds this cost's JSON fields to `obj`.
    pub fn add_json(&self, obj: &mut Map<String, Value>) {
        for (k, v) in [
            ("agent_rss_kib", json!(self.rss_kib)),
            ("agent_fds", json!(self.fds)),
            ("agent_threads", json!(self.threads)),
            ("idle_core_percent_per_agent", json!(self.idle_core_percent)),
            ("udp_64b_kpps", json!(self.udp_kpps)),
            ("agent_cpu_us_per_packet", json!(self.cpu_us_per_packet)),
        ] {
            obj.insert(k.to_string(), v);
        }
    }
}

/// One step of the networks series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrowthStep {
    /// Networks on both hosts.
    pub networks: u32,
    /// What the agents cost.
    pub cost: AgentCost,
}

impl GrowthStep {
    /// The JSON of this step.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("networks".into(), json!(self.networks));
        self.cost.add_json(&mut obj);
        Value::Object(obj)
    }
}

fn mean(v: &[u64]) -> Option<f64> {
    stats::mean(&v.iter().map(|&x| x as f64).collect::<Vec<_>>())
}

/// `v` with `digits` decimals, or `-`.
pub fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
}

/// A Markdown table of `header` and `rows`.
pub fn markdown(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &[&str]| format!("| {} |\n", cells.join(" | "));
    let mut out = line(header);
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

/// A table of steps: each row is its step's count (under `count`), its cost's cells (under
/// [`COST_COLUMNS`]) and its `more` cells (under `more_columns`).
pub fn cost_table<'a>(
    count: &str,
    more_columns: &[&str],
    steps: impl IntoIterator<Item = (String, &'a AgentCost, Vec<String>)>,
) -> String {
    let mut header = vec![count];
    header.extend(COST_COLUMNS);
    header.extend(more_columns);
    let rows: Vec<Vec<String>> = steps
        .into_iter()
        .map(|(n, cost, more)| [vec![n], cost.cells(), more].concat())
        .collect();
    markdown(&header, &rows)
}

/// The table of the networks series.
pub fn table(steps: &[GrowthStep]) -> String {
    let rows = steps
        .iter()
        .map(|s| (s.networks.to_string(), &s.cost, Vec::new()));
    cost_table("networks", &[], rows)
}

/// The subnet of network `k` (0-based): `10.64.k.0/24` and on.
fn subnet(k: u32) -> String {
    format!("10.{}.{}.0/24", 64 + k / 256, k % 256)
}

/// The address of host `n`'s container in network `k`.
fn address(k: u32, n: u8) -> String {
    format!("10.{}.{}.{}", 64 + k / 256, k % 256, n + 1)
}

/// `Threads:` of `/proc/PID/status`.
pub fn threads(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        l.strip_prefix("Threads:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

pub(crate) fn say(what: &str) {
    eprintln!("[growth] {what}");
}

/// Grows the networks of two hosts through `networks` (ascending), measuring each step with
/// `duration` seconds per window; the steps measured go to `steps`, also when a later one fails.
pub fn run(
    networks: &[u32],
    duration: u32,
    bins: &Binaries,
    steps: &mut Vec<GrowthStep>,
) -> Result<()> {
    let mut c = Cluster::start(2, bins)?;
    let mut made = 0u32;
    let mut first: Option<[String; 2]> = None;
    for &want in networks {
        say(&format!("growing to {want} networks"));
        while made < want {
            interrupt::check()?;
            let name = format!("g{made}");
            c.ovctl(
                0,
                &[
                    "network",
                    "create",
                    "-d",
                    "overlay",
                    "--subnet",
                    &subnet(made),
                    &name,
                ],
            )?;
            let mut pair = Vec::new();
            for n in 1..=2u8 {
                let ns =
                    c.tb.add_netns(&format!("n{made}h{n}"))
                        .context("adding a container namespace")?;
                let ip = address(made, n);
                c.ovctl(
                    usize::from(n - 1),
                    &[
                        "network", "connect", &name, &ns, "--netns", &ns, "--ip", &ip,
                    ],
                )?;
                pair.push(ns);
            }
            first.get_or_insert_with(|| [pair[0].clone(), pair[1].clone()]);
            made += 1;
        }
        let [client, server] = first.clone().ok_or_else(|| anyhow!("no network made"))?;
        let pids = c.agent_pids();
        let server_ip = address(0, 2);
        wait_reachable(&c, &client, &server_ip)?;
        say(&format!("{made} networks: idle for {duration} s"));
        let mut cost = agent_cost(&pids, duration)?;
        say(&format!(
            "{made} networks: UDP 64 B through g0 for {duration} s"
        ));
        let udp = UdpRun {
            client: &client,
            server: &server,
            server_ip: &server_ip,
            charged: &pids,
            duration,
            tag: &format!("networks-{made}"),
        };
        udp.run(&mut c, &mut cost)?;
        steps.push(GrowthStep {
            networks: made,
            cost,
        });
    }
    Ok(())
}

/// Waits until `ip` answers a ping from namespace `ns`.
pub(crate) fn wait_reachable(c: &Cluster<'_>, ns: &str, ip: &str) -> Result<()> {
    let deadline = Instant::now() + REACH_TIMEOUT;
    while c.tb.exec(ns, &["ping", "-c", "1", "-W", "1", ip]).is_err() {
        interrupt::check()?;
        if Instant::now() >= deadline {
            bail!("{ip} does not answer {ns} within {REACH_TIMEOUT:?}");
        }
    }
    Ok(())
}

/// The agents' (`pids`) memory, descriptors and threads now, and their CPU over an idle
/// window of `seconds`.
pub(crate) fn agent_cost(pids: &[u32], seconds: u32) -> Result<AgentCost> {
    let before = procstat::total_of(pids);
    let t0 = Instant::now();
    interrupt::sleep(Duration::from_secs(u64::from(seconds)))?;
    let idle_core_percent = before.zip(procstat::total_of(pids)).map(|(b, a)| {
        100.0 * procstat::seconds(a.saturating_sub(b))
            / t0.elapsed().as_secs_f64()
            / pids.len() as f64
    });
    let mut cost = AgentCost {
        idle_core_percent,
        ..AgentCost::default()
    };
    for p in pids {
        let status = std::fs::read_to_string(format!("/proc/{p}/status"))
            .with_context(|| format!("reading the status of agent {p}"))?;
        cost.rss_kib.extend(rss_kib(&status));
        cost.threads.extend(threads(&status));
        let fds = std::fs::read_dir(format!("/proc/{p}/fd"))
            .with_context(|| format!("listing the descriptors of agent {p}"))?;
        cost.fds.push(fds.count() as u64);
    }
    Ok(cost)
}

/// 64-byte UDP (iperf3, unlimited rate) from one container to another.
pub(crate) struct UdpRun<'a> {
    /// The client's namespace.
    pub(crate) client: &'a str,
    /// The server's namespace.
    pub(crate) server: &'a str,
    /// The server's address.
    pub(crate) server_ip: &'a str,
    /// The agents whose CPU the datagrams are charged to.
    pub(crate) charged: &'a [u32],
    /// Seconds.
    pub(crate) duration: u32,
    /// Names the iperf3 log.
    pub(crate) tag: &'a str,
}

impl UdpRun<'_> {
    /// Runs it; sets `cost`'s packet rate and CPU per packet.
    pub(crate) fn run(&self, c: &mut Cluster<'_>, cost: &mut AgentCost) -> Result<()> {
        interrupt::check()?;
        let log = c.tb.dir().join(format!("growth-{}.json", self.tag));
        let log_s = log.to_string_lossy().into_owned();
        let server =
            c.tb.spawn(
                self.server,
                &["iperf3", "-s", "-1", "-B", self.server_ip, "-p", PORT],
                &[],
            )
            .context("starting the iperf3 server")?;
        let listening = Instant::now() + Duration::from_secs(10);
        let filter = format!("sport = :{PORT}");
        while c
            .tb
            .exec(self.server, &["ss", "-H", "-l", "-t", "-n", &filter])?
            .trim()
            .is_empty()
        {
            if Instant::now() >= listening {
                bail!("the iperf3 server did not listen");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let before = procstat::total_of(self.charged);
        let dur = self.duration.to_string();
        c.tb.exec(
            self.client,
            &[
                "iperf3",
                "-c",
                self.server_ip,
                "-p",
                PORT,
                "-u",
                "-l",
                "64",
                "-b",
                "0",
                "-t",
                &dur,
                "-J",
                "--logfile",
                &log_s,
            ],
        )
        .context("running the iperf3 client")?;
        let after = procstat::total_of(self.charged);
        if c.tb
            .wait_timeout(server, Duration::from_secs(10))?
            .is_none()
        {
            c.tb.stop(server)?;
        }
        let json = std::fs::read_to_string(&log).map_err(|e| anyhow!("no iperf3 report: {e}"))?;
        let pps = iperf::parse_udp(&json)?.received_per_second();
        cost.udp_kpps = Some(pps / 1000.0);
        cost.cpu_us_per_packet = before.zip(after).and_then(|(b, a)| {
            let packets = pps * f64::from(self.duration);
            (packets > 0.0).then(|| procstat::seconds(a.saturating_sub(b)) * 1e6 / packets)
        });
        say(&format!(
            "{}: {:.1} kpps, {:?} µs of agent CPU per packet",
            self.tag,
            pps / 1000.0,
            cost.cpu_us_per_packet.map(|u| (u * 100.0).round() / 100.0)
        ));
        Ok(())
    }
}

/// Runs both series of `args`, prints their tables, writes the JSON and the plot; returns
/// whether every step was measured.
pub fn run_all(args: &GrowthArgs) -> Result<bool> {
    let bins = Binaries::locate()?;
    let _thresholds = NeighThresholds::raise_for(args.peers.iter().copied().max().unwrap_or(0))?;
    let started = Instant::now();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut errors = Vec::new();
    let mut steps = Vec::new();
    if let Err(e) = run(&args.networks, args.duration, &bins, &mut steps) {
        say(&format!("networks FAILED: {e:#}"));
        errors.push(json!({"series": "networks", "error": format!("{e:#}")}));
    }
    let mut peer_steps: Vec<PeerStep> = Vec::new();
    for &hosts in &args.peers {
        if interrupt::is_set() {
            break;
        }
        match peers::run(hosts, args.duration, &bins) {
            Ok(s) => peer_steps.push(s),
            Err(e) => {
                say(&format!("{hosts} peers FAILED: {e:#}"));
                errors.push(json!({"series": "peers", "hosts": hosts, "error": format!("{e:#}")}));
            }
        }
    }
    print!("{}\n{}", table(&steps), peers::table(&peer_steps));
    let doc = json!({
        "config": {
            "networks": args.networks,
            "peers": args.peers,
            "duration_s": args.duration,
            "load_before": load.trim(),
            "load_after": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "agent": bins.agent.display().to_string(),
        },
        "steps": steps.iter().map(GrowthStep::to_json).collect::<Vec<_>>(),
        "peers": peer_steps.iter().map(PeerStep::to_json).collect::<Vec<_>>(),
        "errors": errors,
        "runtime_s": started.elapsed().as_secs_f64(),
    });
    if let Some(dir) = args.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("results in {}", args.json.display());
    if let Some(png) = &args.plot {
        plot::draw(png, &plot::growth_panels(&steps, &peer_steps))?;
        eprintln!("plot in {}", png.display());
    }
    Ok(errors.is_empty() && !interrupt::is_set())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_and_addresses_do_not_collide() {
        assert_eq!(subnet(0), "10.64.0.0/24");
        assert_eq!(subnet(127), "10.64.127.0/24");
        assert_eq!(subnet(300), "10.65.44.0/24");
        assert_eq!(address(3, 2), "10.64.3.3");
        assert_eq!(threads("Name: x\nThreads:\t9\n"), Some(9));
        assert_eq!(threads("Name: x\n"), None);
    }

    #[test]
    fn the_table_has_a_row_per_step() {
        let s = GrowthStep {
            networks: 16,
            cost: AgentCost {
                rss_kib: vec![10240, 12288],
                fds: vec![40, 42],
                threads: vec![9, 9],
                idle_core_percent: Some(0.12),
                udp_kpps: Some(250.0),
                cpu_us_per_packet: Some(3.25),
            },
        };
        let unmeasured = GrowthStep {
            networks: 128,
            ..GrowthStep::default()
        };
        let t = table(&[s.clone(), unmeasured]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[0].starts_with("| networks | agent RSS (MiB) |"),
            "{t}"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|");
        assert_eq!(lines[2], "| 16 | 11.0 | 41 | 9 | 0.12 | 250.0 | 3.25 |");
        assert_eq!(lines[3], "| 128 | - | - | - | - | - | - |");
        let j = s.to_json();
        assert_eq!(
            (j["networks"].clone(), j["agent_fds"][1].clone()),
            (json!(16), json!(42))
        );
        assert_eq!(j["udp_64b_kpps"], 250.0);
    }
}
