//! The data plane's clock: milliseconds since it started, which learned MACs age by, flow
//! steering counts seconds with and workers stamp their published load with.
//!
//! One clock per data plane, shared by its threads. It follows the monotonic clock; tests keep a
//! handle ([`crate::DataplaneConfig::clock`]) and move it forward with [`Clock::advance`] to
//! age a learned MAC without waiting 300 s, or use a [`Clock::manual`] one, which moves only
//! then, to the millisecond. Nothing else ever moves it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared millisecond clock (cloning shares it).
#[derive(Debug, Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Where real time is counted from; `None` for a manual clock.
    epoch: Option<Instant>,
    /// Time skipped with [`Clock::advance`].
    skipped_ms: AtomicU64,
}

impl Clock {
    /// A clock that reads 0 now and follows real time.
    pub fn new() -> Clock {
        Clock::starting(Some(Instant::now()))
    }

    /// A clock that reads 0 until [`Clock::advance`]d, and moves only then: for tests that
    /// need times to the millisecond.
    pub fn manual() -> Clock {
        Clock::starting(None)
    }

    fn starting(epoch: Option<Instant>) -> Clock {
        Clock {
            inner: Arc::new(Inner {
                epoch,
                skipped_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Milliseconds since the clock was made (plus whatever was skipped).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        let elapsed = self
            .inner
            .epoch
            .map_or(0, |e| e.elapsed().as_millis() as u64);
        elapsed + self.inner.skipped_ms.load(Relaxed)
    }

    /// Moves the clock forward by `by`, at once, for every holder: what tests use to let
    /// entries age without waiting.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.inner.skipped_ms.fetch_add(ms, Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_handle_forward_and_time_keeps_running() {
        let a = Clock::new();
        let b = a.clone();
        let before = a.now_ms();
        b.advance(Duration::from_secs(300));
        let after = a.now_ms();
        assert!(after >= before + 300_000, "{before} -> {after}");
        // Never backwards.
        assert!(a.now_ms() >= after);
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let c = Clock::manual();
        assert_eq!(c.now_ms(), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), 0);
        c.advance(Duration::from_millis(299_999));
        assert_eq!(c.now_ms(), 299_999);
    }
}
