//! Network namespaces: run setup code with the calling thread inside another namespace.
//!
//! A TAP device or socket belongs to the namespace of the thread that created it and keeps
//! working after the thread leaves. That lets one process serve several simulated hosts (tests)
//! and lets the agent create interfaces inside container namespaces. `setns(CLONE_NEWNET)`
//! affects only the calling thread, so [`NetnsGuard`] switches and switches back.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Where `ip netns add NAME` puts its namespace files.
pub const NETNS_RUN_DIR: &str = "/var/run/netns";

/// The file of a namespace given either as a name under `/var/run/netns` or as a path
/// (for example `/proc/1234/ns/net`).
pub fn resolve(name_or_path: &str) -> PathBuf {
    if name_or_path.contains('/') {
        PathBuf::from(name_or_path)
    } else {
        Path::new(NETNS_RUN_DIR).join(name_or_path)
    }
}

/// Opens a network namespace file, with a message that names it when it is missing.
pub fn open(name_or_path: &str) -> io::Result<File> {
    let path = resolve(name_or_path);
    File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {} not found: {e}", path.display()),
        )
    })
}

fn setns(fd: &File) -> io::Result<()> {
    // SAFETY: `fd` is an open namespace file; setns(2) with CLONE_NEWNET only changes the
    // calling thread's network namespace and fails cleanly on a file of another kind.
    let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// While alive, the calling thread is in another network namespace; dropping it returns the
/// thread to the namespace it was in. Not `Send`: it must be dropped on the thread that made it.
#[derive(Debug)]
pub struct NetnsGuard {
    original: File,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Moves the calling thread into `name_or_path`.
    pub fn enter(name_or_path: &str) -> io::Result<NetnsGuard> {
        let original = File::open("/proc/thread-self/ns/net")?;
        let target = open(name_or_path)?;
        setns(&target).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("entering network namespace {name_or_path}: {e}"),
            )
        })?;
        Ok(NetnsGuard {
            original,
            _not_send: std::marker::PhantomData,
        })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.original) {
            // A thread stuck in the wrong namespace would silently create devices there; there
            // is no way to continue safely.
            panic!("returning to the original network namespace failed: {e}");
        }
    }
}

/// Runs `f` with the calling thread inside `name_or_path`, then returns to where it was.
pub fn with<R>(name_or_path: &str, f: impl FnOnce() -> R) -> io::Result<R> {
    let guard = NetnsGuard::enter(name_or_path)?;
    let out = f();
    drop(guard);
    Ok(out)
}

/// Moves the calling thread into a new, empty network namespace of its own (only `lo`, down).
/// The namespace lives as long as something in it does: a thread, a socket, a TAP. Tests use
/// it for a private, nameless network that needs no cleanup.
pub fn unshare() -> io::Result<()> {
    // SAFETY: unshare(2) with CLONE_NEWNET changes only the calling thread's network namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a path given as a container's network namespace turned out to be, when it is not one
/// the agent may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotANetns {
    /// A file that is not a namespace (a regular file, a FIFO, a directory, a device...).
    NotANamespace,
    /// A namespace of another kind (mount, PID, user...).
    OtherKind,
    /// The agent's own network namespace, the host's.
    OwnNamespace,
}

/// `statfs(2)`'s `f_type` of the namespace file system (`include/uapi/linux/magic.h`).
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `NS_GET_NSTYPE`, `_IO(0xb7, 0x3)` (`include/uapi/linux/nsfs.h`, Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Checks, without blocking, that `path` is a network namespace other than the calling
/// process's own. A FIFO, a device or a regular file is looked at through an `O_PATH`
/// descriptor, which neither opens nor reads it; only a file of the namespace file system is
/// opened for its type.
pub fn check_netns(path: &Path) -> io::Result<Result<(), NotANetns>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let handle = File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(path)?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `handle` is an open descriptor and `fs` a writable `statfs` it fills.
    if unsafe { libc::fstatfs(handle.as_raw_fd(), &mut fs) } < 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // f_type's type differs between C libraries.
    if fs.f_type as i64 != NSFS_MAGIC {
        return Ok(Err(NotANetns::NotANamespace));
    }
    // A namespace file: opening it reads nothing and cannot block.
    let ns = File::open(path)?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only returns the namespace's type.
    let kind = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind < 0 {
        return Err(io::Error::last_os_error());
    }
    if kind != libc::CLONE_NEWNET {
        return Ok(Err(NotANetns::OtherKind));
    }
    let (theirs, ours) = (ns.metadata()?, std::fs::metadata("/proc/self/ns/net")?);
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Ok(Err(NotANetns::OwnNamespace));
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_names_and_paths() {
        assert_eq!(resolve("web1"), PathBuf::from("/var/run/netns/web1"));
        assert_eq!(resolve("/proc/1/ns/net"), PathBuf::from("/proc/1/ns/net"));
    }

    #[test]
    fn missing_namespace_is_named_in_the_error() {
        let err = with("ovnet-no-such-ns", || ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("ovnet-no-such-ns"), "{err}");
    }

    #[test]
    fn entering_our_own_namespace_round_trips() {
        let me = format!("/proc/{}/ns/net", std::process::id());
        let inside = with(&me, || {
            std::fs::read_link("/proc/thread-self/ns/net").unwrap()
        })
        .unwrap();
        let after = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        assert_eq!(inside, after);
    }
}
