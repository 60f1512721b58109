//! One HTTP/1.0 request from the calling thread's namespace, for tests and the bench asking
//! etcd's gateway, an agent's metrics or a published port: a blocking client with bounded
//! waits, no pooling, the whole response read until the server closes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a read or write may wait.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `METHOD path` with `body` (JSON, if any) to `addr` and returns the whole response:
/// status line, headers and body.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let content = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{content}\r\n{body}"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp)
}

/// The body of a whole response (all of it if it has no header block).
pub fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map_or(resp, |(_, b)| b)
}
