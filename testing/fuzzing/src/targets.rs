//! The fuzz targets' bodies (see the crate's table). Each reads its input with [`Input`]:
//! first a few choices (which table, which sender, an MSS), then packets.

use std::cell::RefCell;
use std::net::{Ipv4Addr, SocketAddrV4};

use ovnet_dataplane::decap;
use ovnet_dataplane::encap::{self, Encap, ReplyKind, Size, REPLY_BUF_LEN};
use ovnet_dataplane::fdb::{LearnedTable, DEFAULT_AGEING};
use ovnet_dataplane::port_security;
use ovnet_dns::{Decision, Transport, Zone};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::tunnel::{self, OuterV4};
use ovnet_wire::virtio::{self, VnetHdr};
use ovnet_wire::{arp, ethernet, flow, gro, gso, icmp, ip, nd, vxlan, MacAddr};

use crate::input::Input;
use crate::net::{self, addr, sender, tables, vni, LOCAL_MAC, MAX_FRAME, MTU, REMOTE_MAC};

/// Most segments one super-frame is cut into by the engine: 64 KB at an MSS of 536.
const MAX_SEGMENTS: usize = 65_536 / 536 + 1;
/// Largest frame a worker reads.
const BUF_LEN: usize = 65_536 + virtio::HEADER_LEN;
/// Most segments coalesced into one super-frame, as the receive path.
const MAX_RUN: usize = 64;

thread_local! {
    /// Where segments are built: allocated once per thread, not per input (the fuzzer runs
    /// millions).
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; BUF_LEN]);
    /// The same, for cutting a coalesced run back.
    static RUN_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; BUF_LEN]);
    /// Segment headers and their places, as the send path keeps them.
    static HEADERS: RefCell<(Vec<u8>, Vec<gso::SegmentRef>)> = RefCell::new((
        vec![0u8; MAX_SEGMENTS * (vxlan::HEADER_LEN + gso::MAX_HEADERS)],
        vec![gso::SegmentRef::default(); MAX_SEGMENTS],
    ));
}

/// VXLAN datagrams through the whole receive decision: header check, admission against the
/// table (senders, spoofing, learning with a small cap), the checksum, then what the receive
/// path does with the frame: split or pass on a super-frame, or coalesce a run of segments.
///
/// Input: a table choice, then per datagram a sender choice, a clock step and the datagram.
pub fn decap(data: &[u8]) {
    let mut input = Input::new(data);
    let table = &tables()[usize::from(input.u8() & 1)];
    let learned = LearnedTable::with_limit(DEFAULT_AGEING, 4);
    let mut run = Run::default();
    let mut now = 0u64;
    while !input.is_empty() {
        let from = sender(input.u8());
        now += u64::from(input.u8()) * 1000;
        let mut datagram = input.packet().to_vec();
        let Ok((v, inner)) = decap::parse(&datagram) else {
            continue;
        };
        assert_eq!(inner.len() + vxlan::HEADER_LEN, datagram.len());
        if v != vni() {
            continue;
        }
        let frame = &mut datagram[vxlan::HEADER_LEN..];
        if decap::admit(frame, from, v, table, &learned, now, MAX_FRAME).is_err() {
            continue;
        }
        assert!(learned.len() <= 4, "the learned table overflowed its cap");
        if frame.len() > MAX_FRAME {
            // Only TCP super-frames are admitted that large: passed on whole, or split.
            run.flush();
            assert!(
                gso::tcp_frame(frame).is_some(),
                "an oversized non-TCP frame got in"
            );
            pass_super(frame);
            split(frame, MTU);
            continue;
        }
        if checksum::complete_partial(frame) == L4Checksum::Invalid {
            continue;
        }
        run.offer(frame, true);
    }
    run.flush();
}

