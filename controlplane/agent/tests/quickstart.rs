//! The README's quick start, `deploy/quickstart.sh`, run end to end with the suite's own
//! binaries (`OVNET_QUICKSTART_BIN`, so no release build) under namespace names of this test
//! (`OVNET_QUICKSTART_PREFIX`): its install step, etcd and three hosts with an agent each,
//! `ovctl`, a ping and iperf3 across hosts, and the teardown that leaves nothing behind.

use std::path::Path;
use std::process::Command;

#[test]
fn the_quick_start_runs_and_leaves_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = ovnet_cluster::workspace_binary("ovctl");
    let bin = bin.parent().expect("the binaries' directory");
    assert!(
        bin.join("ovnet-agent").exists(),
        "build the workspace first"
    );
    let prefix = format!("ovqs{}", std::process::id());
    let out = Command::new(root.join("deploy/quickstart.sh"))
        .env("OVNET_QUICKSTART_BIN", bin)
        .env("OVNET_QUICKSTART_PREFIX", &prefix)
        .output()
        .expect("run deploy/quickstart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for want in [
        "3 packets transmitted, 3 received",
        "receiver",
        "done: everything worked",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    let left: Vec<String> = std::fs::read_dir("/var/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
}
