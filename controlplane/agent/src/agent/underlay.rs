//! The node's underlay MTU: read from the device holding the VTEP address at start (into the
//! node's record the agent registers) and every [`UNDERLAY_POLL`] after,
//! and written to the node's record in etcd when it differs from what the record says. Every
//! agent's view then gives its tables the new path MTUs ([`crate::domain::mtu`]), this one's
//! included (its own record comes back through the watch).
//!
//! Comparing with the record rather than with the last value read also repairs a record
//! written with an older value (the keep-alive re-registering with the record of the start).
//! Only the host that holds the node's name writes ([`crate::store::Store::record_underlay_mtu`]).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ovnet_sys::link;

use super::Agent;
use crate::store::UnderlayRecord;

/// How often the underlay MTU is read again: a change reaches every agent's tables within
/// this, plus etcd's watch. (Reading it is two system calls.)
pub const UNDERLAY_POLL: Duration = Duration::from_secs(5);

/// The device holding `vtep` and its MTU.
pub fn read(vtep: Ipv4Addr) -> Result<(String, u32), String> {
    let dev = link::holding(IpAddr::V4(vtep)).map_err(|e| e.to_string())?;
    let mtu = link::mtu(&dev).map_err(|e| e.to_string())?;
    Ok((dev, mtu))
}

impl Agent {
    /// This node's underlay MTU now, or `None` (logged) if it cannot be read.
    pub(super) fn underlay_mtu(&self) -> Option<u32> {
        match read(*self.cfg.vtep.ip()) {
            Ok((_, mtu)) => Some(mtu),
            Err(e) => {
                log::warn!("reading the underlay MTU: {e}; peers will not know it");
                None
            }
        }
    }

    /// Reads the underlay MTU every [`UNDERLAY_POLL`] and writes it to the node's record when
    /// the record says otherwise. Runs forever; errors are logged once until they clear.
    pub async fn run_underlay_watch(&self) {
        let mut ticker = tokio::time::interval(UNDERLAY_POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            let outcome = self.check_underlay().await;
            match outcome {
                Ok(()) if failing => {
                    log::info!("the underlay MTU is read and recorded again");
                    failing = false;
                }
                Err(e) if !failing => {
                    log::warn!("{e}; retrying every {UNDERLAY_POLL:?}");
                    failing = true;
                }
                _ => {}
            }
        }
    }

    /// One pass of [`Agent::run_underlay_watch`].
    async fn check_underlay(&self) -> Result<(), String> {
        let (dev, mtu) =
            read(*self.cfg.vtep.ip()).map_err(|e| format!("reading the underlay MTU: {e}"))?;
        let recorded = self
            .published
            .read()
            .nodes
            .iter()
            .find(|n| n.name == self.cfg.node)
            .map(|n| n.underlay_mtu);
        // Not registered yet (registration writes it), or the view already agrees.
        if recorded.is_none_or(|m| m == Some(mtu)) {
            return Ok(());
        }
        let me = self.node_record();
        let done = self
            .store
            .record_underlay_mtu(&me, mtu)
            .await
            .map_err(|e| format!("recording the underlay MTU {mtu} of {dev}: {e}"))?;
        match done {
            UnderlayRecord::Written { was: Some(was) } => log::info!(
                "underlay {dev} MTU changed from {was} to {mtu}: node record updated, paths \
                 to this node carry {} bytes inside VXLAN",
                crate::domain::mtu::path_mtu(Some(mtu), None)
            ),
            UnderlayRecord::Written { was: None } => {
                log::info!("underlay {dev} MTU {mtu} recorded in the node record")
            }
            UnderlayRecord::Unchanged | UnderlayRecord::NotHeld => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_an_underlay_like_any_other() {
        let (dev, mtu) = read(Ipv4Addr::LOCALHOST).unwrap();
        assert_eq!(dev, "lo");
        assert!(mtu >= 1500, "{mtu}");
        let e = read(Ipv4Addr::new(203, 0, 113, 77)).unwrap_err();
        assert!(e.contains("203.0.113.77"), "{e}");
    }
}
