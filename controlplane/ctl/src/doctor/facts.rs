//! What `ovctl doctor` looks at, gathered from the host namespace it runs in and from the
//! agent: interfaces and addresses (`ip -j addr`), UDP sockets (`/proc/net/udp`), sysctls,
//! the firewall's forward chains (`nft -j list ruleset`), and the agent's `Status` and
//! `Dataplane` answers. Each source that cannot be read becomes an error string in [`Facts`],
//! never a failed command: the checks then say what they could not see.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use ovnet_proto::v1::{DataplaneRequest, StatusRequest};
use serde_json::Value;

use super::checks::{DropForward, Facts, Interface};
use crate::client::Agent;

/// The VXLAN port assumed when no agent says which one it uses.
const DEFAULT_PORT: u32 = ovnet_wire::VXLAN_PORT as u32;

/// Gathers everything, asking the agent at `path`.
pub async fn gather(path: &Path) -> Facts {
    let (status, dataplane) = match Agent::connect(path).await {
        Ok(agent) => {
            let status = agent
                .call(agent.client().status(StatusRequest {}))
                .await
                .map_err(|e| e.to_string());
            let dp = agent
                .call(agent.client().dataplane(DataplaneRequest {}))
                .await
                .ok();
            (status, dp)
        }
        Err(e) => (Err(e.to_string()), None),
    };
    let port = status.as_ref().map_or(DEFAULT_PORT, |s| s.vtep_port);
    let uplink = format!("ovu{port}");
    let uplink_sysctls = match (
        sysctl(&format!("net/ipv4/conf/{uplink}/rp_filter")),
        sysctl(&format!("net/ipv4/conf/{uplink}/forwarding")),
    ) {
        (Some(rp), Some(fwd)) => Some((rp, fwd)),
        _ => None,
    };
    Facts {
        agent_path: path.display().to_string(),
        status,
        dataplane,
        interfaces: interfaces(),
        udp_bound: udp_bound(port),
        rp_filter_all: sysctl("net/ipv4/conf/all/rp_filter"),
        uplink_sysctls,
        drop_forward: drop_forward(),
    }
}

fn sysctl(name: &str) -> Option<u32> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn run_json(program: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{program}'s JSON: {e}"))
}

/// The host's interfaces with their MTUs and IPv4 addresses.
fn interfaces() -> Result<Vec<Interface>, String> {
    parse_interfaces(&run_json("ip", &["-j", "addr", "show"])?)
}

/// `ip -j addr show` → interfaces.
pub fn parse_interfaces(v: &Value) -> Result<Vec<Interface>, String> {
    let list = v.as_array().ok_or("ip -j addr: not a list")?;
    Ok(list
        .iter()
        .filter_map(|i| {
            let name = i.get("ifname")?.as_str()?.to_owned();
            let mtu = u32::try_from(i.get("mtu")?.as_u64()?).ok()?;
            let addrs = i
                .get("addr_info")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|x| x.get("family").and_then(Value::as_str) == Some("inet"))
                        .filter_map(|x| x.get("local")?.as_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let loopback = i.get("link_type").and_then(Value::as_str) == Some("loopback");
            Some(Interface {
                name,
                mtu,
                addrs,
                loopback,
            })
        })
        .collect())
}

/// Local addresses of the UDP sockets bound to `port` (IPv4 and IPv6 wildcard).
fn udp_bound(port: u32) -> Result<Vec<Ipv4Addr>, String> {
    let v4 = std::fs::read_to_string("/proc/net/udp").map_err(|e| format!("/proc/net/udp: {e}"))?;
    let mut out = parse_proc_udp(&v4, port);
    if let Ok(v6) = std::fs::read_to_string("/proc/net/udp6") {
        // An IPv6 wildcard socket takes IPv4 too (unless v6only): count it as 0.0.0.0.
        let any6 = format!("{}:{port:04X}", "0".repeat(32));
        if v6
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(any6.as_str()))
        {
            out.push(Ipv4Addr::UNSPECIFIED);
        }
    }
    Ok(out)
}

/// `/proc/net/udp`'s `local_address` column (`0132A8C0:12B5`: the address as the kernel's
/// native-endian word, the port in big-endian hex) → addresses bound to `port`.
pub fn parse_proc_udp(text: &str, port: u32) -> Vec<Ipv4Addr> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|local| {
            let (ip, p) = local.split_once(':')?;
            if u32::from_str_radix(p, 16).ok()? != port {
                return None;
            }
            let word = u32::from_str_radix(ip, 16).ok()?;
            Some(Ipv4Addr::from(word.to_ne_bytes()))
        })
        .collect()
}

