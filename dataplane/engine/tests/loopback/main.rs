//! Two data planes back to back over loopback UDP (127.0.0.1 and 127.0.0.2, port 4789), each
//! with real TAPs, in a private network namespace of the test's own (nothing to clean up: it
//! disappears with its last descriptor). Frames are injected on one host's TAP with a packet
//! socket and must come out, byte for byte, of the other host's TAP of the same VNI, and only
//! there. The failures the data plane counts are provoked for real: a TAP that is down, a VTEP
//! without a route, a wrong checksum, a kernel that refuses UDP GSO; and learned MACs age on
//! the data plane's own clock, moved forward instead of waited for.

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use ovnet_dataplane::{
    Clock, Dataplane, DataplaneConfig, DropReason, FloodEntry, MacAddr, NetworkTable, Offload,
    OffloadState, Vni,
};
use ovnet_sys::testing::{refuse_udp_gso, Direction, PacketSocket};
use ovnet_sys::{link, netns};
use ovnet_wire::vxlan;

const MAC_A: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);
const MAC_B: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 3]);
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

/// How long anything that should happen may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

fn vtep(i: u8) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(127, 0, 0, i).into(), 4789)
}

fn vni(v: u32) -> Vni {
    Vni::new(v).unwrap()
}

/// The view of host `me` (1 or 2): its endpoint is A on host 1, B on host 2.
fn table(me: u8) -> NetworkTable {
    let (local, remote, peer) = if me == 1 {
        (MAC_A, MAC_B, 2)
    } else {
        (MAC_B, MAC_A, 1)
    };
    let mut t = NetworkTable::new();
    t.macs.insert(remote, vtep(peer));
    t.arp.insert(IP_A, MAC_A);
    t.arp.insert(IP_B, MAC_B);
    t.local_macs = HashSet::from([local]);
    t.flood.push(FloodEntry {
        addr: vtep(peer),
        learn: false,
    });
    t
}

struct Bed {
    dp1: Dataplane,
    dp2: Dataplane,
    /// Host 2's clock, which its learned MACs age by: still until moved.
    clock2: Clock,
    /// Packet sockets on host 1's TAP for VNI 42 and 43, and host 2's.
    h1_42: PacketSocket,
    h1_43: PacketSocket,
    h2_42: PacketSocket,
    h2_43: PacketSocket,
    /// A socket on host 1's VTEP address (a known VTEP) and one on an unknown address.
    known: UdpSocket,
    stranger: UdpSocket,
    /// The bed's network namespace.
    ns: File,
}

impl Bed {
    /// Runs `f` on the calling thread inside the bed's namespace.
    fn inside<R>(&self, f: impl FnOnce() -> R) -> R {
        netns::with(&format!("/proc/self/fd/{}", self.ns.as_raw_fd()), f).unwrap()
    }
}

/// Serves `v` on TAP `name` of `dp`, brings the TAP up and binds a packet socket to it.
fn serve(dp: &Dataplane, v: u32, name: &str, table: &NetworkTable) -> PacketSocket {
    dp.add_network(vni(v), name, 1450, table).unwrap();
    assert_eq!(link::mtu(name).unwrap(), 1450);
    link::set_up(name).unwrap();
    PacketSocket::bind(name).unwrap()
}

fn bed() -> Bed {
    std::thread::spawn(|| {
        netns::unshare().unwrap();
        link::set_up("lo").unwrap();
        // Keep the kernel's own IPv6 chatter (router solicitations, MLD) off the TAPs.
        std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").ok();
        let mut cfg = DataplaneConfig::new(vtep(1));
        cfg.tx_sockets = 4;
        // Plain TAPs: a packet socket sees each frame as it is, none coalesced.
        cfg.tap_offloads = false;
        let dp1 = Dataplane::start(&cfg).unwrap();
        cfg.vtep = vtep(2);
        // Host 2's clock moves only when a test moves it (its MACs age to the millisecond).
        let clock2 = Clock::manual();
        cfg.clock = clock2.clone();
        let dp2 = Dataplane::start(&cfg).unwrap();
        let h1_42 = serve(&dp1, 42, "h1v42", &table(1));
        let h1_43 = serve(&dp1, 43, "h1v43", &table(1));
        let h2_42 = serve(&dp2, 42, "h2v42", &table(2));
        let h2_43 = serve(&dp2, 43, "h2v43", &table(2));
        let known = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.9:0").unwrap();
        Bed {
            dp1,
            dp2,
            clock2,
            h1_42,
            h1_43,
            h2_42,
            h2_43,
            known,
            stranger,
            ns: File::open("/proc/thread-self/ns/net").unwrap(),
        }
    })
    .join()
    .unwrap()
}

