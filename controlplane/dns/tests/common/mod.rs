//! Shared by the socket tests: a resolver on 127.0.0.1 with short timeouts, DNS clients over UDP
//! and TCP, and a fake upstream resolver (built with hickory-proto) whose behaviour each test
//! picks. Everything waits with generous bounds, never a fixed sleep followed by an assertion.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ovnet_dns::{Config, Resolver, Snapshot, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// How long a test client waits for one answer: far above anything the resolver should take.
pub const CLIENT_WAIT: Duration = Duration::from_secs(10);
/// Per-upstream timeout in the tests (short, so a silent upstream costs little).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(300);
/// The address the fake upstream answers for every name.
pub const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Network `front`: web (10.0.0.2), db (10.0.0.3, 10.0.0.13); the cluster also has `back`.
pub fn front_zone(internal: bool) -> Zone {
    front_zone_in([10, 0, 0], internal)
}

/// [`front_zone`] in the /24 of `gateway` (web is .2, db .3 and .13), not internal.
pub fn front_zone_at(gateway: Ipv4Addr) -> Zone {
    let [a, b, c, _] = gateway.octets();
    front_zone_in([a, b, c], false)
}

fn front_zone_in([a, b, c]: [u8; 3], internal: bool) -> Zone {
    let mut z = Zone::new("front", internal);
    z.add_endpoint("web", Ipv4Addr::new(a, b, c, 2))
        .add_endpoint("db", Ipv4Addr::new(a, b, c, 3))
        .add_endpoint("db", Ipv4Addr::new(a, b, c, 13))
        .add_network("back")
        .add_foreign_endpoint("api.v2");
    z
}

/// Test defaults on 127.0.0.1, a free port.
pub fn config(upstreams: Vec<SocketAddr>) -> Config {
    let mut c = Config::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), upstreams);
    c.listen.set_port(0);
    c.upstream_timeout = UPSTREAM_TIMEOUT;
    c.forward_deadline = Duration::from_secs(3);
    c.tcp_idle_timeout = Duration::from_secs(2);
    c
}

pub fn start(zone: Zone, upstreams: Vec<SocketAddr>) -> Resolver {
    Resolver::start(config(upstreams), zone).expect("start resolver")
}

/// A query for `name`/`qtype` with id `id`, RD set; with EDNS advertising `edns` bytes if given.
pub fn query(id: u16, name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Sends `bytes` over UDP and returns the first response with id `id`.
pub async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Message {
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    tokio::time::timeout(CLIENT_WAIT, async {
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, server, "answer from the wrong address");
            let m = Message::from_vec(&buf[..n]).expect("answer parses");
            if m.id == id {
                return (m, n);
            }
        }
    })
    .await
    .map(|(m, _)| m)
    .unwrap_or_else(|_| panic!("no UDP answer from {server} within {CLIENT_WAIT:?}"))
}

/// Sends `bytes` over UDP and returns the raw answer (to check sizes).
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    let n = tokio::time::timeout(CLIENT_WAIT, sock.recv(&mut buf))
        .await
        .expect("no UDP answer")
        .unwrap();
    buf.truncate(n);
    buf
}

pub async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    udp_exchange(server, &query(rand_id(), name, qtype, None)).await
}

/// Writes one length-prefixed message on `stream` and reads one back.
pub async fn tcp_on(stream: &mut TcpStream, bytes: &[u8]) -> Message {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.unwrap();
    tokio::time::timeout(CLIENT_WAIT, async {
        let mut len = [0u8; 2];
        stream
            .read_exact(&mut len)
            .await
            .expect("read answer length");
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.expect("read answer");
        Message::from_vec(&buf).expect("answer parses")
    })
    .await
    .expect("no TCP answer")
}

pub async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut s = TcpStream::connect(server).await.unwrap();
    tcp_on(&mut s, &query(rand_id(), name, qtype, None)).await
}

pub fn rand_id() -> u16 {
    rand::random()
}

/// The A addresses of an answer.
pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

/// Polls `f` until it holds, for at most `timeout`, then panics naming `what`.
pub async fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `r`'s counters satisfy `f`, and returns them.
pub async fn counters_when(r: &Resolver, what: &str, f: impl Fn(&Snapshot) -> bool) -> Snapshot {
    wait_for(what, CLIENT_WAIT, || f(&r.counters())).await;
    r.counters()
}

