//! The agent's view of the cluster, and what it means for this host's data plane.
//!
//! [`View`] is built from a store snapshot and kept current by watch events. From it,
//! [`View::desired`] derives, for every network with an endpoint on this node, the
//! [`NetworkTable`] the data plane should run: remote MACs behind their nodes' VTEPs (alive nodes
//! only), IP → MAC for every endpoint (ARP and ND answers, anti-spoofing), the flood list (alive
//! nodes with endpoints in the network, plus external VTEPs, which are learned from). Pure
//! functions, no I/O: the reconciler applies the result.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ovnet_dataplane::{FloodEntry, MacAddr, NetworkTable};
use ovnet_proto::{Endpoint, ExternalVtep, Network, Node};

use crate::store::{Record, RecordKey, State, WatchEvent, VXLAN_PORT};

/// Records known to this agent, keyed as in etcd.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// By name.
    pub networks: BTreeMap<String, Network>,
    /// By (network ID, endpoint name).
    pub endpoints: BTreeMap<(String, String), Endpoint>,
    /// By name.
    pub nodes: BTreeMap<String, Node>,
    /// Names of nodes whose liveness lease is held.
    pub alive: BTreeSet<String>,
    /// By (network ID, address, port).
    pub vteps: BTreeMap<(String, Ipv4Addr, u16), ExternalVtep>,
}

/// What one network should look like on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// The network record.
    pub network: Network,
    /// Its forwarding table.
    pub table: NetworkTable,
}

fn vtep_key(v: &ExternalVtep) -> Option<(String, Ipv4Addr, u16)> {
    let ip = v.ip.parse().ok()?;
    let port = u16::try_from(v.port)
        .ok()
        .filter(|&p| p != 0)
        .unwrap_or(VXLAN_PORT);
    Some((v.network_id.clone(), ip, port))
}

/// The VTEP address of a node, if its record is usable.
pub fn node_vtep(n: &Node) -> Option<SocketAddr> {
    let ip: IpAddr = n.vtep_ip.parse().ok()?;
    let port = u16::try_from(n.vtep_port)
        .ok()
        .filter(|&p| p != 0)
        .unwrap_or(VXLAN_PORT);
    Some(SocketAddr::new(ip, port))
}

impl View {
    /// The view of a snapshot.
    pub fn from_state(state: State) -> View {
        let mut v = View::default();
        for n in state.networks {
            v.networks.insert(n.name.clone(), n);
        }
        for e in state.endpoints {
            v.endpoints
                .insert((e.network_id.clone(), e.name.clone()), e);
        }
        for (n, alive) in state.nodes {
            if alive {
                v.alive.insert(n.name.clone());
            }
            v.nodes.insert(n.name.clone(), n);
        }
        for x in state.vteps {
            if let Some(k) = vtep_key(&x) {
                v.vteps.insert(k, x);
            }
        }
        v
    }

    /// Applies one watch event (a `Resync` changes nothing: the caller re-lists).
    pub fn apply(&mut self, ev: &WatchEvent) {
        match ev {
            WatchEvent::Put { record, .. } => self.put(record.clone()),
            WatchEvent::Delete { key, .. } => self.delete(key),
            WatchEvent::Resync { .. } => {}
        }
    }

