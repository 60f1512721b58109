//! End to end, the network edge: real agents on simulated hosts, one etcd, `ovctl`, nftables.
//! Names resolve across hosts and follow connects and disconnects; other names are forwarded
//! to a resolver outside the overlay (in the underlay namespace); containers reach a server
//! outside the overlay as their host's address; published ports are reachable from outside and
//! claimed once per host; internal networks keep everything in; all of it survives an agent's
//! SIGKILL; and after the last network is gone no `ovnet` table is left, while a foreign table
//! is untouched.
//!
//! Needs root, etcd, iproute2, nftables, getent and the workspace's binaries.

mod edge_common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use edge_common::*;
use hickory_proto::op::ResponseCode;
use ovnet_cluster::{containers, s, wait_until, Cluster};
use ovnet_testbed::{in_netns, UNDERLAY_BRIDGE_IP};

const FRONT_GW: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 53);
const BACK_GW: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 1), 53);

/// Starts `n` hosts whose agents forward names to the fake upstream in the underlay.
fn cluster_with_upstream(n: u8) -> Cluster {
    let mut c = Cluster::bed(n);
    let upstream = UNDERLAY_BRIDGE_IP.to_string();
    for h in 1..=usize::from(n) {
        c.set_agent_args(h, &["--dns-upstream", &upstream]);
        c.start_agent(h);
    }
    for h in 1..=usize::from(n) {
        c.wait_agent_ready(h);
    }
    c
}

/// Names across three hosts: each network's resolver at its gateway answers for every
/// endpoint of the network on every host, follows connects and disconnects anywhere, knows
/// nothing of other networks, forwards the rest upstream, survives garbage and an agent's
/// SIGKILL; named namespaces get a resolv.conf that `getent` uses.
#[test]
fn names_resolve_across_hosts_and_follow_the_cluster() {
    let mut c = cluster_with_upstream(3);
    let upstream = FakeUpstream::start(c.tb.underlay(), UNDERLAY_BRIDGE_IP);
    c.create(1, "front", &["--subnet", "10.0.0.0/24"]);
    c.create(2, "back", &["--subnet", "10.0.1.0/24"]);
    let web1 = c.netns("web1");
    let web2 = c.netns("web2");
    let web3 = c.netns("web3");
    let db = c.netns("db");
    c.connect(1, "front", "web1", &web1);
    c.connect(2, "front", "web2", &web2);
    c.connect(3, "front", "web3", &web3);
    c.connect(2, "back", "db", &db);

    // The gateway answers ARP locally on every host with the same MAC, and the host reaches
    // its own containers through it.
    for (ns, h) in [(&web1, 1), (&web2, 2), (&web3, 3)] {
        c.wait_ping(ns, "10.0.0.1", Duration::from_secs(30));
        let neigh = c.sh(ns, &["ip", "neigh", "show", "10.0.0.1"]);
        assert!(
            neigh.contains("lladdr 02:42:0a:00:00:01"),
            "host{h}'s gateway MAC: {neigh}"
        );
        let host = c.host(h).ns.clone();
        c.assert_ping(&host, &format!("10.0.0.{}", h + 1));
    }

    // The gateway is each host's own: the host does not reach another host's container
    // through it (its frames never cross the overlay), and no peer sees them as spoofed.
    let host1 = c.host(1).ns.clone();
    assert_eq!(c.ping_received(&host1, "10.0.0.3", 2), 0);
    for h in [2, 3] {
        let stats = c.ovctl(h, &["stats", "--json"]).ok();
        assert!(!stats.contains("spoofed_source"), "host{h}: {stats}");
    }

    // Every name of the network, on every host, as NAME and NAME.NETWORK.
    for ns in [&web1, &web2, &web3] {
        wait_resolves(ns, FRONT_GW, "web1", &["10.0.0.2"]);
        wait_resolves(ns, FRONT_GW, "web3.front", &["10.0.0.4"]);
    }
    wait_resolves(&db, BACK_GW, "db", &["10.0.1.2"]);
    // Other networks' names do not resolve, either way.
    wait_nxdomain(&web1, FRONT_GW, "db");
    wait_nxdomain(&web1, FRONT_GW, "db.back");
    wait_nxdomain(&db, BACK_GW, "web1");

    // The container's own resolv.conf, for `ip netns exec NAME getent hosts web2`.
    let conf = std::fs::read_to_string(format!("/etc/netns/{web1}/resolv.conf")).unwrap();
    assert!(conf.contains("nameserver 10.0.0.1\n"), "{conf}");
    assert_eq!(getent(&c, &web1, "web2"), Ok("10.0.0.3".to_owned()));

    // A connect on host 3 is seen by host 1's resolver, a disconnect on host 2 too.
    let web4 = c.netns("web4");
    c.connect(3, "front", "web4", &web4);
    wait_resolves(&web1, FRONT_GW, "web4", &["10.0.0.5"]);
    c.disconnect(2, "front", "web2");
    wait_nxdomain(&web1, FRONT_GW, "web2");
    assert!(
        !std::path::Path::new(&format!("/etc/netns/{web2}")).exists(),
        "the resolv.conf ovnet wrote for web2 goes with the disconnect"
    );

    // Names beyond the cluster go to the upstream outside the overlay.
    wait_resolves(&web1, FRONT_GW, OUTSIDE_NAME, &[&OUTSIDE_IP.to_string()]);
    assert!(upstream.count() > 0);
    assert_eq!(
        getent(&c, &web3, "outside.example"),
        Ok(OUTSIDE_IP.to_string())
    );

    // 3000 malformed queries leave the resolver answering.
    garbage(&web1, FRONT_GW, 3000);
    wait_resolves(&web1, FRONT_GW, "web3", &["10.0.0.4"]);

    // SIGKILL: the resolver dies with the agent and is back with it, with the same names.
    c.kill_agent(1);
    c.start_agent(1);
    c.wait_agent_ready(1);
    wait_resolves(&web1, FRONT_GW, "web4", &["10.0.0.5"]);
    wait_resolves(&web1, FRONT_GW, OUTSIDE_NAME, &[&OUTSIDE_IP.to_string()]);
    wait_nxdomain(&web1, FRONT_GW, "web2");
}

