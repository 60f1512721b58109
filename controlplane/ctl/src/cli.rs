//! `ovctl`'s command line: the clap definitions, in the shape of `docker network`, and the
//! argument checks made before the agent is called (driver, labels, VTEP addresses).
//!
//! Values the agent owns (subnets, gateways, VNI and MTU ranges, names) are checked by the
//! agent, so there is one source of truth for them and its messages.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ovnet_proto::PortMapping;

use crate::client::CliError;

/// Manage ovnet overlay networks, the way `docker network` does with `-d overlay`.
#[derive(Debug, Parser)]
#[command(name = "ovctl", version)]
pub struct Cli {
    /// Unix socket of the local ovnet-agent.
    #[arg(
        long,
        global = true,
        env = "OVNET_AGENT",
        default_value = "/run/ovnet/agent.sock",
        value_name = "PATH"
    )]
    pub agent: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage the nodes of the cluster.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Show this host's data-plane counters, per network.
    Stats(StatsArgs),
    /// Show this host's data-plane workers (load, flow steering) and offloads.
    Dataplane(DataplaneArgs),
    /// Check this host: agent, etcd, lease, VTEP, UDP port, MTUs, sysctls, firewall, kernel
    /// features, leftover devices. One line per check; exit code 0 only if none fails.
    Doctor,
}

/// `ovctl network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect {
        /// Network names or IDs.
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
    },
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm {
        /// Network names or IDs.
        #[arg(required = true, value_name = "NETWORK")]
        networks: Vec<String>,
    },
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect {
        /// Network name or ID.
        network: String,
        /// Container name.
        container: String,
    },
    /// Manage the external VTEPs of a network (switches, kernel vxlan devices).
    #[command(subcommand)]
    Vtep(VtepCmd),
}

/// `ovctl network create`
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the network (only "overlay").
    #[arg(short = 'd', long, default_value = "overlay")]
    pub driver: String,
    /// Subnet in CIDR format (default: the first free /24 of 10.0.0.0/8).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    /// IPv4 gateway for the subnet (default: its first host).
    #[arg(long, value_name = "IP")]
    pub gateway: Option<String>,
    /// VXLAN network identifier (default: the lowest free one from 256).
    #[arg(long, value_name = "N")]
    pub vni: Option<u32>,
    /// MTU of the container interfaces (default: 1450).
    #[arg(long, value_name = "N")]
    pub mtu: Option<u32>,
    /// Set metadata on the network (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Restrict external access to the network: no default route, nothing leaves the overlay,
    /// no published ports, no upstream DNS.
    #[arg(long)]
    pub internal: bool,
    /// Network name.
    pub name: String,
}

/// `ovctl network ls`
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not truncate the IDs.
    #[arg(long)]
    pub no_trunc: bool,
}

/// `ovctl network connect`
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// IPv4 address (default: the lowest free one).
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    /// Network namespace of the container: a name under /var/run/netns, a path or a pid
    /// (default: the container name).
    #[arg(long, value_name = "NS")]
    pub netns: Option<String>,
    /// Publish a container's port on this host (repeatable); HOSTIP defaults to every
    /// address, the protocol to tcp.
    #[arg(short = 'p', long, value_name = "[HOSTIP:]HOSTPORT:CTRPORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Network name or ID.
    pub network: String,
    /// Container name.
    pub container: String,
}

/// `ovctl network vtep ...`
#[derive(Debug, Subcommand)]
pub enum VtepCmd {
    /// Add an external VTEP to a network's flood list.
    Add {
        /// Network name or ID.
        network: String,
        /// Underlay address of the VTEP: IPv4, optionally with :PORT (4789 by default).
        #[arg(value_name = "IP[:PORT]")]
        address: String,
    },
    /// Remove an external VTEP from a network.
    #[command(visible_alias = "remove")]
    Rm {
        /// Network name or ID.
        network: String,
        /// Underlay address of the VTEP: IPv4, optionally with :PORT (4789 by default).
        #[arg(value_name = "IP[:PORT]")]
        address: String,
    },
    /// List a network's external VTEPs.
    #[command(visible_alias = "list")]
    Ls {
        /// Network name or ID.
        network: String,
    },
}

/// `ovctl node ...`
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List the nodes and whether their agent is alive.
    #[command(visible_alias = "list")]
    Ls,
}

