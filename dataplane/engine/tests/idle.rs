//! Workers poll after traffic only for their bounded window (`DataplaneConfig::poll`), then
//! sleep: an idle data plane burns no CPU; and they take the time slice they are given. Its
//! own test binary, so that no other test's workers share the process whose threads are
//! measured. Nothing here waits a fixed time before it looks: it waits, with generous
//! deadlines, for the state it then measures (all started, all asleep).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ovnet_dataplane::{Dataplane, DataplaneConfig, DropReason, Vni};
use ovnet_sys::{link, netns};
use ovnet_wire::vxlan;

/// The task directories of this process's data-plane worker threads.
fn worker_tasks() -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|t| t.unwrap().path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.starts_with("ovnet-worker"))
        })
        .collect()
}

/// How long anything that should happen may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Waits until every data-plane worker thread of this process is asleep (state `S`: blocked
/// in `epoll_wait`, where a worker that still polls never is, yielding keeps it runnable).
fn wait_until_workers_sleep() {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let states: Vec<String> = worker_tasks()
            .iter()
            .map(|dir| {
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
                let state = stat.rsplit_once(')').map_or("", |(_, r)| r.trim_start());
                state.chars().next().map(String::from).unwrap_or_default()
            })
            .collect();
        if !states.is_empty() && states.iter().all(|s| s == "S") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the workers never all slept: states {states:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// CPU time (user + system) of this process's data-plane worker threads.
fn worker_cpu() -> Duration {
    // /proc counts in USER_HZ, which the kernel ABI fixes at 100 on every architecture
    // Linux runs ovnet on (x86, arm64).
    const USER_HZ: u64 = 100;
    let mut ticks = 0;
    for dir in worker_tasks() {
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name; utime and stime are the 14th and 15th fields.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        ticks += f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    }
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// Starts a data plane with 2 workers and poll window `poll` on 127.0.0.1:4789, sends
/// `count` datagrams `gap` apart (for a VNI nobody serves: each one wakes a worker, which drops
/// and counts it, then polls), waits until all are counted, and returns the data plane with
/// the workers' CPU time used meanwhile.
fn traffic(poll: Duration, gap: Duration, count: u64) -> (Dataplane, Duration) {
    let vtep = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 4789);
    let mut cfg = DataplaneConfig::new(vtep);
    cfg.workers = 2;
    cfg.poll = poll;
    let dp = Dataplane::start(&cfg).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut d = vxlan::header(Vni::new(7).unwrap()).to_vec();
    d.extend_from_slice(&[0u8; 60]);
    let before = worker_cpu();
    for _ in 0..count {
        peer.send_to(&d, vtep).unwrap();
        std::thread::sleep(gap);
    }
    let deadline = Instant::now() + DEADLINE;
    while dp.global_counters().dropped(DropReason::UnknownVni) < count {
        assert!(
            Instant::now() < deadline,
            "the datagrams were not all received"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let used = worker_cpu() - before;
    (dp, used)
}

/// The time slice of each worker thread of this process.
fn worker_slices() -> Vec<Duration> {
    worker_tasks()
        .iter()
        .map(|dir| {
            let tid = dir.file_name().unwrap().to_str().unwrap().parse().unwrap();
            ovnet_sys::sched::slice_of(tid).unwrap()
        })
        .collect()
}

/// Starts a data plane with 2 workers and time slice `slice` on 127.0.0.1:4789 and returns
/// the slices its workers run with, once both have started.
fn slices(slice: Option<Duration>) -> Vec<Duration> {
    let mut cfg = DataplaneConfig::new(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 4789));
    cfg.workers = 2;
    cfg.slice = slice;
    let dp = Dataplane::start(&cfg).unwrap();
    let deadline = Instant::now() + DEADLINE;
    // A worker names itself and sets its slice as it starts: wait until both did (or could
    // not have).
    let mut got = worker_slices();
    while (got.len() < 2 || slice.is_some() && got.iter().any(|s| Some(*s) != slice))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
        got = worker_slices();
    }
    drop(dp);
    got
}

/// One test, so that the data planes' workers are never measured together.
#[test]
fn workers_poll_only_while_traffic_is_dense_and_sleep_when_idle() {
    std::thread::spawn(|| {
        netns::unshare().unwrap();
        link::set_up("lo").unwrap();

        // The slice asked for, and the kernel's own when none is (Linux 6.12+; earlier
        // kernels report 0 either way, so there is nothing to see).
        let slice = Duration::from_micros(300);
        let asked = slices(Some(slice));
        assert_eq!(asked.len(), 2, "{asked:?}");
        let default = slices(None);
        assert_eq!(default.len(), 2, "{default:?}");
        let slices_visible = ovnet_testbed::kernel_at_least(6, 12);
        if slices_visible {
            assert!(
                asked.iter().all(|s| *s == slice),
                "workers' slices {asked:?}, want {slice:?}"
            );
            assert!(default.iter().all(|s| *s != slice), "{default:?}");
        } else {
            assert!(asked.iter().all(|s| s.is_zero()), "{asked:?}");
        }

        // A window far longer than the default, so that a worker that never stopped polling
        // would show up clearly, and still short next to the measurement.
        let (dp, _) = traffic(Duration::from_millis(20), Duration::from_millis(1), 200);
        // Traffic stopped: after the window, the workers must sleep, and stay asleep.
        wait_until_workers_sleep();
        let before = worker_cpu();
        std::thread::sleep(Duration::from_secs(1));
        let idle = worker_cpu() - before;
        // Two spinning workers would use ~2 s here; sleeping ones use nothing (one clock
        // tick of slack per worker).
        assert!(
            idle <= Duration::from_millis(40),
            "idle workers used {idle:?} of CPU in 1 s: polling did not stop"
        );
        drop(dp);

        // Sparse traffic, a datagram every 10 ms against a 2 ms window: a fixed window would
        // poll 2 ms per datagram (400 ms in all); the adaptive one gives up after a few.
        let (dp, sparse) = traffic(Duration::from_millis(2), Duration::from_millis(10), 200);
        assert!(
            sparse <= Duration::from_millis(100),
            "200 sparse datagrams cost the workers {sparse:?} of CPU: the poll window did not shrink"
        );
        drop(dp);
        slices_visible
    })
    .join()
    .map(|slices_visible| {
        if !slices_visible {
            ovnet_testbed::skip(format!(
                "Linux {} has no custom time slices (6.12+): the workers' slices were not \
                 checked (polling and sleeping were)",
                ovnet_testbed::kernel_release()
            ));
        }
    })
    .unwrap();
}
