//! End to end, a failing world around the agents: a three-member etcd losing members (the
//! leader included), a host cut off from etcd but not from its peers, and a host that really
//! dies. Real agents, etcd, `ovctl` and traffic ([`ovnet_cluster`]); each test builds its own
//! cluster and prints the figures it measured.

use std::time::{Duration, Instant};

use ovnet_cluster::{ping_summary, wait_until, Cluster, EtcdOptions, Pid};

/// Starts `count` pings at 5 per second from `ns` to `to`, in the background.
fn pinger(c: &mut Cluster, ns: &str, to: &str, count: u32) -> Pid {
    let count = count.to_string();
    c.tb.spawn(
        ns,
        &["ping", "-n", "-c", &count, "-i", "0.2", "-W", "1", to],
        &[],
    )
    .expect("spawn ping")
}

/// Waits for a pinger and returns (sent, received).
fn ping_result(c: &mut Cluster, pid: Pid, within: Duration) -> (u32, u32) {
    let st = c.tb.wait_timeout(pid, within).expect("wait ping");
    let log = c.tb.log(pid).unwrap_or_default();
    assert!(st.is_some(), "ping still running:\n{log}");
    ping_summary(&log).unwrap_or_else(|| panic!("no ping summary:\n{log}"))
}

/// Runs `ovctl ARGS` on host `h` and returns how long it took, asserting success.
fn timed_ok(c: &Cluster, h: usize, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = c.ovctl(h, args);
    let took = t.elapsed();
    assert!(
        out.code == Some(0),
        "`ovctl {}` failed after {took:?}: {}",
        args.join(" "),
        out.stderr
    );
    took
}

/// Kills etcd member `m` and then drives the API on both hosts: every call must succeed, and
/// none may take long. Returns the longest call.
fn calls_through_a_dead_member(c: &mut Cluster, round: usize) -> Duration {
    let mut longest = Duration::ZERO;
    let (ns, name) = (c.netns(&format!("r{round}")), format!("r{round}"));
    longest = longest.max(timed_ok(
        c,
        1,
        &["network", "connect", "demo", &name, "--netns", &ns],
    ));
    for i in 0..10 {
        let h = 1 + i % 2;
        longest = longest.max(timed_ok(c, h, &["network", "inspect", "demo"]));
        longest = longest.max(timed_ok(c, h, &["node", "ls"]));
        let vtep = format!("192.168.50.{}", 100 + i);
        longest = longest.max(timed_ok(c, h, &["network", "vtep", "add", "demo", &vtep]));
        longest = longest.max(timed_ok(c, h, &["network", "vtep", "rm", "demo", &vtep]));
    }
    longest = longest.max(timed_ok(c, 1, &["network", "disconnect", "demo", &name]));
    longest
}

