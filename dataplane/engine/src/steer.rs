//! Flow steering: which of the peer's workers receives each of our flows.
//!
//! Every data plane with several workers asks its kernel to hand a datagram to worker
//! `outer source port % workers` (`UnderlaySocket::steer_by_source_port`). The sender picks
//! the source port, so the sender decides where each flow lands on the peer, and it can do
//! better than a hash. The receiving worker also writes the flow's frames to its own TAP
//! queue, which is where the kernel then queues the flow's frames in the other direction, so
//! a flow's two directions meet on one worker on each host.
//!
//! Of two VTEPs, the one with the lower address decides where their flows go, on both hosts:
//! it sends each flow to the peer worker of its choice, and the peer sends the flow's other
//! direction back to the worker with the index the flow arrived on, which is also where the
//! flow is read from its TAP. So a flow is on worker `i` on both hosts, and a worker's own
//! load is a fair estimate of its peer twin's.
//!
//! A new flow goes to the worker with headroom that carries the fewest flows (in this second
//! or the one before; ties to the less loaded, then the lower index), so that flows starting
//! together (`iperf3 -P 2`, a browser's connections) land on different workers at once:
//! placing by load alone put both on worker 0, which had no load yet to show, and a worker
//! carrying two flows at 60 % busy never looked saturated, so worker 1 stayed idle on every
//! underlay (2026-12-05, switched and direct veth alike). Flows that come to share a worker
//! while another carries none (one started beside a flow that then fell silent or has ended)
//! are spread the same way, one move at a time. Beyond one flow per worker, flows pack
//! by load: a flow moves to another worker only when its worker is saturated with more than
//! one flow (at most one move per host per [`MOVE_EVERY_MS`]). Saturated means busy
//! throughout a whole second: BBR's probing lifts a worker's load for a few hundred
//! milliseconds at a time, which must not spread its flows for good.
//!
//! The table is a fixed array of atomic slots indexed by flow hash: no lock and no allocation
//! per packet, a write only when a flow is new or a second has passed. A slot held by another
//! live flow (a hash collision) sends the newcomer by hash instead, so neither flow moves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Slots in the table (a power of two).
const SLOTS: usize = 4096;

/// A flow not seen in this many seconds of the table's clock (idle for more than one second)
/// gives its slot up: nothing of it is in flight any more, so when it comes back it is placed
/// as a new flow, by the loads and flows of then, not on the worker it had before.
const IDLE_S: u32 = 2;

/// A worker whose load stayed at least this (per mille of its time busy) for a whole second
/// is saturated: its flows may move away if it has more than one.
pub(crate) const SATURATED: u32 = 700;

/// A worker below this load has headroom: new flows and moved ones go to the first such.
pub(crate) const HEADROOM: u32 = 500;

/// At most one flow moves per this many milliseconds, so that the loads the next decision
/// reads already show the last move.
pub(crate) const MOVE_EVERY_MS: u64 = 1000;

/// A load not published for this long is of an idle worker (one that sleeps publishes
/// nothing).
const LOAD_STALE_MS: u64 = 250;

/// The assignment of flows to the peer's workers.
#[derive(Debug)]
pub(crate) struct FlowSteering {
    /// `hash << 32 | last seen (seconds, 24 bits) << 8 | worker + 1`; 0 is empty.
    slots: Box<[AtomicU64]>,
    /// Each local worker's load: `published at (ms) << 16 | per mille busy`.
    loads: Box<[AtomicU64]>,
    /// Each local worker's lowest load in this second and the one before.
    floors: Box<[PerSecond]>,
    /// How many flows each worker carried this second and the one before, counted as their
    /// slots refresh.
    active: Box<[PerSecond]>,
    /// When a flow last moved, in ms (0: never).
    last_move: AtomicU64,
    /// Flows moved off a saturated worker so far.
    moves: AtomicU64,
    workers: u32,
    /// The local VTEP: it decides for peers with higher addresses.
    vtep: SocketAddr,
}

