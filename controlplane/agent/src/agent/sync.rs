//! Staying in step with the cluster: the loop that follows etcd (snapshot, watch, re-list after
//! any watch failure), and what happens at start (after the node's name is claimed, see
//! `registration`).
//!
//! Every change the agent learns goes through the view and then [`Agent::reconcile`]; the
//! state that metrics would report (whether etcd answers, the watch's revision, re-lists, the
//! lease) is decided here.

use std::time::Duration;

use crate::domain::Endpoint;
use crate::error::AgentError;
use crate::host::{self, veth_name};
use crate::store::{Record, WatchEvent};
use crate::view::View;

use super::reconcile::Local;
use super::Agent;

/// How long the loops wait before retrying an etcd that failed.
const RETRY: Duration = Duration::from_secs(1);

/// At most this many watch events go into the view before a reconcile (the lock is not held
/// for longer than that takes).
const BATCH: usize = 256;

impl Agent {
    /// Follows etcd forever: snapshot, reconcile, watch; re-list after any watch failure
    /// (a compacted start revision, a cancelled watch, a broken stream).
    pub async fn run_sync(&self) {
        // Nothing is changed on the node's behalf before its name is claimed.
        self.registered().await;
        let mut started = false;
        let mut warned = false;
        loop {
            let (rev, state) = match self.store.snapshot().await {
                Ok(s) => s,
                Err(e) => {
                    self.health.sync_failed(&e);
                    if !warned {
                        log::warn!(
                            "listing the cluster state: {e}; forwarding continues with the last \
                             known state"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if warned {
                log::info!("etcd is reachable again; state re-listed at revision {rev}");
                warned = false;
            }
            {
                let mut local = self.local.lock().await;
                local.view = View::from_state(state);
                if !started {
                    self.recover(&mut local, rev).await;
                } else {
                    self.reconcile(&mut local).await;
                }
            }
            self.health.listed(rev, !started);
            started = true;
            let mut watch = match self.store.watch(rev + 1).await {
                Ok(w) => w,
                Err(e) => {
                    self.health.sync_failed(&e);
                    log::warn!("watching the cluster state: {e}");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            while let Some(first) = watch.next().await {
                // Every event already here goes into the view before one reconcile: the
                // records of one change (an endpoint and its address) come together, and on a
                // busy cluster a pass per event is work every agent does for nothing.
                let mut local = self.local.lock().await;
                let mut applied = None;
                let mut resync = None;
                let mut next = Some(first);
                let mut taken = 0;
                while let Some(ev) = next {
                    match ev {
                        WatchEvent::Resync { reason } => {
                            resync = Some(reason);
                            break;
                        }
                        WatchEvent::Put { revision, .. } | WatchEvent::Delete { revision, .. } => {
                            local.view.apply(&ev);
                            applied = Some(revision);
                        }
                    }
                    taken += 1;
                    next = if taken < BATCH { watch.ready() } else { None };
                }
                if let Some(reason) = resync {
                    // The re-list that follows reconciles.
                    log::info!("watch ended ({reason}); re-listing");
                    break;
                }
                self.reconcile(&mut local).await;
                if let Some(revision) = applied {
                    self.health.applied(revision);
                }
            }
            self.health.watch_ended();
        }
    }

    /// After a (re)start, on the first snapshot (taken at `rev`): releases the endpoints of
    /// containers that vanished, builds or adopts everything else, and removes the devices no
    /// record explains.
    async fn recover(&self, local: &mut Local, rev: i64) {
        let mine: Vec<Endpoint> = local
            .view
            .local_endpoints(&self.cfg.node)
            .cloned()
            .collect();
        for ep in mine {
            if host::link_exists(&veth_name(&ep.id)) {
                continue;
            }
            // Its veth is gone: the container's namespace was deleted while we were away.
            log::info!(
                "container {} vanished while the agent was down: releasing its endpoint {}",
                ep.name,
                ep.ipv4
            );
            let key = Record::Endpoint(ep.clone()).key();
            if let Some(n) = local.view.network_by_id(&ep.network_id) {
                super::connect::forget_resolver(&ep.netns, &n.name);
            }
            match self
                .store
                .delete_endpoint(ep.network_id.as_str(), ep.name.as_str())
                .await
            {
                Ok(gone) => local.view.delete(&key, gone.revision),
                // Gone already, after the snapshot.
                Err(AgentError::NotFound(_)) => local.view.delete(&key, rev),
                Err(e) => log::warn!("releasing endpoint {}: {e}", ep.name),
            }
        }
        self.reconcile(local).await;
        // What was built, and the veths of every local endpoint, even one whose network could
        // not be set up just now: a container's interface is not removed for that.
        let mut keep = local.devices();
        keep.extend(
            local
                .view
                .local_endpoints(&self.cfg.node)
                .map(|ep| veth_name(&ep.id)),
        );
        match host::links_with_prefix(host::DEVICE_PREFIX).await {
            Ok(links) => {
                for l in links {
                    let ours = host::DEVICE_KINDS.iter().any(|p| l.starts_with(p));
                    if ours && !keep.contains(&l) {
                        log::info!("removing stale device {l}");
                        if let Err(e) = host::delete_link(&l).await {
                            log::warn!("{e}");
                        }
                    }
                }
            }
            Err(e) => log::warn!("{e}"),
        }
    }
}
