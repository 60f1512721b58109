//! Traffic per peer VTEP: datagrams and inner bytes sent to each peer and received from it
//! (once the receive path admitted them), and when it was last heard, for operators
//! (`ovnet_peer_*` metrics) and for liveness decisions that the control plane may take.
//!
//! A peer is its underlay address: its datagrams come from many source ports (one per flow,
//! as the outer source port carries the flow's entropy) and go to its VXLAN port.
//!
//! A fixed table of slots with open addressing, shared by the workers: a slot is claimed once
//! for an address (compare-and-swap on its state, the address written once) and never freed,
//! so a lookup takes no lock and allocates nothing, and counting is a few relaxed atomic
//! adds. The table is bounded: peers beyond [`PEER_SLOTS`] (or beyond [`MAX_PROBES`] collisions)
//! are counted together as overflow. Only admitted traffic and the data plane's own sends
//! create slots, so spoofed source addresses cannot fill it.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, AtomicU8};
use std::sync::OnceLock;

use crate::fdb::FxHasher;

/// Slots in the table: more peers than a cluster has hosts. Chosen as a power of two well
/// above the 100 hosts the control plane is measured with, at about 80 bytes a slot.
pub const PEER_SLOTS: usize = 1 << SLOT_BITS;
const SLOT_BITS: u32 = 10;
/// Slots tried for one address before its traffic counts as overflow.
pub const MAX_PROBES: usize = 16;

const EMPTY: u8 = 0;
const CLAIMING: u8 = 1;
const READY: u8 = 2;

/// One peer's counters.
#[derive(Debug, Default)]
struct Slot {
    state: AtomicU8,
    addr: OnceLock<IpAddr>,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    /// The data plane's clock (milliseconds) when traffic from the peer was last admitted.
    last_rx: AtomicU64,
}

/// What was counted for one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Datagrams sent to the peer (each segment of a GSO train counts).
    pub tx_packets: u64,
    /// Inner bytes sent to it.
    pub tx_bytes: u64,
    /// Datagrams received from it and admitted.
    pub rx_packets: u64,
    /// Inner bytes received from it.
    pub rx_bytes: u64,
    /// When it was last heard, on the data plane's clock (milliseconds; 0: never).
    pub last_rx: u64,
}

/// The per-peer counters of one data plane.
#[derive(Debug)]
pub(crate) struct PeerTable {
    slots: Box<[Slot]>,
    /// Datagrams to or from peers that found no slot.
    overflow: AtomicU64,
}

impl Default for PeerTable {
    fn default() -> Self {
        PeerTable {
            slots: (0..PEER_SLOTS).map(|_| Slot::default()).collect(),
            overflow: AtomicU64::new(0),
        }
    }
}

impl PeerTable {
    /// The slot of `addr`, claimed if it has none yet; `None` when the table is full there.
    fn slot(&self, addr: IpAddr) -> Option<&Slot> {
        let hash = std::hash::BuildHasherDefault::<FxHasher>::default().hash_one(addr);
        // The top bits: the Fx hash's low bits depend only on the low bits of its input, and
        // addresses differ in their last bytes.
        let start = (hash >> (u64::BITS - SLOT_BITS)) as usize;
        for i in 0..MAX_PROBES {
            let slot = &self.slots[(start + i) % PEER_SLOTS];
            // A plain load first: the common case (the peer's slot exists) writes nothing.
            let mut state = slot.state.load(Acquire);
            if state == EMPTY {
                match slot
                    .state
                    .compare_exchange(EMPTY, CLAIMING, Acquire, Acquire)
                {
                    Ok(_) => {
                        let _ = slot.addr.set(addr);
                        slot.state.store(READY, Release);
                        return Some(slot);
                    }
                    Err(now) => state = now,
                }
            }
            // Another worker may be writing its address (two stores): wait for it, so that
            // one address never gets two slots.
            while state == CLAIMING {
                std::hint::spin_loop();
                state = slot.state.load(Acquire);
            }
            if slot.addr.get() == Some(&addr) {
                return Some(slot);
            }
        }
        None
    }

