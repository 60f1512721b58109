//! Test bed ids and the names derived from them, plus the sweeper that removes what a killed
//! earlier run left behind. An id is `{pid:5 base36}{counter:1 base36}`, e.g. `0p9x3a`.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use crate::cmd::{run, NETNS_DIR};
use crate::sys;

/// Every name this crate creates starts with this.
pub(crate) const PREFIX: &str = "ov";
const PID_DIGITS: usize = 5;
const ID_LEN: usize = PID_DIGITS + 1;
/// Largest pid Linux can hand out (`PID_MAX_LIMIT` on 64-bit, include/linux/threads.h).
const PID_MAX_LIMIT: u32 = 4_194_304;
const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// Ids of test beds alive in this process; the sweeper never touches these.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    // A panic while holding this lock leaves the set consistent, so ignore poisoning.
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn base36(mut v: u32, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE36[(v % 36) as usize];
        v /= 36;
    }
    String::from_utf8(out).expect("base36 digits are ASCII")
}

fn parse_base36(s: &str) -> Option<u32> {
    s.bytes().try_fold(0u32, |acc, b| {
        let d = BASE36.iter().position(|&c| c == b)? as u32;
        acc.checked_mul(36)?.checked_add(d)
    })
}

/// Reserves a fresh id in this process (not yet checked against the system; the caller
/// creates its first namespace and calls [`release`] and retries if that name is taken).
///
/// At most 36 test beds can be alive in one process at a time.
pub(crate) fn reserve_id() -> io::Result<String> {
    let pid = base36(std::process::id(), PID_DIGITS);
    for _ in 0..36 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 36;
        let id = format!("{pid}{}", base36(n, 1));
        if live().insert(id.clone()) {
            return Ok(id);
        }
    }
    Err(io::Error::other(
        "36 test beds are alive in this process already: drop some first",
    ))
}

/// Forgets a reserved id; call only after its namespaces are gone.
pub(crate) fn release(id: &str) {
    live().remove(id);
}

/// Splits a name this crate may have created into (id, pid, rest after the id).
fn parse_owned(name: &str) -> Option<(&str, u32, &str)> {
    let body = name.strip_prefix(PREFIX)?;
    let id = body.get(..ID_LEN)?;
    let rest = &body[ID_LEN..];
    if !id.bytes().all(|b| BASE36.contains(&b)) {
        return None;
    }
    let pid = parse_base36(&id[..PID_DIGITS])?;
    if pid == 0 || pid > PID_MAX_LIMIT {
        return None;
    }
    Some((id, pid, rest))
}

/// Longest label of a bare namespace `ov{id}n{label}` (see `Testbed::add_netns`).
pub(crate) const MAX_LABEL: usize = 8;

/// Whether `rest` is a namespace suffix this crate uses: `u`, `h{n}`, `c{k}` or `n{label}`.
fn is_ns_suffix(rest: &str) -> bool {
    match rest.as_bytes() {
        [b'u'] => true,
        [b'h' | b'c', digits @ ..] => {
            !digits.is_empty() && digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)
        }
        [b'n', label @ ..] => {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Whether the run that made `id` (with embedded `pid`) is gone.
fn is_stale(id: &str, pid: u32) -> bool {
    if pid == std::process::id() {
        !live().contains(id)
    } else {
        !Path::new(&format!("/proc/{pid}")).exists()
    }
}

/// Removes namespaces (and temp dirs) named `ov{id}…` whose creating process is no longer
/// alive, killing any process still inside them first.
///
/// Only names that match this crate's exact scheme are considered, so other `ov…` namespaces
/// are left alone. Failures are logged to stderr, never returned: a sweep is best effort.
pub fn sweep_stale() {
    if let Ok(entries) = std::fs::read_dir(NETNS_DIR) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, pid, rest)) = parse_owned(&name) else {
                continue;
            };
            if !is_ns_suffix(rest) || !is_stale(id, pid) {
                continue;
            }
            remove_netns(&name, true);
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, pid, rest)) = parse_owned(&name) else {
                continue;
            };
            if !rest.starts_with('-') || !is_stale(id, pid) {
                continue;
            }
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                if entry.path().exists() {
                    eprintln!(
                        "ovnet-testbed: sweep: remove {}: {e}",
                        entry.path().display()
                    );
                }
            }
        }
    }
}

/// Deletes namespace `name`; with `kill_inside`, SIGKILLs every process in it first.
/// Logs instead of failing.
pub(crate) fn remove_netns(name: &str, kill_inside: bool) {
    if kill_inside {
        if let Ok(pids) = run(&["ip", "netns", "pids", name]) {
            let me = std::process::id();
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                if pid != me {
                    if let Err(e) = sys::kill(pid, libc::SIGKILL) {
                        eprintln!("ovnet-testbed: sweep: kill {pid} in {name}: {e}");
                    }
                }
            }
        }
    }
    if let Err(e) = run(&["ip", "netns", "del", name]) {
        if crate::cmd::ns_path(name).exists() {
            eprintln!("ovnet-testbed: delete netns {name}: {e}");
        }
    }
    // `ip netns exec` reads per-namespace files from here (the agent writes resolv.conf for
    // the containers it connects); `ip netns del` leaves them. The name is ours alone.
    let etc = Path::new(NETNS_ETC).join(name);
    if etc.exists() {
        if let Err(e) = std::fs::remove_dir_all(&etc) {
            eprintln!("ovnet-testbed: remove {}: {e}", etc.display());
        }
    }
}

/// Where `ip netns exec NAME` finds the namespace's own `/etc` files.
const NETNS_ETC: &str = "/etc/netns";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_roundtrip() {
        for v in [0, 1, 35, 36, 32768, 4_194_304] {
            assert_eq!(parse_base36(&base36(v, PID_DIGITS)), Some(v));
        }
        assert_eq!(base36(36, 2), "10");
    }

    #[test]
    fn parses_only_our_scheme() {
        let pid = parse_base36("00p9x").unwrap();
        assert_eq!(parse_owned("ov00p9xau"), Some(("00p9xa", pid, "u")));
        let (_, _, rest) = parse_owned("ov00p9xah12").unwrap();
        assert!(is_ns_suffix(rest));
        let (_, _, rest) = parse_owned("ov00p9xac3").unwrap();
        assert!(is_ns_suffix(rest));
        let (_, _, rest) = parse_owned("ov00p9xanweb1").unwrap();
        assert!(is_ns_suffix(rest));
        for other in [
            "ovbench",
            "ovagenth1",
            "ov00p9xa",
            "ov00p9xax",
            "ov00p9xan",
            "ov00p9xanWeb",
            "ov00p9xanweb-1",
            "ov00p9xan123456789",
            "ovzzzzzzu",
            "ov00P9xau",
            "xx00p9xau",
        ] {
            let ok = parse_owned(other).is_some_and(|(_, _, r)| is_ns_suffix(r));
            assert!(!ok, "{other} must not look like ours");
        }
    }

    #[test]
    fn reserved_ids_are_unique_and_live() {
        let a = reserve_id().unwrap();
        let b = reserve_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), ID_LEN);
        assert!(!is_stale(&a, std::process::id()));
        release(&a);
        release(&b);
        assert!(is_stale(&a, std::process::id()));
    }
}
