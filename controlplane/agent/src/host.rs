//! The host side of a network: the bridge and TAP per network with local endpoints, and the
//! veth pair that puts a container (a network namespace) on that bridge.
//!
//! Devices get names derived from the VNI or the endpoint id, so a restarted agent can tell its
//! own devices from everybody else's and remove the stale ones:
//! bridge `ovbr<vni>`, TAP `ovtap<vni>`, host end of a container's veth `ovv<endpoint id[..11]>`.
//! Setup speaks netlink from the agent itself ([`crate::netlink`]), in the agent's namespace
//! and, for the container's side, in the container's: no process per step (an `ip` or
//! `nsenter` cost 10-19 ms each, 60 % of a connect). The edge's part of the host side (the
//! gateway, default routes, forwarding) is [`crate::edge::host`].

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use ovnet_sys::link;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth};
use tokio::process::Command;

use crate::domain::{EndpointId, IfName};
use crate::netlink::{Failed, Netlink};

/// Prefix of every device the agent creates in the host namespace.
pub const DEVICE_PREFIX: &str = "ov";

/// The bridge of network `vni`.
pub fn bridge_name(vni: u32) -> String {
    format!("ovbr{vni}")
}

/// The data plane's TAP of network `vni`.
pub fn tap_name(vni: u32) -> String {
    format!("ovtap{vni}")
}

/// Characters of the endpoint ID in the name of its veth's host end: `ovv` and 11 make 14,
/// within the kernel's 15.
const VETH_ID_CHARS: usize = 11;

/// The host end of an endpoint's veth pair. (An ID is ASCII hex, so cutting it is safe.)
pub fn veth_name(endpoint: &EndpointId) -> String {
    let id = endpoint.as_str();
    format!("ovv{}", id.get(..VETH_ID_CHARS).unwrap_or(id))
}

/// The container end of a Docker endpoint's veth while it waits in the agent's namespace for
/// Docker to move it into the container (Docker names it `ethN` there, and gives it this
/// name back when it takes it out again): `ovc` and the same 11 characters.
pub fn handoff_name(endpoint: &EndpointId) -> String {
    let id = endpoint.as_str();
    format!("ovc{}", id.get(..VETH_ID_CHARS).unwrap_or(id))
}

/// Name prefixes of the devices the agent makes: bridges, TAPs and veths. At start, a
/// device with one of these prefixes that no record explains is removed.
pub const DEVICE_KINDS: [&str; 3] = ["ovbr", "ovtap", "ovv"];

/// A failed host-side step: what was being done, and the command's own words.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct HostError {
    what: String,
    detail: String,
}

impl HostError {
    pub(crate) fn new(what: impl Into<String>, detail: impl std::fmt::Display) -> HostError {
        HostError {
            what: what.into(),
            detail: detail.to_string().trim().to_string(),
        }
    }
}

impl From<NetnsError> for HostError {
    fn from(e: NetnsError) -> HostError {
        HostError::new("finding the container's network namespace", e)
    }
}

type Result<T> = std::result::Result<T, HostError>;

/// Longest a host step may take, a command (`nft`) or a netlink request: they answer in
/// milliseconds, so one that has not after this is stuck (a command is killed) and must not
/// hold up the agent.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a command with `input` on its stdin (none: stdin is empty), killed after
/// [`COMMAND_TIMEOUT`]; its stdout, or its stderr as the error. Every host command of the
/// agent goes through here.
pub(crate) async fn exec(
    what: &str,
    program: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<String> {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| HostError::new(what, format!("running {program}: {e}")))?;
    let stdin = child.stdin.take();
    let done = async {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            stdin.write_all(input).await?;
        }
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, done)
        .await
        .map_err(|_| {
            HostError::new(
                what,
                format!("{program} did not finish within {COMMAND_TIMEOUT:?} (killed)"),
            )
        })?
        .map_err(|e| HostError::new(what, format!("running {program}: {e}")))?;
    if !out.status.success() {
        return Err(HostError::new(
            what,
            String::from_utf8_lossy(&out.stderr).to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A container's network namespace that is not there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetnsError {
    /// Given as a path.
    #[error("network namespace {0} not found")]
    Path(String),
    /// Given as a name under `/var/run/netns`.
    #[error("network namespace {0} not found: create it with `ip netns add {0}` or pass --netns")]
    Name(String),
    /// A file that is not a namespace (a regular file, a FIFO...).
    #[error(
        "{0} is not a network namespace: pass a name under /var/run/netns or /proc/PID/ns/net"
    )]
    NotANamespace(String),
    /// A namespace of another kind.
    #[error("{0} is a namespace, but not a network namespace: pass /proc/PID/ns/net")]
    OtherKind(String),
    /// The agent's own namespace.
    #[error("{0} is the host's own network namespace: a container needs its own")]
    Host(String),
}

