//! The agent's domain: typed values and records, and the pure decisions made on them.
//!
//! Everything that reaches the agent as text (an etcd record, an API request) is parsed once,
//! where it enters, into these types: a VNI is a [`ovnet_wire::Vni`], a subnet an
//! [`ipnet::Ipv4Net`], a MAC a [`ovnet_wire::MacAddr`], an ID an [`values::EndpointId`] of hex
//! digits. A record that does not parse is refused there with a typed error (the store skips it
//! with a warning); nothing deeper in parses again, and nothing panics on what a record says.
//!
//! - [`values`]: names, IDs, interface names;
//! - [`records`]: networks, endpoints, nodes, external VTEPs, and their protobuf form;
//! - [`ipam`]: the rules for subnets, gateways, VNIs, MTUs and addresses;
//! - [`mtu`]: path MTUs between nodes' underlays, a network's default MTU, and warnings;
//! - [`identity`]: who holds a node name;
//! - [`ports`]: published ports and when two of them collide on a node;
//! - [`plan`]: the create-network and create-endpoint decisions the store's transactions
//!   claim;
//! - [`runtime`]: a container runtime's id of a container, and who made an endpoint;
//! - [`reservation`]: an address handed out before its endpoint exists (Docker's IPAM);
//! - [`time`]: the time stamps records carry.
//!
//! No I/O here. A new kind of record, or a rule on a value (length limits on names and labels,
//! say), starts in this module.

pub mod identity;
pub mod ipam;
pub mod mtu;
pub mod plan;
pub mod ports;
pub mod records;
pub mod reservation;
pub mod runtime;
pub mod time;
pub mod values;

pub use records::{Endpoint, ExternalVtep, Network, Node};
pub use runtime::{ContainerId, Owner};
pub use values::{EndpointId, IfName, Name, NetworkId, NodeId, NodeName};
