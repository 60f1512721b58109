//! Netlink sessions for the host side: the agent's requests for links, addresses and routes,
//! sent to the kernel through `rtnetlink` on the agent's runtime, in the agent's own network
//! namespace or in a container's. No process per step: an `ip` or `nsenter` cost 10-19 ms of
//! a connect each, a request costs microseconds.
//!
//! A session in a container's namespace opens its socket on a thread of its own that enters
//! the namespace, opens the socket and ends ([`ovnet_sys::netns::NetnsGuard`]): a socket stays
//! in the namespace it was made in, so the requests themselves run on the runtime and no
//! runtime thread ever changes namespace. Every request, and the opening itself, is bounded
//! by [`COMMAND_TIMEOUT`] like the commands they replace: a namespace that hangs cannot hold
//! the agent up. Errors name the step and what the kernel said ([`HostError`]).

use std::future::Future;
use std::net::Ipv4Addr;

use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteHeader, RouteProtocol};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::host::{HostError, COMMAND_TIMEOUT};

type Result<T> = std::result::Result<T, HostError>;

/// A connection to the kernel's routing netlink in one network namespace; closed on drop.
#[derive(Debug)]
pub struct Netlink {
    handle: Handle,
    /// The task that carries the socket's messages.
    conn: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// The errno a failed request carries, if the kernel refused it.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// A failed request in words: the kernel's (`File exists`), or the library's.
fn describe(e: &rtnetlink::Error) -> String {
    match e {
        rtnetlink::Error::NetlinkError(m) => {
            let io = m.to_io();
            // "File exists (os error 17)" -> "File exists": what `ip` says too.
            let text = io.to_string();
            text.split(" (os error").next().unwrap_or(&text).to_owned()
        }
        e => e.to_string(),
    }
}

/// A step that failed: what the kernel refused, or that it did not answer in time.
#[derive(Debug)]
pub enum Failed {
    /// The kernel refused it with this errno and these words.
    Refused(Option<i32>, String),
    /// No answer within [`COMMAND_TIMEOUT`].
    TimedOut,
}

impl Failed {
    /// The errno, if the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Failed::Refused(errno, _) => *errno,
            Failed::TimedOut => None,
        }
    }

    /// As a [`HostError`] of step `what`.
    pub fn into_error(self, what: &str) -> HostError {
        match self {
            Failed::Refused(_, words) => HostError::new(what, words),
            Failed::TimedOut => HostError::new(
                what,
                format!("the kernel did not answer within {COMMAND_TIMEOUT:?}"),
            ),
        }
    }
}

/// Runs one request, bounded by [`COMMAND_TIMEOUT`].
async fn bounded<T>(
    request: impl Future<Output = std::result::Result<T, rtnetlink::Error>>,
) -> std::result::Result<T, Failed> {
    match tokio::time::timeout(COMMAND_TIMEOUT, request).await {
        Err(_) => Err(Failed::TimedOut),
        Ok(Err(e)) => Err(Failed::Refused(errno(&e), describe(&e))),
        Ok(Ok(v)) => Ok(v),
    }
}

