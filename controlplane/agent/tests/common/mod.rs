//! What the store's tests share: an etcd of their own, and short ways to make requests.
//!
//! Each test starts its own single-member etcd (`/usr/bin/etcd`, or `$OVNET_ETCD`) on
//! loopback with free ports and a temporary data dir, and kills it by pid when the test ends;
//! each also uses its own key prefix. No timing assertions: waits are "until this holds, at
//! most N s".

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ovnet_agent::domain::plan::{EndpointSpec, NetworkSpec};
use ovnet_agent::domain::{Endpoint, Network, Node, NodeName};
use ovnet_agent::error::AgentError;
use ovnet_agent::store::{Store, StoreConfig, Watch, WatchEvent};

// ---------------------------------------------------------------------------------------------
// An etcd of our own
// ---------------------------------------------------------------------------------------------

/// One etcd process; killed (by pid) on drop.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub client_url: String,
    peer_url: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

impl Etcd {
    /// Starts etcd on fresh ports; tries other ports if the chosen ones were taken meanwhile.
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut etcd = Etcd {
            child: None,
            dir,
            client_url: String::new(),
            peer_url: String::new(),
        };
        let mut last = String::new();
        for _ in 0..3 {
            etcd.client_url = format!("http://127.0.0.1:{}", free_port());
            etcd.peer_url = format!("http://127.0.0.1:{}", free_port());
            match etcd.spawn() {
                Ok(()) => return etcd,
                Err(e) => {
                    etcd.stop();
                    let _ = std::fs::remove_dir_all(etcd.dir.path().join("data"));
                    last = e;
                }
            }
        }
        panic!("{last}");
    }

    fn binary() -> PathBuf {
        std::env::var_os("OVNET_ETCD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(Self::binary())
            .arg("--name")
            .arg("default")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&self.client_url)
            .arg("--advertise-client-urls")
            .arg(&self.client_url)
            .arg("--listen-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&self.peer_url)
            .arg("--initial-cluster")
            .arg(format!("default={}", self.peer_url))
            // Room for a value larger than an answer the client decodes (4 MiB), to test
            // listings that meet one.
            .arg("--max-request-bytes")
            .arg((10 << 20).to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (install etcd, e.g. apt-get install etcd-server, \
                     or set OVNET_ETCD)",
                    Self::binary().display()
                )
            });
        self.child = Some(child);
        self.wait_healthy()
    }

    /// Polls etcd's /health until it says true (at most 20 s).
    fn wait_healthy(&mut self) -> Result<(), String> {
        let addr = self.client_url.trim_start_matches("http://").to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("etcd exited with {status}:\n{}", self.log_tail()));
                }
            }
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = s.write_all(b"GET /health HTTP/1.0\r\n\r\n");
                let mut body = String::new();
                let _ = s.read_to_string(&mut body);
                if body.contains("\"health\":\"true\"") {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "etcd did not become healthy in 20 s:\n{}",
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Kills etcd and waits for it to exit; the data dir stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    pub fn config(&self, prefix: &str) -> StoreConfig {
        StoreConfig {
            endpoints: vec![self.client_url.clone()],
            prefix: format!("/test-{prefix}/"),
            timeout: Duration::from_secs(2),
        }
    }

    pub async fn store(&self, prefix: &str) -> Store {
        Store::connect(self.config(prefix)).await.expect("connect")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// `docker network create NAME`, defaults for everything else.
pub fn net(name: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.to_owned(),
        ..Default::default()
    }
}

/// Checks `spec` and creates the network, as the agent does.
pub async fn create(s: &Store, spec: NetworkSpec) -> Result<Network, AgentError> {
    s.create_network(&spec.check()?).await
}

/// Connects container `name` of node1 to `network`, at `ipv4` or the lowest free address.
pub async fn attach(
    s: &Store,
    network: &str,
    name: &str,
    ipv4: Option<&str>,
) -> Result<Endpoint, AgentError> {
    let req = EndpointSpec {
        name: name.to_owned(),
        node: "node1".to_owned(),
        netns: format!("/var/run/netns/{name}"),
        ipv4: ipv4.map(str::to_owned),
        ..EndpointSpec::default()
    }
    .check()?;
    Ok(s.create_endpoint(network, &req).await?.record)
}

/// Connects container `name` of node1 to `network` at the lowest free address.
pub async fn ep(s: &Store, network: &str, name: &str) -> Result<Endpoint, AgentError> {
    attach(s, network, name, None).await
}

/// A node record with VTEP 192.0.2.10:4789.
pub fn node(name: &str) -> Node {
    Node {
        name: NodeName::parse(name).unwrap(),
        vtep: "192.0.2.10:4789".parse().unwrap(),
        agent_version: "test".to_owned(),
        started: ovnet_agent::domain::time::now_rfc3339(),
        underlay_mtu: Some(1500),
        node_id: Some(ovnet_agent::domain::NodeId::random()),
    }
}

/// Asserts `r` failed with `msg`, of the kind `kind` says.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(
    r: Result<T, AgentError>,
    kind: fn(&AgentError) -> bool,
    msg: &str,
) {
    match r {
        Err(e) if kind(&e) => assert_eq!(e.to_string(), msg),
        other => panic!("want an error {msg:?}, got {other:?}"),
    }
}

/// Waits until `cond` holds, polling every 100 ms, at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {secs} s waiting for: {what}");
}

/// Whether node `name` is listed alive.
pub async fn alive(store: &Store, name: &str) -> bool {
    store
        .list_nodes()
        .await
        .unwrap()
        .iter()
        .any(|(n, up)| n.name == name && *up)
}

/// Next watch event, failing the test after 10 s.
pub async fn next_event(w: &mut Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("no watch event within 10 s")
        .expect("watch ended")
}
