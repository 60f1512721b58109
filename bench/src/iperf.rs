//! iperf3's JSON report (`-J`), as written by the client: TCP goodput as the receiver saw it,
//! and UDP packets received and lost.
//!
//! The client's `end` object carries the server's numbers too (iperf3 exchanges results at the
//! end of a test): `sum_received` is the receiver's view. iperf3 before 3.11 reports UDP only
//! in `sum`, which holds the same receiver counts. A failed test has a top-level `"error"` and
//! may still exit 0 (with `--logfile`), so a report with one is refused here.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// Throughput of a TCP test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpResult {
    /// Goodput measured by the receiver, all streams together.
    pub bits_per_second: f64,
    /// TCP retransmissions counted by the sender, if it reported them.
    pub retransmits: Option<u64>,
}

impl TcpResult {
    /// Goodput in Gbit/s.
    pub fn gbit_per_second(&self) -> f64 {
        self.bits_per_second / 1e9
    }
}

/// Outcome of a UDP test, as the receiver counted it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UdpResult {
    /// Datagrams the sender sent (the receiver learns it from sequence numbers).
    pub packets: u64,
    /// Datagrams that never arrived. iperf3 can count reordered ones as lost and later as
    /// found, so this is clamped to `0..=packets`.
    pub lost_packets: u64,
    /// Length of the measurement.
    pub seconds: f64,
}

impl UdpResult {
    /// Datagrams received.
    pub fn received(&self) -> u64 {
        self.packets - self.lost_packets
    }

    /// Datagrams received per second.
    pub fn received_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.received() as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Lost datagrams in percent of those sent (0 when none were sent).
    pub fn loss_percent(&self) -> f64 {
        if self.packets == 0 {
            0.0
        } else {
            100.0 * self.lost_packets as f64 / self.packets as f64
        }
    }
}

/// Parses the report and returns its `end` object, or the error iperf3 reported.
fn end_of(json: &str) -> Result<Value> {
    let doc: Value = serde_json::from_str(json.trim()).context("iperf3 report is not JSON")?;
    if let Some(e) = doc.get("error").and_then(Value::as_str) {
        bail!("iperf3 failed: {e}");
    }
    doc.get("end")
        .cloned()
        .filter(|e| e.as_object().is_some_and(|o| !o.is_empty()))
        .ok_or_else(|| anyhow!("iperf3 report has no results (`end` is missing or empty)"))
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| anyhow!("iperf3 report: no number `{key}`"))
}

/// Parses a TCP test's report: `end.sum_received.bits_per_second`.
pub fn parse_tcp(json: &str) -> Result<TcpResult> {
    let end = end_of(json)?;
    let recv = end
        .get("sum_received")
        .ok_or_else(|| anyhow!("iperf3 report: no `end.sum_received` (is this a TCP test?)"))?;
    let retransmits = end
        .get("sum_sent")
        .and_then(|s| s.get("retransmits"))
        .and_then(Value::as_u64);
    Ok(TcpResult {
        bits_per_second: number(recv, "bits_per_second")?,
        retransmits,
    })
}

