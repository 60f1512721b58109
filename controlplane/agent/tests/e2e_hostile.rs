//! End to end, hostile neighbours: containers that spoof, floods of random source MACs from a
//! container and from an external VTEP, a broadcast storm, and an agent stopped while its
//! underlay is stuck. Real agents, etcd and `ovctl` ([`ovnet_cluster`]), frames written and
//! read raw inside the containers' namespaces; each test builds its own cluster.
//!
//! The figures (agents' memory before and after a flood, bridge FDB sizes, how long an agent
//! took to stop) are printed; run with `--nocapture` to see them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etherparse::{Icmpv6Type, PacketBuilder};
use ovnet_cluster::{ping_summary, wait_until, Cluster};
use ovnet_sys::testing::{Direction, PacketSocket};
use ovnet_testbed::in_netns;
use ovnet_wire::MacAddr;
use serde_json::Value;

/// The bridge of the first network (VNI 256).
const BRIDGE: &str = "ovbr256";

/// A marker in the payload of every frame a test writes, to tell them from other traffic.
const MARK: &[u8] = b"ovnet-hostile";

fn mac_of(ip: &str) -> MacAddr {
    MacAddr::from_ipv4_docker(ip.parse().unwrap())
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<Ipv4Addr>().unwrap().octets()
}

/// An Ethernet/IPv4/UDP frame carrying [`MARK`] and `tag`.
fn udp(src: MacAddr, dst: MacAddr, sip: &str, dip: &str, tag: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(ip4(sip), ip4(dip), 64)
        .udp(40000, 9);
    let mut out = Vec::new();
    b.write(&mut out, &[MARK, tag].concat()).unwrap();
    out
}

/// An ICMPv6 message from `src`'s link-local address to all nodes: `ty` with `body`, then
/// [`MARK`] and `tag` (as an unknown option, which receivers skip).
fn icmp6(src: MacAddr, ty: Icmpv6Type, body: &[u8], tag: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(
            src.ipv6_link_local().octets(),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            255,
        )
        .icmpv6(ty);
    let mut out = Vec::new();
    b.write(&mut out, &[body, MARK, tag].concat()).unwrap();
    out
}

/// A neighbour advertisement from `src` for `target`'s link-local address.
fn na(src: MacAddr, target: MacAddr, tag: &[u8]) -> Vec<u8> {
    let h = etherparse::icmpv6::NeighborAdvertisementHeader {
        router: false,
        solicited: false,
        r#override: true,
    };
    icmp6(
        src,
        Icmpv6Type::NeighborAdvertisement(h),
        &target.ipv6_link_local().octets(),
        tag,
    )
}

/// A router advertisement from `src`.
fn ra(src: MacAddr, tag: &[u8]) -> Vec<u8> {
    let ty = Icmpv6Type::Unknown {
        type_u8: 134,
        code_u8: 0,
        bytes5to8: [64, 0, 0x07, 0x08],
    };
    icmp6(src, ty, &[0; 8], tag)
}

/// `frame` with an 802.1Q tag (VLAN 7).
fn tagged(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0, 0, 7]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// Writes `frames` out of `eth0` of namespace `ns`, each `times` times; returns how many
/// writes the kernel took.
fn send_raw(ns: &str, frames: &[Vec<u8>], times: usize) -> usize {
    in_netns(ns, || {
        let s = PacketSocket::bind("eth0").expect("packet socket on eth0");
        let mut sent = 0;
        for _ in 0..times {
            for f in frames {
                // A full queue refuses some writes of a flood: those are not sent.
                if s.send(f).is_ok() {
                    sent += 1;
                }
            }
        }
        sent
    })
    .unwrap()
}

