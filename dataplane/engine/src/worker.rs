//! The worker threads' loops: encap (TAP → underlay) and decap (underlay → TAP).
//!
//! Each loop owns its buffers (allocated once), sleeps in `poll` beside its eventfd, and handles
//! at most [`BATCH`] reads per wake-up. The decisions are the pure functions of [`crate::encap`]
//! and [`crate::decap`]; this module only moves bytes:
//! - encap reads a frame (with its `virtio_net_hdr` on an offloading TAP). A TCP super-frame is
//!   cut into segments whose headers are written to a small buffer while payloads stay in the
//!   read buffer, and the `[VXLAN header][headers][payload]` train leaves in one UDP GSO
//!   `sendmsg` (gathered) per up to 64 segments; a frame whose checksum the TAP left partial
//!   is finished first.
//! - decap receives with UDP GRO (many datagrams per call), checks each, finishes partial
//!   checksums, splits the kernel's unsegmented super-frames, coalesces a run's in-order TCP
//!   segments into one super-frame, and writes to the TAP with one `writev`.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ovnet_sys::udp::{MAX_GSO_PAYLOAD, MAX_GSO_SEGMENTS};
use ovnet_sys::{poll_readable, Tap, UnderlaySocket, Waker};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::virtio::{self, VnetHdr};
use ovnet_wire::{gro, gso, vxlan, Vni};

use crate::counters::{Counters, DropReason, RateLimitedLog};
use crate::dataplane::{Network, Networks, Shared};
use crate::decap::{self, Admitted};
use crate::encap::{self, Encap, ReplyKind, REPLY_BUF_LEN};

/// Reads handled per wake-up before a thread checks for shutdown and reloads the tables.
/// 64 keeps a wake-up under ~100 µs at 1500-byte frames, bounding how long a stale table or a
/// stop request can wait, while amortising the `poll` over many packets.
const BATCH: usize = 64;

/// How long a thread sleeps in `poll` without traffic; only bounds the ageing sweep's delay
/// (wake-ups for shutdown and changes come through the eventfd).
const IDLE_POLL_MS: i32 = 1000;

/// Largest datagram, GRO run or TAP super-frame a worker reads (with its `virtio_net_hdr`).
const BUF_LEN: usize = 65_536 + virtio::HEADER_LEN;

/// Most segments a super-frame is cut into: 64 KB at an MSS no smaller than 536 (RFC 879).
const MAX_SEGMENTS: usize = 65_536 / 536 + 1;

/// Room for one segment's VXLAN header and frame headers (Ethernet + VLAN, IP, TCP with
/// options).
const SEGMENT_HEADERS_LEN: usize = vxlan::HEADER_LEN + 18 + 60 + 60;

/// The `virtio_net_hdr` of a frame that needs nothing from the kernel.
const PLAIN_VNET_HDR: [u8; virtio::HEADER_LEN] = [0; virtio::HEADER_LEN];

/// Sleeps until `fd` or the waker is readable; false when the thread must stop.
fn wait(fd: i32, stop: &AtomicBool, waker: &Waker) -> bool {
    let mut ready = [false; 2];
    if let Err(e) = poll_readable(&[fd, waker.as_raw_fd()], &mut ready, IDLE_POLL_MS) {
        log::error!("poll failed in a data-plane worker: {e}");
        std::thread::sleep(Duration::from_millis(10));
    }
    !stop.load(Ordering::Acquire)
}

/// Writes one frame to a TAP, prefixed with an empty `virtio_net_hdr` if the TAP wants one.
fn tap_write(tap: &Tap, frame: &[u8]) -> io::Result<usize> {
    if tap.has_vnet_hdr() {
        tap.write_vectored(&[IoSlice::new(&PLAIN_VNET_HDR), IoSlice::new(frame)])
    } else {
        tap.write(frame)
    }
}

/// Writes one frame to the network's TAP, counting it.
fn deliver(net: &Network, frame: &[u8], log: &mut RateLimitedLog) {
    match tap_write(&net.tap, frame) {
        Ok(_) => net.counters.rx(frame.len()),
        Err(e) => {
            net.counters.count_drop(DropReason::TapWriteError);
            log.warn(format_args!("writing to TAP {}: {e}", net.tap.name()));
        }
    }
}

