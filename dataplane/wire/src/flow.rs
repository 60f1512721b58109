//! The inner-flow hash that picks the outer UDP source port, giving ECMP routers between VTEPs
//! entropy to spread flows on, as the Linux kernel's `udp_flow_src_port()` does; the engine
//! also uses it to keep one flow on one queue.
//!
//! The hash covers the inner IPv4/IPv6 addresses and protocol, plus the TCP/UDP/SCTP ports of
//! unfragmented packets; for anything else, the MACs and ethertype. It is deterministic (no
//! per-process key: it is not a defence against hash flooding, only a spreader) and reads
//! fixed offsets with checked lengths, so any byte slice is accepted.

use crate::ethernet::{ethertype, HEADER_LEN};
use crate::{array, be16};

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_SCTP: u8 = 132;

/// Linux's default local port range, `net.ipv4.ip_local_port_range` = 32768..60999, as a
/// half-open `[min, max)` pair for [`src_port`]; what the kernel's VXLAN uses when no range is
/// configured.
pub const DEFAULT_SRC_PORT_RANGE: (u16, u16) = (32768, 61000);

/// Hashes the flow of the Ethernet frame `frame`.
///
/// IPv4 and IPv6 (behind at most one 802.1Q tag): source and destination address and the IP
/// protocol (IPv6: the first next header), and for TCP, UDP and SCTP the source and
/// destination ports. IPv4 fragments (first ones included, so that every fragment of a
/// datagram hashes alike, as the kernel's flow dissector does by default) and IPv6 packets
/// with extension headers are hashed without ports. Anything else, including frames too short
/// for the header they announce, is hashed on the MACs and ethertype (whatever of them is
/// present). The same flow always gives the same hash.
pub fn flow_hash(frame: &[u8]) -> u32 {
    l3_hash(frame).unwrap_or_else(|| l2_hash(frame))
}

/// Maps `hash` into the port range `[min, max)` like the kernel: `((hash * (max - min)) >> 32)
/// + min`. An empty range (`max <= min`) gives `min`.
pub fn src_port(hash: u32, min: u16, max: u16) -> u16 {
    if max <= min {
        return min;
    }
    let span = u64::from(max - min);
    // (hash * span) >> 32 < span <= u16::MAX, so the sum stays below max.
    min + ((u64::from(hash) * span) >> 32) as u16
}

