//! The send path's decision for one frame read from a network's TAP: which VTEP(s) get it,
//! whether it is answered locally (ARP / IPv6 ND from the table) or stays on the host (the
//! local bridge's destinations, the network's gateway, the host's own frames), whether it
//! fits the path to its peer ([`fit`]), or why it is dropped (among others,
//! [`crate::port_security`]'s rules for what a container may send).
//!
//! A pure function of the frame and the tables, with no socket in sight: the worker carries out
//! the [`Encap`] it returns, and tests check decisions directly.
//!
//! Path MTU: the table knows, per peer VTEP, the largest inner IP packet the path carries in
//! one outer datagram. A frame that does not fit (for a TCP super-frame: one of its segments)
//! is handled as the kernel's vxlan handles a bridged frame (`skb_tunnel_check_pmtu()`): an
//! IPv4 packet with DF, or any IPv6 packet, is refused and its sender answered with ICMP "too
//! big" carrying the path MTU ([`ovnet_wire::icmp`] builds the answer), so that its path MTU
//! discovery shrinks its packets; anything else (IPv4 without DF, non-IP) is sent anyway and
//! the host fragments the outer datagram. Most frames fit every path of their network and
//! cost one compare ([`Table::fits_every_path`]).

use std::net::SocketAddr;

use ovnet_wire::icmp::{self, TooBig};
use ovnet_wire::{arp, ethernet, nd, MacAddr, Vni};

use crate::counters::DropReason;
use crate::fdb::{LearnedTable, Table};
use crate::port_security;

/// What to do with a frame read from the TAP.
#[derive(Debug, PartialEq, Eq)]
pub enum Encap<'t> {
    /// Send one VXLAN datagram to this VTEP (a super-frame: its segments); it fits the path.
    Unicast(SocketAddr),
    /// Larger than the path to this VTEP carries, and not to be refused: send a plain frame
    /// alone, for the host to fragment the outer datagram; cut a super-frame into segments
    /// that fit `mtu`.
    Fragment {
        /// The VTEP.
        dst: SocketAddr,
        /// The path MTU to it.
        mtu: u16,
    },
    /// Larger than the path to its peer carries: refuse it, and answer its sender with ICMP
    /// "fragmentation needed" (IPv4) or "packet too big" (IPv6) carrying `mtu`.
    TooBig {
        /// The path MTU, for the answer.
        mtu: u16,
    },
    /// Send a copy to each of these VTEPs (broadcast, multicast, unknown unicast); each copy
    /// is checked against its own path ([`fit`]).
    Flood(&'t [SocketAddr]),
    /// Write the first `len` bytes of the reply buffer back into the TAP.
    Reply {
        /// Length of the answer frame.
        len: usize,
        /// ARP or neighbour discovery.
        kind: ReplyKind,
    },
    /// Nothing leaves the host: the destination is on the local bridge.
    Local,
    /// Drop and count.
    Drop(DropReason),
}

/// Which protocol a local answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// An ARP reply.
    Arp,
    /// An IPv6 neighbour advertisement.
    Nd,
}

/// Size of the buffer [`encap`] may write a reply into: an ND advertisement is 86 bytes.
pub const REPLY_BUF_LEN: usize = 128;

/// The smallest path MTU an IPv4 "fragmentation needed" is sent for, as the kernel's
/// `iptunnel_pmtud_check_icmp()`: a sender takes no path MTU below its `min_pmtu` (552) and
/// would send the same packet again, so below this frames are fragmented instead.
pub const MIN_ANSWERED_V4: usize = 576;

/// How large a frame read from the TAP is on the wire, which says what must fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// A plain frame, sent as it is: at most `max_frame` bytes (the network's MTU, an Ethernet
    /// header and one VLAN tag) or dropped as oversized.
    Plain {
        /// The network's largest frame.
        max_frame: usize,
    },
    /// A TCP super-frame (TSO), whatever its length, that leaves as segments of at most
    /// `segment` bytes of frame each: its headers and one segment's payload.
    Segments {
        /// The frame length of one segment.
        segment: usize,
    },
}

impl Size {
    /// The longest frame that leaves for `frame`: itself, or one of its segments.
    #[inline]
    pub fn wire_len(self, frame: &[u8]) -> usize {
        match self {
            Size::Plain { .. } => frame.len(),
            Size::Segments { segment } => segment.min(frame.len()),
        }
    }
}

