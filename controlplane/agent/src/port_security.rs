//! Port security on the container side: ovnet's own nftables table in the bridge family,
//! `table bridge ovnet`, with one chain per local endpoint on its veth.
//!
//! A container's frames enter the host on the host end of its veth, a port of its network's
//! bridge. The bridge switches them to the other containers on the host without the data plane
//! seeing them, so the data plane's own check ([`ovnet_dataplane::port_security`]) cannot
//! protect neighbours on the same host; rules on the bridge port can, and they run before the
//! bridge learns the frame's source MAC (its FDB stays clean). Each endpoint's chain drops, and
//! counts under the data plane's drop-reason names:
//!
//! | rule | reason |
//! |---|---|
//! | VLAN-tagged frames (802.1Q, 802.1ad: a tag would hide the addresses below) | `spoofed_source` |
//! | Ethernet source other than the endpoint's MAC | `spoofed_source` |
//! | ARP sender MAC other than its MAC, sender address other than its IPv4 or `0.0.0.0` | `spoofed_source` |
//! | IPv4 source other than its IPv4 or `0.0.0.0` | `spoofed_source` |
//! | ICMPv6 router advertisements | `router_advert` |
//! | ICMPv6 neighbour advertisements whose target is not its link-local address | `forged_neighbour_advert` |
//! | IPv6 source other than its link-local address or `::` | `spoofed_source` |
//!
//! [`render`] turns the local endpoints into the whole table as `nft -f` text (pure), and
//! [`render_change`] into the statements that turn the table for one set of endpoints into
//! the table for another, leaving the chains of the unchanged ones (and their counters) alone.
//! [`Guard`] prepares the change when the endpoints change ([`Guard::prepare`]): the whole
//! table the first time (created if missing, flushed and defined again: a restarted agent
//! replaces what a previous run left), the difference after that, deleting the table when no
//! endpoint is left. The agent loads it in the same `nft` transaction as the edge's table
//! (one process per reconcile pass), before the veths are built. A chain that is flushed or
//! deleted loses its counters, so they are read first and kept (only when an endpoint leaves
//! or changes: a connect reads nothing). The table stays while the agent is stopped:
//! containers on the host keep talking over their bridges, still held to their addresses. No
//! other table is read or written.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use ovnet_dataplane::{DropReason, MacAddr};

use tokio::sync::Mutex;

use crate::edge::nft::Nft;

/// The table's family and name: `nft list table bridge ovnet` shows it.
pub const TABLE: &str = "bridge ovnet";

/// What one local endpoint may send, on which veth.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Port {
    /// The host end of its veth, a port of its network's bridge.
    pub veth: String,
    /// Its network's VNI, under which its drops are counted.
    pub vni: u32,
    /// Its MAC.
    pub mac: MacAddr,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 link-local address (derived from its MAC, as the data plane answers ND).
    pub ipv6: Ipv6Addr,
}

/// The `nft -f` text that makes the table hold one chain per port of `ports` (in order), or,
/// with no port, deletes it. One transaction either way; deleting succeeds whether or not the
/// table exists.
pub fn render(ports: &[Port]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "table {TABLE} {{}}");
    if ports.is_empty() {
        let _ = writeln!(out, "delete table {TABLE}");
        return out;
    }
    let _ = writeln!(out, "flush table {TABLE}");
    let _ = writeln!(out, "table {TABLE} {{");
    let _ = writeln!(out, "  chain prerouting {{");
    let _ = writeln!(
        out,
        "    type filter hook prerouting priority -200; policy accept;"
    );
    let _ = writeln!(out, "    {}", dispatch(ports));
    let _ = writeln!(out, "  }}");
    for p in ports {
        port_chain(&mut out, p);
    }
    let _ = writeln!(out, "}}");
    out
}

/// Appends the chain of port `p` (`chain ep_VETH { ... }`, inside a `table` block).
fn port_chain(out: &mut String, p: &Port) {
    let _ = writeln!(out, "  chain {} {{", chain(&p.veth));
    let drop = |out: &mut String, rule: &str, reason: DropReason| {
        let _ = writeln!(out, "    {rule} counter drop comment \"{}\"", reason.name());
    };
    let (mac, ip) = (p.mac, p.ipv4);
    let ll = u128::from(p.ipv6);
    drop(
        out,
        "ether type { 8021q, 8021ad }",
        DropReason::SpoofedSource,
    );
    drop(
        out,
        &format!("ether saddr != {mac}"),
        DropReason::SpoofedSource,
    );
    drop(
        out,
        &format!("arp saddr ether != {mac}"),
        DropReason::SpoofedSource,
    );
    drop(
        out,
        &format!("arp saddr ip != {{ {ip}, 0.0.0.0 }}"),
        DropReason::SpoofedSource,
    );
    drop(
        out,
        &format!("ip saddr != {{ {ip}, 0.0.0.0 }}"),
        DropReason::SpoofedSource,
    );
    drop(
        out,
        "icmpv6 type nd-router-advert",
        DropReason::RouterAdvert,
    );
    // The target address: 128 bits at byte 8 of the ICMPv6 message.
    drop(
        out,
        &format!("icmpv6 type nd-neighbor-advert @th,64,128 != 0x{ll:032x}"),
        DropReason::ForgedNeighbourAdvert,
    );
    drop(
        out,
        &format!("ip6 saddr != {{ {}, :: }}", p.ipv6),
        DropReason::SpoofedSource,
    );
    let _ = writeln!(out, "  }}");
}

