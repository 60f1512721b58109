//! GC and STATUS with real agents and etcd: GC releases this node's stale attachments of the
//! plugin and nothing else (the valid ones, another host's, `ovctl`'s stay); STATUS answers 0
//! when ADD can be served, 50 when etcd is down or the network missing (attached containers
//! keep their traffic), 51 when the agent is down (its data plane with it), and ADD and DEL
//! say "try again later" meanwhile.

mod common;

use std::time::Duration;

use common::{ovnet_conf, ovnet_list, Attach, Runtime};
use ovnet_cluster::{containers, wait_until, Cluster};
use serde_json::json;

fn container_id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

#[test]
fn gc_releases_stale_attachments_and_keeps_valid_ones() {
    let mut c = Cluster::start(2);
    let net_id = c.create(1, "pods", &[]);
    let (rt1, rt2) = (Runtime::on(&c, 1), Runtime::on(&c, 2));
    let (list1, list2) = (
        ovnet_list(&c, 1, "1.1.0", "pods"),
        ovnet_list(&c, 2, "1.1.0", "pods"),
    );
    let mut pods = Vec::new();
    for (i, label) in ["a", "b", "c"].iter().enumerate() {
        let ns = c.netns(label);
        let a = Attach::new(&container_id(i as u8 + 1), &ns).args(&format!("K8S_POD_NAME={label}"));
        rt1.add_list(&list1, &a).unwrap_or_else(|r| panic!("{r:?}"));
        pods.push((ns, a));
    }
    let nd = c.netns("d");
    let d = Attach::new(&container_id(4), &nd).args("K8S_POD_NAME=d");
    rt2.add_list(&list2, &d).unwrap_or_else(|r| panic!("{r:?}"));
    let ne = c.netns("e");
    c.connect(1, "pods", "e", &ne);
    assert_eq!(c.endpoint_keys(&net_id).len(), 5);

    // Host 1's runtime still holds a (as libcni says it) and b (as SPEC.md says it).
    let mut gc = ovnet_conf(&c, 1, "1.1.0", "pods");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": container_id(1), "ifname": "eth0"}]);
    gc["cni.dev/attachments"] = json!([{"containerID": container_id(2), "ifname": "eth0"}]);
    rt1.run_network("GC", &gc).ok_empty();
    let left: Vec<String> = containers(&c.inspect(1, "pods")).into_keys().collect();
    assert_eq!(left, ["a", "b", "d", "e"], "c is released, the rest stay");
    c.assert_only_lo(&pods[2].0);
    assert_eq!(c.ip_keys(&net_id).len(), 4);
    // What stayed still works, across hosts.
    c.wait_ping(&pods[0].0, "10.0.0.5", Duration::from_secs(30));

    // A GC that lists nothing releases all of this plugin's attachments on host 2 only.
    let gc2 = ovnet_conf(&c, 2, "1.1.0", "pods");
    rt2.run_network("GC", &gc2).ok_empty();
    rt2.run_network("GC", &gc2).ok_empty();
    let left: Vec<String> = containers(&c.inspect(1, "pods")).into_keys().collect();
    assert_eq!(left, ["a", "b", "e"]);
    c.assert_only_lo(&nd);

    // GC of a network that does not exist has nothing to do.
    rt1.run_network("GC", &ovnet_conf(&c, 1, "1.1.0", "nope"))
        .ok_empty();
}

#[test]
fn status_follows_the_agent_and_etcd() {
    let mut c = Cluster::start(1);
    c.create(1, "pods", &[]);
    let rt = Runtime::on(&c, 1);
    let conf = ovnet_conf(&c, 1, "1.1.0", "pods");
    let list = ovnet_list(&c, 1, "1.1.0", "pods");
    rt.run_network("STATUS", &conf).ok_empty();
    let (code, msg) = rt
        .run_network("STATUS", &ovnet_conf(&c, 1, "1.1.0", "nope"))
        .err_code();
    assert_eq!(code, 50);
    assert!(msg.starts_with("network nope not found"), "{msg}");

    let ns = c.netns("a");
    let a = Attach::new(&container_id(1), &ns);
    let added = rt.add_list(&list, &a).unwrap_or_else(|r| panic!("{r:?}"));
    let ns2 = c.netns("b");
    let b = Attach::new(&container_id(2), &ns2);

    // etcd down: 50, and ADD and DEL are to be tried again.
    c.tb.stop_etcd().expect("stop etcd");
    let (code, msg) = rt.run_network("STATUS", &conf).err_code();
    assert_eq!(code, 50, "{msg}");
    assert!(msg.contains("etcd") && msg.contains("unreachable"), "{msg}");
    let r = rt.add_list(&list, &b).unwrap_err();
    assert_eq!(r.err_code().0, 11, "{r:?}");
    c.assert_only_lo(&ns2);
    let r = rt.del_list(&list, &a, Some(&added)).unwrap_err();
    assert_eq!(r.err_code().0, 11, "{r:?}");
    // The attached container kept its interface.
    c.assert_eth0(&ns, "10.0.0.2/24", "02:42:0a:00:00:02");
    c.tb.restart_etcd().expect("restart etcd");
    wait_until("STATUS to succeed again", Duration::from_secs(30), || {
        let r = rt.run_network("STATUS", &conf);
        if r.code == Some(0) {
            Ok(())
        } else {
            Err(r.stdout)
        }
    });
    rt.del_list(&list, &a, Some(&added))
        .unwrap_or_else(|r| panic!("DEL once etcd is back: {r:?}"));

    // The agent down: 51, and ADD is to be tried again.
    c.stop_agent(1);
    let (code, msg) = rt.run_network("STATUS", &conf).err_code();
    assert_eq!(code, 51, "{msg}");
    assert!(msg.contains("does not answer"), "{msg}");
    let r = rt.add_list(&list, &b).unwrap_err();
    assert_eq!(r.err_code().0, 11, "{r:?}");
    c.start_agent(1);
    c.wait_agent_ready(1);
    rt.run_network("STATUS", &conf).ok_empty();
}
