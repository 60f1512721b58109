//! CHECK: is the attachment still what `prevResult` says?
//!
//! In ovnet: the endpoint of `(CNI_CONTAINERID, CNI_IFNAME)` exists on this node with the
//! address `prevResult` gives, and the host end of its veth is there. In the container:
//! `CNI_IFNAME` exists, is up, has the MAC and addresses `prevResult` gives, and every route
//! `prevResult` lists is present (a later plugin that changed a route reports it in its
//! result, so `prevResult` is the final word). [`compare`] is the whole rule, pure.

use ovnet_proto::v1::Attachment;

use crate::agent::Agent;
use crate::config::Config;
use crate::env::Env;
use crate::error::{CniError, CHECK_FAILED, INCOMPATIBLE_VERSION, INVALID_CONFIG};
use crate::netns::{self, Link, RouteEntry};
use crate::result::Success;

/// What CHECK compares.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    /// The attachment as the agent lists it.
    pub attachment: &'a Attachment,
    /// The links of the container's namespace.
    pub links: &'a [Link],
    /// Its IPv4 routes.
    pub routes: &'a [RouteEntry],
    /// The links of the host's (the plugin's) namespace.
    pub host_links: &'a [Link],
}

fn failed(msg: String) -> CniError {
    CniError::new(CHECK_FAILED, msg)
}

/// Compares what was found with `prev` for the attachment of `env`; the first difference is
/// the error.
pub fn compare(env: &Env, prev: &Success, found: Found<'_>) -> Result<(), CniError> {
    let ifname = &env.ifname;
    let (index, iface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| &i.name == ifname && i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
        .ok_or_else(|| failed(format!("prevResult lists no container interface {ifname}")))?;
    let expected: Vec<&str> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface == Some(index))
        .map(|ip| ip.address.as_str())
        .collect();
    let (Some(ep), Some(net)) = (&found.attachment.endpoint, &found.attachment.network) else {
        return Err(failed(
            "the ovnet agent lists the attachment without its endpoint".into(),
        ));
    };
    let prefix = net.subnet.split_once('/').map_or("", |(_, p)| p);
    let ours = format!("{}/{prefix}", ep.ipv4);
    if !expected.contains(&ours.as_str()) {
        return Err(failed(format!(
            "ovnet holds {ours} for {ifname}, prevResult says {}",
            if expected.is_empty() {
                "no address".to_owned()
            } else {
                expected.join(", ")
            }
        )));
    }
    if !found
        .host_links
        .iter()
        .any(|l| l.ifname == found.attachment.host_ifname)
    {
        return Err(failed(format!(
            "the host end {} of {ifname} is missing",
            found.attachment.host_ifname
        )));
    }
    let link = found
        .links
        .iter()
        .find(|l| &l.ifname == ifname)
        .ok_or_else(|| failed(format!("interface {ifname} is missing from {}", env.netns)))?;
    if !link.is_up() {
        return Err(failed(format!(
            "interface {ifname} in {} is down",
            env.netns
        )));
    }
    if let Some(mac) = &iface.mac {
        let actual = link.address.as_deref().unwrap_or("");
        if !actual.eq_ignore_ascii_case(mac) {
            return Err(failed(format!(
                "interface {ifname} has MAC {actual}, prevResult says {mac}"
            )));
        }
    }
    let have = link.ipv4_cidrs();
    if let Some(missing) = expected.iter().find(|a| !have.iter().any(|h| h == *a)) {
        return Err(failed(format!(
            "interface {ifname} lacks address {missing} (has {})",
            if have.is_empty() {
                "none".to_owned()
            } else {
                have.join(", ")
            }
        )));
    }
    for r in &prev.routes {
        let present = found.routes.iter().any(|f| {
            f.cidr() == r.dst
                && r.gw
                    .as_ref()
                    .is_none_or(|gw| f.gateway.as_ref() == Some(gw))
        });
        if !present {
            return Err(failed(format!(
                "route to {}{} is missing from {}",
                r.dst,
                r.gw.as_ref()
                    .map(|g| format!(" via {g}"))
                    .unwrap_or_default(),
                env.netns
            )));
        }
    }
    Ok(())
}

