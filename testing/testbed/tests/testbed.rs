//! End-to-end checks of the test bed itself (needs root): underlay and bridge connectivity,
//! verified TCP, etcd lifecycle, and that nothing is left behind after drop, panic or SIGKILL.

use std::net::SocketAddr;
use std::time::Duration;

use ovnet_testbed::{
    in_netns, ping, run, sweep_stale, tcp_transfer_verified, Testbed, DIRECT_LINK, ROUTED_LINK,
    UNDERLAY_BRIDGE, UNDERLAY_BRIDGE_MAC,
};

/// Names of all namespaces that contain `needle`.
fn netns_matching(needle: &str) -> Vec<String> {
    run(&["ip", "netns", "list"])
        .expect("ip netns list")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// One HTTP/1.0 request; returns the response body.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> std::io::Result<String> {
    let resp = ovnet_testbed::http::request(addr, method, path, body)?;
    Ok(ovnet_testbed::http::body(&resp).to_owned())
}

fn etcd_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("host:port")
}

#[test]
fn hosts_reach_each_other_over_the_underlay() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    let h2 = tb.add_host(2).unwrap();
    assert_eq!(h2.underlay_ip.to_string(), "192.168.50.2");
    let st = ping(&tb, &h1.ns, "192.168.50.2", 5).unwrap();
    assert!(st.no_loss(), "{st:?}");
    assert!(st.rtt_avg.is_some());
    // The underlay bridge address answers too, and eth0 has the promised mtu.
    assert!(ping(&tb, &h2.ns, "192.168.50.254", 2).unwrap().no_loss());
    let link = tb
        .exec(&h1.ns, &["ip", "-o", "link", "show", "eth0"])
        .unwrap();
    assert!(
        link.contains("mtu 1500") && link.contains("state UP"),
        "{link}"
    );
}

#[test]
fn a_direct_link_joins_two_hosts_beside_the_switch() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    let h2 = tb.add_host(2).unwrap();
    let (a, b) = tb.add_direct_link(&h1, &h2, 60).unwrap();
    assert_eq!(
        (a.to_string(), b.to_string()),
        ("192.168.60.1".into(), "192.168.60.2".into())
    );
    assert!(ping(&tb, &h1.ns, "192.168.60.2", 3).unwrap().no_loss());
    // The route to the other host's direct address goes over the pair, not the switch.
    let route = tb
        .exec(&h1.ns, &["ip", "-o", "route", "get", "192.168.60.2"])
        .unwrap();
    assert!(route.contains(&format!("dev {DIRECT_LINK}")), "{route}");
    // The switched underlay still works beside it.
    assert!(ping(&tb, &h2.ns, "192.168.50.1", 2).unwrap().no_loss());
}

