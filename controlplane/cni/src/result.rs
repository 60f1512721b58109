//! The success results: ADD's (interfaces, IPs, routes, DNS; SPEC.md section 5) and VERSION's.
//!
//! The same types read a `prevResult`. Keys this plugin does not know (another plugin's, or a
//! later version's) are kept in `extra` and written back, so a result passed through a chain
//! loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// ADD's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Success {
    /// The protocol version of the result: the configuration's.
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    /// Every interface the attachment made, host ones included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses, each naming its interface by index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes made in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// The resolver to use.
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
    /// Keys not named above, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An interface of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU (CNI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The container's namespace path (`CNI_NETNS`) for a container interface; absent for a
    /// host one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Keys not named above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An address of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"`: results of versions before 1.0.0 carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The address with its prefix length, e.g. `10.0.0.2/24`.
    pub address: String,
    /// The subnet's gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index of its interface in `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Keys not named above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A route of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination in CIDR notation, `0.0.0.0/0` for the default route.
    pub dst: String,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// Keys not named above (`mtu`, `advmss`, `priority`, `table`, `scope`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// DNS settings of the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// The local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// Whether nothing is set (then the key is left out).
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl Success {
    /// `prev` (a `prevResult`) with `mine` appended: its interfaces after the previous ones,
    /// its addresses pointing at them, its routes after the previous ones; `mine`'s DNS where
    /// `prev` had none.
    pub fn chain(prev: Success, mine: Success) -> Success {
        let offset = prev.interfaces.len();
        let mut out = prev;
        out.cni_version = mine.cni_version;
        out.interfaces.extend(mine.interfaces);
        out.ips.extend(mine.ips.into_iter().map(|mut ip| {
            ip.interface = ip.interface.map(|i| i + offset);
            ip
        }));
        out.routes.extend(mine.routes);
        if out.dns.is_empty() {
            out.dns = mine.dns;
        }
        out
    }
}

/// VERSION's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionInfo {
    /// The version given on input, or the latest.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Every version this plugin speaks.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_result_reads_and_writes_unknown_keys_unchanged() {
        let prev = json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "mac": "02:42:0a:00:00:02", "sandbox": "/x",
                            "socketPath": "/s"}],
            "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1", "mtu": 1400}],
            "dns": {"nameservers": ["10.0.0.1"]},
            "someOtherPlugin": {"k": 1}
        });
        let r: Success = serde_json::from_value(prev.clone()).unwrap();
        assert_eq!(r.interfaces[0].extra["socketPath"], "/s");
        assert_eq!(r.routes[0].extra["mtu"], 1400);
        assert_eq!(serde_json::to_value(&r).unwrap(), prev);
    }

    #[test]
    fn chaining_appends_and_reindexes() {
        let prev: Success = serde_json::from_value(json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "sandbox": "/x"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}]
        }))
        .unwrap();
        let mine = Success {
            cni_version: "1.0.0".into(),
            interfaces: vec![
                Interface {
                    name: "ovvabc".into(),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    sandbox: Some("/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: "10.0.0.2/24".into(),
                interface: Some(1),
                ..Default::default()
            }],
            dns: Dns {
                nameservers: vec!["10.0.0.1".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let out = Success::chain(prev, mine);
        assert_eq!(out.interfaces.len(), 3);
        assert_eq!(out.ips[1].interface, Some(2));
        assert_eq!(out.dns.nameservers, ["10.0.0.1"]);
        let v = serde_json::to_value(&out).unwrap();
        assert!(v.get("routes").is_none(), "empty lists are left out: {v}");
    }
}
