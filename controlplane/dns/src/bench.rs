//! A DNS load generator, for the benchmark (and the `ovnet-dns-bench` binary): `concurrency`
//! workers, each with its own UDP socket, send A queries for the given names round-robin to one
//! server and wait for each answer (a closed loop). Without a rate they go as fast as answers
//! come back; with one, each worker paces its sends so the total approaches it (a worker whose
//! answers take longer than its interval falls behind, which the report shows).
//!
//! It measures what a stub resolver sees: queries/s answered and the latency from send to
//! answer (p50, p99, max). Queries unanswered within the timeout count as lost.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use tokio::net::UdpSocket;

/// Pause of a worker after a socket error (the target refused), so it does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The server.
    pub target: SocketAddr,
    /// Names to query (type A), round-robin.
    pub names: Vec<String>,
    /// Target queries per second over all workers; `None` for as fast as possible.
    pub rate: Option<u32>,
    /// How long to send.
    pub duration: Duration,
    /// Workers, i.e. queries outstanding at once.
    pub concurrency: usize,
    /// How long to wait for one answer before counting the query as lost.
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Queries sent.
    pub sent: u64,
    /// Queries answered (a response with the query's id).
    pub answered: u64,
    /// Answers whose code was not NOERROR (NXDOMAIN, SERVFAIL, ...).
    pub not_noerror: u64,
    /// Queries without an answer within the timeout.
    pub lost: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Answered queries per second.
    pub qps: f64,
    /// Median latency of the answered queries.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
}

#[derive(Debug, Default)]
struct WorkerResult {
    sent: u64,
    not_noerror: u64,
    lost: u64,
    latencies: Vec<Duration>,
}

/// The `q`-quantile (0..=1) of sorted `v`, nearest-rank.
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// The A query for `name` (id 0, RD set), to be sent with fresh ids.
fn query_for(name: &str) -> io::Result<Vec<u8>> {
    let name = Name::from_ascii(name)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("name {name:?}: {e}")))?;
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name, RecordType::A));
    m.to_vec()
        .map_err(|e| io::Error::other(format!("encode query: {e}")))
}

/// Runs the load and reports. Fails if there are no names or a socket cannot be opened.
pub async fn run(opts: &LoadOptions) -> io::Result<LoadReport> {
    if opts.names.is_empty() || opts.concurrency == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "give at least one name and one worker",
        ));
    }
    let queries = opts
        .names
        .iter()
        .map(|n| query_for(n))
        .collect::<io::Result<Vec<_>>>()?;
    let interval = opts
        .rate
        .filter(|&r| r > 0)
        .map(|r| Duration::from_secs_f64(opts.concurrency as f64 / f64::from(r)));
    let start = Instant::now();
    let end = start + opts.duration;
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..opts.concurrency {
        let queries = queries.clone();
        let (target, timeout) = (opts.target, opts.timeout);
        workers.spawn(async move { worker(w, target, queries, interval, end, timeout).await });
    }
    let mut all = WorkerResult::default();
    while let Some(r) = workers.join_next().await {
        let r = r.map_err(io::Error::other)??;
        all.sent += r.sent;
        all.not_noerror += r.not_noerror;
        all.lost += r.lost;
        all.latencies.extend(r.latencies);
    }
    let elapsed = start.elapsed();
    all.latencies.sort_unstable();
    let answered = all.latencies.len() as u64;
    Ok(LoadReport {
        sent: all.sent,
        answered,
        not_noerror: all.not_noerror,
        lost: all.lost,
        elapsed,
        qps: answered as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
        p50: quantile(&all.latencies, 0.50),
        p99: quantile(&all.latencies, 0.99),
        max: all.latencies.last().copied().unwrap_or_default(),
    })
}

async fn worker(
    w: usize,
    target: SocketAddr,
    mut queries: Vec<Vec<u8>>,
    interval: Option<Duration>,
    end: Instant,
    timeout: Duration,
) -> io::Result<WorkerResult> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(target).await?;
    let mut out = WorkerResult::default();
    let mut buf = vec![0u8; 65_536];
    // Spread the workers' ids and names apart.
    let mut id = (w as u16).wrapping_mul(7919);
    let mut next_send = Instant::now();
    let mut i = w;
    while Instant::now() < end {
        if let Some(iv) = interval {
            tokio::time::sleep_until(next_send.into()).await;
            next_send += iv;
        }
        id = id.wrapping_add(1);
        let k = i % queries.len();
        i += 1;
        let query = &mut queries[k];
        query[..2].copy_from_slice(&id.to_be_bytes());
        let sent_at = Instant::now();
        sock.send(query).await?;
        out.sent += 1;
        let answer = tokio::time::timeout(timeout, async {
            loop {
                let n = sock.recv(&mut buf).await?;
                let Ok(h) = Header::read(&mut BinDecoder::new(&buf[..n])) else {
                    continue;
                };
                if h.message_type == MessageType::Response && h.id == id {
                    return io::Result::Ok(h.response_code);
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(code)) => {
                out.latencies.push(sent_at.elapsed());
                if code != ResponseCode::NoError {
                    out.not_noerror += 1;
                }
            }
            Err(_) => out.lost += 1,
            // ICMP port unreachable and the like: lost; pause so a dead target is not spun on.
            Ok(Err(_)) => {
                out.lost += 1;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(query_for("web").is_ok());
        assert!(query_for(&"x".repeat(300)).is_err());
    }
}
