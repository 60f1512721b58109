//! The worker threads' loop: each worker moves frames both ways for its share of the traffic.
//!
//! Worker `i` owns listening socket `i` (`SO_REUSEPORT`: the kernel spreads peers' flows over
//! the sockets by outer source port) and queue `j` of every network's TAP for `j % workers ==
//! i` (the kernel keeps a flow on one TAP queue), and sleeps in one `epoll` over them and its
//! waker. One thread for both directions is what makes a request and its answer meet a worker
//! that is already awake: a TCP sender's data and the ACKs that clock it, a ping and its
//! reply, cost one wake-up instead of two. Each descriptor is drained in bounded batches
//! ([`BATCH`]) so neither direction starves the other.
//!
//! The decisions are the pure functions of [`crate::encap`] and [`crate::decap`]; this module
//! only moves bytes, with buffers allocated once:
//! - encap reads a frame (with its `virtio_net_hdr` on an offloading TAP). A TCP super-frame
//!   goes whole, with its outer headers, to the uplink TAP for the kernel to segment (UDP
//!   tunnel GSO) where that is on; otherwise it is cut into segments whose headers are
//!   written to a small buffer while payloads stay in the read buffer, and the `[VXLAN
//!   header][headers][payload]` train leaves in one UDP GSO `sendmsg` (gathered) per up to 64
//!   segments. Small frames for one VTEP and flow socket are
//!   read into consecutive slots of an arena and leave together the same way, so a burst of
//!   64-byte packets costs one send, not one per packet.
//! - decap receives with UDP GRO (many datagrams per call), checks each, finishes partial
//!   checksums, passes a kernel peer's unsegmented super-frames on whole (or splits them),
//!   coalesces a run's in-order TCP segments into one super-frame, and writes to the TAP with
//!   one `writev`.
//!
//! A worker with nothing left to do polls a little longer (at most [`Shared::poll`], 100 µs
//! by default, adapted by [`PollWindow`]) before it sleeps, yielding the CPU between polls so
//! that it never keeps a runnable container or peer worker waiting. Under load the next burst
//! arrives within that window: the sender's wake-up of a sleeping worker (an IPI and a
//! context switch, several microseconds on a virtual CPU, ~5 % of all CPU in a TCP stream's
//! profile) is saved, and so is the wakee's latency. Measured on 2 cores: TCP +20 to 30 %,
//! 64-byte UDP +50 %. Spinning without yielding was measured too and lowers TCP: it takes the
//! core from the container.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ovnet_sys::udp::{MAX_GSO_PAYLOAD, MAX_GSO_SEGMENTS};
use ovnet_sys::{Epoll, Tap, UnderlaySocket, Waker};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::tunnel::{self, OuterV4};
use ovnet_wire::virtio::{self, VnetHdr};
use ovnet_wire::{gro, gso, vxlan, MacAddr, Vni};

use crate::counters::{DropReason, RateLimitedLog};
use crate::dataplane::{Network, Networks, Shared, UplinkPath};
use crate::decap::{self, Admitted};
use crate::encap::{self, Encap, ReplyKind, REPLY_BUF_LEN};

/// Reads from one descriptor per pass before the worker turns to the others, checks for
/// shutdown and reloads the tables. 64 keeps a pass under ~100 µs at 1500-byte frames while
/// amortising the `epoll_wait` over many packets.
const BATCH: usize = 64;

/// How long a worker sleeps without traffic; only bounds the ageing sweep's delay (wake-ups
/// for shutdown and changes come through the waker).
const IDLE_WAIT_MS: i32 = 1000;

/// Largest datagram, GRO run or TAP super-frame a worker reads (with its `virtio_net_hdr`).
const BUF_LEN: usize = 65_536 + virtio::HEADER_LEN;

/// The encap arena: room for a full train of small frames plus one more read of any size.
const ARENA_LEN: usize = 2 * BUF_LEN + MAX_GSO_SEGMENTS * SLOT_ALIGN;

/// Small frames waiting in the arena start on this alignment.
const SLOT_ALIGN: usize = 64;

/// Most segments a super-frame is cut into: 64 KB at an MSS no smaller than 536 (RFC 879).
const MAX_SEGMENTS: usize = 65_536 / 536 + 1;

/// Room for one segment's VXLAN header and frame headers (Ethernet + VLAN, IP, TCP with
/// options).
const SEGMENT_HEADERS_LEN: usize = vxlan::HEADER_LEN + 18 + 60 + 60;

/// The `virtio_net_hdr` of a frame that needs nothing from the kernel.
const PLAIN_VNET_HDR: [u8; virtio::HEADER_LEN] = [0; virtio::HEADER_LEN];

/// Epoll token of the worker's waker.
const TOKEN_WAKER: u64 = 0;
/// Epoll token of the worker's listening socket.
const TOKEN_SOCKET: u64 = 1;
/// Epoll tokens of TAP queues start here: `TOKEN_TAP + (vni << 16 | queue)`.
const TOKEN_TAP: u64 = 2;

/// The epoll token of queue `queue` of network `vni`.
pub(crate) fn tap_token(vni: Vni, queue: usize) -> u64 {
    TOKEN_TAP + ((u64::from(vni.get()) << 16) | (queue as u64 & 0xffff))
}

