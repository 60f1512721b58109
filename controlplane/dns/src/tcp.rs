//! DNS over TCP (RFC 7766): each message behind a 2-byte big-endian length. A connection is
//! served by one task, one query at a time, in order; at most
//! [`crate::Config::max_tcp_connections`] at once (more are closed at once and counted). A
//! connection ends after [`crate::Config::tcp_idle_timeout`] of silence, on a length of 0 or
//! above [`MAX_QUERY_LEN`], or when a message or an answer does not get through in that time:
//! memory per connection is one query buffer, and no peer can hold a task forever.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use crate::counters::DropReason;
use crate::decide::{decide, Decision, Reply, Transport, MAX_QUERY_LEN};
use crate::server::Shared;

/// Accepts connections until `stop` changes, then closes them all.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.max_tcp_connections));
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    log::debug!("DNS TCP accept: {e}");
                    tokio::time::sleep(crate::server::ERROR_BACKOFF).await;
                    continue;
                }
            },
        };
        shared.counters.tcp_connection();
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                connections.spawn(connection(shared.clone(), stream, slot));
            }
            Err(_) => {
                shared.counters.drop(DropReason::TcpConnectionLimit);
                drop(stream);
            }
        }
    }
    connections.shutdown().await;
}

/// Serves one connection until the peer closes it, goes idle, or breaks the framing.
async fn connection(shared: Arc<Shared>, mut stream: TcpStream, _slot: OwnedSemaphorePermit) {
    let _ = stream.set_nodelay(true);
    let idle = shared.tcp_idle_timeout;
    let counters = &shared.counters;
    let mut buf = vec![0u8; MAX_QUERY_LEN];
    loop {
        let mut prefix = [0u8; 2];
        match timeout(idle, stream.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            // Closed or idle between messages: the normal end of a connection.
            Ok(Err(_)) | Err(_) => return,
        }
        let len = usize::from(u16::from_be_bytes(prefix));
        if len == 0 || len > MAX_QUERY_LEN {
            counters.drop(DropReason::TcpFraming);
            return;
        }
        match timeout(idle, stream.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => {
                counters.drop(DropReason::TcpIncomplete);
                return;
            }
        }
        counters.query(true);
        let decision = decide(&buf[..len], &shared.zone.load(), Transport::Tcp);
        let reply = match decision {
            Decision::Answer(reply) => reply,
            Decision::Drop(reason) => {
                counters.drop(reason);
                continue;
            }
            Decision::Forward(fwd) => {
                let Ok(_permit) = shared.forwards.try_acquire() else {
                    counters.drop(DropReason::ForwardLimit);
                    continue;
                };
                match shared.forward(&fwd).await {
                    Some(reply) => reply,
                    None => {
                        counters.drop(DropReason::Encode);
                        continue;
                    }
                }
            }
        };
        if !write(&mut stream, &reply, &shared).await {
            counters.drop(DropReason::Send);
            return;
        }
        counters.answer(reply.rcode);
    }
}

/// Writes `reply` with its length prefix, within the idle timeout.
async fn write(stream: &mut TcpStream, reply: &Reply, shared: &Shared) -> bool {
    let Ok(len) = u16::try_from(reply.bytes.len()) else {
        return false;
    };
    let mut framed = Vec::with_capacity(2 + reply.bytes.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&reply.bytes);
    matches!(
        timeout(shared.tcp_idle_timeout, stream.write_all(&framed)).await,
        Ok(Ok(()))
    )
}
