//! The small values records are made of, each checked once when it is made: names of networks,
//! containers and nodes, network and endpoint IDs, interface names.
//!
//! A value of these types is valid by construction, so code that holds one never checks it
//! again (the host end of a veth is cut from an [`EndpointId`] without a second thought, because
//! an ID is ASCII hex). VNIs, MACs, addresses and subnets use their own types
//! ([`ovnet_wire::Vni`], [`ovnet_wire::MacAddr`], [`std::net::Ipv4Addr`], [`ipnet::Ipv4Net`]).

use std::fmt;

use super::ipam::IpamError;

/// Longest name of a network, container or node: enough for any host name label or container
/// name in use, and it keeps etcd keys, log lines and tables readable.
pub const MAX_NAME_LEN: usize = 64;
/// Most bytes a network's labels may take, keys and values together: labels are stored in
/// the network's record, which every agent reads.
pub const MAX_LABELS_BYTES: usize = 4096;

/// Checks labels against [`MAX_LABELS_BYTES`].
pub fn check_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), IpamError> {
    let bytes: usize = labels.into_iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_LABELS_BYTES {
        return Err(IpamError::LabelsTooLarge {
            bytes,
            max: MAX_LABELS_BYTES,
        });
    }
    Ok(())
}

/// Checks `name` against `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, docker's rule, and [`MAX_NAME_LEN`].
/// `kind` only shapes the error ("network", "container", "node").
fn check_name(kind: &'static str, name: &str) -> Result<(), IpamError> {
    if name.len() > MAX_NAME_LEN {
        return Err(IpamError::NameTooLong {
            kind,
            shown: name.chars().take(16).collect(),
            len: name.chars().count(),
            max: MAX_NAME_LEN,
        });
    }
    let mut chars = name.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(IpamError::InvalidName {
            kind,
            name: name.to_owned(),
        })
    }
}

