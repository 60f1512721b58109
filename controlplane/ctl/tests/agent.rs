//! `ovctl` against the real agent: `ovnet-agent` processes in a test bed with one etcd
//! ([`ovnet_cluster`]), and the built `ovctl` as an operator runs it. Each test checks what the
//! user sees, byte for byte where it is fixed (tables, messages, the inspect JSON's layout),
//! from the agent's real answers: its defaults, its refusals, its counters.
//!
//! Needs root, etcd, iproute2 and the workspace's binaries (`cargo build --workspace`, which
//! the project's test command does).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use ovnet_cluster::{is_hex_id, wait_until, Cluster};
use serde_json::{json, Value};

/// The `Error: …` line of a failed run, after asserting exit 1 and an empty stdout.
#[track_caller]
fn error(c: &Cluster, h: usize, args: &[&str]) -> String {
    let out = c.ovctl(h, args);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, "", "{out:?}");
    out.stderr
}

/// Top-level keys of each object of an inspect array, in output order (serde_json without
/// `preserve_order` would sort them when parsing).
fn top_level_keys(json: &str) -> Vec<String> {
    json.lines()
        .filter_map(|l| l.strip_prefix("        \""))
        .filter_map(|l| l.split_once('"').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn create_prints_the_full_id_and_ls_shows_it() {
    let c = Cluster::start(1);
    let out = c
        .ovctl(
            1,
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.0.0.0/24",
                "--label",
                "env=test",
                "demo",
            ],
        )
        .ok();
    let id = out.trim_end_matches('\n').to_owned();
    assert_eq!(out, format!("{id}\n"));
    assert!(is_hex_id(&id), "{id}");
    // -d defaults to overlay; the agent's defaults: the next free /24, the next VNI from 256.
    let backend = c
        .ovctl(1, &["network", "create", "backend"])
        .ok()
        .trim()
        .to_owned();
    let b = c.inspect(1, "backend");
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24", "{b}");
    assert_eq!(b["IPAM"]["Config"][0]["Gateway"], "10.0.1.1", "{b}");
    assert_eq!(b["Options"]["vxlanid"], "257", "{b}");
    let d = c.inspect(1, "demo");
    assert_eq!(d["Options"]["vxlanid"], "256", "{d}");
    assert_eq!(d["Labels"], json!({"env": "test"}), "{d}");

    assert_eq!(
        c.ovctl(1, &["network", "ls"]).ok(),
        format!(
            "NETWORK ID     NAME      DRIVER    SCOPE\n\
             {}   backend   overlay   global\n\
             {}   demo      overlay   global\n",
            &backend[..12],
            &id[..12]
        )
    );
    assert_eq!(
        c.ovctl(1, &["network", "ls", "-q"]).ok(),
        format!("{}\n{}\n", &backend[..12], &id[..12])
    );
    assert_eq!(
        c.ovctl(1, &["network", "ls", "-q", "--no-trunc"]).ok(),
        format!("{backend}\n{id}\n")
    );

    // A name taken: the agent's message, as it is.
    assert_eq!(
        error(&c, 1, &["network", "create", "demo"]),
        "Error: network with name demo already exists\n"
    );
}

#[test]
fn inspect_prints_docker_json_by_name_and_by_id_prefix() {
    let mut c = Cluster::start(2);
    c.ovctl(
        1,
        &[
            "network",
            "create",
            "--subnet",
            "10.0.0.0/24",
            "--vni",
            "4096",
            "--label",
            "env=test",
            "demo",
        ],
    )
    .ok();
    let web1 = c.netns("web1");
    let web2 = c.netns("web2");
    let out = c.ovctl(
        1,
        &[
            "network", "connect", "--ip", "10.0.0.2", "demo", "web1", "--netns", &web1,
        ],
    );
    assert_eq!(out.ok(), "", "connect prints nothing, like docker");
    c.connect(2, "demo", "web2", &web2);

    let out = c.ovctl(2, &["network", "inspect", "demo"]).ok();
    assert_eq!(
        top_level_keys(&out),
        [
            "Name",
            "Id",
            "Created",
            "Scope",
            "Driver",
            "EnableIPv6",
            "IPAM",
            "Internal",
            "Attachable",
            "Containers",
            "Options",
            "Labels",
            "Peers"
        ]
    );
    assert!(
        out.starts_with("[\n    {\n        \"Name\": \"demo\",\n"),
        "{out}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let nets = v.as_array().unwrap();
    assert_eq!(nets.len(), 1);
    let n = &nets[0];
    let id = n["Id"].as_str().unwrap().to_owned();
    assert!(is_hex_id(&id), "{n}");
    let created = n["Created"].as_str().unwrap();
    assert!(
        created.len() == 30 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "RFC 3339 with nanoseconds: {created}"
    );
    assert_eq!(n["Scope"], "global");
    assert_eq!(n["Driver"], "overlay");
    assert_eq!(n["EnableIPv6"], false);
    assert_eq!(n["IPAM"]["Driver"], "default");
    assert!(n["IPAM"]["Options"].is_null());
    assert_eq!(
        n["IPAM"]["Config"],
        json!([{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}])
    );
    assert_eq!(n["Internal"], false);
    assert_eq!(n["Attachable"], true);
    let containers = n["Containers"].as_object().unwrap();
    assert_eq!(containers.len(), 2);
    for (name, ip, mac, node) in [
        ("web1", "10.0.0.2/24", "02:42:0a:00:00:02", "host1"),
        ("web2", "10.0.0.3/24", "02:42:0a:00:00:03", "host2"),
    ] {
        let (key, e) = containers
            .iter()
            .find(|(_, e)| e["Name"] == name)
            .unwrap_or_else(|| panic!("{name} in Containers: {n}"));
        assert_eq!(e["EndpointID"], key.as_str(), "keyed by endpoint ID");
        assert!(is_hex_id(key), "{key}");
        assert_eq!(e["IPv4Address"], ip);
        assert_eq!(e["IPv6Address"], "");
        assert_eq!(e["MacAddress"], mac);
        assert_eq!(e["Node"], node);
    }
    assert_eq!(
        n["Options"],
        json!({
            "com.docker.network.driver.overlay.vxlanid_list": "4096",
            "vxlanid": "4096",
            "mtu": "1450"
        })
    );
    assert_eq!(n["Labels"], json!({"env": "test"}));
    assert_eq!(
        n["Peers"],
        json!([
            {"Name": "host1", "IP": "192.168.50.1"},
            {"Name": "host2", "IP": "192.168.50.2"}
        ])
    );
    // By ID prefix, the same document.
    assert_eq!(c.ovctl(1, &["network", "inspect", &id[..12]]).ok(), out);
    assert_eq!(c.ovctl(1, &["network", "inspect", &id[..3]]).ok(), out);
}

#[test]
fn inspect_of_a_missing_network_is_docker_like() {
    let c = Cluster::start(1);
    c.create(1, "demo", &[]);

    let out = c.ovctl(1, &["network", "inspect", "nope"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr, "Error: No such network: nope\n");
    assert_eq!(out.stdout, "[]\n");

    // The ones found are printed, each missing one is an error.
    let out = c.ovctl(1, &["network", "inspect", "nope", "demo", "gone"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        "Error: No such network: nope\nError: No such network: gone\n"
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["Name"], "demo");
}

#[test]
fn agent_errors_are_one_line_with_exit_code_1() {
    let mut c = Cluster::start(1);
    let id = c.create(1, "demo", &[]);
    // Without --netns, the namespace is the one named like the container.
    let web2 = c.netns("web2");
    c.ovctl(1, &["network", "connect", "demo", &web2]).ok();
    c.assert_eth0(&web2, "10.0.0.2/24", "02:42:0a:00:00:02");
    assert_eq!(
        error(&c, 1, &["network", "connect", "demo", &web2]),
        format!("Error: container {web2} is already connected to network demo as {web2}\n")
    );
    let db = c.netns("db");
    assert_eq!(
        error(
            &c,
            1,
            &["network", "connect", "demo", &web2, "--netns", &db]
        ),
        format!("Error: endpoint with name {web2} already exists in network demo\n")
    );
    c.connect(1, "demo", "db", &db);

    // The real refusal names the network's ID and its endpoints.
    assert_eq!(
        error(&c, 1, &["network", "rm", "demo"]),
        format!(
            "Error: error while removing network: network demo id {id} has active endpoints \
             (db, {web2})\n"
        )
    );
    assert_eq!(
        error(&c, 1, &["network", "disconnect", "demo", "nope"]),
        "Error: container nope is not connected to network demo\n"
    );
    c.disconnect(1, "demo", &web2);
    c.disconnect(1, &id[..6], "db");

    // rm echoes each argument and goes on after a failure.
    c.create(1, "other", &[]);
    let out = c.ovctl(1, &["network", "rm", "demo", "nope", "other"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr, "Error: network nope not found\n");
    assert_eq!(out.stdout, "demo\nother\n");
    assert_eq!(c.ovctl(1, &["network", "ls", "-q"]).ok(), "");
}

#[test]
fn vteps_are_added_listed_and_removed() {
    let c = Cluster::start(1);
    c.create(1, "demo", &[]);
    let out = c.ovctl(1, &["network", "vtep", "add", "demo", "192.168.1.10"]);
    assert_eq!(out.ok(), "");
    c.ovctl(1, &["network", "vtep", "add", "demo", "192.168.1.9:4790"])
        .ok();
    assert_eq!(
        c.ovctl(1, &["network", "vtep", "ls", "demo"]).ok(),
        "IP             PORT\n192.168.1.9    4790\n192.168.1.10   4789\n"
    );
    assert_eq!(
        error(
            &c,
            1,
            &["network", "vtep", "add", "demo", "192.168.1.10:4789"]
        ),
        "Error: vtep 192.168.1.10:4789 already exists in network demo\n"
    );
    c.ovctl(1, &["network", "vtep", "rm", "demo", "192.168.1.10:4789"])
        .ok();
    assert_eq!(
        error(&c, 1, &["network", "vtep", "rm", "demo", "192.168.1.10"]),
        "Error: vtep 192.168.1.10:4789 not found in network demo\n"
    );
    c.ovctl(
        1,
        &["network", "vtep", "remove", "demo", "192.168.1.9:4790"],
    )
    .ok();
    assert_eq!(
        c.ovctl(1, &["network", "vtep", "ls", "demo"]).ok(),
        "IP        PORT\n"
    );
    assert_eq!(
        error(&c, 1, &["network", "vtep", "ls", "nope"]),
        "Error: network nope not found\n"
    );
}

/// The ALIVE column is the node's lease or its data plane heard; STATUS says which. An agent
/// that stops revokes its lease and says goodbye to its peers' data planes: down at once.
#[test]
fn node_ls_shows_which_agents_are_alive() {
    let mut c = Cluster::start(2);
    // NAME, VTEP, ALIVE and the start of STATUS of every row (the time heard varies).
    let rows = |c: &Cluster| -> Vec<String> {
        let out = c.ovctl(1, &["node", "ls"]).ok();
        out.lines()
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols[..cols.len().min(4)].join(" ")
            })
            .collect()
    };
    let both = vec![
        "NAME VTEP ALIVE STATUS",
        "host1 192.168.50.1:4789 yes lease",
        "host2 192.168.50.2:4789 yes lease,",
    ];
    wait_until("both nodes alive on host1", Duration::from_secs(30), || {
        let out = rows(&c);
        if out == both {
            Ok(())
        } else {
            Err(format!("{out:?}"))
        }
    });
    let st = c.stop_agent(2);
    assert!(st.success(), "{st}");
    assert_eq!(
        rows(&c),
        vec![
            "NAME VTEP ALIVE STATUS",
            "host1 192.168.50.1:4789 yes lease",
            "host2 192.168.50.2:4789 no no",
        ],
        "the stopped agent revoked its lease and said goodbye before it exited"
    );
    c.start_agent(2);
    c.wait_agent_ready(2);
    wait_until("host2 back on host1", Duration::from_secs(30), || {
        let out = rows(&c);
        if out == both {
            Ok(())
        } else {
            Err(format!("{out:?}"))
        }
    });
}

/// Sends `payload` to host 1's VTEP from the underlay bridge's address, which is no node.
fn send_to_host1(c: &Cluster, payload: &[u8]) {
    let payload = payload.to_vec();
    ovnet_testbed::in_netns(c.tb.underlay(), move || {
        let s = UdpSocket::bind((ovnet_testbed::UNDERLAY_BRIDGE_IP, 0))?;
        s.send_to(
            &payload,
            SocketAddr::from((Ipv4Addr::new(192, 168, 50, 1), 4789)),
        )
    })
    .expect("enter the underlay namespace")
    .expect("send a datagram to host 1");
}

/// A VXLAN datagram for VNI 256 carrying a 60-byte broadcast frame.
fn vxlan_frame() -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0, 0, 0x01, 0x00, 0];
    d.extend_from_slice(&[0xff; 6]);
    d.extend_from_slice(&[0x02, 0x42, 0x0a, 0, 0, 0x63]);
    d.extend_from_slice(&[0x08, 0x06]);
    d.resize(8 + 60, 0);
    d
}

/// Counters and drop reasons as the real data plane counts them: a datagram from a VTEP that
/// is not a node of the network, and one too short to be VXLAN.
#[test]
fn stats_show_the_data_planes_counters_and_drop_reasons() {
    let mut c = Cluster::start(1);
    c.create(1, "demo", &[]); // VNI 256
    c.create(1, "other", &[]); // VNI 257, no endpoint on host1
    let a = c.netns("a");
    c.connect(1, "demo", "a", &a);
    assert_eq!(
        c.ovctl(1, &["stats", "other"]).ok(),
        "other (vni 257)\n  tx: 0 packets, 0 bytes\n  rx: 0 packets, 0 bytes\n  drops: none\n",
        "a network with no endpoint here has zero counters"
    );
    send_to_host1(&c, &vxlan_frame());
    send_to_host1(&c, &[0x08, 0, 0]);
    // The container's own frames may add drops of their own (no_route: host 1 has no peer to
    // flood to), so the reasons are read as a set.
    let reasons = |block: &str| -> Vec<String> {
        let line = block.lines().last().unwrap_or_default();
        line.trim()
            .strip_prefix("drops: ")
            .unwrap_or_default()
            .split(' ')
            .map(str::to_owned)
            .collect()
    };
    let text = wait_until("both drops counted", Duration::from_secs(30), || {
        let out = c.ovctl(1, &["stats"]).ok();
        let blocks: Vec<&str> = out.split("\n\n").collect();
        match blocks.as_slice() {
            [demo, global]
                if reasons(demo).contains(&"unknown_vtep=1".to_owned())
                    && reasons(global) == ["truncated=1"] =>
            {
                Ok(out)
            }
            _ => Err(out),
        }
    });
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert!(blocks[0].starts_with("demo (vni 256)\n  tx: "), "{text}");
    assert!(
        blocks[0].lines().nth(2).unwrap().starts_with("  rx: "),
        "{text}"
    );
    assert!(
        blocks[1].starts_with("(no network)\n  tx: 0 packets, 0 bytes\n"),
        "drops before a network was known: {text}"
    );
    assert!(blocks[1].ends_with("  drops: truncated=1\n"), "{text}");

    let out = c.ovctl(1, &["stats", "demo", "--json"]).ok();
    let v: Value = serde_json::from_str(&out).unwrap();
    let nets = v.as_array().unwrap();
    assert_eq!(nets.len(), 1, "{v}");
    assert_eq!(nets[0]["name"], "demo");
    assert_eq!(nets[0]["vni"], 256);
    assert_eq!(nets[0]["drops"]["unknown_vtep"], 1, "{v}");
    for k in ["tx_packets", "tx_bytes", "rx_packets", "rx_bytes"] {
        assert!(nets[0][k].is_u64(), "{k}: {v}");
    }
    assert_eq!(
        error(&c, 1, &["stats", "nope"]),
        "Error: network nope not found\n"
    );
}

#[test]
fn dataplane_reports_the_workers_and_offloads_in_use() {
    let c = Cluster::start(1);
    let out = c.ovctl(1, &["dataplane", "--json"]).ok();
    let v: Value = serde_json::from_str(&out).unwrap();
    let workers = v["worker_busy_per_mille"].as_array().unwrap().len();
    assert!((1..=4).contains(&workers), "{v}");
    assert_eq!(v["poll_us"], 100, "the default poll window: {v}");
    assert_eq!(v["slice_us"], 100, "the default slice: {v}");
    assert_eq!(v["udp_gso"], true, "{v}");
    assert!(
        v["steering"].is_boolean() && v["tunnel_gso"].is_boolean(),
        "{v}"
    );
    assert!(v["flows_moved"].is_u64(), "{v}");

    let text = c.ovctl(1, &["dataplane"]).ok();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with(&format!("workers: {workers}")),
        "{text}"
    );
    for (i, l) in lines[1..=workers].iter().enumerate() {
        assert!(
            l.starts_with(&format!("  worker {i}: ")) && l.ends_with(" % busy"),
            "{text}"
        );
    }
    let tunnel = if v["tunnel_gso"] == true {
        "on"
    } else {
        "unavailable"
    };
    assert_eq!(
        lines[workers + 1..workers + 3],
        ["poll window: 100 us", "time slice: 100 us"],
        "{text}"
    );
    // Every offload with its state (and, where one is not in use, why).
    let offloads = &lines[workers + 3..];
    assert_eq!(offloads.len(), 4, "{text}");
    assert!(offloads.contains(&"UDP GSO: on"), "{text}");
    assert!(offloads.contains(&"UDP GRO: on"), "{text}");
    assert!(
        offloads
            .iter()
            .any(|l| l.starts_with(&format!("UDP tunnel GSO: {tunnel}"))),
        "{text}"
    );
    let json = v["offloads"].as_array().unwrap();
    assert_eq!(json.len(), 4, "{v}");
    assert!(
        json.iter()
            .any(|o| o["name"] == "udp_gso" && o["state"] == "on"),
        "{v}"
    );
}

#[test]
fn the_agent_socket_comes_from_the_environment() {
    let c = Cluster::start(1);
    let id = c.create(1, "demo", &[]);
    // ovctl runs in the test's own namespace: the socket is a file, reachable from anywhere.
    let out = Command::new(env!("CARGO_BIN_EXE_ovctl"))
        .args(["network", "ls", "-q", "--no-trunc"])
        .env("OVNET_AGENT", c.sock(1))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{id}\n"));
}
