//! The loopback pair's path-MTU cases: a peer whose path carries less than the network's MTU,
//! frames refused and answered with ICMP "too big" (IPv4 with DF, IPv6), sent for the host to
//! fragment (IPv4 without DF), answers rate-limited per network, and a route narrower than a
//! UDP GSO segment.

use super::*;

/// `frame` (Ethernet + IPv4) with the IPv4 flags set to `flags` (0x4000: DF) and its header
/// checksum fixed.
fn with_ip_flags(mut frame: Vec<u8>, flags: u16) -> Vec<u8> {
    frame[20..22].copy_from_slice(&flags.to_be_bytes());
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = ovnet_wire::checksum::checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
    frame
}

/// A UDP frame from `src` to `dst` whose IP packet is `ip_len` bytes, with DF or without.
fn sized_udp(
    src: (MacAddr, Ipv4Addr),
    dst: (MacAddr, Ipv4Addr),
    ip_len: usize,
    df: bool,
) -> Vec<u8> {
    let f = udp_frame(src.0, dst.0, src.1, dst.1, &vec![0x6b; ip_len - 28]);
    with_ip_flags(f, if df { 0x4000 } else { 0 })
}

/// Checks that `answer` is an ICMP "fragmentation needed" to (`to_mac`, `to_ip`) from
/// (`from_mac`, `from_ip`) carrying `mtu`, quoting the refused packet's header.
fn assert_frag_needed(
    answer: &[u8],
    to: (MacAddr, Ipv4Addr),
    from: (MacAddr, Ipv4Addr),
    mtu: u16,
    refused: &[u8],
) {
    let p = etherparse::SlicedPacket::from_ethernet(answer).expect("an Ethernet frame");
    let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link else {
        panic!("not Ethernet II: {answer:02x?}")
    };
    assert_eq!((eth.destination(), eth.source()), (to.0 .0, from.0 .0));
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {answer:02x?}")
    };
    assert_eq!(
        (ip.header().source_addr(), ip.header().destination_addr()),
        (from.1, to.1)
    );
    let Some(etherparse::TransportSlice::Icmpv4(icmp)) = &p.transport else {
        panic!("not ICMP: {answer:02x?}")
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv4Type::DestinationUnreachable(
            etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu }
        )
    );
    assert_eq!(&icmp.payload()[..20], &refused[14..34], "the quoted header");
}

#[test]
fn frames_too_big_for_their_path_are_answered_with_icmp_or_fragmented() {
    let b = bed();
    // Host 1's path to host 2 carries 1350-byte packets; the network's MTU is 1450.
    let mut t = table(1);
    t.path_mtu.insert(vtep(2).ip(), 1350);
    t.default_path_mtu = 1450;
    // The IPv6 case sends from A's link-local address, which port security must know as A's.
    t.nd.insert(MAC_A.ipv6_link_local(), MAC_A);
    t.nd.insert(MAC_B.ipv6_link_local(), MAC_B);
    // A learning network: a MAC nobody knows may be behind any VTEP, so a frame to one is
    // flooded to all (below).
    t.learning = true;
    b.dp1.update_network(vni(42), &t).unwrap();
    let (a, bb) = ((MAC_A, IP_A), (MAC_B, IP_B));

    // What fits the path goes.
    let fits = sized_udp(a, bb, 1350, true);
    b.h1_42.send(&fits).unwrap();
    expect_frame(&b.h2_42, &fits);

    // IPv4 with DF, one byte over: refused, answered "fragmentation needed, mtu 1350" as if
    // from its destination.
    let over = sized_udp(a, bb, 1351, true);
    b.h1_42.send(&over).unwrap();
    let answer = next_incoming(&b.h1_42, DEADLINE).expect("no answer came back");
    assert_frag_needed(&answer, a, bb, 1350, &over);
    expect_silence(&b.h2_42);

    // To a MAC nobody knows: flooded, and the copy for host 2 refused and answered.
    let nobody = (
        MacAddr([2, 0x42, 10, 0, 0, 99]),
        Ipv4Addr::new(10, 0, 0, 99),
    );
    let flooded = sized_udp(a, nobody, 1450, true);
    b.h1_42.send(&flooded).unwrap();
    let answer = next_incoming(&b.h1_42, DEADLINE).expect("no answer to the flood");
    assert_frag_needed(&answer, a, nobody, 1350, &flooded);

    // IPv6 between link-local addresses: "packet too big", mtu 1350.
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(MAC_A.0, MAC_B.0)
        .ipv6(
            MAC_A.ipv6_link_local().octets(),
            MAC_B.ipv6_link_local().octets(),
            64,
        )
        .udp(5000, 5001)
        .write(&mut v6, &[0x6b; 1400 - 48])
        .unwrap();
    b.h1_42.send(&v6).unwrap();
    let answer = next_incoming(&b.h1_42, DEADLINE)
        .unwrap_or_else(|| panic!("no packet too big: {:?}", b.dp1.counters(vni(42))));
    let p = etherparse::SlicedPacket::from_ethernet(&answer).unwrap();
    let Some(etherparse::TransportSlice::Icmpv6(icmp)) = &p.transport else {
        panic!("not ICMPv6: {answer:02x?}")
    };
    assert_eq!(
        icmp.icmp_type(),
        etherparse::Icmpv6Type::PacketTooBig { mtu: 1350 }
    );
    expect_silence(&b.h2_42);

    // IPv4 without DF: it goes, for the host to fragment the outer datagram.
    let no_df = sized_udp(a, bb, 1450, false);
    b.h1_42.send(&no_df).unwrap();
    expect_frame(&b.h2_42, &no_df);
    expect_silence(&b.h1_42);

    wait_for("every frame counted", || {
        let c = b.dp1.counters(vni(42)).unwrap();
        c.tx_packets == 2 && c.fragmented == 1 && c.too_big_answers == 3
    });
    let c = b.dp1.counters(vni(42)).unwrap();
    assert_eq!(c.dropped(DropReason::TooBig), 3, "{c:?}");
    assert_eq!(c.total_dropped(), 3, "{c:?}");
}

