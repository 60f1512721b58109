//! Forwarding state of one network (VNI): where each MAC lives, who answers which IP, whom to
//! flood, and what was learned from received traffic.
//!
//! The control plane describes a network with a [`NetworkTable`] (plain data) and hands it over
//! whole; the engine compiles it into a [`Table`] and swaps it in atomically, so the packet path
//! reads a consistent, immutable table without locks. The table also says how large a packet
//! the path to each peer carries (the path MTU), which the send path enforces
//! ([`crate::encap::fit`]). Entries learned from traffic change per
//! packet, so they live apart in a [`LearnedTable`] (a sharded map whose entries refresh their
//! age with an atomic store, taking a write lock only when a MAC is new or moves).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use ovnet_wire::{ethernet, MacAddr, Vni, VXLAN_PORT};

/// A multiply-rotate hasher (the Fx hash of rustc) for the compiled tables: their keys are
/// 4 to 16 bytes and are looked up several times per packet, where SipHash showed in profiles.
/// Only the control plane inserts into these maps, so no packet can pick colliding keys; the
/// learned table, which packets do fill, keeps the standard randomised hasher.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits depending only on the input's low bits, and hash
        // tables index by the low bits: addresses that differ in their last bytes (MACs
        // 02:42:0a:00:00:xx, IPs 10.0.0.x) would all land in one bucket. Rotating brings the
        // well-mixed high bits down (as rustc-hash 2 does).
        self.0.rotate_left(26)
    }
}

/// A map with [`FxHasher`].
pub type FxHashMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
/// A set with [`FxHasher`].
pub type FxHashSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// Ageing of learned entries, as the kernel's vxlan default (`ageing 300`).
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

/// A VTEP in the flood list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FloodEntry {
    /// Where to send (VTEP address and its VXLAN port).
    pub addr: SocketAddr,
    /// Learn the source MACs of traffic from this VTEP (external VTEPs that ovnet's control
    /// plane does not describe, such as a kernel vxlan host or a hardware switch).
    pub learn: bool,
}

/// The forwarding state of one network, as the control plane describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkTable {
    /// Remote endpoints: MAC → the VTEP that owns it.
    pub macs: HashMap<MacAddr, SocketAddr>,
    /// IPv4 → MAC for every endpoint (local and remote), for ARP answers and anti-spoofing.
    pub arp: HashMap<Ipv4Addr, MacAddr>,
    /// IPv6 → MAC, for neighbour advertisements.
    pub nd: HashMap<Ipv6Addr, MacAddr>,
    /// VTEPs receiving broadcast, unknown-unicast and multicast frames (head-end replication).
    pub flood: Vec<FloodEntry>,
    /// MACs of this host's own endpoints in the network.
    pub local_macs: HashSet<MacAddr>,
    /// Accept traffic from any VTEP and learn its source MACs (the kernel's `learning` mode).
    pub learning: bool,
    /// The VXLAN port of VTEPs learned from traffic when `learning` is on.
    pub learn_port: u16,
    /// The path MTU to each VTEP, by address: the largest inner IP packet that reaches it in
    /// one outer datagram (the smaller of both ends' underlay MTUs, less the VXLAN overhead).
    /// A larger frame is answered with ICMP "too big" or sent for the host to fragment
    /// ([`crate::encap::fit`]). VTEPs not listed, or listed with 0, get `default_path_mtu`.
    pub path_mtu: HashMap<IpAddr, u32>,
    /// The path MTU of VTEPs not in `path_mtu` (learned and external ones): this host's
    /// underlay MTU less the overhead. 0: unknown, frames up to the network's MTU go.
    pub default_path_mtu: u32,
    /// The network's gateway on this host's bridge: the same address and MAC on every host,
    /// so it is always a local answer (ARP for it is never flooded), never a remote
    /// destination, and never a source the overlay may deliver.
    pub gateway: Option<Gateway>,
}

/// A network's gateway: an address of the subnet on the bridge of every host where the
/// network has endpoints, with the same MAC everywhere (`02:42` and the address's bytes, like
/// an endpoint's). It is the host's own: its frames stay on the host, and frames from the
/// overlay that claim it are spoofed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gateway {
    /// The gateway address.
    pub ip: Ipv4Addr,
    /// The bridge's MAC.
    pub mac: MacAddr,
}

