//! Criterion benchmarks of the data plane's per-packet decisions, with a table of realistic
//! size (4 local endpoints, 300 remote ones behind 16 VTEPs):
//!
//! - `encap`: [`encap::encap`] of a unicast TCP frame to a known remote MAC, every path
//!   carrying the network's MTU (one compare). The 64 KB case is a TSO super-frame from an
//!   offloading TAP, which the worker checks by its segments.
//! - `encap_narrow`: the same frames (the 1450-byte one and the super-frame) to a VTEP whose
//!   path carries only 1350 bytes: the path MTU looked up and the frame refused, for a "too
//!   big" answer.
//! - `decap`: [`decap::parse`] and [`decap::admit`] of a VXLAN datagram from the VTEP that owns
//!   the inner source. The 64 KB case is a super-frame as the kernel's vxlan delivers it over a
//!   veth underlay (admitted for segmentation).
//!
//! Throughput is per inner-frame byte; neither decision reads the payload, so the time per
//! packet is the number to watch and the bytes/s grow with the size.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ovnet_bench::frames::{fixture, tcp_frame, Fixture};
use ovnet_dataplane::decap::{self, Admitted};
use ovnet_dataplane::encap::{self, Encap, Size, REPLY_BUF_LEN};
use ovnet_dataplane::fdb::{LearnedTable, Table, DEFAULT_AGEING};
use ovnet_dataplane::Vni;
use ovnet_wire::vxlan;

/// Inner frame sizes: minimum-ish, medium, a full 1450-byte frame, and a 64 KB super-frame.
const SIZES: [usize; 4] = [64, 512, 1450, 65_536];
/// The overlay's MTU plus Ethernet and one VLAN tag: the worker's `max_frame`.
const MAX_FRAME: usize = 1450 + 18;
/// One segment of a super-frame on a 1450-byte network: Ethernet, IPv4, TCP and 1410 bytes.
const SEGMENT: usize = 14 + 1450;

/// How the worker sizes a frame of `size` bytes: plain, or a super-frame by its segments.
fn sized(size: usize) -> Size {
    if size > MAX_FRAME {
        Size::Segments { segment: SEGMENT }
    } else {
        Size::Plain {
            max_frame: MAX_FRAME,
        }
    }
}

fn setup() -> (Fixture, Table, LearnedTable, Vni) {
    let fx = fixture(4, 300, 16);
    let table = Table::compile(&fx.table);
    let vni = Vni::new(42).expect("valid VNI");
    (fx, table, LearnedTable::new(DEFAULT_AGEING), vni)
}

fn bench_encap(c: &mut Criterion) {
    let (fx, table, learned, vni) = setup();
    let mut g = c.benchmark_group("encap");
    for size in SIZES {
        let frame = tcp_frame(&fx.local, &fx.remote, size);
        let s = sized(size);
        let mut reply = [0u8; REPLY_BUF_LEN];
        assert_eq!(
            encap::encap(&frame, s, vni, &table, &learned, 0, &mut reply),
            Encap::Unicast(fx.remote_vtep)
        );
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &frame, |b, f| {
            b.iter(|| {
                let out = encap::encap(black_box(f), s, vni, &table, &learned, 0, &mut reply);
                black_box(out);
            })
        });
    }
    g.finish();
}

fn bench_encap_narrow(c: &mut Criterion) {
    let (mut fx, _, learned, vni) = setup();
    fx.table.path_mtu.insert(fx.remote_vtep.ip(), 1350);
    let table = Table::compile(&fx.table);
    let mut g = c.benchmark_group("encap_narrow");
    for size in [1450, 65_536] {
        let frame = tcp_frame(&fx.local, &fx.remote, size);
        let s = sized(size);
        let mut reply = [0u8; REPLY_BUF_LEN];
        assert_eq!(
            encap::encap(&frame, s, vni, &table, &learned, 0, &mut reply),
            Encap::TooBig { mtu: 1350 }
        );
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &frame, |b, f| {
            b.iter(|| {
                let out = encap::encap(black_box(f), s, vni, &table, &learned, 0, &mut reply);
                black_box(out);
            })
        });
    }
    g.finish();
}

fn bench_decap(c: &mut Criterion) {
    let (fx, table, learned, vni) = setup();
    let mut g = c.benchmark_group("decap");
    for size in SIZES {
        let mut datagram = vxlan::header(vni).to_vec();
        datagram.extend_from_slice(&tcp_frame(&fx.remote, &fx.local, size));
        let from = fx.remote_vtep;
        let check = |d: &[u8]| {
            let (v, inner) = decap::parse(d)?;
            decap::admit(inner, from, v, &table, &learned, 0, MAX_FRAME)
        };
        assert_eq!(check(&datagram), Ok(Admitted::Deliver));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &datagram, |b, d| {
            b.iter(|| black_box(check(black_box(d))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_encap, bench_encap_narrow, bench_decap);
criterion_main!(benches);
