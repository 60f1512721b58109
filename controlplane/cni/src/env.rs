//! The invocation's environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`,
//! `CNI_ARGS` (`CNI_PATH` is not needed: this plugin delegates to no other).
//!
//! [`Env::parse`] checks what each command requires (SPEC.md, section 2) and the form of each
//! value, and names every missing or invalid variable in one error (code 4).

use std::collections::BTreeMap;

use crate::error::{CniError, INVALID_ENV};

/// What the runtime asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach it (idempotent).
    Del,
    /// Check it against `prevResult`.
    Check,
    /// Release attachments the runtime no longer knows.
    Gc,
    /// Say whether ADD can be served.
    Status,
    /// List the supported protocol versions.
    Version,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            _ => return None,
        })
    }

    /// Whether the command is about one attachment (and needs container id and interface).
    fn per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }

    /// Whether the command needs `CNI_NETNS` (DEL does not: the namespace may be gone).
    fn needs_netns(self) -> bool {
        matches!(self, Command::Add | Command::Check)
    }
}

/// The checked environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for GC, STATUS, VERSION).
    pub container_id: String,
    /// `CNI_NETNS`, a path to the container's network namespace (may be empty for DEL).
    pub netns: String,
    /// `CNI_IFNAME` (empty for GC, STATUS, VERSION).
    pub ifname: String,
    /// `CNI_ARGS`, as key → value.
    pub args: BTreeMap<String, String>,
}

/// Longest interface name the kernel takes (`IFNAMSIZ` less the NUL).
const MAX_IFNAME_LEN: usize = 15;

/// CNI's rule for a container id: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_container_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The kernel's (and CNI's) rule for an interface name: 1 to 15 bytes, not `.` or `..`, no `/`,
/// `:` or white space.
pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_IFNAME_LEN
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;` (an empty string is no pairs).
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in s.split(';').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_owned(), v.to_owned());
            }
            _ => return Err(format!("{pair:?} is not KEY=VALUE")),
        }
    }
    Ok(out)
}

impl Env {
    /// The environment as `var` reads it (`std::env::var` in the binary, a map in tests).
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let get = |k: &str| var(k).unwrap_or_default();
        let cmd = get("CNI_COMMAND");
        let Some(command) = Command::parse(&cmd) else {
            let msg = if cmd.is_empty() {
                "required environment variable CNI_COMMAND is missing".to_owned()
            } else {
                format!("invalid CNI_COMMAND {cmd:?}: want ADD, DEL, CHECK, GC, STATUS or VERSION")
            };
            return Err(CniError::new(INVALID_ENV, msg));
        };
        let mut env = Env {
            command,
            container_id: String::new(),
            netns: String::new(),
            ifname: String::new(),
            args: BTreeMap::new(),
        };
        let mut missing = Vec::new();
        let mut invalid = Vec::new();
        if command.per_attachment() {
            env.container_id = get("CNI_CONTAINERID");
            env.ifname = get("CNI_IFNAME");
            env.netns = get("CNI_NETNS");
            if env.container_id.is_empty() {
                missing.push("CNI_CONTAINERID");
            } else if !valid_container_id(&env.container_id) {
                invalid.push(format!(
                    "CNI_CONTAINERID {:?} (want [a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                    env.container_id
                ));
            }
            if command.needs_netns() && env.netns.is_empty() {
                missing.push("CNI_NETNS");
            }
            if env.ifname.is_empty() {
                missing.push("CNI_IFNAME");
            } else if !valid_ifname(&env.ifname) {
                invalid.push(format!(
                    "CNI_IFNAME {:?} (want 1 to 15 characters, no '/', ':' or spaces, not . or ..)",
                    env.ifname
                ));
            }
            match parse_args(&get("CNI_ARGS")) {
                Ok(args) => env.args = args,
                Err(e) => invalid.push(format!("CNI_ARGS: {e}")),
            }
        }
        if !missing.is_empty() {
            let s = if missing.len() == 1 { "" } else { "s" };
            return Err(CniError::new(
                INVALID_ENV,
                format!(
                    "required environment variable{s} {} missing for {cmd}",
                    missing.join(", ")
                ),
            ));
        }
        if !invalid.is_empty() {
            return Err(CniError::new(
                INVALID_ENV,
                format!("invalid {}", invalid.join("; ")),
            ));
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Env::parse(|k| m.get(k).cloned())
    }

    fn err(vars: &[(&str, &str)]) -> String {
        let e = parse(vars).unwrap_err();
        assert_eq!(e.code, INVALID_ENV, "{e}");
        e.msg
    }

    const ADD: [(&str, &str); 4] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
    ];

    #[test]
    fn a_complete_add() {
        let mut vars = ADD.to_vec();
        vars.push(("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-0;EMPTY="));
        let env = parse(&vars).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(
            (
                env.container_id.as_str(),
                env.netns.as_str(),
                env.ifname.as_str()
            ),
            ("c1", "/var/run/netns/x", "eth0")
        );
        assert_eq!(env.args["K8S_POD_NAME"], "web-0");
        assert_eq!(env.args["EMPTY"], "");
    }

    #[test]
    fn each_command_names_what_it_misses() {
        assert_eq!(
            err(&[]),
            "required environment variable CNI_COMMAND is missing"
        );
        assert!(err(&[("CNI_COMMAND", "ATTACH")]).starts_with("invalid CNI_COMMAND \"ATTACH\""));
        assert_eq!(
            err(&[("CNI_COMMAND", "ADD")]),
            "required environment variables CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME missing for ADD"
        );
        assert_eq!(
            err(&ADD[..3]),
            "required environment variable CNI_IFNAME missing for ADD"
        );
        // DEL needs no namespace: it may be gone.
        let del = [
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert_eq!(parse(&del).unwrap().netns, "");
        assert_eq!(
            err(&[("CNI_COMMAND", "CHECK"), ("CNI_IFNAME", "eth0")]),
            "required environment variables CNI_CONTAINERID, CNI_NETNS missing for CHECK"
        );
        for cmd in ["GC", "STATUS", "VERSION"] {
            assert!(parse(&[("CNI_COMMAND", cmd)]).is_ok(), "{cmd}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        let mut vars = ADD.to_vec();
        vars[1] = ("CNI_CONTAINERID", "-c");
        vars[3] = ("CNI_IFNAME", "a-very-long-ifname");
        vars.push(("CNI_ARGS", "K8S_POD_NAME"));
        let msg = err(&vars);
        assert!(msg.contains("CNI_CONTAINERID \"-c\""), "{msg}");
        assert!(msg.contains("CNI_IFNAME \"a-very-long-ifname\""), "{msg}");
        assert!(
            msg.contains("CNI_ARGS: \"K8S_POD_NAME\" is not KEY=VALUE"),
            "{msg}"
        );
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(!valid_ifname(bad), "{bad:?}");
        }
        assert!(valid_ifname("0123456789abcde"));
        assert_eq!(parse_args("=v").unwrap_err(), "\"=v\" is not KEY=VALUE");
        assert!(parse_args("").unwrap().is_empty());
    }
}
