//! Forwarding a query to the upstream resolvers, in order, until one answers: over UDP from a
//! fresh socket (a random source port from the kernel) with a fresh random id, retried over TCP
//! when the reply is truncated; over TCP directly when the client asked over TCP. A reply counts
//! only if it matches the id and question sent ([`Forward::check_reply`]); others are ignored
//! and counted. Each upstream gets [`Timeouts::per_upstream`]; the whole forward ends by
//! [`Timeouts::deadline`] with SERVFAIL if nothing usable came back.
//!
//! An upstream answering SERVFAIL or REFUSED is treated as failed and the next one is asked
//! (as Docker's embedded DNS does). When no upstream gives a good answer, the client gets, in
//! order of preference: a truncated UDP answer whose TCP retry failed (TC set, so the client
//! can try TCP itself), the last SERVFAIL or REFUSED an upstream sent, or our own SERVFAIL.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, Instant};

use crate::counters::Counters;
use crate::decide::{Forward, Reply, Transport, MAX_UDP_PAYLOAD};

/// How long forwarding may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// For one upstream (one UDP exchange, or one TCP exchange).
    pub per_upstream: Duration,
    /// For the whole forward, every upstream included.
    pub deadline: Duration,
}

enum Outcome {
    Answer(Message, Vec<u8>),
    Timeout,
    Failed(io::Error),
}

/// Asks `upstreams` for `fwd` and returns the client's reply (`None` only if it cannot be
/// encoded, which is a bug).
pub(crate) async fn forward(
    fwd: &Forward,
    upstreams: &[SocketAddr],
    t: Timeouts,
    counters: &Counters,
) -> Option<Reply> {
    counters.forwarded();
    let deadline = Instant::now() + t.deadline;
    // The best answer short of a good one: a truncated UDP answer whose TCP retry failed (the
    // client can retry over TCP itself), else the last SERVFAIL or REFUSED.
    let mut fallback: Option<(Reply, bool)> = None;
    for &up in upstreams {
        let Some(budget) = time_left(deadline, t.per_upstream) else {
            break;
        };
        let mut outcome = if fwd.transport() == Transport::Tcp {
            ask(budget, tcp_exchange(fwd, up, counters)).await
        } else {
            ask(budget, udp_exchange(fwd, up, counters)).await
        };
        if let Outcome::Answer(m, raw) = &outcome {
            if m.truncation && fwd.transport() == Transport::Udp {
                counters.upstream_truncated();
                fallback = Some((fwd.relay(m, raw)?, true));
                outcome = match time_left(deadline, t.per_upstream) {
                    Some(budget) => ask(budget, tcp_exchange(fwd, up, counters)).await,
                    None => Outcome::Timeout,
                };
            }
        }
        match outcome {
            Outcome::Answer(m, raw) => {
                let reply = fwd.relay(&m, &raw)?;
                if !matches!(
                    m.response_code,
                    ResponseCode::ServFail | ResponseCode::Refused
                ) {
                    return Some(reply);
                }
                counters.upstream_failure();
                if !fallback.as_ref().is_some_and(|(_, truncated)| *truncated) {
                    fallback = Some((reply, false));
                }
            }
            Outcome::Timeout => counters.upstream_timeout(),
            Outcome::Failed(e) => {
                counters.upstream_failure();
                log::debug!("DNS upstream {up}: {e}");
            }
        }
    }
    match fallback {
        Some((reply, _)) => Some(reply),
        None => fwd.servfail(),
    }
}

/// The time left for one upstream, if any.
fn time_left(deadline: Instant, per_upstream: Duration) -> Option<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    (!left.is_zero()).then(|| left.min(per_upstream))
}

async fn ask(
    budget: Duration,
    exchange: impl std::future::Future<Output = io::Result<(Message, Vec<u8>)>>,
) -> Outcome {
    match timeout(budget, exchange).await {
        Ok(Ok((m, raw))) => Outcome::Answer(m, raw),
        Ok(Err(e)) => Outcome::Failed(e),
        Err(_) => Outcome::Timeout,
    }
}

fn fresh_query(fwd: &Forward) -> io::Result<(u16, Vec<u8>)> {
    let id: u16 = rand::random();
    let query = fwd
        .upstream_query(id)
        .ok_or_else(|| io::Error::other("cannot encode the upstream query"))?;
    Ok((id, query))
}

/// One UDP exchange; runs until a matching reply arrives (the caller bounds it in time).
async fn udp_exchange(
    fwd: &Forward,
    up: SocketAddr,
    counters: &Counters,
) -> io::Result<(Message, Vec<u8>)> {
    let (id, query) = fresh_query(fwd)?;
    let local: SocketAddr = match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from any other address, and reports ICMP errors.
    sock.connect(up).await?;
    sock.send(&query).await?;
    // One byte more than the largest reply we asked for, so an oversized one shows as such.
    let mut buf = vec![0u8; usize::from(MAX_UDP_PAYLOAD) + 1];
    loop {
        let n = sock.recv(&mut buf).await?;
        match fwd.check_reply(id, &buf[..n]) {
            Some(m) => return Ok((m, buf[..n].to_vec())),
            None => counters.upstream_mismatched(),
        }
    }
}

/// One TCP exchange (RFC 7766): a fresh connection, one length-prefixed query, one reply.
async fn tcp_exchange(
    fwd: &Forward,
    up: SocketAddr,
    counters: &Counters,
) -> io::Result<(Message, Vec<u8>)> {
    let (id, query) = fresh_query(fwd)?;
    let mut stream = TcpStream::connect(up).await?;
    stream.set_nodelay(true)?;
    let len = u16::try_from(query.len()).map_err(|_| io::Error::other("query too long"))?;
    let mut framed = Vec::with_capacity(2 + query.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await?;
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).await?;
    let mut raw = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    stream.read_exact(&mut raw).await?;
    match fwd.check_reply(id, &raw) {
        Some(m) => Ok((m, raw)),
        None => {
            counters.upstream_mismatched();
            Err(io::Error::other(
                "TCP reply does not match the query (id or question)",
            ))
        }
    }
}
