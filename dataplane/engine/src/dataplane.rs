//! The running data plane: worker threads moving frames between TAPs and the underlay, and the
//! small typed interface the control plane drives it through.
//!
//! Threads: a fixed set of workers (by default one per core), each owning one listening
//! socket on the VXLAN port (`SO_REUSEPORT`) and one queue of every network's multi-queue TAP,
//! carrying traffic both ways (see [`crate::worker`]). Sends go through a pool of underlay
//! sockets whose ports are the outer source ports; with several workers a flow's socket is
//! the one that steers it to the peer worker it was given ([`crate::steer`]), otherwise one
//! picked by inner-flow hash. TCP super-frames leave whole through an uplink TAP where the
//! kernel allows it ([`ovnet_sys::uplink`]). Each worker owns its buffers; none allocates or
//! locks per packet. They sleep in `epoll` beside an eventfd, so stopping them never waits
//! for traffic.
//!
//! The control plane's seam is four calls: [`Dataplane::add_network`],
//! [`Dataplane::update_network`] (a whole [`NetworkTable`], swapped in atomically),
//! [`Dataplane::remove_network`] and the counter reads.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ovnet_sys::{Epoll, Tap, UdpConfig, UnderlaySocket, Uplink, Waker};
use ovnet_wire::{ethernet, flow, MacAddr, Vni};

use crate::counters::{CounterSnapshot, Counters};
use crate::fdb::{FxHashMap, LearnedTable, NetworkTable, Table, DEFAULT_AGEING};
use crate::peers::{Heartbeats, Peers};
use crate::steer::FlowSteering;
use crate::worker::{register_worker, tap_token, worker_loop};

/// Room for one 802.1Q tag on top of the Ethernet header, as the kernel's bridge allows.
const L2_OVERHEAD: usize = ethernet::HEADER_LEN + 4;

/// How to start a data plane.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// The local VTEP: the underlay address and VXLAN port to listen on.
    pub vtep: SocketAddr,
    /// Send sockets, each with its own ephemeral source port, picked by inner-flow hash.
    /// Zero sends from the listening socket (fixed source port).
    pub tx_sockets: usize,
    /// Ageing of MACs learned from traffic.
    pub ageing: Duration,
    /// Send segmented super-frames with UDP GSO (one `sendmsg` per train) where the kernel
    /// accepts it; falls back to one send per datagram if it refuses.
    pub gso: bool,
    /// Receive with UDP GRO (many datagrams per `recvmsg`).
    pub gro: bool,
    /// With `gso`, send TCP super-frames to IPv4 VTEPs whole through an uplink TAP, for the
    /// kernel to segment where the underlay needs it (UDP tunnel GSO, Linux 6.17+), instead of
    /// segmenting them here. Falls back to segmenting where the kernel or the host's settings
    /// refuse it (see [`ovnet_sys::uplink`]).
    pub tunnel_gso: bool,
    /// Worker threads, each with its own listening socket on the VXLAN port
    /// (`SO_REUSEPORT`) and one queue of every network's TAP (give networks as many queues).
    /// More than one lets different flows use different cores.
    pub workers: usize,
    /// The longest a worker keeps polling after its last packet before it sleeps, yielding
    /// the CPU between polls. While traffic flows this saves the sleep and the wake-up per
    /// burst (a cross-CPU wake-up costs several microseconds on a virtual machine); the window
    /// shrinks when traffic is too sparse for polling to pay, and without traffic a worker
    /// sleeps. Zero sleeps at once.
    pub poll: Duration,
    /// The time slice each worker asks the scheduler for ([`ovnet_sys::sched`]); `None` keeps
    /// the kernel's default (0.7 to 3 ms).
    pub slice: Option<Duration>,
}

impl DataplaneConfig {
    /// Defaults: 8 send sockets, 300 s ageing, UDP GSO, GRO and tunnel GSO on, one worker,
    /// polling for [`DEFAULT_POLL`], a slice of [`DEFAULT_SLICE`].
    pub fn new(vtep: SocketAddr) -> DataplaneConfig {
        DataplaneConfig {
            vtep,
            tx_sockets: 8,
            ageing: DEFAULT_AGEING,
            gso: true,
            gro: true,
            tunnel_gso: true,
            workers: 1,
            poll: DEFAULT_POLL,
            slice: Some(DEFAULT_SLICE),
        }
    }
}

