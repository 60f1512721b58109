//! The harness' vocabulary: what is built ([`Variant`]), over which underlay ([`Topology`]),
//! what is run ([`Test`]) and what is reported ([`Metric`]), each with its key on the command
//! line and in the JSON.

/// One way of building the overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variant {
    /// The Linux kernel's `vxlan` device, bridged, with static FDB entries.
    Kernel,
    /// ovnet as a user runs it: etcd, one `ovnet-agent` per host, `ovctl`.
    Ovnet,
    /// ovnet's data plane linked into the harness and configured through its Rust API, without
    /// the control plane (as the data plane's own end-to-end tests do).
    Direct,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 3] = [Variant::Kernel, Variant::Ovnet, Variant::Direct];

    /// The name on the command line and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Variant::Kernel => "kernel",
            Variant::Ovnet => "ovnet",
            Variant::Direct => "direct",
        }
    }

    /// The column header.
    pub fn title(self) -> &'static str {
        match self {
            Variant::Kernel => "kernel vxlan",
            Variant::Ovnet => "ovnet",
            Variant::Direct => "ovnet data plane",
        }
    }

    /// The short name used in a ratio header (`ovnet/kernel`).
    pub fn short(self) -> &'static str {
        match self {
            Variant::Kernel => "kernel",
            Variant::Ovnet => "ovnet",
            Variant::Direct => "dataplane",
        }
    }

    /// Parses a key.
    pub fn from_key(s: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.key() == s)
    }
}

/// How the simulated hosts reach each other. Every host also has `eth0` on the underlay
/// switch, where etcd is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topology {
    /// Two hosts joined by one veth pair of their own (`dl0`, 192.168.60.0/24): the VXLAN
    /// traffic crosses no bridge.
    Veth,
    /// Two hosts whose `eth0` veths sit on a bridge in an underlay namespace, as real hosts sit
    /// behind a switch (192.168.50.0/24).
    Switch,
    /// Three hosts on the switch: broadcast frames are replicated to two peers.
    Three,
    /// Two hosts in subnets of their own (172.20.{n}.0/24) behind two routers: the VXLAN
    /// traffic is forwarded three times on the way, as between racks or sites.
    Routed,
}

impl Topology {
    /// Every topology, in run order.
    pub const ALL: [Topology; 4] = [
        Topology::Veth,
        Topology::Switch,
        Topology::Three,
        Topology::Routed,
    ];

    /// The name on the command line and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Topology::Veth => "veth",
            Topology::Switch => "switch",
            Topology::Three => "three",
            Topology::Routed => "routed",
        }
    }

    /// A heading.
    pub fn title(self) -> &'static str {
        match self {
            Topology::Veth => "direct veth (two hosts, one veth pair between them)",
            Topology::Switch => {
                "switched underlay (two hosts on a bridge in an underlay namespace)"
            }
            Topology::Three => "three hosts on the switched underlay (flooding)",
            Topology::Routed => "routed underlay (two hosts in two subnets behind two routers)",
        }
    }

    /// Parses a key.
    pub fn from_key(s: &str) -> Option<Topology> {
        Topology::ALL.into_iter().find(|t| t.key() == s)
    }

    /// How many hosts (each with one container).
    pub fn hosts(self) -> u8 {
        match self {
            Topology::Veth | Topology::Switch | Topology::Routed => 2,
            Topology::Three => 3,
        }
    }

    /// Whether `test` is taken on this topology: the two-host ones take everything but the
    /// flood, the three-host one the flood, a TCP stream and a ping (a third peer in the
    /// tables and flood lists must not cost the two others anything), the routed one what flow
    /// placement and the workers' scheduling decide (TCP, UDP, a ping alone and beside TCP).
    pub fn runs(self, test: Test) -> bool {
        match self {
            Topology::Veth | Topology::Switch => test != Test::Flood,
            Topology::Three => matches!(test, Test::Flood | Test::Tcp1 | Test::Ping10),
            Topology::Routed => matches!(
                test,
                Test::Tcp1 | Test::Tcp2 | Test::Udp | Test::Ping10 | Test::PingLoad
            ),
        }
    }
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Test {
    /// iperf3 TCP, one stream.
    Tcp1,
    /// iperf3 TCP, two streams.
    Tcp2,
    /// iperf3 UDP, 64-byte datagrams.
    Udp,
    /// ping every millisecond.
    Ping1,
    /// ping every 10 ms.
    Ping10,
    /// ping every 100 ms.
    Ping100,
    /// ping every 10 ms while a TCP stream runs the other way.
    PingLoad,
    /// Nothing: the agents' CPU with no traffic.
    Idle,
    /// 64-byte broadcast datagrams from one container, counted at every other.
    Flood,
}