    /// Counts `packets` datagrams carrying `bytes` inner bytes sent to `peer`.
    pub(crate) fn sent(&self, peer: SocketAddr, packets: u64, bytes: u64) {
        match self.slot(peer.ip()) {
            Some(s) => {
                s.tx_packets.fetch_add(packets, Relaxed);
                s.tx_bytes.fetch_add(bytes, Relaxed);
            }
            None => {
                self.overflow.fetch_add(packets, Relaxed);
            }
        }
    }

    /// Counts one admitted datagram of `bytes` inner bytes from `peer`, heard at `now`.
    pub(crate) fn received(&self, peer: SocketAddr, bytes: usize, now: u64) {
        match self.slot(peer.ip()) {
            Some(s) => {
                s.rx_packets.fetch_add(1, Relaxed);
                s.rx_bytes.fetch_add(bytes as u64, Relaxed);
                // 0 means never heard: a datagram at the clock's first millisecond counts as 1.
                s.last_rx.fetch_max(now.max(1), Relaxed);
            }
            None => {
                self.overflow.fetch_add(1, Relaxed);
            }
        }
    }

    /// Every peer with a slot, and the overflow count.
    pub(crate) fn snapshot(&self) -> (Vec<(IpAddr, PeerSnapshot)>, u64) {
        let peers = self
            .slots
            .iter()
            .filter(|s| s.state.load(Acquire) == READY)
            .filter_map(|s| {
                Some((
                    *s.addr.get()?,
                    PeerSnapshot {
                        tx_packets: s.tx_packets.load(Relaxed),
                        tx_bytes: s.tx_bytes.load(Relaxed),
                        rx_packets: s.rx_packets.load(Relaxed),
                        rx_bytes: s.rx_bytes.load(Relaxed),
                        last_rx: s.last_rx.load(Relaxed),
                    },
                ))
            })
            .collect();
        (peers, self.overflow.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4789))
    }

    fn ip(i: u32) -> IpAddr {
        peer(i).ip()
    }

    #[test]
    fn counts_each_peer_apart() {
        let t = PeerTable::default();
        t.sent(peer(1), 3, 300);
        t.sent(peer(1), 1, 50);
        // From any source port: the peer is its address.
        t.received(SocketAddr::new(ip(1), 40001), 70, 5);
        t.received(peer(2), 10, 9);
        t.received(peer(2), 10, 7);
        let (mut got, overflow) = t.snapshot();
        got.sort_by_key(|(a, _)| *a);
        assert_eq!(overflow, 0);
        assert_eq!(
            got,
            vec![
                (
                    ip(1),
                    PeerSnapshot {
                        tx_packets: 4,
                        tx_bytes: 350,
                        rx_packets: 1,
                        rx_bytes: 70,
                        last_rx: 5
                    }
                ),
                (
                    ip(2),
                    PeerSnapshot {
                        rx_packets: 2,
                        rx_bytes: 20,
                        last_rx: 9,
                        ..Default::default()
                    }
                ),
            ]
        );
    }

    #[test]
    fn the_table_is_bounded_and_overflow_is_counted() {
        let t = PeerTable::default();
        for i in 0..(PEER_SLOTS as u32 * 2) {
            t.sent(peer(i), 1, 1);
        }
        let (got, overflow) = t.snapshot();
        assert!(got.len() <= PEER_SLOTS);
        assert_eq!(got.len() as u64 + overflow, PEER_SLOTS as u64 * 2);
        assert!(overflow >= PEER_SLOTS as u64);
        // A peer that has a slot keeps it.
        let (first, _) = got[0];
        t.sent(SocketAddr::new(first, 4789), 1, 1);
        let (again, _) = t.snapshot();
        assert_eq!(
            again
                .iter()
                .find(|(a, _)| *a == first)
                .unwrap()
                .1
                .tx_packets,
            2
        );
    }

    #[test]
    fn workers_counting_at_once_lose_nothing() {
        let t = PeerTable::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..10_000u32 {
                        t.sent(peer(i % 50), 1, 10);
                    }
                });
            }
        });
        let (got, overflow) = t.snapshot();
        assert_eq!(overflow, 0);
        assert_eq!(got.len(), 50);
        assert!(got
            .iter()
            .all(|(_, s)| s.tx_packets == 800 && s.tx_bytes == 8000));
    }
}