/// Implements the string accessors shared by the string newtypes.
macro_rules! string_value {
    ($t:ident) => {
        impl $t {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $t {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $t {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

/// The name of a network or of a container (endpoint): `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Never
/// contains `/`, so it is one segment of an etcd key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);
string_value!(Name);

impl Name {
    /// `name` if it follows the rule; `kind` ("network", "container") names it in the error.
    pub fn parse(kind: &'static str, name: &str) -> Result<Name, IpamError> {
        check_name(kind, name)?;
        Ok(Name(name.to_owned()))
    }
}

/// The name of a node (a host running an agent), by the same rule as [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);
string_value!(NodeName);

impl NodeName {
    /// `name` if it follows the rule.
    pub fn parse(name: &str) -> Result<NodeName, IpamError> {
        check_name("node", name)?;
        Ok(NodeName(name.to_owned()))
    }
}

/// Length of the IDs the agent makes: 32 random bytes in lowercase hex, like a docker ID.
pub const ID_LEN: usize = 64;

/// Whether `s` is an ID the agent could have made: [`ID_LEN`] lowercase hex digits.
fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_hex() -> String {
    let bytes: [u8; ID_LEN / 2] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A string that is not an ID ([`ID_LEN`] lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {0:?}: want {ID_LEN} lowercase hex digits")]
pub struct BadId(String);

macro_rules! hex_id {
    ($(#[$doc:meta])* $t:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $t(String);
        string_value!($t);

        impl $t {
            /// A new random ID.
            pub fn random() -> $t {
                $t(random_hex())
            }

            /// `s` if it is an ID.
            pub fn parse(s: &str) -> Result<$t, BadId> {
                if is_id(s) {
                    Ok($t(s.to_owned()))
                } else {
                    Err(BadId(s.to_owned()))
                }
            }
        }
    };
}

hex_id!(
    /// A network's ID: [`ID_LEN`] lowercase hex digits, fixed at creation.
    NetworkId
);
hex_id!(
    /// An endpoint's ID: [`ID_LEN`] lowercase hex digits, fixed at connect. Host devices are
    /// named after its first characters.
    EndpointId
);

/// Length of a node id: 16 random bytes (128 bits) in lowercase hex.
pub const NODE_ID_LEN: usize = 32;

/// The identity of a host behind its node name: [`NODE_ID_LEN`] lowercase hex digits, made at
/// the host's first start and kept in its state directory, so that a restart is told from
/// another host taking the name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);
string_value!(NodeId);

/// A string that is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: want {NODE_ID_LEN} lowercase hex digits")]
pub struct BadNodeId(pub String);

impl NodeId {
    /// A new random id.
    pub fn random() -> NodeId {
        let bytes: [u8; NODE_ID_LEN / 2] = rand::random();
        NodeId(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `s` if it is a node id.
    pub fn parse(s: &str) -> Result<NodeId, BadNodeId> {
        if s.len() == NODE_ID_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(BadNodeId(s.to_owned()))
        }
    }
}

/// An interface name inside a container: 1 to 15 bytes (the kernel's `IFNAMSIZ` less the
/// NUL), not `.` or `..`, no `/`, `:` or white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfName(String);
string_value!(IfName);

/// Longest interface name the kernel takes.
pub const MAX_IFNAME_LEN: usize = 15;

/// A string that cannot be an interface name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid interface name {0:?}: 1 to 15 characters, no '/', ':' or spaces")]
pub struct BadIfName(pub String);

impl IfName {
    /// `s` if the kernel would take it as an interface name.
    pub fn parse(s: &str) -> Result<IfName, BadIfName> {
        let bad = s.is_empty()
            || s.len() > MAX_IFNAME_LEN
            || s == "."
            || s == ".."
            || s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if bad {
            Err(BadIfName(s.to_owned()))
        } else {
            Ok(IfName(s.to_owned()))
        }
    }

    /// `eth{n}`, the names the agent picks.
    pub fn eth(n: u32) -> IfName {
        IfName(format!("eth{n}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["demo", "a", "0", "my-net_1.2", "A.b-c_"] {
            assert_eq!(Name::parse("network", ok).unwrap().as_str(), ok);
            NodeName::parse(ok).unwrap();
        }
        let long = "a".repeat(MAX_NAME_LEN);
        Name::parse("network", &long).unwrap();
        let e = Name::parse("network", &format!("{long}b")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid network name aaaaaaaaaaaaaaaa...: 65 characters, at most 64 are allowed"
        );
        let labels: std::collections::HashMap<String, String> =
            [("k".to_owned(), "v".repeat(MAX_LABELS_BYTES))].into();
        assert_eq!(
            check_labels(&labels).unwrap_err().to_string(),
            "labels too large: 4097 bytes of keys and values, at most 4096 are allowed"
        );
        for bad in ["", "-x", ".x", "_x", "a/b", "a b", "é", "a:b"] {
            let e = Name::parse("network", bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid network name"), "{e}");
            let e = NodeName::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid node name"), "{e}");
        }
    }

    #[test]
    fn ids_are_64_lowercase_hex() {
        let a = NetworkId::random();
        assert_eq!(a.as_str().len(), 64);
        assert_eq!(NetworkId::parse(a.as_str()), Ok(a.clone()));
        assert_ne!(a, NetworkId::random());
        for bad in [
            "",
            "abc",
            &"A".repeat(64),
            &"g".repeat(64),
            &"a".repeat(65),
            // 64 bytes, not 64 hex digits: a multi-byte character must not get through.
            &format!("{}é", "a".repeat(62)),
        ] {
            assert!(EndpointId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_names() {
        for ok in ["eth0", "e", "a-very-long-if1", "ä"] {
            IfName::parse(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "a-very-long-ifname"] {
            assert_eq!(
                IfName::parse(bad).unwrap_err().to_string(),
                format!(
                    "invalid interface name {bad:?}: 1 to 15 characters, no '/', ':' or spaces"
                )
            );
        }
        assert_eq!(IfName::eth(3), "eth3");
    }
}
