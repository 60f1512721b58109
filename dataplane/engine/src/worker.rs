//! The worker threads' loops: encap (TAP → underlay) and decap (underlay → TAP).
//!
//! Each loop owns its buffers (allocated once), sleeps in `poll` beside its eventfd, and handles
//! at most [`BATCH`] reads per wake-up. The decisions are the pure functions of [`crate::encap`]
//! and [`crate::decap`]; this module only moves bytes:
//! - encap reads a frame (with its `virtio_net_hdr` on an offloading TAP). A TCP super-frame is
//!   segmented straight into a train of `[VXLAN header][segment]` datagrams and sent with one
//!   UDP GSO `sendmsg` per up to 64 segments; a frame whose checksum the TAP left partial is
//!   finished first.
//! - decap receives with UDP GRO (many datagrams per call), checks each, finishes partial
//!   checksums, splits the kernel's unsegmented super-frames, and writes frames to the TAP.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ovnet_sys::udp::{MAX_GSO_PAYLOAD, MAX_GSO_SEGMENTS};
use ovnet_sys::{poll_readable, Tap, UnderlaySocket, Waker};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::virtio::{self, VnetHdr};
use ovnet_wire::{gso, vxlan, Vni};

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

/// A super-frame's train: up to 64 KB of payload plus per-segment headers (at least 40 bytes
/// of payload per segment keeps the header overhead under 3x).
const TRAIN_LEN: usize = 4 * 65_536;

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

pub(crate) fn decap_loop(s: &Shared, stop: &AtomicBool, waker: &Waker) {
    let mut buf = vec![0u8; BUF_LEN];
    let mut scratch = vec![0u8; BUF_LEN];
    let mut tap_log = RateLimitedLog::new(Duration::from_secs(5));
    let mut rx_log = RateLimitedLog::new(Duration::from_secs(5));
    let mut last_sweep = 0;
    while wait(s.rx.as_raw_fd(), stop, waker) {
        let networks = s.networks.load();
        let now = s.learned.now_ms();
        for _ in 0..BATCH {
            let (n, from, segment) = match s.rx.recv_gro(&mut buf) {
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
                let d = &mut buf[at..end];
                decap_one(s, &networks, d, from, now, &mut scratch, &mut tap_log);
                at = end;
            }
        }
        if now.saturating_sub(last_sweep) >= 10_000 {
            s.learned.expire(now);
            last_sweep = now;
        }
    }
}

fn decap_one(
    s: &Shared,
    networks: &Networks,
    datagram: &mut [u8],
    from: SocketAddr,
    now: u64,
    scratch: &mut [u8],
    log: &mut RateLimitedLog,
) {
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
        // A TCP super-frame (admit let only those through): split it to the network's MTU;
        // each segment gets full checksums.
        let split = gso::segment_tcp(frame, net.mtu, scratch, |seg| deliver(net, seg, log));
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
    deliver(net, frame, log);
}

/// The encap thread's buffers and logs.
struct Encapper<'s> {
    s: &'s Shared,
    vni: Vni,
    header: [u8; vxlan::HEADER_LEN],
    reply: [u8; REPLY_BUF_LEN],
    train: Vec<u8>,
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
        train: vec![0u8; TRAIN_LEN],
        send_log: RateLimitedLog::new(Duration::from_secs(5)),
        tap_log: RateLimitedLog::new(Duration::from_secs(5)),
    };
    let off = if tap.has_vnet_hdr() {
        virtio::HEADER_LEN
    } else {
        0
    };
    while wait(tap.as_raw_fd(), stop, waker) {
        let networks = s.networks.load();
        let Some(net) = networks.get(&vni) else {
            // Removed; remove_network stops us right after.
            continue;
        };
        let now = s.learned.now_ms();
        for _ in 0..BATCH {
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
        if hdr.is_tcp_gso() {
            // The size limit applies to the segments, not to the super-frame.
            let limit = usize::MAX;
            match encap::encap(
                frame,
                self.vni,
                &net.table,
                &s.learned,
                now,
                limit,
                &mut self.reply,
            ) {
                Encap::Unicast(dst) => self.send_super(net, hdr, frame, dst),
                Encap::Flood(list) => {
                    net.counters.flood();
                    for &dst in list {
                        self.send_super(net, hdr, frame, dst);
                    }
                }
                Encap::Reply { .. } | Encap::Local => {}
                Encap::Drop(reason) => net.counters.count_drop(reason),
            }
            return;
        }
        if hdr.needs_csum() && virtio::finish_csum(frame, hdr).is_err() {
            return net.counters.count_drop(DropReason::Truncated);
        }
        let frame = &*frame;
        match encap::encap(
            frame,
            self.vni,
            &net.table,
            &s.learned,
            now,
            net.max_frame,
            &mut self.reply,
        ) {
            Encap::Unicast(dst) => self.send_one(&net.counters, frame, dst),
            Encap::Flood(list) => {
                net.counters.flood();
                for &dst in list {
                    self.send_one(&net.counters, frame, dst);
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

    /// Segments a TCP super-frame into a train and sends it with UDP GSO.
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
        let train = match gso::segment_tcp_train(frame, mss, &self.header, &mut self.train) {
            Ok(t) => t,
            Err(_) => return net.counters.count_drop(DropReason::Oversized),
        };
        net.counters.super_frame();
        let sock = self.s.tx_socket(frame);
        let per_send = (MAX_GSO_PAYLOAD / train.stride).clamp(1, MAX_GSO_SEGMENTS);
        let mut at = 0;
        while at < train.len {
            let end = train.len.min(at + per_send * train.stride);
            let chunk = &self.train[at..end];
            let segments = chunk.len().div_ceil(train.stride);
            let inner = chunk.len() - segments * vxlan::HEADER_LEN;
            let sent = if self.s.gso.load(Ordering::Relaxed) && segments > 1 {
                match send_blocking(|| sock.send_gso(chunk, train.stride as u16, dst), sock) {
                    Err(e) if is_gso_refusal(&e) => {
                        self.s.gso.store(false, Ordering::Relaxed);
                        log::warn!(
                            "UDP GSO refused ({e}); sending one datagram per segment from now on"
                        );
                        send_each(sock, chunk, train.stride, dst)
                    }
                    r => r,
                }
            } else {
                send_each(sock, chunk, train.stride, dst)
            };
            match sent {
                Ok(_) => net.counters.tx_many(segments as u64, inner as u64),
                Err(e) => {
                    net.counters.count_drop(DropReason::SendError);
                    self.send_log
                        .warn(format_args!("sending to VTEP {dst}: {e}"));
                }
            }
            at = end;
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

/// Sends each `stride`-sized datagram of `chunk` on its own.
fn send_each(
    sock: &UnderlaySocket,
    chunk: &[u8],
    stride: usize,
    dst: SocketAddr,
) -> io::Result<usize> {
    let mut total = 0;
    for d in chunk.chunks(stride) {
        total += send_blocking(|| sock.send_to(d, dst), sock)?;
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