/// The default longest poll after a worker's last packet: longer than the gap between a TCP
/// sender's bursts under load (measured best of 20, 50, 100 and 200 µs on 2 cores).
pub const DEFAULT_POLL: Duration = Duration::from_micros(100);

/// The default time slice of a worker: the kernel's shortest. Measured on 2 cores with one
/// worker per agent, interleaved runs: TCP 2 streams +3 to 4 % under BBR, +5 % under CUBIC
/// with two workers, one stream the same under BBR and 3 to 4 % slower under CUBIC; 300 µs
/// and 1 ms were 1 to 5 % slower for both BBR figures.
pub const DEFAULT_SLICE: Duration = Duration::from_micros(100);

/// What the control plane did wrong, or what the OS refused.
#[derive(Debug)]
pub enum DataplaneError {
    /// A socket or thread could not be set up.
    Io(&'static str, io::Error),
    /// `add_network` for a VNI that is already there.
    NetworkExists(Vni),
    /// An operation on a VNI that is not there.
    NoSuchNetwork(Vni),
}

impl std::fmt::Display for DataplaneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataplaneError::Io(what, e) => write!(f, "{what}: {e}"),
            DataplaneError::NetworkExists(v) => {
                write!(f, "VNI {v} is already served by this data plane")
            }
            DataplaneError::NoSuchNetwork(v) => {
                write!(f, "VNI {v} is not served by this data plane")
            }
        }
    }
}

impl std::error::Error for DataplaneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataplaneError::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

/// One network as the packet path sees it: immutable, replaced whole on change.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) vni: Vni,
    pub(crate) table: Table,
    /// The TAP's queues: queue `j` is read by worker `j % workers`; worker `i` writes to
    /// queue `i % queues.len()`.
    pub(crate) queues: Vec<Arc<Tap>>,
    pub(crate) counters: Arc<Counters>,
    /// Largest IP packet (the network's MTU).
    pub(crate) mtu: usize,
    /// Largest frame: the MTU plus Ethernet and one VLAN tag.
    pub(crate) max_frame: usize,
}

pub(crate) type Networks = FxHashMap<Vni, Arc<Network>>;

/// What one worker sleeps on, shared so that the control plane can register TAP queues
/// and wake it.
#[derive(Debug)]
pub(crate) struct WorkerSlot {
    pub(crate) epoll: Epoll,
    pub(crate) waker: Waker,
    /// The worker's listening socket on the VXLAN port (`SO_REUSEPORT`): the kernel spreads
    /// peers' flows over the workers' sockets by their outer source ports.
    pub(crate) socket: UnderlaySocket,
    /// The last [`Shared::generation`] the worker saw between two passes.
    pub(crate) seen: AtomicU64,
}

/// Sets up flow steering for `workers` workers: the kernel gives a datagram to the listening
/// socket of `source port % workers` (see [`crate::steer`]), and `tx` gets more send sockets
/// until each residue has one. Returns the send sockets of each residue, or `None` (flows
/// spread by hash, as without steering) if the kernel refuses the program or no ports can be
/// found; why is logged.
fn steering(
    listener: &UnderlaySocket,
    tx: &mut Vec<UnderlaySocket>,
    workers: usize,
    vtep: SocketAddr,
) -> Option<Vec<Vec<usize>>> {
    if let Err(e) = listener.steer_by_source_port(workers as u32) {
        log::info!("flows spread over workers by hash: steering by source port failed ({e})");
        return None;
    }
    let mut by_worker = vec![Vec::new(); workers];
    let mut i = 0;
    // Ephemeral ports are random: a few more binds cover every residue.
    while by_worker.iter().any(Vec::is_empty) && i < tx.len() + 16 * workers {
        if i == tx.len() {
            match UnderlaySocket::bind(&UdpConfig::new(SocketAddr::new(vtep.ip(), 0))) {
                Ok(s) => tx.push(s),
                Err(e) => {
                    log::info!("flows spread over workers by hash: binding a send socket: {e}");
                    break;
                }
            }
        }
        if let Ok(a) = tx[i].local_addr() {
            by_worker[usize::from(a.port()) % workers].push(i);
        }
        i += 1;
    }
    // The sockets not looked at yet (all residues were covered before them).
    for (j, s) in tx.iter().enumerate().skip(i) {
        if let Ok(a) = s.local_addr() {
            by_worker[usize::from(a.port()) % workers].push(j);
        }
    }
    if by_worker.iter().any(Vec::is_empty) {
        return None;
    }
    Some(by_worker)
}

