//! The agent's view of the cluster, and what it means for this host.
//!
//! [`View`] is built from a store snapshot and kept current by watch events and by the agent's
//! own writes. From it, [`View::desired`] derives, for every network with an endpoint on this
//! node, what the host should have ([`Desired`]): the network's bridge and TAP, a veth per
//! local endpoint, and the [`NetworkTable`] the data plane should run: remote MACs behind their
//! nodes' VTEPs (alive nodes only), IP → MAC for every endpoint (ARP and ND answers,
//! anti-spoofing), the flood list (alive nodes with endpoints in the network, plus external
//! VTEPs, which are learned from), and the path MTU to each peer ([`crate::domain::mtu`]).
//! Pure functions, no I/O: the reconciler
//! ([`crate::agent`]) makes the host match.
//!
//! The agent writes to etcd itself (connect, disconnect) and puts the result in the view at
//! once; its watch reports the same change later. Every change carries its etcd revision and
//! the view ignores one older than what it already holds for that key, so a late watch event
//! never undoes a newer local write (say, an endpoint claimed, then released after a failed
//! connect, coming back from the watch).
//!
//! Per-network services fed from the view (the DNS resolver's zone, [`crate::edge::dns`]) read
//! it here; what the host side of a network holds is derived from [`Desired`] (the edge's
//! rules, [`crate::edge::spec`]). The table includes the network's gateway, which is on every
//! host's bridge.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{SocketAddr, SocketAddrV4};

use ovnet_dataplane::{FloodEntry, NetworkTable, Vni};

use crate::domain::{mtu, Endpoint, Name, Network, NetworkId, Node, NodeName};
use crate::store::{Record, RecordKey, State, WatchEvent};

/// How many changes between two sweeps of the revisions the view no longer needs.
const PRUNE_EVERY: u32 = 256;

/// Records known to this agent, keyed as in etcd.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    networks: BTreeMap<Name, Network>,
    endpoints: BTreeMap<(NetworkId, Name), Endpoint>,
    nodes: BTreeMap<NodeName, Node>,
    alive: BTreeSet<NodeName>,
    /// Nodes whose data plane this host heard lately (see `agent::liveness`): kept in the
    /// tables even when their lease expired.
    heard: BTreeSet<NodeName>,
    vteps: BTreeSet<(NetworkId, SocketAddrV4)>,
    /// The revision of the latest change applied to each key since the snapshot, deletions
    /// included.
    revisions: HashMap<RecordKey, i64>,
    /// The highest revision the watch has reported.
    watched: i64,
    changes: u32,
}

/// What one network should look like on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The network record: its VNI names the bridge and the TAP, its MTU sizes them.
    pub network: Network,
    /// Its forwarding table.
    pub table: NetworkTable,
    /// Its endpoints on this node, by name: one veth each.
    pub endpoints: Vec<Endpoint>,
}

impl View {
    /// The view of a snapshot.
    pub fn from_state(state: State) -> View {
        let mut v = View::default();
        for n in state.networks {
            v.insert(Record::Network(n));
        }
        for e in state.endpoints {
            v.insert(Record::Endpoint(e));
        }
        for (n, alive) in state.nodes {
            if alive {
                v.insert(Record::Alive(n.name.clone()));
            }
            v.insert(Record::Node(n));
        }
        for x in state.vteps {
            v.insert(Record::Vtep(x));
        }
        v
    }

    /// Applies one watch event (a `Resync` changes nothing: the caller re-lists).
    pub fn apply(&mut self, ev: &WatchEvent) {
        match ev {
            WatchEvent::Put { revision, record } => {
                self.watched = self.watched.max(*revision);
                self.put(record.clone(), *revision);
            }
            WatchEvent::Delete { revision, key, .. } => {
                self.watched = self.watched.max(*revision);
                self.delete(key, *revision);
            }
            WatchEvent::Resync { .. } => {}
        }
    }

