//! Integration tests of the etcd store against a real etcd.
//!
//! Each test starts its own single-member etcd (`/usr/bin/etcd`, or `$OVNET_ETCD`) on loopback
//! with free ports and a temporary data dir, and kills it by pid when the test ends; each also
//! uses its own key prefix. No timing assertions: waits are "until this holds, at most N s".

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{CompactionOptions, GetOptions};
use ovnet_agent::store::{
    EndpointSpec, NetworkSpec, Record, RecordKey, Store, StoreConfig, StoreError, WatchEvent,
};
use ovnet_proto::Node;

// ---------------------------------------------------------------------------------------------
// An etcd of our own
// ---------------------------------------------------------------------------------------------

/// One etcd process; killed (by pid) on drop.
struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_url: String,
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
    fn start() -> Etcd {
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
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    fn config(&self, prefix: &str) -> StoreConfig {
        StoreConfig {
            endpoints: vec![self.client_url.clone()],
            prefix: format!("/test-{prefix}/"),
            timeout: Duration::from_secs(2),
        }
    }

    async fn store(&self, prefix: &str) -> Store {
        Store::connect(self.config(prefix)).await.expect("connect")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn net(name: &str) -> NetworkSpec {
    NetworkSpec {
        name: name.to_owned(),
        ..Default::default()
    }
}

fn ep(network: &str, name: &str) -> EndpointSpec {
    EndpointSpec {
        network: network.to_owned(),
        name: name.to_owned(),
        node: "node1".to_owned(),
        netns: format!("/var/run/netns/{name}"),
        ifname: String::new(),
        ipv4: None,
    }
}

fn ep_ip(network: &str, name: &str, ip: &str) -> EndpointSpec {
    EndpointSpec {
        ipv4: Some(ip.to_owned()),
        ..ep(network, name)
    }
}

fn node(name: &str) -> Node {
    Node {
        name: name.to_owned(),
        vtep_ip: "192.0.2.10".to_owned(),
        vtep_port: 4789,
        agent_version: "test".to_owned(),
        started: ovnet_agent::store::now_rfc3339(),
    }
}

/// Waits until `cond` holds, polling every 100 ms, at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
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

async fn alive(store: &Store, name: &str) -> bool {
    store
        .list_nodes()
        .await
        .unwrap()
        .iter()
        .any(|(n, up)| n.name == name && *up)
}

/// Next watch event, failing the test after 10 s.
async fn next_event(w: &mut ovnet_agent::store::Watch) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("no watch event within 10 s")
        .expect("watch ended")
}

// ---------------------------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn network_defaults() {
    let etcd = Etcd::start();
    let s = etcd.store("defaults").await;

    let demo = s.create_network(net("demo")).await.unwrap();
    assert_eq!(demo.name, "demo");
    assert_eq!(demo.subnet, "10.0.0.0/24");
    assert_eq!(demo.gateway, "10.0.0.1");
    assert_eq!(demo.vni, 256);
    assert_eq!(demo.mtu, 1450);
    assert_eq!(demo.driver, "overlay");
    assert_eq!(demo.id.len(), 64);
    assert!(demo.id.chars().all(|c| c.is_ascii_hexdigit()));
    // RFC 3339, UTC, nanoseconds: 2020-04-10T14:47:27.897140984Z
    assert_eq!(demo.created.len(), 30, "{}", demo.created);
    assert!(demo.created.ends_with('Z'));

    let second = s.create_network(net("second")).await.unwrap();
    assert_eq!(second.subnet, "10.0.1.0/24");
    assert_eq!(second.gateway, "10.0.1.1");
    assert_eq!(second.vni, 257);

    // Lookup by name, full ID, ID prefix; listing by name.
    assert_eq!(s.get_network("demo").await.unwrap(), demo);
    assert_eq!(s.get_network(&demo.id).await.unwrap(), demo);
    assert_eq!(s.get_network(&demo.id[..12]).await.unwrap(), demo);
    let names: Vec<String> = s
        .list_networks()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["demo", "second"]);
    match s.get_network("nope").await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "network nope not found"),
        other => panic!("{other:?}"),
    }

    // Claims are where the module doc says.
    let mut kv = s.client().kv_client();
    for key in [
        "/test-defaults/networks/demo",
        "/test-defaults/vnis/256",
        "/test-defaults/subnets/10.0.0.0_24",
    ] {
        let r = kv.get(key, None).await.unwrap();
        assert_eq!(r.kvs().len(), 1, "{key}");
    }
    let r = kv.get("/test-defaults/vnis/256", None).await.unwrap();
    assert_eq!(r.kvs()[0].value(), demo.id.as_bytes());
}

