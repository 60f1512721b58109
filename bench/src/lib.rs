//! ovnet's benchmarks: the pieces behind the criterion micro-benchmarks (`benches/`) and the
//! side-by-side harness (`ovnet-bench`, `src/main.rs`) that runs iperf3 and ping through the
//! kernel's vxlan and through ovnet on the same simulated hosts, over several underlays.
//!
//! Pure parts, unit-tested without root:
//! - [`args`]: the harness' command line;
//! - [`kinds`]: the variants, topologies, tests and metrics;
//! - [`iperf`], [`ping`], [`procstat`]: parsing iperf3 JSON, ping output and `/proc/PID/stat`;
//! - [`stats`]: medians and percentiles;
//! - [`report`]: the metrics, the table and the JSON document;
//! - [`scale`], [`growth`] and [`peers`]: the control plane at 16 to 100 hosts, and cost as
//!   networks and peers grow (their parsing and tables; the runs need root); [`plot`] draws the
//!   growth curves into a PNG;
//! - [`frames`]: test frames and a realistic forwarding table for the micro-benchmarks.
//!
//! The parts that need root, the test bed and iperf3: [`topology`] builds the network for one
//! [`kinds::Variant`] over one [`kinds::Topology`] and [`measure`] runs the tools in its
//! namespaces ([`flood`] is the broadcast sender it runs there). [`interrupt`] turns
//! SIGINT/SIGTERM/SIGHUP into an error so that everything is torn down on the way out. The
//! crate's only `unsafe` (`sigaction(2)` and `sysconf(3)`) lives in the private `sys` module.
//!
//! This is not a load generator or a network emulator: the numbers come from iperf3 and ping
//! over veth pairs on one machine, so they compare two VXLAN paths under identical conditions
//! rather than predict a real network.

#![deny(unsafe_code)]

pub mod args;
pub mod flood;
pub mod frames;
pub mod growth;
pub mod interrupt;
pub mod iperf;
pub mod kinds;
pub mod measure;
pub mod peers;
pub mod ping;
pub mod plot;
pub mod procstat;
pub mod report;
pub mod scale;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod topology;
