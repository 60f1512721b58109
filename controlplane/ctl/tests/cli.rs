//! End-to-end tests of the `ovctl` binary against an in-process fake agent.
//!
//! The fake implements `ovnet_proto::Agent` over a small in-memory state and answers with the
//! real agent's status codes and messages; it is served on a unix socket in a temporary
//! directory. Each test runs the built binary with `--agent <socket>` and checks its stdout,
//! stderr and exit code. A call counter shows which commands are refused before the agent is
//! contacted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ovnet_proto::{
    AddVtepRequest, AgentServer, ConnectRequest, CreateNetworkRequest, DataplaneRequest,
    DataplaneStatus, DisconnectRequest, DisconnectResponse, Endpoint, ExternalVtep,
    InspectNetworkRequest, ListNetworksRequest, ListNetworksResponse, ListNodesRequest,
    ListNodesResponse, ListVtepsRequest, ListVtepsResponse, Network, NetworkDetail, NetworkStats,
    Node, NodeStatus, Peer, RemoveNetworkRequest, RemoveNetworkResponse, RemoveVtepRequest,
    RemoveVtepResponse, StatsRequest, StatsResponse,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

/// This host's node name in the fake.
const NODE: &str = "node1";

#[derive(Debug, Default)]
struct State {
    networks: Vec<Network>,
    endpoints: Vec<Endpoint>,
    nodes: Vec<NodeStatus>,
    vteps: Vec<ExternalVtep>,
    stats: Vec<NetworkStats>,
    next: u32,
}