/// How a frame goes to one peer, given the path MTU to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// It fits: send it as it is.
    Fits,
    /// Too large and not to be refused: send it for the host to fragment (a super-frame: in
    /// segments that fit this MTU).
    Fragment(u16),
    /// Too large: refuse it and answer its sender with ICMP "too big" carrying this MTU.
    TooBig(u16),
}

/// How `frame`, which leaves as datagrams of at most `len` bytes of frame ([`Size::wire_len`]),
/// goes over a path whose MTU (largest inner IP packet) is `mtu`: the kernel's
/// `skb_tunnel_check_pmtu()` rules, see the module doc. Never panics.
pub fn fit(frame: &[u8], len: usize, mtu: u16) -> Fit {
    let mtu_len = usize::from(mtu);
    if len <= mtu_len + ethernet::HEADER_LEN {
        return Fit::Fits;
    }
    // The path carries IP packets: a VLAN tag is header, not packet.
    let l3 = ethernet::l3_offset(frame).map_or(ethernet::HEADER_LEN, |(l3, _)| l3);
    if len <= mtu_len + l3 {
        return Fit::Fits;
    }
    match icmp::classify(frame) {
        Some(TooBig::V4 { .. }) if mtu_len >= MIN_ANSWERED_V4 => Fit::TooBig(mtu),
        Some(TooBig::V6 { .. }) if mtu_len >= icmp::IPV6_MIN_MTU => Fit::TooBig(mtu),
        _ => Fit::Fragment(mtu),
    }
}

/// Decides what happens to `frame`, read from the TAP of network `vni`, sized as `size` says.
/// ARP/ND answers are written into `reply`.
pub fn encap<'t>(
    frame: &[u8],
    size: Size,
    vni: Vni,
    table: &'t Table,
    learned: &LearnedTable,
    now_ms: u64,
    reply: &mut [u8; REPLY_BUF_LEN],
) -> Encap<'t> {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return Encap::Drop(DropReason::Truncated);
    };
    if let Size::Plain { max_frame } = size {
        if frame.len() > max_frame {
            return Encap::Drop(DropReason::Oversized);
        }
    }
    let (src, dst) = (eth.src(), eth.dst());
    if !src.is_unicast() {
        return Encap::Drop(DropReason::InvalidSourceMac);
    }
    // The gateway is this host's own bridge, on every host: what it sends (ARP for a remote
    // container, a broadcast) and what is sent to it stays here. Its peers would drop it as
    // spoofed, and a reply could never come back to this host's gateway anyway.
    if table.is_gateway(&src) || table.is_gateway(&dst) {
        return Encap::Local;
    }
    // Only endpoints' frames cross the overlay. A remote endpoint's MAC from here is spoofed;
    // any other MAC is the host's own (its bridge's IGMP reports, say: containers' spoofed
    // frames are dropped on their veths by the agent's port-security rules, and never get
    // here), and stays on the host.
    if !table.is_local(&src) {
        if table.macs.contains_key(&src) {
            return Encap::Drop(DropReason::SpoofedSource);
        }
        return Encap::Local;
    }
    // A local container sends as itself: its addresses, no router advertisements.
    if let Err(reason) = port_security::check(frame, &src, table) {
        return Encap::Drop(reason);
    }
    match eth.ethertype() {
        ethernet::ethertype::ARP => {
            if let Some(answer) = arp_answer(eth.payload(), table) {
                return answer_with(
                    answer,
                    table,
                    || arp::build_reply(frame, answer, reply).ok(),
                    ReplyKind::Arp,
                );
            }
        }
        ethernet::ethertype::IPV6 => {
            if let Some(sol) = nd::parse_solicitation(frame) {
                if let Some(&answer) = table.nd.get(&sol.target) {
                    return answer_with(
                        answer,
                        table,
                        || nd::build_advertisement(&sol, answer, reply).ok(),
                        ReplyKind::Nd,
                    );
                }
            }
        }
        _ => {}
    }
    if dst.is_multicast() {
        return flood(table);
    }
    if let Some(vtep) = table.vtep_of(&dst) {
        return unicast(frame, size, vtep, table);
    }
    if let Some(vtep) = learned.lookup(vni, &dst, now_ms) {
        return unicast(frame, size, vtep, table);
    }
    if table.is_local(&dst) {
        return Encap::Local;
    }
    match table.flood_unknown() {
        [] => Encap::Drop(DropReason::NoRoute),
        list => Encap::Flood(list),
    }
}

