//! The measurements, run in the containers of a [`Bed`]: iperf3 TCP with one and two streams,
//! iperf3 UDP with 64-byte datagrams at unlimited rate, ping round trips every 1, 10 and 100
//! ms and beside a TCP stream, the agents' CPU with no traffic, and 64-byte broadcasts from
//! one container counted at the others (the flood); one at a time (the harness takes each
//! `--repeat` times on every bed in turn), with the VXLAN path's CPU time, the whole machine's
//! busy time and the pages its allocator handed out read around every iperf3 test (the latter
//! two per byte moved for TCP: what a byte costs, whatever runs where, and how many fresh
//! buffers it went through).
//!
//! iperf3's server (`-s -1`, one test then exit) runs in the server container and the client
//! in the client container, both started through the test bed so that they die with it. Their
//! JSON goes to files in the test bed's directory (`--logfile`), apart from anything they print.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ovnet_testbed::{Pid, Testbed};

use crate::args::Args;
use crate::flood::Flood;
use crate::interrupt;
use crate::iperf;
use crate::kinds::Test;
use crate::ping::{self, PingRun};
use crate::procstat;
use crate::report::{Metric, VariantResult};
use crate::topology::{progress, Bed};

/// iperf3's port.
const PORT: &str = "5201";
/// A ping test: how often, how many, and where its figures go.
#[derive(Debug, Clone, Copy)]
pub struct PingTest {
    /// Seconds between echo requests (below 0.2 s needs root).
    pub interval: &'static str,
    /// Echo requests per run: a few seconds' worth, enough for a 99th percentile.
    pub count: u32,
    /// Median round trip.
    p50: Metric,
    /// 99th percentile.
    p99: Metric,
    /// Agent CPU meanwhile, in percent of a core.
    core: Option<Metric>,
}

/// A ping every millisecond, for 2 s.
pub const PING1: PingTest = PingTest {
    interval: "0.001",
    count: 2000,
    p50: Metric::PingP50At1,
    p99: Metric::PingP99At1,
    core: Some(Metric::CorePing1),
};

/// A ping every 10 ms, for 5 s.
pub const PING10: PingTest = PingTest {
    interval: "0.01",
    count: 500,
    p50: Metric::PingP50At10,
    p99: Metric::PingP99At10,
    core: Some(Metric::CorePing10),
};

/// A ping every 100 ms, for 10 s.
pub const PING100: PingTest = PingTest {
    interval: "0.1",
    count: 100,
    p50: Metric::PingP50At100,
    p99: Metric::PingP99At100,
    core: Some(Metric::CorePing100),
};

/// A ping every 10 ms beside a TCP stream (its count follows `--duration`).
const PING_LOAD: PingTest = PingTest {
    interval: "0.01",
    count: 0,
    p50: Metric::PingP50Load,
    p99: Metric::PingP99Load,
    core: None,
};

/// How long the TCP stream of the ping-under-load test runs before and after the pings.
const LOAD_MARGIN: Duration = Duration::from_secs(1);
/// Payload of a UDP datagram in the UDP test.
pub const UDP_PAYLOAD: &str = "64";
/// Slack on top of `--duration` before an iperf3 client (or a flood's sender) counts as hung.
pub(crate) const IPERF_SLACK: Duration = Duration::from_secs(30);
/// How long the server gets to listen, and to exit after its client.
const SERVER_WAIT: Duration = Duration::from_secs(10);

/// One iperf3 test's outcome: its JSON report, the VXLAN path's CPU ticks during it and the
/// whole machine's busy ticks.
struct IperfRun {
    json: String,
    cpu_ticks: Option<u64>,
    machine_ticks: Option<u64>,
    /// Pages the machine allocated meanwhile (`/proc/vmstat`).
    pages_allocated: Option<u64>,
    /// The busiest data-plane worker's share of the workers' CPU meanwhile, in percent.
    busiest_worker: Option<f64>,
}

/// An iperf3 run under way: its processes, and the counters read at its start.
struct Running {
    server: Pid,
    client: Pid,
    cli_log: PathBuf,
    before: Option<u64>,
    machine_before: Option<u64>,
    pages_before: Option<u64>,
    workers_before: Option<Vec<Vec<u64>>>,
}