impl State {
    /// Name, full ID or unique ID prefix, as the real store resolves them.
    fn network(&self, name_or_id: &str) -> Result<Network, Status> {
        let by = |f: &dyn Fn(&Network) -> bool| self.networks.iter().find(|n| f(n)).cloned();
        if let Some(n) = by(&|n| n.id == name_or_id).or_else(|| by(&|n| n.name == name_or_id)) {
            return Ok(n);
        }
        let m: Vec<&Network> = self
            .networks
            .iter()
            .filter(|n| !name_or_id.is_empty() && n.id.starts_with(name_or_id))
            .collect();
        match m.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Status::not_found(format!("network {name_or_id} not found"))),
            _ => Err(Status::invalid_argument(format!(
                "network {name_or_id} is ambiguous ({} matches found based on ID prefix)",
                m.len()
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    calls: Arc<AtomicUsize>,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.state.lock().unwrap()
    }
}

#[tonic::async_trait]
impl ovnet_proto::Agent for Fake {
    async fn create_network(
        &self,
        req: Request<CreateNetworkRequest>,
    ) -> Result<Response<Network>, Status> {
        let r = req.into_inner();
        let mut s = self.state();
        if r.driver != "overlay" && !r.driver.is_empty() {
            return Err(Status::invalid_argument("the fake only knows overlay"));
        }
        if s.networks.iter().any(|n| n.name == r.name) {
            return Err(Status::already_exists(format!(
                "network with name {} already exists",
                r.name
            )));
        }
        s.next += 1;
        let n = s.next;
        let subnet = r.subnet.unwrap_or_else(|| format!("10.{n}.0.0/24"));
        // The first host of the subnet (the fake only deals with /24s and larger).
        let first_host = format!("{}.1", subnet.rsplit_once('.').unwrap().0);
        let net = Network {
            id: format!("{n:x}{}", "0123456789abcdef".repeat(4))[..64].to_string(),
            name: r.name,
            vni: r.vni.unwrap_or(255 + n),
            subnet,
            gateway: r.gateway.unwrap_or(first_host),
            mtu: r.mtu.unwrap_or(1450),
            created: "2020-04-10T14:47:27.897140984Z".into(),
            labels: r.labels,
            driver: "overlay".into(),
        };
        s.networks.push(net.clone());
        Ok(Response::new(net))
    }

    async fn list_networks(
        &self,
        _: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        let networks = self.state().networks.clone();
        Ok(Response::new(ListNetworksResponse { networks }))
    }

    async fn inspect_network(
        &self,
        req: Request<InspectNetworkRequest>,
    ) -> Result<Response<NetworkDetail>, Status> {
        let s = self.state();
        let net = s.network(&req.get_ref().name_or_id)?;
        let endpoints: Vec<Endpoint> = s
            .endpoints
            .iter()
            .filter(|e| e.network_id == net.id)
            .cloned()
            .collect();
        let peers = s
            .nodes
            .iter()
            .filter_map(|n| n.node.as_ref())
            .filter(|n| endpoints.iter().any(|e| e.node == n.name))
            .map(|n| Peer {
                name: n.name.clone(),
                ip: n.vtep_ip.clone(),
                port: n.vtep_port,
            })
            .collect();
        let vteps = s
            .vteps
            .iter()
            .filter(|v| v.network_id == net.id)
            .cloned()
            .collect();
        Ok(Response::new(NetworkDetail {
            network: Some(net),
            endpoints,
            peers,
            vteps,
        }))
    }

    async fn remove_network(
        &self,
        req: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        let mut s = self.state();
        let net = s.network(&req.get_ref().name_or_id)?;
        if s.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(Status::failed_precondition(format!(
                "network {} has active endpoints",
                net.name
            )));
        }
        s.networks.retain(|n| n.id != net.id);
        Ok(Response::new(RemoveNetworkResponse {}))
    }

    async fn connect_container(
        &self,
        req: Request<ConnectRequest>,
    ) -> Result<Response<Endpoint>, Status> {
        let r = req.into_inner();
        let mut s = self.state();
        let net = s.network(&r.network)?;
        if s.endpoints
            .iter()
            .any(|e| e.network_id == net.id && e.name == r.container)
        {
            return Err(Status::already_exists(format!(
                "endpoint with name {} already exists in network {}",
                r.container, net.name
            )));
        }
        let base = net.gateway.rsplit_once('.').unwrap().0.to_string();
        let taken = s
            .endpoints
            .iter()
            .filter(|e| e.network_id == net.id)
            .count();
        let ipv4 = r.ipv4.unwrap_or_else(|| format!("{base}.{}", taken + 2));
        let octets: Vec<u8> = ipv4.split('.').map(|o| o.parse().unwrap()).collect();
        s.next += 1;
        let ep = Endpoint {
            id: format!("{:02x}", s.next).repeat(32),
            network_id: net.id.clone(),
            name: r.container,
            node: NODE.into(),
            mac: format!(
                "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
                octets[0], octets[1], octets[2], octets[3]
            ),
            ipv4,
            netns: r.netns,
            ifname: "eth0".into(),
            created: "2020-04-10T14:50:00Z".into(),
        };
        s.endpoints.push(ep.clone());
        Ok(Response::new(ep))
    }

    async fn disconnect_container(
        &self,
        req: Request<DisconnectRequest>,
    ) -> Result<Response<DisconnectResponse>, Status> {
        let r = req.into_inner();
        let mut s = self.state();
        let net = s.network(&r.network)?;
        let before = s.endpoints.len();
        s.endpoints
            .retain(|e| !(e.network_id == net.id && e.name == r.container));
        if s.endpoints.len() == before {
            return Err(Status::not_found(format!(
                "container {} is not connected to network {}",
                r.container, net.name
            )));
        }
        Ok(Response::new(DisconnectResponse {}))
    }

    async fn add_vtep(
        &self,
        req: Request<AddVtepRequest>,
    ) -> Result<Response<ExternalVtep>, Status> {
        let r = req.into_inner();
        let mut s = self.state();
        let net = s.network(&r.network)?;
        let v = ExternalVtep {
            network_id: net.id,
            ip: r.ip,
            port: if r.port == 0 { 4789 } else { r.port },
        };
        s.vteps.push(v.clone());
        Ok(Response::new(v))
    }

    async fn remove_vtep(
        &self,
        req: Request<RemoveVtepRequest>,
    ) -> Result<Response<RemoveVtepResponse>, Status> {
        let r = req.into_inner();
        let mut s = self.state();
        let net = s.network(&r.network)?;
        let port = if r.port == 0 { 4789 } else { r.port };
        let before = s.vteps.len();
        s.vteps
            .retain(|v| !(v.network_id == net.id && v.ip == r.ip && v.port == port));
        if s.vteps.len() == before {
            return Err(Status::not_found(format!(
                "vtep {}:{port} not found in network {}",
                r.ip, net.name
            )));
        }
        Ok(Response::new(RemoveVtepResponse {}))
    }

    async fn list_vteps(
        &self,
        req: Request<ListVtepsRequest>,
    ) -> Result<Response<ListVtepsResponse>, Status> {
        let s = self.state();
        let net = s.network(&req.get_ref().network)?;
        let vteps = s
            .vteps
            .iter()
            .filter(|v| v.network_id == net.id)
            .cloned()
            .collect();
        Ok(Response::new(ListVtepsResponse { vteps }))
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let nodes = self.state().nodes.clone();
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn stats(&self, req: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        let s = self.state();
        let networks = match &req.get_ref().network {
            None => s.stats.clone(),
            Some(f) => {
                let net = s.network(f)?;
                s.stats
                    .iter()
                    .filter(|st| st.name == net.name)
                    .cloned()
                    .collect()
            }
        };
        Ok(Response::new(StatsResponse { networks }))
    }

    async fn dataplane(
        &self,
        _req: Request<DataplaneRequest>,
    ) -> Result<Response<DataplaneStatus>, Status> {
        Ok(Response::new(DataplaneStatus {
            worker_busy_per_mille: vec![412, 3],
            steering: true,
            flows_moved: 2,
            poll_us: 100,
            udp_gso: true,
            tunnel_gso: true,
            slice_us: 100,
        }))
    }
}

/// A fake agent serving a socket in a temporary directory, for the duration of a test.
struct Harness {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    fake: Fake,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let fake = Fake::default();
        {
            let mut s = fake.state.lock().unwrap();
            for (name, ip, alive) in [
                ("node1", "192.168.205.10", true),
                ("node2", "192.168.205.11", false),
            ] {
                s.nodes.push(NodeStatus {
                    node: Some(Node {
                        name: name.into(),
                        vtep_ip: ip.into(),
                        vtep_port: 4789,
                        agent_version: "0.1.0".into(),
                        started: "2020-04-10T14:00:00Z".into(),
                    }),
                    alive,
                });
            }
        }
        let incoming = UnixListenerStream::new(UnixListener::bind(&sock).unwrap());
        let server = tonic::transport::Server::builder()
            .add_service(AgentServer::new(fake.clone()))
            .serve_with_incoming(incoming);
        // Runs until the test's runtime shuts down.
        tokio::spawn(server);
        Harness {
            _dir: dir,
            sock,
            fake,
        }
    }

    async fn ovctl(&self, args: &[&str]) -> Run {
        ovctl(&self.sock, args).await
    }

    fn calls(&self) -> usize {
        self.fake.calls.load(Ordering::SeqCst)
    }

    /// Puts an endpoint of another node into `network`, as if connected there.
    fn remote_endpoint(&self, network: &str, name: &str, ip: &str) {
        let mut s = self.fake.state.lock().unwrap();
        let net = s.network(network).unwrap();
        s.endpoints.push(Endpoint {
            id: "f".repeat(64),
            network_id: net.id,
            name: name.into(),
            node: "node2".into(),
            mac: "02:42:0a:00:00:03".into(),
            ipv4: ip.into(),
            netns: name.into(),
            ifname: "eth0".into(),
            created: "2020-04-10T14:51:00Z".into(),
        });
    }
}

/// What a run of the binary printed and returned.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8(o.stdout).unwrap(),
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }
}

