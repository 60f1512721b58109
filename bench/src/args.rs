//! The harness' command line: `ovnet-bench [--repeat N] [--duration SECONDS] [--json PATH]
//! [--variants LIST] [--topologies LIST] [--tests LIST]`, the control plane at scale
//! (`ovnet-bench scale [--hosts LIST] [--connects N] [--json PATH]`), cost as networks and
//! peers grow (`ovnet-bench growth [--networks LIST] [--peers LIST] [--duration SECONDS]
//! [--json PATH] [--plot PATH]`), and the hidden `flood-send` helper the harness runs inside a
//! container.

use std::net::SocketAddrV4;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

pub use crate::kinds::Test;
use crate::kinds::{Topology, Variant};

/// Usage text for `--help` and errors.
pub const USAGE: &str = "\
usage: ovnet-bench [--repeat N] [--duration SECONDS] [--json PATH] [--variants LIST]
                   [--topologies LIST] [--tests LIST] [--tcp-block BYTES]

Builds simulated hosts (network namespaces) with one container each on a bridge (MTU 1450),
once per variant and topology, and measures iperf3 TCP (1 and 2 streams), iperf3 UDP with
64-byte datagrams, ping round trips at several intervals and under load, the agents' CPU when
idle, broadcast flooding, and the CPU time of the VXLAN path; each test on every variant in
turn (the first variant first in odd runs, last in even ones). Needs root, iproute2, iperf3
and etcd; for `ovnet`, release builds of the agent and the CLI next to this binary:
    cargo build --release -p ovnet-agent -p ovctl -p ovnet-bench

options:
  --repeat N          runs of every measurement; medians are reported (default 3)
  --duration SECONDS  length of each iperf3, idle and flood test (default 10)
  --json PATH         where to write the results (default bench/results/latest.json)
  --variants LIST     comma-separated, in order: kernel, ovnet, direct (ovnet's data plane
                      linked into the harness, without agents or etcd) (default kernel,ovnet)
  --topologies LIST   comma-separated, in order: veth (two hosts joined by one veth pair),
                      switch (two hosts on an underlay bridge), three (three hosts on the
                      bridge: flooding), routed (two hosts in two subnets behind two
                      routers) (default all four)
  --tests LIST        comma-separated, any of: tcp1, tcp2, udp, ping1, ping10, ping100,
                      pingload (ping every 10 ms beside a TCP stream), ping (the four pings),
                      idle, flood (default all); each topology takes those it supports
  --tcp-block BYTES   bytes per write of the tcp1 and tcp2 tests' iperf3 client (-l; default
                      iperf3's 128 KiB). On AMD Zen 3 the sender's copy into its socket
                      runs up to 3x slower for some sizes: see docs/performance.md
  -h, --help          this text

ovnet-bench scale [--hosts LIST] [--connects N] [--json PATH]
  The control plane at scale: one etcd and N simulated hosts with an agent each on the
  underlay switch; times a network's spread to every agent, `ovctl network connect` and
  connect to first ping from host 1's container, and reports failed pings, agent RSS and idle
  CPU. Above 16 hosts raises net.ipv4.neigh.default.gc_thresh1..3 for the run and restores
  them.
  --hosts LIST        comma-separated host counts, 2 to 250 (default 16,40,100)
  --connects N        connects timed per host count, spread over the hosts (default 30)
  --json PATH         where to write the results (default bench/results/scale.json)

ovnet-bench growth [--networks LIST] [--peers LIST] [--duration SECONDS] [--json PATH]
                   [--plot PATH]
  Cost as the work grows. Networks: two hosts, then 1, 16, 128... networks with a container
  per host each; agent RSS, descriptors, threads, idle CPU, and 64-byte UDP through the first
  network. Peers: 2, 8, 32... hosts on one network with a container each; the same figures,
  64-byte UDP between two of them, and a flood of 64-byte broadcasts from host 1's container
  counted at every other (head-end replication; storm control off). Above 16 peers raises
  net.ipv4.neigh.default.gc_thresh1..3 for the run and restores them.
  --networks LIST     ascending network counts, 1 to 1000 (default 1,16,128)
  --peers LIST        ascending host counts, 2 to 250 (default 2,8,32)
  --duration SECONDS  each idle, UDP and flood window (default 5)
  --plot PATH         also draw the curves into this PNG (needs fonts-dejavu-core)
  --json PATH         where to write the results (default bench/results/growth.json)";

