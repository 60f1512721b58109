//! `ovnet-bench`: the side-by-side harness. For each topology (two hosts joined by a veth pair,
//! two hosts behind an underlay switch, three hosts for flooding) builds the same network on
//! the test bed once per variant (the kernel's vxlan and ovnet as a user runs it, side by side
//! in separate namespaces), measures TCP and UDP throughput, ping latency at several intervals
//! and under load, idle cost, flooding and the VXLAN path's CPU time on each in turn, test by
//! test, and prints the medians as a table per topology with ovnet/kernel ratios and a summary
//! of the topologies side by side; the whole result also goes to a JSON file.
//!
//! ```text
//! cargo build --release -p ovnet-agent -p ovctl -p ovnet-bench
//! sudo ./target/release/ovnet-bench [--repeat 3] [--duration 10] [--json out.json]
//! ```
//!
//! Progress goes to stderr, the table to stdout. A variant that fails is reported and the
//! others still run; the exit status is non-zero if any failed. The test beds are torn down at
//! the end, a failed variant's at once, and on error, panic or SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use ovnet_bench::args::{self, Args, Command};
use ovnet_bench::report::{Hardware, Report, Topology, TopologyResult, Variant, VariantResult};
use ovnet_bench::topology::{self, progress, Bed, Binaries};
use ovnet_bench::{flood, growth, interrupt, measure, scale};
use serde_json::json;

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Scale(a)) => {
            if let Err(e) = interrupt::install() {
                eprintln!("ovnet-bench: warning: cannot catch SIGINT/SIGTERM ({e})");
            }
            return match scale::run_all(&a) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("ovnet-bench scale: error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Growth(a)) => {
            if let Err(e) = interrupt::install() {
                eprintln!("ovnet-bench: warning: cannot catch SIGINT/SIGTERM ({e})");
            }
            return match growth::run_all(&a) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("ovnet-bench growth: error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::FloodSend { to, seconds }) => {
            return match flood::send(to, seconds) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ovnet-bench flood-send: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Err(e) => {
            eprintln!("ovnet-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = interrupt::install() {
        eprintln!("ovnet-bench: warning: cannot catch SIGINT/SIGTERM ({e}); Ctrl-C may leave namespaces for the next run to sweep");
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ovnet-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `program` is an executable file in `PATH`.
fn in_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|dir| std::fs::metadata(dir.join(program)).is_ok_and(|m| m.is_file()))
    })
}

/// Whether the effective user is root, from the `Uid:` line of `/proc/self/status`.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Fails early, with what to do, if the harness cannot work here.
fn preflight(args: &Args) -> Result<Option<Binaries>> {
    if !is_root() {
        bail!("run as root: the test bed creates network namespaces, bridges and vxlan devices");
    }
    let mut tools = vec!["ip", "iperf3", "ping", "ss"];
    if args.variants.contains(&Variant::Kernel) {
        tools.push("bridge");
    }
    if args.variants.contains(&Variant::Ovnet) {
        tools.push("etcd");
    }
    let missing: Vec<&str> = tools.into_iter().filter(|t| !in_path(t)).collect();
    if !missing.is_empty() {
        bail!(
            "not found in PATH: {} (iproute2, iperf3, iputils-ping, etcd)",
            missing.join(", ")
        );
    }
    if args.variants.contains(&Variant::Ovnet) {
        return Binaries::locate().map(Some);
    }
    Ok(None)
}

fn iperf3_version() -> String {
    std::process::Command::new("iperf3")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// Builds `v`'s test bed over `topology` and waits until its containers reach each other.
fn build_bed(
    v: Variant,
    topology: Topology,
    bins: Option<&Binaries>,
    out: &mut VariantResult,
) -> Result<Bed> {
    let t0 = Instant::now();
    let mut bed = topology::build(v, topology, bins)?;
    out.notes.append(&mut bed.notes);
    progress(
        (topology, v),
        &format!("ready after {:.1} s", t0.elapsed().as_secs_f64()),
    );
    Ok(bed)
}

/// The order in which round `round` (from 1) visits `n` variants: as listed in odd rounds,
/// reversed in even ones, so that neither variant always measures right after the other.
fn round_order(n: usize, round: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if round % 2 == 0 {
        order.reverse();
    }
    order
}

/// On one topology: builds every variant's test bed, then takes each measurement of each
/// round on every bed in turn, so that the variants' samples of a figure are seconds, not
/// most of a run, apart (a shared machine drifts by 10 to 20 % within an hour; a bed that
/// waits its turn is idle and costs the measured one nothing that shows), and tears the beds
/// down before the next topology. A variant that fails is reported, its bed torn down, and
/// the others go on. Returns whether none failed.
fn measure_topology(args: &Args, bins: Option<&Binaries>, out: &mut TopologyResult) -> bool {
    let topology = out.topology;
    let results = &mut out.variants;
    let mut beds: Vec<Option<Bed>> = Vec::new();
    for result in results.iter_mut() {
        let bed = if interrupt::is_set() {
            None
        } else {
            build_bed(result.variant, topology, bins, result)
                .map_err(|e| fail(topology, result, &e))
                .ok()
        };
        beds.push(bed);
    }
    let tests: Vec<_> = args
        .tests
        .iter()
        .copied()
        .filter(|&t| topology.runs(t))
        .collect();
    'rounds: for round in 1..=args.repeat {
        for &test in &tests {
            for i in round_order(beds.len(), round) {
                let Some(bed) = beds[i].as_mut() else {
                    continue;
                };
                let result = &mut results[i];
                let measured = measure::run(bed, test, round, args, result);
                if let Err(e) = measured {
                    fail(topology, result, &e);
                    beds[i] = None;
                }
                if interrupt::is_set() {
                    break 'rounds;
                }
            }
        }
    }
    for (bed, result) in beds.iter_mut().zip(results.iter_mut()) {
        if let Some(bed) = bed.take() {
            result.notes.extend(bed.final_notes());
            progress((topology, result.variant), "tearing down");
        }
    }
    results.iter().all(|r| r.error.is_none())
}

/// Every topology in turn; returns whether no variant failed.
fn measure_all(args: &Args, bins: Option<&Binaries>, out: &mut [TopologyResult]) -> bool {
    let mut ok = true;
    for t in out.iter_mut() {
        if interrupt::is_set() {
            break;
        }
        ok &= measure_topology(args, bins, t);
    }
    ok
}

/// Records that `result`'s variant failed on `topology` with `e`.
fn fail(topology: Topology, result: &mut VariantResult, e: &anyhow::Error) {
    progress((topology, result.variant), &format!("FAILED: {e:#}"));
    result.error = Some(format!("{e:#}"));
}

fn run(args: &Args) -> Result<bool> {
    let bins = preflight(args)?;
    let hardware = Hardware::detect();
    eprintln!("ovnet-bench: {}", hardware.line());
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let pings: Vec<_> = [&measure::PING1, &measure::PING10, &measure::PING100]
        .iter()
        .map(|p| json!({"interval_s": p.interval, "count": p.count}))
        .collect();
    let mut report = Report {
        hardware,
        config: json!({
            "repeat": args.repeat,
            "duration_s": args.duration,
            "tcp_block_bytes": args.tcp_block,
            "variants": args.variants.iter().map(|v| v.key()).collect::<Vec<_>>(),
            "topologies": args.topologies.iter().map(|t| t.key()).collect::<Vec<_>>(),
            "tests": args::keys(&args.tests),
            "mtu": topology::MTU,
            "udp_payload_bytes": measure::UDP_PAYLOAD.parse::<u32>().unwrap_or(64),
            "flood_payload_bytes": flood::PAYLOAD,
            "pings": pings,
            "load": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
            "iperf3": iperf3_version(),
            "agent": bins.as_ref().map(|b| b.agent.display().to_string()),
        }),
        topologies: args
            .topologies
            .iter()
            .map(|&t| TopologyResult::new(t, &args.variants))
            .collect(),
        notes: Vec::new(),
        started_unix,
        runtime_s: 0.0,
    };
    let ok = measure_all(args, bins.as_ref(), &mut report.topologies);
    for v in &args.variants {
        let note = match v {
            Variant::Kernel => "kernel vxlan: agent CPU is n/a: the kernel's VXLAN work runs in softirq context, charged to whatever process was running, so it cannot be attributed",
            Variant::Ovnet => "ovnet: agent CPU is utime+stime (/proc/PID/stat) of all ovnet-agent processes during one iperf3 test, median over the TCP and UDP tests (per-test medians in the JSON); '% core' is one agent's, the mean over the hosts",
            Variant::Direct => "ovnet data plane: CPU is this harness process' utime+stime (the data-plane threads; the harness only waits meanwhile)",
        };
        report.notes.push(note.to_string());
    }
    report.notes.push(
        "ovnet's storm control (--bum-pps-per-endpoint/-network) is off in the bench: the flood measures head-end replication, not the default limit".to_string(),
    );
    report.notes.push(format!(
        "iperf3, both agents or data planes and the kernel's softirqs share the machine's {} cores: the results compare the VXLAN paths under identical conditions, not line rate",
        report.hardware.cores
    ));
    report.runtime_s = started.elapsed().as_secs_f64();
    print!("{}", report.table());
    let measured = report
        .topologies
        .iter()
        .flat_map(|t| &t.variants)
        .any(|r| !r.samples.is_empty());
    if interrupt::is_set() && !measured {
        // Keep the previous results rather than replace them with nothing.
        bail!(
            "interrupted before anything was measured; {} left as it was",
            args.json.display()
        );
    }
    if let Some(dir) = args.json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&report.to_json())?;
    std::fs::write(&args.json, text + "\n")
        .with_context(|| format!("writing {}", args.json.display()))?;
    eprintln!(
        "ovnet-bench: {:.0} s in all; results in {}",
        report.runtime_s,
        args.json.display()
    );
    if interrupt::is_set() {
        bail!("interrupted");
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::round_order;

    #[test]
    fn rounds_alternate_which_variant_goes_first() {
        assert_eq!(round_order(2, 1), vec![0, 1]);
        assert_eq!(round_order(2, 2), vec![1, 0]);
        assert_eq!(round_order(2, 3), vec![0, 1]);
        assert_eq!(round_order(3, 2), vec![2, 1, 0]);
        assert_eq!(round_order(1, 2), vec![0]);
    }
}