/// What a fake upstream does with each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer every A query with [`UPSTREAM_ANSWER`] (NOERROR, no records for other types).
    Answer,
    /// Receive, never answer.
    Silent,
    /// Over UDP answer with TC set and no records; over TCP answer fully.
    TruncateUdp,
    /// Over UDP answer with TC set and no records; close TCP connections unanswered.
    TruncateUdpNoTcp,
    /// Answer with `n` A records (192.0.2.0, .1, ...), a large answer.
    Big(u8),
    /// First a reply with a wrong id, then one with a wrong question, then the right one.
    Mismatched,
    /// Answer SERVFAIL.
    ServFail,
}

/// A DNS server on 127.0.0.1 (UDP and TCP, same port) standing in for an upstream resolver.
#[derive(Debug)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl FakeUpstream {
    pub async fn start(behaviour: Behaviour) -> FakeUpstream {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let udp_queries = Arc::new(AtomicUsize::new(0));
        let tcp_queries = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let count = udp_queries.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                for reply in replies(&q, behaviour, false) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        });
        let count = tcp_queries.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut s, _)) = tcp.accept().await else {
                    continue;
                };
                if behaviour == Behaviour::TruncateUdpNoTcp {
                    count.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                let count = count.clone();
                conns.spawn(async move {
                    loop {
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if s.read_exact(&mut buf).await.is_err() {
                            return;
                        }
                        count.fetch_add(1, Ordering::SeqCst);
                        let Ok(q) = Message::from_vec(&buf) else {
                            return;
                        };
                        for reply in replies(&q, behaviour, true) {
                            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&reply);
                            if s.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeUpstream {
            addr,
            udp_queries,
            tcp_queries,
            tasks,
        }
    }

    pub fn udp_count(&self) -> usize {
        self.udp_queries.load(Ordering::SeqCst)
    }

    pub fn tcp_count(&self) -> usize {
        self.tcp_queries.load(Ordering::SeqCst)
    }
}

fn answer_to(q: &Message) -> Message {
    let mut r = Message::response(q.id, OpCode::Query);
    r.metadata.recursion_desired = q.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_queries(q.queries.iter().cloned());
    if q.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(4096);
        r.set_edns(e);
    }
    r
}

fn replies(q: &Message, behaviour: Behaviour, tcp: bool) -> Vec<Vec<u8>> {
    let Some(question) = q.queries.first() else {
        return Vec::new();
    };
    let mut r = answer_to(q);
    let a = |ip: Ipv4Addr| Record::from_rdata(question.name().clone(), 60, RData::A(A(ip)));
    let is_a = question.query_type() == RecordType::A;
    match behaviour {
        Behaviour::Silent => return Vec::new(),
        Behaviour::ServFail => r.metadata.response_code = ResponseCode::ServFail,
        Behaviour::TruncateUdp | Behaviour::TruncateUdpNoTcp if !tcp => {
            r.metadata.truncation = true
        }
        Behaviour::Answer | Behaviour::TruncateUdp | Behaviour::Mismatched if is_a => {
            r.add_answer(a(UPSTREAM_ANSWER));
        }
        Behaviour::Big(n) if is_a => {
            for i in 0..n {
                r.add_answer(a(Ipv4Addr::new(192, 0, 2, i)));
            }
        }
        _ => {}
    }
    let mut out = Vec::new();
    if behaviour == Behaviour::Mismatched {
        let mut wrong_id = r.clone();
        wrong_id.metadata.id = q.id.wrapping_add(1);
        wrong_id.answers.clear();
        wrong_id.add_answer(a(Ipv4Addr::new(203, 0, 113, 66)));
        out.push(wrong_id.to_vec().unwrap());
        let mut wrong_q = r.clone();
        wrong_q.queries = vec![Query::query(
            Name::from_ascii("evil.example.").unwrap(),
            RecordType::A,
        )];
        out.push(wrong_q.to_vec().unwrap());
    }
    out.push(r.to_vec().unwrap());
    out
}
