//! Address reservations: an address handed out before its endpoint exists.
//!
//! Docker's IPAM protocol asks for a container's address (`RequestAddress`) before the network
//! driver creates and joins its endpoint, and gives the address back (`ReleaseAddress`) after
//! the endpoint is gone. So the Docker plugin claims the address on its own first: the usual
//! claim `{p}ips/{network_id}/{ip}` (which keeps every other host and `ovctl` off it), with a
//! [`Reservation`] beside it saying who holds it and since when. The endpoint, when created,
//! takes the claim over and the reservation goes, in one transaction; a reservation never
//! taken is released by the agent that made it, once it has seen it wait longer than
//! [`RESERVATION_TTL`] (by its own clock: a time stamp written by another host's is only
//! shown).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ovnet_proto::Message;

use super::ipam;
use super::records::{BadRecord, Network};
use super::values::{EndpointId, NetworkId, NodeName};
use crate::error::{AgentError, InUse};

/// How long a reservation may wait for its endpoint before its agent releases it. Docker
/// creates and joins the endpoint right after it got the address (milliseconds); only a
/// runtime that died in between, or an agent that was down when Docker gave the address back,
/// leaves one waiting.
pub const RESERVATION_TTL: Duration = Duration::from_secs(120);

/// An address claimed for an endpoint that does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The address's network.
    pub network_id: NetworkId,
    /// The address.
    pub ipv4: Ipv4Addr,
    /// The claim's value while reserved.
    pub endpoint_id: EndpointId,
    /// The agent that holds it.
    pub node: NodeName,
    /// RFC 3339 time of the reservation.
    pub created: String,
}

fn field<T, E>(field: &'static str, value: &str, parsed: Result<T, E>) -> Result<T, BadRecord> {
    parsed.map_err(|_| BadRecord::Field {
        field,
        value: value.to_owned(),
    })
}

impl Reservation {
    /// A stored reservation.
    pub fn decode(bytes: &[u8]) -> Result<Reservation, BadRecord> {
        let m = ovnet_proto::v1::Reservation::decode(bytes)?;
        Ok(Reservation {
            network_id: field("network_id", &m.network_id, NetworkId::parse(&m.network_id))?,
            ipv4: field("ipv4", &m.ipv4, m.ipv4.parse())?,
            endpoint_id: field(
                "endpoint_id",
                &m.endpoint_id,
                EndpointId::parse(&m.endpoint_id),
            )?,
            node: field("node", &m.node, NodeName::parse(&m.node))?,
            created: m.created,
        })
    }

    /// The message stored in etcd.
    pub fn to_proto(&self) -> ovnet_proto::v1::Reservation {
        ovnet_proto::v1::Reservation {
            network_id: self.network_id.to_string(),
            ipv4: self.ipv4.to_string(),
            endpoint_id: self.endpoint_id.to_string(),
            node: self.node.to_string(),
            created: self.created.clone(),
        }
    }
}

/// The reservation `node` gets in `net` next to the claimed `taken` addresses: a `requested`
/// address must be a free host of the subnet other than the gateway (`docker run --ip`);
/// otherwise the lowest free one.
pub fn plan_reservation(
    net: &Network,
    requested: Option<Ipv4Addr>,
    taken: &HashSet<Ipv4Addr>,
    node: &NodeName,
    endpoint_id: EndpointId,
    created: String,
) -> Result<Reservation, AgentError> {
    let ipv4 = match requested {
        Some(ip) => {
            ipam::check_requested_ip(&net.subnet, net.gateway, ip)?;
            if taken.contains(&ip) {
                return Err(InUse::Address {
                    ip,
                    network: net.name.clone(),
                }
                .into());
            }
            ip
        }
        None => {
            ipam::next_free_ip(&net.subnet, net.gateway, taken).ok_or_else(|| InUse::NoAddress {
                network: net.name.clone(),
                id: net.id.to_string(),
            })?
        }
    };
    Ok(Reservation {
        network_id: net.id.clone(),
        ipv4,
        endpoint_id,
        node: node.clone(),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::records::tests::network;

    #[test]
    fn the_lowest_free_address_or_the_requested_one_if_free() {
        let net = network("demo", 256, "10.0.0.0/29");
        let node = NodeName::parse("host1").unwrap();
        let plan = |req: Option<&str>, taken: &[&str]| {
            let taken = taken.iter().map(|t| t.parse().unwrap()).collect();
            plan_reservation(
                &net,
                req.map(|r| r.parse().unwrap()),
                &taken,
                &node,
                EndpointId::random(),
                "now".into(),
            )
            .map(|r| r.ipv4.to_string())
            .map_err(|e| e.to_string())
        };
        assert_eq!(plan(None, &[]), Ok("10.0.0.2".into()));
        assert_eq!(plan(None, &["10.0.0.2", "10.0.0.3"]), Ok("10.0.0.4".into()));
        assert_eq!(plan(Some("10.0.0.5"), &["10.0.0.2"]), Ok("10.0.0.5".into()));
        assert_eq!(
            plan(Some("10.0.0.5"), &["10.0.0.5"]),
            Err("address already in use: 10.0.0.5 in network demo".into())
        );
        assert!(plan(Some("10.0.0.1"), &[]).unwrap_err().contains("gateway"));
        assert!(plan(Some("10.0.1.5"), &[]).is_err());
        let all = ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"];
        assert!(plan(None, &all)
            .unwrap_err()
            .starts_with("no available IPv4 addresses"));
    }

    fn reservation(created: &str) -> Reservation {
        Reservation {
            network_id: NetworkId::random(),
            ipv4: Ipv4Addr::new(10, 0, 0, 7),
            endpoint_id: EndpointId::random(),
            node: NodeName::parse("host1").unwrap(),
            created: created.into(),
        }
    }

    #[test]
    fn round_trips_through_its_wire_form() {
        let r = reservation("2020-04-10T14:50:00.000000001Z");
        assert_eq!(
            Reservation::decode(&r.to_proto().encode_to_vec()).unwrap(),
            r
        );
    }

    #[test]
    fn a_damaged_reservation_names_its_field() {
        let good = reservation("2020-04-10T14:50:00Z").to_proto();
        let bad = |f: fn(&mut ovnet_proto::v1::Reservation)| {
            let mut m = good.clone();
            f(&mut m);
            Reservation::decode(&m.encode_to_vec())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(bad(|m| m.ipv4 = "10.0.0".into()), "bad ipv4 \"10.0.0\"");
        assert_eq!(bad(|m| m.node = "-x".into()), "bad node \"-x\"");
        assert_eq!(
            bad(|m| m.endpoint_id = "xyz".into()),
            "bad endpoint_id \"xyz\""
        );
        assert_eq!(bad(|m| m.network_id = String::new()), "bad network_id \"\"");
        assert!(Reservation::decode(b"\xff\xff\xff").is_err());
    }
}
