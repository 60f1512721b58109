//! The data plane's clock: milliseconds since it started, which learned MACs age by, flow
//! steering counts seconds with and workers stamp their published load with.
//!
//! One clock per data plane, shared by its threads. It follows the monotonic clock; tests keep a
//! handle ([`crate::DataplaneConfig::clock`]) and move it forward with [`Clock::advance`] to
//! age a learned MAC without waiting 300 s. Nothing else ever moves it.

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
    epoch: Instant,
    /// Time skipped with [`Clock::advance`].
    skipped_ms: AtomicU64,
}

impl Clock {
    /// A clock that reads 0 now.
    pub fn new() -> Clock {
        Clock {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                skipped_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Milliseconds since the clock was made (plus whatever was skipped).
    #[inline]
    pub fn now_ms(&self) -> u64 {
        let elapsed = self.inner.epoch.elapsed().as_millis() as u64;
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
}
