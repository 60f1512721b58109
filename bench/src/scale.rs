//! The control plane at scale (`ovnet-bench scale`): one etcd, `N` simulated hosts (each an
//! `ovnet-agent` in its own namespace on the underlay switch), one network. Measures, for each
//! host count:
//!
//! - **network everywhere**: from `ovctl network create` on host 1 until every agent has
//!   applied etcd's revision after it (each agent's `ovnet_etcd_watch_revision`, read from its
//!   metrics endpoint);
//! - **connect** and **first ping**: `ovctl network connect` of a fresh namespace on host `k`
//!   (made before the clock starts, as a runtime makes it before it asks for the network),
//!   and from its start until the first echo reply from that namespace to host 1's container,
//!   which pings it every millisecond from before the connect (a static neighbour entry spares
//!   it ARP's one-second retries, so the figure is ovnet's, not ARP's);
//! - **failed pings**: containers that then do not answer three pings;
//! - the agents' resident memory and their CPU over [`IDLE_WINDOW`] with nothing to do.
//!
//! Simulating more than about 32 hosts on one kernel overflows the one IPv4 neighbour table
//! all namespaces share (`net.ipv4.neigh.default.gc_thresh3`, 1024 entries by default);
//! [`NeighThresholds`] raises the thresholds for the run and restores them afterwards, also on
//! error or interrupt.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use ovnet_testbed::{in_netns, Pid, Testbed};
use ovnet_wire::MacAddr;
use serde_json::{json, Value};

use crate::args::ScaleArgs;
use crate::interrupt;
use crate::procstat;
use crate::stats;
use crate::topology::{agent_env, Binaries};

/// The network's subnet: host `k`'s container gets `10.200.0.{k + 1}` (the gateway is `.1`).
const SUBNET: &str = "10.200.0.0/16";
/// The broadcast address of [`SUBNET`].
pub(crate) const BROADCAST: Ipv4Addr = Ipv4Addr::new(10, 200, 255, 255);
/// The network's name.
const NETWORK: &str = "scale";
/// Where the agents serve their metrics, on their underlay address.
const METRICS_PORT: u16 = 9476;
/// How long the agents get to open their API sockets (all of them, started together).
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new network gets to reach every host, and a container to answer.
const SPREAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two sweeps over the agents' metrics while a network spreads.
const SPREAD_POLL: Duration = Duration::from_millis(5);
/// How long the agents' idle CPU is measured.
pub const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Neighbour-table thresholds for the run (`gc_thresh1..3`): room for a full mesh of 250
/// hosts' underlay and overlay neighbours.
const NEIGH_THRESHOLDS: [u64; 3] = [8192, 32768, 65536];
/// Hosts whose full mesh fits the kernel's default thresholds (1024 entries): 16 hosts have
/// 16 × 15 underlay and as many overlay neighbours, 480 in all.
const NEIGH_DEFAULT_HOSTS: u8 = 16;
/// The sysctls [`NeighThresholds`] raises.
const NEIGH_SYSCTLS: [&str; 3] = [
    "/proc/sys/net/ipv4/neigh/default/gc_thresh1",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh2",
    "/proc/sys/net/ipv4/neigh/default/gc_thresh3",
];

/// The kernel's neighbour-table thresholds raised for as long as this lives; the old values
/// come back on drop.
#[derive(Debug)]
pub struct NeighThresholds {
    saved: Vec<(PathBuf, String)>,
}

impl NeighThresholds {
    /// Raises each of `paths` to at least the matching value of `want`.
    pub fn raise_at(paths: &[&Path], want: &[u64]) -> Result<NeighThresholds> {
        let mut guard = NeighThresholds { saved: Vec::new() };
        for (path, &want) in paths.iter().zip(want) {
            let old = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let current: u64 = old
                .trim()
                .parse()
                .with_context(|| format!("{} holds {old:?}", path.display()))?;
            if current >= want {
                continue;
            }
            std::fs::write(path, want.to_string())
                .with_context(|| format!("raising {} to {want} (needs root)", path.display()))?;
            guard
                .saved
                .push((path.to_path_buf(), old.trim().to_string()));
        }
        Ok(guard)
    }

