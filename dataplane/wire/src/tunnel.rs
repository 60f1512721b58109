//! A whole VXLAN super-frame for the kernel to segment: UDP tunnel GSO (Linux 6.17+).
//!
//! Instead of cutting a TCP super-frame into MTU-sized segments in software, a VTEP can hand
//! the kernel the encapsulated frame whole: outer Ethernet + IPv4 + UDP + VXLAN headers, the
//! inner frame's headers, and its 64 KB of payload, prefixed with a
//! `struct virtio_net_hdr_v1_hash_tunnel` (`include/uapi/linux/virtio_net.h`) that says "TCP
//! segmentation inside a UDPv4 tunnel". Written to a TAP, the kernel routes it to the
//! underlay as one packet; it is segmented (and its inner checksums computed) only where the
//! underlay device cannot carry it whole. A veth carries it whole, as it carries the kernel
//! vxlan's own tunnel-GSO packets, and the peer's UDP socket receives it as one datagram.
//!
//! The header layout: the 10-byte `virtio_net_hdr`, `num_buffers` (2 bytes), the hash report
//! (8 bytes, zero here), then the offsets of the outer transport header and of the inner
//! network header, little-endian, both from the start of the outer Ethernet header.

use core::net::Ipv4Addr;

use crate::checksum::{fold, ones_complement_sum};
use crate::gro::rebuild_headers;
use crate::gso::{self, TcpFrame};
use crate::virtio::{self, VnetHdr};
use crate::{vxlan, MacAddr, Vni};

/// Length of `struct virtio_net_hdr_v1_hash_tunnel`, the `TUNSETVNETHDRSZ` that lets a TAP
/// take tunnel GSO frames.
pub const VNET_TUNNEL_HDR_LEN: usize = 24;

