//! A network's names as the resolver sees them: its endpoints (name → IPv4 addresses), whether
//! it is internal, and the names it must never let leak upstream (every network of the cluster,
//! endpoints of other networks). Built by the caller from its view of the cluster, then swapped
//! into a running resolver whole ([`crate::Resolver::update`]).
//!
//! [`Zone::lookup`] is the whole naming policy, pure: it says whether a name is an address here,
//! a reverse name of one, known not to exist, or somebody else's (to forward).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use hickory_proto::rr::Name;

/// TTL of every record the resolver answers with itself, in seconds: Docker's embedded DNS uses
/// 600 (libnetwork `respTTL`), so clients cache our names as long as they cache Docker's.
pub const TTL: u32 = 600;

/// The reverse-lookup suffix for IPv4 addresses (RFC 1035 section 3.5), lowercase.
const IN_ADDR_ARPA: &str = ".in-addr.arpa";

/// One network's names. Names are compared ASCII case-insensitively and without the trailing dot.
#[derive(Debug, Clone, Default)]
pub struct Zone {
    network: String,
    network_key: String,
    internal: bool,
    /// Lowercase endpoint name → its addresses, in the order added.
    endpoints: HashMap<String, Vec<Ipv4Addr>>,
    /// Address → `NAME.NETWORK.` of the first endpoint added with it.
    reverse: HashMap<Ipv4Addr, Name>,
    /// Lowercase names of every network in the cluster, this one included.
    networks: HashSet<String>,
    /// Lowercase endpoint names of other networks.
    foreign: HashSet<String>,
}

