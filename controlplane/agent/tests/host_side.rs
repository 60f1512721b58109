//! The host side without a process per step, in real namespaces: one test bed namespace
//! stands for the agent's (the code runs on a runtime in a thread inside it), others for
//! containers. What a connect builds over netlink, and how it fails: a name taken in the
//! container, a missing bridge, a path that is not a network namespace, each leaving nothing
//! behind. Then port security's table changed in place by `nft`: the same table as written
//! whole, with the counters of the chains that stayed. Needs root, iproute2 and nftables
//! (skipped with the reason otherwise).

use std::future::Future;
use std::net::Ipv4Addr;

use ovnet_agent::host::{self, ContainerLink, HandoffLink};
use ovnet_agent::netlink::Netlink;
use ovnet_agent::port_security::{self, Port};
use ovnet_dataplane::MacAddr;
use ovnet_testbed::{in_netns, skip, Testbed};

/// A test bed, or `None` (the test is skipped, with the reason) where there can be none.
fn bed() -> Option<Testbed> {
    match Testbed::new() {
        Ok(tb) => Some(tb),
        Err(e) => {
            skip(format!("no test bed: {e}"));
            None
        }
    }
}

/// Runs `f`'s future to its end on a runtime inside namespace `ns`: the agent's namespace, as
/// far as the code under test can tell.
fn as_agent<R: Send, F: Future<Output = R>>(ns: &str, f: impl FnOnce() -> F + Send) -> R {
    in_netns(ns, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f())
    })
    .expect("entering the agent's namespace")
}

fn path_of(ns: &str) -> String {
    Testbed::ns_path(ns).to_string_lossy().into_owned()
}

const MAC: [u8; 6] = [0x02, 0x42, 10, 9, 0, 2];
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

fn link<'a>(netns_path: &'a str, ifname: &'a str, bridge: &'a str) -> ContainerLink<'a> {
    ContainerLink {
        netns_path,
        ifname,
        host_veth: "ovvtest0001",
        bridge,
        mac: MAC,
        ipv4: Ipv4Addr::new(10, 9, 0, 2),
        prefix: 24,
        mtu: 1400,
        gso_max_segs: 17,
        route_via: Some(GATEWAY),
    }
}

