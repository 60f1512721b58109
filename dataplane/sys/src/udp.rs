//! The UDP underlay: sockets bound to the host's VTEP address that carry VXLAN datagrams.
//!
//! One socket per host listens on the VXLAN port (4789 by default). Sending goes through a small
//! pool of sockets bound to ephemeral ports, one of which is picked by a hash of the inner flow:
//! that is how a userspace VTEP gets the per-flow outer source port the kernel's vxlan driver
//! uses for ECMP entropy (`udp_flow_src_port()` in `include/net/udp.h`) without raw sockets.

use std::io::{self, IoSlice};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

/// How to set up an underlay socket.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// Local address to bind: the VTEP address with the VXLAN port (or port 0 for a send socket).
    pub bind: SocketAddr,
    /// Receive buffer in bytes (root may exceed `net.core.rmem_max`).
    pub recv_buffer: usize,
    /// Send buffer in bytes.
    pub send_buffer: usize,
}

impl UdpConfig {
    /// Defaults sized for bursts of 64 KB super-frames: 4 MiB each way.
    pub fn new(bind: SocketAddr) -> UdpConfig {
        UdpConfig {
            bind,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
        }
    }
}

/// A non-blocking UDP socket on the underlay.
#[derive(Debug)]
pub struct UnderlaySocket {
    sock: UdpSocket,
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size, as setsockopt(2) expects for
    // integer options.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl UnderlaySocket {
    /// Binds a socket as `cfg` says, in the calling thread's network namespace.
    pub fn bind(cfg: &UdpConfig) -> io::Result<UnderlaySocket> {
        let domain = Domain::for_address(cfg.bind);
        let sock = Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
        let fd = sock.as_raw_fd();
        // Buffers: try the privileged *FORCE variants first so root is not capped by
        // net.core.{r,w}mem_max, then fall back.
        let rcv = cfg.recv_buffer.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcv).is_err() {
            let _ = sock.set_recv_buffer_size(cfg.recv_buffer);
        }
        let snd = cfg.send_buffer.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, snd).is_err() {
            let _ = sock.set_send_buffer_size(cfg.send_buffer);
        }
        if cfg.bind.is_ipv4() {
            // The kernel's vxlan sends with DF clear by default (`df unset`): an outer packet
            // larger than the underlay MTU is fragmented rather than dropped.
            setsockopt_int(
                fd,
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DONT,
            )?;
        }
        sock.set_nonblocking(true)?;
        sock.bind(&SockAddr::from(cfg.bind)).map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::AddrInUse {
                " (is another VTEP, a kernel vxlan device or another agent, using the port?)"
            } else if e.kind() == io::ErrorKind::AddrNotAvailable {
                " (the address is not configured on any interface of this host)"
            } else {
                ""
            };
            io::Error::new(
                e.kind(),
                format!("binding the VXLAN socket to {} failed: {e}{hint}", cfg.bind),
            )
        })?;
        Ok(UnderlaySocket { sock: sock.into() })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// Sends one datagram gathered from `parts` (for example the 8-byte VXLAN header and the
    /// frame, without copying them together).
    pub fn send_to_vectored(&self, parts: &[IoSlice<'_>], dst: SocketAddr) -> io::Result<usize> {
        SockRef::from(&self.sock).send_to_vectored(parts, &SockAddr::from(dst))
    }

    /// Sends one datagram from a single buffer.
    pub fn send_to(&self, buf: &[u8], dst: SocketAddr) -> io::Result<usize> {
        self.sock.send_to(buf, dst)
    }

    /// Receives one datagram; `WouldBlock` when none is queued.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf)
    }
}

impl AsRawFd for UnderlaySocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_round_trip_with_gathered_send() {
        let rx = UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let tx = UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let dst = rx.local_addr().unwrap();
        let n = tx
            .send_to_vectored(&[IoSlice::new(b"head"), IoSlice::new(b"-body")], dst)
            .unwrap();
        assert_eq!(n, 9);
        let mut buf = [0u8; 64];
        let mut ready = [false];
        crate::poll_readable(&[rx.as_raw_fd()], &mut ready, 2000).unwrap();
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"head-body");
        assert_eq!(from, tx.local_addr().unwrap());
        assert_eq!(
            rx.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn port_in_use_names_the_address_and_a_cause() {
        let a = UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
        let err = UnderlaySocket::bind(&UdpConfig::new(a.local_addr().unwrap())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
    }

    #[test]
    fn foreign_address_is_refused_clearly() {
        // 192.0.2.1 (TEST-NET-1) is not configured here; nothing is sent.
        let err =
            UnderlaySocket::bind(&UdpConfig::new("192.0.2.1:4789".parse().unwrap())).unwrap_err();
        assert!(err.to_string().contains("not configured"), "{err}");
    }
}
