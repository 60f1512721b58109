//! A stuck underlay: host 1's underlay device holds every datagram (a `tbf` queue of 8 bit/s
//! with room for 100 MB), so the data plane's socket buffers fill and stay full. A container
//! floods its peer on host 2 through it. The data plane must not wedge:
//!
//! - a send waits for room at most its patience, then its datagrams are dropped and counted
//!   (`send_stalled`), and the worker goes on serving everything else (here: ARP answers);
//! - a send waiting for room (with a patience of an hour) gives up as soon as the data plane
//!   stops, so stopping it returns at once.
//!
//! Needs root, iproute2 and `tc` with the `tbf` qdisc.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ovnet_dataplane::{
    Dataplane, DataplaneConfig, DropReason, FloodEntry, MacAddr, NetworkTable, Vni,
};
use ovnet_sys::netns;
use ovnet_testbed::{in_netns, skip, Container, Host, Testbed};

const MTU: u32 = 1450;

fn vni42() -> Vni {
    Vni::new(42).unwrap()
}

fn vtep(h: &Host) -> SocketAddr {
    SocketAddr::new(h.underlay_ip.into(), 4789)
}

fn mac(c: &Container) -> MacAddr {
    c.mac.parse().unwrap()
}

/// Host 1 with container 10.0.0.2 on `br0`, and host 2 with nothing behind it but a peer
/// container's address in host 1's table.
struct Bed {
    tb: Testbed,
    h1: Host,
    c1: Container,
    table: NetworkTable,
}

fn bed() -> Option<Bed> {
    let mut tb = Testbed::new().unwrap();
    let h1 = tb.add_host(1).unwrap();
    let h2 = tb.add_host(2).unwrap();
    tb.exec(&h1.ns, &["ip", "link", "add", "br0", "type", "bridge"])
        .unwrap();
    tb.exec(&h1.ns, &["ip", "link", "set", "br0", "up"])
        .unwrap();
    let c1 = tb
        .add_container(&h1, "br0", "10.0.0.2/24", MTU, None)
        .unwrap();
    // Every datagram host 1 sends waits in this queue, for ever in a test's terms.
    let held = tb.exec(
        &h1.ns,
        &[
            "tc",
            "qdisc",
            "replace",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            "8bit",
            "burst",
            "1600",
            "limit",
            "100000000",
        ],
    );
    if let Err(e) = held {
        skip(format!(
            "cannot hold the underlay's datagrams with tc tbf: {e}"
        ));
        return None;
    }
    let peer = MacAddr([2, 0x42, 10, 0, 0, 3]);
    let mut t = NetworkTable::new();
    t.local_macs = HashSet::from([mac(&c1)]);
    t.arp.insert(c1.ip, mac(&c1));
    t.nd.insert(mac(&c1).ipv6_link_local(), mac(&c1));
    t.arp.insert(Ipv4Addr::new(10, 0, 0, 3), peer);
    t.macs.insert(peer, vtep(&h2));
    t.flood = vec![FloodEntry {
        addr: vtep(&h2),
        learn: false,
    }];
    Some(Bed {
        tb,
        h1,
        c1,
        table: t,
    })
}

/// Starts the data plane on host 1 with sends waiting at most `patience`.
fn start(b: &Bed, patience: Duration) -> Dataplane {
    let dp = netns::with(&b.h1.ns, || {
        let mut cfg = DataplaneConfig::new(vtep(&b.h1));
        cfg.send_patience = patience;
        // One send socket: the flood fills one buffer.
        cfg.tx_sockets = 1;
        let dp = Dataplane::start(&cfg).unwrap();
        dp.add_network(vni42(), "ovtap42", MTU, &b.table).unwrap();
        dp
    })
    .unwrap();
    b.tb.exec(
        &b.h1.ns,
        &["ip", "link", "set", "ovtap42", "master", "br0", "up"],
    )
    .unwrap();
    dp
}

/// Sends `count` datagrams of 1400 bytes from the container to its peer, without waiting.
fn flood(b: &Bed, count: usize) {
    in_netns(&b.c1.ns, || {
        let s = UdpSocket::bind("10.0.0.2:0").unwrap();
        s.set_nonblocking(true).unwrap();
        for _ in 0..count {
            // The container's own queue may be full too: what it cannot send it drops.
            let _ = s.send_to(&[0x5a; 1400], "10.0.0.3:9");
        }
    })
    .unwrap();
}

/// Polls `cond` every 50 ms for at most `timeout`; panics with `what` otherwise.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_stuck_underlay_costs_counted_drops_not_a_wedged_worker() {
    let Some(b) = bed() else { return };
    let dp = start(&b, Duration::from_millis(200));
    let counters = || dp.counters(vni42()).unwrap();
    // The buffer (4 MiB) fills within a few thousand datagrams; keep sending until sends give up.
    wait_for(
        "sends to give up and be counted",
        Duration::from_secs(60),
        || {
            flood(&b, 2000);
            counters().dropped(DropReason::SendStalled) > 0
        },
    );
    // The worker is not stuck: it still answers the container's ARP from the table.
    let before = counters().arp_replies;
    wait_for(
        "an ARP answer while the underlay is stuck",
        Duration::from_secs(30),
        || {
            let _ = b.tb.exec(&b.c1.ns, &["ip", "neigh", "flush", "all"]);
            let _ =
                b.tb.exec(&b.c1.ns, &["ping", "-c", "1", "-W", "1", "10.0.0.3"]);
            counters().arp_replies > before
        },
    );
    eprintln!("{:?}", counters());
    assert_eq!(counters().dropped(DropReason::SendError), 0);
}

#[test]
fn stopping_ends_a_send_that_waits_for_room() {
    let Some(b) = bed() else { return };
    // Patient enough that only stopping can end the wait.
    let dp = start(&b, Duration::from_secs(3600));
    // Until a send is waiting: then the TAP is no longer read, and the container's frames
    // pile up in the TAP's queue (counted as the TAP's drops once it is full).
    let tap_drops = || {
        b.tb.exec(
            &b.h1.ns,
            &["cat", "/sys/class/net/ovtap42/statistics/tx_dropped"],
        )
        .map(|s| s.trim().parse::<u64>().unwrap_or(0))
        .unwrap_or(0)
    };
    wait_for("a worker waiting for room", Duration::from_secs(60), || {
        flood(&b, 2000);
        tap_drops() > 0
    });
    let (done, stopped) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        dp.shutdown();
        let _ = done.send(());
    });
    // Generous: the wait checks for the stop every 20 ms.
    stopped
        .recv_timeout(Duration::from_secs(20))
        .expect("the data plane did not stop while a send waited for room");
    eprintln!("stopped in {:?}", started.elapsed());
}
