//! The CNI story across two hosts, with real agents, etcd and namespaces, the plugin run as a
//! runtime runs it: ADD on both hosts and the pods ping each other; the results say what was
//! made; CHECK passes, then fails once the interface is removed by hand; DEL twice; DEL after
//! the namespace is gone; and the errors only an agent can find (an unknown network, ADD twice,
//! a name taken, an interface already there).

mod common;

use std::time::Duration;

use common::{ovnet_list, Attach, ResolvConf, Runtime};
use ovnet_cluster::{containers, wait_until, Cluster};
use serde_json::{json, Value};

/// A container id as containerd and CRI-O make them.
fn container_id(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// The part of a 64-hex container id that ovnet's name for it keeps: 50 characters (then
/// `-` and 12 hex digits of a hash).
fn mapped(id: &str) -> &str {
    &id[..50]
}

/// Asserts the ADD result of `a`: the host end of the veth, `eth0` in the namespace with the
/// MAC and MTU, the address with the gateway, and the network's resolver.
fn assert_result(r: &Value, a: &Attach, ip: &str, last: u8) {
    assert_eq!(r["cniVersion"], "1.1.0", "{r}");
    let ifs = r["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 2, "{r}");
    let host = ifs[0]["name"].as_str().unwrap();
    assert!(host.starts_with("ovv") && host.len() == 14, "{r}");
    assert!(ifs[0].get("sandbox").is_none(), "{r}");
    assert!(ifs[0]["mac"].is_string(), "{r}");
    assert_eq!(
        ifs[1],
        json!({"name": "eth0", "mac": format!("02:42:0a:00:00:{last:02x}"), "mtu": 1450,
               "sandbox": a.netns})
    );
    assert_eq!(
        r["ips"],
        json!([{"address": format!("{ip}/24"), "gateway": "10.0.0.1", "interface": 1}])
    );
    assert_eq!(r["dns"], json!({"nameservers": ["10.0.0.1"]}));
    // The route the agent made in the container: the default one, through the gateway.
    assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]));
}

