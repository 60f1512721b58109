//! What one resolver has done, as lock-free counters: queries by transport, answers by response
//! code, forwarding outcomes, and every dropped message by [`DropReason`]. [`Counters::snapshot`]
//! copies them into a plain [`Snapshot`] for export (the agent turns it into Prometheus metrics).

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;

/// Why a message got no answer. Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the 12-byte DNS header: there is no id to answer to.
    NoHeader,
    /// The QR bit is set: a response, never answered (no reflection loops between resolvers).
    Response,
    /// The bound on forwards in flight was reached.
    ForwardLimit,
    /// A TCP connection beyond the bound on concurrent connections (closed at once).
    TcpConnectionLimit,
    /// A TCP length prefix of 0 or above the largest accepted query (the connection is closed).
    TcpFraming,
    /// A TCP peer closed the connection or went silent in the middle of a message.
    TcpIncomplete,
    /// The response could not be encoded (a bug, never expected).
    Encode,
    /// Sending the response failed (the client went away, or a socket error).
    Send,
}

impl DropReason {
    /// Every reason, in the order of [`Snapshot::drops`].
    pub const ALL: [DropReason; 8] = [
        DropReason::NoHeader,
        DropReason::Response,
        DropReason::ForwardLimit,
        DropReason::TcpConnectionLimit,
        DropReason::TcpFraming,
        DropReason::TcpIncomplete,
        DropReason::Encode,
        DropReason::Send,
    ];

