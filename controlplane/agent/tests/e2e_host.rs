//! End to end, the host side: containers given by name or by a process's namespace path,
//! requested addresses, connect and disconnect cycles that leave nothing behind (no veth, no
//! interface in the container, no record or claim in etcd, no bridge once a host has no
//! endpoint), an agent stopped cleanly, and wrong input refused with one clear line that
//! changes nothing. Real agents, etcd and `ovctl` ([`ovnet_cluster`]).

use std::time::Duration;

use ovnet_cluster::{containers, ping_summary, set, wait_until, Cluster};

/// Connect, disconnect and reconnect leave nothing behind: no veth, no interface in the
/// container, no records or address claims in etcd, no bridge once the host has no endpoint.
/// A container given as a process's namespace (`--netns /proc/PID/ns/net`, no name under
/// /var/run/netns) and a container with a requested address (`--ip`).
#[test]
fn connect_by_namespace_path_and_requested_address() {
    let mut c = Cluster::start(2);
    c.create(1, "demo", &[]);
    let h1 = c.host(1).ns.clone();
    // A process in a network namespace of its own, child of host 1's (unshare execs sleep, so
    // the pid is the sleeper's).
    let pid =
        c.tb.spawn(&h1, &["unshare", "--net", "sleep", "300"], &[])
            .expect("spawning a process in its own namespace");
    let path = format!("/proc/{pid}/ns/net");
    wait_until(
        "the sleeper's own namespace",
        Duration::from_secs(5),
        || {
            use std::os::unix::fs::MetadataExt;
            fn ino(p: &std::path::Path) -> Result<u64, String> {
                std::fs::metadata(p)
                    .map(|m| m.ino())
                    .map_err(|e| format!("{}: {e}", p.display()))
            }
            // Until `ip netns exec` has entered host 1's namespace the process is still in
            // ours, and until unshare has run it is in host 1's.
            let own = ino(path.as_ref())?;
            if own == ino("/proc/self/ns/net".as_ref())? {
                Err("still in the test's namespace".to_string())
            } else if own == ino(&ovnet_testbed::ns_path(&h1))? {
                Err("still in host 1's namespace".to_string())
            } else {
                Ok(())
            }
        },
    );
    c.ovctl(
        1,
        &["network", "connect", "demo", "procbox", "--netns", &path],
    )
    .ok();
    let nsenter = format!("--net={path}");
    let addr = c.sh(
        &h1,
        &[
            "nsenter", &nsenter, "ip", "-o", "-4", "addr", "show", "dev", "eth0",
        ],
    );
    assert!(addr.contains("inet 10.0.0.2/24 "), "{addr}");

    let web = c.netns("web");
    c.ovctl(
        2,
        &[
            "network",
            "connect",
            "--ip",
            "10.0.0.50",
            "demo",
            "web",
            "--netns",
            &web,
        ],
    )
    .ok();
    c.assert_eth0(&web, "10.0.0.50/24", "02:42:0a:00:00:32");
    let out = c.sh(
        &h1,
        &[
            "nsenter",
            &nsenter,
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            "10.0.0.50",
        ],
    );
    assert_eq!(ping_summary(&out), Some((3, 3)), "{out}");
    c.assert_ping(&web, "10.0.0.2");

    c.disconnect(1, "demo", "procbox");
    let links = c.sh(&h1, &["nsenter", &nsenter, "ip", "-o", "link", "show"]);
    assert!(
        !links.contains("eth0"),
        "eth0 left in the process's namespace: {links}"
    );
    assert!(c.links(&h1, "ovv").is_empty());
}

