//! End to end with real dockerds: `docker network create -d ovnet --ipam-driver ovnet` and
//! `docker run --network` on the hosts of a test bed, each host's dockerd using its own
//! agent's plugin socket, one etcd ([`ovnet_cluster::DockerCluster`]). Docker's containers
//! and `ovctl`'s namespaces share one network, its addresses and its names.
//!
//! Needs root, etcd, iproute2, Debian's docker.io (dockerd 20.10) and busybox-static, and the
//! workspace's binaries; without docker.io or busybox-static each test says so and is
//! skipped.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use ovnet_cluster::docker::{unavailable, IMAGE};
use ovnet_cluster::{containers, s, wait_until, DockerCluster};

const LONG: Duration = Duration::from_secs(60);

/// Says (and records, see `ovnet_testbed::skip`) why the test cannot run here, if it cannot.
fn skipped() -> bool {
    match unavailable() {
        Some(why) => {
            ovnet_testbed::skip(why);
            true
        }
        None => false,
    }
}

/// One HTTP/1.0 POST on the plugin socket: the status code and the body.
fn post(sock: &Path, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(sock).expect("connect to the plugin socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: plugin\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before reading everything.
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// `GET /` over HTTP/1.0 to `addr`: the whole answer.
fn http_get(addr: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    ovnet_testbed::http::request(addr, "GET", "/", "")
        .map_err(|e| format!("GET / from {addr}: {e}"))
}

/// The `{"Err": ...}` of a failed call.
fn err_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["Err"]
        .as_str()
        .unwrap_or_else(|| panic!("no Err in {body}"))
        .to_owned()
}

/// The issue's story on two hosts: one network created from either host's dockerd, Docker's
/// containers and an `ovctl` namespace sharing its addresses and names and reaching each other
/// across hosts, Docker's options and refusals, and what `docker network rm` leaves.
/// `docker network create -d ovnet --ipam-driver ovnet EXTRA.. NAME`.
fn create_args<'a>(extra: &[&'a str], name: &'a str) -> Vec<&'a str> {
    let mut args = vec!["network", "create", "-d", "ovnet", "--ipam-driver", "ovnet"];
    args.extend_from_slice(extra);
    args.push(name);
    args
}

