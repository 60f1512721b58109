//! The data plane's housekeeping thread: the chores that run on a clock rather than on traffic,
//! kept off the workers' packet loop. Once a [`TICK`]:
//! - the learned-MAC sweep: every [`SWEEP_EVERY_MS`] of the data plane's clock, entries older
//!   than the ageing time are removed (lookups already ignore them; the sweep frees them);
//! - the uplink's forwarding check ([`crate::uplink::ForwardingCheck`]), which reads the host's
//!   counters in `/proc` and may turn tunnel GSO off.
//!
//! The thread is started in the data plane's network namespace (it reads that namespace's
//! counters) and stops with the data plane, at once.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::DataplaneError;
use crate::shared::Shared;
use crate::uplink::ForwardingCheck;

/// How often the thread wakes up to see whether a chore is due.
const TICK: Duration = Duration::from_secs(1);

/// How often learned MACs are swept, in the data plane's milliseconds: ageing is counted in
/// minutes, and lookups skip aged entries meanwhile.
const SWEEP_EVERY_MS: u64 = 10_000;

/// The running housekeeping thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Housekeeping {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Housekeeping {
    /// Starts the thread over `shared`, in the calling thread's network namespace.
    pub(crate) fn spawn(shared: &Arc<Shared>) -> Result<Housekeeping, DataplaneError> {
        let (stop, stopped) = mpsc::channel();
        let s = shared.clone();
        let handle = std::thread::Builder::new()
            .name("ovnet-housekeeping".into())
            .spawn(move || run(&s, &stopped))
            .map_err(|e| DataplaneError::Io("spawning the housekeeping thread", e))?;
        Ok(Housekeeping {
            stop: Some(stop),
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        // Dropping the sender ends the thread's wait at once.
        self.stop.take();
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::error!("the data plane's housekeeping thread panicked");
            }
        }
    }
}

impl Drop for Housekeeping {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the chores until `stopped` says so.
fn run(s: &Shared, stopped: &mpsc::Receiver<()>) {
    let mut last_sweep = 0;
    let mut forwarding = s
        .uplink
        .as_ref()
        .map(|_| ForwardingCheck::new(s.clock.now_ms()));
    loop {
        match stopped.recv_timeout(TICK) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = s.clock.now_ms();
        if now.saturating_sub(last_sweep) >= SWEEP_EVERY_MS {
            let gone = s.learned.expire(now);
            if gone > 0 {
                log::debug!("{gone} learned MACs aged out");
            }
            last_sweep = now;
        }
        if let (Some(up), Some(check)) = (&s.uplink, forwarding.as_mut()) {
            check.check(up, &s.caps.tunnel_gso, now);
        }
    }
}
