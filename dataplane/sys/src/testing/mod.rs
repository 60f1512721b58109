//! Test support, compiled only with the `test-support` feature (which the engine's, the
//! bench's and the test bed's dev-dependencies turn on) and in this crate's own tests: nothing
//! in a production build can reach it.
//!
//! - [`PacketSocket`]: plays a container behind a TAP, sending and capturing raw frames on one
//!   interface.
//! - [`refuse_udp_gso`] and [`refuse_tap_writes`]: make the kernel refuse, at run time, the
//!   data plane's UDP GSO sends and its writes to a TAP (the uplink), with the errors the
//!   degrade paths must survive.
//!
//! Its `unsafe` lives here, in the one crate allowed to have it, with the usual `SAFETY:` lines.

mod packet;

pub use packet::{Direction, PacketSocket};

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `SO_NETNS_COOKIE` (`include/uapi/asm-generic/socket.h`, Linux 5.14): the network
/// namespace a socket belongs to, as a number unique for the system's uptime.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// Makes the kernel refuse UDP GSO, from now on, on every UDP socket of this process that is
/// bound to `ip` in the calling thread's network namespace: sets `SO_NO_CHECK` (send without
/// UDP checksums), with which `udp_send_skb()` (`net/ipv4/udp.c`) fails a GSO send with
/// `EINVAL` while plain sends still leave, with a zero checksum, which IPv4 allows. Returns how
/// many sockets it changed.
///
/// For tests that run a data plane in this process: its sockets are found by their address
/// and namespace in `/proc/self/fd`, without any hook in the data plane, and the data planes of
/// tests running in other namespaces are left alone. Other UDP sockets of the test bound to
/// `ip` there are changed too (harmlessly: they only lose their checksums). Fails on kernels
/// without `SO_NETNS_COOKIE` (before 5.14).
pub fn refuse_udp_gso(ip: IpAddr) -> io::Result<usize> {
    let probe = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0))?;
    let here = netns_cookie(probe.as_fd())
        .map_err(|e| io::Error::new(e.kind(), format!("reading SO_NETNS_COOKIE: {e}")))?;
    drop(probe);
    let mut changed = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: `fd` was open a moment ago (listed in /proc/self/fd). The calls below only
        // read and set socket options and touch no memory of the socket's owner; should another
        // thread close the descriptor meanwhile, they fail with EBADF, which is skipped.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        if crate::udp::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).ok()
            != Some(libc::SOCK_DGRAM)
            || crate::udp::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()
                != Some(libc::IPPROTO_UDP)
            || local_ip(fd) != Some(ip)
            || netns_cookie(fd).ok() != Some(here)
        {
            continue;
        }
        crate::udp::setsockopt_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1)?;
        changed += 1;
    }
    Ok(changed)
}

/// The cookie of the network namespace socket `fd` belongs to.
fn netns_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into the live u64 `cookie` and updates
    // `len`, both of which outlive the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Makes the kernel refuse, with `EINVAL`, every frame written to TAP `name` from now on: opens
/// one more queue of it (`cfg` must give the TAP's own flags: a multi-queue TAP with a virtio
/// header) and sets the device's virtio header size beyond any frame (`TUNSETVNETHDRSZ`), so
/// that `tun_vnet_hdr_get()` refuses every write as too short. `EINVAL` is also how the kernel
/// refuses a GSO frame it cannot take, so a writer's refusal path runs for real. In the calling
/// thread's network namespace.
pub fn refuse_tap_writes(cfg: &crate::TapConfig) -> io::Result<()> {
    let queue = crate::Tap::open(cfg)?;
    queue.set_vnet_hdr_len(1 << 20)?;
    Ok(())
}

/// The IP address socket `fd` is bound to.
fn local_ip(fd: BorrowedFd<'_>) -> Option<IpAddr> {
    let mut ss = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname(2) writes at most `len` bytes into the zeroed storage, which is large
    // enough for any address, and updates `len`; both outlive the call.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), ss.as_mut_ptr().cast(), &mut len) };
    if rc < 0 {
        return None;
    }
    // SAFETY: zero-initialised, and getsockname may only have written an address into it.
    crate::udp::socket_addr(unsafe { &ss.assume_init() }).map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udp::{Sent, Transmit, UdpConfig, UnderlaySocket};
    use std::io::IoSlice;

    /// A socket bound to `ip` in a fresh namespace of its own (kept alive by the socket).
    fn elsewhere(ip: IpAddr) -> UnderlaySocket {
        std::thread::spawn(move || {
            crate::netns::unshare().unwrap();
            crate::link::set_up("lo").unwrap();
            UnderlaySocket::bind(&UdpConfig::new((ip, 0).into())).unwrap()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn the_sockets_bound_to_an_address_in_this_namespace_are_made_to_refuse_udp_gso() {
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let away = elsewhere(ip);
        std::thread::spawn(move || {
            crate::netns::unshare().unwrap();
            crate::link::set_up("lo").unwrap();
            let ours = UnderlaySocket::bind(&UdpConfig::new((ip, 0).into())).unwrap();
            let other =
                UnderlaySocket::bind(&UdpConfig::new("127.0.0.1:0".parse().unwrap())).unwrap();
            // Neither the socket on another address nor the one in another namespace.
            assert_eq!(refuse_udp_gso(ip).unwrap(), 1);
            let no_check = |s: &UnderlaySocket| {
                crate::udp::getsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK).unwrap()
            };
            assert_eq!(
                (no_check(&ours), no_check(&other), no_check(&away)),
                (1, 0, 0)
            );
            let parts = [IoSlice::new(&[1u8; 100]), IoSlice::new(&[2u8; 50])];
            let t = |dst| Transmit {
                dst,
                parts: &parts,
                per: 1,
                segment: 100,
            };
            let patience = crate::Patience::at_most(std::time::Duration::from_secs(1));
            let sent = ours
                .send(&t(other.local_addr().unwrap()), true, patience)
                .unwrap();
            assert!(
                matches!(sent, Sent::GsoRefused { then: Ok(()), .. }),
                "{sent:?}"
            );
            let sent = other
                .send(&t(ours.local_addr().unwrap()), true, patience)
                .unwrap();
            assert!(matches!(sent, Sent::Done), "{sent:?}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_tap_made_to_refuse_writes_answers_einval() {
        std::thread::spawn(|| {
            crate::netns::unshare().unwrap();
            let cfg = crate::TapConfig {
                vnet_hdr: true,
                multi_queue: true,
                ..crate::TapConfig::new("ovrefuse0")
            };
            let queues = crate::Tap::open_queues(&cfg, 2).unwrap();
            crate::link::set_up("ovrefuse0").unwrap();
            let mut frame = [0u8; 10 + 60];
            frame[10..16].fill(0xff);
            frame[22..24].copy_from_slice(&[0x88, 0xb5]);
            assert_eq!(queues[0].write(&frame).unwrap(), frame.len());
            refuse_tap_writes(&cfg).unwrap();
            let e = queues[0].write(&frame).unwrap_err();
            assert!(crate::tap::refuses_gso(&e), "{e}");
        })
        .join()
        .unwrap();
    }
}
