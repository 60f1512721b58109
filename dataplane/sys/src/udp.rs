//! The UDP underlay: sockets bound to the host's VTEP address that carry VXLAN datagrams.
//!
//! One socket per host listens on the VXLAN port (4789 by default). Sending goes through a small
//! pool of sockets bound to ephemeral ports, one of which is picked by a hash of the inner flow:
//! that is how a userspace VTEP gets the per-flow outer source port the kernel's vxlan driver
//! uses for ECMP entropy (`udp_flow_src_port()` in `include/net/udp.h`) without raw sockets.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

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
    /// Share the port with other sockets that set it too (`SO_REUSEPORT`): the kernel spreads
    /// incoming flows over them by a hash of their addresses and ports.
    pub reuse_port: bool,
}

impl UdpConfig {
    /// Defaults sized for bursts of 64 KB super-frames: 4 MiB each way.
    pub fn new(bind: SocketAddr) -> UdpConfig {
        UdpConfig {
            bind,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            reuse_port: false,
        }
    }
}

/// A non-blocking UDP socket on the underlay.
#[derive(Debug)]
pub struct UnderlaySocket {
    sock: UdpSocket,
}

pub(crate) fn setsockopt_int(
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
        if cfg.reuse_port {
            sock.set_reuse_port(true)?;
        }
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

    /// Receives one datagram; `WouldBlock` when none is queued.
    #[cfg(test)]
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.sock.recv_from(buf)
    }
}

// include/uapi/linux/udp.h
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// Largest UDP payload of one (GSO) send over IPv4: 65535 minus the IPv4 and UDP headers.
pub const MAX_GSO_PAYLOAD: usize = 65_535 - 20 - 8;

/// Most segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS`, 64 before 5.x, 128
/// after; the lower is used).
pub const MAX_GSO_SEGMENTS: usize = 64;

/// A `msghdr` that sends the bytes gathered from `parts` to `addr`, without control data.
/// It points into `addr` and `parts`: use it only while both are alive.
fn msghdr_to(addr: &SockAddr, parts: &[IoSlice<'_>]) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = addr.len();
    // IoSlice is guaranteed ABI-compatible with struct iovec on Unix; sends only read it.
    msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = parts.len() as _;
    msg
}

/// The IP socket address in a `sockaddr_storage` filled by the kernel.
pub(crate) fn socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large and
            // aligned enough for.
            let sin =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// One send: datagrams to one destination gathered from `parts`, `per` slices each (for
/// example a VXLAN header and a frame), every datagram `segment` bytes long but the last, which
/// may be shorter: the shape UDP GSO takes. At most [`MAX_GSO_SEGMENTS`] datagrams and
/// [`MAX_GSO_PAYLOAD`] bytes.
#[derive(Debug, Clone, Copy)]
pub struct Transmit<'a> {
    /// Where every datagram goes.
    pub dst: SocketAddr,
    /// The datagrams' bytes, `per` slices each.
    pub parts: &'a [IoSlice<'a>],
    /// Slices per datagram (at least one).
    pub per: usize,
    /// The size of every datagram but the last: the UDP GSO segment size.
    pub segment: usize,
}

impl Transmit<'_> {
    /// How many datagrams this send carries.
    pub fn datagrams(&self) -> usize {
        self.parts.len().div_ceil(self.per.max(1))
    }
}

/// How an [`UnderlaySocket::send`] went, when it did not fail outright.
#[derive(Debug)]
pub enum Sent {
    /// Every datagram left: in one UDP GSO `sendmsg` if GSO was asked for and there were
    /// several, else one by one (a `sendmmsg` batch).
    Done,
    /// UDP GSO was asked for and the kernel refused it ([`is_gso_refusal`]); the datagrams were
    /// then sent one by one, which went as `then` says. Do not ask for GSO again: `refusal`
    /// says why.
    GsoRefused {
        /// The kernel's answer to the GSO send.
        refusal: io::Error,
        /// The outcome of sending the datagrams one by one instead.
        then: io::Result<()>,
    },
}

/// Whether a failed UDP GSO send means "this kernel or route cannot do UDP GSO": `EIO` (the
/// route's device cannot checksum the segments, UDP-Lite, IPsec) or `EINVAL` (no UDP GSO, or
/// the socket sends without checksums); see `udp_send_skb()` in `net/ipv4/udp.c`. quinn-udp
/// halts segmentation offload on the same two.
pub fn is_gso_refusal(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
}