#[test]
fn a_routed_underlay_puts_hosts_in_subnets_of_their_own() {
    let mut tb = Testbed::new().unwrap();
    let hosts: Vec<_> = (1..=3).map(|n| tb.add_host(n).unwrap()).collect();
    let refs: Vec<_> = hosts.iter().collect();
    let routed = tb.add_routed_underlay(&refs, 1400).unwrap();
    let addrs: Vec<String> = routed.iter().map(|r| r.link.to_string()).collect();
    assert_eq!(addrs, ["172.20.1.2", "172.20.2.2", "172.20.3.2"]);
    // Each host's address on lo is routed to it too, from the others' own addresses on lo.
    assert_eq!(routed[1].loopback.to_string(), "172.22.0.2");
    let from_lo = tb
        .exec(
            &hosts[0].ns,
            &[
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "-I",
                "172.22.0.1",
                "172.22.0.2",
            ],
        )
        .unwrap();
    assert!(from_lo.contains(" 0% packet loss"), "{from_lo}");
    // Across the transit link (hosts 1 and 2) and through one router (hosts 1 and 3).
    for to in ["172.20.2.2", "172.20.3.2"] {
        assert!(ping(&tb, &hosts[0].ns, to, 2).unwrap().no_loss(), "to {to}");
        let route = tb
            .exec(&hosts[0].ns, &["ip", "-o", "route", "get", to])
            .unwrap();
        assert!(
            route.contains("via 172.20.1.1") && route.contains(&format!("dev {ROUTED_LINK}")),
            "{route}"
        );
    }
    // Two router hops: the TTL of host 2's answer arrives lowered by two.
    let out = tb
        .exec(&hosts[0].ns, &["ping", "-c", "1", "-W", "2", "172.20.2.2"])
        .unwrap();
    assert!(out.contains("ttl=62"), "{out}");
    // The transit link carries 1400 bytes: larger packets are fragmented on the way unless
    // they forbid it, and then the router says how much fits.
    let big = ["ping", "-c", "1", "-W", "2", "-s", "1450"];
    let frag = tb
        .exec(
            &hosts[0].ns,
            &[&big[..], &["-M", "dont", "172.20.2.2"]].concat(),
        )
        .unwrap();
    assert!(frag.contains(" 0% packet loss"), "{frag}");
    let text = tb
        .exec_any(
            &hosts[0].ns,
            &[&big[..], &["-M", "do", "172.20.2.2"]].concat(),
        )
        .unwrap();
    assert!(text.contains("mtu = 1400"), "{text}");
    // The switch still carries eth0, and the routers are the test bed's own.
    assert!(ping(&tb, &hosts[1].ns, "192.168.50.1", 2)
        .unwrap()
        .no_loss());
    assert_eq!(netns_matching(&format!("{}nrtr", tb.id())).len(), 2);
}

#[test]
fn containers_on_one_bridge_ping_each_other() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    tb.add_bridge(&h1, "br0").unwrap();
    let c1 = tb
        .add_container(&h1, "br0", "10.10.0.2/24", 1450, Some("02:42:0a:0a:00:02"))
        .unwrap();
    let c2 = tb
        .add_container(&h1, "br0", "10.10.0.3/24", 1450, None)
        .unwrap();
    assert_eq!(c1.mac, "02:42:0a:0a:00:02");
    assert_eq!(c2.mac.len(), 17);
    assert_eq!(c1.host_veth, "vc1");
    let port = tb
        .exec(&h1.ns, &["ip", "-o", "link", "show", "vc2"])
        .unwrap();
    assert!(
        port.contains("master br0") && port.contains("mtu 1450"),
        "{port}"
    );
    let st = ping(&tb, &c1.ns, &c2.ip.to_string(), 3).unwrap();
    assert!(st.no_loss(), "{st:?}");
    let st = ping(&tb, &c2.ns, &c1.ip.to_string(), 3).unwrap();
    assert!(st.no_loss(), "{st:?}");
    // The container has no route out of its subnet: nothing reaches the underlay from it.
    // (ping reports "Network is unreachable", which `ping` turns into an error.)
    let out = ping(&tb, &c1.ns, "192.168.50.254", 1);
    assert!(out.as_ref().map_or(true, |st| st.received == 0), "{out:?}");
}

#[test]
fn verified_tcp_transfer_between_containers() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    tb.add_bridge(&h1, "br0").unwrap();
    let a = tb
        .add_container(&h1, "br0", "10.20.0.2/24", 1500, None)
        .unwrap();
    let b = tb
        .add_container(&h1, "br0", "10.20.0.3/24", 1500, None)
        .unwrap();
    tcp_transfer_verified(&tb, &b.ns, &b.ip.to_string(), &a.ns, 10 << 20).unwrap();
    tcp_transfer_verified(&tb, &a.ns, &a.ip.to_string(), &b.ns, 10 << 20).unwrap();
    // Odd sizes and an empty stream work too.
    tcp_transfer_verified(&tb, &b.ns, &b.ip.to_string(), &a.ns, 12_345).unwrap();
    tcp_transfer_verified(&tb, &b.ns, &b.ip.to_string(), &a.ns, 0).unwrap();
}

