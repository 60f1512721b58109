//! What a container runtime says about an endpoint: the runtime's id of the container and who
//! asked for the endpoint.
//!
//! A CNI runtime finds its attachments again by `(CNI_CONTAINERID, CNI_IFNAME)`, never by the
//! name ovnet shows, so an endpoint keeps the container id it was made for ([`ContainerId`]),
//! and the front end that made it ([`Owner`]): the CNI plugin's garbage collection releases
//! only its own endpoints, never one `ovctl` or Docker made.

use std::fmt;

/// Longest container id taken. CNI sets no limit; runtimes use 64 hex digits (containerd,
/// CRI-O, Docker, Podman) or a UUID. The bound only keeps a record small.
pub const MAX_CONTAINER_ID_LEN: usize = 256;

/// A container id or owner that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRuntimeValue {
    /// Not CNI's container id rule.
    #[error(
        "invalid container id {0:?}: want 1 to {MAX_CONTAINER_ID_LEN} characters of \
         [a-zA-Z0-9_.-], starting with a letter or digit"
    )]
    ContainerId(String),
    /// Not one of the front ends.
    #[error("invalid owner {0:?}: want ovctl, docker or cni")]
    Owner(String),
}

/// The runtime's id of a container: CNI's rule, `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most
/// [`MAX_CONTAINER_ID_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

impl ContainerId {
    /// `s` if it follows the rule.
    pub fn parse(s: &str) -> Result<ContainerId, BadRuntimeValue> {
        let mut chars = s.chars();
        let ok = s.len() <= MAX_CONTAINER_ID_LEN
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(ContainerId(s.to_owned()))
        } else {
            Err(BadRuntimeValue::ContainerId(s.to_owned()))
        }
    }

    /// `None` for the empty string (an endpoint made without a runtime), else [`Self::parse`].
    pub fn parse_optional(s: &str) -> Result<Option<ContainerId>, BadRuntimeValue> {
        if s.is_empty() {
            Ok(None)
        } else {
            ContainerId::parse(s).map(Some)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The front end that made an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Owner {
    /// `ovctl network connect` (and records written before owners existed).
    #[default]
    Ovctl,
    /// The Docker network plugin.
    Docker,
    /// The CNI plugin.
    Cni,
}

impl Owner {
    /// The owner as stored: `"ovctl"`, `"docker"`, `"cni"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Ovctl => "ovctl",
            Owner::Docker => "docker",
            Owner::Cni => "cni",
        }
    }

    /// An owner as stored or requested; the empty string is [`Owner::Ovctl`].
    pub fn parse(s: &str) -> Result<Owner, BadRuntimeValue> {
        match s {
            "" | "ovctl" => Ok(Owner::Ovctl),
            "docker" => Ok(Owner::Docker),
            "cni" => Ok(Owner::Cni),
            other => Err(BadRuntimeValue::Owner(other.to_owned())),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_follow_cnis_rule() {
        let hex = "3f4a".repeat(16);
        for ok in [hex.as_str(), "a", "pod_1.x-y", "0"] {
            assert_eq!(ContainerId::parse(ok).unwrap().as_str(), ok);
        }
        let long = "a".repeat(MAX_CONTAINER_ID_LEN + 1);
        for bad in [
            "",
            "-a",
            ".a",
            "_a",
            "a/b",
            "a b",
            "é",
            "a;b",
            long.as_str(),
        ] {
            let e = ContainerId::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid container id"), "{e}");
        }
        assert_eq!(ContainerId::parse_optional(""), Ok(None));
        assert!(ContainerId::parse_optional("-").is_err());
    }

    #[test]
    fn owners_round_trip_and_empty_is_ovctl() {
        for o in [Owner::Ovctl, Owner::Docker, Owner::Cni] {
            assert_eq!(Owner::parse(o.as_str()), Ok(o));
        }
        assert_eq!(Owner::parse(""), Ok(Owner::Ovctl));
        assert_eq!(
            Owner::parse("kubelet").unwrap_err().to_string(),
            "invalid owner \"kubelet\": want ovctl, docker or cni"
        );
    }
}
