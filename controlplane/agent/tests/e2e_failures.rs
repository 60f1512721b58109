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

    // The store's own bound answers, not ovctl's 30 s call timeout ("did not answer within")
    // nor the harness's kill: the agent did not wait for etcd.
    let msg = c
        .ovctl(1, &["network", "create", "-d", "overlay", "during"])
        .err();
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

/// An agent restarted after a crash releases the endpoints of containers that vanished while it
/// was away (their veth went with their namespace), and removes the devices of its own kinds
/// (`ovbr*`, `ovtap*`, `ovv*`) that no record explains, leaving everything else alone.
#[test]
fn a_restarted_agent_releases_vanished_containers_and_removes_stray_devices() {
    let mut c = Cluster::start(2);
    let id = c.create(1, "demo", &[]);
    let a1 = c.netns("a1");
    let a2 = c.netns("a2");
    let b = c.netns("b");
    c.connect(1, "demo", "a1", &a1); // 10.0.0.2
    c.connect(1, "demo", "a2", &a2); // 10.0.0.3
    c.connect(2, "demo", "b", &b); // 10.0.0.4
    let before = containers(&c.inspect(1, "demo"));
    let veth = |name: &str| format!("ovv{}", &s(&before[name], "EndpointID")[..11]);
    let h1 = c.host(1).ns.clone();
    assert!(c.links(&h1, "ovv").contains(&veth("a2")));

    c.kill_agent(1);
    // The container a2 goes away while its agent is down: its namespace, and with it the
    // veth pair, are deleted.
    ovnet_testbed::run(&["ip", "netns", "del", &a2]).expect("delete a2's namespace");
    wait_until(
        "a2's veth to go with its namespace",
        Duration::from_secs(30),
        || {
            let left = c.links(&h1, "ovv");
            if left.contains(&veth("a2")) {
                Err(format!("{left:?}"))
            } else {
                Ok(())
            }
        },
    );
    // Devices of the agent's kinds that nothing explains, and two that are not its own.
    for cmd in [
        &["link", "add", "ovbr999", "type", "bridge"][..],
        &["tuntap", "add", "dev", "ovtap999", "mode", "tap"],
        &[
            "link",
            "add",
            "ovvdeadbeef00",
            "type",
            "veth",
            "peer",
            "name",
            "strayp0",
        ],
        &["link", "add", "ovx1", "type", "bridge"],
        &["link", "add", "other0", "type", "bridge"],
    ] {
        let mut args = vec!["ip", "-n", h1.as_str()];
        args.extend_from_slice(cmd);
        ovnet_testbed::run(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    }

    c.start_agent(1);
    c.wait_agent_ready(1);

    let want_keys = set(&[
        &format!("/ovnet/endpoints/{id}/a1"),
        &format!("/ovnet/endpoints/{id}/b"),
    ]);
    wait_until("a2's endpoint released", Duration::from_secs(30), || {
        let keys = c.endpoint_keys(&id);
        if keys == want_keys {
            Ok(())
        } else {
            Err(format!("{keys:?}"))
        }
    });
    assert_eq!(
        c.ip_keys(&id),
        set(&[
            &format!("/ovnet/ips/{id}/10.0.0.2"),
            &format!("/ovnet/ips/{id}/10.0.0.4")
        ]),
        "a2's address is free again"
    );
    let after = containers(&c.inspect(2, "demo"));
    assert_eq!(
        after.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["a1", "b"])
    );
    assert_eq!(after["a1"], before["a1"], "a1 is adopted as it was");

    let mut want = set(&["ovbr256", "ovtap256", &veth("a1"), "ovx1"]);
    want.extend(c.uplink(&h1));
    wait_until("the stray devices removed", Duration::from_secs(30), || {
        let links = c.links(&h1, "ov");
        if links == want {
            Ok(())
        } else {
            Err(format!("{links:?}"))
        }
    });
    assert!(
        c.links(&h1, "other0").len() == 1,
        "a device of another kind was touched"
    );
    c.wait_ping(&a1, "10.0.0.4", Duration::from_secs(30));
    c.assert_ping(&b, "10.0.0.2");
    // The freed address goes to the next container.
    let a3 = c.netns("a3");
    c.connect(1, "demo", "a3", &a3);
    c.assert_eth0(&a3, "10.0.0.3/24", "02:42:0a:00:00:03");
}

