//! End to end, failures: etcd down, agents killed, stopped, frozen and restarted, containers
//! that vanish while their agent is away, a dead node's VTEP withdrawn after its lease
//! expires, a watch that falls behind a compaction. Real agents, etcd and `ovctl`
//! ([`ovnet_cluster`]); each test builds its own cluster.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ovnet_cluster::{containers, ping_summary, s, set, wait_until, Cluster};

/// etcd down for 10 s: traffic between established containers does not lose a packet,
/// changes fail fast with a clear message, and everything works again once etcd is back.
#[test]
fn etcd_outage_keeps_traffic_and_fails_changes_clearly() {
    let mut c = Cluster::start(2);
    c.create(1, "demo", &[]);
    let a = c.netns("a");
    let b = c.netns("b");
    let late = c.netns("late");
    c.connect(1, "demo", "a", &a); // 10.0.0.2
    c.connect(2, "demo", "b", &b); // 10.0.0.3
    c.assert_ping(&a, "10.0.0.3");

    let ping =
        c.tb.spawn(
            &a,
            &[
                "ping", "-n", "-c", "60", "-i", "0.25", "-W", "1", "10.0.0.3",
            ],
            &[],
        )
        .expect("spawn ping");
    c.tb.stop_etcd().expect("stop etcd");
    let stopped = Instant::now();

    let t = Instant::now();
    let msg = c
        .ovctl(1, &["network", "create", "-d", "overlay", "during"])
        .err();
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "create took {:?} to fail",
        t.elapsed()
    );
    assert!(
        msg.contains("etcd") && msg.contains("unreachable"),
        "want a message saying etcd is unreachable: {msg}"
    );

    // The outage itself is what is under test: keep etcd down for its full 10 s.
    let outage = Duration::from_secs(10);
    if let Some(rest) = outage.checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    assert!(
        c.tb.try_wait(ping).expect("ping status").is_none(),
        "the ping ended before the outage did:\n{}",
        c.tb.log(ping).unwrap_or_default()
    );
    c.tb.restart_etcd().expect("restart etcd");

    let st =
        c.tb.wait_timeout(ping, Duration::from_secs(40))
            .expect("wait ping");
    let log = c.tb.log(ping).unwrap_or_default();
    assert!(st.is_some(), "ping still running:\n{log}");
    assert_eq!(
        ping_summary(&log),
        Some((60, 60)),
        "replies lost during the etcd outage:\n{log}"
    );

    // Back to normal: agents reach etcd again, and a new container joins and talks.
    for h in [1, 2] {
        wait_until(
            "the agent to reach etcd again",
            Duration::from_secs(15),
            || {
                let out = c.ovctl(h, &["node", "ls"]);
                if out.code == Some(0) {
                    Ok(())
                } else {
                    Err(format!("{out:?}"))
                }
            },
        );
    }
    assert!(
        !c.ls(1).iter().any(|l| l.contains("during")),
        "the failed create left a network"
    );
    c.connect(2, "demo", "late", &late); // 10.0.0.4
    c.assert_eth0(&late, "10.0.0.4/24", "02:42:0a:00:00:04");
    c.assert_ping(&late, "10.0.0.2");
    c.assert_ping(&a, "10.0.0.4");
}

/// An agent killed with SIGKILL and started again adopts what it left: the containers
/// talk again, keep their addresses, and no device is duplicated or stranded.
#[test]
fn agent_restart_after_sigkill_adopts_its_containers() {
    let mut c = Cluster::start(2);
    let id = c.create(1, "demo", &[]);
    let a1 = c.netns("a1");
    let a2 = c.netns("a2");
    let b = c.netns("b");
    c.connect(1, "demo", "a1", &a1); // 10.0.0.2
    c.connect(1, "demo", "a2", &a2); // 10.0.0.3
    c.connect(2, "demo", "b", &b); // 10.0.0.4
    c.assert_ping(&a1, "10.0.0.4");
    let before = containers(&c.inspect(2, "demo"));
    let h1 = c.host(1).ns.clone();
    let uplink_before = c.uplink(&h1);
    assert!(
        uplink_before.is_empty() || uplink_before == set(&["ovu4789"]),
        "uplink of host1: {uplink_before:?}"
    );

    c.kill_agent(1);
    c.start_agent(1);
    c.wait_agent_ready(1);

    // Reachable again, both ways, first packet included once it works at all.
    wait_until(
        "a1 to reach b after the restart",
        Duration::from_secs(15),
        || match c.ping_received(&a1, "10.0.0.4", 1) {
            1 => Ok(()),
            n => Err(format!("{n} replies")),
        },
    );
    c.assert_ping(&a1, "10.0.0.4");
    c.assert_ping(&b, "10.0.0.3");
    c.assert_ping(&a2, "10.0.0.2");

    // Same endpoints, same addresses, each address once.
    let after = containers(&c.inspect(1, "demo"));
    assert_eq!(after, before, "endpoints changed across the restart");
    let ips: Vec<&str> = after.values().map(|e| s(e, "IPv4Address")).collect();
    let unique: BTreeSet<&str> = ips.iter().copied().collect();
    assert_eq!(ips.len(), unique.len(), "duplicate addresses: {ips:?}");
    assert_eq!(c.ip_keys(&id).len(), 3);

    // Exactly the devices the records explain, and the agent's uplink as before, once.
    let mut want = set(&["ovbr256", "ovtap256"]);
    for name in ["a1", "a2"] {
        let ep = s(&after[name], "EndpointID");
        want.insert(format!("ovv{}", &ep[..11]));
    }
    want.extend(uplink_before);
    assert_eq!(
        c.links(&h1, "ov"),
        want,
        "devices on host1 after the restart"
    );
    for ns in [&a1, &a2] {
        assert_eq!(c.links(ns, "eth"), set(&["eth0"]), "{ns}");
    }
}