fn udp_frame(src: MacAddr, dst: MacAddr, sip: Ipv4Addr, dip: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(sip.octets(), dip.octets(), 64)
        .udp(40000, 5000);
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

fn arp_request(src: MacAddr, sip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&sip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// The next frame the data plane wrote into this TAP (skipping what the kernel sent out of it).
fn next_incoming(sock: &PacketSocket, timeout: Duration) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match sock.recv(&mut buf, left).unwrap() {
            Some((n, Direction::Incoming)) => return Some(buf[..n].to_vec()),
            Some((_, Direction::Outgoing)) => continue,
            None => return None,
        }
    }
}

fn expect_frame(sock: &PacketSocket, want: &[u8]) {
    let got = next_incoming(sock, DEADLINE).expect("no frame arrived in time");
    assert_eq!(got, want, "frame differs");
}

fn expect_silence(sock: &PacketSocket) {
    if let Some(f) = next_incoming(sock, Duration::from_millis(300)) {
        panic!("unexpected frame: {f:02x?}");
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn datagram(v: u32, frame: &[u8]) -> Vec<u8> {
    let mut d = vxlan::header(vni(v)).to_vec();
    d.extend_from_slice(frame);
    d
}

#[test]
fn frames_cross_exactly_and_stay_in_their_vni() {
    let b = bed();
    let f = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"hello over vxlan 42");
    b.h1_42.send(&f).unwrap();
    expect_frame(&b.h2_42, &f);
    expect_silence(&b.h2_43);

    // The same MACs and IPs in VNI 43: delivered to 43's TAP only.
    let g = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"this is vni 43");
    b.h1_43.send(&g).unwrap();
    expect_frame(&b.h2_43, &g);
    expect_silence(&b.h2_42);

    // And back: host 2 to host 1, a maximum-size frame (MTU 1450 + 14).
    let big = udp_frame(MAC_B, MAC_A, IP_B, IP_A, &[0x3c; 1450 - 28]);
    assert_eq!(big.len(), 1464);
    b.h2_42.send(&big).unwrap();
    expect_frame(&b.h1_42, &big);

    // Broadcast floods to the peer.
    let bc = udp_frame(
        MAC_A,
        MacAddr::BROADCAST,
        IP_A,
        Ipv4Addr::BROADCAST,
        b"bcast",
    );
    b.h1_42.send(&bc).unwrap();
    expect_frame(&b.h2_42, &bc);

    // The sender counts after its send returns, which can be after the frame arrived.
    wait_for("two frames counted as sent", || {
        b.dp1.counters(vni(42)).unwrap().tx_packets == 2
    });
    wait_for("one frame counted as received", || {
        b.dp1.counters(vni(42)).unwrap().rx_packets == 1
    });
    let c1 = b.dp1.counters(vni(42)).unwrap();
    assert_eq!(c1.flooded, 1);
    assert_eq!(c1.total_dropped(), 0, "{c1:?}");
    wait_for("one frame counted in VNI 43", || {
        b.dp2.counters(vni(43)).unwrap().rx_packets == 1
    });
    assert_eq!(b.dp2.counters(vni(43)).unwrap().rx_bytes, g.len() as u64);

    // Per peer: host 1 sent three frames to host 2 (42, 43, the broadcast) and heard one
    // from it; no other peer appears and nothing overflowed.
    wait_for("host 1's per-peer counts", || {
        let (peers, _) = b.dp1.peers();
        peers.len() == 1 && peers[0].1.tx_packets == 3 && peers[0].1.rx_packets == 1
    });
    let (peers, overflow) = b.dp1.peers();
    let (addr, p, heard) = peers[0];
    assert_eq!(addr, vtep(2).ip());
    assert_eq!(overflow, 0);
    assert_eq!(p.tx_bytes, (f.len() + g.len() + bc.len()) as u64);
    assert_eq!(p.rx_bytes, big.len() as u64);
    assert!(
        heard.is_some_and(|ago| ago < Duration::from_secs(60)),
        "{heard:?}"
    );
    // Host 2 heard host 1 three times, on a clock that stands still.
    wait_for("host 2's per-peer counts", || {
        let (peers, _) = b.dp2.peers();
        peers.len() == 1 && peers[0].1.rx_packets == 3 && peers[0].1.tx_packets == 1
    });
}

