//! The network under test, built on the test bed once per [`Variant`] and [`Topology`]: two
//! or three hosts, each with one container: `10.0.0.2` on host 1 (the iperf3 and ping client,
//! the flood's sender), `10.0.0.3` on host 2 (the server), `10.0.0.4` on host 3; MTU 1450.
//! Every host has `eth0` on the underlay bridge (`192.168.50.{n}`, where etcd is); the VXLAN
//! traffic goes over it ([`Topology::Switch`], [`Topology::Three`]), over a veth pair of its
//! own between the two hosts (`dl0`, `192.168.60.{n}`, [`Topology::Veth`]) or through two
//! routers (`rl0`, `172.20.{n}.2`, [`Topology::Routed`]).
//!
//! - [`Variant::Kernel`]: bridge `br0` with the container's veth and a kernel `vxlan` device
//!   (VNI 42, port 4789, `nolearning`) with static FDB entries for the remote containers' MACs
//!   and an all-zero (flood) entry per remote host, as in the data plane's interop tests.
//! - [`Variant::Ovnet`]: as a user runs it: the test bed's etcd, `ovnet-agent` in each host's
//!   namespace, `ovctl network create -d overlay bench` on host 1, and
//!   `ovctl network connect bench <netns>` on each host for a bare namespace. The agents
//!   create the bridges, TAPs, veths and addresses themselves.
//! - [`Variant::Direct`]: bridge and container as for the kernel, and ovnet's data plane
//!   started inside this process through its Rust API (TAP with offloads, UDP GSO/GRO) with
//!   static tables: the data plane without its control plane.
//!
//! Everything lives in the [`Testbed`] of the returned [`Bed`]; dropping the `Bed` (also on
//! error or panic) stops the data planes, kills the processes and deletes the namespaces.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use ovnet_dataplane::{
    BumLimits, Dataplane, DataplaneConfig, FloodEntry, MacAddr, NetworkTable, Vni,
};
use ovnet_sys::netns;
use ovnet_testbed::{Container, Host, Pid, Testbed, DIRECT_LINK, ROUTED_LINK};

use crate::interrupt;
pub use crate::kinds::{Topology, Variant};
use crate::procstat;

/// MTU of the containers' interfaces and of the overlay.
pub const MTU: u32 = 1450;
/// The client container's address (host 1).
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The server container's address (host 2).
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
/// The overlay's broadcast address, where the flood test sends.
pub const BROADCAST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 255);
/// Third octet of the direct link's subnet (`192.168.60.0/24`).
const DIRECT_SUBNET: u8 = 60;
/// MTU of the link between the routed topology's routers: the hosts' own, so nothing is
/// fragmented on the way.
const ROUTED_TRANSIT_MTU: u32 = 1500;
/// Storm control off (no limit on broadcast, unknown-unicast and multicast frames), in every
/// variant: the flood test measures head-end replication, not the default limit of 5 000
/// frames per second per endpoint (which it would otherwise report).
const BUM_LIMITS_OFF: BumLimits = BumLimits {
    per_source: 0,
    per_network: 0,
};
/// An agent's environment in every bench: log level `log`, and storm control off as
/// [`BUM_LIMITS_OFF`] (`--bum-pps-per-endpoint` and `--bum-pps-per-network` 0).
pub(crate) fn agent_env(log: &str) -> [(&str, &str); 3] {
    [
        ("RUST_LOG", log),
        ("OVNET_BUM_PPS_PER_ENDPOINT", "0"),
        ("OVNET_BUM_PPS_PER_NETWORK", "0"),
    ]
}
/// What to do when the agent binaries are missing.
pub const BUILD_HINT: &str =
    "build them first: cargo build --release -p ovnet-agent -p ovctl -p ovnet-bench";
/// VNI of the kernel and direct variants (ovnet's control plane picks its own).
const VNI: u32 = 42;
/// How long the agents get to open their API sockets.
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fresh overlay gets to carry a first ping (the agents learn each other's
/// endpoints through etcd watches).
const CONNECTIVITY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whose CPU time is the VXLAN path's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuSource {
    /// The kernel's vxlan: its work runs in softirq context, charged to whatever was running.
    NotAttributable,
    /// These processes (the agents), summed.
    Processes(Vec<u32>),
    /// This process (the data planes run on its threads; the harness itself only waits).
    ThisProcess,
}

