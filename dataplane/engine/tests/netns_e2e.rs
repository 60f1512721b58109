//! End to end in network namespaces: simulated hosts joined by a veth underlay, each with a
//! bridge and containers on it, and ovnet's data plane configured directly through its Rust API
//! (no control plane). Real traffic: ping both ways and a checksummed TCP transfer. Then the
//! same against the Linux kernel's own vxlan device on the other host, which proves the wire
//! format against an implementation nobody here wrote.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use ovnet_dataplane::{
    Dataplane, DataplaneConfig, DropReason, FloodEntry, MacAddr, NetworkTable, Offload,
    OffloadState, Vni,
};
use ovnet_sys::testing::{refuse_tap_writes, refuse_udp_gso};
use ovnet_sys::{netns, TapConfig};
use ovnet_testbed::{ping, tcp_transfer_verified, udp_burst_verified, Container, Host, Testbed};

const MTU: u32 = 1450;
const TRANSFER: usize = 50 << 20;

fn vni42() -> Vni {
    Vni::new(42).unwrap()
}

fn vtep(h: &Host) -> SocketAddr {
    SocketAddr::new(h.underlay_ip.into(), 4789)
}

fn mac(c: &Container) -> MacAddr {
    c.mac.parse().unwrap()
}

/// A host with bridge `br0` and one container on it.
fn host_with_container(tb: &mut Testbed, n: u8, ip: &str) -> (Host, Container) {
    let h = tb.add_host(n).unwrap();
    tb.exec(&h.ns, &["ip", "link", "add", "br0", "type", "bridge"])
        .unwrap();
    tb.exec(&h.ns, &["ip", "link", "set", "br0", "up"]).unwrap();
    let c = tb
        .add_container(&h, "br0", &format!("{ip}/24"), MTU, None)
        .unwrap();
    (h, c)
}

/// How the data plane talks to its TAP.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `IFF_VNET_HDR` with checksum and TSO offloads, UDP GSO/GRO: the production setup.
    Offloads,
    /// One plain frame per read and write.
    Plain,
    /// The TAP's offloads and UDP GRO, but no UDP GSO: what a data plane runs with once the
    /// kernel has refused a GSO send.
    NoGso,
    /// Offloads, but super-frames segmented in userspace and sent with UDP GSO rather than
    /// whole through the uplink: kernels before 6.17, or `--no-tunnel-gso`.
    SegmentHere,
}

/// Starts ovnet's data plane on host `h` serving VNI 42 on a TAP bridged to `br0`.
fn start_ovnet(tb: &Testbed, h: &Host, table: &NetworkTable, mode: Mode) -> Dataplane {
    let dp = netns::with(&h.ns, || {
        let fast = mode != Mode::Plain;
        let mut cfg = DataplaneConfig::new(vtep(h));
        cfg.gso = matches!(mode, Mode::Offloads | Mode::SegmentHere);
        cfg.tunnel_gso = mode == Mode::Offloads;
        cfg.gro = fast;
        cfg.tap_offloads = fast;
        // The production setup on two cores: two TAP queues, two receive sockets, polling
        // workers. The plain mode covers workers that sleep as soon as they are idle.
        cfg.workers = if fast { 2 } else { 1 };
        if !fast {
            cfg.poll = Duration::ZERO;
        }
        let dp = Dataplane::start(&cfg).unwrap();
        // The data plane opens its TAP in the host's namespace, with its own offloads.
        dp.add_network(vni42(), "ovtap42", MTU, table).unwrap();
        dp
    })
    .unwrap();
    tb.exec(
        &h.ns,
        &["ip", "link", "set", "ovtap42", "master", "br0", "up"],
    )
    .unwrap();
    dp
}

/// The table of a host whose peers are `remote` (container, host) pairs.
fn table_for(local: &[&Container], remote: &[(&Container, &Host)]) -> NetworkTable {
    let mut t = NetworkTable::new();
    for c in local {
        t.local_macs.insert(mac(c));
        t.arp.insert(c.ip, mac(c));
        t.nd.insert(mac(c).ipv6_link_local(), mac(c));
    }
    let mut flood = HashSet::new();
    for (c, h) in remote {
        t.macs.insert(mac(c), vtep(h));
        t.arp.insert(c.ip, mac(c));
        t.nd.insert(mac(c).ipv6_link_local(), mac(c));
        flood.insert(vtep(h));
    }
    t.flood = flood
        .into_iter()
        .map(|addr| FloodEntry { addr, learn: false })
        .collect();
    t
}