/// The issue's story on two hosts: one network created from either host's dockerd, Docker's
/// containers and an `ovctl` namespace sharing its addresses and names and reaching each other
/// across hosts, Docker's options and refusals, and what `docker network rm` leaves.
#[test]
fn docker_users_story() {
    if skipped() {
        return;
    }
    let mut dc = DockerCluster::start(2, &[]);
    let c3 = dc.c.netns("c3");
    let (d1, d2, c) = (dc.d(1), dc.d(2), &dc.c);
    let create = create_args(
        &[
            "--subnet",
            "10.0.0.0/24",
            "-o",
            "ovnet.vni=4000",
            "--label",
            "team=blue",
        ],
        "demo",
    );

    // host1 creates it; every host's ovctl sees ovnet network demo, with Docker's options.
    d1.ok(&create);
    let net = wait_until("demo in ovctl network ls on host2", LONG, || {
        let ls = c.ovctl(2, &["network", "ls"]).ok();
        if ls
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == "demo"))
        {
            Ok(c.inspect(2, "demo"))
        } else {
            Err(ls)
        }
    });
    let id = s(&net, "Id").to_owned();
    assert_eq!(net["Options"]["vxlanid"], "4000", "{net}");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.0.0.0/24", "{net}");
    assert_eq!(net["Labels"]["team"], "blue", "{net}");
    assert_eq!(net["Labels"]["ovnet.created-by"], "docker", "{net}");

    // The same command on host2 joins that network instead of failing or making another.
    d2.ok(&create);
    assert_eq!(s(&c.inspect(1, "demo"), "Id"), id);
    let networks = || c.ovctl(1, &["network", "ls", "-q"]).ok().lines().count();
    assert_eq!(networks(), 1, "one ovnet network");
    // Options that contradict it, a missing --ipam-driver, a misspelt option and IPv6 are
    // refused, with what to do.
    let refused = |args: &[&str], want: &str| {
        let out = d2.docker(args);
        assert!(
            out.code != Some(0) && out.stderr.contains(want),
            "`{}`: want an error with {want:?}: {out:?}",
            out.cmd
        );
    };
    refused(
        &create_args(
            &["--subnet", "10.0.0.0/24", "-o", "ovnet.vni=4001"],
            "other",
        ),
        "ovnet network demo with subnet 10.0.0.0/24 has VNI 4000 (not 4001)",
    );
    refused(
        &[
            "network",
            "create",
            "-d",
            "ovnet",
            "--subnet",
            "10.9.0.0/24",
            "x",
        ],
        "pass --ipam-driver ovnet",
    );
    refused(
        &create_args(&["-o", "ovnet.vnii=5"], "y"),
        "ovnet takes -o ovnet.vni and -o ovnet.mtu",
    );
    refused(
        &create_args(&["--subnet", "10.0.0.0/16"], "z"),
        "subnet 10.0.0.0/16 overlaps with subnet 10.0.0.0/24 of network demo",
    );
    refused(&create_args(&["--ipv6"], "w"), "IPv4 only");
    refused(
        &create_args(
            &["--subnet", "10.0.5.0/24", "--aux-address", "r=10.0.5.9"],
            "v",
        ),
        "ovnet keeps no --aux-address",
    );
    assert_eq!(networks(), 1, "nothing made by the refused commands");
    assert!(
        c.etcd_keys("/ovnet/reservations/").is_empty(),
        "the refused commands' addresses went back"
    );

    // Containers on both hosts get ovnet's addresses, MACs and MTU, and a default route
    // through the network's gateway.
    d1.run("web1", &["--network", "demo"]);
    d2.run("web2", &["--network", "demo"]);
    assert_eq!(d1.ip("web1", "demo"), "10.0.0.2");
    assert_eq!(d2.ip("web2", "demo"), "10.0.0.3");
    let link = d1.ok(&["exec", "web1", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains(" mtu 1450 "), "{link}");
    assert!(link.contains("link/ether 02:42:0a:00:00:02 "), "{link}");
    let route = d1.ok(&["exec", "web1", "ip", "route"]);
    assert!(route.contains("default via 10.0.0.1 dev eth0"), "{route}");

    // An ovctl namespace on host2 takes the next address: one address space for both.
    c.connect(2, "demo", "c3", &c3);
    c.assert_eth0(&c3, "10.0.0.4/24", "02:42:0a:00:00:04");

    // Everyone reaches everyone, across hosts.
    dc.wait_container_ping(1, "web1", "10.0.0.3", LONG);
    dc.wait_container_ping(1, "web1", "10.0.0.4", LONG);
    dc.wait_container_ping(2, "web2", "10.0.0.2", LONG);
    c.wait_ping(&c3, "10.0.0.2", LONG);
    c.assert_ping(&c3, "10.0.0.2");

    // --ip is honoured; an address another host's endpoint holds is refused, whether Docker's
    // or ovctl's, and the refusal leaves nothing behind.
    d1.run("web3", &["--network", "demo", "--ip", "10.0.0.50"]);
    assert_eq!(d1.ip("web3", "demo"), "10.0.0.50");
    let claims = c.ip_keys(&id);
    for taken in ["10.0.0.50", "10.0.0.4"] {
        let out = d2.docker(&[
            "run",
            "-d",
            "--name",
            "web4",
            "--network",
            "demo",
            "--ip",
            taken,
            IMAGE,
            "sleep",
            "100000",
        ]);
        assert!(
            out.stderr
                .contains(&format!("address already in use: {taken} in network demo")),
            "{out:?}"
        );
        let _ = d2.docker(&["rm", "-f", "web4"]);
    }
    // A name taken on another host is refused too: names are the network's.
    let out = d2.docker(&[
        "run",
        "-d",
        "--name",
        "web1",
        "--network",
        "demo",
        IMAGE,
        "sleep",
        "100000",
    ]);
    assert!(
        out.stderr
            .contains("endpoint with name web1 already exists in network demo"),
        "{out:?}"
    );
    let _ = d2.docker(&["rm", "-f", "web1"]);
    assert_eq!(c.ip_keys(&id), claims, "nothing left by the refused runs");
    assert!(
        c.etcd_keys("/ovnet/reservations/").is_empty(),
        "no reservation left"
    );

    // ovctl lists Docker's containers by their names, with their nodes.
    let listed = containers(&c.inspect(1, "demo"));
    let names: Vec<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(names, ["c3", "web1", "web2", "web3"]);
    assert_eq!(listed["web2"]["Node"], "host2");
    assert_eq!(listed["web3"]["IPv4Address"], "10.0.0.50/24");

    // docker network disconnect gives the endpoint and its address back.
    d1.ok(&["network", "disconnect", "demo", "web3"]);
    assert!(!c.ip_keys(&id).iter().any(|k| k.ends_with("/10.0.0.50")));
    assert!(!containers(&c.inspect(2, "demo")).contains_key("web3"));

    // The plugin socket answers what dockerd would never send with a clear error, and keeps
    // serving.
    let sock = dc.plugin(1);
    let (code, body) = post(&sock, "/NetworkDriver.Join", b"{not json");
    assert_eq!(code, 400, "{body}");
    assert!(err_of(&body).starts_with("ovnet: the request is not valid JSON"));
    let (code, body) = post(&sock, "/IpamDriver.RequestPool", b"[1, 2]");
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&sock, "/NetworkDriver.Teleport", b"{}");
    assert_eq!(
        (code, err_of(&body)),
        (
            404,
            "ovnet: unknown method /NetworkDriver.Teleport".to_owned()
        )
    );
    let (code, body) = post(&sock, "/IpamDriver.RequestAddress", &vec![b' '; 1 << 20]);
    assert_eq!(code, 413, "{body}");
    let (code, body) = post(
        &sock,
        "/IpamDriver.RequestAddress",
        br#"{"PoolID": "pool1", "Address": ""}"#,
    );
    assert_eq!(code, 500, "{body}");
    assert!(err_of(&body).contains("not one of ovnet's"), "{body}");
    let (code, body) = post(&sock, "/Plugin.Activate", b"");
    assert_eq!(code, 200);
    assert_eq!(body, r#"{"Implements":["NetworkDriver","IpamDriver"]}"#);
    d1.run("web5", &["--network", "demo"]);
    d1.ok(&["rm", "-f", "web5"]);
    // An address Docker asked for and never used is given back by ReleaseAddress.
    let before = c.ip_keys(&id);
    let (code, body) = post(
        &sock,
        "/IpamDriver.RequestAddress",
        br#"{"PoolID":"10.0.0.0/24","Address":"","Options":null}"#,
    );
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let addr = s(&answer, "Address").to_owned();
    let reserved = addr.split('/').next().unwrap().to_owned();
    assert_eq!(c.etcd_keys("/ovnet/reservations/").len(), 1, "{addr}");
    let release = format!(r#"{{"PoolID":"10.0.0.0/24","Address":"{reserved}"}}"#);
    let (code, body) = post(&sock, "/IpamDriver.ReleaseAddress", release.as_bytes());
    assert_eq!((code, body.as_str()), (200, "{}"));
    assert!(c.etcd_keys("/ovnet/reservations/").is_empty());
    assert_eq!(c.ip_keys(&id), before, "the address went back");

    // Without --subnet, a second host's dockerd gets a subnet of its own (the protocol does
    // not tell the plugin the network's name at that point): the first container says what
    // to do, and doing it works. Removing that Docker network leaves ovnet's alone.
    d1.ok(&create_args(&[], "blue"));
    let blue = wait_until("ovnet network blue", LONG, || {
        let out = c.ovctl(1, &["network", "inspect", "blue"]);
        match out.code {
            Some(0) => Ok(c.inspect(1, "blue")),
            _ => Err(out.stderr),
        }
    });
    let blue_subnet = s(&blue["IPAM"]["Config"][0], "Subnet").to_owned();
    assert_eq!(blue_subnet, "10.0.1.0/24");
    d2.ok(&create_args(&[], "blue"));
    let out = d2.docker(&[
        "run",
        "-d",
        "--name",
        "b2",
        "--network",
        "blue",
        IMAGE,
        "sleep",
        "100000",
    ]);
    assert!(
        out.stderr.contains(
            "ovnet network blue has subnet 10.0.1.0/24, but this Docker network got \
             10.0.2.0/24: remove it and create it again with --subnet 10.0.1.0/24"
        ),
        "{out:?}"
    );
    d2.ok(&["rm", "-f", "b2"]);
    d2.ok(&["network", "rm", "blue"]);
    assert_eq!(s(&c.inspect(1, "blue"), "Id"), s(&blue, "Id"));
    d2.ok(&create_args(&["--subnet", &blue_subnet], "blue"));
    d2.run("b2", &["--network", "blue"]);
    assert_eq!(d2.ip("b2", "blue"), "10.0.1.2");
    d2.ok(&["rm", "-f", "b2"]);
    d2.ok(&["network", "rm", "blue"]);
    d1.ok(&["network", "rm", "blue"]);
    assert_eq!(networks(), 1, "blue went with its last Docker network");

    // docker network rm on host2, while host1 still has containers: Docker's network goes,
    // ovnet's stays.
    d2.ok(&["rm", "-f", "web2"]);
    d2.ok(&["network", "rm", "demo"]);
    assert_eq!(s(&c.inspect(2, "demo"), "Id"), id);
    dc.wait_container_ping(1, "web1", "10.0.0.4", LONG);
    // Once nothing is left on it, docker network rm removes the network ovnet made for it.
    d1.ok(&["rm", "-f", "web1"]);
    c.disconnect(2, "demo", "c3");
    d1.ok(&["network", "rm", "demo"]);
    assert_eq!(
        networks(),
        0,
        "docker network rm removed ovnet network demo"
    );
    assert!(
        c.etcd_keys("/ovnet/ips/").is_empty() && c.etcd_keys("/ovnet/reservations/").is_empty()
    );
    for h in 1..=2 {
        assert!(
            c.network_links(&c.host(h).ns).is_empty(),
            "host{h}: devices left: {:?}",
            c.network_links(&c.host(h).ns)
        );
        assert!(c.links(&c.host(h).ns, "ovc").is_empty());
    }
}

/// The `q`-quantile of sorted durations (nearest rank).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// 50 containers run and removed (some disconnected first) leave the network's endpoints,
/// its address claims and the host's devices as they were; so do dockerd restarts, killed or
/// stopped with containers running. Also measures `docker run` to the first ping answered
/// from another host (printed; no assertion on time).
#[test]
fn docker_churn_and_dockerd_restarts_release_everything() {
    if skipped() {
        return;
    }
    let mut dc = DockerCluster::start(2, &[]);
    let probe = dc.c.netns("probe");
    dc.d(1).ok(&create_args(&[], "demo"));
    let c = &dc.c;
    let id = wait_until("ovnet network demo", LONG, || {
        let out = c.ovctl(1, &["network", "inspect", "demo"]);
        if out.code == Some(0) {
            Ok(s(&c.inspect(1, "demo"), "Id").to_owned())
        } else {
            Err(out.stderr)
        }
    });
    c.connect(2, "demo", "probe", &probe);
    let h1 = c.host(1).ns.clone();
    let endpoints = c.endpoint_keys(&id);
    let claims = c.ip_keys(&id);
    let settled = |what: &str| {
        wait_until(what, LONG, || {
            let (e, i, r) = (
                c.endpoint_keys(&id),
                c.ip_keys(&id),
                c.etcd_keys("/ovnet/reservations/"),
            );
            let links = c.network_links(&h1);
            let ends = c.links(&h1, "ovc");
            if e == endpoints && i == claims && r.is_empty() && links.is_empty() && ends.is_empty()
            {
                Ok(())
            } else {
                Err(format!(
                    "endpoints {e:?}, claims {i:?}, reservations {r:?}, devices {links:?} {ends:?}"
                ))
            }
        })
    };

    let d1 = dc.d(1);
    let mut times = Vec::new();
    let mut runs = Vec::new();
    for i in 0..50 {
        let name = format!("c{i}");
        let start = Instant::now();
        d1.run(&name, &["--network", "demo"]);
        runs.push(start.elapsed());
        let ip = d1.ip(&name, "demo");
        c.wait_ping(&probe, &ip, LONG);
        times.push(start.elapsed());
        if i % 10 == 9 {
            d1.ok(&["network", "disconnect", "demo", &name]);
        }
        d1.ok(&["rm", "-f", &name]);
    }
    settled("50 containers to leave nothing behind");
    times.sort();
    runs.sort();
    println!(
        "{} containers: docker run to the first ping answered from another host p50 {:?}, \
         p99 {:?}; of which docker run -d itself p50 {:?}, p99 {:?}",
        times.len(),
        quantile(&times, 0.50),
        quantile(&times, 0.99),
        quantile(&runs, 0.50),
        quantile(&runs, 0.99)
    );

    // dockerd killed with containers running: when it comes back it stops them and gives
    // their endpoints back.
    for i in 0..3 {
        dc.d(1).run(&format!("k{i}"), &["--network", "demo"]);
    }
    assert_eq!(dc.c.endpoint_keys(&id).len(), endpoints.len() + 3);
    dc.d_mut(1).kill();
    dc.d_mut(1).restart();
    let c = &dc.c;
    let settled = |what: &str| {
        wait_until(what, LONG, || {
            let (e, i) = (c.endpoint_keys(&id), c.ip_keys(&id));
            let (links, ends) = (c.network_links(&h1), c.links(&h1, "ovc"));
            if e == endpoints && i == claims && links.is_empty() && ends.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "endpoints {e:?}, claims {i:?}, devices {links:?} {ends:?}"
                ))
            }
        })
    };
    settled("a killed dockerd's containers to be released when it is back");
    // Stopped the normal way, it releases them as it goes.
    for i in 0..2 {
        dc.d(1).run(&format!("s{i}"), &["--network", "demo"]);
    }
    // (Fields, not `d_mut`: `settled` holds the cluster.)
    dc.docker[0].stop();
    settled("a stopped dockerd's containers to be released");
    dc.docker[0].restart();
    let d1 = dc.d(1);
    d1.run("after", &["--network", "demo"]);
    dc.c.wait_ping(&probe, &d1.ip("after", "demo"), LONG);
}

