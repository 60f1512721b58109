//! End to end: real `ovnet-agent` processes on simulated hosts (network namespaces on a veth
//! underlay, see `ovnet-testbed`), one etcd, and `ovctl` as the operator runs it. Each test
//! builds its own cluster, so they run in parallel; names are unique per test bed.
//!
//! Needs root, etcd, iproute2 and the workspace's binaries (`cargo build --workspace`, which
//! the project's test command does).

mod common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{containers, is_hex_id, ping_summary, s, wait_until, Cluster};
use serde_json::Value;

/// signal(7): SIGKILL (the agent crate does not depend on libc).
const SIGKILL: i32 = 9;

/// Endpoint records of the network with id `net_id`, as `{p}endpoints/{id}/{name}` keys.
fn endpoint_keys(c: &Cluster, net_id: &str) -> BTreeSet<String> {
    c.etcd_keys(&format!("/ovnet/endpoints/{net_id}/"))
}

/// Address claims of the network with id `net_id`.
fn ip_keys(c: &Cluster, net_id: &str) -> BTreeSet<String> {
    c.etcd_keys(&format!("/ovnet/ips/{net_id}/"))
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Asserts `ns` holds no interface but `lo`.
fn assert_only_lo(c: &Cluster, ns: &str) {
    let links = c.links(ns, "");
    assert_eq!(links, set(&["lo"]), "{ns} should have only lo");
}

/// `eth0` of `ns` has `cidr`, `mac` and MTU 1450.
fn assert_eth0(c: &Cluster, ns: &str, cidr: &str, mac: &str) {
    let addr = c.sh(ns, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert!(
        addr.contains(&format!("inet {cidr} ")),
        "{ns}: want {cidr} on eth0, got {addr}"
    );
    let link = c.sh(ns, &["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains(" mtu 1450 "), "{ns}: want mtu 1450: {link}");
    assert!(
        link.contains(&format!("link/ether {mac} ")),
        "{ns}: want MAC {mac}: {link}"
    );
    assert!(
        link.contains("state UP") || link.contains(",UP"),
        "{ns}: eth0 down: {link}"
    );
}

/// (1) The story, step by step, on three hosts.
#[test]
fn users_story_three_hosts() {
    let mut c = Cluster::start(3);

    // Every host sees all three nodes with their VTEPs.
    let nodes = c.ovctl(3, &["node", "ls"]).ok();
    for h in 1..=3 {
        assert!(
            nodes
                .lines()
                .any(|l| l.contains(&format!("host{h} ")) && l.contains(&format!("192.168.50.{h}"))),
            "node ls lacks host{h}: {nodes}"
        );
    }

    // host1 creates the network; host2 lists it within a second.
    let id = c.create(1, "demo", &[]);
    let created = Instant::now();
    let listed = wait_until("host2 to list demo", Duration::from_secs(5), || {
        let lines = c.ls(2);
        lines
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == "demo"))
            .cloned()
            .ok_or_else(|| format!("{lines:?}"))
    });
    assert!(
        created.elapsed() <= Duration::from_secs(1),
        "host2 listed demo only after {:?}",
        created.elapsed()
    );
    let words: Vec<&str> = listed.split_whitespace().collect();
    assert!(words.contains(&"overlay"), "driver overlay: {listed}");
    assert!(words.contains(&"global"), "scope global: {listed}");

    let web1 = c.netns("web1");
    let web2 = c.netns("web2");
    let web3 = c.netns("web3");

    c.connect(1, "demo", "web1", &web1);
    assert_eth0(&c, &web1, "10.0.0.2/24", "02:42:0a:00:00:02");
    // TSO super-frames as large as the data plane sends in one go: whole through the uplink
    // (46 segments at MTU 1450 fit one outer datagram) or in one UDP GSO send (44).
    let segs = if c.uplink(&c.host(1).ns).is_empty() {
        44
    } else {
        46
    };
    let link = c.sh(&web1, &["ip", "-d", "-o", "link", "show", "eth0"]);
    assert!(
        link.contains(&format!(" gso_max_segs {segs} ")),
        "want gso_max_segs {segs}: {link}"
    );
    c.connect(2, "demo", "web2", &web2);
    assert_eth0(&c, &web2, "10.0.0.3/24", "02:42:0a:00:00:03");

    // A second container under a taken name, from a third host: refused, nothing left over.
    let keys_before = c.etcd_keys("/ovnet/");
    let out = c.ovctl(3, &["network", "connect", "demo", "web2", "--netns", &web3]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr, "Error: endpoint with name web2 already exists in network demo\n",
        "{out:?}"
    );
    assert_only_lo(&c, &web3);
    let h3 = c.host(3).ns.clone();
    assert!(c.links(&h3, "ovv").is_empty(), "leftover veth on host3");
    assert!(
        c.links(&h3, "ovbr").is_empty(),
        "host3 has no endpoint, so no bridge"
    );
    assert_eq!(c.etcd_keys("/ovnet/"), keys_before, "etcd changed");
    assert_eq!(endpoint_keys(&c, &id).len(), 2);
    assert_eq!(
        ip_keys(&c, &id),
        set(&[
            &format!("/ovnet/ips/{id}/10.0.0.2"),
            &format!("/ovnet/ips/{id}/10.0.0.3")
        ])
    );

    // First packet included.
    c.assert_ping(&web1, "10.0.0.3");

    // inspect, field by field, from the host that has no container.
    let net = c.inspect(3, "demo");
    assert_eq!(s(&net, "Name"), "demo");
    assert_eq!(s(&net, "Id"), id);
    let created_at = s(&net, "Created");
    assert!(
        created_at.len() >= 20 && created_at.contains('T') && created_at.ends_with('Z'),
        "Created is RFC 3339 UTC: {created_at}"
    );
    assert_eq!(s(&net, "Scope"), "global");
    assert_eq!(s(&net, "Driver"), "overlay");
    let ipam = net["IPAM"]["Config"]
        .as_array()
        .unwrap_or_else(|| panic!("IPAM.Config: {net}"));
    assert_eq!(ipam.len(), 1, "{net}");
    assert_eq!(s(&ipam[0], "Subnet"), "10.0.0.0/24");
    assert_eq!(s(&ipam[0], "Gateway"), "10.0.0.1");
    let cs = containers(&net);
    assert_eq!(
        cs.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["web1", "web2"]),
        "{net}"
    );
    for (name, ip, mac, node) in [
        ("web1", "10.0.0.2/24", "02:42:0a:00:00:02", "host1"),
        ("web2", "10.0.0.3/24", "02:42:0a:00:00:03", "host2"),
    ] {
        let e = &cs[name];
        assert_eq!(s(e, "IPv4Address"), ip, "{e}");
        assert_eq!(s(e, "MacAddress"), mac, "{e}");
        assert_eq!(s(e, "Node"), node, "{e}");
        assert!(is_hex_id(s(e, "EndpointID")), "{e}");
    }
    assert_ne!(s(&cs["web1"], "EndpointID"), s(&cs["web2"], "EndpointID"));
    assert_eq!(net["Options"]["vxlanid"], Value::from("256"), "{net}");
    assert_eq!(net["Options"]["mtu"], Value::from("1450"), "{net}");
    let peers: BTreeSet<(String, String)> = net["Peers"]
        .as_array()
        .unwrap_or_else(|| panic!("Peers: {net}"))
        .iter()
        .map(|p| (s(p, "Name").to_owned(), s(p, "IP").to_owned()))
        .collect();
    let want: BTreeSet<(String, String)> = [("host1", "192.168.50.1"), ("host2", "192.168.50.2")]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    assert_eq!(peers, want, "{net}");
}

/// (2) One container per host on three hosts: every ordered pair pings, and a checksummed TCP
/// transfer crosses the overlay.
#[test]
fn every_pair_of_three_hosts_pings_and_tcp_is_intact() {
    let mut c = Cluster::start(3);
    c.create(2, "demo", &[]);
    let mut ns = Vec::new();
    for h in 1..=3 {
        let n = c.netns(&format!("c{h}"));
        c.connect(h, "demo", &format!("c{h}"), &n);
        ns.push(n);
    }
    let ips = ["10.0.0.2", "10.0.0.3", "10.0.0.4"];
    for (i, from) in ns.iter().enumerate() {
        for (j, to) in ips.iter().enumerate() {
            if i != j {
                c.assert_ping(from, to);
            }
        }
    }
    // While a transfer runs, the sending host's workers show their load to the operator. A
    // load shows for a quarter of a second after traffic, and a transfer may be over before
    // a poll lands: transfers are repeated until one is seen, within a generous deadline.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut busiest = 0;
    while busiest == 0 && Instant::now() < deadline {
        busiest = std::thread::scope(|sc| {
            let transfer = sc.spawn(|| {
                ovnet_testbed::tcp_transfer_verified(&c.tb, &ns[2], ips[2], &ns[0], 100 << 20)
            });
            let mut busiest = 0;
            while busiest == 0 && !transfer.is_finished() {
                let out = c.ovctl(1, &["dataplane", "--json"]).ok();
                let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
                let busy = v["worker_busy_per_mille"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                assert!(!busy.is_empty(), "no workers: {v}");
                assert!(v["poll_us"].as_u64().unwrap_or(0) > 0, "{v}");
                assert_eq!(v["slice_us"], Value::from(100), "the default slice: {v}");
                assert_eq!(v["udp_gso"], Value::Bool(true), "{v}");
                for b in &busy {
                    let b = b.as_u64().unwrap_or(u64::MAX);
                    assert!(b <= 1000, "a load over 100 %: {v}");
                    busiest = busiest.max(b);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            transfer.join().unwrap().expect("100 MB host1 -> host3");
            busiest
        });
    }
    assert!(
        busiest > 0,
        "no worker of host1 showed any load during 100 MB transfers for two minutes"
    );

    // Every agent counted traffic both ways on demo.
    for h in 1..=3 {
        let out = c.ovctl(h, &["stats", "demo", "--json"]).ok();
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let nets = v.as_array().unwrap_or_else(|| panic!("want an array: {v}"));
        assert_eq!(nets.len(), 1, "host{h}: {v}");
        assert_eq!(s(&nets[0], "name"), "demo", "host{h}: {v}");
        assert_eq!(nets[0]["vni"], Value::from(256), "host{h}: {v}");
        for k in ["tx_packets", "rx_packets", "tx_bytes", "rx_bytes"] {
            let n = nets[0][k].as_u64().unwrap_or(0);
            assert!(n > 0, "host{h}: {k} is {n}: {v}");
        }
    }
}

/// (3) A second network is a separate segment, even for a container that takes an address of
/// the first network's subnet by hand.
#[test]
fn networks_are_isolated_even_from_spoofed_addresses() {
    let mut c = Cluster::start(2);
    c.create(1, "demo", &[]);
    c.create(1, "other", &[]);
    let other = c.inspect(2, "other");
    assert_eq!(other["Options"]["vxlanid"], Value::from("257"), "{other}");
    assert_eq!(
        s(&other["IPAM"]["Config"][0], "Subnet"),
        "10.0.1.0/24",
        "{other}"
    );

    let d1 = c.netns("d1");
    let d2 = c.netns("d2");
    let o1 = c.netns("o1");
    let o2 = c.netns("o2");
    c.connect(1, "demo", "d1", &d1); // 10.0.0.2
    c.connect(2, "demo", "d2", &d2); // 10.0.0.3
    c.connect(1, "other", "o1", &o1); // 10.0.1.2
    c.connect(2, "other", "o2", &o2); // 10.0.1.3
    assert_eth0(&c, &o1, "10.0.1.2/24", "02:42:0a:00:01:02");

    // Each network works within itself.
    c.assert_ping(&d1, "10.0.0.3");
    c.assert_ping(&o1, "10.0.1.3");

    // Across networks: nothing.
    for (from, to) in [(&o1, "10.0.0.2"), (&o1, "10.0.0.3"), (&d1, "10.0.1.3")] {
        assert_eq!(c.ping_received(from, to, 3), 0, "{from} reached {to}");
    }

    // A container of `other` that puts itself into demo's subnet still cannot reach demo,
    // neither on the remote host nor on its own.
    for ns in [&o1, &o2] {
        c.sh(ns, &["ip", "addr", "add", "10.0.0.99/24", "dev", "eth0"]);
        for to in ["10.0.0.2", "10.0.0.3"] {
            assert_eq!(
                c.ping_received(ns, to, 3),
                0,
                "{ns} (10.0.0.99) reached {to}"
            );
        }
        c.sh(ns, &["ip", "addr", "del", "10.0.0.99/24", "dev", "eth0"]);
    }
    // And demo is unharmed.
    c.assert_ping(&d2, "10.0.0.2");
}

/// (4) Connect, disconnect and reconnect leave nothing behind: no veth, no interface in the
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
    assert_eth0(&c, &web, "10.0.0.50/24", "02:42:0a:00:00:32");
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
        assert_eth0(&c, &web, "10.0.0.3/24", "02:42:0a:00:00:03");
        assert_eq!(c.links(&h1, "ovv").len(), 1, "cycle {cycle}");
        c.assert_ping(&web, "10.0.0.2");
        c.disconnect(1, "demo", "web");
        assert_only_lo(&c, &web);
        assert!(c.links(&h1, "ovv").is_empty(), "cycle {cycle}: veth left");
        assert!(
            c.links(&h1, "ovbr").is_empty() && c.links(&h1, "ovtap").is_empty(),
            "cycle {cycle}: host1 has no endpoint but still {:?}",
            c.network_links(&h1)
        );
        assert_eq!(
            endpoint_keys(&c, &id),
            set(&[&format!("/ovnet/endpoints/{id}/peer")]),
            "cycle {cycle}"
        );
        assert_eq!(
            ip_keys(&c, &id),
            set(&[&format!("/ovnet/ips/{id}/10.0.0.2")]),
            "cycle {cycle}"
        );
        // The peer lost its partner but nothing else.
        assert_eq!(c.ping_received(&peer, "10.0.0.3", 1), 0, "cycle {cycle}");
    }
    c.disconnect(2, "demo", "peer");
    assert_only_lo(&c, &peer);
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

/// (5) Two hosts create the same name at the same moment: one wins, the other is told.
#[test]
fn concurrent_creates_of_one_name_have_one_winner() {
    let c = Cluster::start(2);
    for round in 0..3 {
        let name = format!("race{round}");
        let a = c.ovctl_spawn(1, &["network", "create", "-d", "overlay", &name]);
        let b = c.ovctl_spawn(2, &["network", "create", "-d", "overlay", &name]);
        let (a, b) = (Cluster::finish(a), Cluster::finish(b));
        let (won, lost) = match (a.code, b.code) {
            (Some(0), Some(1)) => (a, b),
            (Some(1), Some(0)) => (b, a),
            _ => panic!("round {round}: want one exit 0 and one exit 1:\n{a:?}\n{b:?}"),
        };
        assert!(is_hex_id(won.stdout.trim()), "{won:?}");
        let msg = lost.err();
        assert!(
            msg.contains("already exists") && msg.contains(&name),
            "round {round}: {msg}"
        );
        let n = c
            .ls(1)
            .iter()
            .filter(|l| l.split_whitespace().any(|w| w == name))
            .count();
        assert_eq!(n, 1, "round {round}: {name} listed {n} times");
        assert_eq!(s(&c.inspect(2, &name), "Id"), won.stdout.trim());
    }
    assert_eq!(c.etcd_keys("/ovnet/vnis/").len(), 3);
    assert_eq!(c.etcd_keys("/ovnet/subnets/").len(), 3);
}

/// (6) etcd down for 10 s: traffic between established containers does not lose a packet,
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
    assert_eth0(&c, &late, "10.0.0.4/24", "02:42:0a:00:00:04");
    c.assert_ping(&late, "10.0.0.2");
    c.assert_ping(&a, "10.0.0.4");
}

/// (7) An agent killed with SIGKILL and started again adopts what it left: the containers
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

    c.kill_agent(1, SIGKILL);
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
    assert_eq!(ip_keys(&c, &id).len(), 3);

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

/// (8) A host with the kernel's own vxlan device (not running ovnet) joins network demo as an
/// external VTEP; its container and ovnet's containers ping each other both ways.
#[test]
fn external_kernel_vtep_joins_the_network() {
    let mut c = Cluster::start(2);
    c.create(1, "demo", &[]);
    let a = c.netns("a");
    let b = c.netns("b");
    c.connect(1, "demo", "a", &a); // 10.0.0.2
    c.connect(2, "demo", "b", &b); // 10.0.0.3

    let h4 = c.tb.add_host(4).expect("host 4");
    c.tb.add_bridge(&h4, "br0").expect("br0");
    // Flood towards the ovnet hosts; their MACs are learned from the traffic.
    let flood = [
        Ipv4Addr::new(192, 168, 50, 1),
        Ipv4Addr::new(192, 168, 50, 2),
    ];
    c.tb.add_kernel_vxlan(&h4, "br0", 256, 1450, &[], &flood)
        .expect("kernel vxlan on host 4");
    let k =
        c.tb.add_container(&h4, "br0", "10.0.0.100/24", 1450, None)
            .expect("kernel-side container");

    c.ovctl(1, &["network", "vtep", "add", "demo", "192.168.50.4"])
        .ok();
    let vteps = c.ovctl(2, &["network", "vtep", "ls", "demo"]).ok();
    assert!(vteps.contains("192.168.50.4"), "vtep ls: {vteps}");

    wait_until(
        "the kernel host to reach host1's container",
        Duration::from_secs(10),
        || match c.ping_received(&k.ns, "10.0.0.2", 1) {
            1 => Ok(()),
            n => Err(format!("{n} replies")),
        },
    );
    c.assert_ping(&k.ns, "10.0.0.2");
    c.assert_ping(&k.ns, "10.0.0.3");
    c.assert_ping(&a, "10.0.0.100");
    c.assert_ping(&b, "10.0.0.100");
}

/// (9) Wrong input through the CLI: exit 1, one `Error:` line that names the problem, and
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
        assert_only_lo(&c, &web2);
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
