//! Liveness of the other ovnet VTEPs as the data plane sees it: a heartbeat
//! ([`ovnet_wire::vxlan::HEARTBEAT`]) to each of them every [`HEARTBEAT_INTERVAL`], a goodbye
//! when the data plane stops cleanly, and when each was last heard from (its last heartbeat,
//! or its last datagram admitted into a network, which [`crate::peers`] records).
//!
//! The control plane names the peers ([`Dataplane::set_peers`]: ovnet's own nodes, never
//! external VTEPs) and reads when each was heard ([`Dataplane::heard`]); what being heard
//! means for a node (alive although its etcd lease expired) is the control plane's decision.
//! Only the peers named are tracked here: heartbeats from any other address are counted and
//! ignored, so the table's size is the control plane's to bound. Heartbeats leave from a
//! socket of their own, so nothing they provoke (an ICMP error from a host without an agent)
//! reaches the workers.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use ovnet_wire::vxlan::{self, GOODBYE, HEARTBEAT};

use crate::dataplane::Dataplane;
use crate::fdb::FxHashMap;

/// How often each peer gets a heartbeat: a peer missed for three of them is not heard any
/// more, which is still well inside an etcd lease's TTL (10 s by default).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// One peer: its VTEP and when it was last heard.
#[derive(Debug)]
struct Peer {
    vtep: SocketAddr,
    /// When its last heartbeat came: milliseconds of the data plane's clock, plus one; 0:
    /// never, or since its goodbye.
    last: AtomicU64,
    /// When its goodbye came (milliseconds; 0: never): traffic admitted before it does not
    /// count.
    gone: AtomicU64,
}

/// The named peers and their counters, shared by the workers and the heartbeat thread.
#[derive(Debug, Default)]
pub(crate) struct Heard {
    table: ArcSwap<FxHashMap<IpAddr, Arc<Peer>>>,
    heartbeats_in: AtomicU64,
    heartbeats_stray: AtomicU64,
    heartbeats_out: AtomicU64,
    send_errors: AtomicU64,
}

/// A peer VTEP and how long ago it was last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHeard {
    /// The peer's VTEP, as given to [`Dataplane::set_peers`].
    pub vtep: SocketAddr,
    /// Time since it was last heard; `None`: never, since it was named.
    pub since: Option<Duration>,
}

/// The heartbeat counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatCounters {
    /// Heartbeats received from named peers.
    pub received: u64,
    /// Heartbeats received from addresses that are not named peers (ignored).
    pub stray: u64,
    /// Heartbeats sent.
    pub sent: u64,
    /// Heartbeats the socket refused to send.
    pub send_errors: u64,
}

