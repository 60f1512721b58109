//! The node's underlay MTU: read at start (into the node's record the agent registers) and
//! every [`UNDERLAY_POLL`] after, and written to the node's record in etcd when it differs
//! from what the record says. Every agent's view then gives its tables the new path MTUs
//! ([`crate::domain::mtu`]), this one's included (its own record comes back through the watch).
//!
//! The underlay is the device holding the VTEP address, unless that is the loopback: on an L3
//! fabric a host's VTEP is often a host address on `lo` that the fabric routes to it, and the
//! VXLAN traffic leaves by the routes to the peers, so their MTU counts (the smallest, while a
//! peer is known), not `lo`'s 65536, which no record may hold.
//!
//! Comparing with the record rather than with the last value read also repairs a record
//! written with an older value (the keep-alive re-registering with the record of the start).
//! Only the host that holds the node's name writes ([`crate::store::Store::record_underlay_mtu`]).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ovnet_sys::{link, udp};

use super::Agent;
use crate::store::UnderlayRecord;

/// How often the underlay MTU is read again: a change reaches every agent's tables within
/// this, plus etcd's watch. (Reading it is two system calls, four per peer for a VTEP on the
/// loopback.)
pub const UNDERLAY_POLL: Duration = Duration::from_secs(5);

/// Where the underlay MTU of `vtep` comes from, and what it is (`None`: a VTEP on the
/// loopback with no route to a peer yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// `eth0`, or `the routes from lo to 3 peers`, for messages.
    pub source: String,
    /// The MTU to record.
    pub mtu: Option<u32>,
}

/// The underlay of `vtep`, whose peers' VTEPs are `peers`: the device holding the address
/// and its MTU or, for an address on the loopback, the smallest MTU of the routes from it to
/// the peers.
pub fn read(vtep: Ipv4Addr, peers: &[Ipv4Addr]) -> Result<Underlay, String> {
    let dev = link::holding(IpAddr::V4(vtep)).map_err(|e| e.to_string())?;
    if !link::is_loopback(&dev).map_err(|e| e.to_string())? {
        let mtu = link::mtu(&dev).map_err(|e| e.to_string())?;
        return Ok(Underlay {
            source: dev,
            mtu: Some(mtu),
        });
    }
    let routes: Vec<u32> = peers
        .iter()
        .filter(|p| **p != vtep)
        .filter_map(|p| udp::route_mtu(vtep, *p).ok())
        .collect();
    Ok(Underlay {
        source: format!(
            "the routes from {dev} to {} peer{}",
            routes.len(),
            if routes.len() == 1 { "" } else { "s" }
        ),
        mtu: routes.into_iter().min(),
    })
}

impl Agent {
    /// This node's underlay now, from the peers this agent knows of.
    fn underlay(&self) -> Result<Underlay, String> {
        let me = *self.cfg.vtep.ip();
        let peers: Vec<Ipv4Addr> = self
            .published
            .read()
            .nodes
            .iter()
            .filter(|n| n.name != self.cfg.node)
            .map(|n| n.vtep)
            .collect();
        read(me, &peers)
    }

    /// This node's underlay MTU now, or `None` (logged) if it cannot be read.
    pub(super) fn underlay_mtu(&self) -> Option<u32> {
        match self.underlay() {
            Ok(u) => u.mtu,
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
        let Underlay { source, mtu } = self
            .underlay()
            .map_err(|e| format!("reading the underlay MTU: {e}"))?;
        // A VTEP on the loopback with no route to a peer yet: nothing to say.
        let Some(mtu) = mtu else {
            return Ok(());
        };
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
            .map_err(|e| format!("recording the underlay MTU {mtu} ({source}): {e}"))?;
        match done {
            UnderlayRecord::Written { was: Some(was) } => log::info!(
                "underlay MTU changed from {was} to {mtu} ({source}): node record updated, \
                 paths to this node carry {} bytes inside VXLAN",
                crate::domain::mtu::path_mtu(Some(mtu), None)
            ),
            UnderlayRecord::Written { was: None } => {
                log::info!("underlay MTU {mtu} ({source}) recorded in the node record")
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
    fn an_address_on_the_loopback_takes_the_routes_to_the_peers() {
        // Every route from 127.0.0.1 stays on lo: a route carries at most 65535 bytes, which
        // a node record may hold (lo's own 65536 it may not).
        let u = read(Ipv4Addr::LOCALHOST, &[Ipv4Addr::new(127, 0, 0, 2)]).unwrap();
        assert_eq!(u.mtu, Some(65_535));
        assert_eq!(u.source, "the routes from lo to 1 peer");
        // No peer (or only itself) yet: unknown, not lo's MTU.
        let alone = read(Ipv4Addr::LOCALHOST, &[Ipv4Addr::LOCALHOST]).unwrap();
        assert_eq!(alone.mtu, None);
        let e = read(Ipv4Addr::new(203, 0, 113, 77), &[]).unwrap_err();
        assert!(e.contains("203.0.113.77"), "{e}");
    }
}
