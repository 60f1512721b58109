//! SIGINT, SIGTERM and SIGHUP as an error instead of a sudden death: the handler only raises a
//! flag, and the harness checks it in every wait ([`check`]), returns an error, and so drops
//! its test beds, which kill what they started and delete their namespaces.
//!
//! A second signal of the same kind gets the default action (the process dies); a test bed left
//! behind that way is swept by the next run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> std::io::Result<()> {
    crate::sys::on_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], on_signal)
}

/// Whether a signal arrived.
pub fn is_set() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// How often [`sleep`] looks for a signal.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// Sleeps for `length` in slices of [`SLEEP_SLICE`], returning an error as soon as a signal
/// arrived (a measurement's idle window, say).
pub fn sleep(length: Duration) -> Result<()> {
    let end = Instant::now() + length;
    loop {
        check()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(SLEEP_SLICE));
    }
}

/// An error once a signal arrived.
pub fn check() -> Result<()> {
    if is_set() {
        bail!("interrupted by a signal: cleaning up");
    }
    Ok(())
}
