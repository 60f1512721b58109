//! Path MTU enforcement, carried out: the ICMP "too big" answers the send path writes back
//! into a network's TAP when [`crate::encap`] refuses a frame that does not fit the path to
//! its peer ([`TooBigAnswers`]), and the per-network budget that rate-limits them
//! ([`AnswerBudget`]).
//!
//! An answer goes to the container that sent the frame, as if from the frame's destination
//! ([`ovnet_wire::icmp::build_too_big`]); its kernel then lowers its path MTU to that
//! destination and TCP resends in smaller segments. A container that keeps sending large
//! frames (a UDP application ignoring the answers, or a flood of them) gets at most
//! [`ANSWERS_PER_SEC`] answers a second per network, after a burst of [`ANSWER_BURST`]: the
//! frames beyond are still refused and counted, only not answered, as the kernel rate-limits
//! its own ICMP errors (`icmp_msgs_per_sec`, `icmp_msgs_burst`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ovnet_sys::Tap;
use ovnet_wire::icmp;

use crate::network::{write_frame, Network};

/// Answers per second a network may write: enough for every TCP flow of a busy network to
/// learn a path MTU within a second (one answer each suffices), few enough that a container
/// sending nothing but oversized frames costs the worker little beyond reading them.
pub const ANSWERS_PER_SEC: u64 = 300;

/// Answers a network may write at once, after a quiet spell: the first super-frames of a few
/// new flows, which all arrive before their senders have read the first answer.
pub const ANSWER_BURST: u64 = 30;

/// A token bucket shared by a network's workers, without a lock: the generic cell rate
/// algorithm's one atomic, the time (µs of the data plane's clock) at which the bucket is full
/// again. A take succeeds if that time is less than a burst ahead of now, and moves it on by
/// one interval.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    /// When the bucket is full again (µs).
    full_at: AtomicU64,
    /// Time one token takes to come back (µs).
    interval: u64,
    /// How far ahead of now `full_at` may be for a take to succeed (µs): `burst - 1`
    /// intervals.
    tolerance: u64,
}

impl AnswerBudget {
    /// `per_sec` tokens a second (at least 1), `burst` at once (at least 1), full.
    pub(crate) fn new(per_sec: u64, burst: u64) -> AnswerBudget {
        let interval = 1_000_000 / per_sec.clamp(1, 1_000_000);
        AnswerBudget {
            full_at: AtomicU64::new(0),
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
        }
    }

    /// Takes a token at `now_ms` (the data plane's clock), if there is one.
    pub(crate) fn take(&self, now_ms: u64) -> bool {
        let now = now_ms.saturating_mul(1000);
        let mut full_at = self.full_at.load(Relaxed);
        loop {
            let from = full_at.max(now);
            if from - now > self.tolerance {
                return false;
            }
            match self.full_at.compare_exchange_weak(
                full_at,
                from.saturating_add(self.interval),
                Relaxed,
                Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => full_at = seen,
            }
        }
    }
}

impl Default for AnswerBudget {
    /// [`ANSWERS_PER_SEC`] after a burst of [`ANSWER_BURST`].
    fn default() -> AnswerBudget {
        AnswerBudget::new(ANSWERS_PER_SEC, ANSWER_BURST)
    }
}

/// One worker's means to answer: a buffer for the longest answer, allocated once.
#[derive(Debug)]
pub(crate) struct TooBigAnswers {
    buf: Box<[u8; icmp::MAX_LEN]>,
}

impl TooBigAnswers {
    pub(crate) fn new() -> TooBigAnswers {
        TooBigAnswers {
            buf: Box::new([0; icmp::MAX_LEN]),
        }
    }

    /// Answers `frame`, read from `tap` of network `net` and refused at `now_ms`, with a "too
    /// big" carrying `mtu`, if the network's budget has a token; counts the answer. `Ok(false)`
    /// when the budget held it back or the frame may not be answered after all.
    pub(crate) fn answer(
        &mut self,
        net: &Network,
        tap: &Tap,
        frame: &[u8],
        mtu: u16,
        now_ms: u64,
    ) -> io::Result<bool> {
        if !net.answers.take(now_ms) {
            return Ok(false);
        }
        let Ok(len) = icmp::build_too_big(frame, mtu, &mut self.buf[..]) else {
            return Ok(false);
        };
        write_frame(tap, &self.buf[..len])?;
        net.counters.too_big_answer();
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let b = AnswerBudget::new(300, 30);
        let burst = (0..100).filter(|_| b.take(1_000)).count();
        assert_eq!(burst, 30, "a full bucket gives its burst at once");
        assert!(!b.take(1_000));
        // 300 a second: one every 3.33 ms; 10 ms later, 3 more.
        let later = (0..10).filter(|_| b.take(1_010)).count();
        assert_eq!(later, 3);
        // Over a second of steady asking, about 300.
        let mut got = 0;
        for ms in 1_011..2_011 {
            got += (0..5).filter(|_| b.take(ms)).count();
        }
        assert!((299..=301).contains(&got), "{got} in one second");
    }

    #[test]
    fn a_quiet_spell_refills_the_burst_and_no_more() {
        let b = AnswerBudget::new(300, 30);
        assert_eq!((0..100).filter(|_| b.take(0)).count(), 30);
        // An hour later: the burst again, not an hour's worth.
        let hour = 3_600_000;
        assert_eq!((0..100).filter(|_| b.take(hour)).count(), 30);
    }

    #[test]
    fn workers_sharing_a_budget_never_take_more_than_it_holds() {
        let b = std::sync::Arc::new(AnswerBudget::new(300, 30));
        let taken: usize = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    // 1 s of the clock, each thread asking 20 times per millisecond.
                    (0..1_000u64)
                        .map(|ms| (0..20).filter(|_| b.take(ms)).count())
                        .sum::<usize>()
                })
            })
            .map(|h| h.join().unwrap())
            .sum();
        // The burst, then one every 3.33 ms of the second.
        assert!((300..=330).contains(&taken), "{taken}");
    }

    #[test]
    fn degenerate_budgets_still_work() {
        let one = AnswerBudget::new(0, 0);
        assert!(one.take(0));
        assert!(!one.take(999));
        assert!(one.take(1_000));
        let fast = AnswerBudget::new(u64::MAX, 1);
        assert!(fast.take(u64::MAX));
    }
}
