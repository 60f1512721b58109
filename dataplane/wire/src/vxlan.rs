//! VXLAN (RFC 7348): the 8-byte header carried in UDP in front of the inner Ethernet frame.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! As the RFC asks, receivers require the I flag and ignore every reserved bit; senders set
//! the I flag alone and zero every reserved bit. Not covered: VXLAN-GPE, GBP, or any other
//! extension that gives the reserved bits a meaning.

use core::fmt;

use crate::Error;

/// The IANA-assigned VXLAN UDP port.
pub const VXLAN_PORT: u16 = 4789;
/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI: u8 = 0x08;
/// What VXLAN over an IPv4 underlay adds to an inner IP packet: the outer IPv4 (20), UDP (8)
/// and VXLAN (8) headers and the inner Ethernet header (14). An overlay network's MTU is its
/// underlay's less this, the kernel's `VXLAN_HEADROOM` (1500 - 50 = 1450).
pub const OVERHEAD_V4: usize = 20 + 8 + HEADER_LEN + 14;

/// A 24-bit VXLAN Network Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI, `0xFF_FFFF` (16 777 215).
    pub const MAX: Vni = Vni(0xFF_FFFF);

    /// The VNI `value`, or `None` if it does not fit in 24 bits.
    pub const fn new(value: u32) -> Option<Vni> {
        if value <= Self::MAX.0 {
            Some(Vni(value))
        } else {
            None
        }
    }

    /// The VNI as a number.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The VNI as it appears in the header: three big-endian bytes.
    const fn to_be_bytes(self) -> [u8; 3] {
        let [_, a, b, c] = self.0.to_be_bytes();
        [a, b, c]
    }

    /// The VNI in three big-endian bytes.
    const fn from_be_bytes(b: [u8; 3]) -> Vni {
        Vni(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Vni> for u32 {
    fn from(vni: Vni) -> u32 {
        vni.0
    }
}

impl TryFrom<u32> for Vni {
    type Error = Error;

    /// Fails with [`Error::Malformed`] above [`Vni::MAX`].
    fn try_from(value: u32) -> Result<Vni, Error> {
        Vni::new(value).ok_or(Error::Malformed)
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const FLAGS: usize = 0;
    pub const RESERVED1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// A read/write view of a VXLAN packet: the header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer: checks that it holds the header ([`Error::Truncated`]) and that
    /// the I flag is set ([`Error::BadFlags`]). Reserved bits are ignored.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        packet.check_flags()?;
        Ok(packet)
    }

    /// Returns [`Error::Truncated`] if the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns [`Error::BadFlags`] unless the I flag is set; the other flag bits are ignored.
    /// Call after [`check_len`](Self::check_len).
    pub fn check_flags(&self) -> Result<(), Error> {
        if self.flags() & FLAG_VNI == 0 {
            Err(Error::BadFlags)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte, reserved bits included.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The VNI.
    pub fn vni(&self) -> Vni {
        let b = &self.buffer.as_ref()[field::VNI];
        Vni::from_be_bytes([b[0], b[1], b[2]])
    }

    /// Whether any reserved bit (flags other than I, the 24 bits after the flags, the 8 bits
    /// after the VNI) is set. Informational: receivers ignore them.
    pub fn has_reserved_bits(&self) -> bool {
        let b = self.buffer.as_ref();
        b[field::FLAGS] & !FLAG_VNI != 0
            || b[field::RESERVED1].iter().any(|&x| x != 0)
            || b[field::RESERVED2] != 0
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the whole flags byte.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the VNI; the reserved byte after it is left as it is.
    pub fn set_vni(&mut self, value: Vni) {
        self.buffer.as_mut()[field::VNI].copy_from_slice(&value.to_be_bytes());
    }

    /// Zeroes the 24 reserved bits after the flags and the 8 after the VNI.
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::RESERVED1].fill(0);
        b[field::RESERVED2] = 0;
    }

    /// The inner Ethernet frame, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The VXLAN Network Identifier.
    pub vni: Vni,
}

impl Repr {
    /// Parses the header of `packet`, with the same checks as [`Packet::new_checked`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, Error> {
        packet.check_len()?;
        packet.check_flags()?;
        Ok(Repr { vni: packet.vni() })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header, flags `0x08` and every reserved bit zero, into `packet`, whose buffer
    /// must hold at least [`HEADER_LEN`] bytes. The payload is not touched.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_flags(FLAG_VNI);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

/// The 8 header bytes for `vni` (flags `0x08`, reserved bits zero), for scatter/gather sends.
pub const fn header(vni: Vni) -> [u8; HEADER_LEN] {
    let [a, b, c] = vni.to_be_bytes();
    [FLAG_VNI, 0, 0, 0, a, b, c, 0]
}

/// An ovnet heartbeat: a VXLAN header with the I flag clear (so the kernel's vxlan, and any
/// receiver that follows RFC 7348, drops it) and `ovh` in the first reserved bytes; nothing
/// after it. ovnet's data planes send one to each other ovnet VTEP every second and count
/// who they hear from, so that a host cut off from etcd but not from its peers stays in their
/// tables (`ovnet_dataplane::peers`). Never sent to VTEPs outside ovnet.
pub const HEARTBEAT: [u8; HEADER_LEN] = [0x00, b'o', b'v', b'h', 0, 0, 0, 0];

/// An ovnet goodbye: like [`HEARTBEAT`] with `ovb`, sent once to each peer by a data plane
/// that stops cleanly, so that its peers stop counting it as heard at once.
pub const GOODBYE: [u8; HEADER_LEN] = [0x00, b'o', b'v', b'b', 0, 0, 0, 0];

/// Whether `datagram` is an ovnet [`HEARTBEAT`] (checked before the I flag, which it lacks).
pub fn is_heartbeat(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[..4] == HEARTBEAT[..4]
}

/// Whether `datagram` is an ovnet [`GOODBYE`].
pub fn is_goodbye(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER_LEN && datagram[..4] == GOODBYE[..4]
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 0x123456, then a 4-byte stand-in for the inner frame.
    static PACKET_BYTES: [u8; 12] = [
        0x08, 0x00, 0x00, 0x00, // flags, reserved
        0x12, 0x34, 0x56, 0x00, // VNI, reserved
        0xde, 0xad, 0xbe, 0xef, // payload
    ];
    const VNI: Vni = match Vni::new(0x12_3456) {
        Some(v) => v,
        None => panic!(),
    };

    #[test]
    fn deconstruct() {
        let packet = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_VNI);
        assert_eq!(packet.vni(), VNI);
        assert_eq!(packet.vni().get(), 1_193_046);
        assert!(!packet.has_reserved_bits());
        assert_eq!(packet.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(packet.into_inner(), &PACKET_BYTES[..]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 12];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_flags(FLAG_VNI);
        packet.clear_reserved();
        packet.set_vni(VNI);
        packet
            .payload_mut()
            .copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn parse() {
        let repr = Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..])).unwrap();
        assert_eq!(repr, Repr { vni: VNI });
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn emit() {
        let mut bytes = [0xa5u8; 12];
        bytes[8..].copy_from_slice(&PACKET_BYTES[8..]);
        Repr { vni: VNI }.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET_BYTES);
    }

    #[test]
    fn header_bytes() {
        assert_eq!(header(VNI), PACKET_BYTES[..8]);
        assert_eq!(header(Vni::MAX), [0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_BYTES[..len]).err(),
                Some(Error::Truncated)
            );
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&PACKET_BYTES[..len])),
                Err(Error::Truncated)
            );
        }
        // A header with no inner frame is a valid VXLAN packet; the engine judges the frame.
        let empty = Packet::new_checked(&PACKET_BYTES[..HEADER_LEN]).unwrap();
        assert!(empty.payload().is_empty());
    }

    #[test]
    fn i_flag_required() {
        let mut bytes = PACKET_BYTES;
        bytes[0] = 0x00;
        assert_eq!(Packet::new_checked(&bytes[..]).err(), Some(Error::BadFlags));
        bytes[0] = 0xf7; // every flag bit but I
        assert_eq!(Packet::new_checked(&bytes[..]).err(), Some(Error::BadFlags));
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(Error::BadFlags)
        );
    }

    #[test]
    fn reserved_bits_ignored_on_receive_and_zeroed_on_emit() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x12, 0x34, 0x56, 0xff, 0xde];
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.has_reserved_bits());
        assert_eq!(packet.vni(), VNI);
        assert_eq!(packet.payload(), &[0xde]);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(repr.vni, VNI);

        let mut out = bytes;
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xde]);

        // set_vni alone leaves the reserved byte after the VNI alone.
        let mut out = bytes;
        Packet::new_unchecked(&mut out[..]).set_vni(Vni::new(1).unwrap());
        assert_eq!(out[4..8], [0, 0, 1, 0xff]);
    }

    #[test]
    fn vni_range() {
        assert_eq!(Vni::new(0).map(Vni::get), Some(0));
        assert_eq!(Vni::new(0xFF_FFFF), Some(Vni::MAX));
        assert_eq!(Vni::new(0x100_0000), None);
        assert_eq!(Vni::new(u32::MAX), None);
        assert_eq!(Vni::try_from(0x100_0000), Err(Error::Malformed));
        assert_eq!(u32::from(Vni::try_from(42).unwrap()), 42);
        assert_eq!(Vni::MAX.to_string(), "16777215");
        assert_eq!(format!("{:>4}", Vni::new(42).unwrap()), "  42");
        assert!(Vni::new(1) < Vni::new(2));
    }

    #[test]
    fn heartbeats_are_told_from_vxlan() {
        assert!(is_heartbeat(&HEARTBEAT));
        assert_eq!(
            Packet::new_checked(&HEARTBEAT[..]).unwrap_err(),
            Error::BadFlags,
            "a receiver that follows RFC 7348 drops it"
        );
        assert!(!is_heartbeat(&HEARTBEAT[..7]));
        assert!(!is_heartbeat(&header(Vni::new(1).unwrap())));
        assert!(is_goodbye(&GOODBYE) && !is_heartbeat(&GOODBYE) && !is_goodbye(&HEARTBEAT));
        let mut flagged = HEARTBEAT;
        flagged[0] = FLAG_VNI;
        assert!(!is_heartbeat(&flagged));
    }
}
