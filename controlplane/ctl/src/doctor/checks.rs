//! The checks of `ovctl doctor` as pure functions from what was found on the host and asked
//! of the agent ([`Facts`]) to one line each ([`Check`]): ok, warn, or fail with the fix.
//!
//! Gathering the facts is `facts.rs`'s job; here nothing touches the system, so every verdict
//! is tested as a function.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use ovnet_proto::v1::{AgentStatus, DataplaneStatus};

/// VXLAN's overhead on an IPv4 underlay: outer IPv4 (20), UDP (8), VXLAN (8), inner Ethernet
/// (14). A network's MTU plus this must fit the underlay's.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Prefixes of the devices ovnet creates in the host namespace: bridges, TAPs, container
/// veths, the uplink.
pub const DEVICE_PREFIXES: [&str; 4] = ["ovbr", "ovtap", "ovv", "ovu"];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing to do.
    Ok,
    /// Works, but not as well as it could, or something is left over.
    Warn,
    /// Broken: the message says how to fix it.
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that `{:<5}` aligns the report's columns.
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "fail",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`agent`, `etcd`, `mtu`, ...).
    pub name: &'static str,
    /// How it came out.
    pub level: Level,
    /// What was found, and for a failure what to do.
    pub message: String,
}

impl Check {
    fn new(name: &'static str, level: Level, message: impl Into<String>) -> Check {
        Check {
            name,
            level,
            message: message.into(),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {:<10} {}", self.level, self.name, self.message)
    }
}

/// An interface of the host: name, MTU, IPv4 addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its IPv4 addresses.
    pub addrs: Vec<Ipv4Addr>,
    /// Whether it is a loopback device (`link_type` `loopback`): an address on it is a host
    /// address that leaves by the routes, not by it.
    pub loopback: bool,
}

/// A forward-hook chain with a drop policy, and whether some rule of the ruleset accepts the
/// uplink's packets (`iifname "ovu*"` / `iptables -i ovu+ -j ACCEPT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropForward {
    /// `family table chain`, for the message.
    pub chain: String,
    /// A rule accepts packets coming in on the uplink.
    pub uplink_accepted: bool,
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The agent's socket path, for messages.
    pub agent_path: String,
    /// The agent's own state, or why it could not be asked.
    pub status: Result<AgentStatus, String>,
    /// The agent's data plane, when it answered.
    pub dataplane: Option<DataplaneStatus>,
    /// The host's interfaces (host namespace).
    pub interfaces: Result<Vec<Interface>, String>,
    /// Local UDP sockets bound to port `vtep_port`: their addresses (0.0.0.0 for any).
    pub udp_bound: Result<Vec<Ipv4Addr>, String>,
    /// `net.ipv4.conf.all.rp_filter`.
    pub rp_filter_all: Option<u32>,
    /// `net.ipv4.conf.<uplink>.rp_filter` and `.forwarding`, when the uplink exists.
    pub uplink_sysctls: Option<(u32, u32)>,
    /// Forward-hook chains whose policy is drop, from `nft -j list ruleset`, or why the
    /// ruleset could not be read.
    pub drop_forward: Result<Vec<DropForward>, String>,
}

/// Runs every check, in report order.
pub fn run(f: &Facts) -> Vec<Check> {
    let mut out = vec![agent(f)];
    let status = f.status.as_ref().ok();
    if let Some(s) = status {
        out.push(etcd(s));
        out.push(lease(s));
    }
    let vtep = status.and_then(|s| s.vtep_ip.parse::<Ipv4Addr>().ok());
    let underlay = vtep.and_then(|ip| underlay_of(f, ip));
    if let (Some(s), Some(ip)) = (status, vtep) {
        out.push(vtep_present(f, ip));
        out.push(udp(f, ip, s.vtep_port));
        out.extend(mtu(s, underlay));
    } else {
        out.push(udp_without_agent(f));
    }
    out.extend(uplink_settings(f));
    out.push(forward_policy(f));
    if let Some(dp) = &f.dataplane {
        out.extend(kernel(dp));
    }
    out.push(leftovers(f, status));
    out
}

