//! Lock-free traffic and drop counters, and a rate-limited log line for drops.
//!
//! A dropped packet is counted, never propagated as an error: each [`DropReason`] has an atomic
//! counter. Counters exist per network (VNI) and once globally for drops that happen before the
//! VNI is known. Readers take a [`CounterSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum DropReason {
    /// Too short for a VXLAN header or an inner Ethernet header.
    Truncated,
    /// The VXLAN `I` flag (VNI valid) was clear.
    BadFlags,
    /// The VNI is not a network on this host.
    UnknownVni,
    /// The outer source address is not a VTEP of the network (and learning is off for it).
    UnknownVtep,
    /// No VTEP for the destination and nothing to flood to: an empty flood list, or a
    /// unicast MAC no VTEP is known or may be learned to hold ([`crate::fdb::Table::flood_unknown`]).
    NoRoute,
    /// The frame claims a MAC or IP address that belongs to another endpoint.
    SpoofedSource,
    /// The inner source MAC is broadcast, multicast or all-zero.
    InvalidSourceMac,
    /// The frame exceeds the network's MTU.
    Oversized,
    /// Writing to the TAP failed.
    TapWriteError,
    /// Sending on the underlay socket failed.
    SendError,
    /// The inner TCP/UDP checksum is wrong (and is not a partial one to finish).
    BadChecksum,
    /// The frame does not fit the path to its peer, and its sender was (rate limit
    /// permitting) answered with ICMP "too big" carrying the path's MTU.
    TooBig,
    /// The source MAC would be learned, but the network's learned table is full
    /// ([`crate::DataplaneConfig::max_learned`]); MACs already learned keep forwarding.
    LearnedTableFull,
    /// A broadcast, multicast or unknown-unicast frame over its source's or its network's
    /// replication budget ([`crate::DataplaneConfig::bum`]).
    BumRateLimited,
    /// An IPv6 router advertisement from a container (containers are not routers).
    RouterAdvert,
    /// A neighbour advertisement from a container for an address that is not its own.
    ForgedNeighbourAdvert,
    /// The underlay socket had no room for the datagram for longer than
    /// [`crate::DataplaneConfig::send_patience`], or the data plane was stopping.
    SendStalled,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 17] = [
        DropReason::Truncated,
        DropReason::BadFlags,
        DropReason::UnknownVni,
        DropReason::UnknownVtep,
        DropReason::NoRoute,
        DropReason::SpoofedSource,
        DropReason::InvalidSourceMac,
        DropReason::Oversized,
        DropReason::TapWriteError,
        DropReason::SendError,
        DropReason::BadChecksum,
        DropReason::TooBig,
        DropReason::LearnedTableFull,
        DropReason::BumRateLimited,
        DropReason::RouterAdvert,
        DropReason::ForgedNeighbourAdvert,
        DropReason::SendStalled,
    ];

    /// A stable snake_case name (used in `ovctl stats` and the API).
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadFlags => "bad_flags",
            DropReason::UnknownVni => "unknown_vni",
            DropReason::UnknownVtep => "unknown_vtep",
            DropReason::NoRoute => "no_route",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::InvalidSourceMac => "invalid_source_mac",
            DropReason::Oversized => "oversized",
            DropReason::TapWriteError => "tap_write_error",
            DropReason::SendError => "send_error",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::TooBig => "too_big",
            DropReason::LearnedTableFull => "learned_table_full",
            DropReason::BumRateLimited => "bum_rate_limited",
            DropReason::RouterAdvert => "router_advert",
            DropReason::ForgedNeighbourAdvert => "forged_neighbour_advert",
            DropReason::SendStalled => "send_stalled",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const REASONS: usize = DropReason::ALL.len();

/// Counters of one direction, padded to their own cache lines so that the encap thread (tx) and
/// the decap thread (rx) do not share a line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Direction {
    packets: AtomicU64,
    bytes: AtomicU64,
}

/// The counters of one network, or the global ones.
#[derive(Debug, Default)]
pub struct Counters {
    tx: Direction,
    rx: Direction,
    drops: [AtomicU64; REASONS],
    arp_replies: AtomicU64,
    nd_replies: AtomicU64,
    flooded: AtomicU64,
    learned: AtomicU64,
    csum_completed: AtomicU64,
    segmented: AtomicU64,
    super_frames_in: AtomicU64,
    super_frames: AtomicU64,
    tunnel_frames: AtomicU64,
    coalesced: AtomicU64,
    trains: AtomicU64,
    too_big_answers: AtomicU64,
    fragmented: AtomicU64,
}