/// Sends `n` malformed datagrams to `server` from `ns`: random bytes, truncated and
/// corrupted queries, bare headers, responses.
fn garbage(ns: &str, server: SocketAddrV4, n: u32) {
    let sock = in_netns(ns, || UdpSocket::bind("0.0.0.0:0"))
        .unwrap()
        .unwrap();
    sock.connect(server).unwrap();
    let good = query_bytes(7, "web1.front.", hickory_proto::rr::RecordType::A);
    let mut sent = 0;
    for i in 0..n {
        let r: u64 = rand::random();
        let mut b = match i % 5 {
            0 => (0..(r % 600)).map(|_| rand::random::<u8>()).collect(),
            1 => good[..(r as usize % good.len())].to_vec(),
            2 => {
                let mut b = good.clone();
                let at = r as usize % b.len();
                b[at] ^= (r >> 16) as u8 | 1;
                b
            }
            3 => good[..12].to_vec(),
            _ => {
                let mut b = good.clone();
                b[2] |= 0x80; // QR: a response
                b
            }
        };
        if i % 97 == 0 {
            b.resize(5000, 0xff); // oversized
        }
        if sock.send(&b).is_ok() {
            sent += 1;
        }
        if i % 200 == 0 {
            // Let the resolver keep up rather than fill the socket buffer.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    assert!(
        sent > n / 2,
        "only {sent} of {n} malformed queries went out"
    );
}

/// The way out and the way in, on three hosts: containers reach a server outside the
/// overlay as their host's address; published ports are reachable from outside, claimed once
/// per host, refused when a host process holds them, shown in inspect and gone with the
/// disconnect; nothing else gets in; networks stay apart; an internal network keeps its
/// containers in; all of it survives the agent's SIGKILL; after the last network, no table.
#[test]
fn the_way_out_published_ports_and_internal_networks() {
    let mut c = cluster_with_upstream(3);
    let h1 = c.host(1).ns.clone();
    let underlay = c.tb.underlay().to_owned();
    // Somebody else's table on host 1, which ovnet must leave alone.
    c.sh(&h1, &["nft", "add", "table", "inet", "foreign"]);
    c.sh(
        &h1,
        &[
            "nft",
            "add",
            "chain",
            "inet",
            "foreign",
            "input",
            "{ type filter hook input priority 10; policy accept; }",
        ],
    );
    c.sh(
        &h1,
        &[
            "nft", "add", "rule", "inet", "foreign", "input", "tcp", "dport", "4242", "counter",
        ],
    );
    let foreign = c.sh(&h1, &["nft", "-s", "list", "table", "inet", "foreign"]);

    c.create(1, "front", &["--subnet", "10.0.0.0/24"]);
    c.create(1, "back", &["--subnet", "10.0.1.0/24"]);
    c.create(1, "sealed", &["--subnet", "10.0.2.0/24", "--internal"]);
    let web = c.netns("web");
    let api = c.netns("api");
    let db = c.netns("db");
    let vault = c.netns("vault");
    c.ovctl(
        1,
        &[
            "network", "connect", "-p", "8080:80", "front", "web", "--netns", &web,
        ],
    )
    .ok();
    c.connect(2, "front", "api", &api);
    c.connect(1, "back", "db", &db);
    c.connect(1, "sealed", "vault", &vault);
    assert_eq!(
        c.sh(&h1, &["sysctl", "-n", "net.ipv4.ip_forward"]).trim(),
        "1",
        "forwarding is on for the way out"
    );

    // The way out: a server in the underlay sees each container's host.
    let outside = WhoServer::start(&underlay, SocketAddrV4::new(UNDERLAY_BRIDGE_IP, 0));
    assert_eq!(who(&web, outside.addr), Ok(Ipv4Addr::new(192, 168, 50, 1)));
    assert_eq!(who(&api, outside.addr), Ok(Ipv4Addr::new(192, 168, 50, 2)));
    assert_eq!(who(&db, outside.addr), Ok(Ipv4Addr::new(192, 168, 50, 1)));

    // The way in: the published port, from outside, to web's port 80.
    let inside = WhoServer::start(&web, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80));
    let published = SocketAddr::from((Ipv4Addr::new(192, 168, 50, 1), 8080));
    assert_eq!(who(&underlay, published), Ok(UNDERLAY_BRIDGE_IP));
    // From the host itself, and from a container of another network on the same host.
    assert!(who(&h1, published).is_ok(), "{:?}", who(&h1, published));
    assert!(who(&db, published).is_ok(), "{:?}", who(&db, published));
    let net = c.inspect(3, "front");
    let cs = containers(&net);
    let ports = &cs["web"]["Ports"]["80/tcp"][0];
    assert_eq!(
        (s(ports, "HostIp"), s(ports, "HostPort")),
        ("0.0.0.0", "8080")
    );
    assert!(cs["api"].get("Ports").is_none(), "{net}");

    // Nothing else gets in: routed straight at web's unpublished port, dropped.
    c.sh(
        &underlay,
        &["ip", "route", "add", "10.0.0.0/24", "via", "192.168.50.1"],
    );
    let direct = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 80));
    assert!(who(&underlay, direct).is_err(), "web is exposed");

    // A network's resolver answers its own containers only: not another network's (its names
    // are not theirs), not the underlay (no open resolver).
    wait_resolves(&web, FRONT_GW, "web", &["10.0.0.2"]);
    assert!(
        dig(&db, FRONT_GW, "web").is_err(),
        "back asked front's resolver"
    );
    assert!(
        dig(&underlay, FRONT_GW, "web").is_err(),
        "front's resolver is open"
    );

    // Networks stay apart, even routed through the gateway.
    assert_eq!(
        c.ping_received(&web, "10.0.1.2", 2),
        0,
        "front reached back"
    );
    assert_eq!(c.ping_received(&db, "10.0.0.2", 2), 0, "back reached front");

    // The same host port again, on host 1: refused in docker's words, nothing half-made.
    let keys = c.etcd_keys("/ovnet/");
    let links = c.network_links(&h1);
    let web2 = c.netns("web2");
    let out = c.ovctl(
        1,
        &[
            "network", "connect", "-p", "8080:81", "front", "web2", "--netns", &web2,
        ],
    );
    assert_eq!(
        out.err(),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    let out = c.ovctl(
        1,
        &[
            "network",
            "connect",
            "-p",
            "192.168.50.1:8080:81",
            "back",
            "web2",
            "--netns",
            &web2,
        ],
    );
    assert_eq!(
        out.err(),
        "Bind for 192.168.50.1:8080 failed: port is already allocated"
    );
    // A port a process of host 1 holds.
    let holder = WhoServer::start(&h1, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9090));
    let out = c.ovctl(
        1,
        &[
            "network", "connect", "-p", "9090:80", "front", "web2", "--netns", &web2,
        ],
    );
    assert_eq!(
        out.err(),
        "failed to bind host port 0.0.0.0:9090/tcp: address already in use"
    );
    drop(holder);
    // Internal networks publish nothing.
    let out = c.ovctl(
        1,
        &[
            "network", "connect", "-p", "7070:80", "sealed", "web2", "--netns", &web2,
        ],
    );
    assert_eq!(
        out.err(),
        "network sealed is internal: ports cannot be published on it"
    );
    assert_eq!(c.etcd_keys("/ovnet/"), keys, "etcd changed");
    assert_eq!(c.network_links(&h1), links, "devices changed");
    c.assert_only_lo(&web2);
    // Host 2 has port 8080 free.
    c.ovctl(
        2,
        &[
            "network", "connect", "-p", "8080:80", "front", "web2", "--netns", &web2,
        ],
    )
    .ok();

    // The internal network: no default route, and nothing out even with one.
    let routes = c.sh(&vault, &["ip", "-4", "route", "show", "default"]);
    assert!(
        routes.trim().is_empty(),
        "internal network got a default route: {routes}"
    );
    c.sh(
        &vault,
        &["ip", "route", "add", "default", "via", "10.0.2.1"],
    );
    assert!(
        who(&vault, outside.addr).is_err(),
        "an internal container got out"
    );
    assert_eq!(c.ping_received(&vault, "192.168.50.254", 2), 0);
    // Its names resolve; others are not forwarded.
    let sealed_gw = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 1), 53);
    wait_resolves(&vault, sealed_gw, "vault", &["10.0.2.2"]);
    assert_eq!(
        dig(&vault, sealed_gw, OUTSIDE_NAME).map(|(rc, _)| rc),
        Ok(ResponseCode::Refused)
    );
    assert_eq!(c.inspect(1, "sealed")["Internal"], true);
    assert_eq!(c.inspect(1, "front")["Internal"], false);

    // SIGKILL: the table stays while the agent is away (the kernel does the NAT), and the
    // restarted agent loads the same rules again; the way out and in still work.
    let table = ovnet_table(&c, &h1).expect("ovnet's table on host 1");
    c.kill_agent(1);
    assert_eq!(who(&web, outside.addr), Ok(Ipv4Addr::new(192, 168, 50, 1)));
    c.start_agent(1);
    c.wait_agent_ready(1);
    wait_until(
        "host 1's agent to load its table again",
        Duration::from_secs(30),
        || {
            let log = c.tb.log(c.agent(1)).unwrap_or_default();
            if log.contains("DNS resolver of network front on") {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        },
    );
    assert_eq!(ovnet_table(&c, &h1).as_deref(), Some(table.as_str()));
    assert_eq!(
        tables(&c, &h1)
            .iter()
            .filter(|t| t.as_str() == "table ip ovnet")
            .count(),
        1
    );
    assert_eq!(who(&web, outside.addr), Ok(Ipv4Addr::new(192, 168, 50, 1)));
    assert_eq!(who(&underlay, published), Ok(UNDERLAY_BRIDGE_IP));

    // Disconnected, the port is gone (from the table, and for a new container, free again).
    c.disconnect(1, "front", "web");
    drop(inside);
    let table = ovnet_table(&c, &h1).expect("ovnet's table on host 1");
    assert!(!table.contains("dport 8080"), "{table}");
    assert!(who(&underlay, published).is_err());

    // Every network gone: no ovnet table anywhere; the foreign one is as it was.
    c.disconnect(2, "front", "api");
    c.disconnect(2, "front", "web2");
    c.disconnect(1, "back", "db");
    c.disconnect(1, "sealed", "vault");
    for n in ["front", "back", "sealed"] {
        c.ovctl(1, &["network", "rm", n]).ok();
    }
    for h in 1..=3 {
        let ns = c.host(h).ns.clone();
        wait_until(
            &format!("host{h} to drop ovnet's table"),
            Duration::from_secs(30),
            || match ovnet_table(&c, &ns) {
                None => Ok(()),
                Some(t) => Err(t),
            },
        );
    }
    assert_eq!(
        c.sh(&h1, &["nft", "-s", "list", "table", "inet", "foreign"]),
        foreign
    );
}

/// Without `nft` the edge cannot be made: the connect fails saying so, and leaves nothing.
#[test]
fn without_nft_a_connect_fails_clearly_and_leaves_nothing() {
    let mut c = Cluster::bed(1);
    c.set_agent_args(1, &["--nft", "/nonexistent/ovnet-test/nft"]);
    c.start_agent(1);
    c.wait_agent_ready(1);
    let id = c.create(1, "demo", &[]);
    let web = c.netns("web");
    let out = c.ovctl(1, &["network", "connect", "demo", "web", "--netns", &web]);
    let msg = out.err();
    assert!(
        msg.starts_with("connecting web to network demo: nftables is needed")
            && msg.contains("/nonexistent/ovnet-test/nft was not found: install nftables"),
        "{msg}"
    );
    assert!(c.endpoint_keys(&id).is_empty());
    assert!(c.ip_keys(&id).is_empty());
    let h1 = c.host(1).ns.clone();
    assert!(
        c.network_links(&h1).is_empty(),
        "{:?}",
        c.network_links(&h1)
    );
    c.assert_only_lo(&web);
}
