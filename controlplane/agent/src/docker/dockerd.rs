//! A small client of dockerd's own API, for what the plugin protocol does not say.
//!
//! Docker's remote driver protocol names networks and endpoints by ID only: neither the
//! network's name (which ovnet's network takes when Docker creates it) nor the container's
//! (which is the endpoint's name in ovnet, in `ovctl network inspect` and in DNS) is sent. Both
//! are in dockerd's `GET /networks/{id}`, which answers while dockerd waits for the plugin:
//! during `Join` it lists the joining endpoint (under the key `ep-<endpoint id>`) with its
//! container's name and address. The plugin never calls dockerd while dockerd could be
//! waiting for an answer it cannot give yet (at start, dockerd cleans up stale endpoints
//! before it serves its API: `Leave`, `DeleteEndpoint` and `ReleaseAddress` ask it nothing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Deserializer};
use tokio::net::UnixStream;

/// Bound on one call to dockerd.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from dockerd: a network with thousands of containers is a few
/// megabytes.
const MAX_ANSWER: usize = 32 << 20;

/// Where dockerd listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// A call to dockerd that failed.
#[derive(Debug, thiserror::Error)]
#[error("asking dockerd at {socket} {what}: {cause}")]
pub struct DockerdError {
    socket: String,
    what: String,
    cause: String,
}

/// `null` in dockerd's JSON (an empty map or list) as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A network as `GET /networks/{id}` shows it (the fields ovnet reads).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkInfo {
    /// Its name.
    pub name: String,
    /// Its ID.
    pub id: String,
    /// Its driver (the plugin's name).
    pub driver: String,
    /// `--internal`.
    pub internal: bool,
    /// The `-o` options.
    #[serde(deserialize_with = "null_default")]
    pub options: HashMap<String, String>,
    /// The `--label`s.
    #[serde(deserialize_with = "null_default")]
    pub labels: HashMap<String, String>,
    /// Its IPAM configuration.
    #[serde(rename = "IPAM")]
    pub ipam: IpamInfo,
    /// Its endpoints, by container ID (`ep-<endpoint id>` while one joins).
    #[serde(deserialize_with = "null_default")]
    pub containers: HashMap<String, ContainerEntry>,
}

/// A network's IPAM configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamInfo {
    /// The IPAM driver.
    pub driver: String,
    /// One entry per pool.
    #[serde(deserialize_with = "null_default")]
    pub config: Vec<IpamConfig>,
}

/// One pool of a network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    /// CIDR.
    pub subnet: String,
    /// Address, or empty.
    pub gateway: String,
}

/// An endpoint of a network.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerEntry {
    /// The container's name (the endpoint's).
    pub name: String,
    /// The endpoint's ID.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// Its address with prefix length.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
}

impl NetworkInfo {
    /// The endpoint with this ID and its key (a container ID, or `ep-<endpoint id>`).
    pub fn endpoint(&self, endpoint_id: &str) -> Option<(&str, &ContainerEntry)> {
        self.containers
            .iter()
            .find(|(_, c)| c.endpoint_id == endpoint_id)
            .map(|(k, c)| (k.as_str(), c))
    }
}

/// A container as `GET /containers/json` lists it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ContainerSummary {
    id: String,
    #[serde(deserialize_with = "null_default")]
    names: Vec<String>,
}

/// dockerd's API on its unix socket.
#[derive(Debug, Clone)]
pub struct Dockerd {
    socket: PathBuf,
}

