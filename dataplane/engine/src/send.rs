//! The send path: frames read from a network's TAP, encapsulated and sent to the underlay.
//!
//! [`crate::encap`] decides what happens to each frame; this module carries it out with
//! buffers allocated once per worker ([`Encapper`]):
//! - A TCP super-frame (read with its `virtio_net_hdr` from an offloading TAP) goes whole, with
//!   its outer headers, to the uplink for the kernel to segment where tunnel GSO is on
//!   ([`crate::uplink`]); otherwise it is cut into segments whose headers are written to a small
//!   buffer while payloads stay in the read buffer, and the `[VXLAN header][headers][payload]`
//!   train leaves in one UDP GSO `sendmsg` (gathered) per up to 64 segments.
//! - Small frames for one VTEP and flow socket are read into consecutive slots of an arena and
//!   leave together the same way ([`Train`]), so a burst of 64-byte packets costs one send,
//!   not one per packet.
//!
//! - A frame larger than the path to its peer ([`crate::encap::fit`]) is refused and answered
//!   with ICMP "too big" ([`crate::pmtu`]), or leaves alone for the host to fragment (IPv4
//!   without DF; a super-frame is cut into segments that fit instead). Each flooded copy is
//!   checked against its own peer's path.
//!
//! Which socket, and so which outer source port, a flow leaves from is chosen here too
//! ([`TxSockets`]): by inner-flow hash, or with several workers the one that steers the flow to
//! the peer worker it was given ([`crate::steer`]). Sends go through
//! [`ovnet_sys::UnderlaySocket::send`], which degrades to one datagram at a time where the
//! kernel refuses UDP GSO (the refusal turns the offload off in [`Capabilities`]) or where the
//! route to the peer is narrower than a segment (`EMSGSIZE`: the datagrams leave one by one
//! for the host to fragment, counted as fragmented; the tables' path MTU was wrong).
//!
//! The TSO segment cap a network's containers must use ([`tso_segments`]) follows from these
//! limits, and lives with them.

use std::cell::Cell;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ovnet_sys::udp::{MAX_GSO_PAYLOAD, MAX_GSO_SEGMENTS};
use ovnet_sys::{Patience, Sent, Tap, Transmit, UdpConfig, UnderlaySocket};
use ovnet_wire::tunnel::OUTER_V4_LEN;
use ovnet_wire::virtio::{self, VnetHdr};
use ovnet_wire::{ethernet, flow, gso, vxlan, Vni};

use crate::capability::Capabilities;
use crate::config::DataplaneError;
use crate::counters::{DropReason, RateLimitedLog};
use crate::encap::{self, Encap, Fit, ReplyKind, Size, REPLY_BUF_LEN};
use crate::fdb::LearnedTable;
use crate::network::{write_frame, Network, Networks, BUF_LEN};
use crate::pacing::BATCH;
use crate::peers::PeerTable;
use crate::pmtu::TooBigAnswers;
use crate::shared::Shared;
use crate::steer::FlowSteering;
use crate::uplink::{Tunnel, TunnelWriter, UplinkPath};

/// The encap arena: room for a full train of small frames plus one more read of any size.
pub(crate) const ARENA_LEN: usize = 2 * BUF_LEN + MAX_GSO_SEGMENTS * SLOT_ALIGN;

/// Small frames waiting in the arena start on this alignment.
const SLOT_ALIGN: usize = 64;

/// Most segments a super-frame is cut into: 64 KB at an MSS no smaller than 536 (RFC 879).
const MAX_SEGMENTS: usize = 65_536 / 536 + 1;

/// Room for one segment's VXLAN header and frame headers.
const SEGMENT_HEADERS_LEN: usize = vxlan::HEADER_LEN + gso::MAX_HEADERS;