/// What a name is, for one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'z> {
    /// An endpoint of this network (`NAME` or `NAME.NETWORK`), with its addresses.
    Address(&'z [Ipv4Addr]),
    /// `d.c.b.a.in-addr.arpa` for an endpoint's address: the `NAME.NETWORK.` it points to.
    Pointer(&'z Name),
    /// A name the resolver owns and that does not exist here: a single label, `X.NETWORK` for
    /// any network of the cluster, an endpoint of another network.
    NxDomain,
    /// Not ours: forward it upstream (or refuse, on an internal network).
    Elsewhere,
}

/// The lowercase dotted form of a name without the trailing dot, or `None` when a label holds a
/// byte that no endpoint or network name can contain (a dot, a space, a control or non-ASCII byte).
fn key(name: &Name) -> Option<String> {
    let mut k = String::with_capacity(name.len());
    for label in name.iter() {
        if label.is_empty() || !label.iter().all(|b| b.is_ascii_graphic() && *b != b'.') {
            return None;
        }
        if !k.is_empty() {
            k.push('.');
        }
        k.extend(label.iter().map(|b| char::from(b.to_ascii_lowercase())));
    }
    Some(k)
}

/// The address of `d.c.b.a.in-addr.arpa` (lowercase key), if it is one.
fn reverse_v4(key: &str) -> Option<Ipv4Addr> {
    let digits = key.strip_suffix(IN_ADDR_ARPA)?;
    let mut octets = [0u8; 4];
    let mut parts = digits.split('.');
    for slot in octets.iter_mut().rev() {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = part.parse().ok()?;
    }
    match parts.next() {
        None => Some(Ipv4Addr::from(octets)),
        Some(_) => None,
    }
}

/// `NAME.NETWORK.` as a DNS name, if it is a valid one (labels of 1 to 63 bytes, 255 in all).
fn pointer_target(name: &str, network: &str) -> Option<Name> {
    let labels = name.split('.').chain(network.split('.')).map(str::as_bytes);
    if name.split('.').chain(network.split('.')).any(str::is_empty) {
        return None;
    }
    Name::from_labels(labels).ok()
}

impl Zone {
    /// An empty zone for network `network` (its name as users type it after the dot), internal
    /// or not. The network itself counts as one of the cluster's networks.
    pub fn new(network: &str, internal: bool) -> Zone {
        let network_key = network.trim_end_matches('.').to_ascii_lowercase();
        let mut networks = HashSet::new();
        if !network_key.is_empty() {
            networks.insert(network_key.clone());
        }
        Zone {
            network: network.trim_end_matches('.').to_string(),
            network_key,
            internal,
            networks,
            ..Zone::default()
        }
    }

    /// Adds endpoint `name` of this network with address `ip` (call again for more addresses).
    /// `ip`'s reverse name answers `name.network.` unless an earlier endpoint has `ip` already.
    pub fn add_endpoint(&mut self, name: &str, ip: Ipv4Addr) -> &mut Zone {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if key.is_empty() {
            return self;
        }
        let ips = self.endpoints.entry(key).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
        }
        if !self.reverse.contains_key(&ip) {
            if let Some(target) = pointer_target(name.trim_end_matches('.'), &self.network) {
                self.reverse.insert(ip, target);
            }
        }
        self
    }

    /// Adds the name of a network of the cluster: `X.NAME` is then NXDOMAIN here for every `X`
    /// (unless `X.NAME` is itself an endpoint name of this network).
    pub fn add_network(&mut self, name: &str) -> &mut Zone {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if !key.is_empty() {
            self.networks.insert(key);
        }
        self
    }

    /// Adds the name of an endpoint of another network, so that it is NXDOMAIN here. Single-label
    /// names are NXDOMAIN anyway; this matters for names with dots (`web.v2`), which would
    /// otherwise be forwarded.
    pub fn add_foreign_endpoint(&mut self, name: &str) -> &mut Zone {
        let key = name.trim_end_matches('.').to_ascii_lowercase();
        if !key.is_empty() {
            self.foreign.insert(key);
        }
        self
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// Whether the network is internal (nothing is forwarded upstream).
    pub fn is_internal(&self) -> bool {
        self.internal
    }

    /// The addresses of endpoint `name` (any case, trailing dot or not), if it is on this network.
    pub fn addresses(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.endpoints
            .get(&name.trim_end_matches('.').to_ascii_lowercase())
            .map(Vec::as_slice)
    }

    /// What `name` is on this network. The order of the rules matters: an endpoint's own name
    /// wins over everything, then `NAME.NETWORK`, then single labels and other networks'
    /// endpoints (NXDOMAIN), the reverse names of our endpoints, and last the names under any
    /// network of the cluster (NXDOMAIN). A network named like a top-level domain (`com`) thus
    /// hides that domain from the containers of the cluster, as the user asked for.
    pub fn lookup(&self, name: &Name) -> Lookup<'_> {
        let labels = name.num_labels();
        if labels == 0 {
            return Lookup::Elsewhere;
        }
        let Some(key) = key(name) else {
            return if labels == 1 {
                Lookup::NxDomain
            } else {
                Lookup::Elsewhere
            };
        };
        if let Some(ips) = self.endpoints.get(&key) {
            return Lookup::Address(ips);
        }
        if !self.network_key.is_empty() {
            if let Some(host) = key
                .strip_suffix(self.network_key.as_str())
                .and_then(|p| p.strip_suffix('.'))
            {
                return match self.endpoints.get(host) {
                    Some(ips) => Lookup::Address(ips),
                    None => Lookup::NxDomain,
                };
            }
        }
        if labels == 1 || self.foreign.contains(&key) {
            return Lookup::NxDomain;
        }
        // Before the network names, so that a network named `arpa` cannot hide our own PTRs.
        if let Some(target) = reverse_v4(&key).and_then(|ip| self.reverse.get(&ip)) {
            return Lookup::Pointer(target);
        }
        // The name of a network, or anything under one.
        let mut rest = key.as_str();
        loop {
            if self.networks.contains(rest) {
                return Lookup::NxDomain;
            }
            match rest.split_once('.') {
                Some((_, tail)) => rest = tail,
                None => break,
            }
        }
        Lookup::Elsewhere
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn zone() -> Zone {
        let mut z = Zone::new("front", false);
        z.add_endpoint("web", Ipv4Addr::new(10, 0, 0, 2))
            .add_endpoint("Db.Primary", Ipv4Addr::new(10, 0, 0, 3))
            .add_network("back")
            .add_network("corp.net")
            .add_foreign_endpoint("api.v2");
        z
    }

    const WEB: &[Ipv4Addr] = &[Ipv4Addr::new(10, 0, 0, 2)];

    #[test]
    fn endpoint_names_any_case_with_or_without_dot() {
        let z = zone();
        for n in [
            "web",
            "web.",
            "WEB",
            "wEb.",
            "web.front",
            "WEB.FRONT.",
            "web.Front",
        ] {
            assert_eq!(z.lookup(&name(n)), Lookup::Address(WEB), "{n}");
        }
        let db = [Ipv4Addr::new(10, 0, 0, 3)];
        assert_eq!(z.lookup(&name("db.primary")), Lookup::Address(&db));
        assert_eq!(z.lookup(&name("DB.PRIMARY.front.")), Lookup::Address(&db));
    }

    #[test]
    fn names_not_here_are_nxdomain_never_forwarded() {
        let z = zone();
        for n in [
            "other",
            "other.",
            "nope.front",
            "front",
            "back",
            "web.back",
            "x.y.back.",
            "corp.net",
            "a.corp.net",
            "API.v2",
        ] {
            assert_eq!(z.lookup(&name(n)), Lookup::NxDomain, "{n}");
        }
    }

    #[test]
    fn other_names_are_elsewhere() {
        let z = zone();
        for n in [
            ".",
            "example.com",
            "web.example.com",
            "3.0.0.10.in-addr.arpa.x",
        ] {
            assert_eq!(z.lookup(&name(n)), Lookup::Elsewhere, "{n}");
        }
        // An address that is not an endpoint's, and malformed reverse names.
        for n in [
            "9.0.0.10.in-addr.arpa",
            "0.10.in-addr.arpa",
            "1.2.0.0.10.in-addr.arpa",
            "256.0.0.10.in-addr.arpa",
            "2.0.0.10.ip6.arpa",
        ] {
            assert_eq!(z.lookup(&name(n)), Lookup::Elsewhere, "{n}");
        }
    }

    #[test]
    fn reverse_names_point_to_name_dot_network() {
        let z = zone();
        let Lookup::Pointer(t) = z.lookup(&name("2.0.0.10.IN-ADDR.ARPA.")) else {
            panic!("no pointer");
        };
        assert_eq!(t, &name("web.front."));
        let Lookup::Pointer(t) = z.lookup(&name("3.0.0.10.in-addr.arpa")) else {
            panic!("no pointer");
        };
        assert_eq!(t.to_ascii(), "Db.Primary.front.");
    }

    #[test]
    fn a_network_named_like_a_tld_shadows_it_but_not_our_ptrs() {
        let mut z = zone();
        z.add_network("arpa").add_network("com");
        assert_eq!(z.lookup(&name("example.com")), Lookup::NxDomain);
        assert_eq!(z.lookup(&name("9.0.0.10.in-addr.arpa")), Lookup::NxDomain);
        assert!(matches!(
            z.lookup(&name("2.0.0.10.in-addr.arpa")),
            Lookup::Pointer(_)
        ));
    }

    #[test]
    fn odd_labels_never_match_but_single_labels_stay_here() {
        let z = zone();
        let odd = Name::from_labels([&b"w\x00b"[..]]).unwrap();
        assert_eq!(z.lookup(&odd), Lookup::NxDomain);
        let dotted = Name::from_labels([&b"web.front"[..], &b"com"[..]]).unwrap();
        assert_eq!(z.lookup(&dotted), Lookup::Elsewhere);
    }

    #[test]
    fn reverse_v4_parses_only_four_octets() {
        assert_eq!(
            reverse_v4("4.3.2.1.in-addr.arpa"),
            Some(Ipv4Addr::new(1, 2, 3, 4))
        );
        for bad in ["3.2.1.in-addr.arpa", "+4.3.2.1.in-addr.arpa", "4.3.2.1"] {
            assert_eq!(reverse_v4(bad), None, "{bad}");
        }
    }

    #[test]
    fn endpoint_with_two_addresses_and_shared_address() {
        let mut z = Zone::new("n", true);
        z.add_endpoint("a", Ipv4Addr::new(10, 0, 0, 2))
            .add_endpoint("a", Ipv4Addr::new(10, 0, 0, 4))
            .add_endpoint("a", Ipv4Addr::new(10, 0, 0, 4))
            .add_endpoint("b", Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(z.addresses("A").map(<[_]>::len), Some(2));
        let Lookup::Pointer(t) = z.lookup(&name("2.0.0.10.in-addr.arpa")) else {
            panic!("no pointer");
        };
        assert_eq!(t, &name("a.n."));
        assert!(z.is_internal());
        assert_eq!(z.network(), "n");
    }
}
