//! ovnet's wire formats: Ethernet, VXLAN (RFC 7348), ARP (RFC 826) and IPv6 Neighbor
//! Discovery (RFC 4861), as zero-copy views over byte buffers, plus the Internet checksum
//! and the inner-flow hash used for the outer UDP source port.
//!
//! This crate contains no I/O: no sockets, no TAP devices, no threads, no allocation on the
//! packet path. It parses and builds bytes in buffers the caller owns; the forwarding engine
//! (`ovnet-dataplane`) decides what to do with them.
//!
//! Layout, in the manner of smoltcp's `wire` module:
//!
//! - [`ethernet`]: [`MacAddr`] and the Ethernet II [`ethernet::Frame`] view.
//! - [`vxlan`]: [`Vni`], the VXLAN header view [`vxlan::Packet`] and its [`vxlan::Repr`].
//! - [`arp`]: the Ethernet/IPv4 ARP view and [`arp::build_reply`].
//! - [`nd`]: Neighbor Solicitation parsing and Neighbor Advertisement building.
//! - [`checksum`]: the ones' complement Internet checksum and pseudo-headers.
//! - [`flow`]: the inner-flow hash and its mapping to a UDP source port.
//! - [`ip`]: the sender IP of a frame, for anti-spoofing checks.
//! - [`icmp`]: "fragmentation needed" / "packet too big" answers for frames that do not fit
//!   the path to their peer.
//! - [`gso`], [`gro`], [`virtio`] and [`tunnel`]: segmentation and coalescing of TCP super-frames,
//!   the `virtio_net_hdr` that describes them, and the headers of a whole VXLAN super-frame for
//!   the kernel to segment (UDP tunnel GSO).
//!
//! # Panic contract
//!
//! Views (`Packet`, `Frame`) are built with `new_checked`, which validates the buffer's length
//! (and, where stated, fixed fields); once it has succeeded, no accessor or setter panics.
//! `new_unchecked` skips that validation: its accessors panic if the buffer is too short, which
//! is a bug in the caller, never something a packet can cause. Every free function
//! (`build_reply`, `parse_solicitation`, `flow_hash`, `sender_ipv4`, ...) accepts any byte
//! slice, however short or malformed, and never panics.
#![forbid(unsafe_code)]

use core::fmt;

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod flow;
pub mod gro;
pub mod gso;
pub mod icmp;
pub mod ip;
pub mod nd;
pub mod tunnel;
pub mod virtio;
pub mod vxlan;

pub use ethernet::{MacAddr, ParseMacAddrError};
pub use vxlan::{Vni, VXLAN_PORT};

/// Why a buffer could not be parsed or a packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// The buffer is shorter than the header (or the length it claims).
    Truncated,
    /// A VXLAN header without the I flag (0x08): the VNI is not valid.
    BadFlags,
    /// A fixed field has a value this crate does not accept (wrong hardware or protocol type,
    /// wrong operation, wrong ethertype, ...).
    Malformed,
    /// The output buffer is too small for the packet to build.
    BufferTooSmall,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::BadFlags => "VXLAN header without the I (valid VNI) flag",
            Error::Malformed => "malformed or unsupported packet",
            Error::BufferTooSmall => "output buffer too small",
        })
    }
}

impl std::error::Error for Error {}

/// Reads a big-endian `u16` at `at`, or `None` past the end of `buf`.
#[inline]
fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Reads `N` bytes at `at`, or `None` past the end of `buf`.
#[inline]
fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_and_trait() {
        let e: Box<dyn std::error::Error> = Box::new(Error::BadFlags);
        assert!(e.to_string().contains("I (valid VNI) flag"));
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
    }

    #[test]
    fn helpers_never_read_past_the_end() {
        let buf = [1, 2, 3];
        assert_eq!(be16(&buf, 1), Some(0x0203));
        assert_eq!(be16(&buf, 2), None);
        assert_eq!(be16(&buf, usize::MAX), None);
        assert_eq!(array::<3>(&buf, 0), Some([1, 2, 3]));
        assert_eq!(array::<2>(&buf, 2), None);
        assert_eq!(array::<2>(&buf, usize::MAX), None);
    }

    /// Every entry point on many pseudo-random buffers, of every length up to 128 bytes and
    /// biased towards the ethertypes and fields that lead deeper: none may panic.
    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
        };
        let ethertypes = [0x0800u16, 0x0806, 0x86dd, 0x8100, 0x88a8, 0x1234];
        let mut buf = [0u8; 128];
        let mut out = [0u8; 128];
        let mut solicitations = 0;
        for round in 0..20_000 {
            for b in buf.iter_mut() {
                *b = next() as u8;
            }
            let len = round % buf.len();
            let et = ethertypes[next() as usize % ethertypes.len()];
            buf[12..14].copy_from_slice(&et.to_be_bytes());
            match next() % 4 {
                0 => buf[14..22].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0, 1]),
                1 => buf[14] = 0x45,
                2 => {
                    // IPv6 / ICMPv6 NS with a correct checksum, so that options are walked.
                    let plen = 24 + (next() as usize % 50);
                    buf[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0, plen as u8, 58, 255]);
                    buf[54..58].copy_from_slice(&[135, 0, 0, 0]);
                    let src = core::net::Ipv6Addr::from(array::<16>(&buf, 22).unwrap());
                    let dst = core::net::Ipv6Addr::from(array::<16>(&buf, 38).unwrap());
                    let sum = checksum::pseudo_header_v6(src, dst, 58, plen as u32);
                    let c = checksum::fold(checksum::ones_complement_sum(&buf[54..54 + plen], sum));
                    buf[56..58].copy_from_slice(&c.to_be_bytes());
                }
                _ => {}
            }
            let frame = &buf[..len];
            let _ = flow::flow_hash(frame);
            let _ = ip::sender_ipv4(frame);
            let _ = ip::sender_ipv6(frame);
            let _ = arp::build_reply(frame, MacAddr::BROADCAST, &mut out[..len.min(64)]);
            if let Some(sol) = nd::parse_solicitation(frame) {
                solicitations += 1;
                let _ = nd::build_advertisement(&sol, MacAddr::ZERO, &mut out[..len]);
            }
            if let Ok(p) = vxlan::Packet::new_checked(frame) {
                let _ = (p.flags(), p.vni(), p.payload(), p.has_reserved_bits());
                let _ = vxlan::Repr::parse(&p);
            }
            if let Ok(f) = ethernet::Frame::new_checked(frame) {
                let _ = (f.dst(), f.src(), f.ethertype(), f.payload());
                if let Ok(a) = arp::Packet::new_checked(f.payload()) {
                    let _ = (a.operation(), a.sender_mac(), a.sender_ip());
                    let _ = (a.target_mac(), a.target_ip());
                }
            }
            let _ = checksum::ones_complement_sum(frame, next());
        }
        assert!(solicitations > 0, "the ND path was never reached");
    }
}
