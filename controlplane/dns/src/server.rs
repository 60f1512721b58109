//! One running resolver: a UDP socket and a TCP listener on one address (a network's gateway,
//! port 53), bound with `IP_FREEBIND` so they can be opened before the address is on the
//! bridge, and the Tokio tasks that serve them. [`Resolver`] is the handle: swap the zone or
//! the upstreams, read the counters, stop.
//!
//! Local answers are computed inline in the receive loop (they cost a lookup and an encode);
//! forwards run as tasks, at most [`Config::max_forwards`] at once, owned by the loop so that
//! stopping ends them too and releases every socket before [`Resolver::stop`] returns.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::counters::{Counters, DropReason, Snapshot};
use crate::decide::{decide, Decision, Reply, Transport, MAX_QUERY_LEN};
use crate::forward::{forward, Timeouts};
use crate::upstream::{without_self, DNS_PORT};
use crate::zone::Zone;
use crate::{tcp, Error};

/// Per-upstream timeout: glibc's stub waits 5 s for an answer (`RES_TIMEOUT`), so two upstreams
/// get a turn before the client gives up on its first try.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole forward, all upstreams included: under glibc's 5 s, so the client gets our
/// SERVFAIL rather than its own timeout.
pub const DEFAULT_FORWARD_DEADLINE: Duration = Duration::from_millis(4500);
/// Forwards in flight per resolver; each holds a socket and a 4 KiB buffer (about 1 MiB for all).
/// A stub resolver has one or two queries out at a time; 256 covers a busy network's containers.
pub const DEFAULT_MAX_FORWARDS: usize = 256;
/// Concurrent TCP connections per resolver. Stubs use TCP only after a truncated answer, and close
/// the connection after it; 64 leaves room for bursts while bounding memory (4 KiB each).
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 64;
/// How long a TCP connection may stay silent (also the bound on reading one message and writing
/// one answer). RFC 7766 section 6.2.3 asks for idle timeouts "on the order of seconds".
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `recv`/`accept` (out of file descriptors, say), so the loop does not spin.
pub(crate) const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// Listen backlog of the TCP socket.
const LISTEN_BACKLOG: i32 = 128;
/// Attempts at finding a port free for both UDP and TCP when the configured port is 0.
const EPHEMERAL_ATTEMPTS: usize = 16;

/// How one resolver serves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address and port to serve on: the network's gateway address, port 53. Port 0 picks a free
    /// port (the same for UDP and TCP), for tests.
    pub listen: SocketAddr,
    /// Upstream resolvers, asked in order (the listen address itself is skipped).
    pub upstreams: Vec<SocketAddr>,
    /// Time for one upstream before the next is asked.
    pub upstream_timeout: Duration,
    /// Time for a whole forward before SERVFAIL.
    pub forward_deadline: Duration,
    /// Forwards in flight at once; queries beyond are dropped and counted.
    pub max_forwards: usize,
    /// Concurrent TCP connections; connections beyond are closed at once and counted.
    pub max_tcp_connections: usize,
    /// TCP idle timeout.
    pub tcp_idle_timeout: Duration,
}

impl Config {
    /// The defaults, serving on `ip` port 53 and forwarding to `upstreams`.
    pub fn new(ip: std::net::IpAddr, upstreams: Vec<SocketAddr>) -> Config {
        Config {
            listen: SocketAddr::new(ip, DNS_PORT),
            upstreams,
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            forward_deadline: DEFAULT_FORWARD_DEADLINE,
            max_forwards: DEFAULT_MAX_FORWARDS,
            max_tcp_connections: DEFAULT_MAX_TCP_CONNECTIONS,
            tcp_idle_timeout: DEFAULT_TCP_IDLE_TIMEOUT,
        }
    }
}

/// What the serving tasks share with the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub zone: ArcSwap<Zone>,
    pub upstreams: ArcSwap<Vec<SocketAddr>>,
    pub counters: Counters,
    pub forwards: Arc<Semaphore>,
    pub timeouts: Timeouts,
    pub max_tcp_connections: usize,
    pub tcp_idle_timeout: Duration,
}

impl Shared {
    /// Forwards `fwd` to the current upstreams.
    pub async fn forward(&self, fwd: &crate::Forward) -> Option<Reply> {
        let upstreams = self.upstreams.load_full();
        forward(fwd, &upstreams, self.timeouts, &self.counters).await
    }
}

