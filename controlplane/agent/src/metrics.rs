//! The agent's HTTP endpoint for operators: Prometheus metrics (`/metrics`, the text format
//! 0.0.4 that `promtool` checks, built with the `prometheus` crate), liveness (`/healthz`: the
//! process answers) and readiness (`/readyz`: etcd reachable and tables synced, otherwise 503
//! with the reason).
//!
//! Off unless `--metrics-addr HOST:PORT` is given (the systemd unit sets 127.0.0.1:9476).
//! Every scrape takes one snapshot of the agent (data-plane counters, workers' load, health)
//! and encodes it: nothing is counted twice and the packet path is never touched. Every name
//! starts with `ovnet_`; the families are listed at [`Scrape::render`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ovnet_dataplane::{CounterSnapshot, DataplaneReport, DropReason};
use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::agent::{Agent, DnsCounters, NetworkCounters, PeerTraffic, NO_NETWORK};
use crate::health::HealthSnapshot;

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    agent: Arc<Agent>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(agent);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the metrics address, with an error that says what to do.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("binding the metrics address {addr}: {e} (pass another --metrics-addr)")
    })
}

async fn readyz(State(agent): State<Arc<Agent>>) -> Response {
    match agent.health().readiness() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    let scrape = Scrape::take(&agent).await;
    match scrape.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                TextEncoder::new().format_type().to_owned(),
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// One snapshot of everything the metrics report.
#[derive(Debug)]
pub struct Scrape {
    networks: Vec<NetworkCounters>,
    peers: (Vec<PeerTraffic>, u64),
    dns: Vec<DnsCounters>,
    dataplane: DataplaneReport,
    health: HealthSnapshot,
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Metric families registered in one registry, named and labelled once.
struct Families {
    registry: Registry,
}

impl Families {
    fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = IntCounterVec::new(Opts::new(name, help).namespace("ovnet"), labels)?;
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
        let g = GaugeVec::new(Opts::new(name, help).namespace("ovnet"), labels)?;
        self.registry.register(Box::new(g.clone()))?;
        Ok(g)
    }
}

impl Scrape {
    /// Reads the agent once.
    pub async fn take(agent: &Agent) -> Scrape {
        Scrape {
            // Only etcd lookups for a named network can fail; listing everything does not.
            networks: agent.stats(None).await.unwrap_or_default(),
            peers: agent.peers().await,
            dns: agent.dns_counters().await,
            dataplane: agent.dataplane(),
            health: agent.health(),
        }
    }

    /// The text exposition (format 0.0.4) of this snapshot. Families, all prefixed `ovnet_`:
    /// - `network_packets_total`, `network_bytes_total` {network, vni, direction}: frames and
    ///   inner bytes sent to the underlay (`tx`, each flooded replica counts) and delivered to
    ///   containers (`rx`);
    /// - `network_drops_total` {network, vni, reason}: dropped frames by reason; drops before
    ///   a network is known are under network `(no network)`, vni 0;
    /// - `network_flooded_total`, `network_learned_total` {network, vni};
    /// - `network_too_big_answers_total`, `network_fragmented_total` {network, vni}: frames
    ///   that did not fit the path to their peer, answered with ICMP "too big" (the frames
    ///   are drops, reason `too_big`) or sent for the host to fragment;
    /// - `peer_packets_total`, `peer_bytes_total` {peer, node, direction}: datagrams and
    ///   inner bytes to and from each peer VTEP (node empty for external VTEPs);
    ///   `peer_last_heard_seconds` {peer, node}; `peer_overflow_total`: datagrams of peers
    ///   beyond the data plane's table;
    /// - `dns_queries_total` {network, transport}, `dns_answers_total` {network, rcode},
    ///   `dns_forwarded_total`, `dns_upstream_failures_total` {network, kind: timeout,
    ///   failure, mismatched, truncated}, `dns_drops_total` {network, reason}: each network's
    ///   resolver on this host;
    /// - `worker_busy_ratio` {worker}: each worker's share of time spent moving frames;
    /// - `dataplane_feature` {feature}: 1 if in use (each offload: `udp_gso`, `udp_gro`,
    ///   `udp_coalesce`, `tunnel_gso`; and `steering`);
    /// - `flows_moved_total`: flows moved off a saturated worker;
    /// - `etcd_up`, `tables_synced`, `etcd_watch_revision`, `etcd_resyncs_total`,
    ///   `etcd_sync_failures_total`: following etcd;
    /// - `node_lease_alive`, `node_lease_failures_total`: the liveness lease;
    /// - `ready`: what `/readyz` answers; `build_info` {version}.
    pub fn render(&self) -> prometheus::Result<String> {
        let f = Families {
            registry: Registry::new(),
        };
        let packets = f.counter(
            "network_packets_total",
            "Frames sent to the underlay (tx) and delivered to containers (rx).",
            &["network", "vni", "direction"],
        )?;
        let bytes = f.counter(
            "network_bytes_total",
            "Inner bytes sent to the underlay (tx) and delivered to containers (rx).",
            &["network", "vni", "direction"],
        )?;
        let drops = f.counter(
            "network_drops_total",
            "Frames dropped, by reason.",
            &["network", "vni", "reason"],
        )?;
        let flooded = f.counter(
            "network_flooded_total",
            "Frames replicated to a network's flood list.",
            &["network", "vni"],
        )?;
        let learned = f.counter(
            "network_learned_total",
            "MACs learned from external VTEPs' traffic.",
            &["network", "vni"],
        )?;
        let too_big = f.counter(
            "network_too_big_answers_total",
            "ICMP \"too big\" answers to frames that did not fit the path to their peer.",
            &["network", "vni"],
        )?;
        let fragmented = f.counter(
            "network_fragmented_total",
            "Frames larger than the path to their peer sent for the host to fragment.",
            &["network", "vni"],
        )?;
        for n in &self.networks {
            let vni = n.vni.to_string();
            let c: &CounterSnapshot = &n.counters;
            for r in DropReason::ALL {
                drops
                    .with_label_values(&[n.name.as_str(), &vni, r.name()])
                    .inc_by(c.dropped(r));
            }
            if n.name == NO_NETWORK {
                continue;
            }
            for (dir, p, b) in [
                ("tx", c.tx_packets, c.tx_bytes),
                ("rx", c.rx_packets, c.rx_bytes),
            ] {
                packets
                    .with_label_values(&[n.name.as_str(), &vni, dir])
                    .inc_by(p);
                bytes
                    .with_label_values(&[n.name.as_str(), &vni, dir])
                    .inc_by(b);
            }
            flooded
                .with_label_values(&[n.name.as_str(), &vni])
                .inc_by(c.flooded);
            learned
                .with_label_values(&[n.name.as_str(), &vni])
                .inc_by(c.learned);
            too_big
                .with_label_values(&[n.name.as_str(), &vni])
                .inc_by(c.too_big_answers);
            fragmented
                .with_label_values(&[n.name.as_str(), &vni])
                .inc_by(c.fragmented);
        }

        let peer_packets = f.counter(
            "peer_packets_total",
            "Datagrams sent to (tx) and admitted from (rx) each peer VTEP.",
            &["peer", "node", "direction"],
        )?;
        let peer_bytes = f.counter(
            "peer_bytes_total",
            "Inner bytes sent to (tx) and admitted from (rx) each peer VTEP.",
            &["peer", "node", "direction"],
        )?;
        let heard = f.gauge(
            "peer_last_heard_seconds",
            "Seconds since traffic from each peer VTEP was last admitted.",
            &["peer", "node"],
        )?;
        for p in &self.peers.0 {
            let (peer, node) = (p.addr.to_string(), p.node.clone().unwrap_or_default());
            let c = &p.counters;
            for (dir, n, b) in [
                ("tx", c.tx_packets, c.tx_bytes),
                ("rx", c.rx_packets, c.rx_bytes),
            ] {
                peer_packets
                    .with_label_values(&[peer.as_str(), &node, dir])
                    .inc_by(n);
                peer_bytes
                    .with_label_values(&[peer.as_str(), &node, dir])
                    .inc_by(b);
            }
            if let Some(ago) = p.heard {
                heard
                    .with_label_values(&[peer.as_str(), &node])
                    .set(ago.as_secs_f64());
            }
        }
        f.counter(
            "peer_overflow_total",
            "Datagrams of peers beyond the data plane's per-peer table, counted together.",
            &[],
        )?
        .with_label_values::<&str>(&[])
        .inc_by(self.peers.1);

        let queries = f.counter(
            "dns_queries_total",
            "Queries each network's resolver received, by transport.",
            &["network", "transport"],
        )?;
        let answers = f.counter(
            "dns_answers_total",
            "Responses each network's resolver sent, by response code.",
            &["network", "rcode"],
        )?;
        let forwarded = f.counter(
            "dns_forwarded_total",
            "Queries each network's resolver forwarded upstream.",
            &["network"],
        )?;
        let upstream = f.counter(
            "dns_upstream_failures_total",
            "Upstream attempts that failed, by kind.",
            &["network", "kind"],
        )?;
        let dns_drops = f.counter(
            "dns_drops_total",
            "Messages each network's resolver dropped without an answer, by reason.",
            &["network", "reason"],
        )?;
        for d in &self.dns {
            let (net, c) = (d.network.as_str(), &d.counters);
            queries
                .with_label_values(&[net, "udp"])
                .inc_by(c.queries_udp);
            queries
                .with_label_values(&[net, "tcp"])
                .inc_by(c.queries_tcp);
            for code in ovnet_dns::Rcode::ALL {
                answers
                    .with_label_values(&[net, code.name()])
                    .inc_by(c.answers(code));
            }
            forwarded.with_label_values(&[net]).inc_by(c.forwarded);
            for (kind, n) in [
                ("timeout", c.upstream_timeouts),
                ("failure", c.upstream_failures),
                ("mismatched", c.upstream_mismatched),
                ("truncated", c.upstream_truncated),
            ] {
                upstream.with_label_values(&[net, kind]).inc_by(n);
            }
            for (i, r) in ovnet_dns::DropReason::ALL.iter().enumerate() {
                dns_drops
                    .with_label_values(&[net, r.name()])
                    .inc_by(c.drops[i]);
            }
        }

        let dp = &self.dataplane;
        let busy = f.gauge(
            "worker_busy_ratio",
            "Share of time each data-plane worker spends moving frames.",
            &["worker"],
        )?;
        for (i, b) in dp.busy_per_mille.iter().enumerate() {
            busy.with_label_values(&[i.to_string()])
                .set(f64::from(*b) / 1000.0);
        }
        let features = f.gauge(
            "dataplane_feature",
            "1 if the data plane uses the feature (the kernel accepted it).",
            &["feature"],
        )?;
        for (offload, state) in &dp.offloads {
            features
                .with_label_values(&[offload.name()])
                .set(flag(state.is_on()));
        }
        features
            .with_label_values(&["steering"])
            .set(flag(dp.steering));
        f.counter(
            "flows_moved_total",
            "Flows moved off a saturated worker.",
            &[],
        )?
        .with_label_values::<&str>(&[])
        .inc_by(dp.flows_moved);

        let h = &self.health;
        let gauge = |name: &str, help: &str, v: f64| -> prometheus::Result<()> {
            f.gauge(name, help, &[])?
                .with_label_values::<&str>(&[])
                .set(v);
            Ok(())
        };
        let counter = |name: &str, help: &str, v: u64| -> prometheus::Result<()> {
            f.counter(name, help, &[])?
                .with_label_values::<&str>(&[])
                .inc_by(v);
            Ok(())
        };
        gauge(
            "etcd_up",
            "1 if etcd answered the agent's last listing and lease renewal.",
            flag(h.etcd_reachable()),
        )?;
        gauge(
            "tables_synced",
            "1 if the tables follow etcd (listed, watch running).",
            flag(h.synced),
        )?;
        gauge(
            "etcd_watch_revision",
            "etcd revision of the last change applied.",
            h.revision as f64,
        )?;
        counter(
            "etcd_resyncs_total",
            "Re-listings of etcd after the first.",
            h.resyncs,
        )?;
        counter(
            "etcd_sync_failures_total",
            "Listings or watches of etcd that failed.",
            h.sync_failures,
        )?;
        gauge(
            "node_lease_alive",
            "1 if this node's liveness lease is kept.",
            flag(h.lease_alive),
        )?;
        counter(
            "node_lease_failures_total",
            "Lease grants or renewals that failed.",
            h.lease_failures,
        )?;
        gauge(
            "ready",
            "1 if /readyz answers 200.",
            flag(h.readiness().is_ok()),
        )?;
        f.gauge("build_info", "The agent's version.", &["version"])?
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);

        let mut out = Vec::new();
        TextEncoder::new().encode(&f.registry.gather(), &mut out)?;
        String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}
