//! End to end, untrusted input: hostile records written into etcd behind the agents' backs
//! (bad protobuf, non-ASCII ids, huge values, records of the wrong type, odd key paths, a
//! second network on a VNI in use), and hostile requests on the API (names too long, a FIFO
//! or the host's own namespace as `--netns`). The agents keep running, keep forwarding and
//! say what they refused. Real agents, etcd and `ovctl` ([`ovnet_cluster`]).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use ovnet_cluster::{wait_until, Cluster, PREFIX};
use ovnet_proto::Message;

/// Writes `value` (raw bytes, given to etcdctl on its standard input) at `key`.
fn put_raw(c: &Cluster, key: &str, value: &[u8]) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("ip")
        .args(["netns", "exec", c.tb.underlay(), "etcdctl", "--endpoints"])
        .arg(c.tb.etcd_url())
        .args(["put", "--", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run etcdctl");
    child.stdin.take().unwrap().write_all(value).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "etcdctl put {key:?} failed: {st}");
}

/// No record can hurt an agent: each hostile one is skipped with a warning, the agents keep
/// following etcd (a network created afterwards is served) and keep forwarding.
#[test]
fn hostile_records_are_skipped_and_the_agents_go_on() {
    let mut c = Cluster::start(2);
    let id = c.create(1, "demo", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    c.assert_ping(&a, "10.0.0.3");
    let ping =
        c.tb.spawn(
            &a,
            &["ping", "-n", "-c", "50", "-i", "0.2", "-W", "1", "10.0.0.3"],
            &[],
        )
        .unwrap();

    // A non-ASCII endpoint id on host1 (once a panic in the veth name), on a key of its own.
    let ep = ovnet_proto::Endpoint {
        id: format!("{}é", "a".repeat(62)),
        network_id: id.clone(),
        name: "evil".into(),
        node: "host1".into(),
        mac: "02:42:0a:00:00:09".into(),
        ipv4: "10.0.0.9".into(),
        netns: "evil".into(),
        ifname: "eth0".into(),
        ..Default::default()
    };
    put_raw(
        &c,
        &format!("{PREFIX}endpoints/{id}/evil"),
        &ep.encode_to_vec(),
    );
    // Not protobuf at all.
    put_raw(
        &c,
        &format!("{PREFIX}networks/junk"),
        b"\xff\xfe\x00garbage",
    );
    // A node record under networks/ (the wrong type).
    let node = ovnet_proto::Node {
        name: "wrongtype".into(),
        vtep_ip: "192.168.50.9".into(),
        vtep_port: 4789,
        ..Default::default()
    };
    put_raw(
        &c,
        &format!("{PREFIX}networks/wrongtype"),
        &node.encode_to_vec(),
    );
    // A huge value (1 MiB) under a record key.
    put_raw(&c, &format!("{PREFIX}nodes/huge"), &vec![0x0a; 1 << 20]);
    // Odd key paths.
    for key in [
        format!("{PREFIX}endpoints/{id}/a/b/c"),
        format!("{PREFIX}networks/"),
        format!("{PREFIX}networks/{}", "n".repeat(300)),
        format!("{PREFIX}alive/"),
        format!("{PREFIX}vteps/{id}/not-an-address"),
        format!("{PREFIX}nodes/../../etc"),
        format!("{PREFIX}\u{202e}rtl"),
    ] {
        put_raw(&c, &key, b"x");
    }
    // A node record with a VTEP that is not an address, and a damaged node id.
    let bad_node = ovnet_proto::Node {
        name: "badnode".into(),
        vtep_ip: "not-an-ip".into(),
        vtep_port: 99999,
        node_id: "Z".repeat(32),
        ..Default::default()
    };
    put_raw(
        &c,
        &format!("{PREFIX}nodes/badnode"),
        &bad_node.encode_to_vec(),
    );

    // Both agents still follow etcd: a network made now is served on both.
    c.create(2, "after", &[]);
    let (x, y) = (c.netns("x"), c.netns("y"));
    c.connect(1, "after", "x", &x);
    c.connect(2, "after", "y", &y);
    c.wait_ping(&x, "10.0.1.3", Duration::from_secs(20));
    let st = c.tb.wait_timeout(ping, Duration::from_secs(40)).unwrap();
    let log = c.tb.log(ping).unwrap_or_default();
    assert!(st.is_some(), "ping still running:\n{log}");
    assert_eq!(
        ovnet_cluster::ping_summary(&log),
        Some((50, 50)),
        "replies lost while hostile records came in:\n{log}"
    );
    for h in [1, 2] {
        assert!(
            c.tb.try_wait(c.agent(h)).unwrap().is_none(),
            "agent of host{h} died"
        );
        let log = c.agent_log(h);
        assert!(
            log.contains("damaged"),
            "host{h} did not say what it skipped:\n{log}"
        );
        assert!(!log.contains("panicked"), "host{h}:\n{log}");
    }
    // Nothing hostile reaches the API's answers either.
    let ls = c.ovctl(1, &["network", "ls"]).ok();
    assert!(!ls.contains("junk") && !ls.contains("wrongtype"), "{ls}");
    c.ovctl(1, &["node", "ls"]).ok();
}

/// A second network record on a VNI in use (written around the store's claims) does not
/// change what the agents forward: the lowest ID is served, the other is logged and ignored.
#[test]
fn a_second_network_on_a_vni_does_not_flip_the_data_plane() {
    let mut c = Cluster::start(2);
    let id = c.create(1, "demo", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    c.assert_ping(&a, "10.0.0.3");
    let ping =
        c.tb.spawn(
            &a,
            &["ping", "-n", "-c", "40", "-i", "0.2", "-W", "1", "10.0.0.3"],
            &[],
        )
        .unwrap();
    // An impostor with the same VNI and an ID above or below demo's, and an endpoint on host 1.
    for (name, first) in [("imp0", '0'), ("impf", 'f')] {
        let impostor_id = format!("{first}{}", &id[1..]);
        let net = ovnet_proto::Network {
            id: impostor_id.clone(),
            name: name.into(),
            vni: 256,
            subnet: "10.9.0.0/24".into(),
            gateway: "10.9.0.1".into(),
            mtu: 1450,
            driver: "overlay".into(),
            // Later than demo's: what a record written now says.
            created: "2030-01-01T00:00:00.000000000Z".into(),
            ..Default::default()
        };
        put_raw(
            &c,
            &format!("{PREFIX}networks/{name}"),
            &net.encode_to_vec(),
        );
    }
    let st = c.tb.wait_timeout(ping, Duration::from_secs(40)).unwrap();
    let log = c.tb.log(ping).unwrap_or_default();
    assert!(st.is_some(), "ping still running:\n{log}");
    assert_eq!(
        ovnet_cluster::ping_summary(&log),
        Some((40, 40)),
        "demo's traffic was disturbed by the impostors:\n{log}"
    );
    for h in [1, 2] {
        let log = c.agent_log(h);
        assert!(
            log.contains("claim VNI 256 of network demo"),
            "host{h} did not log the conflict:\n{log}"
        );
    }
}

/// The API socket is for root and its group only; `--netns` that is a FIFO, a regular file
/// or the host's own namespace is refused at once and the agent goes on; names longer than
/// 64 characters and labels over 4 KiB are refused.
#[test]
fn hostile_requests_are_refused_clearly() {
    let c = Cluster::start(1);
    let m = std::fs::metadata(c.sock(1)).unwrap();
    assert_eq!(m.mode() & 0o777, 0o660, "mode of the API socket");

    let long = "n".repeat(65);
    let msg = c
        .ovctl(1, &["network", "create", "-d", "overlay", &long])
        .err();
    assert!(msg.contains("65 characters, at most 64"), "{msg}");
    let label = format!("k={}", "v".repeat(4100));
    let msg = c
        .ovctl(
            1,
            &[
                "network", "create", "-d", "overlay", "--label", &label, "big",
            ],
        )
        .err();
    assert!(msg.contains("labels too large"), "{msg}");

    c.create(1, "demo", &[]);
    let fifo = c.tb.dir().join("fifo");
    c.sh(c.tb.underlay(), &["mkfifo", fifo.to_str().unwrap()]);
    let msg = c
        .ovctl(
            1,
            &[
                "network",
                "connect",
                "demo",
                "f",
                "--netns",
                fifo.to_str().unwrap(),
            ],
        )
        .err();
    assert!(msg.contains("is not a network namespace"), "{msg}");
    let file = c.tb.dir().join("file");
    std::fs::write(&file, "x").unwrap();
    let msg = c
        .ovctl(
            1,
            &[
                "network",
                "connect",
                "demo",
                "g",
                "--netns",
                file.to_str().unwrap(),
            ],
        )
        .err();
    assert!(msg.contains("is not a network namespace"), "{msg}");
    let pid = c.agent(1).to_string();
    let own = format!("/proc/{pid}/ns/net");
    let msg = c
        .ovctl(1, &["network", "connect", "demo", "h", "--netns", &own])
        .err();
    assert!(msg.contains("host's own network namespace"), "{msg}");
    let mnt = format!("/proc/{pid}/ns/mnt");
    let msg = c
        .ovctl(1, &["network", "connect", "demo", "i", "--netns", &mnt])
        .err();
    assert!(msg.contains("not a network namespace"), "{msg}");
    // And the agent goes on.
    let mut c = c;
    let ns = c.netns("ok");
    c.connect(1, "demo", "ok", &ns);
    let log = c.agent_log(1);
    assert!(
        log.contains("API: connect \"ok\" to \"demo\"") && log.contains("(by uid 0 gid 0 pid "),
        "the caller is not logged:\n{log}"
    );
}

/// A host command that hangs holds up the change it belongs to, never the readers: while a
/// connect waits on an `nft` load that does not return, `ovctl stats` and `ovctl doctor`
/// (the agent's status) answer, and so would a metrics scrape; they read what the last
/// reconcile pass published, not the state behind the agent's lock.
#[test]
fn a_hung_host_command_never_holds_up_status_or_stats() {
    let mut c = Cluster::bed(1);
    let dir = tempfile::tempdir().unwrap();
    let (gate, held) = (dir.path().join("gate"), dir.path().join("held"));
    let wrapper = dir.path().join("nft");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n# nft whose loads (-f) wait while {gate} is missing\nfor a in \"$@\"; do\n  \
             if [ \"$a\" = -f ]; then\n    touch {held}\n    \
             while [ ! -e {gate} ]; do sleep 0.05; done\n  fi\ndone\nexec nft \"$@\"\n",
            gate = gate.display(),
            held = held.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(&gate, "").unwrap();
    c.set_agent_args(1, &["--nft", wrapper.to_str().unwrap()]);
    c.start_agent(1);
    c.wait_agent_ready(1);
    c.create(1, "demo", &[]);
    let web = c.netns("web");

    // Close the gate: the connect's ruleset load hangs.
    std::fs::remove_file(&gate).unwrap();
    let _ = std::fs::remove_file(&held);
    let mut connect = c.ovctl_spawn(1, &["network", "connect", "demo", "web", "--netns", &web]);
    wait_until(
        "the connect's nft load to hang",
        Duration::from_secs(30),
        || {
            if held.exists() {
                Ok(())
            } else {
                Err("no load held yet".into())
            }
        },
    );

    let stats = c.ovctl(1, &["stats"]);
    assert_eq!(stats.code, Some(0), "{stats:?}");
    let doctor = c.ovctl(1, &["doctor"]);
    assert!(
        matches!(doctor.code, Some(0 | 1)) && doctor.stdout.contains("agent"),
        "{doctor:?}"
    );
    assert!(
        connect.0.try_wait().unwrap().is_none(),
        "the connect ended before the readers were answered: the test proves nothing"
    );

    // Open the gate: the connect ends (done, or refused if the load outlived its timeout).
    std::fs::write(&gate, "").unwrap();
    let out = Cluster::finish(connect);
    assert!(
        out.code == Some(0) || out.stderr.contains("did not finish"),
        "{out:?}"
    );
}