/// Options of `ovnet-bench growth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowthArgs {
    /// Network counts, ascending.
    pub networks: Vec<u32>,
    /// Host counts of the peers series, ascending.
    pub peers: Vec<u8>,
    /// Where to draw the plot, if anywhere.
    pub plot: Option<PathBuf>,
    /// Seconds of each window.
    pub duration: u32,
    /// Output file of the JSON document.
    pub json: PathBuf,
}

/// The `--name value` and `--name=value` pairs of `args`, each name one of `known`, in order;
/// `None` if help was asked for. A missing value's error ends with `missing_suffix`.
fn options(
    args: &[String],
    known: &[&str],
    missing_suffix: &str,
) -> Result<Option<Vec<(String, String)>>> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(None);
        }
        if !known.contains(&name.as_str()) {
            bail!("unknown argument {arg:?}\n\n{USAGE}");
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| anyhow!("{name} needs a value{missing_suffix}"))?,
        };
        out.push((name, value));
    }
    Ok(Some(out))
}

/// A comma-separated list of ascending counts from `min` to `max` for option `name`.
fn ascending(name: &str, value: &str, min: u32, max: u32) -> Result<Vec<u32>> {
    let mut counts = Vec::new();
    for n in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let n = positive(name, n, max)?;
        if n < min {
            bail!("{name}: {n} is too few, the least is {min}");
        }
        counts.push(n);
    }
    if counts.is_empty() || !counts.windows(2).all(|w| w[0] < w[1]) {
        bail!(
            "{name} needs ascending counts from {min} to {max}, e.g. {min},{}",
            min * 4
        );
    }
    Ok(counts)
}

fn growth(rest: &[String]) -> Result<Command> {
    let mut out = GrowthArgs {
        networks: vec![1, 16, 128],
        peers: vec![2, 8, 32],
        plot: None,
        duration: 5,
        json: default_json_path().with_file_name("growth.json"),
    };
    let known = ["--networks", "--peers", "--duration", "--json", "--plot"];
    let Some(pairs) = options(rest, &known, "")? else {
        return Ok(Command::Help);
    };
    for (name, value) in pairs {
        match name.as_str() {
            "--duration" => out.duration = positive(&name, &value, 3600)?,
            "--json" | "--plot" if value.is_empty() => bail!("{name} needs a path"),
            "--json" => out.json = PathBuf::from(value),
            "--plot" => out.plot = Some(PathBuf::from(value)),
            "--peers" => {
                out.peers = ascending(&name, &value, 2, 250)?
                    .into_iter()
                    .map(|n| n as u8)
                    .collect()
            }
            _ => out.networks = ascending(&name, &value, 1, 1000)?,
        }
    }
    Ok(Command::Growth(out))
}

/// Options of `ovnet-bench scale`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleArgs {
    /// Host counts, in order.
    pub hosts: Vec<u8>,
    /// Connects timed per host count.
    pub connects: usize,
    /// Output file of the JSON document.
    pub json: PathBuf,
}