    /// Raises the IPv4 neighbour thresholds to [`NEIGH_THRESHOLDS`] if `hosts` need it (more
    /// than [`NEIGH_DEFAULT_HOSTS`]); fewer leave the machine-wide setting alone, so that runs
    /// beside other tests do not change it under them.
    pub fn raise_for(hosts: u8) -> Result<Option<NeighThresholds>> {
        if hosts <= NEIGH_DEFAULT_HOSTS {
            return Ok(None);
        }
        let paths: Vec<&Path> = NEIGH_SYSCTLS.iter().map(Path::new).collect();
        NeighThresholds::raise_at(&paths, &NEIGH_THRESHOLDS).map(Some)
    }
}

impl Drop for NeighThresholds {
    fn drop(&mut self) {
        // gc_thresh1 <= 2 <= 3 is not enforced, but restore from the top down anyway.
        for (path, old) in self.saved.iter().rev() {
            if let Err(e) = std::fs::write(path, old) {
                eprintln!("could not restore {} to {old}: {e}", path.display());
            }
        }
    }
}

/// One host count's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleResult {
    /// Simulated hosts.
    pub hosts: u8,
    /// From `ovctl network create` to every agent having applied it, ms (`None`: some agent
    /// did not within [`SPREAD_TIMEOUT`]).
    pub network_everywhere_ms: Option<f64>,
    /// Each measured `ovctl network connect`, ms.
    pub connect_ms: Vec<f64>,
    /// From each connect's start to the first echo reply, ms.
    pub first_ping_ms: Vec<f64>,
    /// Containers that did not answer within [`SPREAD_TIMEOUT`], or not three pings later.
    pub failed: usize,
    /// Each agent's resident memory at the end, KiB.
    pub rss_kib: Vec<u64>,
    /// All agents' CPU over [`IDLE_WINDOW`] with nothing to do, seconds.
    pub idle_cpu_s: Option<f64>,
    /// etcd's WAL fsyncs over the run, from its metrics (`None`: not read).
    pub etcd_fsyncs: Option<Fsyncs>,
}

/// What etcd's `etcd_disk_wal_fsync_duration_seconds` histogram says: every claim a connect
/// makes waits for one, so a slow disk shows in the connects' tail.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Fsyncs {
    /// WAL fsyncs.
    pub count: f64,
    /// Of them, slower than [`SLOW_FSYNC_S`].
    pub slow: f64,
    /// The upper bound of the slowest one's bucket, ms.
    pub slowest_ms: f64,
}

/// A WAL fsync this slow (etcd's histogram has a bucket bound there) stalls a connect visibly.
pub const SLOW_FSYNC_S: f64 = 0.064;

/// etcd's WAL fsyncs from its Prometheus text exposition.
pub fn fsyncs(text: &str) -> Option<Fsyncs> {
    let scrape = scrape(text)?;
    scrape.samples.iter().find_map(|s| {
        let prometheus_parse::Value::Histogram(buckets) = &s.value else {
            return None;
        };
        if s.metric != "etcd_disk_wal_fsync_duration_seconds" {
            return None;
        }
        let count = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
        let within = |le: f64| {
            buckets
                .iter()
                .filter(|b| b.less_than <= le)
                .map(|b| b.count)
                .fold(0.0, f64::max)
        };
        let slowest = buckets
            .iter()
            .filter(|b| b.count >= count)
            .map(|b| b.less_than)
            .fold(f64::INFINITY, f64::min);
        Some(Fsyncs {
            count,
            slow: count - within(SLOW_FSYNC_S),
            slowest_ms: slowest * 1e3,
        })
    })
}

/// A Prometheus text exposition, parsed.
fn scrape(text: &str) -> Option<prometheus_parse::Scrape> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()
}

impl ScaleResult {
    /// The JSON of this result.
    pub fn to_json(&self) -> Value {
        let dist = |v: &[f64]| {
            json!({
                "p50": stats::percentile(v, 50.0),
                "p99": stats::percentile(v, 99.0),
                "max": stats::percentile(v, 100.0),
                "samples": v,
            })
        };
        json!({
            "hosts": self.hosts,
            "network_everywhere_ms": self.network_everywhere_ms,
            "connect_ms": dist(&self.connect_ms),
            "first_ping_ms": dist(&self.first_ping_ms),
            "failed_pings": self.failed,
            "agent_rss_kib": dist(&self.rss_kib.iter().map(|&k| k as f64).collect::<Vec<_>>()),
            "idle_cpu_s_all_agents": self.idle_cpu_s,
            "idle_window_s": IDLE_WINDOW.as_secs_f64(),
            "etcd_wal_fsyncs": self.etcd_fsyncs.map(|f| json!({
                "count": f.count,
                "slower_than_s": SLOW_FSYNC_S,
                "slow": f.slow,
                "slowest_bucket_ms": f.slowest_ms,
            })),
        })
    }
}