#[test]
fn bursts_of_small_frames_arrive_whole_and_in_order() {
    let b = bed();
    // Runs of equal sizes (which may leave in one GSO train), size changes up and down (which
    // end a train), and a broadcast in the middle (which is flooded on its own). Bursts of
    // 100, so that the receiving packet socket's buffer holds a whole burst.
    let mut sent = Vec::new();
    for burst in 0..3u32 {
        let first = sent.len();
        for i in burst * 100..(burst + 1) * 100 {
            let len = match i % 50 {
                0..=29 => 18,
                30..=39 => 18 + (i as usize % 7),
                40 => 1400,
                _ => 60,
            };
            let mut payload = vec![(i % 251) as u8; len];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            let dst = if i == 150 { MacAddr::BROADCAST } else { MAC_B };
            let f = udp_frame(MAC_A, dst, IP_A, IP_B, &payload);
            b.h1_42.send(&f).unwrap();
            sent.push(f);
        }
        for (i, want) in sent.iter().enumerate().skip(first) {
            let got = next_incoming(&b.h2_42, DEADLINE).unwrap_or_else(|| {
                panic!(
                    "frame {i} of {} did not arrive: sender {:?}, receiver {:?}",
                    sent.len(),
                    b.dp1.counters(vni(42)),
                    b.dp2.counters(vni(42))
                )
            });
            assert_eq!(&got, want, "frame {i} differs or is out of order");
        }
    }
    expect_silence(&b.h2_42);
    wait_for("every frame counted as sent", || {
        b.dp1.counters(vni(42)).unwrap().tx_packets == sent.len() as u64
    });
    let c = b.dp1.counters(vni(42)).unwrap();
    assert_eq!(c.total_dropped(), 0, "{c:?}");
    assert_eq!(c.flooded, 1, "{c:?}");
    // How many left together depends on how far the worker fell behind the writer; the
    // order and the bytes above are what must hold either way.
    eprintln!("{} GSO trains for {} frames", c.trains, sent.len());
}

#[test]
fn arp_is_answered_locally_and_not_flooded() {
    let b = bed();
    let req = arp_request(MAC_A, IP_A, IP_B);
    b.h1_42.send(&req).unwrap();
    let mut want = vec![];
    want.extend_from_slice(&MAC_A.0);
    want.extend_from_slice(&MAC_B.0);
    want.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    want.extend_from_slice(&MAC_B.0);
    want.extend_from_slice(&IP_B.octets());
    want.extend_from_slice(&MAC_A.0);
    want.extend_from_slice(&IP_A.octets());
    expect_frame(&b.h1_42, &want);
    expect_silence(&b.h2_42);
    wait_for("the ARP reply to be counted", || {
        b.dp1.counters(vni(42)).unwrap().arp_replies == 1
    });
    assert_eq!(b.dp1.counters(vni(42)).unwrap().tx_packets, 0);
}

#[test]
fn bad_datagrams_are_counted_and_never_delivered() {
    let b = bed();
    let good = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"payload");
    // From an address that is not a VTEP of the network.
    b.stranger.send_to(&datagram(42, &good), vtep(2)).unwrap();
    // From the known VTEP: truncated, bad flags, unknown VNI, oversized, spoofed sources.
    b.known.send_to(&[0x08, 0, 0], vtep(2)).unwrap();
    let mut flagless = datagram(42, &good);
    flagless[0] = 0;
    b.known.send_to(&flagless, vtep(2)).unwrap();
    b.known.send_to(&datagram(99, &good), vtep(2)).unwrap();
    let huge = udp_frame(MAC_A, MAC_B, IP_A, IP_B, &[0; 3000]);
    b.known.send_to(&datagram(42, &huge), vtep(2)).unwrap();
    let loopback = udp_frame(MAC_B, MAC_B, IP_B, IP_B, b"my own mac");
    b.known.send_to(&datagram(42, &loopback), vtep(2)).unwrap();
    let stolen_ip = udp_frame(MacAddr([2, 0, 0, 0, 0, 9]), MAC_B, IP_B, IP_A, b"not mine");
    b.known.send_to(&datagram(42, &stolen_ip), vtep(2)).unwrap();
    // A good one last: once it arrives, every earlier datagram has been processed.
    b.known.send_to(&datagram(42, &good), vtep(2)).unwrap();
    expect_frame(&b.h2_42, &good);
    expect_silence(&b.h2_42);

    let g = b.dp2.global_counters();
    assert_eq!(g.dropped(DropReason::Truncated), 1, "{g:?}");
    assert_eq!(g.dropped(DropReason::BadFlags), 1, "{g:?}");
    assert_eq!(g.dropped(DropReason::UnknownVni), 1, "{g:?}");
    let c = b.dp2.counters(vni(42)).unwrap();
    assert_eq!(c.dropped(DropReason::UnknownVtep), 1, "{c:?}");
    assert_eq!(c.dropped(DropReason::Oversized), 1, "{c:?}");
    assert_eq!(c.dropped(DropReason::SpoofedSource), 2, "{c:?}");
    wait_for("the good datagram to be counted", || {
        b.dp2.counters(vni(42)).unwrap().rx_packets == 1
    });
}

