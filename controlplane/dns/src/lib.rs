//! ovnet's DNS resolver: one per network, at the network's gateway address, UDP and TCP port
//! 53, answering the names of the network's endpoints the way Docker's embedded DNS does and
//! forwarding every other name to the upstream resolvers.
//!
//! It is a stub-facing forwarder with a small authoritative table, not a DNS server: no
//! recursion (upstreams resolve), no cache (the answer of an upstream is relayed as is), no
//! DNSSEC (the DO bit is passed upstream; nothing is signed or validated), no zone transfers,
//! no dynamic update, no DNS over TLS/HTTPS, no AAAA data (ovnet endpoints are IPv4). Messages
//! are parsed and built with hickory-proto; I/O is Tokio. It belongs to the control plane: the
//! data plane never depends on it.
//!
//! # Layers
//!
//! - [`zone`]: a network's names ([`Zone`]) and the naming policy ([`Zone::lookup`]), pure.
//! - [`mod@decide`]: what to do with a query's bytes ([`decide()`] → [`Decision`]), pure.
//! - [`upstream`]: the upstream list (`IP[:PORT]`, the host's `/etc/resolv.conf`).
//! - `forward`, `server`, `tcp`: the I/O — forwarding, the UDP loop, TCP framing, the
//!   [`Resolver`] handle.
//! - [`counters`]: what happened, as atomics, with a [`Snapshot`] for metrics.
//! - [`mod@bench`]: a load generator (queries/s, p50/p99 latency), also the `ovnet-dns-bench` binary.
//!
//! # Answers
//!
//! Names compare ASCII case-insensitively, with or without the trailing dot. `NET` below is any
//! network of the cluster ([`Zone::add_network`]), this one included.
//!
//! | Query | Answer |
//! |-------|--------|
//! | `NAME` or `NAME.NETWORK` of an endpoint of this network, type A or ANY | NOERROR, AA, an A record per address, TTL 600 (Docker's) |
//! | the same names, any other type (AAAA, MX, TXT, ...) | NOERROR, AA, no records |
//! | `d.c.b.a.in-addr.arpa` of an endpoint's address, type PTR or ANY | NOERROR, AA, PTR to `NAME.NETWORK.` (as Docker answers), TTL 600 |
//! | a single-label name not on this network | NXDOMAIN, AA (never forwarded) |
//! | `NET`, or `X.NET` not matched above | NXDOMAIN, AA (never forwarded) |
//! | an endpoint name of another network ([`Zone::add_foreign_endpoint`]) | NXDOMAIN, AA |
//! | any other name (`example.com`, other reverse names) | forwarded upstream, the reply relayed; SERVFAIL if none answers in time |
//! | the same, on an internal network | REFUSED: an internal network never forwards |
//! | class other than IN; AXFR, IXFR | REFUSED |
//! | opcode other than QUERY | NOTIMP |
//! | not one question; unparseable; over 4096 bytes; question type OPT, TSIG, SIG or 0 | FORMERR |
//! | EDNS version other than 0 | BADVERS |
//! | QR bit set (a response); shorter than a header (12 bytes) | no answer; counted |
//!
//! Over UDP an answer larger than 512 bytes, or than the EDNS payload size the client
//! advertised (at most 4096), is sent as the bare question with TC set, and the client retries
//! over TCP. RA is set except on internal networks.
//!
//! # Containers
//!
//! A container on the network uses the resolver with `nameserver GATEWAY` as the only
//! nameserver in its `/etc/resolv.conf` (e.g. `nameserver 10.0.0.1`), which is what a runtime
//! should write; for a named network namespace, `/etc/netns/NAME/resolv.conf` is what
//! `ip netns exec NAME ...` sees. Search domains and `options` may be copied from the host (the
//! names they produce are forwarded); Docker adds `options ndots:0`.
//!
//! # Wiring
//!
//! ```no_run
//! # async fn demo() -> Result<(), ovnet_dns::Error> {
//! use ovnet_dns::{host_upstreams, Config, Resolver, Zone};
//!
//! let upstreams = host_upstreams()?; // or parse_upstreams(&args.dns_upstream)?
//! let mut zone = Zone::new("front", false);
//! zone.add_endpoint("web", "10.0.0.2".parse().unwrap()).add_network("back");
//! let resolver = Resolver::start(Config::new("10.0.0.1".parse().unwrap(), upstreams), zone)?;
//! // On every change of the view: build the zone again and swap it in.
//! resolver.update(Zone::new("front", false));
//! let _metrics = resolver.counters();
//! resolver.stop().await; // the network left this host
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

pub mod bench;
pub mod counters;
pub mod decide;
mod forward;
mod server;
mod tcp;
pub mod upstream;
pub mod zone;

pub use counters::{DropReason, Rcode, Snapshot};
pub use decide::{decide, decide_message, Decision, Forward, Reply, Transport};
pub use server::{
    Config, CounterReader, Resolver, DEFAULT_FORWARD_DEADLINE, DEFAULT_MAX_FORWARDS,
    DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_TCP_IDLE_TIMEOUT, DEFAULT_UPSTREAM_TIMEOUT,
};
pub use upstream::{host_upstreams, parse_upstream, parse_upstreams};
pub use zone::{Lookup, Zone};

/// What can go wrong setting a resolver up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An upstream that is not `IP[:PORT]`.
    #[error(
        "DNS upstream {0:?}: want IP[:PORT], e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53"
    )]
    BadUpstream(String),
    /// The host's resolv.conf could not be read.
    #[error("read {}: {source}: give the upstream resolvers explicitly (IP[:PORT])", path.display())]
    ReadResolvConf {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The host's resolv.conf could not be parsed.
    #[error(
        "resolv.conf: {0}: fix the file or give the upstream resolvers explicitly (IP[:PORT])"
    )]
    ResolvConf(String),
    /// [`Resolver::start`] was called outside a Tokio runtime.
    #[error("the DNS resolver must be started from within a Tokio runtime")]
    NoRuntime,
    /// The listening address could not be bound.
    #[error("DNS resolver on {addr}: bind {what}: {source} (is another DNS server on this address, or is CAP_NET_BIND_SERVICE missing?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// "UDP" or "TCP".
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}
