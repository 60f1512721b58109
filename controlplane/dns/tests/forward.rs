//! Forwarding against fake upstream resolvers on 127.0.0.1 (built with hickory-proto): UDP, TCP,
//! a truncated upstream answer retried over TCP, silent, refusing and failing upstreams,
//! mismatched replies, the in-flight bound, internal networks, and no loop to itself.

mod common;

use std::time::Duration;

use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use ovnet_dns::{DropReason, Rcode, Resolver};
use tokio::net::UdpSocket;

#[tokio::test]
async fn other_names_are_forwarded_over_udp() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let r = start(front_zone(false), vec![up.addr]);
    let m = udp(r.local_addr(), "Example.COM", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    assert!(!m.authoritative);
    assert_eq!(m.queries[0].name().to_ascii(), "Example.COM.");
    assert_eq!((up.udp_count(), up.tcp_count()), (1, 0));
    // Local names never reach the upstream, nor do names that are not on the network.
    udp(r.local_addr(), "web", RecordType::A).await;
    udp(r.local_addr(), "nothere", RecordType::A).await;
    udp(r.local_addr(), "x.back", RecordType::AAAA).await;
    assert_eq!(up.udp_count(), 1);
    let c = r.counters();
    assert_eq!(c.forwarded, 1);
    assert_eq!(
        c.upstream_timeouts + c.upstream_failures + c.upstream_mismatched,
        0
    );
    r.stop().await;
}

#[tokio::test]
async fn tcp_queries_are_forwarded_over_tcp() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let r = start(front_zone(false), vec![up.addr]);
    let m = tcp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    assert_eq!((up.udp_count(), up.tcp_count()), (0, 1));
    r.stop().await;
}

