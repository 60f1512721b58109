//! Software TCP segmentation (GSO): split one TCP "super-frame" of up to 64 KB into frames
//! that fit an MTU, as the kernel's `tcp_gso_segment()` does for a device without TSO.
//!
//! Super-frames reach a userspace VTEP in two ways: from a TAP with `IFF_VNET_HDR` and TSO
//! offloads, and, over a veth underlay, from the kernel's vxlan, whose tunnel-GSO packets are
//! delivered to a UDP socket unsegmented. Each segment gets the headers of the super-frame with
//! its own IP length, IPv4 identification (incremented per segment) and header checksum, TCP
//! sequence number, flags (FIN and PSH only on the last segment, CWR only on the first) and a
//! full TCP checksum. The caller's scratch buffer is reused for every segment: no allocation.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{fold, ones_complement_sum, pseudo_header_v4, pseudo_header_v6};
use crate::Error;

/// Room for the headers of any frame this crate segments or coalesces, and so of one segment:
/// Ethernet with one 802.1Q tag (18), IPv4 with options (60; IPv6 without extension headers
/// takes 40) and TCP with options (60). The one definition every header buffer is sized by.
pub const MAX_HEADERS: usize = crate::ethernet::HEADER_LEN + 4 + 60 + 60;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Where the headers of a TCP frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFrame {
    /// Offset of the IP header (14, or 18 with one 802.1Q tag).
    pub l3: usize,
    /// Offset of the TCP header.
    pub l4: usize,
    /// Offset of the TCP payload (end of all headers).
    pub payload: usize,
    /// End of the IP packet (the frame may carry Ethernet padding after it).
    pub end: usize,
    /// IPv4 (true) or IPv6.
    pub v4: bool,
}

/// Locates the headers of an Ethernet + IPv4/IPv6 + TCP frame (IPv6 without extension
/// headers, IPv4 not fragmented). `None` for anything else.
pub fn tcp_frame(frame: &[u8]) -> Option<TcpFrame> {
    let (l3, et) = crate::ethernet::l3_offset(frame)?;
    let ip = frame.get(l3..)?;
    let (l4, end, v4) = match et {
        0x0800 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            if ihl < 20 || frag & 0x3fff != 0 {
                return None;
            }
            // A super-frame's IPv4 total length may be 0 or wrong when over 64 KB; the kernel
            // trusts the buffer then. Here: the smaller of the two, but at least the headers.
            let end = if total >= ihl && total <= ip.len() {
                total
            } else {
                ip.len()
            };
            (l3 + ihl, l3 + end, true)
        }
        0x86dd => {
            if ip.len() < 40 || ip[0] >> 4 != 6 || ip[6] != 6 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let end = if 40 + plen <= ip.len() && plen != 0 {
                40 + plen
            } else {
                ip.len()
            };
            (l3 + 40, l3 + end, false)
        }
        _ => return None,
    };
    let doff = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
    if doff < 20 || l4 + doff > end {
        return None;
    }
    Some(TcpFrame {
        l3,
        l4,
        payload: l4 + doff,
        end,
        v4,
    })
}

/// Splits the TCP frame `frame` into frames whose IP packets are at most `mtu` bytes, calling
/// `emit` with each (built in `scratch`, which must hold `mtu` plus the Ethernet header).
/// Returns the number of segments. A frame that already fits is emitted as one segment with
/// its checksum recomputed.
pub fn segment_tcp(
    frame: &[u8],
    mtu: usize,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, Error> {
    let t = tcp_frame(frame).ok_or(Error::Malformed)?;
    let ip_tcp_headers = t.payload - t.l3;
    if mtu <= ip_tcp_headers {
        return Err(Error::Malformed);
    }
    let mss = mtu - ip_tcp_headers;
    if scratch.len() < t.payload + mss {
        return Err(Error::BufferTooSmall);
    }
    let s = Splitter::new(frame, t, mss);
    for i in 0..s.chunks {
        let len = s.write(i, scratch);
        emit(&scratch[..len]);
    }
    Ok(s.chunks)
}

/// A run of segments as [`segment_tcp_headers`] lays them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Train {
    /// Number of segments.
    pub count: usize,
    /// Bytes from one segment's prefix to the next once gathered: every segment but the last
    /// is exactly this long (with its prefix); the last may be shorter. This is the
    /// `UDP_SEGMENT` size.
    pub stride: usize,
    /// Bytes of all segments with their prefixes.
    pub len: usize,
}

