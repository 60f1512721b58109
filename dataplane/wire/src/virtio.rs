//! `struct virtio_net_hdr` (`include/uapi/linux/virtio_net.h`): the 10-byte prefix of every
//! frame read from or written to a TAP opened with `IFF_VNET_HDR`. It tells whether the frame is
//! a TCP super-frame to segment (`gso_type`, `gso_size`) and whether its L4 checksum is left
//! for the receiver to finish (`NEEDS_CSUM`, `csum_start`, `csum_offset`). Fields are in the
//! host's byte order (little-endian on every machine ovnet runs on; TAPs default to it).

use crate::Error;

/// Length of the header.
pub const HEADER_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: finish the checksum at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO; not produced here).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation (USO), every datagram `gso_size` bytes of
/// payload but the last (Linux 6.2 for TAPs).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` flag bit of `gso_type`.
pub const GSO_ECN: u8 = 0x80;

/// A decoded `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// Length of the headers (Ethernet + IP + TCP) of a super-frame.
    pub hdr_len: u16,
    /// Payload bytes per segment (the MSS) of a super-frame.
    pub gso_size: u16,
    /// Where checksumming starts, from the start of the Ethernet header.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Decodes the first [`HEADER_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, Error> {
        let b = buf.get(..HEADER_LEN).ok_or(Error::Truncated)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// Whether the frame is a TCP super-frame to segment.
    pub fn is_tcp_gso(&self) -> bool {
        matches!(self.gso_type & !GSO_ECN, GSO_TCPV4 | GSO_TCPV6)
    }

    /// Whether the frame's L4 checksum is to be finished.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

/// Finishes the checksum a `NEEDS_CSUM` header asks for, as `skb_checksum_help()` does: the
/// sum from `csum_start` to the end of the frame, with the partial value in place, folded,
/// complemented and stored at `csum_start + csum_offset`. Errors if the offsets do not fit.
pub fn finish_csum(frame: &mut [u8], hdr: &VnetHdr) -> Result<(), Error> {
    let start = usize::from(hdr.csum_start);
    let at = start + usize::from(hdr.csum_offset);
    if at + 2 > frame.len() || start > frame.len() {
        return Err(Error::Malformed);
    }
    let c = crate::checksum::fold(crate::checksum::ones_complement_sum(&frame[start..], 0));
    // A UDP checksum of zero means "none": send all ones instead (RFC 768).
    let c = if c == 0 && hdr.csum_offset == 6 {
        0xffff
    } else {
        c
    };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let b = h.to_bytes();
        assert_eq!(b, [1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        assert_eq!(VnetHdr::parse(&b).unwrap(), h);
        assert!(h.is_tcp_gso() && h.needs_csum());
        assert_eq!(VnetHdr::parse(&b[..9]), Err(Error::Truncated));
        assert!(!VnetHdr::default().is_tcp_gso());
    }

    #[test]
    fn finish_csum_completes_a_partial_tcp_checksum() {
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .tcp(1000, 2000, 1, 100);
        let mut good = Vec::new();
        b.write(&mut good, b"some tcp payload").unwrap();
        let mut f = good.clone();
        let l4_len = (f.len() - 34) as u16;
        let pseudo = crate::checksum::pseudo_header_v4(
            [10, 0, 0, 2].into(),
            [10, 0, 0, 3].into(),
            6,
            l4_len,
        );
        f[50..52].copy_from_slice(&(!crate::checksum::fold(pseudo)).to_be_bytes());
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 34,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        finish_csum(&mut f, &h).unwrap();
        assert_eq!(f, good);
        let bad = VnetHdr {
            csum_start: 2000,
            ..h
        };
        assert_eq!(finish_csum(&mut f, &bad), Err(Error::Malformed));
    }
}