impl Test {
    /// Every test, in run order.
    pub const ALL: [Test; 9] = [
        Test::Tcp1,
        Test::Tcp2,
        Test::Udp,
        Test::Ping1,
        Test::Ping10,
        Test::Ping100,
        Test::PingLoad,
        Test::Idle,
        Test::Flood,
    ];

    /// The ping tests, what `ping` stands for on the command line.
    pub const PINGS: [Test; 4] = [Test::Ping1, Test::Ping10, Test::Ping100, Test::PingLoad];

    /// Its name on the command line and in the JSON.
    pub fn key(self) -> &'static str {
        match self {
            Test::Tcp1 => "tcp1",
            Test::Tcp2 => "tcp2",
            Test::Udp => "udp",
            Test::Ping1 => "ping1",
            Test::Ping10 => "ping10",
            Test::Ping100 => "ping100",
            Test::PingLoad => "pingload",
            Test::Idle => "idle",
            Test::Flood => "flood",
        }
    }

    /// Parses a key.
    pub fn from_key(s: &str) -> Option<Test> {
        Test::ALL.into_iter().find(|t| t.key() == s)
    }
}

/// A measured quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// iperf3 TCP, one stream: receiver goodput.
    Tcp1,
    /// iperf3 TCP, two streams (`-P 2`): receiver goodput, both together.
    Tcp2,
    /// iperf3 UDP with 64-byte payloads, unlimited rate: datagrams received per second.
    Udp64Kpps,
    /// The same test: datagrams lost.
    Udp64Loss,
    /// Median round trip, a ping every millisecond.
    PingP50At1,
    /// 99th percentile of the same.
    PingP99At1,
    /// Median round trip, a ping every 10 ms.
    PingP50At10,
    /// 99th percentile of the same.
    PingP99At10,
    /// Median round trip, a ping every 100 ms.
    PingP50At100,
    /// 99th percentile of the same.
    PingP99At100,
    /// Median round trip, a ping every 10 ms while a TCP stream runs from the server side.
    PingP50Load,
    /// 99th percentile of the same.
    PingP99Load,
    /// The same test: the TCP stream's goodput.
    TcpUnderPing,
    /// CPU of one agent (mean over the hosts), in percent of a core, with no traffic.
    CoreIdle,
    /// The same while pinging every millisecond.
    CorePing1,
    /// The same while pinging every 10 ms.
    CorePing10,
    /// The same while pinging every 100 ms.
    CorePing100,
    /// CPU time of the VXLAN path (all hosts together) during one throughput test, any kind.
    Cpu,
    /// The same during the one-stream TCP tests only.
    CpuTcp1,
    /// The same during the two-stream TCP tests only.
    CpuTcp2,
    /// The same during the UDP tests only.
    CpuUdp64,
    /// Busy CPU time of the whole machine (every process and interrupt: iperf3, containers'
    /// and hosts' stacks, agents), from the iperf3 client's start to its exit, per GB of
    /// goodput (the test's rate times its duration), TCP one stream: the cost of a byte.
    MachineCpuTcp1,
    /// The same for two streams.
    MachineCpuTcp2,
    /// Pages the machine's page allocator handed out (`/proc/vmstat` `pgalloc_*`) during the
    /// TCP one-stream test, per page of goodput: every copy of the payload into a fresh skb
    /// (the sender's socket buffer, a TAP's, the uplink's) allocates its pages.
    PagesTcp1,
    /// The same for two streams.
    PagesTcp2,
    /// The busiest data-plane worker's share of all the workers' CPU time (every host
    /// together) during the TCP two-stream test, in percent: 100 when both flows sit on one
    /// worker, 50 when two workers share them evenly.
    BusiestWorkerTcp2,
    /// 64-byte broadcast datagrams from one container: received per second by the container
    /// that received fewest.
    FloodKpps,
    /// The same test: sent per second.
    FloodSentKpps,
    /// CPU time of the VXLAN path (all hosts) during one flood test.
    CpuFlood,
}