/// A `virtio_net_hdr` and a frame read from a network's TAP through the send decision, and
/// what the send path does with a super-frame it sends: segments' headers, or the outer
/// headers of tunnel GSO.
///
/// Input: a table choice, the 10-byte `virtio_net_hdr`, then the frame.
pub fn tap(data: &[u8]) {
    let mut input = Input::new(data);
    let table = &tables()[usize::from(input.u8() & 1)];
    let hdr = VnetHdr::parse(input.take(virtio::HEADER_LEN)).unwrap_or_default();
    let mut frame = input.rest().to_vec();
    let super_frame = hdr.is_tcp_gso();
    if !super_frame && hdr.needs_csum() && virtio::finish_csum(&mut frame, &hdr).is_err() {
        return;
    }
    let learned = LearnedTable::new(DEFAULT_AGEING);
    learned.learn(
        vni(),
        MacAddr([2, 0, 0, 0, 0, 0x77]),
        addr(net::EXTERNAL),
        0,
    );
    // A super-frame's segments carry at most one MTU-sized packet each, as the send path cuts.
    let size = if super_frame {
        Size::Segments { segment: MAX_FRAME }
    } else {
        Size::Plain {
            max_frame: MAX_FRAME,
        }
    };
    let mut reply = [0u8; REPLY_BUF_LEN];
    let decision = encap::encap(&frame, size, vni(), table, &learned, 0, &mut reply);
    let src = ethernet::Frame::new_checked(&frame[..]).map(|f| f.src());
    match decision {
        Encap::Reply { len, kind } => {
            let request = src.expect("only a whole frame is answered");
            check_reply(&reply[..len], kind, request);
        }
        Encap::Unicast(_) | Encap::Flood(_) | Encap::Fragment { .. } => {
            // Whatever leaves passed port security.
            let src = src.expect("only a whole frame leaves");
            assert_eq!(port_security::check(&frame, &src, table), Ok(()));
            if super_frame {
                send_super(&frame, &hdr);
            }
        }
        Encap::Local | Encap::Drop(_) | Encap::TooBig { .. } => {}
    }
}

/// A TCP super-frame cut into segments both ways the engine cuts: whole frames (the receive
/// path's split) and header-only segments gathered with the payload in place (the send path).
/// The segments' payloads must give back the frame's, each with valid checksums.
///
/// Input: the MTU or MSS (two bytes), a VXLAN-prefix choice, then the frame.
pub fn gso(data: &[u8]) {
    let mut input = Input::new(data);
    let size = usize::from(input.u16());
    let prefixed = input.u8() & 1 == 1;
    let frame = input.rest();
    split(frame, size);
    let prefix = if prefixed {
        vxlan::header(vni()).to_vec()
    } else {
        Vec::new()
    };
    cut_headers(frame, size, &prefix);
}

/// Frames coalesced into super-frames as the receive path coalesces a GRO run (TCP, and UDP
/// when the choice says so); each super-frame is cut back and must give the run's payloads
/// back, segment by segment.
///
/// Input: a UDP choice, then frames.
pub fn gro(data: &[u8]) {
    let mut input = Input::new(data);
    let udp = input.u8() & 1 == 1;
    let mut run = Run::default();
    while !input.is_empty() {
        let mut frame = input.packet().to_vec();
        if checksum::complete_partial(&mut frame) == L4Checksum::Invalid {
            continue;
        }
        run.offer(&frame, udp);
    }
    run.flush();
}

/// A TCP super-frame given the outer headers of UDP tunnel GSO, as the send path writes it
/// to the uplink: the headers must describe the frame (lengths, checksum, inner headers).
///
/// Input: the MSS (two bytes), an ECN choice, then the frame.
pub fn tunnel(data: &[u8]) {
    let mut input = Input::new(data);
    let mss = input.u16();
    let ecn = input.u8() & 1 == 1;
    let frame = input.rest();
    let Some(t) = gso::tcp_frame(frame) else {
        return;
    };
    tunnel_headers(frame, &t, mss, ecn);
}