/// The table of `results`, one row per host count.
pub fn table(results: &[ScaleResult]) -> String {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let mut out = String::from(
        "| hosts | network on every host (ms) | connect p50 / p99 (ms) | connect → first ping p50 / p99 / max (ms) | failed pings | agent RSS median (MiB) | idle CPU per agent (% core) | etcd WAL fsyncs > 64 ms (slowest ≤) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let p = |v: &[f64], q: f64| ms(stats::percentile(v, q));
        let rss: Vec<f64> = r.rss_kib.iter().map(|&k| k as f64 / 1024.0).collect();
        let idle = r.idle_cpu_s.map_or("-".to_string(), |s| {
            format!(
                "{:.2}",
                100.0 * s / IDLE_WINDOW.as_secs_f64() / f64::from(r.hosts)
            )
        });
        let disk = r.etcd_fsyncs.map_or("-".to_string(), |f| {
            format!("{:.0} of {:.0} ({:.0} ms)", f.slow, f.count, f.slowest_ms)
        });
        out.push_str(&format!(
            "| {} | {} | {} / {} | {} / {} / {} | {} | {} | {idle} | {disk} |\n",
            r.hosts,
            ms(r.network_everywhere_ms),
            p(&r.connect_ms, 50.0),
            p(&r.connect_ms, 99.0),
            p(&r.first_ping_ms, 50.0),
            p(&r.first_ping_ms, 99.0),
            p(&r.first_ping_ms, 100.0),
            r.failed,
            stats::percentile(&rss, 50.0).map_or("-".to_string(), |m| format!("{m:.1}")),
        ));
    }
    out
}

/// The container address of host `k`.
pub fn container_ip(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 200, 0, k + 1)
}

/// The hosts whose connects are measured: `count` of `2..=hosts`, evenly spread, the last
/// host always among them.
pub fn measured_hosts(hosts: u8, count: usize) -> Vec<u8> {
    let others: Vec<u8> = (2..=hosts).collect();
    if count >= others.len() {
        return others;
    }
    let step = others.len() as f64 / count.max(1) as f64;
    let mut picked: Vec<u8> = (1..=count)
        .map(|i| others[((i as f64 * step).ceil() as usize).clamp(1, others.len()) - 1])
        .collect();
    picked.dedup();
    picked
}

/// The revision in an etcd v3 JSON answer (`{"header": {"revision": "42", ...}}`).
pub fn etcd_revision(answer: &str) -> Option<i64> {
    let v: Value = serde_json::from_str(answer).ok()?;
    let r = &v["header"]["revision"];
    r.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| r.as_i64())
}

/// The value of the unlabelled gauge `name` in a Prometheus text exposition.
pub fn gauge(text: &str, name: &str) -> Option<f64> {
    scrape(text)?.samples.into_iter().find_map(|s| {
        if s.metric != name || !s.labels.is_empty() {
            return None;
        }
        match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        }
    })
}

/// The Unix time of the first reply in `ping -D` output (`[1733367600.123456] 64 bytes from
/// ...`), in seconds.
pub fn first_reply_time(out: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let rest = l.strip_prefix('[')?;
        let (t, tail) = rest.split_once(']')?;
        tail.contains("bytes from").then(|| t.parse().ok())?
    })
}

/// `VmRSS` of `/proc/PID/status`, KiB.
pub fn rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix("VmRSS:")?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// One HTTP/1.0 request from the calling thread's namespace; returns the body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let resp = ovnet_testbed::http::request(addr, method, path, body)?;
    Ok(ovnet_testbed::http::body(&resp).to_owned())
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(crate) fn say(hosts: u8, what: &str) {
    eprintln!("[scale/{hosts}] {what}");
}

