//! The store at scale: a snapshot of 10 000 endpoints, read in pages (an etcd answer is at
//! most 4 MiB to the client; ten thousand records in one would be far past a page).

mod common;

use std::net::Ipv4Addr;

use common::{create, net, Etcd};
use etcd_client::{Txn, TxnOp};
use ovnet_agent::domain::Endpoint;
use ovnet_agent::domain::{EndpointId, IfName, Name, NodeName};
use ovnet_agent::store::Keys;
use ovnet_proto::Message;
use ovnet_wire::MacAddr;

/// How many endpoints the snapshot must hold.
const ENDPOINTS: u32 = 10_000;
/// Puts per transaction (etcd takes at most 128 operations in one).
const BATCH: u32 = 100;

#[tokio::test]
async fn a_snapshot_of_ten_thousand_endpoints() {
    let etcd = Etcd::start();
    let s = etcd.store("scale").await;
    let keys = Keys::new("/test-scale/");
    let mut spec = net("big");
    spec.subnet = Some("10.64.0.0/16".into());
    let n = create(&s, spec).await.unwrap();
    let mut kv = s.client().kv_client();
    for start in (0..ENDPOINTS).step_by(BATCH as usize) {
        let ops: Vec<TxnOp> = (start..start + BATCH)
            .map(|i| {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 2)) + i);
                let ep = Endpoint {
                    id: EndpointId::random(),
                    network_id: n.id.clone(),
                    name: Name::parse("container", &format!("c{i}")).unwrap(),
                    node: NodeName::parse(&format!("node{}", i % 50)).unwrap(),
                    mac: MacAddr::from_ipv4_docker(ip),
                    ipv4: ip,
                    netns: format!("c{i}"),
                    ifname: IfName::eth(0),
                    created: String::new(),
                    ports: Vec::new(),
                    container_id: None,
                    owner: Default::default(),
                };
                TxnOp::put(
                    keys.endpoint(&n.id, ep.name.as_str()),
                    ep.to_proto().encode_to_vec(),
                    None,
                )
            })
            .collect();
        let resp = kv.txn(Txn::new().and_then(ops)).await.unwrap();
        assert!(resp.succeeded());
    }
    let (_, state) = s.snapshot().await.unwrap();
    assert_eq!(state.endpoints.len(), ENDPOINTS as usize);
    assert_eq!(
        s.list_endpoints(&n.id).await.unwrap().len(),
        ENDPOINTS as usize
    );
    let names: std::collections::HashSet<&str> =
        state.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names.len(),
        ENDPOINTS as usize,
        "an endpoint came twice or not at all"
    );
}
