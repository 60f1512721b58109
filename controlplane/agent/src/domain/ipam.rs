//! Address management rules as pure functions: no etcd, no I/O, no clock.
//!
//! The planners ([`super::plan`]) apply them to the current records to decide what the store
//! claims; keeping the rules here means they are unit-tested without a cluster.
//!
//! What it decides:
//! - names of networks, endpoints and nodes: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, like docker (the
//!   rule itself is applied by [`super::values`]);
//! - subnets: IPv4 CIDR, host bits zero, prefix `/30` or shorter; overlap between subnets;
//!   the default pool (the first free `/24` of `10.0.0.0/8`, as docker's overlay driver does);
//! - gateways (the first host by default), endpoint addresses (the lowest free host, skipping
//!   the network address, the gateway and the broadcast address) and requested addresses;
//! - VNIs (`1..=0xFFFFFF`, lowest free from [`FIRST_AUTO_VNI`]) and MTUs (`68..=9000`);
//! - MACs: `02:42` followed by the four IPv4 bytes (docker's scheme, so a container's MAC says
//!   its address: `10.0.0.2` → `02:42:0a:00:00:02`, [`MacAddr::from_ipv4_docker`]).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
#[cfg(doc)]
use ovnet_wire::MacAddr;
use ovnet_wire::Vni;

/// Default MTU of overlay interfaces: 1500 minus 50 bytes of outer Ethernet/IPv4/UDP/VXLAN.
pub const DEFAULT_MTU: u32 = 1450;
/// Smallest MTU accepted (the IPv4 minimum, RFC 791).
pub const MIN_MTU: u32 = 68;
/// Largest MTU accepted (jumbo frames).
pub const MAX_MTU: u32 = 9000;
/// Automatic VNIs start here, leaving the low ones for users who pin theirs (docker's overlay
/// driver also starts at 256).
pub const FIRST_AUTO_VNI: u32 = 256;
/// Longest subnet prefix accepted: a /30 still has a gateway and one endpoint.
pub const MAX_PREFIX_LEN: u8 = 30;
/// The pool that default subnets are carved from.
pub const DEFAULT_POOL: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8) {
    Ok(n) => n,
    Err(_) => panic!("10.0.0.0/8 is a valid network"),
};
/// Prefix length of default subnets.
pub const DEFAULT_SUBNET_LEN: u8 = 24;