#[test]
fn connect_disconnect_cycles_leave_nothing_behind() {
    let mut c = Cluster::start(2);
    let id = c.create(1, "demo", &[]);
    let peer = c.netns("peer");
    c.connect(2, "demo", "peer", &peer); // 10.0.0.2, stays
    let web = c.netns("web");
    let h1 = c.host(1).ns.clone();
    let h2 = c.host(2).ns.clone();
    for cycle in 0..3 {
        c.connect(1, "demo", "web", &web);
        c.assert_eth0(&web, "10.0.0.3/24", "02:42:0a:00:00:03");
        assert_eq!(c.links(&h1, "ovv").len(), 1, "cycle {cycle}");
        c.assert_ping(&web, "10.0.0.2");
        c.disconnect(1, "demo", "web");
        c.assert_only_lo(&web);
        assert!(c.links(&h1, "ovv").is_empty(), "cycle {cycle}: veth left");
        assert!(
            c.links(&h1, "ovbr").is_empty() && c.links(&h1, "ovtap").is_empty(),
            "cycle {cycle}: host1 has no endpoint but still {:?}",
            c.network_links(&h1)
        );
        assert_eq!(
            c.endpoint_keys(&id),
            set(&[&format!("/ovnet/endpoints/{id}/peer")]),
            "cycle {cycle}"
        );
        assert_eq!(
            c.ip_keys(&id),
            set(&[&format!("/ovnet/ips/{id}/10.0.0.2")]),
            "cycle {cycle}"
        );
        // The peer lost its partner but nothing else.
        assert_eq!(c.ping_received(&peer, "10.0.0.3", 1), 0, "cycle {cycle}");
    }
    c.disconnect(2, "demo", "peer");
    c.assert_only_lo(&peer);
    assert!(c.etcd_keys("/ovnet/endpoints/").is_empty());
    assert!(c.etcd_keys("/ovnet/ips/").is_empty());
    assert!(containers(&c.inspect(1, "demo")).is_empty());
    for h in [&h1, &h2] {
        assert!(c.network_links(h).is_empty(), "{h}: {:?}", c.links(h, "ov"));
    }
    // With no endpoint left the network can go, and with it every claim.
    c.ovctl(2, &["network", "rm", "demo"]).ok();
    for kind in ["networks", "vnis", "subnets"] {
        assert!(c.etcd_keys(&format!("/ovnet/{kind}/")).is_empty(), "{kind}");
    }

    // An agent asked to stop exits cleanly, takes its socket along and leaves the cluster.
    let st = c.stop_agent(1);
    assert!(st.success(), "agent of host1 on SIGTERM: {st}");
    assert!(!c.sock(1).exists(), "host1's API socket left behind");
    assert!(
        c.links(&h1, "ov").is_empty(),
        "host1's agent left devices behind: {:?}",
        c.links(&h1, "ov")
    );
    assert_eq!(
        c.etcd_keys("/ovnet/alive/"),
        set(&["/ovnet/alive/host2"]),
        "host1 still alive in etcd after stopping"
    );
}