/// Most TCP segments a container's stack may put in one TSO super-frame on a network with MTU
/// `mtu`, given whether super-frames leave through the uplink (`tunnel_gso`).
///
/// - Through the uplink, a super-frame becomes one outer IPv4 datagram (at most 65535 bytes):
///   outer IPv4, UDP and VXLAN headers, the inner frame's headers (at most
///   [`gso::MAX_HEADERS`]) and segments of at most MTU - 40 payload bytes each. At MTU 1450
///   that is 46, what the TCP stack builds within its 64 KB GSO limit anyway: as large as the
///   kernel's vxlan sends, and 6 % more TCP throughput with two streams than with 44 (bench,
///   same run).
/// - Otherwise as many as one UDP GSO `sendmsg` carries: at most [`MAX_GSO_SEGMENTS`]
///   datagrams and [`MAX_GSO_PAYLOAD`] bytes, each datagram a VXLAN header, an Ethernet header
///   and up to MTU bytes. Bigger super-frames would cost a second send, receive and TAP write
///   for a handful of segments. (Where tunnel GSO is turned off later, larger super-frames
///   still go, in two sends.)
pub fn tso_segments(mtu: u32, tunnel_gso: bool) -> u32 {
    // The smallest IPv4 MTU (RFC 791), and the IPv4 + TCP headers without options.
    let mtu = mtu.max(68) as usize;
    let segments = if tunnel_gso {
        let outer = OUTER_V4_LEN - ethernet::HEADER_LEN;
        (65_535 - outer - gso::MAX_HEADERS) / (mtu - 40)
    } else {
        MAX_GSO_PAYLOAD / (vxlan::HEADER_LEN + ethernet::HEADER_LEN + mtu)
    };
    segments.clamp(1, MAX_GSO_SEGMENTS) as u32
}

/// Counts the `count` datagrams of a send that failed (or gave up waiting for room) and logs
/// it, rate-limited.
fn send_failed(
    log: &mut RateLimitedLog,
    net: &Network,
    dst: SocketAddr,
    e: &io::Error,
    count: u64,
) {
    let reason = if ovnet_sys::udp::is_stalled(e) {
        DropReason::SendStalled
    } else {
        DropReason::SendError
    };
    net.counters.count_drops(reason, count);
    log.warn(format_args!("sending to VTEP {dst}: {e}"));
}

/// How many datagrams flooding `frame` to one VTEP makes: one, or one per segment of a
/// super-frame (`gso`) at the MSS [`Encapper::send_super`] uses.
fn flood_segments(net: &Network, hdr: &VnetHdr, frame: &[u8], gso: bool) -> u64 {
    let Some(t) = gso.then(|| gso::tcp_frame(frame)).flatten() else {
        return 1;
    };
    let fit = net.mtu.saturating_sub(t.payload - t.l3).max(1);
    let mss = match usize::from(hdr.gso_size) {
        0 => fit,
        m => m.min(fit),
    };
    (t.end - t.payload).div_ceil(mss).max(1) as u64
}

/// The underlay sockets frames leave from, and which one each flow uses.
#[derive(Debug)]
pub(crate) struct TxSockets {
    /// Send sockets, each bound to its own ephemeral port: the outer source port of the flows
    /// sent from it. Empty: frames leave from the listening socket.
    socks: Vec<UnderlaySocket>,
    /// The local port of each of `socks` (of the listening socket if there are none).
    ports: Vec<u16>,
    /// With several workers and steering on: the send sockets whose port sends a datagram to
    /// each peer worker (`port % workers`), by worker.
    steer: Option<Vec<Vec<usize>>>,
    /// The workers' loads and, where this VTEP decides, which peer worker each flow goes to.
    pub(crate) flows: FlowSteering,
}

impl TxSockets {
    /// Binds `count` send sockets on `vtep`'s address for a data plane with `workers` workers
    /// listening on `listener`, and sets up flow steering where there are several workers.
    pub(crate) fn open(
        vtep: SocketAddr,
        count: usize,
        workers: usize,
        listener: &UnderlaySocket,
    ) -> Result<TxSockets, DataplaneError> {
        let mut socks = Vec::with_capacity(count);
        for _ in 0..count {
            let s = UnderlaySocket::bind(&UdpConfig::new(SocketAddr::new(vtep.ip(), 0)))
                .map_err(|e| DataplaneError::Io("binding a VXLAN send socket", e))?;
            socks.push(s);
        }
        let steer = if workers > 1 && !socks.is_empty() {
            steering(listener, &mut socks, workers, vtep)
        } else {
            None
        };
        let ports: io::Result<Vec<u16>> = if socks.is_empty() {
            vec![listener]
        } else {
            socks.iter().collect()
        }
        .into_iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect();
        Ok(TxSockets {
            socks,
            ports: ports.map_err(|e| DataplaneError::Io("reading a send socket's address", e))?,
            steer,
            flows: FlowSteering::new(workers, vtep),
        })
    }

    /// The first send socket, if there are any.
    pub(crate) fn first(&self) -> Option<&UnderlaySocket> {
        self.socks.first()
    }

