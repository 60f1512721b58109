//! Traffic checks between namespaces of a test bed: `ping` with parsed statistics, a verified
//! TCP transfer and a verified burst of UDP datagrams. All bound their waits so a broken
//! network fails instead of hanging.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bed::Testbed;
use crate::cmd::in_netns;

/// Result of one `ping` run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingStats {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Echo replies received.
    pub received: u32,
    /// Average round-trip time; `None` when nothing came back.
    pub rtt_avg: Option<Duration>,
}

impl PingStats {
    /// Lost requests in percent (0.0 when none were sent).
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            return 0.0;
        }
        100.0 * f64::from(self.transmitted.saturating_sub(self.received))
            / f64::from(self.transmitted)
    }

    /// Whether every request was answered (and at least one was sent).
    pub fn no_loss(&self) -> bool {
        self.transmitted > 0 && self.received >= self.transmitted
    }
}

/// Parses the summary of iputils `ping`.
fn parse_ping(out: &str) -> Option<PingStats> {
    let summary = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut transmitted = None;
    let mut received = None;
    for part in summary.split(',') {
        let mut words = part.split_whitespace();
        let (Some(n), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        match what {
            "packets" => transmitted = n.parse().ok(),
            "received" => received = n.parse().ok(),
            _ => {}
        }
    }
    // rtt min/avg/max/mdev = 0.045/0.058/0.071/0.010 ms
    let rtt_avg = out
        .lines()
        .find(|l| l.starts_with("rtt ") || l.starts_with("round-trip"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|avg| avg.parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1000.0));
    Some(PingStats {
        transmitted: transmitted?,
        received: received?,
        rtt_avg,
    })
}

/// Runs `ping -c {count} -i 0.2 -W 1 {to}` inside `from_ns` (a namespace of `tb`) and
/// returns its statistics. Loss is not an error; a ping that cannot run at all is.
pub fn ping(tb: &Testbed, from_ns: &str, to: &str, count: u32) -> io::Result<PingStats> {
    tb.check_owned(from_ns)?;
    let count = count.to_string();
    let out = Command::new("ip")
        .args([
            "netns", "exec", from_ns, "ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", to,
        ])
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    parse_ping(&stdout).ok_or_else(|| {
        io::Error::other(format!(
            "ping {to} from {from_ns} failed ({}): {} {}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

/// No progress for this long fails a transfer.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;

/// xorshift64*: a small seeded generator for reproducible payloads.
struct Prng(u64);

impl Prng {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// 64-bit FNV-1a, streaming.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// Receives one connection on `listener`, hashes everything until EOF and answers with
/// `len:u64le hash:u64le`. Gives up when `abort` is set or nobody connects in time.
fn serve_once(listener: TcpListener, abort: &AtomicBool) -> io::Result<(u64, u64)> {
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + IDLE_TIMEOUT * 3;
    let mut s = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if abort.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no client connected",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    };
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IDLE_TIMEOUT))?;
    s.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = vec![0u8; CHUNK];
    let (mut len, mut hash) = (0u64, Fnv::new());
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("server read after {len} bytes: {e}"),
                ))
            }
        };
        len += n as u64;
        hash.update(&buf[..n]);
    }
    let mut ack = [0u8; 16];
    ack[..8].copy_from_slice(&len.to_le_bytes());
    ack[8..].copy_from_slice(&hash.0.to_le_bytes());
    s.write_all(&ack)?;
    Ok((len, hash.0))
}

/// Connects to `addr`, sends `bytes` seeded pseudo-random bytes, half-closes and reads the
/// server's `len, hash` answer. Returns (sent len, sent hash, acked len, acked hash).
fn send_all(addr: SocketAddr, bytes: usize) -> io::Result<(u64, u64, u64, u64)> {
    let mut s = TcpStream::connect_timeout(&addr, IDLE_TIMEOUT)
        .map_err(|e| io::Error::new(e.kind(), format!("connect {addr}: {e}")))?;
    s.set_read_timeout(Some(IDLE_TIMEOUT))?;
    s.set_write_timeout(Some(IDLE_TIMEOUT))?;
    let mut rng = Prng(0x6f76_6e65_7421_u64 ^ bytes as u64 | 1);
    let mut buf = vec![0u8; CHUNK];
    let mut hash = Fnv::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK);
        rng.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        s.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("client write after {} bytes: {e}", bytes - left),
            )
        })?;
        left -= n;
    }
    s.shutdown(Shutdown::Write)?;
    let mut ack = [0u8; 16];
    s.read_exact(&mut ack)
        .map_err(|e| io::Error::new(e.kind(), format!("client reading server's answer: {e}")))?;
    let acked_len = u64::from_le_bytes(ack[..8].try_into().expect("8 bytes"));
    let acked_hash = u64::from_le_bytes(ack[8..].try_into().expect("8 bytes"));
    Ok((bytes as u64, hash.0, acked_len, acked_hash))
}

