//! The etcd members the agent talks to: a client per member URL, the member in use, and what is
//! known of each one's health.
//!
//! etcd-client's own client balances one channel over every URL (tonic's power-of-two-choices
//! balancer). A member that died stays in that balance, and its failed connection reports
//! itself ready, so about every other call went to the dead member and failed (issue 20:
//! "etcd … is unreachable" with two of three members up). Here each member has a client of its
//! own and calls go to one member, the current one:
//!
//! - a call that finds its member unreachable marks it down and moves the agent to the next
//!   member; a read (or a change that provably never left this host: the connection was
//!   refused) is sent again there at once ([`Retry`]);
//! - every [`PROBE_INTERVAL`] a probe reads from every member, so a member that stops
//!   answering is set aside before a call has to find out, and one that answers again is
//!   taken back into the rotation; the watch of a member set aside is ended at once (its
//!   caller re-lists from the next member, [`Members::down_signal`]);
//! - a dead member is tried again only when every member is down.
//!
//! With etcd users, each member's client logs in on first use (the token is shared by the
//! client's clones and refreshed when it expires).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use tokio::sync::{watch, Mutex};

use crate::error::AgentError;

/// How often every member is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for a probe's answer: a member slower than that is set aside.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a call may be sent again to another member after its member failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A read: sending it twice is harmless.
    Always,
    /// A change: only if it never reached etcd (the connection was refused), since after a
    /// timeout or a broken connection it may have been applied.
    IfUnsent,
}

/// One member.
struct Member {
    url: String,
    client: Client,
    /// Logged in with the configured user (always true without one).
    logged_in: AtomicBool,
    /// Serialises logins.
    login: Mutex<()>,
    down: AtomicBool,
    /// Bumped each time the member is set aside.
    downs: watch::Sender<u64>,
}

