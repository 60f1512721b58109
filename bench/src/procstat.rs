//! CPU time of a process from `/proc/PID/stat` (proc(5)): `utime` (field 14) plus `stime`
//! (field 15), in clock ticks, covering all of the process' threads. Read before and after a
//! test, the difference is what the process spent on it.

use std::io;

/// User and system CPU time of a process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    /// Time in user mode.
    pub utime: u64,
    /// Time in kernel mode on the process' behalf.
    pub stime: u64,
}

impl CpuTicks {
    /// `utime + stime`.
    pub fn total(&self) -> u64 {
        self.utime + self.stime
    }

    /// Ticks spent since `earlier` (0 if the counters went backwards: another process).
    pub fn since(&self, earlier: &CpuTicks) -> u64 {
        self.total().saturating_sub(earlier.total())
    }
}

/// Parses the contents of `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may itself contain spaces and parentheses, so fields are counted after the *last* `)`.
pub fn parse_stat(stat: &str) -> Option<CpuTicks> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name: utime (14) and stime (15) are 11 and 12 on.
    let mut fields = rest.split_whitespace().skip(11);
    Some(CpuTicks {
        utime: fields.next()?.parse().ok()?,
        stime: fields.next()?.parse().ok()?,
    })
}

/// The CPU time of process `pid` (`"self"` for this process).
pub fn read(pid: &str) -> io::Result<CpuTicks> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path)?;
    parse_stat(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected contents of {path}: {text:?}"),
        )
    })
}

/// The CPU time of all of `pids`, summed; `None` if one cannot be read (it exited).
pub fn total_of(pids: &[u32]) -> Option<u64> {
    pids.iter()
        .map(|p| read(&p.to_string()).ok().map(|t| t.total()))
        .sum()
}

/// Busy time of the whole machine from the first line of `/proc/stat` (proc(5)), in clock
/// ticks: user, nice, system, irq and softirq, over all CPUs. Idle, iowait and steal (time the
/// hypervisor gave to others) are not work done here; guest time is already inside user.
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(7)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq
    (v.len() == 7).then(|| v[0] + v[1] + v[2] + v[5] + v[6])
}

/// Reads the machine-wide counter that `parse` finds in the file at `path`; `missing` says
/// what was not there.
fn read_counter(path: &str, parse: fn(&str) -> Option<u64>, missing: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(path)?;
    parse(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{missing} in {path}")))
}

/// The machine's busy clock ticks so far (see [`parse_machine_busy`]).
pub fn machine_busy() -> io::Result<u64> {
    read_counter("/proc/stat", parse_machine_busy, "unexpected first line")
}

/// Pages the whole machine's page allocator has handed out so far, from `/proc/vmstat`: the
/// sum of the `pgalloc_<zone>` counters, in base pages (an order-3 allocation counts 8).
/// Every skb's data pages come from there, so the difference around a test says how much
/// memory the path went through per byte it moved.
pub fn parse_pages_allocated(vmstat: &str) -> Option<u64> {
    let mut total = None;
    for line in vmstat.lines() {
        let mut f = line.split_whitespace();
        let (Some(name), Some(value)) = (f.next(), f.next()) else {
            continue;
        };
        if name.starts_with("pgalloc_") {
            total = Some(total.unwrap_or(0) + value.parse::<u64>().ok()?);
        }
    }
    total
}

/// How many pages the allocator handed out per page of `bytes` moved.
pub fn pages_per_page_moved(pages: u64, bytes: f64) -> Option<f64> {
    (bytes > 0.0).then(|| pages as f64 * crate::sys::page_size() as f64 / bytes)
}

/// The machine's pages allocated so far (see [`parse_pages_allocated`]).
pub fn pages_allocated() -> io::Result<u64> {
    read_counter(
        "/proc/vmstat",
        parse_pages_allocated,
        "no readable pgalloc_* counters",
    )
}

/// The command name (`/proc/PID/comm`) of process `pid`.
pub fn comm(pid: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(format!("/proc/{pid}/comm"))?
        .trim_end()
        .to_string())
}

/// Prefix of the data plane's worker threads' names (`ovnet-worker-{i}`).
pub const WORKER_THREAD: &str = "ovnet-worker-";

/// CPU ticks of each data-plane worker thread of process `pid` (`"self"` for this process),
/// summed by worker index (threads of several data planes in one process add up); index
/// `i` of the result is worker `i`.
pub fn worker_ticks(pid: &str) -> io::Result<Vec<u64>> {
    let mut out: Vec<u64> = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // A thread may exit between the listing and the reads: skip it.
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let Some(index) = worker_index(name.trim_end()) else {
            continue;
        };
        let Some(t) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            continue;
        };
        if out.len() <= index {
            out.resize(index + 1, 0);
        }
        out[index] += t.total();
    }
    Ok(out)
}

/// The worker index of a thread named `ovnet-worker-{i}`.
pub fn worker_index(comm: &str) -> Option<usize> {
    comm.strip_prefix(WORKER_THREAD)?.parse().ok()
}