impl Dockerd {
    /// dockerd at `socket` (a path, or `unix://PATH` as `docker -H` takes it).
    pub fn new(socket: &str) -> Dockerd {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        Dockerd {
            socket: PathBuf::from(path),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn error(&self, what: &str, cause: impl std::fmt::Display) -> DockerdError {
        DockerdError {
            socket: self.socket.display().to_string(),
            what: what.to_owned(),
            cause: cause.to_string(),
        }
    }

    /// `GET path`: the status and the body.
    async fn get(&self, what: &str, path: &str) -> Result<(StatusCode, Bytes), DockerdError> {
        let call = async {
            let stream = UnixStream::connect(&self.socket).await.map_err(|e| {
                self.error(what, format!("{e}: is dockerd running? (--docker-host)"))
            })?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| self.error(what, e))?;
            let driver = tokio::spawn(conn);
            let req = Request::get(path)
                .header(hyper::header::HOST, "docker")
                .body(Empty::<Bytes>::new())
                .map_err(|e| self.error(what, e))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| self.error(what, e))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| self.error(what, e))?
                .to_bytes();
            driver.abort();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, call)
            .await
            .map_err(|_| self.error(what, format!("no answer within {TIMEOUT:?}")))?
    }

    /// The network with this ID; `None` if dockerd has none (yet, or any more).
    pub async fn network(&self, id: &str) -> Result<Option<NetworkInfo>, DockerdError> {
        let what = format!("for network {id}");
        if !is_id(id) {
            return Err(self.error(&what, "not a network ID"));
        }
        let (status, body) = self.get(&what, &format!("/networks/{id}")).await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| self.error(&what, format!("unreadable answer: {e}"))),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.error(&what, answer_text(s, &body))),
        }
    }

    /// Every network of driver `driver` (without their endpoints).
    pub async fn networks(&self, driver: &str) -> Result<Vec<NetworkInfo>, DockerdError> {
        let what = "for its networks";
        let (status, body) = self.get(what, "/networks").await?;
        if status != StatusCode::OK {
            return Err(self.error(what, answer_text(status, &body)));
        }
        let all: Vec<NetworkInfo> = serde_json::from_slice(&body)
            .map_err(|e| self.error(what, format!("unreadable answer: {e}")))?;
        Ok(all.into_iter().filter(|n| n.driver == driver).collect())
    }

    /// The ID of the container named `name`, if there is one. (Answers while the container
    /// starts: the listing takes no container's lock.)
    pub async fn container_id(&self, name: &str) -> Result<Option<String>, DockerdError> {
        let what = format!("for container {name}");
        let filters = format!("{{\"name\":[\"^/{name}$\"]}}");
        let path = format!(
            "/containers/json?all=1&filters={}",
            percent_encode(&filters)
        );
        let (status, body) = self.get(&what, &path).await?;
        if status != StatusCode::OK {
            return Err(self.error(&what, answer_text(status, &body)));
        }
        let list: Vec<ContainerSummary> = serde_json::from_slice(&body)
            .map_err(|e| self.error(&what, format!("unreadable answer: {e}")))?;
        let slash = format!("/{name}");
        Ok(list
            .into_iter()
            .find(|c| c.names.contains(&slash))
            .map(|c| c.id))
    }
}

/// dockerd's `{"message": ...}` of a failed call, or the status.
fn answer_text(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Message>(body) {
        Ok(m) => format!("{status}: {}", m.message),
        Err(_) => status.to_string(),
    }
}

/// Whether `s` can be put in a request path as is: an ID of dockerd's, hex.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `s` for a URL query: every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What dockerd 20.10 answered during a `Join`, trimmed.
    const DURING_JOIN: &str = r#"{"Name":"demo","Id":"51d1e8f2","Created":"2026-12-04T23:33:45Z",
      "Scope":"local","Driver":"ovnet","EnableIPv6":false,
      "IPAM":{"Driver":"ovnet","Options":{},"Config":[{"Subnet":"10.99.0.0/24"}]},
      "Internal":false,"Attachable":false,"Ingress":false,"ConfigFrom":{"Network":""},
      "ConfigOnly":false,"Containers":{
        "44175bb2":{"Name":"web1","EndpointID":"b114","MacAddress":"02:42:1c:e9:59:1d",
          "IPv4Address":"10.99.0.2/24","IPv6Address":""},
        "ep-db411e8e":{"Name":"web2","EndpointID":"db411e8e","MacAddress":"",
          "IPv4Address":"10.99.0.3/24","IPv6Address":""}},
      "Options":{"com.docker.network.driver.mtu":"1400","ovnet.vni":"4000"},"Labels":{"lab":"1"}}"#;

    #[test]
    fn a_joining_endpoint_is_found_by_its_id() {
        let n: NetworkInfo = serde_json::from_str(DURING_JOIN).unwrap();
        assert_eq!((n.name.as_str(), n.driver.as_str()), ("demo", "ovnet"));
        assert_eq!(n.ipam.config[0].subnet, "10.99.0.0/24");
        assert_eq!(n.options["ovnet.vni"], "4000");
        let (key, e) = n.endpoint("db411e8e").unwrap();
        assert_eq!(
            (key, e.name.as_str(), e.ipv4_address.as_str()),
            ("ep-db411e8e", "web2", "10.99.0.3/24")
        );
        assert!(n.endpoint("nope").is_none());
    }

    #[test]
    fn nulls_are_empty() {
        let n: NetworkInfo = serde_json::from_str(
            r#"{"Name":"x","IPAM":{"Driver":"ovnet","Config":null},"Options":null,
                "Labels":null,"Containers":null}"#,
        )
        .unwrap();
        assert!(n.ipam.config.is_empty() && n.options.is_empty() && n.containers.is_empty());
    }

    #[test]
    fn queries_are_encoded_and_ids_checked() {
        assert_eq!(
            percent_encode(r#"{"name":["^/web1$"]}"#),
            "%7B%22name%22%3A%5B%22%5E%2Fweb1%24%22%5D%7D"
        );
        assert!(is_id("51d1e8f269b2"));
        assert!(!is_id("../containers"));
        assert!(!is_id(""));
    }

    #[tokio::test]
    async fn a_missing_dockerd_says_where_it_was_looked_for() {
        let d = Dockerd::new("unix:///nonexistent/ovnet-test/docker.sock");
        let e = d.network("abc").await.unwrap_err().to_string();
        assert!(
            e.starts_with("asking dockerd at /nonexistent/ovnet-test/docker.sock for network abc:"),
            "{e}"
        );
        assert!(e.contains("--docker-host"), "{e}");
    }
}
