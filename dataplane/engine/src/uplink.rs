//! UDP tunnel GSO, the data plane's side: TCP super-frames leave whole, with their outer
//! headers, through an uplink TAP, and the kernel segments them only where the underlay needs
//! it ([`ovnet_sys::uplink`] sets the TAP up, [`ovnet_wire::tunnel`] builds the headers).
//!
//! - [`UplinkPath`]: the uplink, opened at start where the VTEP, the kernel and the host allow.
//! - [`TunnelWriter`]: one per worker, builds a super-frame's headers and writes it.
//! - [`ForwardingCheck`]: run by the housekeeping thread once a second; turns tunnel GSO off
//!   if the host does not forward what is written to the uplink (a firewall's FORWARD chain).
//!
//! Whether super-frames go this way is [`crate::capability::Capabilities`]' `tunnel_gso`.

use std::io::{self, IoSlice};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};

use ovnet_sys::{Tap, Uplink};
use ovnet_wire::gso::TcpFrame;
use ovnet_wire::tunnel::{self, OuterV4};
use ovnet_wire::{MacAddr, Vni};

use crate::capability::Capability;

/// Source MAC of frames written to the uplink (the host does not look at it).
const UPLINK_SRC_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

/// The uplink TAP through which super-frames leave whole.
#[derive(Debug)]
pub(crate) struct UplinkPath {
    /// Worker `i` writes to queue `i % queues.len()`.
    queues: Vec<Tap>,
    /// The uplink's MAC, the destination of every frame written to it.
    mac: MacAddr,
    /// The local VTEP address, the outer source.
    src: Ipv4Addr,
    /// Super-frames written, checked against what the host forwarded.
    written: AtomicU64,
}

impl UplinkPath {
    /// Opens the uplink for a data plane bound to `vtep` with `workers` workers: where the VTEP
    /// is a routable IPv4 address and the kernel and host allow it, else says why not.
    pub(crate) fn open(vtep: SocketAddr, workers: usize) -> Result<UplinkPath, String> {
        let SocketAddr::V4(v4) = vtep else {
            return Err("used with IPv4 underlays only".into());
        };
        let src = *v4.ip();
        if src.is_loopback() || src.is_unspecified() {
            return Err(format!("the VTEP address {src} is not routable"));
        }
        let name = format!("ovu{}", vtep.port());
        let up = Uplink::open(&name, workers).map_err(|e| e.to_string())?;
        log::info!("sending TCP super-frames through uplink {name} (UDP tunnel GSO)");
        Ok(UplinkPath {
            queues: up.queues,
            mac: MacAddr(up.mac),
            src,
            written: AtomicU64::new(0),
        })
    }

    /// The uplink's interface name.
    pub(crate) fn name(&self) -> &str {
        self.queues[0].name()
    }
}

/// What became of a super-frame offered to the uplink.
#[derive(Debug)]
pub(crate) enum Tunnel {
    /// Written: the kernel sends it as `segments` datagrams.
    Sent { segments: usize },
    /// It cannot go this way (IPv6 VTEP, too long): segment it here.
    Unfit,
    /// The kernel refused it as a GSO frame it cannot take: segment it here, and stop
    /// offering super-frames to the uplink.
    Refused(io::Error),
    /// Writing it failed otherwise: segment it here.
    Failed(io::Error),
}

/// A worker's writer of super-frames to the uplink: the header buffer and the outer IPv4
/// identification it counts on with.
#[derive(Debug)]
pub(crate) struct TunnelWriter {
    /// Virtio, outer and inner headers of the super-frame being written.
    header: [u8; tunnel::HEADER_ROOM],
    /// Outer IPv4 identification of the next super-frame's first segment.
    ip_id: u16,
}

impl TunnelWriter {
    /// The writer of worker `worker` (whose identifications start apart from the others').
    pub(crate) fn new(worker: usize) -> TunnelWriter {
        TunnelWriter {
            header: [0; tunnel::HEADER_ROOM],
            ip_id: (worker as u16).wrapping_mul(0x4000),
        }
    }

