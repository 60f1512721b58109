//! The resolver on real sockets (127.0.0.1, a free port): local answers over UDP and TCP, zone
//! updates, truncation, the TCP connection limit, floods of bad input, stopping, and the load
//! generator once.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use ovnet_dns::bench::{run, LoadOptions};
use ovnet_dns::{DropReason, Rcode, Resolver, Transport, Zone};
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

async fn check_local_answers(addr: SocketAddr, transport: Transport) {
    let ask = |name: &'static str, qtype| async move {
        match transport {
            Transport::Udp => udp(addr, name, qtype).await,
            Transport::Tcp => tcp(addr, name, qtype).await,
        }
    };
    for name in ["web", "WEB.", "web.front", "Web.Front."] {
        let m = ask(name, RecordType::A).await;
        assert_eq!(m.response_code, ResponseCode::NoError, "{name}");
        assert!(m.authoritative);
        assert_eq!(a_records(&m), vec![ip("10.0.0.2")], "{name}");
        assert_eq!(m.answers[0].ttl, 600);
    }
    let m = ask("db", RecordType::A).await;
    assert_eq!(a_records(&m), vec![ip("10.0.0.3"), ip("10.0.0.13")]);
    let m = ask("web", RecordType::AAAA).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let m = ask("3.0.0.10.in-addr.arpa", RecordType::PTR).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].data.to_string(), "db.front.");
    for name in ["nothere", "nothere.front", "web.back", "x.back", "api.v2"] {
        let m = ask(name, RecordType::A).await;
        assert_eq!(m.response_code, ResponseCode::NXDomain, "{name}");
    }
}

#[tokio::test]
async fn answers_over_udp_and_tcp() {
    let r = start(front_zone(false), vec![]);
    check_local_answers(r.local_addr(), Transport::Udp).await;
    check_local_answers(r.local_addr(), Transport::Tcp).await;
    let c = r.counters();
    assert_eq!((c.queries_udp, c.queries_tcp), (12, 12));
    assert_eq!(c.answers(Rcode::NoError), 14);
    assert_eq!(c.answers(Rcode::NxDomain), 10);
    assert_eq!(c.total_drops(), 0);
    r.stop().await;
}

#[tokio::test]
async fn zone_updates_are_visible_at_once() {
    let r = start(front_zone(false), vec![]);
    let addr = r.local_addr();
    assert_eq!(
        udp(addr, "new", RecordType::A).await.response_code,
        ResponseCode::NXDomain
    );
    let mut z = front_zone(false);
    z.add_endpoint("new", ip("10.0.0.7"));
    r.update(z);
    assert_eq!(
        a_records(&udp(addr, "new", RecordType::A).await),
        vec![ip("10.0.0.7")]
    );
    assert_eq!(
        a_records(&tcp(addr, "NEW.front", RecordType::A).await),
        vec![ip("10.0.0.7")]
    );
    r.update(Zone::new("front", false));
    for name in ["new", "web"] {
        let m = udp(addr, name, RecordType::A).await;
        assert_eq!(m.response_code, ResponseCode::NXDomain, "{name}");
    }
    assert!(r.zone().addresses("web").is_none());
    r.stop().await;
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let mut z = Zone::new("front", false);
    for i in 1..=60 {
        z.add_endpoint("many", Ipv4Addr::new(10, 0, 1, i));
    }
    let r = start(z, vec![]);
    let addr = r.local_addr();
    let raw = udp_raw(addr, &query(1, "many", RecordType::A, None)).await;
    assert!(raw.len() <= 512, "{} bytes", raw.len());
    let m = hickory_proto::op::Message::from_vec(&raw).unwrap();
    assert!(m.truncation);
    assert!(m.answers.is_empty());
    let m = udp_exchange(addr, &query(2, "many", RecordType::A, Some(4096))).await;
    assert!(!m.truncation);
    assert_eq!(a_records(&m).len(), 60);
    let m = tcp(addr, "many", RecordType::A).await;
    assert!(!m.truncation);
    assert_eq!(a_records(&m).len(), 60);
    assert_eq!(r.counters().truncated, 1);
    r.stop().await;
}