/// The per-segment header arithmetic shared by both forms of segmentation.
struct Splitter<'a> {
    frame: &'a [u8],
    t: TcpFrame,
    mss: usize,
    chunks: usize,
    seq0: u32,
    flags0: u8,
    id0: u16,
}

impl<'a> Splitter<'a> {
    fn new(frame: &'a [u8], t: TcpFrame, mss: usize) -> Splitter<'a> {
        let payload_len = t.end - t.payload;
        Splitter {
            frame,
            t,
            mss,
            chunks: payload_len.div_ceil(mss).max(1),
            seq0: u32::from_be_bytes([
                frame[t.l4 + 4],
                frame[t.l4 + 5],
                frame[t.l4 + 6],
                frame[t.l4 + 7],
            ]),
            flags0: frame[t.l4 + 13],
            id0: u16::from_be_bytes([frame[t.l3 + 4], frame[t.l3 + 5]]),
        }
    }

    fn payload_len(&self) -> usize {
        self.t.end - self.t.payload
    }

    /// Writes segment `i` (headers and payload) at the start of `out`; returns its length.
    /// `out` must hold it.
    fn write(&self, i: usize, out: &mut [u8]) -> usize {
        let headers = self.t.payload;
        let chunk = self.chunk(i);
        let len = headers + chunk.len();
        out[..headers].copy_from_slice(&self.frame[..headers]);
        out[headers..len].copy_from_slice(chunk);
        self.fix_headers(i, &mut out[..headers], chunk);
        len
    }

    /// The payload of segment `i`, inside the super-frame.
    fn chunk(&self, i: usize) -> &'a [u8] {
        let start = i * self.mss;
        let end = self.payload_len().min(start + self.mss);
        &self.frame[self.t.payload + start..self.t.payload + end]
    }