/// An IPv4-mapped IPv6 source (from a dual-stack socket) compared as the IPv4 it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Heard {
    /// `ip` was heard at `now_ms`. Nothing for an address that is not a named peer.
    fn heard(&self, ip: IpAddr, now_ms: u64) -> bool {
        match self.table.load().get(&canonical(ip)) {
            Some(p) => {
                // One store per millisecond at most, whatever the packet rate.
                if p.last.load(Relaxed) != now_ms + 1 {
                    p.last.store(now_ms + 1, Relaxed);
                }
                true
            }
            None => false,
        }
    }

    /// Takes `datagram` from `from` if it is a heartbeat or a goodbye (whether it was).
    #[inline]
    pub(crate) fn signal(&self, datagram: &[u8], from: SocketAddr, now_ms: u64) -> bool {
        if datagram.first() != Some(&0) {
            return false;
        }
        if vxlan::is_heartbeat(datagram) {
            self.heartbeat(from, now_ms);
            true
        } else if vxlan::is_goodbye(datagram) {
            self.goodbye(from, now_ms);
            true
        } else {
            false
        }
    }

    /// A heartbeat came from `from` at `now_ms`.
    fn heartbeat(&self, from: SocketAddr, now_ms: u64) {
        if self.heard(from.ip(), now_ms) {
            self.heartbeats_in.fetch_add(1, Relaxed);
        } else {
            self.heartbeats_stray.fetch_add(1, Relaxed);
        }
    }

    /// `from` said goodbye at `now_ms`: it is not heard any more.
    fn goodbye(&self, from: SocketAddr, now_ms: u64) {
        if let Some(p) = self.table.load().get(&canonical(from.ip())) {
            p.last.store(0, Relaxed);
            p.gone.store(now_ms.max(1), Relaxed);
        }
    }

    /// Names the peers; those named before keep when they were last heard.
    fn set(&self, vteps: &[SocketAddr]) {
        let old = self.table.load();
        let mut next = FxHashMap::default();
        for &vtep in vteps {
            let ip = canonical(vtep.ip());
            let peer = match old.get(&ip) {
                Some(p) if p.vtep == vtep => p.clone(),
                Some(p) => Arc::new(Peer {
                    vtep,
                    last: AtomicU64::new(p.last.load(Relaxed)),
                    gone: AtomicU64::new(p.gone.load(Relaxed)),
                }),
                None => Arc::new(Peer {
                    vtep,
                    last: AtomicU64::new(0),
                    gone: AtomicU64::new(0),
                }),
            };
            next.insert(ip, peer);
        }
        self.table.store(Arc::new(next));
    }

    /// The named peers with how long ago each was heard at `now_ms`; `traffic` gives when
    /// an address's datagrams were last admitted (0: never), which counts as heard too.
    fn snapshot(&self, now_ms: u64, traffic: impl Fn(IpAddr) -> u64) -> Vec<PeerHeard> {
        let mut out: Vec<PeerHeard> = self
            .table
            .load()
            .iter()
            .map(|(ip, p)| {
                let beat = p.last.load(Relaxed).checked_sub(1);
                let rx = Some(traffic(*ip)).filter(|&t| t > 0);
                // A goodbye forgets the heartbeats, not traffic that came after it.
                let last = match (beat, rx, p.gone.load(Relaxed)) {
                    (b, Some(r), gone) if r > gone => Some(b.map_or(r, |b| b.max(r))),
                    (b, _, _) => b,
                };
                PeerHeard {
                    vtep: p.vtep,
                    since: last.map(|t| Duration::from_millis(now_ms.saturating_sub(t))),
                }
            })
            .collect();
        out.sort_by_key(|p| p.vtep);
        out
    }

    fn vteps(&self) -> Vec<SocketAddr> {
        self.table.load().values().map(|p| p.vtep).collect()
    }
}

/// The thread that sends the heartbeats. Dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Heartbeats {
    stop: Arc<(Mutex<bool>, std::sync::Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
    socket: Arc<UdpSocket>,
}

impl Heartbeats {
    /// Starts sending heartbeats from an address of `vtep`'s IP to every peer of `peers`.
    pub(crate) fn start(vtep: SocketAddr, peers: Arc<Heard>) -> io::Result<Heartbeats> {
        // Non-blocking: a full send buffer drops a heartbeat, it never holds the thread.
        let socket = UdpSocket::bind(SocketAddr::new(vtep.ip(), 0))?;
        socket.set_nonblocking(true)?;
        let socket = Arc::new(socket);
        let stop = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let st = stop.clone();
        let sock = socket.clone();
        let handle = std::thread::Builder::new()
            .name("ovnet-heartbeat".into())
            .spawn(move || {
                let warned = AtomicBool::new(false);
                loop {
                    for vtep in peers.vteps() {
                        match sock.send_to(&HEARTBEAT, vtep) {
                            Ok(_) => {
                                peers.heartbeats_out.fetch_add(1, Relaxed);
                            }
                            Err(e) => {
                                peers.send_errors.fetch_add(1, Relaxed);
                                if !warned.swap(true, Relaxed) {
                                    log::warn!("sending a heartbeat to {vtep}: {e}");
                                }
                            }
                        }
                    }
                    let (lock, cv) = &*st;
                    let stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                    let (stopped, _) = cv
                        .wait_timeout_while(stopped, HEARTBEAT_INTERVAL, |s| !*s)
                        .unwrap_or_else(|p| p.into_inner());
                    if *stopped {
                        return;
                    }
                }
            })?;
        Ok(Heartbeats {
            stop,
            handle: Mutex::new(Some(handle)),
            socket,
        })
    }

