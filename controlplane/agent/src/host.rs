//! The host side of a network: the bridge and TAP per network with local endpoints, and the
//! veth pair that puts a container (a network namespace) on that bridge.
//!
//! Devices get names derived from the VNI or the endpoint id, so a restarted agent can tell its
//! own devices from everybody else's and remove the stale ones:
//! bridge `ovbr<vni>`, TAP `ovtap<vni>`, host end of a container's veth `ovv<endpoint id[..11]>`.
//! Setup shells out to iproute2 (`ip`) and `nsenter`: it runs once per connect, never per packet.
//! The edge's part of the host side (the gateway, default routes, forwarding) is
//! [`crate::edge::host`].

use ovnet_sys::link;
use tokio::process::Command;

use crate::domain::{EndpointId, IfName};

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
    fn new(what: impl Into<String>, detail: impl std::fmt::Display) -> HostError {
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

/// Longest a host command may take: `ip` and `nsenter` answer in milliseconds, so one that
/// has not after this is stuck (it is killed) and must not hold up the agent.
pub const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a command, killed after [`COMMAND_TIMEOUT`]; its stderr becomes the error.
pub(crate) async fn run(what: &str, program: &str, args: &[&str]) -> Result<String> {
    exec(what, program, args, None).await
}

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

/// Runs `ip -batch -` with one command per line of `lines` (each what `ip` takes after its
/// name) in the agent's namespace, or inside the one at `ns_path`: one process for several
/// steps, where each process costs milliseconds (a connect's steps were 60 % of its time).
/// `ip` stops at the first line that fails and names it in the error.
pub(crate) async fn ip_batch(
    ns_path: Option<&str>,
    what: &str,
    lines: &[&[&str]],
) -> Result<String> {
    let mut script = String::new();
    for line in lines {
        for (i, word) in line.iter().enumerate() {
            // Names, addresses and numbers only: nothing `ip` would split or unquote.
            if word.is_empty()
                || word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\')
            {
                return Err(HostError::new(what, format!("unusable argument {word:?}")));
            }
            if i > 0 {
                script.push(' ');
            }
            script.push_str(word);
        }
        script.push('\n');
    }
    let net = ns_path.map(|p| format!("--net={p}"));
    let (program, args): (&str, Vec<&str>) = match &net {
        Some(net) => ("nsenter", vec![net.as_str(), "ip", "-batch", "-"]),
        None => ("ip", vec!["-batch", "-"]),
    };
    exec(what, program, &args, Some(script.as_bytes())).await
}

/// Runs `ip ARGS` inside the network namespace at `ns_path`.
pub(crate) async fn ip_in(ns_path: &str, what: &str, args: &[&str]) -> Result<String> {
    let net = format!("--net={ns_path}");
    let mut full = vec![net.as_str(), "ip"];
    full.extend_from_slice(args);
    run(what, "nsenter", &full).await
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
    let out = run("listing links", "ip", &["-o", "link", "show"]).await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(prefix))
        .collect())
}

/// Whether a link exists in the agent's namespace.
pub fn link_exists(name: &str) -> bool {
    link::index(name).is_ok()
}

/// Deletes a link if it exists (deleting one end of a veth removes both).
pub async fn delete_link(name: &str) -> Result<()> {
    if !link_exists(name) {
        return Ok(());
    }
    run(&format!("deleting {name}"), "ip", &["link", "del", name])
        .await
        .map(|_| ())
}

fn disable_ipv6(dev: &str) {
    // A bridge and TAP without addresses have no business sending router solicitations or MLD
    // reports into the overlay.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
}

/// Creates (or keeps) the bridge of network `vni` with the network's MTU, up, no address.
pub async fn ensure_bridge(vni: u32, mtu: u32) -> Result<String> {
    let br = bridge_name(vni);
    if !link_exists(&br) {
        run(
            &format!("creating bridge {br}"),
            "ip",
            &["link", "add", &br, "type", "bridge"],
        )
        .await?;
    }
    disable_ipv6(&br);
    let mtu_s = mtu.to_string();
    run(
        &format!("configuring bridge {br}"),
        "ip",
        &["link", "set", &br, "mtu", &mtu_s, "up"],
    )
    .await?;
    Ok(br)
}

