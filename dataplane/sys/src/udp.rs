//! The UDP underlay: sockets bound to the host's VTEP address that carry VXLAN datagrams.
//!
//! One socket per host listens on the VXLAN port (4789 by default). Sending goes through a small
//! pool of sockets bound to ephemeral ports, one of which is picked by a hash of the inner flow:
//! that is how a userspace VTEP gets the per-flow outer source port the kernel's vxlan driver
//! uses for ECMP entropy (`udp_flow_src_port()` in `include/net/udp.h`) without raw sockets.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ovnet_wire::VXLAN_PORT;
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

/// An integer socket option of `fd`.
pub(crate) fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into the live c_int `value` and updates
    // `len`, both of which outlive the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The MTU of the route from `from` to `to` in the calling thread's network namespace (that of
/// its device, or what path MTU discovery learned for `to`): a UDP socket bound to `from` and
/// connected to `to` asks the kernel (`IP_MTU`) without sending anything.
pub fn route_mtu(from: Ipv4Addr, to: Ipv4Addr) -> io::Result<u32> {
    let what =
        |e: io::Error| io::Error::new(e.kind(), format!("the route from {from} to {to}: {e}"));
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(what)?;
    sock.bind(&SockAddr::from(SocketAddrV4::new(from, 0)))
        .map_err(what)?;
    sock.connect(&SockAddr::from(SocketAddrV4::new(to, VXLAN_PORT)))
        .map_err(what)?;
    let mtu = getsockopt_int(sock.as_fd(), libc::IPPROTO_IP, libc::IP_MTU).map_err(what)?;
    Ok(mtu as u32)
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

/// Copies of one datagram [`UnderlaySocket::send_copies`] hands the kernel per `sendmmsg`.
pub const COPIES_PER_CALL: usize = 16;

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

/// How long an [`UnderlaySocket::send`] may wait for room in a full socket buffer, and what
/// ends the wait early.
#[derive(Debug, Clone, Copy)]
pub struct Patience<'a> {
    /// The longest the send waits, in all; zero tries once.
    pub wait: Duration,
    /// Set (by another thread) when the sender is stopping: the send waits no more.
    pub stop: &'a AtomicBool,
}

impl Patience<'static> {
    /// Waits up to `wait`, with nothing to end the wait early.
    pub fn at_most(wait: Duration) -> Patience<'static> {
        static NEVER: AtomicBool = AtomicBool::new(false);
        Patience { wait, stop: &NEVER }
    }
}

/// How often a waiting send looks at [`Patience::stop`].
const STOP_CHECK: Duration = Duration::from_millis(20);

/// Whether a failed send gave up waiting for room ([`Patience`]) rather than failed.
pub fn is_stalled(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
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
    /// UDP GSO was asked for and the route to the destination carries less than one segment
    /// (`EMSGSIZE`: the kernel does not fragment GSO segments, `udp_send_skb()` in
    /// `net/ipv4/udp.c`). The datagrams were then sent one by one, which the host fragments
    /// (DF is clear), and that went as `then` says. Not a refusal of GSO: sends on other
    /// routes keep it.
    SegmentTooBig {
        /// The outcome of sending the datagrams one by one instead.
        then: io::Result<()>,
    },
}

/// The wait of one send: since when, and how long it may last.
struct Waiting<'a> {
    patience: Patience<'a>,
    /// When the send first found the buffer full.
    since: std::cell::Cell<Option<Instant>>,
}

