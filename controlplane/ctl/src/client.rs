//! Reaching the local `ovnet-agent`: a gRPC channel over its unix socket, bounded waits, and the
//! translation of every failure into the one-line message `ovctl` prints after `Error: `.
//!
//! The agent puts a docker-like, user-ready sentence in each `Status` message, so a status from
//! the agent is shown as it is; only transport failures are reworded here.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ovnet_proto::{AgentClient, WARNING_METADATA};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Response, Status};

/// How long to wait for the agent's socket to accept and complete the HTTP/2 handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take; the slowest calls wait on etcd (a few seconds at worst) or
/// build a container's interfaces, so this only catches a hung agent.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure to report as `Error: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    message: String,
    /// The status code when the agent answered with an error.
    code: Option<Code>,
}

impl CliError {
    /// An error found by `ovctl` itself (bad arguments, ...).
    pub fn new(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: None,
        }
    }

    /// The agent's status code, if this error is the agent's answer.
    pub fn code(&self) -> Option<Code> {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// The first `io::Error` in an error's source chain: the cause of a failed socket connect is
/// wrapped by hyper-util and tonic.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

fn unreachable(path: &Path, cause: &str, permission: bool) -> CliError {
    let hint = if permission {
        "permission denied, run ovctl as root"
    } else {
        "is ovnet-agent running?"
    };
    CliError::new(format!(
        "cannot reach the ovnet agent at {}: {hint} ({cause})",
        path.display()
    ))
}

/// A connected agent.
#[derive(Debug, Clone)]
pub struct Agent {
    client: AgentClient<Channel>,
    path: PathBuf,
}

impl Agent {
    /// Connects to the agent serving `path`, waiting at most [`CONNECT_TIMEOUT`].
    pub async fn connect(path: &Path) -> Result<Agent, CliError> {
        let sock = path.to_path_buf();
        let connector = tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(sock).await?)) }
        });
        // The URI is not used for routing (the connector ignores it); it only names the
        // :authority of the requests.
        let endpoint = Endpoint::from_static("http://ovnet-agent").connect_timeout(CONNECT_TIMEOUT);
        let channel =
            match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector))
                .await
            {
                Ok(Ok(channel)) => channel,
                Ok(Err(e)) => {
                    return Err(match io_cause(&e) {
                        Some(io) => unreachable(
                            path,
                            &io.to_string(),
                            io.kind() == io::ErrorKind::PermissionDenied,
                        ),
                        None => unreachable(path, &e.to_string(), false),
                    })
                }
                Err(_) => {
                    return Err(unreachable(
                        path,
                        &format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                        false,
                    ))
                }
            };
        Ok(Agent {
            client: AgentClient::new(channel),
            path: path.to_path_buf(),
        })
    }

    /// A handle to make a call with; cheap (the channel is shared).
    pub fn client(&self) -> AgentClient<Channel> {
        self.client.clone()
    }

    /// Awaits a call for at most [`CALL_TIMEOUT`] and turns a failure into a [`CliError`].
    ///
    /// `agent.call(agent.client().list_networks(req)).await?`
    pub async fn call<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, CliError> {
        Ok(self.call_warned(call).await?.0)
    }

    /// [`Agent::call`], also returning the warnings the agent sent with its answer (the
    /// [`WARNING_METADATA`] entries of the response), for the command to print.
    pub async fn call_warned<T>(
        &self,
        call: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<(T, Vec<String>), CliError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(resp)) => {
                let warnings = resp
                    .metadata()
                    .get_all(WARNING_METADATA)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                Ok((resp.into_inner(), warnings))
            }
            Ok(Err(status)) => Err(status_error(&self.path, &status)),
            Err(_) => Err(CliError::new(format!(
                "the ovnet agent at {} did not answer within {}s",
                self.path.display(),
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// The agent's message as it is, unless the status comes from the transport (the agent went
/// away mid-call), from an older agent, or carries no message.
fn status_error(path: &Path, status: &Status) -> CliError {
    let code = status.code();
    let from_transport = std::error::Error::source(status).is_some()
        && matches!(code, Code::Unavailable | Code::Unknown | Code::Cancelled);
    let message = if from_transport {
        format!(
            "lost the connection to the ovnet agent at {}: {}",
            path.display(),
            status.message()
        )
    } else if code == Code::Unimplemented {
        format!(
            "the ovnet agent at {} does not support this command: upgrade it ({})",
            path.display(),
            status.message()
        )
    } else if status.message().is_empty() {
        format!("the ovnet agent failed: {code}")
    } else {
        status.message().to_string()
    };
    CliError {
        message,
        code: Some(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_messages_are_shown_as_they_are() {
        let path = Path::new("/run/ovnet/agent.sock");
        let e = status_error(
            path,
            &Status::already_exists("endpoint with name web2 already exists in network demo"),
        );
        assert_eq!(
            e.to_string(),
            "endpoint with name web2 already exists in network demo"
        );
        assert_eq!(e.code(), Some(Code::AlreadyExists));
        let e = status_error(path, &Status::internal(""));
        assert_eq!(e.to_string(), "the ovnet agent failed: Internal error");
    }

    #[test]
    fn io_cause_walks_the_chain() {
        #[derive(Debug)]
        struct Wrap(io::Error);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let w = Wrap(io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(
            io_cause(&w).map(io::Error::kind),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }
}