/// Listens on `eth0` of namespace `ns` while `during` runs, then `linger` more; returns the
/// tags of the received frames that carry [`MARK`].
fn received_tags(ns: &str, linger: Duration, during: impl FnOnce()) -> Vec<Vec<u8>> {
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (stop_tx, stop) = std::sync::mpsc::channel::<()>();
    let ns = ns.to_owned();
    let listener = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let s = PacketSocket::bind("eth0").expect("packet socket on eth0");
            ready_tx.send(()).unwrap();
            let mut tags = Vec::new();
            let mut buf = vec![0u8; 65_536];
            let mut until: Option<Instant> = None;
            loop {
                if until.is_none() && stop.try_recv().is_ok() {
                    until = Some(Instant::now() + linger);
                }
                if until.is_some_and(|u| Instant::now() >= u) {
                    return tags;
                }
                if let Ok(Some((n, Direction::Incoming))) =
                    s.recv(&mut buf, Duration::from_millis(50))
                {
                    let f = &buf[..n];
                    if let Some(at) = f.windows(MARK.len()).position(|w| w == MARK) {
                        tags.push(f[at + MARK.len()..].to_vec());
                    }
                }
            }
        })
        .unwrap()
    });
    ready.recv().unwrap();
    during();
    stop_tx.send(()).unwrap();
    listener.join().unwrap()
}

fn has_tag(tags: &[Vec<u8>], tag: &[u8]) -> bool {
    tags.iter().any(|t| t.starts_with(tag))
}

/// The drops `ovctl stats demo` reports on host `h`, by reason.
fn drops(c: &Cluster, h: usize) -> BTreeMap<String, u64> {
    let out = c.ovctl(h, &["stats", "demo", "--json"]).ok();
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v[0]["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn dropped(c: &Cluster, h: usize, reason: &str) -> u64 {
    drops(c, h).get(reason).copied().unwrap_or(0)
}

/// Resident memory of host `h`'s agent, in KiB.
fn rss_kib(c: &Cluster, h: usize) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.agent(h).0)).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Entries of `bridge`'s FDB in namespace `ns`.
fn fdb_len(c: &Cluster, ns: &str, bridge: &str) -> usize {
    c.sh(ns, &["bridge", "fdb", "show", "br", bridge])
        .lines()
        .count()
}

/// Starts `ping -c count -i 0.1 -W 1 to` in `ns` in the background.
fn background_ping(c: &mut Cluster, ns: &str, to: &str, count: u32) -> ovnet_cluster::Pid {
    let count = count.to_string();
    c.tb.spawn(
        ns,
        &["ping", "-n", "-c", &count, "-i", "0.1", "-W", "1", to],
        &[],
    )
    .expect("spawn ping")
}

/// Waits for a background ping; returns (transmitted, received).
fn ping_result(c: &mut Cluster, pid: ovnet_cluster::Pid) -> (u32, u32) {
    let st = c.tb.wait_timeout(pid, Duration::from_secs(120)).unwrap();
    let log = c.tb.log(pid).unwrap_or_default();
    assert!(st.is_some(), "ping still running:\n{log}");
    ping_summary(&log).unwrap_or_else(|| panic!("no ping summary:\n{log}"))
}

