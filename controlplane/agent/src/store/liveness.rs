//! Nodes and their liveness: the registration, the lease behind `{p}alive/{name}` and the task
//! that keeps it.
//!
//! [`Store::register_node`] writes the node's record and its leased `alive` key;
//! [`Store::keep_alive`] then renews the lease every `ttl / 3`. If etcd says the lease is gone
//! (it expired while this agent could not reach etcd, or etcd lost its data), the task grants a
//! new lease and writes both keys again, so the node comes back alive by itself. While etcd is
//! unreachable it keeps trying, logging once when it starts failing and once when it recovers.
//! Registering claims the node's name ([`Store::claim_node`]); should the name have moved to
//! another host while this agent was cut off, the task stops and says so
//! ([`KeepAlive::lost`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::members::Retry;
use super::{Record, RecordKey, Store};
use crate::domain::identity::NodeTaken;
use crate::domain::{Node, NodeName};
use crate::error::AgentError;
use crate::health::Health;

/// Shortest renewal period, whatever the TTL.
const MIN_RENEW_PERIOD: Duration = Duration::from_millis(200);

/// An etcd lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// etcd lease ID.
    pub id: i64,
    /// TTL granted by etcd.
    pub ttl: Duration,
}

/// The running keep-alive of one node. Dropping it stops renewing (the node then turns dead
/// when the TTL runs out); [`KeepAlive::stop`] also revokes the lease so it turns dead at once.
#[derive(Debug)]
pub struct KeepAlive {
    task: JoinHandle<()>,
    lease_id: Arc<AtomicI64>,
    store: Store,
    ttl: Duration,
    lost: watch::Receiver<Option<NodeTaken>>,
}

