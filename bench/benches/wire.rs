//! Criterion benchmarks of the wire-format work that touches every payload byte:
//!
//! - `segment_tcp`: [`gso::segment_tcp`] of a TCP frame into segments whose IP packets fit
//!   MTU 1450, each with fresh headers and a full TCP checksum (1450: one segment; 64 KB: 46).
//! - `ones_complement_sum`: the Internet checksum's inner loop over a buffer.
//! - `complete_partial`: [`checksum::complete_partial`] of a frame whose TCP checksum is left
//!   partial, as the kernel hands it over a veth (`partial`), and of one already correct
//!   (`valid`, a verification only). Frames above the MTU are segmented instead, so no 64 KB.
//! - `gro`: receive coalescing with [`gro::candidate`], [`gro::continues`] and
//!   [`gro::super_header`], as the decap worker runs them over one UDP GRO read: a run of
//!   in-order segments of one flow (frames of 512 or 1450 bytes, as many as fit one 64 KB
//!   super-frame and the worker's 64-segment limit) checked and merged into one super-frame
//!   header. Payloads are never copied (the worker gathers them with `writev`), so this is the
//!   per-segment header work; throughput counts every segment's bytes. `udp` is the same for
//!   64 datagrams of one UDP flow with 64-byte payloads (iperf3's small-packet test), merged
//!   into one `GSO_UDP_L4` super-frame header.
//!
//! Sizes are inner Ethernet frame lengths; throughput is per frame byte.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ovnet_bench::frames::{partial_tcp_csum, tcp_frame, Endpoint, TCP_CSUM_AT};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::{gro, gso, virtio};

/// The overlay MTU the segments must fit.
const MTU: usize = 1450;

fn endpoints() -> (Endpoint, Endpoint) {
    (Endpoint::nth(0), Endpoint::nth(1))
}

fn bench_segment(c: &mut Criterion) {
    let (a, b) = endpoints();
    let mut g = c.benchmark_group("segment_tcp");
    let mut scratch = vec![0u8; 14 + MTU];
    for size in [1450, 65_536] {
        let frame = tcp_frame(&a, &b, size);
        let n = gso::segment_tcp(&frame, MTU, &mut scratch, |_| {}).expect("a TCP frame");
        assert_eq!(n, (size - 54).div_ceil(MTU - 40));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &frame, |bch, f| {
            bch.iter(|| {
                gso::segment_tcp(black_box(f), MTU, &mut scratch, |seg| {
                    black_box(seg);
                })
            })
        });
    }
    g.finish();
}

fn bench_sum(c: &mut Criterion) {
    let mut g = c.benchmark_group("ones_complement_sum");
    for size in [64, 512, 1450, 65_536] {
        let buf: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &buf, |b, buf| {
            b.iter(|| checksum::ones_complement_sum(black_box(buf), 0))
        });
    }
    g.finish();
}

fn bench_complete_partial(c: &mut Criterion) {
    let (a, b) = endpoints();
    let mut g = c.benchmark_group("complete_partial");
    for size in [64, 512, 1450] {
        let valid = tcp_frame(&a, &b, size);
        let partial = partial_tcp_csum(&valid);
        g.throughput(Throughput::Bytes(size as u64));
        let mut frame = valid.clone();
        frame[TCP_CSUM_AT..TCP_CSUM_AT + 2].copy_from_slice(&partial);
        assert_eq!(
            checksum::complete_partial(&mut frame),
            L4Checksum::Completed
        );
        assert_eq!(frame, valid);
        g.bench_function(BenchmarkId::new("partial", size), |bch| {
            bch.iter(|| {
                // Put the partial value back (two bytes) so every iteration finishes it.
                frame[TCP_CSUM_AT..TCP_CSUM_AT + 2].copy_from_slice(&partial);
                checksum::complete_partial(black_box(&mut frame))
            })
        });
        let mut frame = valid.clone();
        g.bench_function(BenchmarkId::new("valid", size), |bch| {
            bch.iter(|| checksum::complete_partial(black_box(&mut frame)))
        });
    }
    g.finish();
}

