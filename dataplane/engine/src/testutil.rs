//! Frames and tables shared by the engine's unit tests: two hosts, VNI 42, containers
//! 10.0.0.2 (local) and 10.0.0.3 (remote, behind 192.168.50.2).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{Icmpv6Header, Icmpv6Type, PacketBuilder};
use ovnet_wire::{MacAddr, Vni};

use crate::fdb::{FloodEntry, Gateway, NetworkTable};

pub const LOCAL_MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);
pub const REMOTE_MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 3]);
pub const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

pub fn vni() -> Vni {
    Vni::new(42).unwrap()
}

pub fn vtep1() -> SocketAddr {
    "192.168.50.1:4789".parse().unwrap()
}

pub fn vtep2() -> SocketAddr {
    "192.168.50.2:4789".parse().unwrap()
}

/// Host 1's view: local 10.0.0.2, remote 10.0.0.3 behind host 2, which is also the flood list.
pub fn two_host_table() -> NetworkTable {
    let mut t = NetworkTable::new();
    t.macs.insert(REMOTE_MAC, vtep2());
    t.arp.insert(REMOTE_IP, REMOTE_MAC);
    t.arp.insert(LOCAL_IP, LOCAL_MAC);
    t.nd.insert(LOCAL_MAC.ipv6_link_local(), LOCAL_MAC);
    t.local_macs.insert(LOCAL_MAC);
    t.flood.push(FloodEntry {
        addr: vtep2(),
        learn: false,
    });
    t
}

/// The network's gateway, 10.0.0.1, with its MAC derived like an endpoint's.
pub const GATEWAY: Gateway = Gateway {
    ip: Ipv4Addr::new(10, 0, 0, 1),
    mac: MacAddr([2, 0x42, 10, 0, 0, 1]),
};

/// [`two_host_table`] with the gateway, as every host of a network has it.
pub fn two_host_table_with_gateway() -> NetworkTable {
    let mut t = two_host_table();
    t.gateway = Some(GATEWAY);
    t
}

/// An Ethernet/IPv4/UDP frame with `payload` bytes of 0x5a.
pub fn udp_frame(
    src: MacAddr,
    dst: MacAddr,
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    payload: usize,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, dst.0)
        .ipv4(sip.octets(), dip.octets(), 64)
        .udp(40000, 5000);
    let data = vec![0x5a; payload];
    let mut out = Vec::with_capacity(b.size(payload));
    b.write(&mut out, &data).unwrap();
    out
}

/// A broadcast ARP request "who has `target`? tell `sip`".
pub fn arp_request(src: MacAddr, sip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&MacAddr::BROADCAST.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&sip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A neighbour solicitation for `target` from `src_ip`, to the solicited-node multicast group.
pub fn neighbour_solicitation(src: MacAddr, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | t[13] as u16,
        u16::from_be_bytes([t[14], t[15]]),
    );
    let g = group.octets();
    let dst_mac = [0x33, 0x33, g[12], g[13], g[14], g[15]];
    // ICMPv6 body after the 4-byte type/code/checksum: reserved(4) + target(16) + SLLA option(8).
    let mut body = vec![0u8; 4];
    body.extend_from_slice(&t);
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&src.0);
    let icmp = Icmpv6Header::with_checksum(
        Icmpv6Type::Unknown {
            type_u8: 135,
            code_u8: 0,
            bytes5to8: [0; 4],
        },
        src_ip.octets(),
        group.octets(),
        &body[4..],
    )
    .unwrap();
    let b = PacketBuilder::ethernet2(src.0, dst_mac)
        .ipv6(src_ip.octets(), group.octets(), 255)
        .icmpv6(icmp.icmp_type);
    let mut out = Vec::new();
    b.write(&mut out, &body[4..]).unwrap();
    out
}

/// An ICMPv6 router advertisement from `src`'s link-local address to all nodes.
pub fn icmpv6_router_advert(src: MacAddr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src.0, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(
            src.ipv6_link_local().octets(),
            Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets(),
            255,
        )
        .icmpv6(Icmpv6Type::Unknown {
            type_u8: 134,
            code_u8: 0,
            bytes5to8: [64, 0, 0, 0],
        });
    let mut out = Vec::new();
    b.write(&mut out, &[0u8; 8]).unwrap();
    out
}
