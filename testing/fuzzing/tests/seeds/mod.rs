//! Hand-made seed inputs for each fuzz target: well-formed packets of every kind the target
//! understands, laid out as the target reads its input (see each target's doc), so that the
//! fuzzer starts deep instead of discovering Ethernet from nothing.

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Icmpv6Type, PacketBuilder, TcpHeader,
};

const A: [u8; 6] = [2, 0x42, 10, 0, 0, 2];
const B: [u8; 6] = [2, 0x42, 10, 0, 0, 3];
const IP_A: [u8; 4] = [10, 0, 0, 2];
const IP_B: [u8; 4] = [10, 0, 0, 3];

fn ll(mac: [u8; 6]) -> [u8; 16] {
    ovnet_wire::MacAddr(mac).ipv6_link_local().octets()
}

/// A TCP segment B → A (what arrives from host 2), ACK, sequence `seq`, `len` payload bytes.
fn tcp4(seq: u32, len: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(B, A)
        .ipv4(IP_B, IP_A, 64)
        .tcp(40000, 5201, seq, 512)
        .ack(1);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; len]).unwrap();
    out
}

/// The same over IPv6 with a timestamp option.
fn tcp6(seq: u32, len: usize) -> Vec<u8> {
    let mut tcp = TcpHeader::new(40000, 5201, seq, 512);
    tcp.ack = true;
    tcp.acknowledgment_number = 1;
    tcp.set_options(&[etherparse::TcpOptionElement::Timestamp(1, 2)])
        .unwrap();
    let b = PacketBuilder::ethernet2(B, A)
        .ipv6(ll(B), ll(A), 64)
        .tcp_header(tcp);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x6b; len]).unwrap();
    out
}

fn udp4(src: [u8; 6], sip: [u8; 4], dst: [u8; 6], len: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv4(sip, IP_B, 64)
        .udp(40000, 5000);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x11; len]).unwrap();
    out
}

fn arp(src: [u8; 6], sip: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let p = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &src,
        &sip,
        &[0; 6],
        &target,
    )
    .unwrap();
    let mut out = Vec::new();
    PacketBuilder::ethernet2(src, [0xff; 6])
        .arp(p)
        .write(&mut out)
        .unwrap();
    out
}

fn icmp6(src: [u8; 6], ty: Icmpv6Type, body: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, [0x33, 0x33, 0xff, 0, 0, 3])
        .ipv6(
            ll(src),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 3],
            255,
        )
        .icmpv6(ty);
    let mut out = Vec::new();
    b.write(&mut out, body).unwrap();
    out
}

/// A neighbour solicitation from A for B's link-local address, with A's link-layer option.
fn ns() -> Vec<u8> {
    let mut body = ll(B).to_vec();
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&A);
    icmp6(A, Icmpv6Type::NeighborSolicitation, &body)
}

fn na(target: [u8; 16]) -> Vec<u8> {
    icmp6(
        A,
        Icmpv6Type::NeighborAdvertisement(etherparse::icmpv6::NeighborAdvertisementHeader {
            router: false,
            solicited: true,
            r#override: true,
        }),
        &target,
    )
}

fn ra() -> Vec<u8> {
    icmp6(
        A,
        Icmpv6Type::Unknown {
            type_u8: 134,
            code_u8: 0,
            bytes5to8: [64, 0, 0, 0],
        },
        &[0; 8],
    )
}

/// An ICMP echo A → B with DF set, `len` bytes: too big for a small path.
fn ping_df(len: usize) -> Vec<u8> {
    let mut ip =
        etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::ICMP, IP_A, IP_B).unwrap();
    ip.dont_fragment = true;
    let b = PacketBuilder::ethernet2(A, B)
        .ip(etherparse::IpHeaders::Ipv4(ip, Default::default()))
        .icmpv4_echo_request(1, 1);
    let mut out = Vec::new();
    b.write(&mut out, &vec![0; len]).unwrap();
    out
}

fn vlan(frame: &[u8]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0, 0, 7]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// Two-byte length, then the bytes.
fn packet(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

fn vxlan(frame: &[u8]) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    d.extend_from_slice(frame);
    d
}