impl NetworkTable {
    /// An empty table with learning off and the IANA VXLAN port.
    pub fn new() -> NetworkTable {
        NetworkTable {
            learn_port: VXLAN_PORT,
            ..NetworkTable::default()
        }
    }
}

/// What the receive path needs to know about a sender address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VtepInfo {
    /// Learn source MACs from it.
    pub learn: bool,
    /// Its VXLAN port (learned MACs are reached there).
    pub port: u16,
}

/// A [`NetworkTable`] compiled for the packet path: flood list as a slice, and an index of the
/// VTEP addresses allowed to send into the network.
#[derive(Debug, Default)]
pub struct Table {
    pub(crate) macs: FxHashMap<MacAddr, SocketAddr>,
    pub(crate) arp: FxHashMap<Ipv4Addr, MacAddr>,
    pub(crate) nd: FxHashMap<Ipv6Addr, MacAddr>,
    pub(crate) flood: Vec<SocketAddr>,
    /// The flood list's external VTEPs (learned from): in a network that does not learn from
    /// every VTEP, the only ones that may hold MACs the table does not know.
    flood_external: Vec<SocketAddr>,
    pub(crate) local_macs: FxHashSet<MacAddr>,
    pub(crate) vteps: FxHashMap<IpAddr, VtepInfo>,
    pub(crate) learning: bool,
    pub(crate) learn_port: u16,
    pub(crate) gateway_mac: Option<MacAddr>,
    /// Path MTUs of the VTEPs that have one of their own.
    path_mtu: FxHashMap<IpAddr, u16>,
    /// Path MTU of every other VTEP ([`NO_LIMIT`] when unknown).
    default_mtu: u16,
    /// The longest frame every path carries: a frame no longer needs no look-up.
    every_path: usize,
}

/// The compiled path MTU of a path whose MTU is unknown: larger than any frame's packet.
const NO_LIMIT: u16 = u16::MAX;

/// A path MTU as the control plane gives it, compiled: 0 is unknown.
fn path_limit(mtu: u32) -> u16 {
    match mtu {
        0 => NO_LIMIT,
        m => u16::try_from(m).unwrap_or(NO_LIMIT),
    }
}

impl Table {
    /// Compiles a table. Flood entries are deduplicated, keeping their order. The gateway, if
    /// any, joins the IP → MAC table and the local MACs: ARP for it is the local bridge's to
    /// answer, and a frame from the overlay claiming its MAC or address is spoofed.
    pub fn compile(t: &NetworkTable) -> Table {
        let mut vteps = FxHashMap::default();
        for addr in t.macs.values() {
            vteps.entry(addr.ip()).or_insert(VtepInfo {
                learn: false,
                port: addr.port(),
            });
        }
        let mut flood = Vec::with_capacity(t.flood.len());
        let mut flood_external = Vec::new();
        for f in &t.flood {
            if !flood.contains(&f.addr) {
                flood.push(f.addr);
            }
            if f.learn && !flood_external.contains(&f.addr) {
                flood_external.push(f.addr);
            }
            let e = vteps.entry(f.addr.ip()).or_insert(VtepInfo {
                learn: f.learn,
                port: f.addr.port(),
            });
            e.learn |= f.learn;
        }
        let path_mtu: FxHashMap<IpAddr, u16> = t
            .path_mtu
            .iter()
            .map(|(ip, m)| (*ip, path_limit(*m)))
            .filter(|(_, m)| *m != NO_LIMIT)
            .collect();
        let default_mtu = path_limit(t.default_path_mtu);
        let smallest = path_mtu.values().copied().fold(default_mtu, u16::min);
        let mut arp: FxHashMap<Ipv4Addr, MacAddr> = t.arp.iter().map(|(k, v)| (*k, *v)).collect();
        let mut local_macs: FxHashSet<MacAddr> = t.local_macs.iter().copied().collect();
        if let Some(gw) = t.gateway {
            arp.insert(gw.ip, gw.mac);
            local_macs.insert(gw.mac);
        }
        Table {
            path_mtu,
            default_mtu,
            every_path: usize::from(smallest) + ethernet::HEADER_LEN,
            macs: t.macs.iter().map(|(k, v)| (*k, *v)).collect(),
            arp,
            nd: t.nd.iter().map(|(k, v)| (*k, *v)).collect(),
            flood,
            flood_external,
            local_macs,
            vteps,
            learning: t.learning,
            learn_port: if t.learn_port == 0 {
                VXLAN_PORT
            } else {
                t.learn_port
            },
            gateway_mac: t.gateway.map(|g| g.mac),
        }
    }

