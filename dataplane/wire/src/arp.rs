//! ARP (RFC 826) for Ethernet and IPv4 only: the 28-byte packet after the Ethernet header,
//! and [`build_reply`], which answers a request on behalf of another host (ARP suppression).
//!
//! Other hardware or protocol types (and RARP, InARP) are rejected as [`Error::Malformed`].

use core::net::Ipv4Addr;

use crate::ethernet::{self, ethertype, Frame, MacAddr};
use crate::Error;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Length of a whole Ethernet frame carrying one, unpadded.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;
/// Hardware type: Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// A read/write view of an Ethernet/IPv4 ARP packet (the Ethernet payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer: [`Error::Truncated`] if it is shorter than 28 bytes,
    /// [`Error::Malformed`] unless it is Ethernet (htype 1, hlen 6) / IPv4 (ptype 0x0800,
    /// plen 4). Bytes after the 28 (Ethernet padding) are ignored.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET
            || packet.protocol_type() != ethertype::IPV4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Malformed);
        }
        Ok(packet)
    }

    /// Returns [`Error::Truncated`] if the buffer is shorter than [`PACKET_LEN`].
    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 for Ethernet).
    pub fn hardware_type(&self) -> u16 {
        self.be16(field::HTYPE.start)
    }

    /// Protocol type (0x0800 for IPv4).
    pub fn protocol_type(&self) -> u16 {
        self.be16(field::PTYPE.start)
    }

    /// Hardware address length (6).
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// Protocol address length (4).
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// Operation: [`OP_REQUEST`] or [`OP_REPLY`] (others are possible on the wire).
    pub fn operation(&self) -> u16 {
        self.be16(field::OPER.start)
    }

    /// Sender hardware address.
    pub fn sender_mac(&self) -> MacAddr {
        self.mac(field::SHA.start)
    }

    /// Sender protocol address.
    pub fn sender_ip(&self) -> Ipv4Addr {
        self.ip(field::SPA.start)
    }

    /// Target hardware address (ignored in requests, usually zero).
    pub fn target_mac(&self) -> MacAddr {
        self.mac(field::THA.start)
    }

    /// Target protocol address: the address asked about in a request.
    pub fn target_ip(&self) -> Ipv4Addr {
        self.ip(field::TPA.start)
    }

    fn be16(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    fn mac(&self, at: usize) -> MacAddr {
        let b = &self.buffer.as_ref()[at..at + 6];
        MacAddr([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    fn ip(&self, at: usize) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[at..at + 4];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    pub fn set_operation(&mut self, value: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the sender hardware address.
    pub fn set_sender_mac(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value.0);
    }

    /// Sets the sender protocol address.
    pub fn set_sender_ip(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value.octets());
    }

    /// Sets the target hardware address.
    pub fn set_target_mac(&mut self, value: MacAddr) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value.0);
    }

    /// Sets the target protocol address.
    pub fn set_target_ip(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value.octets());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// [`OP_REQUEST`], [`OP_REPLY`] or another operation code.
    pub operation: u16,
    /// Sender hardware address.
    pub sender_mac: MacAddr,
    /// Sender protocol address.
    pub sender_ip: Ipv4Addr,
    /// Target hardware address.
    pub target_mac: MacAddr,
    /// Target protocol address.
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Parses `packet` with the same checks as [`Packet::new_checked`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr, Error> {
        let packet = Packet::new_checked(packet.buffer)?;
        Ok(Repr {
            operation: packet.operation(),
            sender_mac: packet.sender_mac(),
            sender_ip: packet.sender_ip(),
            target_mac: packet.target_mac(),
            target_ip: packet.target_ip(),
        })
    }

    /// Length of the emitted packet.
    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the whole packet into `packet`, whose buffer must hold [`PACKET_LEN`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(ethertype::IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_sender_mac(self.sender_mac);
        packet.set_sender_ip(self.sender_ip);
        packet.set_target_mac(self.target_mac);
        packet.set_target_ip(self.target_ip);
    }
}

/// Answers the ARP request in the Ethernet frame `request_frame` with "`target_ip` is at
/// `answer`": writes the whole reply frame (42 bytes, not padded to the Ethernet minimum) into
/// the start of `out` and returns its length.
///
/// The reply goes to the requester's ARP sender hardware address (as Linux does), from
/// `answer`; its sender is (`answer`, the requested IP) and its target is the requester's
/// (MAC, IP). Errors: [`Error::Truncated`] for a short frame, [`Error::Malformed`] if it is
/// not an Ethernet/IPv4 ARP request (802.1Q-tagged frames included), [`Error::BufferTooSmall`]
/// if `out` is shorter than [`FRAME_LEN`]. Whether the request deserves an answer (gratuitous
/// ARP, probes) is the caller's decision.
pub fn build_reply(request_frame: &[u8], answer: MacAddr, out: &mut [u8]) -> Result<usize, Error> {
    let eth = Frame::new_checked(request_frame)?;
    if eth.ethertype() != ethertype::ARP {
        return Err(Error::Malformed);
    }
    let request = Repr::parse(&Packet::new_unchecked(eth.payload()))?;
    if request.operation != OP_REQUEST {
        return Err(Error::Malformed);
    }
    let out = out.get_mut(..FRAME_LEN).ok_or(Error::BufferTooSmall)?;
    let (eth_out, arp_out) = out.split_at_mut(ethernet::HEADER_LEN);
    ethernet::Repr {
        dst: request.sender_mac,
        src: answer,
        ethertype: ethertype::ARP,
    }
    .emit(&mut Frame::new_unchecked(eth_out));
    Repr {
        operation: OP_REPLY,
        sender_mac: answer,
        sender_ip: request.target_ip,
        target_mac: request.sender_mac,
        target_ip: request.sender_ip,
    }
    .emit(&mut Packet::new_unchecked(arp_out));
    Ok(FRAME_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};

    // "Who has 10.0.0.3? Tell 10.0.0.2", from 02:42:0a:00:00:02.
    static REQUEST_BYTES: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
        0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, 10, 0, 0, 2, // sender
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 3, // target
    ];
    const REQUESTER: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x00, 0x02]);
    const ANSWER: MacAddr = MacAddr([0x02, 0x42, 0x0a, 0x00, 0x00, 0x03]);
    const SIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const TIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

    fn request_repr() -> Repr {
        Repr {
            operation: OP_REQUEST,
            sender_mac: REQUESTER,
            sender_ip: SIP,
            target_mac: MacAddr::ZERO,
            target_ip: TIP,
        }
    }

    /// The whole request frame, built by etherparse.
    fn request_frame(op: ArpOperation) -> Vec<u8> {
        let arp = ArpPacket::new(
            ArpHardwareId::ETHERNET,
            EtherType::IPV4,
            op,
            &REQUESTER.0,
            &SIP.octets(),
            &[0; 6],
            &TIP.octets(),
        )
        .unwrap();
        let b = PacketBuilder::ethernet2(REQUESTER.0, MacAddr::BROADCAST.0).arp(arp);
        let mut out = Vec::new();
        b.write(&mut out).unwrap();
        out
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&REQUEST_BYTES[..]).unwrap();
        assert_eq!(p.hardware_type(), 1);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!((p.hardware_len(), p.protocol_len()), (6, 4));
        assert_eq!(p.operation(), OP_REQUEST);
        assert_eq!((p.sender_mac(), p.sender_ip()), (REQUESTER, SIP));
        assert_eq!((p.target_mac(), p.target_ip()), (MacAddr::ZERO, TIP));
        assert_eq!(p.into_inner().len(), PACKET_LEN);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xa5u8; 28];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_hardware_type(1);
        p.set_protocol_type(0x0800);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(OP_REQUEST);
        p.set_sender_mac(REQUESTER);
        p.set_sender_ip(SIP);
        p.set_target_mac(MacAddr::ZERO);
        p.set_target_ip(TIP);
        assert_eq!(bytes, REQUEST_BYTES);
    }

    #[test]
    fn parse_and_emit() {
        let repr = Repr::parse(&Packet::new_unchecked(&REQUEST_BYTES[..])).unwrap();
        assert_eq!(repr, request_repr());
        let mut bytes = [0xa5u8; 28];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, REQUEST_BYTES);
        assert_eq!(repr.buffer_len(), PACKET_LEN);
    }

    #[test]
    fn matches_etherparse() {
        let frame = request_frame(ArpOperation::REQUEST);
        assert_eq!(frame.len(), FRAME_LEN);
        assert_eq!(frame[ethernet::HEADER_LEN..], REQUEST_BYTES);
    }

    #[test]
    fn truncated_and_padded() {
        for len in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&REQUEST_BYTES[..len]).err(),
                Some(Error::Truncated)
            );
        }
        let mut padded = REQUEST_BYTES.to_vec();
        padded.resize(46, 0); // minimum Ethernet payload
        let repr = Repr::parse(&Packet::new_unchecked(&padded[..])).unwrap();
        assert_eq!(repr, request_repr());
    }

    #[test]
    fn not_ethernet_ipv4() {
        for (at, value) in [(1, 6), (2, 0x86), (4, 8), (5, 16)] {
            let mut bytes = REQUEST_BYTES;
            bytes[at] = value;
            assert_eq!(
                Packet::new_checked(&bytes[..]).err(),
                Some(Error::Malformed),
                "byte {at}"
            );
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&bytes[..])),
                Err(Error::Malformed)
            );
        }
    }

    #[test]
    fn reply() {
        let request = request_frame(ArpOperation::REQUEST);
        let mut out = [0xa5u8; 64];
        let len = build_reply(&request, ANSWER, &mut out).unwrap();
        assert_eq!(len, 42);
        #[rustfmt::skip]
        let expected: [u8; 42] = [
            0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, // to the requester
            0x02, 0x42, 0x0a, 0x00, 0x00, 0x03, // from the answer
            0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // reply
            0x02, 0x42, 0x0a, 0x00, 0x00, 0x03, 10, 0, 0, 3, // 10.0.0.3 is at ANSWER
            0x02, 0x42, 0x0a, 0x00, 0x00, 0x02, 10, 0, 0, 2, // to 10.0.0.2 at REQUESTER
        ];
        assert_eq!(out[..len], expected);
        assert!(
            out[len..].iter().all(|&b| b == 0xa5),
            "wrote past the reply"
        );

        // etherparse agrees.
        let parsed = etherparse::SlicedPacket::from_ethernet(&out[..len]).unwrap();
        let Some(etherparse::NetSlice::Arp(arp)) = parsed.net else {
            panic!("not ARP: {parsed:?}");
        };
        assert_eq!(arp.operation(), ArpOperation::REPLY);
        assert_eq!(arp.sender_protocol_addr(), TIP.octets());
        assert_eq!(arp.target_hw_addr(), REQUESTER.0);

        // Ethernet padding after the request changes nothing.
        let mut padded = request.clone();
        padded.resize(60, 0);
        let mut out2 = [0u8; 42];
        assert_eq!(build_reply(&padded, ANSWER, &mut out2), Ok(42));
        assert_eq!(out2, expected);
    }

    #[test]
    fn reply_errors() {
        let request = request_frame(ArpOperation::REQUEST);
        let mut out = [0u8; 42];
        assert_eq!(
            build_reply(&request, ANSWER, &mut out[..41]),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(build_reply(&[], ANSWER, &mut out), Err(Error::Truncated));
        for len in 0..request.len() {
            assert!(build_reply(&request[..len], ANSWER, &mut out).is_err());
        }
        let reply = request_frame(ArpOperation::REPLY);
        assert_eq!(build_reply(&reply, ANSWER, &mut out), Err(Error::Malformed));
        let mut not_arp = request.clone();
        not_arp[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
        assert_eq!(
            build_reply(&not_arp, ANSWER, &mut out),
            Err(Error::Malformed)
        );
        let mut bad_htype = request.clone();
        bad_htype[15] = 6;
        assert_eq!(
            build_reply(&bad_htype, ANSWER, &mut out),
            Err(Error::Malformed)
        );
    }
}