#[test]
fn tables_change_while_traffic_flows() {
    let b = bed();
    let f = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"before");
    b.h1_42.send(&f).unwrap();
    expect_frame(&b.h2_42, &f);

    // Withdraw host 2 entirely: the frame has nowhere to go.
    let mut empty = table(1);
    empty.macs.clear();
    empty.flood.clear();
    b.dp1.update_network(vni(42), &empty).unwrap();
    b.h1_42.send(&f).unwrap();
    wait_for("a no-route drop", || {
        b.dp1
            .counters(vni(42))
            .unwrap()
            .dropped(DropReason::NoRoute)
            == 1
    });
    expect_silence(&b.h2_42);

    // Put it back: traffic resumes, counters survived the swap.
    b.dp1.update_network(vni(42), &table(1)).unwrap();
    let g = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"after");
    b.h1_42.send(&g).unwrap();
    expect_frame(&b.h2_42, &g);
    wait_for("the counters to survive the swap", || {
        b.dp1.counters(vni(42)).unwrap().tx_packets == 2
    });

    // Removing a network stops it; the other keeps working.
    b.dp2.remove_network(vni(43)).unwrap();
    assert_eq!(b.dp2.networks(), vec![vni(42)]);
    assert!(b.dp2.remove_network(vni(43)).is_err());
    let h = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"43 is gone");
    b.h1_43.send(&h).unwrap();
    wait_for("an unknown-VNI drop", || {
        b.dp2.global_counters().dropped(DropReason::UnknownVni) == 1
    });
    b.h1_42.send(&g).unwrap();
    expect_frame(&b.h2_42, &g);
    b.dp1.shutdown();
}

#[test]
fn learning_from_an_external_vtep() {
    let b = bed();
    // Host 2 treats 127.0.0.9 as an external VTEP whose MACs it learns.
    let mut t = table(2);
    t.flood.push(FloodEntry {
        addr: SocketAddr::new(Ipv4Addr::new(127, 0, 0, 9).into(), 4789),
        learn: true,
    });
    b.dp2.update_network(vni(42), &t).unwrap();
    let far = MacAddr([2, 0xaa, 0, 0, 0, 1]);
    let f = udp_frame(
        far,
        MAC_B,
        Ipv4Addr::new(10, 0, 0, 99),
        IP_B,
        b"from outside",
    );
    b.stranger.send_to(&datagram(42, &f), vtep(2)).unwrap();
    expect_frame(&b.h2_42, &f);
    assert_eq!(
        b.dp2.learned(vni(42)),
        vec![(
            far,
            SocketAddr::new(Ipv4Addr::new(127, 0, 0, 9).into(), 4789)
        )]
    );
    assert_eq!(b.dp2.counters(vni(42)).unwrap().learned, 1);
}

/// Runs `ip ARGS` inside the bed's namespace.
fn ip(b: &Bed, args: &[&str]) {
    let out = b.inside(|| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap()
    });
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

#[test]
fn a_tap_that_is_down_counts_tap_write_errors_until_it_is_up_again() {
    let b = bed();
    // A TAP that is down takes no frames: the kernel answers EIO (tun_get_user()).
    ip(&b, &["link", "set", "h2v42", "down"]);
    let f = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"to a TAP that is down");
    b.h1_42.send(&f).unwrap();
    wait_for("a TAP write error", || {
        b.dp2
            .counters(vni(42))
            .unwrap()
            .dropped(DropReason::TapWriteError)
            == 1
    });
    let c = b.dp2.counters(vni(42)).unwrap();
    assert_eq!((c.rx_packets, c.total_dropped()), (0, 1), "{c:?}");
    // Up again: the next frame is delivered, and nothing else was dropped. (A fresh packet
    // socket: the old one reports the device's going down as ENETDOWN.)
    ip(&b, &["link", "set", "h2v42", "up"]);
    let h2 = b.inside(|| PacketSocket::bind("h2v42").unwrap());
    let g = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"up again");
    b.h1_42.send(&g).unwrap();
    expect_frame(&h2, &g);
    wait_for("the frame to be counted", || {
        b.dp2.counters(vni(42)).unwrap().rx_packets == 1
    });
    assert_eq!(b.dp2.counters(vni(42)).unwrap().total_dropped(), 1);
}

