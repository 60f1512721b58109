//! The cluster store: ovnet's records in etcd, typed, with every change made in one etcd
//! transaction so that agents racing for the same name, VNI, subnet or address get exactly one
//! winner and the others a clear error.
//!
//! It is not the data plane and keeps no cache: every call reads etcd. The agent keeps its own
//! view with [`Store::snapshot`] followed by [`Store::watch`]. It is also the edge where
//! records enter the agent: every value read is decoded into a typed record
//! ([`keys::decode_record`]); a damaged or hostile one is logged and skipped, never handed on.
//!
//! # Key layout
//!
//! All keys live under a configurable prefix `{p}` (default `/ovnet/`); values are
//! prost-encoded `ovnet.v1` messages unless noted.
//!
//! | key | value | |
//! |---|---|---|
//! | `{p}networks/{name}` | `Network` | the record; the key is the name claim |
//! | `{p}vnis/{vni}` | network ID | claim |
//! | `{p}subnets/{network_addr}_{len}` | network ID | claim (e.g. `10.0.0.0_24`) |
//! | `{p}endpoints/{network_id}/{endpoint_name}` | `Endpoint` | the record; name claim within the network |
//! | `{p}ips/{network_id}/{ipv4}` | endpoint ID | claim |
//! | `{p}reservations/{network_id}/{ipv4}` | `Reservation` | an address claimed before its endpoint (Docker's IPAM) |
//! | `{p}ports/{node}/{proto}/{host_ip}:{port}` | endpoint ID | claim of a published port (`0.0.0.0` for every address) |
//! | `{p}nodes/{name}` | `Node` | persistent registration |
//! | `{p}alive/{name}` | empty | attached to the node's lease: liveness |
//! | `{p}vteps/{network_id}/{ip}:{port}` | `ExternalVtep` | |
//!
//! Liveness is apart from allocation: endpoints and address claims are not on any lease, so an
//! agent that dies keeps its containers' addresses until they are disconnected.
//!
//! # Consistency
//!
//! - Each change is read, decide, claim: the store reads the records at a revision, a pure
//!   planner ([`crate::domain::plan`]) decides, and one transaction claims the result with
//!   `create_revision == 0` compares on the claims and `mod_revision == <read revision>`
//!   compares on the records it depends on.
//! - Subnet overlap cannot be a single-key compare: creating a network reads all networks at a
//!   revision `R`, and its transaction also requires that no key under `{p}subnets/` was
//!   modified after `R`.
//! - A lost race re-reads and decides again (the store's one retry loop): a value the user pinned then
//!   fails with the precise reason (name taken, VNI used by network X, subnet overlaps network
//!   X); a value the planner chose is chosen again. After [`MAX_ATTEMPTS`] lost races the
//!   result is [`AgentError::Conflict`].
//! - Every etcd call is bounded by [`StoreConfig::timeout`]; an etcd that does not answer gives
//!   [`AgentError::Unavailable`], never a hang.
//! - With several etcd members, calls go to one member at a time and a member that does not
//!   answer is set aside ([`members`]): the cluster's death of a member, the leader included,
//!   costs a retry, not a failed call.
//!
//! # Files
//!
//! [`keys`] (layout, typed keys and records), `networks`, `endpoints`, `vteps`, `reservations`
//! (one kind of record each), [`liveness`] (node registration and its lease), `nodes` (a
//! registered node's record rewritten), [`watch`] (snapshot and watch), `members` (which etcd
//! member to call), [`security`] (TLS and etcd users).

mod claim;
pub mod keys;
pub mod liveness;
pub mod security;
pub mod watch;

mod endpoints;
mod members;
mod networks;
mod nodes;
mod reservations;
mod vteps;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp};
use etcd_client::{DeleteOptions, TxnResponse};

use crate::domain::Network;
use crate::error::{AccessError, AgentError, Invalid, NotFound};

pub use keys::{Keys, Record, RecordKey, DEFAULT_PREFIX};
pub use liveness::{KeepAlive, Lease};
pub use nodes::UnderlayRecord;
pub use security::EtcdSecurity;
pub use watch::{State, Watch, WatchEvent};

use members::{MemberError, Members, Retry};

