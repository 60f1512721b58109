//! A private single-member etcd in the underlay namespace, plus a loopback TCP relay so code
//! in the test process itself (root namespace) can reach it. Stop/restart keep the data dir.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::bed::{terminate, Proc, Testbed, UNDERLAY_BRIDGE_IP};
use crate::cmd::ctx;
use crate::cmd::in_netns;
use crate::sys;

/// etcd client port, on the underlay bridge address and on 127.0.0.1 inside the underlay ns.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd peer port, on 127.0.0.1 inside the underlay namespace only.
pub const ETCD_PEER_PORT: u16 = 2380;
/// How long `start_etcd` waits for `/health` to report true.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the relay's idle acceptor looks at its stop flag.
const RELAY_STOP_CHECK: Duration = Duration::from_millis(100);

/// State of the test bed's etcd.
pub(crate) struct Etcd {
    pub(crate) proc: Option<Proc>,
    data_dir: PathBuf,
    log: PathBuf,
    relay: Option<Relay>,
}

impl Etcd {
    pub(crate) fn shutdown_proxy(&mut self) {
        if let Some(r) = self.relay.take() {
            r.shutdown();
        }
    }
}

fn client_addr() -> SocketAddr {
    SocketAddr::from((UNDERLAY_BRIDGE_IP, ETCD_CLIENT_PORT))
}

/// One `GET path` over HTTP/1.0 to `addr`; returns the whole response.
fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp)
}