/// Runs ovctl with `--agent sock`; a run that hangs fails the test instead of the suite.
async fn ovctl(sock: &Path, args: &[&str]) -> Run {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ovctl"))
        .arg("--agent")
        .arg(sock)
        .args(args)
        .env_remove("OVNET_AGENT")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(20), child).await {
        Ok(out) => out.unwrap().into(),
        Err(_) => panic!("ovctl {args:?} did not finish within 20s"),
    }
}

#[track_caller]
fn ok(r: &Run) {
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(r.stderr, "", "{r:?}");
}

#[track_caller]
fn failed(r: &Run, stderr: &str) {
    assert_eq!(r.code, Some(1), "{r:?}");
    assert_eq!(r.stderr, stderr, "{r:?}");
}

/// Top-level keys of each object of an inspect array, in output order (serde_json without
/// `preserve_order` would sort them when parsing).
fn top_level_keys(json: &str) -> Vec<String> {
    json.lines()
        .filter_map(|l| l.strip_prefix("        \""))
        .filter_map(|l| l.split_once('"').map(|(k, _)| k.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_prints_the_full_id_and_ls_shows_it() {
    let h = Harness::start().await;
    let r = h
        .ovctl(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.0.0.0/24",
            "--label",
            "env=test",
            "demo",
        ])
        .await;
    ok(&r);
    let id = r.stdout.trim_end_matches('\n');
    assert_eq!(r.stdout, format!("{id}\n"));
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    {
        let s = h.fake.state.lock().unwrap();
        assert_eq!(s.networks[0].subnet, "10.0.0.0/24");
        assert_eq!(s.networks[0].labels["env"], "test");
    }
    // -d defaults to overlay.
    ok(&h.ovctl(&["network", "create", "backend"]).await);

    let r = h.ovctl(&["network", "ls"]).await;
    ok(&r);
    let backend = h.fake.state.lock().unwrap().networks[1].id.clone();
    assert_eq!(
        r.stdout,
        format!(
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             {}   backend   overlay   global\n\
             {}   demo      overlay   global\n",
            &backend[..12],
            &id[..12]
        )
    );
    let r = h.ovctl(&["network", "ls", "-q"]).await;
    ok(&r);
    assert_eq!(r.stdout, format!("{}\n{}\n", &backend[..12], &id[..12]));

    // A name taken: the agent's message, as it is.
    let r = h.ovctl(&["network", "create", "demo"]).await;
    failed(&r, "Error: network with name demo already exists\n");
    assert_eq!(r.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_prints_docker_json() {
    let h = Harness::start().await;
    ok(&h
        .ovctl(&[
            "network",
            "create",
            "--subnet",
            "10.0.0.0/24",
            "--vni",
            "4096",
            "--label",
            "env=test",
            "demo",
        ])
        .await);
    let r = h
        .ovctl(&["network", "connect", "--ip", "10.0.0.2", "demo", "web1"])
        .await;
    ok(&r);
    assert_eq!(r.stdout, "", "connect prints nothing, like docker");
    h.remote_endpoint("demo", "web2", "10.0.0.3");

    let r = h.ovctl(&["network", "inspect", "demo"]).await;
    ok(&r);
    assert_eq!(
        top_level_keys(&r.stdout),
        [
            "Name",
            "Id",
            "Created",
            "Scope",
            "Driver",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Containers",
            "Options",
            "Labels",
            "Peers"
        ]
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let nets = v.as_array().unwrap();
    assert_eq!(nets.len(), 1);
    let n = &nets[0];
    let net = h.fake.state.lock().unwrap().networks[0].clone();
    assert_eq!(n["Name"], "demo");
    assert_eq!(n["Id"], net.id.as_str());
    assert_eq!(n["Created"], "2020-04-10T14:47:27.897140984Z");
    assert_eq!(n["Scope"], "global");
    assert_eq!(n["Driver"], "overlay");
    assert_eq!(n["EnableIPv6"], false);
    assert_eq!(n["IPAM"]["Driver"], "default");
    assert!(n["IPAM"]["Options"].is_null());
    assert_eq!(
        n["IPAM"]["Config"],
        serde_json::json!([{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}])
    );
    assert_eq!(n["Internal"], false);
    assert_eq!(n["Attachable"], true);
    let containers = n["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 2);
    let web1 = containers
        .values()
        .find(|c| c["Name"] == "web1")
        .expect("web1 in Containers");
    let web1_id = web1["EndpointID"].as_str().unwrap();
    assert_eq!(containers[web1_id]["Name"], "web1");
    assert_eq!(web1["IPv4Address"], "10.0.0.2/24");
    assert_eq!(web1["IPv6Address"], "");
    assert_eq!(web1["MacAddress"], "02:42:0a:00:00:02");
    assert_eq!(web1["Node"], "node1");
    assert_eq!(containers["f".repeat(64).as_str()]["Node"], "node2");
    assert_eq!(
        n["Options"],
        serde_json::json!({
            "com.docker.network.driver.overlay.vxlanid_list": "4096",
            "vxlanid": "4096",
            "mtu": "1450"
        })
    );
    assert_eq!(n["Labels"], serde_json::json!({"env": "test"}));
    assert_eq!(
        n["Peers"],
        serde_json::json!([
            {"Name": "node1", "IP": "192.168.205.10"},
            {"Name": "node2", "IP": "192.168.205.11"}
        ])
    );
    // By ID prefix too, and the 4-space indent of docker.
    let r = h.ovctl(&["network", "inspect", &net.id[..12]]).await;
    ok(&r);
    assert!(r
        .stdout
        .starts_with("[\n    {\n        \"Name\": \"demo\",\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_of_a_missing_network_is_docker_like() {
    let h = Harness::start().await;
    ok(&h.ovctl(&["network", "create", "demo"]).await);

    let r = h.ovctl(&["network", "inspect", "nope"]).await;
    failed(&r, "Error: No such network: nope\n");
    assert_eq!(r.stdout, "[]\n");

    // The ones found are printed, each missing one is an error.
    let r = h
        .ovctl(&["network", "inspect", "nope", "demo", "gone"])
        .await;
    failed(
        &r,
        "Error: No such network: nope\nError: No such network: gone\n",
    );
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Name"], "demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_errors_are_one_line_with_exit_code_1() {
    let h = Harness::start().await;
    ok(&h.ovctl(&["network", "create", "demo"]).await);
    ok(&h.ovctl(&["network", "connect", "demo", "web2"]).await);
    let r = h.ovctl(&["network", "connect", "demo", "web2"]).await;
    failed(
        &r,
        "Error: endpoint with name web2 already exists in network demo\n",
    );
    assert_eq!(r.stdout, "");

    // --netns defaults to the container name.
    assert_eq!(h.fake.state.lock().unwrap().endpoints[0].netns, "web2");
    ok(&h
        .ovctl(&[
            "network",
            "connect",
            "demo",
            "db",
            "--netns",
            "/proc/42/ns/net",
        ])
        .await);
    assert_eq!(
        h.fake.state.lock().unwrap().endpoints[1].netns,
        "/proc/42/ns/net"
    );

    let r = h.ovctl(&["network", "rm", "demo"]).await;
    failed(&r, "Error: network demo has active endpoints\n");
    let r = h.ovctl(&["network", "disconnect", "demo", "nope"]).await;
    failed(
        &r,
        "Error: container nope is not connected to network demo\n",
    );
    ok(&h.ovctl(&["network", "disconnect", "demo", "web2"]).await);
    ok(&h.ovctl(&["network", "disconnect", "demo", "db"]).await);

    // rm echoes each argument and goes on after a failure.
    ok(&h.ovctl(&["network", "create", "other"]).await);
    let r = h.ovctl(&["network", "rm", "demo", "nope", "other"]).await;
    failed(&r, "Error: network nope not found\n");
    assert_eq!(r.stdout, "demo\nother\n");
    assert!(h.fake.state.lock().unwrap().networks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_before_calling_the_agent() {
    let h = Harness::start().await;
    let r = h
        .ovctl(&["network", "create", "-d", "bridge", "demo"])
        .await;
    failed(
        &r,
        "Error: driver \"bridge\" is not supported: ovnet only provides -d overlay\n",
    );
    let r = h
        .ovctl(&["network", "create", "--driver", "macvlan", "demo"])
        .await;
    assert_eq!(r.code, Some(1), "{r:?}");

    let r = h
        .ovctl(&["network", "create", "--label", "env", "demo"])
        .await;
    failed(
        &r,
        "Error: invalid argument \"env\" for \"--label\" flag: a label must be KEY=VALUE\n",
    );

    let r = h.ovctl(&["network", "vtep", "add", "demo", "10.1.1"]).await;
    failed(
        &r,
        "Error: invalid vtep address \"10.1.1\": expected an IPv4 address, optionally with :PORT\n",
    );
    let r = h
        .ovctl(&["network", "vtep", "rm", "demo", "10.1.1.1:65536"])
        .await;
    failed(
        &r,
        "Error: invalid vtep address \"10.1.1.1:65536\": the port must be a number from 1 to 65535\n",
    );
    assert_eq!(h.calls(), 0, "the agent must not have been called");

    // Usage errors are clap's, with its exit code 2.
    let r = h.ovctl(&["network", "create"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    let r = h.ovctl(&["network", "create", "--vni", "x", "demo"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
    assert_eq!(h.calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vteps_nodes_and_stats() {
    let h = Harness::start().await;
    ok(&h.ovctl(&["network", "create", "demo"]).await);
    let r = h
        .ovctl(&["network", "vtep", "add", "demo", "192.168.1.10"])
        .await;
    ok(&r);
    assert_eq!(r.stdout, "");
    ok(&h
        .ovctl(&["network", "vtep", "add", "demo", "192.168.1.9:4790"])
        .await);
    let r = h.ovctl(&["network", "vtep", "ls", "demo"]).await;
    ok(&r);
    assert_eq!(
        r.stdout,
        "IP             PORT\n192.168.1.9    4790\n192.168.1.10   4789\n"
    );
    ok(&h
        .ovctl(&["network", "vtep", "rm", "demo", "192.168.1.10:4789"])
        .await);
    let r = h
        .ovctl(&["network", "vtep", "rm", "demo", "192.168.1.10"])
        .await;
    failed(
        &r,
        "Error: vtep 192.168.1.10:4789 not found in network demo\n",
    );
    let r = h.ovctl(&["network", "vtep", "ls", "nope"]).await;
    failed(&r, "Error: network nope not found\n");

    let r = h.ovctl(&["node", "ls"]).await;
    ok(&r);
    assert_eq!(
        r.stdout,
        "NAME      VTEP                  ALIVE\n\
         node1     192.168.205.10:4789   yes\n\
         node2     192.168.205.11:4789   no\n"
    );

    h.fake.state.lock().unwrap().stats.push(NetworkStats {
        name: "demo".into(),
        vni: 256,
        tx_packets: 3,
        tx_bytes: 294,
        rx_packets: 2,
        rx_bytes: 196,
        drops: HashMap::from([("no_route".to_string(), 1)]),
    });
    let r = h.ovctl(&["stats"]).await;
    ok(&r);
    assert_eq!(
        r.stdout,
        "demo (vni 256)\n  tx: 3 packets, 294 bytes\n  rx: 2 packets, 196 bytes\n  drops: no_route=1\n"
    );
    let r = h.ovctl(&["stats", "demo", "--json"]).await;
    ok(&r);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["tx_packets"], 3);
    assert_eq!(v[0]["drops"]["no_route"], 1);
    let r = h.ovctl(&["stats", "nope"]).await;
    failed(&r, "Error: network nope not found\n");

    let r = h.ovctl(&["dataplane"]).await;
    ok(&r);
    assert_eq!(
        r.stdout,
        "workers: 2, flows steered by load, 2 moved\n  worker 0: 41.2 % busy\n  \
         worker 1: 0.3 % busy\npoll window: 100 us\ntime slice: 100 us\nUDP GSO: on\n\
         UDP tunnel GSO: on\n"
    );
    let r = h.ovctl(&["dataplane", "--json"]).await;
    ok(&r);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["worker_busy_per_mille"], serde_json::json!([412, 3]));
    assert_eq!(v["flows_moved"], 2);
    let r = h.ovctl(&["dataplane", "extra"]).await;
    assert_eq!(r.code, Some(2), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_socket_comes_from_the_environment_too() {
    let h = Harness::start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ovctl"))
        .args(["network", "ls", "-q"])
        .env("OVNET_AGENT", &h.sock)
        .kill_on_drop(true)
        .output();
    let r: Run = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("ovctl hung")
        .unwrap()
        .into();
    ok(&r);
    assert_eq!(h.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_is_not_running_is_reported() {
    let dir = tempfile::tempdir().unwrap();

    // No socket at all.
    let missing = dir.path().join("missing.sock");
    let r = ovctl(&missing, &["network", "ls"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    let prefix = format!(
        "Error: cannot reach the ovnet agent at {}: is ovnet-agent running? (",
        missing.display()
    );
    assert!(r.stderr.starts_with(&prefix), "{r:?}");
    assert!(r.stderr.ends_with("(os error 2))\n"), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert_eq!(r.stdout, "");

    // A stale socket left by a dead agent: connection refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let r = ovctl(&stale, &["network", "inspect", "demo"]).await;
    assert_eq!(r.code, Some(1), "{r:?}");
    let prefix = format!(
        "Error: cannot reach the ovnet agent at {}: is ovnet-agent running? (",
        stale.display()
    );
    assert!(r.stderr.starts_with(&prefix), "{r:?}");
    assert!(r.stderr.contains("os error 111"), "{r:?}");
    assert_eq!(r.stdout, "", "no `[]` when nothing could be asked");
}