    /// Whether `mac` is the network's gateway (this host's bridge).
    pub fn is_gateway(&self, mac: &MacAddr) -> bool {
        self.gateway_mac.as_ref() == Some(mac)
    }

    /// The VTEP a unicast MAC is statically bound to.
    pub fn vtep_of(&self, mac: &MacAddr) -> Option<SocketAddr> {
        self.macs.get(mac).copied()
    }

    /// The flood list.
    pub fn flood(&self) -> &[SocketAddr] {
        &self.flood
    }

    /// Where a frame to a MAC the table does not know goes: the VTEPs behind which unknown
    /// MACs may live (external ones, or every one in a learning network). Every endpoint
    /// behind an ovnet VTEP is in the table, so such a frame is for nothing that exists
    /// there (a container gone, one not yet known here): sending it to every ovnet peer, as
    /// a broadcast goes, would only multiply it.
    pub fn flood_unknown(&self) -> &[SocketAddr] {
        if self.learning {
            &self.flood
        } else {
            &self.flood_external
        }
    }

    /// Whether `mac` is one of this host's endpoints.
    pub fn is_local(&self, mac: &MacAddr) -> bool {
        self.local_macs.contains(mac)
    }

    /// The path MTU to the VTEP at `ip`: the largest inner IP packet it carries in one outer
    /// datagram (`u16::MAX` when unknown).
    pub fn path_mtu(&self, ip: IpAddr) -> u16 {
        self.path_mtu.get(&ip).copied().unwrap_or(self.default_mtu)
    }

    /// Whether a frame of `len` bytes fits the path to every VTEP, without looking any up:
    /// the check most frames stop at.
    #[inline]
    pub fn fits_every_path(&self, len: usize) -> bool {
        len <= self.every_path
    }

    /// How the receive path treats datagrams from `ip`: `None` if it is not a VTEP of the
    /// network and learning is off.
    pub(crate) fn sender(&self, ip: IpAddr) -> Option<VtepInfo> {
        match self.vteps.get(&ip) {
            Some(info) => Some(*info),
            None if self.learning => Some(VtepInfo {
                learn: true,
                port: self.learn_port,
            }),
            None => None,
        }
    }
}

/// One learned MAC: where it was last seen, and when.
#[derive(Debug)]
pub struct Learned {
    vtep: SocketAddr,
    /// The caller's milliseconds at the last packet.
    seen_ms: AtomicU64,
}

/// What [`LearnedTable::learn`] did with a source MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// Already known behind that VTEP (its age refreshed).
    Known,
    /// New: added.
    New,
    /// Known behind another VTEP: moved.
    Moved,
    /// New, but the network already has its most learned MACs: not added.
    Full,
}

impl Learn {
    /// Whether the table changed (a MAC added or moved).
    pub fn changed(self) -> bool {
        matches!(self, Learn::New | Learn::Moved)
    }
}

/// The default most MACs learned per network: a few thousand hosts behind external VTEPs,
/// a few hundred kilobytes of table at most per network.
pub const DEFAULT_MAX_LEARNED: usize = 4096;

/// MACs learned from received traffic, per VNI, with ageing and a cap per VNI. Shared by the
/// receive path (which writes) and the send path (which reads). Times are the caller's
/// milliseconds (the data plane's [`crate::clock::Clock`]); the table keeps no clock of its
/// own.
///
/// The cap is what keeps a flood of random source MACs from an external VTEP from growing the
/// table (and the bridge's FDB behind the TAP) without bound: once a network holds
/// `max_per_network` entries, live or aged but not swept yet, new MACs are refused
/// ([`Learn::Full`]) until the sweep frees room, while known ones keep refreshing.
#[derive(Debug)]
pub struct LearnedTable {
    map: DashMap<(Vni, MacAddr), Learned>,
    /// Entries per network. Never locked while `map` is.
    counts: DashMap<Vni, Arc<AtomicUsize>>,
    ageing_ms: u64,
    max_per_network: usize,
}

