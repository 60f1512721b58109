//! The deployment material under `deploy/` is valid for the tools that read it: the systemd
//! unit passes `systemd-analyze verify` without a warning, its environment file sets only
//! variables the agent reads, and the etcd member files set only variables etcd knows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `NAME=value` lines of an environment file, comments and blank lines skipped.
fn env_names(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, _) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not NAME=value: {l:?}", path.display()));
            name.to_string()
        })
        .collect()
}

#[test]
fn the_systemd_unit_verifies_without_warnings() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/ovnet-agent.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/ovnet-agent"),
        "the unit's binary path moved"
    );
    for must in [
        "Restart=on-failure",
        "EnvironmentFile=/etc/ovnet/agent.env",
        "CAP_NET_ADMIN",
    ] {
        assert!(unit.contains(must), "the unit lacks {must}");
    }
    // systemd-analyze checks that ExecStart's binary exists: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("ovnet-agent.service");
    let unit = unit.replace(
        "/usr/local/bin/ovnet-agent",
        env!("CARGO_BIN_EXE_ovnet-agent"),
    );
    std::fs::write(&copy, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd, installed by deploy/deps.sh)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines about the unit itself; systemd may also complain about the host's other units.
    let about_ours: Vec<&str> = said.lines().filter(|l| l.contains("ovnet-agent")).collect();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        about_ours.is_empty(),
        "systemd-analyze verify warns:\n{}",
        about_ours.join("\n")
    );
}

#[test]
fn the_environment_file_sets_only_what_the_agent_reads() {
    let help = Command::new(env!("CARGO_BIN_EXE_ovnet-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let known: BTreeSet<&str> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|s| s.split('=').next())
        .collect();
    assert!(
        known.contains("OVNET_ETCD"),
        "--help lists no env names: {help}"
    );
    let names = env_names(&repo().join("deploy/systemd/agent.env"));
    for required in ["OVNET_NODE", "OVNET_ETCD", "OVNET_VTEP_IP"] {
        assert!(
            names.iter().any(|n| n == required),
            "agent.env lacks {required}"
        );
    }
    for name in &names {
        assert!(
            known.contains(name.as_str()) || name == "RUST_LOG",
            "agent.env sets {name}, which ovnet-agent does not read (it reads {known:?})"
        );
    }
}

#[test]
fn the_etcd_member_files_set_only_what_etcd_knows() {
    let help = Command::new("etcd")
        .arg("--help")
        .output()
        .expect("etcd (deploy/deps.sh)");
    let help = format!(
        "{}{}",
        String::from_utf8_lossy(&help.stdout),
        String::from_utf8_lossy(&help.stderr)
    );
    let mut names_of = Vec::new();
    for i in 1..=3 {
        let names = env_names(&repo().join(format!("deploy/etcd/etcd{i}.env")));
        for name in &names {
            let flag = format!(
                "--{}",
                name.strip_prefix("ETCD_")
                    .unwrap()
                    .to_lowercase()
                    .replace('_', "-")
            );
            assert!(
                help.contains(&flag),
                "etcd{i}.env sets {name}, but etcd has no {flag}"
            );
        }
        names_of.push(names);
    }
    assert!(
        names_of.windows(2).all(|w| w[0] == w[1]),
        "the member files set different variables"
    );
}
