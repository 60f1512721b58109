//! Storm control: budgets for broadcast, multicast and unknown-unicast (BUM) replication.
//!
//! Head-end replication turns one frame read from the TAP into one datagram per VTEP of the
//! flood list (one per segment and VTEP for a 64 KB super-frame), so a container that
//! broadcasts in a loop multiplies its traffic by the number of peers. Each network has a
//! token bucket of replicas (datagrams sent for flooded frames), and so has each of its local
//! endpoints (by source MAC); a flooded frame takes as many tokens as it makes datagrams from
//! both, or is dropped whole and counted ([`DropReason::BumRateLimited`]). Unicast to known
//! MACs never touches them.
//!
//! The buckets are lock-free (two atomics each) and survive table swaps: a network's new
//! [`Storm`] takes over the buckets of the MACs it still has.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use ovnet_wire::MacAddr;

use crate::counters::DropReason;
use crate::fdb::{FxHashMap, Table};

/// Replication budgets, in datagrams per second, each with a burst of one second's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BumLimits {
    /// Datagrams per second the flooded frames of one local endpoint (source MAC) may make;
    /// 0: no limit.
    pub per_source: u32,
    /// Datagrams per second the flooded frames of one network may make; 0: no limit.
    pub per_network: u32,
}

impl Default for BumLimits {
    /// 5 000 per endpoint and 20 000 per network: ARP, ND and discovery protocols need a few
    /// per second; 20 000 MTU-sized datagrams are about 240 Mbit/s of underlay, and one second
    /// of burst covers a 64 KB super-frame (46 segments) flooded to 100 peers.
    fn default() -> BumLimits {
        BumLimits {
            per_source: 5_000,
            per_network: 20_000,
        }
    }
}

/// Tokens are counted in thousandths of a datagram, so that a millisecond of refill is whole.
const MILLI: u64 = 1000;

/// A token bucket of datagrams refilled at `rate` per second up to one second's worth.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    /// Datagrams per second, and the most the bucket holds.
    rate: u64,
    /// Thousandths of a datagram available.
    tokens: AtomicU64,
    /// The caller's milliseconds at the last refill.
    last_ms: AtomicU64,
}

impl TokenBucket {
    /// A full bucket of `rate` datagrams per second, refilled from `now_ms` on.
    pub(crate) fn new(rate: u32, now_ms: u64) -> TokenBucket {
        let rate = u64::from(rate);
        TokenBucket {
            rate,
            tokens: AtomicU64::new(rate * MILLI),
            last_ms: AtomicU64::new(now_ms),
        }
    }

    /// Takes `n` datagrams' worth at `now_ms` if the bucket holds them; false (and nothing
    /// taken) if not.
    pub(crate) fn take(&self, n: u64, now_ms: u64) -> bool {
        self.refill(now_ms);
        let want = n.saturating_mul(MILLI);
        self.tokens
            .fetch_update(Relaxed, Relaxed, |t| t.checked_sub(want))
            .is_ok()
    }

    /// Gives back `n` datagrams' worth taken by [`TokenBucket::take`].
    pub(crate) fn give_back(&self, n: u64) {
        self.tokens.fetch_add(n.saturating_mul(MILLI), Relaxed);
        self.tokens.fetch_min(self.rate * MILLI, Relaxed);
    }

    /// Adds what the time since the last refill earned; one thread wins each interval.
    fn refill(&self, now_ms: u64) {
        let last = self.last_ms.load(Relaxed);
        if now_ms <= last
            || self
                .last_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        // rate per second is rate thousandths per millisecond.
        let earned = (now_ms - last).saturating_mul(self.rate);
        self.tokens
            .fetch_add(earned.min(self.rate * MILLI), Relaxed);
        self.tokens.fetch_min(self.rate * MILLI, Relaxed);
    }
}

/// The replication budgets of one network: its own and each local endpoint's.
#[derive(Debug, Default)]
pub(crate) struct Storm {
    network: Option<Arc<TokenBucket>>,
    sources: FxHashMap<MacAddr, Arc<TokenBucket>>,
}

impl Storm {
    /// The budgets of a network with `table`'s local endpoints under `limits`, keeping the
    /// buckets `previous` had for them (and for the network) so that a table swap refills
    /// nothing.
    pub(crate) fn new(
        limits: BumLimits,
        table: &Table,
        previous: Option<&Storm>,
        now_ms: u64,
    ) -> Storm {
        let bucket = |rate: u32, old: Option<&Arc<TokenBucket>>| {
            old.filter(|b| b.rate == u64::from(rate))
                .cloned()
                .unwrap_or_else(|| Arc::new(TokenBucket::new(rate, now_ms)))
        };
        let network = (limits.per_network > 0).then(|| {
            bucket(
                limits.per_network,
                previous.and_then(|p| p.network.as_ref()),
            )
        });
        let sources = if limits.per_source == 0 {
            FxHashMap::default()
        } else {
            table
                .local_macs
                .iter()
                .map(|mac| {
                    let old = previous.and_then(|p| p.sources.get(mac));
                    (*mac, bucket(limits.per_source, old))
                })
                .collect()
        };
        Storm { network, sources }
    }

