//! TAP devices: one queue of a layer-2 virtual interface, as a file descriptor.
//!
//! Opened directly with `/dev/net/tun` ioctls rather than through the `tun-tap` crate: ovnet's
//! fast path needs `IFF_VNET_HDR` (so the kernel hands over 64 KB TCP super-frames with a
//! `virtio_net_hdr`), `TUNSETOFFLOAD` and `IFF_MULTI_QUEUE`, none of which tun-tap 0.1 offers,
//! and tun-rs' offload code is layer-3 only. The ioctl numbers and flags are those of
//! `include/uapi/linux/if_tun.h`.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

// The prefixes of frames on a TAP opened with `vnet_hdr`: `struct virtio_net_hdr` (without
// `num_buffers`), or with `tunnel_hdr` `struct virtio_net_hdr_v1_hash_tunnel`, the only length
// with which a TAP takes UDP tunnel GSO frames (Linux 6.17+). Defined with their formats.
use ovnet_wire::tunnel::VNET_TUNNEL_HDR_LEN;
use ovnet_wire::virtio::HEADER_LEN as VNET_HDR_LEN;

use crate::link::IfReq;

// include/uapi/linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca; // _IOW('T', 202, int)
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0; // _IOW('T', 208, unsigned int)
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8; // _IOW('T', 216, int)
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x080;

/// Whether a failed write to a TAP means "this kernel or TAP cannot take this kind of GSO
/// frame": `EINVAL` from `virtio_net_hdr_to_skb()` (`include/linux/virtio_net.h`) for a GSO type
/// the kernel does not know (`GSO_UDP_L4` before Linux 6.2) or a tunnel frame on a TAP without
/// `TUN_F_UDP_TUNNEL_GSO`. The writer stops sending that kind; any other error is one frame's.
pub fn refuses_gso(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// How to open a TAP queue.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Interface name, 1..=15 bytes; created if it does not exist (a `%d` template is allowed).
    pub name: String,
    /// Prefix every frame with a `virtio_net_hdr` (`IFF_VNET_HDR`), required for offloads.
    pub vnet_hdr: bool,
    /// With `vnet_hdr`: use the 24-byte tunnel header (`virtio_net_hdr_v1_hash_tunnel`)
    /// instead of the 10-byte one.
    pub tunnel_hdr: bool,
    /// Open one of several queues of a multi-queue TAP (`IFF_MULTI_QUEUE`).
    pub multi_queue: bool,
    /// Open the descriptor non-blocking (what the worker threads want).
    pub nonblocking: bool,
}

impl TapConfig {
    /// A plain, non-blocking, single-queue TAP without `virtio_net_hdr`.
    pub fn new(name: impl Into<String>) -> TapConfig {
        TapConfig {
            name: name.into(),
            vnet_hdr: false,
            tunnel_hdr: false,
            multi_queue: false,
            nonblocking: true,
        }
    }
}

/// Offloads the TAP may hand to (and accept from) userspace; see `TUNSETOFFLOAD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offloads {
    /// Frames may carry a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub csum: bool,
    /// TCPv4 segmentation offload: super-frames up to 64 KB.
    pub tso4: bool,
    /// TCPv6 segmentation offload.
    pub tso6: bool,
    /// TSO with ECN (CWR) handling.
    pub tso_ecn: bool,
    /// TSO inside a UDP tunnel (`TUN_F_UDP_TUNNEL_GSO`, Linux 6.17+; the kernel refuses the
    /// bit with `EINVAL` before that, which makes setting it a probe).
    pub udp_tunnel: bool,
}

impl Offloads {
    fn bits(self) -> libc::c_uint {
        let mut bits = 0;
        if self.csum {
            bits |= TUN_F_CSUM;
        }
        if self.tso4 {
            bits |= TUN_F_TSO4;
        }
        if self.tso6 {
            bits |= TUN_F_TSO6;
        }
        if self.tso_ecn {
            bits |= TUN_F_TSO_ECN;
        }
        if self.udp_tunnel {
            bits |= TUN_F_UDP_TUNNEL_GSO;
        }
        bits
    }
}

