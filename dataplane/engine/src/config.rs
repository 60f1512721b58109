//! How a data plane is started ([`DataplaneConfig`], with the defaults' reasons) and what can
//! go wrong when the control plane drives it ([`DataplaneError`]).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use ovnet_sys::TapError;
use ovnet_wire::Vni;

use crate::clock::Clock;
use crate::fdb::{DEFAULT_AGEING, DEFAULT_MAX_LEARNED};
use crate::storm::BumLimits;

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
    /// The most MACs learned from traffic per network; new ones beyond it are dropped and
    /// counted ([`crate::DropReason::LearnedTableFull`]) until ageing frees room.
    pub max_learned: usize,
    /// Budgets of broadcast, multicast and unknown-unicast replication, per local endpoint and
    /// per network ([`crate::storm`]).
    pub bum: BumLimits,
    /// The longest a send waits for room in a full socket buffer before the datagrams are
    /// dropped and counted ([`crate::DropReason::SendStalled`]). Waiting is back-pressure, as
    /// a local sender gets from the kernel; an underlay that does not drain for this long is
    /// stuck, and a worker that kept waiting would stop forwarding everything else.
    pub send_patience: Duration,
    /// Send segmented super-frames with UDP GSO (one `sendmsg` per train) where the kernel
    /// accepts it; falls back to one send per datagram if it refuses.
    pub gso: bool,
    /// Receive with UDP GRO (many datagrams per `recvmsg`).
    pub gro: bool,
    /// With `gso`, send TCP super-frames to IPv4 VTEPs through an uplink TAP, for the kernel to
    /// segment where the underlay needs it (UDP tunnel GSO, Linux 6.17+), instead of segmenting
    /// them here. Falls back to segmenting where the kernel or the host's settings refuse it
    /// (see [`ovnet_sys::uplink`]).
    pub tunnel_gso: bool,
    /// Open the networks' TAPs with a `virtio_net_hdr` and checksum and TCP segmentation
    /// offloads, so that the kernel hands over 64 KB super-frames and takes coalesced ones;
    /// without, one plain frame per read and write.
    pub tap_offloads: bool,
    /// Worker threads, each with its own listening socket on the VXLAN port
    /// (`SO_REUSEPORT`) and one queue of every network's TAP. More than one lets different
    /// flows use different cores.
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
    /// The clock learned MACs age by (and flow steering reads). A fresh one by default; tests
    /// keep a handle and move it forward to age entries without waiting.
    pub clock: Clock,
}

impl DataplaneConfig {
    /// Defaults: 8 send sockets, 300 s ageing, at most [`DEFAULT_MAX_LEARNED`] learned MACs
    /// per network, [`BumLimits::default`], a send patience of [`DEFAULT_SEND_PATIENCE`], UDP
    /// GSO, GRO, tunnel GSO and TAP offloads on, one worker, polling for [`DEFAULT_POLL`], a
    /// slice of [`DEFAULT_SLICE`].
    pub fn new(vtep: SocketAddr) -> DataplaneConfig {
        DataplaneConfig {
            vtep,
            tx_sockets: 8,
            ageing: DEFAULT_AGEING,
            max_learned: DEFAULT_MAX_LEARNED,
            bum: BumLimits::default(),
            send_patience: DEFAULT_SEND_PATIENCE,
            gso: true,
            gro: true,
            tunnel_gso: true,
            tap_offloads: true,
            workers: 1,
            poll: DEFAULT_POLL,
            slice: Some(DEFAULT_SLICE),
            clock: Clock::new(),
        }
    }
}

/// Most worker threads the agent runs (each adds a queue to every network's TAP and a socket
/// on the VXLAN port), and the cap of [`default_workers`].
pub const MAX_WORKERS: usize = 4;

/// The default worker count: one per CPU this process may run on, at most
/// [`MAX_WORKERS`].
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

/// The default longest wait for room in a socket buffer: a hundred times what a full 4 MiB
/// buffer takes to drain at 3 Gbit/s, and short enough that stopping the data plane never
/// waits on it (a stopping worker does not wait at all).
pub const DEFAULT_SEND_PATIENCE: Duration = Duration::from_secs(1);

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
    /// A socket, device setting or thread could not be set up.
    Io(&'static str, io::Error),
    /// A network's TAP could not be opened or configured.
    Tap(TapError),
    /// `add_network` for a VNI that is already there.
    NetworkExists(Vni),
    /// An operation on a VNI that is not there.
    NoSuchNetwork(Vni),
}

impl std::fmt::Display for DataplaneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataplaneError::Io(what, e) => write!(f, "{what}: {e}"),
            DataplaneError::Tap(e) => write!(f, "{e}"),
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
            DataplaneError::Tap(e) => Some(e),
            _ => None,
        }
    }
}

impl From<TapError> for DataplaneError {
    fn from(e: TapError) -> DataplaneError {
        DataplaneError::Tap(e)
    }
}
