//! End-to-end check of the side-by-side harness (needs root, iproute2, iperf3): a short run of
//! two variants over three topologies takes every round of every test a topology supports on
//! both, alternating which goes first, writes the JSON and leaves no namespace behind. The `direct` variant stands in for
//! `ovnet` so that the test needs no release build of the agent.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Names of the namespaces the test beds of process `pid` made: test bed names are `ov`, the
/// pid in five base-36 digits, then the rest (`testing/testbed/src/names.rs`). Other tests
/// running at the same time have other pids.
fn namespaces_of(pid: u32) -> Vec<String> {
    const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = [b'0'; 5];
    let mut v = pid;
    for d in digits.iter_mut().rev() {
        *d = BASE36[(v % 36) as usize];
        v /= 36;
    }
    let prefix = format!("ov{}", std::str::from_utf8(&digits).unwrap());
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// What a run of `ovnet-bench` printed.
struct Run {
    stdout: String,
    stderr: String,
}

/// Runs `ovnet-bench` (`exe`, this crate's unless given) with `args`, checks that it succeeded,
/// that it left no namespace behind and that it wrote `json`, and returns its output and the
/// JSON.
fn run_bench(exe: Option<&Path>, args: &[&OsStr], json: &Path) -> (Run, serde_json::Value) {
    let exe = exe.unwrap_or(Path::new(env!("CARGO_BIN_EXE_ovnet-bench")));
    let child = Command::new(exe)
        .args(args)
        .arg("--json")
        .arg(json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let run = Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        out.status.success(),
        "ovnet-bench {args:?} failed:\n{}",
        run.stderr
    );
    let left = namespaces_of(pid);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let report = std::fs::read_to_string(json).unwrap();
    (run, serde_json::from_str(&report).unwrap())
}

/// `args` as the OS strings [`run_bench`] takes.
fn os<'a>(args: &[&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(|a| OsStr::new(*a)).collect()
}

#[test]
fn variants_take_turns_on_every_topology_and_every_round_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let args = os(&[
        "--repeat",
        "2",
        "--duration",
        "1",
        "--tests",
        "tcp1,ping1,flood",
        "--variants",
        "kernel,direct",
        "--topologies",
        "veth,three,routed",
    ]);
    let (run, report) = run_bench(None, &args, &json);
    let stderr = &run.stderr;

    // On each topology both beds are built first, then each test runs on one and then the
    // other, the first variant first in odd rounds and second in even ones. The veth pair
    // takes no flood, the three hosts no ping every millisecond, the routed hosts neither.
    let starts: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.contains(": TCP 1 stream for") || l.contains(": ping x") || l.contains(": flood of")
        })
        .collect();
    let expected = [
        "[veth/kernel] run 1/2: TCP 1 stream",
        "[veth/direct] run 1/2: TCP 1 stream",
        "[veth/kernel] run 1/2: ping x2000 every 0.001 s",
        "[veth/direct] run 1/2: ping",
        "[veth/direct] run 2/2: TCP 1 stream",
        "[veth/kernel] run 2/2: TCP 1 stream",
        "[veth/direct] run 2/2: ping",
        "[veth/kernel] run 2/2: ping",
        "[three/kernel] run 1/2: TCP 1 stream",
        "[three/direct] run 1/2: TCP 1 stream",
        "[three/kernel] run 1/2: flood of 64 B broadcasts to 2 containers",
        "[three/direct] run 1/2: flood",
        "[three/direct] run 2/2: TCP 1 stream",
        "[three/kernel] run 2/2: TCP 1 stream",
        "[three/direct] run 2/2: flood",
        "[three/kernel] run 2/2: flood",
        "[routed/kernel] run 1/2: TCP 1 stream",
        "[routed/direct] run 1/2: TCP 1 stream",
        "[routed/direct] run 2/2: TCP 1 stream",
        "[routed/kernel] run 2/2: TCP 1 stream",
    ];
    assert_eq!(starts.len(), expected.len(), "{stderr}");
    for (line, want) in starts.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{line:?} should start with {want:?}\n{stderr}"
        );
    }
    for topo in ["veth", "three", "routed"] {
        let ready: Vec<usize> = ["kernel", "direct"]
            .iter()
            .map(|v| {
                let m = format!("[{topo}/{v}] ready after");
                stderr
                    .find(&m)
                    .unwrap_or_else(|| panic!("no {m:?} in\n{stderr}"))
            })
            .collect();
        let first_test = stderr
            .find(&format!("[{topo}/kernel] run 1/2: TCP 1 stream for"))
            .unwrap();
        assert!(ready.iter().all(|&r| r < first_test), "{stderr}");
    }

    let topologies = report["topologies"].as_array().unwrap();
    assert_eq!(topologies.len(), 3);
    for (t, measured, unmeasured) in [
        (
            &topologies[0],
            &["tcp_1_stream", "ping_p50_1ms", "ping_p99_1ms"][..],
            &["tcp_2_streams", "flood_64b_received", "ping_p50_10ms"][..],
        ),
        (
            &topologies[1],
            &["tcp_1_stream", "flood_64b_received", "flood_64b_sent"][..],
            &["ping_p50_1ms", "udp_64b_received"][..],
        ),
        (
            &topologies[2],
            &["tcp_1_stream"][..],
            &["ping_p50_1ms", "flood_64b_received"][..],
        ),
    ] {
        let variants = t["variants"].as_array().unwrap();
        assert_eq!(variants.len(), 2);
        for v in variants {
            assert!(v["error"].is_null(), "{v}");
            for metric in measured {
                let samples = v["metrics"][metric]["samples"].as_array().unwrap();
                assert_eq!(samples.len(), 2, "{} {metric}: {v}", v["variant"]);
                assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{v}");
            }
            for metric in unmeasured {
                let samples = v["metrics"][metric]["samples"].as_array().unwrap();
                assert!(samples.is_empty(), "{} {metric}: {v}", v["variant"]);
            }
        }
        // Runs are paired: one ratio per run for the throughputs measured.
        let ratios = t["run_ratios"]["dataplane/kernel"]["tcp_1_stream"]
            .as_array()
            .unwrap_or_else(|| panic!("no run ratios in {report}"));
        assert_eq!(ratios.len(), 2, "{report}");
    }
    // The in-process data plane's agent CPU is counted, per host, as % of a core.
    let direct = &topologies[0]["variants"][1]["metrics"];
    assert_eq!(
        direct["agent_core_percent_ping_1ms"]["samples"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let stdout = &run.stdout;
    assert!(
        stdout.contains("dataplane/kernel run by run: TCP 1 stream"),
        "{stdout}"
    );
    assert!(stdout.contains(veth_heading()), "{stdout}");
}

/// The heading of the veth topology's table.
fn veth_heading() -> &'static str {
    "== direct veth"
}