/// `frame` to `vtep`, if it fits the path.
#[inline]
fn unicast<'t>(frame: &[u8], size: Size, vtep: SocketAddr, table: &Table) -> Encap<'t> {
    let len = size.wire_len(frame);
    if table.fits_every_path(len) {
        return Encap::Unicast(vtep);
    }
    match fit(frame, len, table.path_mtu(vtep.ip())) {
        Fit::Fits => Encap::Unicast(vtep),
        Fit::Fragment(mtu) => Encap::Fragment { dst: vtep, mtu },
        Fit::TooBig(mtu) => Encap::TooBig { mtu },
    }
}

fn flood(table: &Table) -> Encap<'_> {
    if table.flood().is_empty() {
        Encap::Drop(DropReason::NoRoute)
    } else {
        Encap::Flood(table.flood())
    }
}

/// The MAC that answers an ARP request in `payload`, if the table knows the requested IP.
/// Gratuitous ARP (sender IP == target IP) is never answered: it announces, it does not ask.
fn arp_answer(payload: &[u8], table: &Table) -> Option<MacAddr> {
    let pkt = arp::Packet::new_checked(payload).ok()?;
    if pkt.operation() != arp::OP_REQUEST || pkt.sender_ip() == pkt.target_ip() {
        return None;
    }
    table.arp.get(&pkt.target_ip()).copied()
}