/// Puts the data plane's TAP of network `vni` (which the data plane opened, with its MTU) on
/// the network's bridge, up.
pub async fn attach_tap(vni: u32) -> Result<()> {
    let name = tap_name(vni);
    disable_ipv6(&name);
    run(
        &format!("attaching {name} to its bridge"),
        "ip",
        &["link", "set", &name, "master", &bridge_name(vni), "up"],
    )
    .await
    .map(|_| ())
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
    pub mac: &'a str,
    /// Address with prefix length, e.g. `10.0.0.2/24`.
    pub cidr: &'a str,
    /// MTU of both ends.
    pub mtu: u32,
    /// Most TCP segments the container's stack may put in one TSO super-frame
    /// (`gso_max_segs`): what the data plane sends in one go (`Dataplane::tso_segments`).
    pub gso_max_segs: u32,
}

/// The first `ethN` name free in the container's namespace.
pub async fn free_ifname(netns_path: &str) -> Result<IfName> {
    let out = ip_in(
        netns_path,
        "listing the container's links",
        &["-o", "link", "show"],
    )
    .await?;
    let taken: Vec<String> = out
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect();
    Ok((0..)
        .map(IfName::eth)
        .find(|n| !taken.iter().any(|t| n == t.as_str()))
        .expect("an unbounded range has a free name"))
}

/// Creates the veth pair (container end `ifname` inside the namespace, host end on the bridge),
/// sets MAC, address, MTU and brings everything up. On error, whatever was created is removed.
pub async fn connect_container(l: &ContainerLink<'_>) -> Result<()> {
    let ifname = l.ifname;
    let mtu = l.mtu.to_string();
    let segs = l.gso_max_segs.to_string();
    let agent_pid = std::process::id().to_string();
    let existed = link_exists(l.host_veth);
    // The container's side in one `ip` inside its namespace: the veth, created there with
    // the peer placed in ours (works for named namespaces and /proc/PID/ns/net paths alike),
    // then lo, the address, the interface up.
    let container_side = ip_batch(
        Some(l.netns_path),
        "creating and configuring the container's veth",
        &[
            &[
                "link",
                "add",
                ifname,
                "mtu",
                &mtu,
                "address",
                l.mac,
                "gso_max_segs",
                &segs,
                "type",
                "veth",
                "peer",
                "name",
                l.host_veth,
                "mtu",
                &mtu,
                "netns",
                &agent_pid,
            ],
            &["link", "set", "lo", "up"],
            &["addr", "add", l.cidr, "dev", ifname],
            &["link", "set", ifname, "up"],
        ],
    )
    .await;
    let configured = match container_side {
        Ok(_) => {
            disable_ipv6(l.host_veth);
            run(
                "attaching the container's veth to the bridge",
                "ip",
                &["link", "set", l.host_veth, "master", l.bridge, "up"],
            )
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = configured {
        // A line after the veth's may have failed: the pair goes with its host end (unless
        // that name was taken before, and the veth never made).
        if !existed {
            let _ = delete_link(l.host_veth).await;
        }
        return Err(e);
    }
    Ok(())
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
    pub mac: &'a str,
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
    let mtu = l.mtu.to_string();
    let segs = l.gso_max_segs.to_string();
    run(
        "creating the container's veth",
        "ip",
        &[
            "link",
            "add",
            l.container_end,
            "mtu",
            &mtu,
            "address",
            l.mac,
            "gso_max_segs",
            &segs,
            "type",
            "veth",
            "peer",
            "name",
            l.host_veth,
            "mtu",
            &mtu,
        ],
    )
    .await?;
    disable_ipv6(l.host_veth);
    let attached = run(
        "attaching the container's veth to the bridge",
        "ip",
        &["link", "set", l.host_veth, "master", l.bridge, "up"],
    )
    .await;
    if let Err(e) = attached {
        let _ = delete_link(l.host_veth).await;
        return Err(e);
    }
    Ok(())
}

/// Puts an existing container veth (by its host end) back on its bridge, up: after an agent
/// restart the bridge may be new.
pub async fn reattach(host_veth: &str, bridge: &str) -> Result<()> {
    run(
        &format!("re-attaching {host_veth} to {bridge}"),
        "ip",
        &["link", "set", host_veth, "master", bridge, "up"],
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_lines_refuse_words_ip_would_split_or_unquote() {
        for bad in ["a b", "", "x\"y", "a\\b", "a\nlink del eth0"] {
            let e = ip_batch(None, "testing", &[&["link", "set", bad, "up"]])
                .await
                .unwrap_err();
            assert!(e.to_string().contains("unusable argument"), "{bad:?}: {e}");
        }
    }

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
