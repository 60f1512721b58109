//! What the harness measures and how it reports it: the [`Metric`]s, the samples per
//! [`Variant`], the hardware line, the text table and the JSON document.
//!
//! Every metric is measured `--repeat` times and reported as the median; the samples are kept in
//! the JSON. A metric a variant cannot measure (agent CPU for the kernel, whose softirq time is
//! not attributable to the VXLAN path) has no samples and shows as `n/a`. The variants' runs of
//! a test are taken seconds apart, so for the throughputs the report also gives the ratio to
//! the kernel run by run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use crate::stats;

/// One way of building the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// The Linux kernel's `vxlan` device, bridged, with static FDB entries.
    Kernel,
    /// ovnet as a user runs it: etcd, one `ovnet-agent` per host, `ovctl`.
    Ovnet,
    /// ovnet's data plane linked into the harness and configured through its Rust API, without
    /// the control plane (as the data plane's own end-to-end tests do).
    Direct,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 3] = [Variant::Kernel, Variant::Ovnet, Variant::Direct];

    /// The name on the command line and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Kernel => "kernel",
            Variant::Ovnet => "ovnet",
            Variant::Direct => "direct",
        }
    }

    /// The column header.
    pub fn title(self) -> &'static str {
        match self {
            Variant::Kernel => "kernel vxlan",
            Variant::Ovnet => "ovnet",
            Variant::Direct => "ovnet data plane",
        }
    }

    /// The short name used in a ratio header (`ovnet/kernel`).
    pub fn short(self) -> &'static str {
        match self {
            Variant::Kernel => "kernel",
            Variant::Ovnet => "ovnet",
            Variant::Direct => "dataplane",
        }
    }

    /// Parses a key.
    pub fn from_key(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.key() == s)
    }
}

/// A measured quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// iperf3 TCP, one stream: receiver goodput.
    Tcp1,
    /// iperf3 TCP, two streams (`-P 2`): receiver goodput, both together.
    Tcp2,
    /// iperf3 UDP with 64-byte payloads, unlimited rate: datagrams received per second.
    Udp64Kpps,
    /// The same test: datagrams lost.
    Udp64Loss,
    /// ping: mean round-trip time.
    PingAvg,
    /// ping: 99th percentile round-trip time.
    PingP99,
    /// CPU time of the VXLAN path (both hosts together) during one throughput test, any kind.
    Cpu,
    /// The same during the one-stream TCP tests only.
    CpuTcp1,
    /// The same during the two-stream TCP tests only.
    CpuTcp2,
    /// The same during the UDP tests only.
    CpuUdp64,
    /// Busy CPU time of the whole machine (every process and interrupt: iperf3, containers'
    /// and hosts' stacks, agents), from the iperf3 client's start to its exit, per GB of
    /// goodput (the test's rate times its duration), TCP one stream: the cost of a byte.
    MachineCpuTcp1,
    /// The same for two streams.
    MachineCpuTcp2,
    /// Pages the machine's page allocator handed out (`/proc/vmstat` `pgalloc_*`) during the
    /// TCP one-stream test, per page of goodput: every copy of the payload into a fresh skb
    /// (the sender's socket buffer, a TAP's, the uplink's) allocates its pages.
    PagesTcp1,
    /// The same for two streams.
    PagesTcp2,
}

impl Metric {
    /// The rows of the table, in order.
    pub const TABLE: [Metric; 11] = [
        Metric::Tcp1,
        Metric::Tcp2,
        Metric::Udp64Kpps,
        Metric::Udp64Loss,
        Metric::PingAvg,
        Metric::PingP99,
        Metric::Cpu,
        Metric::MachineCpuTcp1,
        Metric::MachineCpuTcp2,
        Metric::PagesTcp1,
        Metric::PagesTcp2,
    ];

    /// Every metric, in JSON order.
    pub const ALL: [Metric; 14] = [
        Metric::Tcp1,
        Metric::Tcp2,
        Metric::Udp64Kpps,
        Metric::Udp64Loss,
        Metric::PingAvg,
        Metric::PingP99,
        Metric::Cpu,
        Metric::CpuTcp1,
        Metric::CpuTcp2,
        Metric::CpuUdp64,
        Metric::MachineCpuTcp1,
        Metric::MachineCpuTcp2,
        Metric::PagesTcp1,
        Metric::PagesTcp2,
    ];

