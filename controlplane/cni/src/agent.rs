//! Reaching the local `ovnet-agent` over its unix socket, with bounded waits, and turning what
//! can go wrong into CNI errors.
//!
//! The agent answers a refused call with a gRPC status whose message is a user-ready sentence;
//! [`refused`] keeps that sentence as the CNI `msg` and picks the code by the status code: a
//! transient failure (etcd unreachable, a lost race, a timeout) is 11, "try again later", as
//! is an agent that does not answer at all.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use ovnet_proto::v1::{Attachment, ListAttachmentsRequest};
use ovnet_proto::AgentClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

use crate::error::{CniError, AGENT_REFUSED, ALREADY_ATTACHED, INVALID_CONFIG, TRY_AGAIN_LATER};

/// How long to wait for the agent's socket to accept and complete the HTTP/2 handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take: the slowest wait on etcd (a few seconds at worst) or build a
/// container's veth, so this only catches a hung agent.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The owner this plugin gives its endpoints, and looks for.
pub const OWNER: &str = "cni";

/// A connected agent.
#[derive(Debug, Clone)]
pub struct Agent {
    client: AgentClient<Channel>,
    path: PathBuf,
}

/// Why the agent could not be reached: the socket is missing, refuses, or nothing answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The socket.
    pub path: PathBuf,
    /// The cause, for `details`.
    pub cause: String,
}

impl Unreachable {
    /// As a CNI error for ADD, DEL, CHECK and GC: try again later.
    pub fn to_error(&self) -> CniError {
        CniError::new(
            TRY_AGAIN_LATER,
            format!(
                "cannot reach the ovnet agent at {}: start ovnet-agent (or fix \"agent\" in the \
                 network configuration), then try again",
                self.path.display()
            ),
        )
        .details(self.cause.clone())
    }
}

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

/// Whether a status is the transport's, not the agent's answer (the connection broke).
fn from_transport(s: &Status) -> bool {
    use std::error::Error;
    s.source().is_some() && s.code() == Code::Unavailable
}

/// The CNI error for a call the agent refused with `s`: its sentence, and a code by kind.
/// `NotFound` is the network (the only thing the plugin names that can be missing): a
/// configuration error.
pub fn refused(s: &Status) -> CniError {
    let code = match s.code() {
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded | Code::ResourceExhausted => {
            TRY_AGAIN_LATER
        }
        Code::NotFound | Code::InvalidArgument => INVALID_CONFIG,
        Code::AlreadyExists => ALREADY_ATTACHED,
        _ => AGENT_REFUSED,
    };
    let msg = if s.message().is_empty() {
        format!("the ovnet agent answered {:?}", s.code())
    } else {
        s.message().to_owned()
    };
    CniError::new(code, msg)
}

impl Agent {
    /// Connects to the agent serving `path`, waiting at most [`CONNECT_TIMEOUT`].
    pub async fn connect(path: &Path) -> Result<Agent, Unreachable> {
        let sock = path.to_path_buf();
        let unreachable = |cause: String| Unreachable {
            path: path.to_path_buf(),
            cause,
        };
        let connector = tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(sock).await?)) }
        });
        // The connector ignores the URI; it only names the requests' :authority.
        let endpoint = Endpoint::from_static("http://ovnet-agent").connect_timeout(CONNECT_TIMEOUT);
        match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect_with_connector(connector))
            .await
        {
            Ok(Ok(channel)) => Ok(Agent {
                client: AgentClient::new(channel),
                path: path.to_path_buf(),
            }),
            Ok(Err(e)) => Err(unreachable(match io_cause(&e) {
                Some(io) => io.to_string(),
                None => e.to_string(),
            })),
            Err(_) => Err(unreachable(format!(
                "no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The generated client, for [`Agent::call`].
    pub fn client(&self) -> AgentClient<Channel> {
        self.client.clone()
    }

    /// Runs one call with [`CALL_TIMEOUT`]. `Err(Ok(status))` is the agent's refusal;
    /// `Err(Err(_))` means the agent stopped answering (broken connection, timeout).
    pub async fn call<T>(
        &self,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Result<Status, Unreachable>> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) if from_transport(&s) => Err(Err(Unreachable {
                path: self.path.clone(),
                cause: s.to_string(),
            })),
            Ok(Err(s)) => Err(Ok(s)),
            Err(_) => Err(Err(Unreachable {
                path: self.path.clone(),
                cause: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
            })),
        }
    }

    /// This node's attachments of this plugin in `network`, optionally of one container and
    /// interface. `Ok(None)`: the network does not exist.
    pub async fn attachments(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Vec<Attachment>>, CniError> {
        let req = ListAttachmentsRequest {
            network: network.to_owned(),
            container_id: container_id.to_owned(),
            ifname: ifname.to_owned(),
            owner: OWNER.to_owned(),
        };
        match self.call(self.client().list_attachments(req)).await {
            Ok(r) => Ok(Some(r.attachments)),
            Err(Ok(s)) if s.code() == Code::NotFound => Ok(None),
            Err(Ok(s)) => Err(refused(&s)),
            Err(Err(u)) => Err(u.to_error()),
        }
    }

    /// Maps a call's failure to a CNI error (see [`refused`]).
    pub fn failure(e: Result<Status, Unreachable>) -> CniError {
        match e {
            Ok(s) => refused(&s),
            Err(u) => u.to_error(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind_of_refusal_and_keep_the_sentence() {
        let cases = [
            (Code::Unavailable, TRY_AGAIN_LATER),
            (Code::Aborted, TRY_AGAIN_LATER),
            (Code::NotFound, INVALID_CONFIG),
            (Code::InvalidArgument, INVALID_CONFIG),
            (Code::AlreadyExists, ALREADY_ATTACHED),
            (Code::FailedPrecondition, AGENT_REFUSED),
            (Code::Internal, AGENT_REFUSED),
        ];
        for (grpc, cni) in cases {
            let e = refused(&Status::new(grpc, "network nope not found"));
            assert_eq!((e.code, e.msg.as_str()), (cni, "network nope not found"));
        }
        assert_eq!(
            refused(&Status::new(Code::Internal, "")).msg,
            "the ovnet agent answered Internal"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_socket_is_try_again_later() {
        let path = Path::new("/nonexistent/ovnet-cni-test.sock");
        let e = Agent::connect(path).await.unwrap_err().to_error();
        assert_eq!(e.code, TRY_AGAIN_LATER);
        assert!(
            e.msg
                .starts_with("cannot reach the ovnet agent at /nonexistent/ovnet-cni-test.sock"),
            "{e}"
        );
        assert!(e.details.contains("No such file"), "{e}");
    }
}
