//! Address reservations against a real etcd (what Docker's IPAM plugin stands on): an address
//! reserved before its endpoint exists keeps every other reservation and connect off it, is
//! released only by the node that holds it, and is taken over by its endpoint in one
//! transaction; racing reservations get distinct addresses; damaged reservations are skipped.

mod common;

use std::collections::HashSet;
use std::net::Ipv4Addr;

use common::{create, ep, net, refused, Etcd};
use ovnet_agent::domain::plan::EndpointSpec;
use ovnet_agent::domain::{EndpointId, NodeName, Owner};
use ovnet_agent::error::AgentError;

fn node(n: &str) -> NodeName {
    NodeName::parse(n).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn is_in_use(e: &AgentError) -> bool {
    matches!(e, AgentError::InUse(_))
}
fn is_not_found(e: &AgentError) -> bool {
    matches!(e, AgentError::NotFound(_))
}

/// A Docker endpoint request of `node` for container `name`.
fn docker_endpoint(name: &str, node: &str) -> ovnet_agent::domain::plan::EndpointRequest {
    EndpointSpec {
        name: name.into(),
        node: node.into(),
        netns: "/var/run/docker/netns/0123456789ab".into(),
        ifname: "ovc0123456789a".into(),
        owner: Owner::Docker.as_str().into(),
        ..EndpointSpec::default()
    }
    .check()
    .unwrap()
}

async fn keys(s: &ovnet_agent::store::Store, prefix: &str) -> Vec<String> {
    let mut kv = s.client().kv_client();
    let resp = kv
        .get(
            prefix,
            Some(
                etcd_client::GetOptions::new()
                    .with_prefix()
                    .with_keys_only(),
            ),
        )
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|k| String::from_utf8_lossy(k.key()).into_owned())
        .collect()
}

#[tokio::test]
async fn reservations_share_the_address_space_with_endpoints() {
    let etcd = Etcd::start();
    let s = etcd.store("res-space").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let h1 = node("host1");

    let r1 = s.reserve_address("demo", None, &h1).await.unwrap();
    assert_eq!(r1.ipv4, ip("10.0.0.2"));
    assert_eq!(
        (r1.network_id.clone(), r1.node.clone()),
        (demo.id.clone(), h1.clone())
    );
    // An ovctl connect takes the next one; a reservation of a connected address is refused.
    let web = ep(&s, "demo", "web").await.unwrap();
    assert_eq!(web.ipv4, ip("10.0.0.3"));
    refused(
        s.reserve_address("demo", Some(ip("10.0.0.3")), &node("host2"))
            .await,
        is_in_use,
        "address already in use: 10.0.0.3 in network demo",
    );
    // A requested address that is free; the gateway and foreign addresses are refused.
    let r2 = s
        .reserve_address("demo", Some(ip("10.0.0.50")), &node("host2"))
        .await
        .unwrap();
    assert_eq!(r2.ipv4, ip("10.0.0.50"));
    assert!(s
        .reserve_address("demo", Some(ip("10.0.0.1")), &h1)
        .await
        .unwrap_err()
        .to_string()
        .contains("gateway"));
    assert!(s
        .reserve_address("demo", Some(ip("10.0.1.5")), &h1)
        .await
        .is_err());
    // And a connect asking for a reserved address is refused like any other taken one.
    refused(
        common::attach(&s, "demo", "web2", Some("10.0.0.50")).await,
        is_in_use,
        "address already in use: 10.0.0.50 in network demo",
    );

    // Each node lists its own.
    let mine: Vec<Ipv4Addr> = s
        .list_reservations(&h1)
        .await
        .unwrap()
        .iter()
        .map(|r| r.ipv4)
        .collect();
    assert_eq!(mine, [ip("10.0.0.2")]);

    // Only the holder releases; releasing twice is a no-op.
    assert!(!s.release_reservation(&demo.id, r2.ipv4, &h1).await.unwrap());
    assert!(s
        .release_reservation(&demo.id, r2.ipv4, &node("host2"))
        .await
        .unwrap());
    assert!(!s
        .release_reservation(&demo.id, r2.ipv4, &node("host2"))
        .await
        .unwrap());
    // The address is free again: the next connect may have it.
    let again = common::attach(&s, "demo", "web2", Some("10.0.0.50"))
        .await
        .unwrap();
    assert_eq!(again.ipv4, ip("10.0.0.50"));

    // Removing the network takes its reservations along.
    s.delete_endpoint("demo", "web").await.unwrap();
    s.delete_endpoint("demo", "web2").await.unwrap();
    s.remove_network("demo").await.unwrap();
    assert!(keys(&s, "/test-res-space/reservations/").await.is_empty());
    assert!(keys(&s, "/test-res-space/ips/").await.is_empty());
}

