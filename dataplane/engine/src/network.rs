//! One network (VNI) as the packet path sees it: its compiled table, its TAP's queues, its
//! counters, size limits and "too big" budget, replaced whole on change. And how the data plane opens a network's
//! TAP: with the offloads the data plane itself uses, one queue per worker.

use std::io::{self, IoSlice};
use std::sync::Arc;

use ovnet_sys::{link, Offloads, Tap, TapConfig};
use ovnet_wire::{ethernet, virtio, Vni};

use crate::config::DataplaneError;
use crate::counters::Counters;
use crate::fdb::{FxHashMap, Table};
use crate::pmtu::AnswerBudget;
use crate::storm::{BumLimits, Storm};

/// Room for one 802.1Q tag on top of the Ethernet header, as the kernel's bridge allows.
const L2_OVERHEAD: usize = ethernet::HEADER_LEN + 4;

/// The offloads a network's TAP is opened with when the data plane uses them: partial
/// checksums and TCP segmentation (IPv4, IPv6, with ECN), so that the kernel hands over 64 KB
/// super-frames and takes coalesced ones.
const TAP_OFFLOADS: Offloads = Offloads {
    csum: true,
    tso4: true,
    tso6: true,
    tso_ecn: true,
    udp_tunnel: false,
};

/// Largest datagram, GRO run or TAP super-frame a worker reads (with its `virtio_net_hdr`).
pub(crate) const BUF_LEN: usize = 65_536 + virtio::HEADER_LEN;

/// The `virtio_net_hdr` of a frame that needs nothing from the kernel.
const PLAIN_VNET_HDR: [u8; virtio::HEADER_LEN] = [0; virtio::HEADER_LEN];

/// One network as the packet path sees it: immutable, replaced whole on change.
#[derive(Debug)]
pub(crate) struct Network {
    pub(crate) vni: Vni,
    pub(crate) table: Table,
    /// The TAP's queues: queue `j` is read by worker `j % workers`; worker `i` writes to
    /// queue `i % queues.len()`.
    pub(crate) queues: Vec<Arc<Tap>>,
    pub(crate) counters: Arc<Counters>,
    /// What the network may still answer with ICMP "too big" (shared by the workers).
    pub(crate) answers: Arc<AnswerBudget>,
    /// Largest IP packet (the network's MTU).
    pub(crate) mtu: usize,
    /// Largest frame: the MTU plus Ethernet and one VLAN tag.
    pub(crate) max_frame: usize,
    /// Replication budgets of flooded frames.
    pub(crate) storm: Storm,
    /// What `storm` was built with, for the next table.
    limits: BumLimits,
}

/// The networks served, by VNI.
pub(crate) type Networks = FxHashMap<Vni, Arc<Network>>;

impl Network {
    /// A new network on `queues`, with fresh counters and full replication budgets at
    /// `now_ms`.
    pub(crate) fn new(
        vni: Vni,
        table: Table,
        queues: Vec<Arc<Tap>>,
        mtu: u32,
        limits: BumLimits,
        now_ms: u64,
    ) -> Network {
        Network {
            vni,
            storm: Storm::new(limits, &table, None, now_ms),
            limits,
            table,
            queues,
            counters: Arc::new(Counters::default()),
            answers: Arc::new(AnswerBudget::default()),
            mtu: mtu as usize,
            max_frame: mtu as usize + L2_OVERHEAD,
        }
    }

    /// The same network with another table: queues, counters, limits and the replication
    /// budgets of its remaining endpoints carry over.
    pub(crate) fn with_table(&self, table: Table, now_ms: u64) -> Network {
        Network {
            vni: self.vni,
            storm: Storm::new(self.limits, &table, Some(&self.storm), now_ms),
            limits: self.limits,
            table,
            queues: self.queues.clone(),
            counters: self.counters.clone(),
            answers: self.answers.clone(),
            mtu: self.mtu,
            max_frame: self.max_frame,
        }
    }

    /// The TAP queue worker `worker` writes this network's frames to.
    #[inline]
    pub(crate) fn queue_of(&self, worker: usize) -> &Tap {
        &self.queues[worker % self.queues.len()]
    }
}

/// Opens (creating it if need be) TAP `name` in the calling thread's network namespace, with
/// `queues` queues, offloads if `offloads`, and MTU `mtu`. The device goes when its last queue
/// closes.
pub(crate) fn open_tap(
    name: &str,
    mtu: u32,
    queues: usize,
    offloads: bool,
) -> Result<Vec<Tap>, DataplaneError> {
    let cfg = TapConfig {
        vnet_hdr: offloads,
        multi_queue: queues > 1,
        ..TapConfig::new(name)
    };
    let taps = Tap::open_queues(&cfg, queues.max(1))?;
    if offloads {
        for t in &taps {
            t.set_offloads(TAP_OFFLOADS)?;
        }
    }
    link::set_mtu(taps[0].name(), mtu)
        .map_err(|e| DataplaneError::Io("setting the MTU of a network's TAP", e))?;
    Ok(taps)
}

/// Writes one frame to a TAP, prefixed with an empty `virtio_net_hdr` if the TAP wants one.
pub(crate) fn write_frame(tap: &Tap, frame: &[u8]) -> io::Result<usize> {
    if tap.has_vnet_hdr() {
        tap.write_vectored(&[IoSlice::new(&PLAIN_VNET_HDR), IoSlice::new(frame)])
    } else {
        tap.write(frame)
    }
}