impl FlowSteering {
    /// A table for the VTEP `vtep` and peers with `workers` workers (at least 1, at most 255).
    pub(crate) fn new(workers: usize, vtep: SocketAddr) -> FlowSteering {
        let workers = workers.clamp(1, 255);
        FlowSteering {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            loads: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            floors: (0..workers).map(|_| PerSecond::default()).collect(),
            active: (0..workers).map(|_| PerSecond::default()).collect(),
            last_move: AtomicU64::new(0),
            moves: AtomicU64::new(0),
            workers: workers as u32,
            vtep,
        }
    }

    /// The worker of `peer` for the flow with `hash` that local worker `local` sends, at
    /// `now_ms`: the one this VTEP chooses if it decides for `peer`, else `local`'s twin.
    pub(crate) fn peer_worker(
        &self,
        hash: u32,
        local: usize,
        peer: &SocketAddr,
        now_ms: u64,
    ) -> u32 {
        if *peer < self.vtep {
            return local as u32 % self.workers;
        }
        self.worker(hash, now_ms)
    }

    /// Local worker `worker` was busy `per_mille` of its time in the window ending `now_ms`.
    pub(crate) fn publish_load(&self, worker: usize, now_ms: u64, per_mille: u32) {
        if let Some(l) = self.loads.get(worker) {
            // Smoothed over the last few windows: one busy window moves nothing.
            let old = self.load(worker as u32, now_ms);
            let new = (3 * old + per_mille.min(1000)) / 4;
            l.store((now_ms << 16) | u64::from(new), Relaxed);
            self.floors[worker].record(second(now_ms), u64::from(new), u64::min);
        }
    }

    /// Each local worker's smoothed load at `now_ms`, per mille.
    pub(crate) fn loads(&self, now_ms: u64) -> Vec<u32> {
        (0..self.workers).map(|w| self.load(w, now_ms)).collect()
    }

    /// How many flows this VTEP moved off a saturated worker so far.
    pub(crate) fn moves(&self) -> u64 {
        self.moves.load(Relaxed)
    }

    /// The load of worker `w` at `now_ms` (0 if it published nothing lately).
    fn load(&self, w: u32, now_ms: u64) -> u32 {
        let l = self.loads[w as usize].load(Relaxed);
        if now_ms.saturating_sub(l >> 16) > LOAD_STALE_MS {
            0
        } else {
            (l & 0xffff) as u32
        }
    }

    /// Where a flow goes at `now_ms`: of the workers with headroom, the one carrying the fewest
    /// flows (this second or the one before), then the less loaded, then the lower index;
    /// without headroom anywhere, the least loaded.
    fn place(&self, now_ms: u64) -> u32 {
        let now_s = second(now_ms);
        let mut least = (u32::MAX, 0);
        let mut best: Option<(u64, u32, u32)> = None;
        for w in 0..self.workers {
            let load = self.load(w, now_ms);
            least = least.min((load, w));
            if load < HEADROOM {
                let (now, before) = self.active[w as usize].get(now_s);
                let candidate = (now.max(before), load, w);
                best = Some(best.map_or(candidate, |b| b.min(candidate)));
            }
        }
        best.map_or(least.1, |b| b.2)
    }

    /// Where a flow on worker `w` goes instead, if `w` carries more than one flow and either
    /// was saturated or another worker with headroom carries none; at most one flow per
    /// [`MOVE_EVERY_MS`].
    fn relieve(&self, w: u32, now_ms: u64) -> Option<u32> {
        let now_s = second(now_ms);
        let (flows_now, flows_before) = self.active[w as usize].get(now_s);
        if flows_now.max(flows_before) < 2 {
            return None;
        }
        let to = self.place(now_ms);
        if to == w || self.load(to, now_ms) >= HEADROOM {
            return None;
        }
        // Two flows share a worker while another is empty when a flow started beside one
        // that soon fell silent (iperf3's control connection) or a worker's flow ended:
        // spread them, as new flows are. A ping left beside a TCP stream waited behind its
        // super-frames (p50 1.1-1.5 ms against 0.24-0.28 ms on a worker of its own).
        let (_, lowest_before) = self.floors[w as usize].get(now_s);
        let (to_now, to_before) = self.active[to as usize].get(now_s);
        if lowest_before < u64::from(SATURATED) && to_now.max(to_before) > 0 {
            return None;
        }
        let last = self.last_move.load(Relaxed);
        if last != 0 && now_ms.saturating_sub(last) < MOVE_EVERY_MS {
            return None;
        }
        self.last_move
            .compare_exchange(last, now_ms.max(1), Relaxed, Relaxed)
            .ok()?;
        self.moves.fetch_add(1, Relaxed);
        Some(to)
    }

