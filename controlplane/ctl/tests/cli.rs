//! `ovctl` on its own: what it refuses before it calls an agent, where it looks for the agent,
//! and what it says when there is none. No agent runs here; `agent.rs` runs `ovctl` against
//! the real agent.
//!
//! A command refused before any call is run with `--agent` pointing at a socket that does not
//! exist: had `ovctl` tried to reach the agent, it would have said so instead.

use std::path::Path;
use std::process::Command;

/// What a run of the binary printed and returned.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `ovctl ARGS` with `env` (and no `OVNET_AGENT` from the caller's environment); a run
/// that hangs is killed after 20 s and fails the test.
fn ovctl_env(args: &[&str], env: &[(&str, &Path)]) -> Run {
    let out = Command::new("timeout")
        .args(["-k", "5", "20"])
        .arg(env!("CARGO_BIN_EXE_ovctl"))
        .args(args)
        .env_remove("OVNET_AGENT")
        .envs(env.iter().copied())
        .output()
        .expect("run ovctl");
    let r = Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    assert_ne!(r.code, Some(124), "ovctl {args:?} hung: {r:?}");
    r
}

/// Runs `ovctl --agent SOCK ARGS`.
fn ovctl(sock: &Path, args: &[&str]) -> Run {
    let sock = sock.to_string_lossy().into_owned();
    let mut full = vec!["--agent", sock.as_str()];
    full.extend_from_slice(args);
    ovctl_env(&full, &[])
}

#[track_caller]
fn failed(r: &Run, stderr: &str) {
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr, stderr, "{r:?}");
    assert_eq!(r.stdout, "", "{r:?}");
}

/// The one line ovctl prints when nothing answers at `sock`, up to the OS's words.
fn unreachable(sock: &Path) -> String {
    format!(
        "Error: cannot reach the ovnet agent at {}: is ovnet-agent running? (",
        sock.display()
    )
}

#[test]
fn bad_arguments_are_refused_before_calling_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let nobody = dir.path().join("nobody.sock");
    let r = ovctl(&nobody, &["network", "create", "-d", "bridge", "demo"]);
    failed(
        &r,
        "Error: driver \"bridge\" is not supported: ovnet only provides -d overlay\n",
    );
    let r = ovctl(
        &nobody,
        &["network", "create", "--driver", "macvlan", "demo"],
    );
    failed(
        &r,
        "Error: driver \"macvlan\" is not supported: ovnet only provides -d overlay\n",
    );
    let r = ovctl(&nobody, &["network", "create", "--label", "env", "demo"]);
    failed(
        &r,
        "Error: invalid argument \"env\" for \"--label\" flag: a label must be KEY=VALUE\n",
    );
    let r = ovctl(&nobody, &["network", "vtep", "add", "demo", "10.1.1"]);
    failed(
        &r,
        "Error: invalid vtep address \"10.1.1\": expected an IPv4 address, optionally with :PORT\n",
    );
    let r = ovctl(
        &nobody,
        &["network", "vtep", "rm", "demo", "10.1.1.1:65536"],
    );
    failed(
        &r,
        "Error: invalid vtep address \"10.1.1.1:65536\": the port must be a number from 1 to 65535\n",
    );

    // Usage errors are clap's, with its exit code 2.
    for args in [
        &["network", "create"][..],
        &["network", "create", "--vni", "x", "demo"],
        &["dataplane", "extra"],
    ] {
        let r = ovctl(&nobody, args);
        assert_eq!(r.code, Some(2), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("cannot reach"), "{args:?}: {r:?}");
    }

    // The same socket, with a command that needs the agent: it was never asked above.
    let r = ovctl(&nobody, &["network", "ls"]);
    assert!(r.stderr.starts_with(&unreachable(&nobody)), "{r:?}");
}

#[test]
fn the_agent_socket_comes_from_the_environment_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("env.sock");
    let from_flag = dir.path().join("flag.sock");
    let r = ovctl_env(&["network", "ls"], &[("OVNET_AGENT", &from_env)]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.starts_with(&unreachable(&from_env)), "{r:?}");
    // The flag wins over the environment.
    let flag = from_flag.to_string_lossy().into_owned();
    let r = ovctl_env(
        &["--agent", &flag, "network", "ls"],
        &[("OVNET_AGENT", &from_env)],
    );
    assert!(r.stderr.starts_with(&unreachable(&from_flag)), "{r:?}");
}

#[test]
fn an_agent_that_is_not_running_is_reported() {
    let dir = tempfile::tempdir().unwrap();

    // No socket at all.
    let missing = dir.path().join("missing.sock");
    let r = ovctl(&missing, &["network", "ls"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.starts_with(&unreachable(&missing)), "{r:?}");
    assert!(r.stderr.ends_with("(os error 2))\n"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert_eq!(r.stdout, "");

    // A stale socket left by a dead agent: connection refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let r = ovctl(&stale, &["network", "inspect", "demo"]);
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stderr.starts_with(&unreachable(&stale)), "{r:?}");
    assert!(r.stderr.contains("os error 111"), "{r:?}");
    assert_eq!(r.stdout, "", "no `[]` when nothing could be asked");
}
