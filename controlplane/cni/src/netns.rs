//! What a network namespace holds, read with iproute2's JSON output (`ip -j`), entered with
//! `nsenter --net=PATH`: links with their addresses, and IPv4 routes.
//!
//! ADD reads the routes the agent made in the container to report them; CHECK reads links,
//! addresses and routes to compare them with `prevResult`. The parsers are pure functions of
//! the command's output, tested on their own. (The plugin runs in the runtime's namespace, the
//! host's, where `/sys` may belong to another namespace; netlink through `ip` does not.)

use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

/// Upper bound on one `ip` run: it answers in milliseconds unless the system is wedged.
const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// A link as `ip -j addr show` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Link {
    /// Its name.
    pub ifname: String,
    /// Its MAC address (absent for some link types).
    #[serde(default)]
    pub address: Option<String>,
    /// Its MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `UP`, `LOWER_UP`, ...
    #[serde(default)]
    pub flags: Vec<String>,
    /// Its addresses.
    #[serde(default)]
    pub addr_info: Vec<AddrInfo>,
}

/// One address of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AddrInfo {
    /// `inet` or `inet6`.
    #[serde(default)]
    pub family: String,
    /// The address.
    #[serde(default)]
    pub local: String,
    /// Its prefix length.
    #[serde(default)]
    pub prefixlen: u8,
}

impl Link {
    /// Whether the link is administratively up.
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// Its IPv4 addresses as `A.B.C.D/LEN`.
    pub fn ipv4_cidrs(&self) -> Vec<String> {
        self.addr_info
            .iter()
            .filter(|a| a.family == "inet")
            .map(|a| format!("{}/{}", a.local, a.prefixlen))
            .collect()
    }
}

/// An IPv4 route as `ip -j -4 route show` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteEntry {
    /// `default`, `A.B.C.D/LEN` or a host address without a length.
    pub dst: String,
    /// The next hop, if any.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The output device.
    #[serde(default)]
    pub dev: Option<String>,
    /// `kernel` for the routes the kernel adds with an address.
    #[serde(default)]
    pub protocol: Option<String>,
}

impl RouteEntry {
    /// The destination in CIDR notation, as a CNI result writes it (`0.0.0.0/0`, `/32` for a
    /// host).
    pub fn cidr(&self) -> String {
        cidr(&self.dst)
    }
}

/// `dst` as CIDR: `default` is `0.0.0.0/0`, a bare address is `/32`.
pub fn cidr(dst: &str) -> String {
    if dst == "default" {
        "0.0.0.0/0".to_owned()
    } else if dst.contains('/') {
        dst.to_owned()
    } else {
        format!("{dst}/32")
    }
}

/// Parses `ip -j addr show`.
pub fn parse_links(json: &str) -> Result<Vec<Link>, String> {
    serde_json::from_str(json.trim()).map_err(|e| format!("unexpected `ip -j addr` output: {e}"))
}

/// Parses `ip -j -4 route show`.
pub fn parse_routes(json: &str) -> Result<Vec<RouteEntry>, String> {
    let json = json.trim();
    if json.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(json).map_err(|e| format!("unexpected `ip -j route` output: {e}"))
}

/// Runs `ip ARGS`, inside the namespace at `netns` if given; returns stdout, or what failed.
async fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut cmd = match netns {
        Some(path) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={path}")).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    cmd.args(args).kill_on_drop(true);
    let what = match netns {
        Some(path) => format!("`ip {}` in {path}", args.join(" ")),
        None => format!("`ip {}`", args.join(" ")),
    };
    let out = tokio::time::timeout(IP_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{what} did not finish within {}s", IP_TIMEOUT.as_secs()))?
        .map_err(|e| format!("running {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The links of the namespace at `netns` (the plugin's own with `None`), with addresses.
pub async fn links(netns: Option<&str>) -> Result<Vec<Link>, String> {
    parse_links(&ip(netns, &["-j", "addr", "show"]).await?)
}

/// The IPv4 routes of the main table of the namespace at `netns`.
pub async fn routes(netns: &str) -> Result<Vec<RouteEntry>, String> {
    parse_routes(&ip(Some(netns), &["-j", "-4", "route", "show"]).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What iproute2 6.1 prints for a container with one veth.
    const ADDRS: &str = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00","broadcast":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295}]},{"ifindex":2,"link_index":9,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"qdisc":"noqueue","operstate":"UP","group":"default","txqlen":1000,"link_type":"ether","address":"02:42:0a:00:00:02","broadcast":"ff:ff:ff:ff:ff:ff","link_netnsid":0,"addr_info":[{"family":"inet","local":"10.0.0.2","prefixlen":24,"broadcast":"10.0.0.255","scope":"global","label":"eth0","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
    const ROUTES: &str = r#"[{"dst":"default","gateway":"10.0.0.1","dev":"eth0","flags":[]},{"dst":"10.0.0.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"10.0.0.2","flags":[]},{"dst":"192.0.2.7","gateway":"10.0.0.1","dev":"eth0","flags":[]}]"#;

    #[test]
    fn links_and_addresses() {
        let links = parse_links(ADDRS).unwrap();
        let eth0 = links.iter().find(|l| l.ifname == "eth0").unwrap();
        assert!(eth0.is_up());
        assert_eq!(eth0.address.as_deref(), Some("02:42:0a:00:00:02"));
        assert_eq!(eth0.mtu, Some(1450));
        assert_eq!(eth0.ipv4_cidrs(), ["10.0.0.2/24"]);
        assert!(parse_links("not json").is_err());
    }

    #[test]
    fn routes_in_cidr_form() {
        let routes = parse_routes(ROUTES).unwrap();
        let dsts: Vec<String> = routes.iter().map(RouteEntry::cidr).collect();
        assert_eq!(dsts, ["0.0.0.0/0", "10.0.0.0/24", "192.0.2.7/32"]);
        assert_eq!(routes[0].gateway.as_deref(), Some("10.0.0.1"));
        assert_eq!(routes[1].protocol.as_deref(), Some("kernel"));
        assert_eq!(parse_routes("\n").unwrap(), []);
    }
}
