//! The `Testbed`: an underlay namespace with a bridge, host namespaces on it, container
//! namespaces on host bridges, and child processes; all of it removed when the value drops.

use std::fmt;
use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ovnet_wire::VXLAN_PORT;

use crate::cmd::ctx;
use crate::cmd::{ns_path, run};
use crate::etcd::Etcd;
use crate::names::{self, PREFIX};
use crate::sys;

/// Underlay subnet; host `n` gets `192.168.50.{n}`, the underlay bridge `.254`.
pub const UNDERLAY_BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 254);
/// Name of the underlay bridge inside the underlay namespace.
pub const UNDERLAY_BRIDGE: &str = "ulbr";
/// MAC address of the underlay bridge (locally administered, ending in the address's bytes).
/// Set explicitly because a bridge with a kernel-chosen MAC takes the lowest MAC of its ports:
/// a host added later could change it, stranding every host's ARP entry for etcd's address
/// until it times out (seconds of stalled etcd traffic).
pub const UNDERLAY_BRIDGE_MAC: &str = "02:00:c0:a8:32:fe";
/// Name of a [`Testbed::add_direct_link`] in both hosts.
pub const DIRECT_LINK: &str = "dl0";
/// Name of a host's link to its router in [`Testbed::add_routed_underlay`].
pub const ROUTED_LINK: &str = "rl0";
/// How long a process gets between SIGTERM and SIGKILL when the test bed stops it.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// Process id of a child the test bed spawned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid(pub u32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A simulated host: namespace `ov{id}h{n}` whose `eth0` sits on the underlay bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Namespace name.
    pub ns: String,
    /// Host number (1-based), also the last octet of `underlay_ip`.
    pub n: u8,
    /// `192.168.50.{n}` on `eth0`.
    pub underlay_ip: Ipv4Addr,
}

/// A container: namespace `ov{id}c{k}` whose `eth0` is a veth into a bridge of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Namespace name.
    pub ns: String,
    /// Address on `eth0`.
    pub ip: Ipv4Addr,
    /// MAC address of `eth0`, lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Name of the veth peer in the host namespace (`vc{k}`), enslaved to the bridge.
    pub host_veth: String,
}

/// A host's addresses on a [`Testbed::add_routed_underlay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedHost {
    /// On [`ROUTED_LINK`], `172.20.{n}.2`.
    pub link: Ipv4Addr,
    /// A host address on `lo`, `172.22.0.{n}`, routed to the host by the routers.
    pub loopback: Ipv4Addr,
}

