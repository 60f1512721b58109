//! The host side of the edge: the gateway address on a network's bridge, a container's default
//! route, IPv4 forwarding, and asking the host whether a port to publish is free.
//!
//! Like the rest of the host plumbing, it shells out to iproute2 (`ip`, through `nsenter` in a
//! container) once per setup or connect, never per packet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use ipnet::Ipv4Net;

use super::gateway_mac;
use crate::domain::ports::{HostPort, Protocol};
use crate::host::{self, HostError};

/// Where the host-wide IPv4 forwarding switch lives (per network namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Gives bridge `bridge` the network's gateway: its MAC ([`gateway_mac`]) and the address
/// `gateway/len` of `subnet`. Idempotent, so an adopted bridge is simply confirmed.
pub async fn set_gateway(
    bridge: &str,
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(), HostError> {
    let mac = gateway_mac(gateway).to_string();
    let cidr = format!("{gateway}/{}", subnet.prefix_len());
    host::ip_batch(
        None,
        &format!("giving {bridge} the gateway's MAC and address {cidr}"),
        &[
            &["link", "set", bridge, "address", &mac],
            &["addr", "replace", &cidr, "dev", bridge],
        ],
    )
    .await?;
    Ok(())
}

/// Routes the container's traffic beyond its networks through `gateway` on `ifname`, unless
/// the container has a default route already (another network connected first keeps it, as
/// the first network does in Docker).
pub async fn default_route(
    ns_path: &str,
    ifname: &str,
    gateway: Ipv4Addr,
) -> Result<(), HostError> {
    let routes = host::ip_in(
        ns_path,
        "reading the container's routes",
        &["-4", "route", "show", "default"],
    )
    .await?;
    if !routes.trim().is_empty() {
        return Ok(());
    }
    let gw = gateway.to_string();
    host::ip_in(
        ns_path,
        "adding the container's default route",
        &["route", "add", "default", "via", &gw, "dev", ifname],
    )
    .await?;
    Ok(())
}

/// Turns IPv4 forwarding on for this host (network namespace), as Docker does; returns whether
/// it was off. It is never turned off again: other things on the host may come to rely on it.
pub fn enable_ip_forward() -> io::Result<bool> {
    let now = std::fs::read_to_string(IP_FORWARD)?;
    if now.trim() == "1" {
        return Ok(false);
    }
    std::fs::write(IP_FORWARD, "1")?;
    Ok(true)
}

/// Go's words for the errors a bind gives, which docker shows ("address already in use").
fn go_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Whether the host lets `host` be bound: a process of the host listening there, or an address
/// the host does not have, makes publishing it pointless. The socket is closed again at once;
/// the port is then held by ovnet's claim, not by a socket.
pub fn probe(host: &HostPort) -> Result<(), String> {
    let addr = SocketAddrV4::new(host.ip, host.port);
    let bound = match host.protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
    };
    bound.map_err(|e| go_words(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_a_process_holds_is_refused_in_gos_words() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let hp = |ip: &str, protocol| HostPort {
            protocol,
            ip: ip.parse().unwrap(),
            port,
        };
        assert_eq!(
            probe(&hp("127.0.0.1", Protocol::Tcp)),
            Err("address already in use".to_owned())
        );
        // 0.0.0.0 covers 127.0.0.1.
        assert_eq!(
            probe(&hp("0.0.0.0", Protocol::Tcp)),
            Err("address already in use".to_owned())
        );
        drop(held);
        assert_eq!(probe(&hp("127.0.0.1", Protocol::Tcp)), Ok(()));
        // An address this host does not have (TEST-NET-3).
        assert_eq!(
            probe(&hp("203.0.113.77", Protocol::Udp)),
            Err("cannot assign requested address".to_owned())
        );
    }
}