/// An agent killed with SIGKILL while Docker's containers run: once it is back they reach
/// each other across hosts again with the interfaces they had, and `docker run` works again.
#[test]
fn agent_sigkill_keeps_docker_containers() {
    if skipped() {
        return;
    }
    let mut dc = DockerCluster::start(2, &[]);
    dc.d(1)
        .ok(&create_args(&["--subnet", "10.0.0.0/24"], "demo"));
    dc.d(2)
        .ok(&create_args(&["--subnet", "10.0.0.0/24"], "demo"));
    dc.d(1).run("web1", &["--network", "demo"]);
    dc.d(2).run("web2", &["--network", "demo"]);
    dc.wait_container_ping(2, "web2", "10.0.0.2", LONG);
    let before = dc
        .d(1)
        .ok(&["exec", "web1", "ip", "-o", "link", "show", "eth0"]);

    dc.c.kill_agent(1);
    dc.c.start_agent(1);
    dc.c.wait_agent_ready(1);
    dc.wait_container_ping(2, "web2", "10.0.0.2", LONG);
    dc.wait_container_ping(1, "web1", "10.0.0.3", LONG);
    let after = dc
        .d(1)
        .ok(&["exec", "web1", "ip", "-o", "link", "show", "eth0"]);
    assert_eq!(before, after, "web1's interface is the one it had");

    dc.d(1).run("web3", &["--network", "demo"]);
    assert_eq!(dc.d(1).ip("web3", "demo"), "10.0.0.4");
    dc.wait_container_ping(2, "web2", "10.0.0.4", LONG);
    let names: Vec<String> = containers(&dc.c.inspect(2, "demo")).into_keys().collect();
    assert_eq!(names, ["web1", "web2", "web3"]);
}