/// What the workers are doing and the offloads in use, for operators ([`Dataplane::report`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneReport {
    /// Each worker's share of time spent moving frames, per mille, smoothed over the last few
    /// 50 ms windows; 0 for a worker that sleeps.
    pub busy_per_mille: Vec<u32>,
    /// Whether this host steers flows to the peers' workers by load (several workers, and the
    /// kernel took the steering program).
    pub steering: bool,
    /// Flows this host moved off a saturated worker since it started.
    pub flows_moved: u64,
    /// How long an idle worker polls at most before it sleeps.
    pub poll: Duration,
    /// The time slice the workers asked for; `None`: the kernel's default.
    pub slice: Option<Duration>,
    /// Whether frame trains leave with UDP GSO ([`Dataplane::udp_gso`]).
    pub udp_gso: bool,
    /// Whether TCP super-frames leave whole through the uplink ([`Dataplane::tunnel_gso`]).
    pub tunnel_gso: bool,
}

/// The uplink TAP through which super-frames leave whole (UDP tunnel GSO).
#[derive(Debug)]
pub(crate) struct UplinkPath {
    /// Worker `i` writes to queue `i % queues.len()`.
    pub(crate) queues: Vec<Tap>,
    /// The uplink's MAC, the destination of every frame written to it.
    pub(crate) mac: MacAddr,
    /// The local VTEP address, the outer source.
    pub(crate) src: Ipv4Addr,
    /// Cleared for good when the kernel refuses a frame or the host does not forward them.
    pub(crate) on: AtomicBool,
    /// Super-frames written, checked against what the host forwarded.
    pub(crate) written: AtomicU64,
}

impl UplinkPath {
    /// Opens the uplink for a data plane bound to `vtep` with `workers` workers, if the VTEP
    /// is a routable IPv4 address and the kernel and host allow it; why not is logged.
    fn open(vtep: SocketAddr, workers: usize) -> Option<UplinkPath> {
        let SocketAddr::V4(v4) = vtep else {
            log::info!("UDP tunnel GSO is used with IPv4 underlays only; segmenting super-frames");
            return None;
        };
        let src = *v4.ip();
        if src.is_loopback() || src.is_unspecified() {
            return None;
        }
        let name = format!("ovu{}", vtep.port());
        match Uplink::open(&name, workers) {
            Ok(up) => {
                log::info!("sending TCP super-frames whole through uplink {name} (UDP tunnel GSO)");
                Some(UplinkPath {
                    queues: up.queues,
                    mac: MacAddr(up.mac),
                    src,
                    on: AtomicBool::new(true),
                    written: AtomicU64::new(0),
                })
            }
            Err(e) => {
                log::info!("not using UDP tunnel GSO ({e}); segmenting super-frames");
                None
            }
        }
    }
}

/// What every worker thread shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) networks: ArcSwap<Networks>,
    /// Bumped after every change of `networks`.
    pub(crate) generation: AtomicU64,
    pub(crate) learned: LearnedTable,
    pub(crate) global: Counters,
    pub(crate) tx: Vec<UnderlaySocket>,
    /// The local port of each of `tx` (of the listening socket if there are none).
    pub(crate) tx_ports: Vec<u16>,
    /// The workers' loads and, where this VTEP decides, which peer worker each flow goes to.
    pub(crate) flows: FlowSteering,
    /// With several workers and steering on: the send sockets whose port sends a datagram to
    /// each peer worker (`port % workers`), by worker.
    pub(crate) steer: Option<Vec<Vec<usize>>>,
    pub(crate) workers: Vec<WorkerSlot>,
    /// Where super-frames leave whole, if the kernel and host allow it.
    pub(crate) uplink: Option<UplinkPath>,
    /// UDP GSO is used until a send says the kernel cannot do it.
    pub(crate) gso: AtomicBool,
    /// Received UDP datagrams are coalesced into `GSO_UDP_L4` TAP writes until a TAP refuses
    /// one (kernels before 6.2).
    pub(crate) udp_coalesce: AtomicBool,
    /// How long a worker polls after its last packet before it sleeps.
    pub(crate) poll: Duration,
    /// The time slice workers ask for; `None`: the kernel's default.
    pub(crate) slice: Option<Duration>,
    /// The other ovnet VTEPs and when each was last heard ([`crate::peers`]).
    pub(crate) peers: Arc<Peers>,
}