    /// Row label, with its unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP 1 stream (Gbit/s)",
            Metric::Tcp2 => "TCP 2 streams (Gbit/s)",
            Metric::Udp64Kpps => "UDP 64 B (kpps received)",
            Metric::Udp64Loss => "UDP 64 B loss (%)",
            Metric::PingAvg => "ping avg (ms)",
            Metric::PingP99 => "ping p99 (ms)",
            Metric::Cpu => "agent CPU (s per test)",
            Metric::CpuTcp1 => "agent CPU, TCP 1 stream (s)",
            Metric::CpuTcp2 => "agent CPU, TCP 2 streams (s)",
            Metric::CpuUdp64 => "agent CPU, UDP 64 B (s)",
            Metric::MachineCpuTcp1 => "machine CPU s/GB, TCP 1",
            Metric::MachineCpuTcp2 => "machine CPU s/GB, TCP 2",
            Metric::PagesTcp1 => "pages alloc/moved, TCP 1",
            Metric::PagesTcp2 => "pages alloc/moved, TCP 2",
        }
    }

    /// Key in the JSON document.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp_1_stream",
            Metric::Tcp2 => "tcp_2_streams",
            Metric::Udp64Kpps => "udp_64b_received",
            Metric::Udp64Loss => "udp_64b_loss",
            Metric::PingAvg => "ping_avg",
            Metric::PingP99 => "ping_p99",
            Metric::Cpu => "cpu_per_throughput_test",
            Metric::CpuTcp1 => "cpu_tcp_1_stream",
            Metric::CpuTcp2 => "cpu_tcp_2_streams",
            Metric::CpuUdp64 => "cpu_udp_64b",
            Metric::MachineCpuTcp1 => "machine_cpu_per_gb_tcp_1_stream",
            Metric::MachineCpuTcp2 => "machine_cpu_per_gb_tcp_2_streams",
            Metric::PagesTcp1 => "pages_allocated_per_page_moved_tcp_1_stream",
            Metric::PagesTcp2 => "pages_allocated_per_page_moved_tcp_2_streams",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Tcp1 | Metric::Tcp2 => "Gbit/s",
            Metric::Udp64Kpps => "kpps",
            Metric::Udp64Loss => "%",
            Metric::PingAvg | Metric::PingP99 => "ms",
            Metric::Cpu | Metric::CpuTcp1 | Metric::CpuTcp2 | Metric::CpuUdp64 => "s",
            Metric::MachineCpuTcp1 | Metric::MachineCpuTcp2 => "s/GB",
            Metric::PagesTcp1 | Metric::PagesTcp2 => "pages/page",
        }
    }

    /// Decimals shown in the table.
    fn decimals(self) -> usize {
        match self {
            Metric::Udp64Kpps => 1,
            Metric::PingAvg | Metric::PingP99 | Metric::MachineCpuTcp1 | Metric::MachineCpuTcp2 => {
                3
            }
            _ => 2,
        }
    }
}

/// The hardware and kernel the numbers were measured on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardware {
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Online CPUs.
    pub cores: usize,
    /// `uname -r`.
    pub kernel: String,
}

impl Hardware {
    /// Reads `/proc/cpuinfo` and `/proc/sys/kernel/osrelease`.
    pub fn detect() -> Hardware {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or_else(|_| count_processors(&cpuinfo));
        Hardware {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            cores,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
        }
    }

    /// `hardware: AMD EPYC 7B13, 2 cores, Linux 6.8.0-45-generic`.
    pub fn line(&self) -> String {
        format!(
            "hardware: {}, {} cores, Linux {}",
            self.cpu_model, self.cores, self.kernel
        )
    }

    fn to_json(&self) -> Value {
        json!({ "cpu_model": self.cpu_model, "cores": self.cores, "kernel": self.kernel })
    }
}

/// The first `model name` (x86) or `Model`/`CPU part` line's value (other architectures).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "cpu model", "Processor"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

fn count_processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
        .max(1)
}

/// The results of one variant.
#[derive(Debug, Clone, PartialEq)]
pub struct VariantResult {
    /// Which variant.
    pub variant: Variant,
    /// Samples per metric, one per repetition. A metric without samples is `n/a`.
    pub samples: BTreeMap<Metric, Vec<f64>>,
    /// Remarks worth keeping with the numbers (e.g. unexpected addresses, retransmits).
    pub notes: Vec<String>,
    /// Why the variant stopped early, if it did.
    pub error: Option<String>,
}

