//! The uplink: a TAP through which whole VXLAN super-frames enter the host's IP stack, which
//! routes them to the underlay (UDP tunnel GSO, Linux 6.17+).
//!
//! A UDP socket cannot send a tunnel-GSO packet, so the data plane writes the encapsulated
//! 64 KB frame, with a 24-byte `virtio_net_hdr_v1_hash_tunnel`, to this TAP. The frame is
//! addressed to the TAP's own MAC: the host takes it in, forwards it like any routed packet
//! (neighbour resolution, the underlay's route and MTU, netfilter's FORWARD chain) and the
//! underlay device segments it only if it cannot carry it whole. Nothing is routed to the
//! uplink, so it is never read.
//!
//! Forwarding a packet whose source is one of the host's own addresses takes three settings
//! of the uplink only: `forwarding` (the host-wide `ip_forward` stays as it is),
//! `accept_local`, and `rp_filter` 0. A host-wide strict `rp_filter` (1) overrides the last,
//! so the uplink is refused there. Whether the host really forwards (a firewall may drop
//! forwarded packets) shows in [`forwarded_datagrams`], which the data plane watches.

use std::io;

use crate::link;
use crate::tap::{Offloads, Tap, TapConfig};

/// The uplink's queues and address.
#[derive(Debug)]
pub struct Uplink {
    /// One queue per worker, all of one multi-queue TAP with the tunnel header.
    pub queues: Vec<Tap>,
    /// The TAP's MAC: frames written to it are addressed to it.
    pub mac: [u8; 6],
}

impl Uplink {
    /// Creates the uplink TAP `name` with `queues` queues in the calling thread's network
    /// namespace, configures it and brings it up. Fails if the kernel cannot take UDP tunnel
    /// GSO frames from a TAP, or the host's settings would drop what it forwards.
    pub fn open(name: &str, queues: usize) -> io::Result<Uplink> {
        if read_sysctl("net/ipv4/conf/all/rp_filter")? == 1 {
            return Err(io::Error::other(
                "net.ipv4.conf.all.rp_filter is 1 (strict), which would drop super-frames \
                 forwarded from the uplink; set it to 0 or 2 to use UDP tunnel GSO",
            ));
        }
        let cfg = TapConfig {
            vnet_hdr: true,
            tunnel_hdr: true,
            multi_queue: queues > 1,
            ..TapConfig::new(name)
        };
        let taps = Tap::open_queues(&cfg, queues.max(1))?;
        // Setting the feature bit is the probe: kernels before 6.17 refuse unknown bits.
        let probe = Offloads {
            csum: true,
            tso4: true,
            tso6: true,
            udp_tunnel: true,
            ..Offloads::default()
        };
        taps[0].set_offloads(probe).map_err(|e| {
            io::Error::other(format!(
                "the kernel cannot take UDP tunnel GSO frames from a TAP (Linux 6.17+): {e}"
            ))
        })?;
        for (key, value) in [
            ("forwarding", "1"),
            ("accept_local", "1"),
            ("rp_filter", "0"),
        ] {
            write_sysctl(&format!("net/ipv4/conf/{name}/{key}"), value)?;
        }
        // Nothing to say on IPv6 (router solicitations nobody reads); absent without IPv6.
        let _ = write_sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "1");
        link::set_up(name)?;
        let mac = link::hwaddr(name)?;
        Ok(Uplink { queues: taps, mac })
    }
}

/// The host's count of forwarded IPv4 packets (`ForwDatagrams` of `/proc/net/snmp`), in the
/// calling thread's network namespace. A GSO packet counts once.
pub fn forwarded_datagrams() -> io::Result<u64> {
    // /proc/net is the process's namespace; the thread's is what counts.
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
    parse_forwarded(&snmp).ok_or_else(|| io::Error::other("no Ip: ForwDatagrams in /proc/net/snmp"))
}

fn parse_forwarded(snmp: &str) -> Option<u64> {
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip: "));
    let (names, values) = (ip.next()?, ip.next()?);
    let at = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

fn read_sysctl(key: &str) -> io::Result<i64> {
    let path = format!("/proc/sys/{key}");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("reading {path}: {e}")))?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::other(format!("{path} holds {text:?}: {e}")))
}

fn write_sysctl(key: &str, value: &str) -> io::Result<()> {
    let path = format!("/proc/sys/{key}");
    std::fs::write(&path, value)
        .map_err(|e| io::Error::new(e.kind(), format!("setting {path} to {value}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_datagrams_are_read_by_column_name() {
        let snmp = "Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams\n\
                    Ip: 2 64 10 0 0 1234\n\
                    Icmp: InMsgs InErrors\n\
                    Icmp: 1 2\n";
        assert_eq!(parse_forwarded(snmp), Some(1234));
        assert_eq!(parse_forwarded("Ip: Forwarding\nIp: 1\n"), None);
        assert_eq!(parse_forwarded(""), None);
        assert_eq!(parse_forwarded("Ip: ForwDatagrams\nIp: x\n"), None);
        assert!(forwarded_datagrams().is_ok());
    }

    #[test]
    fn an_uplink_is_set_up_to_forward_or_refused_with_the_reason() {
        let opened = std::thread::spawn(|| {
            crate::netns::unshare().unwrap();
            // A new namespace takes the host-wide switch from its creator's: whatever it is,
            // opening the uplink must leave it as it was.
            let ip_forward = read_sysctl("net/ipv4/ip_forward").unwrap();
            let up = Uplink::open("ovup0", 2)?;
            assert_eq!(up.queues.len(), 2);
            assert!(up.queues.iter().all(|q| q.has_vnet_hdr()));
            for key in ["forwarding", "accept_local"] {
                let v = read_sysctl(&format!("net/ipv4/conf/ovup0/{key}")).unwrap();
                assert_eq!(v, 1, "{key}");
            }
            assert_eq!(read_sysctl("net/ipv4/conf/ovup0/rp_filter").unwrap(), 0);
            assert_eq!(
                read_sysctl("net/ipv4/ip_forward").unwrap(),
                ip_forward,
                "the host-wide switch is left alone"
            );
            assert_ne!(up.mac, [0; 6]);
            Ok::<(), io::Error>(())
        })
        .join()
        .unwrap();
        match opened {
            Ok(()) => {}
            // Only a kernel older than 6.17 may refuse, and must say why.
            Err(e) if !ovnet_testbed::kernel_at_least(6, 17) => {
                assert!(e.to_string().contains("UDP tunnel GSO"), "{e}");
                ovnet_testbed::skip(format!(
                    "Linux {} refuses UDP tunnel GSO from a TAP (6.17+), as it should: the \
                     uplink's set-up is not exercised",
                    ovnet_testbed::kernel_release()
                ));
            }
            Err(e) => panic!("refused on Linux {}: {e}", ovnet_testbed::kernel_release()),
        }
    }
}
