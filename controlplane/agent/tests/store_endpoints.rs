//! The store's endpoints against a real etcd: addresses handed out lowest first and reused,
//! requested addresses and every refusal; and the store as the edge where records enter the
//! agent: damaged and hostile values written straight into etcd are skipped (or reported as
//! what they are), never handed on.

mod common;

use common::{attach, create, ep, net, next_event, refused, Etcd};
use ovnet_agent::domain::plan::{EndpointSpec, NetworkSpec};
use ovnet_agent::domain::Endpoint;
use ovnet_agent::error::AgentError;
use ovnet_agent::store::{Record, RecordKey, Store, WatchEvent};
use ovnet_proto::Message;

fn is_invalid(e: &AgentError) -> bool {
    matches!(e, AgentError::Invalid(_))
}
fn is_in_use(e: &AgentError) -> bool {
    matches!(e, AgentError::InUse(_))
}
fn is_exists(e: &AgentError) -> bool {
    matches!(e, AgentError::Exists(_))
}
fn is_not_found(e: &AgentError) -> bool {
    matches!(e, AgentError::NotFound(_))
}

#[tokio::test]
async fn endpoint_allocation_order_and_reuse() {
    let etcd = Etcd::start();
    let s = etcd.store("alloc").await;
    let demo = create(&s, net("demo")).await.unwrap();

    let web1 = ep(&s, "demo", "web1").await.unwrap();
    let p = web1.to_proto();
    assert_eq!(p.ipv4, "10.0.0.2");
    assert_eq!(p.mac, "02:42:0a:00:00:02");
    assert_eq!(p.ifname, "eth0");
    assert_eq!(web1.network_id, demo.id);
    assert_eq!(p.node, "node1");
    assert_eq!(p.netns, "/var/run/netns/web1");
    assert_eq!(p.id.len(), 64);
    let web2 = ep(&s, &demo.id.as_str()[..8], "web2").await.unwrap();
    assert_eq!(web2.ipv4.to_string(), "10.0.0.3");
    let web3 = ep(&s, "demo", "web3").await.unwrap();
    assert_eq!(web3.ipv4.to_string(), "10.0.0.4");

    // Duplicate name: docker's words.
    refused(
        ep(&s, "demo", "web2").await,
        is_exists,
        "endpoint with name web2 already exists in network demo",
    );

    // Freed addresses are reused, lowest first.
    let gone = s.delete_endpoint("demo", "web2").await.unwrap();
    assert_eq!(gone.record, web2);
    let web4 = ep(&s, "demo", "web4").await.unwrap();
    assert_eq!(web4.ipv4.to_string(), "10.0.0.3");
    let web5 = ep(&s, "demo", "web5").await.unwrap();
    assert_eq!(web5.ipv4.to_string(), "10.0.0.5");

    let names: Vec<String> = s
        .list_endpoints(&demo.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["web1", "web3", "web4", "web5"]);
    assert_eq!(s.get_endpoint("demo", "web4").await.unwrap(), web4);

    refused(
        s.delete_endpoint("demo", "web2").await,
        is_not_found,
        "container web2 is not connected to network demo",
    );
    refused(
        ep(&s, "nope", "x").await,
        is_not_found,
        "network nope not found",
    );
    let long = EndpointSpec {
        name: "w".into(),
        node: "node1".into(),
        ifname: "a-very-long-ifname".into(),
        ..Default::default()
    };
    assert!(matches!(long.check(), Err(AgentError::Invalid(_))));
    assert!(matches!(
        ep(&s, "demo", "-bad").await,
        Err(AgentError::Invalid(_))
    ));
}

