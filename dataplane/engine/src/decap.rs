//! The receive path's checks for one VXLAN datagram, in two pure steps:
//! [`parse`] validates the VXLAN header (drops counted globally, the VNI is not known yet), and
//! [`admit`] validates the inner frame against the network's table (drops counted per network)
//! and learns the source MAC where the sender is a learning VTEP.
//!
//! What is refused, in order: short datagrams, a clear `I` flag, unknown VNIs, oversized inner
//! frames, senders that are not VTEPs of the network, inner sources that are not unicast, and
//! frames claiming a MAC or IP owned by an endpoint elsewhere (including this host's own, which
//! also catches loops), and new source MACs from a learning VTEP once the network's learned
//! table is full.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ovnet_wire::{ethernet, gso, ip, vxlan, Vni};

use crate::counters::DropReason;
use crate::fdb::{Learn, LearnedTable, Table};

/// Validates the VXLAN header of `datagram`; returns the VNI and the inner frame.
/// Reserved bits are ignored, as RFC 7348 asks of receivers.
pub fn parse(datagram: &[u8]) -> Result<(Vni, &[u8]), DropReason> {
    let pkt = vxlan::Packet::new_checked(datagram).map_err(|e| match e {
        ovnet_wire::Error::BadFlags => DropReason::BadFlags,
        _ => DropReason::Truncated,
    })?;
    let inner = &datagram[vxlan::HEADER_LEN..];
    if inner.len() < ethernet::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    Ok((pkt.vni(), inner))
}

/// Whether the event of an admitted frame changed the learned table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Deliver; nothing learned.
    Deliver,
    /// Deliver; the source MAC was learned or moved.
    DeliverLearned,
}

/// Checks an inner `frame` of network `vni` received from `from`.
pub fn admit(
    frame: &[u8],
    from: SocketAddr,
    vni: Vni,
    table: &Table,
    learned: &LearnedTable,
    now_ms: u64,
    max_frame: usize,
) -> Result<Admitted, DropReason> {
    // A TCP frame larger than the MTU is a super-frame (over a veth underlay the kernel's
    // vxlan delivers its TSO packets unsegmented): the caller passes it on. Anything else that
    // large is dropped.
    if frame.len() > max_frame && gso::tcp_frame(frame).is_none() {
        return Err(DropReason::Oversized);
    }
    let sender = table
        .sender(canonical(from.ip()))
        .ok_or(DropReason::UnknownVtep)?;
    let eth = ethernet::Frame::new_checked(frame).map_err(|_| DropReason::Truncated)?;
    let src = eth.src();
    if !src.is_unicast() {
        return Err(DropReason::InvalidSourceMac);
    }
    // Our own endpoints' MACs never arrive from the network (a loop, or spoofing), and a MAC the
    // control plane placed behind another VTEP cannot come from this one.
    if table.is_local(&src) {
        return Err(DropReason::SpoofedSource);
    }
    let bound = table.vtep_of(&src);
    if bound.is_some_and(|owner| owner.ip() != canonical(from.ip())) {
        return Err(DropReason::SpoofedSource);
    }
    if let Some(sip) = ip::sender_ipv4(frame) {
        if sip != Ipv4Addr::UNSPECIFIED && table.arp.get(&sip).is_some_and(|m| *m != src) {
            return Err(DropReason::SpoofedSource);
        }
    }
    if sender.learn && bound.is_none() {
        let vtep = SocketAddr::new(canonical(from.ip()), sender.port);
        match learned.learn(vni, src, vtep, now_ms) {
            Learn::Known => {}
            Learn::New | Learn::Moved => return Ok(Admitted::DeliverLearned),
            // Delivering it would teach the bridge behind the TAP what this table refused.
            Learn::Full => return Err(DropReason::LearnedTableFull),
        }
    }
    Ok(Admitted::Deliver)
}