/// A kernel vxlan device for VNI 42 on host `h`, bridged to `br0`, with static FDB entries.
fn start_kernel_vxlan(tb: &mut Testbed, h: &Host, remote: &[(&Container, &Host)]) {
    let macs: Vec<(&str, Ipv4Addr)> = remote
        .iter()
        .map(|(c, ph)| (c.mac.as_str(), ph.underlay_ip))
        .collect();
    let mut flood: Vec<Ipv4Addr> = remote.iter().map(|(_, ph)| ph.underlay_ip).collect();
    flood.sort();
    flood.dedup();
    tb.add_kernel_vxlan(h, "br0", 42, MTU, &macs, &flood)
        .unwrap();
}

fn assert_ping(tb: &Testbed, from: &Container, to: Ipv4Addr) {
    let stats = ping(tb, &from.ns, &to.to_string(), 5).unwrap();
    assert_eq!(
        stats.received, stats.transmitted,
        "ping {} -> {to} lost replies: {stats:?}",
        from.ip
    );
}

/// Datagrams in a UDP burst, and how many leave back to back before a short pause.
const BURST: u32 = 4000;
const BURST_GROUP: u32 = 32;

/// Bursts tried before a loss counts: on a loaded 2-core machine the kernel itself may drop a
/// burst's datagrams (a softirq backlog full while the CPUs are busy elsewhere), where no data
/// plane is involved. A data plane that loses datagrams loses them in every burst.
const BURST_ATTEMPTS: usize = 3;

/// Sends paced bursts of small UDP datagrams from `from` to `to` until one arrives whole,
/// every datagram intact (the test bed checks the bytes), at most [`BURST_ATTEMPTS`].
fn assert_udp_burst(tb: &Testbed, from: &Container, to: &Container, size: usize) {
    let drops = |ns: &str| {
        tb.exec(ns, &["nstat", "-az", "UdpRcvbufErrors", "UdpInErrors"])
            .unwrap_or_default()
    };
    let mut lossy = Vec::new();
    while lossy.len() < BURST_ATTEMPTS {
        let b = udp_burst_verified(
            tb,
            &to.ns,
            &to.ip.to_string(),
            &from.ns,
            BURST,
            size,
            BURST_GROUP,
        )
        .unwrap();
        eprintln!("UDP {} -> {}: {b:?}", from.ip, to.ip);
        if b.received == b.sent {
            return;
        }
        lossy.push(b);
    }
    panic!(
        "UDP {} -> {} lost datagrams in each of {BURST_ATTEMPTS} bursts: {lossy:?}; receiver: {}",
        from.ip,
        to.ip,
        drops(&to.ns)
    );
}

fn two_ovnet_hosts(mode: Mode) {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h2, c2) = host_with_container(&mut tb, 2, "10.0.0.3");
    let dp1 = start_ovnet(&tb, &h1, &table_for(&[&c1], &[(&c2, &h2)]), mode);
    let dp2 = start_ovnet(&tb, &h2, &table_for(&[&c2], &[(&c1, &h1)]), mode);

    assert_ping(&tb, &c1, c2.ip);
    assert_ping(&tb, &c2, c1.ip);
    // ARP went no further than the local data plane: answered from the table.
    assert!(dp1.counters(vni42()).unwrap().arp_replies >= 1);
    assert!(dp2.counters(vni42()).unwrap().arp_replies >= 1);

    tcp_transfer_verified(&tb, &c2.ns, &c2.ip.to_string(), &c1.ns, TRANSFER).unwrap();
    tcp_transfer_verified(&tb, &c1.ns, &c1.ip.to_string(), &c2.ns, TRANSFER).unwrap();

    // Small datagrams both ways: with offloads they leave in GSO trains and are written to
    // the receiving TAP as UDP super-frames, which the container's kernel splits again.
    let before = dp2.counters(vni42()).unwrap().coalesced;
    assert_udp_burst(&tb, &c1, &c2, 64);
    assert_udp_burst(&tb, &c2, &c1, 1000);
    // Trains leave in one UDP GSO send, or without offloads in one sendmmsg.
    let c1 = dp1.counters(vni42()).unwrap();
    eprintln!("trains of small frames sent: {}", c1.trains);
    assert!(c1.trains > 0, "small frames never left together: {c1:?}");
    let offloads = matches!(mode, Mode::Offloads | Mode::SegmentHere);
    if offloads {
        let c2 = dp2.counters(vni42()).unwrap();
        assert!(c2.coalesced > before, "UDP was never coalesced: {c2:?}");
    }

    for dp in [&dp1, &dp2] {
        let c = dp.counters(vni42()).unwrap();
        eprintln!("{c:?}");
        assert!(c.tx_bytes > TRANSFER as u64, "{c:?}");
        assert!(c.rx_bytes > TRANSFER as u64, "{c:?}");
        assert_eq!(c.total_dropped(), 0, "{c:?}");
        assert_eq!(dp.tunnel_gso(), mode == Mode::Offloads);
        if mode == Mode::Offloads {
            // Super-frames left whole through the uplink and arrived whole: the kernel
            // segmented nothing over the veth underlay, and neither did the data plane.
            assert!(c.tunnel_frames > 0, "no super-frame left whole: {c:?}");
            assert!(c.super_frames_in > 0, "no super-frame arrived whole: {c:?}");
        } else {
            assert_eq!(c.tunnel_frames, 0, "{c:?}");
        }
        if offloads {
            assert!(c.super_frames > 0, "the TSO path was not used: {c:?}");
        }
        if mode == Mode::SegmentHere {
            assert!(
                c.coalesced > 0,
                "received segments were never coalesced: {c:?}"
            );
        }
    }
}

