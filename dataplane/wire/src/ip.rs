//! The sender IP a frame claims, for the engine's anti-spoofing checks: the IPv4 or IPv6
//! source address, or the ARP sender address; and the ICMPv6 message an IPv6 frame carries,
//! for the port-security checks on router and neighbour advertisements.
//!
//! These functions look through up to two VLAN tags (802.1Q or 802.1ad), so that tagging a
//! frame does not hide its sender. They answer `None` for anything they do not recognise
//! (other ethertypes, more tags, wrong IP version, truncated headers); what to do with such a
//! frame is the caller's policy. They validate no more than they need: no checksums, no
//! lengths beyond the address itself.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::arp;
use crate::ethernet::{ethertype, HEADER_LEN};
use crate::{array, be16};

/// The sender IPv4 address of the Ethernet frame `frame`: the source of an IPv4 packet, or the
/// sender protocol address of an Ethernet/IPv4 ARP packet. `None` for anything else.
pub fn sender_ipv4(frame: &[u8]) -> Option<Ipv4Addr> {
    let (ty, l3) = network_layer(frame)?;
    match ty {
        ethertype::IPV4 => {
            let h: [u8; 20] = array(l3, 0)?;
            (h[0] >> 4 == 4).then(|| Ipv4Addr::new(h[12], h[13], h[14], h[15]))
        }
        ethertype::ARP => arp::Packet::new_checked(l3).ok().map(|p| p.sender_ip()),
        _ => None,
    }
}

/// The sender hardware and protocol addresses of the Ethernet/IPv4 ARP packet in `frame`;
/// `None` for anything else.
pub fn arp_sender(frame: &[u8]) -> Option<(crate::MacAddr, Ipv4Addr)> {
    let (ty, l3) = network_layer(frame)?;
    if ty != ethertype::ARP {
        return None;
    }
    let p = arp::Packet::new_checked(l3).ok()?;
    Some((p.sender_mac(), p.sender_ip()))
}

/// The source address of the IPv6 packet in the Ethernet frame `frame`; `None` for anything
/// else.
pub fn sender_ipv6(frame: &[u8]) -> Option<Ipv6Addr> {
    let (ty, l3) = network_layer(frame)?;
    if ty != ethertype::IPV6 {
        return None;
    }
    let h: [u8; 40] = array(l3, 0)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    array::<16>(&h, 8).map(Ipv6Addr::from)
}

/// IPv6 extension headers [`icmpv6`] looks through (RFC 8200 section 4): hop-by-hop options,
/// routing, fragment and destination options.
mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const DESTINATION: u8 = 60;
    pub const ICMPV6: u8 = 58;
}

/// Most extension headers [`icmpv6`] walks before it gives up.
const MAX_EXTENSION_HEADERS: usize = 8;

/// The ICMPv6 message of the IPv6 packet in the Ethernet frame `frame`, from its type byte to
/// the end of the IPv6 payload (or of the frame, if shorter), looking through VLAN tags and
/// extension headers (at most [`MAX_EXTENSION_HEADERS`]), as RA-Guard must (RFC 7113): an
/// advertisement behind a hop-by-hop header is still an advertisement. A non-first fragment,
/// or a message of less than 4 bytes, is `None`, as is anything that is not IPv6.
pub fn icmpv6(frame: &[u8]) -> Option<&[u8]> {
    let (ty, l3) = network_layer(frame)?;
    if ty != ethertype::IPV6 {
        return None;
    }
    let h: [u8; 40] = array(l3, 0)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let end = l3.len().min(40 + usize::from(be16(&h, 4)?));
    let packet = l3.get(..end)?;
    let (mut next, mut at) = (h[6], 40);
    for _ in 0..=MAX_EXTENSION_HEADERS {
        match next {
            next_header::ICMPV6 => return packet.get(at..).filter(|m| m.len() >= 4),
            next_header::HOP_BY_HOP | next_header::ROUTING | next_header::DESTINATION => {
                let ext: [u8; 2] = array(packet, at)?;
                next = ext[0];
                at = at.checked_add((usize::from(ext[1]) + 1) * 8)?;
            }
            next_header::FRAGMENT => {
                let ext: [u8; 4] = array(packet, at)?;
                // Fragment offset (13 bits) non-zero: the ICMPv6 header is elsewhere.
                if be16(&ext, 2)? & 0xfff8 != 0 {
                    return None;
                }
                next = ext[0];
                at = at.checked_add(8)?;
            }
            _ => return None,
        }
    }
    None
}