/// An IPv4-mapped IPv6 source (from a dual-stack socket) compared as the IPv4 it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::{FloodEntry, NetworkTable, DEFAULT_AGEING};
    use crate::testutil::*;
    use ovnet_wire::MacAddr;

    fn datagram(vni: u32, frame: &[u8]) -> Vec<u8> {
        let mut d = vxlan::header(Vni::new(vni).unwrap()).to_vec();
        d.extend_from_slice(frame);
        d
    }

    /// Host 2's view of host 1: the mirror of `two_host_table`.
    fn host2_table() -> Table {
        let mut t = NetworkTable::new();
        t.macs.insert(LOCAL_MAC, vtep1());
        t.arp.insert(LOCAL_IP, LOCAL_MAC);
        t.arp.insert(REMOTE_IP, REMOTE_MAC);
        t.local_macs.insert(REMOTE_MAC);
        t.flood.push(FloodEntry {
            addr: vtep1(),
            learn: false,
        });
        Table::compile(&t)
    }

    fn admit_at_host2(frame: &[u8], from: SocketAddr) -> Result<Admitted, DropReason> {
        let learned = LearnedTable::new(DEFAULT_AGEING);
        admit(frame, from, vni(), &host2_table(), &learned, 0, 1518)
    }

    /// Host 2's table with the network's gateway, which every host has on its bridge.
    fn host2_table_with_gateway() -> Table {
        let mut t = NetworkTable::new();
        t.macs.insert(LOCAL_MAC, vtep1());
        t.arp.insert(LOCAL_IP, LOCAL_MAC);
        t.arp.insert(REMOTE_IP, REMOTE_MAC);
        t.local_macs.insert(REMOTE_MAC);
        t.flood.push(FloodEntry {
            addr: vtep1(),
            learn: false,
        });
        t.gateway = Some(GATEWAY);
        Table::compile(&t)
    }

    #[test]
    fn frames_claiming_the_gateway_are_spoofed() {
        let learned = LearnedTable::new(DEFAULT_AGEING);
        let t = host2_table_with_gateway();
        let from: SocketAddr = "192.168.50.1:4789".parse().unwrap();
        let admit2 = |f: &[u8]| admit(f, from, vni(), &t, &learned, 0, 1518);
        // The gateway's MAC, from a peer: its own gateway's frames never leave it.
        let f = udp_frame(GATEWAY.mac, REMOTE_MAC, GATEWAY.ip, REMOTE_IP, 20);
        assert_eq!(admit2(&f), Err(DropReason::SpoofedSource));
        let f = arp_request(GATEWAY.mac, GATEWAY.ip, REMOTE_IP);
        assert_eq!(admit2(&f), Err(DropReason::SpoofedSource));
        // The gateway's address behind a container's MAC.
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, GATEWAY.ip, REMOTE_IP, 20);
        assert_eq!(admit2(&f), Err(DropReason::SpoofedSource));
        // The container's own traffic is admitted.
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 20);
        assert_eq!(admit2(&f), Ok(Admitted::Deliver));
    }

    #[test]
    fn parse_accepts_reserved_bits_and_returns_inner_frame() {
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 20);
        let mut d = datagram(42, &f);
        d[0] = 0xff; // every flag bit set: only I matters
        d[1] = 0xff;
        d[7] = 0xff; // reserved byte after the VNI
        let (v, inner) = parse(&d).unwrap();
        assert_eq!(v.get(), 42);
        assert_eq!(inner, &f[..]);
    }

    #[test]
    fn parse_rejects_short_and_flagless_datagrams() {
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 20);
        let d = datagram(42, &f);
        assert_eq!(parse(&d[..7]), Err(DropReason::Truncated));
        assert_eq!(parse(&d[..8 + 13]), Err(DropReason::Truncated));
        let mut bad = d.clone();
        bad[0] = 0x00;
        assert_eq!(parse(&bad), Err(DropReason::BadFlags));
        assert_eq!(parse(&[]), Err(DropReason::Truncated));
    }

    #[test]
    fn known_vtep_is_admitted_from_any_source_port() {
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 20);
        assert_eq!(
            admit_at_host2(&f, "192.168.50.1:53211".parse().unwrap()),
            Ok(Admitted::Deliver)
        );
        // The same, from a dual-stack socket's IPv4-mapped view.
        assert_eq!(
            admit_at_host2(&f, "[::ffff:192.168.50.1]:4789".parse().unwrap()),
            Ok(Admitted::Deliver)
        );
    }

    #[test]
    fn unknown_vtep_is_dropped() {
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 20);
        assert_eq!(
            admit_at_host2(&f, "192.168.50.77:4789".parse().unwrap()),
            Err(DropReason::UnknownVtep)
        );
    }

    #[test]
    fn spoofing_is_dropped() {
        let from = "192.168.50.1:4789".parse().unwrap();
        // Host 1 sends a frame claiming host 2's own endpoint MAC (a loop or spoof).
        let f = udp_frame(REMOTE_MAC, REMOTE_MAC, REMOTE_IP, REMOTE_IP, 20);
        assert_eq!(admit_at_host2(&f, from), Err(DropReason::SpoofedSource));
        // A new MAC from host 1 claiming 10.0.0.2, which belongs to LOCAL_MAC.
        let f = udp_frame(
            MacAddr([2, 0, 0, 0, 0, 8]),
            REMOTE_MAC,
            LOCAL_IP,
            REMOTE_IP,
            20,
        );
        assert_eq!(admit_at_host2(&f, from), Err(DropReason::SpoofedSource));
        // Multicast source MAC.
        let f = udp_frame(
            MacAddr([1, 0, 0x5e, 0, 0, 1]),
            REMOTE_MAC,
            LOCAL_IP,
            REMOTE_IP,
            20,
        );
        assert_eq!(admit_at_host2(&f, from), Err(DropReason::InvalidSourceMac));
    }

    #[test]
    fn a_mac_bound_to_one_vtep_cannot_come_from_another() {
        let mut t = NetworkTable::new();
        t.macs.insert(LOCAL_MAC, vtep1());
        t.flood.push(FloodEntry {
            addr: "192.168.50.3:4789".parse().unwrap(),
            learn: false,
        });
        let table = Table::compile(&t);
        let learned = LearnedTable::new(DEFAULT_AGEING);
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 20);
        let from = "192.168.50.3:4789".parse().unwrap();
        assert_eq!(
            admit(&f, from, vni(), &table, &learned, 0, 1518),
            Err(DropReason::SpoofedSource)
        );
    }

    #[test]
    fn oversized_inner_frame_is_dropped() {
        let f = udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, 1600);
        assert_eq!(
            admit_at_host2(&f, "192.168.50.1:4789".parse().unwrap()),
            Err(DropReason::Oversized)
        );
    }

    #[test]
    fn oversized_tcp_is_admitted_for_segmentation() {
        let b = etherparse::PacketBuilder::ethernet2(LOCAL_MAC.0, REMOTE_MAC.0)
            .ipv4(LOCAL_IP.octets(), REMOTE_IP.octets(), 64)
            .tcp(1, 2, 3, 4);
        let mut f = Vec::new();
        b.write(&mut f, &[0u8; 20_000]).unwrap();
        assert_eq!(
            admit_at_host2(&f, "192.168.50.1:4789".parse().unwrap()),
            Ok(Admitted::Deliver)
        );
    }

    #[test]
    fn learning_vtep_teaches_its_macs() {
        let ext: SocketAddr = "192.168.50.9:4789".parse().unwrap();
        let mut t = NetworkTable::new();
        t.flood.push(FloodEntry {
            addr: ext,
            learn: true,
        });
        let table = Table::compile(&t);
        let learned = LearnedTable::new(DEFAULT_AGEING);
        let far = MacAddr([2, 0, 0, 0, 0, 0x77]);
        let f = udp_frame(far, REMOTE_MAC, "10.0.0.77".parse().unwrap(), REMOTE_IP, 20);
        let from: SocketAddr = "192.168.50.9:40001".parse().unwrap();
        assert_eq!(
            admit(&f, from, vni(), &table, &learned, 0, 1518),
            Ok(Admitted::DeliverLearned)
        );
        assert_eq!(
            admit(&f, from, vni(), &table, &learned, 10, 1518),
            Ok(Admitted::Deliver)
        );
        // Learned at the VTEP's VXLAN port, not the datagram's (random) source port.
        assert_eq!(learned.lookup(vni(), &far, 10), Some(ext));
    }

    #[test]
    fn a_full_learned_table_drops_new_sources_and_keeps_known_ones() {
        let ext: SocketAddr = "192.168.50.9:4789".parse().unwrap();
        let mut t = NetworkTable::new();
        t.flood.push(FloodEntry {
            addr: ext,
            learn: true,
        });
        let table = Table::compile(&t);
        let learned = LearnedTable::with_limit(DEFAULT_AGEING, 2);
        let from: SocketAddr = "192.168.50.9:40001".parse().unwrap();
        let frame = |last: u8| {
            let src = MacAddr([2, 0, 0, 0, 0, last]);
            udp_frame(src, REMOTE_MAC, "10.0.0.77".parse().unwrap(), REMOTE_IP, 20)
        };
        let admit_at = |f: &[u8]| admit(f, from, vni(), &table, &learned, 0, 1518);
        assert_eq!(admit_at(&frame(1)), Ok(Admitted::DeliverLearned));
        assert_eq!(admit_at(&frame(2)), Ok(Admitted::DeliverLearned));
        assert_eq!(admit_at(&frame(3)), Err(DropReason::LearnedTableFull));
        assert_eq!(admit_at(&frame(1)), Ok(Admitted::Deliver));
        assert_eq!(learned.len(), 2);
    }
}

