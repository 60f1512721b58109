//! The CNI error result, `{"cniVersion", "code", "msg", "details"}`, and the codes this plugin
//! answers with.
//!
//! Codes 0 to 99 are the specification's (SPEC.md, "Error"); 100 and up are this plugin's own.
//! `msg` is one line saying what is wrong and, where the user can act, what to do; `details`
//! carries the cause (the agent's own sentence, a command's output).

use serde::Serialize;

/// Incompatible CNI version.
pub const INCOMPATIBLE_VERSION: u32 = 1;
/// Unsupported field in the network configuration (the message names key and value).
pub const UNSUPPORTED_FIELD: u32 = 2;
/// Invalid necessary environment variables (the message names them).
pub const INVALID_ENV: u32 = 4;
/// I/O failure, such as reading the configuration from stdin.
pub const IO_FAILURE: u32 = 5;
/// Failed to decode content: the configuration is not the JSON it should be.
pub const DECODING_FAILURE: u32 = 6;
/// Invalid network configuration.
pub const INVALID_CONFIG: u32 = 7;
/// Try again later: a transient condition (the agent or etcd unreachable, a lost race).
pub const TRY_AGAIN_LATER: u32 = 11;
/// STATUS: the plugin cannot serve ADD.
pub const NOT_AVAILABLE: u32 = 50;
/// STATUS: the plugin cannot serve ADD, and existing containers may have limited
/// connectivity.
pub const NOT_AVAILABLE_LIMITED: u32 = 51;
/// Ours: the agent refused the operation for a reason none of the above names (its sentence
/// is the message).
pub const AGENT_REFUSED: u32 = 100;
/// Ours: the attachment or the interface exists already (ADD twice for one container and
/// interface, the name taken in the network, the interface present in the namespace).
pub const ALREADY_ATTACHED: u32 = 101;
/// Ours: CHECK found the attachment not as `prevResult` says.
pub const CHECK_FAILED: u32 = 102;

/// A failed operation, as the runtime reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    /// One of the codes above.
    pub code: u32,
    /// What is wrong, in one line.
    pub msg: String,
    /// The cause; may be empty.
    pub details: String,
}

impl CniError {
    /// An error with no details.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The same error with `details`.
    pub fn details(mut self, details: impl Into<String>) -> CniError {
        self.details = details.into();
        self
    }

    /// The error result printed on stdout, for protocol version `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            code: u32,
            msg: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            details: &'a str,
        }
        serde_json::to_string(&Wire {
            cni_version,
            code: self.code,
            msg: &self.msg,
            details: &self.details,
        })
        .expect("strings and numbers serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_error_result_has_the_specs_four_keys() {
        let e = CniError::new(INVALID_CONFIG, "network \"x\" not found").details("ask ovctl");
        let v: Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion": "1.1.0", "code": 7, "msg": "network \"x\" not found",
                   "details": "ask ovctl"})
        );
        let bare: Value =
            serde_json::from_str(&CniError::new(TRY_AGAIN_LATER, "later").to_json("1.0.0"))
                .unwrap();
        assert_eq!(
            bare,
            json!({"cniVersion": "1.0.0", "code": 11, "msg": "later"})
        );
        assert_eq!(
            e.to_string(),
            "CNI error 7: network \"x\" not found (ask ovctl)"
        );
    }
}
