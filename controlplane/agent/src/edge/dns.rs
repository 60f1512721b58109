//! What each network's resolver answers, from the agent's view: the zone of [`ovnet_dns`] for
//! one network, rebuilt on every change of the view and swapped into the running resolver.
//!
//! A network's zone holds every endpoint of the network on every host (`NAME` and
//! `NAME.NETWORK`), the names of all networks of the cluster and the endpoint names of the
//! other networks (both NXDOMAIN, never forwarded), and whether the network is internal (then
//! nothing is forwarded upstream). Pure: no I/O.

use ovnet_dns::Zone;

use crate::domain::Network;
use crate::view::View;

/// The zone `network`'s resolver serves, as `view` says.
pub fn zone(view: &View, network: &Network) -> Zone {
    let mut z = Zone::new(network.name.as_str(), network.internal);
    for n in view.networks() {
        z.add_network(n.name.as_str());
    }
    for e in view.endpoints() {
        if e.network_id == network.id {
            z.add_endpoint(e.name.as_str(), e.ipv4);
        } else {
            z.add_foreign_endpoint(e.name.as_str());
        }
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::{endpoint, network};
    use crate::store::Record;
    use hickory_proto::rr::Name;
    use ovnet_dns::Lookup;

    fn lookup<'z>(z: &'z Zone, name: &str) -> Lookup<'z> {
        z.lookup(&Name::from_ascii(name).unwrap())
    }

    #[test]
    fn a_network_answers_its_endpoints_on_every_host_and_nothing_of_the_others() {
        let front = network("front", 256, "10.0.0.0/24");
        let back = Network {
            internal: true,
            ..network("back", 257, "10.0.1.0/24")
        };
        let mut v = View::default();
        v.put(Record::Network(front.clone()), 1);
        v.put(Record::Network(back.clone()), 2);
        v.put(Record::Endpoint(endpoint(&front, "web1", "host1", 2)), 3);
        v.put(Record::Endpoint(endpoint(&front, "web2", "host2", 3)), 4);
        v.put(Record::Endpoint(endpoint(&back, "db.v2", "host1", 2)), 5);
        let z = zone(&v, &front);
        assert!(!z.is_internal());
        let web2 = ["10.0.0.3".parse().unwrap()];
        assert_eq!(lookup(&z, "web2"), Lookup::Address(&web2));
        assert_eq!(lookup(&z, "WEB2.front."), Lookup::Address(&web2));
        assert_eq!(
            z.addresses("web1"),
            Some(&["10.0.0.2".parse().unwrap()][..])
        );
        // The other network's names, and names under it, are not ours and not forwarded.
        assert_eq!(lookup(&z, "db.v2"), Lookup::NxDomain);
        assert_eq!(lookup(&z, "web1.back"), Lookup::NxDomain);
        assert_eq!(lookup(&z, "example.com"), Lookup::Elsewhere);
        let zb = zone(&v, &back);
        assert!(zb.is_internal());
        assert_eq!(lookup(&zb, "web1"), Lookup::NxDomain);
        assert_eq!(
            lookup(&zb, "db.v2"),
            Lookup::Address(&["10.0.1.2".parse().unwrap()])
        );
    }
}
