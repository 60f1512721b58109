//! Blocking primitives of the worker threads: an eventfd [`Waker`] that interrupts a wait (for
//! shutdown or a configuration change), [`Epoll`], the set of descriptors a worker sleeps on
//! (its socket, one TAP queue of every network, its waker), and [`poll_writable`], which a
//! send waits in while a socket buffer is full. Tests also get `poll_readable`, a thin
//! `poll(2)` over a few fds.
//!
//! Workers use non-blocking descriptors, drain them in bounded batches, then sleep with the
//! waker among the descriptors, so a shutdown never waits for traffic.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An eventfd that makes a wait on it return; cheap to signal from any thread.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new, unsignalled waker (non-blocking, close-on-exec).
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd(2) with constant flags; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker { fd })
    }

    /// Signals the waker: every poll that includes it returns until [`Waker::clear`].
    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd, as eventfd(2) requires.
        let rc = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // EAGAIN means the counter is saturated: it is signalled already.
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Resets the waker to unsignalled.
    pub fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from a non-blocking eventfd; EAGAIN (nothing
        // signalled) is the only expected failure and is harmless.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An epoll instance watching descriptors for input, level-triggered: a descriptor left
/// with data after a bounded batch is reported again by the next [`Epoll::wait`].
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// A new, empty epoll instance (close-on-exec).
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1(2) with a constant flag; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a freshly created descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Watches `fd` for input (and errors); [`Epoll::wait`] reports it as `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a live, initialised epoll_event that the kernel only reads.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd`. (Closing a descriptor's last reference also removes it.)
    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event is ignored for EPOLL_CTL_DEL but must be non-null on
        // kernels before 2.6.9.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (0: do not wait, -1: forever) for watched descriptors to have
    /// input; writes the tokens of the ready ones to `tokens` and returns how many.
    /// An interrupted wait returns 0.
    pub fn wait(&self, tokens: &mut [u64], timeout_ms: i32) -> io::Result<usize> {
        const MAX: usize = 64;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let max = tokens.len().min(MAX);
        // SAFETY: `events` is a live array with room for `max` (<= MAX) entries.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                max as i32,
                timeout_ms,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err);
        }
        let n = rc as usize;
        for (t, e) in tokens.iter_mut().zip(&events[..n]) {
            // Copied out: epoll_event is packed on x86-64.
            let token = e.u64;
            *t = token;
        }
        Ok(n)
    }
}

/// Waits until at least one of `fds` is readable or `timeout_ms` passes (-1 waits forever).
/// Sets `ready[i]` for each readable descriptor and returns how many are. At most 8 fds.
#[cfg(any(test, feature = "test-support"))]
pub fn poll_readable(fds: &[RawFd], ready: &mut [bool], timeout_ms: i32) -> io::Result<usize> {
    const MAX: usize = 8;
    assert!(
        fds.len() <= MAX && ready.len() >= fds.len(),
        "poll_readable: at most {MAX} fds"
    );
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX];
    for (p, &fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    loop {
        // SAFETY: `pfds` is a live array of `fds.len()` initialised pollfd structs.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for (r, p) in ready.iter_mut().zip(&pfds[..fds.len()]) {
            // POLLERR/POLLHUP also mean "a read will not block" (it returns the error).
            *r = p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0;
        }
        return Ok(rc as usize);
    }
}

/// Waits until `fd` can be written (a full socket buffer drained) or `timeout_ms` passes.
/// Returns whether it is writable.
pub fn poll_writable(fd: RawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: `pfd` is one live, initialised pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        return Ok(pfd.revents & libc::POLLOUT != 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_wakes_and_clears() {
        let w = Waker::new().unwrap();
        let mut ready = [false; 1];
        assert_eq!(poll_readable(&[w.as_raw_fd()], &mut ready, 0).unwrap(), 0);
        w.wake().unwrap();
        w.wake().unwrap();
        assert_eq!(
            poll_readable(&[w.as_raw_fd()], &mut ready, 1000).unwrap(),
            1
        );
        assert!(ready[0]);
        w.clear();
        assert_eq!(poll_readable(&[w.as_raw_fd()], &mut ready, 0).unwrap(), 0);
        assert!(!ready[0]);
    }

    #[test]
    fn epoll_reports_tokens_level_triggered_until_removed() {
        let ep = Epoll::new().unwrap();
        let (a, b) = (Waker::new().unwrap(), Waker::new().unwrap());
        ep.add(a.as_raw_fd(), 7).unwrap();
        ep.add(b.as_raw_fd(), 9).unwrap();
        let mut t = [0u64; 4];
        assert_eq!(ep.wait(&mut t, 0).unwrap(), 0);
        b.wake().unwrap();
        assert_eq!(ep.wait(&mut t, 1000).unwrap(), 1);
        assert_eq!(t[0], 9);
        // Level-triggered: still readable, still reported.
        assert_eq!(ep.wait(&mut t, 0).unwrap(), 1);
        a.wake().unwrap();
        let n = ep.wait(&mut t, 0).unwrap();
        let mut got = t[..n].to_vec();
        got.sort();
        assert_eq!(got, [7, 9]);
        ep.delete(b.as_raw_fd()).unwrap();
        assert_eq!(ep.wait(&mut t, 0).unwrap(), 1);
        assert_eq!(t[0], 7);
        assert!(
            ep.add(a.as_raw_fd(), 1).is_err(),
            "a second add of one fd is refused"
        );
        assert!(ep.delete(b.as_raw_fd()).is_err(), "b is no longer watched");
    }

    #[test]
    fn wake_from_another_thread_ends_a_blocking_poll() {
        let w = std::sync::Arc::new(Waker::new().unwrap());
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            w2.wake().unwrap();
        });
        let mut ready = [false; 1];
        assert_eq!(poll_readable(&[w.as_raw_fd()], &mut ready, -1).unwrap(), 1);
        t.join().unwrap();
    }
}
