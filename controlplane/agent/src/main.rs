//! `ovnet-agent`: one per host. Starts the VXLAN data plane on the host's VTEP address, follows
//! the cluster state in etcd, and serves the gRPC API for `ovctl` on a unix socket (and, with
//! `--docker-plugin`, Docker's network and IPAM plugin on another).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ovnet_agent::agent::{Agent, AgentConfig};
use ovnet_agent::api::Api;
use ovnet_agent::docker::{firewall, Dockerd, Plugin};
use ovnet_agent::domain::NodeName;
use ovnet_agent::edge::nft::{Nft, DEFAULT_NFT};
use ovnet_agent::edge::EdgeConfig;
use ovnet_agent::error::AgentError;
use ovnet_agent::flags::{EtcdFlags, IdentityFlags};
use ovnet_agent::store::{Store, StoreConfig, DEFAULT_ENDPOINT, DEFAULT_PREFIX, DEFAULT_TIMEOUT};
use ovnet_agent::supervise::{Supervised, Tasks};
use ovnet_agent::{api_socket, state};
use ovnet_dataplane::{
    default_workers, BumLimits, Dataplane, DataplaneConfig, DEFAULT_MAX_LEARNED, DEFAULT_POLL,
    DEFAULT_SLICE, MAX_WORKERS,
};
use ovnet_proto::AgentServer;
use ovnet_wire::VXLAN_PORT;
use tokio_stream::wrappers::UnixListenerStream;

