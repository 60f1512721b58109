//! Port security for frames from this host's containers, read from a network's TAP: a
//! container sends with its own MAC and, for IPv4, ARP and IPv6, its own addresses; it sends
//! no IPv6 router advertisement, and advertises no neighbour address but its own.
//!
//! The agent enforces the same rules on each container's veth, where the host's bridge would
//! otherwise switch a spoofed frame to a neighbour on the same host without the data plane
//! seeing it (nftables rules in the bridge family, see the agent's `port_security` module);
//! this check is the data plane's own, for everything that would cross the overlay. A pure
//! function of the frame and the network's table: an endpoint's addresses are its entries in
//! [`Table`]'s IP → MAC maps (`arp` and `nd`), its MAC one of the table's local MACs.

use std::net::{Ipv4Addr, Ipv6Addr};

use ovnet_wire::{ip, MacAddr};

use crate::counters::DropReason;
use crate::fdb::Table;

/// ICMPv6 router advertisement (RFC 4861 section 4.2).
const ICMPV6_ROUTER_ADVERT: u8 = 134;
/// ICMPv6 neighbour advertisement (RFC 4861 section 4.4).
const ICMPV6_NEIGHBOUR_ADVERT: u8 = 136;

/// Checks a frame that a local container sent with Ethernet source `src`: `Ok` if it may go
/// on, or why it is dropped.
///
/// - [`DropReason::SpoofedSource`]: `src` is not a local endpoint's MAC; or the frame's IPv4
///   source or ARP sender address is neither `0.0.0.0` (address probes) nor an address of
///   `src`; or an ARP sender MAC is not `src`; or the IPv6 source is neither `::` (duplicate
///   address detection) nor an address of `src`. VLAN tags are looked through.
/// - [`DropReason::RouterAdvert`]: an ICMPv6 router advertisement, behind any extension
///   headers.
/// - [`DropReason::ForgedNeighbourAdvert`]: an ICMPv6 neighbour advertisement whose target is
///   not an address of `src`.
pub fn check(frame: &[u8], src: &MacAddr, table: &Table) -> Result<(), DropReason> {
    if !table.local_macs.contains(src) {
        return Err(DropReason::SpoofedSource);
    }
    if let Some((sha, _)) = ip::arp_sender(frame) {
        if sha != *src {
            return Err(DropReason::SpoofedSource);
        }
    }
    if let Some(sip) = ip::sender_ipv4(frame) {
        if sip != Ipv4Addr::UNSPECIFIED && table.arp.get(&sip) != Some(src) {
            return Err(DropReason::SpoofedSource);
        }
    }
    if let Some(message) = ip::icmpv6(frame) {
        match message[0] {
            ICMPV6_ROUTER_ADVERT => return Err(DropReason::RouterAdvert),
            ICMPV6_NEIGHBOUR_ADVERT => {
                let target = message
                    .get(8..24)
                    .and_then(|t| <[u8; 16]>::try_from(t).ok())
                    .map(Ipv6Addr::from);
                if target.is_none_or(|t| table.nd.get(&t) != Some(src)) {
                    return Err(DropReason::ForgedNeighbourAdvert);
                }
            }
            _ => {}
        }
    }
    if let Some(sip) = ip::sender_ipv6(frame) {
        if !sip.is_unspecified() && table.nd.get(&sip) != Some(src) {
            return Err(DropReason::SpoofedSource);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::NetworkTable;
    use crate::testutil::*;
    use etherparse::{Icmpv6Type, PacketBuilder};

    fn table() -> Table {
        Table::compile(&two_host_table())
    }

    fn icmpv6(src: MacAddr, sip: Ipv6Addr, ty: Icmpv6Type, body: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(src.0, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(
                sip.octets(),
                "ff02::1".parse::<Ipv6Addr>().unwrap().octets(),
                255,
            )
            .icmpv6(ty);
        let mut out = Vec::new();
        b.write(&mut out, body).unwrap();
        out
    }

    /// A neighbour advertisement from `src` at `sip` for `target`.
    fn na(src: MacAddr, sip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
        icmpv6(
            src,
            sip,
            Icmpv6Type::NeighborAdvertisement(etherparse::icmpv6::NeighborAdvertisementHeader {
                router: false,
                solicited: false,
                r#override: true,
            }),
            &target.octets(),
        )
    }

    #[test]
    fn a_container_sends_with_its_own_addresses() {
        let t = table();
        let own = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(check(&own, &LOCAL_MAC, &t), Ok(()));
        let probe = arp_request(LOCAL_MAC, Ipv4Addr::UNSPECIFIED, LOCAL_IP);
        assert_eq!(check(&probe, &LOCAL_MAC, &t), Ok(()));
        let ll = LOCAL_MAC.ipv6_link_local();
        assert_eq!(check(&na(LOCAL_MAC, ll, ll), &LOCAL_MAC, &t), Ok(()));
        // Duplicate address detection solicits from `::`.
        let dad = neighbour_solicitation(LOCAL_MAC, Ipv6Addr::UNSPECIFIED, ll);
        assert_eq!(check(&dad, &LOCAL_MAC, &t), Ok(()));
    }

    #[test]
    fn another_mac_or_address_is_spoofing() {
        let t = table();
        let stranger = MacAddr([2, 0, 0, 0, 0, 9]);
        let f = udp_frame(stranger, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(check(&f, &stranger, &t), Err(DropReason::SpoofedSource));
        // The remote endpoint's MAC, from here.
        let f = udp_frame(REMOTE_MAC, LOCAL_MAC, REMOTE_IP, LOCAL_IP, 10);
        assert_eq!(check(&f, &REMOTE_MAC, &t), Err(DropReason::SpoofedSource));
        // Its own MAC with an address of nobody, or of the remote endpoint.
        for sip in ["10.0.0.77", "10.0.0.3"] {
            let f = udp_frame(LOCAL_MAC, REMOTE_MAC, sip.parse().unwrap(), REMOTE_IP, 10);
            assert_eq!(
                check(&f, &LOCAL_MAC, &t),
                Err(DropReason::SpoofedSource),
                "{sip}"
            );
        }
        // ARP: a sender address not its own, or a sender MAC that is not the frame's.
        let f = arp_request(LOCAL_MAC, REMOTE_IP, LOCAL_IP);
        assert_eq!(check(&f, &LOCAL_MAC, &t), Err(DropReason::SpoofedSource));
        let mut f = arp_request(LOCAL_MAC, LOCAL_IP, REMOTE_IP);
        f[22..28].copy_from_slice(&REMOTE_MAC.0);
        assert_eq!(check(&f, &LOCAL_MAC, &t), Err(DropReason::SpoofedSource));
        // IPv6 from another endpoint's link-local address, or a global one.
        for sip in [REMOTE_MAC.ipv6_link_local(), "fd00::2".parse().unwrap()] {
            let f = neighbour_solicitation(LOCAL_MAC, sip, REMOTE_MAC.ipv6_link_local());
            assert_eq!(
                check(&f, &LOCAL_MAC, &t),
                Err(DropReason::SpoofedSource),
                "{sip}"
            );
        }
    }

    #[test]
    fn router_advertisements_and_forged_neighbour_advertisements_are_dropped() {
        let t = table();
        let ll = LOCAL_MAC.ipv6_link_local();
        let ra = icmpv6(
            LOCAL_MAC,
            ll,
            Icmpv6Type::Unknown {
                type_u8: 134,
                code_u8: 0,
                bytes5to8: [64, 0, 0, 0],
            },
            &[0; 8],
        );
        assert_eq!(check(&ra, &LOCAL_MAC, &t), Err(DropReason::RouterAdvert));
        let forged = na(LOCAL_MAC, ll, REMOTE_MAC.ipv6_link_local());
        assert_eq!(
            check(&forged, &LOCAL_MAC, &t),
            Err(DropReason::ForgedNeighbourAdvert)
        );
        let truncated = na(LOCAL_MAC, ll, ll);
        let cut = &truncated[..truncated.len() - 4];
        assert!(check(cut, &LOCAL_MAC, &t).is_err());
    }

    #[test]
    fn a_table_without_the_endpoint_refuses_everything_it_sends() {
        let t = Table::compile(&NetworkTable::new());
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(check(&f, &LOCAL_MAC, &t), Err(DropReason::SpoofedSource));
    }
}