impl Testbed {
    /// Starts etcd in the underlay namespace, listening for clients on
    /// `192.168.50.254:2379` (reachable from every host) and `127.0.0.1:2379` inside the
    /// underlay namespace, peers on `127.0.0.1:2380`, data in a temp dir. Waits until
    /// `/health` says true and returns the client URL `http://192.168.50.254:2379`.
    /// Calling it again while etcd runs just returns the URL.
    pub fn start_etcd(&mut self) -> io::Result<String> {
        if self.etcd.as_ref().is_some_and(|e| e.proc.is_some()) {
            return Ok(self.etcd_url());
        }
        if self.etcd.is_none() {
            let data_dir = self.dir().join("etcd");
            // 0700, as etcd recommends for its data dir.
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&data_dir)
                .map_err(|e| ctx(format!("create {}", data_dir.display()), e))?;
            let log = self.dir().join("logs").join("etcd.log");
            self.etcd = Some(Etcd {
                proc: None,
                data_dir,
                log,
                relay: None,
            });
        }
        self.launch_etcd().map_err(|e| ctx("start etcd", e))?;
        Ok(self.etcd_url())
    }

    fn launch_etcd(&mut self) -> io::Result<()> {
        let underlay = self.underlay().to_owned();
        let etcd = self
            .etcd
            .as_mut()
            .expect("etcd state initialised by start_etcd");
        let client = format!("http://{UNDERLAY_BRIDGE_IP}:{ETCD_CLIENT_PORT}");
        let listen = format!("{client},http://127.0.0.1:{ETCD_CLIENT_PORT}");
        let peer = format!("http://127.0.0.1:{ETCD_PEER_PORT}");
        let cluster = format!("ovnet={peer}");
        let data = etcd.data_dir.to_string_lossy().into_owned();
        let args = [
            "etcd",
            "--name",
            "ovnet",
            "--data-dir",
            &data,
            "--listen-client-urls",
            &listen,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ];
        let mut proc = Proc::spawn(&underlay, &args, &[], etcd.log.clone())?;
        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        let mut last;
        loop {
            if let Some(st) = proc.poll()? {
                return Err(io::Error::other(format!(
                    "etcd exited ({st}); log tail:\n{}",
                    proc.log_tail(20)
                )));
            }
            match in_netns(&underlay, || http_get(client_addr(), "/health"))? {
                Ok(resp) if resp.contains(r#""health":"true""#) => break,
                Ok(resp) => last = resp,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                terminate(&mut [&mut proc]);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd not healthy after {ETCD_READY_TIMEOUT:?} (last: {last}); log tail:\n{}",
                        proc.log_tail(20)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd.proc = Some(proc);
        if etcd.relay.is_none() {
            etcd.relay = Some(Relay::start(underlay, client_addr())?);
        }
        Ok(())
    }

    /// Client URL inside the test network: `http://192.168.50.254:2379`.
    pub fn etcd_url(&self) -> String {
        format!("http://{UNDERLAY_BRIDGE_IP}:{ETCD_CLIENT_PORT}")
    }

    /// Client URL for code running in the test process itself (root namespace):
    /// `http://127.0.0.1:{port}`, a TCP relay into the underlay namespace. `None` until
    /// [`Testbed::start_etcd`] succeeded once; it stays valid across stop/restart.
    pub fn etcd_local_url(&self) -> Option<String> {
        let relay = self.etcd.as_ref()?.relay.as_ref()?;
        Some(format!("http://{}", relay.addr))
    }

    /// Whether etcd is running (started and not stopped; a paused etcd counts as running).
    pub fn etcd_running(&mut self) -> bool {
        match self.etcd.as_mut().and_then(|e| e.proc.as_mut()) {
            Some(p) => matches!(p.poll(), Ok(None)),
            None => false,
        }
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 3 s), keeping its data dir for
    /// [`Testbed::restart_etcd`]. Ok if it is not running.
    pub fn stop_etcd(&mut self) -> io::Result<()> {
        let Some(etcd) = self.etcd.as_mut() else {
            return Ok(());
        };
        if let Some(mut p) = etcd.proc.take() {
            terminate(&mut [&mut p]);
        }
        Ok(())
    }

    /// Starts etcd again on the same data dir (stopping it first if it runs) and waits
    /// until it is healthy. Its data survives.
    pub fn restart_etcd(&mut self) -> io::Result<()> {
        if self.etcd.is_none() {
            return Err(io::Error::other("restart_etcd: etcd was never started"));
        }
        self.stop_etcd()?;
        self.launch_etcd().map_err(|e| ctx("restart etcd", e))
    }

    /// Freezes etcd with SIGSTOP: connections stay open but nothing answers (a hung store).
    pub fn pause_etcd(&mut self) -> io::Result<()> {
        self.signal_etcd(libc::SIGSTOP)
    }

    /// Undoes [`Testbed::pause_etcd`] with SIGCONT.
    pub fn resume_etcd(&mut self) -> io::Result<()> {
        self.signal_etcd(libc::SIGCONT)
    }

    fn signal_etcd(&mut self, sig: i32) -> io::Result<()> {
        let etcd = self
            .etcd
            .as_mut()
            .filter(|e| e.proc.is_some())
            .ok_or_else(|| io::Error::other("etcd is not running"))?;
        etcd.proc.as_mut().expect("checked above").signal(sig)?;
        Ok(())
    }

    /// Everything etcd has logged (all runs).
    pub fn etcd_log(&self) -> io::Result<String> {
        let etcd = self
            .etcd
            .as_ref()
            .ok_or_else(|| io::Error::other("etcd was never started"))?;
        std::fs::read_to_string(&etcd.log)
    }
}

/// Accepts on 127.0.0.1:0 in the caller's namespace and, per connection, connects to
/// `target` from inside `ns`, copying bytes both ways.
struct Relay {
    addr: SocketAddr,
    shared: Arc<RelayShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct RelayShared {
    stop: AtomicBool,
    next: AtomicU64,
    /// (client side, etcd side) of every open relayed connection, to shut down on stop.
    conns: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl RelayShared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (TcpStream, TcpStream)>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Relay {
    fn start(ns: String, target: SocketAddr) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(RelayShared::default());
        let sh = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("etcd-relay".into())
            .spawn(move || {
                while !sh.stop.load(Ordering::Relaxed) {
                    // Wait for a connection before calling accept(2): a non-blocking accept
                    // with nothing pending still allocates a socket and frees it through
                    // RCU, and 50 of those a second cost the machine's other TCP flows 10 to
                    // 15 % (measured with the kernel's vxlan beside an idle test bed).
                    match sys::wait_readable(&listener, RELAY_STOP_CHECK) {
                        Ok(false) => continue,
                        Ok(true) => {}
                        Err(e) => {
                            eprintln!("ovnet-testbed: etcd relay poll: {e}");
                            std::thread::sleep(RELAY_STOP_CHECK);
                            continue;
                        }
                    }
                    match listener.accept() {
                        Ok((down, _)) => {
                            let (ns, sh) = (ns.clone(), sh.clone());
                            let _ = std::thread::Builder::new()
                                .name("etcd-relay-conn".into())
                                .spawn(move || relay_one(&ns, target, down, &sh));
                        }
                        // Taken back by its client meanwhile.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            eprintln!("ovnet-testbed: etcd relay accept: {e}");
                            std::thread::sleep(RELAY_STOP_CHECK);
                        }
                    }
                }
            })?;
        Ok(Relay {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Stops accepting, cuts every open connection and waits for the acceptor.
    fn shutdown(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for (_, (down, up)) in self.shared.conns().drain() {
            let _ = down.shutdown(Shutdown::Both);
            let _ = up.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn relay_one(ns: &str, target: SocketAddr, down: TcpStream, shared: &RelayShared) {
    let _ = down.set_nonblocking(false);
    let up = match in_netns(ns, || {
        TcpStream::connect_timeout(&target, Duration::from_secs(2))
    }) {
        Ok(Ok(up)) => up,
        // etcd is stopped: close the client connection, as a dead server would.
        _ => return,
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (Ok(down2), Ok(up2), Ok(down3), Ok(up3)) = (
        down.try_clone(),
        up.try_clone(),
        down.try_clone(),
        up.try_clone(),
    ) else {
        return;
    };
    let key = shared.next.fetch_add(1, Ordering::Relaxed);
    shared.conns().insert(key, (down3, up3));
    if shared.stop.load(Ordering::Relaxed) {
        // Raced with shutdown(): it may have drained before our insert.
        shared.conns().remove(&key);
        return;
    }
    let client_to_etcd = std::thread::Builder::new()
        .name("etcd-relay-up".into())
        .spawn(move || {
            let (mut from, mut to) = (down2, up2);
            let _ = io::copy(&mut from, &mut to);
            // The client finished sending: pass the half-close on.
            let _ = to.shutdown(Shutdown::Write);
        });
    let (mut from, mut to) = (up, down);
    let _ = io::copy(&mut from, &mut to);
    // etcd closed (or died): cut the whole connection so the client notices at once.
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
    if let Ok(t) = client_to_etcd {
        let _ = t.join();
    }
    shared.conns().remove(&key);
}
