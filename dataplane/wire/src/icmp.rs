//! "Too big" answers for frames that do not fit the path to their peer: ICMPv4 "destination
//! unreachable, fragmentation needed" (RFC 792, RFC 1191) and ICMPv6 "packet too big" (RFC
//! 4443), so that the sender's path MTU discovery shrinks its packets instead of losing them in
//! a black hole.
//!
//! [`build_too_big`] answers an Ethernet frame a container sent, as the kernel's vxlan does for
//! a bridged frame it cannot carry (`iptunnel_pmtud_build_icmp` and its IPv6 twin in
//! `net/ipv4/ip_tunnel_core.c`, Linux 5.9+): the answer is addressed back to the frame's
//! source with the MAC addresses swapped and the IP source set to the frame's destination, as
//! if the far end had sent it, and quotes as much of the offending packet as fits in 576 bytes
//! (IPv4) or 1280 bytes (IPv6). No answer is built where the rules forbid one: a frame without
//! DF (IPv4; the caller fragments those instead), a fragment other than the first, an ICMP
//! error (never answer an error with an error), a multicast, broadcast, loopback or unspecified
//! address, or an IPv6 MTU below the IPv6 minimum of 1280.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{checksum, fold, ones_complement_sum, pseudo_header_v6};
use crate::ethernet::{ethertype, HEADER_LEN};
use crate::{array, be16, Error};

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IPv6 next header of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv4 type "destination unreachable".
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
/// ICMPv4 code of "destination unreachable": fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;
/// ICMPv6 type "packet too big".
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
/// The longest IPv4 ICMP error RFC 1812 lets every host accept; the kernel quotes up to it.
pub const IPV4_MAX_ERROR_LEN: usize = 576;
/// The IPv6 minimum MTU (RFC 8200), also the longest ICMPv6 error (RFC 4443 2.4 (c)).
pub const IPV6_MIN_MTU: usize = 1280;
/// The longest frame [`build_too_big`] writes: an Ethernet header and a 1280-byte IPv6 packet.
pub const MAX_LEN: usize = HEADER_LEN + IPV6_MIN_MTU;

const IPV4_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const ICMP_HEADER_LEN: usize = 8;
/// IPv4 flag "don't fragment", in the flags/fragment-offset field.
const IPV4_DF: u16 = 0x4000;
/// IPv4 fragment offset mask.
const IPV4_OFFSET: u16 = 0x1fff;
/// TTL / hop limit of the answer (the kernel's default TTL; hop limit as the kernel's).
const TTL: u8 = 64;
const HOP_LIMIT: u8 = 255;

/// What the offending frame is, once checked: which answer [`build_too_big`] would write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooBig {
    /// An IPv4 packet with DF set: answer "fragmentation needed".
    V4 {
        /// The packet's source (the answer's destination).
        src: Ipv4Addr,
        /// The packet's destination (the answer's source).
        dst: Ipv4Addr,
    },
    /// An IPv6 packet: answer "packet too big".
    V6 {
        /// The packet's source.
        src: Ipv6Addr,
        /// The packet's destination.
        dst: Ipv6Addr,
    },
}