/// Refresh the timestamp of an entry at most this often: the store is cheap but not free, and
/// ageing works in whole seconds anyway.
const REFRESH_MS: u64 = 1000;

impl LearnedTable {
    /// An empty table whose entries expire `ageing` after the last packet seen from them, with
    /// at most [`DEFAULT_MAX_LEARNED`] per network.
    pub fn new(ageing: Duration) -> LearnedTable {
        LearnedTable::with_limit(ageing, DEFAULT_MAX_LEARNED)
    }

    /// An empty table whose entries expire `ageing` after the last packet seen from them, with
    /// at most `max_per_network` per network.
    pub fn with_limit(ageing: Duration, max_per_network: usize) -> LearnedTable {
        LearnedTable {
            map: DashMap::new(),
            counts: DashMap::new(),
            ageing_ms: ageing.as_millis().min(u64::MAX as u128) as u64,
            max_per_network,
        }
    }

    /// How many entries the table holds, aged or not (the sweep, [`LearnedTable::expire`],
    /// removes aged ones).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The most entries one network may hold.
    pub fn max_per_network(&self) -> usize {
        self.max_per_network
    }

    /// How many entries network `vni` holds, aged or not: what its cap counts.
    pub fn len_of(&self, vni: Vni) -> usize {
        self.counts.get(&vni).map_or(0, |c| c.load(Relaxed))
    }

    /// Whether the table holds no entry at all.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live (not aged out) VTEP for `mac` in `vni`.
    pub fn lookup(&self, vni: Vni, mac: &MacAddr, now_ms: u64) -> Option<SocketAddr> {
        let e = self.map.get(&(vni, *mac))?;
        let seen = e.seen_ms.load(Relaxed);
        (now_ms.saturating_sub(seen) < self.ageing_ms).then_some(e.vtep)
    }

    /// Records that `mac` was seen behind `vtep`, unless it is new and `vni` is full.
    pub fn learn(&self, vni: Vni, mac: MacAddr, vtep: SocketAddr, now_ms: u64) -> Learn {
        let key = (vni, mac);
        if let Some(e) = self.map.get(&key) {
            if e.vtep == vtep {
                if now_ms.saturating_sub(e.seen_ms.load(Relaxed)) >= REFRESH_MS {
                    e.seen_ms.store(now_ms, Relaxed);
                }
                return Learn::Known;
            }
        }
        if let Some(mut e) = self.map.get_mut(&key) {
            e.vtep = vtep;
            e.seen_ms.store(now_ms, Relaxed);
            return Learn::Moved;
        }
        // New: take a place under the cap first, so that racing workers cannot overshoot it.
        let count = self.count_of(vni);
        if count.fetch_add(1, Relaxed) >= self.max_per_network {
            count.fetch_sub(1, Relaxed);
            return Learn::Full;
        }
        let entry = Learned {
            vtep,
            seen_ms: AtomicU64::new(now_ms),
        };
        if self.map.insert(key, entry).is_some() {
            // Another worker added it meanwhile: it had taken the place already.
            count.fetch_sub(1, Relaxed);
            return Learn::Moved;
        }
        Learn::New
    }

    /// The counter of `vni`'s entries, created if need be.
    fn count_of(&self, vni: Vni) -> Arc<AtomicUsize> {
        if let Some(c) = self.counts.get(&vni) {
            return c.clone();
        }
        self.counts.entry(vni).or_default().clone()
    }

