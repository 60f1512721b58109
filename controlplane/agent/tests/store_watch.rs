//! The store's view of time against a real etcd: snapshot then watch, a watch from a
//! compacted revision, node leases that expire, are renewed, lost and re-granted, and etcd
//! going down and coming back.

mod common;

use std::time::Duration;

use common::{alive, create, ep, eventually, net, next_event, node, Etcd};
use etcd_client::CompactionOptions;
use ovnet_agent::domain::plan::parse_vtep;
use ovnet_agent::error::AgentError;
use ovnet_agent::store::{Record, RecordKey, Store, StoreConfig, WatchEvent};

#[tokio::test]
async fn snapshot_then_watch() {
    let etcd = Etcd::start();
    let s = etcd.store("watch").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let web1 = ep(&s, "demo", "web1").await.unwrap();
    let vtep = s
        .add_vtep("demo", parse_vtep("192.0.2.1", 0).unwrap())
        .await
        .unwrap();
    let n1 = node("n1");
    s.register_node(&n1, Duration::from_secs(30)).await.unwrap();

    let (rev, state) = s.snapshot().await.unwrap();
    assert!(rev > 0);
    assert_eq!(state.networks, vec![demo.clone()]);
    assert_eq!(state.endpoints, vec![web1.clone()]);
    assert_eq!(state.vteps, vec![vtep]);
    assert_eq!(state.nodes, vec![(n1, true)]);

    let mut w = s.watch(rev + 1).await.unwrap();
    let web2 = ep(&s, "demo", "web2").await.unwrap();
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
                    name: web1.name.clone(),
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
    let other = create(&s, net("other")).await.unwrap();
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
    create(&s, net("a")).await.unwrap();
    create(&s, net("b")).await.unwrap();
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
    // Revoking a lease that expired is not an error: the goal is reached.
    s.revoke_lease(&lease).await.unwrap();
}

#[tokio::test]
async fn keep_alive_renews_recovers_and_stops() {
    let etcd = Etcd::start();
    let s = etcd.store("keepalive").await;
    let n1 = node("n1");
    let lease = s.register_node(&n1, Duration::from_secs(2)).await.unwrap();
    let health = std::sync::Arc::new(ovnet_agent::health::Health::default());
    let ka = s.keep_alive(n1.clone(), lease, health.clone());

    // Alive well past the TTL: the renewals are what is under test, so time has to pass.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(alive(&s, "n1").await);
    assert_eq!(ka.lease_id(), lease.id);
    let h = health.snapshot();
    assert!(h.lease_alive && h.lease_error.is_none(), "{h:?}");

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

#[tokio::test]
async fn etcd_down_fails_fast_with_unavailable_and_recovers() {
    let mut etcd = Etcd::start();
    let s = Store::connect(StoreConfig {
        timeout: Duration::from_secs(1),
        ..etcd.config("down")
    })
    .await
    .unwrap();
    create(&s, net("demo")).await.unwrap();
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
    // Each call is given a deadline far beyond its 1 s bound: one that waited for etcd
    // indefinitely fails the test instead of hanging it.
    async fn bounded<T>(
        call: impl std::future::Future<Output = Result<T, AgentError>>,
    ) -> Result<(), AgentError> {
        tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("a call waited for etcd beyond its bound")
            .map(|_| ())
    }
    let results = vec![
        bounded(s.ping()).await,
        bounded(s.list_networks()).await,
        bounded(create(&s, net("x"))).await,
        bounded(ep(&s, "demo", "w")).await,
        bounded(s.snapshot()).await,
        bounded(s.watch(0)).await,
        bounded(s.register_node(&node("n1"), Duration::from_secs(5))).await,
    ];
    for r in results {
        match r {
            Err(e @ AgentError::Unavailable { .. }) => assert_eq!(e.to_string(), want),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    // The same Store works again once etcd is back.
    etcd.restart();
    eventually(20, "store usable after restart", || async {
        s.list_networks().await.is_ok()
    })
    .await;
    assert_eq!(s.get_network("demo").await.unwrap().name, "demo");
}
