//! The running data plane: worker threads moving frames between TAPs and the underlay, and the
//! small typed interface the control plane drives it through.
//!
//! Threads: one receive (decap) thread owns the listening socket and writes to the TAP of each
//! datagram's VNI; one send (encap) thread per network owns that network's TAP reads and sends
//! through a pool of underlay sockets picked by inner-flow hash (the outer source port). Each
//! thread owns its buffers; none allocates or locks per packet. They sleep in `poll` beside an
//! eventfd, so stopping them never waits for traffic.
//!
//! The control plane's seam is four calls: [`Dataplane::add_network`],
//! [`Dataplane::update_network`] (a whole [`NetworkTable`], swapped in atomically),
//! [`Dataplane::remove_network`] and the counter reads.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use ovnet_sys::{Tap, UdpConfig, UnderlaySocket, Waker};
use ovnet_wire::{ethernet, flow, MacAddr, Vni};

use crate::counters::{CounterSnapshot, Counters};
use crate::fdb::{FxHashMap, LearnedTable, NetworkTable, Table, DEFAULT_AGEING};
use crate::worker::{decap_loop, encap_loop};

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
    /// Receive threads, each with its own listening socket on the VXLAN port
    /// (`SO_REUSEPORT`). More than one lets the flows of different peers and flows use
    /// different cores.
    pub rx_threads: usize,
}

impl DataplaneConfig {
    /// Defaults: 8 send sockets, 300 s ageing, UDP GSO and GRO on.
    pub fn new(vtep: SocketAddr) -> DataplaneConfig {
        DataplaneConfig {
            vtep,
            tx_sockets: 8,
            ageing: DEFAULT_AGEING,
            gso: true,
            gro: true,
            rx_threads: 1,
        }
    }
}

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
    pub(crate) table: Table,
    pub(crate) tap: Arc<Tap>,
    pub(crate) counters: Arc<Counters>,
    /// Largest IP packet (the network's MTU).
    pub(crate) mtu: usize,
    /// Largest frame: the MTU plus Ethernet and one VLAN tag.
    pub(crate) max_frame: usize,
}

pub(crate) type Networks = FxHashMap<Vni, Arc<Network>>;

/// What every worker thread shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) networks: ArcSwap<Networks>,
    pub(crate) learned: LearnedTable,
    pub(crate) global: Counters,
    pub(crate) tx: Vec<UnderlaySocket>,
    /// Listening sockets on the VXLAN port (`SO_REUSEPORT`), one per receive thread: the
    /// kernel spreads peers' flows over them by their outer source ports.
    pub(crate) rx: Vec<UnderlaySocket>,
    /// UDP GSO is used until a send says the kernel cannot do it.
    pub(crate) gso: AtomicBool,
}

impl Shared {
    /// The send socket of the frame's flow: its ephemeral port is the outer source port.
    pub(crate) fn tx_socket(&self, frame: &[u8]) -> &UnderlaySocket {
        if self.tx.is_empty() {
            return &self.rx[0];
        }
        let i = (flow::flow_hash(frame) as u64 * self.tx.len() as u64) >> 32;
        &self.tx[i as usize]
    }
}

#[derive(Debug)]
struct Worker {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(
        name: String,
        body: impl FnOnce(Arc<AtomicBool>, Arc<Waker>) + Send + 'static,
    ) -> Result<Worker, DataplaneError> {
        let stop = Arc::new(AtomicBool::new(false));
        let waker =
            Arc::new(Waker::new().map_err(|e| DataplaneError::Io("creating an eventfd", e))?);
        let (s, w) = (stop.clone(), waker.clone());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(s, w))
            .map_err(|e| DataplaneError::Io("spawning a worker thread", e))?;
        Ok(Worker {
            stop,
            waker,
            handle: Some(handle),
        })
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
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
    shared: Arc<Shared>,
    /// Serialises table writers (the control plane); readers never take it.
    writer: Mutex<HashMap<Vni, Vec<Worker>>>,
    decap: Mutex<Vec<Worker>>,
}