    /// Inserts or replaces a record written at `revision`, unless the view holds a newer change
    /// of its key.
    pub fn put(&mut self, record: Record, revision: i64) {
        if self.newer(record.key(), revision) {
            self.insert(record);
        }
    }

    /// Removes a record deleted at `revision`, unless the view holds a newer change of its key.
    pub fn delete(&mut self, key: &RecordKey, revision: i64) {
        if !self.newer(key.clone(), revision) {
            return;
        }
        match key {
            RecordKey::Network { name } => {
                self.networks.remove(name);
            }
            RecordKey::Endpoint { network_id, name } => {
                self.endpoints.remove(&(network_id.clone(), name.clone()));
            }
            RecordKey::Node { name } => {
                self.nodes.remove(name);
            }
            RecordKey::Alive { name } => {
                self.alive.remove(name);
            }
            RecordKey::Vtep { network_id, addr } => {
                self.vteps.remove(&(network_id.clone(), *addr));
            }
        }
    }

    /// Records that `key` changed at `revision`; false if the view knows a change as new.
    fn newer(&mut self, key: RecordKey, revision: i64) -> bool {
        if self.revisions.get(&key).is_some_and(|&r| r >= revision) {
            return false;
        }
        self.revisions.insert(key, revision);
        self.changes += 1;
        if self.changes >= PRUNE_EVERY {
            // The watch reports changes in revision order: one older than what it has
            // reported cannot come any more, so its revision need not be kept.
            let watched = self.watched;
            self.revisions.retain(|_, r| *r >= watched);
            self.changes = 0;
        }
        true
    }

    fn insert(&mut self, record: Record) {
        match record {
            Record::Network(n) => {
                self.networks.insert(n.name.clone(), n);
            }
            Record::Endpoint(e) => {
                self.endpoints
                    .insert((e.network_id.clone(), e.name.clone()), e);
            }
            Record::Node(n) => {
                self.nodes.insert(n.name.clone(), n);
            }
            Record::Alive(name) => {
                self.alive.insert(name);
            }
            Record::Vtep(x) => {
                self.vteps.insert((x.network_id, x.addr));
            }
        }
    }

    /// Sets the nodes heard lately; whether that changed anything.
    pub fn set_heard(&mut self, heard: BTreeSet<NodeName>) -> bool {
        if heard == self.heard {
            return false;
        }
        self.heard = heard;
        true
    }

    /// Whether node `name` counts as up: its lease is held, or its data plane was heard
    /// lately.
    pub fn is_up(&self, name: &NodeName) -> bool {
        self.alive.contains(name) || self.heard.contains(name)
    }

    /// The networks, by name.
    pub fn networks(&self) -> impl Iterator<Item = &Network> {
        self.networks.values()
    }

    /// The registered nodes, by name.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// The network with ID `id`.
    pub fn network_by_id(&self, id: &NetworkId) -> Option<&Network> {
        self.networks.values().find(|n| n.id == *id)
    }