/// A running cluster of `hosts` agents.
pub(crate) struct Cluster<'b> {
    pub(crate) tb: Testbed,
    bins: &'b Binaries,
    etcd: SocketAddr,
    /// Per host: namespace, API socket, agent pid, underlay address.
    pub(crate) agents: Vec<(String, PathBuf, Pid, Ipv4Addr)>,
}

impl Cluster<'_> {
    pub(crate) fn start(hosts: u8, bins: &Binaries) -> Result<Cluster<'_>> {
        let mut tb = Testbed::new().context("creating the test bed (root, iproute2)")?;
        say(hosts, "starting etcd");
        let etcd_url = tb.start_etcd().context("starting etcd")?;
        let etcd: SocketAddr = etcd_url
            .trim_start_matches("http://")
            .parse()
            .with_context(|| format!("etcd's URL {etcd_url:?}"))?;
        let mut agents = Vec::new();
        say(hosts, &format!("starting {hosts} hosts and agents"));
        for n in 1..=hosts {
            interrupt::check()?;
            let h = tb.add_host(n).with_context(|| format!("adding host {n}"))?;
            let sock = tb.dir().join(format!("h{n}.sock"));
            let state = tb.dir().join(format!("state-h{n}"));
            let metrics = SocketAddr::new(h.underlay_ip.into(), METRICS_PORT).to_string();
            let args = [
                path_str(&bins.agent)?,
                "--node",
                &format!("h{n}"),
                "--etcd",
                &etcd_url,
                "--vtep-ip",
                &h.underlay_ip.to_string(),
                "--api",
                path_str(&sock)?,
                "--state-dir",
                path_str(&state)?,
                "--metrics-addr",
                &metrics,
            ];
            // Storm control off as in every bench: nothing here floods but `growth`'s peers.
            let pid = tb
                .spawn(&h.ns, &args, &agent_env("warn"))
                .with_context(|| format!("starting ovnet-agent on host {n}"))?;
            agents.push((h.ns.clone(), sock, pid, h.underlay_ip));
        }
        let deadline = Instant::now() + AGENT_START_TIMEOUT;
        for (i, (_, sock, pid, _)) in agents.iter().enumerate() {
            loop {
                interrupt::check()?;
                if let Some(st) = tb.try_wait(*pid)? {
                    bail!(
                        "ovnet-agent on host {} exited ({st}): {}",
                        i + 1,
                        tb.log(*pid).unwrap_or_default()
                    );
                }
                if std::os::unix::net::UnixStream::connect(sock).is_ok() {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!(
                        "ovnet-agent on host {} did not open its API within {AGENT_START_TIMEOUT:?}",
                        i + 1
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(Cluster {
            tb,
            bins,
            etcd,
            agents,
        })
    }

    /// `ovctl` against host `i`'s agent (0-based), run from here: the API is a Unix socket.
    /// Returns what it printed.
    pub(crate) fn ovctl(&mut self, i: usize, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bins.ovctl)
            .arg("--agent")
            .arg(&self.agents[i].1)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ovctl")?;
        if !out.status.success() {
            let pid = self.agents[i].2;
            bail!(
                "`ovctl {}` on host {} failed: {}\nits agent's log:\n{}",
                args.join(" "),
                i + 1,
                String::from_utf8_lossy(&out.stderr).trim(),
                self.tb.log(pid).unwrap_or_default()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The agents' pids, host 1 first.
    pub(crate) fn agent_pids(&self) -> Vec<u32> {
        self.agents.iter().map(|a| a.2 .0).collect()
    }

    /// `ovctl network create` of the bench's network, on host 1.
    pub(crate) fn create_network(&mut self) -> Result<()> {
        self.ovctl(
            0,
            &[
                "network", "create", "-d", "overlay", "--subnet", SUBNET, NETWORK,
            ],
        )?;
        Ok(())
    }

    /// etcd's current revision.
    /// etcd's metrics (its client URL serves them too).
    fn etcd_metrics(&self) -> Result<String> {
        let etcd = self.etcd;
        Ok(in_netns(self.tb.underlay(), move || {
            http(etcd, "GET", "/metrics", "")
        })??)
    }

    fn etcd_revision(&self) -> Result<i64> {
        let etcd = self.etcd;
        let answer = in_netns(self.tb.underlay(), move || {
            http(etcd, "POST", "/v3/kv/range", r#"{"key":"AA=="}"#)
        })??;
        etcd_revision(&answer).ok_or_else(|| anyhow!("no revision in etcd's answer {answer:?}"))
    }

    /// Waits until every agent has applied `revision`; returns when the last one had.
    fn wait_applied(&self, revision: i64, since: Instant) -> Result<Option<Duration>> {
        let addrs: Vec<SocketAddr> = self
            .agents
            .iter()
            .map(|a| SocketAddr::new(a.3.into(), METRICS_PORT))
            .collect();
        let polled = in_netns(self.tb.underlay(), move || -> Result<Option<Duration>> {
            let mut pending = addrs;
            let deadline = since + SPREAD_TIMEOUT;
            while !pending.is_empty() {
                interrupt::check()?;
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                let mut still = Vec::new();
                for a in pending {
                    let text = http(a, "GET", "/metrics", "").unwrap_or_default();
                    let applied = gauge(&text, "ovnet_etcd_watch_revision").unwrap_or(0.0);
                    if applied < revision as f64 {
                        still.push(a);
                    }
                }
                pending = still;
                // Poll, don't hammer: the agents being timed share these cores.
                std::thread::sleep(SPREAD_POLL);
            }
            Ok(Some(since.elapsed()))
        })??;
        Ok(polled)
    }

    /// A new container namespace on host `k` (1-based), not yet connected.
    pub(crate) fn container(&mut self, k: u8) -> Result<String> {
        self.tb
            .add_netns(&format!("c{k}"))
            .with_context(|| format!("adding the container namespace of host {k}"))
    }

    /// Connects host `k`'s container namespace `ns` to the bench's network with address
    /// [`container_ip`].
    pub(crate) fn connect_ns(&mut self, k: u8, ns: &str) -> Result<()> {
        let ip = container_ip(k).to_string();
        self.ovctl(
            usize::from(k - 1),
            &[
                "network", "connect", NETWORK, ns, "--netns", ns, "--ip", &ip,
            ],
        )?;
        Ok(())
    }

    /// Connects a fresh namespace on host `k` (1-based) to the bench's network with address
    /// [`container_ip`].
    pub(crate) fn connect(&mut self, k: u8) -> Result<String> {
        let ns = self.container(k)?;
        self.connect_ns(k, &ns)?;
        Ok(ns)
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))
}

/// The name of the first interface other than `lo` in `ip -o link show` output.
fn first_link(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let name = l.split(": ").nth(1)?.split('@').next()?;
        (name != "lo").then(|| name.to_string())
    })
}

/// Measures `hosts` simulated hosts, `connects` of whose connects are timed.
pub fn run(hosts: u8, connects: usize, bins: &Binaries) -> Result<ScaleResult> {
    if hosts < 2 {
        bail!("the scale bench needs at least 2 hosts");
    }
    let mut c = Cluster::start(hosts, bins)?;
    let mut out = ScaleResult {
        hosts,
        ..ScaleResult::default()
    };

    say(hosts, "ovctl network create (host 1)");
    let since = Instant::now();
    c.create_network()?;
    let revision = c.etcd_revision()?;
    out.network_everywhere_ms = c
        .wait_applied(revision, since)?
        .map(|d| d.as_secs_f64() * 1e3);
    say(
        hosts,
        &format!(
            "the network reached every agent after {:?} ms",
            out.network_everywhere_ms.map(|m| m.round())
        ),
    );

    // Host 1's container: the pinger.
    let c1 = c.connect(1)?;
    let links = c.tb.exec(&c1, &["ip", "-o", "link", "show"])?;
    let dev = first_link(&links).ok_or_else(|| anyhow!("no interface in {c1}: {links}"))?;

    let measured = measured_hosts(hosts, connects);
    let mut containers = vec![(1u8, c1.clone())];
    for k in 2..=hosts {
        interrupt::check()?;
        let ip = container_ip(k);
        let timed = measured.contains(&k);
        let pinger = if timed {
            let mac = MacAddr::from_ipv4_docker(ip).to_string();
            c.tb.exec(
                &c1,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &ip.to_string(),
                    "lladdr",
                    &mac,
                    "dev",
                    &dev,
                    "nud",
                    "permanent",
                ],
            )?;
            let deadline = SPREAD_TIMEOUT.as_secs().to_string();
            Some(
                Command::new("ip")
                    .args(["netns", "exec", &c1, "ping", "-D", "-n", "-c", "1"])
                    .args(["-i", "0.001", "-w", &deadline, &ip.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("starting ping")?,
            )
        } else {
            None
        };
        // Let the pinger start sending before the clock starts.
        if pinger.is_some() {
            std::thread::sleep(Duration::from_millis(20));
        }
        // The namespace first, as a runtime makes it before it asks for the network.
        let ns = c.container(k)?;
        let t0 = now_unix();
        let started = Instant::now();
        c.connect_ns(k, &ns)?;
        let connect = started.elapsed();
        containers.push((k, ns));
        let Some(pinger) = pinger else { continue };
        out.connect_ms.push(connect.as_secs_f64() * 1e3);
        let ping = pinger.wait_with_output().context("waiting for ping")?;
        match first_reply_time(&String::from_utf8_lossy(&ping.stdout)) {
            Some(t) => {
                let ms = (t - t0) * 1e3;
                out.first_ping_ms.push(ms);
                say(
                    hosts,
                    &format!(
                        "host {k}: connect {:.0} ms, first ping after {ms:.0} ms",
                        connect.as_secs_f64() * 1e3
                    ),
                );
            }
            None => {
                out.failed += 1;
                say(
                    hosts,
                    &format!("host {k}: no reply within {SPREAD_TIMEOUT:?}"),
                );
            }
        }
    }

    say(hosts, "pinging every container from host 1's");
    for (k, _) in containers.iter().skip(1) {
        interrupt::check()?;
        let ip = container_ip(*k).to_string();
        let ok =
            c.tb.exec(
                &c1,
                &["ping", "-n", "-q", "-c", "3", "-i", "0.01", "-W", "1", &ip],
            )
            .map(|o| o.contains(" 0% packet loss"))
            .unwrap_or(false);
        if !ok {
            out.failed += 1;
            say(hosts, &format!("{ip} (host {k}) lost pings"));
        }
    }

    let pids = c.agent_pids();
    say(hosts, &format!("idle for {IDLE_WINDOW:?}"));
    let before = procstat::total_of(&pids);
    interrupt::sleep(IDLE_WINDOW)?;
    out.idle_cpu_s = before
        .zip(procstat::total_of(&pids))
        .map(|(b, a)| procstat::seconds(a.saturating_sub(b)));
    out.etcd_fsyncs = c.etcd_metrics().ok().and_then(|t| fsyncs(&t));
    out.rss_kib = pids
        .iter()
        .filter_map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| rss_kib(&s))
        })
        .collect();
    say(hosts, "tearing down");
    drop(c);
    Ok(out)
}