/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4`: the GSO packet is inside a UDP tunnel over IPv4.
pub const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;

/// Outer Ethernet, IPv4 (no options), UDP and VXLAN headers.
pub const OUTER_V4_LEN: usize = 14 + 20 + 8 + vxlan::HEADER_LEN;

/// Room for everything [`super_frame_v4`] writes: the virtio header, the outer headers and
/// the inner frame's headers (Ethernet with one VLAN tag, IP and TCP with options).
pub const HEADER_ROOM: usize = VNET_TUNNEL_HDR_LEN + OUTER_V4_LEN + gso::MAX_HEADERS;

/// Largest inner frame that fits one outer IPv4 packet.
pub const MAX_INNER_V4: usize = 65_535 - (OUTER_V4_LEN - 14);

/// The outer headers of one datagram from a local VTEP to a remote one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterV4 {
    /// Destination MAC: the address of the TAP the frame is written to, so that the host
    /// takes it as addressed to itself and routes it.
    pub dst_mac: MacAddr,
    /// Source MAC (not looked at by the host).
    pub src_mac: MacAddr,
    /// The local VTEP address.
    pub src: Ipv4Addr,
    /// The remote VTEP address.
    pub dst: Ipv4Addr,
    /// The outer UDP source port (per inner flow).
    pub src_port: u16,
    /// The remote VTEP's UDP port (4789).
    pub dst_port: u16,
    /// IPv4 identification of the first segment (the kernel increments it per segment).
    pub id: u16,
    /// Time to live.
    pub ttl: u8,
    /// The network.
    pub vni: Vni,
}

/// Writes into `out` the virtio header, the outer headers and the rebuilt inner headers of
/// the TCP super-frame `frame` (headers located by `t`), to be segmented into `mss`-byte
/// payloads; `ecn` keeps the sender's `VIRTIO_NET_HDR_GSO_ECN`. Returns the bytes written: the
/// frame to send is `out[..n]` followed by `frame[t.payload..t.end]`.
///
/// The inner IP length and checksum and the TCP pseudo-header sum are recomputed here (the
/// kernel fixes them per segment from these), the outer UDP checksum is zero (RFC 7348 for
/// IPv4) and the outer IPv4 header has DF clear, as the kernel vxlan's by default. `None` if
/// the frame is not a TCP super-frame longer than one `mss`, does not fit one outer IPv4
/// packet, or `out` is shorter than its headers need.
pub fn super_frame_v4(
    frame: &[u8],
    t: &TcpFrame,
    mss: u16,
    ecn: bool,
    outer: &OuterV4,
    out: &mut [u8],
) -> Option<usize> {
    let payload = t.end.checked_sub(t.payload)?;
    if mss == 0 || payload <= usize::from(mss) || t.end > MAX_INNER_V4 || frame.len() < t.end {
        return None;
    }
    let inner_at = VNET_TUNNEL_HDR_LEN + OUTER_V4_LEN;
    let total = inner_at + t.payload;
    let out = out.get_mut(..total)?;
    let inner = if t.v4 {
        virtio::GSO_TCPV4
    } else {
        virtio::GSO_TCPV6
    };
    let vh = VnetHdr {
        flags: virtio::F_NEEDS_CSUM,
        gso_type: inner | GSO_UDP_TUNNEL_IPV4 | if ecn { virtio::GSO_ECN } else { 0 },
        hdr_len: (OUTER_V4_LEN + t.payload) as u16,
        gso_size: mss,
        csum_start: (OUTER_V4_LEN + t.l4) as u16,
        csum_offset: 16,
    };
    out[..virtio::HEADER_LEN].copy_from_slice(&vh.to_bytes());
    // num_buffers and the hash report: unused on a TAP write.
    out[virtio::HEADER_LEN..20].fill(0);
    let outer_th = 14 + 20;
    out[20..22].copy_from_slice(&(outer_th as u16).to_le_bytes());
    out[22..24].copy_from_slice(&((OUTER_V4_LEN + t.l3) as u16).to_le_bytes());

    let o = &mut out[VNET_TUNNEL_HDR_LEN..inner_at];
    o[0..6].copy_from_slice(&outer.dst_mac.octets());
    o[6..12].copy_from_slice(&outer.src_mac.octets());
    o[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (OUTER_V4_LEN - 14 + t.end) as u16;
    let ip = &mut o[14..34];
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[4..6].copy_from_slice(&outer.id.to_be_bytes());
    ip[6..8].copy_from_slice(&[0, 0]);
    ip[8] = outer.ttl;
    ip[9] = 17;
    ip[10..12].copy_from_slice(&[0, 0]);
    ip[12..16].copy_from_slice(&outer.src.octets());
    ip[16..20].copy_from_slice(&outer.dst.octets());
    let c = fold(ones_complement_sum(ip, 0));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp = &mut o[34..42];
    udp[0..2].copy_from_slice(&outer.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&outer.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    udp[6..8].copy_from_slice(&[0, 0]);
    o[42..50].copy_from_slice(&vxlan::header(outer.vni));

    let h = &mut out[inner_at..];
    h.copy_from_slice(&frame[..t.payload]);
    rebuild_headers(h, t, false, payload);
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::pseudo_header_v4;
    use crate::gso::tcp_frame;
    use etherparse::PacketBuilder;

    fn outer() -> OuterV4 {
        OuterV4 {
            dst_mac: MacAddr([2, 0, 0, 0, 0, 0xaa]),
            src_mac: MacAddr([2, 0, 0, 0, 0, 0xbb]),
            src: Ipv4Addr::new(192, 168, 7, 1),
            dst: Ipv4Addr::new(192, 168, 7, 2),
            src_port: 40_001,
            dst_port: 4789,
            id: 7,
            ttl: 64,
            vni: Vni::new(42).unwrap(),
        }
    }

    fn super_frame(payload: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..payload).map(|i| (i % 251) as u8).collect();
        let mut f = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 1000, 64000)
            .ack(1)
            .write(&mut f, &data)
            .unwrap();
        f
    }

    #[test]
    fn headers_describe_a_tcp_super_frame_in_a_udp_tunnel() {
        let f = super_frame(20_000);
        let t = tcp_frame(&f).unwrap();
        let mut out = [0u8; HEADER_ROOM];
        let n = super_frame_v4(&f, &t, 1398, false, &outer(), &mut out).unwrap();
        assert_eq!(n, VNET_TUNNEL_HDR_LEN + OUTER_V4_LEN + t.payload);

        let vh = VnetHdr::parse(&out).unwrap();
        assert_eq!(vh.flags, virtio::F_NEEDS_CSUM);
        assert_eq!(vh.gso_type, virtio::GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4);
        assert_eq!(usize::from(vh.hdr_len), OUTER_V4_LEN + t.payload);
        assert_eq!(vh.gso_size, 1398);
        assert_eq!(usize::from(vh.csum_start), OUTER_V4_LEN + t.l4);
        assert_eq!(vh.csum_offset, 16);
        assert_eq!(u16::from_le_bytes([out[20], out[21]]), 34);
        assert_eq!(
            usize::from(u16::from_le_bytes([out[22], out[23]])),
            OUTER_V4_LEN + 14
        );

        // What the kernel will see: one IPv4/UDP/VXLAN packet holding the whole inner frame.
        let mut wire = out[VNET_TUNNEL_HDR_LEN..n].to_vec();
        wire.extend_from_slice(&f[t.payload..t.end]);
        let ip = &wire[14..34];
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            wire.len() - 14
        );
        assert_eq!(fold(ones_complement_sum(ip, 0)), 0, "outer IPv4 checksum");
        assert_eq!(ip[6] & 0x40, 0, "DF clear");
        assert_eq!(&ip[12..16], &[192, 168, 7, 1]);
        let udp = &wire[34..42];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 40_001);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_eq!(
            usize::from(u16::from_be_bytes([udp[4], udp[5]])),
            wire.len() - 34
        );
        assert_eq!(&udp[6..8], &[0, 0]);
        assert_eq!(&wire[42..50], &vxlan::header(Vni::new(42).unwrap()));
        // The inner frame is unchanged but for its TCP checksum field, now a partial sum.
        let mut expected = f.clone();
        expected[t.l4 + 16..t.l4 + 18].copy_from_slice(&wire[50 + t.l4 + 16..50 + t.l4 + 18]);
        assert!(wire[50..] == expected[..], "inner frame changed");
    }

    #[test]
    fn inner_checksum_fields_are_rebuilt_not_trusted() {
        let mut f = super_frame(5000);
        let t = tcp_frame(&f).unwrap();
        // A sender's stale values must not survive.
        f[t.l3 + 10] ^= 0x55;
        f[t.l4 + 16] ^= 0x55;
        let mut out = [0u8; HEADER_ROOM];
        let n = super_frame_v4(&f, &t, 1398, true, &outer(), &mut out).unwrap();
        assert_ne!(out[1] & virtio::GSO_ECN, 0);
        let inner = &out[VNET_TUNNEL_HDR_LEN + OUTER_V4_LEN..n];
        assert_eq!(fold(ones_complement_sum(&inner[t.l3..t.l4], 0)), 0);
        let l4_len = (t.end - t.l4) as u16;
        let pseudo = pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            l4_len,
        );
        let field = u16::from_be_bytes([inner[t.l4 + 16], inner[t.l4 + 17]]);
        assert_eq!(field, !fold(pseudo));
    }

    #[test]
    fn what_does_not_need_segmenting_or_does_not_fit_is_refused() {
        let mut out = [0u8; HEADER_ROOM];
        let small = super_frame(1000);
        let t = tcp_frame(&small).unwrap();
        assert!(super_frame_v4(&small, &t, 1398, false, &outer(), &mut out).is_none());
        assert!(super_frame_v4(&small, &t, 0, false, &outer(), &mut out).is_none());
        let big = super_frame(20_000);
        let t = tcp_frame(&big).unwrap();
        assert!(super_frame_v4(&big, &t, 1398, false, &outer(), &mut out[..60]).is_none());
        // Headers claiming more than the buffer holds.
        assert!(super_frame_v4(&big[..100], &t, 1398, false, &outer(), &mut out).is_none());
        let huge = TcpFrame {
            end: MAX_INNER_V4 + 1,
            ..t
        };
        let long = vec![0u8; MAX_INNER_V4 + 1];
        assert!(super_frame_v4(&long, &huge, 1398, false, &outer(), &mut out).is_none());
    }
}
