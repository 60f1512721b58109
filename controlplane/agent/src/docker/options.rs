//! What Docker's requests ask of ovnet, decided as pure functions: the `-o` options of
//! `docker network create`, which subnet a pool is, whether an existing ovnet network fits a
//! Docker network, an endpoint's address and MAC.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use ovnet_wire::MacAddr;
use serde_json::Value;

use super::protocol::Options;
use crate::domain::ipam;
use crate::domain::Network;

/// `-o` keys for the VNI: ovnet's, and the one of Docker's own overlay driver (which takes a
/// comma-separated list, one VNI per subnet: ovnet networks have one subnet).
pub const VNI_KEYS: [&str; 2] = [
    "ovnet.vni",
    "com.docker.network.driver.overlay.vxlanid_list",
];
/// `-o` keys for the MTU: ovnet's, and Docker's for every driver.
pub const MTU_KEYS: [&str; 2] = ["ovnet.mtu", "com.docker.network.driver.mtu"];
/// Where `CreateNetwork` puts the `-o` options.
pub const GENERIC: &str = "com.docker.network.generic";
/// Where `CreateNetwork` says `--internal`.
pub const INTERNAL: &str = "com.docker.network.internal";
/// Where `CreateNetwork` says `--ipv6`.
pub const ENABLE_IPV6: &str = "com.docker.network.enable_ipv6";
/// Where `CreateEndpoint` and `Join` carry `docker run -p`.
pub const PORT_MAP: &str = "com.docker.network.portmap";
/// The label ovnet puts on a network it created for Docker: `docker network rm` removes
/// only those (and only once no endpoint is left on them anywhere).
pub const CREATED_BY: (&str, &str) = ("ovnet.created-by", "docker");

/// What the `-o` options of a Docker network ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverOptions {
    /// A pinned VNI.
    pub vni: Option<u32>,
    /// A pinned MTU.
    pub mtu: Option<u32>,
}

/// The `-o` options (as dockerd keeps them, text) ovnet understands; any other is refused,
/// so a misspelt option is not silently ignored.
pub fn driver_options(opts: &HashMap<String, String>) -> Result<DriverOptions, String> {
    let mut out = DriverOptions::default();
    let mut keys: Vec<&String> = opts.keys().collect();
    keys.sort();
    for key in keys {
        let value = opts[key].trim();
        let number = |what: &str| {
            value
                .parse::<u32>()
                .map_err(|_| format!("invalid {what} {value:?} (-o {key}): not a number"))
        };
        if VNI_KEYS.contains(&key.as_str()) {
            if value.contains(',') {
                return Err(format!(
                    "invalid vni {value:?} (-o {key}): an ovnet network has one subnet, so one VNI"
                ));
            }
            let vni = number("vni")?;
            if out.vni.is_some_and(|v| v != vni) {
                return Err(format!(
                    "-o {} and -o {} ask for different VNIs",
                    VNI_KEYS[0], VNI_KEYS[1]
                ));
            }
            out.vni = Some(vni);
        } else if MTU_KEYS.contains(&key.as_str()) {
            let mtu = number("mtu")?;
            if out.mtu.is_some_and(|m| m != mtu) {
                return Err(format!(
                    "-o {} and -o {} ask for different MTUs",
                    MTU_KEYS[0], MTU_KEYS[1]
                ));
            }
            out.mtu = Some(mtu);
        } else {
            return Err(format!(
                "unknown option {key:?}: ovnet takes -o {} and -o {} (or Docker's {} and {})",
                VNI_KEYS[0], MTU_KEYS[0], VNI_KEYS[1], MTU_KEYS[1]
            ));
        }
    }
    if let Some(v) = out.vni {
        ipam::parse_vni(v).map_err(|e| e.to_string())?;
    }
    if let Some(m) = out.mtu {
        ipam::check_mtu(m).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// What `CreateNetwork`'s `Options` say: the `-o` options, and `--internal`.
pub fn create_options(opts: &Options) -> Result<(DriverOptions, bool), String> {
    if opts.get(ENABLE_IPV6).and_then(Value::as_bool) == Some(true) {
        return Err("ovnet networks are IPv4 only: drop --ipv6".into());
    }
    let generic: HashMap<String, String> = match opts.get(GENERIC) {
        None | Some(Value::Null) => HashMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Ok((k.clone(), other.to_string())),
            })
            .collect::<Result<_, String>>()?,
        Some(other) => return Err(format!("unreadable {GENERIC} option {other}")),
    };
    let internal = opts.get(INTERNAL).and_then(Value::as_bool) == Some(true);
    Ok((driver_options(&generic)?, internal))
}

