//! End to end, MTU safety: three hosts whose third has an underlay MTU of 1400 (the others
//! 1500), real agents, etcd and `ovctl`. A network created without `--mtu` fits every path
//! (1350); one created with `--mtu 1450` is accepted with a warning naming host 3, and works
//! anyway: the data plane answers what does not fit the path to host 3 with ICMP "too big",
//! which TCP's path MTU discovery and `ping -M do` see, and sends IPv4 without DF for the host
//! to fragment. Hosts behind routers whose link between them is narrower than the hosts'
//! own: the routers fragment the outer datagrams, as they would the kernel's vxlan's. VTEPs
//! that are host addresses on the loopback, routed by the fabric: the routes' MTU counts.
//!
//! Needs root, etcd, iproute2, iputils ping and the workspace's binaries.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use ovnet_cluster::{wait_until, Cluster};
use ovnet_testbed::{tcp_transfer_verified, udp_burst_verified, Host, RoutedHost};
use serde_json::Value;

/// The transfer the issue asks for, to the host with the small underlay.
const TRANSFER: usize = 20 << 20;
/// How long a condition may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// Three hosts and their agents, host 3's underlay link at MTU 1400 before its agent starts.
fn cluster() -> Cluster {
    let mut c = Cluster::bed(3);
    let h3 = c.host(3).clone();
    c.tb.set_underlay_mtu(&h3, 1400).expect("underlay MTU");
    for h in 1..=3 {
        c.start_agent(h);
    }
    for h in 1..=3 {
        c.wait_agent_ready(h);
    }
    c
}

/// The MTU of `eth0` in namespace `ns`.
fn eth0_mtu(c: &Cluster, ns: &str) -> u32 {
    let link = c.sh(ns, &["ip", "-o", "link", "show", "eth0"]);
    link.split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no mtu in {link}"))
}

/// The IPv4 address of container `name` in network `net`, from `inspect`.
fn ip_of(c: &Cluster, net: &str, name: &str) -> String {
    let n = c.inspect(1, net);
    let cs = ovnet_cluster::containers(&n);
    let cidr = cs[name]["IPv4Address"].as_str().unwrap_or_default();
    cidr.split('/').next().unwrap_or_default().to_owned()
}

/// `ovctl stats NET --json` on host `h`: the network's counters.
fn stats(c: &Cluster, h: usize, net: &str) -> Value {
    let out = c.ovctl(h, &["stats", net, "--json"]).ok();
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v[0].clone()
}

