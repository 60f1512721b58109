//! The flood test's two ends: the sender (`ovnet-bench flood-send ADDR:PORT SECONDS`, run by
//! the harness in the client container) sends 64-byte UDP datagrams to the overlay's broadcast
//! address as fast as one thread can, and prints how many it sent; the receivers are counted at
//! their interfaces (`rx_packets`), so nothing needs to listen. Every datagram is a broadcast
//! frame the overlay replicates to every other host: the kernel's vxlan and ovnet both send one
//! copy per peer (head-end replication). [`Flood`] runs one such flood on a test bed: the main
//! harness' three hosts and `ovnet-bench growth`'s peers alike.

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use ovnet_testbed::{Pid, Testbed};
use serde_json::{json, Value};

/// Payload of a flood datagram, as in the UDP test.
pub const PAYLOAD: usize = 64;
/// Where the flood's datagrams go (nothing listens: they are counted at the interfaces).
pub const PORT: u16 = 5301;
/// How long the last frames get to arrive once the sender is done.
const DRAIN: Duration = Duration::from_millis(200);

/// Sends between two looks at the clock.
const SENDS_PER_CHECK: u32 = 256;

/// What a sender did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sent {
    /// Datagrams the kernel took.
    pub datagrams: u64,
    /// Sends it refused (a full queue, say).
    pub refused: u64,
    /// How long it sent.
    pub seconds: f64,
}

impl Sent {
    /// Datagrams sent per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.datagrams as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn to_json(self) -> Value {
        json!({"sent": self.datagrams, "refused": self.refused, "seconds": self.seconds})
    }
}

/// The sender: broadcasts to `to` for `seconds`; prints its [`Sent`] as one JSON line.
pub fn send(to: SocketAddrV4, seconds: f64) -> Result<()> {
    let sock = UdpSocket::bind("0.0.0.0:0").context("binding the flood's socket")?;
    sock.set_broadcast(true)
        .context("allowing broadcasts (SO_BROADCAST)")?;
    let payload = [0x5au8; PAYLOAD];
    let start = Instant::now();
    let length = Duration::from_secs_f64(seconds);
    let mut sent = Sent {
        datagrams: 0,
        refused: 0,
        seconds: 0.0,
    };
    while start.elapsed() < length {
        for _ in 0..SENDS_PER_CHECK {
            match sock.send_to(&payload, to) {
                Ok(_) => sent.datagrams += 1,
                Err(_) => sent.refused += 1,
            }
        }
    }
    sent.seconds = start.elapsed().as_secs_f64();
    println!("{}", sent.to_json());
    Ok(())
}

/// The sender's report in its output (the last line that is one), if any.
pub fn parse_sent(output: &str) -> Option<Sent> {
    output.lines().rev().find_map(|l| {
        let v: Value = serde_json::from_str(l.trim()).ok()?;
        Some(Sent {
            datagrams: v.get("sent")?.as_u64()?,
            refused: v.get("refused")?.as_u64()?,
            seconds: v.get("seconds")?.as_f64()?,
        })
    })
}

/// A flood under way: started by [`Flood::start`], counted by [`Flood::finish`].
#[derive(Debug)]
pub struct Flood {
    sender: Pid,
    receivers: Vec<String>,
    rx_before: Vec<u64>,
    seconds: u32,
}

/// What one flood did.
#[derive(Debug, Clone, PartialEq)]
pub struct FloodRun {
    /// The sender's report.
    pub sent: Sent,
    /// Frames each receiver took meanwhile, in the order given.
    pub received: Vec<u64>,
}

impl FloodRun {
    /// Frames per second received by the slowest receiver.
    pub fn slowest_per_second(&self) -> f64 {
        let slowest = self.received.iter().copied().min().unwrap_or(0);
        self.rate(slowest)
    }

    /// Frames per second received by all receivers together (the copies the overlay made).
    pub fn delivered_per_second(&self) -> f64 {
        self.rate(self.received.iter().sum())
    }

