//! The network configuration on stdin, and the protocol versions this plugin speaks.
//!
//! The plugin's own keys are `network` (the ovnet network, required) and `agent` (the agent's
//! API socket). The keys of the specification are taken as such (`cniVersion`, `name`, `type`,
//! `prevResult`, `runtimeConfig`, `args`, `capabilities`, `dns`, `cni.dev/...`). Any other
//! key is refused (code 2), so a misspelt `"netwrok"` is an error rather than a default, and
//! `ipam` is refused too: ovnet's agent allocates the addresses.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{
    CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG, UNSUPPORTED_FIELD,
};
use crate::result::{Dns, Success};

/// The versions this plugin speaks, oldest first. Results of versions before 1.0.0 carry
/// `"version": "4"` in each address; CHECK exists from 0.4.0, GC and STATUS from 1.1.0.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The latest version, used where the input names none (VERSION, errors before a version is
/// known).
pub const LATEST: &str = "1.1.0";

/// Where the agent serves its API unless the configuration says otherwise (the agent's
/// `--api` default).
pub const DEFAULT_AGENT: &str = "/run/ovnet/agent.sock";

/// Bytes of configuration read at most: a configuration with a `prevResult` is a few KB.
pub const MAX_CONFIG: usize = 1 << 20;

/// Keys of the specification, conventions and runtimes that this plugin accepts and ignores.
const IGNORED_KEYS: [&str; 6] = [
    "runtimeConfig",
    "args",
    "capabilities",
    "cniVersions",
    "disableCheck",
    "ipMasq",
];

/// A protocol version as `(major, minor, patch)`.
type Version = (u32, u32, u32);

fn parse_version(s: &str) -> Option<Version> {
    let mut parts = s.split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

/// An attachment the runtime still holds (GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct GcAttachment {
    /// `CNI_CONTAINERID` at ADD.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME` at ADD.
    pub ifname: String,
}

/// The configuration as it arrives.
#[derive(Debug, Deserialize)]
struct Wire {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    _kind: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    agent: Option<PathBuf>,
    #[serde(rename = "prevResult", default)]
    prev_result: Option<Value>,
    #[serde(default)]
    dns: Option<Dns>,
    /// What libcni sends (`types.NetConf.ValidAttachments`).
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<Vec<GcAttachment>>,
    /// What SPEC.md names.
    #[serde(rename = "cni.dev/attachments", default)]
    attachments: Option<Vec<GcAttachment>>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The protocol version in use, one of [`SUPPORTED_VERSIONS`].
    pub cni_version: String,
    /// The CNI network's name.
    pub name: String,
    /// The ovnet network; empty only where the command does not need it (VERSION).
    pub network: String,
    /// The agent's API socket.
    pub agent: PathBuf,
    /// The previous plugin's result, if any.
    pub prev_result: Option<Success>,
    /// DNS settings given by the administrator, which replace the network's resolver.
    pub dns: Option<Dns>,
    /// GC: the attachments still valid (both keys, merged).
    pub valid: BTreeSet<GcAttachment>,
}

impl Config {
    /// Whether the version in use is at least `min` (`"1.1.0"`).
    pub fn at_least(&self, min: &str) -> bool {
        parse_version(&self.cni_version) >= parse_version(min)
    }