fn agent(f: &Facts) -> Check {
    match &f.status {
        Ok(s) => Check::new(
            "agent",
            Level::Ok,
            format!(
                "ovnet-agent {} answers at {}, node {}",
                s.version, f.agent_path, s.node
            ),
        ),
        Err(e) => Check::new(
            "agent",
            Level::Fail,
            format!("{e}; start it (systemctl start ovnet-agent) or pass --agent"),
        ),
    }
}

fn etcd(s: &AgentStatus) -> Check {
    let urls = s.etcd_endpoints.join(",");
    if s.synced && s.sync_error.is_empty() {
        Check::new(
            "etcd",
            Level::Ok,
            format!("{urls} answers; tables follow it (revision {})", s.revision),
        )
    } else if !s.sync_error.is_empty() {
        Check::new(
            "etcd",
            Level::Fail,
            format!(
                "the agent cannot follow etcd: {}; forwarding continues with the last known \
                 tables",
                s.sync_error
            ),
        )
    } else {
        Check::new(
            "etcd",
            Level::Warn,
            format!("the agent is (re)listing etcd at {urls}; try again in a few seconds"),
        )
    }
}

fn lease(s: &AgentStatus) -> Check {
    if s.lease_alive {
        Check::new(
            "lease",
            Level::Ok,
            format!("node {} is alive (its lease is kept)", s.node),
        )
    } else {
        let why = if s.lease_error.is_empty() {
            "not registered yet".to_owned()
        } else {
            s.lease_error.clone()
        };
        Check::new(
            "lease",
            Level::Fail,
            format!(
                "node {}'s liveness lease is not kept ({why}): other hosts withdraw this \
                 host's VTEP; check that etcd answers this host",
                s.node
            ),
        )
    }
}

/// The interface that holds `ip`.
fn underlay_of(f: &Facts, ip: Ipv4Addr) -> Option<&Interface> {
    f.interfaces
        .as_ref()
        .ok()?
        .iter()
        .find(|i| i.addrs.contains(&ip))
}

fn vtep_present(f: &Facts, ip: Ipv4Addr) -> Check {
    match (&f.interfaces, underlay_of(f, ip)) {
        (Err(e), _) => Check::new("vtep", Level::Warn, format!("cannot list interfaces: {e}")),
        (Ok(_), Some(i)) => Check::new("vtep", Level::Ok, format!("{ip} is on {}", i.name)),
        (Ok(_), None) => Check::new(
            "vtep",
            Level::Fail,
            format!(
                "the VTEP address {ip} is on no interface of this host: peers cannot reach \
                 it; put it back (ip addr add {ip}/PREFIX dev DEV) or restart the agent with \
                 this host's underlay address (--vtep-ip)"
            ),
        ),
    }
}

fn udp(f: &Facts, ip: Ipv4Addr, port: u32) -> Check {
    match &f.udp_bound {
        Err(e) => Check::new("udp", Level::Warn, format!("cannot read UDP sockets: {e}")),
        Ok(b) if b.iter().any(|a| *a == ip || a.is_unspecified()) => Check::new(
            "udp",
            Level::Ok,
            format!("UDP {ip}:{port} is bound (VXLAN)"),
        ),
        Ok(_) => Check::new(
            "udp",
            Level::Fail,
            format!(
                "nothing listens on UDP {ip}:{port}: the agent's data plane is not running; \
                 restart the agent and read its log"
            ),
        ),
    }
}

fn udp_without_agent(f: &Facts) -> Check {
    match &f.udp_bound {
        Ok(b) if !b.is_empty() => Check::new(
            "udp",
            Level::Warn,
            "UDP 4789 is bound, but by no agent that answers: another VTEP (a kernel vxlan \
             device?) holds the port",
        ),
        Ok(_) => Check::new(
            "udp",
            Level::Fail,
            "nothing listens on UDP 4789: no VXLAN traffic reaches this host; start the agent",
        ),
        Err(e) => Check::new("udp", Level::Warn, format!("cannot read UDP sockets: {e}")),
    }
}