/// A counter of `stats` (a drop reason under `drops`), 0 if absent.
fn counter(s: &Value, key: &str) -> u64 {
    s.get(key)
        .or_else(|| s["drops"].get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Runs `args` in `ns`, whatever its exit status; returns stdout and stderr together.
fn run_in(c: &Cluster, ns: &str, args: &[&str]) -> String {
    c.tb.exec_any(ns, args)
        .unwrap_or_else(|e| panic!("{args:?} in {ns}: {e}"))
}

#[test]
fn a_network_created_without_mtu_fits_the_smallest_underlay() {
    let mut c = cluster();
    // Host 3 registered with its underlay's MTU: the default is 1400 - 50.
    let out = c.ovctl(1, &["network", "create", "-d", "overlay", "small"]);
    assert!(out.stderr.is_empty(), "no warning expected: {out:?}");
    assert_eq!(c.inspect(2, "small")["Options"]["mtu"], "1350");
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "small", "a", &a);
    c.connect(3, "small", "b", &b);
    assert_eq!((eth0_mtu(&c, &a), eth0_mtu(&c, &b)), (1350, 1350));
    c.wait_ping(&a, &ip_of(&c, "small", "b"), DEADLINE);

    tcp_transfer_verified(&c.tb, &b, &ip_of(&c, "small", "b"), &a, TRANSFER)
        .expect("20 MB to the host with the small underlay");
    // Everything fit: nothing was refused on the way there, nor on the way back.
    for h in [1, 3] {
        let s = stats(&c, h, "small");
        assert_eq!(counter(&s, "too_big"), 0, "host{h}: {s}");
        assert_eq!(counter(&s, "too_big_answers"), 0, "host{h}: {s}");
    }

    // Host 1's underlay shrinks to 1300 while its agent runs: the agent reads it again,
    // records it, and both ends' tables follow; the path from host 1 to host 3 now carries
    // 1250 bytes, which a 1350-byte ping with DF is told.
    let h1 = c.host(1).clone();
    c.tb.set_underlay_mtu(&h1, 1300).expect("underlay MTU");
    let ip_b = ip_of(&c, "small", "b");
    wait_until("host 1's new underlay MTU in its tables", DEADLINE, || {
        // a forgets what it learned, so that each ping asks the path again.
        c.sh(&a, &["sysctl", "-q", "-w", "net.ipv4.route.flush=1"]);
        let ping = run_in(
            &c,
            &a,
            &[
                "ping", "-c", "1", "-W", "1", "-M", "do", "-s", "1322", &ip_b,
            ],
        );
        ping.contains("Frag needed and DF set (mtu = 1250)")
            .then_some(())
            .ok_or(ping)
    });
    // And a network created now gets 1300 - 50.
    c.create(3, "smaller", &[]);
    assert_eq!(c.inspect(3, "smaller")["Options"]["mtu"], "1250");
}

#[test]
fn a_network_mtu_above_an_underlay_works_through_too_big_answers() {
    let mut c = cluster();
    let out = c.ovctl(
        1,
        &["network", "create", "-d", "overlay", "--mtu", "1450", "big"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let warnings: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "one warning, for host3: {out:?}");
    assert!(
        warnings[0].starts_with("WARNING: MTU 1450 is more than node host3's underlay"),
        "{out:?}"
    );
    assert!(warnings[0].contains("--mtu 1350"), "{out:?}");
    assert_eq!(c.inspect(1, "big")["Options"]["mtu"], "1450");

    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "big", "a", &a);
    c.connect(3, "big", "b", &b);
    assert_eq!((eth0_mtu(&c, &a), eth0_mtu(&c, &b)), (1450, 1450));
    let (ip_a, ip_b) = (ip_of(&c, "big", "a"), ip_of(&c, "big", "b"));
    c.wait_ping(&a, &ip_b, DEADLINE);

    // 20 MB to host 3: its first segments are refused and answered, then TCP sends segments
    // that fit (a's kernel knows nothing of the path yet: TCP's path MTU discovery works
    // through the answers).
    tcp_transfer_verified(&c.tb, &b, &ip_b, &a, TRANSFER)
        .expect("20 MB to the host with the small underlay, through too-big answers");
    let s1 = stats(&c, 1, "big");
    eprintln!("host1 after 20 MB to host3: {s1}");
    let answers = counter(&s1, "too_big_answers");
    assert!(answers >= 1, "host1: {s1}");
    assert!(counter(&s1, "too_big") >= answers, "host1: {s1}");
    assert_eq!(counter(&s1, "send_error"), 0, "host1: {s1}");

    // A 1400-byte ping with DF, once a has forgotten the path MTU it learned: answered as a
    // router would, with the path's MTU.
    c.sh(&a, &["sysctl", "-q", "-w", "net.ipv4.route.flush=1"]);
    let ping = run_in(
        &c,
        &a,
        &[
            "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "1372", &ip_b,
        ],
    );
    assert!(
        ping.contains("Frag needed and DF set (mtu = 1350)"),
        "ping -M do: {ping}"
    );
    wait_until("the ping's answer counted", DEADLINE, || {
        let s = stats(&c, 1, "big");
        (counter(&s, "too_big_answers") > answers)
            .then_some(())
            .ok_or_else(|| s.to_string())
    });

    // IPv4 without DF (b's stack does no path MTU discovery): b's host fragments the outer
    // datagram, which a's host puts back together. (This way round: host 3's own route
    // fragments to what its underlay carries. Towards host 3, fragments are cut by the
    // sender's route, which knows nothing of host 3's 1400, and on this bed's one L2 underlay
    // nothing between fragments further, as with the kernel's vxlan.)
    c.sh(&b, &["sysctl", "-q", "-w", "net.ipv4.ip_no_pmtu_disc=1"]);
    let mut tries = 0;
    loop {
        let burst = udp_burst_verified(&c.tb, &a, &ip_a, &b, 20, 1400, 5).expect("UDP burst");
        tries += 1;
        if burst.received == burst.sent {
            break;
        }
        // A loaded kernel drops datagrams of its own; the data plane would lose them all.
        assert!(
            burst.received > 0 && tries < 3,
            "{burst:?} after {tries} tries"
        );
    }
    let s3 = stats(&c, 3, "big");
    eprintln!("host3 after the UDP burst without DF: {s3}");
    assert!(counter(&s3, "fragmented") >= 20, "host3: {s3}");
    assert_eq!(counter(&s3, "too_big"), 0, "host3: {s3}");

    ipv6_packet_too_big(&c, &a, &b);
}

/// IPv6 between the containers' link-local addresses (the data plane answers neighbour
/// solicitations for them from its table): a 1400-byte ping gets "packet too big", mtu 1350.
fn ipv6_packet_too_big(c: &Cluster, a: &str, b: &str) {
    for ns in [a, b] {
        let ok = Command::new("ip")
            .args(["netns", "exec", ns, "sysctl", "-q", "-w"])
            .args([
                "net.ipv6.conf.eth0.accept_dad=0",
                "net.ipv6.conf.all.disable_ipv6=0",
                "net.ipv6.conf.eth0.disable_ipv6=0",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipped: the IPv6 part (this kernel's namespaces have no IPv6)");
            return;
        }
    }
    let ll = wait_until("b's link-local address", DEADLINE, || {
        let out = c.sh(
            b,
            &[
                "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link",
            ],
        );
        out.split_whitespace()
            .skip_while(|w| *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .map(str::to_owned)
            .ok_or(out)
    });
    let to = format!("{ll}%eth0");
    wait_until("a to reach b over IPv6", DEADLINE, || {
        let out = run_in(c, a, &["ping", "-6", "-c", "1", "-W", "1", &to]);
        out.contains(" 0% packet loss").then_some(()).ok_or(out)
    });
    let ping = run_in(
        c,
        a,
        &[
            "ping", "-6", "-c", "1", "-W", "3", "-M", "do", "-s", "1400", &to,
        ],
    );
    assert!(ping.contains("Packet too big: mtu=1350"), "ping -6: {ping}");
}

/// The `Ip: ReasmOKs` counter of namespace `ns`: datagrams it put back together from fragments.
fn reassembled(c: &Cluster, ns: &str) -> u64 {
    let snmp = run_in(c, ns, &["cat", "/proc/net/snmp"]);
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next().unwrap_or_default(), ip.next().unwrap_or_default());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "ReasmOKs")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no ReasmOKs in {snmp}"))
}

/// Two hosts behind routers whose link carries `transit_mtu` bytes
/// ([`ovnet_testbed::Testbed::add_routed_underlay`]), each agent on the address `vtep` picks,
/// once every node is listed on the other host with that VTEP and heard there (its data plane,
/// through the routers, not only its lease).
fn behind_routers(transit_mtu: u32, vtep: fn(&RoutedHost) -> Ipv4Addr) -> (Cluster, [Host; 2]) {
    let mut c = Cluster::bed(2);
    let hosts = [c.host(1).clone(), c.host(2).clone()];
    let routed =
        c.tb.add_routed_underlay(&[&hosts[0], &hosts[1]], transit_mtu)
            .expect("routed underlay");
    let vteps: Vec<String> = routed.iter().map(|r| vtep(r).to_string()).collect();
    for (h, ip) in (1..=2).zip(&vteps) {
        c.set_agent_args(h, &["--vtep-ip", ip]);
        c.start_agent(h);
    }
    for h in 1..=2 {
        c.wait_agent_ready(h);
    }
    wait_until("each node listed and heard by the other", DEADLINE, || {
        let tables = [
            c.ovctl(2, &["node", "ls"]).ok(),
            c.ovctl(1, &["node", "ls"]).ok(),
        ];
        // Host 1 in host 2's table, host 2 in host 1's.
        let heard = (0..2).all(|i| {
            tables[i].lines().any(|l| {
                l.starts_with(&Cluster::node(i + 1))
                    && l.contains(&format!("{}:4789", vteps[i]))
                    && l.contains("heard")
            })
        });
        heard.then_some(()).ok_or(tables.join("\n"))
    });
    (c, hosts)
}

/// Hosts in subnets of their own behind two routers, whose link carries only 1400 bytes
/// (which neither host's own link shows): the VTEPs reach each other through the routers,
/// the network keeps its default 1450, and the outer datagrams, sent without DF as the
/// kernel's vxlan sends them, are fragmented by the router and put back together by the
/// receiving host. A full-sized ping with DF and 20 MB of TCP each way get through.
#[test]
fn hosts_behind_routers_with_a_narrow_link_between_them() {
    let (mut c, hosts) = behind_routers(1400, |r| r.link);

    c.create(1, "routed", &[]);
    assert_eq!(c.inspect(2, "routed")["Options"]["mtu"], "1450");
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "routed", "a", &a);
    c.connect(2, "routed", "b", &b);
    let (ip_a, ip_b) = (ip_of(&c, "routed", "a"), ip_of(&c, "routed", "b"));
    c.wait_ping(&a, &ip_b, DEADLINE);

    let before = reassembled(&c, &hosts[1].ns);
    let ping = run_in(
        &c,
        &a,
        &[
            "ping", "-c", "3", "-W", "3", "-M", "do", "-s", "1422", &ip_b,
        ],
    );
    assert!(ping.contains(" 0% packet loss"), "ping -M do: {ping}");
    assert!(
        reassembled(&c, &hosts[1].ns) >= before + 3,
        "host 2 reassembled no fragmented request"
    );

    tcp_transfer_verified(&c.tb, &b, &ip_b, &a, TRANSFER).expect("20 MB from host 1 to host 2");
    tcp_transfer_verified(&c.tb, &a, &ip_a, &b, TRANSFER).expect("20 MB from host 2 to host 1");
    for h in [1, 2] {
        let s = stats(&c, h, "routed");
        for reason in ["too_big", "send_error", "unknown_vtep"] {
            assert_eq!(counter(&s, reason), 0, "{reason} on host{h}: {s}");
        }
    }
    // `doctor` finds the VTEP on the routed link and nothing to fix.
    let doctor = c.ovctl(1, &["doctor"]).ok();
    assert!(
        doctor.contains("172.20.1.2 is on rl0"),
        "doctor on host 1: {doctor}"
    );
}

/// The L3-fabric layout: each host's VTEP is a host address on `lo` that the routers route to
/// it. The underlay MTU is then the routes' to the peers (1500), not `lo`'s 65536, which no
/// node record may hold: with it, every agent skipped every node's record as damaged, `node
/// ls` was empty and nothing crossed. Now the nodes are listed with their VTEPs, a network
/// takes the fabric's 1450, and a full-sized ping with DF and 20 MB of TCP cross.
#[test]
fn vteps_on_the_loopback_of_an_l3_fabric() {
    let (mut c, _) = behind_routers(1500, |r| r.loopback);
    // Once each agent has read the routes to its peer, a new network gets 1500 - 50.
    let mut probes = 0;
    wait_until("the routes' MTU in both node records", DEADLINE, || {
        probes += 1;
        let name = format!("probe{probes}");
        c.create(1, &name, &[]);
        let mtu = c.inspect(1, &name)["Options"]["mtu"].clone();
        c.ovctl(1, &["network", "rm", &name]).ok();
        (mtu == "1450")
            .then_some(())
            .ok_or(format!("{name}: mtu {mtu}"))
    });

    c.create(1, "fabric", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "fabric", "a", &a);
    c.connect(2, "fabric", "b", &b);
    assert_eq!((eth0_mtu(&c, &a), eth0_mtu(&c, &b)), (1450, 1450));
    let ip_b = ip_of(&c, "fabric", "b");
    c.wait_ping(&a, &ip_b, DEADLINE);
    let ping = run_in(
        &c,
        &a,
        &[
            "ping", "-c", "3", "-W", "3", "-M", "do", "-s", "1422", &ip_b,
        ],
    );
    assert!(ping.contains(" 0% packet loss"), "ping -M do: {ping}");
    tcp_transfer_verified(&c.tb, &b, &ip_b, &a, TRANSFER).expect("20 MB from host 1 to host 2");
    for h in [1, 2] {
        let s = stats(&c, h, "fabric");
        for reason in ["too_big", "send_error", "unknown_vtep"] {
            assert_eq!(counter(&s, reason), 0, "{reason} on host{h}: {s}");
        }
        let log = c.agent_log(h);
        assert!(!log.contains("damaged record"), "host{h}'s agent: {log}");
    }
}