    /// The configuration in `bytes`, checked: JSON (code 6), a name (7), a supported
    /// version (1), no unknown key (2), an ovnet network (7).
    pub fn parse(bytes: &[u8]) -> Result<Config, CniError> {
        if bytes.len() > MAX_CONFIG {
            return Err(CniError::new(
                DECODING_FAILURE,
                format!("network configuration larger than {MAX_CONFIG} bytes"),
            ));
        }
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| {
            CniError::new(
                DECODING_FAILURE,
                "the network configuration on stdin is not valid JSON of the expected form",
            )
            .details(e.to_string())
        })?;
        let name = w.name.unwrap_or_default();
        if name.is_empty() {
            return Err(CniError::new(
                INVALID_CONFIG,
                "the network configuration has no \"name\"",
            ));
        }
        if !crate::env::valid_container_id(&name) {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!("invalid network name {name:?}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*"),
            ));
        }
        if !SUPPORTED_VERSIONS.contains(&w.cni_version.as_str()) {
            let given = if w.cni_version.is_empty() {
                "no cniVersion given".to_owned()
            } else {
                format!("cniVersion {:?} is not supported", w.cni_version)
            };
            return Err(CniError::new(
                INCOMPATIBLE_VERSION,
                format!(
                    "incompatible CNI version: {given}; ovnet-cni speaks {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
        for (k, v) in &w.other {
            if k == "ipam" {
                return Err(CniError::new(
                    UNSUPPORTED_FIELD,
                    format!("unsupported field \"ipam\" = {v}: ovnet allocates addresses itself, remove it"),
                ));
            }
            if !IGNORED_KEYS.contains(&k.as_str()) && !k.starts_with("cni.dev/") {
                return Err(CniError::new(
                    UNSUPPORTED_FIELD,
                    format!(
                        "unsupported field {k:?} = {v}: ovnet-cni takes \"network\" and \"agent\""
                    ),
                ));
            }
        }
        let prev_result = match w.prev_result {
            None | Some(Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<Success>(v).map_err(|e| {
                CniError::new(DECODING_FAILURE, "prevResult is not a CNI result")
                    .details(e.to_string())
            })?),
        };
        let agent = w.agent.unwrap_or_else(|| PathBuf::from(DEFAULT_AGENT));
        if !agent.is_absolute() {
            return Err(CniError::new(
                INVALID_CONFIG,
                format!(
                    "invalid \"agent\" {:?}: give the absolute path of the agent's API socket",
                    agent.display()
                ),
            ));
        }
        let network = w.network.unwrap_or_default();
        if network.trim().is_empty() {
            return Err(CniError::new(
                INVALID_CONFIG,
                "the network configuration has no \"network\": name the ovnet network to attach to",
            ));
        }
        Ok(Config {
            cni_version: w.cni_version,
            name,
            network,
            agent,
            prev_result,
            dns: w.dns.filter(|d| !d.is_empty()),
            valid: w
                .valid_attachments
                .into_iter()
                .chain(w.attachments)
                .flatten()
                .collect(),
        })
    }
}

/// VERSION's input: only `cniVersion` matters, and an empty stdin is allowed. Returns the
/// version to answer with.
pub fn version_input(bytes: &[u8]) -> Result<String, CniError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(LATEST.to_owned());
    }
    #[derive(Deserialize)]
    struct Input {
        #[serde(rename = "cniVersion", default)]
        cni_version: String,
    }
    let i: Input = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(DECODING_FAILURE, "VERSION input is not a JSON object").details(e.to_string())
    })?;
    Ok(if i.cni_version.is_empty() {
        LATEST.to_owned()
    } else {
        i.cni_version
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Config, CniError> {
        Config::parse(v.to_string().as_bytes())
    }

    fn code(v: Value) -> (u32, String) {
        let e = parse(v).unwrap_err();
        (e.code, e.msg)
    }

    fn base() -> Value {
        json!({"cniVersion": "1.1.0", "name": "pods", "type": "ovnet-cni", "network": "demo"})
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = base();
        b[k] = v;
        b
    }

    #[test]
    fn a_minimal_configuration_takes_the_defaults() {
        let c = parse(base()).unwrap();
        assert_eq!(c.network, "demo");
        assert_eq!(c.agent, PathBuf::from(DEFAULT_AGENT));
        assert!(c.prev_result.is_none() && c.dns.is_none() && c.valid.is_empty());
        assert!(c.at_least("1.1.0") && c.at_least("0.4.0"));
        let old = parse(with("cniVersion", json!("0.3.1"))).unwrap();
        assert!(!old.at_least("0.4.0"));
    }

    #[test]
    fn runtime_keys_are_taken() {
        let mut v = base();
        v["runtimeConfig"] = json!({"portMappings": []});
        v["args"] = json!({"cni": {}});
        v["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        v["cni.dev/attachments"] = json!([{"containerID": "b", "ifname": "eth1"}]);
        v["prevResult"] = json!({"cniVersion": "1.1.0", "interfaces": [{"name": "lo"}]});
        v["agent"] = json!("/tmp/a.sock");
        let c = parse(v).unwrap();
        assert_eq!(c.valid.len(), 2);
        assert_eq!(c.prev_result.unwrap().interfaces[0].name, "lo");
        assert_eq!(c.agent, PathBuf::from("/tmp/a.sock"));
    }

    #[test]
    fn each_fault_has_its_code() {
        assert_eq!(
            Config::parse(b"{not json").unwrap_err().code,
            DECODING_FAILURE
        );
        assert_eq!(Config::parse(b"[]").unwrap_err().code, DECODING_FAILURE);
        assert_eq!(code(with("network", json!(5))).0, DECODING_FAILURE);
        assert_eq!(
            code(with("prevResult", json!({"ips": 3}))).0,
            DECODING_FAILURE
        );
        let big = vec![b' '; MAX_CONFIG + 1];
        assert_eq!(Config::parse(&big).unwrap_err().code, DECODING_FAILURE);

        let (c, msg) = code(with("cniVersion", json!("0.2.0")));
        assert_eq!(c, INCOMPATIBLE_VERSION);
        assert!(msg.contains("\"0.2.0\" is not supported"), "{msg}");
        assert!(msg.contains("1.1.0"), "{msg}");
        let mut none = base();
        none.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(code(none).0, INCOMPATIBLE_VERSION);

        let mut no_net = base();
        no_net.as_object_mut().unwrap().remove("network");
        let (c, msg) = code(no_net);
        assert_eq!(c, INVALID_CONFIG);
        assert!(msg.contains("no \"network\""), "{msg}");
        assert_eq!(code(with("network", json!(" "))).0, INVALID_CONFIG);
        assert_eq!(code(with("name", json!(""))).0, INVALID_CONFIG);
        assert_eq!(code(with("name", json!("a b"))).0, INVALID_CONFIG);
        assert_eq!(code(with("agent", json!("agent.sock"))).0, INVALID_CONFIG);

        let (c, msg) = code(with("netwrok", json!("demo")));
        assert_eq!(c, UNSUPPORTED_FIELD);
        assert!(msg.contains("\"netwrok\" = \"demo\""), "{msg}");
        let (c, msg) = code(with("ipam", json!({"type": "host-local"})));
        assert_eq!(c, UNSUPPORTED_FIELD);
        assert!(msg.contains("ipam"), "{msg}");
    }

    #[test]
    fn version_input_may_be_empty() {
        assert_eq!(version_input(b"").unwrap(), LATEST);
        assert_eq!(
            version_input(b"{\"cniVersion\":\"1.0.0\"}").unwrap(),
            "1.0.0"
        );
        assert_eq!(version_input(b"{}").unwrap(), LATEST);
        assert_eq!(version_input(b"nope").unwrap_err().code, DECODING_FAILURE);
    }
}
