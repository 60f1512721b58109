//! Published ports: docker's `-p [HOSTIP:]HOSTPORT:CTRPORT[/PROTO]` as typed values, and the
//! rule that says when two of them cannot both hold on one node.
//!
//! A published port belongs to the node that serves its endpoint: the node's `HOSTIP:HOSTPORT`
//! (or every address of the node, `0.0.0.0`) for one protocol is DNATed to the endpoint's
//! `CTRPORT`. The store claims one key per published port in the endpoint's own transaction;
//! that `0.0.0.0` collides with every address of the same port ([`HostPort::collides`]) is
//! not a single-key compare, so the planner checks it ([`check_free`]) on what the store read.
//!
//! No I/O here: whether a process of the host holds the port is asked of the host by the
//! agent before it claims anything.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP, docker's default.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `"tcp"` or `"udp"`, as docker writes it after the port (`80/tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = BadPort;

    /// `tcp` or `udp` (any case); empty means `tcp`, as in docker.
    fn from_str(s: &str) -> Result<Protocol, BadPort> {
        match s.to_ascii_lowercase().as_str() {
            "" | "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(BadPort::Protocol(s.to_owned())),
        }
    }
}

/// A published port's side on the host: one protocol and port at one address of the node, or
/// at all of them (`0.0.0.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// The protocol.
    pub protocol: Protocol,
    /// An address of the node, or [`Ipv4Addr::UNSPECIFIED`] for all of them.
    pub ip: Ipv4Addr,
    /// 1..=65535.
    pub port: u16,
}

impl HostPort {
    /// Whether `self` and `other` cannot both be published on one node: the same protocol and
    /// port at the same address, or at any address when one of them is `0.0.0.0`.
    pub fn collides(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == other.ip || self.ip.is_unspecified() || other.ip.is_unspecified())
    }
}

impl fmt::Display for HostPort {
    /// `0.0.0.0:8080`, as docker names a binding in its errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ip, self.port)
    }
}

/// One published port: a [`HostPort`] DNATed to `container_port` of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortMapping {
    /// The host side.
    pub host: HostPort,
    /// The port in the container, 1..=65535.
    pub container_port: u16,
}

/// A published port that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPort {
    /// A host address that is not IPv4, or cannot be published on.
    #[error(
        "invalid host IP {0:?} of a published port: want an IPv4 address of the host that is not \
         loopback, multicast or broadcast, or 0.0.0.0 for all of them"
    )]
    HostIp(String),
    /// A port outside 1..=65535.
    #[error("invalid port {0} of a published port: must be between 1 and 65535")]
    Port(u32),
    /// A protocol other than tcp or udp.
    #[error("invalid protocol {0:?} of a published port: want tcp or udp")]
    Protocol(String),
}

fn port(p: u32) -> Result<u16, BadPort> {
    match u16::try_from(p) {
        Ok(0) | Err(_) => Err(BadPort::Port(p)),
        Ok(p) => Ok(p),
    }
}

/// A host address ports may be published on: unspecified (all), or a unicast address that is
/// not loopback (the DNAT rules see traffic arriving at the host or leaving it, never its
/// loopback traffic).
fn host_ip(s: &str) -> Result<Ipv4Addr, BadPort> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Ipv4Addr::UNSPECIFIED);
    }
    let ip: Ipv4Addr = s.parse().map_err(|_| BadPort::HostIp(s.to_owned()))?;
    if ip.is_loopback() || ip.is_multicast() || ip.is_broadcast() {
        return Err(BadPort::HostIp(s.to_owned()));
    }
    Ok(ip)
}

impl PortMapping {
    /// A published port as the API and etcd carry it; an empty host IP means all addresses,
    /// an empty protocol TCP.
    pub fn from_proto(m: &ovnet_proto::PortMapping) -> Result<PortMapping, BadPort> {
        Ok(PortMapping {
            host: HostPort {
                protocol: m.protocol.parse()?,
                ip: host_ip(&m.host_ip)?,
                port: port(m.host_port)?,
            },
            container_port: port(m.container_port)?,
        })
    }

    /// The message stored in etcd and returned by the API.
    pub fn to_proto(&self) -> ovnet_proto::PortMapping {
        ovnet_proto::PortMapping {
            host_ip: self.host.ip.to_string(),
            host_port: u32::from(self.host.port),
            container_port: u32::from(self.container_port),
            protocol: self.host.protocol.to_string(),
        }
    }
}