/// `ovctl stats`
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this network (name or ID).
    pub network: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ovctl dataplane`
#[derive(Debug, Args)]
pub struct DataplaneArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Refuses every driver but overlay, before anything is sent to the agent.
pub fn check_driver(driver: &str) -> Result<(), CliError> {
    if driver == "overlay" {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "driver \"{driver}\" is not supported: ovnet only provides -d overlay"
        )))
    }
}

/// `--label k=v` values to a map; the last of repeated keys wins, as in docker.
pub fn parse_labels(labels: &[String]) -> Result<HashMap<String, String>, CliError> {
    labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError::new(format!(
                "invalid argument \"{l}\" for \"--label\" flag: a label must be KEY=VALUE"
            ))),
        })
        .collect()
}

/// `-p [HOSTIP:]HOSTPORT:CTRPORT[/tcp|/udp]` (docker's syntax without ranges) to the API's
/// message; an empty host IP means every address of the host, the agent's default.
pub fn parse_publish(s: &str) -> Result<PortMapping, CliError> {
    let bad = |why: &str| {
        CliError::new(format!(
            "invalid argument \"{s}\" for \"-p, --publish\" flag: {why}"
        ))
    };
    let (ports, protocol) = match s.rsplit_once('/') {
        Some((p, proto)) => match proto.to_ascii_lowercase().as_str() {
            "tcp" | "udp" => (p, proto.to_ascii_lowercase()),
            _ => return Err(bad("the protocol must be tcp or udp")),
        },
        None => (s, "tcp".to_owned()),
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [host, ctr] => ("", *host, *ctr),
        [ip, host, ctr] => (*ip, *host, *ctr),
        [_] => {
            return Err(bad(
                "give the host port too, HOSTPORT:CTRPORT (ovnet does not pick one)",
            ))
        }
        _ => return Err(bad("want [HOSTIP:]HOSTPORT:CTRPORT[/PROTO]")),
    };
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("a port is a number from 1 to 65535 (no ranges)")),
        Ok(p) => Ok(u32::from(p)),
    };
    if !ip.is_empty() && ip.parse::<Ipv4Addr>().is_err() {
        return Err(bad("the host IP must be an IPv4 address"));
    }
    Ok(PortMapping {
        host_ip: ip.to_owned(),
        host_port: port(host)?,
        container_port: port(ctr)?,
        protocol,
    })
}

/// `IPv4[:PORT]` to an address and a port; `None` when no port is given, for the agent to use
/// the VXLAN port (4789, its own default).
pub fn parse_vtep(s: &str) -> Result<(Ipv4Addr, Option<u16>), CliError> {
    let bad = |why: &str| CliError::new(format!("invalid vtep address \"{s}\": {why}"));
    let (ip, port) = match s.split_once(':') {
        None => (s, None),
        Some((ip, port)) => (ip, Some(port)),
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| bad("expected an IPv4 address, optionally with :PORT"))?;
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
            Ok(p) => Some(p),
        },
    };
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(bad("not a unicast address"));
    }
    Ok((ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_overlay() {
        assert!(check_driver("overlay").is_ok());
        assert_eq!(
            check_driver("bridge").unwrap_err().to_string(),
            "driver \"bridge\" is not supported: ovnet only provides -d overlay"
        );
    }

    #[test]
    fn labels() {
        let l = parse_labels(&["env=prod".into(), "empty=".into(), "a=b=c".into()]).unwrap();
        assert_eq!(l["env"], "prod");
        assert_eq!(l["empty"], "");
        assert_eq!(l["a"], "b=c");
        assert_eq!(
            parse_labels(&["env".into()]).unwrap_err().to_string(),
            "invalid argument \"env\" for \"--label\" flag: a label must be KEY=VALUE"
        );
        assert!(parse_labels(&["=x".into()]).is_err());
    }

    #[test]
    fn vtep_addresses() {
        assert_eq!(
            parse_vtep("192.168.1.9").unwrap(),
            ("192.168.1.9".parse().unwrap(), None)
        );
        assert_eq!(
            parse_vtep("192.168.1.9:4790").unwrap(),
            ("192.168.1.9".parse().unwrap(), Some(4790))
        );
        assert_eq!(
            parse_vtep("300.1.1.1").unwrap_err().to_string(),
            "invalid vtep address \"300.1.1.1\": expected an IPv4 address, optionally with :PORT"
        );
        assert_eq!(
            parse_vtep("1.2.3.4:0").unwrap_err().to_string(),
            "invalid vtep address \"1.2.3.4:0\": the port must be a number from 1 to 65535"
        );
        for bad in [
            "1.2.3.4:70000",
            "1.2.3.4:",
            "::1",
            "host",
            "0.0.0.0",
            "239.1.1.1",
        ] {
            assert!(parse_vtep(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn published_ports_in_dockers_syntax() {
        let m = |ip: &str, h: u32, c: u32, p: &str| PortMapping {
            host_ip: ip.into(),
            host_port: h,
            container_port: c,
            protocol: p.into(),
        };
        assert_eq!(parse_publish("8080:80").unwrap(), m("", 8080, 80, "tcp"));
        assert_eq!(
            parse_publish("192.168.50.1:5353:53/udp").unwrap(),
            m("192.168.50.1", 5353, 53, "udp")
        );
        assert_eq!(
            parse_publish("8080:80/TCP").unwrap(),
            m("", 8080, 80, "tcp")
        );
        assert_eq!(
            parse_publish("80").unwrap_err().to_string(),
            "invalid argument \"80\" for \"-p, --publish\" flag: give the host port too, \
             HOSTPORT:CTRPORT (ovnet does not pick one)"
        );
        for bad in [
            "8080:80/sctp",
            "0:80",
            "8080-8081:80",
            "70000:80",
            "host:8080:80",
            "1:2:3:4",
            "",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        let cli = Cli::try_parse_from([
            "ovctl",
            "network",
            "connect",
            "-p",
            "8080:80",
            "demo",
            "web1",
            "--publish",
            "53:53/udp",
        ])
        .unwrap();
        let Command::Network(NetworkCmd::Connect(c)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(c.publish, ["8080:80", "53:53/udp"]);
    }

    #[test]
    fn connect_takes_options_after_positionals() {
        let cli = Cli::try_parse_from([
            "ovctl", "network", "connect", "demo", "web1", "--netns", "ns1", "--ip", "10.0.0.9",
        ])
        .unwrap();
        let Command::Network(NetworkCmd::Connect(c)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!((c.network.as_str(), c.container.as_str()), ("demo", "web1"));
        assert_eq!(c.netns.as_deref(), Some("ns1"));
        assert_eq!(c.ip.as_deref(), Some("10.0.0.9"));
    }
}
