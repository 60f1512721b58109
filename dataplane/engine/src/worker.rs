//! The worker threads: each moves frames both ways for its share of the traffic, and does
//! nothing else.
//!
//! Worker `i` owns listening socket `i` (`SO_REUSEPORT`: the kernel spreads peers' flows over
//! the sockets by outer source port) and queue `j` of every network's TAP for `j % workers ==
//! i` (the kernel keeps a flow on one TAP queue), and sleeps in one `epoll` over them and its
//! waker. One thread for both directions is what makes a request and its answer meet a worker
//! that is already awake: a TCP sender's data and the ACKs that clock it, a ping and its
//! reply, cost one wake-up instead of two. Each descriptor is drained in bounded batches
//! ([`crate::pacing::BATCH`]) so neither direction starves the other.
//!
//! A pass: wait for events, hand the socket to the receive path ([`crate::receive`]) and each
//! ready TAP queue to the send path ([`crate::send`]), publish the load, then poll on or sleep
//! as [`crate::pacing`] says. Periodic chores (the learned-MAC sweep, the uplink's forwarding
//! check) run in the housekeeping thread ([`crate::housekeeping`]), never here.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ovnet_sys::{Epoll, UnderlaySocket, Waker};
use ovnet_wire::Vni;

use crate::buffer::PageBuf;
use crate::config::DataplaneError;
use crate::network::BUF_LEN;
use crate::pacing::{LoadMeter, PollWindow};
use crate::receive::Decapper;
use crate::send::{Encapper, ARENA_LEN};
use crate::shared::Shared;

/// How long a worker sleeps without events: for ever (-1). Shutdown and network changes come
/// through the waker, and no chore runs on a worker, so nothing needs a periodic wake-up.
const IDLE_WAIT_MS: i32 = -1;

/// Epoll token of the worker's waker.
const TOKEN_WAKER: u64 = 0;
/// Epoll token of the worker's listening socket.
const TOKEN_SOCKET: u64 = 1;
/// Epoll tokens of TAP queues start here: `TOKEN_TAP + (vni << 16 | queue)`.
const TOKEN_TAP: u64 = 2;

/// The epoll token of queue `queue` of network `vni`.
pub(crate) fn tap_token(vni: Vni, queue: usize) -> u64 {
    TOKEN_TAP + ((u64::from(vni.get()) << 16) | (queue as u64 & 0xffff))
}

/// The network and queue of a TAP token.
fn tap_of_token(token: u64) -> Option<(Vni, usize)> {
    let t = token.checked_sub(TOKEN_TAP)?;
    let vni = Vni::new(u32::try_from(t >> 16).ok()?)?;
    Some((vni, (t & 0xffff) as usize))
}

/// Registers a worker's own descriptors (waker and socket) with its epoll.
pub(crate) fn register_worker(ep: &Epoll, waker: &Waker, sock: &UnderlaySocket) -> io::Result<()> {
    ep.add(waker.as_raw_fd(), TOKEN_WAKER)?;
    ep.add(sock.as_raw_fd(), TOKEN_SOCKET)
}

/// A running worker thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Worker {
    shared: Arc<Shared>,
    index: usize,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts worker `index` over `shared`.
    pub(crate) fn spawn(shared: &Arc<Shared>, index: usize) -> Result<Worker, DataplaneError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("ovnet-worker-{index}"))
            .spawn(move || run(&s, index, &st))
            .map_err(|e| DataplaneError::Io("spawning a worker thread", e))?;
        Ok(Worker {
            shared: shared.clone(),
            index,
            stop,
            handle: Some(handle),
        })
    }

    /// Tells the thread to stop, without waiting: it leaves a send that waits for room at
    /// once, and its loop after the current pass.
    pub(crate) fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.shared.workers[self.index].waker.wake();
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&mut self) {
        self.signal_stop();
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                log::error!("a data-plane worker thread panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs worker `index` until `stop` is set.
fn run(s: &Shared, index: usize, stop: &AtomicBool) {
    let w = &s.workers[index];
    if let Some(slice) = s.slice {
        match ovnet_sys::sched::set_own_slice(slice) {
            Ok(true) => {}
            Ok(false) => log::info!("data-plane worker {index} keeps its real-time or idle policy"),
            Err(e) => log::info!("data-plane worker {index} runs with the default time slice: {e}"),
        }
    }
    let mut d = Decapper::new(index, s);
    let mut e = Encapper::new(index, s, stop);
    let mut rx_buf = PageBuf::new(BUF_LEN);
    let mut arena = PageBuf::new(ARENA_LEN);
    let mut tokens = [0u64; 64];
    let mut timeout = IDLE_WAIT_MS;
    let mut poll = PollWindow::new(s.poll, Instant::now());
    let mut load = LoadMeter::new(Instant::now());
    loop {
        // Between passes the worker holds no network: acknowledging the generation here is
        // what lets `remove_network` know the TAPs it dropped are no longer in use.
        w.seen
            .store(s.generation.load(Ordering::Acquire), Ordering::Release);
        let n = match w.epoll.wait(&mut tokens, timeout) {
            Ok(n) => n,
            Err(err) => {
                log::error!("epoll_wait failed in data-plane worker {index}: {err}");
                std::thread::sleep(Duration::from_millis(10));
                0
            }
        };
        if stop.load(Ordering::Acquire) {
            break;
        }
        // Only a pass with events reads the clocks: it starts the busy time and the poll
        // window.
        let woke = (n > 0).then(Instant::now);
        if let Some(t) = woke {
            poll.event(t);
        }
        let now = s.clock.now_ms();
        let mut more = false;
        for &token in &tokens[..n] {
            match token {
                TOKEN_WAKER => w.waker.clear(),
                TOKEN_SOCKET => more |= d.receive(&w.socket, &mut rx_buf, now),
                t => {
                    let Some((vni, queue)) = tap_of_token(t) else {
                        continue;
                    };
                    let networks = s.networks.load();
                    let Some(tap) = networks.get(&vni).and_then(|n| n.queues.get(queue)) else {
                        // Removed while the event was pending.
                        continue;
                    };
                    let tap = tap.clone();
                    drop(networks);
                    more |= e.drain(vni, &tap, &mut arena, now);
                }
            }
        }
        if let Some(t) = woke {
            if let Some(per_mille) = load.busy(t, Instant::now()) {
                s.tx.flows.publish_load(index, now, per_mille);
            }
        }
        // Level-triggered epoll: whatever a bounded batch left behind is reported again at
        // once. Idle, poll until the window since the last event closes, then sleep.
        timeout = if more {
            0
        } else if poll.idle(Instant::now()) {
            std::thread::yield_now();
            0
        } else {
            IDLE_WAIT_MS
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_tokens_round_trip_and_never_collide_with_the_fixed_ones() {
        for (v, q) in [(1u32, 0usize), (42, 3), (0xff_ffff, 0xffff)] {
            let vni = Vni::new(v).unwrap();
            let t = tap_token(vni, q);
            assert!(t >= TOKEN_TAP);
            assert_eq!(tap_of_token(t), Some((vni, q)));
        }
        assert_eq!(tap_of_token(TOKEN_WAKER), None);
        assert_eq!(tap_of_token(TOKEN_SOCKET), None);
    }
}