fn mtu(s: &AgentStatus, underlay: Option<&Interface>) -> Vec<Check> {
    let Some(dev) = underlay else {
        return Vec::new();
    };
    if dev.loopback {
        // The agent takes the MTU of the routes to its peers; lo's own says nothing.
        return vec![Check::new(
            "mtu",
            Level::Ok,
            format!(
                "the VTEP is a host address on {}: VXLAN leaves by the routes to the peers, \
                 whose MTU the agent records (a network's default fits the smallest)",
                dev.name
            ),
        )];
    }
    if s.networks.is_empty() {
        return vec![Check::new(
            "mtu",
            Level::Ok,
            format!(
                "underlay {} MTU {}; no network set up here yet",
                dev.name, dev.mtu
            ),
        )];
    }
    s.networks
        .iter()
        .map(|n| {
            let need = n.mtu + VXLAN_OVERHEAD;
            if need <= dev.mtu {
                Check::new(
                    "mtu",
                    Level::Ok,
                    format!(
                        "network {}: MTU {} + {VXLAN_OVERHEAD} fits {}'s {}",
                        n.name, n.mtu, dev.name, dev.mtu
                    ),
                )
            } else {
                // The data plane answers what does not fit with ICMP "too big" (TCP adapts)
                // or has it fragmented: it works, at a cost.
                Check::new(
                    "mtu",
                    Level::Warn,
                    format!(
                        "network {}: MTU {} needs an underlay MTU of {need}, {} has {}: larger \
                         packets are answered with ICMP \"too big\" or fragmented; raise it \
                         (ip link set {} mtu {need}) or recreate the network with --mtu {}",
                        n.name,
                        n.mtu,
                        dev.name,
                        dev.mtu,
                        dev.name,
                        dev.mtu.saturating_sub(VXLAN_OVERHEAD)
                    ),
                )
            }
        })
        .collect()
}

/// The uplink (UDP tunnel GSO) needs forwarding on it and no strict reverse-path filter.
fn uplink_settings(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    if f.rp_filter_all == Some(1) {
        out.push(Check::new(
            "rp_filter",
            Level::Warn,
            "net.ipv4.conf.all.rp_filter is 1 (strict): the fast path's uplink stays off and \
             TCP super-frames are segmented in userspace; set it to 2 (loose) or 0",
        ));
    } else if let Some(v) = f.rp_filter_all {
        out.push(Check::new(
            "rp_filter",
            Level::Ok,
            format!("net.ipv4.conf.all.rp_filter is {v}"),
        ));
    }
    if let Some((rp, fwd)) = f.uplink_sysctls {
        if fwd != 1 || rp == 1 {
            out.push(Check::new(
                "uplink",
                Level::Fail,
                format!(
                    "the uplink has forwarding {fwd} and rp_filter {rp}: the host drops the \
                     super-frames it should forward; restart the agent (it sets forwarding 1, \
                     rp_filter 0 on its uplink) and keep other tools off ovu* devices"
                ),
            ));
        } else {
            out.push(Check::new(
                "uplink",
                Level::Ok,
                "forwarding on, no reverse-path filter",
            ));
        }
    }
    out
}