/// Three etcd members: the leader dies, then (after it came back) a follower, then the leader
/// hangs. Traffic does not lose a packet, and every API call on both hosts succeeds within a
/// few seconds of the death and keeps succeeding (a dead member is set aside, not tried on
/// every other call).
#[test]
fn agents_work_through_the_death_of_any_etcd_member() {
    let mut c = Cluster::bed_with(
        2,
        EtcdOptions {
            three: true,
            tls: None,
        },
    );
    for h in [1, 2] {
        c.start_agent(h);
    }
    for h in [1, 2] {
        c.wait_agent_ready(h);
    }
    c.create(1, "demo", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    c.assert_ping(&a, "10.0.0.3");

    // Pings both ways for the whole test (at most ~2 minutes).
    let ab = pinger(&mut c, &a, "10.0.0.3", 600);
    let ba = pinger(&mut c, &b, "10.0.0.2", 600);
    let pinging = Instant::now();

    let leader = wait_until("an etcd leader", Duration::from_secs(20), || {
        c.tb.etcd_leader()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "none yet".to_owned())
    });
    c.tb.kill_etcd_member(leader).expect("kill the leader");
    let killed = Instant::now();
    let longest = calls_through_a_dead_member(&mut c, 1);
    eprintln!(
        "FIGURE leader (member {leader}) killed: 42 API calls in {:?}, the longest {longest:?}",
        killed.elapsed()
    );

    c.tb.restart_etcd_member(leader)
        .expect("the old leader rejoins");
    let now = wait_until("an etcd leader", Duration::from_secs(20), || {
        c.tb.etcd_leader()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "none yet".to_owned())
    });
    let follower = (0..3).find(|&m| m != now).expect("a follower");
    c.tb.kill_etcd_member(follower).expect("kill a follower");
    let killed = Instant::now();
    let longest = calls_through_a_dead_member(&mut c, 2);
    eprintln!(
        "FIGURE follower (member {follower}) killed: 42 API calls in {:?}, the longest \
         {longest:?}",
        killed.elapsed()
    );

    // A member that hangs (SIGSTOP: its connections stay open, nothing answers): once the
    // agents have set it aside, the calls go elsewhere.
    c.tb.restart_etcd_member(follower)
        .expect("the follower rejoins");
    let frozen = wait_until("an etcd leader", Duration::from_secs(20), || {
        c.tb.etcd_leader()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "none yet".to_owned())
    });
    let url = c.tb.etcd_urls()[frozen].clone();
    let needle = format!("etcd member {url} is unreachable");
    let count = |c: &mut Cluster, h: usize| c.agent_log(h).matches(&needle).count();
    let before = [count(&mut c, 1), count(&mut c, 2)];
    c.tb.freeze_etcd_member(frozen, true)
        .expect("freeze the leader");
    let froze = Instant::now();
    let set_aside = wait_until(
        "the agents to set the frozen member aside",
        Duration::from_secs(30),
        || {
            if count(&mut c, 1) > before[0] && count(&mut c, 2) > before[1] {
                Ok(froze.elapsed())
            } else {
                Err("not yet".to_owned())
            }
        },
    );
    let longest = calls_through_a_dead_member(&mut c, 3);
    eprintln!(
        "FIGURE leader (member {frozen}) frozen: set aside by both agents after {set_aside:?}; \
         42 API calls after that, the longest {longest:?}"
    );
    c.tb.freeze_etcd_member(frozen, false)
        .expect("wake the leader");

    // Traffic goes on for 10 s after the last death, then the pings stop.
    std::thread::sleep(Duration::from_secs(10));
    eprintln!("pinged for {:?}", pinging.elapsed());
    for p in [ab, ba] {
        c.tb.kill(p, 2 /* SIGINT */).expect("stop ping");
    }
    let (sent, got) = ping_result(&mut c, ab, Duration::from_secs(10));
    let (sent2, got2) = ping_result(&mut c, ba, Duration::from_secs(10));
    eprintln!(
        "FIGURE pings through two member deaths and a hang: a→b {got}/{sent}, b→a {got2}/{sent2}"
    );
    // A ping stopped by SIGINT may leave its last request unanswered.
    assert!(sent - got <= 1, "a→b lost {} of {sent}", sent - got);
    assert!(sent2 - got2 <= 1, "b→a lost {} of {sent2}", sent2 - got2);
}

/// Whether `node ls` output `table` says `node`'s lease is held (its STATUS column starts
/// with `lease`, not `no lease`).
fn lease(table: &str, node: &str) -> Option<bool> {
    table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            [name, _, _, status, ..] if *name == node => Some(status.starts_with("lease")),
            _ => None,
        }
    })
}

/// nftables in host `h`'s namespace dropping its TCP to etcd (port 2379), the underlay's UDP
/// untouched; `false` undoes it.
fn cut_from_etcd(c: &Cluster, h: usize, cut: bool) {
    let ns = c.host(h).ns.clone();
    if cut {
        c.sh(
            &ns,
            &[
                "nft",
                "add table inet ovnetcut; add chain inet ovnetcut out { type filter hook output \
                 priority 0; }; add rule inet ovnetcut out tcp dport 2379 drop; add chain inet \
                 ovnetcut in { type filter hook input priority 0; }; add rule inet ovnetcut in \
                 tcp sport 2379 drop",
            ],
        );
    } else {
        c.sh(&ns, &["nft", "delete table inet ovnetcut"]);
    }
}

