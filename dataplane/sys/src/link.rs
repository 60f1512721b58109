//! Interface ioctls on a throwaway datagram socket: MTU, up/down, index, hardware address;
//! and which interface holds an address (`getifaddrs`).
//!
//! These act on the network namespace of the calling thread. They are setup-time calls, never on
//! the packet path.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::check_ifname;

/// `struct ifreq` from `include/uapi/linux/if.h`: a name and a 24-byte union; only the members
/// ovnet uses are spelled out.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct IfReq {
    pub(crate) name: [libc::c_char; libc::IFNAMSIZ],
    pub(crate) data: IfReqData,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) union IfReqData {
    pub(crate) flags: libc::c_short,
    pub(crate) int: libc::c_int,
    pub(crate) hwaddr: libc::sockaddr,
    _pad: [u8; 24],
}

impl IfReq {
    /// An `ifreq` for `name`, zeroed otherwise. The name is checked first.
    pub(crate) fn new(name: &str) -> io::Result<IfReq> {
        check_ifname(name)?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: IfReqData { _pad: [0; 24] },
        };
        for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        Ok(req)
    }

    /// The name the kernel wrote back (it fills in templates such as `tap%d`).
    pub(crate) fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created, valid descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(req: libc::c_ulong, ifr: &mut IfReq, what: &str) -> io::Result<()> {
    let sock = control_socket()?;
    // SAFETY: `ifr` is a valid, properly sized `struct ifreq` that lives across the call; the
    // request codes used with this helper read or write only that struct.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), req as _, ifr as *mut IfReq) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("{what} on {}: {err}", ifr.name()),
        ));
    }
    Ok(())
}

/// Sets the MTU of interface `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut ifr = IfReq::new(name)?;
    ifr.data.int = mtu as libc::c_int;
    ioctl(libc::SIOCSIFMTU, &mut ifr, "setting the MTU")
}

/// Reads the MTU of interface `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut ifr = IfReq::new(name)?;
    ioctl(libc::SIOCGIFMTU, &mut ifr, "reading the MTU")?;
    // SAFETY: SIOCGIFMTU filled the `ifr_mtu` int member of the union.
    Ok(unsafe { ifr.data.int } as u32)
}

/// Whether interface `name` is a loopback device (`IFF_LOOPBACK`): what is sent from an
/// address on it leaves by other devices.
pub fn is_loopback(name: &str) -> io::Result<bool> {
    let (_, flags) = flags(name)?;
    Ok(flags & libc::IFF_LOOPBACK as libc::c_short != 0)
}

/// The `ifreq` of interface `name` with its flags read (`SIOCGIFFLAGS`), and the flags.
fn flags(name: &str) -> io::Result<(IfReq, libc::c_short)> {
    let mut ifr = IfReq::new(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut ifr, "reading the flags")?;
    // SAFETY: SIOCGIFFLAGS filled the `ifr_flags` short member of the union.
    let flags = unsafe { ifr.data.flags };
    Ok((ifr, flags))
}

/// Brings interface `name` up (`IFF_UP`), keeping its other flags.
pub fn set_up(name: &str) -> io::Result<()> {
    let (mut ifr, flags) = flags(name)?;
    ifr.data.flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut ifr, "bringing the interface up")
}

/// The interface index of `name`, or `NotFound`.
pub fn index(name: &str) -> io::Result<u32> {
    check_ifname(name)?;
    let cname = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("interface {name} not found in this network namespace"),
        ));
    }
    Ok(idx)
}

/// The hardware (MAC) address of interface `name`.
pub fn hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let mut ifr = IfReq::new(name)?;
    ioctl(
        libc::SIOCGIFHWADDR,
        &mut ifr,
        "reading the hardware address",
    )?;
    // SAFETY: SIOCGIFHWADDR filled the `ifr_hwaddr` sockaddr member of the union.
    let sa = unsafe { ifr.data.hwaddr };
    let mut mac = [0u8; 6];
    for (dst, src) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *dst = *src as u8;
    }
    Ok(mac)
}

/// The name of the interface that holds address `ip` (the underlay device of a VTEP, say),
/// or `NotFound`.
pub fn holding(ip: IpAddr) -> io::Result<String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs(3) writes the head of a list it allocates into `head`; it is freed
    // below, once, with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } < 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!("listing the interfaces' addresses: {err}"),
        ));
    }
    let mut found = None;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points at a sockaddr whose family field says which
        // sockaddr it really is; only the matching type is read.
        let addr = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if addr == ip {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list, alive here.
            let name = unsafe { CStr::from_ptr(ifa.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once; nothing points into the
    // list any more (`found` is an owned copy).
    unsafe { libc::freeifaddrs(head) };
    found.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface in this network namespace has address {ip}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interface_holding_an_address_is_found() {
        assert_eq!(holding(Ipv4Addr::LOCALHOST.into()).unwrap(), "lo");
        // TEST-NET-3: configured nowhere.
        let err = holding("203.0.113.77".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("203.0.113.77"), "{err}");
    }

    #[test]
    fn loopback_is_visible() {
        assert_eq!(index("lo").unwrap(), 1);
        assert_eq!(hwaddr("lo").unwrap(), [0; 6]);
        assert!(mtu("lo").unwrap() >= 1500);
        assert!(is_loopback("lo").unwrap());
        assert!(is_loopback("ovnet-nope0").is_err());
    }

    #[test]
    fn unknown_interface_is_a_clear_error() {
        let err = index("ovnet-nope0").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("ovnet-nope0"));
        let err = set_mtu("ovnet-nope0", 1400).unwrap_err();
        assert!(err.to_string().contains("ovnet-nope0"), "{err}");
    }

    #[test]
    fn overlong_names_are_refused_before_any_syscall() {
        assert_eq!(
            set_up("a-name-that-is-too-long").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
