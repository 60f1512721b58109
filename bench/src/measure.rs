//! The measurements, run in the containers of a [`Bed`]: iperf3 TCP with one and two streams,
//! iperf3 UDP with 64-byte datagrams at unlimited rate, and ping; one at a time (the harness
//! takes each `--repeat` times on every bed in turn), with the VXLAN path's CPU time, the
//! whole machine's busy time and the pages its allocator handed out read around every iperf3
//! test (the latter two per byte moved for TCP: what a byte costs, whatever runs where, and
//! how many fresh buffers it went through).
//!
//! iperf3's server (`-s -1`, one test then exit) runs in the server container and the client
//! in the client container, both started through the test bed so that they die with it. Their
//! JSON goes to files in the test bed's directory (`--logfile`), apart from anything they print.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ovnet_testbed::Pid;

use crate::args::Test;
use crate::interrupt;
use crate::iperf;
use crate::ping::{self, PingRun};
use crate::procstat;
use crate::report::{Metric, VariantResult};
use crate::topology::{progress, Bed};

/// iperf3's port.
const PORT: &str = "5201";
/// Echo requests per ping run.
pub const PING_COUNT: u32 = 200;
/// Interval between echo requests; below 0.2 s needs root, below 2 ms is refused.
pub const PING_INTERVAL: &str = "0.002";
/// Used if ping refuses [`PING_INTERVAL`].
const PING_INTERVAL_FALLBACK: &str = "0.01";
/// Payload of a UDP datagram in the UDP test.
pub const UDP_PAYLOAD: &str = "64";
/// Slack on top of `--duration` before an iperf3 client counts as hung.
const IPERF_SLACK: Duration = Duration::from_secs(30);
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
}

const TCP1: TcpMetrics = TcpMetrics {
    streams: 1,
    throughput: Metric::Tcp1,
    cpu: Metric::CpuTcp1,
    machine_cpu: Metric::MachineCpuTcp1,
    pages: Metric::PagesTcp1,
};

const TCP2: TcpMetrics = TcpMetrics {
    streams: 2,
    throughput: Metric::Tcp2,
    cpu: Metric::CpuTcp2,
    machine_cpu: Metric::MachineCpuTcp2,
    pages: Metric::PagesTcp2,
};

/// Takes measurement `test` once on `bed`, as run `round` of `repeat`, adding its samples to
/// `out`.
pub fn run(
    bed: &mut Bed,
    test: Test,
    round: u32,
    repeat: u32,
    duration: u32,
    out: &mut VariantResult,
) -> Result<()> {
    let mut m = Measurer {
        bed,
        duration,
        name: format!("{round}-{}", test.key()),
        at: format!("run {round}/{repeat}"),
    };
    match test {
        Test::Tcp1 => m.tcp(&TCP1, out),
        Test::Tcp2 => m.tcp(&TCP2, out),
        Test::Udp => m.udp(out),
        Test::Ping => m.ping(out),
    }
}

struct Measurer<'b> {
    bed: &'b mut Bed,
    duration: u32,
    /// Names the iperf3 logs of this measurement.
    name: String,
    /// Which run this is, for progress lines.
    at: String,
}