impl VariantResult {
    /// An empty result for `variant`.
    pub fn new(variant: Variant) -> VariantResult {
        VariantResult {
            variant,
            samples: BTreeMap::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, metric: Metric, value: f64) {
        self.samples.entry(metric).or_default().push(value);
    }

    /// The median of a metric, `None` if it was not measured.
    pub fn median(&self, metric: Metric) -> Option<f64> {
        self.samples.get(&metric).and_then(|s| stats::median(s))
    }

    /// This variant's samples of `metric` over `base`'s, run by run (the harness takes a run
    /// of a test on every variant seconds apart); `None` unless both have the same number of
    /// samples, base's all positive (a variant that failed midway leaves its runs unpaired).
    pub fn run_ratios(&self, base: &VariantResult, metric: Metric) -> Option<Vec<f64>> {
        let (ours, theirs) = (self.samples.get(&metric)?, base.samples.get(&metric)?);
        let paired = !ours.is_empty() && ours.len() == theirs.len();
        (paired && theirs.iter().all(|&b| b > 0.0))
            .then(|| ours.iter().zip(theirs).map(|(a, b)| a / b).collect())
    }
}

/// The throughputs whose run-by-run ratios the table sums up under the medians.
const PAIRED: [Metric; 3] = [Metric::Tcp1, Metric::Tcp2, Metric::Udp64Kpps];

/// One variant's run-by-run ratios to the kernel: `X/kernel`, and each paired throughput's.
type PairedRuns = (String, Vec<(Metric, Vec<f64>)>);

/// Everything one run of the harness found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Where it ran.
    pub hardware: Hardware,
    /// How it ran (`repeat`, `duration_s`, ...), copied into the JSON as is.
    pub config: Value,
    /// One entry per variant, in the order they ran.
    pub variants: Vec<VariantResult>,
    /// Notes printed under the table.
    pub notes: Vec<String>,
    /// Unix time the run started.
    pub started_unix: u64,
    /// Wall-clock length of the run.
    pub runtime_s: f64,
}

/// `value` with the metric's decimals, or `n/a`.
fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "n/a".to_string(),
    }
}

/// `a / b` with two decimals, or `n/a` if either is missing or `b` is zero.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && (a / b).is_finite() => format!("{:.2}", a / b),
        _ => "n/a".to_string(),
    }
}

/// Lays out rows of cells in left-aligned columns: the first column 4 wider than its longest
/// cell, the others 5 wider, the last unpadded.
fn columns(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|c| {
            let w = rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            w + if c == 0 { 4 } else { 5 }
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line += text;
            } else {
                let _ = write!(line, "{text:<w$}", w = widths[c]);
            }
        }
        out += line.trim_end();
        out.push('\n');
    }
    out
}

impl Report {
    fn result(&self, v: Variant) -> Option<&VariantResult> {
        self.variants.iter().find(|r| r.variant == v)
    }

    /// For every variant but the kernel, `X/kernel` and its run-by-run ratios of each paired
    /// throughput that has them; empty without a kernel run.
    fn paired_runs(&self) -> Vec<PairedRuns> {
        let Some(k) = self.result(Variant::Kernel) else {
            return Vec::new();
        };
        self.variants
            .iter()
            .filter(|r| r.variant != Variant::Kernel)
            .map(|r| {
                let ratios = PAIRED
                    .iter()
                    .filter_map(|&m| Some((m, r.run_ratios(k, m)?)))
                    .collect();
                (format!("{}/kernel", r.variant.short()), ratios)
            })
            .collect()
    }