    /// Whether flows are steered to the peers' workers (rather than spread by hash).
    pub(crate) fn steering(&self) -> bool {
        self.steer.is_some()
    }

    /// Index of the send socket of the frame's flow, which local `worker` sends to `dst` at
    /// `now` (ms).
    fn index(&self, frame: &[u8], worker: usize, dst: &SocketAddr, now: u64) -> usize {
        if self.socks.is_empty() {
            return 0;
        }
        let hash = flow::flow_hash(frame);
        let pick = |n: usize| ((u64::from(hash) * n as u64) >> 32) as usize;
        match &self.steer {
            Some(by_worker) => {
                let w = self.flows.peer_worker(hash, worker, dst, now);
                let socks = &by_worker[w as usize];
                socks[pick(socks.len())]
            }
            None => pick(self.socks.len()),
        }
    }

    /// The outer source port of socket `i`.
    fn port(&self, i: usize) -> u16 {
        self.ports[i.min(self.ports.len() - 1)]
    }
}

/// Sets up flow steering for `workers` workers: the kernel gives a datagram to the listening
/// socket of `source port % workers` (see [`crate::steer`]), and `tx` gets more send sockets
/// until each residue has one. Returns the send sockets of each residue, or `None` (flows
/// spread by hash, as without steering) if the kernel refuses the program or no ports can be
/// found; why is logged.
fn steering(
    listener: &UnderlaySocket,
    tx: &mut Vec<UnderlaySocket>,
    workers: usize,
    vtep: SocketAddr,
) -> Option<Vec<Vec<usize>>> {
    if let Err(e) = listener.steer_by_source_port(workers as u32) {
        log::info!("flows spread over workers by hash: steering by source port failed ({e})");
        return None;
    }
    let mut by_worker = vec![Vec::new(); workers];
    let mut i = 0;
    // Ephemeral ports are random: a few more binds cover every residue.
    while by_worker.iter().any(Vec::is_empty) && i < tx.len() + 16 * workers {
        if i == tx.len() {
            match UnderlaySocket::bind(&UdpConfig::new(SocketAddr::new(vtep.ip(), 0))) {
                Ok(s) => tx.push(s),
                Err(e) => {
                    log::info!("flows spread over workers by hash: binding a send socket: {e}");
                    break;
                }
            }
        }
        if let Ok(a) = tx[i].local_addr() {
            by_worker[usize::from(a.port()) % workers].push(i);
        }
        i += 1;
    }
    // The sockets not looked at yet (all residues were covered before them).
    for (j, s) in tx.iter().enumerate().skip(i) {
        if let Ok(a) = s.local_addr() {
            by_worker[usize::from(a.port()) % workers].push(j);
        }
    }
    if by_worker.iter().any(Vec::is_empty) {
        return None;
    }
    Some(by_worker)
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

/// How the datagrams of one send left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// As asked: in one UDP GSO send, or one by one without GSO.
    Whole,
    /// One by one, for the host to fragment: the route could not carry a GSO segment.
    Fragmented,
}

/// The send side of a worker: what it reads of the shared state, its buffers and logs.
pub(crate) struct Encapper<'s> {
    networks: &'s ArcSwap<Networks>,
    learned: &'s LearnedTable,
    tx: &'s TxSockets,
    /// Where frames leave from if there are no send sockets.
    listener: &'s UnderlaySocket,
    uplink: Option<&'s UplinkPath>,
    peers: &'s PeerTable,
    caps: &'s Capabilities,
    /// The worker's index, which picks the uplink queue it writes to.
    index: usize,
    /// Set when the worker is to stop: sends wait no more.
    stop: &'s AtomicBool,
    /// The longest a send waits for room in a full socket buffer.
    patience: Duration,
    /// A send gave up waiting since the last one that went: until one goes again, sends try
    /// once and do not wait, so that a stuck underlay costs this worker one patience, not one
    /// per frame, and the receive path and other peers keep being served.
    stalled: Cell<bool>,
    /// The data plane's clock at the start of the current pass (ms).
    now: u64,
    reply: [u8; REPLY_BUF_LEN],
    /// Super-frames leaving whole through the uplink.
    tunnel: TunnelWriter,
    /// Per-segment headers of the super-frame being sent.
    hdrs: Vec<u8>,
    /// Where each segment's headers and payload are.
    segs: Vec<gso::SegmentRef>,
    /// Small frames waiting to leave together.
    train: Train,
    /// The copies of the frame being flooded that leave whole: their send socket and VTEP.
    copies: Vec<(usize, SocketAddr)>,
    /// The VTEPs of one send socket's copies.
    copy_dsts: Vec<SocketAddr>,
    /// Those of them the kernel refused, with why.
    copy_failed: Vec<(SocketAddr, io::Error)>,
    /// Where the next read goes in the arena: after the train's frames.
    at: usize,
    /// Answers to frames too big for their path.
    too_big: TooBigAnswers,
    send_log: RateLimitedLog,
    tap_log: RateLimitedLog,
    mtu_log: RateLimitedLog,
}

