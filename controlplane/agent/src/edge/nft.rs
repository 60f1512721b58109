//! ovnet's own nftables table, `table ip ovnet`: the way out (masquerade), published ports
//! (DNAT), and the forward filter that keeps containers unexposed and networks apart.
//!
//! [`EdgeSpec`] is what this host needs (from the view: its networks and their local
//! endpoints' published ports), [`render`] turns it into the whole ruleset as `nft -f` text, a
//! pure function, and [`Nft::apply`] loads that text in one transaction: the table is created
//! if missing, flushed, and defined again, so every change is atomic and a restarted agent
//! adopts (replaces) what a previous run left. With no network on the host the table is
//! deleted. No other table is ever read or written: Docker's iptables rules (and anybody
//! else's) stay as they are. With the default `nft` the transactions run in the agent's own
//! process ([`ovnet_sys::nftables`]); a program named with `--nft` is run instead.
//!
//! The rules, per network with containers here (bridge `B`, subnet `S`, gateway `G`):
//!
//! | chain (hook) | rule | why |
//! |---|---|---|
//! | prerouting, output (nat) | `ip daddr G {tcp,udp} dport 53 return` | DNS to the gateway is the resolver's, whatever is published |
//! | input (filter) | `ip daddr G {tcp,udp} dport 53 iifname != {B, lo} drop` | the resolver answers its network's containers and the host only: not another network's containers (its names are not theirs), not the underlay (no open resolver) |
//! | prerouting (nat) | `fib daddr type local` (or `ip daddr HOSTIP`) `PROTO dport HP dnat to IP:CP` | published ports, from outside |
//! | output (nat) | the same, for `ip daddr != 127.0.0.0/8` | published ports, from the host itself |
//! | postrouting (nat) | `ip saddr S oifname != B masquerade` (not internal) | the way out, as the host's address |
//! | postrouting (nat) | `oifname B ip saddr S ct status dnat masquerade` | a container reaching a published port of its own network through the host |
//! | forward (filter) | `iifname B oifname B accept` | bridged traffic, when `br_netfilter` is loaded (as Docker loads it) |
//! | forward (filter) | `oifname B ct state established,related accept`, `oifname B ct status dnat accept`, `oifname B drop` | replies and published ports come in, nothing else routed into a network |
//! | forward (filter) | `iifname B drop` (internal) or `iifname B accept` | an internal network's containers reach nothing beyond it |
//!
//! All "into a bridge" rules of every network come before the "out of a bridge" ones, so
//! traffic between two networks is dropped whichever way it goes. Every base chain has policy
//! accept: traffic that is not ovnet's is left to the host's other rules.

use std::fmt::Write as _;
use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Stdio;

use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::domain::ports::PortMapping;
use crate::host::COMMAND_TIMEOUT;

/// The table's family and name: `nft list table ip ovnet` shows it.
pub const TABLE: &str = "ip ovnet";

/// The `nft` program run when none is configured (found on `PATH`; Debian's `nftables`).
pub const DEFAULT_NFT: &str = "nft";

/// How errors name nftables run in the agent's process.
const IN_PROCESS: &str = "nft (libnftables, in the agent)";

/// One published port of a local endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The mapping.
    pub mapping: PortMapping,
    /// The endpoint's address.
    pub container_ip: Ipv4Addr,
}

/// What one network with containers on this host needs from the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkEdge {
    /// The network's bridge, `ovbr<vni>`.
    pub bridge: String,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// Its gateway, on the bridge.
    pub gateway: Ipv4Addr,
    /// Sealed: nothing leaves, no masquerade.
    pub internal: bool,
    /// Ports published to its endpoints on this host.
    pub published: Vec<Published>,
}

/// Everything the table holds, by network (in VNI order, so the text is deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeSpec {
    /// The networks with containers on this host.
    pub networks: Vec<NetworkEdge>,
}

impl EdgeSpec {
    /// Whether any network is not internal, i.e. routes traffic out (IPv4 forwarding needed).
    pub fn routes_out(&self) -> bool {
        self.networks.iter().any(|n| !n.internal)
    }
}