#[test]
fn two_ovnet_hosts_ping_and_transfer_50mb_with_offloads() {
    two_ovnet_hosts(Mode::Offloads);
}

#[test]
fn two_ovnet_hosts_ping_and_transfer_50mb_without_offloads() {
    two_ovnet_hosts(Mode::Plain);
}

#[test]
fn two_ovnet_hosts_segmenting_super_frames_in_userspace() {
    two_ovnet_hosts(Mode::SegmentHere);
}

/// A host that does not forward what is written to the uplink (here: forwarding turned off on
/// it; in the field, a firewall's FORWARD chain) loses the first super-frames, then the data
/// plane notices and segments them itself: the transfer completes byte for byte.
#[test]
fn a_host_that_stops_forwarding_the_uplink_turns_tunnel_gso_off() {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h2, c2) = host_with_container(&mut tb, 2, "10.0.0.3");
    let dp1 = start_ovnet(&tb, &h1, &table_for(&[&c1], &[(&c2, &h2)]), Mode::Offloads);
    let dp2 = start_ovnet(&tb, &h2, &table_for(&[&c2], &[(&c1, &h1)]), Mode::Offloads);
    assert!(dp1.tunnel_gso());
    tb.exec(
        &h1.ns,
        &["sysctl", "-qw", "net.ipv4.conf.ovu4789.forwarding=0"],
    )
    .unwrap();
    tcp_transfer_verified(&tb, &c2.ns, &c2.ip.to_string(), &c1.ns, TRANSFER).unwrap();
    let c = dp1.counters(vni42()).unwrap();
    eprintln!("{c:?}");
    assert!(!dp1.tunnel_gso(), "tunnel GSO still on: {c:?}");
    assert!(dp2.tunnel_gso());
    assert!(c.tunnel_frames > 0, "{c:?}");
    assert!(
        c.super_frames > c.tunnel_frames,
        "nothing was segmented after: {c:?}"
    );
}

fn interop(mode: Mode, peer_offloads: bool) {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h2, c2) = host_with_container(&mut tb, 2, "10.0.0.3");
    let dp1 = start_ovnet(&tb, &h1, &table_for(&[&c1], &[(&c2, &h2)]), mode);
    start_kernel_vxlan(&mut tb, &h2, &[(&c1, &h1)]);
    if !peer_offloads {
        // The kernel peer computes every checksum and segments in software before encap.
        for (ns, dev) in [(&h2.ns, "vx42"), (&h2.ns, "eth0"), (&c2.ns, "eth0")] {
            tb.exec(
                ns,
                &[
                    "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
                ],
            )
            .unwrap();
        }
    }

    assert_ping(&tb, &c1, c2.ip);
    assert_ping(&tb, &c2, c1.ip);
    tcp_transfer_verified(&tb, &c2.ns, &c2.ip.to_string(), &c1.ns, TRANSFER).unwrap();
    assert_udp_burst(&tb, &c1, &c2, 64);
    assert_udp_burst(&tb, &c2, &c1, 64);
    let r = tcp_transfer_verified(&tb, &c1.ns, &c1.ip.to_string(), &c2.ns, TRANSFER);
    let c = dp1.counters(vni42()).unwrap();
    r.unwrap_or_else(|e| panic!("{e}: {c:?} {:?}", dp1.global_counters()));
    assert!(c.rx_bytes > TRANSFER as u64, "{c:?}");
    assert_eq!(c.total_dropped(), 0, "{c:?}");
    // The kernel peer took our super-frames whole, as it takes its own kind's.
    assert_eq!(c.tunnel_frames > 0, mode == Mode::Offloads, "{c:?}");
    // Over a veth underlay the kernel's small TCP segments arrive with their checksum left
    // partial (CHECKSUM_PARTIAL crosses veth), and its TSO packets unsegmented; the data plane
    // finished the first and passed the second on whole (split them, without offloads).
    eprintln!(
        "inner checksums finished on receive: {}, super-frames passed on: {}, split: {}",
        c.csum_completed, c.super_frames_in, c.segmented
    );
    if peer_offloads {
        if mode == Mode::Offloads {
            // (A super-frame that carries the FIN is still split.)
            assert!(
                c.super_frames_in > 0,
                "no super-frame passed on whole: {c:?}"
            );
        } else {
            assert!(c.segmented > 0, "no super-frame split: {c:?}");
        }
    } else {
        assert_eq!(c.super_frames_in + c.segmented, 0, "{c:?}");
    }
}