fn scale(rest: &[String]) -> Result<Command> {
    let mut out = ScaleArgs {
        hosts: vec![16, 40, 100],
        connects: 30,
        json: default_json_path().with_file_name("scale.json"),
    };
    let Some(pairs) = options(rest, &["--hosts", "--connects", "--json"], "")? else {
        return Ok(Command::Help);
    };
    for (name, value) in pairs {
        match name.as_str() {
            "--connects" => out.connects = positive(&name, &value, 250)? as usize,
            "--json" if value.is_empty() => bail!("--json needs a path"),
            "--json" => out.json = PathBuf::from(value),
            _ => {
                let mut hosts = Vec::new();
                for h in value.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                    let n = positive("--hosts", h, 250)?;
                    if n < 2 {
                        bail!("--hosts: {n} is too few, the bench needs 2 hosts or more");
                    }
                    hosts.push(n as u8);
                }
                if hosts.is_empty() {
                    bail!("--hosts needs at least one host count");
                }
                out.hosts = hosts;
            }
        }
    }
    Ok(Command::Scale(out))
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Runs of every measurement.
    pub repeat: u32,
    /// Seconds of each iperf3, idle and flood test.
    pub duration: u32,
    /// Output file of the JSON document.
    pub json: PathBuf,
    /// Variants to run, in order, without duplicates.
    pub variants: Vec<Variant>,
    /// Underlays to build, in order, without duplicates.
    pub topologies: Vec<Topology>,
    /// Measurements to take in each run, in run order.
    pub tests: Vec<Test>,
    /// Bytes per write of the TCP tests' iperf3 client; `None`: iperf3's default.
    pub tcp_block: Option<u32>,
}

/// The keys of `tests`.
pub fn keys(tests: &[Test]) -> Vec<&'static str> {
    tests.iter().map(|t| t.key()).collect()
}

fn tests(list: &str) -> Result<Vec<Test>> {
    let mut out = Vec::new();
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let picked: Vec<Test> = match key {
            "ping" => Test::PINGS.to_vec(),
            _ => vec![Test::from_key(key).ok_or_else(|| {
                anyhow!(
                    "unknown test {key:?}: use {} or ping",
                    keys(&Test::ALL).join(", ")
                )
            })?],
        };
        out.extend(picked);
    }
    if out.is_empty() {
        bail!(
            "--tests needs at least one of {}",
            keys(&Test::ALL).join(", ")
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Run the benchmark.
    Run(Args),
    /// Print [`USAGE`].
    Help,
    /// The control plane at scale.
    Scale(ScaleArgs),
    /// Cost as networks grow.
    Growth(GrowthArgs),
    /// The flood test's sender, run by the harness inside a container:
    /// `ovnet-bench flood-send ADDR:PORT SECONDS` sends 64-byte datagrams to a broadcast
    /// address as fast as it can and prints how many it sent.
    FloodSend {
        /// Where to.
        to: SocketAddrV4,
        /// For how long.
        seconds: f64,
    },
}

/// Default output: `bench/results/latest.json` in the source tree (git-ignored).
pub fn default_json_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join("latest.json")
}

fn positive(name: &str, value: &str, max: u32) -> Result<u32> {
    let n: u32 = value
        .parse()
        .with_context(|| format!("{name} wants a whole number, not {value:?}"))?;
    if n == 0 || n > max {
        bail!("{name} must be between 1 and {max}, not {n}");
    }
    Ok(n)
}

/// A comma-separated list of keys, in order and without duplicates; `what` names the option.
fn list<T: PartialEq + Copy>(
    list: &str,
    what: &str,
    all: &[T],
    key: fn(T) -> &'static str,
) -> Result<Vec<T>> {
    let known: Vec<&str> = all.iter().map(|&t| key(t)).collect();
    let mut out = Vec::new();
    for k in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let v = all
            .iter()
            .copied()
            .find(|&t| key(t) == k)
            .ok_or_else(|| anyhow!("unknown {what} {k:?}: use {}", known.join(", ")))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        bail!("--{what}s needs at least one of {}", known.join(", "));
    }
    Ok(out)
}