/// The network and queue of a TAP token.
fn tap_of_token(token: u64) -> Option<(Vni, usize)> {
    let t = token.checked_sub(TOKEN_TAP)?;
    let vni = Vni::new(u32::try_from(t >> 16).ok()?)?;
    Some((vni, (t & 0xffff) as usize))
}

/// Registers a worker's own descriptors (waker and socket) with its epoll.
pub(crate) fn register_worker(ep: &Epoll, waker: &Waker, sock: &UnderlaySocket) -> io::Result<()> {
    ep.add(waker.as_raw_fd(), TOKEN_WAKER)?;
    ep.add(sock.as_raw_fd(), TOKEN_SOCKET)
}

/// Writes one frame to a TAP, prefixed with an empty `virtio_net_hdr` if the TAP wants one.
fn tap_write(tap: &Tap, frame: &[u8]) -> io::Result<usize> {
    if tap.has_vnet_hdr() {
        tap.write_vectored(&[IoSlice::new(&PLAIN_VNET_HDR), IoSlice::new(frame)])
    } else {
        tap.write(frame)
    }
}

/// Writes one frame to `tap` of network `net`, counting it.
fn deliver(net: &Network, tap: &Tap, frame: &[u8], log: &mut RateLimitedLog) {
    match tap_write(tap, frame) {
        Ok(_) => net.counters.rx(frame.len()),
        Err(e) => {
            net.counters.count_drop(DropReason::TapWriteError);
            log.warn(format_args!("writing to TAP {}: {e}", tap.name()));
        }
    }
}

