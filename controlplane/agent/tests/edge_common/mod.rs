//! What the network edge's end-to-end tests share: a DNS client and a fake upstream resolver
//! (hickory-proto), a TCP server that tells each client the address it sees, and ways to wait
//! for a name to resolve or not. Sockets are opened inside the test bed's namespaces
//! ([`in_netns`]) and then used from ordinary threads. Every wait is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use ovnet_cluster::{wait_until, Cluster};
use ovnet_testbed::in_netns;

/// How long names take at most to appear or vanish everywhere, on a loaded machine.
pub const NAMES: Duration = Duration::from_secs(30);
/// How long one DNS exchange may take before it counts as unanswered.
const DNS_WAIT: Duration = Duration::from_secs(3);
/// Connect timeout of the TCP probes: what the filter drops costs this much.
pub const CONNECT_WAIT: Duration = Duration::from_secs(3);

/// The name the fake upstream knows, and its address.
pub const OUTSIDE_NAME: &str = "outside.example.";
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// A DNS query for `name`, type `qtype`, RD set.
pub fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    m.to_vec().unwrap()
}

/// Asks `server` (UDP) from inside `ns` for `name`'s A records: the answer's code and
/// addresses, or why there is none.
pub fn dig(
    ns: &str,
    server: SocketAddrV4,
    name: &str,
) -> Result<(ResponseCode, Vec<Ipv4Addr>), String> {
    let id: u16 = rand::random();
    let q = query_bytes(id, name, RecordType::A);
    let sock = in_netns(ns, || UdpSocket::bind("0.0.0.0:0"))
        .map_err(|e| format!("enter {ns}: {e}"))?
        .map_err(|e| format!("bind in {ns}: {e}"))?;
    sock.set_read_timeout(Some(DNS_WAIT)).unwrap();
    sock.connect(server)
        .map_err(|e| format!("connect {server}: {e}"))?;
    sock.send(&q)
        .map_err(|e| format!("send to {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock
            .recv(&mut buf)
            .map_err(|e| format!("no answer from {server} for {name}: {e}"))?;
        let m = Message::from_vec(&buf[..n]).map_err(|e| format!("bad answer: {e}"))?;
        if m.id != id {
            continue;
        }
        let ips = m
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        return Ok((m.response_code, ips));
    }
}

/// Waits until `name` resolves to exactly `want` at `server` from `ns`.
pub fn wait_resolves(ns: &str, server: SocketAddrV4, name: &str, want: &[&str]) {
    let want: Vec<Ipv4Addr> = want.iter().map(|s| s.parse().unwrap()).collect();
    wait_until(
        &format!("{name} to resolve to {want:?} from {ns}"),
        NAMES,
        || match dig(ns, server, name)? {
            (ResponseCode::NoError, ips) if ips == want => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// Waits until `server` says NXDOMAIN for `name` from `ns`.
pub fn wait_nxdomain(ns: &str, server: SocketAddrV4, name: &str) {
    wait_until(
        &format!("{name} to be NXDOMAIN from {ns}"),
        NAMES,
        || match dig(ns, server, name)? {
            (ResponseCode::NXDomain, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

/// `getent hosts NAME` inside `ns` (through `ip netns exec`, so with the namespace's own
/// `/etc/netns/NS/resolv.conf`): the first address, or why not.
pub fn getent(c: &Cluster, ns: &str, name: &str) -> Result<String, String> {
    let out =
        c.tb.exec(ns, &["getent", "hosts", name])
            .map_err(|e| e.to_string())?;
    out.split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| format!("nothing in {out:?}"))
}

/// A fake upstream resolver on UDP port 53 of `ip` in namespace `ns`: A for
/// [`OUTSIDE_NAME`] is [`OUTSIDE_IP`], every other name NXDOMAIN. Stops on drop.
pub struct FakeUpstream {
    pub queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn start(ns: &str, ip: Ipv4Addr) -> FakeUpstream {
        let sock = in_netns(ns, || UdpSocket::bind((ip, 53)))
            .unwrap()
            .unwrap_or_else(|e| panic!("bind {ip}:53 in {ns}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, s) = (queries.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(m) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                q.fetch_add(1, Ordering::SeqCst);
                let Some(question) = m.queries.first().cloned() else {
                    continue;
                };
                let mut r = Message::response(m.id, OpCode::Query);
                r.metadata.recursion_desired = m.recursion_desired;
                r.metadata.recursion_available = true;
                r.add_query(question.clone());
                let ours = question
                    .name()
                    .to_ascii()
                    .eq_ignore_ascii_case(OUTSIDE_NAME);
                if !ours {
                    r.metadata.response_code = ResponseCode::NXDomain;
                } else if question.query_type() == RecordType::A {
                    r.add_answer(Record::from_rdata(
                        question.name().clone(),
                        60,
                        RData::A(A(OUTSIDE_IP)),
                    ));
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, peer);
                }
            }
        });
        FakeUpstream {
            queries,
            stop,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server in a namespace that writes each client the address it sees (`IP:PORT\n`) and
/// closes. Stops on drop.
pub struct WhoServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WhoServer {
    /// Listens on `addr` (port 0: any) in namespace `ns`.
    pub fn start(ns: &str, addr: SocketAddrV4) -> WhoServer {
        let listener = in_netns(ns, || TcpListener::bind(addr))
            .unwrap()
            .unwrap_or_else(|e| panic!("listen on {addr} in {ns}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.write_all(format!("{peer}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        WhoServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for WhoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from namespace `ns` to `to` and returns the address the server saw (its IP only),
/// or why the connection failed.
pub fn who(ns: &str, to: SocketAddr) -> Result<Ipv4Addr, String> {
    let stream = in_netns(ns, || TcpStream::connect_timeout(&to, CONNECT_WAIT))
        .map_err(|e| format!("enter {ns}: {e}"))?
        .map_err(|e| format!("connect {to} from {ns}: {e}"))?;
    let mut stream = stream;
    stream.set_read_timeout(Some(CONNECT_WAIT)).unwrap();
    let mut out = String::new();
    stream
        .read_to_string(&mut out)
        .map_err(|e| format!("read from {to}: {e}"))?;
    let seen: SocketAddr = out
        .trim()
        .parse()
        .map_err(|_| format!("server said {out:?}"))?;
    match seen.ip() {
        std::net::IpAddr::V4(ip) => Ok(ip),
        other => Err(format!("server saw {other}")),
    }
}

/// `nft -s list table ip ovnet` in `ns` (the rules without their counters), or `None` if the
/// table is not there.
pub fn ovnet_table(c: &Cluster, ns: &str) -> Option<String> {
    c.tb.exec(ns, &["nft", "-s", "list", "table", "ip", "ovnet"])
        .ok()
}

/// The tables of `ns`, as `nft list tables` prints them.
pub fn tables(c: &Cluster, ns: &str) -> Vec<String> {
    c.sh(ns, &["nft", "list", "tables"])
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