/// Docker's own firewall on a host (`--iptables=true`: FORWARD policy DROP, br_netfilter)
/// leaves ovnet's traffic alone: Docker's containers and ovctl's namespaces on that host reach
/// the other host's, pings and a TCP transfer large enough for the fast path's super-frames.
#[test]
fn docker_firewall_leaves_ovnet_traffic_alone() {
    if skipped() {
        return;
    }
    let mut dc = DockerCluster::start(2, &[1]);
    let a = dc.c.netns("a");
    let b = dc.c.netns("b");
    let c = &dc.c;
    let h1 = c.host(1).ns.clone();
    let fw = c.sh(&h1, &["iptables", "-S", "FORWARD"]);
    assert!(fw.contains("-P FORWARD DROP"), "Docker's firewall: {fw}");
    dc.d(1)
        .ok(&create_args(&["--subnet", "10.0.0.0/24"], "demo"));
    dc.d(2)
        .ok(&create_args(&["--subnet", "10.0.0.0/24"], "demo"));
    dc.d(1).run("web1", &["--network", "demo"]);
    dc.d(2).run("web2", &["--network", "demo"]);
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    dc.wait_container_ping(1, "web1", "10.0.0.3", LONG);
    dc.wait_container_ping(2, "web2", "10.0.0.2", LONG);
    c.wait_ping(&a, "10.0.0.5", LONG);
    c.assert_ping(&b, "10.0.0.4");
    for (server, ip, client) in [(&b, "10.0.0.5", &a), (&a, "10.0.0.4", &b)] {
        ovnet_testbed::tcp_transfer_verified(&c.tb, server, ip, client, 64 << 20)
            .unwrap_or_else(|e| panic!("TCP {client} -> {server}: {e}"));
    }
    println!(
        "host1 with Docker's firewall: bridge-nf-call-iptables {}, data plane:\n{}",
        c.sh(
            &h1,
            &["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"]
        )
        .trim(),
        c.ovctl(1, &["dataplane"]).ok()
    );
    println!(
        "FORWARD chain:\n{}",
        c.sh(&h1, &["iptables", "-S", "FORWARD"])
    );
}