/// Reads until EOF or error; true if the peer closed (or reset) within the client wait.
async fn closed_by_peer(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(CLIENT_WAIT, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn tcp_connections_are_bounded() {
    let mut cfg = config(vec![]);
    cfg.max_tcp_connections = 3;
    cfg.tcp_idle_timeout = Duration::from_secs(30);
    let r = Resolver::start(cfg, front_zone(false)).unwrap();
    let addr = r.local_addr();
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let m = tcp_on(&mut s, &query(rand_id(), "web", RecordType::A, None)).await;
        assert_eq!(a_records(&m), vec![ip("10.0.0.2")]);
        open.push(s);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_by_peer(&mut extra).await,
        "the fourth connection is closed"
    );
    assert_eq!(r.counters().drops(DropReason::TcpConnectionLimit), 1);
    // The open ones still work; closing one frees its slot.
    let m = tcp_on(&mut open[1], &query(rand_id(), "db", RecordType::A, None)).await;
    assert_eq!(a_records(&m).len(), 2);
    drop(open.remove(0));
    let mut answered = false;
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let frame = query(rand_id(), "web", RecordType::A, None);
        let mut framed = (frame.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&frame);
        if s.write_all(&framed).await.is_ok() && !closed_by_peer_or_answer(&mut s).await {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "a slot frees up once a connection closes");
    r.stop().await;
}

/// False if `s` gets an answer, true if it is closed first.
async fn closed_by_peer_or_answer(s: &mut TcpStream) -> bool {
    let mut len = [0u8; 2];
    !matches!(
        tokio::time::timeout(CLIENT_WAIT, s.read_exact(&mut len)).await,
        Ok(Ok(_))
    )
}

/// 3000 datagrams of garbage: random bytes, cut and bit-flipped queries, odd headers.
fn garbage(rng: &mut rand::rngs::StdRng, i: usize) -> Vec<u8> {
    let good = query(i as u16, "web.front", RecordType::A, Some(1232));
    match i % 6 {
        0 => {
            let mut b = vec![0u8; rng.random_range(0..600)];
            rng.fill(&mut b[..]);
            b
        }
        1 => good[..rng.random_range(0..good.len())].to_vec(),
        2 => {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            b
        }
        3 => {
            // A header claiming many records, with nothing behind it.
            let mut b = good[..12].to_vec();
            b[4..12].copy_from_slice(&[0xff; 8]);
            b
        }
        4 => {
            let mut b = good.clone();
            b[2] |= 0x80; // a response
            b
        }
        _ => {
            let mut b = vec![0u8; rng.random_range(4097..9000)];
            b[..good.len()].copy_from_slice(&good);
            b
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_garbage_is_counted_and_the_resolver_keeps_answering() {
    let r = start(front_zone(false), vec![]);
    let addr = r.local_addr();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3000);
    const TOTAL: u64 = 3000;
    // Small batches: a batch of 9 KB datagrams must fit the socket's receive buffer.
    const BATCH: u64 = 10;
    for batch in 0..TOTAL / BATCH {
        for i in 0..BATCH {
            let b = garbage(&mut rng, (batch * BATCH + i) as usize);
            sock.send_to(&b, addr).await.unwrap();
        }
        // Let the resolver take each batch before the next, so the socket buffer never
        // overflows and every datagram is accounted for.
        let want = (batch + 1) * BATCH;
        counters_when(&r, "a batch received", |c| c.queries_udp >= want).await;
    }
    let c = counters_when(&r, "every datagram answered or dropped", |c| {
        c.total_answers() + c.total_drops() == TOTAL
    })
    .await;
    assert_eq!(c.queries_udp, TOTAL);
    assert!(c.drops(DropReason::NoHeader) > 0, "{c:?}");
    assert!(c.drops(DropReason::Response) >= TOTAL / 6, "{c:?}");
    assert!(c.answers(Rcode::FormErr) >= TOTAL / 6, "{c:?}");
    assert!(c.answers(Rcode::NotImp) > 0, "{c:?}");
    check_local_answers(addr, Transport::Udp).await;
    check_local_answers(addr, Transport::Tcp).await;
    r.stop().await;
}

#[tokio::test]
async fn tcp_garbage_is_counted_and_the_resolver_keeps_answering() {
    let r = start(front_zone(false), vec![]);
    let addr = r.local_addr();
    let mut rng = rand::rngs::StdRng::seed_from_u64(53);
    // A zero length, and a length above the largest query: closed at once.
    for prefix in [[0u8, 0], [0xff, 0xff]] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&prefix).await.unwrap();
        assert!(closed_by_peer(&mut s).await);
    }
    // Half a message, then the client closes its side.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 40, 1, 2, 3]).await.unwrap();
    s.shutdown().await.unwrap();
    assert!(closed_by_peer(&mut s).await);
    // Half a message, then silence until the idle timeout.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 40, 1, 2, 3]).await.unwrap();
    assert!(closed_by_peer(&mut s).await);
    // Random bytes: whatever they frame, the connection ends or answers, and nothing hangs.
    for _ in 0..30 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut b = vec![0u8; rng.random_range(1..3000)];
        rng.fill(&mut b[..]);
        let _ = s.write_all(&b).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let read = tokio::time::timeout(CLIENT_WAIT, s.read_to_end(&mut sink)).await;
        assert!(read.is_ok(), "the resolver ends every garbage connection");
    }
    // Well-framed garbage gets FORMERR (or is dropped) on a connection that stays usable.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let good = query(77, "web", RecordType::A, None);
    let mut framed = vec![0, 12];
    framed.extend_from_slice(&good[..12]);
    framed[6..8].copy_from_slice(&[0, 5]); // qdcount 5, nothing behind
    s.write_all(&framed).await.unwrap();
    let m = tcp_on(&mut s, &good).await;
    assert_eq!(
        m.response_code,
        ResponseCode::FormErr,
        "the garbage answered first"
    );
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    let m = hickory_proto::op::Message::from_vec(&buf).unwrap();
    assert_eq!(a_records(&m), vec![ip("10.0.0.2")]);

    let c = r.counters();
    assert!(c.drops(DropReason::TcpFraming) >= 2, "{c:?}");
    assert!(c.drops(DropReason::TcpIncomplete) >= 2, "{c:?}");
    check_local_answers(addr, Transport::Tcp).await;
    check_local_answers(addr, Transport::Udp).await;
    r.stop().await;
}