impl Shared {
    /// The outer source port of the frame's flow: that of its send socket.
    pub(crate) fn tx_port(&self, frame: &[u8], worker: usize, dst: &SocketAddr) -> u16 {
        self.tx_ports[self
            .tx_index(frame, worker, dst)
            .min(self.tx_ports.len() - 1)]
    }

    /// Index of the send socket of the frame's flow (see [`Shared::tx_at`]), which local
    /// `worker` sends to `dst`.
    pub(crate) fn tx_index(&self, frame: &[u8], worker: usize, dst: &SocketAddr) -> usize {
        if self.tx.is_empty() {
            return 0;
        }
        let hash = flow::flow_hash(frame);
        let pick = |n: usize| ((u64::from(hash) * n as u64) >> 32) as usize;
        match &self.steer {
            Some(by_worker) => {
                let w = self
                    .flows
                    .peer_worker(hash, worker, dst, self.learned.now_ms());
                let socks = &by_worker[w as usize];
                socks[pick(socks.len())]
            }
            None => pick(self.tx.len()),
        }
    }

    /// Send socket `i`: its ephemeral port is the outer source port of the flows hashed to it.
    pub(crate) fn tx_at(&self, i: usize) -> &UnderlaySocket {
        self.tx.get(i).unwrap_or(&self.workers[0].socket)
    }

    /// The send socket of the frame's flow.
    pub(crate) fn tx_socket(
        &self,
        frame: &[u8],
        worker: usize,
        dst: &SocketAddr,
    ) -> &UnderlaySocket {
        self.tx_at(self.tx_index(frame, worker, dst))
    }
}

#[derive(Debug)]
struct Worker {
    shared: Arc<Shared>,
    index: usize,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(shared: &Arc<Shared>, index: usize) -> Result<Worker, DataplaneError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (shared.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name(format!("ovnet-worker-{index}"))
            .spawn(move || worker_loop(&s, index, &st))
            .map_err(|e| DataplaneError::Io("spawning a worker thread", e))?;
        Ok(Worker {
            shared: shared.clone(),
            index,
            stop,
            handle: Some(handle),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.shared.workers[self.index].waker.wake();
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

/// A running data plane. Dropping it stops every thread.
#[derive(Debug)]
pub struct Dataplane {
    pub(crate) shared: Arc<Shared>,
    /// Sends the heartbeats to the peers.
    pub(crate) heartbeats: Heartbeats,
    /// Serialises table writers (the control plane); readers never take it.
    writer: Mutex<()>,
    workers: Vec<Worker>,
}

/// How long `remove_network` waits for the workers to let go of a network's TAP.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl Dataplane {
    /// Binds the underlay sockets in the calling thread's network namespace and starts the
    /// workers. Networks are added with [`Dataplane::add_network`].
    pub fn start(cfg: &DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        let count = cfg.workers.max(1);
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            let mut c = UdpConfig::new(cfg.vtep);
            c.reuse_port = count > 1;
            let socket = UnderlaySocket::bind(&c)
                .map_err(|e| DataplaneError::Io("binding the VXLAN listening socket", e))?;
            let epoll =
                Epoll::new().map_err(|e| DataplaneError::Io("creating a worker's epoll", e))?;
            let waker = Waker::new().map_err(|e| DataplaneError::Io("creating an eventfd", e))?;
            register_worker(&epoll, &waker, &socket)
                .map_err(|e| DataplaneError::Io("registering a worker's socket with epoll", e))?;
            slots.push(WorkerSlot {
                epoll,
                waker,
                socket,
                seen: AtomicU64::new(0),
            });
        }
        let mut tx = Vec::with_capacity(cfg.tx_sockets);
        for _ in 0..cfg.tx_sockets {
            let s = UnderlaySocket::bind(&UdpConfig::new(SocketAddr::new(cfg.vtep.ip(), 0)))
                .map_err(|e| DataplaneError::Io("binding a VXLAN send socket", e))?;
            tx.push(s);
        }
        let steer = if count > 1 && !tx.is_empty() {
            steering(&slots[0].socket, &mut tx, count, cfg.vtep)
        } else {
            None
        };
        let gso = cfg.gso && tx.first().unwrap_or(&slots[0].socket).probe_gso();
        let ports: io::Result<Vec<u16>> = if tx.is_empty() {
            vec![&slots[0].socket]
        } else {
            tx.iter().collect()
        }
        .into_iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect();
        let tx_ports =
            ports.map_err(|e| DataplaneError::Io("reading a send socket's address", e))?;
        let bound = slots[0]
            .socket
            .local_addr()
            .map_err(|e| DataplaneError::Io("reading the VXLAN socket's address", e))?;
        let uplink = if gso && cfg.tunnel_gso {
            UplinkPath::open(bound, count)
        } else {
            None
        };
        if cfg.gro {
            for w in &slots {
                if let Err(e) = w.socket.enable_gro() {
                    log::info!("UDP GRO unavailable ({e}); receiving one datagram per call");
                }
            }
        }
        let shared = Arc::new(Shared {
            networks: ArcSwap::from_pointee(FxHashMap::default()),
            generation: AtomicU64::new(0),
            learned: LearnedTable::new(cfg.ageing),
            global: Counters::default(),
            tx,
            tx_ports,
            flows: FlowSteering::new(count, cfg.vtep),
            steer,
            workers: slots,
            uplink,
            gso: AtomicBool::new(gso),
            udp_coalesce: AtomicBool::new(true),
            poll: cfg.poll,
            slice: cfg.slice,
            peers: Arc::new(Peers::default()),
        });
        let heartbeats = Heartbeats::start(bound, shared.peers.clone())
            .map_err(|e| DataplaneError::Io("binding the heartbeat socket", e))?;
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            // On failure the workers started so far are stopped by their Drop.
            workers.push(Worker::spawn(&shared, i)?);
        }
        Ok(Dataplane {
            shared,
            heartbeats,
            writer: Mutex::new(()),
            workers,
        })
    }

    /// The bound VTEP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.workers[0]
            .socket
            .local_addr()
            .expect("a bound socket has a local address")
    }

