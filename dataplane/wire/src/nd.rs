//! IPv6 Neighbor Discovery (RFC 4861), the part a proxy needs: recognise a Neighbor
//! Solicitation in an Ethernet frame ([`parse_solicitation`]) and answer it with a Neighbor
//! Advertisement ([`build_advertisement`]), the IPv6 twin of [`crate::arp::build_reply`].
//!
//! Not covered: router discovery, redirects, DAD bookkeeping, IPv6 extension headers and
//! 802.1Q-tagged frames (all such frames are simply not recognised).

use core::net::Ipv6Addr;

use crate::checksum::{fold, ones_complement_sum, pseudo_header_v6};
use crate::ethernet::{self, ethertype, Frame, MacAddr};
use crate::{array, be16, Error};

/// IPv6 next header: ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// ICMPv6 type: Neighbor Solicitation.
pub const TYPE_NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type: Neighbor Advertisement.
pub const TYPE_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Neighbor Advertisement flag R: the sender is a router.
pub const FLAG_ROUTER: u8 = 0x80;
/// Neighbor Advertisement flag S: sent in response to a solicitation.
pub const FLAG_SOLICITED: u8 = 0x40;
/// Neighbor Advertisement flag O: override an existing cache entry.
pub const FLAG_OVERRIDE: u8 = 0x20;
/// ND option: source link-layer address.
pub const OPT_SOURCE_LL_ADDR: u8 = 1;
/// ND option: target link-layer address.
pub const OPT_TARGET_LL_ADDR: u8 = 2;
/// The length of the whole advertisement frame [`build_advertisement`] writes: Ethernet (14),
/// IPv6 (40), ICMPv6 Neighbor Advertisement (24) and one target link-layer option (8).
pub const ADVERTISEMENT_LEN: usize = ethernet::HEADER_LEN + IPV6_HEADER_LEN + NA_LEN;