    fn rate(&self, frames: u64) -> f64 {
        if self.sent.seconds > 0.0 {
            frames as f64 / self.sent.seconds
        } else {
            0.0
        }
    }
}

impl Flood {
    /// Counts the frames `receivers` (namespaces) have so far, then starts this executable's
    /// `flood-send` in `sender_ns` towards `broadcast`:[`PORT`] for `seconds`.
    pub fn start(
        tb: &mut Testbed,
        sender_ns: &str,
        receivers: &[String],
        broadcast: std::net::Ipv4Addr,
        seconds: u32,
    ) -> Result<Flood> {
        let rx_before = receivers
            .iter()
            .map(|ns| rx_packets(tb, ns))
            .collect::<Result<Vec<_>>>()?;
        let exe = std::env::current_exe().context("locating this executable")?;
        let exe = exe.to_string_lossy().into_owned();
        let to = SocketAddrV4::new(broadcast, PORT).to_string();
        let sender = tb
            .spawn(
                sender_ns,
                &[&exe, "flood-send", &to, &seconds.to_string()],
                &[],
            )
            .context("starting the flood's sender")?;
        Ok(Flood {
            sender,
            receivers: receivers.to_vec(),
            rx_before,
            seconds,
        })
    }

    /// Waits for the sender, lets the last frames arrive and counts what each receiver took.
    pub fn finish(self, tb: &mut Testbed) -> Result<FloodRun> {
        let limit = Duration::from_secs(u64::from(self.seconds)) + crate::measure::IPERF_SLACK;
        let status = crate::measure::wait_exit(tb, self.sender, limit, "flood sender")?;
        std::thread::sleep(DRAIN);
        let mut received = Vec::with_capacity(self.receivers.len());
        for (ns, before) in self.receivers.iter().zip(&self.rx_before) {
            received.push(rx_packets(tb, ns)?.saturating_sub(*before));
        }
        let log = tb.log(self.sender).unwrap_or_default();
        let sent = parse_sent(&log).ok_or_else(|| {
            anyhow!(
                "the flood's sender exited with {status} without a report: {}",
                log.trim()
            )
        })?;
        Ok(FloodRun { sent, received })
    }
}

/// Frames received so far by `eth0` in namespace `ns`.
pub fn rx_packets(tb: &Testbed, ns: &str) -> Result<u64> {
    let out = tb
        .exec(ns, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])
        .with_context(|| format!("reading the received frames of eth0 in {ns}"))?;
    out.trim()
        .parse()
        .map_err(|e| anyhow!("rx_packets of eth0 in {ns} is {out:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_round_trips() {
        let s = Sent {
            datagrams: 1_000_000,
            refused: 3,
            seconds: 2.0,
        };
        let out = format!("some noise\n{}\n", s.to_json());
        assert_eq!(parse_sent(&out), Some(s));
        assert_eq!(s.per_second(), 500_000.0);
        assert_eq!(parse_sent("nothing here\n"), None);
        assert_eq!(parse_sent("{\"sent\": 1}\n"), None);
        let none = Sent {
            datagrams: 0,
            refused: 0,
            seconds: 0.0,
        };
        assert_eq!(none.per_second(), 0.0);
    }

    #[test]
    fn the_slowest_and_all_receivers() {
        let run = FloodRun {
            sent: Sent {
                datagrams: 100,
                refused: 0,
                seconds: 2.0,
            },
            received: vec![100, 60, 80],
        };
        assert_eq!(run.slowest_per_second(), 30.0);
        assert_eq!(run.delivered_per_second(), 120.0);
        let nothing = FloodRun {
            sent: Sent {
                datagrams: 0,
                refused: 0,
                seconds: 0.0,
            },
            received: vec![],
        };
        assert_eq!(nothing.slowest_per_second(), 0.0);
        assert_eq!(nothing.delivered_per_second(), 0.0);
    }

    #[test]
    fn the_sender_sends_to_loopback() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        send(to, 0.05).unwrap();
        let mut buf = [0u8; 128];
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(rx.recv(&mut buf).unwrap(), PAYLOAD);
    }
}