    /// Turns a copy of the super-frame's headers (`h`, exactly `t.payload` bytes) into those of
    /// segment `i`, whose payload is `chunk`: lengths, IPv4 identification and checksum,
    /// sequence number, flags and the full TCP checksum (read from `chunk` where it lies).
    fn fix_headers(&self, i: usize, h: &mut [u8], chunk: &[u8]) {
        let t = &self.t;
        let len = t.payload + chunk.len();
        let ip_len = len - t.l3;
        let tcp_len = len - t.l4;
        if t.v4 {
            h[t.l3 + 2..t.l3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
            h[t.l3 + 4..t.l3 + 6].copy_from_slice(&self.id0.wrapping_add(i as u16).to_be_bytes());
            h[t.l3 + 10..t.l3 + 12].copy_from_slice(&[0, 0]);
            let c = fold(ones_complement_sum(&h[t.l3..t.l4], 0));
            h[t.l3 + 10..t.l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            h[t.l3 + 4..t.l3 + 6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        }
        let seq = self.seq0.wrapping_add((i * self.mss) as u32);
        h[t.l4 + 4..t.l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = self.flags0;
        if i + 1 < self.chunks {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        h[t.l4 + 13] = flags;
        h[t.l4 + 16..t.l4 + 18].copy_from_slice(&[0, 0]);
        // The TCP header is a multiple of 4 bytes long, so the payload can be summed apart.
        let sum = ones_complement_sum(
            chunk,
            ones_complement_sum(&h[t.l4..], pseudo(h, t, tcp_len)),
        );
        h[t.l4 + 16..t.l4 + 18].copy_from_slice(&fold(sum).to_be_bytes());
    }
}

/// One segment of a super-frame as [`segment_tcp_headers`] describes it: its headers (with the
/// prefix) in the caller's header buffer, its payload still inside the super-frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentRef {
    /// Range of `prefix` + headers in the header buffer.
    pub header: core::ops::Range<usize>,
    /// Range of the payload in the super-frame.
    pub payload: core::ops::Range<usize>,
}

/// Splits the TCP super-frame `frame` into segments of `mss` payload bytes without copying
/// payloads: writes each segment's `prefix` (for example a VXLAN header) and headers
/// (checksums included) into `hdrs`, and describes where every piece lies in `segs`, so that a
/// gathered send (one iovec pair per segment) puts the segments on the wire back to back.
/// Fails with `BufferTooSmall` if `hdrs` or `segs` is too short for every segment.
pub fn segment_tcp_headers(
    frame: &[u8],
    mss: usize,
    prefix: &[u8],
    hdrs: &mut [u8],
    segs: &mut [SegmentRef],
) -> Result<Train, Error> {
    let t = tcp_frame(frame).ok_or(Error::Malformed)?;
    if mss == 0 {
        return Err(Error::Malformed);
    }
    let s = Splitter::new(frame, t, mss);
    let per = prefix.len() + t.payload;
    if segs.len() < s.chunks || hdrs.len() < per * s.chunks {
        return Err(Error::BufferTooSmall);
    }
    for (i, seg) in segs.iter_mut().enumerate().take(s.chunks) {
        let at = i * per;
        let h = &mut hdrs[at..at + per];
        h[..prefix.len()].copy_from_slice(prefix);
        h[prefix.len()..].copy_from_slice(&frame[..t.payload]);
        let chunk = s.chunk(i);
        s.fix_headers(i, &mut h[prefix.len()..], chunk);
        let p0 = t.payload + i * mss;
        *seg = SegmentRef {
            header: at..at + per,
            payload: p0..p0 + chunk.len(),
        };
    }
    Ok(Train {
        count: s.chunks,
        stride: per + mss,
        len: per * s.chunks + s.payload_len(),
    })
}

fn pseudo(out: &[u8], t: &TcpFrame, tcp_len: usize) -> u32 {
    let ip = &out[t.l3..];
    if t.v4 {
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        pseudo_header_v4(src, dst, 6, tcp_len as u16)
    } else {
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[8..24]);
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[24..40]);
        pseudo_header_v6(Ipv6Addr::from(a), Ipv6Addr::from(b), 6, tcp_len as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn super_frame_v4(payload_len: usize, flags_psh_fin: bool) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 3], [10, 0, 0, 2], 64)
            .tcp(5201, 40000, 1_000_000, 64000)
            .ack(77)
            .cwr();
        if flags_psh_fin {
            b = b.psh().fin();
        }
        let payload: Vec<u8> = (0..payload_len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        b.write(&mut out, &payload).unwrap();
        out
    }

    fn check_segments(segs: &[Vec<u8>], total_payload: usize, mtu: usize) -> Vec<u8> {
        let mut data = Vec::new();
        let mut expect_seq = 1_000_000u32;
        for (i, s) in segs.iter().enumerate() {
            assert!(s.len() - 14 <= mtu, "segment {i} is {} bytes", s.len());
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(TransportSlice::Tcp(tcp)) = p.transport else {
                panic!("not tcp")
            };
            assert_eq!(tcp.sequence_number(), expect_seq);
            assert_eq!(tcp.cwr(), i == 0, "CWR only on the first");
            let last = i + 1 == segs.len();
            assert_eq!(tcp.fin(), last, "FIN only on the last");
            assert_eq!(tcp.psh(), last, "PSH only on the last");
            assert!(tcp.ack());
            // Checksums verify like a receiving kernel would.
            let l4 = &s[14 + 20..];
            let ip = &s[14..34];
            let ps = pseudo_header_v4(
                Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
                Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
                6,
                l4.len() as u16,
            );
            assert_eq!(
                fold(ones_complement_sum(l4, ps)),
                0,
                "tcp checksum of segment {i}"
            );
            assert_eq!(
                fold(ones_complement_sum(ip, 0)),
                0,
                "ip checksum of segment {i}"
            );
            assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, s.len() - 14);
            data.extend_from_slice(tcp.payload());
            expect_seq = expect_seq.wrapping_add(tcp.payload().len() as u32);
        }
        assert_eq!(data.len(), total_payload);
        data
    }

    #[test]
    fn a_64k_super_frame_becomes_mtu_sized_segments() {
        let f = super_frame_v4(60_000, true);
        let mut scratch = vec![0xa5; 1500];
        let mut segs = Vec::new();
        let n = segment_tcp(&f, 1450, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 60_000usize.div_ceil(1450 - 40));
        let data = check_segments(&segs, 60_000, 1450);
        assert_eq!(&data[..], &f[54..]);
        // IPv4 identification increments per segment.
        let id = |s: &Vec<u8>| u16::from_be_bytes([s[18], s[19]]);
        assert_eq!(id(&segs[1]), id(&segs[0]).wrapping_add(1));
    }

    #[test]
    fn gathered_segments_equal_the_one_by_one_segments_with_prefixes() {
        let f = super_frame_v4(20_000, true);
        let mut scratch = vec![0; 1500];
        let mut expect = Vec::new();
        let n = segment_tcp(&f, 1450, &mut scratch, |s| {
            expect.extend_from_slice(b"VXLANHDR");
            expect.extend_from_slice(s);
        })
        .unwrap();
        let mut hdrs = vec![0xa5; 64 * 128];
        let mut segs = vec![SegmentRef::default(); 64];
        let t = segment_tcp_headers(&f, 1410, b"VXLANHDR", &mut hdrs, &mut segs).unwrap();
        assert_eq!(t.count, n);
        assert_eq!(t.stride, 8 + 14 + 1450);
        assert_eq!(t.len, expect.len());
        let mut gathered = Vec::new();
        for s in &segs[..t.count] {
            gathered.extend_from_slice(&hdrs[s.header.clone()]);
            gathered.extend_from_slice(&f[s.payload.clone()]);
        }
        assert_eq!(gathered, expect);
        let mut few = vec![SegmentRef::default(); 3];
        assert_eq!(
            segment_tcp_headers(&f, 1410, b"x", &mut hdrs, &mut few),
            Err(Error::BufferTooSmall)
        );
        assert_eq!(
            segment_tcp_headers(&f, 0, b"x", &mut hdrs, &mut segs),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn ipv6_super_frames_split_too() {
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([1; 16], [2; 16], 64)
            .tcp(1, 2, 5, 100);
        let payload = vec![7u8; 5000];
        let mut f = Vec::new();
        b.write(&mut f, &payload).unwrap();
        let mut scratch = vec![0; 1500];
        let mut segs = Vec::new();
        segment_tcp(&f, 1280, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(segs.len(), 5000usize.div_ceil(1280 - 60));
        for s in &segs {
            assert!(s.len() - 14 <= 1280);
            let p = SlicedPacket::from_ethernet(s).unwrap();
            assert!(matches!(p.transport, Some(TransportSlice::Tcp(_))));
            let plen = u16::from_be_bytes([s[18], s[19]]) as usize;
            assert_eq!(plen, s.len() - 54);
        }
    }

    #[test]
    fn small_frames_pass_as_one_segment_and_bad_input_is_refused() {
        let f = super_frame_v4(100, false);
        let mut scratch = vec![0; 1500];
        let mut segs = Vec::new();
        assert_eq!(
            segment_tcp(&f, 1450, &mut scratch, |s| segs.push(s.to_vec())).unwrap(),
            1
        );
        assert_eq!(segs[0], f);
        // Not TCP, truncated, an MTU smaller than the headers, a scratch too small.
        assert_eq!(
            segment_tcp(&[0u8; 30], 1450, &mut scratch, |_| {}),
            Err(Error::Malformed)
        );
        assert_eq!(
            segment_tcp(&f[..40], 1450, &mut scratch, |_| {}),
            Err(Error::Malformed)
        );
        assert_eq!(
            segment_tcp(&f, 40, &mut scratch, |_| {}),
            Err(Error::Malformed)
        );
        let mut tiny = [0u8; 100];
        assert_eq!(
            segment_tcp(&f, 1450, &mut tiny, |_| {}),
            Err(Error::BufferTooSmall)
        );
        for len in 0..120 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 91 + 3) as u8).collect();
            let _ = segment_tcp(&junk, 1450, &mut scratch, |_| {});
        }
    }
}