#[test]
fn interop_with_the_kernel_vxlan_both_ways() {
    interop(Mode::Offloads, true);
}

#[test]
fn interop_with_a_kernel_peer_without_offloads() {
    interop(Mode::Offloads, false);
}

#[test]
fn interop_without_offloads_on_our_side() {
    interop(Mode::Plain, true);
}

#[test]
fn without_udp_gso_super_frames_and_trains_leave_in_sendmmsg_batches() {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h2, c2) = host_with_container(&mut tb, 2, "10.0.0.3");
    let dp1 = start_ovnet(&tb, &h1, &table_for(&[&c1], &[(&c2, &h2)]), Mode::NoGso);
    let dp2 = start_ovnet(&tb, &h2, &table_for(&[&c2], &[(&c1, &h1)]), Mode::Offloads);

    assert_ping(&tb, &c1, c2.ip);
    tcp_transfer_verified(&tb, &c2.ns, &c2.ip.to_string(), &c1.ns, TRANSFER).unwrap();
    tcp_transfer_verified(&tb, &c1.ns, &c1.ip.to_string(), &c2.ns, TRANSFER).unwrap();
    assert_udp_burst(&tb, &c1, &c2, 64);
    assert_udp_burst(&tb, &c2, &c1, 64);

    assert!(!dp1.udp_gso() && dp2.udp_gso());
    let c = dp1.counters(vni42()).unwrap();
    // TSO super-frames were still read whole and segmented, and left with small frames' trains
    // in sendmmsg batches. (The peer receives those datagrams one by one: a veth does no GRO
    // of its own, so there is nothing to coalesce.)
    assert!(c.super_frames > 0 && c.trains > 0, "{c:?}");
    assert_eq!(c.total_dropped(), 0, "{c:?}");
    let c2 = dp2.counters(vni42()).unwrap();
    assert_eq!(c2.total_dropped(), 0, "{c2:?}");
}

#[test]
fn an_unknown_vtep_cannot_reach_ovnet_containers() {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h3, c3) = host_with_container(&mut tb, 3, "10.0.0.4");
    // Host 1 knows no peers at all; host 3 (kernel vxlan) points at host 1 anyway.
    let dp1 = start_ovnet(&tb, &h1, &table_for(&[&c1], &[]), Mode::Offloads);
    start_kernel_vxlan(&mut tb, &h3, &[(&c1, &h1)]);
    let stats = ping(&tb, &c3.ns, &c1.ip.to_string(), 3).unwrap();
    assert_eq!(stats.received, 0, "{stats:?}");
    // How many of the kernel's ARP requests went out in the pings' three seconds depends on
    // the machine's load; each one that reached host 1 is refused and counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let c = loop {
        let c = dp1.counters(vni42()).unwrap();
        if c.dropped(DropReason::UnknownVtep) >= 1 || std::time::Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(c.dropped(DropReason::UnknownVtep) >= 1, "{c:?}");
    assert_eq!(c.rx_packets, 0, "{c:?}");
}

/// The state of `offload` in `dp`'s report.
fn offload_state(dp: &Dataplane, offload: Offload) -> OffloadState {
    dp.report()
        .offloads
        .into_iter()
        .find_map(|(o, s)| (o == offload).then_some(s))
        .unwrap()
}