/// Whether the Ethernet frame `frame` (untagged) may be answered with a "too big" error, and
/// with which; `None` when the rules in the module doc forbid an answer or the frame is not an
/// IPv4/IPv6 packet. Never panics.
pub fn classify(frame: &[u8]) -> Option<TooBig> {
    match be16(frame, 12)? {
        ethertype::IPV4 => {
            let h: [u8; IPV4_HEADER_LEN] = array(frame, HEADER_LEN)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            if h[0] >> 4 != 4 || ihl < IPV4_HEADER_LEN {
                return None;
            }
            let flags = u16::from_be_bytes([h[6], h[7]]);
            if flags & IPV4_DF == 0 || flags & IPV4_OFFSET != 0 {
                return None;
            }
            let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
            let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
            let bad = |a: Ipv4Addr| {
                a.is_multicast() || a.is_broadcast() || a.is_loopback() || a.is_unspecified()
            };
            if bad(src) || bad(dst) {
                return None;
            }
            if h[9] == PROTO_ICMP && is_icmpv4_error(*frame.get(HEADER_LEN + ihl)?) {
                return None;
            }
            Some(TooBig::V4 { src, dst })
        }
        ethertype::IPV6 => {
            let h: [u8; IPV6_HEADER_LEN] = array(frame, HEADER_LEN)?;
            if h[0] >> 4 != 6 {
                return None;
            }
            let src = Ipv6Addr::from(array::<16>(&h, 8)?);
            let dst = Ipv6Addr::from(array::<16>(&h, 24)?);
            if src.is_multicast() || src.is_unspecified() || src.is_loopback() {
                return None;
            }
            if dst.is_multicast() || dst.is_unspecified() || dst.is_loopback() {
                return None;
            }
            // Errors are type 0..=127; only a bare ICMPv6 header is recognised (no extension
            // headers walked, as the kernel's check does not either).
            if h[6] == NEXT_HEADER_ICMPV6 && *frame.get(HEADER_LEN + IPV6_HEADER_LEN)? < 128 {
                return None;
            }
            Some(TooBig::V6 { src, dst })
        }
        _ => None,
    }
}

/// ICMPv4 types that are errors (RFC 1122 3.2.2): never answered with an error.
fn is_icmpv4_error(ty: u8) -> bool {
    matches!(ty, 3 | 4 | 5 | 11 | 12)
}

