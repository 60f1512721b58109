//! End to end, the user's story: real `ovnet-agent` processes on simulated hosts (network
//! namespaces on a veth underlay), one etcd, and `ovctl` as the operator runs it
//! ([`ovnet_cluster`]). Networks are created, listed, inspected and connected from any host;
//! containers on different hosts talk, networks stay apart, a kernel VTEP joins, races for a
//! name have one winner. Each test builds its own cluster, so they run in parallel.
//!
//! Needs root, etcd, iproute2 and the workspace's binaries (`cargo build --workspace`, which
//! the project's test command does).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ovnet_cluster::{containers, is_hex_id, s, set, wait_until, Cluster};
use serde_json::Value;

/// The story, step by step, on three hosts.
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

    // host1 creates the network; host2 lists it (it reads etcd, so at once; the deadline is
    // only for a loaded machine).
    let id = c.create(1, "demo", &[]);
    let listed = wait_until("host2 to list demo", Duration::from_secs(30), || {
        let lines = c.ls(2);
        lines
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == "demo"))
            .cloned()
            .ok_or_else(|| format!("{lines:?}"))
    });
    let words: Vec<&str> = listed.split_whitespace().collect();
    assert!(words.contains(&"overlay"), "driver overlay: {listed}");
    assert!(words.contains(&"global"), "scope global: {listed}");

    let web1 = c.netns("web1");
    let web2 = c.netns("web2");
    let web3 = c.netns("web3");

    c.connect(1, "demo", "web1", &web1);
    c.assert_eth0(&web1, "10.0.0.2/24", "02:42:0a:00:00:02");
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
    c.assert_eth0(&web2, "10.0.0.3/24", "02:42:0a:00:00:03");

    // A second container under a taken name, from a third host: refused, nothing left over.
    let keys_before = c.etcd_keys("/ovnet/");
    let out = c.ovctl(3, &["network", "connect", "demo", "web2", "--netns", &web3]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr, "Error: endpoint with name web2 already exists in network demo\n",
        "{out:?}"
    );
    c.assert_only_lo(&web3);
    let h3 = c.host(3).ns.clone();
    assert!(c.links(&h3, "ovv").is_empty(), "leftover veth on host3");
    assert!(
        c.links(&h3, "ovbr").is_empty(),
        "host3 has no endpoint, so no bridge"
    );
    assert_eq!(c.etcd_keys("/ovnet/"), keys_before, "etcd changed");
    assert_eq!(c.endpoint_keys(&id).len(), 2);
    assert_eq!(
        c.ip_keys(&id),
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

/// One container per host on three hosts: every ordered pair pings, and a checksummed TCP
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
    // While transfers run, the sending host's workers show their load to the operator. The
    // load is sampled, so transfers go on until a sample has seen it (or a generous deadline
    // passes): a fast machine can finish one before `ovctl` has looked.
    let sending = std::sync::atomic::AtomicBool::new(true);
    let busiest = std::thread::scope(|sc| {
        let transfers = sc.spawn(|| {
            while sending.load(std::sync::atomic::Ordering::Relaxed) {
                ovnet_testbed::tcp_transfer_verified(&c.tb, &ns[2], ips[2], &ns[0], 20 << 20)?;
            }
            Ok::<(), std::io::Error>(())
        });
        let busiest = wait_until(
            "a worker of host1 to show load during transfers",
            Duration::from_secs(60),
            || {
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
                let mut busiest = 0;
                for b in &busy {
                    let b = b.as_u64().unwrap_or(u64::MAX);
                    assert!(b <= 1000, "a load over 100 %: {v}");
                    busiest = busiest.max(b);
                }
                if transfers.is_finished() {
                    panic!("the transfers stopped early: {v}");
                }
                if busiest > 0 {
                    Ok(busiest)
                } else {
                    Err(format!("{v}"))
                }
            },
        );
        sending.store(false, std::sync::atomic::Ordering::Relaxed);
        transfers
            .join()
            .unwrap()
            .expect("20 MB transfers host1 -> host3, checksummed");
        busiest
    });
    assert!(busiest > 0);

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

/// A second network is a separate segment, even for a container that takes an address of
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
    c.assert_eth0(&o1, "10.0.1.2/24", "02:42:0a:00:01:02");

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

/// A host with the kernel's own vxlan device (not running ovnet) joins network demo as an
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

/// Two hosts create the same name at the same moment: one wins, the other is told.
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