impl Metric {
    /// Every metric, in JSON order.
    pub const ALL: [Metric; 29] = [
        Metric::Tcp1,
        Metric::Tcp2,
        Metric::Udp64Kpps,
        Metric::Udp64Loss,
        Metric::PingP50At1,
        Metric::PingP99At1,
        Metric::PingP50At10,
        Metric::PingP99At10,
        Metric::PingP50At100,
        Metric::PingP99At100,
        Metric::PingP50Load,
        Metric::PingP99Load,
        Metric::TcpUnderPing,
        Metric::CoreIdle,
        Metric::CorePing1,
        Metric::CorePing10,
        Metric::CorePing100,
        Metric::Cpu,
        Metric::CpuTcp1,
        Metric::CpuTcp2,
        Metric::CpuUdp64,
        Metric::MachineCpuTcp1,
        Metric::MachineCpuTcp2,
        Metric::PagesTcp1,
        Metric::PagesTcp2,
        Metric::BusiestWorkerTcp2,
        Metric::FloodKpps,
        Metric::FloodSentKpps,
        Metric::CpuFlood,
    ];

    /// The rows of the table, in JSON order: every metric but the agents' CPU of each iperf3
    /// test, which the table sums up as [`Metric::Cpu`] (a row no variant measured is left out
    /// when printing).
    pub fn table() -> impl Iterator<Item = Metric> {
        Metric::ALL
            .into_iter()
            .filter(|m| !matches!(m, Metric::CpuTcp1 | Metric::CpuTcp2 | Metric::CpuUdp64))
    }

    /// The throughputs whose run-by-run ratios the table sums up under the medians.
    pub const PAIRED: [Metric; 4] = [
        Metric::Tcp1,
        Metric::Tcp2,
        Metric::Udp64Kpps,
        Metric::FloodKpps,
    ];