impl Dataplane {
    /// Binds the underlay sockets in the calling thread's network namespace and starts the
    /// receive thread. Networks are added with [`Dataplane::add_network`].
    pub fn start(cfg: &DataplaneConfig) -> Result<Dataplane, DataplaneError> {
        let mut rx = Vec::with_capacity(cfg.rx_threads.max(1));
        for _ in 0..cfg.rx_threads.max(1) {
            let mut c = UdpConfig::new(cfg.vtep);
            c.reuse_port = cfg.rx_threads > 1;
            let s = UnderlaySocket::bind(&c)
                .map_err(|e| DataplaneError::Io("binding the VXLAN listening socket", e))?;
            rx.push(s);
        }
        let mut tx = Vec::with_capacity(cfg.tx_sockets);
        for _ in 0..cfg.tx_sockets {
            let s = UnderlaySocket::bind(&UdpConfig::new(SocketAddr::new(cfg.vtep.ip(), 0)))
                .map_err(|e| DataplaneError::Io("binding a VXLAN send socket", e))?;
            tx.push(s);
        }
        let gso = cfg.gso && tx.first().unwrap_or(&rx[0]).probe_gso();
        if cfg.gro {
            for r in &rx {
                if let Err(e) = r.enable_gro() {
                    log::info!("UDP GRO unavailable ({e}); receiving one datagram per call");
                }
            }
        }
        let shared = Arc::new(Shared {
            networks: ArcSwap::from_pointee(FxHashMap::default()),
            learned: LearnedTable::new(cfg.ageing),
            global: Counters::default(),
            tx,
            rx,
            gso: AtomicBool::new(gso),
        });
        let mut decap = Vec::with_capacity(shared.rx.len());
        for i in 0..shared.rx.len() {
            let s = shared.clone();
            decap.push(Worker::spawn(
                format!("ovnet-decap-{i}"),
                move |stop, waker| decap_loop(&s, i, &stop, &waker),
            )?);
        }
        Ok(Dataplane {
            shared,
            writer: Mutex::new(HashMap::new()),
            decap: Mutex::new(decap),
        })
    }

    /// The bound VTEP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.rx[0]
            .local_addr()
            .expect("a bound socket has a local address")
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

    /// [`Dataplane::add_network`] for the queues of a multi-queue TAP: one send thread per
    /// queue (the kernel keeps each flow on one queue, so frames of a flow stay in order).
    pub fn add_network_queues(
        &self,
        vni: Vni,
        queues: Vec<Tap>,
        mtu: u32,
        table: &NetworkTable,
    ) -> Result<(), DataplaneError> {
        let mut workers = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.networks.load().contains_key(&vni) {
            return Err(DataplaneError::NetworkExists(vni));
        }
        let queues: Vec<Arc<Tap>> = queues.into_iter().map(Arc::new).collect();
        let Some(first) = queues.first() else {
            return Err(DataplaneError::Io(
                "adding a network",
                io::Error::new(io::ErrorKind::InvalidInput, "no TAP queue given"),
            ));
        };
        let net = Arc::new(Network {
            table: Table::compile(table),
            tap: first.clone(),
            counters: Arc::new(Counters::default()),
            mtu: mtu as usize,
            max_frame: mtu as usize + L2_OVERHEAD,
        });
        self.publish(vni, Some(net));
        let mut started = Vec::with_capacity(queues.len());
        for (i, tap) in queues.into_iter().enumerate() {
            let s = self.shared.clone();
            let worker = Worker::spawn(format!("ovnet-encap-{vni}-{i}"), move |stop, waker| {
                encap_loop(&s, vni, &tap, &stop, &waker)
            });
            match worker {
                Ok(w) => started.push(w),
                Err(e) => {
                    self.publish(vni, None);
                    for mut w in started {
                        w.stop();
                    }
                    return Err(e);
                }
            }
        }
        workers.insert(vni, started);
        Ok(())
    }

    /// Replaces the forwarding table of `vni` while traffic flows.
    pub fn update_network(&self, vni: Vni, table: &NetworkTable) -> Result<(), DataplaneError> {
        let _workers = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let old = self
            .shared
            .networks
            .load()
            .get(&vni)
            .cloned()
            .ok_or(DataplaneError::NoSuchNetwork(vni))?;
        let net = Arc::new(Network {
            table: Table::compile(table),
            tap: old.tap.clone(),
            counters: old.counters.clone(),
            mtu: old.mtu,
            max_frame: old.max_frame,
        });
        self.publish(vni, Some(net));
        Ok(())
    }

    /// Stops serving `vni`; its TAP is closed once the threads let go of it.
    pub fn remove_network(&self, vni: Vni) -> Result<(), DataplaneError> {
        let mut workers = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if !self.shared.networks.load().contains_key(&vni) {
            return Err(DataplaneError::NoSuchNetwork(vni));
        }
        self.publish(vni, None);
        for mut w in workers.remove(&vni).unwrap_or_default() {
            w.stop();
        }
        self.shared.learned.forget_vni(vni);
        Ok(())
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
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        let mut workers = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for (_, ws) in workers.drain() {
            for mut w in ws {
                w.stop();
            }
        }
        for mut d in self
            .decap
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            d.stop();
        }
    }
}
