//! Inputs for the micro-benchmarks: Ethernet/IPv4/TCP frames of an exact length with correct
//! checksums (or a checksum left partial, as a sender with offloads leaves it), and a
//! forwarding table of realistic size seen from one host.
//!
//! Sizes are lengths of the inner Ethernet frame (header included, no FCS): what the encap path
//! reads from a TAP and the decap path finds after the VXLAN header.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use ovnet_dataplane::{FloodEntry, MacAddr, NetworkTable};
use ovnet_wire::checksum::{checksum, fold, ones_complement_sum, pseudo_header_v4};
use ovnet_wire::VXLAN_PORT;

/// Ethernet + IPv4 + TCP headers without options.
pub const TCP_HEADERS: usize = 14 + 20 + 20;
/// Longest frame [`tcp_frame`] builds: the IPv4 total length is a `u16`.
pub const MAX_FRAME: usize = 14 + 65_535;
/// IPv4 protocol number of TCP.
const TCP: u8 = 6;
/// The path MTU between 1500-byte underlays: 1500 less VXLAN's 50 bytes.
pub const PATH_MTU: u32 = 1450;

/// One endpoint (container) of the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Its MAC, docker style (`02:42` + the IPv4 address).
    pub mac: MacAddr,
    /// Its IPv4 address.
    pub ip: Ipv4Addr,
}

impl Endpoint {
    /// Endpoint number `i` (0-based): `10.0.x.y` from `10.0.0.2` upward, 250 per /24.
    pub fn nth(i: usize) -> Endpoint {
        let i = u32::try_from(i).expect("fewer than 2^32 endpoints");
        let ip = Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 2) as u8);
        Endpoint {
            mac: MacAddr::from_ipv4_docker(ip),
            ip,
        }
    }
}

/// A frame of exactly `len` bytes: Ethernet II, IPv4 (no options, DF), TCP (ACK|PSH, no
/// options) from `src` port 40000 to `dst` port 5201, with a patterned payload and both
/// checksums correct. `len` is clamped to `TCP_HEADERS..=MAX_FRAME`.
pub fn tcp_frame(src: &Endpoint, dst: &Endpoint, len: usize) -> Vec<u8> {
    let len = len.clamp(TCP_HEADERS, MAX_FRAME);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.mac.0);
    f[6..12].copy_from_slice(&src.mac.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = TCP;
    ip[12..16].copy_from_slice(&src.ip.octets());
    ip[16..20].copy_from_slice(&dst.ip.octets());
    let c = checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
    tcp[8..12].copy_from_slice(&0x0a0b_0c0du32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x18; // ACK | PSH
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    for (i, b) in f[TCP_HEADERS..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let pseudo = pseudo_header_v4(src.ip, dst.ip, TCP, ip_len - 20);
    let c = fold(ones_complement_sum(&f[34..], pseudo));
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

/// Offset of the TCP checksum field in a [`tcp_frame`].
pub const TCP_CSUM_AT: usize = 50;

/// The TCP checksum field of `frame` (a [`tcp_frame`]) as a sender that offloads checksums
/// leaves it (`CHECKSUM_PARTIAL`): the folded pseudo-header sum, not complemented.
pub fn partial_tcp_csum(frame: &[u8]) -> [u8; 2] {
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&frame[26..30]).expect("4 bytes"));
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&frame[30..34]).expect("4 bytes"));
    let tcp_len = (frame.len() - 34) as u16;
    (!fold(pseudo_header_v4(src, dst, TCP, tcp_len))).to_be_bytes()
}

/// A network as host 1 sees it: its own endpoints, many remote ones spread over other VTEPs.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Host 1's table: remote MACs → VTEPs, ARP and ND entries for all, every other VTEP in the
    /// flood list, no learning; the path MTU to every VTEP is [`PATH_MTU`], as the agent
    /// gives it between 1500-byte underlays.
    pub table: NetworkTable,
    /// Host 1's first endpoint.
    pub local: Endpoint,
    /// A remote endpoint in the middle of the table.
    pub remote: Endpoint,
    /// The VTEP that owns `remote`.
    pub remote_vtep: SocketAddr,
}