/// ARP, neighbour discovery, ICMP "too big" answers, the sender addresses the spoofing checks
/// read, port security and the flow hash over one frame; what is built must parse back.
///
/// Input: an MTU choice, then the frame.
pub fn arp_nd(data: &[u8]) {
    let mut input = Input::new(data);
    let mtu = input.u16();
    let frame = input.rest();
    let _ = flow::flow_hash(frame);
    let _ = (ip::sender_ipv4(frame), ip::sender_ipv6(frame));
    let _ = (ip::arp_sender(frame), ip::icmpv6(frame));
    if let Ok(eth) = ethernet::Frame::new_checked(frame) {
        let repr = ethernet::Repr::parse(&eth).expect("a checked frame parses");
        let mut out = vec![0u8; frame.len()];
        let mut copy = ethernet::Frame::new_unchecked(&mut out[..]);
        repr.emit(&mut copy);
        copy.payload_mut().copy_from_slice(eth.payload());
        assert_eq!(out, frame, "an Ethernet frame re-emitted differs");
        for table in tables() {
            let _ = port_security::check(frame, &eth.src(), table);
        }
        arp_round_trip(eth.payload());
    }
    let mut out = [0u8; icmp::MAX_LEN];
    if let Ok(n) = arp::build_reply(frame, REMOTE_MAC, &mut out) {
        // To the request's sender hardware address, which need not be the frame's source
        // (the data plane answers only requests where they agree: port security).
        let request = arp::Packet::new_checked(&frame[ethernet::HEADER_LEN..])
            .expect("a request that was answered parses");
        check_reply(&out[..n], ReplyKind::Arp, request.sender_mac());
    }
    if let Some(sol) = nd::parse_solicitation(frame) {
        let n = nd::build_advertisement(&sol, REMOTE_MAC, &mut out)
            .expect("an advertisement fits 1280 bytes");
        check_reply(&out[..n], ReplyKind::Nd, sol.src_mac);
    }
    if let Some(kind) = icmp::classify(frame) {
        match icmp::build_too_big(frame, mtu, &mut out) {
            Ok(n) => check_too_big(&out[..n], kind),
            Err(e) => assert_eq!(e, ovnet_wire::Error::Malformed, "only a too small MTU"),
        }
    }
}

/// One DNS message through the resolver's decision, over UDP or TCP; an answer must be a DNS
/// message, a forwarded query must make an upstream query, and the rest of the input is
/// offered as the upstream's reply.
///
/// Input: a transport choice, the query (with a two-byte length), then the reply.
pub fn dns(data: &[u8]) {
    let mut input = Input::new(data);
    let transport = if input.u8() & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let query = input.packet();
    let reply = input.rest();
    match ovnet_dns::decide(query, zone(), transport) {
        Decision::Answer(a) => {
            assert!(
                a.bytes.len() >= ovnet_dns::decide::HEADER_LEN,
                "an answer without header"
            );
            if transport == Transport::Udp && !a.truncated {
                assert!(a.bytes.len() <= usize::from(ovnet_dns::decide::MAX_UDP_PAYLOAD));
            }
        }
        Decision::Forward(f) => {
            let id = u16::from_be_bytes([reply.first().copied().unwrap_or(0), 7]);
            assert!(
                f.upstream_query(id).is_some(),
                "a forwarded query could not be built"
            );
            let _ = f.check_reply(id, reply);
        }
        Decision::Drop(_) => {}
    }
}

/// The zone of network `demo`: two endpoints and one other network.
fn zone() -> &'static Zone {
    static ZONE: std::sync::OnceLock<Zone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| {
        let mut z = Zone::new("demo", false);
        z.add_endpoint("web", net::LOCAL_IP)
            .add_endpoint("db", net::REMOTE_IP)
            .add_network("other");
        z
    })
}