impl<'s> Encapper<'s> {
    /// The send side of worker `index`, over what the threads share; its sends wait for room
    /// at most the shared patience, and not at all once `stop` is set.
    pub(crate) fn new(index: usize, s: &'s Shared, stop: &'s AtomicBool) -> Encapper<'s> {
        let (networks, learned, tx, peers, caps) =
            (&s.networks, &s.learned, &s.tx, &s.peers, &s.caps);
        // Replies (ARP, ND) are sent from the first worker's listening socket.
        let listener = &s.workers[0].socket;
        let uplink = s.uplink.as_ref();
        let patience = s.send_patience;
        Encapper {
            networks,
            learned,
            tx,
            listener,
            uplink,
            peers,
            caps,
            index,
            stop,
            patience,
            stalled: Cell::new(false),
            now: 0,
            reply: [0u8; REPLY_BUF_LEN],
            tunnel: TunnelWriter::new(index),
            hdrs: vec![0u8; MAX_SEGMENTS * SEGMENT_HEADERS_LEN],
            segs: vec![gso::SegmentRef::default(); MAX_SEGMENTS],
            train: Train {
                frames: Vec::with_capacity(MAX_GSO_SEGMENTS),
                ..Train::default()
            },
            copies: Vec::new(),
            copy_dsts: Vec::new(),
            copy_failed: Vec::new(),
            at: 0,
            too_big: TooBigAnswers::new(),
            send_log: RateLimitedLog::new(std::time::Duration::from_secs(5)),
            tap_log: RateLimitedLog::new(std::time::Duration::from_secs(5)),
            mtu_log: RateLimitedLog::new(std::time::Duration::from_secs(60)),
        }
    }

    /// Reads up to [`BATCH`] frames from `tap` (a queue of network `vni`) into `arena` and
    /// sends them, at `now` (ms); true if the TAP may have more.
    pub(crate) fn drain(&mut self, vni: Vni, tap: &Tap, arena: &mut [u8], now: u64) -> bool {
        self.now = now;
        let off = if tap.has_vnet_hdr() {
            virtio::HEADER_LEN
        } else {
            0
        };
        let mut more = true;
        for _ in 0..BATCH {
            // Loaded per read (a few atomic operations), so a table swapped in by the control
            // plane applies to the very next frame.
            let networks = self.networks.load();
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
            self.frame(net, tap, &hdr, arena, at + off, at + n);
        }
        self.flush(arena);
        more
    }

    /// Handles the frame at `arena[start..end]`, read from `tap` of network `net`.
    fn frame(
        &mut self,
        net: &Arc<Network>,
        tap: &Tap,
        hdr: &VnetHdr,
        arena: &mut [u8],
        start: usize,
        end: usize,
    ) {
        let gso = hdr.is_tcp_gso();
        // A super-frame's checksums are computed per segment; a plain frame's partial one now.
        if !gso && hdr.needs_csum() && virtio::finish_csum(&mut arena[start..end], hdr).is_err() {
            return net.counters.count_drop(DropReason::Truncated);
        }
        let frame = &arena[start..end];
        // What must fit: a plain frame, or a super-frame's segments.
        let (size, tcp) = if gso {
            let Some(t) = gso::tcp_frame(frame) else {
                return net.counters.count_drop(DropReason::Truncated);
            };
            let segment = t.payload + mss(hdr, &t, net.mtu);
            (Size::Segments { segment }, Some(t))
        } else {
            let max_frame = net.max_frame;
            (Size::Plain { max_frame }, None)
        };
        let decision = encap::encap(
            frame,
            size,
            net.vni,
            &net.table,
            self.learned,
            self.now,
            &mut self.reply,
        );
        match decision {
            Encap::Unicast(dst) => match &tcp {
                Some(t) => {
                    self.flush(arena);
                    self.send_super(net, hdr, frame, t, net.mtu, dst);
                }
                None => self.queue(net, arena, start, end, dst),
            },
            Encap::Fragment { dst, mtu } => {
                self.flush(arena);
                self.oversized(net, hdr, frame, tcp.as_ref(), dst, mtu);
            }
            Encap::TooBig { mtu } => {
                net.counters.count_drop(DropReason::TooBig);
                self.answer(net, tap, frame, mtu);
            }
            Encap::Flood(list) => {
                self.flush(arena);
                let src = ethernet::Frame::new_unchecked(frame).src();
                let replicas = list.len() as u64 * flood_segments(net, hdr, frame, gso);
                if let Err(reason) = net.storm.admit(&src, replicas, self.now) {
                    return net.counters.count_drop(reason);
                }
                net.counters.flood();
                let len = size.wire_len(frame);
                let every = net.table.fits_every_path(len);
                // The smallest path MTU among the copies refused, for one answer.
                let mut refused: Option<u16> = None;
                self.copies.clear();
                for &dst in list {
                    let fit = if every {
                        Fit::Fits
                    } else {
                        encap::fit(frame, len, net.table.path_mtu(dst.ip()))
                    };
                    match (fit, &tcp) {
                        (Fit::Fits, Some(t)) => self.send_super(net, hdr, frame, t, net.mtu, dst),
                        (Fit::Fits, None) => {
                            let sock = self.tx.index(frame, self.index, &dst, self.now);
                            self.copies.push((sock, dst));
                        }
                        (Fit::Fragment(mtu), t) => {
                            self.oversized(net, hdr, frame, t.as_ref(), dst, mtu)
                        }
                        (Fit::TooBig(mtu), _) => {
                            net.counters.count_drop(DropReason::TooBig);
                            refused = Some(refused.map_or(mtu, |r| r.min(mtu)));
                        }
                    }
                }
                self.send_copies(net, frame);
                if let Some(mtu) = refused {
                    self.answer(net, tap, frame, mtu);
                }
            }
            Encap::Reply { len, kind } => match write_frame(tap, &self.reply[..len]) {
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

    /// The send socket `i`: its ephemeral port is the outer source port of the flows hashed to
    /// it.
    fn socket(&self, i: usize) -> &'s UnderlaySocket {
        self.tx.socks.get(i).unwrap_or(self.listener)
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
        // Without UDP GSO the train still leaves in one system call, through `sendmmsg`.
        let sock = self
            .tx
            .index(&arena[start..end], self.index, &dst, self.now);
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
        let (Some(net), Some(dst)) = (self.train.net.take(), self.train.dst.take()) else {
            return;
        };
        let t = &self.train;
        let (count, bytes) = (t.frames.len(), t.bytes);
        let mut iov = [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
        for (pair, &(a, b)) in iov.chunks_exact_mut(2).zip(&t.frames) {
            pair[0] = IoSlice::new(&t.header);
            pair[1] = IoSlice::new(&arena[a..b]);
        }
        let stride = t.stride;
        let out = Transmit {
            dst,
            parts: &iov[..2 * count],
            per: 2,
            segment: stride,
        };
        let sent = self.send(self.socket(t.sock), &out);
        let t = &mut self.train;
        t.frames.clear();
        t.bytes = 0;
        t.closed = false;
        match sent {
            Ok(left) => {
                let inner = (bytes - count * vxlan::HEADER_LEN) as u64;
                net.counters.tx_many(count as u64, inner);
                self.peers.sent(dst, count as u64, inner);
                if count > 1 {
                    net.counters.train();
                }
                if left == Left::Fragmented {
                    self.narrow_route(&net, dst, count, stride);
                }
            }
            Err(e) => send_failed(&mut self.send_log, &net, dst, &e, count as u64),
        }
    }

    /// Sends `out` from `sock`, with UDP GSO while the kernel takes it; a refusal turns UDP GSO
    /// off for good (the datagrams still leave, one by one). Where the route cannot carry a
    /// segment, the datagrams leave one by one for the host to fragment ([`Left::Fragmented`]).
    /// Waits for room in a full socket buffer as long as the patience allows (not at all while
    /// stalled or stopping).
    fn send(&self, sock: &UnderlaySocket, out: &Transmit<'_>) -> io::Result<Left> {
        let sent = match sock.send(out, self.caps.udp_gso.is_on(), self.patience()) {
            Ok(Sent::Done) => Ok(Left::Whole),
            Ok(Sent::SegmentTooBig { then }) => then.map(|()| Left::Fragmented),
            Ok(Sent::GsoRefused { refusal, then }) => {
                let why = format!(
                    "the kernel refused a UDP GSO send to {}: {refusal}",
                    out.dst
                );
                if self.caps.udp_gso.turn_off(&why) {
                    log::warn!("{why}; sending one datagram per segment from now on");
                }
                then.map(|()| Left::Whole)
            }
            Err(e) => Err(e),
        };
        match &sent {
            Ok(_) => self.stalled.set(false),
            Err(e) if ovnet_sys::udp::is_stalled(e) => self.stalled.set(true),
            Err(_) => {}
        }
        sent
    }

    /// How long the next send may wait for room: not at all while stalled.
    fn patience(&self) -> Patience<'s> {
        Patience {
            wait: if self.stalled.get() {
                Duration::ZERO
            } else {
                self.patience
            },
            stop: self.stop,
        }
    }

    /// Sends the copies of flooded `frame` gathered in `copies`: per send socket, in
    /// `sendmmsg` batches rather than one system call each (10-25 % less CPU per copy with 8
    /// and 32 peers, docs/performance.md).
    fn send_copies(&mut self, net: &Network, frame: &[u8]) {
        if self.copies.is_empty() {
            return;
        }
        self.copies.sort_unstable_by_key(|&(sock, _)| sock);
        let header = vxlan::header(net.vni);
        let parts = [IoSlice::new(&header), IoSlice::new(frame)];
        let (tx, listener) = (self.tx, self.listener);
        let mut start = 0;
        while start < self.copies.len() {
            let sock = self.copies[start].0;
            let same = self.copies[start..].iter().take_while(|c| c.0 == sock);
            let end = start + same.count();
            self.copy_dsts.clear();
            self.copy_dsts
                .extend(self.copies[start..end].iter().map(|&(_, dst)| dst));
            start = end;
            let socket = tx.socks.get(sock).unwrap_or(listener);
            let patience = self.patience();
            let failed = &mut self.copy_failed;
            let sent = socket.send_copies(&parts, &self.copy_dsts, patience, |dst, e| {
                failed.push((dst, e));
            });
            if sent > 0 {
                self.stalled.set(false);
                net.counters
                    .tx_many(sent as u64, (sent * frame.len()) as u64);
            }
            for &dst in &self.copy_dsts {
                if !self.copy_failed.iter().any(|(d, _)| *d == dst) {
                    self.peers.sent(dst, 1, frame.len() as u64);
                }
            }
            for (dst, e) in self.copy_failed.drain(..) {
                if ovnet_sys::udp::is_stalled(&e) {
                    self.stalled.set(true);
                }
                send_failed(&mut self.send_log, net, dst, &e, 1);
            }
        }
    }

    /// Sends one frame as one datagram: VXLAN header and frame gathered, not copied. (A
    /// datagram larger than the route carries is fragmented by the host.) True if it left.
    fn send_one(&mut self, net: &Network, frame: &[u8], dst: SocketAddr) -> bool {
        let i = self.tx.index(frame, self.index, &dst, self.now);
        let header = vxlan::header(net.vni);
        let parts = [IoSlice::new(&header), IoSlice::new(frame)];
        let out = Transmit {
            dst,
            parts: &parts,
            per: 2,
            segment: header.len() + frame.len(),
        };
        match self.send(self.socket(i), &out) {
            Ok(_) => {
                net.counters.tx(frame.len());
                self.peers.sent(dst, 1, frame.len() as u64);
                true
            }
            Err(e) => {
                send_failed(&mut self.send_log, net, dst, &e, 1);
                false
            }
        }
    }

    /// Sends a TCP super-frame (headers at `t`) in segments that fit IP packets of `mtu`
    /// bytes (the network's MTU, or a narrower path's): whole through the uplink where tunnel
    /// GSO is on, otherwise segmented here and sent with UDP GSO, gathered: each segment's
    /// headers are written to a small buffer, its payload is sent from where the TAP read put
    /// it.
    fn send_super(
        &mut self,
        net: &Network,
        hdr: &VnetHdr,
        frame: &[u8],
        t: &gso::TcpFrame,
        mtu: usize,
        dst: SocketAddr,
    ) {
        let mss = mss(hdr, t, mtu);
        if self.send_tunnel(net, hdr, frame, t, mss, dst) {
            return;
        }
        let header = vxlan::header(net.vni);
        let train =
            match gso::segment_tcp_headers(frame, mss, &header, &mut self.hdrs, &mut self.segs) {
                Ok(t) => t,
                Err(_) => return net.counters.count_drop(DropReason::Oversized),
            };
        net.counters.super_frame();
        let sock = self.socket(self.tx.index(frame, self.index, &dst, self.now));
        let per_send = (MAX_GSO_PAYLOAD / train.stride).clamp(1, MAX_GSO_SEGMENTS);
        // Segments the route could not carry in one GSO send, which left one by one.
        let mut fragmented = 0;
        for batch in self.segs[..train.count].chunks(per_send) {
            let mut iov = [IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
            let mut bytes = 0;
            for (pair, seg) in iov.chunks_exact_mut(2).zip(batch) {
                pair[0] = IoSlice::new(&self.hdrs[seg.header.clone()]);
                pair[1] = IoSlice::new(&frame[seg.payload.clone()]);
                bytes += seg.header.len() + seg.payload.len();
            }
            let out = Transmit {
                dst,
                parts: &iov[..2 * batch.len()],
                per: 2,
                segment: train.stride,
            };
            match self.send(sock, &out) {
                Ok(left) => {
                    let inner = (bytes - batch.len() * vxlan::HEADER_LEN) as u64;
                    net.counters.tx_many(batch.len() as u64, inner);
                    self.peers.sent(dst, batch.len() as u64, inner);
                    if left == Left::Fragmented {
                        fragmented += batch.len();
                    }
                }
                Err(e) => send_failed(&mut self.send_log, net, dst, &e, batch.len() as u64),
            }
        }
        if fragmented > 0 {
            self.narrow_route(net, dst, fragmented, train.stride);
        }
    }

    /// Sends the super-frame `frame` (headers at `t`) to `dst` whole through the uplink, for
    /// the kernel to cut into `mss`-byte segments where the underlay needs it. False if tunnel
    /// GSO is off or the frame cannot go that way (IPv6 VTEP, too long, refused), and is then
    /// to be segmented here; a refusal by the kernel turns tunnel GSO off for good.
    fn send_tunnel(
        &mut self,
        net: &Network,
        hdr: &VnetHdr,
        frame: &[u8],
        t: &gso::TcpFrame,
        mss: usize,
        dst: SocketAddr,
    ) -> bool {
        let (Some(up), true, SocketAddr::V4(to)) = (self.uplink, self.caps.tunnel_gso.is_on(), dst)
        else {
            return false;
        };
        let port = self
            .tx
            .port(self.tx.index(frame, self.index, &dst, self.now));
        let ecn = hdr.gso_type & virtio::GSO_ECN != 0;
        let sent = self
            .tunnel
            .send(up, self.index, frame, t, mss, ecn, net.vni, to, port);
        match sent {
            Tunnel::Sent { segments } => {
                let payload = t.end - t.payload;
                net.counters.super_frame();
                net.counters.tunnel_frame();
                let inner = (segments * t.payload + payload) as u64;
                net.counters.tx_many(segments as u64, inner);
                self.peers.sent(dst, segments as u64, inner);
                true
            }
            Tunnel::Unfit => false,
            Tunnel::Refused(e) => {
                let why = format!("uplink {} refused a UDP tunnel GSO frame: {e}", up.name());
                if self.caps.tunnel_gso.turn_off(&why) {
                    log::warn!("{why}; segmenting super-frames from now on");
                }
                false
            }
            Tunnel::Failed(e) => {
                self.send_log
                    .warn(format_args!("writing to uplink {}: {e}", up.name()));
                false
            }
        }
    }
}

/// The segment size of a super-frame (headers at `t`) whose segments must fit IP packets of
/// `mtu` bytes, whatever MSS its sender used (`gso_size`; 0: none said).
fn mss(hdr: &VnetHdr, t: &gso::TcpFrame, mtu: usize) -> usize {
    let fit = mtu.saturating_sub(t.payload - t.l3);
    match usize::from(hdr.gso_size) {
        0 => fit,
        m => m.min(fit),
    }
}

mod fit;
#[cfg(test)]
mod tests;
