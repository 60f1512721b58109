//! How a worker paces itself between bursts, and how busy it is.
//!
//! [`PollWindow`]: a worker with nothing left to do polls a little longer (at most the
//! configured window, 100 µs by default) before it sleeps, yielding the CPU between polls so
//! that it never keeps a runnable container or peer worker waiting. Under load the next burst
//! arrives within that window: the sender's wake-up of a sleeping worker (an IPI and a context
//! switch, several microseconds on a virtual CPU, ~5 % of all CPU in a TCP stream's profile)
//! is saved, and so is the wakee's latency. Measured on 2 cores: TCP +20 to 30 %, 64-byte UDP
//! +50 %. Spinning without yielding was measured too and lowers TCP: it takes the core from
//! the container.
//!
//! [`BATCH`]: how much a worker reads from one descriptor before it turns to the others.
//!
//! [`LoadMeter`]: the share of its time a worker spends moving frames, per window, which flow
//! steering ([`crate::steer`]) and operators read.

use std::time::{Duration, Instant};

/// Reads from one descriptor per pass before the worker turns to the others, checks for
/// shutdown and reloads the tables. 64 keeps a pass under ~100 µs at 1500-byte frames while
/// amortising the `epoll_wait` over many packets.
pub(crate) const BATCH: usize = 64;

/// How often a worker publishes its load, for flow steering ([`crate::steer`]) and operators.
const LOAD_WINDOW: Duration = Duration::from_millis(50);

/// A worker's share of time spent moving frames (from `epoll_wait` returning events to the
/// end of the pass), per [`LOAD_WINDOW`]: polling and sleeping are not busy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadMeter {
    start: Instant,
    busy: Duration,
}

impl LoadMeter {
    pub(crate) fn new(now: Instant) -> LoadMeter {
        LoadMeter {
            start: now,
            busy: Duration::ZERO,
        }
    }

    /// The worker was busy from `from` to `to`; at the end of a window, its load in per mille.
    pub(crate) fn busy(&mut self, from: Instant, to: Instant) -> Option<u32> {
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
pub(crate) struct PollWindow {
    max: Duration,
    window: Duration,
    last_event: Instant,
}

impl PollWindow {
    pub(crate) fn new(max: Duration, now: Instant) -> PollWindow {
        PollWindow {
            max,
            window: max,
            last_event: now,
        }
    }

    /// Traffic (or another event) arrived at `now`.
    pub(crate) fn event(&mut self, now: Instant) {
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
    pub(crate) fn idle(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_event) < self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