#[tokio::test]
async fn endpoint_requested_addresses() {
    let etcd = Etcd::start();
    let s = etcd.store("requested").await;
    create(&s, net("demo")).await.unwrap();

    let a = attach(&s, "demo", "a", Some("10.0.0.50")).await.unwrap();
    assert_eq!(a.ipv4.to_string(), "10.0.0.50");
    assert_eq!(a.mac.to_string(), "02:42:0a:00:00:32");

    refused(
        attach(&s, "demo", "b", Some("10.0.0.50")).await,
        is_in_use,
        "address already in use: 10.0.0.50 in network demo",
    );
    refused(
        attach(&s, "demo", "b", Some("10.1.2.3")).await,
        is_invalid,
        "invalid address 10.1.2.3: it does not belong to any of this network's subnets",
    );
    refused(
        attach(&s, "demo", "b", Some("10.0.0.1")).await,
        is_in_use,
        "address already in use: 10.0.0.1 is the network's gateway",
    );
    for reserved in ["10.0.0.0", "10.0.0.255"] {
        let err = attach(&s, "demo", "b", Some(reserved)).await.unwrap_err();
        assert!(is_invalid(&err), "{reserved}: {err:?}");
    }
    refused(
        attach(&s, "demo", "b", Some("not-an-ip")).await,
        is_invalid,
        "invalid address not-an-ip: not an IPv4 address",
    );

    // Automatic allocation goes around the requested one.
    let b = ep(&s, "demo", "b").await.unwrap();
    assert_eq!(b.ipv4.to_string(), "10.0.0.2");

    // A /30 holds exactly one endpoint.
    let tiny = NetworkSpec {
        name: "tiny".into(),
        subnet: Some("192.168.9.0/30".into()),
        ..Default::default()
    };
    create(&s, tiny).await.unwrap();
    assert_eq!(
        ep(&s, "tiny", "t1").await.unwrap().ipv4.to_string(),
        "192.168.9.2"
    );
    match ep(&s, "tiny", "t2").await {
        Err(e @ AgentError::InUse(_)) => assert!(
            e.to_string()
                .starts_with("no available IPv4 addresses on this network's address pools: tiny"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
}

/// Values written into etcd behind the agents' backs (damaged, hostile, or stored under the
/// wrong key) stop at the store: listings and snapshots skip them, the watch reports them as
/// gone, a lookup that needs one says it is damaged. Nothing panics, good records are kept.
#[tokio::test]
async fn hostile_records_stop_at_the_store() {
    let etcd = Etcd::start();
    let s = etcd.store("hostile").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let web1 = ep(&s, "demo", "web1").await.unwrap();
    let (rev, _) = s.snapshot().await.unwrap();
    let mut w = s.watch(rev + 1).await.unwrap();
    let mut kv = s.client().kv_client();
    let p = "/test-hostile/";

    // An endpoint whose ID is not hex (a multi-byte character where devices are cut from it),
    // one whose MAC is broadcast, and garbage bytes.
    let mut evil = web1.to_proto();
    evil.name = "evil".into();
    evil.id = format!("{}€", "a".repeat(61));
    let mut bcast = web1.to_proto();
    bcast.name = "bcast".into();
    bcast.mac = "ff:ff:ff:ff:ff:ff".into();
    let ep_key = |name: &str| format!("{p}endpoints/{}/{name}", demo.id);
    kv.put(ep_key("evil"), evil.encode_to_vec(), None)
        .await
        .unwrap();
    kv.put(ep_key("bcast"), bcast.encode_to_vec(), None)
        .await
        .unwrap();
    kv.put(ep_key("junk"), b"\xff\xfe\x00garbage".to_vec(), None)
        .await
        .unwrap();
    // A network stored under another network's name, and one with a VNI out of range.
    let mut other = demo.to_proto();
    other.vni = 1 << 24;
    kv.put(format!("{p}networks/bignet"), other.encode_to_vec(), None)
        .await
        .unwrap();
    kv.put(
        format!("{p}networks/alias"),
        demo.to_proto().encode_to_vec(),
        None,
    )
    .await
    .unwrap();
    // A node record with a VTEP that is no address.
    let node = ovnet_proto::Node {
        name: "n9".into(),
        vtep_ip: "nonsense".into(),
        vtep_port: 4789,
        ..Default::default()
    };
    kv.put(format!("{p}nodes/n9"), node.encode_to_vec(), None)
        .await
        .unwrap();

    // Listings keep only the good records.
    let names: Vec<String> = s
        .list_endpoints(&demo.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect();
    assert_eq!(names, ["web1"]);
    let nets: Vec<String> = s
        .list_networks()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name.to_string())
        .collect();
    assert_eq!(nets, ["demo"]);
    assert!(s.list_nodes().await.unwrap().is_empty());
    let (_, state) = s.snapshot().await.unwrap();
    assert_eq!(state.endpoints, vec![web1.clone()]);
    assert_eq!(state.networks, vec![demo.clone()]);
    assert!(state.nodes.is_empty());

    // The watch reports each damaged write as a deletion of its key.
    for name in ["evil", "bcast", "junk"] {
        match next_event(&mut w).await {
            WatchEvent::Delete {
                key, prev: None, ..
            } => assert_eq!(
                key,
                RecordKey::Endpoint {
                    network_id: demo.id.clone(),
                    name: ovnet_agent::domain::Name::parse("container", name).unwrap(),
                }
            ),
            other => panic!("{name}: {other:?}"),
        }
    }
    for _ in 0..3 {
        assert!(
            matches!(next_event(&mut w).await, WatchEvent::Delete { .. }),
            "network or node"
        );
    }
    // A good change still comes through.
    let web2 = ep(&s, "demo", "web2").await.unwrap();
    match next_event(&mut w).await {
        WatchEvent::Put {
            record: Record::Endpoint(e),
            ..
        } => assert_eq!(e, web2),
        other => panic!("{other:?}"),
    }

    // A lookup that needs a damaged record says so, with its key.
    match s.get_endpoint("demo", "junk").await {
        Err(e @ AgentError::Corrupt { .. }) => assert!(
            e.to_string().starts_with(&format!(
                "internal error: corrupt record at {}: ",
                ep_key("junk")
            )),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    // Allocation is not fooled: the damaged endpoints claimed no address.
    assert_eq!(
        ep(&s, "demo", "web3").await.unwrap().ipv4.to_string(),
        "10.0.0.4"
    );
}

/// Listings are read in pages at one revision: hundreds of records come back whole, and a
/// value larger than an etcd answer may be (5 MiB, written by someone else) is skipped, not
/// the end of the listing. An agent re-listing after a watch failure depends on it.
#[tokio::test]
async fn listings_are_paged_and_survive_a_value_too_large() {
    let etcd = Etcd::start();
    let s = etcd.store("paged").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let template = ep(&s, "demo", "web0").await.unwrap();
    let mut kv = s.client().kv_client();
    let key = |name: &str| format!("/test-paged/endpoints/{}/{name}", demo.id);
    const MORE: usize = 700;
    for chunk in (1..=MORE).collect::<Vec<_>>().chunks(100) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|i| {
                let mut e = template.clone();
                e.name = ovnet_agent::domain::Name::parse("container", &format!("web{i}")).unwrap();
                e.id = ovnet_agent::domain::EndpointId::random();
                etcd_client::TxnOp::put(key(e.name.as_str()), e.to_proto().encode_to_vec(), None)
            })
            .collect();
        kv.txn(etcd_client::Txn::new().and_then(ops)).await.unwrap();
    }
    kv.put(key("web5000"), vec![b'x'; 5 << 20], None)
        .await
        .unwrap();

    let listed = s.list_endpoints(&demo.id).await.unwrap();
    assert_eq!(listed.len(), MORE + 1);
    let (_, state) = s.snapshot().await.unwrap();
    assert_eq!(state.endpoints.len(), MORE + 1);
    assert_eq!(state.networks, vec![demo]);
}

/// Connects `name` on `node` to `network` publishing `ports` (host IP, host port, container
/// port, protocol).
async fn publish(
    s: &Store,
    network: &str,
    name: &str,
    node: &str,
    ports: &[(&str, u32, u32, &str)],
) -> Result<Endpoint, AgentError> {
    let req = EndpointSpec {
        name: name.to_owned(),
        node: node.to_owned(),
        netns: name.to_owned(),
        publish: ports
            .iter()
            .map(|&(ip, host, ctr, proto)| ovnet_proto::PortMapping {
                host_ip: ip.into(),
                host_port: host,
                container_port: ctr,
                protocol: proto.into(),
            })
            .collect(),
        ..EndpointSpec::default()
    }
    .check()?;
    Ok(s.create_endpoint(network, &req).await?.record)
}

/// The port claims under the store's prefix, as `node/proto/ip:port`.
async fn port_claims(s: &Store, prefix: &str) -> Vec<String> {
    let key = format!("/test-{prefix}/ports/");
    let r = s
        .client()
        .kv_client()
        .get(
            key.as_str(),
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    r.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key())[key.len()..].to_owned())
        .collect()
}

#[tokio::test]
async fn published_ports_are_claimed_per_node_with_their_endpoint() {
    let etcd = Etcd::start();
    let s = etcd.store("ports").await;
    create(&s, net("demo")).await.unwrap();
    let web = publish(&s, "demo", "web", "node1", &[("", 8080, 80, "tcp")])
        .await
        .unwrap();
    assert_eq!(web.ports.len(), 1);
    assert_eq!(web.ports[0].to_string(), "0.0.0.0:8080:80/tcp");
    assert_eq!(
        s.get_endpoint("demo", "web").await.unwrap().ports,
        web.ports,
        "the ports are part of the record"
    );
    assert_eq!(port_claims(&s, "ports").await, ["node1/tcp/0.0.0.0:8080"]);

    // The same port at any address of node1 is taken, in docker's words; nothing is left.
    let before = ep_names(&s, "demo").await;
    refused(
        publish(&s, "demo", "db", "node1", &[("192.0.2.10", 8080, 5432, "")]).await,
        is_in_use,
        "Bind for 192.0.2.10:8080 failed: port is already allocated",
    );
    refused(
        publish(
            &s,
            "demo",
            "db",
            "node1",
            &[("", 9000, 1, "tcp"), ("", 8080, 2, "tcp")],
        )
        .await,
        is_in_use,
        "Bind for 0.0.0.0:8080 failed: port is already allocated",
    );
    assert_eq!(ep_names(&s, "demo").await, before);
    assert_eq!(port_claims(&s, "ports").await, ["node1/tcp/0.0.0.0:8080"]);
    // Another node, or another protocol, is free.
    publish(&s, "demo", "web2", "node2", &[("", 8080, 80, "tcp")])
        .await
        .unwrap();
    publish(&s, "demo", "dns", "node1", &[("", 8080, 53, "udp")])
        .await
        .unwrap();

    // Internal networks publish nothing.
    let sealed = NetworkSpec {
        internal: true,
        ..net("sealed")
    };
    create(&s, sealed).await.unwrap();
    refused(
        publish(&s, "sealed", "x", "node1", &[("", 7000, 80, "tcp")]).await,
        is_invalid,
        "network sealed is internal: ports cannot be published on it",
    );

    // Disconnecting frees the port.
    s.delete_endpoint("demo", "web").await.unwrap();
    assert_eq!(
        port_claims(&s, "ports").await,
        ["node1/udp/0.0.0.0:8080", "node2/tcp/0.0.0.0:8080"]
    );
    publish(&s, "demo", "db", "node1", &[("192.0.2.10", 8080, 5432, "")])
        .await
        .unwrap();
}

/// Two agents racing for one port of one node, one at 0.0.0.0 and one at a single address
/// (two different keys): exactly one wins.
#[tokio::test]
async fn a_wildcard_and_an_address_racing_for_a_port_have_one_winner() {
    let etcd = Etcd::start();
    let s1 = etcd.store("portrace").await;
    let s2 = etcd.store("portrace").await;
    create(&s1, net("demo")).await.unwrap();
    for round in 0..10u32 {
        let port = 20_000 + round;
        let (na, nb) = (format!("a{round}"), format!("b{round}"));
        let wild = [("", port, 80, "")];
        let one = [("192.0.2.10", port, 80, "")];
        let (a, b) = tokio::join!(
            publish(&s1, "demo", &na, "node1", &wild),
            publish(&s2, "demo", &nb, "node1", &one),
        );
        assert!(
            a.is_ok() != b.is_ok(),
            "round {round}: want one winner, got {a:?} and {b:?}"
        );
        let loser = a.err().or(b.err()).unwrap();
        assert!(is_in_use(&loser), "{loser}");
    }
}

async fn ep_names(s: &Store, network: &str) -> Vec<String> {
    let id = s.find_network(network).await.unwrap().network.id;
    s.list_endpoints(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name.to_string())
        .collect()
}