/// Answers locally unless the owner of the address is itself on the local bridge, which
/// already delivered the request to it (and will answer).
fn answer_with<'t>(
    answer: MacAddr,
    table: &Table,
    build: impl FnOnce() -> Option<usize>,
    kind: ReplyKind,
) -> Encap<'t> {
    if table.is_local(&answer) {
        return Encap::Local;
    }
    match build() {
        Some(len) => Encap::Reply { len, kind },
        None => Encap::Drop(DropReason::Truncated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::{FloodEntry, NetworkTable, DEFAULT_AGEING};
    use crate::testutil::*;

    fn run(frame: &[u8], t: &NetworkTable) -> (Encap<'static>, Vec<u8>) {
        let learned = LearnedTable::new(DEFAULT_AGEING);
        let mut reply = [0xa5; REPLY_BUF_LEN];
        // Leak the compiled table to get a 'static borrow: fine in tests.
        let t: &'static Table = Box::leak(Box::new(Table::compile(t)));
        let size = Size::Plain {
            max_frame: 1514 + 4,
        };
        let out = encap(frame, size, vni(), t, &learned, 0, &mut reply);
        let bytes = match out {
            Encap::Reply { len, .. } => reply[..len].to_vec(),
            _ => Vec::new(),
        };
        (out, bytes)
    }

    #[test]
    fn unicast_to_the_owning_vtep() {
        let t = two_host_table();
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 100);
        assert_eq!(run(&f, &t).0, Encap::Unicast(vtep2()));
    }

    #[test]
    fn broadcast_floods_to_all_and_unknown_unicast_only_where_unknown_macs_live() {
        let mut t = two_host_table();
        let external: SocketAddr = "192.168.1.50:4789".parse().unwrap();
        t.flood.push(FloodEntry {
            addr: external,
            learn: true,
        });
        let f = udp_frame(LOCAL_MAC, MacAddr::BROADCAST, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Flood(&[vtep2(), external]));
        // Every MAC behind an ovnet peer is in the table: a frame to another one is for a
        // container gone or not yet known, and goes only to the external VTEP.
        let unknown = MacAddr([2, 0x42, 10, 0, 0, 99]);
        let f = udp_frame(LOCAL_MAC, unknown, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Flood(&[external]));
        // Without one it goes nowhere (counted); in a learning network, to every VTEP.
        t.flood.pop();
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::NoRoute));
        t.learning = true;
        assert_eq!(run(&f, &t).0, Encap::Flood(&[vtep2()]));
    }

    #[test]
    fn no_flood_list_means_no_route() {
        let mut t = two_host_table();
        t.flood.clear();
        let f = udp_frame(LOCAL_MAC, MacAddr::BROADCAST, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::NoRoute));
    }

    #[test]
    fn arp_request_for_a_remote_ip_is_answered_not_flooded() {
        let t = two_host_table();
        let req = arp_request(LOCAL_MAC, LOCAL_IP, REMOTE_IP);
        let (out, reply) = run(&req, &t);
        assert_eq!(
            out,
            Encap::Reply {
                len: 42,
                kind: ReplyKind::Arp
            }
        );
        let eth = ethernet::Frame::new_checked(&reply[..]).unwrap();
        assert_eq!(eth.dst(), LOCAL_MAC);
        assert_eq!(eth.src(), REMOTE_MAC);
        let a = arp::Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(a.operation(), arp::OP_REPLY);
        assert_eq!((a.sender_mac(), a.sender_ip()), (REMOTE_MAC, REMOTE_IP));
        assert_eq!((a.target_mac(), a.target_ip()), (LOCAL_MAC, LOCAL_IP));
    }

    #[test]
    fn arp_for_a_local_ip_stays_local_and_unknown_ip_floods() {
        let mut t = two_host_table();
        let other_local = MacAddr([2, 0x42, 10, 0, 0, 4]);
        t.local_macs.insert(other_local);
        t.arp.insert("10.0.0.4".parse().unwrap(), other_local);
        let req = arp_request(LOCAL_MAC, LOCAL_IP, "10.0.0.4".parse().unwrap());
        assert_eq!(run(&req, &t).0, Encap::Local);
        let req = arp_request(LOCAL_MAC, LOCAL_IP, "10.0.0.77".parse().unwrap());
        assert_eq!(run(&req, &t).0, Encap::Flood(&[vtep2()]));
        // Gratuitous ARP announces; it is flooded, never answered.
        let garp = arp_request(LOCAL_MAC, LOCAL_IP, LOCAL_IP);
        assert_eq!(run(&garp, &t).0, Encap::Flood(&[vtep2()]));
    }

    #[test]
    fn neighbour_solicitation_is_answered_from_the_table() {
        let mut t = two_host_table();
        let target = REMOTE_MAC.ipv6_link_local();
        t.nd.insert(target, REMOTE_MAC);
        let ns = neighbour_solicitation(LOCAL_MAC, LOCAL_MAC.ipv6_link_local(), target);
        let (out, reply) = run(&ns, &t);
        assert_eq!(
            out,
            Encap::Reply {
                len: 86,
                kind: ReplyKind::Nd
            }
        );
        let eth = ethernet::Frame::new_checked(&reply[..]).unwrap();
        assert_eq!((eth.dst(), eth.src()), (LOCAL_MAC, REMOTE_MAC));
        // ICMPv6 type 136 after the 40-byte IPv6 header.
        assert_eq!(eth.payload()[40], 136);
    }

    #[test]
    fn spoofed_and_invalid_sources_are_dropped() {
        let t = two_host_table();
        // A local frame claiming the remote endpoint's MAC.
        let f = udp_frame(REMOTE_MAC, LOCAL_MAC, REMOTE_IP, LOCAL_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::SpoofedSource));
        // The local endpoint claiming the remote endpoint's IP.
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, REMOTE_IP, LOCAL_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::SpoofedSource));
        // Gratuitous ARP for someone else's IP.
        let f = arp_request(LOCAL_MAC, REMOTE_IP, REMOTE_IP);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::SpoofedSource));
        // A MAC that is no endpoint's is the host's own (its bridge): it stays here, whatever
        // it claims.
        let stranger = MacAddr([2, 0, 0, 0, 0, 9]);
        let f = udp_frame(stranger, REMOTE_MAC, REMOTE_IP, LOCAL_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Local);
        let f = udp_frame(stranger, MacAddr::BROADCAST, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Local);
        // A router advertisement from the local container.
        let ra = icmpv6_router_advert(LOCAL_MAC);
        assert_eq!(run(&ra, &t).0, Encap::Drop(DropReason::RouterAdvert));
        let f = udp_frame(MacAddr::BROADCAST, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::InvalidSourceMac));
    }

    #[test]
    fn truncated_and_oversized_frames_are_dropped() {
        let t = two_host_table();
        assert_eq!(run(&[0u8; 13], &t).0, Encap::Drop(DropReason::Truncated));
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 1600);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::Oversized));
    }

    #[test]
    fn arp_for_the_gateway_is_left_to_the_local_bridge() {
        let t = two_host_table_with_gateway();
        // Without the gateway in the table, the request would be flooded to every peer.
        let req = arp_request(LOCAL_MAC, LOCAL_IP, GATEWAY.ip);
        assert_eq!(run(&req, &two_host_table()).0, Encap::Flood(&[vtep2()]));
        assert_eq!(run(&req, &t).0, Encap::Local);
    }

    #[test]
    fn frames_to_or_from_the_gateway_never_cross_the_overlay() {
        let t = two_host_table_with_gateway();
        // A container's frame routed out through its gateway, which reached the TAP anyway.
        let out = udp_frame(
            LOCAL_MAC,
            GATEWAY.mac,
            LOCAL_IP,
            "192.0.2.9".parse().unwrap(),
            100,
        );
        assert_eq!(run(&out, &t).0, Encap::Local);
        // The host (the bridge) asking for a remote container, or sending to one: its peers
        // would drop it, and the answer could not come back to this host's gateway.
        let ask = arp_request(GATEWAY.mac, GATEWAY.ip, REMOTE_IP);
        assert_eq!(run(&ask, &t).0, Encap::Local);
        let f = udp_frame(GATEWAY.mac, REMOTE_MAC, GATEWAY.ip, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Local);
        let f = udp_frame(GATEWAY.mac, MacAddr::BROADCAST, GATEWAY.ip, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Local);
    }

    #[test]
    fn a_container_claiming_the_gateway_address_is_spoofing() {
        let t = two_host_table_with_gateway();
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, GATEWAY.ip, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::SpoofedSource));
        let garp = arp_request(LOCAL_MAC, GATEWAY.ip, GATEWAY.ip);
        assert_eq!(run(&garp, &t).0, Encap::Drop(DropReason::SpoofedSource));
        // Its ordinary traffic still goes.
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Unicast(vtep2()));
    }

    #[test]
    fn learned_macs_are_used_until_they_age() {
        let learned = LearnedTable::new(std::time::Duration::from_secs(300));
        let mut nt = NetworkTable::new();
        nt.local_macs.insert(LOCAL_MAC);
        nt.arp.insert(LOCAL_IP, LOCAL_MAC);
        nt.flood.push(FloodEntry {
            addr: vtep2(),
            learn: true,
        });
        let t = Table::compile(&nt);
        let behind: SocketAddr = "192.168.50.9:4789".parse().unwrap();
        let far = MacAddr([2, 0, 0, 0, 0, 0x77]);
        learned.learn(vni(), far, behind, 0);
        let f = udp_frame(LOCAL_MAC, far, LOCAL_IP, REMOTE_IP, 10);
        let mut reply = [0; REPLY_BUF_LEN];
        let size = Size::Plain { max_frame: 1518 };
        assert_eq!(
            encap(&f, size, vni(), &t, &learned, 1_000, &mut reply),
            Encap::Unicast(behind)
        );
        assert_eq!(
            encap(&f, size, vni(), &t, &learned, 301_000, &mut reply),
            Encap::Flood(&[vtep2()])
        );
    }

    /// `frame` (Ethernet + IPv4) with the IPv4 flags field set to `flags`, its header
    /// checksum fixed.
    fn with_flags(mut frame: Vec<u8>, flags: u16) -> Vec<u8> {
        frame[20..22].copy_from_slice(&flags.to_be_bytes());
        frame[24..26].copy_from_slice(&[0, 0]);
        let c = ovnet_wire::checksum::checksum(&frame[14..34]);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
        frame
    }

    /// `frame` (Ethernet + IPv4) with DF set.
    fn with_df(frame: Vec<u8>) -> Vec<u8> {
        with_flags(frame, 0x4000)
    }

    /// An Ethernet + IPv4 + UDP frame whose IP packet is `ip_len` bytes, DF set or clear.
    fn v4(ip_len: usize, df: bool) -> Vec<u8> {
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, ip_len - 28);
        with_flags(f, if df { 0x4000 } else { 0 })
    }

    /// An Ethernet + IPv6 + UDP frame between the endpoints' link-local addresses, whose IP
    /// packet is `ip_len` bytes.
    fn v6(ip_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2(LOCAL_MAC.0, REMOTE_MAC.0)
            .ipv6(
                LOCAL_MAC.ipv6_link_local().octets(),
                REMOTE_MAC.ipv6_link_local().octets(),
                64,
            )
            .udp(5000, 5001)
            .write(&mut out, &vec![0xa5; ip_len - 48])
            .unwrap();
        out
    }

    /// Host 1's table with the path to host 2 carrying `mtu`-byte packets, and 1450 to any
    /// other VTEP.
    fn narrow(mtu: u32) -> NetworkTable {
        let mut t = two_host_table();
        t.path_mtu.insert(vtep2().ip(), mtu);
        t.default_path_mtu = 1450;
        t
    }

    #[test]
    fn frames_that_fit_the_path_go_as_they_are() {
        let t = narrow(1350);
        assert_eq!(run(&v4(1350, true), &t).0, Encap::Unicast(vtep2()));
        assert_eq!(run(&v4(100, true), &t).0, Encap::Unicast(vtep2()));
        assert_eq!(run(&v6(1350), &t).0, Encap::Unicast(vtep2()));
        // Nothing known of the path: up to the network's MTU.
        assert_eq!(
            run(&v4(1450, true), &two_host_table()).0,
            Encap::Unicast(vtep2())
        );
    }

    #[test]
    fn ipv4_with_df_too_big_for_the_path_is_answered_with_the_path_mtu() {
        let t = narrow(1350);
        assert_eq!(
            run(&v4(1351, true), &t).0,
            Encap::TooBig { mtu: 1350 },
            "one byte over"
        );
        assert_eq!(run(&v4(1450, true), &t).0, Encap::TooBig { mtu: 1350 });
        // The answer the send path writes from it: "fragmentation needed", mtu 1350.
        let mut out = [0u8; icmp::MAX_LEN];
        let n = icmp::build_too_big(&v4(1450, true), 1350, &mut out).unwrap();
        assert_eq!(&out[14 + 20..14 + 20 + 2], &[3, 4]);
        assert_eq!(&out[14 + 26..14 + 28], &1350u16.to_be_bytes());
        assert!(n <= 14 + 576);
    }

    #[test]
    fn ipv6_too_big_for_the_path_is_answered_with_packet_too_big() {
        let t = narrow(1350);
        assert_eq!(run(&v6(1351), &t).0, Encap::TooBig { mtu: 1350 });
        assert_eq!(run(&v6(1450), &t).0, Encap::TooBig { mtu: 1350 });
        let mut out = [0u8; icmp::MAX_LEN];
        icmp::build_too_big(&v6(1450), 1350, &mut out).unwrap();
        // ICMPv6 type 2, code 0, then the 32-bit MTU.
        assert_eq!(&out[14 + 40..14 + 42], &[2, 0]);
        assert_eq!(&out[14 + 44..14 + 48], &1350u32.to_be_bytes());
        // Below the IPv6 minimum MTU nothing may be answered: the host fragments instead.
        assert_eq!(
            run(&v6(1300), &narrow(1200)).0,
            Encap::Fragment {
                dst: vtep2(),
                mtu: 1200
            }
        );
    }

    #[test]
    fn what_may_not_be_refused_goes_for_the_host_to_fragment() {
        let t = narrow(1350);
        let frag = Encap::Fragment {
            dst: vtep2(),
            mtu: 1350,
        };
        // IPv4 without DF, as the kernel's vxlan sends it: outer fragments.
        assert_eq!(run(&v4(1450, false), &t).0, frag);
        // An ICMP error is never answered with one.
        let mut err = Vec::new();
        etherparse::PacketBuilder::ethernet2(LOCAL_MAC.0, REMOTE_MAC.0)
            .ipv4(LOCAL_IP.octets(), REMOTE_IP.octets(), 64)
            .icmpv4(etherparse::Icmpv4Type::TimeExceeded(
                etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
            ))
            .write(&mut err, &[0; 1400])
            .unwrap();
        assert_eq!(run(&with_df(err), &t).0, frag);
        // A path below 576 bytes: no sender would take it, so no answer.
        assert_eq!(
            run(&v4(600, true), &narrow(500)).0,
            Encap::Fragment {
                dst: vtep2(),
                mtu: 500
            }
        );
    }

    #[test]
    fn a_vlan_tag_is_not_part_of_the_packet() {
        let t = narrow(1350);
        let plain = v4(1350, true);
        let mut tagged = plain[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        tagged.extend_from_slice(&plain[12..]);
        assert_eq!(tagged.len(), 1350 + 18);
        assert_eq!(run(&tagged, &t).0, Encap::Unicast(vtep2()));
        // One byte more does not fit; not an untagged IP frame, so never answered.
        tagged.push(0);
        assert!(matches!(run(&tagged, &t).0, Encap::Fragment { .. }));
    }

    #[test]
    fn a_super_frame_fits_by_its_segments() {
        let t = Table::compile(&narrow(1350));
        let learned = LearnedTable::new(DEFAULT_AGEING);
        // 60 KB of TCP, DF set.
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2(LOCAL_MAC.0, REMOTE_MAC.0)
            .ipv4(LOCAL_IP.octets(), REMOTE_IP.octets(), 64)
            .tcp(40000, 80, 1, 65535)
            .write(&mut f, &vec![0x11; 60_000])
            .unwrap();
        let f = with_df(f);
        let decide = |segment| {
            let size = Size::Segments { segment };
            encap(&f, size, vni(), &t, &learned, 0, &mut [0; REPLY_BUF_LEN])
        };
        // Segments of 1310 bytes: 14 + 20 + 20 + 1310 = 1364, the path's 1350 and Ethernet.
        // The super-frame's own length is no limit: it is never on the wire.
        assert_eq!(decide(1364), Encap::Unicast(vtep2()));
        assert_eq!(decide(1365), Encap::TooBig { mtu: 1350 });
    }

    #[test]
    fn learned_vteps_get_the_default_path_mtu() {
        let learned = LearnedTable::new(DEFAULT_AGEING);
        let mut nt = narrow(1450);
        nt.default_path_mtu = 1300;
        let t = Table::compile(&nt);
        let behind: SocketAddr = "192.168.50.9:4789".parse().unwrap();
        let far = MacAddr([2, 0, 0, 0, 0, 0x77]);
        learned.learn(vni(), far, behind, 0);
        let mut f = udp_frame(LOCAL_MAC, far, LOCAL_IP, REMOTE_IP, 1400 - 28);
        f = with_df(f);
        let mut reply = [0; REPLY_BUF_LEN];
        let size = Size::Plain { max_frame: 1518 };
        assert_eq!(
            encap(&f, size, vni(), &t, &learned, 0, &mut reply),
            Encap::TooBig { mtu: 1300 }
        );
    }

    #[test]
    fn each_flooded_copy_is_checked_against_its_own_path() {
        let mut nt = narrow(1350);
        let vtep3: SocketAddr = "192.168.50.3:4789".parse().unwrap();
        nt.flood.push(FloodEntry {
            addr: vtep3,
            learn: false,
        });
        nt.path_mtu.insert(vtep3.ip(), 1450);
        let t = Table::compile(&nt);
        let unknown = MacAddr([2, 0x42, 10, 0, 0, 99]);
        let f = with_df(udp_frame(
            LOCAL_MAC,
            unknown,
            LOCAL_IP,
            REMOTE_IP,
            1400 - 28,
        ));
        let len = Size::Plain { max_frame: 1518 }.wire_len(&f);
        assert!(!t.fits_every_path(len));
        let fits: Vec<Fit> = t
            .flood()
            .iter()
            .map(|d| fit(&f, len, t.path_mtu(d.ip())))
            .collect();
        assert_eq!(fits, [Fit::TooBig(1350), Fit::Fits]);
    }

    #[test]
    fn fit_never_panics_on_what_a_container_sends() {
        for len in 0..80 {
            let junk = vec![0x45; len];
            let _ = fit(&junk, 2000, 1350);
            let _ = fit(&junk, len, 0);
        }
        assert_eq!(fit(&[], 0, 0), Fit::Fits);
        assert_eq!(fit(&[0xff; 20], 2000, 1350), Fit::Fragment(1350));
    }
}