fn l2_hash(frame: &[u8]) -> u32 {
    // Up to the 14 header bytes, zero-padded: both MACs and the ethertype.
    let mut h = [0u8; HEADER_LEN];
    let n = frame.len().min(HEADER_LEN);
    h[..n].copy_from_slice(&frame[..n]);
    let mut m = Mixer::new(0x4c32);
    m.word(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    m.word(u32::from_be_bytes([h[4], h[5], h[6], h[7]]));
    m.word(u32::from_be_bytes([h[8], h[9], h[10], h[11]]));
    m.word(u32::from_be_bytes([h[12], h[13], 0, 0]));
    m.finish()
}

fn l3_hash(frame: &[u8]) -> Option<u32> {
    let mut ty = be16(frame, 12)?;
    let mut l3 = HEADER_LEN;
    if ty == ethertype::VLAN {
        ty = be16(frame, 16)?;
        l3 += 4;
    }
    let ip = frame.get(l3..)?;
    match ty {
        ethertype::IPV4 => ipv4_hash(ip),
        ethertype::IPV6 => ipv6_hash(ip),
        _ => None,
    }
}

fn ipv4_hash(ip: &[u8]) -> Option<u32> {
    let h: [u8; 20] = array(ip, 0)?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return None;
    }
    let proto = h[9];
    let mut m = Mixer::new(0x0800);
    m.word(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
    m.word(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
    m.word(u32::from(proto));
    // More-fragments flag or a fragment offset: no ports.
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    if !fragment {
        if let Some(ports) = ports(ip, ihl, proto) {
            m.word(ports);
        }
    }
    Some(m.finish())
}

fn ipv6_hash(ip: &[u8]) -> Option<u32> {
    let h: [u8; 40] = array(ip, 0)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let next = h[6];
    let mut m = Mixer::new(0x86dd);
    for w in h[8..40].chunks_exact(4) {
        m.word(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    m.word(u32::from(next));
    if let Some(ports) = ports(ip, 40, next) {
        m.word(ports);
    }
    Some(m.finish())
}

/// Source and destination port as one word, for the protocols whose first four bytes they are.
fn ports(ip: &[u8], l4: usize, proto: u8) -> Option<u32> {
    match proto {
        PROTO_TCP | PROTO_UDP | PROTO_SCTP => array::<4>(ip, l4).map(u32::from_be_bytes),
        _ => None,
    }
}

/// MurmurHash3 (x86, 32-bit) over whole words, seeded with what kind of header they came from.
struct Mixer {
    h: u32,
    len: u32,
}

impl Mixer {
    const fn new(seed: u32) -> Mixer {
        Mixer { h: seed, len: 0 }
    }

    #[inline]
    fn word(&mut self, k: u32) {
        let k = k
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        self.h = (self.h ^ k)
            .rotate_left(13)
            .wrapping_mul(5)
            .wrapping_add(0xe654_6b64);
        self.len = self.len.wrapping_add(4);
    }

    #[inline]
    fn finish(self) -> u32 {
        let mut h = self.h ^ self.len;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, VlanId};

    const A: [u8; 6] = [0x02, 0x42, 10, 0, 0, 2];
    const B: [u8; 6] = [0x02, 0x42, 10, 0, 0, 3];

    fn udp4(sport: u16, dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .udp(sport, dport);
        let mut out = Vec::new();
        b.write(&mut out, b"payload").unwrap();
        out
    }

    fn tcp6(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(A, B)
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
                64,
            )
            .tcp(sport, dport, 1, 1000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn same_flow_same_hash() {
        assert_eq!(flow_hash(&udp4(1000, 53)), flow_hash(&udp4(1000, 53)));
        assert_eq!(
            flow_hash(&tcp6(40000, 80, b"a")),
            flow_hash(&tcp6(40000, 80, b"a longer payload, same flow"))
        );
    }

    #[test]
    fn ports_and_addresses_matter() {
        let base = flow_hash(&udp4(1000, 53));
        assert_ne!(base, flow_hash(&udp4(1001, 53)));
        assert_ne!(base, flow_hash(&udp4(1000, 54)));
        assert_ne!(base, flow_hash(&udp4(53, 1000)));
        let mut other_dst = udp4(1000, 53);
        other_dst[14 + 19] = 4;
        assert_ne!(base, flow_hash(&other_dst));
        assert_ne!(flow_hash(&tcp6(1, 2, b"")), flow_hash(&tcp6(1, 3, b"")));
        // The MACs are not part of an IP flow.
        let mut other_macs = udp4(1000, 53);
        other_macs[..6].copy_from_slice(&[0xff; 6]);
        assert_eq!(base, flow_hash(&other_macs));
    }

    #[test]
    fn spreads_over_ports() {
        let (min, max) = DEFAULT_SRC_PORT_RANGE;
        let mut seen = std::collections::HashSet::new();
        let mut buckets = [0u32; 16];
        for sport in 0..4096u16 {
            let h = flow_hash(&udp4(sport, 80));
            let p = src_port(h, min, max);
            assert!((min..max).contains(&p));
            seen.insert(p);
            buckets[(h >> 28) as usize] += 1;
        }
        // 4096 random draws from 28232 ports give about 3813 distinct ones.
        assert!(seen.len() > 3700, "{} distinct ports", seen.len());
        // 256 expected per bucket; a decent mixer stays well inside this band.
        assert!(
            buckets.iter().all(|&n| (150..370).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn vlan_tag_is_skipped() {
        let b = PacketBuilder::ethernet2(A, B)
            .single_vlan(VlanId::try_new(7).unwrap())
            .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
            .udp(1000, 53);
        let mut tagged = Vec::new();
        b.write(&mut tagged, b"payload").unwrap();
        assert_eq!(flow_hash(&tagged), flow_hash(&udp4(1000, 53)));
    }

    #[test]
    fn fragments_hash_without_ports() {
        let first = udp4(1000, 53);
        let mut mf = first.clone();
        mf[14 + 6] |= 0x20; // more fragments
        let mut later = first.clone();
        later[14 + 7] = 0x10; // offset 16 * 8
        let mut other_ports_mf = udp4(2000, 80);
        other_ports_mf[14 + 6] |= 0x20;
        assert_eq!(flow_hash(&mf), flow_hash(&later));
        assert_eq!(flow_hash(&mf), flow_hash(&other_ports_mf));
        assert_ne!(flow_hash(&mf), flow_hash(&first));
        // Don't-fragment is not a fragment.
        let mut df = first.clone();
        df[14 + 6] = 0x40;
        assert_eq!(flow_hash(&df), flow_hash(&first));
    }

    #[test]
    fn ipv4_options_shift_the_ports() {
        // IHL 6: four bytes of options (NOPs) before the UDP header.
        let plain = udp4(1000, 53);
        let mut with_opts = plain[..34].to_vec();
        with_opts[14] = 0x46;
        with_opts.extend_from_slice(&[1, 1, 1, 1]);
        with_opts.extend_from_slice(&plain[34..]);
        assert_eq!(flow_hash(&with_opts), flow_hash(&plain));
    }

    #[test]
    fn non_ip_uses_l2() {
        let mut arp = vec![0u8; 42];
        arp[..6].copy_from_slice(&B);
        arp[6..12].copy_from_slice(&A);
        arp[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        let h = flow_hash(&arp);
        assert_eq!(h, flow_hash(&arp[..14]), "only the Ethernet header counts");
        arp[20] = 1;
        assert_eq!(h, flow_hash(&arp));
        arp[5] = 9;
        assert_ne!(h, flow_hash(&arp));
    }

    #[test]
    fn short_and_broken_frames_do_not_panic() {
        for frame in [udp4(1000, 53), tcp6(1, 2, b"x")] {
            for len in 0..frame.len() {
                let _ = flow_hash(&frame[..len]);
            }
        }
        // An IPv4 header claiming to be shorter than 20 bytes falls back to L2.
        let mut bad_ihl = udp4(1000, 53);
        bad_ihl[14] = 0x41;
        assert_eq!(flow_hash(&bad_ihl), l2_hash(&bad_ihl));
        // A wrong version, too.
        let mut bad_version = udp4(1000, 53);
        bad_version[14] = 0x65;
        assert_eq!(flow_hash(&bad_version), l2_hash(&bad_version));
        // A truncated L4 header hashes without ports.
        let frame = udp4(1000, 53);
        let _ = flow_hash(&frame[..14 + 20 + 3]);
        assert_eq!(flow_hash(&[]), l2_hash(&[0; 14]));
    }

    #[test]
    fn src_port_mapping() {
        assert_eq!(src_port(0, 1000, 2000), 1000);
        assert_eq!(src_port(u32::MAX, 1000, 2000), 1999);
        assert_eq!(src_port(1 << 31, 1000, 2000), 1500);
        assert_eq!(src_port(u32::MAX, 0, u16::MAX), u16::MAX - 1);
        assert_eq!(src_port(12345, 5000, 5000), 5000);
        assert_eq!(src_port(12345, 6000, 5000), 6000);
        // The kernel's formula, literally.
        let (min, max) = DEFAULT_SRC_PORT_RANGE;
        let h = 0xdead_beef_u32;
        let kernel = (((u64::from(h)) * u64::from(max - min)) >> 32) as u16 + min;
        assert_eq!(src_port(h, min, max), kernel);
    }
}