/// The kernel starts refusing host 1's UDP GSO sends while it runs (as it does for a route
/// through IPsec, or a socket without checksums, which is how it is made to here): the data
/// plane turns UDP GSO off, says why, and every byte still arrives.
#[test]
fn a_kernel_refusing_udp_gso_at_run_time_costs_no_byte() {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h2, c2) = host_with_container(&mut tb, 2, "10.0.0.3");
    let dp1 = start_ovnet(
        &tb,
        &h1,
        &table_for(&[&c1], &[(&c2, &h2)]),
        Mode::SegmentHere,
    );
    let dp2 = start_ovnet(
        &tb,
        &h2,
        &table_for(&[&c2], &[(&c1, &h1)]),
        Mode::SegmentHere,
    );
    assert_eq!(offload_state(&dp1, Offload::UdpGso), OffloadState::On);
    let changed = netns::with(&h1.ns, || refuse_udp_gso(h1.underlay_ip.into()))
        .unwrap()
        .unwrap();
    assert!(changed >= 1, "no socket of host 1 found");

    // Host 1 sends super-frames, segmented into GSO trains: the first is refused.
    tcp_transfer_verified(&tb, &c2.ns, &c2.ip.to_string(), &c1.ns, TRANSFER).unwrap();
    assert_udp_burst(&tb, &c1, &c2, 64);
    tcp_transfer_verified(&tb, &c1.ns, &c1.ip.to_string(), &c2.ns, TRANSFER).unwrap();
    match offload_state(&dp1, Offload::UdpGso) {
        OffloadState::TurnedOff { reason, .. } => {
            assert!(reason.contains("os error 22"), "{reason}")
        }
        other => panic!("UDP GSO is {other:?} after the kernel refused it"),
    }
    assert!(!dp1.udp_gso() && dp2.udp_gso());
    let c = dp1.counters(vni42()).unwrap();
    eprintln!("{c:?}");
    assert!(c.super_frames > 0 && c.tx_bytes > TRANSFER as u64, "{c:?}");
    assert_eq!(c.total_dropped(), 0, "{c:?}");
    assert_eq!(dp2.counters(vni42()).unwrap().total_dropped(), 0);
}

/// The kernel starts refusing the super-frames host 1 writes to its uplink, with `EINVAL` as
/// it refuses a tunnel-GSO frame it cannot take (here because the uplink's virtio header size
/// was changed under the data plane, through another queue of the same TAP): the data plane
/// turns tunnel GSO off, says why, segments super-frames itself, and every byte still arrives.
#[test]
fn a_kernel_refusing_tunnel_gso_frames_at_run_time_costs_no_byte() {
    let mut tb = Testbed::new().unwrap();
    let (h1, c1) = host_with_container(&mut tb, 1, "10.0.0.2");
    let (h2, c2) = host_with_container(&mut tb, 2, "10.0.0.3");
    let dp1 = start_ovnet(&tb, &h1, &table_for(&[&c1], &[(&c2, &h2)]), Mode::Offloads);
    let dp2 = start_ovnet(&tb, &h2, &table_for(&[&c2], &[(&c1, &h1)]), Mode::Offloads);
    if !dp1.tunnel_gso() {
        return ovnet_testbed::skip(format!(
            "no UDP tunnel GSO on Linux {} ({:?}; 6.17+)",
            ovnet_testbed::kernel_release(),
            offload_state(&dp1, Offload::TunnelGso)
        ));
    }
    // The uplink of a data plane with two workers: two queues, the 24-byte tunnel header.
    let uplink = TapConfig {
        vnet_hdr: true,
        tunnel_hdr: true,
        multi_queue: true,
        ..TapConfig::new("ovu4789")
    };
    netns::with(&h1.ns, || refuse_tap_writes(&uplink))
        .unwrap()
        .unwrap();
    tcp_transfer_verified(&tb, &c2.ns, &c2.ip.to_string(), &c1.ns, TRANSFER).unwrap();
    match offload_state(&dp1, Offload::TunnelGso) {
        OffloadState::TurnedOff { reason, .. } => {
            assert!(reason.contains("refused"), "{reason}")
        }
        other => panic!("tunnel GSO is {other:?} after the kernel refused a frame"),
    }
    assert!(!dp1.tunnel_gso() && dp2.tunnel_gso());
    let c = dp1.counters(vni42()).unwrap();
    eprintln!("{c:?}");
    assert!(c.super_frames > 0, "{c:?}");
    assert_eq!(c.tunnel_frames, 0, "no frame got through: {c:?}");
    assert_eq!(c.total_dropped(), 0, "{c:?}");
}