impl Measurer<'_> {
    fn say(&self, what: &str) {
        progress(self.bed.variant, &format!("{}: {what}", self.at));
    }

    fn tcp(&mut self, t: &TcpMetrics, out: &mut VariantResult) -> Result<()> {
        let (streams, duration) = (t.streams, self.duration);
        let what = format!("TCP {streams} stream{}", if streams > 1 { "s" } else { "" });
        self.say(&format!("{what} for {duration} s"));
        let run = self.iperf(&["-P", &streams.to_string()])?;
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
        let pages = record(
            out,
            t.pages,
            run.pages_allocated
                .and_then(|p| procstat::pages_per_page_moved(p, gb * 1e9)),
            |r| format!(", {r:.2} pages allocated per page moved"),
        );
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

    fn ping(&mut self, out: &mut VariantResult) -> Result<()> {
        self.say(&format!("ping x{PING_COUNT}"));
        let p = self.ping_once()?;
        let (avg, p99) = (
            p.avg_ms().expect("ping_once() checked there were replies"),
            p.p99_ms().expect("ping_once() checked there were replies"),
        );
        out.push(Metric::PingAvg, avg);
        out.push(Metric::PingP99, p99);
        self.say(&format!(
            "ping: avg {avg:.3} ms, p99 {p99:.3} ms, {:.1} % lost",
            p.loss_percent()
        ));
        Ok(())
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

    /// One iperf3 test with `extra` client options; server and client are fresh processes.
    fn iperf(&mut self, extra: &[&str]) -> Result<IperfRun> {
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
        let duration = self.duration.to_string();
        let cli_log_s = cli_log.to_string_lossy().into_owned();
        let mut args = vec![
            "iperf3",
            "-c",
            &ip,
            "-p",
            PORT,
            "-t",
            &duration,
            "-J",
            "--logfile",
            &cli_log_s,
        ];
        args.extend_from_slice(extra);
        let before = self.bed.cpu_ticks()?;
        let machine_before = procstat::machine_busy().ok();
        let pages_before = procstat::pages_allocated().ok();
        let client = self
            .bed
            .tb
            .spawn(&client_ns, &args, &[])
            .context("starting the iperf3 client")?;
        let limit = Duration::from_secs(u64::from(self.duration)) + IPERF_SLACK;
        let status = self.wait_exit(client, limit, "iperf3 client")?;
        let after = self.bed.cpu_ticks()?;
        let machine_after = procstat::machine_busy().ok();
        let pages_after = procstat::pages_allocated().ok();
        if self
            .wait_exit(server, SERVER_WAIT, "iperf3 server")
            .is_err()
        {
            self.bed.tb.stop(server)?;
        }
        let json = std::fs::read_to_string(&cli_log).map_err(|e| {
            anyhow!(
                "no iperf3 report in {} ({e}); client exited with {status}: {}",
                cli_log.display(),
                self.bed.tb.log(client).unwrap_or_default().trim()
            )
        })?;
        let cpu_ticks = before.zip(after).map(|(b, a)| a.saturating_sub(b));
        let machine_ticks = machine_before
            .zip(machine_after)
            .map(|(b, a)| a.saturating_sub(b));
        let pages_allocated = pages_before
            .zip(pages_after)
            .map(|(b, a)| a.saturating_sub(b));
        Ok(IperfRun {
            json,
            cpu_ticks,
            machine_ticks,
            pages_allocated,
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
        let deadline = Instant::now() + limit;
        loop {
            interrupt::check()?;
            if let Some(st) = self.bed.tb.wait_timeout(pid, Duration::from_millis(100))? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                self.bed.tb.stop(pid)?;
                bail!("{what} did not finish within {limit:?}; stopped it");
            }
        }
    }

    /// `ping -c 200 -i 0.002` from the client to the server (0.01 s if 2 ms is refused).
    fn ping_once(&mut self) -> Result<PingRun> {
        interrupt::check()?;
        let ip = self.bed.server_ip.to_string();
        let count = PING_COUNT.to_string();
        let mut last = String::new();
        for interval in [PING_INTERVAL, PING_INTERVAL_FALLBACK] {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.bed.client_ns])
                .args(["ping", "-n", "-c", &count, "-i", interval, "-W", "1", &ip])
                .stdin(Stdio::null())
                .output()
                .context("running ping")?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            match ping::parse(&stdout) {
                Some(run) if !run.rtts_ms.is_empty() => return Ok(run),
                Some(run) => bail!("ping {ip}: no replies ({} sent)", run.transmitted),
                None => {
                    last = format!(
                        "ping {ip} -i {interval} failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
            }
        }
        bail!("{last}")
    }
}
