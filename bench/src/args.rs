//! The harness' command line:
//! `ovnet-bench [--repeat N] [--duration SECONDS] [--json PATH] [--variants LIST] [--tests LIST]`.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use crate::report::Variant;

/// Usage text for `--help` and errors.
pub const USAGE: &str = "\
usage: ovnet-bench [--repeat N] [--duration SECONDS] [--json PATH] [--variants LIST] [--tests LIST]

Builds two hosts (network namespaces on a veth underlay) with one container each on a bridge
(MTU 1450), once per variant, and measures iperf3 TCP (1 and 2 streams), iperf3 UDP with
64-byte datagrams, ping round trips and the CPU time of the VXLAN path, each test on every
variant in turn (the first variant first in odd runs, last in even ones). Needs root, iproute2,
iperf3 and etcd; for `ovnet`, release builds of the agent and the CLI next to this binary:
    cargo build --release -p ovnet-agent -p ovctl

options:
  --repeat N          runs of every measurement; medians are reported (default 3)
  --duration SECONDS  length of each iperf3 test (default 10)
  --json PATH         where to write the results (default bench/results/latest.json)
  --variants LIST     comma-separated, in order: kernel, ovnet, direct (ovnet's data plane
                      linked into the harness, without agents or etcd) (default kernel,ovnet)
  --tests LIST        comma-separated, any of: tcp1, tcp2, udp, ping (default all four)
  -h, --help          this text";

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// Runs of every measurement.
    pub repeat: u32,
    /// Seconds of each iperf3 test.
    pub duration: u32,
    /// Output file of the JSON document.
    pub json: PathBuf,
    /// Variants to run, in order, without duplicates.
    pub variants: Vec<Variant>,
    /// Measurements to take in each run.
    pub tests: Tests,
}

/// Which measurements a run takes (all by default; fewer for quick comparisons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tests {
    /// iperf3 TCP, one stream.
    pub tcp1: bool,
    /// iperf3 TCP, two streams.
    pub tcp2: bool,
    /// iperf3 UDP, 64-byte datagrams.
    pub udp: bool,
    /// ping round trips.
    pub ping: bool,
}

impl Tests {
    /// Every measurement.
    pub const ALL: Tests = Tests {
        tcp1: true,
        tcp2: true,
        udp: true,
        ping: true,
    };

    /// The selected measurements, in run order.
    pub fn list(&self) -> Vec<Test> {
        [
            (self.tcp1, Test::Tcp1),
            (self.tcp2, Test::Tcp2),
            (self.udp, Test::Udp),
            (self.ping, Test::Ping),
        ]
        .into_iter()
        .filter_map(|(on, t)| on.then_some(t))
        .collect()
    }

    /// The keys of the selected measurements, in run order.
    pub fn keys(&self) -> Vec<&'static str> {
        self.list().into_iter().map(Test::key).collect()
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// iperf3 TCP, one stream.
    Tcp1,
    /// iperf3 TCP, two streams.
    Tcp2,
    /// iperf3 UDP, 64-byte datagrams.
    Udp,
    /// ping round trips.
    Ping,
}

impl Test {
    /// Its name on the command line and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Test::Tcp1 => "tcp1",
            Test::Tcp2 => "tcp2",
            Test::Udp => "udp",
            Test::Ping => "ping",
        }
    }
}

fn tests(list: &str) -> Result<Tests> {
    let mut out = Tests {
        tcp1: false,
        tcp2: false,
        udp: false,
        ping: false,
    };
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        match key {
            "tcp1" => out.tcp1 = true,
            "tcp2" => out.tcp2 = true,
            "udp" => out.udp = true,
            "ping" => out.ping = true,
            _ => bail!("unknown test {key:?}: use tcp1, tcp2, udp or ping"),
        }
    }
    if out.keys().is_empty() {
        bail!("--tests needs at least one of tcp1, tcp2, udp, ping");
    }
    Ok(out)
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the benchmark.
    Run(Args),
    /// Print [`USAGE`].
    Help,
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

fn variants(list: &str) -> Result<Vec<Variant>> {
    let mut out = Vec::new();
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        let v = Variant::from_key(key)
            .ok_or_else(|| anyhow!("unknown variant {key:?}: use kernel, ovnet or direct"))?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        bail!("--variants needs at least one of kernel, ovnet, direct");
    }
    Ok(out)
}

/// Parses the arguments after the program name. Accepts `--opt value` and `--opt=value`.
pub fn parse<I, S>(args: I) -> Result<Command>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut out = Args {
        repeat: 3,
        duration: 10,
        json: default_json_path(),
        variants: vec![Variant::Kernel, Variant::Ovnet],
        tests: Tests::ALL,
    };
    let mut it = args.into_iter().map(Into::into);
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            return Ok(Command::Help);
        }
        if !["--repeat", "--duration", "--json", "--variants", "--tests"].contains(&name.as_str()) {
            bail!("unknown argument {arg:?}\n\n{USAGE}");
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| anyhow!("{name} needs a value\n\n{USAGE}"))?,
        };
        match name.as_str() {
            "--repeat" => out.repeat = positive("--repeat", &value, 100)?,
            "--duration" => out.duration = positive("--duration", &value, 3600)?,
            "--json" if value.is_empty() => bail!("--json needs a path"),
            "--json" => out.json = PathBuf::from(value),
            "--tests" => out.tests = tests(&value)?,
            _ => out.variants = variants(&value)?,
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
            Command::Help => panic!("help"),
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
        assert_eq!(a.tests, Tests::ALL);
    }

    #[test]
    fn a_subset_of_tests() {
        let a = run(&["--tests", "ping,tcp2"]);
        assert_eq!(a.tests.keys(), vec!["tcp2", "ping"]);
        let a = run(&["--tests=udp"]);
        assert_eq!(a.tests.keys(), vec!["udp"]);
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
    fn help_and_errors() {
        assert_eq!(parse(["--help"]).unwrap(), Command::Help);
        assert_eq!(parse(["--repeat", "2", "-h"]).unwrap(), Command::Help);
        for bad in [
            &["--repeat"][..],
            &["--repeat", "0"],
            &["--repeat", "x"],
            &["--duration", "-1"],
            &["--json="],
            &["--variants", "kernel,bpf"],
            &["--variants", ","],
            &["--tests", "tcp3"],
            &["--tests", ""],
            &["--fast"],
            &["extra"],
        ] {
            assert!(parse(bad.iter().copied()).is_err(), "{bad:?}");
        }
    }
}