/// How many times an operation re-reads and retries after losing a race.
pub const MAX_ATTEMPTS: usize = 8;
/// Default bound on each etcd call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default etcd endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:2379";

/// Where the store is and how long to wait for it. (TLS and etcd users are given apart, to
/// [`Store::connect_with`].)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// etcd client URLs, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix; a trailing `/` is added if missing.
    pub prefix: String,
    /// Bound on each etcd call (and on connecting).
    pub timeout: Duration,
}

/// A record with the etcd revision of the change that wrote (or deleted) it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped<T> {
    /// The record.
    pub record: T,
    /// The revision of the change.
    pub revision: i64,
}

/// A network looked up by name, ID or ID prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The network.
    pub network: Network,
    /// The revision its record was last modified at.
    pub mod_revision: i64,
    /// The revision the lookup read at.
    pub revision: i64,
}

/// One attempt of a change ([`Store::retry`]): the change made, or `None` after a lost race.
type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<Option<T>, AgentError>> + Send + 'a>>;

/// A handle on the cluster store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct Store {
    members: Arc<Members>,
    keys: Keys,
    endpoints: String,
    timeout: Duration,
    security: Arc<EtcdSecurity>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// The etcd client URLs this store was given, comma-separated.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Creates the clients, without TLS or a user. Connecting is lazy: an etcd that is down
    /// shows up as [`AgentError::Unavailable`] on the first call (see [`Store::ping`]).
    pub async fn connect(config: StoreConfig) -> Result<Store, AgentError> {
        Store::connect_with(config, EtcdSecurity::default()).await
    }

    /// Creates the clients, one per member, with TLS and a user as `security` says. Nothing is
    /// sent yet: [`Store::check_access`] says whether etcd lets the agent in.
    pub async fn connect_with(
        config: StoreConfig,
        security: EtcdSecurity,
    ) -> Result<Store, AgentError> {
        if config.endpoints.is_empty() {
            return Err(Invalid::NoEtcdEndpoint.into());
        }
        let endpoints = config.endpoints.join(",");
        let user = security.user()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            // HTTP/2 pings on open streams, so a watch or a lease keep-alive on a vanished
            // etcd breaks instead of waiting forever.
            .with_keep_alive(Duration::from_secs(5), config.timeout)
            // etcd's tokens expire (after 5 minutes unused by default): log in again.
            .with_auto_token_refresh(user.is_some());
        options = security.apply(&config.endpoints, options)?;
        let members = match Members::new(&config.endpoints, options, user).await {
            Ok(m) => m,
            Err(etcd_client::Error::InvalidUri(e)) => {
                return Err(Invalid::EtcdEndpoint {
                    endpoints,
                    cause: e.to_string(),
                }
                .into())
            }
            Err(etcd_client::Error::InvalidArgs(cause)) => {
                return Err(Invalid::EtcdEndpoint { endpoints, cause }.into())
            }
            Err(e) => return Err(AgentError::from_etcd(e, &endpoints, "connect")),
        };
        let keys = Keys::new(&config.prefix);
        let members = Arc::new(members);
        members.start_probes(keys.prefix().to_owned());
        Ok(Store {
            members,
            keys,
            endpoints,
            timeout: config.timeout,
            security: Arc::new(security),
        })
    }

    /// The etcd client of the member in use (for tests and tools; ovnet code should use the
    /// typed calls). Not logged in yet if the agent has made no call.
    pub fn client(&self) -> Client {
        self.members.client(self.members.pick())
    }

    /// Checks that etcd lets the agent in: it answers over TLS with a certificate the agent
    /// trusts, takes the agent's certificate and user, and lets that user read and write the
    /// keys under the prefix (a transaction that writes nothing, but that etcd checks as if it
    /// did). [`AgentError::Access`] says which part is wrong; [`AgentError::Unavailable`] that
    /// no member answers.
    pub async fn check_access(&self) -> Result<(), AgentError> {
        let user = self.security.username.clone().unwrap_or_default();
        let prefix = self.keys.prefix().to_owned();
        let denied = |what| AccessError::Denied {
            user: user.clone(),
            what,
            prefix: prefix.clone(),
        };
        match self.ping().await {
            Err(e) if is_permission_denied(&e) => return Err(denied("read").into()),
            Err(e) => {
                let url = self.members.url(self.members.pick()).to_owned();
                return Err(
                    match security::refused_at_first_contact(&e, &url, &self.security) {
                        Some(a) => a.into(),
                        None => e,
                    },
                );
            }
            Ok(_) => {}
        };
        // Never true (no key has a negative version), so nothing is written; etcd checks the
        // permissions of both branches all the same.
        // (Deleting the whole prefix needs write permission on all of it.)
        let probe = format!("{prefix}nodes/");
        let txn = Txn::new()
            .when([Compare::version(probe, CompareOp::Less, 0)])
            .and_then([TxnOp::delete(
                prefix.clone(),
                Some(DeleteOptions::new().with_prefix()),
            )]);
        match self.txn(txn).await {
            Err(e) if is_permission_denied(&e) => Err(denied("write").into()),
            other => other.map(|_| ()),
        }
    }

    /// Checks that etcd answers; returns its current revision.
    pub async fn ping(&self) -> Result<i64, AgentError> {
        let (rev, _) = self
            .range_opts(self.keys.prefix(), GetOptions::new().with_count_only())
            .await?;
        Ok(rev)
    }

    /// Finds a network by exact ID, then exact name, then unique ID prefix (like docker),
    /// reading all networks at one revision.
    pub async fn find_network(&self, name_or_id: &str) -> Result<Found, AgentError> {
        if name_or_id.is_empty() {
            return Err(Invalid::NoNetwork.into());
        }
        let (revision, kvs) = self.range(&self.keys.networks(), 0).await?;
        let nets: Vec<(Network, i64)> = kvs
            .iter()
            .filter_map(|kv| match self.record(kv)? {
                Record::Network(n) => Some((n, kv.mod_revision())),
                _ => None,
            })
            .collect();
        let pick = |(network, mod_revision): &(Network, i64)| Found {
            network: network.clone(),
            mod_revision: *mod_revision,
            revision,
        };
        if let Some(f) = nets.iter().find(|(n, _)| n.id == name_or_id) {
            return Ok(pick(f));
        }
        if let Some(f) = nets.iter().find(|(n, _)| n.name == name_or_id) {
            return Ok(pick(f));
        }
        let matches: Vec<&(Network, i64)> = nets
            .iter()
            .filter(|(n, _)| n.id.as_str().starts_with(name_or_id))
            .collect();
        match matches.as_slice() {
            [one] => Ok(pick(one)),
            [] => Err(NotFound::Network(name_or_id.to_owned()).into()),
            many => Err(Invalid::Ambiguous {
                query: name_or_id.to_owned(),
                matches: many.len(),
            }
            .into()),
        }
    }

    /// Runs one read-decide-claim `attempt` until it commits: `Ok(None)` means it lost a
    /// race and is run again on fresh reads, at most [`MAX_ATTEMPTS`] times. `op` says what
    /// is being done ("create network demo"), for the log and the conflict error.
    async fn retry<'a, T>(
        &self,
        op: &str,
        mut attempt: impl FnMut() -> Attempt<'a, T>,
    ) -> Result<T, AgentError> {
        for n in 1..=MAX_ATTEMPTS {
            if let Some(done) = attempt().await? {
                return Ok(done);
            }
            log::debug!("{op}: lost a race (attempt {n}), re-reading");
        }
        Err(AgentError::Conflict(op.to_owned()))
    }

    // ---------------------------------------------------------------------------------------
    // Plumbing
    // ---------------------------------------------------------------------------------------

    /// Runs one etcd call on the member in use, under the timeout, classifying its failure.
    /// A member that does not answer is set aside and, if `retry` allows, the call is made
    /// again on the next one, each member at most once.
    async fn call<T, F, Fut>(&self, op: &'static str, retry: Retry, f: F) -> Result<T, AgentError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_member(op, retry, f).await.map(|(v, _)| v)
    }

    /// [`Store::call`], also saying which member answered (for streams kept open on it).
    async fn call_member<T, F, Fut>(
        &self,
        op: &'static str,
        retry: Retry,
        f: F,
    ) -> Result<(T, usize), AgentError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        for _ in 0..self.members.len() {
            let i = self.members.pick();
            let url = self.members.url(i);
            // `sent`: whether the request may have reached etcd.
            let (failure, sent) = match self.members.ready(i, self.timeout).await {
                Ok(client) => match tokio::time::timeout(self.timeout, f(client)).await {
                    Ok(Ok(v)) => {
                        self.members.up(i);
                        return Ok((v, i));
                    }
                    Ok(Err(e)) => {
                        let sent = !members::unsent(&e);
                        (MemberError::Etcd(e), sent)
                    }
                    Err(_) => (MemberError::Timeout, true),
                },
                Err(e) => (e, false),
            };
            let e = match failure {
                MemberError::Etcd(e) => self.classify(e, url, op),
                MemberError::Timeout => self.unavailable(format!(
                    "{op}: no answer from {url} within {:?}",
                    self.timeout
                )),
            };
            let AgentError::Unavailable { cause, .. } = &e else {
                return Err(e);
            };
            log::debug!("etcd at {url} unreachable: {cause}");
            self.members.down(i, cause);
            if retry == Retry::IfUnsent && sent {
                return Err(e);
            }
            last = Some(e);
        }
        Err(last.unwrap_or_else(|| self.unavailable(format!("{op}: no etcd member"))))
    }

    /// An etcd error as the agent reports it: an access problem, etcd unreachable, or etcd's
    /// refusal.
    fn classify(&self, e: etcd_client::Error, url: &str, op: &'static str) -> AgentError {
        if let Some(a) = security::access_error(&e, url, &self.security) {
            return a.into();
        }
        AgentError::from_etcd(e, &self.endpoints, op)
    }

    /// [`AgentError::Unavailable`] with this store's endpoints.
    pub(crate) fn unavailable(&self, cause: String) -> AgentError {
        AgentError::Unavailable {
            endpoints: self.endpoints.clone(),
            cause,
        }
    }

    /// All keys under `prefix`, at `revision` (0: the latest), read in pages of at most
    /// [`PAGE`] keys at one revision. Returns the revision read at.
    ///
    /// An etcd answer the client can decode is at most 4 MiB. A page that is larger anyway
    /// (values far larger than ovnet's records, written by someone else) is asked again in
    /// halves, down to a single key; a single value too large is skipped with a warning. So a
    /// listing never fails for its size, and never holds more than a page's answer at a time
    /// beyond what it returns.
    async fn range(&self, prefix: &str, revision: i64) -> Result<(i64, Vec<KeyValue>), AgentError> {
        let end = prefix_end(prefix.as_bytes());
        let mut at = revision;
        let mut from = prefix.as_bytes().to_vec();
        let mut limit = PAGE;
        let mut out = Vec::new();
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(limit);
            if at > 0 {
                opts = opts.with_revision(at);
            }
            let key = from.clone();
            let read = self
                .call("range", Retry::Always, |c| {
                    let (key, opts) = (key.clone(), opts.clone());
                    async move { c.kv_client().get(key, Some(opts)).await }
                })
                .await;
            match read {
                Ok(mut resp) => {
                    if at == 0 {
                        at = resp.header().map(|h| h.revision()).unwrap_or_default();
                    }
                    let more = resp.more();
                    let kvs = resp.take_kvs();
                    if let Some(last) = kvs.last() {
                        from = key_after(last.key());
                    }
                    out.extend(kvs);
                    if !more {
                        return Ok((at, out));
                    }
                    limit = PAGE;
                }
                Err(e) if is_out_of_range(&e) && !self.compacted(at).await? => {
                    if limit > 1 {
                        limit /= 2;
                        continue;
                    }
                    // One value alone is too large: name it and go past it.
                    let opts = GetOptions::new()
                        .with_range(end.clone())
                        .with_limit(1)
                        .with_keys_only()
                        .with_revision(at);
                    let key = from.clone();
                    let resp = self
                        .call("range", Retry::Always, |c| {
                            let (key, opts) = (key.clone(), opts.clone());
                            async move { c.kv_client().get(key, Some(opts)).await }
                        })
                        .await?;
                    if at == 0 {
                        at = resp.header().map(|h| h.revision()).unwrap_or_default();
                    }
                    let Some(big) = resp.kvs().first() else {
                        return Ok((at, out));
                    };
                    log::warn!(
                        "skipping the record at {}: its value is larger than an etcd answer \
                         may be",
                        String::from_utf8_lossy(big.key())
                    );
                    from = key_after(big.key());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether reading at `revision` fails because etcd compacted it (etcd says so with the
    /// same gRPC code the client uses for an answer too large to decode).
    async fn compacted(&self, revision: i64) -> Result<bool, AgentError> {
        if revision <= 0 {
            return Ok(false);
        }
        let opts = GetOptions::new().with_count_only().with_revision(revision);
        match self.range_opts(self.keys.prefix(), opts).await {
            Ok(_) => Ok(false),
            Err(e) if is_out_of_range(&e) => Ok(true),
            Err(e) => Err(e),
        }
    }

    async fn range_opts(
        &self,
        key: &str,
        opts: GetOptions,
    ) -> Result<(i64, Vec<KeyValue>), AgentError> {
        let mut resp = self
            .call("range", Retry::Always, |c| {
                let opts = opts.clone();
                async move { c.kv_client().get(key, Some(opts)).await }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        Ok((rev, resp.take_kvs()))
    }

    /// Runs a transaction; returns etcd's answer (check `succeeded()`).
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, AgentError> {
        self.call("txn", Retry::IfUnsent, |c| {
            let txn = txn.clone();
            async move { c.kv_client().txn(txn).await }
        })
        .await
    }

    /// The record stored at `kv`, or the reason it is not one.
    fn decode(&self, kv: &KeyValue) -> Option<Result<Record, AgentError>> {
        let key = self.keys.parse(kv.key())?;
        Some(
            keys::decode_record(&key, kv.value()).map_err(|problem| AgentError::Corrupt {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                problem,
            }),
        )
    }

    /// The record stored at `kv` in a listing: claims and foreign keys are `None`, and so is a
    /// damaged record, logged, so that one bad value does not hide all the others.
    fn record(&self, kv: &KeyValue) -> Option<Record> {
        match self.decode(kv)? {
            Ok(r) => Some(r),
            Err(AgentError::Corrupt { key, problem }) => {
                log::warn!("skipping the damaged record at {key}: {problem}");
                None
            }
            Err(e) => {
                log::warn!("skipping a record: {e}");
                None
            }
        }
    }

    /// The records of one kind in a listing, in key order; `pick` chooses the kind.
    fn records<T>(&self, kvs: &[KeyValue], pick: impl Fn(Record) -> Option<T>) -> Vec<T> {
        kvs.iter()
            .filter_map(|kv| self.record(kv))
            .filter_map(pick)
            .collect()
    }
}

/// Keys one page of a listing asks for: ovnet's records are a few hundred bytes, so a page
/// of them is a few hundred kilobytes, far below what an etcd answer may be (4 MiB).
const PAGE: i64 = 256;

/// The end of the range of keys starting with `prefix` (etcd's prefix rule: the prefix with
/// its last byte below 0xff incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the key space.
    vec![0]
}

/// The smallest key after `key`.
fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// Whether etcd or its client answered `OUT_OF_RANGE`: a compacted revision, or an answer
/// larger than the client decodes.
fn is_out_of_range(e: &AgentError) -> bool {
    matches!(
        e,
        AgentError::Etcd {
            source: etcd_client::Error::GRpcStatus(s),
            ..
        } if s.code() == tonic::Code::OutOfRange
    )
}

/// Whether etcd refused a request for the user's lack of permission.
fn is_permission_denied(e: &AgentError) -> bool {
    matches!(
        e,
        AgentError::Etcd {
            source: etcd_client::Error::GRpcStatus(s),
            ..
        } if s.code() == tonic::Code::PermissionDenied
    )
}

/// The revision a transaction committed at.
fn committed_at(resp: &TxnResponse) -> i64 {
    resp.header().map(|h| h.revision()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"/ovnet/networks/"), b"/ovnet/networks0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(key_after(b"/k"), b"/k\0");
    }
}
