//! What the data plane's threads share: the networks (swapped whole by the control plane), the
//! learned MACs, the underlay sockets, the uplink, the offloads in use, the clock, and one
//! [`WorkerSlot`] per worker (what it sleeps on). Built by [`crate::Dataplane::start`]; the
//! workers and the housekeeping thread only read it (the tables through atomic swaps, the
//! counters and capabilities through atomics).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use arc_swap::ArcSwap;
use ovnet_sys::{Epoll, UnderlaySocket, Waker};

use crate::capability::Capabilities;
use crate::clock::Clock;
use crate::counters::Counters;
use crate::fdb::LearnedTable;
use crate::network::Networks;
use crate::peers::PeerTable;
use crate::send::TxSockets;
use crate::storm::BumLimits;
use crate::uplink::UplinkPath;

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

/// What every data-plane thread shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) networks: ArcSwap<Networks>,
    /// Bumped after every change of `networks`.
    pub(crate) generation: AtomicU64,
    pub(crate) learned: LearnedTable,
    /// The replication budgets each network gets.
    pub(crate) bum: BumLimits,
    /// Drops that happened before a network was known.
    pub(crate) global: Counters,
    /// Traffic per peer VTEP.
    pub(crate) peers: PeerTable,
    /// The clock learned MACs age by.
    pub(crate) clock: Clock,
    /// The offloads in use, and which were refused.
    pub(crate) caps: Capabilities,
    /// The send sockets and which one each flow uses.
    pub(crate) tx: TxSockets,
    pub(crate) workers: Vec<WorkerSlot>,
    /// Where super-frames leave whole, if the kernel and host allowed it at start.
    pub(crate) uplink: Option<UplinkPath>,
    /// The longest a send waits for room in a full socket buffer.
    pub(crate) send_patience: Duration,
    /// How long a worker polls after its last packet before it sleeps.
    pub(crate) poll: Duration,
    /// The time slice workers ask for; `None`: the kernel's default.
    pub(crate) slice: Option<Duration>,
    /// Whether networks' TAPs are opened with offloads.
    pub(crate) tap_offloads: bool,
    /// The other ovnet VTEPs' heartbeats ([`crate::heartbeat`]).
    pub(crate) heard: std::sync::Arc<crate::heartbeat::Heard>,
}