/// The ovnet agent: userspace VXLAN overlay networking for containers, with etcd as the
/// control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// This node's name (default: the host name).
    #[arg(long, env = "OVNET_NODE")]
    node: Option<String>,
    /// etcd client URLs, comma-separated.
    #[arg(
        long,
        env = "OVNET_ETCD",
        default_value = DEFAULT_ENDPOINT,
        value_delimiter = ','
    )]
    etcd: Vec<String>,
    #[command(flatten)]
    etcd_security: EtcdFlags,
    #[command(flatten)]
    identity: IdentityFlags,
    /// This host's underlay IPv4 address: peers send VXLAN datagrams here.
    #[arg(long, env = "OVNET_VTEP_IP")]
    vtep_ip: Ipv4Addr,
    /// UDP port of the VTEP.
    #[arg(long, default_value_t = VXLAN_PORT)]
    vtep_port: u16,
    /// Unix socket of the API.
    #[arg(long, env = "OVNET_API", default_value = "/run/ovnet/agent.sock")]
    api: PathBuf,
    /// Group that may use the API socket (mode 0660); default: the agent's own group.
    #[arg(long, env = "OVNET_API_GROUP", value_name = "GROUP")]
    api_group: Option<String>,
    /// Prefix of ovnet's keys in etcd.
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// TTL of the node's liveness lease, in seconds.
    #[arg(long, default_value_t = 10)]
    lease_ttl: u64,
    /// Turn off the fast path: plain TAP reads and writes, no UDP GSO/GRO, small frames
    /// batched with sendmmsg (for comparisons and kernels that lack the offloads).
    #[arg(long)]
    no_offloads: bool,
    /// Data-plane worker threads, each carrying traffic both ways: as many TAP queues per
    /// network and receive sockets on the VXLAN port. Default: the number of CPUs, at most 4.
    /// (`--queues` and `OVNET_QUEUES`, the old names, still work.)
    #[arg(long, visible_alias = "queues", env = "OVNET_WORKERS")]
    workers: Option<usize>,
    /// Longest time, in microseconds, a data-plane worker keeps polling (yielding the CPU
    /// between polls) after its last packet before it sleeps; saves a wake-up per burst under
    /// load, and shrinks by itself when traffic is sparse. 0: always sleep at once.
    #[arg(long, env = "OVNET_POLL_US", default_value_t = DEFAULT_POLL.as_micros() as u64)]
    poll_us: u64,
    /// Time slice, in microseconds, each data-plane worker asks the CPU scheduler for
    /// (Linux 6.12+, which takes 100 to 100000): a shorter one runs a worker sooner when
    /// traffic makes it runnable. 0: the kernel's default.
    #[arg(long, env = "OVNET_SLICE_US", default_value_t = DEFAULT_SLICE.as_micros() as u64,
          value_parser = parse_slice_us)]
    slice_us: u64,
    /// Segment TCP super-frames here and send them from the UDP sockets, instead of sending
    /// them whole through the uplink TAP for the kernel to segment (UDP tunnel GSO, used where
    /// Linux 6.17+ and the host's settings allow it; see the README).
    #[arg(long, env = "OVNET_NO_TUNNEL_GSO", value_parser = clap::builder::FalseyValueParser::new())]
    no_tunnel_gso: bool,
    /// The most MACs the data plane learns per network from external VTEPs (a kernel vxlan or
    /// a hardware switch added with `network vtep add`); frames from new MACs beyond it are
    /// dropped and counted (`learned_table_full`) until ageing (300 s) frees room.
    #[arg(long, env = "OVNET_MAX_LEARNED_MACS", default_value_t = DEFAULT_MAX_LEARNED as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_learned_macs: u64,
    /// Broadcast, multicast and unknown-unicast replication budget of one container, in
    /// datagrams per second to other hosts (a frame flooded to N hosts is N datagrams; one
    /// second of burst); beyond it, flooded frames are dropped and counted
    /// (`bum_rate_limited`). 0: no limit.
    #[arg(long, env = "OVNET_BUM_PPS_PER_ENDPOINT", default_value_t = BumLimits::default().per_source)]
    bum_pps_per_endpoint: u32,
    /// The same budget for all of a network's containers on this host together. 0: no limit.
    #[arg(long, env = "OVNET_BUM_PPS_PER_NETWORK", default_value_t = BumLimits::default().per_network)]
    bum_pps_per_network: u32,
    /// Do not hold containers to their own MAC and addresses (nftables rules on their veths;
    /// see the README); the data plane still refuses to carry their spoofed frames to other
    /// hosts.
    #[arg(long, env = "OVNET_NO_PORT_SECURITY", value_parser = clap::builder::FalseyValueParser::new())]
    no_port_security: bool,
    /// Serve Prometheus metrics (`/metrics`), liveness (`/healthz`) and readiness (`/readyz`)
    /// over HTTP on this address, e.g. 127.0.0.1:9476. Off unless given.
    #[arg(long, env = "OVNET_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Upstream DNS resolver for names outside the cluster, IP[:PORT] (repeatable, or
    /// comma-separated in the environment). Default: the nameservers of /etc/resolv.conf.
    #[arg(long = "dns-upstream", env = "OVNET_DNS_UPSTREAM", value_name = "IP[:PORT]",
          value_delimiter = ',', value_parser = parse_upstream)]
    dns_upstreams: Vec<SocketAddr>,
    /// The nft program (Debian's nftables) that loads ovnet's table `ip ovnet`: masquerade,
    /// published ports, the forward filter.
    #[arg(long, env = "OVNET_NFT", default_value = DEFAULT_NFT, value_name = "PATH")]
    nft: PathBuf,
    /// Also serve Docker's network and IPAM plugin on this unix socket; dockerd finds it as
    /// plugin `ovnet` at /run/docker/plugins/ovnet.sock (`docker network create -d ovnet
    /// --ipam-driver ovnet`). The plugin is named after the socket's file.
    #[arg(long, env = "OVNET_DOCKER_PLUGIN", value_name = "PATH")]
    docker_plugin: Option<PathBuf>,
    /// dockerd's API socket, which the plugin asks for the names of networks and containers.
    #[arg(long, env = "OVNET_DOCKER_HOST", default_value = ovnet_agent::docker::DEFAULT_SOCKET,
          value_name = "unix://PATH")]
    docker_host: String,
    /// Leave Docker's DOCKER-USER chain alone: by default, on a host where Docker's firewall
    /// is on (FORWARD policy DROP), the agent accepts ovnet's bridges and uplink there, or
    /// Docker's policy would drop ovnet's traffic (see the README to add the rules yourself).
    #[arg(long, env = "OVNET_LEAVE_DOCKER_FIREWALL", value_parser = clap::builder::FalseyValueParser::new())]
    leave_docker_firewall: bool,
}

/// `--dns-upstream`: `IP`, `IPv4:PORT` or `[IPv6]:PORT`.
fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    ovnet_dns::parse_upstream(s).map_err(|e| e.to_string())
}

/// `--slice-us`: 0, or what the kernel takes (100 µs to 100 ms).
fn parse_slice_us(s: &str) -> Result<u64, String> {
    let us: u64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of microseconds"))?;
    if us == 0 || (100..=100_000).contains(&us) {
        Ok(us)
    } else {
        Err(format!(
            "{us} µs is outside what the scheduler takes: give 100 to 100000, or 0 for the \
             kernel's default"
        ))
    }
}