/// The agent and CLI executables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    /// `ovnet-agent`.
    pub agent: PathBuf,
    /// `ovctl`.
    pub ovctl: PathBuf,
}

impl Binaries {
    /// Finds `ovnet-agent` and `ovctl` next to this executable (`target/release` when run with
    /// `cargo run --release`).
    pub fn locate() -> Result<Binaries> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let dir = exe
            .parent()
            .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))?;
        Binaries::locate_in(dir)
    }

    /// Finds both executables in `dir`, or says how to build them.
    pub fn locate_in(dir: &Path) -> Result<Binaries> {
        let (agent, ovctl) = (dir.join("ovnet-agent"), dir.join("ovctl"));
        let missing: Vec<String> = [&agent, &ovctl]
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if !missing.is_empty() {
            bail!("{} not found: {BUILD_HINT}", missing.join(" and "));
        }
        Ok(Binaries { agent, ovctl })
    }
}

/// A built network, ready for traffic.
#[derive(Debug)]
pub struct Bed {
    /// In-process data planes (direct variant); stopped before the test bed goes.
    dataplanes: Vec<Dataplane>,
    /// The namespaces, processes and etcd.
    pub tb: Testbed,
    /// What was built.
    pub variant: Variant,
    /// Over which underlay.
    pub topology: Topology,
    /// The client container's namespace (host 1).
    pub client_ns: String,
    /// The server container's namespace (host 2).
    pub server_ns: String,
    /// The server container's address.
    pub server_ip: Ipv4Addr,
    /// The namespaces and addresses of the containers of hosts 2, 3, ...: the flood's
    /// receivers (the server first).
    pub receivers: Vec<(String, Ipv4Addr)>,
    /// Whose CPU time to measure.
    pub cpu: CpuSource,
    /// Remarks found while building (unexpected addresses, MTUs...).
    pub notes: Vec<String>,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for dp in self.dataplanes.drain(..) {
            dp.shutdown();
        }
    }
}

impl Bed {
    /// How many agents (or in-process data planes) [`Bed::cpu_ticks`] adds up: one per host.
    pub fn agents(&self) -> usize {
        usize::from(self.topology.hosts())
    }

    /// CPU ticks used so far by the VXLAN path, `None` for the kernel.
    pub fn cpu_ticks(&self) -> Result<Option<u64>> {
        match &self.cpu {
            CpuSource::NotAttributable => Ok(None),
            CpuSource::ThisProcess => Ok(Some(procstat::read("self")?.total())),
            CpuSource::Processes(pids) => {
                let mut total = 0;
                for pid in pids {
                    total += procstat::read(&pid.to_string())
                        .with_context(|| format!("reading the CPU time of pid {pid}"))?
                        .total();
                }
                Ok(Some(total))
            }
        }
    }

    /// CPU ticks of each data-plane worker thread so far, per process (one per agent, or
    /// this process for every in-process data plane), by worker index; `None` for the kernel.
    pub fn worker_ticks(&self) -> Result<Option<Vec<Vec<u64>>>> {
        let pids: Vec<String> = match &self.cpu {
            CpuSource::NotAttributable => return Ok(None),
            CpuSource::ThisProcess => vec!["self".to_string()],
            CpuSource::Processes(pids) => pids.iter().map(u32::to_string).collect(),
        };
        let mut out = Vec::new();
        for pid in pids {
            out.push(
                procstat::worker_ticks(&pid)
                    .with_context(|| format!("reading the worker threads of pid {pid}"))?,
            );
        }
        Ok(Some(out))
    }