/// The file of a container's network namespace: a name under `/var/run/netns`, or a path
/// such as `/proc/1234/ns/net`. Errors if it does not exist, is not a network namespace (a
/// FIFO, a regular file, a mount namespace...) or is the host's own; looking never blocks.
pub fn netns_path(netns: &str) -> std::result::Result<String, NetnsError> {
    use ovnet_sys::netns::{check_netns, NotANetns};
    let path = ovnet_sys::netns::resolve(netns);
    let shown = path.to_string_lossy().into_owned();
    match check_netns(&path) {
        Ok(Ok(())) => Ok(shown),
        Ok(Err(NotANetns::NotANamespace)) => Err(NetnsError::NotANamespace(shown)),
        Ok(Err(NotANetns::OtherKind)) => Err(NetnsError::OtherKind(shown)),
        Ok(Err(NotANetns::OwnNamespace)) => Err(NetnsError::Host(shown)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(if netns.contains('/') {
            NetnsError::Path(netns.to_owned())
        } else {
            NetnsError::Name(netns.to_owned())
        }),
        Err(_) => Err(NetnsError::NotANamespace(shown)),
    }
}

/// Names of links in the agent's namespace starting with `prefix`.
pub async fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let nl = Netlink::host()?;
    let names = nl
        .link_names()
        .await
        .map_err(|f| f.into_error("listing links"))?;
    Ok(names
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Whether a link exists in the agent's namespace.
pub fn link_exists(name: &str) -> bool {
    link::index(name).is_ok()
}

/// The index of link `name` in the session's namespace, or the error of step `what` if there
/// is no such link, saying what to do (`missing`).
async fn index_of(nl: &Netlink, what: &str, name: &str, missing: &str) -> Result<u32> {
    match nl.index(name).await {
        Ok(Some(i)) => Ok(i),
        Ok(None) => Err(HostError::new(
            what,
            format!("{name} is not there: {missing}"),
        )),
        Err(f) => Err(f.into_error(what)),
    }
}

/// What to do about a device of the agent's that is gone (deleted by hand).
const REBUILD: &str = "restart the agent to rebuild the network's devices";

/// Deletes a link if it exists (deleting one end of a veth removes both).
pub async fn delete_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    let what = format!("deleting {name}");
    let nl = Netlink::host()?;
    match nl.index(name).await {
        Ok(Some(i)) => match nl.del_link(i).await {
            // Gone meanwhile (its veth peer's namespace went away).
            Err(f) if f.errno() == Some(libc::ENODEV) => Ok(()),
            done => done.map_err(|f| f.into_error(&what)),
        },
        Ok(None) => Ok(()),
        Err(f) => Err(f.into_error(&what)),
    }
}

fn disable_ipv6(dev: &str) {
    // A bridge and TAP without addresses have no business sending router solicitations or MLD
    // reports into the overlay.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
}

/// Creates (or keeps) the bridge of network `vni` with the network's MTU, up, no address.
pub async fn ensure_bridge(vni: u32, mtu: u32) -> Result<String> {
    let br = bridge_name(vni);
    let nl = Netlink::host()?;
    if !link_exists(&br) {
        // Created down: IPv6 goes off before it is up.
        let made = nl
            .add_link(LinkMessageBuilder::<LinkBridge>::new(&br).mtu(mtu).build())
            .await;
        match made {
            Err(f) if f.errno() != Some(libc::EEXIST) => {
                return Err(f.into_error(&format!("creating bridge {br}")));
            }
            _ => {}
        }
    }
    disable_ipv6(&br);
    nl.set_link(LinkUnspec::new_with_name(&br).mtu(mtu).up().build())
        .await
        .map_err(|f| f.into_error(&format!("configuring bridge {br}")))?;
    Ok(br)
}

/// Puts the data plane's TAP of network `vni` (which the data plane opened, with its MTU) on
/// the network's bridge, up.
pub async fn attach_tap(vni: u32) -> Result<()> {
    let name = tap_name(vni);
    disable_ipv6(&name);
    let what = format!("attaching {name} to its bridge");
    let nl = Netlink::host()?;
    let tap = index_of(&nl, &what, &name, REBUILD).await?;
    let br = index_of(&nl, &what, &bridge_name(vni), REBUILD).await?;
    nl.attach(tap, br).await.map_err(|f| f.into_error(&what))
}

/// Gives bridge `bridge` the MAC `mac` and the address `ip/prefix` (kept if it has it).
pub async fn set_bridge_address(
    bridge: &str,
    mac: [u8; 6],
    ip: Ipv4Addr,
    prefix: u8,
) -> Result<()> {
    let what = format!("giving {bridge} the gateway's MAC and address {ip}/{prefix}");
    let nl = Netlink::host()?;
    let br = index_of(&nl, &what, bridge, REBUILD).await?;
    nl.set_link(LinkUnspec::new_with_index(br).address(mac.to_vec()).build())
        .await
        .map_err(|f| f.into_error(&what))?;
    nl.add_address(br, ip, prefix, true)
        .await
        .map_err(|f| f.into_error(&what))
}

/// What a container gets on connect.
#[derive(Debug, Clone)]
pub struct ContainerLink<'a> {
    /// The namespace file.
    pub netns_path: &'a str,
    /// Interface name inside the container (see [`free_ifname`]).
    pub ifname: &'a str,
    /// Host end of the veth.
    pub host_veth: &'a str,
    /// Bridge to attach the host end to.
    pub bridge: &'a str,
    /// MAC of the container end.
    pub mac: [u8; 6],
    /// Address of the container end.
    pub ipv4: Ipv4Addr,
    /// Prefix length of its network.
    pub prefix: u8,
    /// MTU of both ends.
    pub mtu: u32,
    /// Most TCP segments the container's stack may put in one TSO super-frame
    /// (`gso_max_segs`): what the data plane sends in one go (`Dataplane::tso_segments`).
    pub gso_max_segs: u32,
    /// The gateway of the container's default route, unless it has one already
    /// ([`crate::edge::host::default_route`]); `None`: no default route (internal network).
    pub route_via: Option<Ipv4Addr>,
}

