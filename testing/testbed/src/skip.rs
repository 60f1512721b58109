//! Tests that cannot run here say so: [`skip`] prints why, outside libtest's output capture, and
//! records it for `testing/test.sh` to count. libtest has no run-time skip, so a skipped test
//! still shows as `ok`; the `SKIPPED` line beside it, and the count at the end of the run, are
//! what keep it from passing silently.
//!
//! Also the kernel facts such decisions rest on ([`kernel_release`], [`kernel_at_least`]).

use std::io::Write;

/// The environment variable naming the file [`skip`] appends its lines to (set by
/// `testing/test.sh`).
pub const SKIP_LOG_ENV: &str = "OVNET_SKIPPED";

/// Reports that the calling test cannot run here, and why (what is missing, and what would
/// let it run). Call it from the test's own thread (libtest names that thread after the test),
/// then return from the test.
///
/// The line `SKIPPED <test>: <reason>` goes to the process's stderr directly, so that `cargo
/// test` shows it even for a test that then passes, and is appended to the file named by
/// [`SKIP_LOG_ENV`] if that is set.
pub fn skip(reason: impl std::fmt::Display) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed thread>")
        .to_owned();
    let line = format!("SKIPPED {test}: {reason}\n");
    // Not eprintln!: libtest captures that for passing tests.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_ENV) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(
                std::io::stderr().lock(),
                "ovnet-testbed: recording the skip in {}: {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}

/// The running kernel's release, e.g. `6.18.44-fc-v1272`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    version_at_least(&kernel_release(), major, minor)
}

fn version_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_compare_by_major_then_minor() {
        assert!(version_at_least("6.18.44-fc-v1272", 6, 17));
        assert!(version_at_least("6.17.0", 6, 17));
        assert!(!version_at_least("6.16.9-generic", 6, 17));
        assert!(version_at_least("7.0.1", 6, 17));
        assert!(!version_at_least("5.19.0", 6, 2));
        assert!(!version_at_least("", 6, 2));
        assert!(kernel_release().contains('.'), "{}", kernel_release());
    }
}