#[tokio::test]
async fn an_endpoint_takes_its_reservation_over() {
    let etcd = Etcd::start();
    let s = etcd.store("res-take").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let r = s
        .reserve_address("demo", None, &node("host1"))
        .await
        .unwrap();
    let docker_id = EndpointId::random();

    // Another node cannot take it, nor can an address never reserved be taken.
    refused(
        s.create_reserved_endpoint(
            &demo.id,
            r.ipv4,
            &docker_endpoint("web1", "host2"),
            &docker_id,
        )
        .await,
        is_not_found,
        "address 10.0.0.2 of network demo is not reserved on this host: its reservation was \
         released or taken; ask for an address again",
    );
    assert!(s
        .create_reserved_endpoint(
            &demo.id,
            ip("10.0.0.9"),
            &docker_endpoint("web1", "host1"),
            &docker_id
        )
        .await
        .is_err());

    let ep = s
        .create_reserved_endpoint(
            &demo.id,
            r.ipv4,
            &docker_endpoint("web1", "host1"),
            &docker_id,
        )
        .await
        .unwrap()
        .record;
    assert_eq!((ep.id.clone(), ep.ipv4), (docker_id.clone(), r.ipv4));
    assert_eq!(ep.mac.to_string(), "02:42:0a:00:00:02");
    assert_eq!(ep.owner, Owner::Docker);
    // The claim is the endpoint's now, and the reservation is gone.
    let mut kv = s.client().kv_client();
    let claim = kv
        .get(format!("/test-res-take/ips/{}/10.0.0.2", demo.id), None)
        .await
        .unwrap();
    assert_eq!(claim.kvs()[0].value(), docker_id.as_str().as_bytes());
    assert!(s
        .list_reservations(&node("host1"))
        .await
        .unwrap()
        .is_empty());
    // Taken once: a second take, or a release, finds nothing.
    assert!(s
        .create_reserved_endpoint(
            &demo.id,
            r.ipv4,
            &docker_endpoint("web9", "host1"),
            &docker_id
        )
        .await
        .is_err());
    assert!(!s
        .release_reservation(&demo.id, r.ipv4, &node("host1"))
        .await
        .unwrap());
    assert_eq!(s.get_endpoint("demo", "web1").await.unwrap(), ep);

    // A reservation whose container name is taken stays reserved, for Docker to release.
    let r2 = s
        .reserve_address("demo", None, &node("host1"))
        .await
        .unwrap();
    assert!(s
        .create_reserved_endpoint(
            &demo.id,
            r2.ipv4,
            &docker_endpoint("web1", "host1"),
            &EndpointId::random()
        )
        .await
        .unwrap_err()
        .to_string()
        .contains("endpoint with name web1 already exists"));
    assert!(s
        .release_reservation(&demo.id, r2.ipv4, &node("host1"))
        .await
        .unwrap());
    // Released once taken away: disconnecting frees the address for the next one.
    s.delete_endpoint("demo", "web1").await.unwrap();
    let r3 = s
        .reserve_address("demo", None, &node("host2"))
        .await
        .unwrap();
    assert_eq!(r3.ipv4, ip("10.0.0.2"));
}

#[tokio::test]
async fn racing_reservations_get_distinct_addresses() {
    let etcd = Etcd::start();
    let s = etcd.store("res-race").await;
    let demo = create(
        &s,
        ovnet_agent::domain::plan::NetworkSpec {
            subnet: Some("10.7.0.0/27".into()),
            ..net("small")
        },
    )
    .await
    .unwrap();
    // 29 hosts in a /27 but the gateway; 40 racing reservations from four nodes.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        let n = node(&format!("host{}", i % 4));
        tasks.push(tokio::spawn(async move {
            s.reserve_address("small", None, &n).await
        }));
    }
    let mut got = HashSet::new();
    let mut refusals = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => assert!(got.insert(r.ipv4), "{} handed out twice", r.ipv4),
            Err(AgentError::InUse(_) | AgentError::Conflict(_)) => refusals += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got.len() + refusals, 40);
    assert!(got.len() <= 29, "{} addresses in a /27", got.len());
    let claims = keys(&s, &format!("/test-res-race/ips/{}/", demo.id)).await;
    assert_eq!(claims.len(), got.len(), "one claim per reservation");
}

#[tokio::test]
async fn damaged_reservations_are_skipped() {
    let etcd = Etcd::start();
    let s = etcd.store("res-bad").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let r = s
        .reserve_address("demo", None, &node("host1"))
        .await
        .unwrap();
    let mut kv = s.client().kv_client();
    let base = format!("/test-res-bad/reservations/{}/", demo.id);
    kv.put(
        format!("{base}10.0.0.77"),
        b"\xff\xfe garbage".to_vec(),
        None,
    )
    .await
    .unwrap();
    // A well-formed reservation stored under another address's key.
    kv.put(
        format!("{base}10.0.0.78"),
        ovnet_proto::Message::encode_to_vec(&r.to_proto()),
        None,
    )
    .await
    .unwrap();
    let listed = s.list_reservations(&node("host1")).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&r));
    // Releasing the damaged ones is an error naming the key, never a panic.
    let e = s
        .release_reservation(&demo.id, ip("10.0.0.77"), &node("host1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("corrupt record"), "{e}");
    let e = s
        .release_reservation(&demo.id, ip("10.0.0.78"), &node("host1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match its key"), "{e}");
    assert!(s
        .release_reservation(&demo.id, r.ipv4, &node("host1"))
        .await
        .unwrap());
}