pub(crate) fn decap_loop(s: &Shared, index: usize, stop: &AtomicBool, waker: &Waker) {
    let rx = &s.rx[index];
    let mut d = Decapper {
        s,
        scratch: vec![0u8; BUF_LEN],
        header: [0u8; SUPER_HEADER_LEN],
        run: Run {
            payloads: Vec::with_capacity(MAX_RUN),
            ..Run::default()
        },
        tap_log: RateLimitedLog::new(Duration::from_secs(5)),
    };
    let mut buf = vec![0u8; BUF_LEN];
    let mut rx_log = RateLimitedLog::new(Duration::from_secs(5));
    let mut last_sweep = 0;
    while wait(rx.as_raw_fd(), stop, waker) {
        let now = s.learned.now_ms();
        for _ in 0..BATCH {
            let networks = s.networks.load();
            let (n, from, segment) = match rx.recv_gro(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED and friends).
                    rx_log.warn(format_args!("receiving on the VXLAN socket: {e}"));
                    continue;
                }
            };
            // With GRO, one read may hold a run of datagrams of `segment` bytes each.
            let step = segment.unwrap_or(n).max(1);
            let mut at = 0;
            while at < n {
                let end = n.min(at + step);
                d.datagram(&networks, &mut buf, at, end, from, now);
                at = end;
            }
            d.flush(&networks, &buf);
        }
        if now.saturating_sub(last_sweep) >= 10_000 {
            s.learned.expire(now);
            last_sweep = now;
        }
    }
}

/// Room for a `virtio_net_hdr` and the headers of a super-frame (Ethernet + VLAN, IP with
/// options or IPv6, TCP with options).
const SUPER_HEADER_LEN: usize = virtio::HEADER_LEN + 18 + 60 + 60;

/// Most segments coalesced into one super-frame; a GRO run holds at most 64 datagrams.
const MAX_RUN: usize = 64;

/// TCP segments of one flow, in order, waiting to be written to the TAP as one super-frame.
/// Ranges index the receive buffer, which stays untouched until the run is flushed.
#[derive(Debug, Default)]
struct Run {
    vni: Option<Vni>,
    first: Option<(usize, gro::Segment)>,
    last: Option<(usize, gro::Segment)>,
    /// (start, end) of each segment's payload in the buffer.
    payloads: Vec<(usize, usize)>,
    payload: usize,
    ip_len: usize,
    frame_bytes: usize,
}

impl Run {
    /// Empties the run, keeping its buffer.
    fn reset(&mut self) {
        self.vni = None;
        self.first = None;
        self.last = None;
        self.payloads.clear();
        self.payload = 0;
        self.ip_len = 0;
        self.frame_bytes = 0;
    }
}

/// The decap thread's buffers and logs.
struct Decapper<'s> {
    s: &'s Shared,
    scratch: Vec<u8>,
    header: [u8; SUPER_HEADER_LEN],
    run: Run,
    tap_log: RateLimitedLog,
}