/// Wrong input through the CLI: exit 1, one `Error:` line that names the problem, and
/// nothing created anywhere (network list, etcd, the container's namespace).
#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let mut c = Cluster::start(1);
    c.create(1, "demo", &[]); // 10.0.0.0/24, VNI 256
    let web1 = c.netns("web1");
    c.connect(1, "demo", "web1", &web1); // 10.0.0.2
    let web2 = c.netns("web2");
    let missing = format!("ov{}nnope", c.tb.id());

    let ls = c.ls(1);
    let keys = c.etcd_keys("/ovnet/");
    let host_links = c.links(&c.host(1).ns.clone(), "");

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["network", "inspect", "nosuch"],
            vec!["nosuch", "not found|no such"],
        ),
        (
            vec!["network", "rm", "nosuch"],
            vec!["nosuch", "not found|no such"],
        ),
        (
            vec!["network", "connect", "nosuch", "web2", "--netns", &web2],
            vec!["nosuch", "not found|no such"],
        ),
        (
            vec!["network", "disconnect", "demo", "nosuch"],
            vec!["nosuch"],
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.9.0.0/33",
                "bad1",
            ],
            vec!["10.9.0.0/33"],
        ),
        (
            vec![
                "network", "create", "-d", "overlay", "--subnet", "nonsense", "bad2",
            ],
            vec!["nonsense"],
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.9.0.0/24",
                "--gateway",
                "10.8.0.1",
                "bad3",
            ],
            vec!["10.8.0.1"],
        ),
        (
            vec![
                "network", "connect", "--ip", "10.1.0.5", "demo", "web2", "--netns", &web2,
            ],
            vec!["10.1.0.5"],
        ),
        (
            vec![
                "network", "connect", "--ip", "10.0.0.2", "demo", "web2", "--netns", &web2,
            ],
            vec!["10.0.0.2", "in use"],
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.0.0.128/25",
                "bad4",
            ],
            vec!["overlap", "demo"],
        ),
        (
            vec!["network", "create", "-d", "overlay", "demo"],
            vec!["demo", "already exists"],
        ),
        (
            vec!["network", "create", "-d", "overlay", "--vni", "256", "bad5"],
            vec!["256", "demo"],
        ),
        (
            vec!["network", "create", "-d", "overlay", "--vni", "0", "bad6"],
            vec!["vni 0"],
        ),
        (
            vec![
                "network", "create", "-d", "overlay", "--vni", "16777216", "bad7",
            ],
            vec!["16777216"],
        ),
        (
            vec!["network", "connect", "demo", "ghost", "--netns", &missing],
            vec![missing.as_str(), "not found|no such"],
        ),
        (
            vec!["network", "connect", "demo", "web1", "--netns", &web2],
            vec!["web1", "already exists"],
        ),
        (
            vec![
                "network",
                "create",
                "-d",
                "overlay",
                "--gateway",
                "10.0.5.1",
                "bad8",
            ],
            vec!["gateway", "subnet"],
        ),
        (
            vec!["network", "create", "-d", "overlay", "--mtu", "10", "bad9"],
            vec!["mtu", "10"],
        ),
        (
            vec!["network", "create", "-d", "bridge", "bad10"],
            vec!["bridge", "overlay"],
        ),
        (
            vec!["network", "create", "-d", "overlay", "bad/11"],
            vec!["bad/11"],
        ),
        (vec!["network", "rm", "demo"], vec!["demo"]),
        (
            vec!["network", "vtep", "add", "demo", "notanip"],
            vec!["notanip"],
        ),
    ];
    // Every case runs; wording problems are collected and reported together at the end.
    let mut unclear = Vec::new();
    for (args, want) in &cases {
        let out = c.ovctl(1, args);
        let cmd = out.cmd.clone();
        let msg = out.err();
        eprintln!("{cmd}\n    -> Error: {msg}");
        let lower = msg.to_lowercase();
        for w in want {
            // `a|b`: either wording will do.
            if !w.split('|').any(|alt| lower.contains(&alt.to_lowercase())) {
                unclear.push(format!("`{cmd}`: message {msg:?} should mention {w:?}"));
            }
        }
        assert_eq!(c.ls(1), ls, "`{cmd}` changed the network list");
        assert_eq!(c.etcd_keys("/ovnet/"), keys, "`{cmd}` changed etcd");
        c.assert_only_lo(&web2);
        assert_eq!(
            c.links(&c.host(1).ns.clone(), ""),
            host_links,
            "`{cmd}` changed host1's links"
        );
    }

    assert!(
        unclear.is_empty(),
        "unclear errors:\n{}",
        unclear.join("\n")
    );

    // No agent behind the socket.
    let sock = c.tb.dir().join("nobody.sock");
    let out = c.ovctl_sock(1, &sock, &["network", "ls"]);
    let cmd = out.cmd.clone();
    let msg = out.err();
    assert!(
        msg.contains(&*sock.to_string_lossy()) || msg.contains("agent"),
        "`{cmd}`: should say the agent is not reachable: {msg}"
    );
}
