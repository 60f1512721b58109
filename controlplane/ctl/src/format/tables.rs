//! The `docker network ls`-style tables: networks, external VTEPs, nodes, laid out as the
//! docker CLI's tabwriter does.

use ovnet_proto::{ExternalVtep, Network, NodeStatus};

use super::driver;

/// Length of the IDs `ls` shows, as docker does without `--no-trunc`.
pub const SHORT_ID_LEN: usize = 12;

/// Docker's tabwriter settings (`tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)` in the docker CLI's
/// formatter): a column is at least 10 characters wide and 3 wider than its widest cell.
const MIN_WIDTH: usize = 10;
const PADDING: usize = 3;

/// The first [`SHORT_ID_LEN`] characters of an ID (all of it if it is shorter).
pub fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID_LEN).unwrap_or(id)
}

/// Lays out a header and rows like docker's tabwriter: every column but the last is padded to
/// `max(10, widest cell + 3)`; the last is not padded, so lines carry no trailing spaces.
pub fn table<S: AsRef<str>>(header: &[&str], rows: &[Vec<S>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            s.push_str(cell);
            if i + 1 < cols {
                let width = (widths[i] + PADDING).max(MIN_WIDTH);
                let pad = width.saturating_sub(cell.chars().count());
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(AsRef::as_ref));
    }
    out
}

/// `ovctl network ls`: `NETWORK ID  NAME  DRIVER  SCOPE`, sorted by name like docker. With
/// `quiet`, only the IDs, one a line; `no_trunc` shows the full 64-character IDs.
pub fn network_ls(networks: &[Network], quiet: bool, no_trunc: bool) -> String {
    let mut nets: Vec<&Network> = networks.iter().collect();
    nets.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    let id = |n: &Network| {
        if no_trunc {
            n.id.clone()
        } else {
            short_id(&n.id).to_string()
        }
    };
    if quiet {
        return nets.iter().map(|n| id(n) + "\n").collect();
    }
    let rows: Vec<Vec<String>> = nets
        .iter()
        .map(|n| {
            vec![
                id(n),
                n.name.clone(),
                driver(n).to_string(),
                "global".to_string(),
            ]
        })
        .collect();
    table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows)
}

/// `ovctl network vtep ls`: `IP  PORT`, sorted by address then port.
pub fn vtep_ls(vteps: &[ExternalVtep]) -> String {
    let mut v: Vec<&ExternalVtep> = vteps.iter().collect();
    v.sort_by_key(|v| {
        (
            v.ip.parse::<std::net::Ipv4Addr>().ok(),
            v.ip.clone(),
            v.port,
        )
    });
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| vec![v.ip.clone(), v.port.to_string()])
        .collect();
    table(&["IP", "PORT"], &rows)
}

/// `ovctl node ls`: `NAME  VTEP  ALIVE  STATUS`, sorted by name; VTEP as `ip:port`, ALIVE
/// `yes`/`no`, STATUS why: the node's etcd lease, and when the answering agent's data plane
/// last heard the node's (a node whose lease expired is alive while it is heard).
pub fn node_ls(nodes: &[NodeStatus]) -> String {
    let empty = ovnet_proto::Node::default();
    let mut v: Vec<(&ovnet_proto::Node, &NodeStatus)> = nodes
        .iter()
        .map(|s| (s.node.as_ref().unwrap_or(&empty), s))
        .collect();
    v.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|(n, s)| {
            vec![
                n.name.clone(),
                format!("{}:{}", n.vtep_ip, n.vtep_port),
                if s.alive { "yes" } else { "no" }.to_string(),
                node_status(s),
            ]
        })
        .collect();
    table(&["NAME", "VTEP", "ALIVE", "STATUS"], &rows)
}

/// Why a node is alive or not: `lease`/`no lease`, and `heard 0.4s ago`/`not heard`.
fn node_status(s: &NodeStatus) -> String {
    let lease = if s.lease { "lease" } else { "no lease" };
    match s.heard_ms {
        Some(ms) => format!("{lease}, heard {:.1}s ago", ms as f64 / 1000.0),
        None => lease.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::demo;
    use ovnet_proto::Node;

    #[test]
    fn short_ids() {
        assert_eq!(short_id(&demo().id), "3d430f3338a2");
        assert_eq!(short_id("abc"), "abc");
    }

    #[test]
    fn ls_matches_docker_layout() {
        let other = Network {
            id: "0e7bef3f143a".repeat(5) + "abcd",
            name: "a-much-longer-name".into(),
            driver: String::new(),
            ..demo()
        };
        let out = network_ls(&[demo(), other], false, false);
        assert_eq!(
            out,
            "NETWORK ID     NAME                 DRIVER    SCOPE\n\
             0e7bef3f143a   a-much-longer-name   overlay   global\n\
             3d430f3338a2   demo                 overlay   global\n"
        );
    }

    #[test]
    fn ls_with_short_names_keeps_docker_minimum_width() {
        assert_eq!(
            network_ls(&[demo()], false, false),
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             3d430f3338a2   demo      overlay   global\n"
        );
        assert_eq!(
            network_ls(&[], false, false),
            "NETWORK ID   NAME      DRIVER    SCOPE\n"
        );
    }

    #[test]
    fn ls_quiet_and_no_trunc() {
        assert_eq!(network_ls(&[demo()], true, false), "3d430f3338a2\n");
        assert_eq!(
            network_ls(&[demo()], true, true),
            format!("{}\n", demo().id)
        );
        assert_eq!(network_ls(&[], true, false), "");
        let full = network_ls(&[demo()], false, true);
        assert!(full.lines().nth(1).unwrap().starts_with(&demo().id));
    }

    #[test]
    fn vtep_table_sorts_addresses_numerically() {
        let v = |ip: &str, port| ExternalVtep {
            network_id: demo().id,
            ip: ip.into(),
            port,
        };
        let out = vtep_ls(&[v("192.168.1.10", 4789), v("192.168.1.9", 4790)]);
        assert_eq!(
            out,
            "IP             PORT\n\
             192.168.1.9    4790\n\
             192.168.1.10   4789\n"
        );
        assert_eq!(vtep_ls(&[]), "IP        PORT\n");
    }

    #[test]
    fn node_table() {
        let n = |name: &str, ip: &str, alive, lease, heard_ms| NodeStatus {
            node: Some(Node {
                name: name.into(),
                vtep_ip: ip.into(),
                vtep_port: 4789,
                agent_version: "0.1.0".into(),
                started: "2020-04-10T14:00:00Z".into(),
                ..Default::default()
            }),
            alive,
            lease,
            heard_ms,
        };
        let out = node_ls(&[
            n("node2", "192.168.205.11", false, false, Some(12_000)),
            n("node1", "192.168.205.10", true, true, None),
            n("node3", "192.168.205.12", true, false, Some(400)),
        ]);
        assert_eq!(
            out,
            "NAME      VTEP                  ALIVE     STATUS\n\
             node1     192.168.205.10:4789   yes       lease\n\
             node2     192.168.205.11:4789   no        no lease, heard 12.0s ago\n\
             node3     192.168.205.12:4789   yes       no lease, heard 0.4s ago\n"
        );
    }
}