    /// Remarks about the data plane after the measurements (drops of the direct variant).
    pub fn final_notes(&self) -> Vec<String> {
        let vni = Vni::new(VNI).expect("42 is a valid VNI");
        self.dataplanes
            .iter()
            .enumerate()
            .filter_map(|(i, dp)| {
                let c = dp.counters(vni)?;
                let drops: Vec<String> = c
                    .drops()
                    .map(|(r, n)| format!("{} {n}", r.name()))
                    .collect();
                (!drops.is_empty())
                    .then(|| format!("data plane of host {}: drops: {}", i + 1, drops.join(", ")))
            })
            .collect()
    }
}

/// Builds the network of `variant` over `topology`; `bins` is needed for [`Variant::Ovnet`].
pub fn build(variant: Variant, topology: Topology, bins: Option<&Binaries>) -> Result<Bed> {
    let at = (topology, variant);
    let bed = match variant {
        Variant::Kernel => kernel(topology)?,
        Variant::Direct => direct(topology)?,
        Variant::Ovnet => ovnet(
            topology,
            bins.ok_or_else(|| anyhow!("ovnet-agent and ovctl: {BUILD_HINT}"))?,
        )?,
    };
    for (_, ip) in &bed.receivers {
        progress(at, &format!("waiting for {ip} to answer ping"));
        wait_for_ping(&bed, *ip, CONNECTIVITY_TIMEOUT)?;
    }
    Ok(bed)
}

/// One line of progress on stderr, `[topology/variant] what`.
pub fn progress((topology, variant): (Topology, Variant), what: &str) {
    eprintln!("[{}/{}] {what}", topology.key(), variant.key());
}

fn new_testbed() -> Result<Testbed> {
    Testbed::new().context("creating the test bed (it needs root and iproute2)")
}

/// The address of host `n`'s container (1-based): `10.0.0.{n + 1}`.
pub fn container_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, n + 1)
}

/// The hosts of a topology and where their VXLAN traffic goes.
struct Underlay {
    hosts: Vec<Host>,
    /// Each host's VTEP address, in host order.
    vteps: Vec<Ipv4Addr>,
    /// The device the VTEP address is on.
    dev: &'static str,
}

impl Underlay {
    /// Adds the hosts of `topology` to `tb` (and the direct link of [`Topology::Veth`], the
    /// routers of [`Topology::Routed`]).
    fn build(tb: &mut Testbed, topology: Topology) -> Result<Underlay> {
        let mut hosts = Vec::new();
        for n in 1..=topology.hosts() {
            hosts.push(tb.add_host(n).with_context(|| format!("adding host {n}"))?);
        }
        let (vteps, dev) = match topology {
            Topology::Veth => {
                let (a, b) = tb
                    .add_direct_link(&hosts[0], &hosts[1], DIRECT_SUBNET)
                    .context("joining the two hosts by a veth pair")?;
                (vec![a, b], DIRECT_LINK)
            }
            Topology::Routed => {
                let refs: Vec<&Host> = hosts.iter().collect();
                let routed = tb
                    .add_routed_underlay(&refs, ROUTED_TRANSIT_MTU)
                    .context("putting the hosts behind routers")?;
                (routed.iter().map(|r| r.link).collect(), ROUTED_LINK)
            }
            Topology::Switch | Topology::Three => {
                (hosts.iter().map(|h| h.underlay_ip).collect(), "eth0")
            }
        };
        Ok(Underlay { hosts, vteps, dev })
    }

    fn vtep(&self, i: usize) -> SocketAddr {
        SocketAddr::new(self.vteps[i].into(), ovnet_wire::VXLAN_PORT)
    }
}

/// Bridge `br0` on every host, each with a container of [`container_ip`] and docker's MAC
/// for it (the MAC ovnet would give it, so all variants carry identical frames).
fn containers(tb: &mut Testbed, u: &Underlay) -> Result<Vec<Container>> {
    let mut out = Vec::new();
    for h in &u.hosts {
        tb.add_bridge(h, "br0")
            .with_context(|| format!("adding br0 to host {}", h.n))?;
        let ip = container_ip(h.n);
        let mac = MacAddr::from_ipv4_docker(ip).to_string();
        let c = tb
            .add_container(h, "br0", &format!("{ip}/24"), MTU, Some(&mac))
            .with_context(|| format!("adding the container {ip} to host {}", h.n))?;
        out.push(c);
    }
    Ok(out)
}

