//! Running things: external commands (`run`) and Rust closures on a thread inside a network
//! namespace (`in_netns`). No namespace bookkeeping here; that is `bed`'s job.

use std::io;
use std::path::PathBuf;
use std::process::Command;

use crate::sys;

/// Directory where iproute2 binds named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// `/var/run/netns/{ns}`: the bind mount `ip netns add` creates for namespace `ns`.
pub fn ns_path(ns: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(ns)
}

/// Runs `args[0]` with the rest as arguments, waits, and returns its stdout.
///
/// Fails with the command line, exit status and stderr in the message if it does not exit 0.
pub fn run(args: &[&str]) -> io::Result<String> {
    let (prog, rest) = args
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "run: empty command"))?;
    let out = Command::new(prog)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("spawn `{}`: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `f` on a fresh thread that first `setns(2)`s into network namespace `ns`, and returns
/// its result.
///
/// Sockets, TAP devices and other fds that `f` creates belong to `ns` for their whole life,
/// even after the thread ends. A panic inside `f` is re-raised in the caller. Fails only if the
/// namespace cannot be entered.
pub fn in_netns<R: Send>(ns: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    let path = ns_path(ns);
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name(format!("netns-{ns}"))
            .spawn_scoped(s, move || {
                sys::setns_net(&path)?;
                Ok(f())
            })?;
        match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Returns an `io::Error` saying `what` failed because of `e`.
pub(crate) fn ctx(what: impl std::fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