    /// Endpoints of one network, by name.
    pub fn endpoints_of<'a>(
        &'a self,
        network_id: &'a NetworkId,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints
            .iter()
            .skip_while(move |((id, _), _)| id < network_id)
            .take_while(move |((id, _), _)| id == network_id)
            .map(|(_, e)| e)
    }

    /// Every endpoint of the cluster, by network ID and name.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.endpoints.values()
    }

    /// Endpoints served by node `me`.
    pub fn local_endpoints<'a>(
        &'a self,
        me: &'a NodeName,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.values().filter(move |e| e.node == *me)
    }

    /// The state each network with an endpoint on node `me` should have, by VNI.
    pub fn desired(&self, me: &NodeName) -> Vec<Desired> {
        let mut local: BTreeMap<&NetworkId, Vec<Endpoint>> = BTreeMap::new();
        for e in self.local_endpoints(me) {
            local.entry(&e.network_id).or_default().push(e.clone());
        }
        let mut out: Vec<Desired> = local
            .into_iter()
            .filter_map(|(id, endpoints)| {
                let n = self.network_by_id(id)?;
                if self.served(n).id != n.id {
                    return None;
                }
                Some(Desired {
                    network: n.clone(),
                    table: self.table(n, me),
                    endpoints,
                })
            })
            .collect();
        out.sort_by_key(|d| d.network.vni);
        out
    }

    /// The network served on `n`'s VNI. Two records claiming one VNI (written around the
    /// store's claims): the one created first is served (the earliest `created`, then the
    /// lowest ID), the same on every agent whatever the order the records came in; the others
    /// are ignored ([`View::vni_conflicts`]), so a record written later never takes a VNI
    /// from the network that has it.
    fn served<'a>(&'a self, n: &'a Network) -> &'a Network {
        self.networks
            .values()
            .filter(|o| o.vni == n.vni)
            .min_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)))
            .unwrap_or(n)
    }

    /// The VNIs that more than one network record claims, each with the network served (see
    /// `served`) and the ones ignored.
    pub fn vni_conflicts(&self) -> BTreeMap<Vni, (Name, Vec<Name>)> {
        let mut by_vni: BTreeMap<Vni, Vec<&Network>> = BTreeMap::new();
        for n in self.networks.values() {
            by_vni.entry(n.vni).or_default().push(n);
        }
        by_vni
            .into_iter()
            .filter(|(_, nets)| nets.len() > 1)
            .map(|(vni, mut nets)| {
                nets.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
                let winner = nets[0].name.clone();
                let losers = nets[1..].iter().map(|n| n.name.clone()).collect();
                (vni, (winner, losers))
            })
            .collect()
    }

    /// The record of node `name`.
    pub fn node(&self, name: &NodeName) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// The forwarding table of network `n` as node `me` should run it, with the path MTU to
    /// each peer (both ends' underlay MTU, the smaller, less the VXLAN overhead).
    pub fn table(&self, n: &Network, me: &NodeName) -> NetworkTable {
        let mut t = NetworkTable::new();
        t.gateway = Some(crate::edge::gateway(n.gateway));
        let underlay = self.nodes.get(me).and_then(|m| m.underlay_mtu);
        t.default_path_mtu = mtu::path_mtu(underlay, None);
        let mut flood: Vec<SocketAddr> = Vec::new();
        let mut seen = HashSet::new();
        for e in self.endpoints_of(&n.id) {
            t.arp.insert(e.ipv4, e.mac);
            t.nd.insert(e.mac.ipv6_link_local(), e.mac);
            if e.node == *me {
                t.local_macs.insert(e.mac);
                continue;
            }
            // A dead node's VTEP is withdrawn: its MACs fall back to flooding, which no longer
            // includes it either. Dead is: lease gone and not heard lately.
            if !self.is_up(&e.node) {
                continue;
            }
            let Some(node) = self.nodes.get(&e.node) else {
                continue;
            };
            let vtep = SocketAddr::V4(node.vtep);
            match mtu::path_mtu(underlay, node.underlay_mtu) {
                0 => {}
                m => {
                    t.path_mtu.insert(vtep.ip(), m);
                }
            }
            t.macs.insert(e.mac, vtep);
            if seen.insert(vtep) {
                flood.push(vtep);
            }
        }
        flood.sort();
        t.flood = flood
            .into_iter()
            .map(|addr| FloodEntry { addr, learn: false })
            .collect();
        for (id, addr) in &self.vteps {
            if *id == n.id {
                t.flood.push(FloodEntry {
                    addr: SocketAddr::V4(*addr),
                    learn: true,
                });
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::{endpoint, network};
    use crate::domain::ExternalVtep;
    use ovnet_dataplane::MacAddr;

    fn node(name: &str, ip: &str) -> Node {
        Node {
            name: NodeName::parse(name).unwrap(),
            vtep: format!("{ip}:4789").parse().unwrap(),
            agent_version: "test".into(),
            started: String::new(),
            underlay_mtu: None,
            node_id: None,
        }
    }

    fn me(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

    struct Hosts {
        view: View,
        demo: Network,
        other: Network,
    }

    /// demo: web1 on host1 (.2), web2 on host2 (.3), web3 on host3 (.4); other: db on host2.
    fn three_hosts() -> Hosts {
        let demo = network("demo", 256, "10.0.0.0/24");
        let other = network("other", 257, "10.0.1.0/24");
        let mut v = View::default();
        let mut rev = 0;
        let mut put = |v: &mut View, r: Record| {
            rev += 1;
            v.put(r, rev);
        };
        put(&mut v, Record::Network(demo.clone()));
        put(&mut v, Record::Network(other.clone()));
        for (n, ip) in [
            ("host1", "192.168.50.1"),
            ("host2", "192.168.50.2"),
            ("host3", "192.168.50.3"),
        ] {
            put(&mut v, Record::Node(node(n, ip)));
            put(&mut v, Record::Alive(me(n)));
        }
        put(
            &mut v,
            Record::Endpoint(endpoint(&demo, "web1", "host1", 2)),
        );
        put(
            &mut v,
            Record::Endpoint(endpoint(&demo, "web2", "host2", 3)),
        );
        put(
            &mut v,
            Record::Endpoint(endpoint(&demo, "web3", "host3", 4)),
        );
        put(&mut v, Record::Endpoint(endpoint(&other, "db", "host2", 2)));
        Hosts {
            view: v,
            demo,
            other,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    const LATER: i64 = 1000;

    #[test]
    fn table_points_remote_macs_at_their_nodes() {
        let Hosts { view: v, .. } = three_hosts();
        let d = v.desired(&me("host1"));
        assert_eq!(d.len(), 1, "host1 only has endpoints in demo");
        let t = &d[0].table;
        assert_eq!(d[0].network.vni.get(), 256);
        let names: Vec<&str> = d[0].endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["web1"], "one veth: host1's own endpoint");
        let mac3 = mac("02:42:0a:00:00:03");
        let mac2 = mac("02:42:0a:00:00:02");
        assert_eq!(t.macs.get(&mac3), Some(&sa("192.168.50.2:4789")));
        assert!(t.local_macs.contains(&mac2));
        assert!(!t.macs.contains_key(&mac2));
        assert_eq!(t.arp.len(), 3);
        let gw = t
            .gateway
            .expect("every network has its gateway on every host");
        assert_eq!(
            (gw.ip.to_string(), gw.mac.to_string()),
            ("10.0.0.1".into(), "02:42:0a:00:00:01".into())
        );
        assert_eq!(t.nd.get(&mac3.ipv6_link_local()), Some(&mac3));
        let flood: Vec<_> = t.flood.iter().map(|f| f.addr).collect();
        assert_eq!(
            flood,
            vec![sa("192.168.50.2:4789"), sa("192.168.50.3:4789")]
        );
        // host2 has endpoints in both networks; each gets its own table, by VNI.
        let d2 = v.desired(&me("host2"));
        assert_eq!(d2.len(), 2);
        assert_eq!(d2[1].network.name, "other");
        assert_eq!(
            d2[1].table.arp.len(),
            1,
            "demo's endpoints stay out of other's table"
        );
    }

    #[test]
    fn each_peer_gets_the_path_mtu_of_both_underlays() {
        let Hosts { view: mut v, .. } = three_hosts();
        // Nothing known yet: no limit beyond the network's MTU.
        let t = &v.desired(&me("host1"))[0].table;
        assert!(t.path_mtu.is_empty());
        assert_eq!(t.default_path_mtu, 0);
        let with_mtu = |name: &str, ip: &str, m: u32| {
            Record::Node(Node {
                underlay_mtu: Some(m),
                ..node(name, ip)
            })
        };
        v.put(with_mtu("host1", "192.168.50.1", 1500), LATER);
        v.put(with_mtu("host3", "192.168.50.3", 1400), LATER + 1);
        let t = &v.desired(&me("host1"))[0].table;
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(t.path_mtu.get(&ip("192.168.50.3")), Some(&1350));
        // host2 does not say: its path is what host1's own underlay carries.
        assert_eq!(t.path_mtu.get(&ip("192.168.50.2")), Some(&1450));
        assert_eq!(t.default_path_mtu, 1450, "learned and external VTEPs");
        // host3's side of the same paths.
        let t3 = &v.desired(&me("host3"))[0].table;
        assert_eq!(t3.path_mtu.get(&ip("192.168.50.1")), Some(&1350));
        assert_eq!(t3.path_mtu.get(&ip("192.168.50.2")), Some(&1350));
        assert_eq!(t3.default_path_mtu, 1350);
    }

    #[test]
    fn dead_nodes_are_withdrawn() {
        let Hosts { view: mut v, .. } = three_hosts();
        v.delete(&RecordKey::Alive { name: me("host3") }, LATER);
        let t = &v.desired(&me("host1"))[0].table;
        assert!(!t.macs.contains_key(&mac("02:42:0a:00:00:04")));
        assert_eq!(t.flood.len(), 1);
        // It comes back with its lease.
        v.put(Record::Alive(me("host3")), LATER + 1);
        assert_eq!(v.desired(&me("host1"))[0].table.flood.len(), 2);
    }

    /// A node whose lease expired but whose data plane is heard stays in the tables (a host
    /// cut off from etcd, not from its peers); heard no more, it goes.
    #[test]
    fn a_node_heard_lately_stays_without_its_lease() {
        let Hosts { view: mut v, .. } = three_hosts();
        assert!(v.set_heard([me("host3")].into()));
        assert!(!v.set_heard([me("host3")].into()), "no change");
        v.delete(&RecordKey::Alive { name: me("host3") }, LATER);
        let t = &v.desired(&me("host1"))[0].table;
        assert!(t.macs.contains_key(&mac("02:42:0a:00:00:04")));
        assert_eq!(t.flood.len(), 2);
        assert!(v.set_heard(BTreeSet::new()));
        assert_eq!(v.desired(&me("host1"))[0].table.flood.len(), 1);
    }

    #[test]
    fn external_vteps_join_the_flood_list_and_are_learned_from() {
        let Hosts {
            view: mut v,
            demo,
            other,
        } = three_hosts();
        let ext = |net: &Network, addr: &str| ExternalVtep {
            network_id: net.id.clone(),
            addr: addr.parse().unwrap(),
        };
        v.put(Record::Vtep(ext(&demo, "192.168.50.9:4789")), LATER);
        v.put(Record::Vtep(ext(&other, "192.168.50.8:4789")), LATER);
        let t = &v.desired(&me("host1"))[0].table;
        let learned: Vec<_> = t.flood.iter().filter(|f| f.learn).map(|f| f.addr).collect();
        assert_eq!(learned, vec![sa("192.168.50.9:4789")]);
        v.delete(
            &RecordKey::Vtep {
                network_id: demo.id.clone(),
                addr: "192.168.50.9:4789".parse().unwrap(),
            },
            LATER + 1,
        );
        assert!(v.desired(&me("host1"))[0]
            .table
            .flood
            .iter()
            .all(|f| !f.learn));
    }

    #[test]
    fn a_host_without_endpoints_in_a_network_wants_nothing_of_it() {
        let Hosts {
            view: mut v, demo, ..
        } = three_hosts();
        v.delete(
            &RecordKey::Endpoint {
                network_id: demo.id.clone(),
                name: Name::parse("container", "web1").unwrap(),
            },
            LATER,
        );
        assert!(v.desired(&me("host1")).is_empty(), "no local endpoint left");
        assert_eq!(v.endpoints_of(&demo.id).count(), 2);
    }

    /// The agent's own writes and its watch commute: a change the view has seen at a newer
    /// revision is not undone by an older one arriving late.
    #[test]
    fn late_watch_events_do_not_undo_newer_local_writes() {
        let Hosts {
            view: mut v, demo, ..
        } = three_hosts();
        let ep = endpoint(&demo, "late", "host1", 9);
        let key = Record::Endpoint(ep.clone()).key();
        // Claimed at 2000 and released at 2001 by this agent, after a failed connect.
        v.put(Record::Endpoint(ep.clone()), 2000);
        v.delete(&key, 2001);
        // Then the watch reports both.
        v.apply(&WatchEvent::Put {
            revision: 2000,
            record: Record::Endpoint(ep.clone()),
        });
        assert!(
            v.endpoints_of(&demo.id).all(|e| e.name != "late"),
            "a released endpoint came back"
        );
        v.apply(&WatchEvent::Delete {
            revision: 2001,
            key: key.clone(),
            prev: None,
        });
        // A genuinely newer change is applied.
        v.apply(&WatchEvent::Put {
            revision: 2002,
            record: Record::Endpoint(ep),
        });
        assert!(v.endpoints_of(&demo.id).any(|e| e.name == "late"));
    }

    /// A second record claiming a network's VNI does not change what this host serves,
    /// whichever came first.
    #[test]
    fn two_records_with_one_vni_do_not_flip_the_data_plane() {
        let Hosts { view: v, demo, .. } = three_hosts();
        let mut impostor = network("impostor", 256, "10.9.0.0/24");
        for (first, second) in [(true, false), (false, true)] {
            let mut v = v.clone();
            let ep = endpoint(&impostor, "evil", "host1", 2);
            let mut rev = LATER;
            let mut put = |v: &mut View, r: Record| {
                rev += 1;
                v.put(r, rev);
            };
            if first {
                put(&mut v, Record::Network(impostor.clone()));
            }
            put(&mut v, Record::Endpoint(ep));
            if second {
                put(&mut v, Record::Network(impostor.clone()));
            }
            let d = v.desired(&me("host1"));
            assert_eq!(d.len(), 1, "one network per VNI");
            let want = if impostor.id < demo.id {
                "impostor"
            } else {
                "demo"
            };
            assert_eq!(d[0].network.name, want);
            let conflicts = v.vni_conflicts();
            let (winner, losers) = &conflicts[&demo.vni];
            assert_eq!(winner, want);
            assert_eq!(losers.len(), 1);
        }
        // Written later: never served, even with the lowest ID.
        let mut late = v.clone();
        let mut young = network("young", 256, "10.8.0.0/24");
        young.created = "2030-01-01T00:00:00.000000000Z".into();
        young.id = crate::domain::NetworkId::parse(&"0".repeat(64)).unwrap();
        late.put(Record::Network(young), LATER);
        assert_eq!(late.desired(&me("host1"))[0].network.name, "demo");
        impostor.vni = Vni::new(300).unwrap();
        let mut v = v;
        v.put(Record::Network(impostor), LATER);
        assert!(v.vni_conflicts().is_empty());
    }

    #[test]
    fn revisions_the_watch_has_passed_are_forgotten() {
        let Hosts { view: mut v, .. } = three_hosts();
        for i in 0..(2 * PRUNE_EVERY) {
            let r = 10_000 + i64::from(i);
            v.apply(&WatchEvent::Put {
                revision: r,
                record: Record::Alive(me(&format!("n{i}"))),
            });
        }
        assert!(
            v.revisions.len() <= PRUNE_EVERY as usize + 1,
            "{} revisions kept",
            v.revisions.len()
        );
    }
}
