//! Docker's network and IPAM plugin: `docker network create -d ovnet --ipam-driver ovnet`.
//!
//! A thin adapter, beside the gRPC API: it serves libnetwork's remote driver and remote IPAM
//! protocols over HTTP on a unix socket (`ovnet-agent --docker-plugin
//! /run/docker/plugins/ovnet.sock`; dockerd finds a plugin by its socket's name there) and
//! turns each call into the agent's own operations. No cluster state lives here: networks,
//! endpoints and addresses are the agent's, in etcd, so every host's dockerd sees one network.
//!
//! - `protocol`: the messages and their HTTP framing (malformed, oversized and unknown calls
//!   answered with `{"Err"}` before any handler runs);
//! - `options`: what the requests ask for, decided as pure functions;
//! - `driver`: the `NetworkDriver` calls; `ipam`: the `IpamDriver` calls;
//! - `dockerd`: what the protocol does not say (network and container names), asked of dockerd;
//! - [`firewall`]: Docker's FORWARD policy kept off ovnet's devices (run with or without the
//!   plugin: a Docker host's firewall drops ovnet's bridged frames either way).
//!
//! # Which ovnet network a Docker network is
//!
//! The protocol never sends a network's name, and dockerd knows it only once `CreateNetwork`
//! has returned. So a Docker network is bound to the ovnet network with **its subnet**:
//! `RequestPool` hands out the requested subnet (an ovnet network's exactly, or a free one) or
//! the first free /24; `CreateNetwork` checks that an existing ovnet network with that subnet
//! fits the options, or else, as soon as dockerd shows the new network, creates the ovnet
//! network under the Docker network's name (also on the first container, should that come
//! first). A second host giving the same `--subnet` joins the same ovnet network; without
//! `--subnet` a second host would get another free subnet, so the README says to give it
//! there (`ovctl network inspect` shows it).
//!
//! # Endpoints
//!
//! Docker asks for the address first: `RequestAddress` reserves it in etcd for this node.
//! `CreateEndpoint` gives the MAC (ovnet's, from the address). `Join` learns the container's
//! name from dockerd, creates the endpoint on its reservation under Docker's endpoint ID and
//! hands Docker a veth whose container end Docker moves into the container. `DeleteEndpoint`
//! disconnects it; `ReleaseAddress` releases a reservation never taken. Reservations left
//! behind (a dockerd that died between the calls) are released after
//! [`RESERVATION_TTL`](crate::domain::reservation::RESERVATION_TTL).

mod dockerd;
mod driver;
pub mod firewall;
mod ipam;
pub mod options;
pub mod protocol;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use tokio::net::UnixListener;

use crate::agent::Agent;
use crate::domain::reservation::{Reservation, RESERVATION_TTL};
use crate::domain::{EndpointId, NetworkId};
pub use dockerd::{Dockerd, DockerdError, DEFAULT_SOCKET};
use protocol::{Activate, Answer, Failure, Reply, MAX_BODY};

/// How often the plugin looks for reservations left behind.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The plugin: the agent it adapts, and dockerd to ask for names.
#[derive(Debug)]
pub struct Plugin {
    agent: Arc<Agent>,
    dockerd: Dockerd,
    /// The plugin's name, as Docker knows it (the socket's file name without `.sock`).
    name: String,
    /// Docker network ID → ovnet network ID, as learned (a cache: dockerd or the subnet
    /// tells again after a restart).
    bound: Mutex<HashMap<String, NetworkId>>,
    /// Serialises creating ovnet networks for Docker networks.
    creating: tokio::sync::Mutex<()>,
}

impl Plugin {
    /// The plugin for `agent`, named `name`, asking dockerd at `dockerd` for names.
    pub fn new(agent: Arc<Agent>, name: &str, dockerd: Dockerd) -> Plugin {
        Plugin {
            agent,
            dockerd,
            name: name.to_owned(),
            bound: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
        }
    }

    /// The plugin's name for a socket path: `/run/docker/plugins/ovnet.sock` → `ovnet`.
    pub fn name_of(socket: &Path) -> String {
        socket
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ovnet".to_owned())
    }

    fn bind(&self, docker_network: &str, net: &NetworkId) {
        if let Ok(mut b) = self.bound.lock() {
            b.insert(docker_network.to_owned(), net.clone());
        }
    }

    fn unbind(&self, docker_network: &str) -> Option<NetworkId> {
        self.bound.lock().ok()?.remove(docker_network)
    }

    /// Releases this node's reservations that have waited longer than [`RESERVATION_TTL`]
    /// since `seen` first saw them; `seen` keeps the first sighting of each.
    async fn sweep(&self, seen: &mut Sightings) {
        let reservations = match self.agent.reservations().await {
            Ok(r) => r,
            Err(e) => {
                log::debug!("listing reservations: {e}");
                return;
            }
        };
        for r in overdue(&reservations, seen, Instant::now(), RESERVATION_TTL) {
            log::info!(
                "releasing {} in network {}: reserved for a container that never joined",
                r.ipv4,
                r.network_id
            );
            if let Err(e) = self.agent.release_reservation(&r.network_id, r.ipv4).await {
                log::warn!("releasing the reservation of {}: {e}", r.ipv4);
            }
        }
    }
}

/// When the sweep first saw each reservation (by the agent's clock: another host's clock is
/// never compared with ours).
type Sightings = HashMap<(NetworkId, EndpointId), Instant>;

