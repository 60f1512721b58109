//! The decision function as a function: every answer kind, the bad-input rules, truncation, the
//! forwarding helpers, and random and mutated bytes (no panic, every outcome well-formed).

mod common;

use common::{front_zone, ip, query};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use ovnet_dns::decide::{MAX_QUERY_LEN, MAX_UDP_PAYLOAD};
use ovnet_dns::{decide, decide_message, Decision, DropReason, Forward, Transport, Zone};
use rand::{Rng, SeedableRng};

const UDP: Transport = Transport::Udp;
const TCP: Transport = Transport::Tcp;

/// The answer `bytes` get on `zone` over `t`, parsed; panics if the decision is not an answer.
fn answer(bytes: &[u8], zone: &Zone, t: Transport) -> Message {
    match decide(bytes, zone, t) {
        Decision::Answer(r) => {
            let m = Message::from_vec(&r.bytes).expect("answer parses");
            assert_eq!(u16::from(m.response_code), u16::from(r.rcode));
            assert_eq!(m.message_type, MessageType::Response);
            m
        }
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Message {
    answer(&query(0x1234, name, qtype, None), zone, UDP)
}

fn forward(bytes: &[u8], zone: &Zone, t: Transport) -> Forward {
    match decide(bytes, zone, t) {
        Decision::Forward(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn a_of(m: &Message) -> Vec<std::net::Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

#[test]
fn endpoint_names_get_a_records_with_docker_ttl_and_aa() {
    let z = front_zone(false);
    for name in ["web", "web.", "WEB", "Web.Front", "web.FRONT."] {
        let m = ask(&z, name, RecordType::A);
        assert_eq!(m.response_code, ResponseCode::NoError, "{name}");
        assert!(m.authoritative, "{name}: AA");
        assert!(m.recursion_available, "{name}: RA");
        assert!(m.recursion_desired, "{name}: RD copied");
        assert_eq!(m.id, 0x1234);
        assert_eq!(a_of(&m), vec![ip("10.0.0.2")], "{name}");
        assert_eq!(m.answers[0].ttl, 600);
        let asked = Name::from_ascii(name.trim_end_matches('.')).unwrap();
        assert_eq!(m.answers[0].name.to_ascii(), asked.to_ascii() + ".");
        assert_eq!(m.queries.len(), 1);
    }
    let m = ask(&z, "db", RecordType::A);
    assert_eq!(a_of(&m), vec![ip("10.0.0.3"), ip("10.0.0.13")]);
    let m = ask(&z, "db", RecordType::ANY);
    assert_eq!(a_of(&m).len(), 2);
}

#[test]
fn other_types_for_known_names_are_empty_noerror() {
    let z = front_zone(false);
    for qtype in [
        RecordType::AAAA,
        RecordType::MX,
        RecordType::TXT,
        RecordType::PTR,
    ] {
        let m = ask(&z, "web.front", qtype);
        assert_eq!(m.response_code, ResponseCode::NoError, "{qtype}");
        assert!(m.authoritative);
        assert!(m.answers.is_empty(), "{qtype}");
    }
}

#[test]
fn reverse_names_of_endpoints_get_ptr() {
    let z = front_zone(false);
    let m = ask(&z, "2.0.0.10.in-addr.arpa", RecordType::PTR);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.authoritative);
    let [r] = m.answers.as_slice() else {
        panic!("one PTR wanted: {m:?}")
    };
    assert_eq!(r.ttl, 600);
    assert_eq!(
        r.data,
        RData::PTR(PTR(Name::from_ascii("web.front.").unwrap()))
    );
    let m = ask(&z, "13.0.0.10.IN-ADDR.ARPA.", RecordType::PTR);
    assert_eq!(
        m.answers[0].data,
        RData::PTR(PTR(Name::from_ascii("db.front.").unwrap()))
    );
    // An A question for a reverse name: it exists, no A data.
    let m = ask(&z, "2.0.0.10.in-addr.arpa", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    // Not an endpoint's address: not ours, forwarded as Docker does.
    let q = query(1, "99.0.0.10.in-addr.arpa", RecordType::PTR, None);
    forward(&q, &z, UDP);
}

#[test]
fn names_not_on_the_network_are_nxdomain() {
    let z = front_zone(false);
    for name in [
        "nothere",
        "NOTHERE.",
        "nothere.front",
        "front",
        "back",
        "web.back",
        "anything.at.all.back",
        "api.v2",
    ] {
        for qtype in [RecordType::A, RecordType::AAAA] {
            let m = ask(&z, name, qtype);
            assert_eq!(m.response_code, ResponseCode::NXDomain, "{name} {qtype}");
            assert!(m.authoritative, "{name}");
            assert!(m.answers.is_empty());
        }
    }
}

#[test]
fn other_names_are_forwarded_with_a_fresh_id() {
    let z = front_zone(false);
    let q = query(0x4242, "Example.COM", RecordType::AAAA, Some(1232));
    let f = forward(&q, &z, UDP);
    assert_eq!(f.transport(), UDP);
    assert_eq!(f.question().name().to_ascii(), "Example.COM.");
    let up = Message::from_vec(&f.upstream_query(0x0777).unwrap()).unwrap();
    assert_eq!(up.id, 0x0777);
    assert_eq!(up.message_type, MessageType::Query);
    assert!(up.recursion_desired);
    assert_eq!(up.queries, Message::from_vec(&q).unwrap().queries);
    assert_eq!(up.edns.as_ref().map(Edns::max_payload), Some(1232));
    // A client advertising more than we take is capped; one without EDNS gets none upstream.
    let q = query(1, "example.com", RecordType::A, Some(65_000));
    let up = Message::from_vec(&forward(&q, &z, UDP).upstream_query(9).unwrap()).unwrap();
    assert_eq!(up.edns.map(|e| e.max_payload()), Some(MAX_UDP_PAYLOAD));
    let q = query(1, "example.com", RecordType::A, None);
    let up = Message::from_vec(&forward(&q, &z, TCP).upstream_query(9).unwrap()).unwrap();
    assert!(up.edns.is_none());
    // The root and multi-label names under no network are not ours either.
    forward(&query(1, ".", RecordType::NS, None), &z, UDP);
    forward(&query(1, "web.example.com", RecordType::A, None), &z, UDP);
}

#[test]
fn internal_networks_refuse_instead_of_forwarding() {
    let z = front_zone(true);
    let m = ask(&z, "example.com", RecordType::A);
    assert_eq!(m.response_code, ResponseCode::Refused);
    assert!(!m.recursion_available);
    // Their own names still resolve, and unknown single labels are still NXDOMAIN.
    assert_eq!(a_of(&ask(&z, "web", RecordType::A)), vec![ip("10.0.0.2")]);
    assert_eq!(
        ask(&z, "nothere", RecordType::A).response_code,
        ResponseCode::NXDomain
    );
}

/// A header: id, flags byte 1 (QR, opcode, AA, TC, RD), flags byte 2, counts.
fn header(id: u16, flags1: u8, counts: [u16; 4]) -> Vec<u8> {
    let mut h = id.to_be_bytes().to_vec();
    h.extend_from_slice(&[flags1, 0]);
    for c in counts {
        h.extend_from_slice(&c.to_be_bytes());
    }
    h
}

#[test]
fn bad_input_gets_formerr_notimp_refused_or_is_dropped() {
    let z = front_zone(false);
    // No header.
    for n in 0..12 {
        let bytes = vec![0u8; n];
        assert!(matches!(
            decide(&bytes, &z, UDP),
            Decision::Drop(DropReason::NoHeader)
        ));
    }
    // A response.
    let mut resp = query(7, "web", RecordType::A, None);
    resp[2] |= 0x80;
    assert!(matches!(
        decide(&resp, &z, UDP),
        Decision::Drop(DropReason::Response)
    ));
    // Opcodes other than QUERY: NOTIMP, id and opcode echoed.
    for opcode in [1u8, 2, 4, 5, 15] {
        let mut q = query(8, "web", RecordType::A, None);
        q[2] = (q[2] & 0x87) | (opcode << 3);
        let m = answer(&q, &z, UDP);
        assert_eq!(m.response_code, ResponseCode::NotImp, "opcode {opcode}");
        assert_eq!(m.id, 8);
        assert_eq!(u8::from(m.op_code), opcode);
    }
    // Question counts other than 1.
    for qd in [0u16, 2, 65_535] {
        let m = answer(&header(9, 0x01, [qd, 0, 0, 0]), &z, UDP);
        assert_eq!(m.response_code, ResponseCode::FormErr, "qdcount {qd}");
        assert_eq!(m.id, 9);
        assert!(m.recursion_desired);
    }
    // A question that is cut short, and a good question followed by a broken record.
    let q = query(10, "web.front", RecordType::A, None);
    for cut in 13..q.len() {
        let m = answer(&q[..cut], &z, UDP);
        assert_eq!(m.response_code, ResponseCode::FormErr, "cut at {cut}");
    }
    let mut q = query(11, "web", RecordType::A, None);
    q[11] = 1; // arcount 1, and no record follows
    let m = answer(&q, &z, UDP);
    assert_eq!(m.response_code, ResponseCode::FormErr);
    assert_eq!(m.queries.len(), 1, "the readable question is echoed");
    // Oversized.
    let mut big = query(12, "web", RecordType::A, None);
    big.resize(MAX_QUERY_LEN + 1, 0);
    assert_eq!(answer(&big, &z, UDP).response_code, ResponseCode::FormErr);
    // Class other than IN.
    for class in [DNSClass::CH, DNSClass::HS, DNSClass::ANY] {
        let mut m = Message::new(13, MessageType::Query, OpCode::Query);
        let mut question = Query::query(Name::from_ascii("web").unwrap(), RecordType::A);
        question.set_query_class(class);
        m.add_query(question);
        let r = answer(&m.to_vec().unwrap(), &z, UDP);
        assert_eq!(r.response_code, ResponseCode::Refused, "{class:?}");
    }
    // Meta types in the question, and zone transfers.
    for (qtype, code) in [
        (RecordType::OPT, ResponseCode::FormErr),
        (RecordType::TSIG, ResponseCode::FormErr),
        (RecordType::AXFR, ResponseCode::Refused),
        (RecordType::IXFR, ResponseCode::Refused),
    ] {
        assert_eq!(ask(&z, "web", qtype).response_code, code, "{qtype}");
    }
}

#[test]
fn edns_is_answered_and_unknown_versions_get_badvers() {
    let z = front_zone(false);
    let m = answer(&query(1, "web", RecordType::A, Some(1232)), &z, UDP);
    assert_eq!(
        m.edns.as_ref().map(Edns::max_payload),
        Some(MAX_UDP_PAYLOAD)
    );
    let mut q = Message::from_vec(&query(2, "web", RecordType::A, Some(1232))).unwrap();
    q.edns.as_mut().unwrap().set_version(1);
    let m = answer(&q.to_vec().unwrap(), &z, UDP);
    // 16 is BADVERS in an answer with OPT (hickory reads the shared code as BADSIG).
    assert_eq!(u16::from(m.response_code), 16);
    assert!(m.edns.is_some());
    assert!(m.answers.is_empty());
    // Two OPT records: FORMERR (RFC 6891 section 6.1.1).
    let mut two = query(3, "web", RecordType::A, Some(1232));
    let opt = two[two.len() - 11..].to_vec();
    two.extend_from_slice(&opt);
    two[11] = 2;
    assert_eq!(answer(&two, &z, UDP).response_code, ResponseCode::FormErr);
}

#[test]
fn decide_message_matches_decide() {
    let z = front_zone(false);
    let q = query(5, "web", RecordType::A, None);
    let parsed = Message::from_vec(&q).unwrap();
    let (Decision::Answer(a), Decision::Answer(b)) =
        (decide(&q, &z, UDP), decide_message(&parsed, &z, UDP))
    else {
        panic!("both answer");
    };
    assert_eq!(a, b);
}

/// An upstream reply to `up` (the query as sent upstream) with `n` A records.
fn upstream_reply(up: &Message, n: u8) -> Message {
    let mut r = Message::response(up.id, OpCode::Query);
    r.metadata.recursion_available = true;
    r.add_queries(up.queries.iter().cloned());
    for i in 0..n {
        let data = RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, i)));
        r.add_answer(Record::from_rdata(up.queries[0].name().clone(), 60, data));
    }
    r
}

#[test]
fn upstream_replies_must_match_id_and_question() {
    let z = front_zone(false);
    let f = forward(&query(0x1111, "example.com", RecordType::A, None), &z, UDP);
    let up = Message::from_vec(&f.upstream_query(0x2222).unwrap()).unwrap();
    let good = upstream_reply(&up, 1);
    assert!(f.check_reply(0x2222, &good.to_vec().unwrap()).is_some());
    // Case differences in the echoed name are fine.
    let mut upper = good.clone();
    upper.queries = vec![Query::query(
        Name::from_ascii("EXAMPLE.COM").unwrap(),
        RecordType::A,
    )];
    assert!(f.check_reply(0x2222, &upper.to_vec().unwrap()).is_some());
    let mut wrong_id = good.clone();
    wrong_id.metadata.id = 0x2223;
    let mut wrong_name = good.clone();
    wrong_name.queries = vec![Query::query(
        Name::from_ascii("example.net").unwrap(),
        RecordType::A,
    )];
    let mut wrong_type = good.clone();
    wrong_type.queries = vec![Query::query(
        Name::from_ascii("example.com").unwrap(),
        RecordType::AAAA,
    )];
    let mut not_response = good.clone();
    not_response.metadata.message_type = MessageType::Query;
    let mut no_question = good.clone();
    no_question.queries.clear();
    for bad in [wrong_id, wrong_name, wrong_type, not_response, no_question] {
        assert!(
            f.check_reply(0x2222, &bad.to_vec().unwrap()).is_none(),
            "{bad:?}"
        );
    }
    let raw = good.to_vec().unwrap();
    for cut in 0..raw.len() {
        assert!(f.check_reply(0x2222, &raw[..cut]).is_none(), "cut at {cut}");
    }
}

#[test]
fn relayed_replies_get_the_client_id_and_fit_the_client() {
    let z = front_zone(false);
    // No EDNS: 512 bytes over UDP.
    let f = forward(&query(0x1111, "example.com", RecordType::A, None), &z, UDP);
    let up = Message::from_vec(&f.upstream_query(0x2222).unwrap()).unwrap();
    let small = upstream_reply(&up, 2).to_vec().unwrap();
    let m = f.check_reply(0x2222, &small).unwrap();
    let r = f.relay(&m, &small).unwrap();
    assert!(!r.truncated);
    assert_eq!(r.bytes[2..], small[2..], "relayed byte for byte");
    assert_eq!(Message::from_vec(&r.bytes).unwrap().id, 0x1111);
    let big = upstream_reply(&up, 60).to_vec().unwrap();
    assert!(big.len() > 512);
    let m = f.check_reply(0x2222, &big).unwrap();
    let r = f.relay(&m, &big).unwrap();
    assert!(r.truncated);
    assert!(r.bytes.len() <= 512);
    let t = Message::from_vec(&r.bytes).unwrap();
    assert!(t.truncation);
    assert_eq!(t.id, 0x1111);
    assert!(t.answers.is_empty());
    assert_eq!(t.queries, up.queries);
    // The same over TCP: whole.
    let f = forward(&query(0x1111, "example.com", RecordType::A, None), &z, TCP);
    let r = f.relay(&m, &big).unwrap();
    assert!(!r.truncated);
    assert_eq!(Message::from_vec(&r.bytes).unwrap().answers.len(), 60);
    // A client advertising 4096 gets it whole over UDP.
    let f = forward(&query(1, "example.com", RecordType::A, Some(4096)), &z, UDP);
    assert!(!f.relay(&m, &big).unwrap().truncated);
    // SERVFAIL echoes id and question.
    let s = Message::from_vec(&f.servfail().unwrap().bytes).unwrap();
    assert_eq!(s.response_code, ResponseCode::ServFail);
    assert_eq!((s.id, s.queries.len()), (1, 1));
}

/// Checks one decision: answers parse as responses to the same id, never exceed the UDP limit
/// of a client without EDNS unless they carry a question the client sent with EDNS.
fn check_outcome(bytes: &[u8], z: &Zone, t: Transport) {
    match decide(bytes, z, t) {
        Decision::Answer(r) => {
            let m = Message::from_vec(&r.bytes).expect("every answer parses");
            assert_eq!(m.message_type, MessageType::Response);
            assert_eq!(m.id.to_be_bytes(), [bytes[0], bytes[1]]);
            assert!(r.bytes.len() <= usize::from(MAX_UDP_PAYLOAD));
        }
        Decision::Forward(f) => {
            let up = f.upstream_query(0xabcd).expect("forwardable query encodes");
            assert!(Message::from_vec(&up).is_ok());
            assert!(f.servfail().is_some());
        }
        Decision::Drop(reason) => {
            assert!(matches!(
                reason,
                DropReason::NoHeader | DropReason::Response
            ));
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let z = front_zone(false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x0d25);
    for i in 0..50_000 {
        let len = rng.random_range(0..700);
        let mut bytes = vec![0u8; len];
        rng.fill(&mut bytes[..]);
        if i % 2 == 0 && len >= 12 {
            // Make most of them queries with one question, so the parser gets past the header.
            bytes[2] &= 0x07;
            bytes[4..6].copy_from_slice(&1u16.to_be_bytes());
        }
        let t = if i % 3 == 0 { TCP } else { UDP };
        check_outcome(&bytes, &z, t);
    }
}

#[test]
fn mutated_queries_never_panic() {
    let z = front_zone(false);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let seeds = [
        query(1, "web", RecordType::A, None),
        query(2, "web.front", RecordType::AAAA, Some(4096)),
        query(3, "2.0.0.10.in-addr.arpa", RecordType::PTR, None),
        query(4, "example.com", RecordType::A, Some(1232)),
        query(5, "x.back", RecordType::ANY, None),
    ];
    for i in 0..50_000 {
        let mut bytes = seeds[i % seeds.len()].clone();
        for _ in 0..rng.random_range(1..6) {
            match rng.random_range(0..4) {
                0 => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] ^= 1 << rng.random_range(0..8);
                }
                1 => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                2 => bytes.truncate(rng.random_range(0..bytes.len())),
                _ => bytes.push(rng.random()),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let t = if i % 4 == 0 { TCP } else { UDP };
        check_outcome(&bytes, &z, t);
    }
}
