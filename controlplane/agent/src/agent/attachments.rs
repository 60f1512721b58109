//! This node's endpoints as a container runtime looks them up: by network, container id,
//! interface name and owner. The CNI plugin finds an attachment `(CNI_CONTAINERID,
//! CNI_IFNAME)` here for DEL and CHECK, and lists its own for GC.
//!
//! Read from etcd, not from the view: right after a restart the view may not hold an endpoint
//! yet, and a DEL told "not there" would leak it. Only endpoints this node serves are listed;
//! another host's runtime collects its own.

use crate::domain::{ContainerId, Endpoint, Network, NodeName, Owner};
use crate::error::{AgentError, Invalid};
use crate::host::veth_name;

use super::Agent;

/// Which endpoints to list, as a request gives it: every empty field matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentFilter {
    /// Network name, ID or unique ID prefix.
    pub network: String,
    /// The runtime's id of the container.
    pub container_id: String,
    /// The interface inside the container.
    pub ifname: String,
    /// `"ovctl"` (which also matches endpoints stored without an owner), `"docker"`, `"cni"`.
    pub owner: String,
}

/// An endpoint of this node with its network.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its network.
    pub network: Network,
    /// The host end of its veth.
    pub host_ifname: String,
}

/// An [`AttachmentFilter`] whose values have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher<'a> {
    node: &'a NodeName,
    container_id: Option<&'a str>,
    ifname: Option<&'a str>,
    owner: Option<Owner>,
}

impl<'a> Matcher<'a> {
    fn new(f: &'a AttachmentFilter, node: &'a NodeName) -> Result<Matcher<'a>, AgentError> {
        let some = |s: &'a str| (!s.is_empty()).then_some(s);
        Ok(Matcher {
            node,
            container_id: some(&f.container_id),
            ifname: some(&f.ifname),
            owner: some(&f.owner)
                .map(Owner::parse)
                .transpose()
                .map_err(Invalid::from)?,
        })
    }

    /// Whether `ep` is this node's and passes the filter.
    fn matches(&self, ep: &Endpoint) -> bool {
        ep.node == *self.node
            && self
                .container_id
                .is_none_or(|c| ep.container_id.as_ref().map(ContainerId::as_str) == Some(c))
            && self.ifname.is_none_or(|i| ep.ifname == i)
            && self.owner.is_none_or(|o| ep.owner == o)
    }
}

impl Agent {
    /// This node's endpoints that pass `filter`, by network name then endpoint name. A
    /// network named in the filter must exist.
    pub async fn attachments(
        &self,
        filter: &AttachmentFilter,
    ) -> Result<Vec<Attachment>, AgentError> {
        let m = Matcher::new(filter, &self.cfg.node)?;
        let networks = if filter.network.is_empty() {
            self.store.list_networks().await?
        } else {
            vec![self.store.get_network(&filter.network).await?]
        };
        let mut out = Vec::new();
        for network in networks {
            for endpoint in self.store.list_endpoints(&network.id).await? {
                if m.matches(&endpoint) {
                    out.push(Attachment {
                        host_ifname: veth_name(&endpoint.id),
                        endpoint,
                        network: network.clone(),
                    });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::{endpoint, network};
    use crate::domain::IfName;

    #[test]
    fn only_this_nodes_endpoints_that_pass_every_given_field() {
        let net = network("demo", 256, "10.0.0.0/24");
        let node = NodeName::parse("host1").unwrap();
        let mut cni = endpoint(&net, "pod1", "host1", 2);
        cni.container_id = Some(ContainerId::parse("c1").unwrap());
        cni.owner = Owner::Cni;
        let mut other_if = cni.clone();
        other_if.ifname = IfName::parse("net1").unwrap();
        let mut elsewhere = cni.clone();
        elsewhere.node = NodeName::parse("host2").unwrap();
        let ovctl = endpoint(&net, "web", "host1", 3);

        let f = |c: &str, i: &str, o: &str| AttachmentFilter {
            network: "demo".into(),
            container_id: c.into(),
            ifname: i.into(),
            owner: o.into(),
        };
        let hits = |f: AttachmentFilter| {
            let m = Matcher::new(&f, &node).unwrap();
            [&cni, &other_if, &elsewhere, &ovctl]
                .iter()
                .filter(|e| m.matches(e))
                .count()
        };
        assert_eq!(hits(f("", "", "")), 3);
        assert_eq!(hits(f("c1", "", "")), 2);
        assert_eq!(hits(f("c1", "eth0", "cni")), 1);
        assert_eq!(hits(f("c1", "eth0", "docker")), 0);
        assert_eq!(hits(f("c2", "", "")), 0);
        // Records stored before owners existed are ovctl's.
        assert_eq!(hits(f("", "", "ovctl")), 1);
        let bad = f("", "", "kubelet");
        assert!(matches!(
            Matcher::new(&bad, &node),
            Err(AgentError::Invalid(Invalid::Runtime(_)))
        ));
    }
}
