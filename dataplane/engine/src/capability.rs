//! What the data plane may ask of the kernel: the offloads it was configured to use, which the
//! kernel accepted at start, and which were turned off later, why and when. One
//! [`Capabilities`] per data plane; the packet path asks it before each offloaded send or write
//! (one atomic load), the refusal paths turn an offload off, and operators read it in
//! [`crate::DataplaneReport::offloads`].
//!
//! An offload is asked for by the configuration, probed when the data plane starts (the kernel
//! or the host may not allow it: [`OffloadState::Unavailable`]), and may be refused at run time
//! by the kernel (a send or TAP write fails with the refusal's error) or the host (a firewall
//! drops what the uplink carries). Then it is off for good, and the first refusal, with its
//! time, is kept ([`OffloadState::TurnedOff`]): what it cost stays visible.

use std::sync::OnceLock;
use std::time::SystemTime;

/// An offload the data plane can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Offload {
    /// Trains of datagrams leave in one UDP GSO `sendmsg` (`UDP_SEGMENT`, Linux 4.18).
    UdpGso,
    /// Datagrams arrive in runs, many per `recvmsg` (`UDP_GRO`, Linux 5.0).
    UdpGro,
    /// Received UDP datagrams of a flow are written to the TAP as one `GSO_UDP_L4` super-frame
    /// (Linux 6.2), with TAP offloads.
    UdpCoalesce,
    /// TCP super-frames leave through the uplink for the kernel to segment (UDP tunnel GSO,
    /// Linux 6.17).
    TunnelGso,
}

impl Offload {
    /// Every offload, in report order.
    pub const ALL: [Offload; 4] = [
        Offload::UdpGso,
        Offload::UdpGro,
        Offload::UdpCoalesce,
        Offload::TunnelGso,
    ];

    /// A stable snake_case name (for reports and the API).
    pub fn name(self) -> &'static str {
        match self {
            Offload::UdpGso => "udp_gso",
            Offload::UdpGro => "udp_gro",
            Offload::UdpCoalesce => "udp_coalesce",
            Offload::TunnelGso => "tunnel_gso",
        }
    }
}

impl std::fmt::Display for Offload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where one offload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffloadState {
    /// Not asked for by the configuration.
    Off,
    /// Asked for, but not available when the data plane started: why.
    Unavailable(String),
    /// In use.
    On,
    /// In use until the kernel or the host refused it.
    TurnedOff {
        /// The refusal, as the kernel or the check that saw it put it.
        reason: String,
        /// When.
        at: SystemTime,
    },
}

impl OffloadState {
    /// Whether the offload is in use.
    pub fn is_on(&self) -> bool {
        *self == OffloadState::On
    }
}

/// One offload's state: what start-up found, and the refusal that turned it off, if any.
#[derive(Debug)]
pub struct Capability {
    start: OffloadState,
    /// `start` is [`OffloadState::On`] (read on the packet path).
    usable: bool,
    /// Set once, by the first refusal.
    refused: OnceLock<(String, SystemTime)>,
}

impl Capability {
    /// An offload the configuration did not ask for.
    pub(crate) fn off() -> Capability {
        Capability::starting(OffloadState::Off)
    }

    /// An offload in use from the start.
    pub(crate) fn on() -> Capability {
        Capability::starting(OffloadState::On)
    }

    /// An offload asked for that the kernel or host did not allow at start, and why.
    pub(crate) fn unavailable(why: impl Into<String>) -> Capability {
        Capability::starting(OffloadState::Unavailable(why.into()))
    }

    fn starting(start: OffloadState) -> Capability {
        Capability {
            usable: start == OffloadState::On,
            start,
            refused: OnceLock::new(),
        }
    }

    /// Whether to use the offload now: on at start and not refused since.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.usable && self.refused.get().is_none()
    }

    /// Turns the offload off for good because of `reason`. True if this call did (it was on):
    /// the caller then logs it once; later refusals (sends already under way) change nothing.
    pub(crate) fn turn_off(&self, reason: impl std::fmt::Display) -> bool {
        self.is_on()
            && self
                .refused
                .set((reason.to_string(), SystemTime::now()))
                .is_ok()
    }

    /// The state now.
    pub fn state(&self) -> OffloadState {
        match self.refused.get() {
            Some((reason, at)) => OffloadState::TurnedOff {
                reason: reason.clone(),
                at: *at,
            },
            None => self.start.clone(),
        }
    }
}

/// Every offload of one data plane.
#[derive(Debug)]
pub struct Capabilities {
    pub(crate) udp_gso: Capability,
    pub(crate) udp_gro: Capability,
    pub(crate) udp_coalesce: Capability,
    pub(crate) tunnel_gso: Capability,
}

impl Capabilities {
    /// The state of one offload.
    pub fn get(&self, offload: Offload) -> &Capability {
        match offload {
            Offload::UdpGso => &self.udp_gso,
            Offload::UdpGro => &self.udp_gro,
            Offload::UdpCoalesce => &self.udp_coalesce,
            Offload::TunnelGso => &self.tunnel_gso,
        }
    }

    /// Every offload and its state, in [`Offload::ALL`] order.
    pub fn report(&self) -> Vec<(Offload, OffloadState)> {
        Offload::ALL
            .iter()
            .map(|&o| (o, self.get(o).state()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_turns_an_offload_off_once_and_is_kept_with_its_time() {
        let c = Capability::on();
        assert!(c.is_on());
        let before = SystemTime::now();
        assert!(c.turn_off("EINVAL from sendmsg"));
        assert!(!c.is_on());
        // Later refusals change nothing: the first one is what is reported.
        assert!(!c.turn_off("EIO"));
        match c.state() {
            OffloadState::TurnedOff { reason, at } => {
                assert_eq!(reason, "EINVAL from sendmsg");
                assert!(at >= before);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_offload_never_on_cannot_be_turned_off() {
        for c in [Capability::off(), Capability::unavailable("Linux 6.1")] {
            let start = c.state();
            assert!(!c.is_on());
            assert!(!c.turn_off("refused"));
            assert_eq!(c.state(), start);
        }
        assert_eq!(
            Capability::unavailable("no uplink").state(),
            OffloadState::Unavailable("no uplink".into())
        );
    }

    #[test]
    fn the_report_lists_every_offload_in_order() {
        let caps = Capabilities {
            udp_gso: Capability::on(),
            udp_gro: Capability::unavailable("Linux 4.19"),
            udp_coalesce: Capability::off(),
            tunnel_gso: Capability::on(),
        };
        assert!(caps.tunnel_gso.turn_off("forwarding blocked"));
        let r = caps.report();
        let names: Vec<&str> = r.iter().map(|(o, _)| o.name()).collect();
        assert_eq!(names, ["udp_gso", "udp_gro", "udp_coalesce", "tunnel_gso"]);
        assert!(r[0].1.is_on());
        assert!(!r[3].1.is_on());
        assert!(
            matches!(&r[3].1, OffloadState::TurnedOff { reason, .. } if reason == "forwarding blocked")
        );
    }
}
