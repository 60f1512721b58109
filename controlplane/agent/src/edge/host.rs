//! The host side of the edge: the gateway address on a network's bridge, a container's default
//! route, IPv4 forwarding, and asking the host whether a port to publish is free.
//!
//! Like the rest of the host plumbing, it speaks netlink ([`crate::netlink`]), once per setup
//! or connect, never per packet.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use ipnet::Ipv4Net;

use super::gateway_mac;
use crate::domain::ports::{HostPort, Protocol};
use crate::host::{self, HostError};
use crate::netlink::Netlink;

/// Where the host-wide IPv4 forwarding switch lives (per network namespace).
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Gives bridge `bridge` the network's gateway: its MAC ([`gateway_mac`]) and the address
/// `gateway/len` of `subnet`. Idempotent, so an adopted bridge is simply confirmed.
pub async fn set_gateway(
    bridge: &str,
    subnet: &Ipv4Net,
    gateway: Ipv4Addr,
) -> Result<(), HostError> {
    host::set_bridge_address(bridge, gateway_mac(gateway).0, gateway, subnet.prefix_len()).await
}

/// Routes the container's traffic beyond its networks through `gateway` on its interface
/// `ifindex` (`nl` is a session in its namespace), unless the container has a default route
/// already (another network connected first keeps it, as the first network does in Docker).
pub async fn default_route(nl: &Netlink, ifindex: u32, gateway: Ipv4Addr) -> Result<(), HostError> {
    let has = nl
        .has_default_route()
        .await
        .map_err(|f| f.into_error("reading the container's routes"))?;
    if has {
        return Ok(());
    }
    nl.add_default_route(ifindex, gateway).await.map_err(|f| {
        f.into_error(&format!(
            "adding the container's default route via {gateway}"
        ))
    })
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