/// VXLAN datagrams (the I flag set: not the data planes' heartbeats) from `from` to UDP port
/// 4789, counted by nftables in namespace `ns`.
struct VxlanCounter {
    ns: String,
}

impl VxlanCounter {
    /// Counts datagrams from `from` to the VXLAN port arriving in `ns`.
    fn install(c: &Cluster, ns: &str, from: &str) -> VxlanCounter {
        let rules = format!(
            "table inet ovtest {{\n\
               chain input {{\n\
                 type filter hook input priority 0; policy accept;\n\
                 ip saddr {from} udp dport 4789 @th,64,8 & 0x08 == 0x08 counter\n\
               }}\n\
             }}\n"
        );
        let path = c.tb.dir().join(format!("{ns}.nft"));
        std::fs::write(&path, rules).expect("write the nft rules");
        c.sh(ns, &["nft", "-f", &path.to_string_lossy()]);
        VxlanCounter { ns: ns.to_owned() }
    }

    /// Packets counted so far.
    fn packets(&self, c: &Cluster) -> u64 {
        let out = c.sh(
            &self.ns,
            &["nft", "list", "chain", "inet", "ovtest", "input"],
        );
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no counter in {out}"))
    }
}

/// A node whose agent dies keeps its containers' records, but once its lease expires every
/// other agent withdraws its VTEP: host 1 stops sending the dead host anything (counted at
/// host 3 itself), while it keeps reaching host 2. With the agent back, traffic flows again.
#[test]
fn a_dead_nodes_vtep_is_withdrawn_once_its_lease_expires() {
    let mut c = Cluster::bed(3);
    // A short lease for the host that dies only; the others keep the default.
    c.set_agent_args(3, &["--lease-ttl", "3"]);
    for h in 1..=3 {
        c.start_agent(h);
    }
    for h in 1..=3 {
        c.wait_agent_ready(h);
    }
    c.create(1, "demo", &[]);
    let mut ns = Vec::new();
    for h in 1..=3 {
        let n = c.netns(&format!("c{h}"));
        c.connect(h, "demo", &format!("c{h}"), &n);
        ns.push(n);
    }
    let h3 = c.host(3).ns.clone();
    let counter = VxlanCounter::install(&c, &h3, "192.168.50.1");
    c.assert_ping(&ns[0], "10.0.0.4");
    assert!(
        counter.packets(&c) > 0,
        "host 3 saw nothing of host 1's pings"
    );

    c.kill_agent(3);
    wait_until(
        "host1 to see host3 dead",
        Duration::from_secs(60),
        || match c.alive(1, "host3") {
            Some(false) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // Once host 1's agent has applied it, pings towards host 3's container leave host 1 no
    // more: each round of pings must leave host 3's counter where it was.
    wait_until(
        "host1 to stop sending to host3",
        Duration::from_secs(60),
        || {
            let seen = counter.packets(&c);
            c.ping_received(&ns[0], "10.0.0.4", 2);
            match counter.packets(&c) {
                now if now == seen => Ok(()),
                now => Err(format!("{} more datagrams", now - seen)),
            }
        },
    );
    let quiet = counter.packets(&c);
    assert_eq!(c.ping_received(&ns[0], "10.0.0.4", 3), 0);
    assert_eq!(
        counter.packets(&c),
        quiet,
        "host1 sent to the dead VTEP again"
    );
    // The records stay; the live hosts still talk.
    assert_eq!(containers(&c.inspect(1, "demo")).len(), 3);
    c.assert_ping(&ns[0], "10.0.0.3");

    c.start_agent(3);
    c.wait_agent_ready(3);
    c.wait_ping(&ns[0], "10.0.0.4", Duration::from_secs(30));
    assert!(counter.packets(&c) > quiet);
}

/// The data plane runs in the agent's process: while an agent is stopped, its containers keep
/// reaching each other over their network's bridge, the other hosts withdraw its VTEP at once
/// (it revoked its lease), and traffic across hosts waits for it. Started again, it adopts
/// everything and traffic flows as before.
#[test]
fn while_an_agent_is_stopped_its_host_keeps_local_traffic_only() {
    let mut c = Cluster::start(2);
    c.create(1, "demo", &[]);
    let a1 = c.netns("a1");
    let a2 = c.netns("a2");
    let b = c.netns("b");
    c.connect(1, "demo", "a1", &a1); // 10.0.0.2
    c.connect(1, "demo", "a2", &a2); // 10.0.0.3
    c.connect(2, "demo", "b", &b); // 10.0.0.4
    c.assert_ping(&a1, "10.0.0.4");

    let st = c.stop_agent(1);
    assert!(st.success(), "{st}");
    // The lease is revoked and a goodbye sent; host 2 takes it in at its next liveness tick.
    wait_until(
        "host 2 to see host 1 down",
        Duration::from_secs(15),
        || match c.alive(2, "host1") {
            Some(false) => Ok(()),
            other => Err(format!("alive: {other:?}")),
        },
    );
    let h1 = c.host(1).ns.clone();
    assert!(c.links(&h1, "ovbr").contains("ovbr256"), "the bridge stays");
    c.assert_ping(&a1, "10.0.0.3");
    c.assert_ping(&a2, "10.0.0.2");
    assert_eq!(c.ping_received(&a1, "10.0.0.4", 3), 0, "crossed hosts");
    assert_eq!(c.ping_received(&b, "10.0.0.2", 3), 0, "crossed hosts");

    c.start_agent(1);
    c.wait_agent_ready(1);
    c.wait_ping(&a1, "10.0.0.4", Duration::from_secs(30));
    c.assert_ping(&b, "10.0.0.3");
    c.assert_ping(&a2, "10.0.0.2");
}

/// Writes `count` values of `size` bytes under `{p}junk/` (a kind of key the agents ignore,
/// but inside the prefix they watch), each in its own revision (so each is one response of
/// the agents' watch), 16 writers at a time, through the test bed's relay. Returns the
/// revision after the last one.
fn write_junk(c: &Cluster, count: usize, size: usize) -> i64 {
    const WRITERS: usize = 16;
    let url = c.tb.etcd_local_url().expect("etcd started");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let client = etcd_client::Client::connect([url.as_str()], None)
            .await
            .expect("etcd connect");
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let mut kv = client.kv_client();
            let value = vec![b'x'; size];
            writers.spawn(async move {
                let mut rev = 0;
                for i in (w..count).step_by(WRITERS) {
                    let resp = kv
                        .put(format!("/ovnet/junk/{i}"), value.clone(), None)
                        .await
                        .expect("etcd put");
                    rev = resp.header().expect("a header").revision();
                }
                rev
            });
        }
        let mut last = 0;
        while let Some(rev) = writers.join_next().await {
            last = last.max(rev.expect("a writer"));
        }
        last
    })
}