#[test]
fn a_vtep_without_a_route_counts_send_errors() {
    let b = bed();
    // A container behind a VTEP this namespace has no route to (TEST-NET-1): the kernel
    // refuses each send with ENETUNREACH.
    let far = MacAddr([2, 0x42, 10, 0, 0, 9]);
    let mut t = table(1);
    t.macs.insert(far, "192.0.2.1:4789".parse().unwrap());
    b.dp1.update_network(vni(42), &t).unwrap();
    let f = udp_frame(MAC_A, far, IP_A, Ipv4Addr::new(10, 0, 0, 9), b"nowhere");
    b.h1_42.send(&f).unwrap();
    wait_for("a send error", || {
        b.dp1
            .counters(vni(42))
            .unwrap()
            .dropped(DropReason::SendError)
            == 1
    });
    // A burst: whether its frames leave one by one or in trains, every send fails and is
    // counted, and nothing is counted as sent.
    for i in 0..20u8 {
        b.h1_42
            .send(&udp_frame(
                MAC_A,
                far,
                IP_A,
                Ipv4Addr::new(10, 0, 0, 9),
                &[i; 30],
            ))
            .unwrap();
    }
    // The peer still gets what is for it: the data plane carries on.
    let g = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"still flowing");
    b.h1_42.send(&g).unwrap();
    expect_frame(&b.h2_42, &g);
    wait_for("the good frame to be counted", || {
        b.dp1.counters(vni(42)).unwrap().tx_packets == 1
    });
    let c = b.dp1.counters(vni(42)).unwrap();
    let errors = c.dropped(DropReason::SendError);
    assert!((2..=21).contains(&errors), "{c:?}");
    assert_eq!(c.total_dropped(), errors, "{c:?}");
}

/// `frame` with its UDP or TCP checksum made wrong (and not the partial sum a sender leaves to
/// hardware either).
fn with_bad_checksum(mut frame: Vec<u8>, field: usize) -> Vec<u8> {
    frame[field] ^= 0x5a;
    frame[field + 1] ^= 0xa5;
    frame
}

#[test]
fn frames_with_a_wrong_checksum_are_dropped_as_bad_checksum() {
    let b = bed();
    let udp = udp_frame(MAC_A, MAC_B, IP_A, IP_B, b"checksummed payload");
    // Ethernet 14 + IPv4 20: the UDP checksum is at 6, the TCP one at 16.
    let bad_udp = with_bad_checksum(udp.clone(), 14 + 20 + 6);
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2(MAC_A.0, MAC_B.0)
        .ipv4(IP_A.octets(), IP_B.octets(), 64)
        .tcp(40000, 5000, 1, 1000)
        .write(&mut tcp, b"tcp payload")
        .unwrap();
    let bad_tcp = with_bad_checksum(tcp, 14 + 20 + 16);
    b.known.send_to(&datagram(42, &bad_udp), vtep(2)).unwrap();
    b.known.send_to(&datagram(42, &bad_tcp), vtep(2)).unwrap();
    // A good one last: once it arrives, the bad ones have been processed.
    b.known.send_to(&datagram(42, &udp), vtep(2)).unwrap();
    expect_frame(&b.h2_42, &udp);
    expect_silence(&b.h2_42);
    let c = b.dp2.counters(vni(42)).unwrap();
    assert_eq!(c.dropped(DropReason::BadChecksum), 2, "{c:?}");
    assert_eq!(c.total_dropped(), 2, "{c:?}");
}