    /// The peer worker for the flow with `hash`, at `now_ms`, where this VTEP decides.
    fn worker(&self, hash: u32, now_ms: u64) -> u32 {
        let now = second(now_ms);
        let slot = &self.slots[hash as usize & (SLOTS - 1)];
        let e = slot.load(Relaxed);
        let idle = e == 0 || now.wrapping_sub(seen(e)) & 0xff_ffff >= IDLE_S;
        if !idle && (e >> 32) as u32 == hash {
            let mut w = (e & 0xff) as u32 - 1;
            if seen(e) != now {
                self.active[w as usize].record(now, 1, |n, one| n + one);
                if let Some(to) = self.relieve(w, now_ms) {
                    self.active[to as usize].record(now, 1, |n, one| n + one);
                    w = to;
                }
                slot.store(pack(hash, now, w), Relaxed);
            }
            return w;
        }
        if idle {
            let w = self.place(now_ms);
            // Counted at once, so that a flow starting in the same instant sees it.
            self.active[w as usize].record(now, 1, |n, one| n + one);
            slot.store(pack(hash, now, w), Relaxed);
            return w;
        }
        hash % self.workers
    }
}

/// The second of `now_ms`, in the 24 bits the slots keep.
fn second(now_ms: u64) -> u32 {
    ((now_ms / 1000) & 0xff_ffff) as u32
}

/// A figure of this second and of the second before, in one atomic: `second (24 bits) << 40 |
/// this second's (20 bits) << 20 | the second before's (20 bits)`. Racing writers may lose a
/// value: the figures steer flows, they count nothing.
#[derive(Debug, Default)]
struct PerSecond(AtomicU64);

/// The largest figure a [`PerSecond`] holds.
const PER_SECOND_MAX: u64 = 0xf_ffff;

impl PerSecond {
    /// (second, this second's figure, the second before's).
    fn load(&self) -> (u32, u64, u64) {
        let v = self.0.load(Relaxed);
        (
            (v >> 40) as u32,
            (v >> 20) & PER_SECOND_MAX,
            v & PER_SECOND_MAX,
        )
    }

    /// Folds `value` into second `now_s`'s figure with `fold`; the first value of a second
    /// starts it.
    fn record(&self, now_s: u32, value: u64, fold: impl Fn(u64, u64) -> u64) {
        let (at, this, before) = self.load();
        let (this, before) = if at == now_s {
            (fold(this, value), before)
        } else if next_second(at) == now_s {
            (value, this)
        } else {
            (value, 0)
        };
        let this = this.min(PER_SECOND_MAX);
        self.0
            .store((u64::from(now_s) << 40) | (this << 20) | before, Relaxed);
    }

    /// (this second's figure so far, the second before's) at second `now_s`.
    fn get(&self, now_s: u32) -> (u64, u64) {
        let (at, this, before) = self.load();
        if at == now_s {
            (this, before)
        } else if next_second(at) == now_s {
            (0, this)
        } else {
            (0, 0)
        }
    }
}

