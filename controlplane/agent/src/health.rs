//! What the agent knows of its own health: whether it follows etcd (tables synced, the watch's
//! revision, how often it had to re-list) and whether its liveness lease is kept. The sync
//! loop and the registration write it; `/readyz`, the metrics and `ovctl doctor` read it.
//!
//! Plain atomics and one small lock for the last error's text: reading never waits on the
//! loops that write.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// The agent's health, shared by the loops that follow etcd and the readers.
#[derive(Debug, Default)]
pub struct Health {
    /// The last listing of etcd succeeded and its watch runs.
    synced: AtomicBool,
    /// The node is registered and its lease was renewed at the last attempt.
    lease_alive: AtomicBool,
    /// Revision of the last change applied (snapshot or watch event).
    revision: AtomicI64,
    /// Listings after the first (compacted or broken watches, etcd outages).
    resyncs: AtomicU64,
    /// Listings that failed.
    sync_failures: AtomicU64,
    /// Lease renewals that failed.
    lease_failures: AtomicU64,
    /// Why the last failing step failed, for `/readyz`; cleared when it succeeds again.
    sync_error: Mutex<Option<String>>,
    lease_error: Mutex<Option<String>>,
}

/// A copy of [`Health`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Tables follow etcd.
    pub synced: bool,
    /// The liveness lease is kept.
    pub lease_alive: bool,
    /// Revision of the last change applied.
    pub revision: i64,
    /// Listings after the first.
    pub resyncs: u64,
    /// Listings that failed.
    pub sync_failures: u64,
    /// Lease renewals that failed.
    pub lease_failures: u64,
    /// Why following etcd fails, while it does.
    pub sync_error: Option<String>,
    /// Why the lease cannot be kept, while it cannot.
    pub lease_error: Option<String>,
}

impl HealthSnapshot {
    /// Whether etcd answered the agent's last calls (both its listing and its lease).
    pub fn etcd_reachable(&self) -> bool {
        self.sync_error.is_none() && self.lease_error.is_none() && self.synced
    }

    /// `Ok` when the agent is ready: its tables follow etcd and its lease is kept; otherwise
    /// the reason, one line.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(e) = &self.sync_error {
            return Err(format!("not following etcd: {e}"));
        }
        if !self.synced {
            return Err("tables not synced yet: waiting for the first listing of etcd".into());
        }
        if let Some(e) = &self.lease_error {
            return Err(format!("liveness lease not kept: {e}"));
        }
        if !self.lease_alive {
            return Err("not registered in etcd yet".into());
        }
        Ok(())
    }
}

fn set(slot: &Mutex<Option<String>>, value: Option<String>) {
    // A panic while holding the lock leaves an Option behind: nothing to repair.
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = value;
}

fn get(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Health {
    /// A listing at `revision` was applied and its watch starts; `first` is the agent's first.
    pub fn listed(&self, revision: i64, first: bool) {
        if !first {
            self.resyncs.fetch_add(1, Ordering::Relaxed);
        }
        self.revision.store(revision, Ordering::Relaxed);
        set(&self.sync_error, None);
        self.synced.store(true, Ordering::Relaxed);
    }

    /// Listing or watching etcd failed.
    pub fn sync_failed(&self, error: &dyn std::fmt::Display) {
        self.sync_failures.fetch_add(1, Ordering::Relaxed);
        set(&self.sync_error, Some(error.to_string()));
        self.synced.store(false, Ordering::Relaxed);
    }

    /// The watch ended; the tables stay but follow etcd again only after the next listing.
    pub fn watch_ended(&self) {
        self.synced.store(false, Ordering::Relaxed);
    }

    /// A watch event at `revision` was applied.
    pub fn applied(&self, revision: i64) {
        self.revision.fetch_max(revision, Ordering::Relaxed);
    }

    /// The lease was granted or renewed.
    pub fn lease_kept(&self) {
        set(&self.lease_error, None);
        self.lease_alive.store(true, Ordering::Relaxed);
    }

    /// Granting or renewing the lease failed.
    pub fn lease_failed(&self, error: &dyn std::fmt::Display) {
        self.lease_failures.fetch_add(1, Ordering::Relaxed);
        set(&self.lease_error, Some(error.to_string()));
        self.lease_alive.store(false, Ordering::Relaxed);
    }

    /// The lease was given up (the agent stops).
    pub fn lease_released(&self) {
        self.lease_alive.store(false, Ordering::Relaxed);
    }

    /// The current state.
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            synced: self.synced.load(Ordering::Relaxed),
            lease_alive: self.lease_alive.load(Ordering::Relaxed),
            revision: self.revision.load(Ordering::Relaxed),
            resyncs: self.resyncs.load(Ordering::Relaxed),
            sync_failures: self.sync_failures.load(Ordering::Relaxed),
            lease_failures: self.lease_failures.load(Ordering::Relaxed),
            sync_error: get(&self.sync_error),
            lease_error: get(&self.lease_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_synced_and_the_lease_is_kept() {
        let h = Health::default();
        assert!(h.snapshot().readiness().unwrap_err().contains("not synced"));
        h.listed(10, true);
        assert!(h
            .snapshot()
            .readiness()
            .unwrap_err()
            .contains("not registered"));
        h.lease_kept();
        assert_eq!(h.snapshot().readiness(), Ok(()));
        assert!(h.snapshot().etcd_reachable());

        h.lease_failed(&"etcd at http://x:2379 is unreachable");
        let r = h.snapshot().readiness().unwrap_err();
        assert!(r.contains("lease") && r.contains("unreachable"), "{r}");
        h.lease_kept();
        h.sync_failed(&"listing: deadline exceeded");
        let s = h.snapshot();
        assert!(!s.etcd_reachable());
        assert!(s.readiness().unwrap_err().contains("deadline exceeded"));
        assert_eq!((s.sync_failures, s.lease_failures), (1, 1));

        h.listed(20, false);
        h.applied(25);
        h.applied(22);
        let s = h.snapshot();
        assert_eq!((s.revision, s.resyncs), (25, 1));
        assert_eq!(s.readiness(), Ok(()));
        h.watch_ended();
        assert!(h.snapshot().readiness().is_err());
    }
}