/// Adds `value` (a per-byte figure of one run; `None` if its counters could not be read or
/// nothing moved) to `metric` and returns the progress suffix `say` makes of it (empty for
/// `None`).
fn record(
    out: &mut VariantResult,
    metric: Metric,
    value: Option<f64>,
    say: fn(f64) -> String,
) -> String {
    value.map_or_else(String::new, |v| {
        out.push(metric, v);
        say(v)
    })
}

/// Where one TCP test's figures go.
struct TcpMetrics {
    streams: u32,
    throughput: Metric,
    cpu: Metric,
    machine_cpu: Metric,
    pages: Metric,
    /// Where the busiest worker's share goes, if this test records it.
    busiest_worker: Option<Metric>,
}

const TCP1: TcpMetrics = TcpMetrics {
    streams: 1,
    throughput: Metric::Tcp1,
    cpu: Metric::CpuTcp1,
    machine_cpu: Metric::MachineCpuTcp1,
    pages: Metric::PagesTcp1,
    busiest_worker: None,
};

const TCP2: TcpMetrics = TcpMetrics {
    streams: 2,
    throughput: Metric::Tcp2,
    cpu: Metric::CpuTcp2,
    machine_cpu: Metric::MachineCpuTcp2,
    pages: Metric::PagesTcp2,
    busiest_worker: Some(Metric::BusiestWorkerTcp2),
};

/// Takes measurement `test` once on `bed`, as run `round` of `repeat`, adding its samples to
/// `out`.
pub fn run(
    bed: &mut Bed,
    test: Test,
    round: u32,
    args: &Args,
    out: &mut VariantResult,
) -> Result<()> {
    let mut m = Measurer {
        bed,
        duration: args.duration,
        tcp_block: args.tcp_block,
        name: format!("{round}-{}", test.key()),
        at: format!("run {round}/{}", args.repeat),
    };
    match test {
        Test::Tcp1 => m.tcp(&TCP1, out),
        Test::Tcp2 => m.tcp(&TCP2, out),
        Test::Udp => m.udp(out),
        Test::Ping1 => m.ping(&PING1, out),
        Test::Ping10 => m.ping(&PING10, out),
        Test::Ping100 => m.ping(&PING100, out),
        Test::PingLoad => m.ping_under_load(out),
        Test::Idle => m.idle(out),
        Test::Flood => m.flood(out),
    }
}

struct Measurer<'b> {
    bed: &'b mut Bed,
    duration: u32,
    /// Bytes per write of the TCP tests' client (`--tcp-block`); `None`: iperf3's default.
    tcp_block: Option<u32>,
    /// Names the iperf3 logs of this measurement.
    name: String,
    /// Which run this is, for progress lines.
    at: String,
}