/// This crate's `ovnet-bench`, if the agent and the CLI were built next to it (else the test
/// is skipped, saying why).
fn bench_with_agents() -> Option<PathBuf> {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ovnet-bench"));
    let dir = exe.parent().unwrap();
    if !dir.join("ovnet-agent").is_file() || !dir.join("ovctl").is_file() {
        ovnet_testbed::skip(format!(
            "no ovnet-agent and ovctl in {} (cargo build -p ovnet-agent -p ovctl, or test the workspace)",
            dir.display()
        ));
        return None;
    }
    Some(exe)
}

#[test]
fn the_scale_bench_times_connects() {
    let Some(exe) = bench_with_agents() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("scale.json");
    let args = os(&["scale", "--hosts", "3", "--connects", "2"]);
    let (run, report) = run_bench(Some(&exe), &args, &json);
    let r = &report["results"][0];
    assert_eq!(r["hosts"], 3, "{report}");
    assert_eq!(r["failed_pings"], 0, "{report}\n{}", run.stderr);
    for key in ["connect_ms", "first_ping_ms"] {
        let samples = r[key]["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "{key}: {report}");
        assert!(
            samples.iter().all(|s| s.as_f64().unwrap() > 0.0),
            "{report}"
        );
    }
    assert!(
        r["network_everywhere_ms"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert_eq!(r["agent_rss_kib"]["samples"].as_array().unwrap().len(), 3);
    assert!(run.stdout.contains("| 3 | "), "{}", run.stdout);
}

#[test]
fn the_growth_bench_measures_networks_and_peers_and_draws_the_plot() {
    let Some(exe) = bench_with_agents() else {
        return;
    };
    if !Path::new(ovnet_bench::plot::FONT).is_file() {
        ovnet_testbed::skip(format!(
            "no {}: install fonts-dejavu-core (deploy/deps.sh)",
            ovnet_bench::plot::FONT
        ));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (json, png) = (tmp.path().join("growth.json"), tmp.path().join("g.png"));
    let mut args = os(&[
        "growth",
        "--networks",
        "1,2",
        "--peers",
        "2,3",
        "--duration",
        "1",
        "--plot",
    ]);
    args.push(png.as_os_str());
    let (run, report) = run_bench(Some(&exe), &args, &json);
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    let positive = |v: &serde_json::Value| v.as_f64().is_some_and(|x| x > 0.0);
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{report}");
    for (s, networks) in steps.iter().zip([1, 2]) {
        assert_eq!(s["networks"], networks, "{report}");
        assert_eq!(s["agent_fds"].as_array().unwrap().len(), 2, "{report}");
        assert!(positive(&s["udp_64b_kpps"]), "{report}");
    }
    let peers = report["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2, "{report}");
    for (p, hosts) in peers.iter().zip([2, 3]) {
        assert_eq!(p["hosts"], hosts, "{report}");
        let agents = p["agent_rss_kib"].as_array().unwrap().len();
        assert_eq!(agents, hosts, "{report}");
        assert!(positive(&p["udp_64b_kpps"]), "{report}");
        // Every host takes broadcasts: storm control is off, the flood replicated.
        let flood = &p["flood_64b"];
        for key in ["sent_kpps", "slowest_receiver_kpps", "delivered_kpps"] {
            assert!(positive(&flood[key]), "{key}: {report}\n{}", run.stderr);
        }
    }
    let stdout = &run.stdout;
    assert!(
        stdout.contains("| networks | agent RSS (MiB) |"),
        "{stdout}"
    );
    assert!(stdout.contains("\n| 3 | "), "{stdout}");
    let reader = png::Decoder::new(std::fs::File::open(&png).unwrap())
        .read_info()
        .unwrap();
    let size = (reader.info().width, reader.info().height);
    assert_eq!(size, ovnet_bench::plot::SIZE);
}