/// The reservations of `current` first seen more than `ttl` before `now`; `seen` forgets the
/// ones gone and notes the new ones at `now`.
fn overdue<'a>(
    current: &'a [Reservation],
    seen: &mut Sightings,
    now: Instant,
    ttl: Duration,
) -> Vec<&'a Reservation> {
    let key = |r: &Reservation| (r.network_id.clone(), r.endpoint_id.clone());
    let present: HashSet<_> = current.iter().map(key).collect();
    seen.retain(|k, _| present.contains(k));
    current
        .iter()
        .filter(|r| now.duration_since(*seen.entry(key(r)).or_insert(now)) > ttl)
        .collect()
}

/// Binds the plugin's socket, refusing to take it from a running agent.
pub fn bind(path: &Path) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "another process serves {}: stop it or pass another --docker-plugin",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
    }
    UnixListener::bind(path)
        .map_err(|e| format!("binding the Docker plugin socket {}: {e}", path.display()))
}

/// The plugin's routes: one per method of the two protocols; anything else is 404.
pub fn router(plugin: Arc<Plugin>) -> Router {
    Router::new()
        .route("/Plugin.Activate", post(activate))
        .route("/NetworkDriver.GetCapabilities", post(driver::capabilities))
        .route("/NetworkDriver.CreateNetwork", post(driver::create_network))
        .route("/NetworkDriver.DeleteNetwork", post(driver::delete_network))
        .route(
            "/NetworkDriver.CreateEndpoint",
            post(driver::create_endpoint),
        )
        .route(
            "/NetworkDriver.DeleteEndpoint",
            post(driver::delete_endpoint),
        )
        .route("/NetworkDriver.EndpointOperInfo", post(driver::oper_info))
        .route("/NetworkDriver.Join", post(driver::join))
        .route("/NetworkDriver.Leave", post(driver::leave))
        .route("/NetworkDriver.DiscoverNew", post(driver::discover))
        .route("/NetworkDriver.DiscoverDelete", post(driver::discover))
        .route(
            "/NetworkDriver.ProgramExternalConnectivity",
            post(driver::program_external),
        )
        .route(
            "/NetworkDriver.RevokeExternalConnectivity",
            post(driver::revoke_external),
        )
        .route("/IpamDriver.GetCapabilities", post(ipam::capabilities))
        .route(
            "/IpamDriver.GetDefaultAddressSpaces",
            post(ipam::address_spaces),
        )
        .route("/IpamDriver.RequestPool", post(ipam::request_pool))
        .route("/IpamDriver.ReleasePool", post(ipam::release_pool))
        .route("/IpamDriver.RequestAddress", post(ipam::request_address))
        .route("/IpamDriver.ReleaseAddress", post(ipam::release_address))
        .fallback(unknown)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(plugin)
}

async fn activate() -> Reply {
    Answer::json(&Activate {
        implements: vec!["NetworkDriver", "IpamDriver"],
    })
}

async fn unknown(uri: Uri) -> Failure {
    Failure {
        status: StatusCode::NOT_FOUND,
        message: format!("ovnet: unknown method {}", uri.path()),
    }
}

/// Serves the plugin on `listener` until `shutdown` completes, and sweeps reservations left
/// behind meanwhile; removes the socket at `path` when done.
pub async fn serve(
    plugin: Arc<Plugin>,
    listener: UnixListener,
    path: PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let sweeper = {
        let p = plugin.clone();
        tokio::spawn(async move {
            let mut seen = Sightings::new();
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                p.sweep(&mut seen).await;
            }
        })
    };
    log::info!(
        "Docker plugin {} on {} (dockerd at {})",
        plugin.name,
        path.display(),
        plugin.dockerd.socket().display()
    );
    let served = axum::serve(listener, router(plugin))
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    let _ = std::fs::remove_file(&path);
    served.map_err(|e| format!("serving the Docker plugin: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NodeName;

    fn reservation(last: u8) -> Reservation {
        Reservation {
            network_id: NetworkId::parse(&"a".repeat(64)).unwrap(),
            ipv4: std::net::Ipv4Addr::new(10, 0, 0, last),
            endpoint_id: EndpointId::random(),
            node: NodeName::parse("host1").unwrap(),
            created: String::new(),
        }
    }

    #[test]
    fn reservations_are_released_a_ttl_after_they_were_first_seen() {
        let ttl = Duration::from_secs(120);
        let t0 = Instant::now();
        let (a, b) = (reservation(2), reservation(3));
        let mut seen = Sightings::new();
        assert!(overdue(std::slice::from_ref(&a), &mut seen, t0, ttl).is_empty());
        let t1 = t0 + Duration::from_secs(100);
        assert!(overdue(&[a.clone(), b.clone()], &mut seen, t1, ttl).is_empty());
        // a is overdue, b (first seen at t1) not yet.
        let t2 = t0 + Duration::from_secs(121);
        assert_eq!(overdue(&[a.clone(), b.clone()], &mut seen, t2, ttl), [&a]);
        // Once gone (taken or released), it is forgotten; b's turn comes.
        let t3 = t1 + Duration::from_secs(121);
        assert_eq!(overdue(std::slice::from_ref(&b), &mut seen, t3, ttl), [&b]);
        assert_eq!(seen.len(), 1);
        // A reservation made again under the same address is a new one.
        let a2 = reservation(2);
        assert!(overdue(&[a2], &mut seen, t3, ttl).is_empty());
    }
}