#[test]
fn tcp_transfer_to_unreachable_address_fails_instead_of_hanging() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    tb.add_bridge(&h1, "br0").unwrap();
    let a = tb
        .add_container(&h1, "br0", "10.30.0.2/24", 1500, None)
        .unwrap();
    let b = tb
        .add_container(&h1, "br0", "10.30.0.3/24", 1500, None)
        .unwrap();
    // Break the path: the server's veth goes down, so the SYN is never answered.
    tb.exec(&h1.ns, &["ip", "link", "set", &b.host_veth, "down"])
        .unwrap();
    let started = std::time::Instant::now();
    let err = tcp_transfer_verified(&tb, &b.ns, &b.ip.to_string(), &a.ns, 1 << 20).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30), "{err}");
}

#[test]
fn namespaces_of_other_test_beds_are_refused() {
    let tb = Testbed::new().unwrap();
    let other = Testbed::new().unwrap();
    assert_ne!(tb.id(), other.id());
    assert!(tb.exec(other.underlay(), &["true"]).is_err());
    assert!(ping(&tb, other.underlay(), "127.0.0.1", 1).is_err());
    assert!(tb.exec(tb.underlay(), &["true"]).is_ok());
}

#[test]
fn etcd_starts_answers_stops_and_restarts_with_its_data() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    let url = tb.start_etcd().unwrap();
    assert_eq!(url, "http://192.168.50.254:2379");
    let addr = etcd_addr(&url);

    // From a host over the underlay: health, and a write through the v3 JSON gateway.
    let health = in_netns(&h1.ns, || http(addr, "GET", "/health", ""))
        .unwrap()
        .unwrap();
    assert!(health.contains(r#""health":"true""#), "{health}");
    // key "ovnet" = "b3ZuZXQ=", value "up" = "dXA="
    let put = r#"{"key":"b3ZuZXQ=","value":"dXA="}"#;
    in_netns(&h1.ns, || http(addr, "POST", "/v3/kv/put", put))
        .unwrap()
        .unwrap();

    // From the test process itself, through the loopback relay.
    let local = etcd_addr(&tb.etcd_local_url().expect("relay after start"));
    assert!(local.ip().is_loopback());
    let got = http(local, "POST", "/v3/kv/range", r#"{"key":"b3ZuZXQ="}"#).unwrap();
    assert!(got.contains(r#""value":"dXA=""#), "{got}");

    tb.stop_etcd().unwrap();
    assert!(!tb.etcd_running());
    assert!(in_netns(&h1.ns, || http(addr, "GET", "/health", ""))
        .unwrap()
        .is_err());
    assert!(http(local, "GET", "/health", "").map_or(true, |b| b.is_empty()));

    tb.restart_etcd().unwrap();
    assert!(tb.etcd_running());
    let got = http(local, "POST", "/v3/kv/range", r#"{"key":"b3ZuZXQ="}"#).unwrap();
    assert!(
        got.contains(r#""value":"dXA=""#),
        "data survives a restart: {got}"
    );

    // Paused: connections are accepted by the kernel but nothing answers.
    tb.pause_etcd().unwrap();
    assert!(in_netns(&h1.ns, || http(addr, "GET", "/health", ""))
        .unwrap()
        .is_err());
    tb.resume_etcd().unwrap();
    let health = in_netns(&h1.ns, || http(addr, "GET", "/health", ""))
        .unwrap()
        .unwrap();
    assert!(health.contains("true"), "{health}");
    assert!(tb.etcd_log().unwrap().contains("serving client traffic"));
}

#[test]
fn spawned_processes_are_tracked_and_killed() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    let pid = tb
        .spawn(
            &h1.ns,
            &["sh", "-c", "echo hello $GREETING; exec sleep 1000"],
            &[("GREETING", "ovnet")],
        )
        .unwrap();
    // The child writes its line when it gets to run: wait for it, generously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !tb.log(pid).unwrap().contains("hello ovnet") {
        assert!(
            std::time::Instant::now() < deadline,
            "no greeting in the log: {:?}",
            tb.log(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(tb.try_wait(pid).unwrap(), None);
    // It really runs inside the host namespace.
    let pids = run(&["ip", "netns", "pids", &h1.ns]).unwrap();
    assert!(
        pids.split_whitespace().any(|p| p == pid.to_string()),
        "{pids}"
    );
    tb.kill(pid, libc::SIGTERM).unwrap();
    let st = tb
        .wait_timeout(pid, Duration::from_secs(5))
        .unwrap()
        .expect("exited");
    assert!(!st.success());
    // Signalling an exited (reaped) process is a no-op, a foreign pid an error.
    tb.kill(pid, libc::SIGKILL).unwrap();
    assert!(tb.kill(ovnet_testbed::Pid(1), libc::SIGTERM).is_err());
}

#[test]
fn drop_removes_every_namespace_and_process() {
    let (id, pid) = {
        let mut tb = Testbed::new().unwrap();
        let h1 = tb.add_host(1).unwrap();
        let h2 = tb.add_host(2).unwrap();
        tb.add_bridge(&h2, "br0").unwrap();
        tb.add_container(&h2, "br0", "10.40.0.2/24", 1500, None)
            .unwrap();
        tb.start_etcd().unwrap();
        // A process that ignores SIGTERM must still go (SIGKILL after the grace period).
        let pid = tb
            .spawn(
                &h1.ns,
                &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
                &[],
            )
            .unwrap();
        let id = tb.id().to_owned();
        assert_eq!(netns_matching(&format!("ov{id}")).len(), 4);
        (id, pid)
    };
    assert_eq!(netns_matching(&format!("ov{id}")), Vec::<String>::new());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn panic_still_cleans_up() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let mut tb = Testbed::new().unwrap();
        tb.add_host(1).unwrap();
        tx.send(tb.id().to_owned()).unwrap();
        panic!("deliberate panic inside a test bed");
    })
    .join();
    assert!(result.is_err());
    let id = rx.recv().unwrap();
    assert_eq!(netns_matching(&format!("ov{id}")), Vec::<String>::new());
}

/// A pid that is not running now (so a name embedding it looks like a SIGKILLed run's).
/// A pid no process can have: above the kernel's `pid_max`. (A pid that is merely free now
/// can be handed to a new process before the sweep looks, as happened under CI load.)
fn dead_pid() -> u32 {
    let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("reading pid_max")
        .trim()
        .parse()
        .expect("pid_max is a number");
    let pid = max + 1;
    assert!(pid < 36u32.pow(5), "the name scheme holds 5 base-36 digits");
    pid
}

fn base36(mut v: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = [b'0'; 5];
    for slot in out.iter_mut().rev() {
        *slot = digits[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn sweeper_removes_leftovers_of_dead_runs_only() {
    let stale_id = format!("{}z", base36(dead_pid()));
    let stale = [format!("ov{stale_id}u"), format!("ov{stale_id}h1")];
    // Same shape but a live pid (ours, registered by a live test bed) must survive, and so
    // must a name outside the scheme.
    let tb = Testbed::new().unwrap();
    let foreign = format!("ovbench{}", std::process::id());
    for ns in stale.iter().chain([&foreign]) {
        run(&["ip", "netns", "add", ns]).unwrap();
    }
    // A leftover process inside a stale namespace is killed.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &stale[1], "sleep", "1000"])
        .spawn()
        .unwrap();
    // Sweep once the sleeper is inside (a parallel test bed's sweep may get there first,
    // which is as good: the assertions below hold either way).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while run(&["ip", "netns", "pids", &stale[1]]).is_ok_and(|p| p.trim().is_empty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    sweep_stale();
    let left = netns_matching("ov");
    run(&["ip", "netns", "del", &foreign]).unwrap();
    for ns in &stale {
        assert!(!left.contains(ns), "{ns} should be swept: {left:?}");
    }
    assert!(left.contains(&foreign), "{left:?}");
    assert!(left.contains(&tb.underlay().to_owned()), "{left:?}");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the sleeper was killed");
}

#[test]
fn test_beds_run_in_parallel() {
    let handles: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                let mut tb = Testbed::new().unwrap();
                let h1 = tb.add_host(1).unwrap();
                tb.add_host(2).unwrap();
                assert!(ping(&tb, &h1.ns, "192.168.50.2", 2).unwrap().no_loss());
                tb.id().to_owned()
            })
        })
        .collect();
    let mut ids: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

/// Not a test on its own: run by `sigkilled_run_is_swept_by_the_next_one` in a child process,
/// which it SIGKILLs once the test bed is up.
#[test]
#[ignore = "helper process for sigkilled_run_is_swept_by_the_next_one"]
fn sigkill_helper() {
    if std::env::var_os("OVNET_TESTBED_SIGKILL_HELPER").is_none() {
        return;
    }
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    tb.start_etcd().unwrap();
    let sleeper = tb.spawn(&h1.ns, &["sleep", "1000"], &[]).unwrap();
    // libtest prints "test sigkill_helper ... " before this on the same line.
    println!("HELPER {} {sleeper}", tb.id());
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn sigkilled_run_is_swept_by_the_next_one() {
    use std::io::BufRead;
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_helper",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("OVNET_TESTBED_SIGKILL_HELPER", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let line = lines
        .find_map(|l| Some(l.ok()?.split_once("HELPER ")?.1.to_owned()))
        .expect("helper reports its test bed");
    let mut words = line.split_whitespace();
    let id = words.next().unwrap().to_owned();
    let sleeper: u32 = words.next().unwrap().parse().unwrap();
    assert_eq!(netns_matching(&format!("ov{id}")).len(), 2);

    // SIGKILL: no Drop runs, so the namespaces, etcd and the sleeper are left behind (until
    // a sweep: the next test bed's here, or one that a test running in parallel starts first).
    helper.kill().unwrap();
    helper.wait().unwrap();

    let _next = Testbed::new().unwrap(); // sweeps
    assert_eq!(netns_matching(&format!("ov{id}")), Vec::<String>::new());
    let gone = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(20));
        // Orphans are reaped by init; a zombie briefly still has a /proc entry.
        std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
            .map_or(true, |s| s.contains(") Z "))
    });
    assert!(gone, "the orphaned sleeper was killed");
    let tmp_left = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("ov{id}-"))
        })
        .count();
    assert_eq!(
        tmp_left, 0,
        "the dead run's temp dir (etcd data) is removed"
    );
}

