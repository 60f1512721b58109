//! Receive coalescing (GRO): which consecutive TCP segments or UDP datagrams may become one
//! super-frame, and the headers of that super-frame. The payloads are not copied here: the
//! caller writes the returned header and then each segment's payload with one `writev`.
//!
//! - TCP follows the kernel's `tcp_gro_receive()`: same flow, headers identical except IP
//!   length, identification and checksum and the TCP sequence number and checksum; in-order
//!   sequence numbers; every segment but the last of the same payload size; only ACK (and
//!   PSH, which ends a run) set. The result is a `GSO_TCPV4`/`GSO_TCPV6` frame.
//! - UDP follows `udp_gro_receive()` for a flow of equal-sized datagrams: same flow and IP
//!   header but for length, checksum and an identification that counts up by one (exactly
//!   what segmenting the super-frame gives back), every datagram but the last of the same
//!   size, each with a checksum (an IPv4 datagram without one would get one on the way out, so
//!   it is left alone). The result is a `GSO_UDP_L4` frame: the receiving kernel splits it back
//!   at the socket, or hands it whole to a socket that asked for `UDP_GRO`.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{fold, ones_complement_sum, pseudo_header_v4, pseudo_header_v6};
use crate::gso::{tcp_frame, TcpFrame};
use crate::virtio::{self, VnetHdr};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
const UDP_HEADER_LEN: usize = 8;

/// Largest IP packet a super-frame may become.
pub const MAX_SUPER_IP_LEN: usize = 65_535;

/// Which transport a [`Segment`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// A TCP segment; `seq` is its sequence number.
    Tcp {
        /// Sequence number.
        seq: u32,
    },
    /// A UDP datagram; `id` is the IPv4 identification (0 for IPv6).
    Udp {
        /// IPv4 identification.
        id: u16,
    },
}

/// A TCP segment or UDP datagram that may take part in coalescing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Header offsets (for UDP, `payload` is just past the 8-byte UDP header).
    pub t: TcpFrame,
    /// TCP or UDP, with what orders segments.
    pub proto: Proto,
    /// Payload bytes.
    pub payload_len: usize,
    /// TCP PSH is set: nothing may follow it in a super-frame.
    pub push: bool,
}

/// `Some` if `frame` is a TCP segment with payload whose only flags are ACK and maybe PSH, or
/// a UDP datagram with payload, a checksum and a length that matches the IP packet's.
pub fn candidate(frame: &[u8]) -> Option<Segment> {
    if let Some(t) = tcp_frame(frame) {
        let flags = frame[t.l4 + 13];
        if flags & !TCP_PSH != TCP_ACK || t.end <= t.payload {
            return None;
        }
        let s = &frame[t.l4 + 4..t.l4 + 8];
        return Some(Segment {
            t,
            proto: Proto::Tcp {
                seq: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
            },
            payload_len: t.end - t.payload,
            push: flags & TCP_PSH != 0,
        });
    }
    let (t, id) = udp_frame(frame)?;
    let u = &frame[t.l4..t.payload];
    let udp_len = usize::from(u16::from_be_bytes([u[4], u[5]]));
    let check = u16::from_be_bytes([u[6], u[7]]);
    if udp_len != t.end - t.l4 || t.end <= t.payload || (t.v4 && check == 0) {
        return None;
    }
    Some(Segment {
        t,
        proto: Proto::Udp { id },
        payload_len: t.end - t.payload,
        push: false,
    })
}

/// Locates the headers of an Ethernet + IPv4/IPv6 + UDP frame (IPv6 without extension
/// headers, IPv4 not fragmented); also returns the IPv4 identification.
fn udp_frame(frame: &[u8]) -> Option<(TcpFrame, u16)> {
    let s = crate::checksum::l4_of(frame)?;
    if s.proto != 17 || s.len < UDP_HEADER_LEN {
        return None;
    }
    let id = if s.v4 {
        u16::from_be_bytes([frame[s.l3 + 4], frame[s.l3 + 5]])
    } else {
        0
    };
    Some((
        TcpFrame {
            l3: s.l3,
            l4: s.start,
            payload: s.start + UDP_HEADER_LEN,
            end: s.start + s.len,
            v4: s.v4,
        },
        id,
    ))
}

