//! The API's unix socket: bound with mode 0660 and the group the operator names
//! (`--api-group`; the agent's own group otherwise), never taken from a running agent and never
//! made by deleting anything but a stale socket; and who is calling, from the kernel's
//! credentials of the connection (`SO_PEERCRED`), for the log of each operation.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;
use tonic::transport::server::UdsConnectInfo;

/// Mode of the socket: its owner (root) and its group may call the agent; nobody else.
pub const API_MODE: u32 = 0o660;

/// Binds the API socket at `path`, with [`API_MODE`] and group `group` (a name or a number).
pub fn bind(path: &Path, group: Option<&str>) -> Result<UnixListener, String> {
    let gid = match group {
        None => None,
        Some(g) => match ovnet_sys::users::group_id(g) {
            Ok(Some(gid)) => Some(gid),
            Ok(None) => return Err(format!("--api-group {g}: no such group")),
            Err(e) => return Err(format!("--api-group {g}: {e}")),
        },
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "another ovnet-agent is serving {}: stop it or pass --api",
                    path.display()
                ));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("removing the stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket: remove it yourself or pass another --api",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("looking at {}: {e}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("binding the API socket {}: {e}", path.display()))?;
    // The umask left it at most 0755: nobody but root could connect before this.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(API_MODE))
        .map_err(|e| format!("setting the mode of {}: {e}", path.display()))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            format!(
                "giving {} to group {}: {e}",
                path.display(),
                group.unwrap_or_default()
            )
        })?;
    }
    Ok(listener)
}

/// Who made a request on the API socket: `uid U gid G pid P`, from the connection's
/// credentials.
pub fn caller<T>(req: &tonic::Request<T>) -> String {
    match req
        .extensions()
        .get::<UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
    {
        Some(c) => match c.pid() {
            Some(pid) => format!("uid {} gid {} pid {pid}", c.uid(), c.gid()),
            None => format!("uid {} gid {}", c.uid(), c.gid()),
        },
        None => "an unknown caller".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test]
    async fn the_socket_is_for_root_and_its_group_only() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("run/agent.sock");
        let l = bind(&sock, Some("0")).unwrap();
        let m = std::fs::metadata(&sock).unwrap();
        assert_eq!(m.mode() & 0o777, API_MODE);
        assert_eq!(m.gid(), 0);
        // A live agent's socket is not taken.
        let e = bind(&sock, None).unwrap_err();
        assert!(e.contains("another ovnet-agent"), "{e}");
        drop(l);
        // A stale one is.
        bind(&sock, None).unwrap();
        let e = bind(&sock, Some("no-such-group-ovnet")).unwrap_err();
        assert_eq!(e, "--api-group no-such-group-ovnet: no such group");
    }

    #[tokio::test]
    async fn a_regular_file_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("precious");
        std::fs::write(&file, "data").unwrap();
        let e = bind(&file, None).unwrap_err();
        assert!(e.contains("exists and is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "data");
    }
}
