//! SIGINT, SIGTERM and SIGHUP as an error instead of a sudden death: the handler only raises a
//! flag, and the harness checks it in every wait ([`check`]), returns an error, and so drops
//! its test beds, which kill what they started and delete their namespaces.
//!
//! A second signal of the same kind gets the default action (the process dies); a test bed left
//! behind that way is swept by the next run.

use std::sync::atomic::{AtomicBool, Ordering};

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

/// An error once a signal arrived.
pub fn check() -> Result<()> {
    if is_set() {
        bail!("interrupted by a signal: cleaning up");
    }
    Ok(())
}
