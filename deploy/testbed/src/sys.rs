//! The only module with `unsafe`: `setns(2)` into a named network namespace and `kill(2)`.
//! Everything else in the crate is safe code built on these two wrappers.

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