#[test]
fn too_big_answers_are_rate_limited_per_network() {
    let b = bed();
    // Host 2 (whose clock moves only when the test moves it) sends to host 1 over a path of
    // 1350 bytes.
    let mut t = table(2);
    t.path_mtu.insert(vtep(1).ip(), 1350);
    b.dp2.update_network(vni(42), &t).unwrap();
    let over = sized_udp((MAC_B, IP_B), (MAC_A, IP_A), 1400, true);
    for _ in 0..50 {
        b.h2_42.send(&over).unwrap();
    }
    wait_for("50 refusals", || {
        b.dp2.counters(vni(42)).unwrap().dropped(DropReason::TooBig) == 50
    });
    // A burst of 30 answers, then none while the clock stands still.
    let mut answers = 0;
    while next_incoming(&b.h2_42, Duration::from_millis(300)).is_some() {
        answers += 1;
    }
    assert_eq!(answers, 30);
    assert_eq!(b.dp2.counters(vni(42)).unwrap().too_big_answers, 30);
    // 10 ms later, 3 more tokens (300 a second).
    b.clock2.advance(Duration::from_millis(10));
    for _ in 0..5 {
        b.h2_42.send(&over).unwrap();
    }
    wait_for("55 refusals", || {
        b.dp2.counters(vni(42)).unwrap().dropped(DropReason::TooBig) == 55
    });
    let mut more = 0;
    while next_incoming(&b.h2_42, Duration::from_millis(300)).is_some() {
        more += 1;
    }
    assert_eq!(more, 3);
    expect_silence(&b.h1_42);
}

/// The route to a peer narrower than a UDP GSO segment: the kernel answers EMSGSIZE (it does
/// not fragment GSO segments). The train is sent again one datagram at a time, for the host
/// to fragment, and counted as fragmented; neither dropped as a send error nor a reason to
/// turn UDP GSO off.
#[test]
fn a_route_narrower_than_a_gso_segment_sends_the_train_one_by_one() {
    let b = bed();
    // The route to host 2 carries 1400-byte packets, which the tables do not know.
    ip(
        &b,
        &[
            "route",
            "add",
            "local",
            "127.0.0.2/32",
            "dev",
            "lo",
            "mtu",
            "lock",
            "1400",
            "table",
            "local",
        ],
    );
    let deadline = Instant::now() + 3 * DEADLINE;
    let mut sent = 0u64;
    // Bursts of full-size frames, until one has left as a train (the worker read several at
    // once): every frame arrives, in order, each time.
    while b.dp1.counters(vni(42)).unwrap().fragmented == 0 {
        assert!(
            Instant::now() < deadline,
            "no train was sent in 30 s: {:?}",
            b.dp1.counters(vni(42))
        );
        let burst: Vec<Vec<u8>> = (0..20u32)
            .map(|i| {
                let mut payload = vec![0x3cu8; 1450 - 28];
                payload[..4].copy_from_slice(&(sent as u32 + i).to_be_bytes());
                udp_frame(MAC_A, MAC_B, IP_A, IP_B, &payload)
            })
            .collect();
        for f in &burst {
            b.h1_42.send(f).unwrap();
        }
        for (i, want) in burst.iter().enumerate() {
            let got = next_incoming(&b.h2_42, DEADLINE).unwrap_or_else(|| {
                panic!(
                    "frame {i} of a burst did not arrive: {:?}",
                    b.dp1.counters(vni(42))
                )
            });
            assert_eq!(&got, want, "frame {i} differs or is out of order");
        }
        sent += burst.len() as u64;
    }
    wait_for("every frame counted as sent", || {
        b.dp1.counters(vni(42)).unwrap().tx_packets == sent
    });
    let c = b.dp1.counters(vni(42)).unwrap();
    assert_eq!(c.total_dropped(), 0, "{c:?}");
    assert!(c.fragmented >= 2 && c.fragmented <= sent, "{c:?}");
    assert!(b.dp1.udp_gso(), "a narrow route is no refusal of UDP GSO");
    expect_silence(&b.h2_42);
}