/// `OVNET_QUEUES`, the old name of `OVNET_WORKERS`, if set (and `OVNET_WORKERS` is not).
fn old_workers_env() -> Result<Option<usize>, String> {
    match std::env::var("OVNET_QUEUES") {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("OVNET_QUEUES={v:?} is not a number of workers")),
        Err(_) => Ok(None),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Completes once `stop` says so (every server of the agent stops on the same signal).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn run(args: Args) -> Result<(), String> {
    let node = args.node.unwrap_or_else(hostname);
    let node = NodeName::parse(&node).map_err(|e| format!("{e} (pass --node)"))?;
    let vtep = SocketAddrV4::new(args.vtep_ip, args.vtep_port);
    let workers = match args.workers {
        Some(n) => n,
        None => old_workers_env()?.unwrap_or_else(default_workers),
    }
    .clamp(1, MAX_WORKERS);
    let mut dp_cfg = DataplaneConfig::new(SocketAddr::V4(vtep));
    dp_cfg.gso = !args.no_offloads;
    dp_cfg.gro = !args.no_offloads;
    dp_cfg.tap_offloads = !args.no_offloads;
    dp_cfg.tunnel_gso = !args.no_tunnel_gso;
    dp_cfg.workers = workers;
    dp_cfg.poll = Duration::from_micros(args.poll_us);
    dp_cfg.slice = (args.slice_us > 0).then(|| Duration::from_micros(args.slice_us));
    dp_cfg.max_learned = args.max_learned_macs as usize;
    dp_cfg.bum = BumLimits {
        per_source: args.bum_pps_per_endpoint,
        per_network: args.bum_pps_per_network,
    };
    let _state = state::lock(&args.identity.state_dir)?;
    let node_id = state::node_id(&args.identity.state_dir)?;
    let dp = Dataplane::start(&dp_cfg).map_err(|e| e.to_string())?;
    let store = Store::connect_with(
        StoreConfig {
            endpoints: args.etcd.clone(),
            prefix: args.prefix,
            timeout: DEFAULT_TIMEOUT,
        },
        args.etcd_security.security(),
    )
    .await
    .map_err(|e| e.to_string())?;
    // A certificate, a password or a permission that etcd refuses stops the agent now, saying
    // which; an etcd that does not answer yet is waited for.
    match store.check_access().await {
        Ok(()) => {}
        Err(AgentError::Unavailable { endpoints, cause }) => log::warn!(
            "etcd at {endpoints} does not answer ({cause}); starting anyway and retrying in \
             the background"
        ),
        Err(e) => return Err(e.to_string()),
    }
    let listener = api_socket::bind(&args.api, args.api_group.as_deref())?;
    let docker_listener = match &args.docker_plugin {
        Some(path) => Some((path.clone(), ovnet_agent::docker::bind(path)?)),
        None => None,
    };
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(ovnet_agent::metrics::bind(addr).await?),
        None => None,
    };
    let agent = Arc::new(Agent::new(
        AgentConfig {
            node: node.clone(),
            node_id,
            replace_node: args.identity.replace_node,
            vtep,
            lease_ttl: Duration::from_secs(args.lease_ttl.max(1)),
            port_security: !args.no_port_security,
            edge: EdgeConfig {
                nft: Nft::new(&args.nft),
                dns_upstreams: (!args.dns_upstreams.is_empty()).then_some(args.dns_upstreams),
            },
        },
        store,
        dp,
    ));
    let mut tasks = Tasks::default();
    tasks.add(Supervised::spawn("following etcd", {
        let a = agent.clone();
        async move {
            a.run_sync().await;
            None
        }
    }));
    tasks.add(Supervised::spawn("peers' liveness", {
        let a = agent.clone();
        async move {
            a.run_liveness().await;
            None
        }
    }));
    tasks.add(Supervised::spawn("registration", {
        let a = agent.clone();
        async move { Some(a.run_registration().await.to_string()) }
    }));
    tasks.add(Supervised::spawn("underlay MTU", {
        let a = agent.clone();
        async move {
            a.run_underlay_watch().await;
            None
        }
    }));
    if !args.leave_docker_firewall {
        tasks.add(Supervised::spawn(
            "keeping Docker's firewall off ovnet's devices",
            async {
                firewall::keep().await;
                None
            },
        ));
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    if let Some((path, listener)) = docker_listener {
        let plugin = Arc::new(Plugin::new(
            agent.clone(),
            &Plugin::name_of(&path),
            Dockerd::new(&args.docker_host),
        ));
        let stopped = stopped(stop_rx.clone());
        tasks.add(Supervised::spawn("the Docker plugin", async move {
            match ovnet_agent::docker::serve(plugin, listener, path, stopped).await {
                // Stopped with the agent: not a failure of its own.
                Ok(()) => std::future::pending().await,
                Err(e) => Some(e),
            }
        }));
    }
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics = metrics_listener.map(|l| {
        let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        log::info!("serving metrics, /healthz and /readyz on http://{addr}");
        let a = agent.clone();
        tokio::spawn(async move {
            let stopped = async {
                let _ = metrics_stopped.await;
            };
            if let Err(e) = ovnet_agent::metrics::serve(l, a, stopped).await {
                log::warn!("metrics endpoint: {e}");
            }
        })
    });
    log::info!(
        "ovnet-agent {} on node {node}: VTEP {vtep}, etcd {}, API {}",
        env!("CARGO_PKG_VERSION"),
        args.etcd.join(","),
        args.api.display()
    );
    let serve = tonic::transport::Server::builder()
        .add_service(AgentServer::new(Api::new(agent.clone())))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopped(stop_rx));
    let outcome = tokio::select! {
        served = serve => served.map_err(|e| format!("serving the API: {e}")),
        failed = tasks.first_failure() => Err(failed),
    };
    log::info!("shutting down");
    let _ = stop_metrics.send(());
    if let Some(m) = metrics {
        let _ = m.await;
    }
    tasks.abort();
    agent.deregister().await;
    agent.farewell();
    let _ = std::fs::remove_file(&args.api);
    if let Some(path) = &args.docker_plugin {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ovnet-agent: error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ovnet-agent: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slice_is_zero_or_what_the_kernel_takes() {
        assert_eq!(parse_slice_us("0"), Ok(0));
        assert_eq!(parse_slice_us("100"), Ok(100));
        assert_eq!(parse_slice_us("100000"), Ok(100_000));
        for bad in ["50", "100001", "-1", "fast"] {
            assert!(parse_slice_us(bad).is_err(), "{bad}");
        }
        let e = Args::try_parse_from(["ovnet-agent", "--vtep-ip", "10.9.9.1", "--slice-us", "50"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("100 to 100000"), "{e}");
    }

    #[test]
    fn workers_are_set_by_their_name_or_the_old_one() {
        for flag in ["--workers", "--queues"] {
            let a =
                Args::try_parse_from(["ovnet-agent", "--vtep-ip", "10.9.9.1", flag, "3"]).unwrap();
            assert_eq!(a.workers, Some(3), "{flag}");
        }
        let a = Args::try_parse_from(["ovnet-agent", "--vtep-ip", "10.9.9.1"]).unwrap();
        assert_eq!(a.vtep_port, VXLAN_PORT);
    }

    #[test]
    fn bounded_state_and_storm_control_have_defaults_and_limits() {
        let a = Args::try_parse_from(["ovnet-agent", "--vtep-ip", "10.9.9.1"]).unwrap();
        assert_eq!(a.max_learned_macs, DEFAULT_MAX_LEARNED as u64);
        assert_eq!(
            (a.bum_pps_per_endpoint, a.bum_pps_per_network),
            (5_000, 20_000)
        );
        assert!(!a.no_port_security);
        let a = Args::try_parse_from([
            "ovnet-agent",
            "--vtep-ip",
            "10.9.9.1",
            "--max-learned-macs",
            "100",
            "--bum-pps-per-endpoint",
            "0",
            "--no-port-security",
        ])
        .unwrap();
        assert_eq!(
            (
                a.max_learned_macs,
                a.bum_pps_per_endpoint,
                a.no_port_security
            ),
            (100, 0, true)
        );
        for bad in ["0", "1000001", "many"] {
            let r = Args::try_parse_from([
                "ovnet-agent",
                "--vtep-ip",
                "10.9.9.1",
                "--max-learned-macs",
                bad,
            ]);
            assert!(r.is_err(), "--max-learned-macs {bad}");
        }
    }

    #[test]
    fn dns_upstreams_repeat_or_come_comma_separated() {
        let a = Args::try_parse_from([
            "ovnet-agent",
            "--vtep-ip",
            "10.9.9.1",
            "--dns-upstream",
            "192.0.2.53",
            "--dns-upstream",
            "192.0.2.54:5353,[2001:db8::53]:53",
        ])
        .unwrap();
        let got: Vec<String> = a.dns_upstreams.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            ["192.0.2.53:53", "192.0.2.54:5353", "[2001:db8::53]:53"]
        );
        let e = Args::try_parse_from([
            "ovnet-agent",
            "--vtep-ip",
            "10.9.9.1",
            "--dns-upstream",
            "dns.example",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("want IP[:PORT]"), "{e}");
    }
}
