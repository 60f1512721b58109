//! `ovctl doctor` on a real host: all ok on a healthy one, then each check broken on its own in
//! the host's namespace (underlay MTU, the VTEP address, a sysctl, a firewall that drops
//! forwarded packets, a leftover device, etcd, the agent, a kernel feature turned off) and
//! seen as that one `fail` or `warn` line, with the exit code following the failures.
//! Real agent, etcd and namespaces ([`ovnet_cluster`]).

use std::time::Duration;

use ovnet_cluster::{wait_until, Cluster, Out};

/// The report's lines: (level, check, message).
fn lines(out: &Out) -> Vec<(String, String, String)> {
    out.stdout
        .lines()
        .filter(|l| !l.contains(" checks: "))
        .map(|l| {
            let mut it = l.splitn(3, char::is_whitespace).filter(|s| !s.is_empty());
            let level = it.next().unwrap_or_default().to_owned();
            let rest = l[level.len()..].trim_start();
            let (name, msg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            (level, name.to_owned(), msg.trim_start().to_owned())
        })
        .collect()
}

/// The lines that are not `ok`.
fn bad(out: &Out) -> Vec<(String, String, String)> {
    lines(out)
        .into_iter()
        .filter(|(l, _, _)| l != "ok")
        .collect()
}

struct Doctor<'a> {
    c: &'a Cluster,
}

impl Doctor<'_> {
    fn run(&self) -> Out {
        let out = self.c.ovctl(1, &["doctor"]);
        println!("{}\n{}", out.stdout, out.stderr);
        out
    }

    /// Waits until the only lines that are not ok are `want` (level, check, a word of the
    /// message), and checks the exit code: 1 with a failure, 0 without.
    fn expect(&self, what: &str, want: &[(&str, &str, &str)]) -> Out {
        let out = wait_until(what, Duration::from_secs(60), || {
            let out = self.run();
            let got = bad(&out);
            let matches = got.len() == want.len()
                && want.iter().all(|(l, n, word)| {
                    got.iter()
                        .any(|(gl, gn, gm)| gl == l && gn == n && gm.contains(word))
                });
            if matches {
                Ok(out)
            } else {
                Err(format!("want {want:?}, got {got:?}"))
            }
        });
        let fails = want.iter().any(|(l, _, _)| *l == "fail");
        assert_eq!(out.code, Some(i32::from(fails)), "{what}: {out:?}");
        out
    }
}