/// The address `nslookup NAME` in container `ctr` answers with, if any.
fn lookup(d: &ovnet_cluster::Dockerd, ctr: &str, name: &str) -> Result<String, String> {
    let out = d.docker(&["exec", ctr, "nslookup", name]);
    let text = format!("{}{}", out.stdout, out.stderr);
    // busybox: "Name:\tweb2" then "Address: 10.0.0.3"; the server's own lines come first.
    text.split(&format!("Name:\t{name}"))
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("Address: ")))
        .map(|a| a.trim().to_owned())
        .ok_or(text)
}

/// Names across hosts through Docker's own resolver (which forwards what it does not know to
/// the `--dns` given: the network's gateway, where ovnet's resolver answers for every host),
/// published ports (`docker run -p`) and internal networks (`--internal`).
#[test]
fn docker_names_ports_and_internal_networks() {
    if skipped() {
        return;
    }
    let mut dc = DockerCluster::start(2, &[]);
    let c3 = dc.c.netns("c3");
    let (d1, d2, c) = (dc.d(1), dc.d(2), &dc.c);
    for d in [d1, d2] {
        d.ok(&create_args(&["--subnet", "10.0.0.0/24"], "demo"));
    }
    let dns = ["--network", "demo", "--dns", "10.0.0.1"];
    d1.run("web1", &dns);
    d2.run("web2", &dns);
    c.connect(2, "demo", "c3", &c3);

    // web1 resolves the names of the network's endpoints on every host, Docker's and ovctl's.
    for (name, want) in [
        ("web2", "10.0.0.3"),
        ("web2.demo", "10.0.0.3"),
        ("c3", "10.0.0.4"),
    ] {
        let got = wait_until(&format!("web1 to resolve {name}"), LONG, || {
            lookup(d1, "web1", name)
        });
        assert_eq!(got, want, "{name}");
    }
    d1.ok(&["exec", "web1", "ping", "-c", "1", "-W", "5", "web2"]);
    // A container that leaves is no longer a name.
    d2.ok(&["rm", "-f", "web2"]);
    wait_until("web2's name to go", LONG, || {
        match lookup(d1, "web1", "web2") {
            Ok(a) => Err(format!("still {a}")),
            Err(_) => Ok(()),
        }
    });

    // A published port is reachable from outside the overlay, at host1's address.
    let serve = [
        "sh",
        "-c",
        "mkdir -p /www && echo hello-ovnet > /www/index.html && exec httpd -f -p 80 -h /www",
    ];
    d1.ok(&ovnet_cluster::Dockerd::run_args(
        "srv",
        &["--network", "demo", "-p", "8080:80"],
        &serve,
    ));
    let underlay = c.tb.underlay().to_owned();
    let page = wait_until("the published port to answer", LONG, || {
        ovnet_testbed::in_netns(&underlay, || http_get("192.168.50.1:8080"))
            .map_err(|e| e.to_string())?
    });
    assert!(page.ends_with("\r\n\r\nhello-ovnet\n"), "{page:?}");
    // The same host port again, and a host port left to choose, are refused.
    let out = d1.docker(&ovnet_cluster::Dockerd::run_args(
        "srv2",
        &["--network", "demo", "-p", "8080:80"],
        &["sleep", "100000"],
    ));
    assert!(
        out.stderr
            .contains("Bind for 0.0.0.0:8080 failed: port is already allocated"),
        "{out:?}"
    );
    d1.ok(&["rm", "-f", "srv2"]);
    let out = d1.docker(&ovnet_cluster::Dockerd::run_args(
        "srv3",
        &["--network", "demo", "-p", "80"],
        &["sleep", "100000"],
    ));
    assert!(out.stderr.contains("-p HOSTPORT:80/tcp"), "{out:?}");
    d1.ok(&["rm", "-f", "srv3"]);
    assert!(
        c.etcd_keys("/ovnet/reservations/").is_empty(),
        "the refused runs' addresses went back"
    );
    // Gone with the container.
    d1.ok(&["rm", "-f", "srv"]);
    assert!(c.etcd_keys("/ovnet/ports/").is_empty());

    // An internal network: the flag reaches ovnet, no default route, nothing published.
    d1.ok(&create_args(
        &["--internal", "--subnet", "10.1.0.0/24"],
        "priv",
    ));
    let priv_net = wait_until("ovnet network priv", LONG, || {
        let out = c.ovctl(1, &["network", "inspect", "priv"]);
        match out.code {
            Some(0) => Ok(c.inspect(1, "priv")),
            _ => Err(out.stderr),
        }
    });
    assert_eq!(priv_net["Internal"], true, "{priv_net}");
    d1.run("p1", &["--network", "priv"]);
    let route = d1.ok(&["exec", "p1", "ip", "route"]);
    assert!(!route.contains("default"), "{route}");
    let out = d1.docker(&ovnet_cluster::Dockerd::run_args(
        "p2",
        &["--network", "priv", "-p", "9090:80"],
        &["sleep", "100000"],
    ));
    assert!(
        out.stderr
            .contains("network priv is internal: ports cannot be published on it"),
        "{out:?}"
    );
    // The same network without --internal on host2 is refused: it would not be the same one.
    let out = d2.docker(&create_args(&["--subnet", "10.1.0.0/24"], "priv"));
    assert!(out.stderr.contains("--internal (not given)"), "{out:?}");
}
