//! Users, groups and files between processes: a group's id by name, for the mode of the
//! agent's API socket, and an exclusive lock on a file, so that two agents never share one
//! state directory.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Takes an exclusive advisory lock (`flock(2)`) on `file` without waiting: `Ok(false)` if
/// another open file description holds it. The lock goes with the file's last descriptor.
pub fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: `file` is an open descriptor; flock(2) only changes its lock.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The id of group `name` (from `/etc/group` or whatever NSS says); `None` if there is none.
/// A number is taken as an id as it is.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a group name with a NUL"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero `group` is a valid value of this plain C struct.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call: the name is NUL-terminated, `grp` and
        // `found` are writable, and `buf` is writable for `buf.len()` bytes.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(grp.gr_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The name of group `gid`, for messages (its number if it has none).
pub fn group_name(gid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero `group` is a valid value of this plain C struct.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: `grp` and `found` are writable and `buf` is writable for `buf.len()` bytes.
    let rc = unsafe {
        libc::getgrgid_r(
            gid,
            &mut grp,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || grp.gr_name.is_null() {
        return gid.to_string();
    }
    // SAFETY: on success `gr_name` points to a NUL-terminated string inside `buf`.
    unsafe { CStr::from_ptr(grp.gr_name) }
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_name_and_number() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("1234").unwrap(), Some(1234));
        assert_eq!(group_id("no-such-group-ovnet").unwrap(), None);
        assert_eq!(group_name(0), "root");
    }

    #[test]
    fn a_lock_is_held_once() {
        let dir = std::env::temp_dir().join(format!("ovnet-lock-{}", std::process::id()));
        let (a, b) = (File::create(&dir).unwrap(), File::open(&dir).unwrap());
        assert!(try_lock(&a).unwrap());
        assert!(!try_lock(&b).unwrap());
        drop(a);
        assert!(try_lock(&b).unwrap());
        let _ = std::fs::remove_file(&dir);
    }
}
