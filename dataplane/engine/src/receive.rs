//! The receive path: VXLAN datagrams from the underlay, checked and delivered to a network's
//! TAP.
//!
//! [`crate::decap`] decides what happens to each datagram; this module carries it out with
//! buffers allocated once per worker ([`Decapper`]). It receives with UDP GRO (many datagrams
//! per call), checks each, finishes partial checksums, passes a kernel peer's unsegmented
//! super-frames on whole (or splits them), coalesces a run's in-order TCP segments (and, with
//! [`Capabilities`]' `udp_coalesce`, UDP datagrams) into one super-frame ([`Run`]), and writes
//! it to the TAP with one `writev`. Every drop is counted by its [`DropReason`].

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::Duration;

use arc_swap::ArcSwap;
use ovnet_sys::{Tap, UnderlaySocket};
use ovnet_wire::checksum::{self, L4Checksum};
use ovnet_wire::{gro, gso, virtio, vxlan, Vni};

use crate::buffer::PageBuf;
use crate::capability::Capabilities;
use crate::counters::{Counters, DropReason, RateLimitedLog};
use crate::decap::{self, Admitted};
use crate::fdb::LearnedTable;
use crate::heartbeat::Heard;
use crate::network::{write_frame, Network, Networks, BUF_LEN};
use crate::pacing::BATCH;
use crate::peers::PeerTable;
use crate::shared::Shared;

/// Room for a `virtio_net_hdr` and the headers of a super-frame.
const SUPER_HEADER_LEN: usize = virtio::HEADER_LEN + gso::MAX_HEADERS;

/// Most segments coalesced into one super-frame; a GRO run holds at most 64 datagrams.
const MAX_RUN: usize = 64;

/// TCP segments (or UDP datagrams) of one flow, in order, waiting to be written to the TAP as
/// one super-frame. Ranges index the receive buffer, which stays untouched until the run is
/// flushed.
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

/// Writes one frame to `tap` of network `net`, counting it.
fn deliver(net: &Network, tap: &Tap, frame: &[u8], log: &mut RateLimitedLog) {
    match write_frame(tap, frame) {
        Ok(_) => net.counters.rx(frame.len()),
        Err(e) => {
            net.counters.count_drop(DropReason::TapWriteError);
            log.warn(format_args!("writing to TAP {}: {e}", tap.name()));
        }
    }
}

/// Whether a TAP write of a UDP super-frame failed because the kernel cannot take one.
fn is_udp_gso_refusal(e: &io::Error, first: &gro::Segment) -> bool {
    matches!(first.proto, gro::Proto::Udp { .. }) && ovnet_sys::tap::refuses_gso(e)
}

/// The receive side of a worker: what it reads of the shared state, its buffers and logs.
pub(crate) struct Decapper<'s> {
    networks: &'s ArcSwap<Networks>,
    learned: &'s LearnedTable,
    /// Drops before a network is known (bad header, unknown VNI).
    global: &'s Counters,
    peers: &'s PeerTable,
    caps: &'s Capabilities,
    /// The ovnet peers' heartbeats ([`crate::heartbeat`]).
    heard: &'s Heard,
    /// The worker's index, which picks the TAP queue it writes to.
    index: usize,
    scratch: PageBuf,
    header: [u8; SUPER_HEADER_LEN],
    run: Run,
    tap_log: RateLimitedLog,
    rx_log: RateLimitedLog,
}

impl<'s> Decapper<'s> {
    /// The receive side of worker `index`, over what the threads share.
    pub(crate) fn new(index: usize, s: &'s Shared) -> Decapper<'s> {
        let (networks, learned, global, peers, caps, heard) = (
            &s.networks,
            &s.learned,
            &s.global,
            &s.peers,
            &s.caps,
            &*s.heard,
        );
        Decapper {
            networks,
            learned,
            global,
            peers,
            caps,
            heard,
            index,
            scratch: PageBuf::new(BUF_LEN),
            header: [0u8; SUPER_HEADER_LEN],
            run: Run {
                payloads: Vec::with_capacity(MAX_RUN),
                ..Run::default()
            },
            tap_log: RateLimitedLog::new(Duration::from_secs(5)),
            rx_log: RateLimitedLog::new(Duration::from_secs(5)),
        }
    }

    /// Receives up to [`BATCH`] reads from `sock` into `buf` at `now` (ms); true if it may
    /// have more.
    pub(crate) fn receive(&mut self, sock: &UnderlaySocket, buf: &mut [u8], now: u64) -> bool {
        for _ in 0..BATCH {
            let networks = self.networks.load();
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
        let datagram = &mut buf[at..end];
        if self.heard.signal(datagram, from, now) {
            return;
        }
        let vni = match decap::parse(datagram) {
            Ok((vni, _)) => vni,
            Err(reason) => return self.global.count_drop(reason),
        };
        let Some(net) = networks.get(&vni) else {
            return self.global.count_drop(DropReason::UnknownVni);
        };
        let frame = &mut datagram[vxlan::HEADER_LEN..];
        match decap::admit(
            frame,
            from,
            vni,
            &net.table,
            self.learned,
            now,
            net.max_frame,
        ) {
            Ok(Admitted::DeliverLearned) => net.counters.learn(),
            Ok(Admitted::Deliver) => {}
            Err(reason) => return net.counters.count_drop(reason),
        }
        self.peers.received(from, frame.len(), now);
        let tap = net.queue_of(self.index);
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
                matches!(seg.proto, gro::Proto::Tcp { .. }) || self.caps.udp_coalesce.is_on()
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
                let tap = net.queue_of(self.index);
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
                                        && self.caps.udp_coalesce.turn_off(format_args!(
                                            "TAP {} refused a UDP super-frame: {e}",
                                            tap.name()
                                        )) =>
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