/// The links of `ns` whose names start with `prefix`.
fn links(tb: &Testbed, ns: &str, prefix: &str) -> Vec<String> {
    tb.exec(ns, &["ip", "-o", "link", "show"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

#[test]
fn a_container_gets_its_veth_address_route_and_tso_bound() {
    let Some(mut tb) = bed() else { return };
    let agent = tb.add_netns("agent").unwrap();
    let boxed = tb.add_netns("box").unwrap();
    let other = tb.add_netns("routed").unwrap();
    // A container with a default route of its own keeps it.
    tb.exec(&other, &["ip", "route", "add", "default", "dev", "lo"])
        .unwrap();
    let (path, other_path) = (path_of(&boxed), path_of(&other));
    let ifname = as_agent(&agent, || async {
        host::ensure_bridge(7001, 1400).await.unwrap();
        host::set_bridge_address("ovbr7001", MAC_GW, GATEWAY, 24)
            .await
            .unwrap();
        let ifname = host::free_ifname(&path).await.unwrap().to_string();
        host::connect_container(&link(&path, &ifname, "ovbr7001"))
            .await
            .unwrap();
        let kept = ContainerLink {
            host_veth: "ovvtest0002",
            ..link(&other_path, "eth0", "ovbr7001")
        };
        host::connect_container(&kept).await.unwrap();
        ifname
    });
    assert_eq!(ifname, "eth0");
    let dev = tb
        .exec(&boxed, &["ip", "-d", "-o", "link", "show", "eth0"])
        .unwrap();
    for want in [
        "mtu 1400",
        "link/ether 02:42:0a:09:00:02",
        "gso_max_segs 17",
        "state UP",
    ] {
        assert!(dev.contains(want), "{want:?} missing: {dev}");
    }
    let addr = tb
        .exec(&boxed, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(addr.contains("inet 10.9.0.2/24 "), "{addr}");
    let lo = tb
        .exec(&boxed, &["ip", "-o", "link", "show", "lo"])
        .unwrap();
    assert!(lo.contains("UP"), "{lo}");
    let route = tb
        .exec(&boxed, &["ip", "-4", "route", "show", "default"])
        .unwrap();
    assert_eq!(route.trim(), "default via 10.9.0.1 dev eth0");
    let kept = tb
        .exec(&other, &["ip", "-4", "route", "show", "default"])
        .unwrap();
    assert_eq!(kept.trim(), "default dev lo scope link", "{kept}");
    let host_end = tb
        .exec(&agent, &["ip", "-o", "link", "show", "ovvtest0001"])
        .unwrap();
    for want in ["master ovbr7001", "mtu 1400", "state UP"] {
        assert!(host_end.contains(want), "{want:?} missing: {host_end}");
    }
    let bridge = tb
        .exec(
            &agent,
            &["ip", "-o", "-4", "addr", "show", "dev", "ovbr7001"],
        )
        .unwrap();
    assert!(bridge.contains("inet 10.9.0.1/24 "), "{bridge}");
    // Deleting the host end takes the container's end along.
    as_agent(&agent, || async {
        host::delete_link("ovvtest0001").await.unwrap();
        host::delete_link("ovvtest0001").await.unwrap();
    });
    assert!(links(&tb, &boxed, "eth").is_empty());
}

const MAC_GW: [u8; 6] = [0x02, 0x42, 10, 9, 0, 1];

#[test]
fn a_name_taken_in_the_container_is_refused_and_nothing_is_left() {
    let Some(mut tb) = bed() else { return };
    let agent = tb.add_netns("agent").unwrap();
    let boxed = tb.add_netns("box").unwrap();
    // A veth pair of the container's own (the kernel here may lack `dummy`).
    tb.exec(
        &boxed,
        &[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ],
    )
    .unwrap();
    let path = path_of(&boxed);
    let (free, err) = as_agent(&agent, || async {
        host::ensure_bridge(7002, 1450).await.unwrap();
        let free = host::free_ifname(&path).await.unwrap().to_string();
        let err = host::connect_container(&link(&path, "eth0", "ovbr7002"))
            .await
            .unwrap_err()
            .to_string();
        (free, err)
    });
    assert_eq!(free, "eth1");
    assert_eq!(
        err,
        "creating the container's veth: eth0 is taken in the container's network namespace: \
         pick another interface name or remove that one"
    );
    assert!(links(&tb, &agent, "ovv").is_empty());
    assert_eq!(links(&tb, &boxed, "eth"), ["eth0p", "eth0"]);
}

#[test]
fn a_missing_bridge_is_named_and_nothing_is_created() {
    let Some(mut tb) = bed() else { return };
    let agent = tb.add_netns("agent").unwrap();
    let boxed = tb.add_netns("box").unwrap();
    let path = path_of(&boxed);
    let (connect, handoff, tap) = as_agent(&agent, || async {
        let connect = host::connect_container(&link(&path, "eth0", "ovbr7003"))
            .await
            .unwrap_err()
            .to_string();
        let handoff = host::handoff_veth(&HandoffLink {
            container_end: "ovctest0003",
            host_veth: "ovvtest0003",
            bridge: "ovbr7003",
            mac: MAC,
            mtu: 1450,
            gso_max_segs: 17,
        })
        .await
        .unwrap_err()
        .to_string();
        let tap = host::attach_tap(7003).await.unwrap_err().to_string();
        (connect, handoff, tap)
    });
    let missing = "ovbr7003 is not there: restart the agent to rebuild the network's devices";
    assert_eq!(
        connect,
        format!("attaching the container's veth to bridge ovbr7003: {missing}")
    );
    assert_eq!(
        handoff,
        format!("attaching the container's veth to bridge ovbr7003: {missing}")
    );
    assert!(tap.starts_with("attaching ovtap7003 to its bridge: ovtap7003 is not there"));
    assert!(links(&tb, &agent, "ov").is_empty());
    assert!(links(&tb, &boxed, "eth").is_empty());
}

#[test]
fn what_is_not_a_network_namespace_is_refused_without_a_trace() {
    let Some(mut tb) = bed() else { return };
    let agent = tb.add_netns("agent").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-namespace");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_string_lossy().into_owned();
    let (inside, mount, free, connect) = as_agent(&agent, || async {
        host::ensure_bridge(7004, 1450).await.unwrap();
        let inside = Netlink::inside(&file).await.unwrap_err().to_string();
        let mount = Netlink::inside("/proc/self/ns/mnt")
            .await
            .unwrap_err()
            .to_string();
        let free = host::free_ifname(&file).await.unwrap_err().to_string();
        let connect = host::connect_container(&link(&file, "eth0", "ovbr7004"))
            .await
            .unwrap_err()
            .to_string();
        (inside, mount, free, connect)
    });
    let not_one = "it is not a network namespace (pass /proc/PID/ns/net or a name under \
                   /var/run/netns)";
    assert!(inside.contains(not_one), "{inside}");
    assert!(inside.starts_with(&format!(
        "entering the container's network namespace {file}"
    )));
    assert!(mount.contains(not_one), "{mount}");
    assert_eq!(free, inside);
    assert_eq!(
        connect,
        format!(
            "finding the container's network namespace: {file} is not a network namespace: \
             pass a name under /var/run/netns or /proc/PID/ns/net"
        )
    );
    assert!(links(&tb, &agent, "ovv").is_empty());
}

#[test]
fn a_handed_off_veth_waits_in_the_agents_namespace() {
    let Some(mut tb) = bed() else { return };
    let agent = tb.add_netns("agent").unwrap();
    as_agent(&agent, || async {
        host::ensure_bridge(7005, 1450).await.unwrap();
        let l = HandoffLink {
            container_end: "ovctest0005",
            host_veth: "ovvtest0005",
            bridge: "ovbr7005",
            mac: MAC,
            mtu: 1450,
            gso_max_segs: 17,
        };
        host::handoff_veth(&l).await.unwrap();
        // The same names again: both taken.
        let e = host::handoff_veth(&l).await.unwrap_err().to_string();
        assert!(e.contains("is taken in the host's namespace"), "{e}");
    });
    let end = tb
        .exec(&agent, &["ip", "-d", "-o", "link", "show", "ovctest0005"])
        .unwrap();
    for want in [
        "mtu 1450",
        "link/ether 02:42:0a:09:00:02",
        "gso_max_segs 17",
        "state DOWN",
    ] {
        assert!(end.contains(want), "{want:?} missing: {end}");
    }
    let host_end = tb
        .exec(&agent, &["ip", "-o", "link", "show", "ovvtest0005"])
        .unwrap();
    assert!(host_end.contains("master ovbr7005"), "{host_end}");
    let listed = as_agent(&agent, || async {
        host::links_with_prefix("ovv").await.unwrap()
    });
    assert_eq!(listed, ["ovvtest0005"]);
}

fn port(veth: &str, last: u8) -> Port {
    let mac = MacAddr([2, 0x42, 10, 0, 0, last]);
    Port {
        veth: veth.to_owned(),
        vni: 256,
        mac,
        ipv4: Ipv4Addr::new(10, 0, 0, last),
        ipv6: mac.ipv6_link_local(),
    }
}

/// `nft -f` of `text` in `ns`.
fn load(tb: &Testbed, ns: &str, text: &str) {
    let file = tb.dir().join("ruleset.nft");
    std::fs::write(&file, text).unwrap();
    tb.exec(ns, &["nft", "-f", &file.to_string_lossy()])
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
}

/// The table as `nft` lists it, without counters or handles.
fn listed(tb: &Testbed, ns: &str) -> String {
    let out = tb
        .exec(ns, &["nft", "list", "table", port_security::TABLE])
        .unwrap();
    out.lines()
        .map(|l| {
            let l = l.trim();
            match l.find("counter packets") {
                Some(i) => {
                    let rest = &l[i + "counter packets".len()..];
                    let after = rest.find(" drop").map_or("", |j| &rest[j..]);
                    format!("{}counter{after}", &l[..i])
                }
                None => l.to_owned(),
            }
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Port `p`'s chain as `nft -a` lists it: with its rules' handles.
fn chain(tb: &Testbed, ns: &str, p: &Port) -> String {
    let name = format!("ep_{}", p.veth);
    tb.exec(
        ns,
        &["nft", "-a", "list", "chain", "bridge", "ovnet", &name],
    )
    .unwrap()
}

#[test]
fn port_security_changes_in_place_to_the_table_written_whole() {
    let Some(mut tb) = bed() else { return };
    if std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err()
    {
        return skip("nft is not installed (deploy/deps.sh)");
    }
    let ns = tb.add_netns("nft").unwrap();
    let (a, b, c) = (port("ovva", 2), port("ovvb", 3), port("ovvc", 4));
    let b2 = port("ovvb", 9);
    let sets = [
        vec![],
        vec![a.clone(), b.clone()],
        // A connect: one more.
        vec![a, b, c.clone()],
        // A disconnect and a changed record at once.
        vec![b2, c.clone()],
        vec![c],
        vec![],
    ];
    for step in sets.windows(2) {
        let (old, new) = (step[0].as_slice(), step[1].as_slice());
        let kept: Vec<&Port> = old.iter().filter(|p| new.contains(p)).collect();
        let before: Vec<String> = kept.iter().map(|p| chain(&tb, &ns, p)).collect();
        load(&tb, &ns, &port_security::render_change(old, new));
        // The chains that stay are not rewritten: same rules, same handles, same counters.
        let now: Vec<String> = kept.iter().map(|p| chain(&tb, &ns, p)).collect();
        assert_eq!(before, now, "from {old:?} to {new:?}");
        let after = if new.is_empty() {
            let gone = tb.exec(&ns, &["nft", "list", "table", port_security::TABLE]);
            assert!(gone.is_err(), "the table is left: {gone:?}");
            continue;
        } else {
            listed(&tb, &ns)
        };
        load(&tb, &ns, &port_security::render(new));
        assert_eq!(after, listed(&tb, &ns), "from {old:?} to {new:?}");
    }
}