/// The hidden `flood-send ADDR:PORT SECONDS` command.
fn flood_send(rest: &[String]) -> Result<Command> {
    let [to, seconds] = rest else {
        bail!("usage: ovnet-bench flood-send ADDR:PORT SECONDS");
    };
    let to: SocketAddrV4 = to
        .parse()
        .with_context(|| format!("flood-send wants an IPv4 ADDR:PORT, not {to:?}"))?;
    let seconds: f64 = seconds
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0 && *s <= 3600.0)
        .ok_or_else(|| anyhow!("flood-send wants 0 < SECONDS <= 3600, not {seconds:?}"))?;
    Ok(Command::FloodSend { to, seconds })
}

/// Parses the arguments after the program name. Accepts `--opt value` and `--opt=value`.
pub fn parse<I, S>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let all: Vec<String> = args.into_iter().map(Into::into).collect();
    match all.first().map(String::as_str) {
        Some("flood-send") => return flood_send(&all[1..]),
        Some("scale") => return scale(&all[1..]),
        Some("growth") => return growth(&all[1..]),
        _ => {}
    }
    let mut out = Args {
        repeat: 3,
        duration: 10,
        json: default_json_path(),
        variants: vec![Variant::Kernel, Variant::Ovnet],
        topologies: Topology::ALL.to_vec(),
        tests: Test::ALL.to_vec(),
        tcp_block: None,
    };
    let known = [
        "--repeat",
        "--duration",
        "--json",
        "--variants",
        "--topologies",
        "--tests",
        "--tcp-block",
    ];
    let Some(pairs) = options(&all, &known, &format!("\n\n{USAGE}"))? else {
        return Ok(Command::Help);
    };
    for (name, value) in pairs {
        match name.as_str() {
            "--repeat" => out.repeat = positive("--repeat", &value, 100)?,
            "--duration" => out.duration = positive("--duration", &value, 3600)?,
            "--json" if value.is_empty() => bail!("--json needs a path"),
            "--json" => out.json = PathBuf::from(value),
            "--tests" => out.tests = tests(&value)?,
            "--tcp-block" => out.tcp_block = Some(positive("--tcp-block", &value, 1 << 20)?),
            "--topologies" => {
                out.topologies = list(&value, "topology", &Topology::ALL, Topology::key)?
            }
            _ => out.variants = list(&value, "variant", &Variant::ALL, Variant::key)?,
        }
    }
    Ok(Command::Run(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Args {
        match parse(args.iter().copied()).unwrap() {
            Command::Run(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let a = run(&[]);
        assert_eq!((a.repeat, a.duration), (3, 10));
        assert!(
            a.json.ends_with("bench/results/latest.json"),
            "{:?}",
            a.json
        );
        assert_eq!(a.variants, vec![Variant::Kernel, Variant::Ovnet]);
        assert_eq!(a.tests, Test::ALL.to_vec());
        assert_eq!(a.topologies, Topology::ALL.to_vec());
        assert_eq!(a.tcp_block, None);
    }

    #[test]
    fn tcp_block() {
        assert_eq!(run(&["--tcp-block", "131000"]).tcp_block, Some(131_000));
        assert_eq!(run(&["--tcp-block=1048576"]).tcp_block, Some(1 << 20));
    }

    #[test]
    fn a_subset_of_tests_in_run_order() {
        let a = run(&["--tests", "ping10,tcp2"]);
        assert_eq!(keys(&a.tests), vec!["tcp2", "ping10"]);
        let a = run(&["--tests=udp"]);
        assert_eq!(keys(&a.tests), vec!["udp"]);
        let a = run(&["--tests", "ping,ping1,flood"]);
        assert_eq!(
            keys(&a.tests),
            vec!["ping1", "ping10", "ping100", "pingload", "flood"]
        );
    }

    #[test]
    fn topologies_in_the_order_given() {
        let a = run(&["--topologies", "switch,veth,switch"]);
        assert_eq!(a.topologies, vec![Topology::Switch, Topology::Veth]);
    }

    #[test]
    fn both_spellings() {
        let a = run(&["--repeat", "1", "--duration=3", "--json", "/tmp/x.json"]);
        assert_eq!((a.repeat, a.duration), (1, 3));
        assert_eq!(a.json, PathBuf::from("/tmp/x.json"));
        let a = run(&["--variants=direct,kernel,direct"]);
        assert_eq!(a.variants, vec![Variant::Direct, Variant::Kernel]);
    }

    #[test]
    fn the_flood_sender() {
        assert_eq!(
            parse(["flood-send", "10.0.0.255:5301", "2.5"]).unwrap(),
            Command::FloodSend {
                to: "10.0.0.255:5301".parse().unwrap(),
                seconds: 2.5
            }
        );
        for bad in [
            &["flood-send"][..],
            &["flood-send", "10.0.0.255", "1"],
            &["flood-send", "10.0.0.255:1", "0"],
            &["flood-send", "10.0.0.255:1", "x"],
            &["flood-send", "10.0.0.255:1", "1", "2"],
        ] {
            assert!(parse(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_scale_bench() {
        let Command::Scale(a) = parse(["scale"]).unwrap() else {
            panic!("not scale");
        };
        assert_eq!(a.hosts, vec![16, 40, 100]);
        assert_eq!(a.connects, 30);
        assert!(a.json.ends_with("results/scale.json"), "{:?}", a.json);
        let Command::Scale(a) = parse([
            "scale",
            "--hosts",
            "4,8",
            "--connects=3",
            "--json",
            "/tmp/s.json",
        ])
        .unwrap() else {
            panic!("not scale");
        };
        assert_eq!(
            (a.hosts, a.connects, a.json),
            (vec![4, 8], 3, PathBuf::from("/tmp/s.json"))
        );
        for bad in [
            &["scale", "--hosts", "1"][..],
            &["scale", "--hosts", "251"],
            &["scale", "--hosts", ","],
            &["scale", "--connects", "0"],
            &["scale", "--repeat", "2"],
            &["scale", "--json"],
        ] {
            assert!(parse(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_growth_bench() {
        let Command::Growth(a) = parse(["growth"]).unwrap() else {
            panic!("not growth");
        };
        assert_eq!((a.networks, a.duration), (vec![1, 16, 128], 5));
        assert_eq!((a.peers, a.plot), (vec![2, 8, 32], None));
        assert!(a.json.ends_with("results/growth.json"), "{:?}", a.json);
        let Command::Growth(a) = parse([
            "growth",
            "--networks=2,4",
            "--duration",
            "1",
            "--peers",
            "3, 250",
            "--plot=/tmp/g.png",
        ])
        .unwrap() else {
            panic!("not growth");
        };
        assert_eq!((a.networks, a.duration), (vec![2, 4], 1));
        assert_eq!(
            (a.peers, a.plot),
            (vec![3, 250], Some(PathBuf::from("/tmp/g.png")))
        );
        for bad in [
            &["growth", "--networks", "4,2"][..],
            &["growth", "--networks", "2,2"],
            &["growth", "--networks", "0"],
            &["growth", "--networks", ""],
            &["growth", "--peers", "1,8"],
            &["growth", "--peers", "251"],
            &["growth", "--peers", "8,2"],
            &["growth", "--plot", ""],
            &["growth", "--duration", "0"],
            &["growth", "--hosts", "2"],
        ] {
            assert!(parse(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn help_and_errors() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["--repeat", "2", "-h"]).unwrap(), Command::Help);
        for bad in [
            &["--repeat"][..],
            &["--repeat", "0"],
            &["--repeat", "x"],
            &["--duration", "-1"],
            &["--tcp-block", "0"],
            &["--tcp-block", "1048577"],
            &["--tcp-block", "64k"],
            &["--json="],
            &["--variants", "kernel,bpf"],
            &["--variants", ","],
            &["--topologies", "ring"],
            &["--topologies", ""],
            &["--tests", "tcp3"],
            &["--tests", ""],
            &["--fast"],
            &["extra"],
        ] {
            assert!(parse(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }
}