impl<'a> Waiting<'a> {
    fn new(patience: Patience<'a>) -> Waiting<'a> {
        Waiting {
            patience,
            since: std::cell::Cell::new(None),
        }
    }

    /// How long to wait for room next, or `None` if the send must give up.
    fn next_slice(&self) -> Option<Duration> {
        if self.patience.stop.load(Ordering::Acquire) {
            return None;
        }
        let since = match self.since.get() {
            Some(t) => t,
            None => {
                let t = Instant::now();
                self.since.set(Some(t));
                t
            }
        };
        let left = self.patience.wait.checked_sub(since.elapsed())?;
        (!left.is_zero()).then(|| left.min(STOP_CHECK))
    }

    /// The error of a send that gave up.
    fn gave_up(&self) -> io::Error {
        let why = if self.patience.stop.load(Ordering::Acquire) {
            "the sender is stopping".to_owned()
        } else {
            format!("no room for {:?}", self.patience.wait)
        };
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("the socket's send buffer is full: {why}"),
        )
    }
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
    /// quinn-udp degrades; likewise where the route cannot carry a whole segment
    /// ([`Sent::SegmentTooBig`]), so that the host fragments them. While the socket buffer is
    /// full it waits for room (back-pressure rather than loss, as the kernel's qdisc gives a
    /// local sender), as long as `patience` allows: then it fails with `WouldBlock`
    /// ([`is_stalled`]). Fails too if the datagrams
    /// could not be sent (no route to `t.dst`, for example); some of several may have left.
    pub fn send(&self, t: &Transmit<'_>, gso: bool, patience: Patience<'_>) -> io::Result<Sent> {
        let waiting = Waiting::new(patience);
        if t.datagrams() <= 1 {
            self.blocking(&waiting, || self.send_gathered(t.parts, t.dst))?;
            return Ok(Sent::Done);
        }
        if !gso {
            self.send_each(t, &waiting)?;
            return Ok(Sent::Done);
        }
        let segment = u16::try_from(t.segment).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a UDP GSO segment of {} bytes", t.segment),
            )
        })?;
        match self.blocking(&waiting, || self.send_gso(t.parts, segment, t.dst)) {
            Ok(_) => Ok(Sent::Done),
            Err(refusal) if is_gso_refusal(&refusal) => Ok(Sent::GsoRefused {
                refusal,
                then: self.send_each(t, &waiting),
            }),
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(Sent::SegmentTooBig {
                then: self.send_each(t, &waiting),
            }),
            Err(e) => Err(e),
        }
    }

    /// Retries `send` while the socket buffer is full (waiting until it has room, as long as
    /// `waiting` allows) or a signal interrupted it.
    fn blocking(
        &self,
        waiting: &Waiting<'_>,
        mut send: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            match send() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let Some(slice) = waiting.next_slice() else {
                        return Err(waiting.gave_up());
                    };
                    let ms = slice.as_millis().clamp(1, i32::MAX as u128) as i32;
                    if let Err(e) = crate::poll_writable(self.sock.as_raw_fd(), ms) {
                        log::error!("poll for a writable socket failed: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }

    /// Sends each datagram of `t` on its own, in `sendmmsg` batches.
    fn send_each(&self, t: &Transmit<'_>, waiting: &Waiting<'_>) -> io::Result<()> {
        let count = t.datagrams();
        let mut sent = 0;
        while sent < count {
            sent += self.blocking(waiting, || {
                self.send_many(&t.parts[t.per * sent..], t.per, t.dst)
            })?;
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

    /// Sends the one datagram gathered from `parts` to each of `dsts` (head-end replication)
    /// in `sendmmsg` batches of up to [`COPIES_PER_CALL`], waiting for room in a full socket
    /// buffer as `patience` allows. A destination the kernel refuses (no route to it, say) is
    /// handed to `failed` with why and the others still go; once a wait gives up, every copy
    /// not sent is handed to `failed` ([`is_stalled`]). Returns how many copies left.
    pub fn send_copies(
        &self,
        parts: &[IoSlice<'_>],
        dsts: &[SocketAddr],
        patience: Patience<'_>,
        mut failed: impl FnMut(SocketAddr, io::Error),
    ) -> usize {
        let waiting = Waiting::new(patience);
        let (mut i, mut sent) = (0, 0);
        while i < dsts.len() {
            let batch = &dsts[i..dsts.len().min(i + COPIES_PER_CALL)];
            match self.blocking(&waiting, || self.send_to_each(parts, batch)) {
                Ok(n) => {
                    sent += n;
                    i += n;
                }
                Err(e) if is_stalled(&e) => {
                    for &dst in &dsts[i..] {
                        failed(dst, io::Error::new(e.kind(), e.to_string()));
                    }
                    break;
                }
                Err(e) => {
                    failed(dsts[i], e);
                    i += 1;
                }
            }
        }
        sent
    }

    /// One `sendmmsg` of the datagram gathered from `parts` to each of `dsts` (at most
    /// [`COPIES_PER_CALL`]): how many left, from the first (at least one), or why the first
    /// could not.
    fn send_to_each(&self, parts: &[IoSlice<'_>], dsts: &[SocketAddr]) -> io::Result<usize> {
        let count = dsts.len().min(COPIES_PER_CALL);
        if count == 0 {
            return Ok(0);
        }
        // Only the addresses sent to are built.
        let addrs: [Option<SockAddr>; COPIES_PER_CALL] =
            std::array::from_fn(|k| dsts.get(k).map(|&d| SockAddr::from(d)));
        // SAFETY: an all-zero mmsghdr is a valid empty header.
        let mut msgs: [libc::mmsghdr; COPIES_PER_CALL] = unsafe { std::mem::zeroed() };
        for (m, addr) in msgs.iter_mut().zip(addrs.iter().flatten()) {
            m.msg_hdr = msghdr_to(addr, parts);
        }
        // SAFETY: the first `count` headers are initialised and point at `addrs` and `parts`,
        // all live for the call.
        unsafe { self.sendmmsg(&mut msgs[..count]) }
    }

    /// One `sendmmsg` of `msgs`: how many left, from the first.
    ///
    /// # Safety
    /// Every header points at an address and slices live for the call (the kernel writes only
    /// the headers' `msg_len`).
    unsafe fn sendmmsg(&self, msgs: &mut [libc::mmsghdr]) -> io::Result<usize> {
        // SAFETY: as the caller promises; `msgs.len()` headers follow the pointer.
        let rc = unsafe {
            libc::sendmmsg(
                self.sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
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
        // `parts`, all live for the call.
        unsafe { self.sendmmsg(&mut msgs[..count]) }
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
mod tests;