    /// Whether sends still use UDP GSO: false if it was configured off, or since the kernel
    /// refused it (the data plane then sends trains with `sendmmsg`).
    pub fn udp_gso(&self) -> bool {
        self.shared.gso.load(Ordering::Relaxed)
    }

    /// Whether TCP super-frames leave whole through the uplink (UDP tunnel GSO): false if it
    /// was configured off, could not be set up, or since the kernel refused a frame or the
    /// host stopped forwarding them.
    pub fn tunnel_gso(&self) -> bool {
        self.shared
            .uplink
            .as_ref()
            .is_some_and(|u| u.on.load(Ordering::Relaxed))
    }

    /// Each worker's load, flow steering, the poll window, the slice and the offloads in use.
    pub fn report(&self) -> DataplaneReport {
        let s = &self.shared;
        DataplaneReport {
            busy_per_mille: s.flows.loads(s.learned.now_ms()),
            steering: s.steer.is_some(),
            flows_moved: s.flows.moves(),
            poll: s.poll,
            slice: s.slice,
            udp_gso: self.udp_gso(),
            tunnel_gso: self.tunnel_gso(),
        }
    }

    /// Starts serving VNI `vni` on `tap` (already created, in whatever namespace), with frames
    /// up to `mtu` bytes of payload, forwarding as `table` says.
    pub fn add_network(
        &self,
        vni: Vni,
        tap: Tap,
        mtu: u32,
        table: &NetworkTable,
    ) -> Result<(), DataplaneError> {
        self.add_network_queues(vni, vec![tap], mtu, table)
    }