/// Writes to `out` the frame that tells the sender of `frame` that packets to its destination
/// must be at most `mtu` bytes (IP packet, not frame), and returns its length.
///
/// `Err(Error::Malformed)` when [`classify`] refuses the frame (or `mtu` is below 1280 for
/// IPv6, or below 68 for IPv4), `Err(Error::BufferTooSmall)` when `out` cannot hold the
/// answer ([`MAX_LEN`] always can). Never panics.
pub fn build_too_big(frame: &[u8], mtu: u16, out: &mut [u8]) -> Result<usize, Error> {
    let kind = classify(frame).ok_or(Error::Malformed)?;
    let packet = frame.get(HEADER_LEN..).ok_or(Error::Truncated)?;
    let (ip_len, max_total) = match kind {
        TooBig::V4 { .. } if mtu >= 68 => (IPV4_HEADER_LEN, IPV4_MAX_ERROR_LEN),
        TooBig::V6 { .. } if usize::from(mtu) >= IPV6_MIN_MTU => (IPV6_HEADER_LEN, IPV6_MIN_MTU),
        _ => return Err(Error::Malformed),
    };
    let quoted = packet.len().min(max_total - ip_len - ICMP_HEADER_LEN);
    let l4_len = ICMP_HEADER_LEN + quoted;
    let total = HEADER_LEN + ip_len + l4_len;
    let out = out.get_mut(..total).ok_or(Error::BufferTooSmall)?;

    // Ethernet: back to the sender, from the MAC it sent to.
    out[0..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[0..6]);
    let ty = match kind {
        TooBig::V4 { .. } => ethertype::IPV4,
        TooBig::V6 { .. } => ethertype::IPV6,
    };
    out[12..14].copy_from_slice(&ty.to_be_bytes());
    let (ip, rest) = out[HEADER_LEN..].split_at_mut(ip_len);
    let (icmp, quote) = rest.split_at_mut(ICMP_HEADER_LEN);
    quote.copy_from_slice(&packet[..quoted]);
    match kind {
        TooBig::V4 { src, dst } => {
            ip.copy_from_slice(&[0; IPV4_HEADER_LEN]);
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((ip_len + l4_len) as u16).to_be_bytes());
            ip[8] = TTL;
            ip[9] = PROTO_ICMP;
            ip[12..16].copy_from_slice(&dst.octets());
            ip[16..20].copy_from_slice(&src.octets());
            let c = checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            icmp.copy_from_slice(&[TYPE_DEST_UNREACHABLE, CODE_FRAG_NEEDED, 0, 0, 0, 0, 0, 0]);
            icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
            let sum = ones_complement_sum(quote, ones_complement_sum(icmp, 0));
            icmp[2..4].copy_from_slice(&fold(sum).to_be_bytes());
        }
        TooBig::V6 { src, dst } => {
            ip.copy_from_slice(&[0; IPV6_HEADER_LEN]);
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = NEXT_HEADER_ICMPV6;
            ip[7] = HOP_LIMIT;
            ip[8..24].copy_from_slice(&dst.octets());
            ip[24..40].copy_from_slice(&src.octets());
            icmp.copy_from_slice(&[TYPE_PACKET_TOO_BIG, 0, 0, 0, 0, 0, 0, 0]);
            icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
            let pseudo = pseudo_header_v6(dst, src, NEXT_HEADER_ICMPV6, l4_len as u32);
            let sum = ones_complement_sum(quote, ones_complement_sum(icmp, pseudo));
            icmp[2..4].copy_from_slice(&fold(sum).to_be_bytes());
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, SlicedPacket, TransportSlice};

    const A: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
    const B: [u8; 6] = [0x02, 0x42, 10, 0, 0, 3];

    fn v4(df: bool, payload: usize) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .tcp(40000, 80, 1, 65535)
            .write(&mut out, &vec![0x5a; payload])
            .unwrap();
        set_flags(&mut out, if df { IPV4_DF } else { 0 });
        out
    }

    /// Sets the IPv4 flags/fragment-offset field and fixes the header checksum.
    fn set_flags(frame: &mut [u8], flags: u16) {
        frame[20..22].copy_from_slice(&flags.to_be_bytes());
        frame[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    }

    fn v6(payload: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let src: Ipv6Addr = "fd00::2".parse().unwrap();
        let dst: Ipv6Addr = "fd00::3".parse().unwrap();
        PacketBuilder::ethernet2(A, B)
            .ipv6(src.octets(), dst.octets(), 64)
            .udp(5000, 53)
            .write(&mut out, &vec![0xa5; payload])
            .unwrap();
        out
    }

    /// Builds the answer to `frame` and checks it with etherparse, checksums included.
    fn answer(frame: &[u8], mtu: u16) -> Vec<u8> {
        let mut out = [0xa5u8; MAX_LEN];
        let n = build_too_big(frame, mtu, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn ipv4_with_df_gets_fragmentation_needed_from_its_destination() {
        let frame = v4(true, 1460);
        let out = answer(&frame, 1400);
        assert_eq!(out.len(), HEADER_LEN + IPV4_MAX_ERROR_LEN);
        assert_eq!((&out[0..6], &out[6..12]), (&A[..], &B[..]));
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else {
            panic!("not IPv4: {p:?}")
        };
        let h = ip.header();
        assert_eq!(h.source_addr(), Ipv4Addr::new(10, 0, 0, 3));
        assert_eq!(h.destination_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(h.ttl(), TTL);
        assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
            panic!("not ICMP")
        };
        match icmp.icmp_type() {
            Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu },
            ) => {
                assert_eq!(next_hop_mtu, 1400)
            }
            t => panic!("wrong type {t:?}"),
        }
        assert_eq!(
            icmp.checksum(),
            icmp.icmp_type().calc_checksum(icmp.payload())
        );
        // The quote starts with the offending IP header.
        assert_eq!(&icmp.payload()[..20], &frame[14..34]);
    }

    #[test]
    fn ipv6_gets_packet_too_big_quoting_up_to_1280_bytes() {
        let frame = v6(1400);
        let out = answer(&frame, 1350);
        assert_eq!(out.len(), HEADER_LEN + IPV6_MIN_MTU);
        let p = SlicedPacket::from_ethernet(&out).unwrap();
        let Some(etherparse::NetSlice::Ipv6(ip)) = &p.net else {
            panic!("not IPv6")
        };
        assert_eq!(
            ip.header().source_addr(),
            "fd00::3".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(ip.header().hop_limit(), HOP_LIMIT);
        let Some(TransportSlice::Icmpv6(icmp)) = &p.transport else {
            panic!("not ICMPv6")
        };
        assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: 1350 });
        let h = ip.header();
        let want = icmp
            .icmp_type()
            .calc_checksum(h.source(), h.destination(), icmp.payload())
            .unwrap();
        assert_eq!(icmp.checksum(), want);
    }

    #[test]
    fn a_short_packet_is_quoted_whole() {
        let frame = v4(true, 10);
        let out = answer(&frame, 1400);
        assert_eq!(
            out.len(),
            HEADER_LEN + IPV4_HEADER_LEN + ICMP_HEADER_LEN + frame.len() - 14
        );
    }

    #[test]
    fn what_must_not_be_answered() {
        let mut out = [0u8; MAX_LEN];
        // No DF: the caller fragments instead.
        assert_eq!(classify(&v4(false, 100)), None);
        // A fragment other than the first.
        let mut frag = v4(true, 100);
        set_flags(&mut frag, IPV4_DF | 10);
        assert_eq!(classify(&frag), None);
        // An ICMP error.
        let mut err = Vec::new();
        // (etherparse builds IPv4 with DF clear: set it, so only the ICMP rule refuses.)
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .icmpv4(Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
            ))
            .write(&mut err, &[0; 40])
            .unwrap();
        set_flags(&mut err, IPV4_DF);
        assert_eq!(classify(&err), None);
        // An ICMP echo request is answered (it is not an error).
        let mut echo = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut echo, &[0; 1400])
            .unwrap();
        set_flags(&mut echo, IPV4_DF);
        assert!(classify(&echo).is_some());
        // Broadcast and multicast destinations.
        let mut bcast = v4(true, 100);
        bcast[30..34].copy_from_slice(&[255, 255, 255, 255]);
        assert_eq!(classify(&bcast), None);
        let mut mcast = v6(100);
        mcast[38] = 0xff;
        assert_eq!(classify(&mcast), None);
        // IPv6 MTU below the minimum; IPv4 MTU below 68.
        assert_eq!(
            build_too_big(&v6(1400), 1000, &mut out),
            Err(Error::Malformed)
        );
        assert_eq!(
            build_too_big(&v4(true, 100), 60, &mut out),
            Err(Error::Malformed)
        );
        // ARP and other ethertypes.
        let mut arp = v4(true, 100);
        arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        assert_eq!(classify(&arp), None);
        // Too small an output buffer.
        assert_eq!(
            build_too_big(&v4(true, 1400), 1400, &mut out[..100]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn truncated_and_random_frames_never_panic() {
        let frame = v4(true, 200);
        let mut out = [0u8; MAX_LEN];
        for len in 0..frame.len() {
            let _ = build_too_big(&frame[..len], 1400, &mut out);
        }
        let frame = v6(200);
        for len in 0..frame.len() {
            let _ = build_too_big(&frame[..len], 1400, &mut out);
        }
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut buf = [0u8; 200];
        let mut built = 0;
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            let ty = [ethertype::IPV4, ethertype::IPV6][round % 2];
            buf[12..14].copy_from_slice(&ty.to_be_bytes());
            buf[14] = if round % 2 == 0 { 0x45 } else { 0x60 };
            buf[20] |= 0x40; // DF, for IPv4
            let len = round % buf.len();
            if build_too_big(&buf[..len], 1400, &mut out).is_ok() {
                built += 1;
            }
        }
        assert!(
            built > 1000,
            "random frames rarely reached the builder ({built})"
        );
    }
}
