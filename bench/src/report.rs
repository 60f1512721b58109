//! What the harness reports: the samples per [`Variant`] and [`Topology`], the hardware line,
//! the text tables and the JSON document.
//!
//! Every metric is measured `--repeat` times and reported as the median; the samples are kept in
//! the JSON. A metric a variant cannot measure (agent CPU for the kernel, whose softirq time is
//! not attributable to the VXLAN path) has no samples and shows as `n/a`; a row no variant
//! measured is left out. The variants' runs of a test are taken seconds apart, so for the
//! throughputs the report also gives the ratio to the kernel run by run. After the
//! per-topology tables comes one summary in Markdown with the two-host topologies side by
//! side, the table the README carries.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

pub use crate::kinds::{Metric, Topology, Variant};
use crate::stats;

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

/// One variant's run-by-run ratios to the kernel: `X/kernel`, and each paired throughput's.
type PairedRuns = (String, Vec<(Metric, Vec<f64>)>);

/// The results on one topology: every variant's, measured side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct TopologyResult {
    /// Which underlay.
    pub topology: Topology,
    /// One entry per variant, in the order they ran.
    pub variants: Vec<VariantResult>,
}

/// Everything one run of the harness found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Where it ran.
    pub hardware: Hardware,
    /// How it ran (`repeat`, `duration_s`, ...), copied into the JSON as is.
    pub config: Value,
    /// One entry per topology, in the order they ran.
    pub topologies: Vec<TopologyResult>,
    /// Notes printed under the tables.
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

impl TopologyResult {
    /// An empty result for `topology` and `variants`.
    pub fn new(topology: Topology, variants: &[Variant]) -> TopologyResult {
        TopologyResult {
            topology,
            variants: variants.iter().map(|&v| VariantResult::new(v)).collect(),
        }
    }

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
                let ratios = Metric::PAIRED
                    .iter()
                    .filter_map(|&m| Some((m, r.run_ratios(k, m)?)))
                    .collect();
                (format!("{}/kernel", r.variant.short()), ratios)
            })
            .collect()
    }

    /// The topology's table: one column per variant, then `X/kernel` for every other variant
    /// when the kernel ran; the rows some variant measured; the run-by-run ratios; the
    /// variants' notes and errors.
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
        for m in Metric::table() {
            if self.variants.iter().all(|r| r.median(m).is_none()) {
                continue;
            }
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
        let mut out = format!("== {} ==\n", self.topology.title());
        out += &columns(&rows);
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

    fn to_json(&self) -> Value {
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
            "topology": self.topology.key(),
            "title": self.topology.title(),
            "variants": variants,
            "run_ratios": run_ratios,
        })
    }
}

/// The rows of the summary: what a reader compares first.
const SUMMARY: [Metric; 12] = [
    Metric::Tcp1,
    Metric::Tcp2,
    Metric::Udp64Kpps,
    Metric::PingP50At1,
    Metric::PingP50At10,
    Metric::PingP50At100,
    Metric::PingP99At10,
    Metric::PingP50Load,
    Metric::CoreIdle,
    Metric::CorePing100,
    Metric::MachineCpuTcp2,
    Metric::FloodKpps,
];