fn forward_policy(f: &Facts) -> Check {
    match &f.drop_forward {
        Err(e) => Check::new(
            "forward",
            Level::Warn,
            format!("cannot read the firewall ({e}); rules of iptables-legacy are not seen"),
        ),
        Ok(chains) => {
            let blocked: Vec<&str> = chains
                .iter()
                .filter(|c| !c.uplink_accepted)
                .map(|c| c.chain.as_str())
                .collect();
            if blocked.is_empty() {
                let msg = if chains.is_empty() {
                    "no forward chain drops by default".to_owned()
                } else {
                    "the FORWARD policy is drop, and a rule accepts the uplink's packets".to_owned()
                };
                Check::new("forward", Level::Ok, msg)
            } else {
                Check::new(
                    "forward",
                    Level::Fail,
                    format!(
                        "the forward policy of {} is drop (Docker sets it) and no rule accepts \
                         the uplink's packets: the fast path falls back to userspace \
                         segmentation; run `iptables -I DOCKER-USER -i ovu+ -j ACCEPT` (or add \
                         `iifname \"ovu*\" accept` to that chain)",
                        blocked.join(", ")
                    ),
                )
            }
        }
    }
}

fn kernel(dp: &DataplaneStatus) -> Vec<Check> {
    if !dp.offloads.is_empty() {
        let mut out: Vec<Check> = dp
            .offloads
            .iter()
            .map(|o| {
                let what = match o.name.as_str() {
                    "udp_gso" => "UDP GSO",
                    "udp_gro" => "UDP GRO",
                    "udp_coalesce" => "UDP coalescing on TAPs",
                    "tunnel_gso" => "UDP tunnel GSO (the uplink)",
                    other => other,
                };
                match o.state.as_str() {
                    "on" => Check::new("kernel", Level::Ok, format!("{what} in use")),
                    "off" => {
                        Check::new("kernel", Level::Ok, format!("{what} off by configuration"))
                    }
                    state => Check::new(
                        "kernel",
                        Level::Warn,
                        format!("{what} {state}: {}", o.reason),
                    ),
                }
            })
            .collect();
        out.push(steering(dp));
        return out;
    }
    let line = |on: bool, what: &str, off: &str| {
        if on {
            Check::new("kernel", Level::Ok, format!("{what} in use"))
        } else {
            Check::new("kernel", Level::Warn, format!("{what} off: {off}"))
        }
    };
    vec![
        line(
            dp.udp_gso,
            "UDP GSO",
            "the kernel refused it or the agent runs with --no-offloads; frames leave in \
             sendmmsg batches",
        ),
        line(
            dp.tunnel_gso,
            "UDP tunnel GSO (the uplink)",
            "needs Linux 6.17+, an IPv4 underlay, no strict rp_filter and a FORWARD chain that \
             accepts ovu*; TCP super-frames are segmented in userspace (see `ovctl dataplane`)",
        ),
        steering(dp),
    ]
}

fn steering(dp: &DataplaneStatus) -> Check {
    if dp.steering || dp.worker_busy_per_mille.len() < 2 {
        Check::new("kernel", Level::Ok, "flow steering in use")
    } else {
        Check::new(
            "kernel",
            Level::Warn,
            "flow steering off: the kernel refused the reuseport program; flows are spread by hash",
        )
    }
}