    /// A stable lowercase name, for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoHeader => "no_header",
            DropReason::Response => "response",
            DropReason::ForwardLimit => "forward_limit",
            DropReason::TcpConnectionLimit => "tcp_connection_limit",
            DropReason::TcpFraming => "tcp_framing",
            DropReason::TcpIncomplete => "tcp_incomplete",
            DropReason::Encode => "encode",
            DropReason::Send => "send",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The response codes counted separately; everything else counts as [`Rcode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// NOERROR (0), with or without answers.
    NoError,
    /// FORMERR (1): the query could not be parsed or is malformed.
    FormErr,
    /// SERVFAIL (2): every upstream failed, or an upstream said so.
    ServFail,
    /// NXDOMAIN (3).
    NxDomain,
    /// NOTIMP (4): an opcode other than QUERY.
    NotImp,
    /// REFUSED (5): a class other than IN, a zone transfer, or forwarding on an internal network.
    Refused,
    /// Any other code (BADVERS from us; whatever an upstream sent).
    Other,
}

impl Rcode {
    /// Every code, in the order of [`Snapshot::answers`].
    pub const ALL: [Rcode; 7] = [
        Rcode::NoError,
        Rcode::FormErr,
        Rcode::ServFail,
        Rcode::NxDomain,
        Rcode::NotImp,
        Rcode::Refused,
        Rcode::Other,
    ];

    /// The bucket of a response code.
    pub fn of(code: ResponseCode) -> Rcode {
        match code {
            ResponseCode::NoError => Rcode::NoError,
            ResponseCode::FormErr => Rcode::FormErr,
            ResponseCode::ServFail => Rcode::ServFail,
            ResponseCode::NXDomain => Rcode::NxDomain,
            ResponseCode::NotImp => Rcode::NotImp,
            ResponseCode::Refused => Rcode::Refused,
            _ => Rcode::Other,
        }
    }

    /// A stable lowercase name, for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Rcode::NoError => "noerror",
            Rcode::FormErr => "formerr",
            Rcode::ServFail => "servfail",
            Rcode::NxDomain => "nxdomain",
            Rcode::NotImp => "notimp",
            Rcode::Refused => "refused",
            Rcode::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The live counters of one resolver (shared by its tasks; every update is one relaxed add).
#[derive(Debug, Default)]
pub struct Counters {
    queries_udp: AtomicU64,
    queries_tcp: AtomicU64,
    tcp_connections: AtomicU64,
    answers: [AtomicU64; Rcode::ALL.len()],
    truncated: AtomicU64,
    forwarded: AtomicU64,
    upstream_timeouts: AtomicU64,
    upstream_failures: AtomicU64,
    upstream_mismatched: AtomicU64,
    upstream_truncated: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// A copy of [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Datagrams received on the UDP socket.
    pub queries_udp: u64,
    /// Messages read from TCP connections.
    pub queries_tcp: u64,
    /// TCP connections accepted (including those closed at once for the connection limit).
    pub tcp_connections: u64,
    /// Responses sent, by code, indexed like [`Rcode::ALL`].
    pub answers: [u64; Rcode::ALL.len()],
    /// UDP responses sent truncated (TC set) because they exceeded the client's limit.
    pub truncated: u64,
    /// Queries handed to the upstream resolvers.
    pub forwarded: u64,
    /// Upstream attempts that got no matching reply in time.
    pub upstream_timeouts: u64,
    /// Upstream attempts that failed otherwise (refused, reset, unusable reply).
    pub upstream_failures: u64,
    /// Upstream replies ignored because their id or question did not match what was sent.
    pub upstream_mismatched: u64,
    /// Upstream UDP replies with TC set, retried over TCP.
    pub upstream_truncated: u64,
    /// Messages dropped without an answer, indexed like [`DropReason::ALL`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl Snapshot {
    /// Responses sent with `code`.
    pub fn answers(&self, code: Rcode) -> u64 {
        self.answers[code.index()]
    }

    /// Messages dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    /// Messages dropped for any reason.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Responses sent, whatever their code.
    pub fn total_answers(&self) -> u64 {
        self.answers.iter().sum()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// A received query (before any decision).
    pub(crate) fn query(&self, tcp: bool) {
        bump(if tcp {
            &self.queries_tcp
        } else {
            &self.queries_udp
        });
    }

    pub(crate) fn tcp_connection(&self) {
        bump(&self.tcp_connections);
    }

    pub(crate) fn answer(&self, code: ResponseCode) {
        bump(&self.answers[Rcode::of(code).index()]);
    }

    pub(crate) fn truncated(&self) {
        bump(&self.truncated);
    }

    pub(crate) fn forwarded(&self) {
        bump(&self.forwarded);
    }

    pub(crate) fn upstream_timeout(&self) {
        bump(&self.upstream_timeouts);
    }

    pub(crate) fn upstream_failure(&self) {
        bump(&self.upstream_failures);
    }

    pub(crate) fn upstream_mismatched(&self) {
        bump(&self.upstream_mismatched);
    }

    pub(crate) fn upstream_truncated(&self) {
        bump(&self.upstream_truncated);
    }

    pub(crate) fn drop(&self, reason: DropReason) {
        bump(&self.drops[reason.index()]);
    }

    /// The current values (each read on its own: a snapshot taken under load may be a few
    /// events apart between counters).
    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            queries_udp: get(&self.queries_udp),
            queries_tcp: get(&self.queries_tcp),
            tcp_connections: get(&self.tcp_connections),
            answers: std::array::from_fn(|i| get(&self.answers[i])),
            truncated: get(&self.truncated),
            forwarded: get(&self.forwarded),
            upstream_timeouts: get(&self.upstream_timeouts),
            upstream_failures: get(&self.upstream_failures),
            upstream_mismatched: get(&self.upstream_mismatched),
            upstream_truncated: get(&self.upstream_truncated),
            drops: std::array::from_fn(|i| get(&self.drops[i])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_follow_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in Rcode::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn snapshot_counts() {
        let c = Counters::default();
        c.query(false);
        c.query(true);
        c.query(true);
        c.answer(ResponseCode::NXDomain);
        c.answer(ResponseCode::BADVERS);
        c.drop(DropReason::TcpFraming);
        let s = c.snapshot();
        assert_eq!((s.queries_udp, s.queries_tcp), (1, 2));
        assert_eq!(s.answers(Rcode::NxDomain), 1);
        assert_eq!(s.answers(Rcode::Other), 1);
        assert_eq!(s.total_answers(), 2);
        assert_eq!(s.drops(DropReason::TcpFraming), 1);
        assert_eq!(s.total_drops(), 1);
    }
}