    /// The table: one column per variant, then `X/kernel` for every other variant when the
    /// kernel ran; then the hardware line and the notes.
    pub fn table(&self) -> String {
        let kernel = self.result(Variant::Kernel);
        let others: Vec<&VariantResult> = self
            .variants
            .iter()
            .filter(|r| r.variant != Variant::Kernel)
            .collect();
        let mut header = vec!["metric".to_string()];
        header.extend(self.variants.iter().map(|r| r.variant.title().to_string()));
        if kernel.is_some() {
            header.extend(
                others
                    .iter()
                    .map(|r| format!("{}/kernel", r.variant.short())),
            );
        }
        let mut rows = vec![header];
        for m in Metric::TABLE {
            let mut row = vec![m.label().to_string()];
            row.extend(
                self.variants
                    .iter()
                    .map(|r| cell(r.median(m), m.decimals())),
            );
            if let Some(k) = kernel {
                row.extend(others.iter().map(|r| ratio(r.median(m), k.median(m))));
            }
            rows.push(row);
        }
        let mut out = columns(&rows);
        for (pair, metrics) in self.paired_runs() {
            let spans: Vec<String> = metrics
                .iter()
                .map(|(m, ratios)| {
                    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let name = m.label().split(" (").next().unwrap_or_default();
                    format!("{name} {lo:.2} to {hi:.2}")
                })
                .collect();
            if !spans.is_empty() {
                let _ = writeln!(out, "{pair} run by run: {}", spans.join(", "));
            }
        }
        out += &self.hardware.line();
        out.push('\n');
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        for r in &self.variants {
            for n in &r.notes {
                let _ = writeln!(out, "note ({}): {n}", r.variant.key());
            }
            if let Some(e) = &r.error {
                let _ = writeln!(out, "FAILED ({}): {e}", r.variant.key());
            }
        }
        out
    }