/// Hostile input through every pure step of both paths: nothing may panic, whatever the bytes.
#[cfg(test)]
mod hostile {
    use super::*;
    use crate::encap::{encap, REPLY_BUF_LEN};
    use crate::fdb::{FloodEntry, NetworkTable, DEFAULT_AGEING};
    use crate::testutil::*;
    use ovnet_wire::{checksum, gro, gso};

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Makes datagrams that are often almost valid: a VXLAN header, then an Ethernet/IPv4
    /// frame (UDP, a new TCP flow, or the next segment of the last TCP flow, so that runs
    /// form), with random corruptions, truncations and extensions in half of them.
    struct Gen {
        r: Rng,
        /// The next in-order sequence number and payload length of the last TCP flow.
        next: Option<(u32, usize)>,
    }

    impl Gen {
        fn datagram(&mut self) -> Vec<u8> {
            let r = &mut self.r;
            let mut d = vxlan::header(vni()).to_vec();
            let tcp = |seq: u32, len: usize| {
                let b = etherparse::PacketBuilder::ethernet2(LOCAL_MAC.0, REMOTE_MAC.0)
                    .ipv4(LOCAL_IP.octets(), REMOTE_IP.octets(), 64)
                    .tcp(1, 2, seq, 100)
                    .ack(1);
                let mut v = Vec::new();
                b.write(&mut v, &vec![7u8; len]).unwrap();
                v
            };
            let mut f = match (r.below(4), self.next) {
                (0, _) => udp_frame(LOCAL_MAC, REMOTE_MAC, LOCAL_IP, REMOTE_IP, r.below(3000)),
                (1, _) | (_, None) => {
                    let (seq, len) = (r.next() as u32, r.below(65_000));
                    self.next = Some((seq.wrapping_add(len as u32), len));
                    tcp(seq, len)
                }
                (_, Some((seq, len))) => {
                    self.next = Some((seq.wrapping_add(len as u32), len));
                    tcp(seq, len)
                }
            };
            if r.below(2) == 0 {
                for _ in 0..=r.below(8) {
                    if !f.is_empty() {
                        let i = r.below(f.len());
                        f[i] = r.next() as u8;
                    }
                }
                if r.below(3) == 0 {
                    f.truncate(r.below(f.len() + 1));
                }
                if r.below(5) == 0 {
                    d[0] = r.next() as u8;
                }
            }
            d.extend_from_slice(&f);
            d
        }
    }