    /// Stops the heartbeats (waiting for the thread).
    fn stop(&self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Dataplane {
    /// Names the ovnet peers (their VTEPs): each gets a heartbeat every
    /// [`HEARTBEAT_INTERVAL`], and [`Dataplane::heard`] says when each was last heard.
    /// Peers named before keep their last-heard time.
    pub fn set_peers(&self, vteps: &[SocketAddr]) {
        self.shared.heard.set(vteps);
    }

    /// The peers named, by VTEP, with how long ago each was last heard (a heartbeat, or a
    /// datagram admitted into a network).
    pub fn heard(&self) -> Vec<PeerHeard> {
        let (traffic, _) = self.shared.peers.snapshot();
        let traffic: std::collections::HashMap<IpAddr, u64> =
            traffic.into_iter().map(|(ip, s)| (ip, s.last_rx)).collect();
        self.shared
            .heard
            .snapshot(self.shared.clock.now_ms(), |ip| {
                traffic.get(&ip).copied().unwrap_or(0)
            })
    }

    /// Leaving for good: stops the heartbeats and sends each peer a goodbye, so that it stops
    /// counting this host as heard at once (a host that dies instead is forgotten after its
    /// peers' window of a few heartbeats).
    pub fn farewell(&self) {
        self.heartbeats.stop();
        for vtep in self.shared.heard.vteps() {
            let _ = self.heartbeats.socket.send_to(&GOODBYE, vtep);
        }
    }

    /// The heartbeat counters.
    pub fn heartbeat_counters(&self) -> HeartbeatCounters {
        let p = &self.shared.heard;
        HeartbeatCounters {
            received: p.heartbeats_in.load(Relaxed),
            stray: p.heartbeats_stray.load(Relaxed),
            sent: p.heartbeats_out.load(Relaxed),
            send_errors: p.send_errors.load(Relaxed),
        }
    }
}

/// The peers' last-heard times by IP, for tests.
#[cfg(test)]
pub(crate) fn heard_map(
    p: &Heard,
    now_ms: u64,
) -> std::collections::HashMap<IpAddr, Option<Duration>> {
    p.snapshot(now_ms, |_| 0)
        .into_iter()
        .map(|h| (h.vtep.ip(), h.since))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_named_peers_are_heard_and_they_keep_their_time() {
        let p = Heard::default();
        p.set(&[sa("192.0.2.1:4789"), sa("192.0.2.2:4789")]);
        assert!(p.signal(&HEARTBEAT, sa("192.0.2.1:40000"), 1000));
        assert!(p.signal(&HEARTBEAT, sa("198.51.100.7:4789"), 1000));
        assert!(!p.signal(
            &vxlan::header(ovnet_wire::Vni::new(5).unwrap()),
            sa("192.0.2.1:1"),
            1000
        ));
        assert!(p.signal(&HEARTBEAT, sa("[::ffff:192.0.2.2]:4789"), 1500));
        assert!(!p.heard(sa("198.51.100.8:4789").ip(), 1500));
        let m = heard_map(&p, 2000);
        assert_eq!(m.len(), 2, "strangers are not tracked");
        assert_eq!(
            m[&sa("192.0.2.1:0").ip()],
            Some(Duration::from_millis(1000))
        );
        assert_eq!(m[&sa("192.0.2.2:0").ip()], Some(Duration::from_millis(500)));
        assert_eq!(p.heartbeats_in.load(Relaxed), 2);
        assert_eq!(p.heartbeats_stray.load(Relaxed), 1);
        // Renamed: 192.0.2.1 stays with its time, 192.0.2.2 goes, 192.0.2.3 is new.
        p.set(&[sa("192.0.2.1:4789"), sa("192.0.2.3:4789")]);
        let m = heard_map(&p, 2000);
        assert_eq!(
            m[&sa("192.0.2.1:0").ip()],
            Some(Duration::from_millis(1000))
        );
        assert_eq!(m[&sa("192.0.2.3:0").ip()], None);
        assert!(!m.contains_key(&sa("192.0.2.2:0").ip()));
        // A goodbye: not heard any more.
        assert!(p.signal(&GOODBYE, sa("192.0.2.1:4789"), 2000));
        assert_eq!(heard_map(&p, 2000)[&sa("192.0.2.1:0").ip()], None);
        // Traffic counts as heard, unless it came before the goodbye.
        let ip1 = sa("192.0.2.1:0").ip();
        let at = |t: u64| move |ip: IpAddr| if ip == ip1 { t } else { 0 };
        let heard = |t| {
            p.snapshot(2500, at(t))
                .into_iter()
                .find(|h| h.vtep.ip() == ip1)
                .unwrap()
                .since
        };
        assert_eq!(heard(1900), None);
        assert_eq!(heard(2400), Some(Duration::from_millis(100)));
    }
}