impl Report {
    /// Every topology's table, then the summary, the hardware line and the notes.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for t in &self.topologies {
            out += &t.table();
            out.push('\n');
        }
        if let Some(s) = self.summary() {
            out += &s;
            out.push('\n');
        }
        out += &self.hardware.line();
        out.push('\n');
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out
    }

    /// A Markdown table of the kernel's and ovnet's medians and their ratio, one group of
    /// three columns per topology, for the rows some topology measured; `None` unless both
    /// variants ran somewhere.
    pub fn summary(&self) -> Option<String> {
        let pairs: Vec<(&TopologyResult, &VariantResult, &VariantResult)> = self
            .topologies
            .iter()
            .filter_map(|t| Some((t, t.result(Variant::Kernel)?, t.result(Variant::Ovnet)?)))
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let mut out = String::from("| metric |");
        for (t, _, _) in &pairs {
            let _ = write!(out, " {0}: kernel | {0}: ovnet | ratio |", t.topology.key());
        }
        out += "\n|---|";
        out += &"---|---|---|".repeat(pairs.len());
        out.push('\n');
        for m in SUMMARY {
            if pairs
                .iter()
                .all(|(_, k, o)| k.median(m).is_none() && o.median(m).is_none())
            {
                continue;
            }
            let _ = write!(out, "| {} |", m.label());
            for (_, k, o) in &pairs {
                let (km, om) = (k.median(m), o.median(m));
                let _ = write!(
                    out,
                    " {} | {} | {} |",
                    cell(km, m.decimals()),
                    cell(om, m.decimals()),
                    ratio(om, km)
                );
            }
            out.push('\n');
        }
        Some(out)
    }

    /// The JSON document: hardware, configuration, and per topology and variant every
    /// metric's unit, median and samples (`null` median and no samples for `n/a`).
    pub fn to_json(&self) -> Value {
        json!({
            "tool": "ovnet-bench",
            "version": env!("CARGO_PKG_VERSION"),
            "started_unix": self.started_unix,
            "runtime_s": self.runtime_s,
            "hardware": self.hardware.to_json(),
            "config": self.config,
            "topologies": self.topologies.iter().map(TopologyResult::to_json).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_topology(topology: Topology) -> TopologyResult {
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
            (Metric::PingP50At10, [0.05, 0.06, 0.07], [0.1, 0.11, 0.12]),
            (Metric::PingP99At10, [0.08, 0.09, 0.1], [0.2, 0.21, 0.22]),
            (Metric::MachineCpuTcp2, [0.7, 0.8, 0.9], [1.6, 1.7, 1.8]),
            (Metric::PagesTcp2, [1.0, 1.1, 0.9], [2.9, 3.0, 2.8]),
        ] {
            for (a, b) in ks.into_iter().zip(os) {
                k.push(m, a);
                o.push(m, b);
            }
        }
        o.push(Metric::Cpu, 9.5);
        o.push(Metric::CoreIdle, 0.4);
        o.notes.push("an ovnet note".into());
        TopologyResult {
            topology,
            variants: vec![k, o],
        }
    }

    fn sample_report() -> Report {
        Report {
            hardware: Hardware {
                cpu_model: "AMD EPYC".into(),
                cores: 2,
                kernel: "6.8.0".into(),
            },
            config: json!({"repeat": 3}),
            topologies: vec![
                sample_topology(Topology::Veth),
                sample_topology(Topology::Switch),
            ],
            notes: vec!["kernel CPU is n/a".into()],
            started_unix: 1,
            runtime_s: 2.0,
        }
    }

    #[test]
    fn table_layout_matches_the_documented_one() {
        let t = sample_report().topologies[0].table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], format!("== {} ==", Topology::Veth.title()));
        assert_eq!(
            lines[1],
            "metric                        kernel vxlan     ovnet     ovnet/kernel"
        );
        assert_eq!(
            lines[2],
            "TCP 1 stream (Gbit/s)         11.60            5.80      0.50"
        );
        assert_eq!(
            lines[4],
            "UDP 64 B (kpps received)      305.0            151.0     0.50"
        );
        // Kernel loss 0: the ratio is undefined.
        assert!(
            lines[5].ends_with("0.00             2.00      n/a"),
            "{}",
            lines[5]
        );
        assert!(
            lines[6].starts_with("ping p50, every 10 ms (ms)    0.060            0.110"),
            "{}",
            lines[6]
        );
        // Rows nobody measured are left out; the kernel's n/a stays.
        assert_eq!(
            lines[8],
            "agent CPU idle (% core)       n/a              0.40      n/a"
        );
        assert_eq!(
            lines[9],
            "agent CPU (s per test)        n/a              9.50      n/a"
        );
        assert_eq!(
            lines[10],
            "machine CPU s/GB, TCP 2       0.800            1.700     2.12"
        );
        assert_eq!(
            lines[11],
            "pages alloc/moved, TCP 2      1.00             2.90      2.90"
        );
        assert_eq!(
            lines[12],
            "ovnet/kernel run by run: TCP 1 stream 0.49 to 0.51, TCP 2 streams 0.50 to 0.50, \
             UDP 64 B 0.49 to 0.50"
        );
        assert_eq!(lines[13], "note (ovnet): an ovnet note");
        let whole = sample_report().table();
        assert!(whole.contains(Topology::Switch.title()), "{whole}");
        assert!(whole.contains("hardware: AMD EPYC, 2 cores, Linux 6.8.0\nnote: kernel CPU is n/a"));
    }

    #[test]
    fn the_summary_puts_topologies_side_by_side() {
        let s = sample_report().summary().unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "| metric | veth: kernel | veth: ovnet | ratio | switch: kernel | switch: ovnet | ratio |"
        );
        assert_eq!(lines[1], "|---|---|---|---|---|---|---|");
        assert_eq!(
            lines[2],
            "| TCP 1 stream (Gbit/s) | 11.60 | 5.80 | 0.50 | 11.60 | 5.80 | 0.50 |"
        );
        assert!(
            s.contains("| ping p50, every 10 ms (ms) | 0.060 | 0.110 | 1.83 |"),
            "{s}"
        );
        assert!(
            !s.contains("every 1 ms"),
            "rows nobody measured are left out: {s}"
        );
        let mut r = sample_report();
        for t in &mut r.topologies {
            t.variants.remove(0);
        }
        assert_eq!(r.summary(), None);
    }

    #[test]
    fn runs_pair_only_when_both_variants_have_every_run() {
        let t = sample_topology(Topology::Veth);
        let (k, o) = (&t.variants[0], &t.variants[1]);
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
        let mut t = sample_topology(Topology::Switch);
        t.variants.remove(0);
        let text = t.table();
        assert!(text.lines().nth(1).unwrap().ends_with("ovnet"), "{text}");
    }

    #[test]
    fn json_has_topologies_medians_samples_and_nulls() {
        let mut r = sample_report();
        r.topologies[1].variants[1].error = Some("boom".into());
        let j = r.to_json();
        let t = &j["topologies"][0];
        assert_eq!(t["topology"], "veth");
        let k = &t["variants"][0];
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
            t["variants"][1]["metrics"]["cpu_per_throughput_test"]["median"],
            9.5
        );
        assert_eq!(j["topologies"][1]["variants"][1]["error"], "boom");
        assert_eq!(j["hardware"]["cores"], 2);
        assert_eq!(j["config"]["repeat"], 3);
        let tcp2 = &t["run_ratios"]["ovnet/kernel"]["tcp_2_streams"];
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
}