/// The first `ethN` name free in the container's namespace.
pub async fn free_ifname(netns_path: &str) -> Result<IfName> {
    let nl = Netlink::inside(netns_path).await?;
    let taken = nl
        .link_names()
        .await
        .map_err(|f| f.into_error("listing the container's links"))?;
    Ok((0..)
        .map(IfName::eth)
        .find(|n| !taken.iter().any(|t| n == t.as_str()))
        .expect("an unbounded range has a free name"))
}

/// Creates the veth pair (container end `ifname` inside the namespace, host end on the bridge),
/// sets MAC, address, MTU, brings everything up and adds the default route. On error,
/// whatever was created is removed.
pub async fn connect_container(l: &ContainerLink<'_>) -> Result<()> {
    netns_path(l.netns_path)?;
    let nl = Netlink::host()?;
    let attaching = format!("attaching the container's veth to bridge {}", l.bridge);
    // The bridge first: nothing is created for a network whose bridge is gone.
    let br = index_of(&nl, &attaching, l.bridge, REBUILD).await?;
    let ns = ovnet_sys::netns::open(l.netns_path)
        .map_err(|e| HostError::new("opening the container's network namespace", e))?;
    // The veth from here, its container end placed in the container's namespace (by its
    // descriptor) with its MAC, MTU and TSO bound.
    let peer = LinkUnspec::new_with_name(l.ifname)
        .mtu(l.mtu)
        .address(l.mac.to_vec())
        .setns_by_fd(ns.as_raw_fd())
        .append_extra_attribute(LinkAttribute::GsoMaxSegs(l.gso_max_segs))
        .build();
    let veth = LinkVeth::new(l.host_veth, l.ifname)
        .mtu(l.mtu)
        .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
            rtnetlink::packet_route::link::InfoVeth::Peer(peer),
        ))
        .build();
    if let Err(f) = nl.add_link(veth).await {
        return Err(veth_refused(&nl, f, l.host_veth, l.ifname).await);
    }
    let built = async {
        disable_ipv6(l.host_veth);
        let host_end = index_of(
            &nl,
            &attaching,
            l.host_veth,
            "its peer's namespace went away",
        )
        .await?;
        nl.attach(host_end, br)
            .await
            .map_err(|f| f.into_error(&attaching))?;
        container_side(l).await
    };
    if let Err(e) = built.await {
        // The pair goes with its host end.
        let _ = delete_link(l.host_veth).await;
        return Err(e);
    }
    Ok(())
}