fn next_second(s: u32) -> u32 {
    s.wrapping_add(1) & 0xff_ffff
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

    fn steering(workers: usize) -> FlowSteering {
        FlowSteering::new(workers, "10.0.0.1:4789".parse().unwrap())
    }

    /// Worker `w` reports `per_mille` every 50 ms from `from_ms` to `to_ms`, as it would.
    fn busy(s: &FlowSteering, w: usize, from_ms: u64, to_ms: u64, per_mille: u32) {
        for t in (from_ms..=to_ms).step_by(50) {
            s.publish_load(w, t, per_mille);
        }
    }

    #[test]
    fn flows_starting_together_go_to_different_workers_then_pack_by_load() {
        let s = steering(2);
        let (a, b, c) = (0x1000_0001, 0x2000_0002, 0x3000_0003);
        // Both start in the same instant, before any worker has a load to show.
        assert_eq!(s.worker(a, 5_000), 0);
        assert_eq!(s.worker(b, 5_000), 1);
        // A third goes where fewest flows are: a tie, so the less loaded, then worker 0.
        busy(&s, 0, 5_000, 5_400, 300);
        busy(&s, 1, 5_000, 5_400, 100);
        assert_eq!(s.worker(c, 5_400), 1);
        // Busy, but not saturated: nothing moves, second after second.
        for t in (5_500..40_000).step_by(500) {
            busy(&s, 0, t - 450, t, 650);
            busy(&s, 1, t - 450, t, 650);
            assert_eq!([s.worker(a, t), s.worker(b, t), s.worker(c, t)], [0, 1, 1]);
        }
        busy(&s, 0, 40_000, 41_000, 800);
        busy(&s, 1, 40_000, 41_000, 100);
        assert_eq!(s.worker(0x4000_0004, 41_000), 1, "no headroom on 0");
        busy(&s, 1, 40_000, 41_000, 900);
        assert_eq!(s.worker(0x5000_0005, 41_000), 0, "the least loaded");
    }

    #[test]
    fn a_flow_alone_keeps_its_worker_and_a_newcomer_takes_the_idle_one() {
        let s = steering(2);
        let (a, b) = (0x1000_0001, 0x2000_0002);
        assert_eq!(s.worker(a, 1_000), 0);
        for t in (1_500..10_000).step_by(500) {
            busy(&s, 0, t - 450, t, 400);
            assert_eq!(s.worker(a, t), 0);
        }
        // Worker 0 has headroom, but carries a flow: the new one goes to idle worker 1.
        assert_eq!(s.worker(b, 10_000), 1);
        // Once `a` has been idle for two seconds, worker 0 counts as empty again.
        let later = 10_000 + 2_100;
        busy(&s, 1, 10_000, later, 400);
        for t in (10_500..=later).step_by(500) {
            assert_eq!(s.worker(b, t), 1);
        }
        assert_eq!(s.worker(0x3000_0003, later), 0);
    }

    #[test]
    fn a_worker_saturated_for_a_second_sheds_one_flow_at_a_time_and_never_its_only_one() {
        let s = steering(2);
        let (a, b, c) = (0x1000_0001, 0x2000_0002, 0x3000_0003);
        assert_eq!(s.worker(a, 1_000), 0);
        busy(&s, 0, 1_000, 4_000, 950);
        // Alone on a saturated worker, a flow stays: moving it would not help.
        for t in [2_000, 3_000, 4_000] {
            assert_eq!(s.worker(a, t), 0);
        }
        assert_eq!(s.worker(b, 4_000), 1, "no headroom on 0 for a new flow");
        s.slots[c as usize & (SLOTS - 1)].store(pack(c, 4, 0), Relaxed);
        // Next second `a` and `c` share saturated worker 0: one moves to idle worker 1...
        busy(&s, 0, 4_050, 5_000, 950);
        assert_eq!(s.moves(), 0);
        let moved = [s.worker(a, 5_000), s.worker(c, 5_010)];
        assert_eq!(moved.iter().filter(|&&w| w == 1).count(), 1, "{moved:?}");
        assert_eq!(s.moves(), 1, "the move is counted for operators");
        assert_eq!(s.loads(5_000)[1], 0, "worker 1 published nothing");
        assert!(s.loads(5_000)[0] >= SATURATED, "{:?}", s.loads(5_000));
        // ... and no other within MOVE_EVERY_MS, though 0 still reads as saturated.
        busy(&s, 0, 5_050, 5_950, 950);
        assert_eq!([s.worker(a, 5_950), s.worker(c, 5_950)], moved);
        // Nor to a worker without headroom.
        assert_eq!([s.worker(a, 6_000), s.worker(c, 6_000)], moved);
        busy(&s, 0, 6_000, 7_000, 950);
        busy(&s, 1, 6_000, 7_000, 600);
        assert_eq!([s.worker(a, 7_000), s.worker(c, 7_000)], moved);
        assert_eq!(s.moves(), 1);
        // Loads go stale: a worker that stopped publishing reads as idle.
        assert_eq!(s.loads(7_000 + LOAD_STALE_MS + 1), vec![0, 0]);
    }

    #[test]
    fn two_flows_on_one_worker_spread_to_an_empty_one() {
        let s = steering(2);
        let (control, ping, bulk) = (0x1000_0001, 0x2000_0002, 0x3000_0003);
        // A ping on worker 0, a control connection on worker 1, then the bulk flow ties
        // (one flow each) and joins the ping on worker 0, loading it without saturating it.
        assert_eq!(s.worker(ping, 1_000), 0);
        assert_eq!(s.worker(control, 1_100), 1);
        assert_eq!(s.worker(bulk, 1_200), 0);
        // The control connection falls silent; the two on worker 0 keep going.
        for t in (1_500..=2_900).step_by(100) {
            busy(&s, 0, t - 50, t, 600);
            assert_eq!([s.worker(ping, t), s.worker(bulk, t)], [0, 0], "at {t} ms");
        }
        // Worker 1 carried no flow in seconds 2 and 3: one of the two moves there, and only
        // one, though worker 0 never looked saturated.
        busy(&s, 0, 2_950, 3_000, 600);
        let moved = [s.worker(bulk, 3_000), s.worker(ping, 3_010)];
        assert_eq!(moved.iter().filter(|&&w| w == 1).count(), 1, "{moved:?}");
        assert_eq!(s.moves(), 1);
        for t in (3_100..=9_000).step_by(100) {
            busy(&s, 0, t - 50, t, 600);
            assert_eq!([s.worker(bulk, t), s.worker(ping, t)], moved, "at {t} ms");
        }
        assert_eq!(s.moves(), 1, "one flow per worker: nothing more moves");
    }

    #[test]
    fn a_load_peak_shorter_than_a_second_moves_nothing() {
        let s = steering(2);
        let (a, b, c) = (0x1000_0001, 0x2000_0002, 0x3000_0003);
        // Two flows on worker 0 (as when worker 1 was busy when they started), one on 1.
        for h in [a, b] {
            s.slots[h as usize & (SLOTS - 1)].store(pack(h, 1, 0), Relaxed);
        }
        s.slots[c as usize & (SLOTS - 1)].store(pack(c, 1, 1), Relaxed);
        for second in 1..10u64 {
            let t = second * 1000;
            busy(&s, 0, t, t + 600, 600);
            busy(&s, 0, t + 650, t + 950, 1000); // 300 ms at full load
            assert!(s.load(0, t + 950) >= SATURATED);
            assert_eq!(s.worker(c, t + 1000), 1);
            assert_eq!([s.worker(a, t + 1000), s.worker(b, t + 1000)], [0, 0]);
        }
    }

    #[test]
    fn one_busy_window_moves_nothing_and_a_silent_worker_counts_as_idle() {
        let s = steering(2);
        s.publish_load(0, 1_000, 1_000);
        assert!(s.load(0, 1_000) < SATURATED);
        busy(&s, 1, 1_000, 1_500, 990);
        assert!(s.load(1, 1_500) >= SATURATED);
        assert_eq!(s.load(1, 1_500 + LOAD_STALE_MS + 1), 0);
    }

    #[test]
    fn the_lower_vtep_decides_and_the_higher_answers_on_the_flows_worker() {
        let s = steering(2); // 10.0.0.1:4789
        let higher: SocketAddr = "10.0.0.2:4789".parse().unwrap();
        let lower: SocketAddr = "10.0.0.0:4789".parse().unwrap();
        busy(&s, 0, 500, 1_000, 900);
        // For a higher peer this VTEP decides: worker 0 has no headroom.
        assert_eq!(s.peer_worker(7, 0, &higher, 1_000), 1);
        // For a lower one it answers on the twin of the worker the flow is on here.
        assert_eq!(s.peer_worker(7, 0, &lower, 1_000), 0);
        assert_eq!(s.peer_worker(8, 1, &lower, 1_000), 1);
        assert_eq!(
            s.peer_worker(8, 3, &lower, 1_000),
            1,
            "peers with fewer workers"
        );
    }

    #[test]
    fn per_second_figures_roll_over_and_age_out() {
        let p = PerSecond::default();
        p.record(7, 5, u64::min);
        p.record(7, 3, u64::min);
        assert_eq!(p.get(7), (3, 0));
        p.record(8, 9, u64::min);
        assert_eq!(p.get(8), (9, 3));
        assert_eq!(p.get(9), (0, 9));
        assert_eq!(p.get(10), (0, 0));
        p.record(0xff_ffff, 1, |n, one| n + one);
        p.record(0xff_ffff, 1, |n, one| n + one);
        assert_eq!(p.get(0), (0, 2), "the second wraps");
    }

    #[test]
    fn a_colliding_live_flow_goes_by_hash_and_moves_nobody() {
        let s = steering(2);
        let a = 7;
        let b = 7 + SLOTS as u32 * 3; // same slot, odd: hash says worker 1
        assert_eq!(s.worker(a, 100_000), 0);
        assert_eq!(s.worker(b, 100_000), 1);
        assert_eq!(s.worker(a, 101_000), 0);
        // Idle long enough, the slot goes to the newcomer.
        let later = 101_000 + u64::from(IDLE_S) * 1000;
        assert_eq!(s.worker(b, later), 0);
        assert_eq!(s.worker(b, later + 900), 0);
    }

    #[test]
    fn a_flow_back_from_idle_is_placed_anew_and_a_live_one_stays() {
        let s = steering(2);
        let (ping, bulk) = (0x1000_0001, 0x2000_0002);
        // A ping placed while both workers were idle, then silent.
        assert_eq!(s.worker(ping, 1_000), 0);
        // A bulk flow starts three seconds later: the ping is not counted any more, so the
        // bulk flow takes worker 0 too, and loads it.
        assert_eq!(s.worker(bulk, 4_000), 0);
        busy(&s, 0, 4_000, 6_000, 800);
        // Back after more than a second of silence, the ping goes where a new flow would:
        // the worker with headroom, not the bulk flow's.
        assert_eq!(s.worker(ping, 6_000), 1);
        // Seen every second, it stays there, whatever the loads say...
        busy(&s, 1, 6_000, 9_000, 800);
        busy(&s, 0, 6_000, 9_000, 100);
        for t in (6_500..=9_000).step_by(500) {
            assert_eq!(s.worker(ping, t), 1, "at {t} ms");
        }
        // ... and gaps shorter than two seconds of the clock keep it too.
        assert_eq!(s.worker(ping, 10_999), 1);
        assert_eq!(
            s.worker(ping, 12_000),
            0,
            "idle from 10.999 to 12.000: placed anew"
        );
    }

    #[test]
    fn one_worker_takes_everything_and_the_clock_may_wrap() {
        let s = steering(1);
        for h in 0..100 {
            assert_eq!(s.worker(h * 31, (1 << 24) * 1000), 0);
        }
        let s = steering(3);
        let w = s.worker(9, 0xff_ffff * 1000);
        // Across the wrap a live flow stays, though a new one would go elsewhere now.
        busy(
            &s,
            w as usize,
            0xff_ffff * 1000,
            0x100_0000 * 1000 + 500,
            900,
        );
        assert_ne!(s.place(0x100_0000 * 1000 + 500), w);
        assert_eq!(s.worker(9, 0x100_0000 * 1000 + 500), w);
    }
}