impl Decapper<'_> {
    /// Checks the datagram at `buf[at..end]`: drops it, delivers it, or adds it to the run.
    fn datagram(
        &mut self,
        networks: &Networks,
        buf: &mut [u8],
        at: usize,
        end: usize,
        from: SocketAddr,
        now: u64,
    ) {
        let s = self.s;
        let datagram = &mut buf[at..end];
        let vni = match decap::parse(datagram) {
            Ok((vni, _)) => vni,
            Err(reason) => return s.global.count_drop(reason),
        };
        let Some(net) = networks.get(&vni) else {
            return s.global.count_drop(DropReason::UnknownVni);
        };
        let frame = &mut datagram[vxlan::HEADER_LEN..];
        match decap::admit(frame, from, vni, &net.table, &s.learned, now, net.max_frame) {
            Ok(Admitted::DeliverLearned) => net.counters.learn(),
            Ok(Admitted::Deliver) => {}
            Err(reason) => return net.counters.count_drop(reason),
        }
        if frame.len() > net.max_frame {
            // A TCP super-frame (admit let only those through): split it to the network's
            // MTU; each segment gets full checksums.
            self.flush(networks, buf);
            let frame = &buf[at + vxlan::HEADER_LEN..end];
            let log = &mut self.tap_log;
            let split = gso::segment_tcp(frame, net.mtu, &mut self.scratch, |seg| {
                deliver(net, seg, log)
            });
            match split {
                Ok(_) => net.counters.segmented(),
                Err(_) => net.counters.count_drop(DropReason::Oversized),
            }
            return;
        }
        match checksum::complete_partial(frame) {
            L4Checksum::Invalid => return net.counters.count_drop(DropReason::BadChecksum),
            L4Checksum::Completed => net.counters.csum_completed(),
            L4Checksum::Valid | L4Checksum::NotApplicable => {}
        }
        let start = at + vxlan::HEADER_LEN;
        let seg = if net.tap.has_vnet_hdr() {
            gro::candidate(&buf[start..end])
        } else {
            None
        };
        let Some(seg) = seg else {
            self.flush(networks, buf);
            return deliver(net, &buf[start..end], &mut self.tap_log);
        };
        if !self.extends(vni, buf, start, end, &seg) {
            self.flush(networks, buf);
            self.run.vni = Some(vni);
            self.run.first = Some((start, seg));
            self.run.ip_len = seg.t.payload - seg.t.l3;
        }
        let r = &mut self.run;
        r.last = Some((start, seg));
        r.payloads.push((start + seg.t.payload, start + seg.t.end));
        r.payload += seg.payload_len;
        r.ip_len += seg.payload_len;
        r.frame_bytes += end - start;
    }

    /// Whether the segment at `buf[start..end]` continues the current run.
    fn extends(&self, vni: Vni, buf: &[u8], start: usize, end: usize, seg: &gro::Segment) -> bool {
        let r = &self.run;
        let (Some((_, first)), Some((ls, last))) = (r.first, r.last) else {
            return false;
        };
        r.vni == Some(vni)
            && r.payloads.len() < MAX_RUN
            && gro::continues(
                &buf[ls..ls + last.t.end],
                &last,
                &buf[start..end],
                seg,
                first.payload_len,
                r.ip_len,
            )
    }

    /// Writes the pending run to its TAP: one frame as it is, several as one GSO super-frame
    /// gathered from the receive buffer with a single `writev`.
    fn flush(&mut self, networks: &Networks, buf: &[u8]) {
        let r = &self.run;
        if let (Some(vni), Some((fs, first)), Some((_, last))) = (r.vni, r.first, r.last) {
            if let Some(net) = networks.get(&vni) {
                let frame = &buf[fs..fs + first.t.end];
                if r.payloads.len() == 1 {
                    deliver(net, frame, &mut self.tap_log);
                } else {
                    let n = r.payloads.len();
                    match gro::super_header(
                        frame,
                        &first,
                        n,
                        r.payload,
                        last.push,
                        &mut self.header,
                    ) {
                        Some(hlen) => {
                            let mut iov = [IoSlice::new(&[]); MAX_RUN + 1];
                            iov[0] = IoSlice::new(&self.header[..hlen]);
                            for (slot, &(a, b)) in iov[1..].iter_mut().zip(&r.payloads) {
                                *slot = IoSlice::new(&buf[a..b]);
                            }
                            match net.tap.write_vectored(&iov[..n + 1]) {
                                Ok(_) => {
                                    net.counters.rx_many(n as u64, r.frame_bytes as u64);
                                    net.counters.coalesced();
                                }
                                Err(e) => {
                                    net.counters.count_drop(DropReason::TapWriteError);
                                    self.tap_log.warn(format_args!(
                                        "writing a super-frame to TAP {}: {e}",
                                        net.tap.name()
                                    ));
                                }
                            }
                        }
                        None => net.counters.count_drop(DropReason::Truncated),
                    }
                }
            }
        }
        self.run.reset();
    }
}

/// The encap thread's buffers and logs.
struct Encapper<'s> {
    s: &'s Shared,
    vni: Vni,
    header: [u8; vxlan::HEADER_LEN],
    reply: [u8; REPLY_BUF_LEN],
    /// Per-segment headers of the super-frame being sent.
    hdrs: Vec<u8>,
    /// Where each segment's headers and payload are.
    segs: Vec<gso::SegmentRef>,
    send_log: RateLimitedLog,
    tap_log: RateLimitedLog,
}

