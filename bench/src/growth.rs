//! Cost as the work grows (`ovnet-bench growth`): two hosts with an agent each, and 1, 16,
//! 128... networks, each with one container per host. At each step: each agent's resident
//! memory, open descriptors and threads, its CPU with nothing to do, and 64-byte UDP through
//! the first network (received packets per second and the agents' CPU per packet) while the
//! others sit idle: what an extra network costs when unused, and whether it slows the busy one.
//!
//! Not covered yet: peers (2, 8, 32 hosts flooding one network) and a plot.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::args::GrowthArgs;
use crate::iperf;
use crate::procstat;
use crate::scale::{rss_kib, Cluster};
use crate::topology::Binaries;
use crate::{interrupt, stats};

/// iperf3's port.
const PORT: &str = "5201";

/// One step's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GrowthStep {
    /// Networks on both hosts.
    pub networks: u32,
    /// Each agent's resident memory, KiB.
    pub rss_kib: Vec<u64>,
    /// Each agent's open descriptors.
    pub fds: Vec<u64>,
    /// Each agent's threads.
    pub threads: Vec<u64>,
    /// Both agents' CPU over the idle window, in percent of a core per agent.
    pub idle_core_percent: Option<f64>,
    /// 64-byte UDP through network 1: datagrams received per second, thousands.
    pub udp_kpps: Option<f64>,
    /// Both agents' CPU per datagram received meanwhile, µs.
    pub cpu_us_per_packet: Option<f64>,
}

impl GrowthStep {
    /// The JSON of this step.
    pub fn to_json(&self) -> Value {
        json!({
            "networks": self.networks,
            "agent_rss_kib": self.rss_kib,
            "agent_fds": self.fds,
            "agent_threads": self.threads,
            "idle_core_percent_per_agent": self.idle_core_percent,
            "udp_64b_kpps": self.udp_kpps,
            "agent_cpu_us_per_packet": self.cpu_us_per_packet,
        })
    }
}

/// The table of `steps`.
pub fn table(steps: &[GrowthStep]) -> String {
    let mean = |v: &[u64]| stats::mean(&v.iter().map(|&x| x as f64).collect::<Vec<_>>());
    let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let mut out = String::from(
        "| networks | agent RSS (MiB) | descriptors | threads | idle CPU per agent (% core) | UDP 64 B (kpps) | agent CPU per packet (µs) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for s in steps {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            s.networks,
            f(mean(&s.rss_kib).map(|k| k / 1024.0), 1),
            f(mean(&s.fds), 0),
            f(mean(&s.threads), 0),
            f(s.idle_core_percent, 2),
            f(s.udp_kpps, 1),
            f(s.cpu_us_per_packet, 2),
        ));
    }
    out
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

fn say(what: &str) {
    eprintln!("[growth] {what}");
}

/// Runs the steps of `networks` (ascending) with `duration` seconds per UDP and idle window.
pub fn run(networks: &[u32], duration: u32, bins: &Binaries) -> Result<Vec<GrowthStep>> {
    let mut c = Cluster::start(2, bins)?;
    let mut made = 0u32;
    let mut containers: Vec<[String; 2]> = Vec::new();
    let mut steps = Vec::new();
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
            containers.push([pair[0].clone(), pair[1].clone()]);
            made += 1;
        }
        steps.push(measure(&mut c, made, &containers[0], duration)?);
    }
    Ok(steps)
}

