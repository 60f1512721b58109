//! Everything at once, then every change: [`Store::snapshot`] and a typed watch over the whole
//! prefix.
//!
//! [`Store::watch`] opens one etcd watch on `{p}` from a revision and decodes each change into
//! a [`WatchEvent`]. Claims (`vnis/`, `subnets/`, `ips/`) are not reported: they change only
//! together with the records that own them. A record written damaged is reported as deleted
//! (and logged): a snapshot would not list it either, so the view is the same either way.
//!
//! A watch that cannot go on — its start revision was compacted, etcd cancelled it, the
//! stream broke (etcd restarted, network lost) — ends with exactly one
//! [`WatchEvent::Resync`], after which [`Watch::next`] returns `None`. The caller then takes a
//! fresh [`Store::snapshot`] and watches again from its revision + 1; nothing is ever skipped
//! silently.

use std::collections::HashSet;

use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::keys::decode_record;
use super::members::Retry;
use super::{Keys, Record, Store};
use crate::domain::{Endpoint, ExternalVtep, Network, Node, NodeName};
use crate::error::AgentError;

/// Events buffered between the etcd stream and a slow consumer before the reader waits.
const WATCH_BUFFER: usize = 1024;

/// Everything under the prefix at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Networks, by name.
    pub networks: Vec<Network>,
    /// Endpoints of all networks, by network ID then name.
    pub endpoints: Vec<Endpoint>,
    /// Registered nodes, by name, with whether their liveness lease is held.
    pub nodes: Vec<(Node, bool)>,
    /// External VTEPs of all networks, by network ID then address.
    pub vteps: Vec<ExternalVtep>,
}

/// One change under the prefix, or the end of the watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// A record was created or replaced.
    Put {
        /// etcd revision of the change.
        revision: i64,
        /// The new value.
        record: Record,
    },
    /// A record was deleted (for `Alive`: the node's lease expired or was revoked).
    Delete {
        /// etcd revision of the change.
        revision: i64,
        /// Which record.
        key: super::RecordKey,
        /// Its last value, when etcd still had it (it may have been compacted).
        prev: Option<Record>,
    },
    /// The watch ended and events may have been missed: take a new snapshot and watch again
    /// from its revision + 1. Always the last event.
    Resync {
        /// Why, for logs.
        reason: String,
    },
}

/// A running watch. Dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
    task: JoinHandle<()>,
}

impl Watch {
    /// The next event; `None` only after a [`WatchEvent::Resync`] was returned.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }

    /// The next event if one is here already; `None` otherwise, without waiting.
    pub fn ready(&mut self) -> Option<WatchEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Everything under the prefix at one revision. Follow it with `watch(revision + 1)`.
    pub async fn snapshot(&self) -> Result<(i64, State), AgentError> {
        // Each kind of record, all at the revision of the first read: claims and keys the
        // agent does not know are not read at all.
        let (rev, mut kvs) = self.range(&self.keys.networks(), 0).await?;
        for kind in [
            self.keys.all_endpoints(),
            self.keys.nodes(),
            self.keys.alives(),
            self.keys.all_vteps(),
        ] {
            kvs.extend(self.range(&kind, rev).await?.1);
        }
        let mut state = State::default();
        let mut nodes = Vec::new();
        let mut alive: HashSet<NodeName> = HashSet::new();
        for kv in &kvs {
            match self.record(kv) {
                Some(Record::Network(n)) => state.networks.push(n),
                Some(Record::Endpoint(e)) => state.endpoints.push(e),
                Some(Record::Node(n)) => nodes.push(n),
                Some(Record::Alive(name)) => {
                    alive.insert(name);
                }
                Some(Record::Vtep(v)) => state.vteps.push(v),
                None => {}
            }
        }
        state.nodes = nodes
            .into_iter()
            .map(|n| {
                let up = alive.contains(&n.name);
                (n, up)
            })
            .collect();
        Ok((rev, state))
    }

