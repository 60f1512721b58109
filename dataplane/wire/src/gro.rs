//! TCP receive coalescing (GRO): which consecutive TCP segments may become one super-frame,
//! and the headers of that super-frame. The rules are the kernel's `tcp_gro_receive()`: same
//! flow, headers identical except IP length, identification and checksum and the TCP sequence
//! number and checksum; in-order sequence numbers; every segment but the last of the same
//! payload size; only ACK (and PSH, which ends a run) set. The payloads are not copied here:
//! the caller writes the returned header and then each segment's payload with one `writev`.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::checksum::{fold, ones_complement_sum, pseudo_header_v4, pseudo_header_v6};
use crate::gso::{tcp_frame, TcpFrame};
use crate::virtio::{self, VnetHdr};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Largest IP packet a super-frame may become.
pub const MAX_SUPER_IP_LEN: usize = 65_535;

/// A TCP segment that may take part in coalescing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Header offsets.
    pub t: TcpFrame,
    /// Sequence number.
    pub seq: u32,
    /// Payload bytes.
    pub payload_len: usize,
    /// PSH is set: nothing may follow it in a super-frame.
    pub push: bool,
}

/// `Some` if `frame` is a TCP segment with payload whose only flags are ACK and maybe PSH.
pub fn candidate(frame: &[u8]) -> Option<Segment> {
    let t = tcp_frame(frame)?;
    let flags = frame[t.l4 + 13];
    if flags & !TCP_PSH != TCP_ACK || t.end <= t.payload {
        return None;
    }
    let s = &frame[t.l4 + 4..t.l4 + 8];
    Some(Segment {
        t,
        seq: u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        payload_len: t.end - t.payload,
        push: flags & TCP_PSH != 0,
    })
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
    if a.push
        || a.t
            != (TcpFrame {
                end: a.t.end,
                ..b.t
            })
        || a.payload_len != gso_size
        || b.payload_len > gso_size
        || b.seq != a.seq.wrapping_add(a.payload_len as u32)
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
/// segment with PSH if `push`. Returns the bytes written (virtio header + frame headers).
/// The TCP checksum field holds the pseudo-header sum and the virtio header says
/// `NEEDS_CSUM`, as for any GSO frame handed to the kernel.
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
    let gso_type = if t.v4 {
        virtio::GSO_TCPV4
    } else {
        virtio::GSO_TCPV6
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
        csum_offset: 16,
    };
    out[..virtio::HEADER_LEN].copy_from_slice(&vh.to_bytes());
    let h = &mut out[virtio::HEADER_LEN..];
    h.copy_from_slice(&f[..hlen]);
    let ip_len = hlen - t.l3 + payload;
    let tcp_len = hlen - t.l4 + payload;
    let ip = &mut h[t.l3..t.l4];
    let pseudo = if t.v4 {
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = fold(ones_complement_sum(ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        pseudo_header_v4(src, dst, 6, tcp_len as u16)
    } else {
        ip[4..6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
        let mut a = [0u8; 16];
        a.copy_from_slice(&ip[8..24]);
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[24..40]);
        pseudo_header_v6(Ipv6Addr::from(a), Ipv6Addr::from(b), 6, tcp_len as u32)
    };
    let tcp = &mut h[t.l4..];
    if push {
        tcp[13] |= TCP_PSH;
    }
    tcp[16..18].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
    Some(total)
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

    #[test]
    fn a_split_train_coalesces_back_into_the_original() {
        let segs = segments(10_000, true);
        let cands: Vec<Segment> = segs.iter().map(|s| candidate(s).unwrap()).collect();
        let gso_size = cands[0].payload_len;
        let mut ip_len = cands[0].t.end - cands[0].t.l3;
        for i in 1..segs.len() {
            assert!(continues(
                &segs[i - 1],
                &cands[i - 1],
                &segs[i],
                &cands[i],
                gso_size,
                ip_len
            ));
            ip_len += cands[i].payload_len;
        }
        let total: usize = cands.iter().map(|c| c.payload_len).sum();
        let mut out = [0u8; 200];
        let n = super_header(&segs[0], &cands[0], segs.len(), total, true, &mut out).unwrap();
        let vh = VnetHdr::parse(&out).unwrap();
        assert_eq!(vh.gso_type, virtio::GSO_TCPV4);
        assert_eq!(usize::from(vh.gso_size), gso_size);
        assert_eq!(usize::from(vh.hdr_len), 54);
        assert!(vh.needs_csum());
        // Reassemble and finish the checksum as the kernel would: the original frame.
        let mut whole = out[virtio::HEADER_LEN..n].to_vec();
        for (s, c) in segs.iter().zip(&cands) {
            whole.extend_from_slice(&s[c.t.payload..c.t.end]);
        }
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