/// The `nft -f` text that makes the table what `spec` says: created if missing, flushed and
/// defined again in one transaction; with no network, deleted (also in one transaction, which
/// succeeds whether or not the table exists).
pub fn render(spec: &EdgeSpec) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!("table {TABLE} {{}}"));
    if spec.networks.is_empty() {
        line(&format!("delete table {TABLE}"));
        return out;
    }
    line(&format!("flush table {TABLE}"));
    line(&format!("table {TABLE} {{"));
    let mut input = String::new();
    let mut pre = String::new();
    let mut output = String::new();
    let mut post = String::new();
    let mut fwd_in = String::new();
    let mut fwd_out = String::new();
    for n in &spec.networks {
        let b = quoted(&n.bridge);
        let (s, g) = (n.subnet, n.gateway);
        let dns = format!("ip daddr {g} meta l4proto {{ tcp, udp }} th dport 53 return");
        rule(&mut pre, &dns);
        rule(&mut output, &dns);
        rule(
            &mut input,
            &format!(
                "ip daddr {g} meta l4proto {{ tcp, udp }} th dport 53 iifname != {{ {b}, \"lo\" }} \
                 counter drop"
            ),
        );
        for p in &n.published {
            let m = &p.mapping;
            let to = format!(
                "{} dport {} dnat to {}:{}",
                m.host.protocol, m.host.port, p.container_ip, m.container_port
            );
            let (pre_match, out_match) = if m.host.ip.is_unspecified() {
                (
                    "fib daddr type local".to_owned(),
                    "ip daddr != 127.0.0.0/8 fib daddr type local".to_owned(),
                )
            } else {
                let d = format!("ip daddr {}", m.host.ip);
                (d.clone(), d)
            };
            rule(&mut pre, &format!("{pre_match} {to}"));
            rule(&mut output, &format!("{out_match} {to}"));
        }
        if !n.internal {
            rule(
                &mut post,
                &format!("ip saddr {s} oifname != {b} masquerade"),
            );
        }
        if !n.published.is_empty() {
            rule(
                &mut post,
                &format!("oifname {b} ip saddr {s} ct status dnat masquerade"),
            );
        }
        rule(&mut fwd_in, &format!("iifname {b} oifname {b} accept"));
        rule(
            &mut fwd_in,
            &format!("oifname {b} ct state established,related accept"),
        );
        rule(&mut fwd_in, &format!("oifname {b} ct status dnat accept"));
        rule(&mut fwd_in, &format!("oifname {b} counter drop"));
        if n.internal {
            rule(&mut fwd_out, &format!("iifname {b} counter drop"));
        } else {
            rule(&mut fwd_out, &format!("iifname {b} accept"));
        }
    }
    chain(
        &mut line,
        "input",
        "filter hook input priority filter",
        &input,
    );
    chain(
        &mut line,
        "prerouting",
        "nat hook prerouting priority dstnat",
        &pre,
    );
    // `dstnat` names -100 in prerouting only: output takes the number.
    chain(
        &mut line,
        "output",
        "nat hook output priority -100",
        &output,
    );
    chain(
        &mut line,
        "postrouting",
        "nat hook postrouting priority srcnat",
        &post,
    );
    fwd_in.push_str(&fwd_out);
    chain(
        &mut line,
        "forward",
        "filter hook forward priority filter",
        &fwd_in,
    );
    line("}");
    out
}

/// An interface name as an nft string (bridge names are `ovbr` and digits; quoting keeps any
/// name one token).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace(['"', '\\'], ""))
}

fn rule(chain: &mut String, r: &str) {
    let _ = writeln!(chain, "\t\t{r}");
}

fn chain(line: &mut impl FnMut(&str), name: &str, kind: &str, rules: &str) {
    line(&format!("\tchain {name} {{"));
    line(&format!("\t\ttype {kind}; policy accept;"));
    for r in rules.lines() {
        line(r);
    }
    line("\t}");
}