/// The name of a link message.
fn name_of(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

impl Netlink {
    fn start(
        parts: (
            rtnetlink::proto::Connection<rtnetlink::packet_route::RouteNetlinkMessage>,
            Handle,
            impl Sized,
        ),
    ) -> Netlink {
        let (conn, handle, _) = parts;
        Netlink {
            handle,
            conn: tokio::spawn(conn),
        }
    }

    /// A session in the agent's own namespace (the calling thread's).
    pub fn host() -> Result<Netlink> {
        rtnetlink::new_connection()
            .map(Netlink::start)
            .map_err(|e| HostError::new("opening a netlink socket", e))
    }

    /// A session inside the network namespace at `ns_path` (a checked path, see
    /// [`crate::host::netns_path`]). The socket is opened by a thread of its own that enters
    /// the namespace; the runtime's threads stay where they are.
    pub async fn inside(ns_path: &str) -> Result<Netlink> {
        let what = format!("entering the container's network namespace {ns_path}");
        let runtime = tokio::runtime::Handle::current();
        let path = ns_path.to_owned();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("ovnet-netns".into())
            .spawn(move || {
                let opened = ovnet_sys::netns::NetnsGuard::enter(&path).and_then(|inside| {
                    // Registered with the runtime's reactor; the socket stays in the
                    // namespace when this thread leaves it.
                    let _rt = runtime.enter();
                    let parts = rtnetlink::new_connection();
                    drop(inside);
                    parts
                });
                let _ = tx.send(opened);
            })
            .map_err(|e| HostError::new(&what, format!("starting a thread: {e}")))?;
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Err(_) => Err(HostError::new(
                &what,
                format!("it did not finish within {COMMAND_TIMEOUT:?}"),
            )),
            // The thread panicked: it could not return to the agent's namespace (and ended
            // there, so nothing else runs in the wrong place).
            Ok(Err(_)) => Err(HostError::new(&what, "the thread entering it failed")),
            Ok(Ok(Err(e))) => Err(HostError::new(&what, not_a_namespace(e))),
            Ok(Ok(Ok(parts))) => Ok(Netlink::start(parts)),
        }
    }

    /// The index of link `name`, or `None` if there is none.
    pub async fn index(&self, name: &str) -> std::result::Result<Option<u32>, Failed> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let first = bounded(async { links.next().await.transpose() }).await;
        match first {
            Ok(found) => Ok(found.map(|m| m.header.index)),
            Err(f) if f.errno() == Some(libc::ENODEV) => Ok(None),
            Err(f) => Err(f),
        }
    }

    /// The names of every link.
    pub async fn link_names(&self) -> std::result::Result<Vec<String>, Failed> {
        let mut links = self.handle.link().get().execute();
        bounded(async {
            let mut names = Vec::new();
            while let Some(m) = links.next().await.transpose()? {
                if let Some(n) = name_of(&m) {
                    names.push(n.to_owned());
                }
            }
            Ok(names)
        })
        .await
    }

    /// Creates a link (fails if the name is taken).
    pub async fn add_link(&self, link: LinkMessage) -> std::result::Result<(), Failed> {
        bounded(self.handle.link().add(link).execute()).await
    }

    /// Changes a link (by the index or name `link` carries).
    pub async fn set_link(&self, link: LinkMessage) -> std::result::Result<(), Failed> {
        bounded(self.handle.link().set(link).execute()).await
    }

    /// Deletes the link with index `index` (one end of a veth takes the other along).
    pub async fn del_link(&self, index: u32) -> std::result::Result<(), Failed> {
        bounded(self.handle.link().del(index).execute()).await
    }

    /// Puts link `index` on bridge `bridge` and up; `ip link set DEV master BRIDGE up`.
    pub async fn attach(&self, index: u32, bridge: u32) -> std::result::Result<(), Failed> {
        self.set_link(
            LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build(),
        )
        .await
    }

    /// Adds `ip/prefix` to link `index`; with `replace`, an address already there is fine.
    pub async fn add_address(
        &self,
        index: u32,
        ip: Ipv4Addr,
        prefix: u8,
        replace: bool,
    ) -> std::result::Result<(), Failed> {
        let req = self.handle.address().add(index, ip.into(), prefix);
        let req = if replace { req.replace() } else { req };
        bounded(req.execute()).await
    }

    /// Whether the main routing table has an IPv4 default route (`ip -4 route show default`).
    pub async fn has_default_route(&self) -> std::result::Result<bool, Failed> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(query).execute();
        bounded(async {
            while let Some(r) = routes.next().await.transpose()? {
                let main = r.header.table == RouteHeader::RT_TABLE_MAIN;
                if main && r.header.destination_prefix_length == 0 {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
    }

    /// Adds the default route via `gateway` on link `index`.
    pub async fn add_default_route(
        &self,
        index: u32,
        gateway: Ipv4Addr,
    ) -> std::result::Result<(), Failed> {
        // `proto boot`, as `ip route add` makes it.
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .protocol(RouteProtocol::Boot)
            .output_interface(index)
            .gateway(gateway)
            .build();
        bounded(self.handle.route().add(route).execute()).await
    }
}

/// Why entering a namespace failed, in words that say what to do: `setns` refuses a file of
/// another kind with `EINVAL` (which the error of [`ovnet_sys::netns::NetnsGuard::enter`]
/// keeps as its kind).
fn not_a_namespace(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::InvalidInput {
        return "it is not a network namespace (pass /proc/PID/ns/net or a name under \
                /var/run/netns)"
            .to_owned();
    }
    e.to_string()
}