impl Measurer<'_> {
    fn say(&self, what: &str) {
        let at = (self.bed.topology, self.bed.variant);
        progress(at, &format!("{}: {what}", self.at));
    }

    fn tcp(&mut self, t: &TcpMetrics, out: &mut VariantResult) -> Result<()> {
        let (streams, duration) = (t.streams, self.duration);
        let what = format!("TCP {streams} stream{}", if streams > 1 { "s" } else { "" });
        self.say(&format!("{what} for {duration} s"));
        let (streams_s, block) = (streams.to_string(), self.tcp_block.map(|b| b.to_string()));
        let mut opts = vec!["-P", &streams_s];
        if let Some(b) = &block {
            opts.extend(["-l", b]);
        }
        let run = self.iperf(&opts)?;
        let tcp = iperf::parse_tcp(&run.json).with_context(|| format!("{what}, {}", self.at))?;
        out.push(t.throughput, tcp.gbit_per_second());
        let cpu = self.record_cpu(out, t.cpu, &run);
        let gb = tcp.gbit_per_second() * f64::from(duration) / 8.0;
        let per_gb = record(
            out,
            t.machine_cpu,
            run.machine_ticks
                .filter(|_| gb > 0.0)
                .map(|t| procstat::seconds(t) / gb),
            |s| format!(", machine CPU {s:.3} s/GB"),
        );
        let busiest = match t.busiest_worker {
            Some(m) => record(out, m, run.busiest_worker, |p| {
                format!(", busiest worker {p:.0} % of the workers' CPU")
            }),
            None => String::new(),
        };
        let pages = record(
            out,
            t.pages,
            run.pages_allocated
                .and_then(|p| procstat::pages_per_page_moved(p, gb * 1e9)),
            |r| format!(", {r:.2} pages allocated per page moved"),
        );
        let pages = format!("{pages}{busiest}");
        self.say(&format!(
            "{what}: {:.2} Gbit/s{}{cpu}{per_gb}{pages}",
            tcp.gbit_per_second(),
            tcp.retransmits
                .map(|n| format!(", {n} retransmits"))
                .unwrap_or_default()
        ));
        Ok(())
    }

    fn udp(&mut self, out: &mut VariantResult) -> Result<()> {
        self.say(&format!("UDP {UDP_PAYLOAD} B for {} s", self.duration));
        let run = self.iperf(&["-u", "-l", UDP_PAYLOAD, "-b", "0"])?;
        let udp = iperf::parse_udp(&run.json).with_context(|| format!("UDP, {}", self.at))?;
        out.push(Metric::Udp64Kpps, udp.received_per_second() / 1000.0);
        out.push(Metric::Udp64Loss, udp.loss_percent());
        let cpu = self.record_cpu(out, Metric::CpuUdp64, &run);
        self.say(&format!(
            "UDP {UDP_PAYLOAD} B: {:.1} kpps received, {:.2} % lost{cpu}",
            udp.received_per_second() / 1000.0,
            udp.loss_percent()
        ));
        // Let the queues the UDP flood filled drain before the next measurement.
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    }

    fn ping(&mut self, t: &PingTest, out: &mut VariantResult) -> Result<()> {
        self.say(&format!("ping x{} every {} s", t.count, t.interval));
        let before = self.bed.cpu_ticks()?;
        let started = Instant::now();
        let p = self.ping_once(t.interval, t.count)?;
        let core = self.core_percent(before, started)?;
        self.record_ping(t, &p, out);
        if let (Some(metric), Some(c)) = (t.core, core) {
            out.push(metric, c);
            self.say(&format!("agent CPU {c:.2} % of a core each"));
        }
        Ok(())
    }

    /// Adds a ping run's median and 99th percentile to `t`'s metrics.
    fn record_ping(&self, t: &PingTest, p: &PingRun, out: &mut VariantResult) {
        let (p50, p99) = (
            p.p50_ms().expect("ping_once() checked there were replies"),
            p.p99_ms().expect("ping_once() checked there were replies"),
        );
        out.push(t.p50, p50);
        out.push(t.p99, p99);
        self.say(&format!(
            "ping every {} s: p50 {p50:.3} ms, p99 {p99:.3} ms, {:.1} % lost",
            t.interval,
            p.loss_percent()
        ));
    }

    /// Pings every 10 ms while a TCP stream runs from the client to the server: the pings
    /// start [`LOAD_MARGIN`] after the stream and end as long before it.
    fn ping_under_load(&mut self, out: &mut VariantResult) -> Result<()> {
        let pings = u64::from(self.duration).saturating_sub(2 * LOAD_MARGIN.as_secs()) * 100;
        let count = pings.max(100) as u32;
        let seconds = (u64::from(count) / 100 + 2 * LOAD_MARGIN.as_secs()) as u32;
        self.say(&format!(
            "ping x{count} every 0.01 s beside TCP for {seconds} s"
        ));
        let running = self.iperf_start(&["-t", &seconds.to_string()])?;
        std::thread::sleep(LOAD_MARGIN);
        let pinged = self.ping_once(PING_LOAD.interval, count);
        let run = self.iperf_finish(running, Duration::from_secs(u64::from(seconds)))?;
        let p = pinged?;
        self.record_ping(&PING_LOAD, &p, out);
        let tcp = iperf::parse_tcp(&run.json).with_context(|| format!("TCP, {}", self.at))?;
        out.push(Metric::TcpUnderPing, tcp.gbit_per_second());
        Ok(())
    }

    /// The agents' CPU over `--duration` seconds without traffic.
    fn idle(&mut self, out: &mut VariantResult) -> Result<()> {
        self.say(&format!("idle for {} s", self.duration));
        let before = self.bed.cpu_ticks()?;
        let started = Instant::now();
        interrupt::sleep(Duration::from_secs(u64::from(self.duration)))?;
        if let Some(c) = self.core_percent(before, started)? {
            out.push(Metric::CoreIdle, c);
            self.say(&format!("idle: agent CPU {c:.2} % of a core each"));
        }
        Ok(())
    }

    /// 64-byte broadcasts from the client container for `--duration` seconds (the harness'
    /// own `flood-send`), counted at every other container's interface.
    fn flood(&mut self, out: &mut VariantResult) -> Result<()> {
        interrupt::check()?;
        let receivers: Vec<String> = self
            .bed
            .receivers
            .iter()
            .map(|(ns, _)| ns.clone())
            .collect();
        self.say(&format!(
            "flood of 64 B broadcasts to {} containers for {} s",
            receivers.len(),
            self.duration
        ));
        let cpu_before = self.bed.cpu_ticks()?;
        let client_ns = self.bed.client_ns.clone();
        let flood = Flood::start(
            &mut self.bed.tb,
            &client_ns,
            &receivers,
            crate::topology::BROADCAST_IP,
            self.duration,
        )?;
        let run = flood.finish(&mut self.bed.tb)?;
        let cpu_after = self.bed.cpu_ticks()?;
        let kpps = run.slowest_per_second() / 1000.0;
        let sent_kpps = run.sent.per_second() / 1000.0;
        out.push(Metric::FloodKpps, kpps);
        out.push(Metric::FloodSentKpps, sent_kpps);
        let cpu = match cpu_before.zip(cpu_after) {
            Some((b, a)) => {
                let s = procstat::seconds(a.saturating_sub(b));
                out.push(Metric::CpuFlood, s);
                format!(", VXLAN path CPU {s:.2} s")
            }
            None => String::new(),
        };
        self.say(&format!(
            "flood: {sent_kpps:.1} kpps sent, {kpps:.1} kpps received by the slowest receiver{cpu}"
        ));
        Ok(())
    }

    /// The VXLAN path's CPU since `before` (ticks read at `started`) in percent of a core per
    /// agent; `None` for the kernel.
    fn core_percent(&self, before: Option<u64>, started: Instant) -> Result<Option<f64>> {
        let after = self.bed.cpu_ticks()?;
        let wall = started.elapsed().as_secs_f64();
        Ok(before.zip(after).map(|(b, a)| {
            100.0 * procstat::seconds(a.saturating_sub(b))
                / wall.max(1e-3)
                / self.bed.agents() as f64
        }))
    }

    /// Adds the run's CPU seconds to `metric` and to [`Metric::Cpu`]; returns a progress suffix.
    fn record_cpu(&self, out: &mut VariantResult, metric: Metric, run: &IperfRun) -> String {
        match run.cpu_ticks {
            Some(t) => {
                let s = procstat::seconds(t);
                out.push(metric, s);
                out.push(Metric::Cpu, s);
                format!(", VXLAN path CPU {s:.2} s")
            }
            None => String::new(),
        }
    }

    fn log_path(&self, role: &str) -> PathBuf {
        self.bed
            .tb
            .dir()
            .join(format!("iperf-{}-{role}.json", self.name))
    }

    /// One iperf3 test of `--duration` seconds with `extra` client options; server and client
    /// are fresh processes.
    fn iperf(&mut self, extra: &[&str]) -> Result<IperfRun> {
        let duration = self.duration.to_string();
        let mut args = vec!["-t", &duration];
        args.extend_from_slice(extra);
        let running = self.iperf_start(&args)?;
        self.iperf_finish(running, Duration::from_secs(u64::from(self.duration)))
    }

    /// Starts an iperf3 server and a client with `extra` options (`-t` among them), and reads
    /// the counters the run is measured by.
    fn iperf_start(&mut self, extra: &[&str]) -> Result<Running> {
        interrupt::check()?;
        let (srv_log, cli_log) = (self.log_path("server"), self.log_path("client"));
        let ip = self.bed.server_ip.to_string();
        let server_ns = self.bed.server_ns.clone();
        let client_ns = self.bed.client_ns.clone();
        let srv_log_s = srv_log.to_string_lossy().into_owned();
        let server = self
            .bed
            .tb
            .spawn(
                &server_ns,
                &[
                    "iperf3",
                    "-s",
                    "-1",
                    "-J",
                    "-B",
                    &ip,
                    "-p",
                    PORT,
                    "--logfile",
                    &srv_log_s,
                ],
                &[],
            )
            .context("starting the iperf3 server")?;
        self.wait_listening(&server_ns, server)?;
        let cli_log_s = cli_log.to_string_lossy().into_owned();
        let mut args = vec![
            "iperf3",
            "-c",
            &ip,
            "-p",
            PORT,
            "-J",
            "--logfile",
            &cli_log_s,
        ];
        args.extend_from_slice(extra);
        let before = self.bed.cpu_ticks()?;
        let workers_before = self.bed.worker_ticks()?;
        let machine_before = procstat::machine_busy().ok();
        let pages_before = procstat::pages_allocated().ok();
        let client = self
            .bed
            .tb
            .spawn(&client_ns, &args, &[])
            .context("starting the iperf3 client")?;
        Ok(Running {
            server,
            client,
            cli_log,
            before,
            machine_before,
            pages_before,
            workers_before,
        })
    }

    /// Waits for a run that lasts `length` to end and reads its report and counters.
    fn iperf_finish(&mut self, r: Running, length: Duration) -> Result<IperfRun> {
        let status = self.wait_exit(r.client, length + IPERF_SLACK, "iperf3 client")?;
        let after = self.bed.cpu_ticks()?;
        let workers_after = self.bed.worker_ticks()?;
        let machine_after = procstat::machine_busy().ok();
        let pages_after = procstat::pages_allocated().ok();
        if self
            .wait_exit(r.server, SERVER_WAIT, "iperf3 server")
            .is_err()
        {
            self.bed.tb.stop(r.server)?;
        }
        let json = std::fs::read_to_string(&r.cli_log).map_err(|e| {
            anyhow!(
                "no iperf3 report in {} ({e}); client exited with {status}: {}",
                r.cli_log.display(),
                self.bed.tb.log(r.client).unwrap_or_default().trim()
            )
        })?;
        let delta = |b: Option<u64>, a: Option<u64>| b.zip(a).map(|(b, a)| a.saturating_sub(b));
        Ok(IperfRun {
            json,
            cpu_ticks: delta(r.before, after),
            machine_ticks: delta(r.machine_before, machine_after),
            pages_allocated: delta(r.pages_before, pages_after),
            busiest_worker: r
                .workers_before
                .zip(workers_after)
                .and_then(|(b, a)| procstat::busiest_share(&b, &a)),
        })
    }

    /// Waits until iperf3's control port listens in `ns`.
    fn wait_listening(&mut self, ns: &str, server: Pid) -> Result<()> {
        let deadline = Instant::now() + SERVER_WAIT;
        let filter = format!("sport = :{PORT}");
        loop {
            interrupt::check()?;
            if let Some(st) = self.bed.tb.try_wait(server)? {
                bail!(
                    "the iperf3 server exited ({st}) before listening: {}",
                    self.bed.tb.log(server).unwrap_or_default().trim()
                );
            }
            let out = self
                .bed
                .tb
                .exec(ns, &["ss", "-H", "-l", "-t", "-n", &filter])?;
            if !out.trim().is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the iperf3 server did not listen within {SERVER_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` for a spawned process to exit; stops it and fails after that.
    fn wait_exit(
        &mut self,
        pid: Pid,
        limit: Duration,
        what: &str,
    ) -> Result<std::process::ExitStatus> {
        wait_exit(&mut self.bed.tb, pid, limit, what)
    }

    /// `ping -c COUNT -i INTERVAL` from the client to the server.
    fn ping_once(&mut self, interval: &str, count: u32) -> Result<PingRun> {
        interrupt::check()?;
        let ip = self.bed.server_ip.to_string();
        let count = count.to_string();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.bed.client_ns])
            .args(["ping", "-n", "-c", &count, "-i", interval, "-W", "1", &ip])
            .stdin(Stdio::null())
            .output()
            .context("running ping")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match ping::parse(&stdout) {
            Some(run) if !run.rtts_ms.is_empty() => Ok(run),
            Some(run) => bail!("ping {ip}: no replies ({} sent)", run.transmitted),
            None => bail!(
                "ping {ip} -i {interval} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}
/// Waits up to `limit` for `pid` to exit; stops it and fails after that.
pub(crate) fn wait_exit(
    tb: &mut Testbed,
    pid: Pid,
    limit: Duration,
    what: &str,
) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        interrupt::check()?;
        if let Some(st) = tb.wait_timeout(pid, Duration::from_millis(100))? {
            return Ok(st);
        }
        if Instant::now() >= deadline {
            tb.stop(pid)?;
            bail!("{what} did not finish within {limit:?}; stopped it");
        }
    }
}