impl Counters {
    /// Counts a datagram sent to the underlay carrying `bytes` bytes of inner frame.
    #[inline]
    pub fn tx(&self, bytes: usize) {
        self.tx.packets.fetch_add(1, Relaxed);
        self.tx.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts `packets` datagrams sent together, carrying `bytes` bytes of inner frames.
    #[inline]
    pub fn tx_many(&self, packets: u64, bytes: u64) {
        self.tx.packets.fetch_add(packets, Relaxed);
        self.tx.bytes.fetch_add(bytes, Relaxed);
    }

    /// Counts an inner frame of `bytes` bytes delivered to the TAP.
    #[inline]
    pub fn rx(&self, bytes: usize) {
        self.rx.packets.fetch_add(1, Relaxed);
        self.rx.bytes.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a drop.
    #[inline]
    pub fn count_drop(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts `n` frames dropped together (a send of several that failed).
    #[inline]
    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].fetch_add(n, Relaxed);
    }

    /// Counts an ICMP "too big" answer written to the TAP.
    pub fn too_big_answer(&self) {
        self.too_big_answers.fetch_add(1, Relaxed);
    }

    /// Counts `n` frames sent larger than the path to their peer, for the host to fragment.
    pub fn fragmented(&self, n: u64) {
        self.fragmented.fetch_add(n, Relaxed);
    }

    /// Counts an ARP request answered locally.
    pub fn arp_reply(&self) {
        self.arp_replies.fetch_add(1, Relaxed);
    }

    /// Counts an IPv6 neighbour solicitation answered locally.
    pub fn nd_reply(&self) {
        self.nd_replies.fetch_add(1, Relaxed);
    }

    /// Counts a frame replicated to the flood list.
    pub fn flood(&self) {
        self.flooded.fetch_add(1, Relaxed);
    }

    /// Counts a MAC learned (or moved) from received traffic.
    pub fn learn(&self) {
        self.learned.fetch_add(1, Relaxed);
    }

    /// Counts an inner checksum finished on receive (see `ovnet_wire::checksum::complete_partial`).
    pub fn csum_completed(&self) {
        self.csum_completed.fetch_add(1, Relaxed);
    }

    /// Counts a received TCP super-frame split into MTU-sized segments.
    pub fn segmented(&self) {
        self.segmented.fetch_add(1, Relaxed);
    }

    /// Counts a received TCP super-frame written to the TAP whole, as a GSO frame.
    pub fn super_frame_in(&self) {
        self.super_frames_in.fetch_add(1, Relaxed);
    }

    /// Counts a TCP super-frame read from the TAP (TSO) and sent as a GSO train.
    pub fn super_frame(&self) {
        self.super_frames.fetch_add(1, Relaxed);
    }

    /// Counts a TCP super-frame sent whole through the uplink, for the kernel to segment
    /// (UDP tunnel GSO); also counted by [`Counters::super_frame`].
    pub fn tunnel_frame(&self) {
        self.tunnel_frames.fetch_add(1, Relaxed);
    }

    /// Counts several small frames sent together in one UDP GSO send.
    pub fn train(&self) {
        self.trains.fetch_add(1, Relaxed);
    }

    /// Counts received segments written to the TAP as one coalesced super-frame.
    pub fn coalesced(&self) {
        self.coalesced.fetch_add(1, Relaxed);
    }

    /// Counts `packets` frames delivered together, `bytes` bytes in all.
    #[inline]
    pub fn rx_many(&self, packets: u64, bytes: u64) {
        self.rx.packets.fetch_add(packets, Relaxed);
        self.rx.bytes.fetch_add(bytes, Relaxed);
    }

    /// A consistent-enough copy of every counter (each read is atomic; the set is not).
    pub fn snapshot(&self) -> CounterSnapshot {
        let mut drops = [0; REASONS];
        for (d, c) in drops.iter_mut().zip(&self.drops) {
            *d = c.load(Relaxed);
        }
        CounterSnapshot {
            tx_packets: self.tx.packets.load(Relaxed),
            tx_bytes: self.tx.bytes.load(Relaxed),
            rx_packets: self.rx.packets.load(Relaxed),
            rx_bytes: self.rx.bytes.load(Relaxed),
            drops,
            arp_replies: self.arp_replies.load(Relaxed),
            nd_replies: self.nd_replies.load(Relaxed),
            flooded: self.flooded.load(Relaxed),
            learned: self.learned.load(Relaxed),
            csum_completed: self.csum_completed.load(Relaxed),
            segmented: self.segmented.load(Relaxed),
            super_frames_in: self.super_frames_in.load(Relaxed),
            super_frames: self.super_frames.load(Relaxed),
            tunnel_frames: self.tunnel_frames.load(Relaxed),
            coalesced: self.coalesced.load(Relaxed),
            trains: self.trains.load(Relaxed),
            too_big_answers: self.too_big_answers.load(Relaxed),
            fragmented: self.fragmented.load(Relaxed),
        }
    }
}

/// A copy of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Frames sent to the underlay (each replica of a flooded frame counts).
    pub tx_packets: u64,
    /// Inner bytes sent.
    pub tx_bytes: u64,
    /// Frames delivered to the TAP.
    pub rx_packets: u64,
    /// Inner bytes delivered.
    pub rx_bytes: u64,
    drops: [u64; REASONS],
    /// ARP requests answered from the table.
    pub arp_replies: u64,
    /// Neighbour solicitations answered from the table.
    pub nd_replies: u64,
    /// Frames replicated to the flood list.
    pub flooded: u64,
    /// MACs learned from received traffic.
    pub learned: u64,
    /// Inner TCP/UDP checksums that arrived partial and were finished.
    pub csum_completed: u64,
    /// Received TCP super-frames split in software (the TAP takes no GSO frames, or the
    /// frame is not a plain data segment).
    pub segmented: u64,
    /// Received TCP super-frames written to the TAP whole, as GSO frames.
    pub super_frames_in: u64,
    /// TCP super-frames read from the TAP and sent, as segment trains or whole.
    pub super_frames: u64,
    /// Of those, the ones sent whole through the uplink (UDP tunnel GSO): the kernel segments
    /// them where the underlay needs it.
    pub tunnel_frames: u64,
    /// Super-frames written to the TAP, each coalesced from several received segments.
    pub coalesced: u64,
    /// UDP GSO sends that carried several small frames read from the TAP one by one.
    pub trains: u64,
    /// ICMP "fragmentation needed" / "packet too big" answers written to the TAP, for frames
    /// that did not fit the path to their peer (each refused frame is a `too_big` drop; an
    /// answer the rate limit held back is not counted here).
    pub too_big_answers: u64,
    /// Frames larger than the path to their peer that may not be refused (IPv4 without DF, or
    /// a path the tables did not know was smaller) and went anyway, for the host to fragment.
    pub fragmented: u64,
}