pub(crate) fn encap_loop(s: &Shared, vni: Vni, tap: &Tap, stop: &AtomicBool, waker: &Waker) {
    let mut buf = vec![0u8; BUF_LEN];
    let mut e = Encapper {
        s,
        vni,
        header: vxlan::header(vni),
        reply: [0u8; REPLY_BUF_LEN],
        hdrs: vec![0u8; MAX_SEGMENTS * SEGMENT_HEADERS_LEN],
        segs: vec![gso::SegmentRef::default(); MAX_SEGMENTS],
        send_log: RateLimitedLog::new(Duration::from_secs(5)),
        tap_log: RateLimitedLog::new(Duration::from_secs(5)),
    };
    let off = if tap.has_vnet_hdr() {
        virtio::HEADER_LEN
    } else {
        0
    };
    while wait(tap.as_raw_fd(), stop, waker) {
        let now = s.learned.now_ms();
        for _ in 0..BATCH {
            // Loaded per read (a few atomic operations), so a table swapped in by the control
            // plane applies to the very next frame.
            let networks = s.networks.load();
            let Some(net) = networks.get(&vni) else {
                // Removed; remove_network stops us right after.
                break;
            };
            let n = match tap.read(&mut buf) {
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    e.tap_log
                        .warn(format_args!("reading TAP {}: {err}", tap.name()));
                    break;
                }
            };
            if n < off {
                net.counters.count_drop(DropReason::Truncated);
                continue;
            }
            let hdr = if off > 0 {
                VnetHdr::parse(&buf[..off]).unwrap_or_default()
            } else {
                VnetHdr::default()
            };
            e.frame(net, &hdr, &mut buf[off..n], now);
        }
    }
}