/// The prerouting chain's one rule: each port's frames to its chain.
fn dispatch(ports: &[Port]) -> String {
    let jumps: Vec<String> = ports
        .iter()
        .map(|p| format!("\"{}\" : jump {}", p.veth, chain(&p.veth)))
        .collect();
    format!("iifname vmap {{ {} }}", jumps.join(", "))
}

/// The `nft -f` statements that turn the table [`render`] made for `old` into the one it
/// makes for `new` (both sorted), in one transaction: the chains of ports in both, unchanged,
/// are left alone (and keep their counters); those of ports that left are deleted, those of
/// ports that changed are flushed and filled again, new ones are added, and the prerouting
/// chain's one rule is replaced. With `old` or `new` empty, the whole table ([`render`]).
pub fn render_change(old: &[Port], new: &[Port]) -> String {
    if old.is_empty() || new.is_empty() {
        return render(new);
    }
    let by_veth = |ports: &[Port]| -> BTreeMap<String, Port> {
        ports.iter().map(|p| (p.veth.clone(), p.clone())).collect()
    };
    let (was, now) = (by_veth(old), by_veth(new));
    let mut out = String::new();
    // The jumps go first, so the chains they point at can go.
    let _ = writeln!(out, "flush chain {TABLE} prerouting");
    for (veth, p) in &was {
        match now.get(veth) {
            None => {
                let _ = writeln!(out, "flush chain {TABLE} {}", chain(veth));
                let _ = writeln!(out, "delete chain {TABLE} {}", chain(veth));
            }
            Some(q) if q != p => {
                let _ = writeln!(out, "flush chain {TABLE} {}", chain(veth));
            }
            Some(_) => {}
        }
    }
    let _ = writeln!(out, "table {TABLE} {{");
    let _ = writeln!(out, "  chain prerouting {{");
    let _ = writeln!(out, "    {}", dispatch(new));
    let _ = writeln!(out, "  }}");
    for p in new {
        if was.get(&p.veth) != Some(p) {
            port_chain(&mut out, p);
        }
    }
    let _ = writeln!(out, "}}");
    out
}

/// Whether going from `old` to `new` flushes or deletes a chain (whose counters must be read
/// first).
fn loses_counters(old: &[Port], new: &[Port]) -> bool {
    old.iter().any(|p| !new.contains(p))
}

/// The chain of the port on `veth`.
fn chain(veth: &str) -> String {
    format!("ep_{veth}")
}

/// Drops counted by the table, by VNI and reason.
pub type Counts = BTreeMap<(u32, DropReason), u64>;

/// Reads the drops of `ports` from the JSON of `nft -j list table bridge ovnet`: each rule of
/// a port's chain counts under its comment (a drop reason's name).
pub fn parse_counts(json: &str, ports: &[Port]) -> Counts {
    let mut counts = Counts::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return counts;
    };
    let vni_of: BTreeMap<String, u32> = ports.iter().map(|p| (chain(&p.veth), p.vni)).collect();
    let items = v["nftables"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        let (Some(chain), Some(comment)) = (rule["chain"].as_str(), rule["comment"].as_str())
        else {
            continue;
        };
        let (Some(&vni), Some(reason)) = (
            vni_of.get(chain),
            DropReason::ALL.into_iter().find(|r| r.name() == comment),
        ) else {
            continue;
        };
        let packets: u64 = rule["expr"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|e| e["counter"]["packets"].as_u64())
            .sum();
        *counts.entry((vni, reason)).or_default() += packets;
    }
    counts
}

