//! The resolver's decisions, pure: given the bytes of a query and a network's [`Zone`], what to
//! do — send an answer (its bytes), forward it upstream, or drop it (and why). No sockets, no
//! clock: the server carries the decision out, which is what makes this testable as a function
//! (in the manner of boringtun's `Tunn`).
//!
//! Every byte string is accepted: [`decide`] never panics, and allocates at most a parsed
//! message of one bounded query ([`MAX_QUERY_LEN`]). Messages are parsed and built with
//! hickory-proto; the only bytes touched by hand are the two of the id of a relayed reply.

use hickory_proto::op::{
    Edns, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::counters::DropReason;
use crate::zone::{Lookup, Zone, TTL};

/// Length of the DNS header (RFC 1035 section 4.1.1); anything shorter has no id to answer to.
pub const HEADER_LEN: usize = 12;

/// The UDP payload size the resolver advertises in EDNS, and the most it sends in one UDP
/// response whatever a client advertises (RFC 6891 section 6.2.5). 4096 is the common EDNS
/// buffer size of stub resolvers (glibc, dig); responses go over the network's bridge, where
/// a fragmented datagram is not lost the way it can be across the Internet.
pub const MAX_UDP_PAYLOAD: u16 = 4096;

/// The largest query accepted, over UDP or TCP: far above any real question (a name is at most
/// 255 bytes; EDNS padding rounds queries to 128 or 468 bytes, RFC 8467), and the bound on what
/// a TCP connection buffers.
pub const MAX_QUERY_LEN: usize = MAX_UDP_PAYLOAD as usize;

/// The UDP response limit for clients without EDNS (RFC 1035 section 4.2.1).
const CLASSIC_UDP_LIMIT: usize = 512;

/// How a query arrived, and so how its answer leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram; answers above the client's limit are truncated (TC set).
    Udp,
    /// A TCP connection with 2-byte length framing; answers up to 65535 bytes.
    Tcp,
}

/// What to do with one received message.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Send these bytes back to the sender.
    Answer(Reply),
    /// Ask the upstream resolvers, then answer with [`Forward::relay`] or [`Forward::servfail`].
    Forward(Forward),
    /// Send nothing, and count the reason.
    Drop(DropReason),
}

/// A response ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The encoded message.
    pub bytes: Vec<u8>,
    /// Its response code (for the counters).
    pub rcode: ResponseCode,
    /// Whether it was cut down to fit the client's UDP limit (TC set).
    pub truncated: bool,
}

/// A query to forward upstream: what to send, and how to turn a reply into the client's answer.
#[derive(Debug, Clone)]
pub struct Forward {
    query: Message,
    transport: Transport,
}

/// What `bytes` (one UDP datagram or one TCP message, without the length prefix) calls for, on
/// the network of `zone`.
pub fn decide(bytes: &[u8], zone: &Zone, transport: Transport) -> Decision {
    let mut decoder = BinDecoder::new(bytes);
    let Ok(header) = Header::read(&mut decoder) else {
        return Decision::Drop(DropReason::NoHeader);
    };
    if header.message_type == MessageType::Response {
        return Decision::Drop(DropReason::Response);
    }
    if header.op_code != OpCode::Query {
        return error(&header.metadata, None, ResponseCode::NotImp, transport);
    }
    // Read the question on its own first: a message whose other sections are broken still gets
    // its question back in the FORMERR, which helps the client match it.
    let question = match header.counts.queries {
        1 => Query::read(&mut decoder).ok(),
        _ => None,
    };
    if bytes.len() > MAX_QUERY_LEN || question.is_none() {
        return error(&header.metadata, question, ResponseCode::FormErr, transport);
    }
    match Message::from_vec(bytes) {
        Ok(query) => decide_message(&query, zone, transport),
        Err(_) => error(&header.metadata, question, ResponseCode::FormErr, transport),
    }
}

