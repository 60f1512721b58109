//! The agent's state directory (`--state-dir`, [`DEFAULT_STATE_DIR`]): what must outlive the
//! agent and the host's reboots. Today that is the node id ([`node_id`]), 128 random bits made
//! at the first start, which tells a restart of this host from another host taking its name
//! (see [`crate::domain::identity`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::domain::NodeId;

/// Where the state lives unless `--state-dir` says otherwise (systemd's `StateDirectory=ovnet`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ovnet";
/// The file of the node id, in the state directory.
pub const NODE_ID_FILE: &str = "node-id";
/// The file a running agent holds locked, in the state directory.
pub const LOCK_FILE: &str = "lock";

/// The state directory, held for as long as the value lives: two agents on one host with one
/// state directory would both be the same node.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
}

/// Locks the state directory `dir` (made if missing) for this process.
pub fn lock(dir: &Path) -> Result<StateLock, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating the state directory {}: {e}", dir.display()))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    match ovnet_sys::users::try_lock(&file) {
        Ok(true) => Ok(StateLock { _file: file }),
        Ok(false) => Err(format!(
            "another ovnet-agent runs with the state directory {}: stop it, or give this one \
             its own --state-dir (and --node)",
            dir.display()
        )),
        Err(e) => Err(format!("locking {}: {e}", path.display())),
    }
}

/// This host's node id, read from `dir`, or made and written there at the first start.
pub fn node_id(dir: &Path) -> Result<NodeId, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating the state directory {}: {e}", dir.display()))?;
    let path = dir.join(NODE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => NodeId::parse(text.trim()).map_err(|e| {
            format!(
                "{}: {e}: remove the file to make a new id (this host's node name then has \
                 to be taken over with --replace-node)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeId::random();
            // Written whole under another name, then renamed: never half a file.
            let tmp = dir.join(format!(".{NODE_ID_FILE}.tmp"));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(format!("{id}\n").as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| std::fs::rename(&tmp, &path));
            written.map_err(|e| format!("writing {}: {e}", path.display()))?;
            log::info!("new node id {id}, kept in {}", path.display());
            Ok(id)
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let id = node_id(&state).unwrap();
        assert_eq!(node_id(&state).unwrap(), id);
        assert_eq!(
            std::fs::read_to_string(state.join(NODE_ID_FILE)).unwrap(),
            format!("{id}\n")
        );
        let held = lock(&state).unwrap();
        let e = lock(&state).unwrap_err();
        assert!(
            e.contains("another ovnet-agent runs with the state directory"),
            "{e}"
        );
        drop(held);
        lock(&state).unwrap();
        std::fs::write(state.join(NODE_ID_FILE), "not an id").unwrap();
        let e = node_id(&state).unwrap_err();
        assert!(e.contains("remove the file"), "{e}");
    }
}