/// Whether segment `b` (frame `fb`) continues the run that ended with segment `a` (frame
/// `fa`), whose first segment had `gso_size` payload bytes and which holds `ip_len` bytes so far.
pub fn continues(
    fa: &[u8],
    a: &Segment,
    fb: &[u8],
    b: &Segment,
    gso_size: usize,
    ip_len: usize,
) -> bool {
    let in_order = match (a.proto, b.proto) {
        (Proto::Tcp { seq: sa }, Proto::Tcp { seq: sb }) => {
            sb == sa.wrapping_add(a.payload_len as u32)
        }
        (Proto::Udp { id: ia }, Proto::Udp { id: ib }) => !a.t.v4 || ib == ia.wrapping_add(1),
        _ => false,
    };
    if a.push
        || !in_order
        || a.t
            != (TcpFrame {
                end: a.t.end,
                ..b.t
            })
        || a.payload_len != gso_size
        || b.payload_len > gso_size
        || ip_len + b.payload_len > MAX_SUPER_IP_LEN
    {
        return false;
    }
    let t = &a.t;
    // Link-layer header (MACs, ethertype, VLAN tag).
    if fa[..t.l3] != fb[..t.l3] {
        return false;
    }
    let (ia, ib) = (&fa[t.l3..t.l4], &fb[t.l3..t.l4]);
    let ip_same = if t.v4 {
        // Version/IHL/TOS, flags/fragment, TTL/protocol, addresses and options.
        ia[..2] == ib[..2] && ia[6..10] == ib[6..10] && ia[12..] == ib[12..]
    } else {
        // Version/class/flow, next header/hop limit, addresses.
        ia[..4] == ib[..4] && ia[6..] == ib[6..]
    };
    let (ta, tb) = (&fa[t.l4..t.payload], &fb[t.l4..t.payload]);
    if let Proto::Udp { .. } = a.proto {
        // Ports; the lengths and checksums differ with the payloads.
        return ip_same && ta[..4] == tb[..4];
    }
    // Ports, ack, data offset, window, urgent pointer and options (timestamps included, as
    // the kernel does) must match; the flag bytes differ at most by PSH, which `a` lacks.
    ip_same
        && ta[..4] == tb[..4]
        && ta[8..13] == tb[8..13]
        && ta[14..16] == tb[14..16]
        && ta[18..] == tb[18..]
}

/// Writes into `out` the `virtio_net_hdr` and the headers of the super-frame made of `count`
/// segments starting with `first` (frame `f`) and carrying `payload` bytes in all, the last
/// TCP segment with PSH if `push`. Returns the bytes written (virtio header + frame headers).
/// The TCP or UDP checksum field holds the pseudo-header sum (over the super-frame's length)
/// and the virtio header says `NEEDS_CSUM`, as for any GSO frame handed to the kernel.
pub fn super_header(
    f: &[u8],
    first: &Segment,
    count: usize,
    payload: usize,
    push: bool,
    out: &mut [u8],
) -> Option<usize> {
    let t = &first.t;
    let hlen = t.payload;
    let total = virtio::HEADER_LEN + hlen;
    let out = out.get_mut(..total)?;
    let udp = matches!(first.proto, Proto::Udp { .. });
    let (gso_type, csum_offset) = match (udp, t.v4) {
        (true, _) => (virtio::GSO_UDP_L4, 6),
        (false, true) => (virtio::GSO_TCPV4, 16),
        (false, false) => (virtio::GSO_TCPV6, 16),
    };
    let vh = VnetHdr {
        flags: virtio::F_NEEDS_CSUM,
        gso_type: if count > 1 {
            gso_type
        } else {
            virtio::GSO_NONE
        },
        hdr_len: hlen as u16,
        gso_size: if count > 1 {
            first.payload_len as u16
        } else {
            0
        },
        csum_start: t.l4 as u16,
        csum_offset,
    };
    out[..virtio::HEADER_LEN].copy_from_slice(&vh.to_bytes());
    let h = &mut out[virtio::HEADER_LEN..];
    h.copy_from_slice(&f[..hlen]);
    rebuild_headers(h, t, udp, payload);
    if push && !udp {
        h[t.l4 + 13] |= TCP_PSH;
    }
    Some(total)
}