impl KeepAlive {
    /// Resolves when the node's name is lost to another host (the task has stopped then);
    /// never while the name is held. Independent of `self`, so it can be awaited while the
    /// keep-alive is stored elsewhere.
    pub fn lost(&self) -> impl std::future::Future<Output = NodeTaken> + Send + 'static {
        let mut rx = self.lost.clone();
        async move {
            loop {
                if let Some(t) = rx.borrow_and_update().clone() {
                    return t;
                }
                if rx.changed().await.is_err() {
                    // The task is gone without a word (aborted): nothing more will come.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// The lease currently held (it changes when the task had to register again).
    pub fn lease_id(&self) -> i64 {
        self.lease_id.load(Ordering::Relaxed)
    }

    /// Stops renewing and revokes the lease: the node is reported dead immediately.
    pub async fn stop(self) -> Result<(), AgentError> {
        self.task.abort();
        let lease = Lease {
            id: self.lease_id(),
            ttl: self.ttl,
        };
        self.store.revoke_lease(&lease).await
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Keeper = (LeaseKeeper, LeaseKeepAliveStream);

impl Store {
    /// Registers (or re-registers) a node: claims its name ([`Store::claim_node`], never
    /// replacing another host) and writes, on a new lease of `ttl` (rounded up to whole
    /// seconds), `{p}alive/{name}`. Keep the lease with [`Store::keep_alive`].
    pub async fn register_node(&self, node: &Node, ttl: Duration) -> Result<Lease, AgentError> {
        self.claim_node(node, ttl, false)
            .await
            .map(|(lease, _)| lease)
    }

    /// A new lease of `ttl`, rounded up to whole seconds.
    pub(super) async fn grant(&self, ttl: Duration) -> Result<Lease, AgentError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = i64::try_from(secs.max(1)).unwrap_or(i64::MAX);
        // A lease granted twice is harmless: the one not used expires.
        let grant = self
            .call("lease grant", Retry::Always, |c| async move {
                c.lease_client().grant(secs, None).await
            })
            .await?;
        Ok(Lease {
            id: grant.id(),
            ttl: Duration::from_secs(u64::try_from(grant.ttl()).unwrap_or(1)),
        })
    }

    /// Revokes a lease: the node's `{p}alive/` key goes at once, its registration stays.
    pub async fn revoke_lease(&self, lease: &Lease) -> Result<(), AgentError> {
        let id = lease.id;
        let revoked = self
            .call("lease revoke", Retry::Always, |c| async move {
                c.lease_client().revoke(id).await
            })
            .await;
        match revoked {
            Ok(_) => Ok(()),
            // Already expired or revoked: the goal is reached.
            Err(AgentError::Etcd {
                source: etcd_client::Error::GRpcStatus(s),
                ..
            }) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Registered nodes, by name, with whether their liveness key exists.
    pub async fn list_nodes(&self) -> Result<Vec<(Node, bool)>, AgentError> {
        let (rev, nodes) = self.range(&self.keys.nodes(), 0).await?;
        let (_, alive) = self.range(&self.keys.alives(), rev).await?;
        let alive: HashSet<NodeName> = alive
            .iter()
            .filter_map(|kv| match self.keys.parse(kv.key()) {
                Some(RecordKey::Alive { name }) => Some(name),
                _ => None,
            })
            .collect();
        Ok(self.records(&nodes, |r| match r {
            Record::Node(n) => {
                let up = alive.contains(&n.name);
                Some((n, up))
            }
            _ => None,
        }))
    }

    /// Starts renewing `lease` for `node` every `ttl / 3` on the current tokio runtime.
    ///
    /// `node` is what gets written again if the lease is lost, so pass the same record given
    /// to [`Store::register_node`].
    /// Each renewal's outcome is written to `health`.
    pub fn keep_alive(&self, node: Node, lease: Lease, health: Arc<Health>) -> KeepAlive {
        let lease_id = Arc::new(AtomicI64::new(lease.id));
        let (tx, lost) = watch::channel(None);
        let task = tokio::spawn(run(self.clone(), node, lease, lease_id.clone(), health, tx));
        KeepAlive {
            task,
            lease_id,
            store: self.clone(),
            ttl: lease.ttl,
            lost,
        }
    }

    /// One renewal. `Ok(false)`: etcd says the lease no longer exists.
    async fn renew(&self, keeper: &mut Option<Keeper>, id: i64) -> Result<bool, AgentError> {
        let Some((k, stream)) = keeper.as_mut() else {
            // Opening the stream already renews once and checks the lease exists.
            let opened = self
                .call("lease keep-alive", Retry::Always, |c| async move {
                    match c.lease_client().keep_alive(id).await {
                        Ok(pair) => Ok(Some(pair)),
                        Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            return Ok(match opened {
                Some(pair) => {
                    *keeper = Some(pair);
                    true
                }
                None => false,
            });
        };
        let round_trip = async {
            k.keep_alive().await?;
            stream.message().await
        };
        match tokio::time::timeout(self.timeout, round_trip).await {
            Ok(Ok(Some(resp))) => Ok(resp.ttl() > 0),
            Ok(Ok(None)) => Err(self.unavailable("lease keep-alive: stream closed".to_owned())),
            Ok(Err(e)) => Err(AgentError::from_etcd(
                e,
                &self.endpoints,
                "lease keep-alive",
            )),
            Err(_) => Err(self.unavailable(format!(
                "lease keep-alive: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

async fn run(
    store: Store,
    node: Node,
    mut lease: Lease,
    lease_id: Arc<AtomicI64>,
    health: Arc<Health>,
    lost: watch::Sender<Option<NodeTaken>>,
) {
    let period = (lease.ttl / 3).max(MIN_RENEW_PERIOD);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keeper: Option<Keeper> = None;
    let mut healthy = true;
    loop {
        ticker.tick().await;
        let outcome = match store.renew(&mut keeper, lease.id).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                log::warn!(
                    "lease {:x} of node {} is gone (expired or etcd lost it): registering again",
                    lease.id,
                    node.name
                );
                keeper = None;
                match store.register_node(&node, lease.ttl).await {
                    Ok(new) => {
                        log::info!(
                            "registered node {} again with lease {:x}",
                            node.name,
                            new.id
                        );
                        lease = new;
                        lease_id.store(new.id, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(AgentError::NodeTaken(t)) => {
                        let t = t.taken_over();
                        log::error!("{t}");
                        let _ = lost.send(Some(t));
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                // The stream may be half-broken; open a new one next time.
                keeper = None;
                Err(e)
            }
        };
        match &outcome {
            Ok(()) => health.lease_kept(),
            Err(e) => health.lease_failed(e),
        }
        match outcome {
            Ok(()) if !healthy => {
                log::info!("liveness of node {} renewed again", node.name);
                healthy = true;
            }
            Err(e) if healthy => {
                let cause = match &e {
                    AgentError::Unavailable { cause, .. } => format!(" ({cause})"),
                    _ => String::new(),
                };
                log::warn!(
                    "cannot renew liveness of node {}: {e}{cause}; retrying every {period:?}",
                    node.name
                );
                healthy = false;
            }
            _ => {}
        }
    }
}