/// Parses a UDP test's report: packets, lost packets and seconds of `end.sum_received`
/// (or `end.sum` from iperf3 before 3.11).
pub fn parse_udp(json: &str) -> Result<UdpResult> {
    let end = end_of(json)?;
    let sum = ["sum_received", "sum"]
        .iter()
        .find_map(|k| end.get(*k).filter(|s| s.get("lost_packets").is_some()))
        .ok_or_else(|| anyhow!("iperf3 report: no UDP receiver summary (is this a UDP test?)"))?;
    let packets = number(sum, "packets")?.max(0.0) as u64;
    let lost = number(sum, "lost_packets")?.max(0.0) as u64;
    Ok(UdpResult {
        packets,
        lost_packets: lost.min(packets),
        seconds: number(sum, "seconds")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from iperf 3.12's client report of `-P 2`.
    const TCP: &str = r#"{
        "start": {"connected": [{"socket": 5}], "version": "iperf 3.12"},
        "intervals": [],
        "end": {
            "streams": [],
            "sum_sent": {"start": 0, "end": 1.00055, "seconds": 1.00055, "bytes": 1390673920,
                         "bits_per_second": 11119275758.332916, "retransmits": 7, "sender": true},
            "sum_received": {"start": 0, "end": 1.000622, "seconds": 1.000622,
                             "bytes": 1390673920, "bits_per_second": 11118475668.134422,
                             "sender": true},
            "cpu_utilization_percent": {}
        }
    }"#;

    /// Trimmed from iperf 3.12's client report of `-u -l 64 -b 0`.
    const UDP: &str = r#"{
        "start": {"version": "iperf 3.12"},
        "end": {
            "sum": {"seconds": 1.000089, "bytes": 10744960, "bits_per_second": 85955640.08,
                    "jitter_ms": 0.0019, "lost_packets": 11044, "packets": 167890,
                    "lost_percent": 6.578, "sender": true},
            "sum_sent": {"seconds": 1.000047, "bytes": 10744960, "lost_packets": 0,
                         "packets": 167890, "lost_percent": 0, "sender": true},
            "sum_received": {"seconds": 1.000089, "bytes": 10038144, "lost_packets": 11044,
                             "packets": 167890, "lost_percent": 6.578, "sender": false}
        }
    }"#;

    #[test]
    fn tcp_receiver_goodput() {
        let r = parse_tcp(TCP).unwrap();
        assert_eq!(r.bits_per_second, 11118475668.134422);
        assert_eq!(r.retransmits, Some(7));
        assert!((r.gbit_per_second() - 11.118).abs() < 1e-3);
    }

    #[test]
    fn udp_received_rate_and_loss() {
        let r = parse_udp(UDP).unwrap();
        assert_eq!(
            (r.packets, r.lost_packets, r.received()),
            (167890, 11044, 156846)
        );
        assert!((r.received_per_second() - 156832.0).abs() < 1.0);
        assert!((r.loss_percent() - 6.578).abs() < 1e-3);
    }

    #[test]
    fn udp_from_old_iperf_uses_sum() {
        let old = r#"{"end": {"sum": {"seconds": 2.0, "lost_packets": 10, "packets": 110}}}"#;
        let r = parse_udp(old).unwrap();
        assert_eq!(r.received(), 100);
        assert_eq!(r.received_per_second(), 50.0);
    }

    #[test]
    fn odd_loss_counts_are_clamped() {
        let neg = r#"{"end": {"sum_received": {"seconds": 1, "lost_packets": -3, "packets": 9}}}"#;
        assert_eq!(parse_udp(neg).unwrap().lost_packets, 0);
        let over = r#"{"end": {"sum_received": {"seconds": 1, "lost_packets": 12, "packets": 9}}}"#;
        let r = parse_udp(over).unwrap();
        assert_eq!((r.received(), r.loss_percent()), (0, 100.0));
        let none = r#"{"end": {"sum_received": {"seconds": 0, "lost_packets": 0, "packets": 0}}}"#;
        let r = parse_udp(none).unwrap();
        assert_eq!((r.received_per_second(), r.loss_percent()), (0.0, 0.0));
    }

    #[test]
    fn errors_are_reported() {
        let failed = r#"{"start": {"connected": []}, "intervals": [], "end": {},
                         "error": "unable to connect to server: Connection refused"}"#;
        let e = parse_tcp(failed).unwrap_err().to_string();
        assert!(e.contains("Connection refused"), "{e}");
        assert!(parse_udp(failed).is_err());
        assert!(parse_tcp("").is_err());
        assert!(parse_tcp("iperf3: error").is_err());
        assert!(parse_tcp(r#"{"end": {}}"#).is_err());
        // A TCP report has no UDP loss counts.
        assert!(parse_udp(TCP).is_err());
    }
}