/// Segments of one flow waiting to become one super-frame, as the receive path's run.
#[derive(Debug, Default)]
struct Run {
    frames: Vec<(Vec<u8>, gro::Segment)>,
    ip_len: usize,
}

impl Run {
    /// Adds `frame` to the run if it continues it; otherwise flushes the run and starts a
    /// new one with it (or flushes, if it cannot be coalesced at all).
    fn offer(&mut self, frame: &[u8], udp: bool) {
        let Some(seg) = gro::candidate(frame) else {
            self.flush();
            return;
        };
        if matches!(seg.proto, gro::Proto::Udp { .. }) && !udp {
            self.flush();
            return;
        }
        let continues = match (self.frames.first(), self.frames.last()) {
            (Some((_, first)), Some((last_frame, last))) => {
                self.frames.len() < MAX_RUN
                    && gro::continues(
                        last_frame,
                        last,
                        frame,
                        &seg,
                        first.payload_len,
                        self.ip_len,
                    )
            }
            _ => false,
        };
        if !continues {
            self.flush();
            self.ip_len = seg.t.payload - seg.t.l3;
        }
        self.ip_len += seg.payload_len;
        self.frames.push((frame.to_vec(), seg));
    }

    /// Builds the run's super-frame and cuts it back: the payloads must come back as they went
    /// in (TCP), or the header must describe them (UDP).
    fn flush(&mut self) {
        let frames = std::mem::take(&mut self.frames);
        let (Some((first_frame, first)), Some((_, last))) = (frames.first(), frames.last()) else {
            return;
        };
        if frames.len() < 2 {
            return;
        }
        let payload: usize = frames.iter().map(|(_, s)| s.payload_len).sum();
        let mut header = [0u8; virtio::HEADER_LEN + gso::MAX_HEADERS];
        let hlen = gro::super_header(
            first_frame,
            first,
            frames.len(),
            payload,
            last.push,
            &mut header,
        )
        .expect("a run's first frame has room for its super-frame header");
        let mut whole = header[..hlen].to_vec();
        let mut expected = Vec::new();
        for (f, s) in &frames {
            whole.extend_from_slice(&f[s.t.payload..s.t.end]);
            expected.push(f[s.t.payload..s.t.end].to_vec());
        }
        let hdr = VnetHdr::parse(&whole).expect("a super-frame starts with its virtio header");
        assert_eq!(usize::from(hdr.gso_size), first.payload_len);
        let super_frame = &whole[virtio::HEADER_LEN..];
        if !matches!(first.proto, gro::Proto::Tcp { .. }) {
            return;
        }
        let t = gso::tcp_frame(super_frame).expect("a TCP super-frame parses as one");
        assert_eq!(t.end - t.payload, payload, "the super-frame's length");
        let mut got = Vec::new();
        let mtu = t.payload - t.l3 + first.payload_len;
        RUN_SCRATCH
            .with_borrow_mut(|scratch| {
                gso::segment_tcp(super_frame, mtu, scratch, |seg| {
                    let s = gso::tcp_frame(seg).expect("a segment parses");
                    got.push(seg[s.payload..s.end].to_vec());
                })
            })
            .expect("a coalesced super-frame can be cut back");
        assert_eq!(
            got, expected,
            "segmenting a coalesced run changed its payloads"
        );
    }
}

/// Passes a received super-frame on whole, as the receive path's `pass_super`: a GSO header
/// for the network's MTU.
fn pass_super(frame: &[u8]) {
    let Some(seg) = gro::candidate(frame) else {
        return;
    };
    let Some(mss) = MTU.checked_sub(seg.t.payload - seg.t.l3).filter(|&m| m > 0) else {
        return;
    };
    let shape = gro::Segment {
        payload_len: mss.min(seg.payload_len),
        ..seg
    };
    let mut header = [0u8; virtio::HEADER_LEN + gso::MAX_HEADERS];
    let count = seg.payload_len.div_ceil(mss);
    if let Some(n) = gro::super_header(frame, &shape, count, seg.payload_len, false, &mut header) {
        assert!(n <= header.len());
    }
}

