//! Who holds a node name: the decision an agent makes, when it registers, from the name's
//! record and whether its holder is alive, as a pure function ([`decide`]).
//!
//! A name is held by a host, the node id in its record ([`crate::domain::NodeId`], kept in the
//! host's state directory). The same host starting again gets its name back and adopts its
//! endpoints. Another host is refused while the holder's agent is alive, and also when it is
//! down unless the operator says `--replace-node`: the name then moves, and the endpoints the
//! old host served are released by the new one (their veths are not on this host). The store
//! claims the decision in one transaction ([`crate::store::Store::claim_node`]), so of two
//! agents racing for one name exactly one wins.

use super::records::Node;

/// What registering under a name does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody held the name.
    Fresh,
    /// This host held it: a restart. (Also a record from before node ids, with this host's
    /// VTEP.)
    Restart,
    /// Another host held it and its agent is down: the name moves here.
    Replace(Node),
}

/// Why a name cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeTaken {
    /// Another host holds it and its agent is alive.
    #[error(
        "node name {name} is held by a running agent on another host (node id {id}, VTEP \
         {vtep}, started {started}): give this host another name with --node, or stop that \
         agent first"
    )]
    Live {
        /// The name.
        name: String,
        /// The holder's node id.
        id: String,
        /// The holder's VTEP.
        vtep: String,
        /// When the holder's agent started.
        started: String,
    },
    /// Another host holds it, and its agent is down.
    #[error(
        "node name {name} belongs to another host (node id {id}, VTEP {vtep}), whose agent is \
         down: pass --replace-node to take the name over and release that host's endpoints, or \
         give this host another name with --node"
    )]
    Dead {
        /// The name.
        name: String,
        /// The holder's node id.
        id: String,
        /// The holder's VTEP.
        vtep: String,
    },
    /// The name moved to another host while this agent was cut off from etcd.
    #[error(
        "node name {name} was taken over by another host (node id {id}, VTEP {vtep}) while \
         this agent could not reach etcd: stopping"
    )]
    TakenOver {
        /// The name.
        name: String,
        /// The new holder's node id.
        id: String,
        /// The new holder's VTEP.
        vtep: String,
    },
}

impl NodeTaken {
    /// The same refusal, met by an agent that held the name before.
    pub fn taken_over(self) -> NodeTaken {
        match self {
            NodeTaken::Live { name, id, vtep, .. }
            | NodeTaken::Dead { name, id, vtep }
            | NodeTaken::TakenOver { name, id, vtep } => NodeTaken::TakenOver { name, id, vtep },
        }
    }
}

/// What `me` registering does, given the name's current record `held` (if any), whether its
/// holder's liveness lease is held, and whether the operator allows replacing a dead holder.
pub fn decide(
    me: &Node,
    held: Option<&Node>,
    alive: bool,
    replace: bool,
) -> Result<Claim, NodeTaken> {
    let Some(held) = held else {
        return Ok(Claim::Fresh);
    };
    let same = match (&held.node_id, &me.node_id) {
        (Some(a), Some(b)) => a == b,
        // A record from before node ids: the host with its VTEP is taken to be its owner.
        (None, _) => held.vtep == me.vtep,
        (Some(_), None) => false,
    };
    if same {
        return Ok(Claim::Restart);
    }
    let id = held
        .node_id
        .as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string);
    let (name, vtep) = (held.name.to_string(), held.vtep.to_string());
    if alive {
        return Err(NodeTaken::Live {
            name,
            id,
            vtep,
            started: held.started.clone(),
        });
    }
    if !replace {
        return Err(NodeTaken::Dead { name, id, vtep });
    }
    Ok(Claim::Replace(held.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NodeId, NodeName};

    fn node(ip: &str, id: Option<NodeId>) -> Node {
        Node {
            name: NodeName::parse("host1").unwrap(),
            vtep: format!("{ip}:4789").parse().unwrap(),
            agent_version: "test".into(),
            started: "2020-04-10T14:00:00Z".into(),
            node_id: id,
            underlay_mtu: None,
        }
    }

    #[test]
    fn a_name_is_held_by_one_host() {
        let (a, b) = (NodeId::random(), NodeId::random());
        let me = node("192.168.50.1", Some(a.clone()));
        assert_eq!(decide(&me, None, false, false), Ok(Claim::Fresh));
        // The same host again, alive or not (a SIGKILLed agent's lease may still run).
        let mine = node("192.168.50.9", Some(a));
        assert_eq!(decide(&me, Some(&mine), true, false), Ok(Claim::Restart));
        let other = node("192.168.50.3", Some(b.clone()));
        let e = decide(&me, Some(&other), true, true).unwrap_err();
        assert!(matches!(e, NodeTaken::Live { .. }), "{e}");
        assert!(e.to_string().contains(&format!("node id {b}")), "{e}");
        let e = decide(&me, Some(&other), false, false).unwrap_err();
        assert!(e.to_string().contains("pass --replace-node"), "{e}");
        assert_eq!(
            decide(&me, Some(&other), false, true),
            Ok(Claim::Replace(other.clone()))
        );
        assert!(e.taken_over().to_string().contains("taken over"));
    }

    #[test]
    fn a_record_from_before_node_ids_belongs_to_its_vtep() {
        let me = node("192.168.50.1", Some(NodeId::random()));
        let legacy = node("192.168.50.1", None);
        assert_eq!(decide(&me, Some(&legacy), true, false), Ok(Claim::Restart));
        let elsewhere = node("192.168.50.2", None);
        let e = decide(&me, Some(&elsewhere), true, false).unwrap_err();
        assert!(e.to_string().contains("node id none"), "{e}");
    }
}