/// demo with a (10.0.0.2) and a2 (10.0.0.3) on host 1, b (10.0.0.4) on host 2.
fn three_containers(c: &mut Cluster) -> (String, String, String) {
    c.create(1, "demo", &[]);
    let (a, a2, b) = (c.netns("a"), c.netns("a2"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(1, "demo", "a2", &a2);
    c.connect(2, "demo", "b", &b);
    c.assert_ping(&a, "10.0.0.3");
    c.assert_ping(&a, "10.0.0.4");
    (a, a2, b)
}

/// A container spoofing its neighbour on the same host (whose bridge switches the frames
/// without the data plane) and its peer on another host: frames with another MAC, another
/// address, a VLAN tag, router advertisements and forged neighbour advertisements are dropped
/// on its veth and counted; its own frames and honest advertisements still arrive.
#[test]
fn containers_are_held_to_their_own_addresses_on_the_same_host_and_beyond() {
    let mut c = Cluster::start(2);
    let (a, a2, b) = three_containers(&mut c);
    let (ma, ma2, mb) = (mac_of("10.0.0.2"), mac_of("10.0.0.3"), mac_of("10.0.0.4"));
    let stranger = MacAddr([2, 0, 0, 0, 0x0b, 0xad]);
    let frames = vec![
        udp(ma, ma2, "10.0.0.2", "10.0.0.3", b"own"),
        udp(ma, ma2, "10.0.0.99", "10.0.0.3", b"other-ip"),
        udp(ma, ma2, "10.0.0.4", "10.0.0.3", b"neighbour-ip"),
        udp(stranger, ma2, "10.0.0.2", "10.0.0.3", b"other-mac"),
        udp(
            ma2,
            MacAddr::BROADCAST,
            "10.0.0.3",
            "10.0.0.255",
            b"neighbour-mac",
        ),
        tagged(&udp(ma, ma2, "10.0.0.2", "10.0.0.3", b"tagged")),
        na(ma, ma, b"honest-na"),
        na(ma, ma2, b"forged-na"),
        ra(ma, b"ra"),
        udp(ma, mb, "10.0.0.2", "10.0.0.4", b"own-remote"),
        udp(ma, mb, "10.0.0.99", "10.0.0.4", b"other-ip-remote"),
    ];
    let before = drops(&c, 1);
    let mut at_b = Vec::new();
    let at_a2 = received_tags(&a2, Duration::from_secs(2), || {
        at_b = received_tags(&b, Duration::from_secs(2), || {
            assert_eq!(send_raw(&a, &frames, 3), 3 * frames.len());
        });
    });
    eprintln!("at a2: {at_a2:?}\nat b: {at_b:?}");
    assert!(
        has_tag(&at_a2, b"own"),
        "a's own frame did not arrive: {at_a2:?}"
    );
    assert!(
        has_tag(&at_a2, b"honest-na"),
        "an honest advertisement was dropped"
    );
    assert!(
        has_tag(&at_b, b"own-remote"),
        "a's own frame did not cross: {at_b:?}"
    );
    for tag in [
        &b"other-ip"[..],
        b"neighbour-ip",
        b"other-mac",
        b"neighbour-mac",
        b"tagged",
        b"forged-na",
        b"ra",
    ] {
        assert!(
            !has_tag(&at_a2, tag),
            "{:?} reached a2",
            String::from_utf8_lossy(tag)
        );
    }
    assert!(
        !has_tag(&at_b, b"other-ip-remote"),
        "a spoofed frame crossed"
    );
    assert!(!has_tag(&at_b, b"ra"), "a router advertisement crossed");
    // Counted, under the data plane's names, in `ovctl stats`.
    let after = drops(&c, 1);
    let grew = |r: &str| after.get(r).copied().unwrap_or(0) - before.get(r).copied().unwrap_or(0);
    assert!(grew("spoofed_source") >= 3 * 6, "{after:?}");
    assert!(grew("router_advert") >= 3, "{after:?}");
    assert!(grew("forged_neighbour_advert") >= 3, "{after:?}");
    // The bridge never learned the stranger's MAC, nor a2's behind a's port.
    let fdb = c.sh(
        &c.host(1).ns.clone(),
        &["bridge", "fdb", "show", "br", BRIDGE],
    );
    assert!(!fdb.contains(&stranger.to_string()), "{fdb}");
    // Honest traffic goes on.
    c.assert_ping(&a, "10.0.0.3");
    c.assert_ping(&a2, "10.0.0.2");
    c.assert_ping(&a, "10.0.0.4");
}

/// 100 000 frames from random source MACs out of a container: every one dropped on its veth,
/// the agents' memory and the bridges' FDBs as they were, and a ping between two other
/// containers across hosts answered throughout.
#[test]
fn a_mac_flood_from_a_container_leaves_memory_flat_and_others_unaffected() {
    let mut c = Cluster::start(2);
    let (a, a2, _b) = three_containers(&mut c);
    let (h1, h2) = (c.host(1).ns.clone(), c.host(2).ns.clone());
    let rss = |c: &Cluster| (rss_kib(c, 1), rss_kib(c, 2));
    let fdbs = |c: &Cluster| (fdb_len(c, &h1, BRIDGE), fdb_len(c, &h2, BRIDGE));
    let (rss0, fdb0) = (rss(&c), fdbs(&c));
    let ping = background_ping(&mut c, &a2, "10.0.0.4", 60);
    let mut sent = 0;
    for round in 0u32..10 {
        let frames: Vec<Vec<u8>> = (0..10_000u32)
            .map(|i| {
                let n = (round * 10_000 + i).to_be_bytes();
                let src = MacAddr([2, 0xee, n[0], n[1], n[2], n[3]]);
                udp(src, MacAddr::BROADCAST, "10.0.0.2", "10.0.0.255", b"flood")
            })
            .collect();
        sent += send_raw(&a, &frames, 1);
    }
    let (tx, rx) = ping_result(&mut c, ping);
    let (rss1, fdb1) = (rss(&c), fdbs(&c));
    let spoofed = dropped(&c, 1, "spoofed_source");
    eprintln!(
        "MAC flood from a container: {sent} frames sent, {spoofed} dropped as spoofed; agents' \
         RSS {rss0:?} -> {rss1:?} KiB; bridge FDB entries {fdb0:?} -> {fdb1:?}; ping during \
         the flood {rx}/{tx}"
    );
    assert!(
        sent >= 50_000,
        "only {sent} frames of the flood left the container"
    );
    assert!(spoofed >= sent as u64, "{spoofed} of {sent} dropped");
    for ns in [&h1, &h2] {
        let fdb = c.sh(ns, &["bridge", "fdb", "show", "br", BRIDGE]);
        assert!(
            !fdb.contains("02:ee:"),
            "a bridge learned MACs of the flood:\n{fdb}"
        );
    }
    // (A few entries may come and go with the ping's own traffic.)
    assert!(
        fdb1.0 <= fdb0.0 + 4 && fdb1.1 <= fdb0.1 + 4,
        "{fdb0:?} -> {fdb1:?}"
    );
    for (before, after) in [(rss0.0, rss1.0), (rss0.1, rss1.1)] {
        assert!(
            after < before + 4096,
            "an agent grew from {before} to {after} KiB"
        );
    }
    assert!(
        rx + 3 >= tx,
        "the ping between other containers lost {} of {tx}",
        tx - rx
    );
}

/// An external VTEP (the underlay's own address, added with `network vtep add`) sends 50 000
/// frames from random source MACs: the data plane learns 256 (its cap here) and drops and
/// counts the rest, its memory stays flat once the table is full, host 1's bridge learns no
/// more than the cap, a MAC learned before still forwards, and a ping across hosts is
/// answered throughout.
#[test]
fn a_mac_flood_from_an_external_vtep_is_capped() {
    let mut c = Cluster::bed(2);
    c.set_agent_args(1, &["--max-learned-macs", "256"]);
    for h in [1, 2] {
        c.start_agent(h);
        c.wait_agent_ready(h);
    }
    let (a, _a2, b) = three_containers(&mut c);
    let ext = "192.168.50.254";
    c.ovctl(1, &["network", "vtep", "add", "demo", ext]).ok();
    let h1 = c.host(1).ns.clone();
    let underlay = c.tb.underlay().to_owned();
    let datagram = |n: u32, tag: &[u8]| {
        let b = n.to_be_bytes();
        let src = MacAddr([2, 0xdd, b[0], b[1], b[2], b[3]]);
        let mut d = vec![0x08, 0, 0, 0, 0, 0x01, 0x00, 0]; // VNI 256
        d.extend(udp(src, mac_of("10.0.0.2"), "10.0.0.200", "10.0.0.2", tag));
        d
    };
    let send = |from: u32, to: u32| {
        in_netns(&underlay, || {
            let s = std::net::UdpSocket::bind((ext, 0)).unwrap();
            let mut sent = 0u32;
            for n in from..to {
                if s.send_to(&datagram(n, b"flood"), "192.168.50.1:4789")
                    .is_ok()
                {
                    sent += 1;
                }
                if n % 200 == 0 {
                    // Paced, as a busy switch would send: 200 frames, then a breath.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            sent
        })
        .unwrap()
    };
    // The table wait for the external VTEP to reach host 1's data plane.
    wait_until(
        "host 1 to learn from the external VTEP",
        Duration::from_secs(20),
        || {
            send(0, 1);
            match c
                .sh(&h1, &["bridge", "fdb", "show", "br", BRIDGE])
                .contains("02:dd:00:00:00:00")
            {
                true => Ok(()),
                false => Err("not learned yet".to_owned()),
            }
        },
    );
    send(1, 5_000);
    let (rss0, fdb0) = (rss_kib(&c, 1), fdb_len(&c, &h1, BRIDGE));
    let ping = background_ping(&mut c, &a, "10.0.0.4", 60);
    let sent = send(5_000, 50_000);
    let (tx, rx) = ping_result(&mut c, ping);
    let (rss1, fdb1) = (rss_kib(&c, 1), fdb_len(&c, &h1, BRIDGE));
    let full = dropped(&c, 1, "learned_table_full");
    eprintln!(
        "MAC flood from an external VTEP: {sent} more frames after the first 5000; {full} \
         dropped as learned_table_full; host 1's agent RSS {rss0} -> {rss1} KiB; bridge FDB \
         entries {fdb0} -> {fdb1}; ping during the flood {rx}/{tx}"
    );
    assert!(
        fdb1 <= fdb0 + 4,
        "the bridge's FDB grew from {fdb0} to {fdb1} once the table was full"
    );
    assert!(full >= 40_000, "{full} dropped for a full table");
    let flooded = c
        .sh(&h1, &["bridge", "fdb", "show", "br", BRIDGE])
        .lines()
        .filter(|l| l.starts_with("02:dd:"))
        .count();
    assert!(
        flooded <= 256,
        "the bridge learned {flooded} MACs of the flood"
    );
    assert!(
        rss1 < rss0 + 4096,
        "the agent grew from {rss0} to {rss1} KiB"
    );
    assert!(rx + 3 >= tx, "the ping lost {} of {tx}", tx - rx);
    // The first MAC learned still reaches a.
    let tags = received_tags(&a, Duration::from_secs(2), || {
        send(0, 1);
    });
    assert!(has_tag(&tags, b"flood"), "a learned MAC stopped forwarding");
    let _ = b;
}

/// A container broadcasting as fast as it can: host 1 replicates at most its budget (here
/// 100 datagrams a second, one second of burst) to host 2 and counts the rest; unicast goes
/// on.
#[test]
fn a_broadcast_storm_is_held_to_its_budget() {
    let mut c = Cluster::bed(2);
    c.set_agent_args(1, &["--bum-pps-per-endpoint", "100"]);
    for h in [1, 2] {
        c.start_agent(h);
        c.wait_agent_ready(h);
    }
    let (a, _a2, b) = three_containers(&mut c);
    let storm: Vec<Vec<u8>> = (0..2_000u16)
        .map(|i| {
            let tag = format!("storm-{i}");
            udp(
                mac_of("10.0.0.2"),
                MacAddr::BROADCAST,
                "10.0.0.2",
                "10.0.0.255",
                tag.as_bytes(),
            )
        })
        .collect();
    let ping = background_ping(&mut c, &a, "10.0.0.4", 20);
    let started = Instant::now();
    let mut sent = 0;
    let tags = received_tags(&b, Duration::from_secs(2), || {
        sent = send_raw(&a, &storm, 5);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (tx, rx) = ping_result(&mut c, ping);
    let crossed = tags.iter().filter(|t| t.starts_with(b"storm")).count();
    let limited = dropped(&c, 1, "bum_rate_limited");
    eprintln!(
        "broadcast storm: {sent} frames in {elapsed:.1} s, {crossed} reached host 2, \
         {limited} dropped as bum_rate_limited; ping {rx}/{tx}"
    );
    // The budget: one second of burst and 100 a second after, with room for the seconds the
    // listener lingered.
    let budget = 100.0 * (1.0 + elapsed + 3.0);
    assert!(
        (crossed as f64) <= budget,
        "{crossed} broadcasts crossed, budget {budget}"
    );
    assert!(crossed > 0, "no broadcast crossed at all");
    assert!(
        limited as usize + crossed >= sent / 2,
        "{limited} limited of {sent}"
    );
    assert!(
        rx + 2 >= tx,
        "unicast lost {} of {tx} during the storm",
        tx - rx
    );
}

/// SIGTERM while host 1's VXLAN datagrams cannot leave (its underlay holds them, etcd still
/// reachable) and a container floods its peer: the agent exits 0 within 5 s, leaving the
/// containers' links and the port-security rules as they were; containers on the host still
/// talk over their bridge.
#[test]
fn sigterm_with_a_stuck_underlay_exits_within_5_s_and_leaves_the_links() {
    let mut c = Cluster::start(2);
    let (a, a2, _b) = three_containers(&mut c);
    let h1 = c.host(1).ns.clone();
    // VXLAN (UDP 4789) into a class of 8 bit/s with room for a million datagrams; everything
    // else (etcd) as before.
    for cmd in [
        "tc qdisc replace dev eth0 root handle 1: htb default 1",
        "tc class add dev eth0 parent 1: classid 1:1 htb rate 10gbit",
        "tc class add dev eth0 parent 1: classid 1:2 htb rate 8bit ceil 8bit",
        "tc qdisc add dev eth0 parent 1:2 handle 20: pfifo limit 1000000",
        "tc filter add dev eth0 parent 1: protocol ip u32 match ip protocol 17 0xff match ip \
         dport 4789 0xffff flowid 1:2",
    ] {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        if let Err(e) = c.tb.exec(&h1, &args) {
            ovnet_testbed::skip(format!("cannot hold VXLAN datagrams with tc: {e}"));
            return;
        }
    }
    // Fill the sockets' buffers: the worker then waits for room (or drops, counted).
    let flood: Vec<Vec<u8>> = (0..1000u16)
        .map(|_| {
            udp(
                mac_of("10.0.0.2"),
                mac_of("10.0.0.4"),
                "10.0.0.2",
                "10.0.0.4",
                &[0; 1300],
            )
        })
        .collect();
    wait_until("sends to stall", Duration::from_secs(60), || {
        send_raw(&a, &flood, 10);
        match dropped(&c, 1, "send_stalled") {
            0 => Err("no send gave up yet".to_owned()),
            _ => Ok(()),
        }
    });
    send_raw(&a, &flood, 10);
    let links_before = c.links(&h1, "ov");
    let pid = c.agent(1);
    let started = Instant::now();
    c.tb.kill(pid, libc::SIGTERM).unwrap();
    let st = c.tb.wait_timeout(pid, Duration::from_secs(5)).unwrap();
    let took = started.elapsed();
    let status = c.stop_agent(1);
    eprintln!("host 1's agent stopped in {took:?} ({status})");
    assert!(st.is_some(), "the agent did not exit within 5 s of SIGTERM");
    assert!(status.success(), "the agent exited with {status}");
    // As documented: the containers' veths, the bridge and the port security stay; the
    // network's TAP and the uplink go with the data plane.
    let links_after = c.links(&h1, "ov");
    for l in &links_before {
        if l.starts_with("ovv") || l.starts_with("ovbr") {
            assert!(links_after.contains(l), "{l} is gone: {links_after:?}");
        }
    }
    c.sh(&h1, &["nft", "list", "table", "bridge", "ovnet"]);
    c.assert_ping(&a, "10.0.0.3");
    c.assert_ping(&a2, "10.0.0.2");
}