#[tokio::test]
async fn network_explicit_values() {
    let etcd = Etcd::start();
    let s = etcd.store("explicit").await;
    let spec = NetworkSpec {
        name: "app.net_1".into(),
        driver: "overlay".into(),
        subnet: Some("172.20.16.0/20".into()),
        gateway: Some("172.20.16.254".into()),
        vni: Some(4242),
        mtu: Some(1400),
        labels: HashMap::from([("env".into(), "test".into())]),
    };
    let n = s.create_network(spec).await.unwrap();
    assert_eq!(n.subnet, "172.20.16.0/20");
    assert_eq!(n.gateway, "172.20.16.254");
    assert_eq!(n.vni, 4242);
    assert_eq!(n.mtu, 1400);
    assert_eq!(n.labels.get("env").map(String::as_str), Some("test"));

    // A subnet without a gateway gets its first host; defaults skip the pinned values.
    let spec = NetworkSpec {
        name: "b".into(),
        subnet: Some("192.168.7.0/30".into()),
        ..Default::default()
    };
    let b = s.create_network(spec).await.unwrap();
    assert_eq!(b.gateway, "192.168.7.1");
    assert_eq!(b.vni, 256);
    let c = s.create_network(net("c")).await.unwrap();
    assert_eq!(c.subnet, "10.0.0.0/24");
    assert_eq!(c.vni, 257);
}