/// The container's side of a connect, on a netlink socket in its namespace: lo up, the
/// address, the interface up, the default route.
async fn container_side(l: &ContainerLink<'_>) -> Result<()> {
    let what = "configuring the container's veth";
    let nl = Netlink::inside(l.netns_path).await?;
    let gone = "the container's namespace changed meanwhile: connect again";
    let lo = index_of(&nl, what, "lo", gone).await?;
    nl.set_link(LinkUnspec::new_with_index(lo).up().build())
        .await
        .map_err(|f| f.into_error("bringing the container's lo up"))?;
    let dev = index_of(&nl, what, l.ifname, gone).await?;
    nl.add_address(dev, l.ipv4, l.prefix, false)
        .await
        .map_err(|f| {
            f.into_error(&format!(
                "giving the container's {} the address {}/{}",
                l.ifname, l.ipv4, l.prefix
            ))
        })?;
    nl.set_link(LinkUnspec::new_with_index(dev).up().build())
        .await
        .map_err(|f| f.into_error(&format!("bringing the container's {} up", l.ifname)))?;
    if let Some(gateway) = l.route_via {
        crate::edge::host::default_route(&nl, dev, gateway).await?;
    }
    Ok(())
}

/// The error of a veth the kernel would not create: a name that is taken says which, and
/// what to do.
async fn veth_refused(nl: &Netlink, f: Failed, host_veth: &str, ifname: &str) -> HostError {
    let what = "creating the container's veth";
    if f.errno() != Some(libc::EEXIST) {
        return f.into_error(what);
    }
    if matches!(nl.index(host_veth).await, Ok(Some(_))) {
        return HostError::new(
            what,
            format!(
                "{host_veth} is taken in the host's namespace: delete it (`ip link del \
                 {host_veth}`) or restart the agent, which removes its stale devices"
            ),
        );
    }
    HostError::new(
        what,
        format!(
            "{ifname} is taken in the container's network namespace: pick another interface \
             name or remove that one"
        ),
    )
}

/// What a runtime that moves the container's interface itself (Docker) is handed: both ends
/// of the veth stay in the agent's namespace.
#[derive(Debug, Clone)]
pub struct HandoffLink<'a> {
    /// The container end, for the runtime to move ([`handoff_name`]).
    pub container_end: &'a str,
    /// Host end of the veth.
    pub host_veth: &'a str,
    /// Bridge to attach the host end to.
    pub bridge: &'a str,
    /// MAC of the container end.
    pub mac: [u8; 6],
    /// MTU of both ends.
    pub mtu: u32,
    /// See [`ContainerLink::gso_max_segs`].
    pub gso_max_segs: u32,
}

