//! The agent's operator endpoint, scraped from a live agent in a host namespace: Prometheus
//! metrics that `promtool check metrics` accepts and that count real traffic, `/healthz`, and
//! `/readyz` turning 503 with the reason while etcd is down and 200 again once it is back.
//! Real agents, etcd and `ovctl` ([`ovnet_cluster`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use ovnet_cluster::{wait_until, Cluster};

const METRICS: &str = "127.0.0.1:9476";

/// `GET path` on the metrics address inside namespace `ns`: (status, body).
fn get(ns: &str, path: &str) -> Result<(u16, String), String> {
    let path = path.to_owned();
    ovnet_testbed::in_netns(ns, move || {
        let mut s = TcpStream::connect(METRICS).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no header end")?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        // axum answers with a length or chunks; chunked bodies are de-chunked here.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, body))
    })
    .map_err(|e| format!("entering {ns}: {e}"))?
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// The value of the sample whose line starts with `series` (name and labels, in the
/// exposition's order: labels sorted by name).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_live_agent_serves_metrics_health_and_readiness() {
    let mut c = Cluster::bed(2);
    c.set_agent_args(1, &["--metrics-addr", METRICS]);
    for h in 1..=2 {
        c.start_agent(h);
    }
    for h in 1..=2 {
        c.wait_agent_ready(h);
    }
    let h1 = c.host(1).ns.clone();
    c.create(1, "demo", &[]);
    let web1 = c.netns("web1");
    let web2 = c.netns("web2");
    c.connect(1, "demo", "web1", &web1);
    c.connect(2, "demo", "web2", &web2);
    c.wait_ping(&web1, "10.0.0.3", Duration::from_secs(30));
    c.assert_ping(&web1, "10.0.0.3");
    // A name looked up through the network's resolver on host 1 (the resolv.conf the agent
    // wrote for the named namespace points at the gateway).
    let hosts = wait_until("web2 to resolve", Duration::from_secs(30), || {
        c.tb.exec(&web1, &["getent", "hosts", "web2"])
            .map_err(|e| e.to_string())
    });
    assert!(hosts.starts_with("10.0.0.3"), "{hosts}");

    assert_eq!(get(&h1, "/healthz").unwrap(), (200, "ok\n".into()));
    let ready = wait_until(
        "/readyz to answer 200",
        Duration::from_secs(30),
        || match get(&h1, "/readyz")? {
            (200, body) => Ok(body),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(ready, "ready\n");

    let (status, text) = get(&h1, "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    println!("{text}");
    let demo = |dir: &str| {
        format!("ovnet_network_packets_total{{direction=\"{dir}\",network=\"demo\",vni=\"256\"}}")
    };
    for dir in ["tx", "rx"] {
        let n = sample(&text, &demo(dir)).unwrap_or_else(|| panic!("no {}:\n{text}", demo(dir)));
        assert!(n >= 3.0, "{} = {n}: the pings were not counted", demo(dir));
    }
    let bytes = "ovnet_network_bytes_total{direction=\"tx\",network=\"demo\",vni=\"256\"}";
    assert!(sample(&text, bytes).unwrap() > 0.0, "{text}");
    let drop = "ovnet_network_drops_total{network=\"demo\",reason=\"unknown_vtep\",vni=\"256\"}";
    assert!(
        sample(&text, drop).is_some(),
        "every drop reason is listed:\n{text}"
    );
    for (series, want) in [
        ("ovnet_etcd_up", 1.0),
        ("ovnet_tables_synced", 1.0),
        ("ovnet_node_lease_alive", 1.0),
        ("ovnet_ready", 1.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series}:\n{text}");
    }
    assert!(
        sample(&text, "ovnet_etcd_watch_revision").unwrap() > 1.0,
        "{text}"
    );
    for dir in ["tx", "rx"] {
        let series = format!(
            "ovnet_peer_packets_total{{direction=\"{dir}\",node=\"host2\",peer=\"192.168.50.2\"}}"
        );
        let n = sample(&text, &series).unwrap_or_else(|| panic!("no {series}:\n{text}"));
        assert!(n >= 3.0, "{series} = {n}: the pings were not counted");
    }
    let heard = "ovnet_peer_last_heard_seconds{node=\"host2\",peer=\"192.168.50.2\"}";
    assert!(sample(&text, heard).is_some_and(|s| s < 60.0), "{text}");
    assert_eq!(
        sample(&text, "ovnet_peer_overflow_total"),
        Some(0.0),
        "{text}"
    );
    let dns = "ovnet_dns_answers_total{network=\"demo\",rcode=\"noerror\"}";
    assert!(sample(&text, dns).is_some_and(|n| n >= 1.0), "{text}");
    let q = "ovnet_dns_queries_total{network=\"demo\",transport=\"udp\"}";
    assert!(sample(&text, q).is_some_and(|n| n >= 1.0), "{text}");
    assert!(
        sample(&text, "ovnet_worker_busy_ratio{worker=\"0\"}").is_some(),
        "{text}"
    );
    assert!(
        sample(&text, "ovnet_dataplane_feature{feature=\"udp_gso\"}").is_some(),
        "{text}"
    );

    // What Prometheus' own linter says of it.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus, installed by deploy/deps.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the exposition:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // etcd down: not ready, with the reason; metrics still served, saying so.
    c.tb.stop_etcd().unwrap();
    let why = wait_until(
        "/readyz to answer 503",
        Duration::from_secs(60),
        || match get(&h1, "/readyz")? {
            (503, body) => Ok(body),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(why.contains("etcd") || why.contains("lease"), "{why}");
    // The lease's next renewal (every ttl / 3) fails too.
    let text = wait_until(
        "the metrics to show the lease lost",
        Duration::from_secs(60),
        || {
            let (_, text) = get(&h1, "/metrics")?;
            match sample(&text, "ovnet_node_lease_alive") {
                Some(0.0) => Ok(text),
                other => Err(format!("ovnet_node_lease_alive {other:?}")),
            }
        },
    );
    assert_eq!(sample(&text, "ovnet_etcd_up"), Some(0.0), "{text}");
    assert_eq!(sample(&text, "ovnet_ready"), Some(0.0), "{text}");
    assert!(
        sample(&text, "ovnet_node_lease_failures_total").unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(get(&h1, "/healthz").unwrap().0, 200);

    // Back: ready again, and the re-listing is counted.
    c.tb.restart_etcd().unwrap();
    wait_until(
        "/readyz to answer 200 again",
        Duration::from_secs(60),
        || match get(&h1, "/readyz")? {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let (_, text) = get(&h1, "/metrics").unwrap();
    assert!(
        sample(&text, "ovnet_etcd_resyncs_total").unwrap() >= 1.0,
        "{text}"
    );
    assert_eq!(sample(&text, "ovnet_node_lease_alive"), Some(1.0), "{text}");
}

#[test]
fn a_taken_metrics_address_stops_the_agent_with_a_clear_error() {
    let mut c = Cluster::bed(1);
    let h1 = c.host(1).ns.clone();
    // Something else holds the port in host 1's namespace.
    let _holder =
        ovnet_testbed::in_netns(&h1, || std::net::TcpListener::bind(METRICS).unwrap()).unwrap();
    c.set_agent_args(1, &["--metrics-addr", METRICS]);
    c.start_agent(1);
    let pid = c.agent(1);
    let status = wait_until("the agent to exit", Duration::from_secs(30), || {
        c.tb.try_wait(pid)
            .map_err(|e| e.to_string())?
            .ok_or("still running".to_string())
    });
    assert!(!status.success());
    let log = c.tb.log(pid).unwrap_or_default();
    assert!(
        log.contains("binding the metrics address 127.0.0.1:9476"),
        "{log}"
    );
    assert!(log.contains("--metrics-addr"), "{log}");
}
