//! The edge's part of reconciling ([`crate::edge`] says what the edge is): ovnet's nftables
//! table, IPv4 forwarding and the per-network DNS resolvers, made to match the view beside the
//! bridges and veths of `reconcile`.
//!
//! - The table is loaded before any bridge of the pass is built, so a network's bridge never
//!   exists without the filter that isolates it, and only when its text changes (at start it is
//!   always loaded: what a previous run left is replaced). If `nft` fails, the containers
//!   plumbed in that pass fail their connect, and nothing else changes.
//! - IPv4 forwarding is turned on, once, when the table is in place and a network that routes
//!   out has containers here.
//! - Each network that is up here has a resolver at its gateway, whose zone is rebuilt from
//!   the view on every pass (every change the watch reports), and which stops when the network
//!   leaves the host.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use ovnet_dataplane::Vni;
use ovnet_dns::{Config, CounterReader, Resolver, Snapshot};

use crate::domain::{Name, Network};
use crate::edge::{self, nft};
use crate::port_security;
use crate::view::{Desired, View};

use super::Agent;

/// What the agent has made of the edge; behind the agent's one lock, with the rest of
/// [`super::reconcile::Local`].
#[derive(Debug, Default)]
pub(super) struct EdgeState {
    /// The ruleset loaded last; `None` until the first load since start.
    rules: Option<String>,
    /// The last failure to load a ruleset, as logged (logged again only when it changes).
    rules_failed: Option<String>,
    /// The running resolvers, by network VNI.
    resolvers: BTreeMap<Vni, Running>,
    /// Networks whose resolver could not start, with the error logged (retried every pass,
    /// logged again only if the error changes).
    dns_failed: HashMap<Vni, String>,
    /// IPv4 forwarding is on (or turning it on failed, and that was logged).
    forwarding: bool,
    /// The host's resolv.conf could not be read, and that was logged.
    upstreams_warned: bool,
}

/// A network's resolver.
#[derive(Debug)]
struct Running {
    network: Name,
    resolver: Resolver,
}

/// One network's DNS counters on this host, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsCounters {
    /// The network.
    pub network: Name,
    /// Its resolver's counters since it started on this host.
    pub counters: Snapshot,
}

impl EdgeState {
    /// A reader of each running resolver's counters, by network.
    pub(super) fn counter_readers(&self) -> Vec<(Name, CounterReader)> {
        self.resolvers
            .values()
            .map(|r| (r.network.clone(), r.resolver.counter_reader()))
            .collect()
    }
}

impl Agent {
    /// Loads the ruleset `desired` needs into ovnet's table, unless it is the one loaded,
    /// together with port security's `change` (if any) in one `nft` transaction. Should that
    /// fail, each is loaded alone, so that each failure is reported as its own and port
    /// security's does not stop the edge (nor the other way round). `Err`: the edge's table
    /// could not be loaded.
    pub(super) async fn apply_rules(
        &self,
        edge: &mut EdgeState,
        desired: &[Desired],
        change: Option<port_security::Change>,
    ) -> Result<(), String> {
        let text = nft::render(&edge::spec(desired));
        let edge_changed = edge.rules.as_deref() != Some(text.as_str());
        match (edge_changed, change) {
            (false, None) => Ok(()),
            (false, Some(change)) => {
                self.guard.load(change).await;
                Ok(())
            }
            (true, None) => self.load_edge(edge, desired, text).await,
            (true, Some(change)) => {
                let both = format!("{text}{}", change.text());
                match self.cfg.edge.nft.apply(&both).await {
                    Ok(()) => {
                        self.edge_loaded(edge, desired, text);
                        change.done(Ok(())).await;
                        Ok(())
                    }
                    Err(e) => {
                        log::debug!(
                            "loading both nftables tables at once failed ({e}): one by one"
                        );
                        let loaded = self.load_edge(edge, desired, text).await;
                        self.guard.load(change).await;
                        loaded
                    }
                }
            }
        }
    }

    /// Loads the edge's table `text` alone.
    async fn load_edge(
        &self,
        edge: &mut EdgeState,
        desired: &[Desired],
        text: String,
    ) -> Result<(), String> {
        if let Err(e) = self.cfg.edge.nft.apply(&text).await {
            let msg = e.to_string();
            if edge.rules_failed.as_deref() != Some(msg.as_str()) {
                log::error!("{msg}");
                edge.rules_failed = Some(msg.clone());
            }
            return Err(msg);
        }
        self.edge_loaded(edge, desired, text);
        Ok(())
    }