/// Runs worker `index` until `stop` is set.
pub(crate) fn worker_loop(s: &Shared, index: usize, stop: &AtomicBool) {
    let w = &s.workers[index];
    if let Some(slice) = s.slice {
        match ovnet_sys::sched::set_own_slice(slice) {
            Ok(true) => {}
            Ok(false) => log::info!("data-plane worker {index} keeps its real-time or idle policy"),
            Err(e) => log::info!("data-plane worker {index} runs with the default time slice: {e}"),
        }
    }
    let mut d = Decapper {
        s,
        index,
        scratch: vec![0u8; BUF_LEN],
        header: [0u8; SUPER_HEADER_LEN],
        run: Run {
            payloads: Vec::with_capacity(MAX_RUN),
            ..Run::default()
        },
        tap_log: RateLimitedLog::new(Duration::from_secs(5)),
        rx_log: RateLimitedLog::new(Duration::from_secs(5)),
    };
    let mut rx_buf = vec![0u8; BUF_LEN];
    let mut e = Encapper {
        s,
        index,
        reply: [0u8; REPLY_BUF_LEN],
        tunnel_hdr: [0u8; tunnel::HEADER_ROOM],
        ip_id: (index as u16).wrapping_mul(0x4000),
        hdrs: vec![0u8; MAX_SEGMENTS * SEGMENT_HEADERS_LEN],
        segs: vec![gso::SegmentRef::default(); MAX_SEGMENTS],
        train: Train {
            frames: Vec::with_capacity(MAX_GSO_SEGMENTS),
            ..Train::default()
        },
        at: 0,
        send_log: RateLimitedLog::new(Duration::from_secs(5)),
        tap_log: RateLimitedLog::new(Duration::from_secs(5)),
    };
    let mut arena = vec![0u8; ARENA_LEN];
    let mut tokens = [0u64; 64];
    let mut last_sweep = 0;
    let mut timeout = IDLE_WAIT_MS;
    let mut poll = PollWindow::new(s.poll, Instant::now());
    let mut forwarding = ForwardingCheck::new(s.learned.now_ms());
    let mut load = LoadMeter::new(Instant::now());
    loop {
        // Between passes the worker holds no network: acknowledging the generation here is
        // what lets `remove_network` know the TAPs it dropped are no longer in use.
        w.seen
            .store(s.generation.load(Ordering::Acquire), Ordering::Release);
        let n = match w.epoll.wait(&mut tokens, timeout) {
            Ok(n) => n,
            Err(err) => {
                log::error!("epoll_wait failed in data-plane worker {index}: {err}");
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        if stop.load(Ordering::Acquire) {
            break;
        }
        // Only a pass with events reads the clock: it starts the busy time and the poll window.
        let woke = (n > 0).then(Instant::now);
        if let Some(t) = woke {
            poll.event(t);
        }
        let now = s.learned.now_ms();
        let mut more = false;
        for &token in &tokens[..n] {
            match token {
                TOKEN_WAKER => w.waker.clear(),
                TOKEN_SOCKET => more |= d.receive(&w.socket, &mut rx_buf, now),
                t => {
                    let Some((vni, queue)) = tap_of_token(t) else {
                        continue;
                    };
                    let networks = s.networks.load();
                    let Some(tap) = networks.get(&vni).and_then(|n| n.queues.get(queue)) else {
                        // Removed while the event was pending.
                        continue;
                    };
                    let tap = tap.clone();
                    drop(networks);
                    more |= e.drain(vni, &tap, &mut arena, now);
                }
            }
        }
        if let Some(t) = woke {
            if let Some(per_mille) = load.busy(t, Instant::now()) {
                s.flows.publish_load(index, now, per_mille);
            }
        }
        // Level-triggered epoll: whatever a bounded batch left behind is reported again at
        // once. Idle, poll until the window since the last event closes, then sleep.
        timeout = if more {
            0
        } else if poll.idle(Instant::now()) {
            std::thread::yield_now();
            0
        } else {
            IDLE_WAIT_MS
        };
        if index == 0 && now.saturating_sub(last_sweep) >= 10_000 {
            s.learned.expire(now);
            last_sweep = now;
        }
        if let (0, Some(up)) = (index, &s.uplink) {
            forwarding.check(up, now);
        }
    }
}

/// How often a worker publishes its load, for flow steering ([`crate::steer`]) and operators.
const LOAD_WINDOW: Duration = Duration::from_millis(50);

/// A worker's share of time spent moving frames (from `epoll_wait` returning events to the
/// end of the pass), per [`LOAD_WINDOW`]: polling and sleeping are not busy.
#[derive(Debug, Clone, Copy)]
struct LoadMeter {
    start: Instant,
    busy: Duration,
}

impl LoadMeter {
    fn new(now: Instant) -> LoadMeter {
        LoadMeter {
            start: now,
            busy: Duration::ZERO,
        }
    }

    /// The worker was busy from `from` to `to`; at the end of a window, its load in per mille.
    fn busy(&mut self, from: Instant, to: Instant) -> Option<u32> {
        self.busy += to.saturating_duration_since(from);
        let window = to.saturating_duration_since(self.start);
        if window < LOAD_WINDOW {
            return None;
        }
        let per_mille = (self.busy.as_micros() * 1000 / window.as_micros().max(1)).min(1000);
        *self = LoadMeter::new(to);
        Some(per_mille as u32)
    }
}

/// The smallest window a worker polls once polling has paid off again.
const MIN_POLL: Duration = Duration::from_micros(10);

/// How long an idle worker polls before it sleeps: the rule of Linux's `haltpoll` cpuidle
/// governor, applied to a thread. What counts is the gap between two events: a gap longer
/// than the window but within the configured maximum would have been caught by a longer
/// window, which doubles (up to the maximum); a gap longer than the maximum was polled for in
/// vain, and the window halves. Under load it stays near the maximum; with sparse traffic (a
/// ping every few milliseconds) it shrinks to nothing, so a quiet host spends no CPU on it.
#[derive(Debug, Clone, Copy)]
struct PollWindow {
    max: Duration,
    window: Duration,
    last_event: Instant,
}

impl PollWindow {
    fn new(max: Duration, now: Instant) -> PollWindow {
        PollWindow {
            max,
            window: max,
            last_event: now,
        }
    }

    /// Traffic (or another event) arrived at `now`.
    fn event(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_event);
        if gap > self.max {
            self.window /= 2;
            if self.window < MIN_POLL {
                self.window = Duration::ZERO;
            }
        } else if gap > self.window {
            self.window = (self.window * 2).max(MIN_POLL).min(self.max);
        }
        self.last_event = now;
    }

    /// The worker has nothing to do at `now`: true to poll again, false to sleep.
    fn idle(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_event) < self.window
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

/// The receive side of a worker: its buffers and logs.
struct Decapper<'s> {
    s: &'s Shared,
    /// The worker's index, which picks the TAP queue it writes to.
    index: usize,
    scratch: Vec<u8>,
    header: [u8; SUPER_HEADER_LEN],
    run: Run,
    tap_log: RateLimitedLog,
    rx_log: RateLimitedLog,
}

impl Decapper<'_> {
    /// Receives up to [`BATCH`] reads from `sock`; true if it may have more.
    fn receive(&mut self, sock: &UnderlaySocket, buf: &mut [u8], now: u64) -> bool {
        for _ in 0..BATCH {
            let networks = self.s.networks.load();
            let (n, from, segment) = match sock.recv_gro(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // ICMP errors from earlier sends surface here (ECONNREFUSED and friends).
                    self.rx_log
                        .warn(format_args!("receiving on the VXLAN socket: {e}"));
                    continue;
                }
            };
            // With GRO, one read may hold a run of datagrams of `segment` bytes each.
            let step = segment.unwrap_or(n).max(1);
            let mut at = 0;
            while at < n {
                let end = n.min(at + step);
                self.datagram(&networks, buf, at, end, from, now);
                at = end;
            }
            self.flush(&networks, buf);
        }
        true
    }

    /// The TAP queue this worker writes network `net`'s frames to.
    fn tap<'n>(&self, net: &'n Network) -> &'n Tap {
        &net.queues[self.index % net.queues.len()]
    }

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
        if s.peers.signal(datagram, from, now) {
            return;
        }
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
        s.peers.heard(from.ip(), now);
        let tap = self.tap(net);
        if frame.len() > net.max_frame {
            // A TCP super-frame (admit let only those through; a kernel vxlan peer sends its
            // TSO packets unsegmented over a virtual underlay).
            self.flush(networks, buf);
            let frame = &buf[at + vxlan::HEADER_LEN..end];
            if tap.has_vnet_hdr() && self.pass_super(net, tap, frame) {
                return;
            }
            // Split it to the network's MTU; each segment gets full checksums.
            let log = &mut self.tap_log;
            let split = gso::segment_tcp(frame, net.mtu, &mut self.scratch, |seg| {
                deliver(net, tap, seg, log)
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
        let seg = if tap.has_vnet_hdr() {
            gro::candidate(&buf[start..end]).filter(|seg| {
                matches!(seg.proto, gro::Proto::Tcp { .. })
                    || s.udp_coalesce.load(Ordering::Relaxed)
            })
        } else {
            None
        };
        let Some(seg) = seg else {
            self.flush(networks, buf);
            return deliver(net, tap, &buf[start..end], &mut self.tap_log);
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

    /// Writes a received TCP super-frame to an offloading TAP whole, as the GSO frame it is:
    /// its headers (IP length and checksum, TCP checksum field) are rebuilt here, so nothing of
    /// the sender's checksum state is trusted, and the receiving kernel segments it to the
    /// network's MTU if it must. False if the frame is not a plain data segment (SYN, FIN,
    /// RST, URG...), which is then split in software.
    fn pass_super(&mut self, net: &Network, tap: &Tap, frame: &[u8]) -> bool {
        let Some(seg) = gro::candidate(frame) else {
            return false;
        };
        if !matches!(seg.proto, gro::Proto::Tcp { .. }) {
            return false;
        }
        let headers = seg.t.payload - seg.t.l3;
        let Some(mss) = net.mtu.checked_sub(headers).filter(|&m| m > 0) else {
            return false;
        };
        let count = seg.payload_len.div_ceil(mss);
        let shape = gro::Segment {
            payload_len: mss.min(seg.payload_len),
            ..seg
        };
        let Some(hlen) = gro::super_header(
            frame,
            &shape,
            count,
            seg.payload_len,
            false,
            &mut self.header,
        ) else {
            return false;
        };
        let parts = [
            IoSlice::new(&self.header[..hlen]),
            IoSlice::new(&frame[seg.t.payload..seg.t.end]),
        ];
        match tap.write_vectored(&parts) {
            Ok(_) => {
                net.counters.rx(seg.t.end);
                net.counters.super_frame_in();
            }
            Err(e) => {
                net.counters.count_drop(DropReason::TapWriteError);
                self.tap_log
                    .warn(format_args!("writing to TAP {}: {e}", tap.name()));
            }
        }
        true
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
                let tap = self.tap(net);
                let frame = &buf[fs..fs + first.t.end];
                if r.payloads.len() == 1 {
                    deliver(net, tap, frame, &mut self.tap_log);
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
                            match tap.write_vectored(&iov[..n + 1]) {
                                Ok(_) => {
                                    net.counters.rx_many(n as u64, r.frame_bytes as u64);
                                    net.counters.coalesced();
                                }
                                Err(e)
                                    if is_udp_gso_refusal(&e, &first)
                                        && self.s.udp_coalesce.swap(false, Ordering::Relaxed) =>
                                {
                                    // A kernel before 6.2 knows no GSO_UDP_L4: deliver this
                                    // run one datagram at a time and stop coalescing UDP.
                                    log::warn!(
                                        "TAP {} refuses UDP super-frames ({e}); delivering UDP \
                                         datagrams one by one from now on",
                                        tap.name()
                                    );
                                    // Every member has the first one's header layout.
                                    for &(p0, p1) in &r.payloads {
                                        let frame = &buf[p0 - first.t.payload..p1];
                                        deliver(net, tap, frame, &mut self.tap_log);
                                    }
                                }
                                Err(e) => {
                                    net.counters.count_drop(DropReason::TapWriteError);
                                    self.tap_log.warn(format_args!(
                                        "writing a super-frame to TAP {}: {e}",
                                        tap.name()
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

/// Small frames for one VTEP through one send socket, waiting in the arena to leave as one
/// UDP GSO send: every datagram `stride` bytes but the last, which may be shorter and closes
/// the train.
#[derive(Debug, Default)]
struct Train {
    net: Option<Arc<Network>>,
    header: [u8; vxlan::HEADER_LEN],
    dst: Option<SocketAddr>,
    sock: usize,
    /// Datagram size (VXLAN header + frame) of every member but possibly the last.
    stride: usize,
    /// A shorter datagram was added: nothing may follow it.
    closed: bool,
    /// Datagram bytes so far.
    bytes: usize,
    /// (start, end) of each frame in the arena.
    frames: Vec<(usize, usize)>,
}

impl Train {
    /// Whether a datagram of `len` bytes to `dst` through socket `sock` may join.
    fn takes(&self, dst: SocketAddr, sock: usize, len: usize) -> bool {
        self.dst == Some(dst)
            && self.sock == sock
            && !self.closed
            && len <= self.stride
            && self.frames.len() < MAX_GSO_SEGMENTS
            && self.bytes + len <= MAX_GSO_PAYLOAD
    }
}

/// The send side of a worker: its buffers and logs.
struct Encapper<'s> {
    s: &'s Shared,
    /// The worker's index, which picks the uplink queue it writes to.
    index: usize,
    reply: [u8; REPLY_BUF_LEN],
    /// Virtio, outer and inner headers of a super-frame sent whole through the uplink.
    tunnel_hdr: [u8; tunnel::HEADER_ROOM],
    /// Outer IPv4 identification of the next super-frame sent through the uplink.
    ip_id: u16,
    /// Per-segment headers of the super-frame being sent.
    hdrs: Vec<u8>,
    /// Where each segment's headers and payload are.
    segs: Vec<gso::SegmentRef>,
    /// Small frames waiting to leave together.
    train: Train,
    /// Where the next read goes in the arena: after the train's frames.
    at: usize,
    send_log: RateLimitedLog,
    tap_log: RateLimitedLog,
}

impl Encapper<'_> {
    /// Reads up to [`BATCH`] frames from `tap` (a queue of network `vni`) and sends them; true
    /// if the TAP may have more.
    fn drain(&mut self, vni: Vni, tap: &Tap, arena: &mut [u8], now: u64) -> bool {
        let off = if tap.has_vnet_hdr() {
            virtio::HEADER_LEN
        } else {
            0
        };
        let mut more = true;
        for _ in 0..BATCH {
            // Loaded per read (a few atomic operations), so a table swapped in by the control
            // plane applies to the very next frame.
            let networks = self.s.networks.load();
            let Some(net) = networks.get(&vni) else {
                more = false;
                break;
            };
            let at = self.at;
            let n = match tap.read(&mut arena[at..at + BUF_LEN]) {
                Ok(n) => n,
                Err(err) => {
                    if err.kind() != io::ErrorKind::WouldBlock {
                        self.tap_log
                            .warn(format_args!("reading TAP {}: {err}", tap.name()));
                    }
                    more = false;
                    break;
                }
            };
            if n < off {
                net.counters.count_drop(DropReason::Truncated);
                continue;
            }
            let hdr = if off > 0 {
                VnetHdr::parse(&arena[at..at + off]).unwrap_or_default()
            } else {
                VnetHdr::default()
            };
            self.frame(net, tap, &hdr, arena, at + off, at + n, now);
        }
        self.flush(arena);
        more
    }

    /// Handles the frame at `arena[start..end]`, read from `tap` of network `net`.
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        net: &Arc<Network>,
        tap: &Tap,
        hdr: &VnetHdr,
        arena: &mut [u8],
        start: usize,
        end: usize,
        now: u64,
    ) {
        let s = self.s;
        let gso = hdr.is_tcp_gso();
        // A super-frame's checksums are computed per segment; a plain frame's partial one now.
        if !gso && hdr.needs_csum() && virtio::finish_csum(&mut arena[start..end], hdr).is_err() {
            return net.counters.count_drop(DropReason::Truncated);
        }
        let frame = &arena[start..end];
        // The size limit of a super-frame applies to its segments.
        let limit = if gso { usize::MAX } else { net.max_frame };
        match encap::encap(
            frame,
            net.vni,
            &net.table,
            &s.learned,
            now,
            limit,
            &mut self.reply,
        ) {
            Encap::Unicast(dst) if gso => {
                self.flush(arena);
                self.send_super(net, hdr, frame, dst);
            }
            Encap::Unicast(dst) => self.queue(net, arena, start, end, dst),
            Encap::Flood(list) => {
                self.flush(arena);
                net.counters.flood();
                for &dst in list {
                    if gso {
                        self.send_super(net, hdr, frame, dst);
                    } else {
                        self.send_one(net, frame, dst);
                    }
                }
            }
            Encap::Reply { len, kind } => match tap_write(tap, &self.reply[..len]) {
                Ok(_) => match kind {
                    ReplyKind::Arp => net.counters.arp_reply(),
                    ReplyKind::Nd => net.counters.nd_reply(),
                },
                Err(err) => {
                    net.counters.count_drop(DropReason::TapWriteError);
                    self.tap_log
                        .warn(format_args!("writing a reply to TAP {}: {err}", tap.name()));
                }
            },
            Encap::Local => {}
            Encap::Drop(reason) => net.counters.count_drop(reason),
        }
    }

    /// Adds the frame at `arena[start..end]` to the train for `dst`, sending the train first
    /// if the frame cannot join it, and after if it is full.
    fn queue(
        &mut self,
        net: &Arc<Network>,
        arena: &[u8],
        start: usize,
        end: usize,
        dst: SocketAddr,
    ) {
        let s = self.s;
        // Without UDP GSO the train still leaves in one system call, through `sendmmsg`.
        let sock = s.tx_index(&arena[start..end], self.index, &dst);
        let len = vxlan::HEADER_LEN + end - start;
        if !self.train.takes(dst, sock, len) {
            self.flush(arena);
            let t = &mut self.train;
            t.net = Some(net.clone());
            t.header = vxlan::header(net.vni);
            t.dst = Some(dst);
            t.sock = sock;
            t.stride = len;
        }
        let t = &mut self.train;
        t.closed = len < t.stride;
        t.bytes += len;
        t.frames.push((start, end));
        // The next read goes after this frame; the arena always keeps room for a full one.
        self.at = end.next_multiple_of(SLOT_ALIGN);
        if t.frames.len() == MAX_GSO_SEGMENTS || self.at + BUF_LEN > arena.len() {
            self.flush(arena);
        }
    }

    /// Sends the train of small frames, if any: one datagram as it is, several with one UDP
    /// GSO `sendmsg` gathered from the arena.
    fn flush(&mut self, arena: &[u8]) {
        self.at = 0;
        let t = &mut self.train;
        let (Some(net), Some(dst)) = (t.net.take(), t.dst.take()) else {
            return;
        };
        let count = t.frames.len();
        let mut iov = [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
        for (pair, &(a, b)) in iov.chunks_exact_mut(2).zip(&t.frames) {
            pair[0] = IoSlice::new(&t.header);
            pair[1] = IoSlice::new(&arena[a..b]);
        }
        let iov = &iov[..2 * count];
        let sock = self.s.tx_at(t.sock);
        let sent = if count == 1 {
            send_blocking(|| sock.send_to_vectored(iov, dst), sock)
        } else {
            send_train(self.s, sock, iov, t.stride, dst)
        };
        match sent {
            Ok(_) => {
                net.counters
                    .tx_many(count as u64, (t.bytes - count * vxlan::HEADER_LEN) as u64);
                if count > 1 {
                    net.counters.train();
                }
            }
            Err(e) => {
                net.counters.count_drop(DropReason::SendError);
                self.send_log
                    .warn(format_args!("sending to VTEP {dst}: {e}"));
            }
        }
        t.frames.clear();
        t.bytes = 0;
        t.closed = false;
    }

    /// Sends one frame as one datagram: VXLAN header and frame gathered, not copied.
    fn send_one(&mut self, net: &Network, frame: &[u8], dst: SocketAddr) {
        let sock = self.s.tx_socket(frame, self.index, &dst);
        let header = vxlan::header(net.vni);
        let parts = [IoSlice::new(&header), IoSlice::new(frame)];
        match send_blocking(|| sock.send_to_vectored(&parts, dst), sock) {
            Ok(_) => net.counters.tx(frame.len()),
            Err(e) => {
                net.counters.count_drop(DropReason::SendError);
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
        if let Some(up) = uplink_on(self.s) {
            if self.send_whole(up, net, hdr, frame, &t, mss, dst) {
                return;
            }
        }
        let header = vxlan::header(net.vni);
        let train =
            match gso::segment_tcp_headers(frame, mss, &header, &mut self.hdrs, &mut self.segs) {
                Ok(t) => t,
                Err(_) => return net.counters.count_drop(DropReason::Oversized),
            };
        net.counters.super_frame();
        let sock = self.s.tx_socket(frame, self.index, &dst);
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
            let sent = if batch.len() > 1 {
                send_train(self.s, sock, iov, train.stride, dst)
            } else {
                send_blocking(|| sock.send_to_vectored(iov, dst), sock)
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

/// The uplink, if super-frames still leave through it.
fn uplink_on(s: &Shared) -> Option<&UplinkPath> {
    s.uplink.as_ref().filter(|u| u.on.load(Ordering::Relaxed))
}

impl Encapper<'_> {
    /// Sends the super-frame `frame` (headers at `t`) to `dst` whole through the uplink, for
    /// the kernel to cut into `mss`-byte segments where the underlay needs it. False if it
    /// cannot go that way (IPv6 VTEP, too long, refused), and is then to be segmented here; a
    /// refusal by the kernel turns the uplink off for good.
    #[allow(clippy::too_many_arguments)]
    fn send_whole(
        &mut self,
        up: &UplinkPath,
        net: &Network,
        hdr: &VnetHdr,
        frame: &[u8],
        t: &gso::TcpFrame,
        mss: usize,
        dst: SocketAddr,
    ) -> bool {
        let SocketAddr::V4(to) = dst else {
            return false;
        };
        let Ok(mss16) = u16::try_from(mss) else {
            return false;
        };
        let outer = OuterV4 {
            dst_mac: up.mac,
            src_mac: UPLINK_SRC_MAC,
            src: up.src,
            dst: *to.ip(),
            src_port: self.s.tx_port(frame, self.index, &dst),
            dst_port: to.port(),
            id: self.ip_id,
            ttl: 64,
            vni: net.vni,
        };
        let ecn = hdr.gso_type & virtio::GSO_ECN != 0;
        let Some(n) = tunnel::super_frame_v4(frame, t, mss16, ecn, &outer, &mut self.tunnel_hdr)
        else {
            return false;
        };
        let payload = t.end - t.payload;
        let segments = payload.div_ceil(mss);
        let parts = [
            IoSlice::new(&self.tunnel_hdr[..n]),
            IoSlice::new(&frame[t.payload..t.end]),
        ];
        let queue = &up.queues[self.index % up.queues.len()];
        match queue.write_vectored(&parts) {
            Ok(_) => {
                self.ip_id = self.ip_id.wrapping_add(segments as u16);
                up.written.fetch_add(1, Ordering::Relaxed);
                net.counters.super_frame();
                net.counters.tunnel_frame();
                net.counters
                    .tx_many(segments as u64, (segments * t.payload + payload) as u64);
                true
            }
            Err(e) => {
                if e.raw_os_error() == Some(EINVAL) {
                    up.on.store(false, Ordering::Relaxed);
                    log::warn!(
                        "uplink {} refused a UDP tunnel GSO frame ({e}); segmenting super-frames \
                         from now on",
                        queue.name()
                    );
                } else {
                    self.send_log
                        .warn(format_args!("writing to uplink {}: {e}", queue.name()));
                }
                false
            }
        }
    }
}

/// Source MAC of frames written to the uplink (the host does not look at it).
const UPLINK_SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

const EINVAL: i32 = 22;

/// Watches that the host forwards what is written to the uplink: a firewall's FORWARD chain
/// may drop it (Docker sets the chain's policy to DROP). Once a second, if at least
/// [`ForwardingCheck::MIN_WRITTEN`] super-frames were written but the host's forwarded-packet
/// count grew by less than half as many, the uplink is turned off and super-frames are
/// segmented and sent from the UDP sockets again; TCP retransmits what was lost.
#[derive(Debug)]
struct ForwardingCheck {
    at: u64,
    written: u64,
    forwarded: Option<u64>,
}

impl ForwardingCheck {
    const MIN_WRITTEN: u64 = 8;

    fn new(now: u64) -> ForwardingCheck {
        ForwardingCheck {
            at: now,
            written: 0,
            forwarded: ovnet_sys::uplink::forwarded_datagrams().ok(),
        }
    }

    fn check(&mut self, up: &UplinkPath, now: u64) {
        if now.saturating_sub(self.at) < 1000 || !up.on.load(Ordering::Relaxed) {
            return;
        }
        self.at = now;
        let written = up.written.load(Ordering::Relaxed);
        if written == self.written {
            return;
        }
        let Ok(forwarded) = ovnet_sys::uplink::forwarded_datagrams() else {
            return;
        };
        let last = self.forwarded.replace(forwarded);
        let wrote = written - std::mem::replace(&mut self.written, written);
        if let Some(last) = last {
            if forwarding_blocked(wrote, forwarded.saturating_sub(last)) {
                up.on.store(false, Ordering::Relaxed);
                log::warn!(
                    "the host forwarded {} of {wrote} super-frames written to the uplink \
                     (a firewall FORWARD rule dropping them?); segmenting super-frames from now \
                     on. Allow forwarding from interface {} to use UDP tunnel GSO",
                    forwarded.saturating_sub(last),
                    up.queues[0].name()
                );
            }
        }
    }
}

/// Whether the host forwarded too few of the super-frames written to the uplink.
fn forwarding_blocked(written: u64, forwarded: u64) -> bool {
    written >= ForwardingCheck::MIN_WRITTEN && forwarded < written / 2
}

/// Sends the (header, payload) pairs of `iov`, each pair one datagram of `stride` bytes (the
/// last may be shorter), with one UDP GSO `sendmsg`; on a kernel or route that refuses GSO,
/// turns it off for good and sends one datagram per pair.
fn send_train(
    s: &Shared,
    sock: &UnderlaySocket,
    iov: &[IoSlice<'_>],
    stride: usize,
    dst: SocketAddr,
) -> io::Result<usize> {
    if !s.gso.load(Ordering::Relaxed) {
        return send_each(sock, iov, dst);
    }
    match send_blocking(|| sock.send_gso_vectored(iov, stride as u16, dst), sock) {
        Err(e) if is_gso_refusal(&e) => {
            s.gso.store(false, Ordering::Relaxed);
            log::warn!("UDP GSO refused ({e}); sending one datagram per segment from now on");
            send_each(sock, iov, dst)
        }
        r => r,
    }
}

/// Whether a TAP write of a UDP super-frame failed because the kernel cannot take one.
fn is_udp_gso_refusal(e: &io::Error, first: &gro::Segment) -> bool {
    matches!(first.proto, gro::Proto::Udp { .. }) && e.raw_os_error() == Some(EINVAL)
}

/// `EIO` (the device cannot checksum) and `EINVAL` (no GSO support) mean "do not use GSO";
/// quinn-udp treats them the same way.
fn is_gso_refusal(e: &io::Error) -> bool {
    const EIO: i32 = 5;
    matches!(e.raw_os_error(), Some(EIO | EINVAL))
}

/// Sends each (header, payload) pair of `iov` as its own datagram, batched with `sendmmsg`
/// (the fallback where UDP GSO is off or refused); returns the bytes sent.
fn send_each(sock: &UnderlaySocket, iov: &[IoSlice<'_>], dst: SocketAddr) -> io::Result<usize> {
    let count = iov.len().div_ceil(2);
    let mut sent = 0;
    while sent < count {
        sent += send_blocking(|| sock.send_many(&iov[2 * sent..], 2, dst), sock)?;
    }
    Ok(iov.iter().map(|s| s.len()).sum())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_tokens_round_trip_and_never_collide_with_the_fixed_ones() {
        for (v, q) in [(1u32, 0usize), (42, 3), (0xff_ffff, 0xffff)] {
            let vni = Vni::new(v).unwrap();
            let t = tap_token(vni, q);
            assert!(t >= TOKEN_TAP);
            assert_eq!(tap_of_token(t), Some((vni, q)));
        }
        assert_eq!(tap_of_token(TOKEN_WAKER), None);
        assert_eq!(tap_of_token(TOKEN_SOCKET), None);
    }

    #[test]
    fn the_poll_window_stays_open_under_load_and_closes_for_sparse_traffic() {
        let max = Duration::from_micros(100);
        let us = Duration::from_micros;
        let mut t = Instant::now();
        let mut p = PollWindow::new(max, t);
        assert!(p.idle(t + us(99)), "polls inside the window");
        assert!(!p.idle(t + us(100)), "sleeps when it closes");
        // Under load, bursts 20-100 µs apart: every gap is caught, the window stays whole.
        for gap in [20, 100, 40, 60, 80, 20] {
            t += us(gap);
            p.event(t);
            assert_eq!(p.window, max);
        }
        // A ping every 2 ms was polled for in vain each time: the window halves to nothing.
        for want in [50.0, 25.0, 12.5, 0.0, 0.0] {
            t += Duration::from_millis(2);
            p.event(t);
            assert_eq!(p.window, Duration::from_secs_f64(want / 1e6));
        }
        assert!(!p.idle(t), "sparse traffic polls not at all");
        // Load comes back: each gap a longer window would have caught doubles it.
        for want in [10, 20, 40, 80, 100, 100] {
            t += us(90);
            p.event(t);
            assert_eq!(p.window, us(want));
        }
        assert!(p.idle(t + us(99)));
        // A gap inside the window changes nothing.
        p.window = us(40);
        p.event(t + us(30));
        assert_eq!(p.window, us(40));
    }

    #[test]
    fn only_eio_and_einval_turn_udp_gso_off() {
        for (errno, refusal) in [
            (libc_errno::EIO, true),
            (libc_errno::EINVAL, true),
            (libc_errno::EAGAIN, false),
            (libc_errno::ENOBUFS, false),
            (libc_errno::EMSGSIZE, false),
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(is_gso_refusal(&e), refusal, "{e}");
        }
        assert!(!is_gso_refusal(&io::Error::other("not an OS error")));
    }

    /// The few errno values the tests need (the engine does not depend on libc).
    mod libc_errno {
        pub const EIO: i32 = 5;
        pub const EAGAIN: i32 = 11;
        pub const EINVAL: i32 = 22;
        pub const EMSGSIZE: i32 = 90;
        pub const ENOBUFS: i32 = 105;
    }

    #[test]
    fn the_uplink_is_given_up_only_when_most_super_frames_were_not_forwarded() {
        // Too few written to judge.
        assert!(!forwarding_blocked(7, 0));
        assert!(forwarding_blocked(8, 0));
        assert!(forwarding_blocked(100, 49));
        // Other forwarded traffic only adds to the count.
        assert!(!forwarding_blocked(100, 50));
        assert!(!forwarding_blocked(100, 5000));
    }

    #[test]
    fn the_load_is_the_busy_share_of_each_window() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut l = LoadMeter::new(t0);
        // Busy 10 ms of every 20 for two windows; only a pass ending a window reports.
        assert_eq!(l.busy(ms(0), ms(10)), None);
        assert_eq!(l.busy(ms(20), ms(30)), None);
        assert_eq!(l.busy(ms(40), ms(50)), Some(600));
        assert_eq!(l.busy(ms(60), ms(70)), None);
        // A pass after a long sleep: the window includes the sleep.
        assert_eq!(l.busy(ms(1_050), ms(1_051)), Some(10));
        // Busy throughout.
        assert_eq!(l.busy(ms(1_051), ms(1_200)), Some(1000));
    }

    #[test]
    fn a_zero_poll_window_always_sleeps() {
        let t0 = Instant::now();
        let mut p = PollWindow::new(Duration::ZERO, t0);
        for i in [0, 1, 50, 5000] {
            let t = t0 + Duration::from_micros(i);
            p.event(t);
            assert!(!p.idle(t));
        }
    }

    #[test]
    fn a_train_takes_equal_datagrams_then_one_shorter_and_nothing_after() {
        let dst: SocketAddr = "192.0.2.1:4789".parse().unwrap();
        let other: SocketAddr = "192.0.2.2:4789".parse().unwrap();
        let mut t = Train {
            dst: Some(dst),
            sock: 3,
            stride: 100,
            bytes: 100,
            frames: vec![(0, 92)],
            ..Train::default()
        };
        assert!(t.takes(dst, 3, 100));
        assert!(t.takes(dst, 3, 60), "a shorter one may end the train");
        assert!(!t.takes(dst, 3, 101), "a longer one may not");
        assert!(!t.takes(other, 3, 100), "another VTEP");
        assert!(!t.takes(dst, 4, 100), "another flow socket");
        t.closed = true;
        assert!(!t.takes(dst, 3, 100), "nothing after the short one");
        t.closed = false;
        t.frames = vec![(0, 0); MAX_GSO_SEGMENTS];
        assert!(!t.takes(dst, 3, 100), "at most 64 segments");
        t.frames.truncate(1);
        t.bytes = MAX_GSO_PAYLOAD - 50;
        assert!(!t.takes(dst, 3, 100), "at most one GSO payload");
    }
}