/// Sends `bytes` bytes of seeded pseudo-random data over one TCP connection from a socket in
/// `client_ns` to a listener on `server_ip` (ephemeral port) in `server_ns`, and checks that
/// the length and FNV-1a hash computed on arrival match what was sent.
///
/// Ten seconds without progress (connect, read or write) fail it, so a broken path errors
/// out well within 30 s. For the other direction call it again with the roles swapped.
pub fn tcp_transfer_verified(
    tb: &Testbed,
    server_ns: &str,
    server_ip: &str,
    client_ns: &str,
    bytes: usize,
) -> io::Result<()> {
    let ip = check_pair(tb, server_ns, server_ip, client_ns)?;
    let abort = AtomicBool::new(false);
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            in_netns(server_ns, || {
                let listener = TcpListener::bind((ip, 0)).map_err(|e| {
                    io::Error::new(e.kind(), format!("bind {ip} in {server_ns}: {e}"))
                });
                let listener = match listener {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = port_tx.send(None);
                        return Err(e);
                    }
                };
                let _ = port_tx.send(listener.local_addr().ok());
                serve_once(listener, &abort)
            })?
        });
        let client = match port_rx.recv_timeout(IDLE_TIMEOUT) {
            Ok(Some(addr)) => in_netns(client_ns, || send_all(addr, bytes)).and_then(|r| r),
            _ => Err(io::Error::other("server did not start listening")),
        };
        if client.is_err() {
            abort.store(true, Ordering::Relaxed);
        }
        let server = server
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let what = format!("TCP {client_ns} -> {server_ns} ({server_ip}), {bytes} bytes");
        let (sent_len, sent_hash, acked_len, acked_hash) = match (client, server) {
            (Ok(c), Ok(_)) => c,
            (Err(e), Ok(_)) => {
                return Err(io::Error::new(e.kind(), format!("{what}: client: {e}")))
            }
            (Ok(_), Err(e)) => {
                return Err(io::Error::new(e.kind(), format!("{what}: server: {e}")))
            }
            (Err(c), Err(sv)) => {
                return Err(io::Error::new(
                    c.kind(),
                    format!("{what}: client: {c}; server: {sv}"),
                ))
            }
        };
        if (sent_len, sent_hash) != (acked_len, acked_hash) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{what}: sent {sent_len} bytes (fnv {sent_hash:016x}), \
                     server got {acked_len} bytes (fnv {acked_hash:016x})"
                ),
            ));
        }
        Ok(())
    })
}

/// Checks that both namespaces belong to `tb` and parses the server's address.
fn check_pair(
    tb: &Testbed,
    server_ns: &str,
    server_ip: &str,
    client_ns: &str,
) -> io::Result<Ipv4Addr> {
    tb.check_owned(server_ns)?;
    tb.check_owned(client_ns)?;
    server_ip.parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad server IPv4 {server_ip:?}"),
        )
    })
}

/// What a [`udp_burst_verified`] receiver saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpBurst {
    /// Datagrams sent.
    pub sent: u32,
    /// Distinct datagrams received, each with exactly the bytes sent.
    pub received: u32,
    /// Received datagrams that came after one with a higher sequence number.
    pub reordered: u32,
}

/// The payload of datagram `seq` of a burst: its sequence number, then bytes derived from it.
fn burst_payload(seq: u32, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seq.to_be_bytes());
    let mut p = Prng(u64::from(seq) + 1);
    out.resize(size.max(4), 0);
    p.fill(&mut out[4..]);
}