impl UnderlaySocket {
    /// Whether the kernel accepts `UDP_SEGMENT` on this socket (probed with setsockopt; the
    /// real test is the first GSO send, see [`UnderlaySocket::send`]).
    pub fn probe_gso(&self) -> bool {
        // Setting the socket-wide default to 0 changes nothing but fails on kernels without
        // UDP GSO (before 4.18).
        setsockopt_int(self.sock.as_raw_fd(), libc::SOL_UDP, UDP_SEGMENT, 0).is_ok()
    }

    /// Sends the datagrams of `t`, in order: one with a plain `sendmsg`; several with one UDP
    /// GSO `sendmsg` (Linux 4.18) if `gso`, else with `sendmmsg` batches. Where the kernel
    /// refuses GSO, sends them one by one instead and says so ([`Sent::GsoRefused`]), as
    /// quinn-udp degrades. While the socket buffer is full it waits for room (back-pressure
    /// rather than loss, as the kernel's qdisc gives a local sender). Fails if the datagrams
    /// could not be sent (no route to `t.dst`, for example); some of several may have left.
    pub fn send(&self, t: &Transmit<'_>, gso: bool) -> io::Result<Sent> {
        if t.datagrams() <= 1 {
            self.blocking(|| self.send_gathered(t.parts, t.dst))?;
            return Ok(Sent::Done);
        }
        if !gso {
            self.send_each(t)?;
            return Ok(Sent::Done);
        }
        let segment = u16::try_from(t.segment).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a UDP GSO segment of {} bytes", t.segment),
            )
        })?;
        match self.blocking(|| self.send_gso(t.parts, segment, t.dst)) {
            Ok(_) => Ok(Sent::Done),
            Err(refusal) if is_gso_refusal(&refusal) => Ok(Sent::GsoRefused {
                refusal,
                then: self.send_each(t),
            }),
            Err(e) => Err(e),
        }
    }

    /// Retries `send` while the socket buffer is full (waiting until it has room) or a signal
    /// interrupted it.
    fn blocking(&self, mut send: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
        loop {
            match send() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = crate::poll_writable(self.sock.as_raw_fd(), 100) {
                        log::error!("poll for a writable socket failed: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Sends each datagram of `t` on its own, in `sendmmsg` batches.
    fn send_each(&self, t: &Transmit<'_>) -> io::Result<()> {
        let count = t.datagrams();
        let mut sent = 0;
        while sent < count {
            sent += self.blocking(|| self.send_many(&t.parts[t.per * sent..], t.per, t.dst))?;
        }
        Ok(())
    }

    /// Sends one datagram gathered from `parts` (for example the 8-byte VXLAN header and the
    /// frame, without copying them together).
    fn send_gathered(&self, parts: &[IoSlice<'_>], dst: SocketAddr) -> io::Result<usize> {
        SockRef::from(&self.sock).send_to_vectored(parts, &SockAddr::from(dst))
    }

    /// Sends the bytes gathered from `parts` as one datagram per `segment` bytes (the last may
    /// be shorter) in a single `sendmsg` with a `UDP_SEGMENT` control message: the kernel
    /// copies them once, into the packet, and splits the whole every `segment` bytes
    /// regardless of where parts end. At most [`MAX_GSO_SEGMENTS`] segments and
    /// [`MAX_GSO_PAYLOAD`] bytes.
    fn send_gso(&self, parts: &[IoSlice<'_>], segment: u16, dst: SocketAddr) -> io::Result<usize> {
        let addr = SockAddr::from(dst);
        // Room for one cmsg carrying a u16, aligned as cmsghdr requires.
        let mut control = [0u64; 4];
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        debug_assert!(space <= std::mem::size_of_val(&control));
        // Every pointer in `msg` refers to data (addr, parts, control) that outlives the call.
        let mut msg = msghdr_to(&addr, parts);
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` bytes, enough for the first header, so
        // CMSG_FIRSTHDR returns a valid, aligned pointer into `control`, and CMSG_DATA points
        // inside it with room for the u16 written.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
        }
        // SAFETY: `msg` is fully initialised and its pointers are live for the call.
        let rc = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Sends consecutive groups of `per` slices of `parts` as one datagram each, all to `dst`,
    /// with one `sendmmsg`. Sends at most [`MAX_GSO_SEGMENTS`] datagrams per call and returns
    /// how many left (at least one); `WouldBlock` if the socket buffer took none. The caller
    /// resumes after the ones sent.
    fn send_many(&self, parts: &[IoSlice<'_>], per: usize, dst: SocketAddr) -> io::Result<usize> {
        if per == 0 || parts.is_empty() {
            return Ok(0);
        }
        let addr = SockAddr::from(dst);
        // SAFETY: an all-zero mmsghdr is a valid empty header.
        let mut msgs: [libc::mmsghdr; MAX_GSO_SEGMENTS] = unsafe { std::mem::zeroed() };
        let mut count = 0;
        for (m, group) in msgs.iter_mut().zip(parts.chunks(per)) {
            m.msg_hdr = msghdr_to(&addr, group);
            count += 1;
        }
        // SAFETY: the first `count` headers are initialised and point at `addr` and slices of
        // `parts`, all live for the call; the kernel writes only their msg_len fields.
        let rc = unsafe {
            libc::sendmmsg(
                self.sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Makes the kernel pick, for each datagram to this socket's `SO_REUSEPORT` group, socket
    /// number `source port % sockets` (in the order they were bound) instead of one by a hash
    /// of the addresses: a sender that chooses its source ports then chooses which of the
    /// receiving workers gets each flow. A classic BPF program (`SO_ATTACH_REUSEPORT_CBPF`,
    /// Linux 4.5) that reads the outer UDP source port behind an IPv4 header without options,
    /// or an IPv6 header without extensions; the group keeps it when this socket closes.
    pub fn steer_by_source_port(&self, sockets: u32) -> io::Result<()> {
        const BPF_LD_H_ABS: u16 = 0x28;
        const BPF_ALU_MOD_K: u16 = 0x94;
        const BPF_RET_A: u16 = 0x16;
        // SKF_NET_OFF: offsets from the network header (the program starts at the payload).
        const SKF_NET_OFF: i32 = -0x10_0000;
        if sockets == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no sockets to steer to",
            ));
        }
        let ip_len = if self.local_addr()?.is_ipv4() { 20 } else { 40 };
        let insn = |code, k| libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        };
        let mut prog = [
            insn(BPF_LD_H_ABS, (SKF_NET_OFF + ip_len) as u32),
            insn(BPF_ALU_MOD_K, sockets),
            insn(BPF_RET_A, 0),
        ];
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at `prog`, a valid classic BPF program of `len` instructions;
        // both live across the call, which copies the program into the kernel.
        let rc = unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_CBPF,
                (&fprog as *const libc::sock_fprog).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Asks the kernel to coalesce received datagrams of one flow (`UDP_GRO`, Linux 5.0):
    /// [`UnderlaySocket::recv_gro`] then returns several equal-sized datagrams at once.
    pub fn enable_gro(&self) -> io::Result<()> {
        setsockopt_int(self.sock.as_raw_fd(), libc::SOL_UDP, UDP_GRO, 1)
    }

    /// Receives one datagram, or with GRO enabled a run of datagrams of the returned segment
    /// size laid back to back (the last may be shorter). `WouldBlock` when none is queued.
    pub fn recv_gro(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<usize>)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 8];
        let mut name = MaybeUninit::<libc::sockaddr_storage>::zeroed();
        // SAFETY: an all-zero msghdr is a valid empty header; the pointers set below refer to
        // `name`, `iov` (over `buf`) and `control`, all live across the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = name.as_mut_ptr().cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` is fully initialised and its buffers are writable for their lengths.
        let rc = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut segment = None;
        // SAFETY: the kernel filled msg_control/msg_controllen; CMSG_FIRSTHDR/NXTHDR walk
        // only within it, and a UDP_GRO cmsg carries an int.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                    segment = usize::try_from(v).ok().filter(|&v| v > 0);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        // SAFETY: `name` was zero-initialised and recvmsg may have written an address into it.
        let from = socket_addr(unsafe { &name.assume_init() }).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
        })?;
        Ok((rc as usize, from, segment))
    }
}

impl AsRawFd for UnderlaySocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for UnderlaySocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_loopback() -> UnderlaySocket {
        UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap()
    }

    /// The next `count` datagrams on `rx`, each as (bytes, source), waiting up to 2 s each.
    fn receive(rx: &UnderlaySocket, count: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        while out.len() < count {
            let mut ready = [false];
            crate::poll_readable(&[rx.as_raw_fd()], &mut ready, 2000).unwrap();
            assert!(ready[0], "datagram {} of {count} did not arrive", out.len());
            let (n, from) = rx.recv_from(&mut buf).unwrap();
            out.push((buf[..n].to_vec(), from));
        }
        out
    }

    /// Five datagrams of 100 bytes but the last (60), each a header of 8 and a payload.
    fn train() -> (Vec<[u8; 8]>, Vec<Vec<u8>>) {
        let headers: Vec<[u8; 8]> = (0..5u8).map(|i| [0x08, 0, 0, 0, 0, 0, 42, i]).collect();
        let payloads = (0..5u8)
            .map(|i| vec![i; if i < 4 { 92 } else { 52 }])
            .collect();
        (headers, payloads)
    }

    fn gathered<'a>(headers: &'a [[u8; 8]], payloads: &'a [Vec<u8>]) -> Vec<IoSlice<'a>> {
        headers
            .iter()
            .zip(payloads)
            .flat_map(|(h, p)| [IoSlice::new(h), IoSlice::new(p)])
            .collect()
    }

    #[test]
    fn loopback_round_trip_with_gathered_send() {
        let (rx, tx) = (bind_loopback(), bind_loopback());
        let dst = rx.local_addr().unwrap();
        let parts = [IoSlice::new(b"head"), IoSlice::new(b"-body")];
        let t = Transmit {
            dst,
            parts: &parts,
            per: 2,
            segment: 9,
        };
        assert!(matches!(tx.send(&t, true).unwrap(), Sent::Done));
        let got = receive(&rx, 1);
        assert_eq!(got, [(b"head-body".to_vec(), tx.local_addr().unwrap())]);
        let mut buf = [0u8; 64];
        assert_eq!(
            rx.recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams_or_one_gro_run() {
        let (rx, plain, tx) = (bind_loopback(), bind_loopback(), bind_loopback());
        assert!(tx.probe_gso());
        let (headers, payloads) = train();
        let parts = gathered(&headers, &payloads);
        let mut t = Transmit {
            dst: plain.local_addr().unwrap(),
            parts: &parts,
            per: 2,
            segment: 100,
        };
        // Without GRO: five datagrams.
        assert!(matches!(tx.send(&t, true).unwrap(), Sent::Done));
        let lens: Vec<usize> = receive(&plain, 5).iter().map(|(d, _)| d.len()).collect();
        assert_eq!(lens, [100, 100, 100, 100, 60]);
        // With GRO: the datagrams may come back together, with the segment size.
        rx.enable_gro().unwrap();
        t.dst = rx.local_addr().unwrap();
        assert!(matches!(tx.send(&t, true).unwrap(), Sent::Done));
        let mut buf = [0u8; 4096];
        let mut got = 0;
        while got < 460 {
            let mut ready = [false];
            crate::poll_readable(&[rx.as_raw_fd()], &mut ready, 2000).unwrap();
            let (n, from, seg) = rx.recv_gro(&mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            if n > 100 {
                assert_eq!(seg, Some(100));
            }
            got += n;
        }
        assert_eq!(got, 460);
    }

    #[test]
    fn a_refused_gso_send_leaves_one_datagram_at_a_time_and_says_why() {
        let (rx, tx) = (bind_loopback(), bind_loopback());
        // Without UDP checksums the kernel refuses GSO (EINVAL, udp_send_skb()) but still
        // sends plain datagrams: a real refusal, on any kernel.
        setsockopt_int(tx.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let (headers, payloads) = train();
        let parts = gathered(&headers, &payloads);
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            parts: &parts,
            per: 2,
            segment: 100,
        };
        match tx.send(&t, true).unwrap() {
            Sent::GsoRefused { refusal, then } => {
                assert!(is_gso_refusal(&refusal), "{refusal}");
                assert_eq!(refusal.raw_os_error(), Some(libc::EINVAL), "{refusal}");
                then.unwrap();
            }
            Sent::Done => panic!("the kernel took a UDP GSO send without checksums"),
        }
        let got: Vec<Vec<u8>> = receive(&rx, 5).into_iter().map(|(d, _)| d).collect();
        for (i, d) in got.iter().enumerate() {
            assert_eq!(&d[..8], &headers[i], "datagram {i} out of order");
            assert_eq!(&d[8..], &payloads[i][..], "datagram {i}");
        }
        // Asked without GSO, the same send is no refusal.
        assert!(matches!(tx.send(&t, false).unwrap(), Sent::Done));
        assert_eq!(receive(&rx, 5).len(), 5);
    }

    #[test]
    fn only_eio_and_einval_are_gso_refusals() {
        for (errno, refusal) in [
            (libc::EIO, true),
            (libc::EINVAL, true),
            (libc::EAGAIN, false),
            (libc::ENOBUFS, false),
            (libc::EMSGSIZE, false),
            (libc::ENETUNREACH, false),
        ] {
            let e = io::Error::from_raw_os_error(errno);
            assert_eq!(is_gso_refusal(&e), refusal, "{e}");
        }
        assert!(!is_gso_refusal(&io::Error::other("not an OS error")));
    }

    #[test]
    fn a_send_without_gso_takes_several_batches_in_order() {
        let (rx, tx) = (bind_loopback(), bind_loopback());
        let header = [0x08u8, 0, 0, 0, 0, 0, 42, 0];
        let payloads: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 1 + usize::from(i) * 7]).collect();
        let parts: Vec<IoSlice<'_>> = payloads
            .iter()
            .flat_map(|p| [IoSlice::new(&header), IoSlice::new(p)])
            .collect();
        // 70 datagrams: more than one sendmmsg takes.
        let t = Transmit {
            dst: rx.local_addr().unwrap(),
            parts: &parts,
            per: 2,
            segment: 8 + 70 * 7,
        };
        assert_eq!(t.datagrams(), 70);
        assert!(matches!(tx.send(&t, false).unwrap(), Sent::Done));
        for (p, (d, _)) in payloads.iter().zip(receive(&rx, 70)) {
            assert_eq!(&d[..8], &header);
            assert_eq!(&d[8..], &p[..]);
        }
        assert_eq!(tx.send_many(&[], 2, t.dst).unwrap(), 0);
    }

    #[test]
    fn a_send_to_an_unroutable_address_fails() {
        std::thread::spawn(|| {
            crate::netns::unshare().unwrap();
            crate::link::set_up("lo").unwrap();
            let tx = bind_loopback();
            let parts = [IoSlice::new(b"x")];
            let t = Transmit {
                // TEST-NET-1: no route in a namespace with only lo.
                dst: "192.0.2.1:4789".parse().unwrap(),
                parts: &parts,
                per: 1,
                segment: 1,
            };
            let e = tx.send(&t, true).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NetworkUnreachable, "{e}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn steering_by_source_port_picks_the_socket_of_the_ports_residue() {
        let mut cfg = UdpConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.reuse_port = true;
        let first = UnderlaySocket::bind(&cfg).unwrap();
        cfg.bind = first.local_addr().unwrap();
        let second = UnderlaySocket::bind(&cfg).unwrap();
        first.steer_by_source_port(2).unwrap();
        assert!(first.steer_by_source_port(0).is_err());
        let group = [first, second];
        let mut seen = [0usize; 2];
        let mut buf = [0u8; 64];
        for _ in 0..16 {
            let tx = bind_loopback();
            let port = tx.local_addr().unwrap().port();
            tx.sock.send_to(&port.to_be_bytes(), cfg.bind).unwrap();
            let want = usize::from(port % 2);
            let mut ready = [false; 2];
            let fds = [group[0].as_raw_fd(), group[1].as_raw_fd()];
            crate::poll_readable(&fds, &mut ready, 2000).unwrap();
            assert_eq!(ready, [want == 0, want == 1], "source port {port}");
            let (n, from) = group[want].recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..n], from.port()), (&port.to_be_bytes()[..], port));
            seen[want] += 1;
        }
        assert_eq!(seen.iter().sum::<usize>(), 16);
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
