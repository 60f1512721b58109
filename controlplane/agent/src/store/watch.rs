//! Typed watch over the whole prefix.
//!
//! [`Store::watch`] opens one etcd watch on `{p}` from a revision and decodes each change into
//! a [`WatchEvent`]. Claims (`vnis/`, `subnets/`, `ips/`) are not reported: they change only
//! together with the records that own them.
//!
//! A watch that cannot go on — its start revision was compacted, etcd cancelled it, the
//! stream broke (etcd restarted, network lost) — ends with exactly one
//! [`WatchEvent::Resync`], after which [`Watch::next`] returns `None`. The caller then takes a
//! fresh [`Store::snapshot`] and watches again from its revision + 1; nothing is ever skipped
//! silently.

use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};
use ovnet_proto::{Endpoint, ExternalVtep, Message, Network, Node};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Keys, RecordKey, Store, StoreError};

/// Events buffered between the etcd stream and a slow consumer before the reader waits.
const WATCH_BUFFER: usize = 1024;

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `{p}networks/{name}`
    Network(Network),
    /// `{p}endpoints/{network_id}/{name}`
    Endpoint(Endpoint),
    /// `{p}nodes/{name}`
    Node(Node),
    /// `{p}alive/{name}`: the node with this name is alive (put) or dead (delete).
    Alive(String),
    /// `{p}vteps/{network_id}/{ip}:{port}`
    Vtep(ExternalVtep),
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
        key: RecordKey,
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
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Store {
    /// Watches every record under the prefix from `from_revision` (inclusive; usually the
    /// snapshot's revision + 1; 0 means "from now").
    ///
    /// Returns once etcd has accepted the watch, so a change made after this returns is
    /// delivered. Fails with [`StoreError::Unavailable`] if etcd does not answer in time.
    pub async fn watch(&self, from_revision: i64) -> Result<Watch, StoreError> {
        let mut opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify();
        if from_revision > 0 {
            opts = opts.with_start_revision(from_revision);
        }
        let mut wc = self.client.watch_client();
        let mut stream = self
            .call("watch", wc.watch(self.keys.prefix(), Some(opts)))
            .await?;
        // Wait for etcd's "created" answer (or its refusal) before handing the watch out.
        let first = self
            .call("watch", async { stream.message().await })
            .await?
            .ok_or_else(|| self.unavailable("watch: stream closed before it started".to_owned()))?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let task = tokio::spawn(pump(self.keys.clone(), stream, first, from_revision, tx));
        Ok(Watch { rx, task })
    }
}

/// Forwards decoded events until the watch ends or the receiver goes away.
async fn pump(
    keys: Keys,
    mut stream: WatchStream,
    first: WatchResponse,
    from_revision: i64,
    tx: mpsc::Sender<WatchEvent>,
) {
    let mut next = Some(first);
    loop {
        let resp = match next.take() {
            Some(r) => r,
            None => match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = tx
                        .send(resync("the etcd watch stream was closed".to_owned()))
                        .await;
                    return;
                }
                Err(e) => {
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
                EventType::Put => match decode(&key, kv.value()) {
                    Ok(record) => WatchEvent::Put {
                        revision: kv.mod_revision(),
                        record,
                    },
                    Err(e) => {
                        log::warn!(
                            "watch: skipping corrupt record at {}: {e}",
                            String::from_utf8_lossy(kv.key())
                        );
                        continue;
                    }
                },
                EventType::Delete => WatchEvent::Delete {
                    revision: kv.mod_revision(),
                    prev: ev.prev_kv().and_then(|p| decode(&key, p.value()).ok()),
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
    log::info!("watch ended, resync needed: {reason}");
    WatchEvent::Resync { reason }
}

fn decode(key: &RecordKey, value: &[u8]) -> Result<Record, prost::DecodeError> {
    Ok(match key {
        RecordKey::Network { .. } => Record::Network(Network::decode(value)?),
        RecordKey::Endpoint { .. } => Record::Endpoint(Endpoint::decode(value)?),
        RecordKey::Node { .. } => Record::Node(Node::decode(value)?),
        RecordKey::Alive { name } => Record::Alive(name.clone()),
        RecordKey::Vtep { .. } => Record::Vtep(ExternalVtep::decode(value)?),
    })
}
