//! Flow steering: which of the peer's workers receives each of our flows.
//!
//! Every data plane with several workers asks its kernel to hand a datagram to worker
//! `outer source port % workers` (`UnderlaySocket::steer_by_source_port`). The sender picks
//! the source port, so the sender decides where each flow lands on the peer, and it can do
//! better than a hash, which puts two flows on one worker half the time on two workers: it
//! gives each new flow the next worker in turn, and remembers the choice while the flow
//! lives. The receiving worker also writes the flow's frames to its own TAP queue, which is
//! where the kernel then queues the flow's frames in the other direction, so a flow's two
//! directions meet on one worker on each host.
//!
//! The table is a fixed array of atomic slots indexed by flow hash: no lock and no allocation
//! per packet, a write only when a flow is new or a second has passed. A slot held by another
//! live flow (a hash collision) sends the newcomer by hash instead, so neither flow moves.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Slots in the table (a power of two).
const SLOTS: usize = 4096;

/// A flow not seen for this long gives its slot up, in seconds.
const IDLE_S: u32 = 30;

/// The assignment of flows to the peer's workers.
#[derive(Debug)]
pub(crate) struct FlowSteering {
    /// `hash << 32 | last seen (seconds, 24 bits) << 8 | worker + 1`; 0 is empty.
    slots: Box<[AtomicU64]>,
    next: AtomicU32,
    workers: u32,
}

impl FlowSteering {
    /// A table for peers with `workers` workers (at least 1, at most 255).
    pub(crate) fn new(workers: usize) -> FlowSteering {
        FlowSteering {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            next: AtomicU32::new(0),
            workers: workers.clamp(1, 255) as u32,
        }
    }

    /// The peer worker for the flow with `hash`, at `now_s` seconds.
    pub(crate) fn worker(&self, hash: u32, now_s: u64) -> u32 {
        let now = (now_s & 0xff_ffff) as u32;
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        let e = slot.load(Relaxed);
        if e != 0 && (e >> 32) as u32 == hash {
            let w = (e & 0xff) as u32 - 1;
            if seen(e) != now {
                slot.store(pack(hash, now, w), Relaxed);
            }
            return w;
        }
        if e == 0 || now.wrapping_sub(seen(e)) & 0xff_ffff > IDLE_S {
            let w = self.next.fetch_add(1, Relaxed) % self.workers;
            slot.store(pack(hash, now, w), Relaxed);
            return w;
        }
        hash % self.workers
    }
}

fn pack(hash: u32, now: u32, worker: u32) -> u64 {
    (u64::from(hash) << 32) | (u64::from(now) << 8) | u64::from(worker + 1)
}

fn seen(e: u64) -> u32 {
    ((e >> 8) & 0xff_ffff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_flows_take_the_workers_in_turn_and_keep_them() {
        let s = FlowSteering::new(2);
        let (a, b, c) = (0x1000_0001, 0x2000_0002, 0x3000_0003);
        assert_eq!(s.worker(a, 5), 0);
        assert_eq!(s.worker(b, 5), 1);
        assert_eq!(s.worker(c, 5), 0);
        for now in 5..40 {
            assert_eq!(s.worker(b, now), 1);
            assert_eq!(s.worker(a, now), 0);
        }
    }

    #[test]
    fn a_colliding_live_flow_goes_by_hash_and_moves_nobody() {
        let s = FlowSteering::new(2);
        let a = 7;
        let b = 7 + SLOTS as u32 * 3; // same slot, odd: hash says worker 1
        assert_eq!(s.worker(a, 100), 0);
        assert_eq!(s.worker(b, 100), 1);
        assert_eq!(s.worker(a, 101), 0);
        // Idle long enough, the slot goes to the newcomer in turn.
        assert_eq!(s.worker(b, 100 + u64::from(IDLE_S) + 1), 1);
        assert_eq!(s.worker(b, 200), 1);
    }

    #[test]
    fn one_worker_takes_everything_and_the_clock_may_wrap() {
        let s = FlowSteering::new(1);
        for h in 0..100 {
            assert_eq!(s.worker(h * 31, 1 << 24), 0);
        }
        let s = FlowSteering::new(3);
        let w = s.worker(9, 0xff_fffe);
        assert_eq!(s.worker(9, 0x100_0003), w);
    }
}