#[test]
fn doctor_sees_each_broken_thing_alone() {
    let mut c = Cluster::start(1);
    c.create(1, "demo", &[]);
    let web = c.netns("web");
    c.connect(1, "demo", "web", &web);
    let h1 = c.host(1).ns.clone();

    {
        let d = Doctor { c: &c };
        let out = d.expect("a healthy host", &[]);
        let all = lines(&out);
        for check in [
            "agent",
            "etcd",
            "lease",
            "vtep",
            "udp",
            "mtu",
            "rp_filter",
            "forward",
            "kernel",
            "devices",
        ] {
            assert!(
                all.iter().any(|(_, n, _)| n == check),
                "{check} missing:\n{}",
                out.stdout
            );
        }
        assert!(
            out.stdout
                .contains("network demo: MTU 1450 + 50 fits eth0's 1500"),
            "{}",
            out.stdout
        );

        // The underlay's MTU too small for the network's.
        c.sh(&h1, &["ip", "link", "set", "eth0", "mtu", "1400"]);
        d.expect("a small underlay MTU", &[("warn", "mtu", "--mtu 1350")]);
        c.sh(&h1, &["ip", "link", "set", "eth0", "mtu", "1500"]);
        d.expect("the MTU restored", &[]);

        // A leftover device.
        c.sh(&h1, &["ip", "link", "add", "ovbr999", "type", "bridge"]);
        d.expect("a stray bridge", &[("warn", "devices", "ovbr999")]);
        c.sh(&h1, &["ip", "link", "del", "ovbr999"]);

        // Strict reverse-path filtering host-wide.
        c.sh(&h1, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
        d.expect("strict rp_filter", &[("warn", "rp_filter", "strict")]);
        c.sh(&h1, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);

        // The uplink no longer forwarding (someone else's sysctl).
        let uplink_fwd = "net.ipv4.conf.ovu4789.forwarding";
        if c.sh(&h1, &["sysctl", "-n", uplink_fwd]).trim() == "1" {
            c.sh(&h1, &["sysctl", "-qw", &format!("{uplink_fwd}=0")]);
            d.expect(
                "the uplink not forwarding",
                &[("fail", "uplink", "forwarding 0")],
            );
            c.sh(&h1, &["sysctl", "-qw", &format!("{uplink_fwd}=1")]);
        } else {
            println!("SKIPPED the uplink's forwarding check: no uplink here (kernel before 6.17?)");
        }

        // Docker's FORWARD policy of drop, first without then with the accept rule.
        c.sh(&h1, &["nft", "add", "table", "ip", "filter"]);
        c.sh(
            &h1,
            &[
                "nft",
                "add",
                "chain",
                "ip",
                "filter",
                "FORWARD",
                "{ type filter hook forward priority 0; policy drop; }",
            ],
        );
        d.expect(
            "a FORWARD policy of drop",
            &[("fail", "forward", "DOCKER-USER")],
        );
        c.sh(
            &h1,
            &[
                "nft", "add", "rule", "ip", "filter", "FORWARD", "iifname", "ovu*", "accept",
            ],
        );
        d.expect("the uplink accepted", &[]);
        c.sh(&h1, &["nft", "delete", "table", "ip", "filter"]);

        // The VTEP address gone from the host. A second address keeps the underlay's route,
        // so that etcd stays reachable and only this check fails.
        c.sh(
            &h1,
            &["sysctl", "-qw", "net.ipv4.conf.eth0.promote_secondaries=1"],
        );
        c.sh(
            &h1,
            &["ip", "addr", "add", "192.168.50.101/24", "dev", "eth0"],
        );
        c.sh(
            &h1,
            &["ip", "addr", "del", "192.168.50.1/24", "dev", "eth0"],
        );
        d.expect("the VTEP address gone", &[("fail", "vtep", "192.168.50.1")]);
        c.sh(
            &h1,
            &["ip", "addr", "add", "192.168.50.1/24", "dev", "eth0"],
        );
        c.sh(
            &h1,
            &["ip", "addr", "del", "192.168.50.101/24", "dev", "eth0"],
        );
        d.expect("the VTEP address back", &[]);
    }

    // etcd down: the agent cannot follow it, then cannot keep its lease.
    c.tb.stop_etcd().unwrap();
    Doctor { c: &c }.expect(
        "etcd down",
        &[
            ("fail", "etcd", "unreachable"),
            ("fail", "lease", "not kept"),
        ],
    );
    c.tb.restart_etcd().unwrap();
    Doctor { c: &c }.expect("etcd back", &[]);

    // The agent stopped: it does not answer, nothing listens on UDP 4789, and the devices it
    // left (the container's bridge and veth stay) are unexplained.
    c.stop_agent(1);
    Doctor { c: &c }.expect(
        "the agent stopped",
        &[
            ("fail", "agent", "systemctl start ovnet-agent"),
            ("fail", "udp", "4789"),
            ("warn", "devices", "ovbr"),
        ],
    );

    // A kernel feature refused at start: with strict reverse-path filtering host-wide the
    // uplink cannot be set up (the rp_filter line warns too).
    c.sh(&h1, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"]);
    c.start_agent(1);
    c.wait_agent_ready(1);
    Doctor { c: &c }.expect(
        "tunnel GSO unavailable",
        &[
            ("warn", "rp_filter", "strict"),
            ("warn", "kernel", "UDP tunnel GSO (the uplink) unavailable"),
        ],
    );
    c.sh(&h1, &["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"]);

    // Turned off by the operator: nothing to warn about.
    c.stop_agent(1);
    c.set_agent_args(1, &["--no-tunnel-gso"]);
    c.start_agent(1);
    c.wait_agent_ready(1);
    let out = Doctor { c: &c }.expect("tunnel GSO off by configuration", &[]);
    assert!(
        out.stdout
            .contains("UDP tunnel GSO (the uplink) off by configuration"),
        "{}",
        out.stdout
    );
}