/// Runs every host count of `args` in turn, prints the table and writes the JSON; returns
/// whether every count was measured.
pub fn run_all(args: &ScaleArgs) -> Result<bool> {
    let bins = Binaries::locate()?;
    let _thresholds = NeighThresholds::raise_for(args.hosts.iter().copied().max().unwrap_or(0))?;
    let started = Instant::now();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for &hosts in &args.hosts {
        if interrupt::is_set() {
            break;
        }
        match run(hosts, args.connects, &bins) {
            Ok(r) => results.push(r),
            Err(e) => {
                say(hosts, &format!("FAILED: {e:#}"));
                errors.push(json!({"hosts": hosts, "error": format!("{e:#}")}));
            }
        }
    }
    print!("{}", table(&results));
    let doc = json!({
        "config": {
            "hosts": args.hosts,
            "connects": args.connects,
            "load": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "agent": bins.agent.display().to_string(),
        },
        "results": results.iter().map(ScaleResult::to_json).collect::<Vec<_>>(),
        "errors": errors,
        "runtime_s": started.elapsed().as_secs_f64(),
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!("results in {}", args.json.display());
    Ok(errors.is_empty() && !interrupt::is_set())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_hosts_spread_and_end_at_the_last() {
        assert_eq!(measured_hosts(5, 10), vec![2, 3, 4, 5]);
        assert_eq!(measured_hosts(2, 1), vec![2]);
        let m = measured_hosts(100, 20);
        assert_eq!(m.len(), 20);
        assert_eq!(m.last(), Some(&100));
        assert!(m.windows(2).all(|w| w[0] < w[1]), "{m:?}");
        assert!(m.iter().all(|&k| (2..=100).contains(&k)));
    }

    #[test]
    fn parses_etcd_metrics_ping_and_status() {
        let etcd =
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"42","raft_term":"3"}}"#;
        assert_eq!(etcd_revision(etcd), Some(42));
        assert_eq!(etcd_revision(r#"{"header":{}}"#), None);
        assert_eq!(etcd_revision("not json"), None);
        let metrics = "# HELP ovnet_etcd_watch_revision etcd revision\n\
                       # TYPE ovnet_etcd_watch_revision gauge\n\
                       ovnet_etcd_watch_revision 17\n\
                       ovnet_etcd_watch_revision_other 3\n";
        assert_eq!(gauge(metrics, "ovnet_etcd_watch_revision"), Some(17.0));
        assert_eq!(gauge(metrics, "ovnet_ready"), None);
        // etcd's WAL fsyncs: 403, one of them between 128 and 256 ms.
        let etcd = "# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
                    # TYPE etcd_disk_wal_fsync_duration_seconds histogram
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 354
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.032\"} 402
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.064\"} 402
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.128\"} 402
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.256\"} 403
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 403
                    etcd_disk_wal_fsync_duration_seconds_sum 1.5
                    etcd_disk_wal_fsync_duration_seconds_count 403
";
        assert_eq!(
            fsyncs(etcd),
            Some(Fsyncs {
                count: 403.0,
                slow: 1.0,
                slowest_ms: 256.0
            })
        );
        assert_eq!(fsyncs(metrics), None);
        let ping = "PING 10.200.0.3 (10.200.0.3) 56(84) bytes of data.\n\
                    [1733367600.123456] 64 bytes from 10.200.0.3: icmp_seq=57 ttl=64 time=0.2 ms\n";
        assert_eq!(first_reply_time(ping), Some(1733367600.123456));
        assert_eq!(
            first_reply_time("PING x\n[1.5] From 10.0.0.1 Destination Host Unreachable\n"),
            None
        );
        assert_eq!(
            rss_kib("Name:\tovnet-agent\nVmRSS:\t   7936 kB\n"),
            Some(7936)
        );
        assert_eq!(rss_kib("Name: x\n"), None);
        assert_eq!(
            first_link("1: lo: <LOOPBACK>\n5: eth0@if6: <UP>\n"),
            Some("eth0".into())
        );
    }

    #[test]
    fn the_table_has_a_row_per_host_count() {
        let r = ScaleResult {
            hosts: 16,
            network_everywhere_ms: Some(120.4),
            connect_ms: vec![50.0, 60.0],
            first_ping_ms: vec![80.0, 90.0],
            failed: 0,
            rss_kib: vec![8192, 8192],
            idle_cpu_s: Some(0.16),
            etcd_fsyncs: Some(Fsyncs {
                count: 400.0,
                slow: 1.0,
                slowest_ms: 256.0,
            }),
        };
        let t = table(std::slice::from_ref(&r));
        assert!(
            t.contains(
                "| 16 | 120 | 50 / 60 | 80 / 90 / 90 | 0 | 8.0 | 0.10 | 1 of 400 (256 ms) |"
            ),
            "{t}"
        );
        assert_eq!(r.to_json()["etcd_wal_fsyncs"]["slow"], 1.0);
        assert_eq!(r.to_json()["first_ping_ms"]["p99"], 90.0);
    }

    #[test]
    fn thresholds_are_raised_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (1..=3).map(|i| dir.path().join(format!("t{i}"))).collect();
        for (p, v) in paths.iter().zip(["128", "100000", "1024"]) {
            std::fs::write(p, format!("{v}\n")).unwrap();
        }
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let read = || -> Vec<String> {
            paths
                .iter()
                .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string())
                .collect()
        };
        {
            let _g = NeighThresholds::raise_at(&refs, &[8192, 32768, 65536]).unwrap();
            assert_eq!(read(), vec!["8192", "100000", "65536"], "never lowered");
        }
        assert_eq!(read(), vec!["128", "100000", "1024"]);
        std::fs::write(&paths[0], "junk").unwrap();
        assert!(NeighThresholds::raise_at(&refs, &[1, 1, 1]).is_err());
        // A few hosts leave the machine's setting alone.
        assert!(NeighThresholds::raise_for(NEIGH_DEFAULT_HOSTS)
            .unwrap()
            .is_none());
    }
}