#[tokio::test]
async fn network_validation_errors() {
    let etcd = Etcd::start();
    let s = etcd.store("validation").await;
    let with = |f: fn(&mut NetworkSpec)| {
        let mut spec = net("ok");
        f(&mut spec);
        spec
    };
    let cases: Vec<(NetworkSpec, &str)> = vec![
        (net(""), "invalid network name \"\""),
        (net("-x"), "invalid network name \"-x\""),
        (net("a/b"), "invalid network name \"a/b\""),
        (net("a b"), "invalid network name \"a b\""),
        (
            with(|s| s.driver = "bridge".into()),
            "driver \"bridge\" is not supported",
        ),
        (
            with(|s| s.subnet = Some("10.0.0.0".into())),
            "invalid subnet 10.0.0.0: not an IPv4 CIDR",
        ),
        (
            with(|s| s.subnet = Some("banana".into())),
            "invalid subnet banana",
        ),
        (
            with(|s| s.subnet = Some("fd00::/64".into())),
            "invalid subnet fd00::/64",
        ),
        (
            with(|s| s.subnet = Some("10.1.0.1/24".into())),
            "invalid subnet 10.1.0.1/24: host bits are set (did you mean 10.1.0.0/24?)",
        ),
        (
            with(|s| s.subnet = Some("10.1.0.0/31".into())),
            "invalid subnet 10.1.0.0/31: prefix /31",
        ),
        (
            with(|s| s.subnet = Some("10.1.0.0/32".into())),
            "invalid subnet 10.1.0.0/32: prefix /32",
        ),
        (
            with(|s| {
                s.subnet = Some("10.1.0.0/24".into());
                s.gateway = Some("10.2.0.1".into());
            }),
            "invalid gateway 10.2.0.1: it is not inside subnet 10.1.0.0/24",
        ),
        (
            with(|s| {
                s.subnet = Some("10.1.0.0/24".into());
                s.gateway = Some("10.1.0.0".into());
            }),
            "invalid gateway 10.1.0.0: it is the network or broadcast address",
        ),
        (
            with(|s| {
                s.subnet = Some("10.1.0.0/24".into());
                s.gateway = Some("10.1.0.255".into());
            }),
            "invalid gateway 10.1.0.255: it is the network or broadcast address",
        ),
        (
            with(|s| {
                s.subnet = Some("10.1.0.0/24".into());
                s.gateway = Some("gw".into());
            }),
            "invalid gateway gw: not an IPv4 address",
        ),
        (
            with(|s| s.gateway = Some("10.0.0.1".into())),
            "invalid gateway 10.0.0.1: a gateway can only be given together with a subnet",
        ),
        (
            with(|s| s.vni = Some(0)),
            "invalid vni 0: must be between 1 and 16777215",
        ),
        (
            with(|s| s.vni = Some(16_777_216)),
            "invalid vni 16777216: must be between 1 and 16777215",
        ),
        (
            with(|s| s.mtu = Some(67)),
            "invalid mtu 67: must be between 68 and 9000",
        ),
        (
            with(|s| s.mtu = Some(9001)),
            "invalid mtu 9001: must be between 68 and 9000",
        ),
    ];
    for (spec, want) in cases {
        let what = format!("{spec:?}");
        match s.create_network(spec).await {
            Err(e @ StoreError::Invalid(_)) => {
                let msg = e.to_string();
                assert!(msg.starts_with(want), "{what}: got {msg:?}, want {want:?}…");
                assert!(!msg.contains('\n'));
            }
            other => panic!("{what}: expected Invalid, got {other:?}"),
        }
    }
    // Boundaries are accepted, and nothing refused above was stored.
    assert!(s.list_networks().await.unwrap().is_empty());
    let edge = NetworkSpec {
        name: "edge".into(),
        vni: Some(16_777_215),
        mtu: Some(9000),
        ..Default::default()
    };
    s.create_network(edge).await.unwrap();
    let edge = NetworkSpec {
        name: "edge2".into(),
        vni: Some(1),
        mtu: Some(68),
        ..Default::default()
    };
    s.create_network(edge).await.unwrap();
}