/// The pool ovnet hands out for `RequestPool`: the requested subnet if it is exactly an ovnet
/// network's (Docker on another host joins that network) or overlaps none; with no subnet,
/// the first free /24 of the default pool.
pub fn choose_pool(requested: &str, existing: &[Network]) -> Result<Ipv4Net, String> {
    if requested.trim().is_empty() {
        let used: Vec<Ipv4Net> = existing.iter().map(|n| n.subnet).collect();
        return ipam::next_free_subnet(&used).ok_or_else(|| {
            format!(
                "no free /{} left in {}: pass --subnet",
                ipam::DEFAULT_SUBNET_LEN,
                ipam::DEFAULT_POOL
            )
        });
    }
    let subnet = ipam::parse_subnet(requested).map_err(|e| e.to_string())?;
    if let Some(n) = existing
        .iter()
        .find(|n| n.subnet != subnet && ipam::overlaps(&subnet, &n.subnet))
    {
        return Err(format!(
            "subnet {subnet} overlaps with subnet {} of network {}",
            n.subnet, n.name
        ));
    }
    Ok(subnet)
}

/// A pool ID this plugin gave: the subnet.
pub fn parse_pool_id(pool_id: &str) -> Result<Ipv4Net, String> {
    ipam::parse_subnet(pool_id).map_err(|_| format!("unknown pool {pool_id:?}: not one of ovnet's"))
}

/// An address with its prefix length (`10.0.0.2/24`), as Docker passes an endpoint's.
pub fn parse_cidr_address(s: &str) -> Result<(Ipv4Addr, Ipv4Net), String> {
    let net: Ipv4Net = s.trim().parse().map_err(|_| {
        format!("invalid address {s:?}: want an IPv4 address with its prefix length")
    })?;
    Ok((net.addr(), net.trunc()))
}

/// Everything an existing ovnet network must agree with for a Docker network to join it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The gateway Docker was given (`--gateway`), if any.
    pub gateway: Option<Ipv4Addr>,
    /// The `-o` options.
    pub options: DriverOptions,
    /// `--internal`.
    pub internal: bool,
}

/// Why the ovnet network `net` does not fit a Docker network asking for `wanted`; `Ok` if
/// it does. (Same subnet is given: that is how they were matched.)
pub fn check_fits(net: &Network, wanted: &Wanted) -> Result<(), String> {
    let mut differ = Vec::new();
    if let Some(vni) = wanted.options.vni {
        if vni != net.vni.get() {
            differ.push(format!("VNI {} (not {vni})", net.vni.get()));
        }
    }
    if let Some(mtu) = wanted.options.mtu {
        if mtu != net.mtu {
            differ.push(format!("MTU {} (not {mtu})", net.mtu));
        }
    }
    if let Some(gw) = wanted.gateway {
        if gw != net.gateway {
            differ.push(format!("gateway {} (not {gw})", net.gateway));
        }
    }
    if wanted.internal != net.internal {
        differ.push(if net.internal {
            "--internal (not given)".to_owned()
        } else {
            "no --internal".to_owned()
        });
    }
    if differ.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "ovnet network {} with subnet {} has {}: create the Docker network with the same \
             options, or drop them",
            net.name,
            net.subnet,
            differ.join(", ")
        ))
    }
}

/// The MAC an endpoint at `ip` gets, checked against one Docker asks for (`--mac-address`):
/// ovnet's rule is `02:42` and the address, on every host, so a MAC says which address it is.
pub fn endpoint_mac(ip: Ipv4Addr, asked: &str) -> Result<MacAddr, String> {
    let mac = MacAddr::from_ipv4_docker(ip);
    if asked.trim().is_empty() || asked.trim().eq_ignore_ascii_case(&mac.to_string()) {
        Ok(mac)
    } else {
        Err(format!(
            "ovnet gives the container at {ip} the MAC {mac} (02:42 and its address): drop \
             --mac-address {asked}"
        ))
    }
}

/// One entry of Docker's `com.docker.network.portmap` (`docker run -p`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct DockerPort {
    /// IP protocol number: 6 TCP, 17 UDP, 132 SCTP.
    proto: u32,
    /// The container's port.
    port: u32,
    /// The host address, empty for all.
    #[serde(rename = "HostIP")]
    host_ip: String,
    /// The host port; 0 when Docker was left to choose (`-p 80`, `-P`).
    host_port: u32,
    /// The end of a range of host ports, 0 or `host_port` for one.
    host_port_end: u32,
}