    /// [`Dataplane::add_network`] for the queues of a multi-queue TAP: queue `j` is read by
    /// worker `j % workers` (the kernel keeps each flow on one queue, so frames of a flow stay
    /// in order).
    pub fn add_network_queues(
        &self,
        vni: Vni,
        queues: Vec<Tap>,
        mtu: u32,
        table: &NetworkTable,
    ) -> Result<(), DataplaneError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.networks.load().contains_key(&vni) {
            return Err(DataplaneError::NetworkExists(vni));
        }
        if queues.is_empty() {
            return Err(DataplaneError::Io(
                "adding a network",
                io::Error::new(io::ErrorKind::InvalidInput, "no TAP queue given"),
            ));
        }
        let queues: Vec<Arc<Tap>> = queues.into_iter().map(Arc::new).collect();
        let net = Arc::new(Network {
            vni,
            table: Table::compile(table),
            queues: queues.clone(),
            counters: Arc::new(Counters::default()),
            mtu: mtu as usize,
            max_frame: mtu as usize + L2_OVERHEAD,
        });
        self.publish(vni, Some(net));
        let workers = &self.shared.workers;
        for (j, tap) in queues.iter().enumerate() {
            let w = &workers[j % workers.len()];
            if let Err(e) = w.epoll.add(tap.as_raw_fd(), tap_token(vni, j)) {
                for (k, t) in queues.iter().enumerate().take(j) {
                    let _ = workers[k % workers.len()].epoll.delete(t.as_raw_fd());
                }
                self.publish(vni, None);
                self.wait_released();
                return Err(DataplaneError::Io("registering a TAP queue with epoll", e));
            }
        }
        Ok(())
    }

    /// Replaces the forwarding table of `vni` while traffic flows.
    pub fn update_network(&self, vni: Vni, table: &NetworkTable) -> Result<(), DataplaneError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self
            .shared
            .networks
            .load()
            .get(&vni)
            .cloned()
            .ok_or(DataplaneError::NoSuchNetwork(vni))?;
        let net = Arc::new(Network {
            vni,
            table: Table::compile(table),
            queues: old.queues.clone(),
            counters: old.counters.clone(),
            mtu: old.mtu,
            max_frame: old.max_frame,
        });
        self.publish(vni, Some(net));
        Ok(())
    }

    /// Stops serving `vni`; returns once no worker uses its TAP any more, so the TAP is
    /// closed (and, not being persistent, gone) unless the caller holds another queue of it.
    pub fn remove_network(&self, vni: Vni) -> Result<(), DataplaneError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(old) = self.shared.networks.load().get(&vni).cloned() else {
            return Err(DataplaneError::NoSuchNetwork(vni));
        };
        self.publish(vni, None);
        let workers = &self.shared.workers;
        for (j, tap) in old.queues.iter().enumerate() {
            if let Err(e) = workers[j % workers.len()].epoll.delete(tap.as_raw_fd()) {
                log::warn!("removing TAP {} from a worker's epoll: {e}", tap.name());
            }
        }
        drop(old);
        self.wait_released();
        self.shared.learned.forget_vni(vni);
        Ok(())
    }

    /// Waits until every worker has been between two passes since the last `publish`, and so
    /// holds nothing of what that change removed.
    fn wait_released(&self) {
        let target = self.shared.generation.load(Ordering::Acquire);
        for w in &self.shared.workers {
            let _ = w.waker.wake();
        }
        let started = Instant::now();
        for w in &self.shared.workers {
            while w.seen.load(Ordering::Acquire) < target {
                if started.elapsed() > RELEASE_TIMEOUT {
                    log::warn!(
                        "a data-plane worker is still busy after {RELEASE_TIMEOUT:?}; \
                         the removed network's TAP closes when it finishes"
                    );
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }

    /// The VNIs served, sorted.
    pub fn networks(&self) -> Vec<Vni> {
        let mut v: Vec<Vni> = self.shared.networks.load().keys().copied().collect();
        v.sort();
        v
    }

    /// Counters of one network.
    pub fn counters(&self, vni: Vni) -> Option<CounterSnapshot> {
        self.shared
            .networks
            .load()
            .get(&vni)
            .map(|n| n.counters.snapshot())
    }

    /// Counters of drops that happened before a network was known (bad header, unknown VNI).
    pub fn global_counters(&self) -> CounterSnapshot {
        self.shared.global.snapshot()
    }

    /// MACs learned from traffic in `vni`, with their VTEPs.
    pub fn learned(&self, vni: Vni) -> Vec<(MacAddr, SocketAddr)> {
        self.shared.learned.entries(vni)
    }

    /// Stops every thread and closes every TAP and socket.
    pub fn shutdown(self) {
        drop(self);
    }

    fn publish(&self, vni: Vni, net: Option<Arc<Network>>) {
        let mut next: Networks = (**self.shared.networks.load()).clone();
        match net {
            Some(n) => next.insert(vni, n),
            None => next.remove(&vni),
        };
        self.shared.networks.store(Arc::new(next));
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.stop();
        }
    }
}
