//! The OS side of ovnet's data plane: TAP devices, the UDP underlay socket, interface ioctls,
//! network namespaces and the wake-up/poll primitives the worker threads block on.
//!
//! This is the one crate in the workspace that contains `unsafe` code: every `ioctl`, `setns`,
//! `poll`, `sendmsg`/`sendmmsg` and `recvmsg` call, and the calls into libnftables
//! ([`nftables`], for the agent), lives here behind a safe, typed API, and every
//! `unsafe` block carries a `// SAFETY:` line. It knows nothing of VXLAN, forwarding tables,
//! etcd or async runtimes: the engine (`ovnet-dataplane`) builds on it. From `ovnet-wire` it
//! takes only the sizes of the `virtio_net_hdr` formats a TAP prefixes frames with.
//!
//! `testing` (the `test-support` feature) holds what tests need of the OS and production
//! never does: a raw packet socket, and a way to make the kernel refuse UDP GSO.

pub mod event;
pub mod link;
pub mod netns;
pub mod nftables;
pub mod sched;
pub mod tap;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod udp;
pub mod uplink;
pub mod users;

#[cfg(any(test, feature = "test-support"))]
pub use event::poll_readable;
pub use event::{poll_writable, Epoll, Waker};
pub use tap::{Offloads, Tap, TapConfig, TapError};
pub use udp::{Patience, Sent, Transmit, UdpConfig, UnderlaySocket};
pub use uplink::Uplink;

/// Interface names are limited to `IFNAMSIZ - 1` bytes by the kernel (`include/uapi/linux/if.h`).
pub const IFNAMSIZ: usize = 16;

/// Checks an interface name before any syscall sees it: 1..=15 bytes, no `/`, no whitespace,
/// no NUL. The kernel would reject most of these with an opaque `EINVAL`.
pub fn check_ifname(name: &str) -> std::io::Result<()> {
    let bad = name.is_empty()
        || name.len() >= IFNAMSIZ
        || name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "invalid interface name {name:?}: use 1 to {} bytes without '/', ':' or spaces",
                IFNAMSIZ - 1
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("ovtap42").is_ok());
        assert!(check_ifname("123456789012345").is_ok());
        assert!(check_ifname("1234567890123456").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("..").is_err());
    }
}
