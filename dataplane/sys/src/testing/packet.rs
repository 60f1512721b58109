//! An `AF_PACKET` socket bound to one interface: sends raw Ethernet frames out of it and sees
//! every frame it receives or sends. Tests use it to play the role of a container behind a
//! TAP (a frame sent on the TAP's interface is what the data plane reads from the TAP; a frame
//! the data plane writes to the TAP shows up here as received).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// `ETH_P_ALL` in network byte order, as `socket(2)` and `sockaddr_ll` want it.
fn eth_p_all() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// A raw packet socket on one interface of the calling thread's network namespace.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

/// Which way a captured frame went, from the interface's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received by the interface (for a TAP: written by the TAP's owner).
    Incoming,
    /// Sent out of the interface (for a TAP: what its owner will read).
    Outgoing,
}

impl PacketSocket {
    /// Opens a packet socket bound to interface `ifname`.
    pub fn bind(ifname: &str) -> io::Result<PacketSocket> {
        let ifindex = crate::link::index(ifname)? as i32;
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                eth_p_all() as libc::c_int,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let addr = sockaddr_ll(ifindex);
        // SAFETY: `addr` is a valid sockaddr_ll and the length passed is its exact size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends one whole Ethernet frame out of the interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let addr = sockaddr_ll(self.ifindex);
        // SAFETY: `frame` is a live buffer of the given length; `addr` is a valid sockaddr_ll
        // passed with its exact size.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame, waiting up to `timeout`. `Ok(None)` on timeout.
    pub fn recv(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> io::Result<Option<(usize, Direction)>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut from: libc::sockaddr_ll = zeroed_sockaddr_ll();
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is a live writable buffer of the given length; `from`/`len` are a
            // live sockaddr_ll and its size, which recvfrom(2) may fill.
            let rc = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if rc >= 0 {
                let dir = if from.sll_pkttype == libc::PACKET_OUTGOING {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                };
                return Ok(Some((rc as usize, dir)));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut ready = [false];
            crate::poll_readable(
                &[self.fd.as_raw_fd()],
                &mut ready,
                left.as_millis().max(1) as i32,
            )?;
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn zeroed_sockaddr_ll() -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: 0,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

fn sockaddr_ll(ifindex: i32) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: eth_p_all(),
        sll_ifindex: ifindex,
        ..zeroed_sockaddr_ll()
    }
}