    /// Inserts or replaces a record.
    pub fn put(&mut self, record: Record) {
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
                if let Some(k) = vtep_key(&x) {
                    self.vteps.insert(k, x);
                }
            }
        }
    }

    /// Removes a record.
    pub fn delete(&mut self, key: &RecordKey) {
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
            RecordKey::Vtep {
                network_id,
                ip,
                port,
            } => {
                self.vteps.remove(&(network_id.clone(), *ip, *port));
            }
        }
    }

    /// The network with this ID.
    pub fn network_by_id(&self, id: &str) -> Option<&Network> {
        self.networks.values().find(|n| n.id == id)
    }

    /// Endpoints of one network.
    pub fn endpoints_of<'a>(
        &'a self,
        network_id: &'a str,
    ) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints
            .range((network_id.to_string(), String::new())..)
            .take_while(move |((id, _), _)| id == network_id)
            .map(|(_, e)| e)
    }

    /// Endpoints served by node `me`.
    pub fn local_endpoints<'a>(&'a self, me: &'a str) -> impl Iterator<Item = &'a Endpoint> + 'a {
        self.endpoints.values().filter(move |e| e.node == me)
    }

    /// Nodes with at least one endpoint in the network, sorted by name (the network's peers).
    pub fn peers(&self, network_id: &str) -> Vec<&Node> {
        let names: BTreeSet<&str> = self
            .endpoints_of(network_id)
            .map(|e| e.node.as_str())
            .collect();
        names
            .into_iter()
            .filter_map(|n| self.nodes.get(n))
            .collect()
    }

    /// The state each network with an endpoint on node `me` should have.
    pub fn desired(&self, me: &str) -> Vec<Desired> {
        let ids: BTreeSet<&str> = self
            .local_endpoints(me)
            .map(|e| e.network_id.as_str())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.network_by_id(id))
            .map(|n| Desired {
                network: n.clone(),
                table: self.table(n, me),
            })
            .collect()
    }

    /// The forwarding table of network `n` as node `me` should run it.
    pub fn table(&self, n: &Network, me: &str) -> NetworkTable {
        let mut t = NetworkTable::new();
        let mut flood: Vec<SocketAddr> = Vec::new();
        let mut seen = HashSet::new();
        for e in self.endpoints_of(&n.id) {
            let (Ok(mac), Ok(ip)) = (e.mac.parse::<MacAddr>(), e.ipv4.parse::<Ipv4Addr>()) else {
                log::warn!(
                    "endpoint {} of network {} has a bad MAC {:?} or address {:?}: ignored",
                    e.name,
                    n.name,
                    e.mac,
                    e.ipv4
                );
                continue;
            };
            t.arp.insert(ip, mac);
            t.nd.insert(mac.ipv6_link_local(), mac);
            if e.node == me {
                t.local_macs.insert(mac);
                continue;
            }
            // A dead node's VTEP is withdrawn: its MACs fall back to flooding, which no longer
            // includes it either.
            if !self.alive.contains(&e.node) {
                continue;
            }
            let Some(vtep) = self.nodes.get(&e.node).and_then(node_vtep) else {
                continue;
            };
            t.macs.insert(mac, vtep);
            if seen.insert(vtep) {
                flood.push(vtep);
            }
        }
        flood.sort();
        t.flood = flood
            .into_iter()
            .map(|addr| FloodEntry { addr, learn: false })
            .collect();
        for ((id, ip, port), _) in self.vteps.range((n.id.clone(), Ipv4Addr::UNSPECIFIED, 0)..) {
            if *id != n.id {
                break;
            }
            t.flood.push(FloodEntry {
                addr: SocketAddr::new((*ip).into(), *port),
                learn: true,
            });
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, id: &str, vni: u32) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            vni,
            subnet: "10.0.0.0/24".into(),
            gateway: "10.0.0.1".into(),
            mtu: 1450,
            driver: "overlay".into(),
            ..Default::default()
        }
    }

    fn ep(net_id: &str, name: &str, node: &str, last: u8) -> Endpoint {
        Endpoint {
            id: format!("{name}-id"),
            network_id: net_id.into(),
            name: name.into(),
            node: node.into(),
            mac: format!("02:42:0a:00:00:{last:02x}"),
            ipv4: format!("10.0.0.{last}"),
            ..Default::default()
        }
    }

    fn node(name: &str, ip: &str) -> Node {
        Node {
            name: name.into(),
            vtep_ip: ip.into(),
            vtep_port: 4789,
            ..Default::default()
        }
    }

    fn three_hosts() -> View {
        let mut v = View::default();
        v.put(Record::Network(net("demo", "aaaa", 256)));
        v.put(Record::Network(net("other", "bbbb", 257)));
        for (n, ip) in [
            ("host1", "192.168.50.1"),
            ("host2", "192.168.50.2"),
            ("host3", "192.168.50.3"),
        ] {
            v.put(Record::Node(node(n, ip)));
            v.put(Record::Alive(n.into()));
        }
        v.put(Record::Endpoint(ep("aaaa", "web1", "host1", 2)));
        v.put(Record::Endpoint(ep("aaaa", "web2", "host2", 3)));
        v.put(Record::Endpoint(ep("aaaa", "web3", "host3", 4)));
        v.put(Record::Endpoint(ep("bbbb", "db", "host2", 2)));
        v
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn table_points_remote_macs_at_their_nodes() {
        let v = three_hosts();
        let d = v.desired("host1");
        assert_eq!(d.len(), 1, "host1 only has endpoints in demo");
        let t = &d[0].table;
        assert_eq!(d[0].network.vni, 256);
        let mac3: MacAddr = "02:42:0a:00:00:03".parse().unwrap();
        let mac2: MacAddr = "02:42:0a:00:00:02".parse().unwrap();
        assert_eq!(t.macs.get(&mac3), Some(&sa("192.168.50.2:4789")));
        assert!(t.local_macs.contains(&mac2));
        assert!(!t.macs.contains_key(&mac2));
        assert_eq!(t.arp.len(), 3);
        assert_eq!(t.nd.get(&mac3.ipv6_link_local()), Some(&mac3));
        let flood: Vec<_> = t.flood.iter().map(|f| f.addr).collect();
        assert_eq!(
            flood,
            vec![sa("192.168.50.2:4789"), sa("192.168.50.3:4789")]
        );
        // host2 has endpoints in both networks; each gets its own table.
        let d2 = v.desired("host2");
        assert_eq!(d2.len(), 2);
        assert_eq!(d2[1].network.name, "other");
        assert_eq!(
            d2[1].table.arp.len(),
            1,
            "demo's endpoints stay out of other's table"
        );
    }

    #[test]
    fn dead_nodes_are_withdrawn() {
        let mut v = three_hosts();
        v.delete(&RecordKey::Alive {
            name: "host3".into(),
        });
        let t = &v.desired("host1")[0].table;
        let mac4: MacAddr = "02:42:0a:00:00:04".parse().unwrap();
        assert!(!t.macs.contains_key(&mac4));
        assert_eq!(t.flood.len(), 1);
        // It comes back with its lease.
        v.put(Record::Alive("host3".into()));
        assert_eq!(v.desired("host1")[0].table.flood.len(), 2);
    }

    #[test]
    fn external_vteps_join_the_flood_list_and_are_learned_from() {
        let mut v = three_hosts();
        v.put(Record::Vtep(ExternalVtep {
            network_id: "aaaa".into(),
            ip: "192.168.50.9".into(),
            port: 0,
        }));
        v.put(Record::Vtep(ExternalVtep {
            network_id: "bbbb".into(),
            ip: "192.168.50.8".into(),
            port: 4789,
        }));
        let t = &v.desired("host1")[0].table;
        let ext: Vec<_> = t.flood.iter().filter(|f| f.learn).map(|f| f.addr).collect();
        assert_eq!(ext, vec![sa("192.168.50.9:4789")]);
        v.delete(&RecordKey::Vtep {
            network_id: "aaaa".into(),
            ip: "192.168.50.9".parse().unwrap(),
            port: 4789,
        });
        assert!(v.desired("host1")[0].table.flood.iter().all(|f| !f.learn));
    }

    #[test]
    fn peers_and_disconnect() {
        let mut v = three_hosts();
        let names: Vec<_> = v.peers("aaaa").iter().map(|n| n.name.clone()).collect();
        assert_eq!(names, ["host1", "host2", "host3"]);
        v.delete(&RecordKey::Endpoint {
            network_id: "aaaa".into(),
            name: "web1".into(),
        });
        assert!(v.desired("host1").is_empty(), "no local endpoint left");
        assert_eq!(v.peers("aaaa").len(), 2);
    }

    #[test]
    fn bad_records_are_skipped_not_fatal() {
        let mut v = three_hosts();
        let mut bad = ep("aaaa", "broken", "host2", 9);
        bad.mac = "not-a-mac".into();
        v.put(Record::Endpoint(bad));
        let mut badnode = node("host2", "nonsense");
        badnode.vtep_port = 0;
        v.put(Record::Node(badnode));
        let t = &v.desired("host1")[0].table;
        assert_eq!(t.arp.len(), 3);
        assert_eq!(t.flood.len(), 1, "host2's VTEP is unusable, host3 remains");
    }
}
