//! The sender IP a frame claims, for the engine's anti-spoofing checks: the IPv4 or IPv6
//! source address, or the ARP sender address.
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