fn leftovers(f: &Facts, status: Option<&AgentStatus>) -> Check {
    let Ok(ifaces) = &f.interfaces else {
        return Check::new("devices", Level::Warn, "cannot list interfaces");
    };
    let owned: BTreeSet<&str> = status
        .map(|s| s.devices.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let stray: Vec<&str> = ifaces
        .iter()
        .map(|i| i.name.as_str())
        .filter(|n| DEVICE_PREFIXES.iter().any(|p| n.starts_with(p)))
        .filter(|n| !owned.contains(n))
        .collect();
    if stray.is_empty() {
        Check::new("devices", Level::Ok, "no leftover ov* devices")
    } else {
        let how = if status.is_some() {
            "the agent removes those no record explains at its next start"
        } else {
            "a started agent removes those no record explains"
        };
        Check::new(
            "devices",
            Level::Warn,
            format!(
                "ov* devices the agent does not own: {}; remove them with `ip link del NAME`, \
                 or {how}",
                stray.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovnet_proto::v1::LocalNetwork;

    fn status() -> AgentStatus {
        AgentStatus {
            node: "host1".into(),
            vtep_ip: "192.168.50.1".into(),
            vtep_port: 4789,
            etcd_endpoints: vec!["http://192.168.50.254:2379".into()],
            synced: true,
            lease_alive: true,
            revision: 7,
            networks: vec![LocalNetwork {
                name: "demo".into(),
                vni: 256,
                mtu: 1450,
            }],
            devices: vec!["ovbr256".into(), "ovtap256".into(), "ovu4789".into()],
            version: "0.1.0".into(),
            ..Default::default()
        }
    }

    fn healthy() -> Facts {
        Facts {
            agent_path: "/run/ovnet/agent.sock".into(),
            status: Ok(status()),
            dataplane: Some(DataplaneStatus {
                worker_busy_per_mille: vec![0, 0],
                steering: true,
                udp_gso: true,
                tunnel_gso: true,
                ..Default::default()
            }),
            interfaces: Ok(vec![
                Interface {
                    name: "eth0".into(),
                    mtu: 1500,
                    addrs: vec!["192.168.50.1".parse().unwrap()],
                    loopback: false,
                },
                Interface {
                    name: "ovbr256".into(),
                    mtu: 1450,
                    addrs: vec![],
                    loopback: false,
                },
            ]),
            udp_bound: Ok(vec!["192.168.50.1".parse().unwrap()]),
            rp_filter_all: Some(0),
            uplink_sysctls: Some((0, 1)),
            drop_forward: Ok(vec![]),
        }
    }

    fn levels(f: &Facts) -> Vec<(&'static str, Level)> {
        run(f).into_iter().map(|c| (c.name, c.level)).collect()
    }

    fn only_bad(f: &Facts) -> Vec<Check> {
        run(f)
            .into_iter()
            .filter(|c| c.level != Level::Ok)
            .collect()
    }

    #[test]
    fn a_healthy_host_is_all_ok() {
        let f = healthy();
        assert!(only_bad(&f).is_empty(), "{:?}", only_bad(&f));
        let names: Vec<&str> = run(&f).iter().map(|c| c.name).collect();
        for n in [
            "agent",
            "etcd",
            "lease",
            "vtep",
            "udp",
            "mtu",
            "rp_filter",
            "uplink",
            "forward",
            "kernel",
            "devices",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
    }

    #[test]
    fn each_broken_thing_fails_alone_with_its_fix() {
        type Break = Box<dyn Fn(&mut Facts)>;
        let cases: Vec<(&str, Break, &str)> = vec![
            (
                "etcd",
                Box::new(|f| f.status.as_mut().unwrap().sync_error = "deadline".into()),
                "last known tables",
            ),
            (
                "lease",
                Box::new(|f| {
                    let s = f.status.as_mut().unwrap();
                    s.lease_alive = false;
                    s.lease_error = "unreachable".into();
                }),
                "withdraw",
            ),
            (
                "vtep",
                Box::new(|f| f.interfaces.as_mut().unwrap()[0].addrs.clear()),
                "--vtep-ip",
            ),
            (
                "udp",
                Box::new(|f| f.udp_bound = Ok(vec![])),
                "restart the agent",
            ),
            (
                "uplink",
                Box::new(|f| f.uplink_sysctls = Some((1, 1))),
                "rp_filter 0",
            ),
            (
                "forward",
                Box::new(|f| {
                    f.drop_forward = Ok(vec![DropForward {
                        chain: "ip filter FORWARD".into(),
                        uplink_accepted: false,
                    }])
                }),
                "DOCKER-USER -i ovu+",
            ),
        ];
        // An underlay too small for a network: it works (too-big answers, fragments), at a
        // cost.
        let mut f = healthy();
        f.interfaces.as_mut().unwrap()[0].mtu = 1400;
        let bad = only_bad(&f);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].name, bad[0].level), ("mtu", Level::Warn), "{bad:?}");
        assert!(bad[0].message.contains("--mtu 1350"), "{}", bad[0].message);
        // A VTEP that is a host address on lo (an L3 fabric): lo's 65536 is not compared.
        let mut f = healthy();
        f.interfaces.as_mut().unwrap()[0] = Interface {
            name: "lo".into(),
            mtu: 65_536,
            addrs: vec!["192.168.50.1".parse().unwrap()],
            loopback: true,
        };
        assert!(only_bad(&f).is_empty(), "{:?}", only_bad(&f));
        let mtu: Vec<Check> = run(&f).into_iter().filter(|c| c.name == "mtu").collect();
        assert_eq!(mtu.len(), 1, "{mtu:?}");
        assert!(mtu[0].message.contains("routes to the peers"), "{mtu:?}");
        for (name, breakit, fix) in cases {
            let mut f = healthy();
            breakit(&mut f);
            let bad = only_bad(&f);
            assert_eq!(bad.len(), 1, "{name}: {bad:?}");
            assert_eq!((bad[0].name, bad[0].level), (name, Level::Fail), "{bad:?}");
            assert!(bad[0].message.contains(fix), "{name}: {}", bad[0].message);
        }
    }

    #[test]
    fn warnings_do_not_fail() {
        let mut f = healthy();
        f.rp_filter_all = Some(1);
        f.dataplane.as_mut().unwrap().tunnel_gso = false;
        f.interfaces.as_mut().unwrap().push(Interface {
            name: "ovbr999".into(),
            mtu: 1500,
            addrs: vec![],
            loopback: false,
        });
        f.drop_forward = Ok(vec![DropForward {
            chain: "ip filter FORWARD".into(),
            uplink_accepted: true,
        }]);
        let bad = only_bad(&f);
        assert!(bad.iter().all(|c| c.level == Level::Warn), "{bad:?}");
        let names: BTreeSet<&str> = bad.iter().map(|c| c.name).collect();
        assert_eq!(names, BTreeSet::from(["rp_filter", "kernel", "devices"]));
        assert!(bad.iter().any(|c| c.message.contains("ovbr999")));
    }

    #[test]
    fn offloads_refused_warn_with_their_reason_and_configured_off_is_ok() {
        use ovnet_proto::v1::OffloadStatus;
        let mut f = healthy();
        let o = |name: &str, state: &str, reason: &str| OffloadStatus {
            name: name.into(),
            state: state.into(),
            reason: reason.into(),
            since: String::new(),
        };
        f.dataplane.as_mut().unwrap().offloads = vec![
            o("udp_gso", "on", ""),
            o("udp_gro", "off", ""),
            o(
                "tunnel_gso",
                "turned off",
                "uplink ovu4789 refused a frame: EINVAL",
            ),
        ];
        let bad = only_bad(&f);
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert_eq!((bad[0].name, bad[0].level), ("kernel", Level::Warn));
        assert!(
            bad[0]
                .message
                .contains("turned off: uplink ovu4789 refused"),
            "{bad:?}"
        );
        let all = run(&f);
        assert!(all
            .iter()
            .any(|c| c.message == "UDP GRO off by configuration"));
    }

    #[test]
    fn without_an_agent_the_local_checks_still_run() {
        let mut f = healthy();
        f.status = Err("cannot reach the ovnet agent at /x.sock".into());
        f.dataplane = None;
        f.udp_bound = Ok(vec![]);
        f.uplink_sysctls = None;
        let l = levels(&f);
        assert_eq!(l[0], ("agent", Level::Fail));
        assert!(l.contains(&("udp", Level::Fail)), "{l:?}");
        // Every ov* device is unexplained without an agent.
        assert!(l.contains(&("devices", Level::Warn)), "{l:?}");
        assert!(!l.iter().any(|(n, _)| *n == "etcd" || *n == "mtu"), "{l:?}");
    }

    #[test]
    fn lines_read_as_a_table() {
        let c = Check::new("mtu", Level::Fail, "network demo: ...");
        assert_eq!(c.to_string(), "fail  mtu        network demo: ...");
    }
}