impl CounterSnapshot {
    /// The drop count for one reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops together.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds `n` drops for `reason`: drops counted outside the data plane for its network (the
    /// agent's port-security rules on the host's bridge) join the same names.
    pub fn add_drops(&mut self, reason: DropReason, n: u64) {
        self.drops[reason as usize] = self.drops[reason as usize].saturating_add(n);
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|&r| (r, self.dropped(r)))
            .filter(|&(_, n)| n > 0)
    }
}

/// Lets a log line through at most once per interval, counting what it suppressed (the
/// quinn-udp `log_sendmsg_error` idea). Owned by one worker thread, so it needs no atomics.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// A limiter letting one line through per `interval`.
    pub fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Logs `msg` at warn level unless a line went out less than an interval ago.
    pub fn warn(&mut self, msg: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!("{msg} ({} similar messages suppressed)", self.suppressed);
        } else {
            log::warn!("{msg}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_reason_apart() {
        let c = Counters::default();
        c.count_drop(DropReason::UnknownVtep);
        c.count_drop(DropReason::UnknownVtep);
        c.count_drop(DropReason::SendError);
        c.tx(100);
        c.rx(60);
        c.rx(40);
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::UnknownVtep), 2);
        assert_eq!(s.dropped(DropReason::SendError), 1);
        assert_eq!(s.dropped(DropReason::Truncated), 0);
        assert_eq!(s.total_dropped(), 3);
        assert_eq!(
            (s.tx_packets, s.tx_bytes, s.rx_packets, s.rx_bytes),
            (1, 100, 2, 100)
        );
        let listed: Vec<_> = s.drops().collect();
        assert_eq!(
            listed,
            vec![(DropReason::UnknownVtep, 2), (DropReason::SendError, 1)]
        );
    }

    #[test]
    fn reason_names_are_unique_and_ordered() {
        let names: std::collections::BTreeSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn rate_limited_log_suppresses_within_interval() {
        let mut l = RateLimitedLog::new(Duration::from_secs(3600));
        l.warn(format_args!("first"));
        l.warn(format_args!("second"));
        l.warn(format_args!("third"));
        assert_eq!(l.suppressed, 2);
    }
}