/// What failed while setting up a TAP.
#[derive(Debug)]
pub enum TapError {
    /// The name was refused before any syscall.
    InvalidName(io::Error),
    /// `/dev/net/tun` could not be opened (missing `tun` module or no `CAP_NET_ADMIN`).
    OpenTun(io::Error),
    /// `TUNSETIFF` failed (name in use by a non-TAP device, flags mismatch with existing queues).
    CreateTap(String, io::Error),
    /// `TUNSETOFFLOAD` or `TUNSETVNETHDRSZ` failed.
    SetOffload(String, io::Error),
}

impl std::fmt::Display for TapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TapError::InvalidName(e) => write!(f, "{e}"),
            TapError::OpenTun(e) => write!(
                f,
                "opening /dev/net/tun failed: {e} (load the tun module and run as root or with CAP_NET_ADMIN)"
            ),
            TapError::CreateTap(name, e) => write!(
                f,
                "creating TAP {name} failed: {e} (is the name taken by a device of another kind?)"
            ),
            TapError::SetOffload(name, e) => write!(f, "setting offloads on TAP {name} failed: {e}"),
        }
    }
}

impl std::error::Error for TapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TapError::InvalidName(e) | TapError::OpenTun(e) => Some(e),
            TapError::CreateTap(_, e) | TapError::SetOffload(_, e) => Some(e),
        }
    }
}

impl From<TapError> for io::Error {
    fn from(e: TapError) -> io::Error {
        let kind = match &e {
            TapError::InvalidName(_) => io::ErrorKind::InvalidInput,
            TapError::OpenTun(err) | TapError::CreateTap(_, err) | TapError::SetOffload(_, err) => {
                err.kind()
            }
        };
        io::Error::new(kind, e.to_string())
    }
}

/// One queue of a TAP device. The device exists while at least one queue is open (it is not
/// made persistent), so a crashed agent leaves no TAP behind.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    vnet_hdr: bool,
}

impl Tap {
    /// Creates (or attaches to) the TAP `cfg.name` in the calling thread's network namespace.
    pub fn open(cfg: &TapConfig) -> Result<Tap, TapError> {
        let mut ifr = IfReq::new(&cfg.name).map_err(TapError::InvalidName)?;
        let mut flags = IFF_TAP | IFF_NO_PI;
        if cfg.vnet_hdr {
            flags |= IFF_VNET_HDR;
        }
        if cfg.multi_queue {
            flags |= IFF_MULTI_QUEUE;
        }
        ifr.data.flags = flags;
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        if cfg.nonblocking {
            opts.custom_flags(libc::O_NONBLOCK);
        }
        let file = opts.open("/dev/net/tun").map_err(TapError::OpenTun)?;
        // SAFETY: `file` is an open /dev/net/tun descriptor and `ifr` a valid `struct ifreq`
        // that TUNSETIFF reads and writes back (the final name); both outlive the call.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut ifr as *mut IfReq) };
        if rc < 0 {
            return Err(TapError::CreateTap(
                cfg.name.clone(),
                io::Error::last_os_error(),
            ));
        }
        let tap = Tap {
            file,
            name: ifr.name(),
            vnet_hdr: cfg.vnet_hdr,
        };
        if cfg.vnet_hdr {
            tap.set_vnet_hdr_len(if cfg.tunnel_hdr {
                VNET_TUNNEL_HDR_LEN
            } else {
                VNET_HDR_LEN
            })?;
        }
        Ok(tap)
    }

    /// Opens `queues` queues of one multi-queue TAP (the first creates it).
    pub fn open_queues(cfg: &TapConfig, queues: usize) -> Result<Vec<Tap>, TapError> {
        let mut cfg = cfg.clone();
        cfg.multi_queue = queues > 1 || cfg.multi_queue;
        let first = Tap::open(&cfg)?;
        cfg.name = first.name.clone();
        let mut all = vec![first];
        for _ in 1..queues {
            all.push(Tap::open(&cfg)?);
        }
        Ok(all)
    }