/// The members and which one is in use.
pub(crate) struct Members {
    members: Vec<Member>,
    current: AtomicUsize,
    user: Option<(String, String)>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field(
                "urls",
                &self.members.iter().map(|m| &m.url).collect::<Vec<_>>(),
            )
            .field("current", &self.current.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why a member could not be used.
pub(crate) enum MemberError {
    /// etcd or its client said no (classify it with [`AgentError::from_etcd`]).
    Etcd(etcd_client::Error),
    /// No answer in time.
    Timeout,
}

impl Members {
    /// A client per URL, none connected yet (connections are made on first use).
    pub(crate) async fn new(
        urls: &[String],
        options: ConnectOptions,
        user: Option<(String, String)>,
    ) -> Result<Members, etcd_client::Error> {
        let mut members = Vec::with_capacity(urls.len());
        for url in urls {
            // Without a user, connecting only sets up the channel (no I/O).
            let client = Client::connect([url.as_str()], Some(options.clone())).await?;
            members.push(Member {
                url: url.clone(),
                client,
                logged_in: AtomicBool::new(user.is_none()),
                login: Mutex::new(()),
                down: AtomicBool::new(false),
                downs: watch::channel(0).0,
            });
        }
        Ok(Members {
            members,
            current: AtomicUsize::new(0),
            user,
        })
    }

    /// How many members there are.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// The URL of member `i`.
    pub(crate) fn url(&self, i: usize) -> &str {
        &self.members[i].url
    }

    /// The member calls go to: the current one, or the next one that is not set aside (the
    /// current one again if all are).
    pub(crate) fn pick(&self) -> usize {
        let n = self.members.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| !self.members[i].down.load(Ordering::Relaxed))
            .unwrap_or(start)
    }

    /// The client of member `i` (not necessarily logged in: see [`Members::ready`]).
    pub(crate) fn client(&self, i: usize) -> Client {
        self.members[i].client.clone()
    }

    /// Member `i`'s client, logged in with the configured user if it was not yet.
    pub(crate) async fn ready(&self, i: usize, timeout: Duration) -> Result<Client, MemberError> {
        let m = &self.members[i];
        if m.logged_in.load(Ordering::Acquire) {
            return Ok(m.client.clone());
        }
        let _one = m.login.lock().await;
        if m.logged_in.load(Ordering::Acquire) {
            return Ok(m.client.clone());
        }
        let mut client = m.client.clone();
        let user = self.user.clone();
        match tokio::time::timeout(timeout, client.update_user(user)).await {
            Ok(Ok(())) => {}
            Ok(Err(etcd_client::Error::GRpcStatus(s)))
                if s.message().contains("authentication is not enabled") =>
            {
                log::warn!(
                    "etcd at {} has authentication turned off: --etcd-username is not used",
                    m.url
                );
            }
            Ok(Err(e)) => return Err(MemberError::Etcd(e)),
            Err(_) => return Err(MemberError::Timeout),
        }
        m.logged_in.store(true, Ordering::Release);
        Ok(m.client.clone())
    }

    /// Member `i` answered.
    pub(crate) fn up(&self, i: usize) {
        if self.members[i].down.swap(false, Ordering::Relaxed) {
            log::info!("etcd member {} answers again", self.members[i].url);
        }
    }

    /// Member `i` did not answer: set it aside and move on to the next member.
    pub(crate) fn down(&self, i: usize, cause: &str) {
        let m = &self.members[i];
        // With one member there is nothing to move to: its streams end by themselves.
        if !m.down.swap(true, Ordering::Relaxed) && self.members.len() > 1 {
            m.downs.send_modify(|n| *n += 1);
            log::warn!("etcd member {} is unreachable ({cause}): set aside", m.url);
        }
        let n = self.members.len();
        let _ = self
            .current
            .compare_exchange(i, (i + 1) % n, Ordering::Relaxed, Ordering::Relaxed);
        let next = self.pick();
        if next != i {
            self.current.store(next, Ordering::Relaxed);
        }
    }

    /// A receiver that changes when member `i` is set aside (for streams open on it).
    pub(crate) fn down_signal(&self, i: usize) -> watch::Receiver<u64> {
        let mut rx = self.members[i].downs.subscribe();
        rx.mark_unchanged();
        rx
    }

    /// Starts the task that probes every member each [`PROBE_INTERVAL`] (reading a key count
    /// under `prefix`); it ends when the members are dropped. Only with several members.
    pub(crate) fn start_probes(self: &Arc<Self>, prefix: String) {
        if self.members.len() < 2 {
            return;
        }
        let weak: Weak<Members> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PROBE_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(members) = weak.upgrade() else {
                    return;
                };
                let probes = (0..members.len()).map(|i| {
                    let members = members.clone();
                    let prefix = prefix.clone();
                    async move {
                        match members.probe(i, &prefix).await {
                            Ok(()) => members.up(i),
                            Err(cause) => members.down(i, &cause),
                        }
                    }
                });
                futures_join_all(probes).await;
            }
        });
    }

    /// One probe of member `i`: a linearizable read, so that a member cut off from the
    /// others' quorum fails it too.
    async fn probe(&self, i: usize, prefix: &str) -> Result<(), String> {
        let client = match self.ready(i, PROBE_TIMEOUT).await {
            Ok(c) => c,
            Err(MemberError::Timeout) => return Err("login: no answer".to_owned()),
            Err(MemberError::Etcd(e)) => return Err(format!("login: {e}")),
        };
        let mut kv = client.kv_client();
        let opts = GetOptions::new().with_prefix().with_count_only();
        match tokio::time::timeout(PROBE_TIMEOUT, kv.get(prefix, Some(opts))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match AgentError::from_etcd(e, &self.members[i].url, "probe") {
                AgentError::Unavailable { cause, .. } => Err(cause),
                // It answered (with a refusal the calls will report): it is up.
                _ => Ok(()),
            },
            Err(_) => Err(format!("probe: no answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

/// Runs futures concurrently and waits for all (a small `join_all`, to avoid a dependency).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

/// Whether an etcd error says the request never reached etcd: the connection to the member
/// could not be made (refused, no route), so sending the request elsewhere cannot apply it
/// twice.
pub(crate) fn unsent(e: &etcd_client::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::HostUnreachable
                    | std::io::ErrorKind::NetworkUnreachable
                    | std::io::ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        let text = c.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        cause = c.source();
    }
    false
}
