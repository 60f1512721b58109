//! The store's networks and external VTEPs against a real etcd: defaults, pinned values, every
//! refusal, races decided by transactions, removal and what it leaves behind.

mod common;

use std::collections::HashMap;

use common::{create, ep, net, refused, Etcd};
use etcd_client::GetOptions;
use ovnet_agent::domain::plan::{parse_vtep, NetworkSpec};
use ovnet_agent::error::AgentError;

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

/// Keys under `prefix`, read with the raw client.
async fn keys(s: &ovnet_agent::store::Store, prefix: &str) -> Vec<String> {
    let mut kv = s.client().kv_client();
    let got = kv
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    got.kvs()
        .iter()
        .map(|k| k.key_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn network_defaults() {
    let etcd = Etcd::start();
    let s = etcd.store("defaults").await;

    let demo = create(&s, net("demo")).await.unwrap();
    let p = demo.to_proto();
    assert_eq!(p.name, "demo");
    assert_eq!(p.subnet, "10.0.0.0/24");
    assert_eq!(p.gateway, "10.0.0.1");
    assert_eq!(p.vni, 256);
    assert_eq!(p.mtu, 1450);
    assert_eq!(p.driver, "overlay");
    assert_eq!(p.id.len(), 64);
    assert!(p.id.chars().all(|c| c.is_ascii_hexdigit()));
    // RFC 3339, UTC, nanoseconds: 2020-04-10T14:47:27.897140984Z
    assert_eq!(p.created.len(), 30, "{}", p.created);
    assert!(p.created.ends_with('Z'));

    let second = create(&s, net("second")).await.unwrap().to_proto();
    assert_eq!(second.subnet, "10.0.1.0/24");
    assert_eq!(second.gateway, "10.0.1.1");
    assert_eq!(second.vni, 257);

    // Lookup by name, full ID, ID prefix; listing by name.
    assert_eq!(s.get_network("demo").await.unwrap(), demo);
    assert_eq!(s.get_network(demo.id.as_str()).await.unwrap(), demo);
    assert_eq!(s.get_network(&p.id[..12]).await.unwrap(), demo);
    let names: Vec<String> = s
        .list_networks()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name.to_string())
        .collect();
    assert_eq!(names, ["demo", "second"]);
    refused(
        s.get_network("nope").await,
        is_not_found,
        "network nope not found",
    );
    refused(
        s.get_network("").await,
        is_invalid,
        "a network name or ID is required",
    );

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
    assert_eq!(r.kvs()[0].value(), p.id.as_bytes());
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
        internal: true,
    };
    let n = create(&s, spec).await.unwrap().to_proto();
    assert!(n.internal);
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
    let b = create(&s, spec).await.unwrap().to_proto();
    assert_eq!(b.gateway, "192.168.7.1");
    assert_eq!(b.vni, 256);
    let c = create(&s, net("c")).await.unwrap().to_proto();
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
        match create(&s, spec).await {
            Err(e @ AgentError::Invalid(_)) => {
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
    create(&s, edge).await.unwrap();
    let edge = NetworkSpec {
        name: "edge2".into(),
        vni: Some(1),
        mtu: Some(68),
        ..Default::default()
    };
    create(&s, edge).await.unwrap();
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
    create(&s, big).await.unwrap();

    // Overlapping subnet, both ways.
    for subnet in ["10.1.5.0/24", "10.0.0.0/8", "10.1.0.0/16"] {
        let spec = NetworkSpec {
            name: "x".into(),
            subnet: Some(subnet.into()),
            ..Default::default()
        };
        refused(
            create(&s, spec).await,
            is_in_use,
            &format!("subnet {subnet} overlaps with subnet 10.1.0.0/16 of network big"),
        );
    }
    refused(
        create(&s, net("big")).await,
        is_exists,
        "network with name big already exists",
    );
    let spec = NetworkSpec {
        name: "y".into(),
        vni: Some(300),
        ..Default::default()
    };
    refused(
        create(&s, spec).await,
        is_exists,
        "vni 300 is already used by network big",
    );
    assert_eq!(s.list_networks().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_have_one_winner() {
    let etcd = Etcd::start();
    let a = etcd.store("race").await;
    let b = etcd.store("race").await;
    for round in 0..5 {
        let name = format!("demo{round}");
        let (ra, rb) = tokio::join!(create(&a, net(&name)), create(&b, net(&name)));
        let oks = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(oks, 1, "round {round}: {ra:?} / {rb:?}");
        let err = ra.err().or(rb.err()).unwrap();
        assert!(is_exists(&err), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("network with name {name} already exists")
        );
    }
    // Different names racing for automatic values: both win, with distinct values.
    let (ra, rb) = tokio::join!(create(&a, net("left")), create(&b, net("right")));
    let (l, r) = (ra.unwrap(), rb.unwrap());
    assert_ne!(l.subnet, r.subnet);
    assert_ne!(l.vni, r.vni);
    let nets = a.list_networks().await.unwrap();
    assert_eq!(nets.len(), 7);
    let mut vnis: Vec<u32> = nets.iter().map(|n| n.vni.get()).collect();
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
        let (rp, rq) = tokio::join!(create(&a, p), create(&b, q));
        assert_eq!(
            [&rp, &rq].iter().filter(|r| r.is_ok()).count(),
            1,
            "round {round}: {rp:?} / {rq:?}"
        );
        let err = rp.err().or(rq.err()).unwrap();
        assert!(
            is_in_use(&err) && err.to_string().contains("overlaps"),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn remove_network_refused_while_endpoints_exist() {
    let etcd = Etcd::start();
    let s = etcd.store("remove").await;
    let demo = create(&s, net("demo")).await.unwrap();
    ep(&s, "demo", "web1").await.unwrap();
    ep(&s, "demo", "web2").await.unwrap();
    s.add_vtep("demo", parse_vtep("192.0.2.77", 0).unwrap())
        .await
        .unwrap();

    refused(
        s.remove_network("demo").await,
        is_in_use,
        &format!(
            "error while removing network: network demo id {} has active endpoints (web1, web2)",
            demo.id
        ),
    );
    s.delete_endpoint("demo", "web1").await.unwrap();
    s.delete_endpoint("demo", "web2").await.unwrap();
    let removed = s.remove_network(&demo.id.as_str()[..6]).await.unwrap();
    assert_eq!(removed.id, demo.id);
    assert!(matches!(
        s.get_network("demo").await,
        Err(AgentError::NotFound(_))
    ));

    // Nothing of it is left under the prefix: claims, vteps, ips.
    let left = keys(&s, "/test-remove/").await;
    assert!(left.is_empty(), "{left:?}");

    // So the same name, subnet and VNI can be created again.
    let again = create(&s, net("demo")).await.unwrap().to_proto();
    assert_eq!((again.subnet.as_str(), again.vni), ("10.0.0.0/24", 256));
    refused(
        s.remove_network("nope").await,
        is_not_found,
        "network nope not found",
    );
}

#[tokio::test]
async fn external_vteps() {
    let etcd = Etcd::start();
    let s = etcd.store("vteps").await;
    let demo = create(&s, net("demo")).await.unwrap();
    let addr = |ip, port| parse_vtep(ip, port).unwrap();
    let v = s.add_vtep("demo", addr("192.0.2.1", 0)).await.unwrap();
    assert_eq!(v.addr.to_string(), "192.0.2.1:4789");
    s.add_vtep("demo", addr("192.0.2.2", 8472)).await.unwrap();
    refused(
        s.add_vtep("demo", addr("192.0.2.1", 4789)).await,
        is_exists,
        "vtep 192.0.2.1:4789 already exists in network demo",
    );
    refused(
        s.add_vtep("nope", addr("192.0.2.1", 4789)).await,
        is_not_found,
        "network nope not found",
    );
    let addrs: Vec<String> = s
        .list_vteps(&demo.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.addr.to_string())
        .collect();
    assert_eq!(addrs, ["192.0.2.1:4789", "192.0.2.2:8472"]);
    s.remove_vtep("demo", addr("192.0.2.1", 0)).await.unwrap();
    refused(
        s.remove_vtep("demo", addr("192.0.2.1", 0)).await,
        is_not_found,
        "vtep 192.0.2.1:4789 not found in network demo",
    );
    assert_eq!(s.list_vteps(&demo.id).await.unwrap().len(), 1);
}
