//! STATUS: can this plugin serve ADD now?
//!
//! Ready when the agent answers and can read the cluster (its `ListNetworks` goes to etcd) and
//! the configured network exists. The two ways of not being ready differ for the containers
//! already attached, which is what the specification's two codes say:
//! - the agent does not answer: the data plane runs inside the agent, so existing containers
//!   lose their traffic to other hosts until it is back (they still reach containers of this
//!   host over the bridge): 51, "existing containers may have limited connectivity";
//! - the agent answers but etcd does not (or the network is missing): nothing can be attached,
//!   but the data plane keeps forwarding with the last state it knew: 50.

use ovnet_proto::v1::ListNetworksRequest;

use crate::agent::Agent;
use crate::config::Config;
use crate::error::{CniError, INCOMPATIBLE_VERSION, NOT_AVAILABLE, NOT_AVAILABLE_LIMITED};

/// STATUS.
pub async fn status(cfg: &Config) -> Result<(), CniError> {
    if !cfg.at_least("1.1.0") {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "STATUS needs cniVersion 1.1.0, the configuration says {}",
                cfg.cni_version
            ),
        ));
    }
    let down = |cause: String| {
        CniError::new(
            NOT_AVAILABLE_LIMITED,
            format!(
                "the ovnet agent at {} does not answer: containers cannot be attached, and \
                 attached ones lose their traffic to other hosts until it is back",
                cfg.agent.display()
            ),
        )
        .details(cause)
    };
    let agent = Agent::connect(&cfg.agent)
        .await
        .map_err(|u| down(u.cause))?;
    let networks = match agent
        .call(agent.client().list_networks(ListNetworksRequest {}))
        .await
    {
        Ok(r) => r.networks,
        Err(Err(u)) => return Err(down(u.cause)),
        Err(Ok(s)) => {
            return Err(CniError::new(
                NOT_AVAILABLE,
                format!(
                    "ovnet cannot attach containers now: {}",
                    s.message().trim_end_matches('.')
                ),
            )
            .details("attached containers keep their connectivity"))
        }
    };
    let n = &cfg.network;
    if !networks
        .iter()
        .any(|net| &net.name == n || net.id.starts_with(n.as_str()))
    {
        return Err(CniError::new(
            NOT_AVAILABLE,
            format!("network {n} not found: create it with `ovctl network create {n}`"),
        ));
    }
    Ok(())
}