/// The busiest worker's share of all workers' ticks between `before` and `after` (each a
/// list per process of ticks by worker index), in percent; `None` if none ran.
pub fn busiest_share(before: &[Vec<u64>], after: &[Vec<u64>]) -> Option<f64> {
    let mut by_worker: Vec<u64> = Vec::new();
    for (b, a) in before.iter().zip(after) {
        for (i, t) in a.iter().enumerate() {
            let d = t.saturating_sub(b.get(i).copied().unwrap_or(0));
            if by_worker.len() <= i {
                by_worker.resize(i + 1, 0);
            }
            by_worker[i] += d;
        }
    }
    let total: u64 = by_worker.iter().sum();
    let max = by_worker.iter().copied().max()?;
    (total > 0).then(|| 100.0 * max as f64 / total as f64)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    crate::sys::clock_ticks_per_second()
}

/// `ticks` in seconds.
pub fn seconds(ticks: u64) -> f64 {
    ticks as f64 / ticks_per_second() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let stat = "4242 (ovnet-agent) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 245 0 0 20 0 5 0 9999 123456789 4321 18446744073709551615";
        let t = parse_stat(stat).unwrap();
        assert_eq!((t.utime, t.stime, t.total()), (731, 245, 976));
    }

    #[test]
    fn this_process_is_counted_and_a_missing_one_is_none() {
        let me = std::process::id();
        assert!(total_of(&[me]).is_some());
        assert_eq!(total_of(&[]), Some(0));
        // Pids wrap below 2^22 (pid_max's ceiling), so this one never exists.
        assert_eq!(total_of(&[me, u32::MAX]), None);
    }

    #[test]
    fn a_name_with_spaces_and_parentheses() {
        let stat = "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 12 34 0 0 20 0 1 0 1 1 1";
        assert_eq!(
            parse_stat(stat),
            Some(CpuTicks {
                utime: 12,
                stime: 34
            })
        );
    }

    #[test]
    fn malformed_stat_is_none() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 1"), None);
    }

    #[test]
    fn differences_never_go_negative() {
        let a = CpuTicks {
            utime: 10,
            stime: 5,
        };
        let b = CpuTicks {
            utime: 14,
            stime: 9,
        };
        assert_eq!(b.since(&a), 8);
        assert_eq!(a.since(&b), 0);
    }

    #[test]
    fn machine_busy_counts_work_not_idle_or_steal() {
        let stat = "cpu  100 2 30 5000 7 4 60 900 0 0\ncpu0 50 1 15 2500 3 2 30 450 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 2 + 30 + 4 + 60));
        assert_eq!(parse_machine_busy("cpu0 1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_machine_busy("cpu 1 2 3\n"), None);
        assert_eq!(parse_machine_busy("cpu 1 x 3 4 5 6 7\n"), None);
        assert_eq!(parse_machine_busy(""), None);
        assert!(machine_busy().unwrap() > 0);
    }

    #[test]
    fn pages_allocated_sums_every_zone_and_nothing_else() {
        let vmstat = "nr_free_pages 5\npgalloc_dma 1\npgalloc_dma32 20\npgalloc_normal 300\n\
                      pgalloc_movable 4000\npgfree 99999\nallocstall_normal 7\n";
        assert_eq!(parse_pages_allocated(vmstat), Some(4321));
        assert_eq!(parse_pages_allocated("pgfree 3\nnr_free_pages 1\n"), None);
        assert_eq!(parse_pages_allocated("pgalloc_normal x\n"), None);
        assert_eq!(parse_pages_allocated(""), None);
        let page = crate::sys::page_size() as f64;
        assert_eq!(pages_per_page_moved(30, 10.0 * page), Some(3.0));
        assert_eq!(pages_per_page_moved(30, 0.0), None);
        // A new process takes fresh pages (its page tables and stack, at the least).
        let a = pages_allocated().unwrap();
        assert!(std::process::Command::new("true")
            .status()
            .unwrap()
            .success());
        assert!(pages_allocated().unwrap() > a);
    }

    #[test]
    fn worker_threads_by_index_and_the_busiest_share() {
        assert_eq!(worker_index("ovnet-worker-0"), Some(0));
        assert_eq!(worker_index("ovnet-worker-12"), Some(12));
        assert_eq!(worker_index("ovnet-house"), None);
        assert_eq!(worker_index("ovnet-worker-x"), None);
        // Host 1: worker 0 ran 30 ticks, worker 1 10; host 2: 50 and 10.
        let before = vec![vec![100, 5], vec![7, 0]];
        let after = vec![vec![130, 15], vec![57, 10]];
        assert_eq!(busiest_share(&before, &after), Some(80.0));
        assert_eq!(busiest_share(&before, &before), None);
        assert_eq!(busiest_share(&[], &[]), None);
        // A worker the first read did not see counts from zero.
        assert_eq!(busiest_share(&[vec![]], &[vec![1, 3]]), Some(75.0));
        // This test's own threads are no workers.
        assert!(worker_ticks("self").unwrap().is_empty());
    }

    #[test]
    fn reads_our_own_process() {
        let t = read("self").unwrap();
        assert!(t.total() < u64::MAX);
        assert!(ticks_per_second() >= 1);
        assert!(!comm("self").unwrap().is_empty());
    }
}