/// Rewrites the copied headers `h` (`h[..t.payload]` of a TCP or UDP frame) for a super-frame
/// carrying `payload` bytes: IP length (and IPv4 header checksum), UDP length, and the L4
/// checksum field set to the pseudo-header sum over the super-frame's L4 length, which is what
/// the kernel expects of a `NEEDS_CSUM` GSO frame. Nothing of the sender's values is kept.
pub(crate) fn rebuild_headers(h: &mut [u8], t: &TcpFrame, udp: bool, payload: usize) {
    let hlen = t.payload;
    let (proto, csum_offset) = if udp { (17, 6) } else { (6, 16) };
    let ip_len = hlen - t.l3 + payload;
    let l4_len = hlen - t.l4 + payload;
    let ip = &mut h[t.l3..t.l4];
    let pseudo = if t.v4 {
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = fold(ones_complement_sum(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        pseudo_header_v4(src, dst, proto, l4_len as u16)
    } else {
        ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[8..24]);
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[24..40]);
        pseudo_header_v6(Ipv6Addr::from(a), Ipv6Addr::from(b), proto, l4_len as u32)
    };
    let l4 = &mut h[t.l4..hlen];
    if udp {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    l4[csum_offset..csum_offset + 2].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso::segment_tcp;
    use etherparse::PacketBuilder;

    fn segments(payload_len: usize, psh: bool) -> Vec<Vec<u8>> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 3], [10, 0, 0, 2], 64)
            .tcp(5201, 40000, 1000, 64000)
            .ack(9);
        if psh {
            b = b.psh();
        }
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 % 256) as u8).collect();
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        let mut scratch = vec![0; 2000];
        let mut segs = Vec::new();
        segment_tcp(&f, 1450, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        segs
    }

    /// Asserts that every frame continues the run of the ones before it, and returns their
    /// candidates, the super-frame's virtio header and the super-frame (headers, then every
    /// payload), with PSH on the last TCP segment if `push`.
    fn coalesce_all(frames: &[Vec<u8>], push: bool) -> (Vec<Segment>, VnetHdr, Vec<u8>) {
        let cands: Vec<Segment> = frames.iter().map(|f| candidate(f).unwrap()).collect();
        let size = cands[0].payload_len;
        let mut ip_len = cands[0].t.end - cands[0].t.l3;
        for i in 1..frames.len() {
            assert!(
                continues(
                    &frames[i - 1],
                    &cands[i - 1],
                    &frames[i],
                    &cands[i],
                    size,
                    ip_len
                ),
                "frame {i}"
            );
            ip_len += cands[i].payload_len;
        }
        let total: usize = cands.iter().map(|c| c.payload_len).sum();
        let mut out = [0u8; 200];
        let n = super_header(&frames[0], &cands[0], frames.len(), total, push, &mut out).unwrap();
        let vh = VnetHdr::parse(&out).unwrap();
        let mut whole = out[virtio::HEADER_LEN..n].to_vec();
        for (f, c) in frames.iter().zip(&cands) {
            whole.extend_from_slice(&f[c.t.payload..c.t.end]);
        }
        (cands, vh, whole)
    }

    #[test]
    fn a_split_train_coalesces_back_into_the_original() {
        let segs = segments(10_000, true);
        let (cands, vh, mut whole) = coalesce_all(&segs, true);
        let gso_size = cands[0].payload_len;
        assert_eq!(vh.gso_type, virtio::GSO_TCPV4);
        assert_eq!(usize::from(vh.gso_size), gso_size);
        assert_eq!(usize::from(vh.hdr_len), 54);
        assert!(vh.needs_csum());
        // Finish the checksum as the kernel would: the original frame.
        virtio::finish_csum(&mut whole, &vh).unwrap();
        let ip = &whole[14..34];
        assert_eq!(fold(ones_complement_sum(ip, 0)), 0, "IPv4 header checksum");
        assert_eq!(
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
            whole.len() - 14
        );
        let reseg = {
            let mut scratch = vec![0; 2000];
            let mut v = Vec::new();
            segment_tcp(&whole, 1450, &mut scratch, |s| v.push(s.to_vec())).unwrap();
            v
        };
        // Identification aside (the kernel regenerates it), the same segments come back.
        for (a, b) in reseg.iter().zip(&segs) {
            assert_eq!(a[..18], b[..18]);
            assert_eq!(a[20..24], b[20..24]);
            assert_eq!(a[26..], b[26..]);
        }
    }

    /// Equal-sized UDP datagrams of one flow (the last `last` bytes), IPv4 identification
    /// counting up from 0x1234, with real checksums.
    fn udp_datagrams(n: usize, size: usize, last: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let len = if i + 1 == n { last } else { size };
                let payload: Vec<u8> = (0..len).map(|k| (k * 3 + i) as u8).collect();
                let mut f = Vec::new();
                PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                    .ipv4([10, 0, 0, 2], [10, 0, 0, 3], 64)
                    .udp(40000, 5201)
                    .write(&mut f, &payload)
                    .unwrap();
                let id = 0x1234u16.wrapping_add(i as u16);
                f[18..20].copy_from_slice(&id.to_be_bytes());
                f[24..26].fill(0);
                let c = fold(ones_complement_sum(&f[14..34], 0));
                f[24..26].copy_from_slice(&c.to_be_bytes());
                f
            })
            .collect()
    }

    /// What the kernel's UDP segmentation makes of a `GSO_UDP_L4` super-frame: per datagram
    /// the IP length, an identification counting up and the UDP length and checksum.
    fn segment_udp(whole: &[u8], vh: &VnetHdr) -> Vec<Vec<u8>> {
        let hlen = usize::from(vh.hdr_len);
        let id0 = u16::from_be_bytes([whole[18], whole[19]]);
        whole[hlen..]
            .chunks(usize::from(vh.gso_size))
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = whole[..hlen].to_vec();
                f.extend_from_slice(chunk);
                let ip_len = (f.len() - 14) as u16;
                f[16..18].copy_from_slice(&ip_len.to_be_bytes());
                f[18..20].copy_from_slice(&id0.wrapping_add(i as u16).to_be_bytes());
                f[24..26].fill(0);
                let c = fold(ones_complement_sum(&f[14..34], 0));
                f[24..26].copy_from_slice(&c.to_be_bytes());
                let udp_len = (f.len() - 34) as u16;
                f[38..40].copy_from_slice(&udp_len.to_be_bytes());
                f[40..42].fill(0);
                let src = Ipv4Addr::new(f[26], f[27], f[28], f[29]);
                let dst = Ipv4Addr::new(f[30], f[31], f[32], f[33]);
                let sum = ones_complement_sum(&f[34..], pseudo_header_v4(src, dst, 17, udp_len));
                f[40..42].copy_from_slice(&fold(sum).to_be_bytes());
                f
            })
            .collect()
    }

    #[test]
    fn udp_datagrams_coalesce_and_split_back_byte_for_byte() {
        let dgrams = udp_datagrams(6, 64, 20);
        let (cands, vh, whole) = coalesce_all(&dgrams, false);
        assert!(matches!(cands[0].proto, Proto::Udp { id: 0x1234 }));
        assert_eq!(vh.gso_type, virtio::GSO_UDP_L4);
        assert_eq!(
            (vh.gso_size, vh.hdr_len, vh.csum_start, vh.csum_offset),
            (64, 42, 34, 6)
        );
        assert!(vh.needs_csum());
        // The super-frame's own headers are consistent: lengths cover everything and its UDP
        // checksum, once finished, verifies.
        assert_eq!(
            usize::from(u16::from_be_bytes([whole[16], whole[17]])),
            whole.len() - 14
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([whole[38], whole[39]])),
            whole.len() - 34
        );
        let mut finished = whole.clone();
        virtio::finish_csum(&mut finished, &vh).unwrap();
        assert_eq!(
            crate::checksum::complete_partial(&mut finished),
            crate::checksum::L4Checksum::Valid
        );
        assert_eq!(segment_udp(&whole, &vh), dgrams);
    }

    #[test]
    fn what_udp_may_not_coalesce() {
        let d = udp_datagrams(3, 64, 64);
        let c: Vec<Segment> = d.iter().map(|f| candidate(f).unwrap()).collect();
        let ok = |a: &[u8], ca: &Segment, b: &[u8], cb: &Segment| continues(a, ca, b, cb, 64, 100);
        assert!(ok(&d[0], &c[0], &d[1], &c[1]));
        // Identification not counting up by one (a gap, or the same twice).
        assert!(!ok(&d[0], &c[0], &d[2], &c[2]));
        assert!(!ok(&d[1], &c[1], &d[0], &c[0]));
        // Another port, another TTL.
        for at in [34, 22] {
            let mut other = d[1].clone();
            other[at] ^= 1;
            let oc = candidate(&other).unwrap();
            assert!(!ok(&d[0], &c[0], &other, &oc), "byte {at}");
        }
        // Larger than the first, or anything after a shorter one.
        let big = udp_datagrams(2, 64, 100);
        let bc: Vec<Segment> = big.iter().map(|f| candidate(f).unwrap()).collect();
        assert!(!ok(&big[0], &bc[0], &big[1], &bc[1]));
        let short = udp_datagrams(3, 64, 10);
        let sc: Vec<Segment> = short.iter().map(|f| candidate(f).unwrap()).collect();
        assert!(!continues(&short[2], &sc[2], &d[0], &c[0], 64, 100));
        // TCP never continues a UDP run.
        let tcp = segments(3000, false);
        let tc = candidate(&tcp[1]).unwrap();
        assert!(!ok(&d[0], &c[0], &tcp[1], &tc));
        // No checksum (IPv4 allows it), a UDP length that disagrees, an empty payload, a
        // fragment: not candidates.
        let mut nocsum = d[0].clone();
        nocsum[40..42].fill(0);
        assert!(candidate(&nocsum).is_none());
        let mut badlen = d[0].clone();
        badlen[39] ^= 1;
        assert!(candidate(&badlen).is_none());
        let empty = udp_datagrams(1, 0, 0);
        assert!(candidate(&empty[0]).is_none());
        let mut frag = d[0].clone();
        frag[20] |= 0x20;
        assert!(candidate(&frag).is_none());
        assert!(candidate(&d[0][..40]).is_none());
    }

    #[test]
    fn what_may_not_coalesce() {
        let segs = segments(5000, false);
        let c: Vec<Segment> = segs.iter().map(|s| candidate(s).unwrap()).collect();
        let g = c[0].payload_len;
        // Out of order.
        assert!(!continues(&segs[1], &c[1], &segs[0], &c[0], g, 100));
        // A gap.
        assert!(!continues(&segs[0], &c[0], &segs[2], &c[2], g, 100));
        // Over 64 KB.
        assert!(!continues(&segs[0], &c[0], &segs[1], &c[1], g, 65_000));
        // A different flow (another port).
        let mut other = segs[1].clone();
        other[14 + 20] ^= 1;
        let oc = candidate(&other).unwrap();
        assert!(!continues(&segs[0], &c[0], &other, &oc, g, 100));
        // A different timestamp-like option byte or window.
        let mut win = segs[1].clone();
        win[14 + 20 + 14] ^= 1;
        let wc = candidate(&win).unwrap();
        assert!(!continues(&segs[0], &c[0], &win, &wc, g, 100));
        // After PSH nothing follows.
        let mut pushed = c[0];
        pushed.push = true;
        assert!(!continues(&segs[0], &pushed, &segs[1], &c[1], g, 100));
        // SYN, FIN, pure ACKs are not candidates.
        let mut syn = segs[0].clone();
        syn[14 + 20 + 13] |= 0x02;
        assert!(candidate(&syn).is_none());
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .tcp(1, 2, 3, 4)
            .ack(1);
        let mut ack = Vec::new();
        b.write(&mut ack, &[]).unwrap();
        assert!(candidate(&ack).is_none());
        assert!(candidate(&[0u8; 10]).is_none());
    }
}