/// An agent whose watch falls behind etcd's compaction is told so by etcd, takes a new
/// snapshot and watches again; what changed meanwhile (here, a container connected on
/// another host) reaches its data plane. The agent is frozen (SIGSTOP) while megabytes of
/// changes pile up in its watch, so that etcd has to stop sending and, after the compaction,
/// cannot resume where it stopped.
#[test]
fn an_agent_relists_after_its_watch_falls_behind_a_compaction() {
    let mut c = Cluster::bed(2);
    // Frozen, the agent does not renew its lease: a long one keeps it alive meanwhile.
    c.set_agent_args(1, &["--lease-ttl", "120"]);
    c.start_agent(1);
    c.start_agent(2);
    c.wait_agent_ready(1);
    c.wait_agent_ready(2);
    c.create(1, "demo", &[]);
    let a = c.netns("a");
    let b = c.netns("b");
    c.connect(1, "demo", "a", &a); // 10.0.0.2

    c.pause_agent(1);
    write_junk(&c, 1500, 16 << 10);
    // A change host 1 must learn of, made after its watch stalled.
    c.connect(2, "demo", "b", &b); // 10.0.0.3
    let rev = write_junk(&c, 1, 1);
    c.etcdctl(&["compact", &rev.to_string(), "--physical"]);
    c.resume_agent(1);

    let log = wait_until("host1's agent to re-list", Duration::from_secs(60), || {
        let log = c.agent_log(1);
        if log.contains("is compacted") && log.contains("re-listing") {
            Ok(log)
        } else {
            Err(log.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
        }
    });
    assert!(!log.contains("panicked"), "the agent panicked:\n{log}");
    c.wait_ping(&a, "10.0.0.3", Duration::from_secs(30));
    c.assert_ping(&b, "10.0.0.2");
}