/// Cuts `frame` into frames of IP packets of at most `mtu` bytes; their payloads must make
/// the frame's, each with valid checksums.
fn split(frame: &[u8], mtu: usize) {
    let mut payload = Vec::new();
    let result = SCRATCH.with_borrow_mut(|scratch| {
        gso::segment_tcp(frame, mtu, scratch, |seg| {
            let t = gso::tcp_frame(seg).expect("a segment parses as a TCP frame");
            assert!(t.end - t.l3 <= mtu, "a segment larger than the MTU");
            let mut copy = seg.to_vec();
            assert_eq!(
                checksum::complete_partial(&mut copy),
                L4Checksum::Valid,
                "a segment's TCP checksum"
            );
            payload.extend_from_slice(&seg[t.payload..t.end]);
        })
    });
    if result.is_ok() {
        let t = gso::tcp_frame(frame).expect("what was cut parses");
        assert_eq!(payload, &frame[t.payload..t.end], "the segments' payloads");
    }
}

/// Cuts `frame` into `mss`-byte segments as the send path does, headers apart; gathered, the
/// segments must parse and carry the frame's payload in order.
fn cut_headers(frame: &[u8], mss: usize, prefix: &[u8]) {
    HEADERS.with_borrow_mut(|(hdrs, segs)| check_cut(frame, mss, prefix, hdrs, segs));
}

/// [`cut_headers`] with its buffers.
fn check_cut(
    frame: &[u8],
    mss: usize,
    prefix: &[u8],
    hdrs: &mut [u8],
    segs: &mut [gso::SegmentRef],
) {
    let Ok(train) = gso::segment_tcp_headers(frame, mss, prefix, hdrs, segs) else {
        return;
    };
    let t = gso::tcp_frame(frame).expect("what was cut parses");
    let mut next = t.payload;
    for (i, s) in segs[..train.count].iter().enumerate() {
        let mut seg = hdrs[s.header.clone()].to_vec();
        assert_eq!(&seg[..prefix.len()], prefix, "the prefix");
        assert_eq!(s.payload.start, next, "segments out of order");
        next = s.payload.end;
        seg.extend_from_slice(&frame[s.payload.clone()]);
        assert!(
            seg.len() <= train.stride,
            "a segment longer than the stride"
        );
        if i + 1 < train.count {
            assert_eq!(seg.len(), train.stride, "a segment but the last is short");
        }
        let inner = &mut seg[prefix.len()..];
        assert!(gso::tcp_frame(inner).is_some(), "a segment does not parse");
        assert_eq!(
            checksum::complete_partial(inner),
            L4Checksum::Valid,
            "a segment's TCP checksum"
        );
    }
    assert_eq!(next, t.end, "the segments' payloads do not end the frame's");
}

/// The send path's handling of a super-frame it sends: the MSS the network's MTU allows,
/// the segments' headers, and the outer headers of tunnel GSO.
fn send_super(frame: &[u8], hdr: &VnetHdr) {
    let Some(t) = gso::tcp_frame(frame) else {
        return;
    };
    let fit = MTU.saturating_sub(t.payload - t.l3);
    let mss = match usize::from(hdr.gso_size) {
        0 => fit,
        m => m.min(fit),
    };
    cut_headers(frame, mss, &vxlan::header(vni()));
    if let Ok(mss) = u16::try_from(mss) {
        tunnel_headers(frame, &t, mss, hdr.gso_type & virtio::GSO_ECN != 0);
    }
}