/// `locals` endpoints on host 1 (VTEP `192.168.50.1`) and `remotes` endpoints spread round
/// robin over `vteps` other hosts (`192.168.50.2` upward). `locals` and `vteps` are at least 1.
pub fn fixture(locals: usize, remotes: usize, vteps: usize) -> Fixture {
    let (locals, vteps) = (locals.max(1), vteps.clamp(1, 250));
    let vtep =
        |j: usize| SocketAddr::new(Ipv4Addr::new(192, 168, 50, 2 + j as u8).into(), VXLAN_PORT);
    let mut t = NetworkTable::new();
    for i in 0..locals {
        let e = Endpoint::nth(i);
        t.local_macs.insert(e.mac);
        t.arp.insert(e.ip, e.mac);
        t.nd.insert(e.mac.ipv6_link_local(), e.mac);
    }
    let mut flood = HashSet::new();
    for i in 0..remotes {
        let e = Endpoint::nth(locals + i);
        let v = vtep(i % vteps);
        t.macs.insert(e.mac, v);
        t.arp.insert(e.ip, e.mac);
        t.nd.insert(e.mac.ipv6_link_local(), e.mac);
        t.path_mtu.insert(v.ip(), PATH_MTU);
        flood.insert(v);
    }
    t.default_path_mtu = PATH_MTU;
    let mut flood: Vec<SocketAddr> = flood.into_iter().collect();
    flood.sort();
    t.flood = flood
        .into_iter()
        .map(|addr| FloodEntry { addr, learn: false })
        .collect();
    let mid = remotes / 2;
    Fixture {
        table: t,
        local: Endpoint::nth(0),
        remote: Endpoint::nth(locals + mid),
        remote_vtep: vtep(mid % vteps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn frames_have_the_exact_length_and_valid_checksums() {
        let (a, b) = (Endpoint::nth(0), Endpoint::nth(1));
        for len in [54, 64, 512, 1450, 1464, 65_536, MAX_FRAME] {
            let f = tcp_frame(&a, &b, len);
            assert_eq!(f.len(), len);
            let p = SlicedPacket::from_ethernet(&f).unwrap();
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                panic!("not IPv4")
            };
            assert_eq!(ip.header().source_addr(), a.ip);
            assert_eq!(ip.header().destination_addr(), b.ip);
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("not TCP")
            };
            let expect = tcp
                .to_header()
                .calc_checksum_ipv4(&h, tcp.payload())
                .unwrap();
            assert_eq!(tcp.checksum(), expect, "len {len}");
            assert_eq!(tcp.payload().len(), len - TCP_HEADERS);
        }
        assert_eq!(tcp_frame(&a, &b, 10).len(), TCP_HEADERS);
        assert_eq!(tcp_frame(&a, &b, 1 << 20).len(), MAX_FRAME);
    }

    #[test]
    fn partial_checksum_is_what_complete_partial_finishes() {
        use ovnet_wire::checksum::{complete_partial, L4Checksum};
        let f = tcp_frame(&Endpoint::nth(0), &Endpoint::nth(1), 512);
        let mut g = f.clone();
        g[TCP_CSUM_AT..TCP_CSUM_AT + 2].copy_from_slice(&partial_tcp_csum(&f));
        assert_eq!(complete_partial(&mut g), L4Checksum::Completed);
        assert_eq!(g, f);
        assert_eq!(complete_partial(&mut g), L4Checksum::Valid);
    }

    #[test]
    fn fixture_sizes_and_remote_owner() {
        let fx = fixture(4, 300, 16);
        assert_eq!(fx.table.local_macs.len(), 4);
        assert_eq!(fx.table.macs.len(), 300);
        assert_eq!(fx.table.arp.len(), 304);
        assert_eq!(fx.table.flood.len(), 16);
        assert_eq!(fx.table.path_mtu.len(), 16);
        assert_eq!(fx.table.macs.get(&fx.remote.mac), Some(&fx.remote_vtep));
        assert!(fx.table.local_macs.contains(&fx.local.mac));
        assert_eq!(Endpoint::nth(0).ip, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(Endpoint::nth(250).ip, Ipv4Addr::new(10, 0, 1, 2));
    }
}