    /// How far the inputs got: how many passed each step.
    #[derive(Debug, Default)]
    struct Depth {
        inputs: usize,
        parsed: usize,
        admitted: usize,
        checksum_ok: usize,
        segmented: usize,
        encapsulated: usize,
        candidates: usize,
        continued: usize,
        coalesced: usize,
    }

    #[test]
    fn random_datagrams_never_panic_the_receive_or_send_path() {
        let mut g = Gen {
            r: Rng(0x0123_4567_89ab_cdef),
            next: None,
        };
        let mut t = NetworkTable::new();
        t.macs.insert(LOCAL_MAC, vtep1());
        t.arp.insert(LOCAL_IP, LOCAL_MAC);
        t.flood.push(FloodEntry {
            addr: vtep1(),
            learn: true,
        });
        let table = Table::compile(&t);
        // The send path sees the frames as host 1 does, where they come from its container,
        // with a path to host 2 narrower than the network (large frames are checked by fit).
        let mut narrow = two_host_table();
        narrow.path_mtu.insert(vtep2().ip(), 1350);
        let host1 = Table::compile(&narrow);
        let learned = LearnedTable::new(DEFAULT_AGEING);
        let mut scratch = vec![0u8; 70_000];
        let mut reply = [0u8; REPLY_BUF_LEN];
        let mut header = [0u8; 256];
        let mut prev: Option<(Vec<u8>, gro::Segment)> = None;
        let mut depth = Depth::default();
        for i in 0..3000 {
            let mut d = g.datagram();
            depth.inputs += 1;
            let from = "192.168.50.1:4789".parse().unwrap();
            let Ok((v, _)) = parse(&d) else { continue };
            depth.parsed += 1;
            let frame = &mut d[vxlan::HEADER_LEN..];
            if admit(frame, from, v, &table, &learned, i, 1468).is_ok() {
                depth.admitted += 1;
            }
            if matches!(
                checksum::complete_partial(frame),
                checksum::L4Checksum::Valid | checksum::L4Checksum::Completed
            ) {
                depth.checksum_ok += 1;
            }
            if gso::segment_tcp(frame, 1450, &mut scratch, |_| {}).is_ok() {
                depth.segmented += 1;
            }
            let unlimited = crate::encap::Size::Plain {
                max_frame: usize::MAX,
            };
            let e = encap(frame, unlimited, v, &host1, &learned, i, &mut reply);
            if !matches!(e, crate::encap::Encap::Drop(_)) {
                depth.encapsulated += 1;
            }
            if let Some(seg) = gro::candidate(frame) {
                depth.candidates += 1;
                if let Some((pf, ps)) = &prev {
                    if gro::continues(pf, ps, frame, &seg, ps.payload_len, 100) {
                        depth.continued += 1;
                    }
                }
                let n = gro::super_header(frame, &seg, 2, seg.payload_len * 2, true, &mut header);
                if n.is_some() {
                    depth.coalesced += 1;
                }
                prev = Some((frame.to_vec(), seg));
            }
        }
        // Random bytes that stop at the first check test nothing behind it: at least a tenth of
        // the inputs must pass every step, and some must fail each (the corruptions bite).
        eprintln!("{depth:?}");
        let share = |n: usize| n * 100 / depth.inputs;
        for (step, n) in [
            ("parse", depth.parsed),
            ("admit", depth.admitted),
            ("checksum", depth.checksum_ok),
            ("segmentation", depth.segmented),
            ("encap", depth.encapsulated),
            ("GRO candidate", depth.candidates),
            ("super-frame header", depth.coalesced),
        ] {
            assert!(
                (10..=99).contains(&share(n)),
                "{step}: {n} of {} inputs passed ({depth:?})",
                depth.inputs
            );
        }
        assert!(
            depth.continued >= depth.inputs / 10,
            "too few segments continued a run: {depth:?}"
        );
    }
}
