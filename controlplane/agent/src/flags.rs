//! Command-line flags of the agent that belong to one subject each, flattened into
//! `ovnet-agent`'s arguments: how to reach etcd securely, and who this node is.

use std::path::PathBuf;

use crate::state::DEFAULT_STATE_DIR;
use crate::store::EtcdSecurity;

/// TLS and etcd users, with flannel's flag names.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EtcdFlags {
    /// PEM file of the CA that signed the etcd members' certificates (with https:// URLs).
    #[arg(long, env = "OVNET_ETCD_CAFILE", value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// PEM file of this agent's client certificate, for etcd's client-certificate auth.
    #[arg(long, env = "OVNET_ETCD_CERTFILE", value_name = "FILE")]
    pub etcd_certfile: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "OVNET_ETCD_KEYFILE", value_name = "FILE")]
    pub etcd_keyfile: Option<PathBuf>,
    /// etcd user to log in as (etcd with `auth enable`).
    #[arg(long, env = "OVNET_ETCD_USERNAME", value_name = "USER")]
    pub etcd_username: Option<String>,
    /// Its password. Prefer the environment variable, which `ps` does not show.
    #[arg(
        long,
        env = "OVNET_ETCD_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub etcd_password: Option<String>,
}

impl EtcdFlags {
    /// The flags as the store takes them.
    pub fn security(&self) -> EtcdSecurity {
        EtcdSecurity {
            ca_file: self.etcd_cafile.clone(),
            cert_file: self.etcd_certfile.clone(),
            key_file: self.etcd_keyfile.clone(),
            username: self.etcd_username.clone(),
            password: self.etcd_password.clone(),
        }
    }
}

/// Who this node is, beyond its name.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityFlags {
    /// Directory of what the agent keeps across restarts: the node id (`node-id`), which tells
    /// a restart of this host from another host taking its node name.
    #[arg(long, env = "OVNET_STATE_DIR", default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Take the node name over from another host whose agent is down, releasing the
    /// endpoints that host served. Without it such a start is refused.
    #[arg(long)]
    pub replace_node: bool,
}