const IPV6_HEADER_LEN: usize = 40;
/// ICMPv6 NS/NA message without options: type, code, checksum, flags/reserved, target.
const MESSAGE_LEN: usize = 24;
/// The advertisement's ICMPv6 part: message plus an 8-byte link-layer address option.
const NA_LEN: usize = MESSAGE_LEN + 8;
/// `ff02::1`, all nodes.
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A Neighbor Solicitation: who asks (`src_mac`, `src_ip`) about which address (`target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Solicitation {
    /// The Ethernet source of the solicitation.
    pub src_mac: MacAddr,
    /// The IPv6 source: `::` during duplicate address detection.
    pub src_ip: Ipv6Addr,
    /// The address being resolved.
    pub target: Ipv6Addr,
}

/// Recognises a Neighbor Solicitation in the Ethernet frame `frame`, validated as RFC 4861
/// section 7.1.1 asks: ethertype IPv6, version 6, next header 58 directly (no extension
/// headers), hop limit 255, ICMPv6 type 135 code 0, ICMPv6 length at least 24, a valid ICMPv6
/// checksum, a target that is not multicast, options of non-zero length that fit, and from
/// `::` only to a solicited-node group and without a source link-layer option. Bytes after
/// the IPv6 payload length (Ethernet padding) are ignored. Anything else is `None`.
///
/// `src_mac` is the frame's Ethernet source (not the source link-layer option).
pub fn parse_solicitation(frame: &[u8]) -> Option<Solicitation> {
    let eth = Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ethertype::IPV6 {
        return None;
    }
    let ip = eth.payload();
    let header: [u8; IPV6_HEADER_LEN] = array(ip, 0)?;
    if header[0] >> 4 != 6 || header[6] != NEXT_HEADER_ICMPV6 || header[7] != 255 {
        return None;
    }
    let payload_len = be16(&header, 4)?;
    let icmp = ip.get(IPV6_HEADER_LEN..IPV6_HEADER_LEN + usize::from(payload_len))?;
    if icmp.len() < MESSAGE_LEN || icmp[0] != TYPE_NEIGHBOR_SOLICITATION || icmp[1] != 0 {
        return None;
    }
    let src_ip = Ipv6Addr::from(array::<16>(&header, 8)?);
    let dst_ip = Ipv6Addr::from(array::<16>(&header, 24)?);
    let sum = pseudo_header_v6(src_ip, dst_ip, NEXT_HEADER_ICMPV6, u32::from(payload_len));
    if fold(ones_complement_sum(icmp, sum)) != 0 {
        return None;
    }
    let target = Ipv6Addr::from(array::<16>(icmp, 8)?);
    if target.is_multicast() || src_ip.is_multicast() {
        return None;
    }
    let dad = src_ip.is_unspecified();
    if dad && !is_solicited_node(dst_ip) {
        return None;
    }
    let mut options = icmp.get(MESSAGE_LEN..)?;
    while !options.is_empty() {
        let kind = *options.first()?;
        let len = usize::from(*options.get(1)?) * 8;
        if len == 0 || (dad && kind == OPT_SOURCE_LL_ADDR) {
            return None;
        }
        options = options.get(len..)?;
    }
    Some(Solicitation {
        src_mac: eth.src(),
        src_ip,
        target,
    })
}

/// Whether `ip` is in the solicited-node multicast range `ff02::1:ff00:0/104`.
fn is_solicited_node(ip: Ipv6Addr) -> bool {
    let o = ip.octets();
    o[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// Answers `sol` with "`sol.target` is at `answer`": writes the whole Ethernet frame with the
/// Neighbor Advertisement into the start of `out` and returns its length,
/// [`ADVERTISEMENT_LEN`] (86), or [`Error::BufferTooSmall`].
///
/// Ethernet: to `sol.src_mac`, from `answer`. IPv6: from the target, to `sol.src_ip`, hop
/// limit 255. ICMPv6: type 136, flags Solicited and Override, the target, and a target
/// link-layer address option with `answer`. A solicitation from `::` (duplicate address
/// detection) is answered to `ff02::1` without the Solicited flag, as RFC 4861 section 7.2.4
/// asks; the Ethernet destination is still the soliciting MAC, so only the prober sees it.
pub fn build_advertisement(
    sol: &Solicitation,
    answer: MacAddr,
    out: &mut [u8],
) -> Result<usize, Error> {
    let out = out
        .get_mut(..ADVERTISEMENT_LEN)
        .ok_or(Error::BufferTooSmall)?;
    let (eth, rest) = out.split_at_mut(ethernet::HEADER_LEN);
    let (ip, icmp) = rest.split_at_mut(IPV6_HEADER_LEN);

    ethernet::Repr {
        dst: sol.src_mac,
        src: answer,
        ethertype: ethertype::IPV6,
    }
    .emit(&mut Frame::new_unchecked(eth));

    let (dst_ip, flags) = if sol.src_ip.is_unspecified() {
        (ALL_NODES, FLAG_OVERRIDE)
    } else {
        (sol.src_ip, FLAG_SOLICITED | FLAG_OVERRIDE)
    };
    // Version 6, traffic class 0, flow label 0.
    ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&(NA_LEN as u16).to_be_bytes());
    ip[6] = NEXT_HEADER_ICMPV6;
    ip[7] = 255;
    ip[8..24].copy_from_slice(&sol.target.octets());
    ip[24..40].copy_from_slice(&dst_ip.octets());

    icmp[..8].copy_from_slice(&[TYPE_NEIGHBOR_ADVERTISEMENT, 0, 0, 0, flags, 0, 0, 0]);
    icmp[8..24].copy_from_slice(&sol.target.octets());
    icmp[24..26].copy_from_slice(&[OPT_TARGET_LL_ADDR, 1]);
    icmp[26..32].copy_from_slice(&answer.0);
    let sum = pseudo_header_v6(sol.target, dst_ip, NEXT_HEADER_ICMPV6, NA_LEN as u32);
    let checksum = fold(ones_complement_sum(icmp, sum));
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    Ok(ADVERTISEMENT_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Icmpv6Header, Icmpv6Slice, Icmpv6Type, PacketBuilder};

    const REQUESTER: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x00, 0x02]);
    const ANSWER: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x00, 0x03]);

    fn src_ip() -> Ipv6Addr {
        "fd00::2".parse().unwrap()
    }

    fn target() -> Ipv6Addr {
        "fd00::3".parse().unwrap()
    }

    fn solicited_node(t: Ipv6Addr) -> Ipv6Addr {
        let o = t.octets();
        Ipv6Addr::from([
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
        ])
    }

    /// An ICMPv6 message in an IPv6 packet in an Ethernet frame, built (and checksummed) by
    /// etherparse. `body` is everything after the first 8 ICMPv6 bytes.
    fn icmp_frame(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        hop_limit: u8,
        icmp_type: u8,
        code: u8,
        body: &[u8],
    ) -> Vec<u8> {
        let t = Icmpv6Type::Unknown {
            type_u8: icmp_type,
            code_u8: code,
            bytes5to8: [0; 4],
        };
        let b = PacketBuilder::ethernet2(REQUESTER.0, [0x33, 0x33, 0xff, 0, 0, 3])
            .ipv6(src.octets(), dst.octets(), hop_limit)
            .icmpv6(t);
        let mut out = Vec::new();
        b.write(&mut out, body).unwrap();
        out
    }

    /// Target then options.
    fn ns_body(target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
        let mut body = target.octets().to_vec();
        body.extend_from_slice(options);
        body
    }

    fn slla(mac: MacAddr) -> Vec<u8> {
        let mut o = vec![OPT_SOURCE_LL_ADDR, 1];
        o.extend_from_slice(&mac.0);
        o
    }

    fn ns(src: Ipv6Addr, options: &[u8]) -> Vec<u8> {
        let dst = solicited_node(target());
        icmp_frame(src, dst, 255, 135, 0, &ns_body(target(), options))
    }

    #[test]
    fn deconstruct_solicitation() {
        let frame = ns(src_ip(), &slla(REQUESTER));
        assert_eq!(frame.len(), 14 + 40 + 32);
        assert_eq!(
            parse_solicitation(&frame),
            Some(Solicitation {
                src_mac: REQUESTER,
                src_ip: src_ip(),
                target: target(),
            })
        );
        // Without options, and with Ethernet padding after the IPv6 payload.
        let mut frame = ns(src_ip(), &[]);
        frame.extend_from_slice(&[0; 6]);
        assert_eq!(parse_solicitation(&frame).map(|s| s.target), Some(target()));
    }

    #[test]
    fn construct_advertisement() {
        let sol = Solicitation {
            src_mac: REQUESTER,
            src_ip: src_ip(),
            target: target(),
        };
        let mut out = [0xa5u8; 100];
        let len = build_advertisement(&sol, ANSWER, &mut out).unwrap();
        assert_eq!(len, 86);
        assert!(
            out[len..].iter().all(|&b| b == 0xa5),
            "wrote past the frame"
        );

        // The same frame, built by etherparse with its own checksum.
        let mut body = target().octets().to_vec();
        body.extend_from_slice(&[OPT_TARGET_LL_ADDR, 1]);
        body.extend_from_slice(&ANSWER.0);
        let t = Icmpv6Type::Unknown {
            type_u8: 136,
            code_u8: 0,
            bytes5to8: [FLAG_SOLICITED | FLAG_OVERRIDE, 0, 0, 0],
        };
        let expected_icmp =
            Icmpv6Header::with_checksum(t, target().octets(), src_ip().octets(), &body).unwrap();
        let b = PacketBuilder::ethernet2(ANSWER.0, REQUESTER.0)
            .ipv6(target().octets(), src_ip().octets(), 255)
            .icmpv6(t);
        let mut expected = Vec::new();
        b.write(&mut expected, &body).unwrap();
        assert_eq!(out[..len], expected[..]);
        assert_eq!(
            u16::from_be_bytes([out[56], out[57]]),
            expected_icmp.checksum
        );

        let icmp = Icmpv6Slice::from_slice(&out[54..len]).unwrap();
        assert!(icmp.is_checksum_valid(target().octets(), src_ip().octets()));
        assert!(matches!(
            icmp.icmp_type(),
            Icmpv6Type::NeighborAdvertisement(h) if h.solicited && h.r#override && !h.router
        ));
    }

    #[test]
    fn advertisement_bytes() {
        let sol = Solicitation {
            src_mac: REQUESTER,
            src_ip: src_ip(),
            target: target(),
        };
        let mut out = [0u8; ADVERTISEMENT_LEN];
        build_advertisement(&sol, ANSWER, &mut out).unwrap();
        #[rustfmt::skip]
        let head: [u8; 22] = [
            0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, 0x02, 0x42, 0x0a, 0x00, 0x00, 0x03, 0x86, 0xdd,
            0x60, 0, 0, 0, 0, 32, 58, 255,
        ];
        assert_eq!(out[..22], head);
        assert_eq!(out[54], 136);
        assert_eq!(out[55], 0);
        assert_eq!(out[58..62], [0x60, 0, 0, 0]);
        assert_eq!(out[78..86], [2, 1, 0x02, 0x42, 0x0a, 0x00, 0x00, 0x03]);
        // Round trip: the advertisement's checksum verifies with our own code.
        let sum = pseudo_header_v6(target(), src_ip(), 58, 32);
        assert_eq!(fold(ones_complement_sum(&out[54..], sum)), 0);
    }

    #[test]
    fn dad_answered_to_all_nodes_without_solicited() {
        let frame = ns(Ipv6Addr::UNSPECIFIED, &[]);
        let sol = parse_solicitation(&frame).unwrap();
        assert_eq!(sol.src_ip, Ipv6Addr::UNSPECIFIED);
        let mut out = [0u8; ADVERTISEMENT_LEN];
        assert_eq!(build_advertisement(&sol, ANSWER, &mut out), Ok(86));
        assert_eq!(out[..6], REQUESTER.0);
        assert_eq!(out[38..54], ALL_NODES.octets());
        assert_eq!(out[58], FLAG_OVERRIDE);
        let icmp = Icmpv6Slice::from_slice(&out[54..]).unwrap();
        assert!(icmp.is_checksum_valid(target().octets(), ALL_NODES.octets()));

        // RFC 4861 7.1.1: from :: only to a solicited-node group, and without an SLLA option.
        assert_eq!(
            parse_solicitation(&ns(Ipv6Addr::UNSPECIFIED, &slla(REQUESTER))),
            None
        );
        let to_target = icmp_frame(
            Ipv6Addr::UNSPECIFIED,
            target(),
            255,
            135,
            0,
            &ns_body(target(), &[]),
        );
        assert_eq!(parse_solicitation(&to_target), None);
        // From a real address, a unicast solicitation (cache refresh) is fine.
        let unicast = icmp_frame(src_ip(), target(), 255, 135, 0, &ns_body(target(), &[]));
        assert!(parse_solicitation(&unicast).is_some());
    }

    #[test]
    fn buffer_too_small() {
        let sol = parse_solicitation(&ns(src_ip(), &[])).unwrap();
        let mut out = [0u8; ADVERTISEMENT_LEN - 1];
        assert_eq!(
            build_advertisement(&sol, ANSWER, &mut out),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn rejects_wrong_fields() {
        let dst = solicited_node(target());
        let body = ns_body(target(), &[]);
        // Hop limit, type, code.
        assert_eq!(
            parse_solicitation(&icmp_frame(src_ip(), dst, 64, 135, 0, &body)),
            None
        );
        assert_eq!(
            parse_solicitation(&icmp_frame(src_ip(), dst, 255, 136, 0, &body)),
            None
        );
        assert_eq!(
            parse_solicitation(&icmp_frame(src_ip(), dst, 255, 135, 1, &body)),
            None
        );
        // Multicast target or source.
        let mcast = ns_body(dst, &[]);
        assert_eq!(
            parse_solicitation(&icmp_frame(src_ip(), dst, 255, 135, 0, &mcast)),
            None
        );
        assert_eq!(
            parse_solicitation(&icmp_frame(dst, dst, 255, 135, 0, &body)),
            None
        );
        // ICMPv6 shorter than 24 bytes.
        let short = &body[..8];
        assert_eq!(
            parse_solicitation(&icmp_frame(src_ip(), dst, 255, 135, 0, short)),
            None
        );

        let good = ns(src_ip(), &slla(REQUESTER));
        let edit = |at: usize, value: u8| {
            let mut f = good.clone();
            f[at] = value;
            parse_solicitation(&f)
        };
        assert!(
            edit(0, 0).is_some(),
            "the Ethernet destination is not checked"
        );
        assert_eq!(edit(12, 0x08), None, "ethertype");
        assert_eq!(edit(14, 0x40), None, "IP version");
        assert_eq!(edit(20, 0), None, "hop-by-hop extension header");
        assert_eq!(edit(56, good[56] ^ 1), None, "checksum");
        assert_eq!(edit(77, good[77] ^ 1), None, "covered by the checksum");
        assert_eq!(
            edit(19, 31),
            None,
            "payload length shorter than the message"
        );
        assert_eq!(edit(19, 33), None, "payload length past the frame");
        assert_eq!(edit(18, 1), None, "payload length past the frame");
    }

    #[test]
    fn rejects_bad_options() {
        let mut zero_len = slla(REQUESTER);
        zero_len[1] = 0;
        assert_eq!(parse_solicitation(&ns(src_ip(), &zero_len)), None);
        let mut too_long = slla(REQUESTER);
        too_long[1] = 2;
        assert_eq!(parse_solicitation(&ns(src_ip(), &too_long)), None);
        assert_eq!(
            parse_solicitation(&ns(src_ip(), &[1])),
            None,
            "half an option"
        );
        // An unknown option is skipped.
        let mut two = vec![99, 1, 0, 0, 0, 0, 0, 0];
        two.extend_from_slice(&slla(REQUESTER));
        assert!(parse_solicitation(&ns(src_ip(), &two)).is_some());
    }

    #[test]
    fn never_panics_on_truncation() {
        let frame = ns(src_ip(), &slla(REQUESTER));
        for len in 0..frame.len() {
            assert_eq!(parse_solicitation(&frame[..len]), None, "{len}");
        }
    }
}