/// CHECK.
pub async fn check(env: &Env, cfg: &Config) -> Result<(), CniError> {
    if !cfg.at_least("0.4.0") {
        return Err(CniError::new(
            INCOMPATIBLE_VERSION,
            format!(
                "CHECK needs cniVersion 0.4.0 or later, the configuration says {}",
                cfg.cni_version
            ),
        ));
    }
    let Some(prev) = &cfg.prev_result else {
        return Err(CniError::new(
            INVALID_CONFIG,
            "CHECK needs prevResult, the result of the ADD being checked",
        ));
    };
    let agent = Agent::connect(&cfg.agent).await.map_err(|u| u.to_error())?;
    let found = agent
        .attachments(&cfg.network, &env.container_id, &env.ifname)
        .await?
        .ok_or_else(|| failed(format!("network {} no longer exists", cfg.network)))?;
    let Some(attachment) = found.first() else {
        return Err(failed(format!(
            "ovnet has no attachment of container {} interface {} on network {}",
            env.container_id, env.ifname, cfg.network
        )));
    };
    let read = |e: String| failed(format!("cannot read {}", env.netns)).details(e);
    let links = netns::links(Some(&env.netns)).await.map_err(read)?;
    let routes = netns::routes(&env.netns).await.map_err(read)?;
    let host_links = netns::links(None)
        .await
        .map_err(|e| failed("cannot read the host's interfaces".into()).details(e))?;
    compare(
        env,
        prev,
        Found {
            attachment,
            links: &links,
            routes: &routes,
            host_links: &host_links,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::{parse_links, parse_routes};
    use ovnet_proto::v1::{Endpoint, Network};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn env() -> Env {
        Env {
            command: crate::env::Command::Check,
            container_id: "c1".into(),
            netns: "/var/run/netns/pod1".into(),
            ifname: "eth0".into(),
            args: BTreeMap::new(),
        }
    }

    fn attachment(ip: &str) -> Attachment {
        Attachment {
            endpoint: Some(Endpoint {
                ipv4: ip.into(),
                ..Default::default()
            }),
            network: Some(Network {
                subnet: "10.0.0.0/24".into(),
                ..Default::default()
            }),
            host_ifname: "ovvabc".into(),
        }
    }

    fn prev() -> Success {
        serde_json::from_value(json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "ovvabc"},
                           {"name": "eth0", "mac": "02:42:0a:00:00:02", "sandbox": "/var/run/netns/pod1"}],
            "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
        }))
        .unwrap()
    }

    const LINKS: &str = r#"[{"ifname":"lo","flags":["UP"]},{"ifname":"eth0","flags":["BROADCAST","UP"],"address":"02:42:0A:00:00:02","addr_info":[{"family":"inet","local":"10.0.0.2","prefixlen":24}]}]"#;
    const ROUTES: &str = r#"[{"dst":"default","gateway":"10.0.0.1","dev":"eth0"}]"#;

    fn run(
        prev: &Success,
        a: &Attachment,
        links: &str,
        routes: &str,
        host: &str,
    ) -> Result<(), String> {
        let (links, routes) = (parse_links(links).unwrap(), parse_routes(routes).unwrap());
        let host = parse_links(host).unwrap();
        compare(
            &env(),
            prev,
            Found {
                attachment: a,
                links: &links,
                routes: &routes,
                host_links: &host,
            },
        )
        .map_err(|e| {
            assert_eq!(e.code, CHECK_FAILED);
            e.msg
        })
    }

    const HOST: &str = r#"[{"ifname":"ovvabc","flags":["UP"]}]"#;

    #[test]
    fn an_intact_attachment_passes() {
        run(&prev(), &attachment("10.0.0.2"), LINKS, ROUTES, HOST).unwrap();
    }

    #[test]
    fn each_difference_is_named() {
        let a = attachment("10.0.0.2");
        let e = run(&prev(), &attachment("10.0.0.3"), LINKS, ROUTES, HOST).unwrap_err();
        assert_eq!(
            e,
            "ovnet holds 10.0.0.3/24 for eth0, prevResult says 10.0.0.2/24"
        );
        let e = run(&prev(), &a, r#"[{"ifname":"lo"}]"#, ROUTES, HOST).unwrap_err();
        assert_eq!(e, "interface eth0 is missing from /var/run/netns/pod1");
        let e = run(&prev(), &a, LINKS, ROUTES, "[]").unwrap_err();
        assert_eq!(e, "the host end ovvabc of eth0 is missing");
        let down = LINKS.replace("\"BROADCAST\",\"UP\"", "\"BROADCAST\"");
        let e = run(&prev(), &a, &down, ROUTES, HOST).unwrap_err();
        assert_eq!(e, "interface eth0 in /var/run/netns/pod1 is down");
        let other_mac = LINKS.replace("0A:00:00:02", "0a:00:00:09");
        let e = run(&prev(), &a, &other_mac, ROUTES, HOST).unwrap_err();
        assert!(
            e.starts_with("interface eth0 has MAC 02:42:0a:00:00:09"),
            "{e}"
        );
        let no_addr = LINKS.replace("\"local\":\"10.0.0.2\"", "\"local\":\"10.0.0.9\"");
        let e = run(&prev(), &a, &no_addr, ROUTES, HOST).unwrap_err();
        assert_eq!(
            e,
            "interface eth0 lacks address 10.0.0.2/24 (has 10.0.0.9/24)"
        );
        let e = run(&prev(), &a, LINKS, "[]", HOST).unwrap_err();
        assert_eq!(
            e,
            "route to 0.0.0.0/0 via 10.0.0.1 is missing from /var/run/netns/pod1"
        );
        let mut no_iface = prev();
        no_iface.interfaces.truncate(1);
        let e = run(&no_iface, &a, LINKS, ROUTES, HOST).unwrap_err();
        assert_eq!(e, "prevResult lists no container interface eth0");
    }
}
