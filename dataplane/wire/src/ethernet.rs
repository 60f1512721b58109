//! Ethernet II: [`MacAddr`] and the [`Frame`] view over a whole frame.
//!
//! The frame starts at the destination MAC; there is no preamble and no FCS. 802.1Q tags are
//! not interpreted here: a tagged frame reports [`ethertype::VLAN`] and the tag is the first
//! four bytes of its payload.

use core::fmt;
use core::net::{Ipv4Addr, Ipv6Addr};
use core::str::FromStr;

use crate::Error;

/// Ethertypes ovnet looks at.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86DD;
    /// IEEE 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88A8;
}

/// Length of the Ethernet II header: two MACs and the ethertype.
pub const HEADER_LEN: usize = 14;

/// Offset and ethertype of the network-layer header of `frame`, looking through one 802.1Q
/// tag. `None` if the frame is too short to say.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == ethertype::VLAN {
        let inner = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        return Some((HEADER_LEN + 4, inner));
    }
    Some((HEADER_LEN, et))
}

/// A 48-bit IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address as six bytes.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether this is `ff:ff:ff:ff:ff:ff`.
    pub const fn is_broadcast(&self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Whether the group bit (bit 0 of the first octet) is set; broadcast is multicast.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this can be the address of one station: not multicast and not all zero.
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast() && !matches!(self.0, [0, 0, 0, 0, 0, 0])
    }

    /// Whether the locally administered bit (bit 1 of the first octet) is set.
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// Docker's MAC for a container IPv4 address `a.b.c.d`: `02:42:a:b:c:d`.
    pub const fn from_ipv4_docker(ip: Ipv4Addr) -> MacAddr {
        let [a, b, c, d] = ip.octets();
        MacAddr([0x02, 0x42, a, b, c, d])
    }

    /// The IPv6 link-local address `fe80::/64` with this MAC's modified EUI-64 interface
    /// identifier (RFC 4291 appendix A: `ff:fe` in the middle, universal/local bit flipped).
    pub const fn ipv6_link_local(&self) -> Ipv6Addr {
        let m = self.0;
        Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
            u16::from_be_bytes([m[2], 0xff]),
            u16::from_be_bytes([0xfe, m[3]]),
            u16::from_be_bytes([m[4], m[5]]),
        )
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