/// A running resolver for one network. Dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct Resolver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Resolver {
    /// Binds `config.listen` over UDP and TCP and starts serving `zone` on the current Tokio
    /// runtime. Fails if called outside a runtime or if the address cannot be bound (port in
    /// use, no permission for port 53).
    pub fn start(config: Config, zone: Zone) -> Result<Resolver, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let _entered = runtime.enter();
        let (udp, tcp) = bind_pair(config.listen)?;
        let addr = udp
            .local_addr()
            .map_err(|e| bind_error(config.listen, "UDP", e))?;
        let udp = UdpSocket::from_std(udp).map_err(|e| bind_error(addr, "UDP", e))?;
        let tcp = TcpListener::from_std(tcp).map_err(|e| bind_error(addr, "TCP", e))?;
        let shared = Arc::new(Shared {
            zone: ArcSwap::from_pointee(zone),
            upstreams: ArcSwap::from_pointee(without_self(&config.upstreams, addr)),
            counters: Counters::default(),
            forwards: Arc::new(Semaphore::new(config.max_forwards)),
            timeouts: Timeouts {
                per_upstream: config.upstream_timeout,
                deadline: config.forward_deadline,
            },
            max_tcp_connections: config.max_tcp_connections,
            tcp_idle_timeout: config.tcp_idle_timeout,
        });
        let (stop, stopped) = watch::channel(false);
        let tasks = vec![
            runtime.spawn(serve_udp(shared.clone(), Arc::new(udp), stopped.clone())),
            runtime.spawn(tcp::serve(shared.clone(), tcp, stopped)),
        ];
        Ok(Resolver {
            shared,
            addr,
            stop,
            tasks,
        })
    }

    /// The address served (with the actual port when the configured one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the zone; the next query sees the new one.
    pub fn update(&self, zone: Zone) {
        self.shared.zone.store(Arc::new(zone));
    }

    /// The zone being served.
    pub fn zone(&self) -> Arc<Zone> {
        self.shared.zone.load_full()
    }

    /// Replaces the upstreams (the listen address is skipped); forwards already under way finish
    /// with the old ones.
    pub fn set_upstreams(&self, upstreams: &[SocketAddr]) {
        let ups = without_self(upstreams, self.addr);
        self.shared.upstreams.store(Arc::new(ups));
    }

    /// The upstreams in use.
    pub fn upstreams(&self) -> Vec<SocketAddr> {
        self.shared.upstreams.load().as_ref().clone()
    }

    /// The counters now.
    pub fn counters(&self) -> Snapshot {
        self.shared.counters.snapshot()
    }

    /// A handle that reads this resolver's counters without the resolver itself (for a reader
    /// that must not hold whatever owns the resolver).
    pub fn counter_reader(&self) -> CounterReader {
        CounterReader(self.shared.clone())
    }

    /// Stops serving: ends every task (forwards and TCP connections included) and returns once
    /// the sockets are closed, so the address can be bound again at once.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            if let Err(e) = task.await {
                if e.is_panic() {
                    log::error!(
                        "DNS resolver on {}: a serving task panicked: {e}",
                        self.addr
                    );
                }
            }
        }
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn bind_error(addr: SocketAddr, what: &'static str, source: io::Error) -> Error {
    Error::Bind { addr, what, source }
}

/// A non-blocking socket of type `ty` bound to `addr` with `IP_FREEBIND` (TCP: listening).
fn bind(addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, None)?;
    match addr {
        SocketAddr::V4(_) => s.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            s.set_only_v6(true)?;
            s.set_freebind_v6(true)?;
        }
    }
    s.set_nonblocking(true)?;
    if ty == Type::STREAM {
        // Rebinding right after a stop must not wait out TIME_WAIT connections.
        s.set_reuse_address(true)?;
    }
    s.bind(&addr.into())?;
    if ty == Type::STREAM {
        s.listen(LISTEN_BACKLOG)?;
    }
    Ok(s)
}

/// The UDP socket and the TCP listener, on the same address and port.
fn bind_pair(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), Error> {
    let attempts = if addr.port() == 0 {
        EPHEMERAL_ATTEMPTS
    } else {
        1
    };
    let mut last = None;
    for _ in 0..attempts {
        let udp = bind(addr, Type::DGRAM).map_err(|e| bind_error(addr, "UDP", e))?;
        let port = udp
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(addr.port(), |a| a.port());
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match bind(tcp_addr, Type::STREAM) {
            Ok(tcp) => return Ok((udp.into(), tcp.into())),
            Err(e) => last = Some(bind_error(tcp_addr, "TCP", e)),
        }
    }
    Err(last.unwrap_or_else(|| bind_error(addr, "TCP", io::Error::other("no attempt made"))))
}

async fn send_udp(sock: &UdpSocket, reply: &Reply, peer: SocketAddr, counters: &Counters) {
    match sock.send_to(&reply.bytes, peer).await {
        Ok(_) => {
            counters.answer(reply.rcode);
            if reply.truncated {
                counters.truncated();
            }
        }
        Err(e) => {
            counters.drop(DropReason::Send);
            log::debug!("DNS reply to {peer}: {e}");
        }
    }
}

async fn serve_udp(shared: Arc<Shared>, sock: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    // One byte more than the largest query accepted, so an oversized datagram shows as such.
    let mut buf = vec![0u8; MAX_QUERY_LEN + 1];
    let mut forwards = JoinSet::new();
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("DNS UDP receive: {e}");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        let counters = &shared.counters;
        counters.query(false);
        let decision = decide(&buf[..n], &shared.zone.load(), Transport::Udp);
        match decision {
            Decision::Answer(reply) => send_udp(&sock, &reply, peer, counters).await,
            Decision::Drop(reason) => counters.drop(reason),
            Decision::Forward(fwd) => match shared.forwards.clone().try_acquire_owned() {
                Ok(permit) => {
                    let (shared, sock) = (shared.clone(), sock.clone());
                    forwards.spawn(async move {
                        let _permit = permit;
                        match shared.forward(&fwd).await {
                            Some(reply) => send_udp(&sock, &reply, peer, &shared.counters).await,
                            None => shared.counters.drop(DropReason::Encode),
                        }
                    });
                }
                Err(_) => counters.drop(DropReason::ForwardLimit),
            },
        }
    }
    forwards.shutdown().await;
}

/// Reads one resolver's counters ([`Resolver::counter_reader`]); cheap to clone, and valid
/// after the resolver stopped (its counters then stay as they were).
#[derive(Clone)]
pub struct CounterReader(Arc<Shared>);

impl CounterReader {
    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        self.0.counters.snapshot()
    }
}

impl std::fmt::Debug for CounterReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CounterReader").finish()
    }
}