    /// Records that the edge's table `text` is loaded.
    fn edge_loaded(&self, edge: &mut EdgeState, desired: &[Desired], text: String) {
        if edge.rules_failed.take().is_some() {
            log::info!("nftables table {} loaded again", nft::TABLE);
        }
        if desired.is_empty() {
            if edge.rules.is_some() {
                log::info!(
                    "no network left on this host: removed nftables table {}",
                    nft::TABLE
                );
            }
        } else {
            log::debug!("loaded nftables table {}:\n{text}", nft::TABLE);
        }
        edge.rules = Some(text);
    }

    /// Turns IPv4 forwarding on the first time a network that routes out has containers here
    /// (call once the table is in place).
    pub(super) fn ensure_forwarding(&self, edge: &mut EdgeState, desired: &[Desired]) {
        if edge.forwarding || !desired.iter().any(|d| !d.network.internal) {
            return;
        }
        edge.forwarding = true;
        match edge::host::enable_ip_forward() {
            Ok(true) => log::info!(
                "turned IPv4 forwarding on (net.ipv4.ip_forward=1) for the way out of ovnet's \
                 networks, as Docker does; ovnet's forward filter keeps containers unexposed; \
                 it stays on"
            ),
            Ok(false) => {}
            Err(e) => log::error!(
                "turning IPv4 forwarding on: {e}: containers cannot reach beyond their networks \
                 until net.ipv4.ip_forward is 1"
            ),
        }
    }

    /// Starts, updates and stops the resolvers so that every network up here (`up`) has one
    /// serving the zone `view` gives it.
    pub(super) async fn reconcile_resolvers(
        &self,
        edge: &mut EdgeState,
        view: &View,
        desired: &[Desired],
        up: impl Fn(Vni) -> bool,
    ) {
        let wanted: BTreeMap<Vni, &Network> = desired
            .iter()
            .filter(|d| up(d.network.vni))
            .map(|d| (d.network.vni, &d.network))
            .collect();
        let gone: Vec<Vni> = edge
            .resolvers
            .iter()
            .filter(|(vni, r)| wanted.get(vni).is_none_or(|n| n.name != r.network))
            .map(|(vni, _)| *vni)
            .collect();
        for vni in gone {
            if let Some(r) = edge.resolvers.remove(&vni) {
                r.resolver.stop().await;
                log::info!("DNS resolver of network {} stopped", r.network);
            }
        }
        edge.dns_failed.retain(|vni, _| wanted.contains_key(vni));
        for (vni, n) in wanted {
            let zone = edge::dns::zone(view, n);
            if let Some(r) = edge.resolvers.get(&vni) {
                r.resolver.update(zone);
                continue;
            }
            let upstreams = if n.internal {
                Vec::new()
            } else {
                self.upstreams(edge)
            };
            let config = Config::new(IpAddr::V4(n.gateway), upstreams);
            match Resolver::start(config, zone) {
                Ok(resolver) => {
                    edge.dns_failed.remove(&vni);
                    log::info!(
                        "DNS resolver of network {} on {} (upstreams: {})",
                        n.name,
                        resolver.local_addr(),
                        if n.internal {
                            "none, internal".to_owned()
                        } else {
                            list(&resolver.upstreams())
                        }
                    );
                    edge.resolvers.insert(
                        vni,
                        Running {
                            network: n.name.clone(),
                            resolver,
                        },
                    );
                }
                Err(e) => {
                    let msg = e.to_string();
                    if edge.dns_failed.get(&vni) != Some(&msg) {
                        log::error!(
                            "names of network {} cannot be resolved on this host: {msg}",
                            n.name
                        );
                        edge.dns_failed.insert(vni, msg);
                    }
                }
            }
        }
    }

    /// The upstream resolvers: the configured ones, or the host's.
    fn upstreams(&self, edge: &mut EdgeState) -> Vec<SocketAddr> {
        if let Some(u) = &self.cfg.edge.dns_upstreams {
            return u.clone();
        }
        match ovnet_dns::host_upstreams() {
            Ok(u) => u,
            Err(e) => {
                if !edge.upstreams_warned {
                    log::warn!("{e}; names outside the cluster will not resolve (SERVFAIL)");
                    edge.upstreams_warned = true;
                }
                Vec::new()
            }
        }
    }

    /// The DNS counters of every network whose resolver runs on this host, by VNI.
    pub async fn dns_counters(&self) -> Vec<DnsCounters> {
        self.published
            .read()
            .resolvers
            .iter()
            .map(|(network, r)| DnsCounters {
                network: network.clone(),
                counters: r.snapshot(),
            })
            .collect()
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "none".to_owned();
    }
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