#[tokio::test]
async fn stop_releases_the_port_at_once() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let mut cfg = config(vec![silent.addr]);
    cfg.upstream_timeout = Duration::from_secs(30);
    cfg.forward_deadline = Duration::from_secs(30);
    let r = Resolver::start(cfg.clone(), front_zone(false)).unwrap();
    let addr = r.local_addr();
    // A TCP client idle on a connection, and a forward in flight, while stopping.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let m = tcp_on(&mut idle, &query(1, "web", RecordType::A, None)).await;
    assert_eq!(a_records(&m).len(), 1);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client
        .send_to(&query(2, "example.com", RecordType::A, None), addr)
        .await
        .unwrap();
    wait_for("the forward to start", CLIENT_WAIT, || {
        silent.udp_count() == 1
    })
    .await;
    r.stop().await;
    // Bound again at once, by anybody, over both transports.
    drop(std::net::UdpSocket::bind(addr).expect("UDP port released"));
    cfg.listen = addr;
    let again = Resolver::start(cfg, front_zone(false)).expect("rebind after stop");
    assert_eq!(again.local_addr(), addr);
    assert!(
        closed_by_peer(&mut idle).await,
        "stopping closed the TCP connection"
    );
    assert_eq!(a_records(&udp(addr, "web", RecordType::A).await).len(), 1);
    again.stop().await;
}

#[tokio::test]
async fn dropping_the_handle_stops_serving() {
    let r = start(front_zone(false), vec![]);
    let addr = r.local_addr();
    drop(r);
    let mut cfg = config(vec![]);
    cfg.listen = addr;
    let mut last = None;
    for _ in 0..250 {
        match Resolver::start(cfg.clone(), front_zone(false)) {
            Ok(again) => {
                again.stop().await;
                return;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the port stayed bound after the handle was dropped: {last:?}");
}

#[tokio::test]
async fn start_fails_clearly_outside_a_runtime_or_on_a_taken_port() {
    let r = start(front_zone(false), vec![]);
    let mut cfg = config(vec![]);
    cfg.listen = r.local_addr();
    let e = Resolver::start(cfg, front_zone(false))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&r.local_addr().to_string()) && e.contains("bind"),
        "{e}"
    );
    let e =
        std::thread::spawn(|| Resolver::start(config(vec![]), Zone::new("n", false)).unwrap_err())
            .join()
            .unwrap();
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_measures_the_resolver() {
    let r = start(front_zone(false), vec![]);
    let opts = LoadOptions {
        target: r.local_addr(),
        names: vec!["web".into(), "db.front".into()],
        rate: None,
        duration: Duration::from_millis(500),
        concurrency: 4,
        timeout: Duration::from_secs(5),
    };
    let rep = run(&opts).await.unwrap();
    assert!(rep.answered > 0, "{rep:?}");
    assert_eq!(rep.sent, rep.answered + rep.lost, "{rep:?}");
    assert_eq!(rep.not_noerror, 0, "{rep:?}");
    assert!(
        rep.qps > 0.0 && rep.p50 <= rep.p99 && rep.p99 <= rep.max,
        "{rep:?}"
    );
    let paced = LoadOptions {
        rate: Some(200),
        names: vec!["nothere".into()],
        ..opts.clone()
    };
    let rep = run(&paced).await.unwrap();
    assert!(
        rep.answered > 0 && rep.not_noerror == rep.answered,
        "{rep:?}"
    );
    assert!(run(&LoadOptions {
        names: vec![],
        ..opts
    })
    .await
    .is_err());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_binary_prints_json() {
    let r = start(front_zone(false), vec![]);
    let target = r.local_addr().to_string();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ovnet-dns-bench"))
        .args([
            "--target",
            &target,
            "--name",
            "web",
            "--seconds",
            "0.3",
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["answered"].as_u64().unwrap() > 0, "{v}");
    assert!(v["qps"].as_f64().unwrap() > 0.0, "{v}");
    assert!(
        v["p99_us"].as_f64().unwrap() >= v["p50_us"].as_f64().unwrap(),
        "{v}"
    );
    assert_eq!(v["target"], target);
    r.stop().await;
    // Nobody there: it says so and fails.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ovnet-dns-bench"))
        .args([
            "--target",
            &target,
            "--name",
            "web",
            "--seconds",
            "0.2",
            "--timeout-ms",
            "50",
        ])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no answer"));
}