/// What a parsed query calls for (the rules of [`decide`] after parsing).
pub fn decide_message(query: &Message, zone: &Zone, transport: Transport) -> Decision {
    if query.message_type == MessageType::Response {
        return Decision::Drop(DropReason::Response);
    }
    if query.op_code != OpCode::Query {
        return error(&query.metadata, None, ResponseCode::NotImp, transport);
    }
    let [question] = query.queries.as_slice() else {
        return error(&query.metadata, None, ResponseCode::FormErr, transport);
    };
    let mut response = response_to(query, zone);
    if query.edns.as_ref().is_some_and(|e| e.version() != 0) {
        return finish(response, ResponseCode::BADVERS, query, transport);
    }
    if question.query_class() != DNSClass::IN {
        return finish(response, ResponseCode::Refused, query, transport);
    }
    match question.query_type() {
        RecordType::OPT | RecordType::TSIG | RecordType::SIG | RecordType::ZERO => {
            return finish(response, ResponseCode::FormErr, query, transport);
        }
        RecordType::AXFR | RecordType::IXFR => {
            return finish(response, ResponseCode::Refused, query, transport);
        }
        _ => {}
    }
    let qtype = question.query_type();
    let owner = question.name().clone();
    match zone.lookup(question.name()) {
        Lookup::Address(ips) => {
            response.metadata.authoritative = true;
            if matches!(qtype, RecordType::A | RecordType::ANY) {
                for ip in ips {
                    let data = RData::A(A(*ip));
                    response.add_answer(Record::from_rdata(owner.clone(), TTL, data));
                }
            }
            finish(response, ResponseCode::NoError, query, transport)
        }
        Lookup::Pointer(target) => {
            response.metadata.authoritative = true;
            if matches!(qtype, RecordType::PTR | RecordType::ANY) {
                let data = RData::PTR(PTR(target.clone()));
                response.add_answer(Record::from_rdata(owner, TTL, data));
            }
            finish(response, ResponseCode::NoError, query, transport)
        }
        Lookup::NxDomain => {
            response.metadata.authoritative = true;
            finish(response, ResponseCode::NXDomain, query, transport)
        }
        Lookup::Elsewhere if zone.is_internal() => {
            finish(response, ResponseCode::Refused, query, transport)
        }
        Lookup::Elsewhere => Decision::Forward(Forward {
            query: query.clone(),
            transport,
        }),
    }
}

/// The most a UDP response to `query` may carry: 512 bytes, or what the client advertised in
/// EDNS (at least 512, at most [`MAX_UDP_PAYLOAD`]).
pub fn udp_limit(query: &Message) -> usize {
    query.edns.as_ref().map_or(CLASSIC_UDP_LIMIT, |e| {
        usize::from(e.max_payload()).clamp(CLASSIC_UDP_LIMIT, usize::from(MAX_UDP_PAYLOAD))
    })
}

/// The start of our response to `query`: its id, opcode, RD and question; RA unless the network
/// is internal; our EDNS record if the client sent one.
fn response_to(query: &Message, zone: &Zone) -> Message {
    let mut r = Message::response(query.id, query.op_code);
    r.metadata.recursion_desired = query.recursion_desired;
    r.metadata.recursion_available = !zone.is_internal();
    r.metadata.checking_disabled = query.checking_disabled;
    r.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        r.set_edns(edns);
    }
    r
}

fn finish(mut r: Message, code: ResponseCode, query: &Message, transport: Transport) -> Decision {
    r.metadata.response_code = code;
    let limit = match transport {
        Transport::Udp => Some(udp_limit(query)),
        Transport::Tcp => None,
    };
    match encode(&r, limit) {
        Some(reply) => Decision::Answer(reply),
        None => Decision::Drop(DropReason::Encode),
    }
}

/// An error response built from the header alone (the rest could not be trusted).
fn error(
    header: &Metadata,
    question: Option<Query>,
    code: ResponseCode,
    transport: Transport,
) -> Decision {
    let mut r = Message::error_msg(header.id, header.op_code, code);
    r.metadata.recursion_desired = header.recursion_desired;
    r.add_queries(question);
    let limit = (transport == Transport::Udp).then_some(CLASSIC_UDP_LIMIT);
    match encode(&r, limit) {
        Some(reply) => Decision::Answer(reply),
        None => Decision::Drop(DropReason::Encode),
    }
}