#[test]
fn bare_namespaces_are_named_checked_and_removed() {
    let name;
    {
        let mut tb = Testbed::new().unwrap();
        name = tb.add_netns("web1").unwrap();
        assert_eq!(name, format!("ov{}nweb1", tb.id()));
        assert!(tb.owns(&name));
        let links = tb.exec(&name, &["ip", "-o", "link", "show"]).unwrap();
        assert_eq!(links.lines().count(), 1, "only lo expected: {links}");
        for bad in ["", "Web", "web-1", "toolonglabel"] {
            assert!(tb.add_netns(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(tb.add_netns("web1").is_err(), "a label is usable once");
    }
    assert!(!Testbed::ns_path(&name).exists(), "{name} left behind");
}

#[test]
fn underlay_bridge_keeps_its_mac_when_hosts_join_later() {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    let u = tb.underlay().to_owned();
    let mac = || {
        tb.exec(&u, &["ip", "-o", "link", "show", UNDERLAY_BRIDGE])
            .unwrap()
    };
    assert!(mac().contains(UNDERLAY_BRIDGE_MAC), "{}", mac());
    for n in 2..=4 {
        tb.add_host(n).unwrap();
    }
    let link = tb
        .exec(&u, &["ip", "-o", "link", "show", UNDERLAY_BRIDGE])
        .unwrap();
    assert!(link.contains(UNDERLAY_BRIDGE_MAC), "{link}");
    // So host 1's ARP entry for the bridge address stays right.
    let neigh = tb
        .exec(&h1.ns, &["ping", "-c", "1", "-W", "1", "192.168.50.254"])
        .and_then(|_| tb.exec(&h1.ns, &["ip", "neigh", "show", "192.168.50.254"]))
        .unwrap();
    assert!(neigh.contains(UNDERLAY_BRIDGE_MAC), "{neigh}");
}