/// The ethertype and payload of `frame` after at most two VLAN tags.
fn network_layer(frame: &[u8]) -> Option<(u16, &[u8])> {
    let mut ty = be16(frame, 12)?;
    let mut at = HEADER_LEN;
    for _ in 0..2 {
        if ty != ethertype::VLAN && ty != ethertype::QINQ {
            break;
        }
        ty = be16(frame, at + 2)?;
        at += 4;
    }
    if ty == ethertype::VLAN || ty == ethertype::QINQ {
        return None;
    }
    Some((ty, frame.get(at..)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder, VlanId};

    const A: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
    const B: [u8; 6] = [0x02, 0x42, 10, 0, 0, 3];
    const SIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn v4() -> Vec<u8> {
        let b = PacketBuilder::ethernet2(A, B)
            .ipv4(SIP.octets(), [10, 0, 0, 3], 64)
            .udp(1, 2);
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn v6() -> Vec<u8> {
        let src: Ipv6Addr = "fd00::2".parse().unwrap();
        let b = PacketBuilder::ethernet2(A, B)
            .ipv6(src.octets(), [0xff; 16], 64)
            .udp(1, 2);
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn arp() -> Vec<u8> {
        let p = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            ArpOperation::REQUEST,
            &A,
            &SIP.octets(),
            &[0; 6],
            &[10, 0, 0, 3],
        )
        .unwrap();
        let mut out = Vec::new();
        PacketBuilder::ethernet2(A, [0xff; 6])
            .arp(p)
            .write(&mut out)
            .unwrap();
        out
    }

    /// `frame` with a VLAN tag of type `tpid` inserted after the MACs.
    fn tagged(frame: &[u8], tpid: u16) -> Vec<u8> {
        let mut out = frame[..12].to_vec();
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&[0, 7]);
        out.extend_from_slice(&frame[12..]);
        out
    }

    #[test]
    fn ipv4_source() {
        assert_eq!(sender_ipv4(&v4()), Some(SIP));
        assert_eq!(sender_ipv6(&v4()), None);
    }

    #[test]
    fn arp_sender() {
        assert_eq!(super::arp_sender(&arp()), Some((crate::MacAddr(A), SIP)));
        assert_eq!(
            super::arp_sender(&tagged(&arp(), ethertype::VLAN)),
            Some((crate::MacAddr(A), SIP))
        );
        assert_eq!(super::arp_sender(&v4()), None);
        assert_eq!(sender_ipv4(&arp()), Some(SIP));
        assert_eq!(sender_ipv6(&arp()), None);
        let mut not_ipv4 = arp();
        not_ipv4[16] = 0x86; // ptype
        assert_eq!(sender_ipv4(&not_ipv4), None);
    }

    #[test]
    fn ipv6_source() {
        assert_eq!(sender_ipv6(&v6()), Some("fd00::2".parse().unwrap()));
        assert_eq!(sender_ipv4(&v6()), None);
    }

    #[test]
    fn through_vlan_tags() {
        let b = PacketBuilder::ethernet2(A, B)
            .single_vlan(VlanId::try_new(7).unwrap())
            .ipv4(SIP.octets(), [10, 0, 0, 3], 64)
            .udp(1, 2);
        let mut one = Vec::new();
        b.write(&mut one, &[]).unwrap();
        assert_eq!(sender_ipv4(&one), Some(SIP));
        assert_eq!(sender_ipv4(&tagged(&arp(), ethertype::VLAN)), Some(SIP));
        let two = tagged(&tagged(&v6(), ethertype::VLAN), ethertype::QINQ);
        assert_eq!(sender_ipv6(&two), Some("fd00::2".parse().unwrap()));
        let three = tagged(
            &tagged(&tagged(&v4(), ethertype::VLAN), ethertype::VLAN),
            ethertype::QINQ,
        );
        assert_eq!(sender_ipv4(&three), None);
    }

    /// An Ethernet/IPv6 frame from `fe80::2` carrying `ext` (extension headers, their first
    /// next-header byte given by `first`) and an ICMPv6 message of `icmp` bytes.
    fn icmp6(first: u8, ext: &[u8], icmp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        let mut ip = [0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((ext.len() + icmp.len()) as u16).to_be_bytes());
        ip[6] = first;
        ip[7] = 255;
        ip[8..24].copy_from_slice(&"fe80::2".parse::<Ipv6Addr>().unwrap().octets());
        f.extend_from_slice(&ip);
        f.extend_from_slice(ext);
        f.extend_from_slice(icmp);
        f
    }

    #[test]
    fn icmpv6_messages_are_found_behind_extension_headers() {
        let ra = [134u8, 0, 0, 0, 64, 0, 0, 0];
        assert_eq!(icmpv6(&icmp6(58, &[], &ra)), Some(&ra[..]));
        // Hop-by-hop (8 bytes), then destination options (16 bytes), then ICMPv6.
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[58, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(icmpv6(&icmp6(0, &ext, &ra)), Some(&ra[..]));
        // A first fragment is looked into; a later one is not.
        let first = [58u8, 0, 0, 1, 0, 0, 0, 7];
        assert_eq!(icmpv6(&icmp6(44, &first, &ra)), Some(&ra[..]));
        let later = [58u8, 0, 0, 9, 0, 0, 0, 7];
        assert_eq!(icmpv6(&icmp6(44, &later, &ra)), None);
        // Tagged, and Ethernet padding after the payload left out.
        let mut padded = tagged(&icmp6(58, &[], &ra), ethertype::VLAN);
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(icmpv6(&padded), Some(&ra[..]));
        // Not ICMPv6, too short, too many headers, not IPv6.
        assert_eq!(icmpv6(&icmp6(17, &[], &ra)), None);
        assert_eq!(icmpv6(&icmp6(58, &[], &ra[..3])), None);
        let many: Vec<u8> = (0..9).flat_map(|_| [60u8, 0, 1, 4, 0, 0, 0, 0]).collect();
        assert_eq!(icmpv6(&icmp6(60, &many, &ra)), None);
        assert_eq!(icmpv6(&v4()), None);
        let frame = icmp6(0, &ext, &ra);
        for len in 0..frame.len() {
            let _ = icmpv6(&frame[..len]);
        }
    }

    #[test]
    fn other_and_broken_frames() {
        let mut other = v4();
        other[12..14].copy_from_slice(&0x88ccu16.to_be_bytes()); // LLDP
        assert_eq!(sender_ipv4(&other), None);
        let mut wrong_version = v4();
        wrong_version[14] = 0x65;
        assert_eq!(sender_ipv4(&wrong_version), None);
        let mut wrong_version = v6();
        wrong_version[14] = 0x45;
        assert_eq!(sender_ipv6(&wrong_version), None);
        for frame in [v4(), v6(), arp(), tagged(&v4(), ethertype::VLAN)] {
            for len in 0..frame.len() {
                let _ = (sender_ipv4(&frame[..len]), sender_ipv6(&frame[..len]));
            }
        }
        assert_eq!(sender_ipv4(&v4()[..33]), None);
        assert_eq!(sender_ipv4(&v4()[..34]), Some(SIP));
        assert_eq!(sender_ipv6(&v6()[..53]), None);
    }
}