/// Most segments the decap worker coalesces into one super-frame (one GRO read's worth).
const MAX_RUN: usize = 64;

/// The first segments of a 64 KB super-frame cut into frames of `frame_len` bytes: as many as
/// one super-frame and [`MAX_RUN`] allow.
fn run_of_segments(frame_len: usize) -> Vec<Vec<u8>> {
    let (a, b) = endpoints();
    let big = tcp_frame(&a, &b, 65_536);
    let mut scratch = vec![0u8; frame_len];
    let mut segs = Vec::new();
    gso::segment_tcp(&big, frame_len - 14, &mut scratch, |s| {
        segs.push(s.to_vec())
    })
    .expect("a TCP frame");
    let payload = frame_len - 54;
    let fit = (gro::MAX_SUPER_IP_LEN - 40) / payload;
    segs.truncate(fit.min(MAX_RUN));
    segs
}

/// Coalesces `segs` as the worker does; returns the segments taken and the header length.
fn coalesce(segs: &[Vec<u8>], header: &mut [u8]) -> (usize, usize) {
    let Some(first) = gro::candidate(&segs[0]) else {
        return (0, 0);
    };
    let (mut last, mut last_frame) = (first, &segs[0][..]);
    let mut ip_len = first.t.payload - first.t.l3 + first.payload_len;
    let (mut payload, mut count) = (first.payload_len, 1);
    for f in &segs[1..] {
        match gro::candidate(f) {
            Some(s) if gro::continues(last_frame, &last, f, &s, first.payload_len, ip_len) => {
                ip_len += s.payload_len;
                payload += s.payload_len;
                count += 1;
                (last, last_frame) = (s, f);
            }
            _ => break,
        }
    }
    let hlen =
        gro::super_header(&segs[0], &first, count, payload, last.push, header).unwrap_or_default();
    (count, hlen)
}

/// `count` datagrams of one UDP flow with `payload` bytes each, IPv4 identification counting
/// up, checksums correct.
fn udp_run(payload: usize, count: usize) -> Vec<Vec<u8>> {
    let (a, b) = endpoints();
    (0..count)
        .map(|i| {
            let mut f = Vec::new();
            etherparse::PacketBuilder::ethernet2(a.mac.0, b.mac.0)
                .ipv4(a.ip.octets(), b.ip.octets(), 64)
                .udp(40000, 5201)
                .write(&mut f, &vec![i as u8; payload])
                .expect("a UDP frame");
            f[18..20].copy_from_slice(&(i as u16).to_be_bytes());
            f[24..26].fill(0);
            let c = checksum::checksum(&f[14..34]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

fn bench_gro(c: &mut Criterion) {
    let mut g = c.benchmark_group("gro");
    let mut header = [0u8; virtio::HEADER_LEN + gso::MAX_HEADERS];
    for frame_len in [512, 1450] {
        let segs = run_of_segments(frame_len);
        let (count, hlen) = coalesce(&segs, &mut header);
        assert_eq!(count, segs.len(), "every segment of the run coalesces");
        assert_eq!(hlen, virtio::HEADER_LEN + 54);
        let bytes: usize = segs.iter().map(Vec::len).sum();
        g.throughput(Throughput::Bytes(bytes as u64));
        let id = BenchmarkId::new(format!("{}_segments", segs.len()), frame_len);
        g.bench_with_input(id, &segs, |bch, segs| {
            bch.iter(|| coalesce(black_box(segs), &mut header))
        });
    }
    let dgrams = udp_run(64, MAX_RUN);
    let (count, hlen) = coalesce(&dgrams, &mut header);
    assert_eq!(count, dgrams.len(), "every datagram of the run coalesces");
    assert_eq!(hlen, virtio::HEADER_LEN + 42);
    let bytes: usize = dgrams.iter().map(Vec::len).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    let id = BenchmarkId::new(format!("udp_{}_datagrams", dgrams.len()), dgrams[0].len());
    g.bench_with_input(id, &dgrams, |bch, d| {
        bch.iter(|| coalesce(black_box(d), &mut header))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_segment,
    bench_sum,
    bench_complete_partial,
    bench_gro
);
criterion_main!(benches);