#[tokio::test]
async fn a_truncated_upstream_answer_is_retried_over_tcp() {
    let up = FakeUpstream::start(Behaviour::TruncateUdp).await;
    let r = start(front_zone(false), vec![up.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert!(!m.truncation);
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    assert_eq!((up.udp_count(), up.tcp_count()), (1, 1));
    assert_eq!(r.counters().upstream_truncated, 1);
    r.stop().await;
}

#[tokio::test]
async fn a_truncated_answer_is_relayed_when_the_upstream_has_no_tcp() {
    let up = FakeUpstream::start(Behaviour::TruncateUdpNoTcp).await;
    let r = start(front_zone(false), vec![up.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(
        m.truncation,
        "TC passed on, so the client may try TCP itself"
    );
    assert_eq!((up.udp_count(), up.tcp_count()), (1, 1));
    let c = r.counters();
    assert_eq!((c.upstream_truncated, c.upstream_failures), (1, 1));
    r.stop().await;
}

#[tokio::test]
async fn a_large_upstream_answer_is_truncated_for_udp_clients_and_whole_over_tcp() {
    let up = FakeUpstream::start(Behaviour::Big(60)).await;
    let r = start(front_zone(false), vec![up.addr]);
    let raw = udp_raw(
        r.local_addr(),
        &query(9, "example.com", RecordType::A, None),
    )
    .await;
    assert!(raw.len() <= 512);
    let m = Message::from_vec(&raw).unwrap();
    assert!(m.truncation && m.answers.is_empty() && m.id == 9);
    let m = tcp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m).len(), 60);
    let m = udp_exchange(
        r.local_addr(),
        &query(10, "example.com", RecordType::A, Some(4096)),
    )
    .await;
    assert_eq!(a_records(&m).len(), 60);
    r.stop().await;
}

#[tokio::test]
async fn a_silent_upstream_times_out_and_the_next_one_answers() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let r = start(front_zone(false), vec![silent.addr, good.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    assert_eq!((silent.udp_count(), good.udp_count()), (1, 1));
    assert_eq!(r.counters().upstream_timeouts, 1);
    // Over TCP too.
    let m = tcp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    assert_eq!(good.tcp_count(), 1);
    r.stop().await;
}

#[tokio::test]
async fn no_upstream_answering_is_servfail_within_the_deadline() {
    let a = FakeUpstream::start(Behaviour::Silent).await;
    let b = FakeUpstream::start(Behaviour::Silent).await;
    let r = start(front_zone(false), vec![a.addr, b.addr]);
    // The client waits far longer than the deadline (3 s here): the SERVFAIL must come first.
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::ServFail);
    assert_eq!(m.queries.len(), 1);
    let c = r.counters();
    assert_eq!(c.upstream_timeouts, 2);
    assert_eq!(c.answers(Rcode::ServFail), 1);
    // No upstream at all: SERVFAIL at once.
    r.set_upstreams(&[]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::ServFail);
    r.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_fails_fast_to_the_next() {
    // A port nobody listens on: ICMP port unreachable, seen by the connected UDP socket.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let mut cfg = config(vec![closed, good.addr]);
    cfg.upstream_timeout = Duration::from_secs(30);
    cfg.forward_deadline = Duration::from_secs(60);
    let r = Resolver::start(cfg, front_zone(false)).unwrap();
    // With a 30 s per-upstream timeout, an answer within the client's wait means the failure
    // was seen without waiting for the timeout.
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    let c = r.counters();
    assert_eq!((c.upstream_failures, c.upstream_timeouts), (1, 0));
    r.stop().await;
}

#[tokio::test]
async fn servfail_from_an_upstream_tries_the_next() {
    let failing = FakeUpstream::start(Behaviour::ServFail).await;
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let r = start(front_zone(false), vec![failing.addr, good.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    r.set_upstreams(&[failing.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::ServFail);
    assert_eq!(failing.udp_count(), 2);
    assert_eq!(r.counters().upstream_failures, 2);
    r.stop().await;
}

#[tokio::test]
async fn replies_with_the_wrong_id_or_question_are_ignored() {
    let up = FakeUpstream::start(Behaviour::Mismatched).await;
    let r = start(front_zone(false), vec![up.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(
        a_records(&m),
        vec![UPSTREAM_ANSWER],
        "the spoofed answers were not taken"
    );
    assert_eq!(m.queries[0].name().to_ascii(), "example.com.");
    let c = counters_when(&r, "both bad replies counted", |c| {
        c.upstream_mismatched == 2
    })
    .await;
    assert_eq!(c.upstream_timeouts, 0);
    r.stop().await;
}

#[tokio::test]
async fn internal_networks_refuse_and_never_forward() {
    let up = FakeUpstream::start(Behaviour::Answer).await;
    let r = start(front_zone(true), vec![up.addr]);
    for m in [
        udp(r.local_addr(), "example.com", RecordType::A).await,
        tcp(r.local_addr(), "example.com", RecordType::A).await,
    ] {
        assert_eq!(m.response_code, ResponseCode::Refused);
        assert!(!m.recursion_available);
    }
    assert_eq!(
        a_records(&udp(r.local_addr(), "web", RecordType::A).await).len(),
        1
    );
    assert_eq!((up.udp_count(), up.tcp_count()), (0, 0));
    assert_eq!(r.counters().forwarded, 0);
    r.stop().await;
}

#[tokio::test]
async fn the_resolver_never_forwards_to_itself() {
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let r = start(front_zone(false), vec![]);
    r.set_upstreams(&[r.local_addr(), good.addr, good.addr]);
    assert_eq!(r.upstreams(), vec![good.addr]);
    r.set_upstreams(&[r.local_addr()]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(m.response_code, ResponseCode::ServFail);
    assert_eq!(
        r.counters().queries_udp,
        1,
        "no query came back to the resolver"
    );
    r.stop().await;
}

#[tokio::test]
async fn forwards_beyond_the_bound_are_dropped_and_counted() {
    let silent = FakeUpstream::start(Behaviour::Silent).await;
    let mut cfg = config(vec![silent.addr]);
    cfg.max_forwards = 2;
    cfg.upstream_timeout = Duration::from_secs(2);
    let r = Resolver::start(cfg, front_zone(false)).unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in 0..5 {
        let q = query(id, "example.com", RecordType::A, None);
        client.send_to(&q, r.local_addr()).await.unwrap();
    }
    let c = counters_when(&r, "five queries taken", |c| c.queries_udp == 5).await;
    assert_eq!(c.drops(DropReason::ForwardLimit), 3, "{c:?}");
    let c = counters_when(&r, "the two forwards ended", |c| {
        c.answers(Rcode::ServFail) == 2
    })
    .await;
    assert_eq!(c.forwarded, 2);
    // The bound is per moment, not per lifetime: once they ended, forwarding works again.
    let good = FakeUpstream::start(Behaviour::Answer).await;
    r.set_upstreams(&[good.addr]);
    let m = udp(r.local_addr(), "example.com", RecordType::A).await;
    assert_eq!(a_records(&m), vec![UPSTREAM_ANSWER]);
    r.stop().await;
}