/// Forward-hook chains with a drop policy, and whether a rule accepts the uplink's packets.
fn drop_forward() -> Result<Vec<DropForward>, String> {
    Ok(parse_ruleset(&run_json("nft", &["-j", "list", "ruleset"])?))
}

/// `nft -j list ruleset` → the forward-hook chains whose policy is drop.
pub fn parse_ruleset(v: &Value) -> Vec<DropForward> {
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Whether a rule accepts `iifname "ovu*"` (or an exact uplink name), per family and table.
    let accepts_uplink = |rule: &Value| {
        let expr = rule.get("expr").and_then(Value::as_array);
        let Some(expr) = expr else { return false };
        let matches_uplink = expr.iter().any(|e| {
            let Some(m) = e.get("match") else {
                return false;
            };
            let left_iif = m
                .get("left")
                .and_then(|l| l.get("meta"))
                .and_then(|m| m.get("key"))
                .and_then(Value::as_str)
                == Some("iifname");
            let right = m.get("right").and_then(Value::as_str).unwrap_or("");
            left_iif && right.starts_with("ovu")
        });
        matches_uplink && expr.iter().any(|e| e.get("accept").is_some())
    };
    let same_table = |a: &Value, b: &Value| {
        a.get("family") == b.get("family") && a.get("table") == b.get("table")
    };
    items
        .iter()
        .filter_map(|i| i.get("chain"))
        .filter(|c| {
            c.get("hook").and_then(Value::as_str) == Some("forward")
                && c.get("policy").and_then(Value::as_str) == Some("drop")
        })
        .map(|c| {
            let uplink_accepted = items
                .iter()
                .filter_map(|i| i.get("rule"))
                .filter(|r| same_table(r, c))
                .any(accepts_uplink);
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
            DropForward {
                chain: format!("{} {} {}", s("family"), s("table"), s("name")),
                uplink_accepted,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_udp_addresses_are_native_endian_words() {
        let text = "  sl  local_address rem_address   st\n\
                    \x20  1: 0132A8C0:12B5 00000000:0000 07\n\
                    \x20  2: 00000000:12B5 00000000:0000 07\n\
                    \x20  3: 0100007F:0035 00000000:0000 07\n";
        let got = parse_proc_udp(text, 4789);
        let want: Vec<Ipv4Addr> = if cfg!(target_endian = "little") {
            vec!["192.168.50.1".parse().unwrap(), Ipv4Addr::UNSPECIFIED]
        } else {
            vec!["1.50.168.192".parse().unwrap(), Ipv4Addr::UNSPECIFIED]
        };
        assert_eq!(got, want);
        assert_eq!(parse_proc_udp(text, 53).len(), 1);
        assert!(parse_proc_udp("garbage\nmore garbage here", 4789).is_empty());
    }

    #[test]
    fn interfaces_from_ip_json() {
        let v: Value = serde_json::from_str(
            r#"[{"ifname":"lo","mtu":65536,"link_type":"loopback","addr_info":[{"family":"inet","local":"127.0.0.1"},{"family":"inet6","local":"::1"}]},
                {"ifname":"eth0","mtu":1500,"addr_info":[{"family":"inet","local":"192.168.50.1","prefixlen":24}]},
                {"ifname":"ovbr256","mtu":1450,"addr_info":[]},
                {"bogus":true}]"#,
        )
        .unwrap();
        let i = parse_interfaces(&v).unwrap();
        assert_eq!(i.len(), 3);
        assert_eq!(i[1].name, "eth0");
        assert_eq!((i[0].loopback, i[1].loopback), (true, false));
        assert_eq!(
            i[1].addrs,
            vec!["192.168.50.1".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(i[2].addrs.is_empty());
        assert!(parse_interfaces(&Value::Null).is_err());
    }

    #[test]
    fn drop_policies_and_uplink_accepts_from_nft_json() {
        let v: Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},
              {"table":{"family":"ip","name":"filter"}},
              {"chain":{"family":"ip","table":"filter","name":"FORWARD","hook":"forward","policy":"drop"}},
              {"chain":{"family":"ip","table":"filter","name":"DOCKER-USER"}},
              {"chain":{"family":"inet","table":"ovnet","name":"forward","hook":"forward","policy":"accept"}},
              {"rule":{"family":"ip","table":"filter","chain":"DOCKER-USER","expr":[
                 {"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"ovu*"}},
                 {"counter":{"packets":0,"bytes":0}},{"accept":null}]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            parse_ruleset(&v),
            vec![DropForward {
                chain: "ip filter FORWARD".into(),
                uplink_accepted: true
            }]
        );
        // Without the rule.
        let mut v2 = v.clone();
        v2["nftables"].as_array_mut().unwrap().pop();
        assert!(!parse_ruleset(&v2)[0].uplink_accepted);
        assert!(parse_ruleset(&Value::Null).is_empty());
    }
}