/// The [`Bed`] of containers `cs` (host order) in `tb`.
fn bed(
    tb: Testbed,
    at: (Topology, Variant),
    cs: Vec<(String, Ipv4Addr)>,
    cpu: CpuSource,
    dataplanes: Vec<Dataplane>,
    notes: Vec<String>,
) -> Bed {
    let mut cs = cs.into_iter();
    let (client_ns, _) = cs.next().expect("every topology has two hosts or more");
    let receivers: Vec<(String, Ipv4Addr)> = cs.collect();
    Bed {
        dataplanes,
        tb,
        variant: at.1,
        topology: at.0,
        client_ns,
        server_ns: receivers[0].0.clone(),
        server_ip: receivers[0].1,
        receivers,
        cpu,
        notes,
    }
}

fn kernel(topology: Topology) -> Result<Bed> {
    let at = (topology, Variant::Kernel);
    progress(at, "building the hosts with a kernel vxlan device each");
    let mut tb = new_testbed()?;
    let u = Underlay::build(&mut tb, topology)?;
    let cs = containers(&mut tb, &u)?;
    for (i, h) in u.hosts.iter().enumerate() {
        let others = || (0..u.hosts.len()).filter(move |&j| j != i);
        let macs: Vec<(&str, Ipv4Addr)> =
            others().map(|j| (cs[j].mac.as_str(), u.vteps[j])).collect();
        let flood: Vec<Ipv4Addr> = others().map(|j| u.vteps[j]).collect();
        tb.add_kernel_vxlan_on(h, (u.dev, u.vteps[i]), "br0", VNI, MTU, &macs, &flood)
            .with_context(|| format!("setting up the kernel vxlan on host {}", h.n))?;
    }
    let cs = cs.into_iter().map(|c| (c.ns, c.ip)).collect();
    Ok(bed(
        tb,
        at,
        cs,
        CpuSource::NotAttributable,
        Vec::new(),
        Vec::new(),
    ))
}

fn direct(topology: Topology) -> Result<Bed> {
    let at = (topology, Variant::Direct);
    progress(
        at,
        "building the hosts with ovnet's data plane in this process",
    );
    let mut tb = new_testbed()?;
    let u = Underlay::build(&mut tb, topology)?;
    let cs = containers(&mut tb, &u)?;
    let mut dataplanes = Vec::new();
    for (i, h) in u.hosts.iter().enumerate() {
        let table = table_for(&u, &cs, i)?;
        dataplanes.push(start_dataplane(&tb, h, u.vtep(i), &table)?);
    }
    let cs = cs.into_iter().map(|c| (c.ns, c.ip)).collect();
    Ok(bed(
        tb,
        at,
        cs,
        CpuSource::ThisProcess,
        dataplanes,
        Vec::new(),
    ))
}

/// The table of host `i`, whose peers are every other host's container.
fn table_for(u: &Underlay, cs: &[Container], i: usize) -> Result<NetworkTable> {
    let mac = |c: &Container| -> Result<MacAddr> {
        c.mac
            .parse()
            .map_err(|e| anyhow!("MAC {:?} of {}: {e}", c.mac, c.ns))
    };
    let mut t = NetworkTable::new();
    let lm = mac(&cs[i])?;
    t.local_macs.insert(lm);
    t.arp.insert(cs[i].ip, lm);
    t.nd.insert(lm.ipv6_link_local(), lm);
    for (j, remote) in cs.iter().enumerate().filter(|&(j, _)| j != i) {
        let rm = mac(remote)?;
        t.macs.insert(rm, u.vtep(j));
        t.arp.insert(remote.ip, rm);
        t.nd.insert(rm.ipv6_link_local(), rm);
        t.flood.push(FloodEntry {
            addr: u.vtep(j),
            learn: false,
        });
    }
    Ok(t)
}

