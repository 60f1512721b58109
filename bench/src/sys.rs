//! The crate's only `unsafe`: installing a signal handler with `sigaction(2)`, and reading
//! `sysconf(_SC_CLK_TCK)` and `sysconf(_SC_PAGESIZE)`. Everything else is safe code built on
//! these wrappers.

use std::io;

/// Installs `handler` for each of `signals`, once: `SA_RESETHAND` restores the default action
/// after the first delivery, so a second Ctrl-C kills the process outright.
///
/// `handler` must be async-signal-safe (storing to an atomic is).
pub(crate) fn on_signals(
    signals: &[libc::c_int],
    handler: extern "C" fn(libc::c_int),
) -> io::Result<()> {
    for &sig in signals {
        // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct (no handler,
        // empty mask, no flags); the fields we need are set right below.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = handler as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        // SAFETY: `sa.sa_mask` is a valid, exclusively borrowed `sigset_t`.
        unsafe { libc::sigemptyset(&mut sa.sa_mask) };
        // SAFETY: `sa` is fully initialised and outlives the call; a null `oldact` is allowed.
        // The handler only stores to an atomic, which is async-signal-safe.
        let rc = unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Clock ticks per second, the unit of `utime` and `stime` in `/proc/PID/stat`
/// (`sysconf(_SC_CLK_TCK)`; 100 on every Linux we know of, and the fallback).
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf(3) takes an integer, touches no memory of ours and is thread-safe.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// The size of a base page in bytes, the unit of `/proc/vmstat`'s `pgalloc_*`
/// (`sysconf(_SC_PAGESIZE)`; 4096 as the fallback).
pub(crate) fn page_size() -> u64 {
    // SAFETY: as for clock_ticks_per_second.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}
