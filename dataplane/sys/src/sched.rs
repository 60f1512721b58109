//! The worker threads' request to the CPU scheduler: a short time slice.
//!
//! A worker stands where the kernel's own VXLAN runs in softirq context, between a container
//! that sends and one that receives, so every microsecond it waits for a CPU is added to the
//! round trip of the flows it carries, and BBR and CUBIC alike are bounded by their window
//! over that round trip. Since Linux 6.12 the fair scheduler (EEVDF) takes a custom slice per
//! thread (`sched_setattr` with `sched_runtime` under `SCHED_OTHER`): a thread with a shorter
//! slice gets an earlier virtual deadline, so it is picked sooner when it becomes runnable
//! (after a wake-up or one of its polling yields) and may preempt a longer-sliced one on
//! wake-up, while its share of the CPU stays that of its nice value. Earlier kernels ignore
//! the field.

use std::io;
use std::time::Duration;

/// `struct sched_attr` of `include/uapi/linux/sched/types.h` (the 56-byte version with the
/// utilisation clamps, which are left alone).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// `SCHED_FLAG_UTIL_CLAMP_MIN | SCHED_FLAG_UTIL_CLAMP_MAX`: bits of `flags` that
/// `sched_getattr` may report and that `sched_setattr` would take as a request.
const UTIL_CLAMP_FLAGS: u64 = 0x20 | 0x40;

/// The `struct sched_attr` of thread `tid` (0: the calling thread).
fn attr_of(tid: libc::pid_t) -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `attr` is a writable `struct sched_attr` of `size` bytes; the kernel checks
    // `tid` (0 is this thread).
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    attr.size = size;
    Ok(attr)
}

/// Asks the scheduler for a `slice` for the calling thread, keeping its policy and nice
/// value. Returns whether the slice was set: false if the thread is not under `SCHED_OTHER`
/// or `SCHED_BATCH` (an operator's real-time or idle policy is left as it is).
pub fn set_own_slice(slice: Duration) -> io::Result<bool> {
    let mut attr = attr_of(0)?;
    if attr.policy != libc::SCHED_OTHER as u32 && attr.policy != libc::SCHED_BATCH as u32 {
        return Ok(false);
    }
    attr.flags &= !UTIL_CLAMP_FLAGS;
    attr.runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: `attr` is an initialised `struct sched_attr` whose `size` field says its size;
    // the kernel only reads it. pid 0 is this thread.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// The slice of thread `tid` (0: the calling thread) as the kernel reports it
/// (`sched_runtime`; 0 before Linux 6.12, which has no custom slices).
pub fn slice_of(tid: libc::pid_t) -> io::Result<Duration> {
    Ok(Duration::from_nanos(attr_of(tid)?.runtime))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovnet_testbed::skip;

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_and_keeps_its_nice_value() {
        let got = std::thread::spawn(|| {
            // SAFETY: getpriority/setpriority on this thread (tid) only read and set its nice.
            let tid = unsafe { libc::gettid() } as libc::id_t;
            // SAFETY: as above.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 3) };
            assert!(set_own_slice(Duration::from_micros(300)).unwrap());
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, tid) }, 3);
            slice_of(0).unwrap()
        })
        .join()
        .unwrap();
        // Linux 6.12+ reports the slice (clamped to 0.1..100 ms); earlier kernels take the
        // request and ignore it, reporting 0.
        if got.is_zero() && !ovnet_testbed::kernel_at_least(6, 12) {
            return skip(format!(
                "Linux {} has no custom time slices (6.12+): the slice asked for is not \
                 visible",
                ovnet_testbed::kernel_release()
            ));
        }
        assert_eq!(got, Duration::from_micros(300));
    }

    #[test]
    fn a_real_time_thread_is_left_alone() {
        let outcome = std::thread::spawn(|| {
            let p = libc::sched_param { sched_priority: 1 };
            // SAFETY: sets this thread's policy; `p` is a valid sched_param.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let left_alone = !set_own_slice(Duration::from_micros(300)).unwrap();
            let p = libc::sched_param { sched_priority: 0 };
            // SAFETY: as above, back to the default policy.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &p) };
            Ok(left_alone)
        })
        .join()
        .unwrap();
        match outcome {
            Ok(left_alone) => assert!(left_alone, "the slice request changed a SCHED_FIFO thread"),
            Err(e) => skip(format!(
                "cannot make a thread real-time here ({e}): run as root or with CAP_SYS_NICE"
            )),
        }
    }
}