#[test]
fn pods_on_two_hosts_ping_each_other_then_are_checked_and_deleted() {
    let mut c = Cluster::start(2);
    let net_id = c.create(1, "pods", &[]);
    let ns1 = c.netns("p1");
    let ns2 = c.netns("p2");
    let (rt1, rt2) = (Runtime::on(&c, 1), Runtime::on(&c, 2));
    let (list1, list2) = (
        ovnet_list(&c, 1, "1.1.0", "pods"),
        ovnet_list(&c, 2, "1.1.0", "pods"),
    );
    let (id1, id2) = (container_id(1), container_id(2));
    let a1 = Attach::new(&id1, &ns1)
        .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0");
    let a2 = Attach::new(&id2, &ns2);

    let r1 = rt1
        .add_list(&list1, &a1)
        .unwrap_or_else(|r| panic!("{r:?}"));
    let r2 = rt2
        .add_list(&list2, &a2)
        .unwrap_or_else(|r| panic!("{r:?}"));
    assert_result(&r1, &a1, "10.0.0.2", 2);
    assert_result(&r2, &a2, "10.0.0.3", 3);
    c.assert_eth0(&ns1, "10.0.0.2/24", "02:42:0a:00:00:02");
    c.assert_eth0(&ns2, "10.0.0.3/24", "02:42:0a:00:00:03");
    c.wait_ping(&ns1, "10.0.0.3", Duration::from_secs(30));
    c.assert_ping(&ns2, "10.0.0.2");

    // The pod's name, or a DNS-safe form of the container id, is the name in the network.
    let names: Vec<String> = containers(&c.inspect(2, "pods")).into_keys().collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"web-0".to_owned()), "{names:?}");
    let other = names.iter().find(|n| *n != "web-0").unwrap();
    assert!(
        other.starts_with(&format!("{}-", mapped(&id2))) && other.len() == 63,
        "{other}"
    );

    // The resolver the results name knows every pod of the network by its name, on both
    // hosts: pod 2 finds web-0, pod 1 finds pod 2 by the name made from its container id.
    let _rc1 = ResolvConf::from_result(&ns1, &r1);
    let _rc2 = ResolvConf::from_result(&ns2, &r2);
    let lookup = |ns: &str, name: &str, want: &str| {
        wait_until(
            &format!("{name} to resolve in {ns}"),
            Duration::from_secs(30),
            || match c.tb.exec(ns, &["getent", "hosts", name]) {
                Ok(out) if out.split_whitespace().next() == Some(want) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
    };
    lookup(&ns2, "web-0", "10.0.0.2");
    lookup(&ns1, other, "10.0.0.3");

    // CHECK passes on both; fails without the default route, passes with it back; fails once
    // eth0 is gone.
    rt1.check_list(&list1, &a1, &r1)
        .unwrap_or_else(|r| panic!("{r:?}"));
    rt2.check_list(&list2, &a2, &r2)
        .unwrap_or_else(|r| panic!("{r:?}"));
    c.sh(&ns1, &["ip", "route", "del", "default"]);
    let (code, msg) = rt1.check_list(&list1, &a1, &r1).unwrap_err().err_code();
    assert_eq!(
        (code, msg.as_str()),
        (
            102,
            format!(
                "route to 0.0.0.0/0 via 10.0.0.1 is missing from {}",
                a1.netns
            )
            .as_str()
        )
    );
    c.sh(&ns1, &["ip", "route", "add", "default", "via", "10.0.0.1"]);
    rt1.check_list(&list1, &a1, &r1)
        .unwrap_or_else(|r| panic!("{r:?}"));
    c.sh(&ns1, &["ip", "link", "del", "eth0"]);
    let failed = rt1.check_list(&list1, &a1, &r1).unwrap_err();
    let (code, msg) = failed.err_code();
    assert_eq!(code, 102, "{failed:?}");
    assert!(msg.contains("eth0") && msg.contains("missing"), "{msg}");

    // DEL twice: both succeed, the endpoint and its address are released.
    rt1.del_list(&list1, &a1, Some(&r1))
        .unwrap_or_else(|r| panic!("{r:?}"));
    rt1.del_list(&list1, &a1, Some(&r1))
        .unwrap_or_else(|r| panic!("second DEL: {r:?}"));
    assert_eq!(c.endpoint_keys(&net_id).len(), 1);
    assert_eq!(c.ip_keys(&net_id).len(), 1);
    // A DEL with no prevResult and no namespace (as after a runtime lost its cache) too.
    let mut bare = a1.clone();
    bare.netns = String::new();
    rt1.del_list(&list1, &bare, None)
        .unwrap_or_else(|r| panic!("{r:?}"));

    // DEL after the namespace is gone: released, and nothing left on host 2.
    ovnet_testbed::run(&["ip", "netns", "del", &ns2]).expect("delete the pod's namespace");
    rt2.del_list(&list2, &a2, Some(&r2))
        .unwrap_or_else(|r| panic!("DEL without its namespace: {r:?}"));
    assert!(c.endpoint_keys(&net_id).is_empty());
    assert!(c.ip_keys(&net_id).is_empty());
    let host2 = c.host(2).ns.clone();
    ovnet_cluster::wait_until(
        "host 2's devices to go",
        Duration::from_secs(20),
        || match c.network_links(&host2) {
            l if l.is_empty() => Ok(()),
            l => Err(format!("{l:?}")),
        },
    );

    // The address is free again: a new pod gets 10.0.0.2.
    let ns3 = c.netns("p3");
    let a3 = Attach::new(&container_id(3), &ns3).args("K8S_POD_NAME=web-1");
    let r3 = rt1
        .add_list(&list1, &a3)
        .unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(r3["ips"][0]["address"], "10.0.0.2/24");
}

#[test]
fn what_only_the_agent_can_refuse() {
    let mut c = Cluster::start(2);
    c.create(1, "pods", &[]);
    let (rt1, rt2) = (Runtime::on(&c, 1), Runtime::on(&c, 2));
    let list1 = ovnet_list(&c, 1, "1.1.0", "pods");
    let ns1 = c.netns("p1");
    let a1 = Attach::new(&container_id(1), &ns1).args("K8S_POD_NAME=web-0");

    // An unknown network: a configuration error that says how to fix it.
    let nope = ovnet_list(&c, 1, "1.1.0", "nope");
    let r = rt1.add_list(&nope, &a1).unwrap_err();
    let (code, msg) = r.err_code();
    assert_eq!((code, msg.as_str()), (7, "network nope not found"), "{r:?}");
    assert!(
        r.err()["details"]
            .as_str()
            .unwrap()
            .contains("ovctl network create nope"),
        "{r:?}"
    );
    c.assert_only_lo(&ns1);
    // ...which DEL treats as nothing to release.
    rt1.del_list(&nope, &a1, None)
        .unwrap_or_else(|r| panic!("{r:?}"));

    // ADD twice for the same container and interface.
    let r1 = rt1
        .add_list(&list1, &a1)
        .unwrap_or_else(|r| panic!("{r:?}"));
    let again = rt1.add_list(&list1, &a1).unwrap_err();
    let (code, msg) = again.err_code();
    assert_eq!(code, 101, "{again:?}");
    assert!(
        msg.contains("already has interface eth0 on network pods (as web-0)"),
        "{msg}"
    );

    // The same pod name from another container, on another host: the name is taken.
    let list2 = ovnet_list(&c, 2, "1.1.0", "pods");
    let ns2 = c.netns("p2");
    let a2 = Attach::new(&container_id(2), &ns2).args("K8S_POD_NAME=web-0");
    let taken = rt2.add_list(&list2, &a2).unwrap_err();
    let (code, msg) = taken.err_code();
    assert_eq!(code, 101, "{taken:?}");
    assert_eq!(
        msg,
        "endpoint with name web-0 already exists in network pods"
    );
    c.assert_only_lo(&ns2);

    // An interface of that name already in the namespace.
    let ns3 = c.netns("p3");
    c.sh(&ns3, &["ip", "link", "add", "eth0", "type", "bridge"]);
    let a3 = Attach::new(&container_id(3), &ns3);
    let there = rt1.add_list(&list1, &a3).unwrap_err();
    let (code, msg) = there.err_code();
    assert_eq!(code, 101, "{there:?}");
    assert!(msg.starts_with("interface eth0 already exists in"), "{msg}");

    // None of these left anything behind: one endpoint, still working.
    assert_eq!(containers(&c.inspect(1, "pods")).len(), 1);
    rt1.check_list(&list1, &a1, &r1)
        .unwrap_or_else(|r| panic!("{r:?}"));
}

/// A runtime starts pods in parallel; the agent is killed and comes back; the pods are
/// checked, reached and deleted in parallel.
#[test]
fn parallel_adds_and_dels_around_an_agent_restart() {
    const PODS: u8 = 8;
    let mut c = Cluster::start(2);
    let net_id = c.create(1, "pods", &[]);
    let (rt1, rt2) = (Runtime::on(&c, 1), Runtime::on(&c, 2));
    let (list1, list2) = (
        ovnet_list(&c, 1, "1.1.0", "pods"),
        ovnet_list(&c, 2, "1.1.0", "pods"),
    );
    let nsr = c.netns("remote");
    let remote = Attach::new(&container_id(200), &nsr);
    let rr = rt2
        .add_list(&list2, &remote)
        .unwrap_or_else(|r| panic!("{r:?}"));
    let remote_ip = rr["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let pods: Vec<Attach> = (0..PODS)
        .map(|i| {
            let ns = c.netns(&format!("p{i}"));
            Attach::new(&container_id(i + 1), &ns).args(&format!("K8S_POD_NAME=pod-{i}"))
        })
        .collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|a| s.spawn(|| rt1.add_list(&list1, a)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap_or_else(|r| panic!("{r:?}")))
            .collect()
    });
    let mut addresses: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    assert_eq!(addresses.len(), usize::from(PODS), "{addresses:?}");

    c.kill_agent(1);
    c.start_agent(1);
    c.wait_agent_ready(1);
    for (a, r) in pods.iter().zip(&results) {
        rt1.check_list(&list1, a, r)
            .unwrap_or_else(|r| panic!("CHECK after the restart: {r:?}"));
    }
    let ns0 = pods[0].netns.rsplit('/').next().unwrap();
    c.wait_ping(ns0, &remote_ip, Duration::from_secs(30));

    std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .zip(&results)
            .map(|(a, r)| s.spawn(|| rt1.del_list(&list1, a, Some(r))))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap_or_else(|r| panic!("{r:?}"));
        }
    });
    assert_eq!(
        c.endpoint_keys(&net_id).len(),
        1,
        "only the remote pod is left"
    );
    let host1 = c.host(1).ns.clone();
    ovnet_cluster::wait_until(
        "host 1's devices to go",
        Duration::from_secs(20),
        || match c.network_links(&host1) {
            l if l.is_empty() => Ok(()),
            l => Err(format!("{l:?}")),
        },
    );
}