/// Sends `count` UDP datagrams of `size` bytes (at least 4) from `client_ns` to a socket
/// bound to `server_ip` in `server_ns`, in back-to-back groups of `group` with a short pause
/// between groups so that no queue overflows, and checks every datagram that arrives
/// byte for byte. Duplicates and corrupt datagrams are errors; losses and reordering are
/// reported for the caller to judge.
pub fn udp_burst_verified(
    tb: &Testbed,
    server_ns: &str,
    server_ip: &str,
    client_ns: &str,
    count: u32,
    size: usize,
    group: u32,
) -> io::Result<UdpBurst> {
    let ip = check_pair(tb, server_ns, server_ip, client_ns)?;
    let what = format!("UDP {client_ns} -> {server_ns} ({server_ip})");
    let server = in_netns(server_ns, || UdpSocket::bind((ip, 0)))?
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: bind: {e}")))?;
    // Room for the whole burst, so that a receiving thread starved of CPU (a loaded CI
    // machine) does not turn into losses that say nothing about the network.
    let room = (count as usize).saturating_mul(size + 1024).min(64 << 20);
    crate::sys::force_recv_buffer(&server, room as i32)
        .map_err(|e| io::Error::new(e.kind(), format!("{what}: SO_RCVBUFFORCE: {e}")))?;
    let to = server.local_addr()?;
    server.set_read_timeout(Some(Duration::from_millis(500)))?;
    std::thread::scope(|s| {
        let receiver = s.spawn(|| -> io::Result<UdpBurst> {
            let mut seen = vec![false; count as usize];
            let (mut received, mut reordered, mut highest) = (0u32, 0u32, None::<u32>);
            let mut buf = vec![0u8; size + 100];
            let mut want = Vec::new();
            while received < count {
                let n = match server.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                    Err(e) => return Err(e),
                };
                let seq = buf.get(..4).map_or(u32::MAX, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if seq >= count {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what}: datagram with sequence {seq} of {count}")));
                }
                burst_payload(seq, size, &mut want);
                if buf[..n] != want[..] {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what}: datagram {seq} arrived with {n} bytes that differ from the {} sent", want.len())));
                }
                if std::mem::replace(&mut seen[seq as usize], true) {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{what}: datagram {seq} arrived twice")));
                }
                if highest.is_some_and(|h| seq < h) {
                    reordered += 1;
                }
                highest = highest.max(Some(seq));
                received += 1;
            }
            Ok(UdpBurst { sent: count, received, reordered })
        });
        let sent = in_netns(client_ns, || -> io::Result<()> {
            let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            sock.connect(to)?;
            let mut payload = Vec::new();
            for seq in 0..count {
                burst_payload(seq, size, &mut payload);
                sock.send(&payload)?;
                if group > 0 && (seq + 1) % group == 0 {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            Ok(())
        })
        .and_then(|r| r);
        let got = receiver
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        sent.map_err(|e| io::Error::new(e.kind(), format!("{what}: sending: {e}")))?;
        got
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_output() {
        let out = "PING 192.168.50.2 (192.168.50.2) 56(84) bytes of data.\n\
                   64 bytes from 192.168.50.2: icmp_seq=1 ttl=64 time=0.061 ms\n\n\
                   --- 192.168.50.2 ping statistics ---\n\
                   3 packets transmitted, 3 received, 0% packet loss, time 405ms\n\
                   rtt min/avg/max/mdev = 0.045/0.058/0.071/0.010 ms\n";
        let st = parse_ping(out).unwrap();
        assert_eq!((st.transmitted, st.received), (3, 3));
        assert_eq!(st.rtt_avg, Some(Duration::from_micros(58)));
        assert!(st.no_loss());
        let lossy = "--- x ping statistics ---\n\
                     4 packets transmitted, 0 received, +4 errors, 100% packet loss, time 3001ms\n";
        let st = parse_ping(lossy).unwrap();
        assert_eq!((st.transmitted, st.received, st.rtt_avg), (4, 0, None));
        assert_eq!(st.loss_percent(), 100.0);
        assert!(parse_ping("ping: connect: Network is unreachable").is_none());
    }

    #[test]
    fn prng_and_hash_are_deterministic() {
        let (mut a, mut b) = (Prng(7), Prng(7));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 13]);
        let mut h = Fnv::new();
        h.update(b"a");
        assert_eq!(h.0, 0xaf63_dc4c_8601_ec8c); // published FNV-1a 64 test vector for "a"
    }
}