/// A `virtio_net_hdr`: flags, GSO type, header length, GSO size, checksum start and offset.
fn vnet(flags: u8, gso: u8, hdr_len: u16, gso_size: u16, start: u16, offset: u16) -> Vec<u8> {
    let mut h = vec![flags, gso];
    for v in [hdr_len, gso_size, start, offset] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// A DNS query for `name` of type `qtype`, with or without an EDNS OPT record.
fn dns_query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    if edns {
        q.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    q
}

/// Named inputs of one target.
pub type Seeds = Vec<(&'static str, Vec<u8>)>;

/// Every target's seeds, by name.
pub fn all() -> Vec<(&'static str, Seeds)> {
    let from_host2 = |f: &[u8]| {
        let mut d = vec![0u8, 0];
        d.extend(packet(&vxlan(f)));
        d
    };
    let run: Vec<u8> = {
        let mut d = vec![0u8];
        for i in 0..4 {
            d.extend_from_slice(&[0, 0]);
            d.extend(packet(&vxlan(&tcp4(1000 + i * 1398, 1398))));
        }
        d
    };
    let learning: Vec<u8> = {
        let mut d = vec![1u8];
        for i in 0..6u8 {
            let src = [2, 0, 0, 0, 0, i + 1];
            d.extend_from_slice(&[1, i]);
            d.extend(packet(&vxlan(&udp4(src, [10, 0, 0, 50 + i], A, 20))));
        }
        d
    };
    let decap = vec![
        ("tcp-run", run),
        ("learning", learning),
        ("super-frame", from_host2(&tcp4(7, 20_000))),
        ("arp", from_host2(&arp(B, IP_B, IP_A))),
        ("tcp6", from_host2(&tcp6(9, 600))),
        ("vlan", from_host2(&vlan(&udp4(B, IP_B, A, 30)))),
    ];
    let tap = vec![
        (
            "udp",
            [vec![0], vnet(0, 0, 0, 0, 0, 0), udp4(A, IP_A, B, 64)].concat(),
        ),
        (
            "partial-csum",
            [vec![0], vnet(1, 0, 0, 0, 34, 6), udp4(A, IP_A, B, 64)].concat(),
        ),
        (
            "tso",
            [vec![0], vnet(1, 1, 54, 1398, 34, 16), swap(tcp4(1, 20_000))].concat(),
        ),
        (
            "tso6",
            [vec![1], vnet(1, 4, 86, 1378, 54, 16), swap(tcp6(1, 8_000))].concat(),
        ),
        (
            "arp",
            [vec![0], vnet(0, 0, 0, 0, 0, 0), arp(A, IP_A, IP_B)].concat(),
        ),
        ("ns", [vec![0], vnet(0, 0, 0, 0, 0, 0), ns()].concat()),
        ("ra", [vec![0], vnet(0, 0, 0, 0, 0, 0), ra()].concat()),
        (
            "broadcast",
            [
                vec![0],
                vnet(0, 0, 0, 0, 0, 0),
                udp4(A, IP_A, [0xff; 6], 40),
            ]
            .concat(),
        ),
    ];
    let gso = vec![
        ("v4-1450", [vec![0x05, 0xaa, 0], tcp4(1, 20_000)].concat()),
        ("v4-mss", [vec![0x05, 0x76, 1], tcp4(1, 9_000)].concat()),
        ("v6", [vec![0x05, 0x00, 1], tcp6(5, 5_000)].concat()),
        (
            "vlan",
            [vec![0x02, 0x40, 0], vlan(&tcp4(3, 3_000))].concat(),
        ),
        ("fits", [vec![0x05, 0xaa, 0], tcp4(1, 100)].concat()),
    ];
    let segments = |make: fn(u32, usize) -> Vec<u8>, size: usize, n: u32| {
        let mut d = vec![0u8];
        for i in 0..n {
            d.extend(packet(&make(i * size as u32, size)));
        }
        d
    };
    let udp_run = {
        let mut d = vec![1u8];
        for i in 0..3u16 {
            let mut f = udp4(B, IP_B, A, 500);
            f[18..20].copy_from_slice(&(100 + i).to_be_bytes());
            let h = etherparse::Ipv4Header::from_slice(&f[14..]).unwrap().0;
            f[24..26].copy_from_slice(&h.calc_header_checksum().to_be_bytes());
            d.extend(packet(&f));
        }
        d
    };
    let gro = vec![
        ("tcp4", segments(tcp4, 1398, 5)),
        ("tcp6", segments(tcp6, 1000, 4)),
        (
            "short-last",
            [segments(tcp4, 1398, 3), packet(&tcp4(3 * 1398, 100))].concat(),
        ),
        ("udp", udp_run),
        (
            "mixed",
            [
                packet(&tcp4(0, 100)),
                packet(&arp(A, IP_A, IP_B)),
                packet(&tcp4(100, 100)),
            ]
            .concat(),
        ),
    ];
    let tunnel = vec![
        ("v4", [vec![0x05, 0x76, 0], tcp4(1, 20_000)].concat()),
        ("ecn", [vec![0x05, 0x76, 1], tcp4(1, 60_000)].concat()),
        ("small-mss", [vec![0x02, 0x18, 0], tcp4(1, 4_000)].concat()),
        ("v6", [vec![0x05, 0x00, 0], tcp6(1, 4_000)].concat()),
        (
            "vlan",
            [vec![0x05, 0x76, 0], vlan(&tcp4(1, 4_000))].concat(),
        ),
    ];
    let arp_nd = vec![
        ("arp", [vec![0x05, 0xaa], arp(A, IP_A, IP_B)].concat()),
        (
            "gratuitous",
            [vec![0x05, 0xaa], arp(A, IP_A, IP_A)].concat(),
        ),
        ("ns", [vec![0x05, 0xaa], ns()].concat()),
        ("na", [vec![0x05, 0xaa], na(ll(A))].concat()),
        ("forged-na", [vec![0x05, 0xaa], na(ll(B))].concat()),
        ("ra", [vec![0x05, 0xaa], ra()].concat()),
        ("ping-df", [vec![0x02, 0x40], ping_df(1400)].concat()),
        ("tcp6-too-big", [vec![0x05, 0x00], tcp6(1, 1400)].concat()),
        (
            "vlan-arp",
            [vec![0x05, 0xaa], vlan(&arp(A, IP_A, IP_B))].concat(),
        ),
    ];
    let dns = vec![
        (
            "a",
            [vec![0], packet(&dns_query("web.demo", 1, false))].concat(),
        ),
        (
            "edns-tcp",
            [vec![1], packet(&dns_query("db.demo", 1, true))].concat(),
        ),
        (
            "ptr",
            [
                vec![0],
                packet(&dns_query("2.0.0.10.in-addr.arpa", 12, false)),
            ]
            .concat(),
        ),
        (
            "forward",
            [
                vec![0],
                packet(&dns_query("example.com", 1, true)),
                dns_reply(),
            ]
            .concat(),
        ),
        (
            "other-network",
            [vec![0], packet(&dns_query("x.other", 28, false))].concat(),
        ),
        (
            "axfr",
            [vec![1], packet(&dns_query("demo", 252, false))].concat(),
        ),
    ];
    vec![
        ("decap", decap),
        ("tap", tap),
        ("gso", gso),
        ("gro", gro),
        ("tunnel", tunnel),
        ("arp_nd", arp_nd),
        ("dns", dns),
    ]
}

/// `frame` sent A → B instead of B → A (what a local container sends).
fn swap(mut frame: Vec<u8>) -> Vec<u8> {
    let (dst, src) = (frame[0..6].to_vec(), frame[6..12].to_vec());
    frame[0..6].copy_from_slice(&src);
    frame[6..12].copy_from_slice(&dst);
    frame
}

/// An upstream's reply to the `forward` seed's query (id as the target makes it).
fn dns_reply() -> Vec<u8> {
    let mut r = dns_query("example.com", 1, false);
    r[0] = 0;
    r[1] = 7;
    r[2] = 0x81;
    r[3] = 0x80;
    r[7] = 1;
    r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 93, 184, 216, 34]);
    r
}