/// A child process the test bed started.
pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) label: String,
    pub(crate) log: PathBuf,
    pub(crate) status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `args` inside `ns` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(
        ns: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> io::Result<Proc> {
        if args.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spawn: empty command",
            ));
        }
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| ctx(format!("open log {}", log.display()), e))?;
        let err = out.try_clone()?;
        let label = format!("{ns}: {}", args.join(" "));
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| ctx(format!("spawn `{label}`"), e))?;
        Ok(Proc {
            child,
            label,
            log,
            status: None,
        })
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid(self.child.id())
    }

    /// Exit status if it has exited (reaping it), `None` while it runs.
    pub(crate) fn poll(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Sends `signal` unless the process has already been reaped (its pid may be reused).
    pub(crate) fn signal(&mut self, signal: i32) -> io::Result<()> {
        if self.poll()?.is_some() {
            return Ok(());
        }
        sys::kill(self.child.id(), signal)
    }

    /// Last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// SIGTERM (and SIGCONT, in case they are stopped) to all, wait up to [`TERM_GRACE`], then
/// SIGKILL and reap the rest. Logs failures instead of returning them.
pub(crate) fn terminate(procs: &mut [&mut Proc]) {
    for p in procs.iter_mut() {
        for sig in [libc::SIGTERM, libc::SIGCONT] {
            if let Err(e) = p.signal(sig) {
                eprintln!(
                    "ovnet-testbed: signal {sig} to {} ({}): {e}",
                    p.pid(),
                    p.label
                );
            }
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    loop {
        let running = procs
            .iter_mut()
            .map(|p| p.poll())
            .filter(|st| !matches!(st, Ok(Some(_))))
            .count();
        if running == 0 || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter_mut() {
        if matches!(p.poll(), Ok(Some(_))) {
            continue;
        }
        eprintln!(
            "ovnet-testbed: {} ({}) ignored SIGTERM, sending SIGKILL",
            p.pid(),
            p.label
        );
        if let Err(e) = p.signal(libc::SIGKILL) {
            eprintln!("ovnet-testbed: SIGKILL {}: {e}", p.pid());
        }
        match p.child.wait() {
            Ok(st) => p.status = Some(st),
            Err(e) => eprintln!("ovnet-testbed: wait {}: {e}", p.pid()),
        }
    }
}

/// One isolated test network. See the crate docs for the layout. Dropping it kills every
/// process it started and deletes every namespace it created, also while panicking.
pub struct Testbed {
    id: String,
    pub(crate) underlay: String,
    /// Namespaces in creation order; deleted in reverse.
    namespaces: Vec<String>,
    next_container: u32,
    children: Vec<Proc>,
    pub(crate) etcd: Option<Etcd>,
    dir: tempfile::TempDir,
}

impl fmt::Debug for Testbed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Testbed")
            .field("id", &self.id)
            .field("namespaces", &self.namespaces)
            .field(
                "children",
                &self.children.iter().map(|p| p.pid()).collect::<Vec<_>>(),
            )
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// Runs `ip netns add`, retrying transient failures (concurrent first-time setup of
/// `/var/run/netns` by several processes can fail once).
fn netns_add(name: &str) -> io::Result<()> {
    let mut last = None;
    for _ in 0..3 {
        match run(&["ip", "netns", "add", name]) {
            Ok(_) => return Ok(()),
            Err(e) if ns_path(name).exists() => return Err(e),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last.unwrap_or_else(|| io::Error::other("ip netns add failed")))
}

/// Disables IPv6 (so no router solicitations, DAD or MLD show up as noise on the overlay
/// or in captures) and brings `lo` up.
fn quiet_and_lo_up(ns: &str) -> io::Result<()> {
    crate::cmd::in_netns(ns, || {
        for conf in ["default", "all"] {
            let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
            match std::fs::write(&path, "1") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // kernel without IPv6
                Err(e) => return Err(ctx(format!("write {path}"), e)),
            }
        }
        Ok(())
    })??;
    run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Runs `ip -n NS ARGS...`, `args` split at spaces (names and addresses hold none).
fn ip_in(ns: &str, args: &str) -> io::Result<String> {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend(args.split(' '));
    run(&argv)
}

/// Parses `a.b.c.d/len`.
fn parse_cidr(cidr: &str) -> io::Result<Ipv4Addr> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad IPv4 CIDR {cidr:?}"),
        )
    };
    let (ip, len) = cidr.split_once('/').ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    ip.parse().map_err(|_| bad())
}

impl Testbed {
    /// Creates the underlay namespace `ov{id}u` with bridge `ulbr` (192.168.50.254/24, MAC
    /// [`UNDERLAY_BRIDGE_MAC`], up) and `lo` up. Sweeps stale namespaces of dead earlier runs first.
    pub fn new() -> io::Result<Testbed> {
        names::sweep_stale();
        let mut attempt = 0;
        let (id, dir, underlay) = loop {
            let id = names::reserve_id()?;
            let dir = match tempfile::Builder::new()
                .prefix(&format!("{PREFIX}{id}-"))
                .tempdir()
            {
                Ok(d) => d,
                Err(e) => {
                    names::release(&id);
                    return Err(ctx("create test bed temp dir", e));
                }
            };
            let underlay = format!("{PREFIX}{id}u");
            match netns_add(&underlay) {
                Ok(()) => break (id, dir, underlay),
                // Taken by a live test bed of another process whose pid we share? Try the next id.
                Err(_) if ns_path(&underlay).exists() && attempt < 36 => {
                    names::release(&id);
                    attempt += 1;
                }
                Err(e) => {
                    names::release(&id);
                    return Err(ctx(
                        "create underlay namespace (the test bed needs root and iproute2)",
                        e,
                    ));
                }
            }
        };
        let tb = Testbed {
            id,
            underlay: underlay.clone(),
            namespaces: vec![underlay.clone()],
            next_container: 1,
            children: Vec::new(),
            etcd: None,
            dir,
        };
        std::fs::create_dir(tb.dir.path().join("logs"))?;
        quiet_and_lo_up(&underlay)?;
        let u = underlay.as_str();
        run(&[
            "ip",
            "-n",
            u,
            "link",
            "add",
            UNDERLAY_BRIDGE,
            "address",
            UNDERLAY_BRIDGE_MAC,
            "type",
            "bridge",
        ])?;
        let addr = format!("{UNDERLAY_BRIDGE_IP}/24");
        run(&["ip", "-n", u, "addr", "add", &addr, "dev", UNDERLAY_BRIDGE])?;
        run(&["ip", "-n", u, "link", "set", UNDERLAY_BRIDGE, "up"])?;
        Ok(tb)
    }

    /// The 6-character id embedded in every name of this test bed.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Name of the underlay namespace (`ov{id}u`), where etcd runs.
    pub fn underlay(&self) -> &str {
        &self.underlay
    }

    /// Scratch directory removed on drop (logs live in `logs/`, etcd data in `etcd/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `/var/run/netns/{ns}`.
    pub fn ns_path(ns: &str) -> PathBuf {
        ns_path(ns)
    }

    /// Whether `ns` is a namespace this test bed created (and will delete).
    pub fn owns(&self, ns: &str) -> bool {
        self.namespaces.iter().any(|n| n == ns)
    }

    pub(crate) fn check_owned(&self, ns: &str) -> io::Result<()> {
        if self.owns(ns) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("namespace {ns:?} does not belong to test bed {}", self.id),
            ))
        }
    }

    fn add_ns(&mut self, name: String) -> io::Result<()> {
        netns_add(&name)?;
        self.namespaces.push(name.clone());
        quiet_and_lo_up(&name)
    }

    /// Adds host `n` (1..=253): namespace `ov{id}h{n}`, `lo` up, `eth0` a veth whose peer
    /// `h{n}` is on the underlay bridge, with 192.168.50.{n}/24, mtu 1500, up.
    /// No bridge is created in the host; see [`Testbed::add_bridge`].
    pub fn add_host(&mut self, n: u8) -> io::Result<Host> {
        if !(1..=253).contains(&n) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("host number {n} outside 1..=253"),
            ));
        }
        let ns = format!("{PREFIX}{}h{n}", self.id);
        self.add_ns(ns.clone())
            .map_err(|e| ctx(format!("add host {n}"), e))?;
        let peer = format!("h{n}");
        let u = self.underlay.as_str();
        let h = ns.as_str();
        run(&[
            "ip", "-n", h, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns", u,
        ])?;
        run(&[
            "ip",
            "-n",
            u,
            "link",
            "set",
            &peer,
            "master",
            UNDERLAY_BRIDGE,
            "up",
        ])?;
        let underlay_ip = Ipv4Addr::new(192, 168, 50, n);
        run(&[
            "ip",
            "-n",
            h,
            "addr",
            "add",
            &format!("{underlay_ip}/24"),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", h, "link", "set", "eth0", "mtu", "1500", "up"])?;
        Ok(Host { ns, n, underlay_ip })
    }

    /// Joins hosts `a` and `b` by a veth pair of their own, `dl0` in each, with
    /// `192.168.{subnet}.{n}/24` for host `n`, MTU 1500, up: a point-to-point underlay beside
    /// the switched one (`eth0` keeps reaching etcd on the underlay bridge). Returns each
    /// host's address on it, `a`'s first.
    pub fn add_direct_link(
        &mut self,
        a: &Host,
        b: &Host,
        subnet: u8,
    ) -> io::Result<(Ipv4Addr, Ipv4Addr)> {
        self.check_owned(&a.ns)?;
        self.check_owned(&b.ns)?;
        run(&[
            "ip",
            "-n",
            &a.ns,
            "link",
            "add",
            DIRECT_LINK,
            "type",
            "veth",
            "peer",
            "name",
            DIRECT_LINK,
            "netns",
            &b.ns,
        ])?;
        let mut addrs = Vec::with_capacity(2);
        for h in [a, b] {
            let ip = Ipv4Addr::new(192, 168, subnet, h.n);
            let cidr = format!("{ip}/24");
            run(&["ip", "-n", &h.ns, "addr", "add", &cidr, "dev", DIRECT_LINK])?;
            run(&[
                "ip",
                "-n",
                &h.ns,
                "link",
                "set",
                DIRECT_LINK,
                "mtu",
                "1500",
                "up",
            ])?;
            addrs.push(ip);
        }
        Ok((addrs[0], addrs[1]))
    }

    /// Puts `hosts` in subnets of their own behind two routers, as hosts in two racks or
    /// sites are: host `n` gets [`ROUTED_LINK`] with `172.20.{n}.2/24`, its router's end
    /// `172.20.{n}.1`, and routes to `172.20.0.0/16` and `172.22.0.0/16` through it; odd hosts
    /// hang off router `ov{id}nrtra`, even ones off `ov{id}nrtrb`, and the routers are joined by
    /// a link (`172.21.0.1/30`, `.2`) of `transit_mtu` bytes. Each host also has a host address
    /// `172.22.0.{n}/32` on `lo` that the routers route to it, as an L3 fabric does. Routers
    /// forward, do not filter, and fragment what is larger than the transit link and may be
    /// fragmented (IPv4 without DF). `eth0` keeps reaching etcd on the switch. Returns each
    /// host's addresses, in order.
    pub fn add_routed_underlay(
        &mut self,
        hosts: &[&Host],
        transit_mtu: u32,
    ) -> io::Result<Vec<RoutedHost>> {
        for h in hosts {
            self.check_owned(&h.ns)?;
        }
        let routers = [self.add_netns("rtra")?, self.add_netns("rtrb")?];
        let transit = [Ipv4Addr::new(172, 21, 0, 1), Ipv4Addr::new(172, 21, 0, 2)];
        ip_in(
            &routers[0],
            &format!("link add tr0 type veth peer name tr0 netns {}", routers[1]),
        )?;
        for (r, addr) in routers.iter().zip(transit) {
            crate::cmd::in_netns(r, || {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                    .map_err(|e| ctx("enable forwarding in a router namespace", e))
            })??;
            ip_in(r, &format!("addr add {addr}/30 dev tr0"))?;
            ip_in(r, &format!("link set tr0 mtu {transit_mtu} up"))?;
        }
        let mut addrs = Vec::with_capacity(hosts.len());
        for h in hosts {
            // Odd hosts behind router a, even ones behind b; the other router reaches the
            // host's subnet through this one's transit address.
            let (mine, other) = if h.n % 2 == 1 { (0, 1) } else { (1, 0) };
            let (router, port, n) = (&routers[mine], format!("r{}", h.n), h.n);
            ip_in(
                &h.ns,
                &format!("link add {ROUTED_LINK} type veth peer name {port} netns {router}"),
            )?;
            ip_in(router, &format!("addr add 172.20.{n}.1/24 dev {port}"))?;
            ip_in(router, &format!("link set {port} up"))?;
            ip_in(
                &routers[other],
                &format!("route add 172.20.{n}.0/24 via {}", transit[mine]),
            )?;
            ip_in(
                router,
                &format!("route add 172.22.0.{n}/32 via 172.20.{n}.2"),
            )?;
            ip_in(
                &routers[other],
                &format!("route add 172.22.0.{n}/32 via {}", transit[mine]),
            )?;
            ip_in(
                &h.ns,
                &format!("addr add 172.20.{n}.2/24 dev {ROUTED_LINK}"),
            )?;
            ip_in(&h.ns, &format!("addr add 172.22.0.{n}/32 dev lo"))?;
            ip_in(&h.ns, &format!("link set {ROUTED_LINK} mtu 1500 up"))?;
            for fabric in ["172.20.0.0/16", "172.22.0.0/16"] {
                ip_in(&h.ns, &format!("route add {fabric} via 172.20.{n}.1"))?;
            }
            addrs.push(RoutedHost {
                link: Ipv4Addr::new(172, 20, n, 2),
                loopback: Ipv4Addr::new(172, 22, 0, n),
            });
        }
        Ok(addrs)
    }

    /// Sets the MTU of host `host`'s underlay link, both ends (its `eth0` and the peer on the
    /// underlay bridge): a host whose underlay carries smaller packets than its peers'. The
    /// other hosts keep theirs, so a packet larger than `mtu` sent to this host is lost on the
    /// way, as on an underlay that does not fragment for it.
    pub fn set_underlay_mtu(&self, host: &Host, mtu: u32) -> io::Result<()> {
        let mtu = mtu.to_string();
        let peer = format!("h{}", host.n);
        run(&["ip", "-n", &host.ns, "link", "set", "eth0", "mtu", &mtu])?;
        run(&[
            "ip",
            "-n",
            self.underlay.as_str(),
            "link",
            "set",
            &peer,
            "mtu",
            &mtu,
        ])?;
        Ok(())
    }

    /// Adds a bare namespace `ov{id}n{label}` (only `lo`, up; IPv6 off), e.g. for a container
    /// that ovnet itself is to connect, and returns its name. `label` is 1 to 8 characters
    /// of `[a-z0-9]` and must be unused in this test bed. Deleted on drop like the others.
    pub fn add_netns(&mut self, label: &str) -> io::Result<String> {
        if label.is_empty()
            || label.len() > names::MAX_LABEL
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "namespace label {label:?}: want 1 to {} characters of [a-z0-9]",
                    names::MAX_LABEL
                ),
            ));
        }
        let ns = format!("{PREFIX}{}n{label}", self.id);
        self.add_ns(ns.clone())
            .map_err(|e| ctx(format!("add namespace {ns}"), e))?;
        Ok(ns)
    }

    /// Creates bridge `name` (no address, up) in `host`'s namespace.
    pub fn add_bridge(&mut self, host: &Host, name: &str) -> io::Result<()> {
        self.check_owned(&host.ns)?;
        run(&["ip", "-n", &host.ns, "link", "add", name, "type", "bridge"])?;
        run(&["ip", "-n", &host.ns, "link", "set", name, "up"])?;
        Ok(())
    }

    /// Puts a Linux kernel VXLAN device `vx{vni}` on `host`, the way a host that does not run
    /// ovnet would be set up: local address the host's underlay IP, port [`VXLAN_PORT`], no learning,
    /// `mtu`, enslaved to `bridge` (which must exist) and up; a static FDB entry for each
    /// `(mac, vtep)` in `macs`, and the all-zero (flood) entry towards each VTEP in `flood`.
    /// Returns the device name.
    pub fn add_kernel_vxlan(
        &mut self,
        host: &Host,
        bridge: &str,
        vni: u32,
        mtu: u32,
        macs: &[(&str, Ipv4Addr)],
        flood: &[Ipv4Addr],
    ) -> io::Result<String> {
        let underlay = ("eth0", host.underlay_ip);
        self.add_kernel_vxlan_on(host, underlay, bridge, vni, mtu, macs, flood)
    }

    /// [`Testbed::add_kernel_vxlan`] over another underlay link of the host: `(device, local
    /// address)`, e.g. a [`Testbed::add_direct_link`].
    #[allow(clippy::too_many_arguments)]
    pub fn add_kernel_vxlan_on(
        &mut self,
        host: &Host,
        (underlay_dev, local): (&str, Ipv4Addr),
        bridge: &str,
        vni: u32,
        mtu: u32,
        macs: &[(&str, Ipv4Addr)],
        flood: &[Ipv4Addr],
    ) -> io::Result<String> {
        self.check_owned(&host.ns)?;
        let dev = format!("vx{vni}");
        let (vni, mtu, local, port) = (
            vni.to_string(),
            mtu.to_string(),
            local.to_string(),
            VXLAN_PORT.to_string(),
        );
        let ns = host.ns.as_str();
        run(&[
            "ip",
            "-n",
            ns,
            "link",
            "add",
            &dev,
            "type",
            "vxlan",
            "id",
            &vni,
            "dstport",
            &port,
            "local",
            &local,
            "dev",
            underlay_dev,
            "nolearning",
        ])?;
        run(&[
            "ip", "-n", ns, "link", "set", &dev, "mtu", &mtu, "master", bridge, "up",
        ])?;
        for (mac, vtep) in macs {
            let dst = vtep.to_string();
            run(&[
                "bridge", "-n", ns, "fdb", "add", mac, "dev", &dev, "dst", &dst, "static",
            ])?;
        }
        for vtep in flood {
            let dst = vtep.to_string();
            run(&[
                "bridge",
                "-n",
                ns,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                &dev,
                "dst",
                &dst,
            ])?;
        }
        Ok(dev)
    }

    /// Adds container namespace `ov{id}c{k}` (k counts up per test bed) whose `eth0` has
    /// address `cidr` (e.g. `10.0.0.2/24`), `mtu`, and `mac` if given; its veth peer `vc{k}`
    /// sits in `host`'s namespace with the same mtu, enslaved to `bridge` (which must exist) and up.
    pub fn add_container(
        &mut self,
        host: &Host,
        bridge: &str,
        cidr: &str,
        mtu: u32,
        mac: Option<&str>,
    ) -> io::Result<Container> {
        self.check_owned(&host.ns)?;
        let ip = parse_cidr(cidr)?;
        let k = self.next_container;
        self.next_container += 1;
        let ns = format!("{PREFIX}{}c{k}", self.id);
        self.add_ns(ns.clone())
            .map_err(|e| ctx(format!("add container {k}"), e))?;
        let host_veth = format!("vc{k}");
        let c = ns.as_str();
        let h = host.ns.as_str();
        let mtu = mtu.to_string();
        run(&[
            "ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", &host_veth,
            "netns", h,
        ])?;
        if let Some(mac) = mac {
            run(&["ip", "-n", c, "link", "set", "eth0", "address", mac])?;
        }
        run(&["ip", "-n", c, "link", "set", "eth0", "mtu", &mtu])?;
        run(&["ip", "-n", c, "addr", "add", cidr, "dev", "eth0"])?;
        run(&["ip", "-n", c, "link", "set", "eth0", "up"])?;
        run(&[
            "ip", "-n", h, "link", "set", &host_veth, "mtu", &mtu, "master", bridge, "up",
        ])?;
        let mac = link_mac(c, "eth0")?;
        Ok(Container {
            ns,
            ip,
            mac,
            host_veth,
        })
    }

    /// Runs `args` inside namespace `ns` (one of ours) and waits; returns stdout, or an error
    /// carrying stderr if it exits non-zero.
    pub fn exec(&self, ns: &str, args: &[&str]) -> io::Result<String> {
        self.check_owned(ns)?;
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Runs `args` inside namespace `ns` (one of ours) and waits, whatever its exit status:
    /// returns stdout and stderr together (a command expected to fail, such as a ping told
    /// its packet is too big). Only a command that cannot be started is an error.
    pub fn exec_any(&self, ns: &str, args: &[&str]) -> io::Result<String> {
        self.check_owned(ns)?;
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("spawn `{}` in {ns}: {e}", args.join(" ")))
            })?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Starts `args` inside namespace `ns` (one of ours) with extra environment `env`;
    /// stdout and stderr go to a log file (see [`Testbed::log`]). The process is stopped
    /// (SIGTERM, then SIGKILL after 3 s) when the test bed drops, unless it ended before.
    pub fn spawn(&mut self, ns: &str, args: &[&str], env: &[(&str, &str)]) -> io::Result<Pid> {
        self.check_owned(ns)?;
        let base = args
            .first()
            .and_then(|a| Path::new(a).file_name())
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = self
            .dir
            .path()
            .join("logs")
            .join(format!("{}-{base}.log", self.children.len() + 1));
        let proc = Proc::spawn(ns, args, env, log)?;
        let pid = proc.pid();
        self.children.push(proc);
        Ok(pid)
    }

    fn child(&mut self, pid: Pid) -> io::Result<&mut Proc> {
        self.children
            .iter_mut()
            .find(|p| p.pid() == pid)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("pid {pid} was not spawned by this test bed"),
                )
            })
    }

    /// Sends `signal` to a process this test bed spawned. A process that already exited
    /// (and was reaped) is not signalled and this returns Ok.
    pub fn kill(&mut self, pid: Pid, signal: i32) -> io::Result<()> {
        self.child(pid)?.signal(signal)
    }

    /// Exit status of a spawned process if it has exited, `None` while it runs.
    pub fn try_wait(&mut self, pid: Pid) -> io::Result<Option<ExitStatus>> {
        self.child(pid)?.poll()
    }

    /// Waits up to `timeout` for a spawned process to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, pid: Pid, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let p = self.child(pid)?;
        loop {
            if let Some(st) = p.poll()? {
                return Ok(Some(st));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops a spawned process now: SIGTERM, then SIGKILL after 3 s; returns its exit status.
    pub fn stop(&mut self, pid: Pid) -> io::Result<ExitStatus> {
        let p = self.child(pid)?;
        terminate(&mut [p]);
        p.poll()?
            .ok_or_else(|| io::Error::other(format!("pid {pid} did not exit")))
    }

    /// Everything a spawned process wrote to stdout and stderr so far.
    pub fn log(&mut self, pid: Pid) -> io::Result<String> {
        let path = self.child(pid)?.log.clone();
        std::fs::read_to_string(path)
    }
}

/// MAC address of `link` in namespace `ns`, from `ip -o link show`.
pub(crate) fn link_mac(ns: &str, link: &str) -> io::Result<String> {
    let out = run(&["ip", "-n", ns, "-o", "link", "show", link])?;
    out.split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| io::Error::other(format!("no MAC for {link} in {ns}: {out}")))
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let mut procs: Vec<&mut Proc> = self.children.iter_mut().collect();
        if let Some(etcd) = self.etcd.as_mut() {
            etcd.shutdown_proxy();
            for m in &mut etcd.members {
                if let Some(p) = m.proc.as_mut() {
                    procs.push(p);
                }
            }
        }
        terminate(&mut procs);
        if panicking {
            for p in &procs {
                eprintln!(
                    "ovnet-testbed {}: last output of {} ({}, {:?}):\n{}\n",
                    self.id,
                    p.pid(),
                    p.label,
                    p.status,
                    p.log_tail(40)
                );
            }
        }
        for ns in self.namespaces.iter().rev() {
            names::remove_netns(ns, true);
        }
        names::release(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn testbed_can_move_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Testbed>();
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.0.0.2/24").unwrap(),
            Ipv4Addr::new(10, 0, 0, 2)
        );
        for bad in ["10.0.0.2", "10.0.0.2/33", "10.0.0/24", "x/1"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