/// Writes the tunnel GSO headers of `frame` and checks they describe it.
fn tunnel_headers(frame: &[u8], t: &gso::TcpFrame, mss: u16, ecn: bool) {
    let outer = OuterV4 {
        dst_mac: MacAddr([2, 0, 0, 0, 0, 2]),
        src_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        src: Ipv4Addr::new(192, 168, 50, 1),
        dst: *SocketAddrV4::new(Ipv4Addr::new(192, 168, 50, 2), 4789).ip(),
        src_port: 40000,
        dst_port: 4789,
        id: 7,
        ttl: 64,
        vni: vni(),
    };
    let mut out = [0u8; tunnel::HEADER_ROOM];
    let Some(n) = tunnel::super_frame_v4(frame, t, mss, ecn, &outer, &mut out) else {
        return;
    };
    let payload = t.end - t.payload;
    let ip = &out[tunnel::VNET_TUNNEL_HDR_LEN + ethernet::HEADER_LEN..n];
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len() + payload, "the outer IPv4 length");
    assert_eq!(
        checksum::fold(checksum::ones_complement_sum(&ip[..20], 0)),
        0,
        "the outer IPv4 checksum"
    );
    let inner_at = tunnel::OUTER_V4_LEN - ethernet::HEADER_LEN;
    let mut inner = ip[inner_at..].to_vec();
    inner.extend_from_slice(&frame[t.payload..t.end]);
    let it = gso::tcp_frame(&inner).expect("the inner frame parses");
    assert_eq!(it.end - it.payload, payload, "the inner payload");
}

/// An answer written into a TAP (an ARP reply or a neighbour advertisement) for `asker`: a
/// whole frame to the asker, from the answering MAC.
fn check_reply(reply: &[u8], kind: ReplyKind, asker: MacAddr) {
    let eth = ethernet::Frame::new_checked(reply).expect("an answer is a whole frame");
    assert_eq!(eth.dst(), asker, "an answer to someone else");
    match kind {
        ReplyKind::Arp => {
            let a = arp::Packet::new_checked(eth.payload()).expect("an ARP reply parses");
            assert_eq!(a.operation(), arp::OP_REPLY);
            assert_eq!(a.sender_mac(), eth.src());
        }
        ReplyKind::Nd => {
            let m = ip::icmpv6(reply).expect("an advertisement is ICMPv6");
            assert_eq!(m[0], nd::TYPE_NEIGHBOR_ADVERTISEMENT);
        }
    }
    let _ = LOCAL_MAC;
}

/// A "too big" answer: a frame whose IP header is sound.
fn check_too_big(answer: &[u8], kind: icmp::TooBig) {
    let eth = ethernet::Frame::new_checked(answer).expect("an answer is a whole frame");
    let ip = eth.payload();
    match kind {
        icmp::TooBig::V4 { src, .. } => {
            assert!(ip.len() <= icmp::IPV4_MAX_ERROR_LEN);
            assert_eq!(
                checksum::fold(checksum::ones_complement_sum(&ip[..20], 0)),
                0,
                "the answer's IPv4 checksum"
            );
            assert_eq!(ip[16..20], src.octets(), "answered to someone else");
        }
        icmp::TooBig::V6 { src, .. } => {
            assert!(ip.len() <= icmp::IPV6_MIN_MTU);
            assert_eq!(ip[24..40], src.octets(), "answered to someone else");
        }
    }
}

/// An ARP packet parsed, emitted and parsed again gives the same.
fn arp_round_trip(payload: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(payload) else {
        return;
    };
    let Ok(repr) = arp::Repr::parse(&p) else {
        return;
    };
    let mut out = vec![0u8; repr.buffer_len()];
    let mut q = arp::Packet::new_unchecked(&mut out[..]);
    repr.emit(&mut q);
    let again = arp::Repr::parse(&arp::Packet::new_checked(&out[..]).expect("emitted"))
        .expect("an emitted ARP packet parses");
    assert_eq!(again, repr);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_know_the_local_container() {
        let t: &ovnet_dataplane::fdb::Table = &tables()[0];
        assert!(t.is_local(&LOCAL_MAC));
    }
}