#[tokio::test]
async fn network_conflicts() {
    let etcd = Etcd::start();
    let s = etcd.store("conflicts").await;
    let big = NetworkSpec {
        name: "big".into(),
        subnet: Some("10.1.0.0/16".into()),
        vni: Some(300),
        ..Default::default()
    };
    s.create_network(big).await.unwrap();

    // Overlapping subnet, both ways.
    for subnet in ["10.1.5.0/24", "10.0.0.0/8", "10.1.0.0/16"] {
        let spec = NetworkSpec {
            name: "x".into(),
            subnet: Some(subnet.into()),
            ..Default::default()
        };
        match s.create_network(spec).await {
            Err(StoreError::InUse(m)) => assert_eq!(
                m,
                format!("subnet {subnet} overlaps with subnet 10.1.0.0/16 of network big")
            ),
            other => panic!("{subnet}: {other:?}"),
        }
    }
    // Duplicate name.
    match s.create_network(net("big")).await {
        Err(StoreError::AlreadyExists(m)) => assert_eq!(m, "network with name big already exists"),
        other => panic!("{other:?}"),
    }
    // Duplicate VNI.
    let spec = NetworkSpec {
        name: "y".into(),
        vni: Some(300),
        ..Default::default()
    };
    match s.create_network(spec).await {
        Err(StoreError::AlreadyExists(m)) => {
            assert_eq!(m, "vni 300 is already used by network big")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.list_networks().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_have_one_winner() {
    let etcd = Etcd::start();
    let a = etcd.store("race").await;
    let b = etcd.store("race").await;
    for round in 0..5 {
        let name = format!("demo{round}");
        let (ra, rb) = tokio::join!(a.create_network(net(&name)), b.create_network(net(&name)));
        let oks = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "round {round}: {ra:?} / {rb:?}");
        let err = ra.err().or(rb.err()).unwrap();
        assert_eq!(
            err,
            StoreError::AlreadyExists(format!("network with name {name} already exists"))
        );
    }
    // Different names racing for automatic values: both win, with distinct values.
    let (ra, rb) = tokio::join!(
        a.create_network(net("left")),
        b.create_network(net("right"))
    );
    let (l, r) = (ra.unwrap(), rb.unwrap());
    assert_ne!(l.subnet, r.subnet);
    assert_ne!(l.vni, r.vni);
    let nets = a.list_networks().await.unwrap();
    assert_eq!(nets.len(), 7);
    let mut vnis: Vec<u32> = nets.iter().map(|n| n.vni).collect();
    vnis.sort_unstable();
    assert_eq!(vnis, (256..263).collect::<Vec<_>>());

    // Overlapping but different subnets, different names and VNIs: no single key is shared,
    // only the `subnets/` range compare can stop the second one.
    for round in 0..5u32 {
        let p = NetworkSpec {
            name: format!("p{round}"),
            subnet: Some(format!("172.{}.0.0/16", 16 + round)),
            vni: Some(1000 + round),
            ..Default::default()
        };
        let q = NetworkSpec {
            name: format!("q{round}"),
            subnet: Some(format!("172.{}.3.0/24", 16 + round)),
            vni: Some(2000 + round),
            ..Default::default()
        };
        let (rp, rq) = tokio::join!(a.create_network(p), b.create_network(q));
        assert_eq!(
            [&rp, &rq].iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {rp:?} / {rq:?}"
        );
        let err = rp.err().or(rq.err()).unwrap();
        assert!(
            matches!(&err, StoreError::InUse(m) if m.contains("overlaps")),
            "{err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn endpoint_allocation_order_and_reuse() {
    let etcd = Etcd::start();
    let s = etcd.store("alloc").await;
    let demo = s.create_network(net("demo")).await.unwrap();

    let web1 = s.create_endpoint(ep("demo", "web1")).await.unwrap();
    assert_eq!(web1.ipv4, "10.0.0.2");
    assert_eq!(web1.mac, "02:42:0a:00:00:02");
    assert_eq!(web1.ifname, "eth0");
    assert_eq!(web1.network_id, demo.id);
    assert_eq!(web1.node, "node1");
    assert_eq!(web1.netns, "/var/run/netns/web1");
    assert_eq!(web1.id.len(), 64);
    let web2 = s.create_endpoint(ep(&demo.id[..8], "web2")).await.unwrap();
    assert_eq!(web2.ipv4, "10.0.0.3");
    let web3 = s.create_endpoint(ep("demo", "web3")).await.unwrap();
    assert_eq!(web3.ipv4, "10.0.0.4");

    // Duplicate name: docker's words.
    match s.create_endpoint(ep("demo", "web2")).await {
        Err(e @ StoreError::AlreadyExists(_)) => assert_eq!(
            e.to_string(),
            "endpoint with name web2 already exists in network demo"
        ),
        other => panic!("{other:?}"),
    }

    // Freed addresses are reused, lowest first.
    let gone = s.delete_endpoint("demo", "web2").await.unwrap();
    assert_eq!(gone, web2);
    let web4 = s.create_endpoint(ep("demo", "web4")).await.unwrap();
    assert_eq!(web4.ipv4, "10.0.0.3");
    let web5 = s.create_endpoint(ep("demo", "web5")).await.unwrap();
    assert_eq!(web5.ipv4, "10.0.0.5");

    let names: Vec<String> = s
        .list_endpoints(&demo.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["web1", "web3", "web4", "web5"]);
    assert_eq!(s.get_endpoint("demo", "web4").await.unwrap(), web4);

    match s.delete_endpoint("demo", "web2").await {
        Err(StoreError::NotFound(m)) => {
            assert_eq!(m, "container web2 is not connected to network demo")
        }
        other => panic!("{other:?}"),
    }
    match s.create_endpoint(ep("nope", "x")).await {
        Err(StoreError::NotFound(m)) => assert_eq!(m, "network nope not found"),
        other => panic!("{other:?}"),
    }
    let bad = EndpointSpec {
        ifname: "a-very-long-ifname".into(),
        ..ep("demo", "w")
    };
    assert!(matches!(
        s.create_endpoint(bad).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_endpoint(ep("demo", "-bad")).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn endpoint_requested_addresses() {
    let etcd = Etcd::start();
    let s = etcd.store("requested").await;
    s.create_network(net("demo")).await.unwrap();

    let a = s
        .create_endpoint(ep_ip("demo", "a", "10.0.0.50"))
        .await
        .unwrap();
    assert_eq!(a.ipv4, "10.0.0.50");
    assert_eq!(a.mac, "02:42:0a:00:00:32");

    let err = s
        .create_endpoint(ep_ip("demo", "b", "10.0.0.50"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "address already in use: 10.0.0.50 in network demo"
    );

    let err = s
        .create_endpoint(ep_ip("demo", "b", "10.1.2.3"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid address 10.1.2.3: it does not belong to any of this network's subnets"
    );

    let err = s
        .create_endpoint(ep_ip("demo", "b", "10.0.0.1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InUse(_)), "{err:?}");
    for reserved in ["10.0.0.0", "10.0.0.255"] {
        let err = s
            .create_endpoint(ep_ip("demo", "b", reserved))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{reserved}: {err:?}");
    }
    let err = s
        .create_endpoint(ep_ip("demo", "b", "not-an-ip"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Automatic allocation goes around the requested one.
    let b = s.create_endpoint(ep("demo", "b")).await.unwrap();
    assert_eq!(b.ipv4, "10.0.0.2");

    // A /30 holds exactly one endpoint.
    let tiny = NetworkSpec {
        name: "tiny".into(),
        subnet: Some("192.168.9.0/30".into()),
        ..Default::default()
    };
    s.create_network(tiny).await.unwrap();
    assert_eq!(
        s.create_endpoint(ep("tiny", "t1")).await.unwrap().ipv4,
        "192.168.9.2"
    );
    match s.create_endpoint(ep("tiny", "t2")).await {
        Err(StoreError::InUse(m)) => assert!(
            m.starts_with("no available IPv4 addresses on this network's address pools: tiny"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn remove_network_refused_while_endpoints_exist() {
    let etcd = Etcd::start();
    let s = etcd.store("remove").await;
    let demo = s.create_network(net("demo")).await.unwrap();
    s.create_endpoint(ep("demo", "web1")).await.unwrap();
    s.create_endpoint(ep("demo", "web2")).await.unwrap();
    s.add_vtep("demo", "192.0.2.77", 0).await.unwrap();

    match s.remove_network("demo").await {
        Err(e @ StoreError::InUse(_)) => assert_eq!(
            e.to_string(),
            format!(
                "error while removing network: network demo id {} has active endpoints (web1, web2)",
                demo.id
            )
        ),
        other => panic!("{other:?}"),
    }
    s.delete_endpoint("demo", "web1").await.unwrap();
    s.delete_endpoint("demo", "web2").await.unwrap();
    let removed = s.remove_network(&demo.id[..6]).await.unwrap();
    assert_eq!(removed.id, demo.id);
    assert!(matches!(
        s.get_network("demo").await,
        Err(StoreError::NotFound(_))
    ));

    // Nothing of it is left under the prefix: claims, vteps, ips.
    let mut kv = s.client().kv_client();
    let left = kv
        .get(
            "/test-remove/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let keys: Vec<String> = left
        .kvs()
        .iter()
        .map(|k| k.key_str().unwrap().to_owned())
        .collect();
    assert!(keys.is_empty(), "{keys:?}");

    // So the same name, subnet and VNI can be created again.
    let again = s.create_network(net("demo")).await.unwrap();
    assert_eq!((again.subnet.as_str(), again.vni), ("10.0.0.0/24", 256));
    assert!(matches!(
        s.remove_network("nope").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn external_vteps() {
    let etcd = Etcd::start();
    let s = etcd.store("vteps").await;
    let demo = s.create_network(net("demo")).await.unwrap();
    let v = s.add_vtep("demo", "192.0.2.1", 0).await.unwrap();
    assert_eq!((v.ip.as_str(), v.port), ("192.0.2.1", 4789));
    s.add_vtep("demo", "192.0.2.2", 8472).await.unwrap();
    match s.add_vtep("demo", "192.0.2.1", 4789).await {
        Err(StoreError::AlreadyExists(m)) => {
            assert_eq!(m, "vtep 192.0.2.1:4789 already exists in network demo")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.add_vtep("demo", "nope", 1).await,
        Err(StoreError::Invalid(_))
    ));
    let list = s.list_vteps(&demo.id).await.unwrap();
    let addrs: Vec<String> = list
        .iter()
        .map(|v| format!("{}:{}", v.ip, v.port))
        .collect();
    assert_eq!(addrs, ["192.0.2.1:4789", "192.0.2.2:8472"]);
    s.remove_vtep("demo", "192.0.2.1", 0).await.unwrap();
    match s.remove_vtep("demo", "192.0.2.1", 0).await {
        Err(StoreError::NotFound(m)) => {
            assert_eq!(m, "vtep 192.0.2.1:4789 not found in network demo")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.list_vteps(&demo.id).await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Snapshot and watch
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn snapshot_then_watch() {
    let etcd = Etcd::start();
    let s = etcd.store("watch").await;
    let demo = s.create_network(net("demo")).await.unwrap();
    let web1 = s.create_endpoint(ep("demo", "web1")).await.unwrap();
    let vtep = s.add_vtep("demo", "192.0.2.1", 0).await.unwrap();
    let n1 = node("n1");
    s.register_node(&n1, Duration::from_secs(30)).await.unwrap();

    let (rev, state) = s.snapshot().await.unwrap();
    assert!(rev > 0);
    assert_eq!(state.networks, vec![demo.clone()]);
    assert_eq!(state.endpoints, vec![web1.clone()]);
    assert_eq!(state.vteps, vec![vtep]);
    assert_eq!(state.nodes, vec![(n1, true)]);

    let mut w = s.watch(rev + 1).await.unwrap();
    let web2 = s.create_endpoint(ep("demo", "web2")).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put {
            revision,
            record: Record::Endpoint(e),
        } => {
            assert_eq!(e, web2);
            assert!(revision > rev);
        }
        other => panic!("{other:?}"),
    }
    s.delete_endpoint("demo", "web1").await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Delete { key, prev, .. } => {
            assert_eq!(
                key,
                RecordKey::Endpoint {
                    network_id: demo.id.clone(),
                    name: "web1".into()
                }
            );
            assert_eq!(prev, Some(Record::Endpoint(web1)));
        }
        other => panic!("{other:?}"),
    }
    // A node registers on a short lease and nobody renews it: its record and alive key
    // appear, then the alive key is deleted by the lease's expiry (always in this order:
    // events come in revision order).
    let n2 = node("n2");
    s.register_node(&n2, Duration::from_secs(1)).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put {
            record: Record::Node(n),
            ..
        } => assert_eq!(n, n2),
        other => panic!("{other:?}"),
    }
    match next_event(&mut w).await {
        WatchEvent::Put {
            record: Record::Alive(name),
            ..
        } => assert_eq!(name, "n2"),
        other => panic!("{other:?}"),
    }
    match next_event(&mut w).await {
        WatchEvent::Delete {
            key: RecordKey::Alive { name },
            ..
        } => assert_eq!(name, "n2"),
        other => panic!("{other:?}"),
    }
    let other = s.create_network(net("other")).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put {
            record: Record::Network(n),
            ..
        } => assert_eq!(n, other),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn watch_from_compacted_revision_asks_for_resync() {
    let etcd = Etcd::start();
    let s = etcd.store("compact").await;
    s.create_network(net("a")).await.unwrap();
    s.create_network(net("b")).await.unwrap();
    let (rev, _) = s.snapshot().await.unwrap();
    let mut kv = s.client().kv_client();
    kv.compact(rev, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let mut w = s.watch(2).await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Resync { reason } => assert!(reason.contains("compacted"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.next().await, None);
}

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn node_lease_expiry_makes_it_dead() {
    let etcd = Etcd::start();
    let s = etcd.store("lease").await;
    let n1 = node("n1");
    let lease = s.register_node(&n1, Duration::from_secs(2)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(2));
    assert_eq!(s.list_nodes().await.unwrap(), vec![(n1.clone(), true)]);
    // Nobody renews: dead within the TTL (plus etcd's expiry granularity), still registered.
    eventually(10, "n1 dead", || async { !alive(&s, "n1").await }).await;
    assert_eq!(s.list_nodes().await.unwrap(), vec![(n1, false)]);

    let bad = Node {
        vtep_ip: "x".into(),
        ..node("n3")
    };
    assert!(matches!(
        s.register_node(&bad, Duration::from_secs(2)).await,
        Err(StoreError::Invalid(_))
    ));
    s.remove_node("n1").await.unwrap();
    assert!(s.list_nodes().await.unwrap().is_empty());
    assert!(matches!(
        s.remove_node("n1").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn keep_alive_renews_recovers_and_stops() {
    let etcd = Etcd::start();
    let s = etcd.store("keepalive").await;
    let n1 = node("n1");
    let lease = s.register_node(&n1, Duration::from_secs(2)).await.unwrap();
    let ka = s.keep_alive(n1.clone(), lease);

    // Alive well past the TTL.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(alive(&s, "n1").await);
    assert_eq!(ka.lease_id(), lease.id);

    // The lease disappears behind the agent's back (as if etcd lost it): the task notices,
    // grants a new one and writes the keys again.
    s.revoke_lease(&lease).await.unwrap();
    eventually(10, "n1 alive on a new lease", || async {
        ka.lease_id() != lease.id && alive(&s, "n1").await
    })
    .await;

    // stop() revokes: dead at once.
    ka.stop().await.unwrap();
    assert!(!alive(&s, "n1").await);
}

// ---------------------------------------------------------------------------------------------
// etcd down
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn etcd_down_fails_fast_with_unavailable_and_recovers() {
    let mut etcd = Etcd::start();
    let s = Store::connect(StoreConfig {
        timeout: Duration::from_secs(1),
        ..etcd.config("down")
    })
    .await
    .unwrap();
    s.create_network(net("demo")).await.unwrap();
    let (rev, _) = s.snapshot().await.unwrap();
    let mut w = s.watch(rev + 1).await.unwrap();

    etcd.stop();

    // An open watch ends with Resync.
    match next_event(&mut w).await {
        WatchEvent::Resync { .. } => {}
        other => panic!("{other:?}"),
    }
    // Every kind of call fails within its timeout, with the one-line hint.
    let want = format!(
        "etcd at {} is unreachable: start it or pass --etcd",
        etcd.client_url
    );
    let started = Instant::now();
    let results = vec![
        s.ping().await.map(|_| ()),
        s.list_networks().await.map(|_| ()),
        s.create_network(net("x")).await.map(|_| ()),
        s.create_endpoint(ep("demo", "w")).await.map(|_| ()),
        s.snapshot().await.map(|_| ()),
        s.watch(0).await.map(|_| ()),
        s.register_node(&node("n1"), Duration::from_secs(5))
            .await
            .map(|_| ()),
    ];
    for r in results {
        match r {
            Err(e @ StoreError::Unavailable { .. }) => assert_eq!(e.to_string(), want),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    // Seven calls of at most ~1 s each: nothing waited for etcd indefinitely.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // The same Store works again once etcd is back.
    etcd.restart();
    eventually(20, "store usable after restart", || async {
        s.list_networks().await.is_ok()
    })
    .await;
    assert_eq!(s.get_network("demo").await.unwrap().name, "demo");
}
