//! MTU rules over the nodes' underlays, as pure functions: what a path between two nodes
//! carries, which MTU a network gets by default, and which nodes a chosen MTU is too large
//! for.
//!
//! Each node records the MTU of its underlay device ([`Node::underlay_mtu`]). VXLAN adds
//! [`VXLAN_OVERHEAD`] bytes to an inner IP packet, so the path between two nodes carries inner
//! packets of the smaller of their underlay MTUs less the overhead: the path MTU the data
//! plane enforces per peer (answering larger frames with ICMP "too big"). A network created
//! without `--mtu` gets the smallest path MTU of the cluster, so that nothing needs answering;
//! one created with a larger MTU works too (TCP adapts through those answers), with a warning
//! naming the nodes whose underlay cannot carry it.

use super::ipam::{DEFAULT_MTU, MAX_MTU, MIN_MTU};
use super::records::{BadRecord, Node};

/// Bytes VXLAN over IPv4 adds to an inner IP packet (the kernel's `VXLAN_HEADROOM`).
pub const VXLAN_OVERHEAD: u32 = ovnet_wire::vxlan::OVERHEAD_V4 as u32;

/// The underlay MTU as a node record stores it: 0 means unknown (a record written before the
/// field existed); otherwise an MTU an IPv4 link may have (68, RFC 791, to 65535).
pub fn parse_underlay_mtu(stored: u32) -> Result<Option<u32>, BadRecord> {
    match stored {
        0 => Ok(None),
        m if (MIN_MTU..=u32::from(u16::MAX)).contains(&m) => Ok(Some(m)),
        m => Err(BadRecord::Field {
            field: "underlay_mtu",
            value: m.to_string(),
        }),
    }
}

/// What a path between underlays of MTU `a` and `b` carries inside VXLAN: the smaller less
/// [`VXLAN_OVERHEAD`], from what is known; 0 if neither is known. (An underlay too small
/// for any overlay gives 0 too: nothing to enforce that would help.)
pub fn path_mtu(a: Option<u32>, b: Option<u32>) -> u32 {
    let smaller = match (a, b) {
        (Some(a), Some(b)) => a.min(b),
        (Some(m), None) | (None, Some(m)) => m,
        (None, None) => return 0,
    };
    smaller.saturating_sub(VXLAN_OVERHEAD)
}

/// The MTU of a network created without one: the smallest underlay MTU of `nodes` less the
/// overhead, within what a network may have (68..=9000); [`DEFAULT_MTU`] (1450, for a
/// 1500-byte underlay) while no node says.
pub fn default_network_mtu(nodes: &[Node]) -> u32 {
    match nodes.iter().filter_map(|n| n.underlay_mtu).min() {
        Some(m) => m.saturating_sub(VXLAN_OVERHEAD).clamp(MIN_MTU, MAX_MTU),
        None => DEFAULT_MTU,
    }
}

/// One warning per node (by name) whose underlay cannot carry packets of `mtu` bytes inside
/// VXLAN, saying what happens to them instead.
pub fn mtu_warnings(mtu: u32, nodes: &[Node]) -> Vec<String> {
    let mut short: Vec<(&Node, u32)> = nodes
        .iter()
        .filter_map(|n| Some((n, n.underlay_mtu?)))
        .filter(|&(_, u)| u.saturating_sub(VXLAN_OVERHEAD) < mtu)
        .collect();
    short.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    short
        .into_iter()
        .map(|(n, u)| {
            let fits = u.saturating_sub(VXLAN_OVERHEAD);
            format!(
                "MTU {mtu} is more than node {name}'s underlay carries (MTU {u}, so {fits} \
                 inside VXLAN): packets over {fits} bytes to and from {name} are answered with \
                 ICMP \"too big\" (TCP adapts) or, IPv4 without DF, fragmented; create the \
                 network with --mtu {fits} to avoid both",
                name = n.name,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NodeName;

    fn node(name: &str, mtu: Option<u32>) -> Node {
        Node {
            name: NodeName::parse(name).unwrap(),
            vtep: "192.168.50.1:4789".parse().unwrap(),
            agent_version: "test".into(),
            started: String::new(),
            node_id: None,
            underlay_mtu: mtu,
        }
    }

    #[test]
    fn a_path_carries_the_smaller_underlay_less_50() {
        assert_eq!(path_mtu(Some(1500), Some(1400)), 1350);
        assert_eq!(path_mtu(Some(1400), Some(1500)), 1350);
        assert_eq!(path_mtu(Some(9000), None), 8950);
        assert_eq!(path_mtu(None, Some(1500)), 1450);
        assert_eq!(path_mtu(None, None), 0, "unknown: nothing to enforce");
        assert_eq!(path_mtu(Some(40), Some(1500)), 0);
    }

    #[test]
    fn the_default_follows_the_smallest_known_underlay() {
        assert_eq!(default_network_mtu(&[]), 1450, "nothing known");
        assert_eq!(default_network_mtu(&[node("a", None)]), 1450);
        let nodes = [
            node("host1", Some(1500)),
            node("host2", None),
            node("host3", Some(1400)),
        ];
        assert_eq!(default_network_mtu(&nodes), 1350);
        assert_eq!(default_network_mtu(&[node("j", Some(9216))]), 9000);
        assert_eq!(default_network_mtu(&[node("t", Some(100))]), 68);
    }

    #[test]
    fn warnings_name_every_node_too_small_and_say_what_fits() {
        let nodes = [
            node("host3", Some(1400)),
            node("host1", Some(1500)),
            node("host2", None),
            node("host0", Some(1300)),
        ];
        assert!(mtu_warnings(1250, &nodes).is_empty());
        assert!(mtu_warnings(1350, &nodes[..3]).is_empty());
        let w = mtu_warnings(1450, &nodes);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("MTU 1450 is more than node host0's underlay"),
            "{w:?}"
        );
        assert!(w[1].contains("node host3's underlay carries (MTU 1400, so 1350"));
        assert!(w[1].contains("--mtu 1350"), "{w:?}");
        assert!(w.iter().all(|l| l.is_ascii() && !l.contains('\n')));
    }

    #[test]
    fn stored_underlay_mtus_are_checked() {
        assert_eq!(parse_underlay_mtu(0), Ok(None));
        assert_eq!(parse_underlay_mtu(68), Ok(Some(68)));
        assert_eq!(parse_underlay_mtu(65535), Ok(Some(65535)));
        for bad in [1, 67, 65536, u32::MAX] {
            assert_eq!(
                parse_underlay_mtu(bad).unwrap_err().to_string(),
                format!("bad underlay_mtu \"{bad}\"")
            );
        }
    }
}
