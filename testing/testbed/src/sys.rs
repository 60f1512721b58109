//! The only module with `unsafe`: `setns(2)` into a named network namespace, `kill(2)`, a
//! socket buffer size and `poll(2)` on one descriptor. Everything else in the crate is safe
//! code built on these wrappers.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Moves the calling thread into the network namespace bound at `path` (e.g. `/var/run/netns/x`).
///
/// Only the calling thread changes namespace; callers run this on a thread they own.
pub(crate) fn setns_net(path: &Path) -> io::Result<()> {
    let file = File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    // SAFETY: `file` is an open descriptor that stays alive for the duration of the call;
    // setns(2) only reads it and changes the calling thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("setns({}, CLONE_NEWNET): {e}", path.display()),
        ));
    }
    Ok(())
}

/// Sets a socket's receive buffer to `bytes` with `SO_RCVBUFFORCE` (root is not capped by
/// `net.core.rmem_max`).
pub(crate) fn force_recv_buffer(fd: &impl AsRawFd, bytes: i32) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size, as setsockopt(2) expects
    // for integer options; the descriptor is an open socket owned by the caller.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signal` to process `pid`.
pub(crate) fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad pid {pid}")))?;
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal pid {pid}"),
        ));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; pid > 0 so it
    // targets exactly one process, never a process group.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("kill({pid}, {signal}): {e}"),
        ));
    }
    Ok(())
}

/// Waits up to `timeout` for `fd` to become readable (for a listening socket: a connection
/// to accept); `false` if the time ran out or a signal interrupted the wait.
pub(crate) fn wait_readable(fd: &impl AsRawFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: passes one live, initialised pollfd and a count of 1; poll(2) writes only its
    // `revents` field. The descriptor is open for the duration of the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(e),
        };
    }
    Ok(rc > 0)
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use super::wait_readable;

    #[test]
    fn a_listener_is_readable_only_with_a_connection_pending() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t0 = Instant::now();
        assert!(!wait_readable(&l, Duration::from_millis(30)).unwrap());
        assert!(
            t0.elapsed() >= Duration::from_millis(25),
            "{:?}",
            t0.elapsed()
        );
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(wait_readable(&l, Duration::from_secs(5)).unwrap());
        l.accept().unwrap();
        assert!(!wait_readable(&l, Duration::ZERO).unwrap());
    }
}