/// The ports `docker run -p` asks to publish, in ovnet's terms: each one `-p
/// [HOSTIP:]HOSTPORT:CTRPORT[/tcp|/udp]` with one host port chosen by the user (ovnet does
/// not pick host ports for Docker). An IPv6 host address is skipped: ovnet's networks are IPv4.
pub fn published_ports(opts: &Options) -> Result<Vec<ovnet_proto::PortMapping>, String> {
    let entries: Vec<DockerPort> = match opts.get(PORT_MAP) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("unreadable published ports ({PORT_MAP}): {e}"))?,
    };
    let mut out = Vec::new();
    for p in entries {
        let protocol = match p.proto {
            6 => "tcp",
            17 => "udp",
            other => {
                return Err(format!(
                    "ovnet publishes TCP and UDP ports only, not IP protocol {other}"
                ))
            }
        };
        if p.host_port == 0 {
            return Err(format!(
                "ovnet publishes the host port you give: -p HOSTPORT:{}/{protocol} (not -p {} \
                 or -P)",
                p.port, p.port
            ));
        }
        if p.host_port_end != 0 && p.host_port_end != p.host_port {
            return Err(format!(
                "ovnet publishes one host port per mapping, not the range {}-{}",
                p.host_port, p.host_port_end
            ));
        }
        let host_ip = match p.host_ip.trim() {
            "" => Ipv4Addr::UNSPECIFIED.to_string(),
            ip if ip.contains(':') => continue,
            ip => ip.to_owned(),
        };
        out.push(ovnet_proto::PortMapping {
            host_ip,
            host_port: p.host_port,
            container_port: p.port,
            protocol: protocol.to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::network;

    fn opts(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn driver_options_take_ovnets_and_dockers_keys() {
        assert_eq!(driver_options(&opts(&[])), Ok(DriverOptions::default()));
        let d = driver_options(&opts(&[("ovnet.vni", "4000"), ("ovnet.mtu", "1400")])).unwrap();
        assert_eq!((d.vni, d.mtu), (Some(4000), Some(1400)));
        let d = driver_options(&opts(&[
            ("com.docker.network.driver.overlay.vxlanid_list", "4001"),
            ("com.docker.network.driver.mtu", "1300"),
        ]))
        .unwrap();
        assert_eq!((d.vni, d.mtu), (Some(4001), Some(1300)));
        // Both spellings at once must agree.
        assert!(driver_options(&opts(&[
            ("ovnet.vni", "4000"),
            ("com.docker.network.driver.overlay.vxlanid_list", "4000")
        ]))
        .is_ok());
        let e = driver_options(&opts(&[
            ("ovnet.mtu", "1400"),
            ("com.docker.network.driver.mtu", "1300"),
        ]))
        .unwrap_err();
        assert!(e.contains("different MTUs"), "{e}");
    }

    #[test]
    fn bad_and_unknown_driver_options_are_refused() {
        let e = driver_options(&opts(&[("ovnet.vnii", "1")])).unwrap_err();
        assert!(e.starts_with("unknown option \"ovnet.vnii\""), "{e}");
        let e = driver_options(&opts(&[("ovnet.vni", "x")])).unwrap_err();
        assert_eq!(e, "invalid vni \"x\" (-o ovnet.vni): not a number");
        let e = driver_options(&opts(&[(VNI_KEYS[1], "4000,4001")])).unwrap_err();
        assert!(e.contains("one VNI"), "{e}");
        assert!(driver_options(&opts(&[("ovnet.vni", "0")])).is_err());
        assert!(driver_options(&opts(&[("ovnet.vni", "16777216")])).is_err());
        assert!(driver_options(&opts(&[("ovnet.mtu", "67")])).is_err());
        assert!(driver_options(&opts(&[("ovnet.mtu", "9001")])).is_err());
    }

    #[test]
    fn create_options_read_dockers_map() {
        let o: Options = serde_json::from_str(
            r#"{"com.docker.network.enable_ipv6":false,"com.docker.network.internal":true,
                "com.docker.network.generic":{"ovnet.vni":"300"}}"#,
        )
        .unwrap();
        let (d, internal) = create_options(&o).unwrap();
        assert_eq!((d.vni, internal), (Some(300), true));
        let o: Options =
            serde_json::from_str(r#"{"com.docker.network.enable_ipv6":true}"#).unwrap();
        assert!(create_options(&o).unwrap_err().contains("IPv4 only"));
        let o: Options = serde_json::from_str(r#"{"com.docker.network.generic":"x"}"#).unwrap();
        assert!(create_options(&o).is_err());
        assert_eq!(
            create_options(&Options::new()),
            Ok((DriverOptions::default(), false))
        );
    }

    #[test]
    fn pools_are_an_existing_networks_subnet_or_a_free_one() {
        let demo = network("demo", 256, "10.0.0.0/24");
        let existing = [demo];
        assert_eq!(choose_pool("", &[]).unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(
            choose_pool("", &existing).unwrap().to_string(),
            "10.0.1.0/24"
        );
        // Exactly demo's: the Docker network joins demo.
        assert_eq!(
            choose_pool("10.0.0.0/24", &existing).unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert_eq!(
            choose_pool("10.0.0.0/16", &existing).unwrap_err(),
            "subnet 10.0.0.0/16 overlaps with subnet 10.0.0.0/24 of network demo"
        );
        assert!(choose_pool("10.0.0.1/24", &existing).is_err());
        assert!(choose_pool("banana", &existing).is_err());
        assert_eq!(
            parse_pool_id("10.0.0.0/24").unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert!(parse_pool_id("pool1")
            .unwrap_err()
            .contains("not one of ovnet's"));
    }

    #[test]
    fn existing_networks_fit_only_with_the_same_options() {
        let demo = network("demo", 256, "10.0.0.0/24");
        assert_eq!(check_fits(&demo, &Wanted::default()), Ok(()));
        let same = Wanted {
            gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
            options: DriverOptions {
                vni: Some(256),
                mtu: Some(1450),
            },
            internal: false,
        };
        assert_eq!(check_fits(&demo, &same), Ok(()));
        let other = Wanted {
            gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
            options: DriverOptions {
                vni: Some(300),
                mtu: None,
            },
            internal: true,
        };
        assert_eq!(
            check_fits(&demo, &other).unwrap_err(),
            "ovnet network demo with subnet 10.0.0.0/24 has VNI 256 (not 300), gateway \
             10.0.0.1 (not 10.0.0.254), no --internal: create the Docker network with the \
             same options, or drop them"
        );
    }

    #[test]
    fn addresses_and_macs() {
        let (ip, net) = parse_cidr_address("10.0.0.7/24").unwrap();
        assert_eq!(
            (ip.to_string(), net.to_string()),
            ("10.0.0.7".into(), "10.0.0.0/24".into())
        );
        assert!(parse_cidr_address("10.0.0.7").is_err());
        assert!(parse_cidr_address("fe80::1/64").is_err());
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        assert_eq!(
            endpoint_mac(ip, "").unwrap().to_string(),
            "02:42:0a:00:00:07"
        );
        assert!(endpoint_mac(ip, "02:42:0A:00:00:07").is_ok());
        let e = endpoint_mac(ip, "02:42:ac:11:00:02").unwrap_err();
        assert!(e.contains("drop --mac-address 02:42:ac:11:00:02"), "{e}");
    }

    #[test]
    fn published_ports_are_dockers_with_a_host_port() {
        let ports = |s: &str| {
            published_ports(&serde_json::from_str::<Options>(s).unwrap()).map(|v| {
                v.iter()
                    .map(|p| {
                        format!(
                            "{}:{}:{}/{}",
                            p.host_ip, p.host_port, p.container_port, p.protocol
                        )
                    })
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(ports("{}"), Ok(vec![]));
        assert_eq!(ports(r#"{"com.docker.network.portmap":[]}"#), Ok(vec![]));
        assert_eq!(ports(r#"{"com.docker.network.portmap":null}"#), Ok(vec![]));
        assert_eq!(
            ports(
                r#"{"com.docker.network.portmap":[
                {"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
                {"Proto":17,"IP":"","Port":53,"HostIP":"127.0.0.1","HostPort":5353},
                {"Proto":6,"IP":"","Port":80,"HostIP":"::","HostPort":8080}]}"#
            ),
            Ok(vec![
                "0.0.0.0:8080:80/tcp".to_owned(),
                "127.0.0.1:5353:53/udp".to_owned()
            ])
        );
        let e = ports(r#"{"com.docker.network.portmap":[{"Proto":6,"Port":80}]}"#).unwrap_err();
        assert!(e.contains("-p HOSTPORT:80/tcp"), "{e}");
        let e = ports(
            r#"{"com.docker.network.portmap":[{"Proto":6,"Port":80,"HostPort":8000,
            "HostPortEnd":8010}]}"#,
        )
        .unwrap_err();
        assert!(e.contains("8000-8010"), "{e}");
        let e = ports(r#"{"com.docker.network.portmap":[{"Proto":132,"Port":80,"HostPort":1}]}"#)
            .unwrap_err();
        assert!(e.contains("protocol 132"), "{e}");
        assert!(ports(r#"{"com.docker.network.portmap":"x"}"#).is_err());
    }
}