    /// Watches every record under the prefix from `from_revision` (inclusive; usually the
    /// snapshot's revision + 1; 0 means "from now").
    ///
    /// Returns once etcd has accepted the watch, so a change made after this returns is
    /// delivered. Fails with [`AgentError::Unavailable`] if etcd does not answer in time.
    pub async fn watch(&self, from_revision: i64) -> Result<Watch, AgentError> {
        let mut opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify();
        if from_revision > 0 {
            opts = opts.with_start_revision(from_revision);
        }
        let prefix = self.keys.prefix().to_owned();
        // Opened on one member, and waiting for its "created" answer (or its refusal) before
        // handing the watch out.
        let ((stream, first), member) = self
            .call_member("watch", Retry::Always, |c| {
                let (prefix, opts) = (prefix.clone(), opts.clone());
                async move {
                    let mut stream = c.watch_client().watch(prefix, Some(opts)).await?;
                    let first = stream.message().await?;
                    Ok((stream, first))
                }
            })
            .await?;
        let first = first
            .ok_or_else(|| self.unavailable("watch: stream closed before it started".to_owned()))?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let gone = Gone {
            url: self.members.url(member).to_owned(),
            signal: self.members.down_signal(member),
        };
        let task = tokio::spawn(pump(
            self.keys.clone(),
            stream,
            first,
            from_revision,
            gone,
            tx,
        ));
        Ok(Watch { rx, task })
    }
}

/// The member a watch is open on, and the signal that it was set aside.
struct Gone {
    url: String,
    signal: watch::Receiver<u64>,
}

/// Forwards decoded events until the watch ends or the receiver goes away.
async fn pump(
    keys: Keys,
    mut stream: WatchStream,
    first: WatchResponse,
    from_revision: i64,
    mut gone: Gone,
    tx: mpsc::Sender<WatchEvent>,
) {
    let mut next = Some(first);
    loop {
        let message = async {
            tokio::select! {
                m = stream.message() => Some(m),
                // The member stopped answering: its stream may never say so.
                _ = gone.signal.changed() => None,
            }
        };
        let resp = match next.take() {
            Some(r) => r,
            None => match message.await {
                None => {
                    let reason = format!("etcd member {} stopped answering", gone.url);
                    let _ = tx.send(resync(reason)).await;
                    return;
                }
                Some(Ok(Some(r))) => r,
                Some(Ok(None)) => {
                    let _ = tx
                        .send(resync("the etcd watch stream was closed".to_owned()))
                        .await;
                    return;
                }
                Some(Err(e)) => {
                    let _ = tx.send(resync(format!("the etcd watch broke: {e}"))).await;
                    return;
                }
            },
        };
        if resp.compact_revision() > 0 {
            let reason = format!(
                "revision {from_revision} is compacted (oldest kept: {})",
                resp.compact_revision()
            );
            let _ = tx.send(resync(reason)).await;
            return;
        }
        if resp.canceled() {
            let reason = format!("etcd cancelled the watch: {}", resp.cancel_reason());
            let _ = tx.send(resync(reason)).await;
            return;
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let Some(key) = keys.parse(kv.key()) else {
                continue;
            };
            let event = match ev.event_type() {
                EventType::Put => match decode_record(&key, kv.value()) {
                    Ok(record) => WatchEvent::Put {
                        revision: kv.mod_revision(),
                        record,
                    },
                    Err(e) => {
                        log::warn!(
                            "watch: the record at {} was written damaged ({e}): taken as deleted",
                            String::from_utf8_lossy(kv.key())
                        );
                        WatchEvent::Delete {
                            revision: kv.mod_revision(),
                            key,
                            prev: None,
                        }
                    }
                },
                EventType::Delete => WatchEvent::Delete {
                    revision: kv.mod_revision(),
                    prev: ev
                        .prev_kv()
                        .and_then(|p| decode_record(&key, p.value()).ok()),
                    key,
                },
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
    }
}

fn resync(reason: String) -> WatchEvent {
    WatchEvent::Resync { reason }
}
