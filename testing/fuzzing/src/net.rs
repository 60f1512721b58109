//! The network the targets run in: VNI 42, MTU 1450, a local container 10.0.0.2, a remote one
//! 10.0.0.3 behind host 2 (192.168.50.2), and an external learning VTEP (192.168.50.9), as a
//! host's agent would describe them to its data plane.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use ovnet_dataplane::fdb::Table;
use ovnet_dataplane::{FloodEntry, MacAddr, NetworkTable, Vni};

/// The network's MTU.
pub(crate) const MTU: usize = 1450;
/// The largest frame: MTU, Ethernet header and one VLAN tag, as the engine allows.
pub(crate) const MAX_FRAME: usize = MTU + 18;

pub(crate) const LOCAL_MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 2]);
pub(crate) const REMOTE_MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 0, 3]);
pub(crate) const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
pub(crate) const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);

pub(crate) fn vni() -> Vni {
    Vni::new(42).expect("42 is a VNI")
}

/// Host 2 (this is host 1, 192.168.50.1).
pub(crate) const HOST2: &str = "192.168.50.2:4789";
/// The external VTEP whose MACs are learned.
pub(crate) const EXTERNAL: &str = "192.168.50.9:4789";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

/// The senders a datagram may come from, picked by a byte of the input: the peer, the
/// external VTEP (from a random port), a stranger, and the peer as a dual-stack socket sees it.
pub(crate) fn sender(choice: u8) -> SocketAddr {
    match choice % 4 {
        0 => addr(HOST2),
        1 => addr("192.168.50.9:40001"),
        2 => addr("192.168.50.77:4789"),
        _ => addr("[::ffff:192.168.50.2]:4789"),
    }
}

/// Host 1's table: the local container, the remote one behind host 2, host 2 and the external
/// VTEP in the flood list; with `learning`, any VTEP is accepted and learned from.
pub(crate) fn host1_table(learning: bool) -> NetworkTable {
    let mut t = NetworkTable::new();
    t.macs.insert(REMOTE_MAC, addr(HOST2));
    t.arp.insert(LOCAL_IP, LOCAL_MAC);
    t.arp.insert(REMOTE_IP, REMOTE_MAC);
    t.nd.insert(LOCAL_MAC.ipv6_link_local(), LOCAL_MAC);
    t.nd.insert(REMOTE_MAC.ipv6_link_local(), REMOTE_MAC);
    t.local_macs.insert(LOCAL_MAC);
    t.flood.push(FloodEntry {
        addr: addr(HOST2),
        learn: false,
    });
    t.flood.push(FloodEntry {
        addr: addr(EXTERNAL),
        learn: true,
    });
    t.learning = learning;
    t
}

/// The compiled tables, without and with learning (compiled once: the fuzzer runs millions
/// of inputs).
pub(crate) fn tables() -> &'static [Table; 2] {
    static TABLES: OnceLock<[Table; 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        [
            Table::compile(&host1_table(false)),
            Table::compile(&host1_table(true)),
        ]
    })
}
