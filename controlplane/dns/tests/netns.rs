//! The resolver as a container sees it, in a private network namespace: started on an address
//! the namespace does not have yet (`IP_FREEBIND`), then asked by glibc (`getent`) through
//! `/etc/netns/NS/resolv.conf` with `nameserver GATEWAY`, the setup the crate doc prescribes.
//! Needs root (skipped with the reason otherwise).

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;

use common::{config, front_zone_at, Behaviour, FakeUpstream, UPSTREAM_ANSWER};
use ovnet_dns::Resolver;
use ovnet_testbed::{in_netns, run, Testbed};

const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

/// `/etc/netns/NS`, removed on drop (also when the test fails).
struct EtcNetns(PathBuf);

impl EtcNetns {
    fn create(ns: &str, resolv_conf: &str) -> EtcNetns {
        let dir = PathBuf::from("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NS");
        let guard = EtcNetns(dir);
        std::fs::write(guard.0.join("resolv.conf"), resolv_conf).expect("write resolv.conf");
        guard
    }
}

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `getent ARGS` in `ns`: its exit code and stdout.
fn getent(ns: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "getent"])
        .args(args)
        .output()
        .expect("run ip netns exec getent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn glibc_in_a_namespace_resolves_through_the_gateway() {
    let mut tb = match Testbed::new() {
        Ok(tb) => tb,
        Err(e) => {
            println!("SKIPPED glibc_in_a_namespace_resolves_through_the_gateway: {e}");
            return;
        }
    };
    let ns = tb.add_netns("dns").unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_ns = ns.clone();
    // The resolver and a fake upstream on the namespace's loopback, served by a runtime whose
    // every socket is opened from a thread inside the namespace.
    let server = std::thread::spawn(move || {
        in_netns(&server_ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let up = FakeUpstream::start(Behaviour::Answer).await;
                let mut cfg = config(vec![up.addr]);
                cfg.listen = SocketAddr::new(IpAddr::V4(GATEWAY), 53);
                let started = Resolver::start(cfg, front_zone_at(GATEWAY));
                let _ = ready_tx.send(started.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                if let Ok(r) = started {
                    let _ = stop_rx.await;
                    r.stop().await;
                }
            })
        })
    });
    let started = ready_rx.recv().expect("resolver thread");
    started.expect("the resolver starts before its address exists (IP_FREEBIND)");

    // Now the gateway address appears on a bridge, as on a host.
    run(&["ip", "-n", &ns, "link", "add", "gw0", "type", "bridge"]).unwrap();
    run(&["ip", "-n", &ns, "link", "set", "gw0", "up"]).unwrap();
    run(&["ip", "-n", &ns, "addr", "add", "10.77.0.1/24", "dev", "gw0"]).unwrap();
    let _etc = EtcNetns::create(&ns, "nameserver 10.77.0.1\noptions timeout:2 attempts:2\n");

    let (code, out) = getent(&ns, &["hosts", "web"]);
    assert_eq!(
        (code, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["10.77.0.2", "web"])
    );
    let (code, out) = getent(&ns, &["hosts", "Web.Front"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("10.77.0.2"), "{out}");
    let (code, out) = getent(&ns, &["ahostsv4", "db"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("10.77.0.3") && out.contains("10.77.0.13"),
        "{out}"
    );
    // Reverse, as ping and ss show it: NAME.NETWORK.
    let (code, out) = getent(&ns, &["hosts", "10.77.0.2"]);
    assert_eq!(
        (code, out.split_whitespace().collect::<Vec<_>>()),
        (0, vec!["10.77.0.2", "web.front"])
    );
    // Not on the network (exit code 2: not found), and another network's name.
    assert_eq!(getent(&ns, &["hosts", "nothere"]).0, 2);
    assert_eq!(getent(&ns, &["hosts", "web.back"]).0, 2);
    // Forwarded upstream.
    let (code, out) = getent(&ns, &["ahostsv4", "example.com"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&UPSTREAM_ANSWER.to_string()), "{out}");

    drop(stop_tx);
    server.join().unwrap().unwrap();
}