    /// The interface name (as the kernel completed it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether frames carry a `virtio_net_hdr` prefix.
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Enables the given offloads (`TUNSETOFFLOAD`); needs a TAP opened with `vnet_hdr`.
    pub fn set_offloads(&self, offloads: Offloads) -> Result<(), TapError> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; the descriptor is a valid TAP.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETOFFLOAD as _,
                offloads.bits() as libc::c_ulong,
            )
        };
        if rc < 0 {
            return Err(TapError::SetOffload(
                self.name.clone(),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    pub(crate) fn set_vnet_hdr_len(&self, len: usize) -> Result<(), TapError> {
        let len = len as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which lives across the call.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETVNETHDRSZ as _,
                &len as *const libc::c_int,
            )
        };
        if rc < 0 {
            return Err(TapError::SetOffload(
                self.name.clone(),
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Reads one frame (with its `virtio_net_hdr` if enabled). `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame (with its `virtio_net_hdr` if enabled).
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        (&self.file).write(frame)
    }

    /// Writes one frame gathered from several buffers (one `writev`).
    pub fn write_vectored(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.file).write_vectored(parts)
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_fail_before_opening() {
        let err = Tap::open(&TapConfig::new("this-name-is-too-long")).unwrap_err();
        assert!(matches!(err, TapError::InvalidName(_)), "{err}");
    }

    /// Runs `f` on a thread that has a fresh, private network namespace (gone when it exits).
    fn in_private_netns(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) with CLONE_NEWNET only affects this short-lived test thread.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap();
    }

    #[test]
    fn create_configure_and_exchange_a_frame() {
        in_private_netns(|| {
            let tap = Tap::open(&TapConfig::new("ovt%d")).unwrap();
            assert!(tap.name().starts_with("ovt"), "{}", tap.name());
            crate::link::set_mtu(tap.name(), 1450).unwrap();
            crate::link::set_up(tap.name()).unwrap();
            assert_eq!(crate::link::mtu(tap.name()).unwrap(), 1450);
            assert!(crate::link::index(tap.name()).unwrap() > 1);
            // Nothing is queued yet: a non-blocking read says so instead of hanging.
            let mut buf = [0u8; 2048];
            assert_eq!(
                tap.read(&mut buf).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            // A frame written by us is accepted (it goes up the device's stack).
            let mut frame = [0u8; 60];
            frame[..6].copy_from_slice(&[0xff; 6]);
            frame[6..12].copy_from_slice(&[2, 0x42, 10, 0, 0, 2]);
            frame[12..14].copy_from_slice(&[0x88, 0xb5]);
            assert_eq!(tap.write(&frame).unwrap(), 60);
        });
    }

    #[test]
    fn multi_queue_with_vnet_hdr_and_offloads() {
        in_private_netns(|| {
            let cfg = TapConfig {
                vnet_hdr: true,
                ..TapConfig::new("ovmq0")
            };
            let queues = Tap::open_queues(&cfg, 2).unwrap();
            assert_eq!(queues.len(), 2);
            for q in &queues {
                assert!(q.has_vnet_hdr());
                q.set_offloads(Offloads {
                    csum: true,
                    tso4: true,
                    tso6: true,
                    ..Offloads::default()
                })
                .unwrap();
            }
            // A single-queue open of the same name must fail clearly: flags differ.
            let err = Tap::open(&TapConfig::new("ovmq0")).unwrap_err();
            assert!(err.to_string().contains("ovmq0"), "{err}");
        });
    }

    #[test]
    fn offload_bits_match_if_tun_h() {
        let all = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            tso_ecn: true,
            udp_tunnel: true,
        };
        assert_eq!(all.bits(), 0x8f);
        assert_eq!(Offloads::default().bits(), 0);
    }
}