    /// Whether a frame from `src` flooded as `replicas` datagrams fits both budgets at
    /// `now_ms`; takes the tokens if so.
    pub(crate) fn admit(
        &self,
        src: &MacAddr,
        replicas: u64,
        now_ms: u64,
    ) -> Result<(), DropReason> {
        let source = self.sources.get(src);
        if let Some(b) = source {
            if !b.take(replicas, now_ms) {
                return Err(DropReason::BumRateLimited);
            }
        }
        if let Some(n) = &self.network {
            if !n.take(replicas, now_ms) {
                if let Some(b) = source {
                    b.give_back(replicas);
                }
                return Err(DropReason::BumRateLimited);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fdb::NetworkTable;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0x42, 10, 0, 0, last])
    }

    fn table(macs: &[u8]) -> Table {
        let mut t = NetworkTable::new();
        t.local_macs = macs.iter().map(|&m| mac(m)).collect();
        Table::compile(&t)
    }

    #[test]
    fn a_bucket_holds_one_second_and_refills_by_the_millisecond() {
        let b = TokenBucket::new(100, 0);
        assert!(b.take(100, 0));
        assert!(!b.take(1, 0));
        assert!(!b.take(1, 9), "9 ms earn 0.9 datagrams");
        assert!(b.take(1, 10));
        // Idle for a minute: still one second's worth, no more.
        assert!(b.take(100, 60_000));
        assert!(!b.take(1, 60_000));
        // A clock that goes back earns nothing.
        assert!(!b.take(1, 1));
        b.give_back(5);
        assert!(b.take(5, 60_000));
    }

    #[test]
    fn each_source_and_the_network_have_their_own_budget() {
        let limits = BumLimits {
            per_source: 10,
            per_network: 15,
        };
        let s = Storm::new(limits, &table(&[2, 3]), None, 0);
        // A super-frame flooded to 4 peers as 2 segments each: 8 datagrams.
        assert_eq!(s.admit(&mac(2), 8, 0), Ok(()));
        assert_eq!(s.admit(&mac(2), 8, 0), Err(DropReason::BumRateLimited));
        // The other source has its own, but the network has only 7 left.
        assert_eq!(s.admit(&mac(3), 8, 0), Err(DropReason::BumRateLimited));
        assert_eq!(s.admit(&mac(3), 7, 0), Ok(()));
        assert_eq!(s.admit(&mac(3), 1, 0), Err(DropReason::BumRateLimited));
        // A second later, both are full again.
        assert_eq!(s.admit(&mac(3), 10, 1000), Ok(()));
        // A source that is not a local endpoint (the network's gateway) has only the
        // network's budget: 5 left of 15.
        assert_eq!(s.admit(&mac(9), 5, 1000), Ok(()));
        assert_eq!(s.admit(&mac(9), 1, 1000), Err(DropReason::BumRateLimited));
    }

    #[test]
    fn zero_is_no_limit() {
        let limits = BumLimits {
            per_source: 0,
            per_network: 0,
        };
        let s = Storm::new(limits, &table(&[2]), None, 0);
        assert_eq!(s.admit(&mac(2), u64::MAX, 0), Ok(()));
    }

    #[test]
    fn a_table_swap_keeps_the_buckets_of_remaining_endpoints() {
        let limits = BumLimits {
            per_source: 10,
            per_network: 100,
        };
        let old = Storm::new(limits, &table(&[2, 3]), None, 0);
        assert_eq!(old.admit(&mac(2), 10, 0), Ok(()));
        assert_eq!(old.admit(&mac(3), 10, 0), Ok(()));
        let new = Storm::new(limits, &table(&[2, 4]), Some(&old), 0);
        assert_eq!(new.admit(&mac(2), 1, 0), Err(DropReason::BumRateLimited));
        assert_eq!(
            new.admit(&mac(4), 10, 0),
            Ok(()),
            "a new endpoint, a full bucket"
        );
        // The network's bucket carried over too: 30 of 100 taken.
        assert_eq!(new.admit(&mac(9), 70, 0), Ok(()));
        assert_eq!(new.admit(&mac(9), 1, 0), Err(DropReason::BumRateLimited));
    }
}
