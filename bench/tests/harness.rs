//! End-to-end check of the side-by-side harness (needs root, iproute2, iperf3): a short run of
//! two variants takes every round of every selected test on both, alternating which goes
//! first, writes the JSON and leaves no namespace behind. The `direct` variant stands in for
//! `ovnet` so that the test needs no release build of the agent.

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

#[test]
fn variants_take_turns_and_every_round_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("out.json");
    let child = Command::new(env!("CARGO_BIN_EXE_ovnet-bench"))
        .args(["--repeat", "2", "--duration", "1", "--tests", "tcp1,ping"])
        .args(["--variants", "kernel,direct", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ovnet-bench failed:\n{stderr}");

    // Both beds are built first, then each test runs on one and then the other, the
    // first variant first in odd rounds and second in even ones.
    let starts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(": TCP 1 stream for") || l.contains(": ping x"))
        .collect();
    let expected = [
        "[kernel] run 1/2: TCP 1 stream",
        "[direct] run 1/2: TCP 1 stream",
        "[kernel] run 1/2: ping",
        "[direct] run 1/2: ping",
        "[direct] run 2/2: TCP 1 stream",
        "[kernel] run 2/2: TCP 1 stream",
        "[direct] run 2/2: ping",
        "[kernel] run 2/2: ping",
    ];
    assert_eq!(starts.len(), expected.len(), "{stderr}");
    for (line, want) in starts.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{line:?} should start with {want:?}\n{stderr}"
        );
    }
    let ready: Vec<usize> = ["[kernel] ready after", "[direct] ready after"]
        .iter()
        .map(|m| {
            stderr
                .find(m)
                .unwrap_or_else(|| panic!("no {m:?} in\n{stderr}"))
        })
        .collect();
    let first_test = stderr.find("run 1/2: TCP 1 stream for").unwrap();
    assert!(ready.iter().all(|&r| r < first_test), "{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let variants = report["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2);
    for v in variants {
        assert!(v["error"].is_null(), "{v}");
        for metric in ["tcp_1_stream", "ping_avg", "ping_p99"] {
            let samples = v["metrics"][metric]["samples"].as_array().unwrap();
            assert_eq!(samples.len(), 2, "{} {metric}: {v}", v["variant"]);
            assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0), "{v}");
        }
        for metric in ["tcp_2_streams", "udp_64b_received"] {
            let samples = v["metrics"][metric]["samples"].as_array().unwrap();
            assert!(samples.is_empty(), "{} {metric}: {v}", v["variant"]);
        }
    }
    // Runs are paired: one ratio per run for the throughput measured.
    let ratios = report["run_ratios"]["dataplane/kernel"]["tcp_1_stream"]
        .as_array()
        .unwrap_or_else(|| panic!("no run ratios in {report}"));
    assert_eq!(ratios.len(), 2, "{report}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("dataplane/kernel run by run: TCP 1 stream"),
        "{stdout}"
    );
    let left = namespaces_of(pid);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