/// Creates the veth pair of a container whose runtime moves the interface itself: the
/// container end gets its MAC, MTU and TSO bound and stays down in the agent's namespace (the
/// runtime moves it, renames it, gives it its address and brings it up); the host end goes on
/// the bridge, up. On error, whatever was created is removed.
pub async fn handoff_veth(l: &HandoffLink<'_>) -> Result<()> {
    let nl = Netlink::host()?;
    let attaching = format!("attaching the container's veth to bridge {}", l.bridge);
    let br = index_of(&nl, &attaching, l.bridge, REBUILD).await?;
    let peer = LinkUnspec::new_with_name(l.host_veth).mtu(l.mtu).build();
    let veth = LinkVeth::new(l.container_end, l.host_veth)
        .mtu(l.mtu)
        .address(l.mac.to_vec())
        .append_extra_attribute(LinkAttribute::GsoMaxSegs(l.gso_max_segs))
        .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
            rtnetlink::packet_route::link::InfoVeth::Peer(peer),
        ))
        .build();
    if let Err(f) = nl.add_link(veth).await {
        let e = match f.errno() {
            Some(libc::EEXIST) => HostError::new(
                "creating the container's veth",
                format!(
                    "{} or {} is taken in the host's namespace: restart the agent, which \
                     removes its stale devices",
                    l.container_end, l.host_veth
                ),
            ),
            _ => f.into_error("creating the container's veth"),
        };
        return Err(e);
    }
    disable_ipv6(l.host_veth);
    let attached = async {
        let host_end = index_of(&nl, &attaching, l.host_veth, REBUILD).await?;
        nl.attach(host_end, br)
            .await
            .map_err(|f| f.into_error(&attaching))
    };
    if let Err(e) = attached.await {
        let _ = delete_link(l.host_veth).await;
        return Err(e);
    }
    Ok(())
}

/// Puts an existing container veth (by its host end) back on its bridge, up: after an agent
/// restart the bridge may be new.
pub async fn reattach(host_veth: &str, bridge: &str) -> Result<()> {
    let what = format!("re-attaching {host_veth} to {bridge}");
    let nl = Netlink::host()?;
    let veth = index_of(&nl, &what, host_veth, REBUILD).await?;
    let br = index_of(&nl, &what, bridge, REBUILD).await?;
    nl.attach(veth, br).await.map_err(|f| f.into_error(&what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(bridge_name(16_777_215), "ovbr16777215");
        assert_eq!(tap_name(16_777_215), "ovtap16777215");
        let id = EndpointId::parse(&format!("3d430f3338a2c0ffee{}", "0".repeat(46))).unwrap();
        let v = veth_name(&id);
        assert_eq!(v, "ovv3d430f3338a");
        assert_eq!(handoff_name(&id), "ovc3d430f3338a");
        assert!(v.len() <= 15);
        for name in [bridge_name(1), tap_name(1), v] {
            assert!(DEVICE_KINDS.iter().any(|p| name.starts_with(p)), "{name}");
            assert!(name.starts_with(DEVICE_PREFIX), "{name}");
        }
    }

    #[test]
    fn missing_namespace_says_how_to_fix_it() {
        let e = netns_path("ovnet-missing-ns").unwrap_err().to_string();
        assert!(e.contains("ip netns add ovnet-missing-ns"), "{e}");
        let e = netns_path("/proc/999999999/ns/net")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "network namespace /proc/999999999/ns/net not found");
    }

    /// What is not a container's network namespace is refused without blocking: a FIFO
    /// (opening it for reading would wait for a writer), a regular file, a directory, a mount
    /// namespace, and the agent's own network namespace.
    #[test]
    fn what_is_not_a_containers_namespace_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped the FIFO case: mkfifo is not available");
        } else {
            let e = netns_path(fifo.to_str().unwrap()).unwrap_err();
            assert!(matches!(e, NetnsError::NotANamespace(_)), "{e}");
        }
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = netns_path(file.to_str().unwrap()).unwrap_err();
        assert!(
            e.to_string().ends_with(
                "is not a network namespace: pass a name under /var/run/netns or /proc/PID/ns/net"
            ),
            "{e}"
        );
        let e = netns_path(dir.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(e, NetnsError::NotANamespace(_)), "{e}");
        let e = netns_path("/proc/self/ns/mnt").unwrap_err();
        assert!(matches!(e, NetnsError::OtherKind(_)), "{e}");
        let e = netns_path("/proc/self/ns/net").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/proc/self/ns/net is the host's own network namespace: a container needs its own"
        );
    }
}