/// The figures of one step.
fn measure(
    c: &mut Cluster<'_>,
    networks: u32,
    first: &[String; 2],
    duration: u32,
) -> Result<GrowthStep> {
    let pids: Vec<u32> = c.agents.iter().map(|a| a.2 .0).collect();
    let cpu = |pids: &[u32]| -> Option<u64> {
        pids.iter()
            .map(|p| procstat::read(&p.to_string()).ok().map(|t| t.total()))
            .sum()
    };
    // The first network answers before anything is timed.
    let server_ip = address(0, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .tb
        .exec(&first[0], &["ping", "-c", "1", "-W", "1", &server_ip])
        .is_err()
    {
        interrupt::check()?;
        if Instant::now() >= deadline {
            bail!("{server_ip} does not answer in network g0");
        }
    }
    let window = Duration::from_secs(u64::from(duration));
    say(&format!("{networks} networks: idle for {window:?}"));
    let before = cpu(&pids);
    let t0 = Instant::now();
    while t0.elapsed() < window {
        interrupt::check()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    let idle_core_percent = before.zip(cpu(&pids)).map(|(b, a)| {
        100.0 * procstat::seconds(a.saturating_sub(b))
            / t0.elapsed().as_secs_f64()
            / pids.len() as f64
    });
    let mut step = GrowthStep {
        networks,
        idle_core_percent,
        ..GrowthStep::default()
    };
    for p in &pids {
        let status = std::fs::read_to_string(format!("/proc/{p}/status"))?;
        step.rss_kib.extend(rss_kib(&status));
        step.threads.extend(threads(&status));
        step.fds
            .push(std::fs::read_dir(format!("/proc/{p}/fd"))?.count() as u64);
    }

    say(&format!(
        "{networks} networks: UDP 64 B through g0 for {duration} s"
    ));
    let log = c.tb.dir().join(format!("growth-{networks}.json"));
    let log_s = log.to_string_lossy().into_owned();
    let server =
        c.tb.spawn(
            &first[1],
            &["iperf3", "-s", "-1", "-B", &server_ip, "-p", PORT],
            &[],
        )
        .context("starting the iperf3 server")?;
    let listening = Instant::now() + Duration::from_secs(10);
    let filter = format!("sport = :{PORT}");
    while c
        .tb
        .exec(&first[1], &["ss", "-H", "-l", "-t", "-n", &filter])?
        .trim()
        .is_empty()
    {
        if Instant::now() >= listening {
            bail!("the iperf3 server did not listen");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = cpu(&pids);
    let dur = duration.to_string();
    c.tb.exec(
        &first[0],
        &[
            "iperf3",
            "-c",
            &server_ip,
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
    let after = cpu(&pids);
    if c.tb
        .wait_timeout(server, Duration::from_secs(10))?
        .is_none()
    {
        c.tb.stop(server)?;
    }
    let json = std::fs::read_to_string(&log).map_err(|e| anyhow!("no iperf3 report: {e}"))?;
    let udp = iperf::parse_udp(&json)?;
    let pps = udp.received_per_second();
    step.udp_kpps = Some(pps / 1000.0);
    step.cpu_us_per_packet = before.zip(after).and_then(|(b, a)| {
        let packets = pps * f64::from(duration);
        (packets > 0.0).then(|| procstat::seconds(a.saturating_sub(b)) * 1e6 / packets)
    });
    say(&format!(
        "{networks} networks: {:.1} kpps, {:?} µs of agent CPU per packet",
        pps / 1000.0,
        step.cpu_us_per_packet.map(|u| (u * 100.0).round() / 100.0)
    ));
    Ok(step)
}

/// Runs the steps of `args`, prints the table and writes the JSON.
pub fn run_all(args: &GrowthArgs) -> Result<()> {
    let bins = Binaries::locate()?;
    let started = Instant::now();
    let steps = run(&args.networks, args.duration, &bins)?;
    print!("{}", table(&steps));
    let doc = json!({
        "config": {
            "networks": args.networks,
            "duration_s": args.duration,
            "load": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "agent": bins.agent.display().to_string(),
        },
        "steps": steps.iter().map(GrowthStep::to_json).collect::<Vec<_>>(),
        "runtime_s": started.elapsed().as_secs_f64(),
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("results in {}", args.json.display());
    Ok(())
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
            rss_kib: vec![10240, 12288],
            fds: vec![40, 42],
            threads: vec![9, 9],
            idle_core_percent: Some(0.12),
            udp_kpps: Some(250.0),
            cpu_us_per_packet: Some(3.25),
        };
        let t = table(std::slice::from_ref(&s));
        assert!(
            t.contains("| 16 | 11.0 | 41 | 9 | 0.12 | 250.0 | 3.25 |"),
            "{t}"
        );
        assert_eq!(s.to_json()["agent_fds"][1], 42);
    }
}
