//! ADD: attach the container, then describe the attachment as a CNI result.
//!
//! The agent does the work (claims the name and address in etcd, builds the veth `CNI_IFNAME`
//! in `CNI_NETNS`, and whatever routes the network gives); this side refuses what the
//! specification says to refuse before asking (the same container and interface attached
//! already, an interface of that name in the namespace), then reads back what was made: the
//! endpoint and its network from the agent, the routes from the namespace.

use ovnet_proto::v1::{Attachment, ConnectRequest, DisconnectRequest};

use crate::agent::{Agent, OWNER};
use crate::config::Config;
use crate::env::Env;
use crate::error::{CniError, AGENT_REFUSED, ALREADY_ATTACHED, INVALID_CONFIG, INVALID_ENV};
use crate::name::{container_name, POD_NAME_ARG};
use crate::netns;
use crate::result::{Dns, Interface, IpConfig, Route, Success};

/// The error for a network that does not exist.
pub fn no_network(network: &str) -> CniError {
    CniError::new(INVALID_CONFIG, format!("network {network} not found")).details(format!(
        "\"network\" names an ovnet network that does not exist: create it with `ovctl network \
         create {network}` or fix the network configuration"
    ))
}

/// The CNI result describing `a`, made for `env` at protocol version `version`:
/// the host end of the veth, the container interface, its address with the network's
/// gateway, the `routes` found in the container and the network's resolver (or `dns`).
pub fn describe(
    a: &Attachment,
    env: &Env,
    version: &str,
    host_mac: Option<String>,
    routes: Vec<Route>,
    dns: Option<Dns>,
) -> Result<Success, CniError> {
    let (Some(ep), Some(net)) = (&a.endpoint, &a.network) else {
        return Err(CniError::new(
            AGENT_REFUSED,
            "the ovnet agent answered an attachment without its endpoint or network",
        ));
    };
    let prefix = net.subnet.split_once('/').map(|(_, p)| p).ok_or_else(|| {
        CniError::new(
            AGENT_REFUSED,
            format!(
                "network {} has a subnet without a prefix length: {:?}",
                net.name, net.subnet
            ),
        )
    })?;
    let pre_1 = !version.starts_with("1.");
    Ok(Success {
        cni_version: version.to_owned(),
        interfaces: vec![
            Interface {
                name: a.host_ifname.clone(),
                mac: host_mac,
                ..Default::default()
            },
            Interface {
                name: env.ifname.clone(),
                mac: Some(ep.mac.clone()),
                mtu: Some(net.mtu),
                sandbox: Some(env.netns.clone()),
                ..Default::default()
            },
        ],
        ips: vec![IpConfig {
            version: pre_1.then(|| "4".to_owned()),
            address: format!("{}/{prefix}", ep.ipv4),
            gateway: Some(net.gateway.clone()),
            interface: Some(1),
            ..Default::default()
        }],
        routes,
        dns: dns.unwrap_or_else(|| Dns {
            nameservers: vec![net.gateway.clone()],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The routes through a gateway on `ifname` (the connected route of the subnet is implied by
/// the address and left out, as other plugins do).
pub fn gateway_routes(found: &[netns::RouteEntry], ifname: &str) -> Vec<Route> {
    found
        .iter()
        .filter(|r| r.dev.as_deref() == Some(ifname) && r.gateway.is_some())
        .map(|r| Route {
            dst: r.cidr(),
            gw: r.gateway.clone(),
            ..Default::default()
        })
        .collect()
}

/// Refuses a `CNI_NETNS` that does not exist, or that is the plugin's own namespace (the
/// host's: a veth made there would take the host's interface name).
fn check_netns(netns: &str) -> Result<(), CniError> {
    use std::os::unix::fs::MetadataExt;
    let invalid =
        |why: String| CniError::new(INVALID_ENV, format!("invalid CNI_NETNS {netns:?}: {why}"));
    let target = std::fs::metadata(netns).map_err(|e| invalid(e.to_string()))?;
    if let Ok(own) = std::fs::metadata("/proc/self/ns/net") {
        if (own.dev(), own.ino()) == (target.dev(), target.ino()) {
            return Err(invalid(
                "it is the runtime's own network namespace, not a container's".into(),
            ));
        }
    }
    Ok(())
}

/// ADD.
pub async fn add(env: &Env, cfg: &Config) -> Result<Success, CniError> {
    check_netns(&env.netns)?;
    // The namespace first: what is wrong here needs no agent to be found.
    let links = netns::links(Some(&env.netns)).await.map_err(|e| {
        CniError::new(
            INVALID_ENV,
            format!(
                "invalid CNI_NETNS {:?}: cannot read its interfaces",
                env.netns
            ),
        )
        .details(e)
    })?;
    let agent = Agent::connect(&cfg.agent).await.map_err(|u| u.to_error())?;
    match agent
        .attachments(&cfg.network, &env.container_id, &env.ifname)
        .await?
    {
        None => return Err(no_network(&cfg.network)),
        Some(found) if !found.is_empty() => {
            let name = found[0].endpoint.as_ref().map_or("", |e| e.name.as_str());
            return Err(CniError::new(
                ALREADY_ATTACHED,
                format!(
                    "container {} already has interface {} on network {} (as {name}): DEL it first",
                    env.container_id, env.ifname, cfg.network
                ),
            ));
        }
        Some(_) => {}
    }
    if links.iter().any(|l| l.ifname == env.ifname) {
        return Err(CniError::new(
            ALREADY_ATTACHED,
            format!(
                "interface {} already exists in {}: choose another CNI_IFNAME",
                env.ifname, env.netns
            ),
        ));
    }
    let name = container_name(
        env.args.get(POD_NAME_ARG).map(String::as_str),
        &env.container_id,
    );
    let req = ConnectRequest {
        network: cfg.network.clone(),
        container: name.clone(),
        netns: env.netns.clone(),
        ipv4: None,
        ifname: env.ifname.clone(),
        container_id: env.container_id.clone(),
        owner: OWNER.to_owned(),
        // Port mappings are portmap's, chained after this plugin (deploy/cni).
        publish: Vec::new(),
    };
    let ep = match agent.call(agent.client().connect_container(req)).await {
        Ok(ep) => ep,
        Err(Ok(s)) if s.code() == tonic::Code::NotFound => return Err(no_network(&cfg.network)),
        Err(e) => return Err(Agent::failure(e)),
    };
    match describe_new(&agent, env, cfg).await {
        Ok(r) => Ok(r),
        Err(e) => {
            // Leave nothing behind: the runtime will DEL, but may not reach us then.
            let undo = DisconnectRequest {
                network: ep.network_id.clone(),
                container: ep.name.clone(),
            };
            let _ = agent.call(agent.client().disconnect_container(undo)).await;
            Err(e)
        }
    }
}

/// Reads back the attachment just made and describes it, chained after `prevResult`.
async fn describe_new(agent: &Agent, env: &Env, cfg: &Config) -> Result<Success, CniError> {
    let found = agent
        .attachments(&cfg.network, &env.container_id, &env.ifname)
        .await?
        .unwrap_or_default();
    let Some(a) = found.first() else {
        return Err(CniError::new(
            AGENT_REFUSED,
            format!(
                "the ovnet agent connected container {} but does not list it",
                env.container_id
            ),
        ));
    };
    let read = |e: String| {
        CniError::new(AGENT_REFUSED, "reading back the interfaces the agent made").details(e)
    };
    let routes = netns::routes(&env.netns).await.map_err(read)?;
    let host_mac = netns::links(None)
        .await
        .map_err(read)?
        .into_iter()
        .find(|l| l.ifname == a.host_ifname)
        .and_then(|l| l.address);
    let mine = describe(
        a,
        env,
        &cfg.cni_version,
        host_mac,
        gateway_routes(&routes, &env.ifname),
        cfg.dns.clone(),
    )?;
    Ok(match cfg.prev_result.clone() {
        Some(prev) => Success::chain(prev, mine),
        None => mine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovnet_proto::v1::{Endpoint, Network};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn env() -> Env {
        Env {
            command: crate::env::Command::Add,
            container_id: "c1".into(),
            netns: "/var/run/netns/pod1".into(),
            ifname: "eth0".into(),
            args: BTreeMap::new(),
        }
    }

    fn attachment() -> Attachment {
        Attachment {
            endpoint: Some(Endpoint {
                name: "pod1".into(),
                mac: "02:42:0a:00:00:02".into(),
                ipv4: "10.0.0.2".into(),
                ..Default::default()
            }),
            network: Some(Network {
                name: "demo".into(),
                subnet: "10.0.0.0/24".into(),
                gateway: "10.0.0.1".into(),
                mtu: 1450,
                ..Default::default()
            }),
            host_ifname: "ovv3d430f3338a".into(),
        }
    }

    #[test]
    fn the_result_of_a_new_attachment() {
        let routes = gateway_routes(
            &netns::parse_routes(
                r#"[{"dst":"default","gateway":"10.0.0.1","dev":"eth0"},
                    {"dst":"10.0.0.0/24","dev":"eth0","protocol":"kernel"},
                    {"dst":"default","gateway":"192.0.2.1","dev":"eth1"}]"#,
            )
            .unwrap(),
            "eth0",
        );
        let r = describe(
            &attachment(),
            &env(),
            "1.1.0",
            Some("aa:bb:cc:dd:ee:ff".into()),
            routes,
            None,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "ovv3d430f3338a", "mac": "aa:bb:cc:dd:ee:ff"},
                    {"name": "eth0", "mac": "02:42:0a:00:00:02", "mtu": 1450,
                     "sandbox": "/var/run/netns/pod1"}
                ],
                "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
                "dns": {"nameservers": ["10.0.0.1"]}
            })
        );
    }

    #[test]
    fn older_versions_and_given_dns() {
        let dns = Dns {
            nameservers: vec!["192.0.2.53".into()],
            search: vec!["example.org".into()],
            ..Default::default()
        };
        let r = describe(
            &attachment(),
            &env(),
            "0.4.0",
            None,
            vec![],
            Some(dns.clone()),
        )
        .unwrap();
        assert_eq!(r.ips[0].version.as_deref(), Some("4"));
        assert_eq!(r.dns, dns);
        assert_eq!(r.interfaces[0].mac, None);
        let broken = Attachment {
            network: None,
            ..attachment()
        };
        assert_eq!(
            describe(&broken, &env(), "1.1.0", None, vec![], None)
                .unwrap_err()
                .code,
            AGENT_REFUSED
        );
    }
}