    /// Removes aged-out entries; returns how many. Runs on the housekeeping thread: each of
    /// the map's shards is locked in turn for as long as it takes to look at its entries (at
    /// most the networks' caps together, divided by the shard count), so a worker waits at most
    /// that long for one lookup.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut gone: FxHashMap<Vni, usize> = FxHashMap::default();
        self.map.retain(|(vni, _), e| {
            let live = now_ms.saturating_sub(e.seen_ms.load(Relaxed)) < self.ageing_ms;
            if !live {
                *gone.entry(*vni).or_default() += 1;
            }
            live
        });
        let mut total = 0;
        for (vni, n) in gone {
            if let Some(c) = self.counts.get(&vni) {
                c.fetch_sub(n, Relaxed);
            }
            total += n;
        }
        total
    }

    /// Forgets everything learned in `vni` (when the network goes away).
    pub fn forget_vni(&self, vni: Vni) {
        self.map.retain(|(v, _), _| *v != vni);
        self.counts.remove(&vni);
    }

    /// The entries of `vni` live at `now_ms`, sorted by MAC.
    pub fn entries(&self, vni: Vni, now_ms: u64) -> Vec<(MacAddr, SocketAddr)> {
        let now = now_ms;
        let mut out: Vec<_> = self
            .map
            .iter()
            .filter(|e| e.key().0 == vni)
            .filter(|e| now.saturating_sub(e.seen_ms.load(Relaxed)) < self.ageing_ms)
            .map(|e| (e.key().1, e.vtep))
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    /// Addresses that differ only in their last bytes spread over a table's low-bit buckets.
    #[test]
    fn fx_hashes_of_neighbouring_addresses_spread_over_low_bits() {
        let build = std::hash::BuildHasherDefault::<FxHasher>::default();
        let buckets = |hashes: Vec<u64>| {
            hashes
                .into_iter()
                .map(|h| h & 1023)
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        let macs = (0..1024u32)
            .map(|i| build.hash_one(MacAddr([2, 0x42, 10, 0, (i >> 8) as u8, i as u8])))
            .collect();
        let ips = (0..1024u32)
            .map(|i| build.hash_one(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)))
            .collect();
        assert!(buckets(macs) > 600, "MACs crowd into few buckets");
        assert!(buckets(ips) > 600, "IPs crowd into few buckets");
    }

    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr([2, 0x42, 10, 0, 0, last])
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn compile_indexes_vteps_and_dedups_flood() {
        let mut t = NetworkTable::new();
        t.macs.insert(mac(3), sa("192.168.50.2:4789"));
        t.flood = vec![
            FloodEntry {
                addr: sa("192.168.50.2:4789"),
                learn: false,
            },
            FloodEntry {
                addr: sa("192.168.50.3:4789"),
                learn: true,
            },
            FloodEntry {
                addr: sa("192.168.50.2:4789"),
                learn: false,
            },
        ];
        let c = Table::compile(&t);
        assert_eq!(c.flood().len(), 2);
        assert_eq!(c.vtep_of(&mac(3)), Some(sa("192.168.50.2:4789")));
        assert_eq!(
            c.sender("192.168.50.2".parse().unwrap()),
            Some(VtepInfo {
                learn: false,
                port: 4789
            })
        );
        assert!(c.sender("192.168.50.3".parse().unwrap()).unwrap().learn);
        assert_eq!(c.sender("192.168.50.9".parse().unwrap()), None);
    }

    #[test]
    fn path_mtus_compile_with_the_default_and_the_smallest() {
        let mut t = NetworkTable::new();
        let c = Table::compile(&t);
        assert_eq!(c.path_mtu("192.168.50.2".parse().unwrap()), u16::MAX);
        assert!(c.fits_every_path(65_535), "nothing known: nothing enforced");
        t.path_mtu.insert("192.168.50.2".parse().unwrap(), 1450);
        t.path_mtu.insert("192.168.50.3".parse().unwrap(), 1350);
        t.path_mtu.insert("192.168.50.4".parse().unwrap(), 0);
        t.path_mtu.insert("192.168.50.5".parse().unwrap(), 70_000);
        t.default_path_mtu = 1450;
        let c = Table::compile(&t);
        assert_eq!(c.path_mtu("192.168.50.3".parse().unwrap()), 1350);
        assert_eq!(
            c.path_mtu("192.168.50.4".parse().unwrap()),
            1450,
            "0: the default"
        );
        assert_eq!(
            c.path_mtu("192.168.50.5".parse().unwrap()),
            1450,
            "out of range"
        );
        assert_eq!(c.path_mtu("192.168.50.9".parse().unwrap()), 1450);
        assert!(c.fits_every_path(1350 + 14));
        assert!(!c.fits_every_path(1350 + 15));
    }

    #[test]
    fn learning_mode_accepts_any_sender_on_the_learn_port() {
        let mut t = NetworkTable::new();
        t.learning = true;
        t.learn_port = 8472;
        let c = Table::compile(&t);
        assert_eq!(
            c.sender("192.168.50.9".parse().unwrap()),
            Some(VtepInfo {
                learn: true,
                port: 8472
            })
        );
    }

    #[test]
    fn learned_entries_refresh_move_and_age() {
        let vni = Vni::new(42).unwrap();
        let l = LearnedTable::new(Duration::from_secs(10));
        assert_eq!(l.learn(vni, mac(5), sa("192.168.50.3:4789"), 0), Learn::New);
        assert_eq!(
            l.learn(vni, mac(5), sa("192.168.50.3:4789"), 5_000),
            Learn::Known
        );
        assert_eq!(
            l.lookup(vni, &mac(5), 14_000),
            Some(sa("192.168.50.3:4789"))
        );
        // Other VNIs do not see it.
        assert_eq!(l.lookup(Vni::new(43).unwrap(), &mac(5), 0), None);
        // Moves are reported.
        assert_eq!(
            l.learn(vni, mac(5), sa("192.168.50.4:4789"), 6_000),
            Learn::Moved
        );
        assert_eq!(l.lookup(vni, &mac(5), 6_000), Some(sa("192.168.50.4:4789")));
        // Aged out after 10 s without traffic.
        assert_eq!(l.lookup(vni, &mac(5), 16_000), None);
        assert_eq!(l.len(), 1, "aged, but not swept yet");
        assert_eq!(l.entries(vni, 16_000), vec![]);
        assert_eq!(
            l.entries(vni, 15_999),
            vec![(mac(5), sa("192.168.50.4:4789"))]
        );
        assert_eq!(l.expire(16_000), 1);
        assert!(l.is_empty());
        assert_eq!(l.len_of(vni), 0);
    }

    #[test]
    fn a_full_network_refuses_new_macs_and_keeps_the_known_ones() {
        let (a, b) = (Vni::new(1).unwrap(), Vni::new(2).unwrap());
        let l = LearnedTable::with_limit(Duration::from_secs(10), 3);
        let v = sa("192.168.50.3:4789");
        for i in 0..3 {
            assert_eq!(l.learn(a, mac(i), v, 0), Learn::New);
        }
        assert_eq!(l.learn(a, mac(9), v, 0), Learn::Full);
        assert_eq!(l.lookup(a, &mac(9), 0), None);
        assert_eq!(l.len_of(a), 3);
        // Known MACs refresh and move; another network has its own room.
        assert_eq!(l.learn(a, mac(0), v, 2_000), Learn::Known);
        assert_eq!(
            l.learn(a, mac(1), sa("192.168.50.4:4789"), 2_000),
            Learn::Moved
        );
        assert_eq!(l.learn(b, mac(9), v, 2_000), Learn::New);
        // Aged entries keep their place until the sweep frees it.
        assert_eq!(l.learn(a, mac(9), v, 11_000), Learn::Full);
        assert_eq!(l.expire(11_000), 1, "mac(2), seen last at 0");
        assert_eq!(l.len_of(a), 2);
        assert_eq!(l.learn(a, mac(9), v, 11_000), Learn::New);
        assert_eq!(l.len_of(a), 3);
        l.forget_vni(a);
        assert_eq!((l.len_of(a), l.len_of(b), l.len()), (0, 1, 1));
    }

    #[test]
    fn racing_learners_never_overshoot_the_cap() {
        let vni = Vni::new(7).unwrap();
        let l = LearnedTable::with_limit(DEFAULT_AGEING, 100);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let l = &l;
                s.spawn(move || {
                    for i in 0..=255u8 {
                        let m = MacAddr([2, 0, 0, t, i, 1]);
                        l.learn(vni, m, sa("192.168.50.3:4789"), 0);
                        // Every fourth one again, from another VTEP: moves race with adds.
                        if i % 4 == 0 {
                            l.learn(vni, m, sa("192.168.50.4:4789"), 0);
                        }
                    }
                });
            }
        });
        assert_eq!(l.len(), 100);
        assert_eq!(l.len_of(vni), 100);
    }

    #[test]
    fn forget_vni_leaves_other_vnis() {
        let (a, b) = (Vni::new(1).unwrap(), Vni::new(2).unwrap());
        let l = LearnedTable::new(DEFAULT_AGEING);
        l.learn(a, mac(1), sa("192.168.50.3:4789"), 0);
        l.learn(b, mac(1), sa("192.168.50.3:4789"), 0);
        l.forget_vni(a);
        assert_eq!(l.lookup(a, &mac(1), 0), None);
        assert!(l.lookup(b, &mac(1), 0).is_some());
    }
}