impl fmt::Display for PortMapping {
    /// `0.0.0.0:8080:80/tcp`, docker's `-p` syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host, self.container_port, self.host.protocol
        )
    }
}

/// Checks that every port of `wanted` may be published on a node where `held` are: none
/// collides with a held one, nor with another of `wanted`. The error is the first host port
/// that cannot be had.
pub fn check_free(wanted: &[PortMapping], held: &[HostPort]) -> Result<(), HostPort> {
    for (i, w) in wanted.iter().enumerate() {
        let taken = held.iter().any(|h| h.collides(&w.host))
            || wanted[..i].iter().any(|o| o.host.collides(&w.host));
        if taken {
            return Err(w.host);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(protocol: Protocol, ip: &str, port: u16) -> HostPort {
        HostPort {
            protocol,
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn mapping(ip: &str, host: u32, ctr: u32, proto: &str) -> ovnet_proto::PortMapping {
        ovnet_proto::PortMapping {
            host_ip: ip.into(),
            host_port: host,
            container_port: ctr,
            protocol: proto.into(),
        }
    }

    #[test]
    fn the_wildcard_collides_with_every_address_of_its_port() {
        use Protocol::{Tcp, Udp};
        let any = hp(Tcp, "0.0.0.0", 8080);
        assert!(any.collides(&hp(Tcp, "0.0.0.0", 8080)));
        assert!(any.collides(&hp(Tcp, "192.168.50.1", 8080)));
        assert!(hp(Tcp, "192.168.50.1", 8080).collides(&any));
        assert!(hp(Tcp, "192.168.50.1", 8080).collides(&hp(Tcp, "192.168.50.1", 8080)));
        // Another address, port or protocol is free.
        assert!(!hp(Tcp, "192.168.50.1", 8080).collides(&hp(Tcp, "192.168.50.2", 8080)));
        assert!(!any.collides(&hp(Tcp, "0.0.0.0", 8081)));
        assert!(!any.collides(&hp(Udp, "0.0.0.0", 8080)));
    }

    #[test]
    fn check_free_names_the_first_port_taken() {
        let m = |s: &str, h: u32| PortMapping::from_proto(&mapping(s, h, 80, "tcp")).unwrap();
        let held = [hp(Protocol::Tcp, "192.168.50.1", 8080)];
        assert_eq!(check_free(&[m("", 8081)], &held), Ok(()));
        assert_eq!(check_free(&[m("192.168.50.2", 8080)], &held), Ok(()));
        assert_eq!(
            check_free(&[m("", 8081), m("", 8080)], &held),
            Err(hp(Protocol::Tcp, "0.0.0.0", 8080))
        );
        // Two of one request collide with each other too.
        assert_eq!(
            check_free(&[m("", 9000), m("192.168.50.2", 9000)], &[]),
            Err(hp(Protocol::Tcp, "192.168.50.2", 9000))
        );
    }

    #[test]
    fn mappings_round_trip_and_default_like_docker() {
        let m = PortMapping::from_proto(&mapping("", 8080, 80, "")).unwrap();
        assert_eq!(m.host, hp(Protocol::Tcp, "0.0.0.0", 8080));
        assert_eq!(m.container_port, 80);
        assert_eq!(m.to_string(), "0.0.0.0:8080:80/tcp");
        assert_eq!(m.host.to_string(), "0.0.0.0:8080");
        assert_eq!(PortMapping::from_proto(&m.to_proto()), Ok(m));
        let u = PortMapping::from_proto(&mapping("192.168.50.1", 53, 5353, "UDP")).unwrap();
        assert_eq!(u.to_proto(), mapping("192.168.50.1", 53, 5353, "udp"));
    }

    #[test]
    fn bad_mappings_say_what_is_wrong() {
        let bad = |m: ovnet_proto::PortMapping| PortMapping::from_proto(&m).unwrap_err();
        assert_eq!(bad(mapping("", 0, 80, "tcp")), BadPort::Port(0));
        assert_eq!(bad(mapping("", 80, 70_000, "tcp")), BadPort::Port(70_000));
        assert_eq!(
            bad(mapping("", 80, 80, "sctp")),
            BadPort::Protocol("sctp".into())
        );
        for ip in [
            "::1",
            "localhost",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert_eq!(bad(mapping(ip, 80, 80, "")), BadPort::HostIp(ip.into()));
        }
        assert_eq!(
            BadPort::Port(0).to_string(),
            "invalid port 0 of a published port: must be between 1 and 65535"
        );
    }
}