/// Starts a data plane in host `h`'s namespace on `vtep` serving VNI 42 on a TAP with
/// offloads, bridged to `br0`: the production setup of the data plane's own end-to-end tests.
fn start_dataplane(
    tb: &Testbed,
    h: &Host,
    vtep: SocketAddr,
    table: &NetworkTable,
) -> Result<Dataplane> {
    let tap_name = "ovtap42";
    let vni = Vni::new(VNI).expect("42 is a valid VNI");
    let dp = netns::with(&h.ns, || -> Result<Dataplane> {
        let mut cfg = DataplaneConfig::new(vtep);
        cfg.bum = BUM_LIMITS_OFF;
        // As many workers as an agent starts.
        cfg.workers = ovnet_dataplane::default_workers();
        let dp = Dataplane::start(&cfg)?;
        // The data plane opens its TAP, with its offloads, in the host's namespace.
        dp.add_network(vni, tap_name, MTU, table)
            .with_context(|| format!("adding VNI {VNI}"))?;
        Ok(dp)
    })
    .with_context(|| format!("entering host {}", h.n))?
    .with_context(|| format!("starting the data plane on host {}", h.n))?;
    tb.exec(
        &h.ns,
        &["ip", "link", "set", tap_name, "master", "br0", "up"],
    )
    .with_context(|| format!("bridging {tap_name} on host {}", h.n))?;
    Ok(dp)
}

fn ovnet(topology: Topology, bins: &Binaries) -> Result<Bed> {
    let at = (topology, Variant::Ovnet);
    progress(at, "starting etcd");
    let mut tb = new_testbed()?;
    let etcd = tb.start_etcd().context("starting etcd")?;
    let u = Underlay::build(&mut tb, topology)?;
    let mut agents = Vec::new();
    for (i, h) in u.hosts.iter().enumerate() {
        let n = h.n;
        let sock = tb.dir().join(format!("h{n}.sock"));
        let state = tb.dir().join(format!("state-h{n}"));
        progress(at, &format!("starting ovnet-agent on host {n}"));
        let args = [
            path_str(&bins.agent)?,
            "--node",
            &format!("h{n}"),
            "--etcd",
            &etcd,
            "--vtep-ip",
            &u.vteps[i].to_string(),
            "--api",
            path_str(&sock)?,
            "--state-dir",
            path_str(&state)?,
        ];
        let pid = tb
            .spawn(&h.ns, &args, &agent_env("info"))
            .with_context(|| format!("starting ovnet-agent on host {n}"))?;
        agents.push((h.clone(), sock, pid));
    }
    for (h, sock, pid) in &agents {
        wait_for_agent(&mut tb, *pid, sock, h.n)?;
    }
    let ovctl = |tb: &mut Testbed, i: usize, args: &[&str]| -> Result<String> {
        let (h, sock, pid) = &agents[i];
        let mut full = vec![path_str(&bins.ovctl)?, "--agent", path_str(sock)?];
        full.extend_from_slice(args);
        tb.exec(&h.ns, &full).map_err(|e| {
            let log = tb.log(*pid).unwrap_or_default();
            anyhow!(
                "`ovctl {}` on host {} failed: {e}\nlast lines of its agent's log:\n{}",
                args.join(" "),
                h.n,
                tail(&log, 15)
            )
        })
    };
    progress(at, "ovctl network create -d overlay bench (host 1)");
    ovctl(&mut tb, 0, &["network", "create", "-d", "overlay", "bench"])?;
    let mut containers = Vec::new();
    for (i, h) in u.hosts.iter().enumerate() {
        let label = format!("c{}", h.n);
        let ns = tb
            .add_netns(&label)
            .with_context(|| format!("adding the bare namespace {label}"))?;
        progress(
            at,
            &format!("ovctl network connect bench {ns} (host {})", h.n),
        );
        ovctl(&mut tb, i, &["network", "connect", "bench", &ns])?;
        containers.push((ns, container_ip(h.n)));
    }
    let mut notes = Vec::new();
    let mut cs = Vec::new();
    for (ns, want) in containers {
        let out = tb
            .exec(&ns, &["ip", "-4", "-o", "addr", "show", "scope", "global"])
            .with_context(|| format!("reading the addresses of {ns}"))?;
        let ip = first_ipv4(&out).ok_or_else(|| {
            anyhow!(
                "`ovctl network connect` gave {ns} no IPv4 address (is ovctl complete?): {}",
                out.trim()
            )
        })?;
        if ip != want {
            notes.push(format!("{ns} got {ip}, not {want} as in the kernel case"));
        }
        let links = tb.exec(&ns, &["ip", "-o", "link", "show"])?;
        for (name, mtu) in link_mtus(&links) {
            if name != "lo" && mtu != MTU {
                notes.push(format!("{name} in {ns} has MTU {mtu}, not {MTU}"));
            }
        }
        cs.push((ns, ip));
    }
    let pids: Vec<u32> = agents.iter().map(|(_, _, p)| p.0).collect();
    for pid in &pids {
        match procstat::comm(&pid.to_string()) {
            Ok(c) if c == "ovnet-agent" => {}
            other => notes.push(format!(
                "pid {pid} is {other:?}, not ovnet-agent: its CPU time may not be the agent's"
            )),
        }
    }
    let cpu = CpuSource::Processes(pids);
    Ok(bed(tb, at, cs, cpu, Vec::new(), notes))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("path {} is not UTF-8", p.display()))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits until the agent's API socket accepts connections; fails if the agent exits.