impl Encapper<'_> {
    fn frame(&mut self, net: &Network, hdr: &VnetHdr, frame: &mut [u8], now: u64) {
        let s = self.s;
        let gso = hdr.is_tcp_gso();
        // A super-frame's checksums are computed per segment; a plain frame's partial one now.
        if !gso && hdr.needs_csum() && virtio::finish_csum(frame, hdr).is_err() {
            return net.counters.count_drop(DropReason::Truncated);
        }
        let frame = &*frame;
        // The size limit of a super-frame applies to its segments.
        let limit = if gso { usize::MAX } else { net.max_frame };
        match encap::encap(
            frame,
            self.vni,
            &net.table,
            &s.learned,
            now,
            limit,
            &mut self.reply,
        ) {
            Encap::Unicast(dst) => self.send(net, hdr, frame, dst),
            Encap::Flood(list) => {
                net.counters.flood();
                for &dst in list {
                    self.send(net, hdr, frame, dst);
                }
            }
            Encap::Reply { len, kind } => match tap_write(&net.tap, &self.reply[..len]) {
                Ok(_) => match kind {
                    ReplyKind::Arp => net.counters.arp_reply(),
                    ReplyKind::Nd => net.counters.nd_reply(),
                },
                Err(err) => {
                    net.counters.count_drop(DropReason::TapWriteError);
                    self.tap_log.warn(format_args!(
                        "writing a reply to TAP {}: {err}",
                        net.tap.name()
                    ));
                }
            },
            Encap::Local => {}
            Encap::Drop(reason) => net.counters.count_drop(reason),
        }
    }

    fn send(&mut self, net: &Network, hdr: &VnetHdr, frame: &[u8], dst: SocketAddr) {
        if hdr.is_tcp_gso() {
            self.send_super(net, hdr, frame, dst);
        } else {
            self.send_one(&net.counters, frame, dst);
        }
    }

    /// Sends one frame as one datagram: VXLAN header and frame gathered, not copied.
    fn send_one(&mut self, counters: &Counters, frame: &[u8], dst: SocketAddr) {
        let sock = self.s.tx_socket(frame);
        let parts = [IoSlice::new(&self.header), IoSlice::new(frame)];
        match send_blocking(|| sock.send_to_vectored(&parts, dst), sock) {
            Ok(_) => counters.tx(frame.len()),
            Err(e) => {
                counters.count_drop(DropReason::SendError);
                self.send_log
                    .warn(format_args!("sending to VTEP {dst}: {e}"));
            }
        }
    }

    /// Segments a TCP super-frame and sends it with UDP GSO, gathered: each segment's headers
    /// are written to a small buffer, its payload is sent from where the TAP read put it.
    fn send_super(&mut self, net: &Network, hdr: &VnetHdr, frame: &[u8], dst: SocketAddr) {
        let Some(t) = gso::tcp_frame(frame) else {
            return net.counters.count_drop(DropReason::Truncated);
        };
        // The segments must fit the network's MTU whatever MSS the sender used.
        let fit = net.mtu.saturating_sub(t.payload - t.l3);
        let mss = match usize::from(hdr.gso_size) {
            0 => fit,
            m => m.min(fit),
        };
        let train = match gso::segment_tcp_headers(
            frame,
            mss,
            &self.header,
            &mut self.hdrs,
            &mut self.segs,
        ) {
            Ok(t) => t,
            Err(_) => return net.counters.count_drop(DropReason::Oversized),
        };
        net.counters.super_frame();
        let sock = self.s.tx_socket(frame);
        let per_send = (MAX_GSO_PAYLOAD / train.stride).clamp(1, MAX_GSO_SEGMENTS);
        for batch in self.segs[..train.count].chunks(per_send) {
            let mut iov = [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
            let mut bytes = 0;
            for (pair, seg) in iov.chunks_exact_mut(2).zip(batch) {
                pair[0] = IoSlice::new(&self.hdrs[seg.header.clone()]);
                pair[1] = IoSlice::new(&frame[seg.payload.clone()]);
                bytes += seg.header.len() + seg.payload.len();
            }
            let iov = &iov[..2 * batch.len()];
            let gso = self.s.gso.load(Ordering::Relaxed) && batch.len() > 1;
            let sent = if gso {
                match send_blocking(
                    || sock.send_gso_vectored(iov, train.stride as u16, dst),
                    sock,
                ) {
                    Err(e) if is_gso_refusal(&e) => {
                        self.s.gso.store(false, Ordering::Relaxed);
                        log::warn!(
                            "UDP GSO refused ({e}); sending one datagram per segment from now on"
                        );
                        send_each(sock, iov, dst)
                    }
                    r => r,
                }
            } else {
                send_each(sock, iov, dst)
            };
            match sent {
                Ok(_) => net.counters.tx_many(
                    batch.len() as u64,
                    (bytes - batch.len() * vxlan::HEADER_LEN) as u64,
                ),
                Err(e) => {
                    net.counters.count_drop(DropReason::SendError);
                    self.send_log
                        .warn(format_args!("sending to VTEP {dst}: {e}"));
                }
            }
        }
    }
}

/// `EIO` (the device cannot checksum) and `EINVAL` (no GSO support) mean "do not use GSO";
/// quinn-udp treats them the same way.
fn is_gso_refusal(e: &io::Error) -> bool {
    const EIO: i32 = 5;
    const EINVAL: i32 = 22;
    matches!(e.raw_os_error(), Some(EIO | EINVAL))
}

/// Sends each (header, payload) pair of `iov` as its own datagram.
fn send_each(sock: &UnderlaySocket, iov: &[IoSlice<'_>], dst: SocketAddr) -> io::Result<usize> {
    let mut total = 0;
    for pair in iov.chunks(2) {
        total += send_blocking(|| sock.send_to_vectored(pair, dst), sock)?;
    }
    Ok(total)
}

/// Retries a send while the socket buffer is full: back-pressure rather than loss, as the
/// kernel's qdisc would give a local sender.
fn send_blocking(
    mut send: impl FnMut() -> io::Result<usize>,
    sock: &UnderlaySocket,
) -> io::Result<usize> {
    loop {
        match send() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Err(e) = ovnet_sys::poll_writable(sock.as_raw_fd(), 100) {
                    log::error!("poll for a writable socket failed: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            r => return r,
        }
    }
}
