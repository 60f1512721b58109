//! The running data plane: the handle that starts its threads and the small typed interface
//! the control plane drives it through.
//!
//! Threads: a fixed set of workers (by default one per core), each owning one listening
//! socket on the VXLAN port (`SO_REUSEPORT`) and one queue of every network's multi-queue TAP,
//! carrying traffic both ways (`worker`); and one housekeeping thread for the chores
//! on a clock (`housekeeping`). Sends go through a pool of underlay sockets whose
//! ports are the outer source ports (`send`). TCP super-frames leave whole through an
//! uplink TAP where the kernel allows it (`uplink`). Each worker owns its buffers;
//! none allocates or locks per packet. They sleep in `epoll` beside an eventfd, so stopping
//! them never waits for traffic.
//!
//! The control plane's seam is a handful of calls: [`Dataplane::add_network`] (a TAP name and
//! an MTU: the data plane opens the TAP itself, with its own offloads),
//! [`Dataplane::update_network`] (a whole [`NetworkTable`], swapped in atomically),
//! [`Dataplane::remove_network`], and the reads: counters, [`Dataplane::report`] (workers and
//! offloads), [`Dataplane::tso_segments`] (the segment cap containers need).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ovnet_sys::{Epoll, UdpConfig, UnderlaySocket, Waker};
use ovnet_wire::{MacAddr, Vni};

use crate::capability::{Capabilities, Capability, Offload, OffloadState};
use crate::config::{DataplaneConfig, DataplaneError};
use crate::counters::{CounterSnapshot, Counters};
use crate::fdb::{FxHashMap, LearnedTable, NetworkTable, Table};
use crate::heartbeat::{Heard, Heartbeats};
use crate::housekeeping::Housekeeping;
use crate::network::{open_tap, Network, Networks};
use crate::peers::{PeerSnapshot, PeerTable};
use crate::send::{tso_segments, TxSockets};
use crate::shared::{Shared, WorkerSlot};
use crate::uplink::UplinkPath;
use crate::worker::{register_worker, tap_token, Worker};

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
    /// Whether TCP super-frames leave through the uplink ([`Dataplane::tunnel_gso`]).
    pub tunnel_gso: bool,
    /// Every offload the data plane can use: whether it is on, was unavailable at start, or
    /// was turned off since (and why, and when).
    pub offloads: Vec<(Offload, OffloadState)>,
    /// MACs in the learned table, including aged ones the next sweep removes.
    pub learned_macs: usize,
    /// The most MACs learned per network ([`DataplaneConfig::max_learned`]).
    pub max_learned: usize,
}

/// A running data plane. Dropping it stops every thread.
#[derive(Debug)]
pub struct Dataplane {
    pub(crate) shared: Arc<Shared>,
    /// Sends the heartbeats to the peers ([`crate::heartbeat`]).
    pub(crate) heartbeats: Heartbeats,
    /// Serialises table writers (the control plane); readers never take it.
    writer: Mutex<()>,
    workers: Vec<Worker>,
    housekeeping: Option<Housekeeping>,
}

