//! A named network namespace's `resolv.conf`: `ip netns exec NAME ...` bind-mounts
//! `/etc/netns/NAME/resolv.conf` over `/etc/resolv.conf`, so a container that is a named
//! namespace resolves through its network's resolver once that file says `nameserver GATEWAY`.
//!
//! The agent writes it when it connects such a container (unless a file is there that ovnet did
//! not write) and removes it when the container leaves that network, but only if ovnet wrote
//! it for that network: the first line marks the file as ovnet's and names the network. A
//! container that is not a named namespace (a path, a pid) gets nothing: its runtime writes
//! `nameserver GATEWAY` into the container's own resolv.conf, as the README says.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where `ip netns exec` looks for a namespace's own configuration files.
pub const NETNS_ETC: &str = "/etc/netns";

/// The first line of a file ovnet wrote, up to the network's name.
const MARK: &str = "# Written by ovnet-agent for network ";

/// The file's text: ovnet's mark, the resolver, and Docker's `ndots:0` (names with no dot
/// are tried as they are first).
pub fn text(network: &str, gateway: Ipv4Addr) -> String {
    format!(
        "{MARK}{network}; removed when the container leaves it.\n\
         nameserver {gateway}\n\
         options ndots:0\n"
    )
}

/// Whether `content` is a file ovnet wrote for `network`.
fn ours_for(content: &str, network: &str) -> bool {
    content
        .lines()
        .next()
        .and_then(|l| l.strip_prefix(MARK))
        .and_then(|rest| rest.split(';').next())
        == Some(network)
}

/// The namespace name behind `netns` as a connect request gives it, if it is one (a name
/// under `/var/run/netns`, not a path or a pid).
pub fn named(netns: &str) -> Option<&str> {
    let plain = !netns.is_empty()
        && !netns.contains('/')
        && netns != "."
        && netns != ".."
        && !netns.bytes().all(|b| b.is_ascii_digit());
    plain.then_some(netns)
}

/// What [`write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The file now points at the resolver.
    Done(PathBuf),
    /// A file ovnet did not write, or wrote for another network, is there and was kept.
    Kept(PathBuf),
}

/// Writes `NAME/resolv.conf` under `etc` (normally [`NETNS_ETC`]) for the container's
/// namespace `ns` on `network`, unless a file is there that is not ovnet's for that network.
pub fn write(etc: &Path, ns: &str, network: &str, gateway: Ipv4Addr) -> io::Result<Written> {
    let dir = etc.join(ns);
    let path = dir.join("resolv.conf");
    match std::fs::read_to_string(&path) {
        Ok(old) if !ours_for(&old, network) => return Ok(Written::Kept(path)),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(&dir)?;
    // Written whole to a temporary name and renamed, so a reader never sees half a file.
    let tmp = dir.join(".resolv.conf.ovnet");
    std::fs::write(&tmp, text(network, gateway))?;
    std::fs::rename(&tmp, &path)?;
    Ok(Written::Done(path))
}

/// Removes `NAME/resolv.conf` under `etc` if ovnet wrote it for `network`, and the directory
/// if that leaves it empty. Returns whether a file was removed.
pub fn remove(etc: &Path, ns: &str, network: &str) -> io::Result<bool> {
    let dir = etc.join(ns);
    let path = dir.join("resolv.conf");
    let old = match std::fs::read_to_string(&path) {
        Ok(old) => old,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !ours_for(&old, network) {
        return Ok(false);
    }
    std::fs::remove_file(&path)?;
    // Only if empty: anything else there is somebody else's.
    let _ = std::fs::remove_dir(&dir);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_namespaces_only() {
        assert_eq!(named("web1"), Some("web1"));
        for not in ["", "/proc/1/ns/net", "1234", "a/b", ".", ".."] {
            assert_eq!(named(not), None, "{not}");
        }
    }

    #[test]
    fn written_and_removed_only_when_ours() {
        let etc = tempfile::tempdir().unwrap();
        let gw: Ipv4Addr = "10.0.0.1".parse().unwrap();
        let path = etc.path().join("web1/resolv.conf");
        assert_eq!(
            write(etc.path(), "web1", "front", gw).unwrap(),
            Written::Done(path.clone())
        );
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.contains("\nnameserver 10.0.0.1\n"), "{content}");
        assert!(content.starts_with("# Written by ovnet-agent for network front;"));
        // Connected to a second network: the first one's file stays.
        assert_eq!(
            write(etc.path(), "web1", "back", "10.0.1.1".parse().unwrap()).unwrap(),
            Written::Kept(path.clone())
        );
        assert!(!remove(etc.path(), "web1", "back").unwrap());
        assert!(path.exists());
        assert!(remove(etc.path(), "web1", "front").unwrap());
        assert!(!path.exists());
        assert!(
            !etc.path().join("web1").exists(),
            "the empty directory goes too"
        );
        assert!(!remove(etc.path(), "web1", "front").unwrap());
        // A file the user wrote is never touched.
        std::fs::create_dir_all(etc.path().join("db")).unwrap();
        let mine = etc.path().join("db/resolv.conf");
        std::fs::write(&mine, "nameserver 192.0.2.53\n").unwrap();
        assert_eq!(
            write(etc.path(), "db", "front", gw).unwrap(),
            Written::Kept(mine.clone())
        );
        assert!(!remove(etc.path(), "db", "front").unwrap());
        assert_eq!(
            std::fs::read_to_string(&mine).unwrap(),
            "nameserver 192.0.2.53\n"
        );
        // A network whose name starts like another's is another network.
        write(etc.path(), "web2", "front", gw).unwrap();
        assert!(!remove(etc.path(), "web2", "fron").unwrap());
    }
}