/// Why a value was refused. Each message is one line, phrased like docker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// A name does not match `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    #[error("invalid {kind} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName {
        /// "network", "container", "node".
        kind: &'static str,
        /// The refused name.
        name: String,
    },
    /// A name longer than [`crate::domain::values::MAX_NAME_LEN`].
    #[error("invalid {kind} name {shown}...: {len} characters, at most {max} are allowed")]
    NameTooLong {
        /// "network", "container", "node".
        kind: &'static str,
        /// Its first characters.
        shown: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Labels larger than [`crate::domain::values::MAX_LABELS_BYTES`] in all.
    #[error("labels too large: {bytes} bytes of keys and values, at most {max} are allowed")]
    LabelsTooLarge {
        /// Their size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A subnet that is not an IPv4 CIDR, or has host bits set, or is too small.
    #[error("invalid subnet {subnet}: {reason}")]
    InvalidSubnet {
        /// What the user gave.
        subnet: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A gateway that is not a usable host of its subnet.
    #[error("invalid gateway {gateway}: {reason}")]
    InvalidGateway {
        /// What the user gave.
        gateway: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A VNI outside `1..=16777215`.
    #[error("invalid vni {0}: must be between 1 and 16777215")]
    InvalidVni(u32),
    /// An MTU outside `68..=9000`.
    #[error("invalid mtu {0}: must be between 68 and 9000")]
    InvalidMtu(u32),
    /// A requested endpoint address outside the subnet (docker's wording).
    #[error("invalid address {0}: it does not belong to any of this network's subnets")]
    AddressOutsideSubnet(String),
    /// A requested endpoint address that is the subnet's network or broadcast address.
    #[error("invalid address {addr}: it is the network or broadcast address of {subnet}")]
    AddressReserved {
        /// The refused address.
        addr: Ipv4Addr,
        /// The network's subnet.
        subnet: Ipv4Net,
    },
    /// A requested endpoint address equal to the gateway.
    #[error("address already in use: {0} is the network's gateway")]
    AddressIsGateway(Ipv4Addr),
}

/// Parses a user's subnet: IPv4 CIDR, host bits zero, prefix at most [`MAX_PREFIX_LEN`].
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, IpamError> {
    let bad = |reason: String| IpamError::InvalidSubnet {
        subnet: s.to_owned(),
        reason,
    };
    let net: Ipv4Net = s
        .trim()
        .parse()
        .map_err(|_| bad("not an IPv4 CIDR such as 10.1.0.0/24".to_owned()))?;
    if net.prefix_len() > MAX_PREFIX_LEN {
        return Err(bad(format!(
            "prefix /{} leaves no room for a gateway and an endpoint (at most /{MAX_PREFIX_LEN})",
            net.prefix_len()
        )));
    }
    if net.trunc() != net {
        return Err(bad(format!(
            "host bits are set (did you mean {}?)",
            net.trunc()
        )));
    }
    Ok(net)
}

/// True when the two subnets share at least one address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first `/24` of `10.0.0.0/8`, counting from `10.0.0.0/24`, that overlaps none of `used`.
pub fn next_free_subnet(used: &[Ipv4Net]) -> Option<Ipv4Net> {
    DEFAULT_POOL
        .subnets(DEFAULT_SUBNET_LEN)
        .ok()?
        .find(|cand| used.iter().all(|u| !overlaps(cand, u)))
}

/// The first host of a subnet (`.1` of a /24): the default gateway.
pub fn first_host(net: &Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

/// Parses a user's gateway and checks it is a host of `net` (not its network or broadcast
/// address).
pub fn parse_gateway(net: &Ipv4Net, s: &str) -> Result<Ipv4Addr, IpamError> {
    let bad = |reason: String| IpamError::InvalidGateway {
        gateway: s.to_owned(),
        reason,
    };
    let gw: Ipv4Addr = s
        .trim()
        .parse()
        .map_err(|_| bad("not an IPv4 address such as 10.1.0.1".to_owned()))?;
    if !net.contains(&gw) {
        return Err(bad(format!("it is not inside subnet {net}")));
    }
    if gw == net.network() || gw == net.broadcast() {
        return Err(bad(format!(
            "it is the network or broadcast address of {net}"
        )));
    }
    Ok(gw)
}

/// A VNI in `1..=16777215` (0 is valid on the wire, but not a network's).
pub fn parse_vni(vni: u32) -> Result<Vni, IpamError> {
    Vni::new(vni)
        .filter(|v| v.get() > 0)
        .ok_or(IpamError::InvalidVni(vni))
}

/// Checks an MTU is in `68..=9000`.
pub fn check_mtu(mtu: u32) -> Result<(), IpamError> {
    if (MIN_MTU..=MAX_MTU).contains(&mtu) {
        Ok(())
    } else {
        Err(IpamError::InvalidMtu(mtu))
    }
}

/// The lowest VNI from [`FIRST_AUTO_VNI`] up to [`Vni::MAX`] that is not in `used`.
pub fn lowest_free_vni(used: &HashSet<Vni>) -> Option<Vni> {
    (FIRST_AUTO_VNI..=Vni::MAX.get())
        .filter_map(Vni::new)
        .find(|v| !used.contains(v))
}

/// The lowest host of `net` that is neither the gateway nor in `used`.
///
/// The network and broadcast addresses are never returned.
pub fn next_free_ip(
    net: &Ipv4Net,
    gateway: Ipv4Addr,
    used: &HashSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let first = u32::from(net.network()) + 1;
    let last = u32::from(net.broadcast()).checked_sub(1)?;
    (first..=last)
        .map(Ipv4Addr::from)
        .find(|ip| *ip != gateway && !used.contains(ip))
}

/// Checks a requested endpoint address: inside `net`, not its network or broadcast address,
/// not the gateway. Whether another endpoint holds it is the store's question.
pub fn check_requested_ip(net: &Ipv4Net, gateway: Ipv4Addr, ip: Ipv4Addr) -> Result<(), IpamError> {
    if !net.contains(&ip) {
        return Err(IpamError::AddressOutsideSubnet(ip.to_string()));
    }
    if ip == net.network() || ip == net.broadcast() {
        return Err(IpamError::AddressReserved {
            addr: ip,
            subnet: *net,
        });
    }
    if ip == gateway {
        return Err(IpamError::AddressIsGateway(ip));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets() {
        assert_eq!(parse_subnet("10.1.0.0/16").unwrap(), net("10.1.0.0/16"));
        assert_eq!(
            parse_subnet("192.168.7.4/30").unwrap(),
            net("192.168.7.4/30")
        );
        let e = parse_subnet("10.0.0.1/24").unwrap_err().to_string();
        assert!(
            e.contains("host bits are set (did you mean 10.0.0.0/24?)"),
            "{e}"
        );
        let e = parse_subnet("10.0.0.0/31").unwrap_err().to_string();
        assert!(e.contains("prefix /31"), "{e}");
        assert!(parse_subnet("10.0.0.0/32").is_err());
        assert!(parse_subnet("10.0.0.0").is_err());
        assert!(parse_subnet("fd00::/64").is_err());
        assert!(parse_subnet("banana").is_err());
    }

    #[test]
    fn overlap() {
        assert!(overlaps(&net("10.0.0.0/16"), &net("10.0.5.0/24")));
        assert!(overlaps(&net("10.0.5.0/24"), &net("10.0.0.0/16")));
        assert!(overlaps(&net("10.0.0.0/24"), &net("10.0.0.0/24")));
        assert!(!overlaps(&net("10.0.0.0/24"), &net("10.0.1.0/24")));
        assert!(!overlaps(&net("10.0.0.0/25"), &net("10.0.0.128/25")));
    }

    #[test]
    fn default_subnets() {
        assert_eq!(next_free_subnet(&[]), Some(net("10.0.0.0/24")));
        assert_eq!(
            next_free_subnet(&[net("10.0.0.0/24")]),
            Some(net("10.0.1.0/24"))
        );
        // A gap is reused; a wider user subnet is skipped over.
        assert_eq!(
            next_free_subnet(&[net("10.0.1.0/24"), net("10.0.0.0/23")]),
            Some(net("10.0.2.0/24"))
        );
        assert_eq!(
            next_free_subnet(&[net("10.0.0.128/25")]),
            Some(net("10.0.1.0/24"))
        );
        assert_eq!(next_free_subnet(&[net("10.0.0.0/8")]), None);
        // Subnets outside the pool do not matter.
        assert_eq!(
            next_free_subnet(&[net("192.168.0.0/16")]),
            Some(net("10.0.0.0/24"))
        );
    }

    #[test]
    fn gateways() {
        let n = net("10.1.2.0/24");
        assert_eq!(first_host(&n), Ipv4Addr::new(10, 1, 2, 1));
        assert_eq!(
            parse_gateway(&n, "10.1.2.254").unwrap(),
            Ipv4Addr::new(10, 1, 2, 254)
        );
        for bad in ["10.1.3.1", "10.1.2.0", "10.1.2.255", "x", "10.1.2.1/24"] {
            let e = parse_gateway(&n, bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid gateway {bad}")), "{e}");
        }
    }

    #[test]
    fn vnis_and_mtus() {
        assert_eq!(parse_vni(1).map(Vni::get), Ok(1));
        assert_eq!(parse_vni(0xFF_FFFF).map(Vni::get), Ok(0xFF_FFFF));
        assert_eq!(parse_vni(0), Err(IpamError::InvalidVni(0)));
        assert_eq!(parse_vni(1 << 24), Err(IpamError::InvalidVni(1 << 24)));
        check_mtu(68).unwrap();
        check_mtu(9000).unwrap();
        assert!(check_mtu(67).is_err());
        assert!(check_mtu(9001).is_err());
        let vni = |v| Vni::new(v).unwrap();
        let mut used = HashSet::new();
        assert_eq!(lowest_free_vni(&used), Some(vni(256)));
        used.extend([vni(256), vni(257), vni(259), vni(7)]);
        assert_eq!(lowest_free_vni(&used), Some(vni(258)));
    }

    #[test]
    fn endpoint_addresses() {
        let n = net("10.0.0.0/24");
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut used = HashSet::new();
        assert_eq!(
            next_free_ip(&n, gw, &used),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        used.insert(Ipv4Addr::new(10, 0, 0, 2));
        used.insert(Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(
            next_free_ip(&n, gw, &used),
            Some(Ipv4Addr::new(10, 0, 0, 3))
        );
        // A gateway elsewhere leaves .1 free.
        let gw254 = Ipv4Addr::new(10, 0, 0, 254);
        assert_eq!(
            next_free_ip(&n, gw254, &used),
            Some(Ipv4Addr::new(10, 0, 0, 1))
        );
        // A /30 has exactly one endpoint address; the broadcast is never handed out.
        let small = net("10.9.0.0/30");
        let gw = first_host(&small);
        assert_eq!(
            next_free_ip(&small, gw, &HashSet::new()),
            Some(Ipv4Addr::new(10, 9, 0, 2))
        );
        let full: HashSet<_> = [Ipv4Addr::new(10, 9, 0, 2)].into();
        assert_eq!(next_free_ip(&small, gw, &full), None);
    }

    #[test]
    fn requested_addresses() {
        let n = net("10.0.0.0/24");
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        check_requested_ip(&n, gw, Ipv4Addr::new(10, 0, 0, 9)).unwrap();
        assert_eq!(
            check_requested_ip(&n, gw, Ipv4Addr::new(10, 1, 2, 3))
                .unwrap_err()
                .to_string(),
            "invalid address 10.1.2.3: it does not belong to any of this network's subnets"
        );
        assert!(matches!(
            check_requested_ip(&n, gw, Ipv4Addr::new(10, 0, 0, 0)),
            Err(IpamError::AddressReserved { .. })
        ));
        assert!(matches!(
            check_requested_ip(&n, gw, Ipv4Addr::new(10, 0, 0, 255)),
            Err(IpamError::AddressReserved { .. })
        ));
        assert_eq!(
            check_requested_ip(&n, gw, gw),
            Err(IpamError::AddressIsGateway(gw))
        );
    }
}