/// The table's keeper: what it holds, and the drops counted before it was last rewritten.
#[derive(Debug)]
pub struct Guard {
    enabled: bool,
    /// The `nft` program, the edge's (`--nft`).
    nft: Nft,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The ports the table holds (`None`: not written yet by this run, or the last write
    /// failed: the next one rewrites it whole).
    ports: Option<Vec<Port>>,
    /// Drops counted by earlier versions of the table.
    earlier: Counts,
    /// The last failure logged, so that a failing `nft` is logged once per message.
    failed: Option<String>,
}

/// A change of the table, prepared and not yet loaded ([`Guard::prepare`]), until
/// [`Change::done`] says how loading went. The keeper's state is not locked meanwhile: a load
/// that hangs does not hold up the counters' readers (`ovctl stats`), who see the table as it
/// was until then.
#[derive(Debug)]
pub struct Change {
    state: Arc<Mutex<State>>,
    ports: Vec<Port>,
    text: String,
    /// What the chains this change flushes or deletes have counted, added to the earlier
    /// drops once it is loaded (or failed, after which the table is rewritten whole).
    pending: Counts,
}

impl Guard {
    /// A keeper that writes the table, or, not `enabled`, one that never touches it.
    pub fn new(enabled: bool, nft: Nft) -> Guard {
        Guard {
            enabled,
            nft,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// The change that makes the table guard exactly `ports` (sorted here), for the caller to
    /// load (alone or with other statements, in one `nft -f`); `None` if the table holds them
    /// already or the keeper is off. Reads the counters a flushed or deleted chain would lose.
    pub async fn prepare(&self, mut ports: Vec<Port>) -> Option<Change> {
        if !self.enabled {
            return None;
        }
        ports.sort();
        let old = {
            let st = self.state.lock().await;
            if st.ports.as_ref() == Some(&ports) {
                return None;
            }
            st.ports.clone()
        };
        let mut pending = Counts::new();
        let text = match old {
            None => render(&ports),
            Some(old) => {
                if loses_counters(&old, &ports) {
                    let listed =
                        nft(self.nft.program(), &["-j", "list", "table", TABLE], None).await;
                    if let Ok(json) = listed {
                        pending = parse_counts(&json, &old);
                    }
                }
                render_change(&old, &ports)
            }
        };
        Some(Change {
            state: Arc::clone(&self.state),
            ports,
            text,
            pending,
        })
    }

    /// Loads a prepared change alone.
    pub async fn load(&self, change: Change) {
        let loaded = self.nft.apply(change.text()).await;
        change.done(loaded.map_err(|e| e.to_string())).await;
    }

    /// Every drop the table has counted since the agent started, by VNI and reason.
    pub async fn counts(&self) -> Counts {
        if !self.enabled {
            return Counts::new();
        }
        let st = self.state.lock().await;
        let mut total = st.earlier.clone();
        if let Some(ports) = st.ports.as_ref().filter(|p| !p.is_empty()) {
            if let Ok(json) = nft(self.nft.program(), &["-j", "list", "table", TABLE], None).await {
                for (k, n) in parse_counts(&json, ports) {
                    *total.entry(k).or_default() += n;
                }
            }
        }
        total
    }
}

impl Change {
    /// The `nft -f` statements of the change.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Records how loading [`Change::text`] went (`Err`: what `nft` said).
    pub async fn done(self, loaded: Result<(), String>) {
        let mut st = self.state.lock().await;
        for (k, n) in self.pending {
            *st.earlier.entry(k).or_default() += n;
        }
        match loaded {
            Ok(()) => {
                if st.failed.take().is_some() || st.ports.is_none() {
                    log::info!(
                        "port security: {} container port(s) guarded (nftables table {TABLE})",
                        self.ports.len()
                    );
                }
                st.ports = Some(self.ports);
            }
            Err(e) => {
                if st.failed.as_deref() != Some(e.as_str()) {
                    log::error!(
                        "port security: writing nftables table {TABLE} failed: {e}; containers \
                         on this host are not held to their addresses towards each other (the \
                         data plane still is, towards other hosts)"
                    );
                    st.failed = Some(e);
                }
                st.ports = None;
            }
        }
    }
}

/// Runs `nft ARGS`, with `input` on its standard input; its stdout, or what went wrong.
async fn nft(program: &Path, args: &[&str], input: Option<&str>) -> Result<String, String> {
    let name = program.to_string_lossy();
    crate::host::exec("port security", &name, args, input.map(str::as_bytes))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(veth: &str, last: u8) -> Port {
        let mac = MacAddr([2, 0x42, 10, 0, 0, last]);
        Port {
            veth: veth.to_owned(),
            vni: 256,
            mac,
            ipv4: Ipv4Addr::new(10, 0, 0, last),
            ipv6: mac.ipv6_link_local(),
        }
    }

    #[test]
    fn one_chain_per_port_with_every_rule() {
        let text = render(&[port("ovva", 2), port("ovvb", 3)]);
        assert!(text.starts_with("table bridge ovnet {}\nflush table bridge ovnet\n"));
        assert!(
            text.contains(r#"iifname vmap { "ovva" : jump ep_ovva, "ovvb" : jump ep_ovvb }"#),
            "{text}"
        );
        for line in [
            "chain ep_ovva {",
            r#"ether saddr != 02:42:0a:00:00:02 counter drop comment "spoofed_source""#,
            r#"arp saddr ether != 02:42:0a:00:00:02 counter drop comment "spoofed_source""#,
            r#"arp saddr ip != { 10.0.0.2, 0.0.0.0 } counter drop comment "spoofed_source""#,
            r#"ip saddr != { 10.0.0.2, 0.0.0.0 } counter drop comment "spoofed_source""#,
            r#"icmpv6 type nd-router-advert counter drop comment "router_advert""#,
            "icmpv6 type nd-neighbor-advert @th,64,128 != 0xfe8000000000000000420afffe000002 \
             counter drop comment \"forged_neighbour_advert\"",
            r#"ip6 saddr != { fe80::42:aff:fe00:2, :: } counter drop comment "spoofed_source""#,
            "chain ep_ovvb {",
            "ip saddr != { 10.0.0.3, 0.0.0.0 }",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn a_change_leaves_the_chains_that_stay_alone() {
        let (a, b, c) = (port("ovva", 2), port("ovvb", 3), port("ovvc", 4));
        // A connect: only the new chain and the dispatch rule are written.
        let text = render_change(&[a.clone(), b.clone()], &[a.clone(), b.clone(), c.clone()]);
        assert!(text.starts_with(
            "flush chain bridge ovnet prerouting
table bridge ovnet {
"
        ));
        assert!(text.contains(
            r#"iifname vmap { "ovva" : jump ep_ovva, "ovvb" : jump ep_ovvb, "ovvc" : jump ep_ovvc }"#
        ));
        assert!(text.contains("chain ep_ovvc {"), "{text}");
        assert!(
            !text.contains("chain ep_ovva {") && !text.contains("ep_ovvb {"),
            "{text}"
        );
        assert!(!loses_counters(
            &[a.clone(), b.clone()],
            &[a.clone(), b.clone(), c.clone()]
        ));
        // A disconnect and a changed address: one chain deleted, one flushed and refilled.
        let b2 = port("ovvb", 9);
        let (ab, b2s) = (vec![a.clone(), b.clone()], vec![b2]);
        let text = render_change(&ab, &b2s);
        for line in [
            "flush chain bridge ovnet ep_ovva\ndelete chain bridge ovnet ep_ovva\n",
            "flush chain bridge ovnet ep_ovvb\n",
            "ip saddr != { 10.0.0.9, 0.0.0.0 }",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(
            !text.contains("delete chain bridge ovnet ep_ovvb"),
            "{text}"
        );
        assert!(loses_counters(&ab, &b2s));
        // From or to nothing: the whole table.
        let just_a = vec![a];
        assert_eq!(render_change(&[], &just_a), render(&just_a));
        assert_eq!(render_change(&just_a, &[]), render(&[]));
        assert!(loses_counters(&just_a, &[]));
    }

    #[test]
    fn no_port_deletes_the_table() {
        assert_eq!(
            render(&[]),
            "table bridge ovnet {}\ndelete table bridge ovnet\n"
        );
    }

    #[test]
    fn counters_are_read_by_chain_and_comment() {
        let json = r#"{"nftables": [
          {"metainfo": {"version": "1.0.6"}},
          {"rule": {"family": "bridge", "table": "ovnet", "chain": "ep_ovva", "comment": "spoofed_source",
                    "expr": [{"match": {}}, {"counter": {"packets": 3, "bytes": 180}}, {"drop": null}]}},
          {"rule": {"family": "bridge", "table": "ovnet", "chain": "ep_ovva", "comment": "spoofed_source",
                    "expr": [{"counter": {"packets": 2, "bytes": 100}}, {"drop": null}]}},
          {"rule": {"family": "bridge", "table": "ovnet", "chain": "ep_ovva", "comment": "router_advert",
                    "expr": [{"counter": {"packets": 1, "bytes": 90}}, {"drop": null}]}},
          {"rule": {"family": "bridge", "table": "ovnet", "chain": "ep_gone", "comment": "router_advert",
                    "expr": [{"counter": {"packets": 9, "bytes": 90}}, {"drop": null}]}},
          {"rule": {"family": "bridge", "table": "ovnet", "chain": "prerouting", "expr": []}}
        ]}"#;
        let counts = parse_counts(json, &[port("ovva", 2)]);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![
                ((256, DropReason::SpoofedSource), 5),
                ((256, DropReason::RouterAdvert), 1)
            ]
        );
        assert!(parse_counts("not json", &[port("ovva", 2)]).is_empty());
    }
}