#[test]
fn learned_macs_age_out_after_300_s_of_the_data_planes_clock() {
    let b = bed();
    // Host 2 learns from an external VTEP at 127.0.0.9:4789 (the default ageing, 300 s).
    let ext = SocketAddr::new(Ipv4Addr::new(127, 0, 0, 9).into(), 4789);
    let peer = b.inside(|| UdpSocket::bind(ext).unwrap());
    peer.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut t = table(2);
    t.flood.push(FloodEntry {
        addr: ext,
        learn: true,
    });
    b.dp2.update_network(vni(42), &t).unwrap();
    let far = MacAddr([2, 0xaa, 0, 0, 0, 1]);
    let far_ip = Ipv4Addr::new(10, 0, 0, 99);
    let from_far = udp_frame(far, MAC_B, far_ip, IP_B, b"from outside");
    peer.send_to(&datagram(42, &from_far), vtep(2)).unwrap();
    expect_frame(&b.h2_42, &from_far);
    assert_eq!(b.dp2.learned(vni(42)), vec![(far, ext)]);
    assert_eq!(b.dp2.report().learned_macs, 1);

    // A frame for it goes to its VTEP alone, even 1 ms before the 300 s are up.
    let to_far = udp_frame(MAC_B, far, IP_B, far_ip, b"to outside");
    let mut buf = [0u8; 2048];
    let mut expect_at_peer = || {
        let (n, _) = peer
            .recv_from(&mut buf)
            .expect("nothing reached the external VTEP");
        assert_eq!(&buf[..n], &datagram(42, &to_far)[..]);
    };
    b.clock2.advance(Duration::from_millis(299_999));
    b.h2_42.send(&to_far).unwrap();
    expect_at_peer();
    assert_eq!(b.dp2.learned(vni(42)), vec![(far, ext)]);
    assert_eq!(b.dp2.counters(vni(42)).unwrap().flooded, 0);

    // At 300 s it is gone: the same frame is unknown unicast, flooded to the VTEPs where an
    // unknown MAC may live (the external one), not to host 1, whose MACs are all in the table.
    b.clock2.advance(Duration::from_millis(1));
    assert_eq!(b.dp2.learned(vni(42)), vec![]);
    b.h2_42.send(&to_far).unwrap();
    expect_at_peer();
    expect_silence(&b.h1_42);
    wait_for("the flood to be counted", || {
        b.dp2.counters(vni(42)).unwrap().flooded == 1
    });
    // And the housekeeping thread sweeps it out of the table (every 10 s of the clock; the
    // last sweep was at 299.999 s at the latest).
    b.clock2.advance(Duration::from_secs(10));
    wait_for("the sweep", || b.dp2.report().learned_macs == 0);
}

#[test]
fn a_kernel_refusing_udp_gso_turns_it_off_and_frames_still_arrive_in_order() {
    let b = bed();
    assert!(b.dp1.udp_gso());
    // From now on the kernel refuses host 1's GSO sends (EINVAL: see refuse_udp_gso).
    let changed = b.inside(|| refuse_udp_gso(vtep(1).ip())).unwrap();
    assert!(changed >= 1, "no socket of host 1 found");
    // Bursts of equal frames, which leave in trains once the worker reads several at a time;
    // the first train is refused, then sent datagram by datagram.
    let deadline = Instant::now() + 3 * DEADLINE;
    let mut sent = 0u64;
    while b.dp1.udp_gso() {
        assert!(
            Instant::now() < deadline,
            "no train was sent in 30 s: {:?}",
            b.dp1.counters(vni(42))
        );
        let burst: Vec<Vec<u8>> = (0..50u32)
            .map(|i| {
                let mut payload = [0x77u8; 40];
                payload[..4].copy_from_slice(&(sent as u32 + i).to_be_bytes());
                udp_frame(MAC_A, MAC_B, IP_A, IP_B, &payload)
            })
            .collect();
        for f in &burst {
            b.h1_42.send(f).unwrap();
        }
        for (i, want) in burst.iter().enumerate() {
            let got = next_incoming(&b.h2_42, DEADLINE)
                .unwrap_or_else(|| panic!("frame {i} of a burst did not arrive"));
            assert_eq!(&got, want, "frame {i} differs or is out of order");
        }
        sent += burst.len() as u64;
    }
    let report = b.dp1.report();
    assert!(!report.udp_gso);
    let (_, state) = report
        .offloads
        .iter()
        .find(|(o, _)| *o == Offload::UdpGso)
        .unwrap();
    match state {
        OffloadState::TurnedOff { reason, .. } => {
            assert!(reason.contains("os error 22"), "{reason}")
        }
        other => panic!("UDP GSO is {other:?}"),
    }
    wait_for("every frame counted as sent", || {
        b.dp1.counters(vni(42)).unwrap().tx_packets == sent
    });
    let c = b.dp1.counters(vni(42)).unwrap();
    assert_eq!(c.total_dropped(), 0, "{c:?}");
    assert!(c.trains > 0, "{c:?}");
    expect_silence(&b.h2_42);
}

/// Path MTU: frames too big for their path, answered or left to be fragmented.
mod pmtu;
