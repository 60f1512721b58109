//! Property tests of segmentation and coalescing as inverses, over generated TCP flows
//! (IPv4 and IPv6, with and without options, a VLAN tag or not, any MSS and payload):
//!
//! - coalesce ∘ segment: a super-frame cut by [`gso::segment_tcp`] coalesces back
//!   ([`gro::candidate`], [`gro::continues`], [`gro::super_header`]) into a super-frame with
//!   the same headers and payload;
//! - segment ∘ coalesce: a run of in-order segments coalesced into one super-frame and cut
//!   again at its GSO size gives the same segments back, byte for byte but the checksums,
//!   which are valid;
//! - the send path's cut ([`gso::segment_tcp_headers`]), gathered, gives the same segments as
//!   the receive path's ([`gso::segment_tcp`]).

use etherparse::{PacketBuilder, TcpHeader, TcpOptionElement};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::{gro, gso, virtio};
use proptest::prelude::*;

/// How a generated flow's frames look.
#[derive(Debug, Clone)]
struct Flow {
    v6: bool,
    vlan: bool,
    timestamps: bool,
    seq: u32,
}

fn flow() -> impl Strategy<Value = Flow> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
        |(v6, vlan, timestamps, seq)| Flow {
            v6,
            vlan,
            timestamps,
            seq,
        },
    )
}

/// One TCP frame of `flow` at `seq` with `payload` (ACK, and PSH if `push`).
fn frame(f: &Flow, seq: u32, payload: &[u8], push: bool) -> Vec<u8> {
    let mut tcp = TcpHeader::new(40000, 5201, seq, 1000);
    tcp.ack = true;
    tcp.acknowledgment_number = 77;
    tcp.psh = push;
    if f.timestamps {
        tcp.set_options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(5, 6),
        ])
        .unwrap();
    }
    let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let mut out = Vec::new();
    match (f.v6, f.vlan) {
        (false, false) => eth
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp_header(tcp)
            .write(&mut out, payload),
        (true, false) => eth
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp_header(tcp)
            .write(&mut out, payload),
        (false, true) => eth
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp_header(tcp)
            .write(&mut out, payload),
        (true, true) => eth
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp_header(tcp)
            .write(&mut out, payload),
    }
    .unwrap();
    out
}

/// The payload of a TCP frame.
fn payload_of(f: &[u8]) -> Vec<u8> {
    let t = gso::tcp_frame(f).expect("a TCP frame");
    f[t.payload..t.end].to_vec()
}

/// Cuts `frame` into IP packets of at most `mtu` bytes.
fn segment(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let mut scratch = vec![0u8; 70_000];
    let mut out = Vec::new();
    gso::segment_tcp(frame, mtu, &mut scratch, |s| out.push(s.to_vec())).expect("segmentable");
    out
}

/// Coalesces `frames` as the receive path does; `None` if they do not make one run. Returns
/// the super-frame (without its virtio header) and its GSO size.
fn coalesce(frames: &[Vec<u8>]) -> Option<(Vec<u8>, usize)> {
    let segs: Vec<gro::Segment> = frames
        .iter()
        .map(|f| gro::candidate(f))
        .collect::<Option<_>>()?;
    let first = segs[0];
    let mut ip_len = first.t.payload - first.t.l3 + first.payload_len;
    for i in 1..frames.len() {
        let (a, b) = (&segs[i - 1], &segs[i]);
        if !gro::continues(&frames[i - 1], a, &frames[i], b, first.payload_len, ip_len) {
            return None;
        }
        ip_len += b.payload_len;
    }
    let total: usize = segs.iter().map(|s| s.payload_len).sum();
    let last = segs[segs.len() - 1];
    let mut header = [0u8; virtio::HEADER_LEN + gso::MAX_HEADERS];
    let n = gro::super_header(
        &frames[0],
        &first,
        frames.len(),
        total,
        last.push,
        &mut header,
    )?;
    let hdr = virtio::VnetHdr::parse(&header[..n]).unwrap();
    assert_eq!(usize::from(hdr.gso_size), first.payload_len);
    let mut out = header[virtio::HEADER_LEN..n].to_vec();
    for (f, s) in frames.iter().zip(&segs) {
        out.extend_from_slice(&f[s.t.payload..s.t.end]);
    }
    Some((out, first.payload_len))
}