impl From<MacAddr> for [u8; 6] {
    fn from(mac: MacAddr) -> Self {
        mac.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a MAC address of the form `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseMacAddrError {
    input: String,
}

impl fmt::Display for ParseMacAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid MAC address {:?}: expected six colon-separated pairs of hex digits, \
             such as 02:42:0a:00:00:02",
            self.input
        )
    }
}

impl std::error::Error for ParseMacAddrError {}

impl FromStr for MacAddr {
    type Err = ParseMacAddrError;

    /// Parses `aa:bb:cc:dd:ee:ff` (either case; exactly two hex digits per octet).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacAddrError {
            input: s.to_owned(),
        };
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for octet in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer, checking that it holds at least the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Returns [`Error::Truncated`] if the buffer is shorter than the header.
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Length of a frame carrying `payload_len` bytes.
    pub const fn buffer_len(payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Destination MAC.
    pub fn dst(&self) -> MacAddr {
        MacAddr(mac(&self.buffer.as_ref()[field::DST]))
    }

    /// Source MAC.
    pub fn src(&self) -> MacAddr {
        MacAddr(mac(&self.buffer.as_ref()[field::SRC]))
    }

    /// Ethertype (see [`ethertype`]).
    pub fn ethertype(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::ETHERTYPE];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Everything after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination MAC.
    pub fn set_dst(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&value.0);
    }

    /// Sets the source MAC.
    pub fn set_src(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&value.0);
    }

    /// Sets the ethertype.
    pub fn set_ethertype(&mut self, value: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Everything after the header, mutably.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Frame<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Six bytes of a slice that is known to be six bytes long.
fn mac(b: &[u8]) -> [u8; 6] {
    [b[0], b[1], b[2], b[3], b[4], b[5]]
}

/// A parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC.
    pub src: MacAddr,
    /// Destination MAC.
    pub dst: MacAddr,
    /// Ethertype.
    pub ethertype: u16,
}

impl Repr {
    /// Parses the header of `frame`.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<Repr, Error> {
        frame.check_len()?;
        Ok(Repr {
            src: frame.src(),
            dst: frame.dst(),
            ethertype: frame.ethertype(),
        })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into `frame`, whose buffer must hold at least [`HEADER_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, frame: &mut Frame<&mut T>) {
        frame.set_dst(self.dst);
        frame.set_src(self.src);
        frame.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME_BYTES: [u8; 18] = [
        0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, // dst
        0x02, 0x42, 0x0a, 0x00, 0x00, 0x03, // src
        0x08, 0x00, // ethertype IPv4
        0xaa, 0xbb, 0xcc, 0xdd, // payload
    ];
    const DST: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x00, 0x02]);
    const SRC: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x00, 0x03]);

    #[test]
    fn deconstruct() {
        let frame = Frame::new_checked(&FRAME_BYTES[..]).unwrap();
        assert_eq!(frame.dst(), DST);
        assert_eq!(frame.src(), SRC);
        assert_eq!(frame.ethertype(), ethertype::IPV4);
        assert_eq!(frame.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(frame.into_inner().len(), 18);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 18];
        let mut frame = Frame::new_unchecked(&mut bytes[..]);
        frame.set_dst(DST);
        frame.set_src(SRC);
        frame.set_ethertype(ethertype::IPV4);
        frame
            .payload_mut()
            .copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        assert_eq!(bytes, FRAME_BYTES);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Frame::new_unchecked(&FRAME_BYTES[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                src: SRC,
                dst: DST,
                ethertype: ethertype::IPV4
            }
        );
        let mut bytes = [0xa5u8; 18];
        bytes[14..].copy_from_slice(&FRAME_BYTES[14..]);
        repr.emit(&mut Frame::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, FRAME_BYTES);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert_eq!(Frame::<&[u8]>::buffer_len(4), 18);
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Frame::new_checked(&FRAME_BYTES[..len]).err(),
                Some(Error::Truncated)
            );
            assert_eq!(
                Repr::parse(&Frame::new_unchecked(&FRAME_BYTES[..len])),
                Err(Error::Truncated)
            );
        }
        let header_only = Frame::new_checked(&FRAME_BYTES[..HEADER_LEN]).unwrap();
        assert!(header_only.payload().is_empty());
    }

    #[test]
    fn mac_display_debug_parse() {
        assert_eq!(DST.to_string(), "02:42:0a:00:00:02");
        assert_eq!(format!("{DST:?}"), "02:42:0a:00:00:02");
        assert_eq!("02:42:0a:00:00:02".parse::<MacAddr>(), Ok(DST));
        assert_eq!(
            "AA:bb:Cc:dd:ee:FF".parse::<MacAddr>(),
            Ok(MacAddr([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]))
        );
        for bad in [
            "",
            "02:42:0a:00:00",
            "02:42:0a:00:00:02:03",
            "02:42:0a:00:00:2",
            "02:42:0a:00:00:002",
            "02-42-0a-00-00-02",
            "02:42:0a:00:00:0g",
            "+2:42:0a:00:00:02",
            "02:42:0a:00:00:02:",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(err.to_string().contains("invalid MAC address"), "{bad}");
        }
    }

    #[test]
    fn mac_classes() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        assert!(!MacAddr::ZERO.is_unicast());
        assert!(!MacAddr::ZERO.is_multicast());
        let mcast = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        assert!(DST.is_unicast() && !DST.is_multicast() && !DST.is_broadcast());
        assert!(DST.is_local());
        assert_eq!(
            MacAddr::from([1, 2, 3, 4, 5, 6]).octets(),
            [1, 2, 3, 4, 5, 6]
        );
        assert!(MacAddr::ZERO < MacAddr::BROADCAST);
    }

    #[test]
    fn docker_mac() {
        assert_eq!(MacAddr::from_ipv4_docker(Ipv4Addr::new(10, 0, 0, 2)), DST);
        assert_eq!(
            MacAddr::from_ipv4_docker(Ipv4Addr::new(172, 17, 0, 5)).to_string(),
            "02:42:ac:11:00:05"
        );
    }

    #[test]
    fn link_local() {
        let mac: MacAddr = "52:54:00:12:34:56".parse().unwrap();
        assert_eq!(
            mac.ipv6_link_local(),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            DST.ipv6_link_local(),
            "fe80::42:aff:fe00:2".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn l3_offset_looks_through_one_tag() {
        let mut f = [0u8; 18];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(l3_offset(&f), Some((14, 0x0800)));
        f[12..18].copy_from_slice(&[0x81, 0x00, 0, 42, 0x86, 0xdd]);
        assert_eq!(l3_offset(&f), Some((18, 0x86dd)));
        assert_eq!(l3_offset(&f[..17]), None);
        assert_eq!(l3_offset(&f[..13]), None);
    }
}