/// Encodes `msg`; past `limit` bytes, sends the question only with TC set (RFC 2181 section 9:
/// the client retries over TCP). `None` only if hickory cannot encode it at all.
fn encode(msg: &Message, limit: Option<usize>) -> Option<Reply> {
    let rcode = msg.response_code;
    let bytes = msg.to_vec().ok()?;
    let Some(limit) = limit.filter(|&l| bytes.len() > l) else {
        return Some(Reply {
            bytes,
            rcode,
            truncated: false,
        });
    };
    let mut cut = msg.truncate();
    let mut bytes = cut.to_vec().ok()?;
    if bytes.len() > limit {
        // An upstream's EDNS options (padding) can push even the bare question past 512.
        cut.edns = None;
        bytes = cut.to_vec().ok()?;
    }
    Some(Reply {
        bytes,
        rcode,
        truncated: true,
    })
}

impl Forward {
    /// The client's question.
    pub fn question(&self) -> &Query {
        &self.query.queries[0]
    }

    /// How the client asked (the upstream is asked over TCP too if the client used TCP).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The query to send upstream, with the fresh random `id`: the client's header flags and
    /// question, its EDNS payload size (capped at [`MAX_UDP_PAYLOAD`]) and DO bit but none of
    /// its EDNS options (cookies and padding are per hop), and no other records.
    pub fn upstream_query(&self, id: u16) -> Option<Vec<u8>> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata = self.query.metadata;
        m.metadata.id = id;
        m.metadata.truncation = false;
        m.add_queries(self.query.queries.iter().cloned());
        if let Some(client) = &self.query.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(
                client
                    .max_payload()
                    .clamp(CLASSIC_UDP_LIMIT as u16, MAX_UDP_PAYLOAD),
            );
            edns.set_dnssec_ok(client.flags().dnssec_ok);
            m.set_edns(edns);
        }
        m.to_vec().ok()
    }

    /// The reply in `bytes`, if it answers the query sent with `id`: a response, same id, same
    /// question (name case-insensitively, type and class). Anything else — malformed, spoofed,
    /// late — is `None` and must be ignored.
    pub fn check_reply(&self, id: u16, bytes: &[u8]) -> Option<Message> {
        // A reply has the header and the question at least; skip the full parse of anything
        // whose header already disagrees.
        let header = Header::read(&mut BinDecoder::new(bytes)).ok()?;
        if header.message_type != MessageType::Response || header.id != id {
            return None;
        }
        let reply = Message::from_vec(bytes).ok()?;
        let [q] = reply.queries.as_slice() else {
            return None;
        };
        let asked = self.question();
        let same = q.name() == asked.name()
            && q.query_type() == asked.query_type()
            && q.query_class() == asked.query_class();
        same.then_some(reply)
    }

    /// The client's answer from an upstream `reply` (as returned by [`Forward::check_reply`]
    /// for `raw`): `raw` with the client's id, or, over UDP past the client's limit, the
    /// question with TC set.
    pub fn relay(&self, reply: &Message, raw: &[u8]) -> Option<Reply> {
        let fits = match self.transport {
            Transport::Udp => raw.len() <= udp_limit(&self.query),
            Transport::Tcp => raw.len() <= usize::from(u16::MAX),
        };
        if fits && raw.len() >= HEADER_LEN {
            let mut bytes = raw.to_vec();
            bytes[..2].copy_from_slice(&self.query.id.to_be_bytes());
            return Some(Reply {
                bytes,
                rcode: reply.response_code,
                truncated: false,
            });
        }
        let mut m = reply.clone();
        m.metadata.id = self.query.id;
        encode(&m, Some(udp_limit(&self.query)))
    }

    /// SERVFAIL for the client: no upstream answered in time.
    pub fn servfail(&self) -> Option<Reply> {
        let mut r = Message::response(self.query.id, OpCode::Query);
        r.metadata.recursion_desired = self.query.recursion_desired;
        r.metadata.recursion_available = true;
        r.metadata.response_code = ResponseCode::ServFail;
        r.add_queries(self.query.queries.iter().cloned());
        if self.query.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(MAX_UDP_PAYLOAD);
            r.set_edns(edns);
        }
        encode(&r, None)
    }
}
