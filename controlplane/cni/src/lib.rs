//! `ovnet-cni`, the CNI 1.1 plugin of ovnet (CNI `type` `"ovnet-cni"`): a container runtime
//! runs it to attach a container's network namespace to an ovnet network, and it asks the
//! local `ovnet-agent` to do so over the agent's gRPC API.
//!
//! It is a translator, not a second agent: the agent claims the name and address in etcd,
//! builds the veth and programs the data plane; the plugin reads the CNI invocation (the
//! environment, the configuration on stdin), makes the calls, and writes the CNI answer (a
//! result or an error on stdout, exit status 0 or 1). It keeps no state of its own: an
//! endpoint carries the container id, interface name and owner `"cni"`, and DEL, CHECK and GC
//! find it by those.
//!
//! - [`env`]: `CNI_COMMAND` and the other variables, checked per command.
//! - [`config`]: the network configuration (`network`, `agent`, the specification's keys) and
//!   the protocol versions.
//! - [`name`]: the container's name in the network (`K8S_POD_NAME` or the container id).
//! - [`agent`]: the gRPC client over the agent's unix socket, and the mapping of its refusals
//!   to CNI error codes.
//! - [`netns`]: reading a namespace's links and routes (`ip -j`), for the result and CHECK.
//! - [`add`], [`check`], [`del`] (DEL and GC), [`status`]: the commands.
//! - [`result`], [`error`]: the JSON the runtime reads.

#![forbid(unsafe_code)]

pub mod add;
pub mod agent;
pub mod check;
pub mod config;
pub mod del;
pub mod env;
pub mod error;
pub mod name;
pub mod netns;
pub mod result;
pub mod status;

use std::io;

use config::{Config, LATEST, SUPPORTED_VERSIONS};
use env::{Command, Env};
use error::{CniError, IO_FAILURE};
use result::VersionInfo;

/// What to print on stdout, and whether the invocation succeeded (exit status 0) or not (1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// A result, an error result, or nothing.
    pub stdout: String,
    /// Whether the command succeeded.
    pub success: bool,
}

/// Runs one invocation: `var` reads the environment, `stdin` is what the runtime wrote (or
/// the error reading it).
pub async fn run(var: impl Fn(&str) -> Option<String>, stdin: io::Result<Vec<u8>>) -> Reply {
    let mut version = LATEST.to_owned();
    match dispatch(var, stdin, &mut version).await {
        Ok(stdout) => Reply {
            stdout,
            success: true,
        },
        Err(e) => Reply {
            stdout: e.to_json(&version),
            success: false,
        },
    }
}

/// The command's output; sets `version` to the configuration's once it is known to be one
/// this plugin speaks, for the error result.
async fn dispatch(
    var: impl Fn(&str) -> Option<String>,
    stdin: io::Result<Vec<u8>>,
    version: &mut String,
) -> Result<String, CniError> {
    let env = Env::parse(var)?;
    let stdin = stdin.map_err(|e| {
        CniError::new(
            IO_FAILURE,
            "cannot read the network configuration from stdin",
        )
        .details(e.to_string())
    })?;
    let config = |version: &mut String| {
        let cfg = Config::parse(&stdin)?;
        version.clone_from(&cfg.cni_version);
        Ok::<Config, CniError>(cfg)
    };
    match env.command {
        Command::Version => {
            let info = VersionInfo {
                cni_version: config::version_input(&stdin)?,
                supported_versions: SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
            };
            Ok(serde_json::to_string(&info).expect("strings serialise"))
        }
        Command::Add => {
            let r = add::add(&env, &config(version)?).await?;
            Ok(serde_json::to_string(&r).expect("a result serialises"))
        }
        Command::Del => del::del(&env, &config(version)?)
            .await
            .map(|()| String::new()),
        Command::Check => check::check(&env, &config(version)?)
            .await
            .map(|()| String::new()),
        Command::Gc => del::gc(&config(version)?).await.map(|()| String::new()),
        Command::Status => status::status(&config(version)?)
            .await
            .map(|()| String::new()),
    }
}