    /// Writes the super-frame `frame` (headers at `t`) of network `vni` to `dst` through
    /// queue `worker` of the uplink, from source port `src_port`, for the kernel to cut into
    /// `mss`-byte segments where the underlay needs it; `ecn` if the sender asked for TSO with
    /// ECN.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        &mut self,
        up: &UplinkPath,
        worker: usize,
        frame: &[u8],
        t: &TcpFrame,
        mss: usize,
        ecn: bool,
        vni: Vni,
        dst: SocketAddrV4,
        src_port: u16,
    ) -> Tunnel {
        let Ok(mss16) = u16::try_from(mss) else {
            return Tunnel::Unfit;
        };
        let outer = OuterV4 {
            dst_mac: up.mac,
            src_mac: UPLINK_SRC_MAC,
            src: up.src,
            dst: *dst.ip(),
            src_port,
            dst_port: dst.port(),
            id: self.ip_id,
            ttl: 64,
            vni,
        };
        let Some(n) = tunnel::super_frame_v4(frame, t, mss16, ecn, &outer, &mut self.header) else {
            return Tunnel::Unfit;
        };
        let segments = (t.end - t.payload).div_ceil(mss);
        let parts = [
            IoSlice::new(&self.header[..n]),
            IoSlice::new(&frame[t.payload..t.end]),
        ];
        let queue = &up.queues[worker % up.queues.len()];
        match queue.write_vectored(&parts) {
            Ok(_) => {
                self.ip_id = self.ip_id.wrapping_add(segments as u16);
                up.written.fetch_add(1, Ordering::Relaxed);
                Tunnel::Sent { segments }
            }
            Err(e) if ovnet_sys::tap::refuses_gso(&e) => Tunnel::Refused(e),
            Err(e) => Tunnel::Failed(e),
        }
    }
}

/// Watches that the host forwards what is written to the uplink: a firewall's FORWARD chain
/// may drop it (Docker sets the chain's policy to DROP). Once a second, if at least
/// [`ForwardingCheck::MIN_WRITTEN`] super-frames were written but the host's forwarded-packet
/// count grew by less than half as many, tunnel GSO is turned off and super-frames are
/// segmented and sent from the UDP sockets again; TCP retransmits what was lost.
#[derive(Debug)]
pub(crate) struct ForwardingCheck {
    at: u64,
    written: u64,
    forwarded: Option<u64>,
}

impl ForwardingCheck {
    const MIN_WRITTEN: u64 = 8;

    /// How often the host's count is compared, in the data plane's milliseconds.
    const EVERY_MS: u64 = 1000;

    /// A check starting at `now` (ms), reading the calling thread's namespace's counts.
    pub(crate) fn new(now: u64) -> ForwardingCheck {
        ForwardingCheck {
            at: now,
            written: 0,
            forwarded: ovnet_sys::uplink::forwarded_datagrams().ok(),
        }
    }

    /// Compares what was written to `up` with what the host forwarded, at most once a
    /// second; turns `tunnel_gso` off if most of it was not.
    pub(crate) fn check(&mut self, up: &UplinkPath, tunnel_gso: &Capability, now: u64) {
        if now.saturating_sub(self.at) < Self::EVERY_MS || !tunnel_gso.is_on() {
            return;
        }
        self.at = now;
        let written = up.written.load(Ordering::Relaxed);
        if written == self.written {
            return;
        }
        let Ok(forwarded) = ovnet_sys::uplink::forwarded_datagrams() else {
            return;
        };
        let last = self.forwarded.replace(forwarded);
        let wrote = written - std::mem::replace(&mut self.written, written);
        let Some(last) = last else {
            return;
        };
        let got = forwarded.saturating_sub(last);
        if forwarding_blocked(wrote, got) {
            let why = format!(
                "the host forwarded {got} of {wrote} super-frames written to uplink {} (a \
                 firewall FORWARD rule dropping them?)",
                up.name()
            );
            if tunnel_gso.turn_off(&why) {
                log::warn!(
                    "{why}; segmenting super-frames from now on. Allow forwarding from \
                     interface {} to use UDP tunnel GSO",
                    up.name()
                );
            }
        }
    }
}

/// Whether the host forwarded too few of the super-frames written to the uplink.
fn forwarding_blocked(written: u64, forwarded: u64) -> bool {
    written >= ForwardingCheck::MIN_WRITTEN && forwarded < written / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uplink_is_given_up_only_when_most_super_frames_were_not_forwarded() {
        // Too few written to judge.
        assert!(!forwarding_blocked(7, 0));
        assert!(forwarding_blocked(8, 0));
        assert!(forwarding_blocked(100, 49));
        // Other forwarded traffic only adds to the count.
        assert!(!forwarding_blocked(100, 50));
        assert!(!forwarding_blocked(100, 5000));
    }

    #[test]
    fn an_ipv6_or_loopback_vtep_gets_no_uplink_and_says_why() {
        let e = UplinkPath::open("[2001:db8::1]:4789".parse().unwrap(), 1).unwrap_err();
        assert!(e.contains("IPv4"), "{e}");
        let e = UplinkPath::open("127.0.0.1:4789".parse().unwrap(), 1).unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
    }
}
