//! The etcd key layout, built and parsed in one place.
//!
//! Every key is `{prefix}{kind}/...`; the layout is documented in [`crate::store`]. Names are
//! validated by [`crate::ipam::validate_name`] (no `/`), network IDs are hex, so splitting a
//! key on `/` is unambiguous.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "/ovnet/";

/// Builds the keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// Which record a key holds (claims such as `vnis/` are not records and have no variant).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// `{p}networks/{name}`
    Network {
        /// Network name.
        name: String,
    },
    /// `{p}endpoints/{network_id}/{name}`
    Endpoint {
        /// Network ID.
        network_id: String,
        /// Endpoint (container) name.
        name: String,
    },
    /// `{p}nodes/{name}`
    Node {
        /// Node name.
        name: String,
    },
    /// `{p}alive/{name}` (leased)
    Alive {
        /// Node name.
        name: String,
    },
    /// `{p}vteps/{network_id}/{ip}:{port}`
    Vtep {
        /// Network ID.
        network_id: String,
        /// Underlay address.
        ip: Ipv4Addr,
        /// Underlay UDP port.
        port: u16,
    },
}

impl Keys {
    /// Keys under `prefix`; a missing trailing `/` is added, an empty prefix means
    /// [`DEFAULT_PREFIX`].
    pub fn new(prefix: &str) -> Self {
        let mut prefix = if prefix.is_empty() {
            DEFAULT_PREFIX.to_owned()
        } else {
            prefix.to_owned()
        };
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { prefix }
    }

    /// The prefix, ending in `/`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{p}networks/`
    pub fn networks(&self) -> String {
        format!("{}networks/", self.prefix)
    }

    /// `{p}networks/{name}` → `Network`
    pub fn network(&self, name: &str) -> String {
        format!("{}networks/{name}", self.prefix)
    }

    /// `{p}vnis/{vni}` → network ID (claim)
    pub fn vni(&self, vni: u32) -> String {
        format!("{}vnis/{vni}", self.prefix)
    }

    /// `{p}subnets/`
    pub fn subnets(&self) -> String {
        format!("{}subnets/", self.prefix)
    }

    /// `{p}subnets/{network_addr}_{len}` → network ID (claim)
    pub fn subnet(&self, net: &Ipv4Net) -> String {
        format!(
            "{}subnets/{}_{}",
            self.prefix,
            net.network(),
            net.prefix_len()
        )
    }

    /// `{p}endpoints/{network_id}/`
    pub fn endpoints(&self, network_id: &str) -> String {
        format!("{}endpoints/{network_id}/", self.prefix)
    }

    /// `{p}endpoints/{network_id}/{name}` → `Endpoint`
    pub fn endpoint(&self, network_id: &str, name: &str) -> String {
        format!("{}endpoints/{network_id}/{name}", self.prefix)
    }

    /// `{p}ips/{network_id}/`
    pub fn ips(&self, network_id: &str) -> String {
        format!("{}ips/{network_id}/", self.prefix)
    }

    /// `{p}ips/{network_id}/{ipv4}` → endpoint ID (claim)
    pub fn ip(&self, network_id: &str, ip: Ipv4Addr) -> String {
        format!("{}ips/{network_id}/{ip}", self.prefix)
    }

    /// `{p}nodes/`
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.prefix)
    }

    /// `{p}nodes/{name}` → `Node`
    pub fn node(&self, name: &str) -> String {
        format!("{}nodes/{name}", self.prefix)
    }

    /// `{p}alive/`
    pub fn alives(&self) -> String {
        format!("{}alive/", self.prefix)
    }

    /// `{p}alive/{name}` → empty, leased
    pub fn alive(&self, name: &str) -> String {
        format!("{}alive/{name}", self.prefix)
    }

    /// `{p}vteps/{network_id}/`
    pub fn vteps(&self, network_id: &str) -> String {
        format!("{}vteps/{network_id}/", self.prefix)
    }

    /// `{p}vteps/{network_id}/{ip}:{port}` → `ExternalVtep`
    pub fn vtep(&self, network_id: &str, ip: Ipv4Addr, port: u16) -> String {
        format!("{}vteps/{network_id}/{ip}:{port}", self.prefix)
    }

    /// Which record `key` holds, or `None` for claims, foreign and malformed keys.
    pub fn parse(&self, key: &[u8]) -> Option<RecordKey> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        let (kind, rest) = rest.split_once('/')?;
        let one = |s: &str| (!s.is_empty() && !s.contains('/')).then(|| s.to_owned());
        let two = |s: &str| {
            let (a, b) = s.split_once('/')?;
            Some((one(a)?, one(b)?))
        };
        match kind {
            "networks" => Some(RecordKey::Network { name: one(rest)? }),
            "nodes" => Some(RecordKey::Node { name: one(rest)? }),
            "alive" => Some(RecordKey::Alive { name: one(rest)? }),
            "endpoints" => {
                let (network_id, name) = two(rest)?;
                Some(RecordKey::Endpoint { network_id, name })
            }
            "vteps" => {
                let (network_id, addr) = two(rest)?;
                let (ip, port) = addr.rsplit_once(':')?;
                Some(RecordKey::Vtep {
                    network_id,
                    ip: ip.parse().ok()?,
                    port: port.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/t");
        assert_eq!(k.prefix(), "/t/");
        assert_eq!(k.network("demo"), "/t/networks/demo");
        assert_eq!(k.vni(256), "/t/vnis/256");
        assert_eq!(
            k.subnet(&"10.0.1.0/24".parse().unwrap()),
            "/t/subnets/10.0.1.0_24"
        );
        assert_eq!(k.endpoint("ab", "web1"), "/t/endpoints/ab/web1");
        assert_eq!(k.ip("ab", Ipv4Addr::new(10, 0, 0, 2)), "/t/ips/ab/10.0.0.2");
        assert_eq!(k.node("n1"), "/t/nodes/n1");
        assert_eq!(k.alive("n1"), "/t/alive/n1");
        assert_eq!(
            k.vtep("ab", Ipv4Addr::new(192, 0, 2, 1), 4789),
            "/t/vteps/ab/192.0.2.1:4789"
        );
        assert_eq!(Keys::new("").prefix(), DEFAULT_PREFIX);
    }

    #[test]
    fn parse_round_trips() {
        let k = Keys::default();
        let ip = Ipv4Addr::new(192, 0, 2, 1);
        let cases = [
            (
                k.network("demo"),
                RecordKey::Network {
                    name: "demo".into(),
                },
            ),
            (
                k.endpoint("ab", "web1"),
                RecordKey::Endpoint {
                    network_id: "ab".into(),
                    name: "web1".into(),
                },
            ),
            (k.node("n1"), RecordKey::Node { name: "n1".into() }),
            (k.alive("n1"), RecordKey::Alive { name: "n1".into() }),
            (
                k.vtep("ab", ip, 4789),
                RecordKey::Vtep {
                    network_id: "ab".into(),
                    ip,
                    port: 4789,
                },
            ),
        ];
        for (key, want) in cases {
            assert_eq!(k.parse(key.as_bytes()), Some(want), "{key}");
        }
        for other in [
            k.vni(1),
            k.subnet(&"10.0.0.0/24".parse().unwrap()),
            k.ip("ab", ip),
            "/other/networks/demo".to_owned(),
            k.networks(),
            format!("{}x/y", k.networks()),
            "/ovnet/vteps/ab/192.0.2.1".to_owned(),
            "/ovnet/endpoints/ab".to_owned(),
        ] {
            assert_eq!(k.parse(other.as_bytes()), None, "{other}");
        }
    }
}