/// How long `remove_network` waits for the workers to let go of a network's TAP.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl Dataplane {
    /// Binds the underlay sockets in the calling thread's network namespace, probes the
    /// offloads, and starts the workers and the housekeeping thread there. Networks are added
    /// with [`Dataplane::add_network`].
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
        let tx = TxSockets::open(cfg.vtep, cfg.tx_sockets, count, &slots[0].socket)?;
        let bound = slots[0]
            .socket
            .local_addr()
            .map_err(|e| DataplaneError::Io("reading the VXLAN socket's address", e))?;
        let udp_gso = if !cfg.gso {
            Capability::off()
        } else if tx.first().unwrap_or(&slots[0].socket).probe_gso() {
            Capability::on()
        } else {
            Capability::unavailable("the kernel has no UDP GSO (Linux 4.18+)")
        };
        let (uplink, tunnel_gso) = if !cfg.gso || !cfg.tunnel_gso {
            (None, Capability::off())
        } else if !udp_gso.is_on() {
            (None, Capability::unavailable("needs UDP GSO"))
        } else {
            match UplinkPath::open(bound, count) {
                Ok(up) => (Some(up), Capability::on()),
                Err(why) => {
                    log::info!("not using UDP tunnel GSO ({why}); segmenting super-frames");
                    (None, Capability::unavailable(why))
                }
            }
        };
        let udp_gro = if cfg.gro {
            // Every socket is asked, as before; the first refusal is what is reported.
            let refused = slots
                .iter()
                .filter_map(|w| w.socket.enable_gro().err())
                .fold(None, |first, e| first.or(Some(e)));
            match refused {
                None => Capability::on(),
                Some(e) => {
                    log::info!("UDP GRO unavailable ({e}); receiving one datagram per call");
                    Capability::unavailable(e.to_string())
                }
            }
        } else {
            Capability::off()
        };
        let udp_coalesce = if cfg.tap_offloads {
            Capability::on()
        } else {
            Capability::off()
        };
        let shared = Arc::new(Shared {
            networks: ArcSwap::from_pointee(FxHashMap::default()),
            generation: AtomicU64::new(0),
            learned: LearnedTable::with_limit(cfg.ageing, cfg.max_learned),
            bum: cfg.bum,
            send_patience: cfg.send_patience,
            global: Counters::default(),
            peers: PeerTable::default(),
            clock: cfg.clock.clone(),
            caps: Capabilities {
                udp_gso,
                udp_gro,
                udp_coalesce,
                tunnel_gso,
            },
            tx,
            workers: slots,
            uplink,
            poll: cfg.poll,
            slice: cfg.slice,
            tap_offloads: cfg.tap_offloads,
            heard: Arc::new(Heard::default()),
        });
        let heartbeats = Heartbeats::start(bound, shared.heard.clone())
            .map_err(|e| DataplaneError::Io("binding the heartbeat socket", e))?;
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            // On failure the workers started so far are stopped by their Drop.
            workers.push(Worker::spawn(&shared, i)?);
        }
        let housekeeping = Housekeeping::spawn(&shared)?;
        Ok(Dataplane {
            shared,
            heartbeats,
            writer: Mutex::new(()),
            workers,
            housekeeping: Some(housekeeping),
        })
    }

    /// Whether sends still use UDP GSO: false if it was configured off, or since the kernel
    /// refused it (the data plane then sends trains with `sendmmsg`).
    pub fn udp_gso(&self) -> bool {
        self.shared.caps.udp_gso.is_on()
    }

    /// Whether TCP super-frames leave whole through the uplink (UDP tunnel GSO): false if it
    /// was configured off, could not be set up, or since the kernel refused a frame or the
    /// host stopped forwarding them.
    pub fn tunnel_gso(&self) -> bool {
        self.shared.caps.tunnel_gso.is_on()
    }

    /// Most TCP segments a container's stack may put in one TSO super-frame on a network with
    /// MTU `mtu`, for this data plane to send it in one go: what the agent sets as the
    /// container interface's `gso_max_segs` (see [`crate::tso_segments`]).
    pub fn tso_segments(&self, mtu: u32) -> u32 {
        tso_segments(mtu, self.tunnel_gso())
    }

    /// Each worker's load, flow steering, the poll window, the slice and the offloads in use.
    pub fn report(&self) -> DataplaneReport {
        let s = &self.shared;
        DataplaneReport {
            busy_per_mille: s.tx.flows.loads(s.clock.now_ms()),
            steering: s.tx.steering(),
            flows_moved: s.tx.flows.moves(),
            poll: s.poll,
            slice: s.slice,
            udp_gso: self.udp_gso(),
            tunnel_gso: self.tunnel_gso(),
            offloads: s.caps.report(),
            learned_macs: s.learned.len(),
            max_learned: s.learned.max_per_network(),
        }
    }

    /// Starts serving VNI `vni` on TAP `tap`, forwarding as `table` says, with frames up to
    /// `mtu` bytes of payload. The data plane opens the TAP itself, creating it if need be, in
    /// the calling thread's network namespace: one queue per worker (queue `j` is read by
    /// worker `j`; the kernel keeps each flow on one queue, so frames of a flow stay in
    /// order), with the offloads the data plane uses, and MTU `mtu`. The caller attaches it
    /// (to a bridge, say) and brings it up. The TAP goes when the network is removed.
    pub fn add_network(
        &self,
        vni: Vni,
        tap: &str,
        mtu: u32,
        table: &NetworkTable,
    ) -> Result<(), DataplaneError> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.shared.networks.load().contains_key(&vni) {
            return Err(DataplaneError::NetworkExists(vni));
        }
        let workers = &self.shared.workers;
        let queues: Vec<Arc<_>> = open_tap(tap, mtu, workers.len(), self.shared.tap_offloads)?
            .into_iter()
            .map(Arc::new)
            .collect();
        let s = &self.shared;
        let net = Network::new(
            vni,
            Table::compile(table),
            queues.clone(),
            mtu,
            s.bum,
            s.clock.now_ms(),
        );
        self.publish(vni, Some(Arc::new(net)));
        for (j, q) in queues.iter().enumerate() {
            let w = &workers[j % workers.len()];
            if let Err(e) = w.epoll.add(q.as_raw_fd(), tap_token(vni, j)) {
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
        let net = old.with_table(Table::compile(table), self.shared.clock.now_ms());
        self.publish(vni, Some(Arc::new(net)));
        Ok(())
    }

    /// Stops serving `vni`; returns once no worker uses its TAP any more, so the TAP is
    /// closed and, not being persistent, gone.
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

    /// How many MACs network `vni` holds in the learned table, aged or not: what its cap
    /// ([`DataplaneConfig::max_learned`]) counts.
    pub fn learned_count(&self, vni: Vni) -> usize {
        self.shared.learned.len_of(vni)
    }

    /// Traffic per peer VTEP (its underlay address) since the data plane started (peers it
    /// sent to or admitted traffic from), sorted by address, with how long ago each was last heard (`None`:
    /// never); and the datagrams of peers beyond the table's bound, counted together.
    pub fn peers(&self) -> (Vec<(IpAddr, PeerSnapshot, Option<Duration>)>, u64) {
        let now = self.shared.clock.now_ms();
        let (mut peers, overflow) = self.shared.peers.snapshot();
        peers.sort_by_key(|(a, _)| *a);
        let with_age = peers
            .into_iter()
            .map(|(a, p)| {
                let ago =
                    (p.last_rx > 0).then(|| Duration::from_millis(now.saturating_sub(p.last_rx)));
                (a, p, ago)
            })
            .collect();
        (with_age, overflow)
    }

    /// MACs learned from traffic in `vni` and not aged out, with their VTEPs.
    pub fn learned(&self, vni: Vni) -> Vec<(MacAddr, SocketAddr)> {
        let s = &self.shared;
        s.learned.entries(vni, s.clock.now_ms())
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
        // Every worker hears it first, so none waits for another to finish its pass.
        for w in &self.workers {
            w.signal_stop();
        }
        for w in &mut self.workers {
            w.stop();
        }
        if let Some(mut h) = self.housekeeping.take() {
            h.stop();
        }
    }
}