/// A host cut off from etcd for 60 s keeps every established path both ways (its lease
/// expires, its heartbeats go on); a host whose agent is SIGKILLed (its VTEP silent) is marked
/// down and withdrawn within the lease TTL + 2 s.
#[test]
fn a_host_cut_off_from_etcd_keeps_its_paths_and_a_dead_one_is_withdrawn() {
    let mut c = Cluster::bed(3);
    for h in 1..=3 {
        c.set_agent_args(h, &["--lease-ttl", "5"]);
        c.start_agent(h);
    }
    for h in 1..=3 {
        c.wait_agent_ready(h);
    }
    c.create(1, "demo", &[]);
    let (a, b, d) = (c.netns("a"), c.netns("b"), c.netns("d"));
    c.connect(1, "demo", "a", &a); // 10.0.0.2
    c.connect(2, "demo", "b", &b); // 10.0.0.3
    c.connect(3, "demo", "d", &d); // 10.0.0.4
    c.assert_ping(&a, "10.0.0.3");
    c.assert_ping(&a, "10.0.0.4");

    // 60 s cut at 5 pings a second, plus margins: 350 pings (70 s).
    let ab = pinger(&mut c, &a, "10.0.0.3", 350);
    let ba = pinger(&mut c, &b, "10.0.0.2", 350);
    cut_from_etcd(&c, 1, true);
    let cut = Instant::now();
    wait_until(
        "host1's lease to expire at host2",
        Duration::from_secs(30),
        || match lease(&c.ovctl(2, &["node", "ls"]).ok(), "host1") {
            Some(false) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    eprintln!(
        "FIGURE host1's lease seen expired {:?} into the cut",
        cut.elapsed()
    );
    assert_eq!(c.alive(2, "host1"), Some(true), "host1 is heard, so alive");
    if let Some(rest) = Duration::from_secs(60).checked_sub(cut.elapsed()) {
        std::thread::sleep(rest);
    }
    cut_from_etcd(&c, 1, false);
    let (sent, got) = ping_result(&mut c, ab, Duration::from_secs(40));
    let (sent2, got2) = ping_result(&mut c, ba, Duration::from_secs(40));
    eprintln!("FIGURE 60 s cut from etcd: a→b {got}/{sent}, b→a {got2}/{sent2}");
    assert_eq!((sent, got), (350, 350), "a→b lost replies during the cut");
    assert_eq!((sent2, got2), (350, 350), "b→a lost replies during the cut");
    wait_until(
        "host1's lease again",
        Duration::from_secs(30),
        || match lease(&c.ovctl(2, &["node", "ls"]).ok(), "host1") {
            Some(true) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Host 3 dies: its agent and with it its data plane.
    let flooded_to_3 = |c: &Cluster| -> u64 {
        let out = c.sh(&c.host(3).ns, &["nft", "list chain inet ovnetcount in"]);
        out.split("packets ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // Count VXLAN datagrams (I flag set: not heartbeats) from host 1 arriving at host 3.
    c.sh(
        &c.host(3).ns.clone(),
        &[
            "nft",
            "add table inet ovnetcount; add chain inet ovnetcount in { type filter hook input \
             priority 0; }; add rule inet ovnetcount in ip saddr 192.168.50.1 udp dport 4789 \
             @th,64,8 & 0x08 == 0x08 counter",
        ],
    );
    c.kill_agent(3);
    let killed = Instant::now();
    let down = wait_until("host3 down at host1", Duration::from_secs(30), || {
        match c.alive(1, "host3") {
            Some(false) => Ok(killed.elapsed()),
            other => Err(format!("{other:?}")),
        }
    });
    // Flooded frames (ARP for an address nobody has) reach host 3 no more.
    let _ = c.ping_received(&a, "10.0.0.99", 1);
    let before = flooded_to_3(&c);
    let _ = c.ping_received(&a, "10.0.0.98", 2);
    let after = flooded_to_3(&c);
    eprintln!(
        "FIGURE host3 SIGKILLed: marked down at host1 after {down:?} (lease TTL 5 s); flooded \
         datagrams to it after that: {}",
        after - before
    );
    assert_eq!(after, before, "host1 still floods to dead host3");
    c.assert_ping(&a, "10.0.0.3");
}