fn wait_for_agent(tb: &mut Testbed, pid: Pid, sock: &Path, n: u8) -> Result<()> {
    let deadline = Instant::now() + AGENT_START_TIMEOUT;
    loop {
        interrupt::check()?;
        if let Some(st) = tb.try_wait(pid)? {
            bail!(
                "ovnet-agent on host {n} exited ({st}):\n{}",
                tail(&tb.log(pid).unwrap_or_default(), 20)
            );
        }
        if std::os::unix::net::UnixStream::connect(sock).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "ovnet-agent on host {n} did not open {} within {AGENT_START_TIMEOUT:?}:\n{}",
                sock.display(),
                tail(&tb.log(pid).unwrap_or_default(), 20)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pings `ip` from the client, once a second, until it answers.
fn wait_for_ping(bed: &Bed, ip: Ipv4Addr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let ip = ip.to_string();
    loop {
        interrupt::check()?;
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &bed.client_ns,
                "ping",
                "-n",
                "-q",
                "-c",
                "1",
                "-W",
                "1",
                &ip,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running ping")?
            .success();
        if ok {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{CLIENT_IP} ({}) cannot ping {ip} after {timeout:?}",
                bed.client_ns,
            );
        }
    }
}

/// The first IPv4 address in `ip -4 -o addr show` output.
pub fn first_ipv4(out: &str) -> Option<Ipv4Addr> {
    out.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        words.next()?.split('/').next()?.parse().ok()
    })
}

/// `(name, mtu)` of every link in `ip -o link show` output.
pub fn link_mtus(out: &str) -> Vec<(String, u32)> {
    out.lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            let name = name.split('@').next()?.to_string();
            let mut words = l.split_whitespace();
            words.find(|w| *w == "mtu")?;
            Some((name, words.next()?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_mtus_from_iproute2() {
        let addrs = "2: eth0    inet 10.0.0.2/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(first_ipv4(addrs), Some(CLIENT_IP));
        assert_eq!(first_ipv4(""), None);
        let links = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
                     7: eth0@if8: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 02:42:0a:00:00:02 brd ff:ff:ff:ff:ff:ff link-netns x\n";
        assert_eq!(
            link_mtus(links),
            vec![("lo".to_string(), 65536), ("eth0".to_string(), 1450)]
        );
    }

    #[test]
    fn missing_binaries_say_how_to_build_them() {
        let dir = std::env::temp_dir().join(format!("ovnet-bench-bins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = Binaries::locate_in(&dir).unwrap_err().to_string();
        assert!(e.contains(BUILD_HINT), "{e}");
        assert!(e.contains("ovnet-agent") && e.contains("ovctl"), "{e}");
        std::fs::write(dir.join("ovnet-agent"), b"").unwrap();
        std::fs::write(dir.join("ovctl"), b"").unwrap();
        let b = Binaries::locate_in(&dir).unwrap();
        assert_eq!(b.agent, dir.join("ovnet-agent"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
