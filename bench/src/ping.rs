//! iputils `ping` output: the round-trip time of every reply (`time=0.061 ms`) and the summary
//! counts, from which the harness reports the mean and the 99th percentile.

use crate::stats;

/// One ping run.
#[derive(Debug, Clone, PartialEq)]
pub struct PingRun {
    /// Echo requests sent, from the summary line.
    pub transmitted: u32,
    /// Echo replies received, from the summary line (duplicates not counted).
    pub received: u32,
    /// Round-trip time of every reply, in milliseconds, in arrival order (duplicates skipped).
    pub rtts_ms: Vec<f64>,
}

impl PingRun {
    /// Mean round-trip time in ms, `None` without replies.
    pub fn avg_ms(&self) -> Option<f64> {
        stats::mean(&self.rtts_ms)
    }

    /// Median (nearest rank) of the round-trip times in ms, `None` without replies.
    pub fn p50_ms(&self) -> Option<f64> {
        stats::percentile(&self.rtts_ms, 50.0)
    }

    /// 99th percentile (nearest rank) of the round-trip times in ms, `None` without replies.
    pub fn p99_ms(&self) -> Option<f64> {
        stats::percentile(&self.rtts_ms, 99.0)
    }

    /// Requests without a reply, in percent.
    pub fn loss_percent(&self) -> f64 {
        if self.transmitted == 0 {
            0.0
        } else {
            100.0 * f64::from(self.transmitted.saturating_sub(self.received))
                / f64::from(self.transmitted)
        }
    }
}

/// The value of `time=` in a reply line, in ms (`time=0.061 ms`, `time=12 ms`, or `time<1 ms`
/// from some builds, taken as the bound).
fn reply_time_ms(line: &str) -> Option<f64> {
    let at = line.find("time=").map(|i| i + 5).or_else(|| {
        // `time<1 ms`
        line.find("time<").map(|i| i + 5)
    })?;
    let rest = &line[at..];
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let value: f64 = num.parse().ok()?;
    let unit = rest[num.len()..].trim_start();
    if unit.starts_with("ms") {
        Some(value)
    } else if unit.starts_with("us") || unit.starts_with("µs") {
        Some(value / 1000.0)
    } else if unit.starts_with('s') {
        Some(value * 1000.0)
    } else {
        None
    }
}

/// Parses the output of `ping -n` (not `-q`): every reply line and the summary. `None` when the
/// summary is missing (ping could not run).
pub fn parse(out: &str) -> Option<PingRun> {
    let mut rtts_ms = Vec::new();
    let mut transmitted = None;
    let mut received = None;
    for line in out.lines() {
        if line.contains("packets transmitted") {
            for part in line.split(',') {
                let mut words = part.split_whitespace();
                match (words.next(), words.next()) {
                    (Some(n), Some("packets")) => transmitted = n.parse().ok(),
                    (Some(n), Some("received")) => received = n.parse().ok(),
                    _ => {}
                }
            }
        } else if line.contains("bytes from") && !line.contains("DUP!") {
            if let Some(t) = reply_time_ms(line) {
                rtts_ms.push(t);
            }
        }
    }
    Some(PingRun {
        transmitted: transmitted?,
        received: received?,
        rtts_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "PING 10.0.0.3 (10.0.0.3) 56(84) bytes of data.\n\
        64 bytes from 10.0.0.3: icmp_seq=1 ttl=64 time=0.131 ms\n\
        64 bytes from 10.0.0.3: icmp_seq=2 ttl=64 time=0.052 ms\n\
        64 bytes from 10.0.0.3: icmp_seq=2 ttl=64 time=0.090 ms (DUP!)\n\
        64 bytes from 10.0.0.3: icmp_seq=4 ttl=64 time=12 ms\n\
        \n\
        --- 10.0.0.3 ping statistics ---\n\
        4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 7ms\n\
        rtt min/avg/max/mdev = 0.052/4.061/12.000/5.620 ms\n";

    #[test]
    fn replies_and_summary() {
        let r = parse(OUT).unwrap();
        assert_eq!((r.transmitted, r.received), (4, 3));
        assert_eq!(r.rtts_ms, vec![0.131, 0.052, 12.0]);
        assert!((r.avg_ms().unwrap() - 4.061).abs() < 1e-3);
        assert_eq!(r.p99_ms(), Some(12.0));
        assert_eq!(r.p50_ms(), Some(0.131));
        assert_eq!(r.loss_percent(), 25.0);
    }

    #[test]
    fn p99_of_two_hundred_replies() {
        let mut out = String::new();
        for i in 1..=200 {
            out += &format!("64 bytes from 10.0.0.3: icmp_seq={i} ttl=64 time={i}.5 ms\n");
        }
        out += "200 packets transmitted, 200 received, 0% packet loss, time 600ms\n";
        let r = parse(&out).unwrap();
        assert_eq!(r.rtts_ms.len(), 200);
        assert_eq!(r.p99_ms(), Some(198.5));
        assert_eq!(r.loss_percent(), 0.0);
    }

    #[test]
    fn no_replies_and_no_summary() {
        let lost = "PING 10.0.0.3 (10.0.0.3) 56(84) bytes of data.\n\n\
                    --- 10.0.0.3 ping statistics ---\n\
                    5 packets transmitted, 0 received, 100% packet loss, time 4080ms\n";
        let r = parse(lost).unwrap();
        assert_eq!(
            (r.transmitted, r.received, r.avg_ms(), r.p99_ms()),
            (5, 0, None, None)
        );
        assert_eq!(r.loss_percent(), 100.0);
        assert!(parse("ping: connect: Network is unreachable\n").is_none());
    }

    #[test]
    fn time_units() {
        assert_eq!(reply_time_ms("x time=0.061 ms"), Some(0.061));
        assert_eq!(reply_time_ms("x time<1 ms"), Some(1.0));
        assert_eq!(reply_time_ms("x time=250 us"), Some(0.25));
        assert_eq!(reply_time_ms("x time=1.5 s"), Some(1500.0));
        assert_eq!(reply_time_ms("x time= ms"), None);
        assert_eq!(reply_time_ms("x ttl=64"), None);
    }
}
