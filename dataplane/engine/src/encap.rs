//! The send path's decision for one frame read from a network's TAP: which VTEP(s) get it,
//! whether it is answered locally (ARP / IPv6 ND from the table) or stays on the host (the
//! local bridge's destinations, the network's gateway), or why it is dropped.
//!
//! A pure function of the frame and the tables, with no socket in sight: the worker carries out
//! the [`Encap`] it returns, and tests check decisions directly.

use std::net::{Ipv4Addr, SocketAddr};

use ovnet_wire::{arp, ethernet, ip, nd, MacAddr, Vni};

use crate::counters::DropReason;
use crate::fdb::{LearnedTable, Table};

/// What to do with a frame read from the TAP.
#[derive(Debug, PartialEq, Eq)]
pub enum Encap<'t> {
    /// Send one VXLAN datagram to this VTEP.
    Unicast(SocketAddr),
    /// Send a copy to each of these VTEPs (broadcast, multicast, unknown unicast).
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

/// Decides what happens to `frame`, read from the TAP of network `vni` whose largest allowed
/// frame is `max_frame` bytes. ARP/ND answers are written into `reply`.
pub fn encap<'t>(
    frame: &[u8],
    vni: Vni,
    table: &'t Table,
    learned: &LearnedTable,
    now_ms: u64,
    max_frame: usize,
    reply: &mut [u8; REPLY_BUF_LEN],
) -> Encap<'t> {
    let Ok(eth) = ethernet::Frame::new_checked(frame) else {
        return Encap::Drop(DropReason::Truncated);
    };
    if frame.len() > max_frame {
        return Encap::Drop(DropReason::Oversized);
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
    // A local container must not claim a remote endpoint's MAC, nor an IP bound to another MAC.
    if table.macs.contains_key(&src) || spoofs_ip(frame, &src, table) {
        return Encap::Drop(DropReason::SpoofedSource);
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
        return Encap::Unicast(vtep);
    }
    if let Some(vtep) = learned.lookup(vni, &dst, now_ms) {
        return Encap::Unicast(vtep);
    }
    if table.is_local(&dst) {
        return Encap::Local;
    }
    flood(table)
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

/// Whether the frame's sender IPv4 (IP source or ARP sender) is bound to a different MAC.
fn spoofs_ip(frame: &[u8], src: &MacAddr, table: &Table) -> bool {
    match ip::sender_ipv4(frame) {
        Some(ip) if ip != Ipv4Addr::UNSPECIFIED => {
            table.arp.get(&ip).is_some_and(|owner| owner != src)
        }
        _ => false,
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
        let out = encap(frame, vni(), t, &learned, 0, 1514 + 4, &mut reply);
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
    fn broadcast_and_unknown_unicast_flood() {
        let t = two_host_table();
        let f = udp_frame(LOCAL_MAC, MacAddr::BROADCAST, LOCAL_IP, REMOTE_IP, 10);
        assert_eq!(run(&f, &t).0, Encap::Flood(&[vtep2()]));
        let unknown = MacAddr([2, 0x42, 10, 0, 0, 99]);
        let f = udp_frame(LOCAL_MAC, unknown, LOCAL_IP, REMOTE_IP, 10);
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
        // A fresh MAC claiming the remote endpoint's IP.
        let f = udp_frame(
            MacAddr([2, 0, 0, 0, 0, 9]),
            REMOTE_MAC,
            REMOTE_IP,
            LOCAL_IP,
            10,
        );
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::SpoofedSource));
        // Gratuitous ARP for someone else's IP.
        let f = arp_request(MacAddr([2, 0, 0, 0, 0, 9]), REMOTE_IP, REMOTE_IP);
        assert_eq!(run(&f, &t).0, Encap::Drop(DropReason::SpoofedSource));
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
        assert_eq!(
            encap(&f, vni(), &t, &learned, 1_000, 1518, &mut reply),
            Encap::Unicast(behind)
        );
        assert_eq!(
            encap(&f, vni(), &t, &learned, 301_000, 1518, &mut reply),
            Encap::Flood(&[vtep2()])
        );
    }
}