/// Why the table could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The program is not there.
    #[error("nftables is needed for the network edge (NAT, published ports, isolation) but {program} was not found: install nftables (deploy/deps.sh) or pass --nft")]
    Missing {
        /// The program as configured.
        program: String,
    },
    /// It could not be run.
    #[error("running {program}: {source}")]
    Spawn {
        /// The program as configured.
        program: String,
        /// Why.
        source: io::Error,
    },
    /// It did not finish in time (a program is killed).
    #[error("{program} did not finish loading ovnet's rules within {COMMAND_TIMEOUT:?}")]
    TimedOut {
        /// The program as configured.
        program: String,
    },
    /// It refused the ruleset.
    #[error("{program} refused ovnet's rules: {stderr}")]
    Refused {
        /// The program as configured.
        program: String,
        /// What it said.
        stderr: String,
    },
}

/// The `nft` program that loads the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    program: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::new(DEFAULT_NFT)
    }
}

impl Nft {
    /// `nft` at `program` (a path, or a name looked up on `PATH`).
    pub fn new(program: impl Into<PathBuf>) -> Nft {
        Nft {
            program: program.into(),
        }
    }

    /// The program: a path, or a name looked up on `PATH`.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Loads `ruleset` ([`render`]'s text, and whatever else is to be loaded in the same
    /// transaction) in one transaction: in this process with the default program
    /// ([`ovnet_sys::nftables`]), where the library is there and this thread's namespace is its
    /// context's; with `nft -f -` otherwise. Given up after [`COMMAND_TIMEOUT`].
    pub async fn apply(&self, ruleset: &str) -> Result<(), NftError> {
        if self.program.as_os_str() == DEFAULT_NFT {
            let text = ruleset.to_owned();
            let run = tokio::task::spawn_blocking(move || {
                ovnet_sys::nftables::Libnft::get().and_then(|l| l.run(&text))
            });
            match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
                Ok(Ok(Some(Ok(_)))) => return Ok(()),
                Ok(Ok(Some(Err(stderr)))) => {
                    return Err(NftError::Refused {
                        program: IN_PROCESS.to_owned(),
                        stderr,
                    })
                }
                // No library, another namespace, or the call panicked: the program.
                Ok(Ok(None) | Err(_)) => {}
                Err(_) => {
                    return Err(NftError::TimedOut {
                        program: IN_PROCESS.to_owned(),
                    })
                }
            }
        }
        self.run_program(ruleset).await
    }

    /// `nft -f -` with `ruleset` on its standard input; killed after [`COMMAND_TIMEOUT`].
    async fn run_program(&self, ruleset: &str) -> Result<(), NftError> {
        let program = self.program.display().to_string();
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => NftError::Missing {
                    program: program.clone(),
                },
                _ => NftError::Spawn {
                    program: program.clone(),
                    source,
                },
            })?;
        let stdin = child.stdin.take();
        let done = async {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading shows as a failure below.
                let _ = stdin.write_all(ruleset.as_bytes()).await;
            }
            child.wait_with_output().await
        };
        let out = tokio::time::timeout(COMMAND_TIMEOUT, done)
            .await
            .map_err(|_| NftError::TimedOut {
                program: program.clone(),
            })?
            .map_err(|source| NftError::Spawn {
                program: program.clone(),
                source,
            })?;
        if out.status.success() {
            return Ok(());
        }
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = format!("it exited with {}", out.status);
        }
        Err(NftError::Refused { program, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ports::{HostPort, Protocol};

    fn net(vni: u32, subnet: &str, internal: bool) -> NetworkEdge {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        NetworkEdge {
            bridge: format!("ovbr{vni}"),
            subnet,
            gateway: subnet.hosts().next().unwrap(),
            internal,
            published: Vec::new(),
        }
    }

    fn publish(ip: &str, port: u16, protocol: Protocol, to: &str, cport: u16) -> Published {
        Published {
            mapping: PortMapping {
                host: HostPort {
                    protocol,
                    ip: ip.parse().unwrap(),
                    port,
                },
                container_port: cport,
            },
            container_ip: to.parse().unwrap(),
        }
    }

    #[test]
    fn nothing_to_do_deletes_the_table_whether_or_not_it_exists() {
        assert_eq!(
            render(&EdgeSpec::default()),
            "table ip ovnet {}\ndelete table ip ovnet\n"
        );
        assert!(!EdgeSpec::default().routes_out());
    }

    #[test]
    fn one_network_with_a_published_port() {
        let mut front = net(256, "10.0.0.0/24", false);
        front
            .published
            .push(publish("0.0.0.0", 8080, Protocol::Tcp, "10.0.0.2", 80));
        front
            .published
            .push(publish("192.168.50.1", 5353, Protocol::Udp, "10.0.0.2", 53));
        let spec = EdgeSpec {
            networks: vec![front],
        };
        assert!(spec.routes_out());
        let want = "\
table ip ovnet {}
flush table ip ovnet
table ip ovnet {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tip daddr 10.0.0.1 meta l4proto { tcp, udp } th dport 53 iifname != { \"ovbr256\", \"lo\" } counter drop
\t}
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 10.0.0.1 meta l4proto { tcp, udp } th dport 53 return
\t\tfib daddr type local tcp dport 8080 dnat to 10.0.0.2:80
\t\tip daddr 192.168.50.1 udp dport 5353 dnat to 10.0.0.2:53
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr 10.0.0.1 meta l4proto { tcp, udp } th dport 53 return
\t\tip daddr != 127.0.0.0/8 fib daddr type local tcp dport 8080 dnat to 10.0.0.2:80
\t\tip daddr 192.168.50.1 udp dport 5353 dnat to 10.0.0.2:53
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip saddr 10.0.0.0/24 oifname != \"ovbr256\" masquerade
\t\toifname \"ovbr256\" ip saddr 10.0.0.0/24 ct status dnat masquerade
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"ovbr256\" oifname \"ovbr256\" accept
\t\toifname \"ovbr256\" ct state established,related accept
\t\toifname \"ovbr256\" ct status dnat accept
\t\toifname \"ovbr256\" counter drop
\t\tiifname \"ovbr256\" accept
\t}
}
";
        assert_eq!(render(&spec), want);
    }

    #[test]
    fn networks_stay_apart_and_internal_ones_stay_in() {
        let spec = EdgeSpec {
            networks: vec![
                net(256, "10.0.0.0/24", false),
                net(257, "10.0.1.0/24", true),
            ],
        };
        let text = render(&spec);
        let forward: Vec<&str> = text
            .split("chain forward {")
            .nth(1)
            .unwrap()
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("iifname") || l.starts_with("oifname"))
            .collect();
        // Every "into a bridge" drop comes before any "out of a bridge" accept: traffic from
        // one network to the other meets the other's drop first.
        let last_in = forward
            .iter()
            .rposition(|l| l.starts_with("oifname"))
            .unwrap();
        let first_out = forward
            .iter()
            .position(|l| l.starts_with("iifname") && !l.contains("oifname"))
            .unwrap();
        assert!(last_in < first_out, "{forward:#?}");
        assert!(forward.contains(&"iifname \"ovbr257\" counter drop"));
        assert!(forward.contains(&"iifname \"ovbr256\" accept"));
        // The internal network is not masqueraded; the other one is.
        assert!(text.contains("ip saddr 10.0.0.0/24 oifname != \"ovbr256\" masquerade"));
        assert!(!text.contains("10.0.1.0/24 oifname != \"ovbr257\" masquerade"));
        // Both gateways keep their DNS.
        assert!(text.contains("ip daddr 10.0.1.1 meta l4proto { tcp, udp } th dport 53 return"));
        // Still routes out: one of them is not internal.
        assert!(spec.routes_out());
        let sealed = EdgeSpec {
            networks: vec![net(257, "10.0.1.0/24", true)],
        };
        assert!(!sealed.routes_out());
    }

    #[tokio::test]
    async fn a_missing_or_failing_nft_says_so() {
        let e = Nft::new("/nonexistent/ovnet-test/nft")
            .apply("table ip ovnet {}\n")
            .await
            .unwrap_err();
        assert!(matches!(e, NftError::Missing { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("install nftables"), "{msg}");
        // `false` reads nothing and fails.
        let e = Nft::new("false").apply("x\n").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "false refused ovnet's rules: it exited with exit status: 1"
        );
    }
}