    /// The JSON document: hardware, configuration, and per variant every metric's unit,
    /// median and samples (`null` median and no samples for `n/a`).
    pub fn to_json(&self) -> Value {
        let variants: Vec<Value> = self
            .variants
            .iter()
            .map(|r| {
                let metrics: serde_json::Map<String, Value> = Metric::ALL
                    .iter()
                    .map(|&m| {
                        let samples = r.samples.get(&m).cloned().unwrap_or_default();
                        let v = json!({
                            "label": m.label(),
                            "unit": m.unit(),
                            "median": r.median(m),
                            "samples": samples,
                        });
                        (m.key().to_string(), v)
                    })
                    .collect();
                json!({
                    "variant": r.variant.key(),
                    "title": r.variant.title(),
                    "metrics": metrics,
                    "notes": r.notes,
                    "error": r.error,
                })
            })
            .collect();
        let run_ratios: serde_json::Map<String, Value> = self
            .paired_runs()
            .into_iter()
            .map(|(pair, metrics)| {
                let per_metric = metrics
                    .into_iter()
                    .map(|(m, ratios)| (m.key().to_string(), json!(ratios)))
                    .collect();
                (pair, Value::Object(per_metric))
            })
            .collect();
        json!({
            "tool": "ovnet-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "started_unix": self.started_unix,
            "runtime_s": self.runtime_s,
            "hardware": self.hardware.to_json(),
            "config": self.config,
            "variants": variants,
            "run_ratios": run_ratios,
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_report() -> Report {
        let mut k = VariantResult::new(Variant::Kernel);
        let mut o = VariantResult::new(Variant::Ovnet);
        for (m, ks, os) in [
            (Metric::Tcp1, [11.2, 11.6, 12.0], [5.7, 5.8, 5.9]),
            (Metric::Tcp2, [12.0, 12.0, 12.0], [6.0, 6.0, 6.0]),
            (
                Metric::Udp64Kpps,
                [300.0, 310.0, 305.0],
                [150.0, 151.0, 152.0],
            ),
            (Metric::Udp64Loss, [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]),
            (Metric::PingAvg, [0.05, 0.06, 0.07], [0.1, 0.11, 0.12]),
            (Metric::PingP99, [0.08, 0.09, 0.1], [0.2, 0.21, 0.22]),
            (Metric::MachineCpuTcp2, [0.7, 0.8, 0.9], [1.6, 1.7, 1.8]),
            (Metric::PagesTcp2, [1.0, 1.1, 0.9], [2.9, 3.0, 2.8]),
        ] {
            for (a, b) in ks.into_iter().zip(os) {
                k.push(m, a);
                o.push(m, b);
            }
        }
        o.push(Metric::Cpu, 9.5);
        o.notes.push("an ovnet note".into());
        Report {
            hardware: Hardware {
                cpu_model: "AMD EPYC".into(),
                cores: 2,
                kernel: "6.8.0".into(),
            },
            config: json!({"repeat": 3}),
            variants: vec![k, o],
            notes: vec!["kernel CPU is n/a".into()],
            started_unix: 1,
            runtime_s: 2.0,
        }
    }

    #[test]
    fn table_layout_matches_the_documented_one() {
        let t = sample_report().table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "metric                      kernel vxlan     ovnet     ovnet/kernel"
        );
        assert_eq!(
            lines[1],
            "TCP 1 stream (Gbit/s)       11.60            5.80      0.50"
        );
        assert_eq!(
            lines[3],
            "UDP 64 B (kpps received)    305.0            151.0     0.50"
        );
        // Kernel loss 0: the ratio is undefined.
        assert!(
            lines[4].ends_with("0.00             2.00      n/a"),
            "{}",
            lines[4]
        );
        assert!(lines[5].starts_with("ping avg (ms)               0.060            0.110"));
        assert_eq!(
            lines[7],
            "agent CPU (s per test)      n/a              9.50      n/a"
        );
        assert!(
            lines[8].starts_with("machine CPU s/GB, TCP 1     n/a"),
            "{}",
            lines[8]
        );
        assert_eq!(
            lines[9],
            "machine CPU s/GB, TCP 2     0.800            1.700     2.12"
        );
        assert!(
            lines[10].starts_with("pages alloc/moved, TCP 1    n/a"),
            "{}",
            lines[10]
        );
        assert_eq!(
            lines[11],
            "pages alloc/moved, TCP 2    1.00             2.90      2.90"
        );
        assert_eq!(
            lines[12],
            "ovnet/kernel run by run: TCP 1 stream 0.49 to 0.51, TCP 2 streams 0.50 to 0.50, \
             UDP 64 B 0.49 to 0.50"
        );
        assert_eq!(lines[13], "hardware: AMD EPYC, 2 cores, Linux 6.8.0");
        assert_eq!(lines[14], "note: kernel CPU is n/a");
        assert_eq!(lines[15], "note (ovnet): an ovnet note");
    }

    #[test]
    fn runs_pair_only_when_both_variants_have_every_run() {
        let r = sample_report();
        let (k, o) = (&r.variants[0], &r.variants[1]);
        assert_eq!(o.run_ratios(k, Metric::Tcp2), Some(vec![0.5, 0.5, 0.5]));
        assert_eq!(o.run_ratios(k, Metric::Cpu), None);
        let mut short = o.clone();
        short.samples.get_mut(&Metric::Tcp1).unwrap().pop();
        assert_eq!(short.run_ratios(k, Metric::Tcp1), None);
        let mut zero = k.clone();
        zero.samples.insert(Metric::Tcp1, vec![0.0, 1.0, 1.0]);
        assert_eq!(o.run_ratios(&zero, Metric::Tcp1), None);
    }

    #[test]
    fn table_without_kernel_has_no_ratio_column() {
        let mut r = sample_report();
        r.variants.remove(0);
        let t = r.table();
        assert!(t.lines().next().unwrap().ends_with("ovnet"), "{t}");
    }

    #[test]
    fn json_has_medians_samples_and_nulls() {
        let mut r = sample_report();
        r.variants[1].error = Some("boom".into());
        let j = r.to_json();
        let k = &j["variants"][0];
        assert_eq!(k["variant"], "kernel");
        assert_eq!(k["metrics"]["tcp_1_stream"]["median"], 11.6);
        assert_eq!(k["metrics"]["tcp_1_stream"]["unit"], "Gbit/s");
        assert_eq!(
            k["metrics"]["tcp_1_stream"]["samples"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert!(k["metrics"]["cpu_per_throughput_test"]["median"].is_null());
        assert_eq!(
            j["variants"][1]["metrics"]["cpu_per_throughput_test"]["median"],
            9.5
        );
        assert_eq!(j["variants"][1]["error"], "boom");
        assert_eq!(j["hardware"]["cores"], 2);
        assert_eq!(j["config"]["repeat"], 3);
        let tcp2 = &j["run_ratios"]["ovnet/kernel"]["tcp_2_streams"];
        assert_eq!(tcp2, &json!([0.5, 0.5, 0.5]));
        // Round-trips through text.
        let text = serde_json::to_string_pretty(&j).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, j);
    }

    #[test]
    fn cpu_model_and_cores_from_cpuinfo() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\n\
                   processor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(count_processors(x86), 2);
        let arm = "processor\t: 0\nBogoMIPS\t: 48.00\n\nModel\t\t: Raspberry Pi 4 Model B\n";
        assert_eq!(cpu_model(arm).as_deref(), Some("Raspberry Pi 4 Model B"));
        assert_eq!(cpu_model(""), None);
        assert_eq!(count_processors(""), 1);
    }

    #[test]
    fn variants_by_key() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_key(v.key()), Some(v));
        }
        assert_eq!(Variant::from_key("vxlan"), None);
    }
}