/// `f` with its IP and TCP checksums (and IPv4 identification) zeroed, for comparing headers
/// that may differ only there.
fn without_checksums(f: &[u8]) -> Vec<u8> {
    let t = gso::tcp_frame(f).unwrap();
    let mut g = f.to_vec();
    if t.v4 {
        g[t.l3 + 4..t.l3 + 6].fill(0);
        g[t.l3 + 10..t.l3 + 12].fill(0);
    }
    g[t.l4 + 16..t.l4 + 18].fill(0);
    g
}

fn valid_checksum(f: &[u8]) -> bool {
    checksum::complete_partial(&mut f.to_vec()) == L4Checksum::Valid
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_cut_super_frame_coalesces_back(
        f in flow(),
        len in 1usize..60_000,
        mss in 536usize..9_000,
        fill in any::<u8>(),
    ) {
        let payload: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
        let whole = frame(&f, f.seq, &payload, false);
        let t = gso::tcp_frame(&whole).unwrap();
        let headers = t.payload - t.l3;
        let segments = segment(&whole, headers + mss);
        prop_assert_eq!(segments.len(), len.div_ceil(mss));
        for s in &segments {
            prop_assert!(valid_checksum(s));
        }
        let cut: Vec<u8> = segments.iter().flat_map(|s| payload_of(s)).collect();
        prop_assert_eq!(&cut, &payload);
        if segments.len() < 2 {
            return Ok(());
        }
        // More than 64 KB of IP packet cannot be one super-frame again.
        let Some((again, gso_size)) = coalesce(&segments) else {
            prop_assert!(false, "{} segments of {mss} did not coalesce", segments.len());
            unreachable!()
        };
        prop_assert_eq!(gso_size, mss);
        prop_assert_eq!(payload_of(&again), payload);
        prop_assert_eq!(gso::tcp_frame(&again).unwrap().payload, t.payload);
        let h = |x: &[u8]| without_checksums(&x[..t.payload]);
        let (mut a, mut b) = (h(&again), h(&whole));
        // The IP length is the super-frame's in both; the PSH bit only the last segment had.
        a[t.l4 + 13] &= !0x08;
        b[t.l4 + 13] &= !0x08;
        prop_assert_eq!(a, b);
    }

    #[test]
    fn a_coalesced_run_cuts_back_into_the_same_segments(
        f in flow(),
        size in 1usize..1_448,
        count in 2usize..40,
        last in 1usize..1_448,
        push in any::<bool>(),
    ) {
        let last = last.min(size);
        let mut frames = Vec::new();
        let mut seq = f.seq;
        for i in 0..count {
            let n = if i + 1 == count { last } else { size };
            let data: Vec<u8> = (0..n).map(|j| (i * 7 + j) as u8).collect();
            frames.push(frame(&f, seq, &data, push && i + 1 == count));
            seq = seq.wrapping_add(n as u32);
        }
        let (whole, gso_size) = coalesce(&frames).expect("an in-order run coalesces");
        let t = gso::tcp_frame(&whole).unwrap();
        let again = segment(&whole, t.payload - t.l3 + gso_size);
        prop_assert_eq!(again.len(), frames.len());
        for (a, b) in again.iter().zip(&frames) {
            prop_assert!(valid_checksum(a));
            prop_assert_eq!(without_checksums(a), without_checksums(b));
        }
    }

    #[test]
    fn both_cuts_give_the_same_segments(
        f in flow(),
        len in 1usize..30_000,
        mss in 200usize..4_000,
    ) {
        let payload = vec![0x3c; len];
        let whole = frame(&f, f.seq, &payload, true);
        let t = gso::tcp_frame(&whole).unwrap();
        let frames = segment(&whole, t.payload - t.l3 + mss);
        let prefix = [8u8, 0, 0, 0, 0, 0, 42, 0];
        let mut hdrs = vec![0u8; 200 * (prefix.len() + gso::MAX_HEADERS)];
        let mut segs = vec![gso::SegmentRef::default(); 200];
        let train = gso::segment_tcp_headers(&whole, mss, &prefix, &mut hdrs, &mut segs)
            .expect("room for every segment");
        prop_assert_eq!(train.count, frames.len());
        for (s, f) in segs[..train.count].iter().zip(&frames) {
            let mut gathered = hdrs[s.header.clone()].to_vec();
            gathered.extend_from_slice(&whole[s.payload.clone()]);
            prop_assert_eq!(&gathered[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&gathered[prefix.len()..], &f[..]);
        }
    }
}
