//! The configuration list shipped in `deploy/cni/` run by a runtime of the test's own: ovnet-cni
//! then Debian's `portmap` (containernetworking-plugins), ADD in order with `prevResult`,
//! CHECK, DEL in reverse. portmap passes ovnet's result through, DNATs the host port to the
//! pod's address (its rules in the host's namespace), and removes its rules on DEL.
//!
//! The list sets `disableCheck`: Debian 12's portmap (plugins 1.1.1) fails CHECK of a pod
//! without IPv6, looking for ip6tables rules it never made (containernetworking/plugins#819,
//! fixed in later releases). ovnet-cni's own CHECK runs here with the chain's final result.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::{shipped_conflist, Attach, Runtime, DEBIAN_CNI_DIR};
use ovnet_cluster::{wait_until, Cluster};
use ovnet_testbed::{in_netns, skip};
use serde_json::{json, Value};

/// What the pod's server says to every connection.
const GREETING: &[u8] = b"hello from web-0\n";

/// The shipped list, pointed at host `h`'s agent and network `network`.
fn conflist(c: &Cluster, h: usize, network: &str) -> Value {
    let mut list = shipped_conflist();
    let ovnet = &mut list["plugins"][0];
    assert_eq!(ovnet["type"], "ovnet-cni", "the list starts with ovnet-cni");
    ovnet["agent"] = json!(c.sock(h));
    ovnet["network"] = json!(network);
    assert_eq!(list["plugins"][1]["type"], "portmap");
    list
}

/// The `nat` table's rules in namespace `ns`.
fn nat_rules(c: &Cluster, ns: &str) -> String {
    c.sh(ns, &["iptables", "-w", "-t", "nat", "-S"])
}

/// One connection from namespace `ns` to `addr`: what it reads until the server closes.
fn fetch(ns: &str, addr: &str) -> Result<Vec<u8>, String> {
    in_netns(ns, || {
        let addr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut got = Vec::new();
        s.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
        Ok(got)
    })
    .map_err(|e| e.to_string())?
}

#[test]
fn the_shipped_list_chains_portmap_after_ovnet() {
    let portmap = std::path::Path::new(DEBIAN_CNI_DIR).join("portmap");
    if !portmap.is_file() {
        skip(format!(
            "{} is missing (run deploy/deps.sh: containernetworking-plugins)",
            portmap.display()
        ));
        return;
    }
    let mut c = Cluster::start(1);
    c.create(1, "pods", &[]);
    let host = c.host(1).ns.clone();
    let list = conflist(&c, 1, "pods");
    let mut rt = Runtime::on(&c, 1);
    rt.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    let ns = c.netns("web");
    let a = Attach::new(&"ab".repeat(32), &ns).args("K8S_POD_NAME=web-0");

    let result = rt.add_list(&list, &a).unwrap_or_else(|r| panic!("{r:?}"));
    // portmap changed nothing that a result shows: ovnet's result comes out of the chain.
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["ips"][0]["address"], "10.0.0.2/24");
    assert_eq!(result["interfaces"][1]["sandbox"], a.netns.as_str());
    let rules = nat_rules(&c, &host);
    assert!(
        rules.contains("--dport 8080") && rules.contains("--to-destination 10.0.0.2:80"),
        "portmap's DNAT to the pod is missing:\n{rules}"
    );

    // Traffic through the mapping: from the underlay to the host's port 8080, answered by the
    // pod. The way back needs the network's gateway on the bridge and the pod's default route
    // through it.
    let routes = c.sh(&ns, &["ip", "-4", "route", "show"]);
    if routes.contains("default via 10.0.0.1") {
        let listener = in_netns(&ns, || TcpListener::bind("0.0.0.0:80"))
            .expect("enter the pod")
            .expect("listen on the pod's port 80");
        let server = std::thread::spawn(move || {
            for conn in listener.incoming().take(1) {
                let _ = conn.and_then(|mut s| s.write_all(GREETING));
            }
        });
        let target = format!("{}:8080", c.host(1).underlay_ip);
        let underlay = c.tb.underlay().to_owned();
        wait_until(
            "the pod to answer on the host's port 8080",
            Duration::from_secs(30),
            || match fetch(&underlay, &target)? {
                got if got == GREETING => Ok(()),
                got => Err(format!("got {:?}", String::from_utf8_lossy(&got))),
            },
        );
        server.join().expect("the pod's server");
    } else {
        skip(format!(
            "traffic through the port mapping only: the pod has no default route through the \
             network's gateway here ({routes:?})"
        ));
    }

    // The runtime skips CHECK of this list; ovnet-cni's CHECK passes on the chain's result.
    rt.check_list(&list, &a, &result)
        .unwrap_or_else(|r| panic!("CHECK of the chain: {r:?}"));
    rt.run_plugin("CHECK", &a, &rt.derive(&list, 0, Some(&result)))
        .ok_empty();
    rt.del_list(&list, &a, Some(&result))
        .unwrap_or_else(|r| panic!("DEL of the chain: {r:?}"));
    let rules = nat_rules(&c, &host);
    assert!(
        !rules.contains("10.0.0.2:80"),
        "portmap's DNAT outlived DEL:\n{rules}"
    );
    c.assert_only_lo(&ns);
    assert!(c.inspect(1, "pods")["Containers"]
        .as_object()
        .unwrap()
        .is_empty());
    // DEL again, as runtimes do.
    rt.del_list(&list, &a, Some(&result))
        .unwrap_or_else(|r| panic!("second DEL of the chain: {r:?}"));
}
