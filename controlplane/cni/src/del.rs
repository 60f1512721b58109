//! DEL and GC: releasing attachments.
//!
//! DEL releases the attachment of `(CNI_CONTAINERID, CNI_IFNAME)` and succeeds when there is
//! nothing to release: the attachment unknown, the network gone, the namespace deleted (the
//! agent removes the host end of the veth whether or not the container's end still exists).
//! GC releases every attachment this plugin made on this node in the network that the runtime
//! does not list as valid, carries on past a failure, and reports the failures together.
//! Only the agent being unreachable, or etcd, fails them, with "try again later".

use std::collections::BTreeSet;

use ovnet_proto::v1::{Attachment, DisconnectRequest};
use tonic::Code;

use crate::agent::Agent;
use crate::config::{Config, GcAttachment};
use crate::env::Env;
use crate::error::{CniError, AGENT_REFUSED, INCOMPATIBLE_VERSION, TRY_AGAIN_LATER};

/// Releases one attachment; one already gone is released.
async fn release(agent: &Agent, a: &Attachment) -> Result<(), CniError> {
    let Some(ep) = &a.endpoint else {
        return Ok(());
    };
    let req = DisconnectRequest {
        network: ep.network_id.clone(),
        container: ep.name.clone(),
    };
    match agent.call(agent.client().disconnect_container(req)).await {
        Ok(_) => Ok(()),
        Err(Ok(s)) if s.code() == Code::NotFound => Ok(()),
        Err(e) => Err(Agent::failure(e)),
    }
}

/// DEL.
pub async fn del(env: &Env, cfg: &Config) -> Result<(), CniError> {
    let agent = Agent::connect(&cfg.agent).await.map_err(|u| u.to_error())?;
    let Some(found) = agent
        .attachments(&cfg.network, &env.container_id, &env.ifname)
        .await?
    else {
        return Ok(());
    };
    for a in &found {
        release(&agent, a).await?;
    }
    Ok(())
}

/// The attachments of `found` that `valid` does not list.
pub fn stale<'a>(found: &'a [Attachment], valid: &BTreeSet<GcAttachment>) -> Vec<&'a Attachment> {
    found
        .iter()
        .filter(|a| {
            a.endpoint.as_ref().is_some_and(|ep| {
                !valid.contains(&GcAttachment {
                    container_id: ep.container_id.clone(),
                    ifname: ep.ifname.clone(),
                })
            })
        })
        .collect()
}

/// GC.
pub async fn gc(cfg: &Config) -> Result<(), CniError> {
    if !cfg.at_least("1.1.0") {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "GC needs cniVersion 1.1.0, the configuration says {}",
                cfg.cni_version
            ),
        ));
    }
    let agent = Agent::connect(&cfg.agent).await.map_err(|u| u.to_error())?;
    let Some(found) = agent.attachments(&cfg.network, "", "").await? else {
        return Ok(());
    };
    let mut failures = Vec::new();
    for a in stale(&found, &cfg.valid) {
        if let Err(e) = release(&agent, a).await {
            let who = a.endpoint.as_ref().map_or("", |e| e.container_id.as_str());
            failures.push((who.to_owned(), e));
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    let transient = failures.iter().all(|(_, e)| e.code == TRY_AGAIN_LATER);
    let details: Vec<String> = failures
        .iter()
        .map(|(c, e)| format!("{c}: {}", e.msg))
        .collect();
    Err(CniError::new(
        if transient {
            TRY_AGAIN_LATER
        } else {
            AGENT_REFUSED
        },
        format!(
            "could not release {} stale attachment(s) of network {}",
            failures.len(),
            cfg.network
        ),
    )
    .details(details.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovnet_proto::v1::Endpoint;

    fn att(cid: &str, ifname: &str) -> Attachment {
        Attachment {
            endpoint: Some(Endpoint {
                container_id: cid.into(),
                ifname: ifname.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn stale_is_what_the_runtime_does_not_list() {
        let found = [att("a", "eth0"), att("a", "eth1"), att("b", "eth0")];
        let valid: BTreeSet<GcAttachment> = [GcAttachment {
            container_id: "a".into(),
            ifname: "eth0".into(),
        }]
        .into();
        let s: Vec<(&str, &str)> = stale(&found, &valid)
            .iter()
            .map(|a| {
                let ep = a.endpoint.as_ref().unwrap();
                (ep.container_id.as_str(), ep.ifname.as_str())
            })
            .collect();
        assert_eq!(s, [("a", "eth1"), ("b", "eth0")]);
        assert_eq!(stale(&found, &BTreeSet::new()).len(), 3);
    }
}