    /// Row label, with its unit.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP 1 stream (Gbit/s)",
            Metric::Tcp2 => "TCP 2 streams (Gbit/s)",
            Metric::Udp64Kpps => "UDP 64 B (kpps received)",
            Metric::Udp64Loss => "UDP 64 B loss (%)",
            Metric::PingP50At1 => "ping p50, every 1 ms (ms)",
            Metric::PingP99At1 => "ping p99, every 1 ms (ms)",
            Metric::PingP50At10 => "ping p50, every 10 ms (ms)",
            Metric::PingP99At10 => "ping p99, every 10 ms (ms)",
            Metric::PingP50At100 => "ping p50, every 100 ms (ms)",
            Metric::PingP99At100 => "ping p99, every 100 ms (ms)",
            Metric::PingP50Load => "ping p50, under TCP (ms)",
            Metric::PingP99Load => "ping p99, under TCP (ms)",
            Metric::TcpUnderPing => "TCP beside that ping (Gbit/s)",
            Metric::CoreIdle => "agent CPU idle (% core)",
            Metric::CorePing1 => "agent CPU, ping 1 ms (% core)",
            Metric::CorePing10 => "agent CPU, ping 10 ms (% core)",
            Metric::CorePing100 => "agent CPU, ping 100 ms (% core)",
            Metric::Cpu => "agent CPU (s per test)",
            Metric::CpuTcp1 => "agent CPU, TCP 1 stream (s)",
            Metric::CpuTcp2 => "agent CPU, TCP 2 streams (s)",
            Metric::CpuUdp64 => "agent CPU, UDP 64 B (s)",
            Metric::MachineCpuTcp1 => "machine CPU s/GB, TCP 1",
            Metric::MachineCpuTcp2 => "machine CPU s/GB, TCP 2",
            Metric::PagesTcp1 => "pages alloc/moved, TCP 1",
            Metric::PagesTcp2 => "pages alloc/moved, TCP 2",
            Metric::BusiestWorkerTcp2 => "busiest worker, TCP 2 (% CPU)",
            Metric::FloodKpps => "flood 64 B (kpps per receiver)",
            Metric::FloodSentKpps => "flood 64 B (kpps sent)",
            Metric::CpuFlood => "agent CPU, flood (s)",
        }
    }

    /// Key in the JSON document.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp_1_stream",
            Metric::Tcp2 => "tcp_2_streams",
            Metric::Udp64Kpps => "udp_64b_received",
            Metric::Udp64Loss => "udp_64b_loss",
            Metric::PingP50At1 => "ping_p50_1ms",
            Metric::PingP99At1 => "ping_p99_1ms",
            Metric::PingP50At10 => "ping_p50_10ms",
            Metric::PingP99At10 => "ping_p99_10ms",
            Metric::PingP50At100 => "ping_p50_100ms",
            Metric::PingP99At100 => "ping_p99_100ms",
            Metric::PingP50Load => "ping_p50_under_tcp",
            Metric::PingP99Load => "ping_p99_under_tcp",
            Metric::TcpUnderPing => "tcp_beside_ping",
            Metric::CoreIdle => "agent_core_percent_idle",
            Metric::CorePing1 => "agent_core_percent_ping_1ms",
            Metric::CorePing10 => "agent_core_percent_ping_10ms",
            Metric::CorePing100 => "agent_core_percent_ping_100ms",
            Metric::Cpu => "cpu_per_throughput_test",
            Metric::CpuTcp1 => "cpu_tcp_1_stream",
            Metric::CpuTcp2 => "cpu_tcp_2_streams",
            Metric::CpuUdp64 => "cpu_udp_64b",
            Metric::MachineCpuTcp1 => "machine_cpu_per_gb_tcp_1_stream",
            Metric::MachineCpuTcp2 => "machine_cpu_per_gb_tcp_2_streams",
            Metric::PagesTcp1 => "pages_allocated_per_page_moved_tcp_1_stream",
            Metric::PagesTcp2 => "pages_allocated_per_page_moved_tcp_2_streams",
            Metric::BusiestWorkerTcp2 => "busiest_worker_share_tcp_2_streams",
            Metric::FloodKpps => "flood_64b_received",
            Metric::FloodSentKpps => "flood_64b_sent",
            Metric::CpuFlood => "cpu_flood",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Tcp1 | Metric::Tcp2 | Metric::TcpUnderPing => "Gbit/s",
            Metric::Udp64Kpps | Metric::FloodKpps | Metric::FloodSentKpps => "kpps",
            Metric::Udp64Loss => "%",
            Metric::PingP50At1
            | Metric::PingP99At1
            | Metric::PingP50At10
            | Metric::PingP99At10
            | Metric::PingP50At100
            | Metric::PingP99At100
            | Metric::PingP50Load
            | Metric::PingP99Load => "ms",
            Metric::CoreIdle | Metric::CorePing1 | Metric::CorePing10 | Metric::CorePing100 => {
                "% of a core"
            }
            Metric::Cpu
            | Metric::CpuTcp1
            | Metric::CpuTcp2
            | Metric::CpuUdp64
            | Metric::CpuFlood => "s",
            Metric::MachineCpuTcp1 | Metric::MachineCpuTcp2 => "s/GB",
            Metric::PagesTcp1 | Metric::PagesTcp2 => "pages/page",
            Metric::BusiestWorkerTcp2 => "% of the workers' CPU",
        }
    }

    /// Decimals shown in the table.
    pub fn decimals(self) -> usize {
        match self {
            Metric::Udp64Kpps
            | Metric::FloodKpps
            | Metric::FloodSentKpps
            | Metric::BusiestWorkerTcp2 => 1,
            Metric::PingP50At1
            | Metric::PingP99At1
            | Metric::PingP50At10
            | Metric::PingP99At10
            | Metric::PingP50At100
            | Metric::PingP99At100
            | Metric::PingP50Load
            | Metric::PingP99Load
            | Metric::MachineCpuTcp1
            | Metric::MachineCpuTcp2 => 3,
            _ => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_unique() {
        for v in Variant::ALL {
            assert_eq!(Variant::from_key(v.key()), Some(v));
        }
        assert_eq!(Variant::from_key("vxlan"), None);
        for t in Topology::ALL {
            assert_eq!(Topology::from_key(t.key()), Some(t));
        }
        for t in Test::ALL {
            assert_eq!(Test::from_key(t.key()), Some(t));
        }
        let mut keys: Vec<&str> = Metric::ALL.iter().map(|m| m.key()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), Metric::ALL.len());
        assert_eq!(Metric::table().count(), Metric::ALL.len() - 3);
    }

    #[test]
    fn every_test_runs_somewhere_and_the_flood_needs_three_hosts() {
        for t in Test::ALL {
            assert!(Topology::ALL.iter().any(|topo| topo.runs(t)), "{t:?}");
        }
        assert!(!Topology::Veth.runs(Test::Flood));
        assert!(!Topology::Switch.runs(Test::Flood));
        assert!(Topology::Three.runs(Test::Flood));
        assert!(Topology::Three.hosts() == 3 && Topology::Veth.hosts() == 2);
    }
}
