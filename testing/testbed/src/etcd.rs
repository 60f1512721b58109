//! A private etcd in the underlay namespace, plus a loopback TCP relay so code in the test
//! process itself (root namespace) can reach it. Stop/restart keep the data dir.
//!
//! One member by default ([`Testbed::start_etcd`]); [`Testbed::start_etcd_with`] starts three
//! members on addresses of their own (`192.168.50.251` to `.253`, so that one can die alone)
//! and/or serves clients over TLS, with or without client-certificate authentication. Each
//! member also serves `/health` and `/metrics` over plain HTTP on its metrics port, which the
//! test bed reads (health, which member leads) whatever the clients' TLS.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
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
/// etcd metrics port (`/health`, `/metrics`, plain HTTP), beside each member's client port.
pub const ETCD_METRICS_PORT: u16 = 2381;
/// How long `start_etcd` waits for `/health` to report true.
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the relay's idle acceptor looks at its stop flag.
const RELAY_STOP_CHECK: Duration = Duration::from_millis(100);

/// TLS for the etcd clients: the member's certificate (valid for every member's address and
/// 127.0.0.1) and the CA that signed it, as PEM files the caller made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA certificate (`--trusted-ca-file`: also what client certificates are checked by).
    pub ca: PathBuf,
    /// The members' certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// Require clients to show a certificate signed by `ca` (`--client-cert-auth`).
    pub client_cert_auth: bool,
}

/// How to run the test bed's etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Three members instead of one.
    pub three: bool,
    /// Serve clients over TLS.
    pub tls: Option<EtcdTls>,
}

/// One member.
pub(crate) struct Member {
    pub(crate) proc: Option<Proc>,
    name: String,
    /// Where it serves clients and peers.
    ip: Ipv4Addr,
    data_dir: PathBuf,
    log: PathBuf,
}

/// State of the test bed's etcd.
pub(crate) struct Etcd {
    pub(crate) members: Vec<Member>,
    options: EtcdOptions,
    relay: Option<Relay>,
}

impl Etcd {
    pub(crate) fn shutdown_proxy(&mut self) {
        if let Some(r) = self.relay.take() {
            r.shutdown();
        }
    }

    fn scheme(&self) -> &'static str {
        if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn client_url(&self, m: &Member) -> String {
        format!("{}://{}:{ETCD_CLIENT_PORT}", self.scheme(), m.ip)
    }
}

/// The address of member `i` (0-based) of a cluster of `n`.
fn member_ip(i: usize, n: usize) -> Ipv4Addr {
    if n == 1 {
        UNDERLAY_BRIDGE_IP
    } else {
        Ipv4Addr::new(192, 168, 50, 251 + i as u8)
    }
}

/// One `GET path` over HTTP/1.0 to `addr`; returns the whole response.
fn http_get(addr: SocketAddr, path: &str) -> io::Result<String> {
    crate::http::request(addr, "GET", path, "")
}

impl Testbed {
    /// Starts etcd in the underlay namespace, listening for clients on
    /// `192.168.50.254:2379` (reachable from every host) and `127.0.0.1:2379` inside the
    /// underlay namespace, peers on `127.0.0.1:2380`, data in a temp dir. Waits until
    /// `/health` says true and returns the client URL `http://192.168.50.254:2379`.
    /// Calling it again while etcd runs just returns the URL.
    pub fn start_etcd(&mut self) -> io::Result<String> {
        self.start_etcd_with(EtcdOptions::default())?;
        Ok(self.etcd_url())
    }

    /// Starts etcd as `options` say (see the module doc) and waits until every member is
    /// healthy; returns the client URLs, member 0 first. Calling it again while etcd runs just
    /// returns the URLs.
    pub fn start_etcd_with(&mut self, options: EtcdOptions) -> io::Result<Vec<String>> {
        if self.etcd.is_none() {
            let n = if options.three { 3 } else { 1 };
            let mut members = Vec::with_capacity(n);
            for i in 0..n {
                let name = if n == 1 {
                    "ovnet".to_owned()
                } else {
                    format!("m{}", i + 1)
                };
                let data_dir = self.dir().join(format!("etcd-{name}"));
                // 0700, as etcd recommends for its data dir.
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&data_dir)
                    .map_err(|e| ctx(format!("create {}", data_dir.display()), e))?;
                let ip = member_ip(i, n);
                if n > 1 {
                    let cidr = format!("{ip}/24");
                    crate::cmd::run(&[
                        "ip",
                        "-n",
                        self.underlay(),
                        "addr",
                        "add",
                        &cidr,
                        "dev",
                        crate::bed::UNDERLAY_BRIDGE,
                    ])?;
                }
                let log = self.dir().join("logs").join(format!("etcd-{name}.log"));
                members.push(Member {
                    proc: None,
                    name,
                    ip,
                    data_dir,
                    log,
                });
            }
            self.etcd = Some(Etcd {
                members,
                options,
                relay: None,
            });
        }
        let n = self.etcd.as_ref().map_or(0, |e| e.members.len());
        let to_start: Vec<usize> = (0..n)
            .filter(|&i| {
                self.etcd
                    .as_ref()
                    .is_some_and(|e| e.members[i].proc.is_none())
            })
            .collect();
        // Members of a new cluster wait for each other: start them all, then wait.
        for &i in &to_start {
            self.launch_member(i).map_err(|e| ctx("start etcd", e))?;
        }
        for &i in &to_start {
            self.wait_member(i).map_err(|e| ctx("start etcd", e))?;
        }
        let etcd = self.etcd.as_mut().expect("set above");
        if etcd.relay.is_none() {
            let target = SocketAddr::from((etcd.members[0].ip, ETCD_CLIENT_PORT));
            etcd.relay = Some(Relay::start(self.underlay.clone(), target)?);
        }
        Ok(self.etcd_urls())
    }

    fn launch_member(&mut self, i: usize) -> io::Result<()> {
        let underlay = self.underlay().to_owned();
        let etcd = self
            .etcd
            .as_mut()
            .expect("etcd state initialised by start_etcd");
        let n = etcd.members.len();
        let scheme = etcd.scheme();
        let cluster: Vec<String> = etcd
            .members
            .iter()
            .map(|m| {
                let peer = if n == 1 {
                    format!("http://127.0.0.1:{ETCD_PEER_PORT}")
                } else {
                    format!("http://{}:{ETCD_PEER_PORT}", m.ip)
                };
                format!("{}={peer}", m.name)
            })
            .collect();
        let tls = etcd.options.tls.clone();
        let client = etcd.client_url(&etcd.members[i]);
        let m = &mut etcd.members[i];
        let (listen, peer, metrics) = if n == 1 {
            (
                format!("{client},{scheme}://127.0.0.1:{ETCD_CLIENT_PORT}"),
                format!("http://127.0.0.1:{ETCD_PEER_PORT}"),
                format!("http://127.0.0.1:{ETCD_METRICS_PORT}"),
            )
        } else {
            (
                client.clone(),
                format!("http://{}:{ETCD_PEER_PORT}", m.ip),
                format!("http://{}:{ETCD_METRICS_PORT}", m.ip),
            )
        };
        let data = m.data_dir.to_string_lossy().into_owned();
        let cluster = cluster.join(",");
        let mut args: Vec<String> = [
            "etcd",
            "--name",
            &m.name,
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
            "--listen-metrics-urls",
            &metrics,
            "--initial-cluster",
            &cluster,
            "--initial-cluster-state",
            "new",
            "--logger",
            "zap",
            "--log-outputs",
            "stderr",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(t) = &tls {
            for (flag, path) in [
                ("--trusted-ca-file", &t.ca),
                ("--cert-file", &t.cert),
                ("--key-file", &t.key),
            ] {
                args.push(flag.to_owned());
                args.push(path.to_string_lossy().into_owned());
            }
            if t.client_cert_auth {
                args.push("--client-cert-auth".to_owned());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        m.proc = Some(Proc::spawn(&underlay, &args, &[], m.log.clone())?);
        Ok(())
    }

    /// Waits until member `i`'s `/health` (on its metrics port) says true.
    fn wait_member(&mut self, i: usize) -> io::Result<()> {
        let underlay = self.underlay().to_owned();
        let etcd = self.etcd.as_mut().expect("etcd state");
        let single = etcd.members.len() == 1;
        let m = &mut etcd.members[i];
        let addr = if single {
            SocketAddr::from(([127, 0, 0, 1], ETCD_METRICS_PORT))
        } else {
            SocketAddr::from((m.ip, ETCD_METRICS_PORT))
        };
        let deadline = Instant::now() + ETCD_READY_TIMEOUT;
        let mut last;
        loop {
            let proc = m.proc.as_mut().expect("launched");
            if let Some(st) = proc.poll()? {
                let tail = proc.log_tail(20);
                m.proc = None;
                return Err(io::Error::other(format!(
                    "etcd member {} exited ({st}); log tail:\n{tail}",
                    m.name
                )));
            }
            match in_netns(&underlay, || http_get(addr, "/health"))? {
                Ok(resp) if resp.contains(r#""health":"true""#) => return Ok(()),
                Ok(resp) => last = resp,
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                let mut p = m.proc.take().expect("launched");
                terminate(&mut [&mut p]);
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd member {} not healthy after {ETCD_READY_TIMEOUT:?} (last: {last}); \
                         log tail:\n{}",
                        m.name,
                        p.log_tail(20)
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Client URL inside the test network: `http://192.168.50.254:2379` (member 0's with
    /// several members; `https` with TLS).
    pub fn etcd_url(&self) -> String {
        self.etcd_urls()
            .into_iter()
            .next()
            .unwrap_or_else(|| format!("http://{UNDERLAY_BRIDGE_IP}:{ETCD_CLIENT_PORT}"))
    }

    /// Every member's client URL, member 0 first.
    pub fn etcd_urls(&self) -> Vec<String> {
        match &self.etcd {
            Some(e) => e.members.iter().map(|m| e.client_url(m)).collect(),
            None => vec![format!("http://{UNDERLAY_BRIDGE_IP}:{ETCD_CLIENT_PORT}")],
        }
    }

    /// The TLS files etcd was started with, if any.
    pub fn etcd_tls(&self) -> Option<EtcdTls> {
        self.etcd.as_ref().and_then(|e| e.options.tls.clone())
    }

    /// Client URL for code running in the test process itself (root namespace):
    /// `http://127.0.0.1:{port}`, a TCP relay into the underlay namespace (to member 0). `None`
    /// until [`Testbed::start_etcd`] succeeded once; it stays valid across stop/restart.
    pub fn etcd_local_url(&self) -> Option<String> {
        let etcd = self.etcd.as_ref()?;
        let relay = etcd.relay.as_ref()?;
        Some(format!("{}://{}", etcd.scheme(), relay.addr))
    }

    /// Whether etcd is running (started and not stopped; a paused etcd counts as running).
    pub fn etcd_running(&mut self) -> bool {
        match self.etcd.as_mut().and_then(|e| e.members[0].proc.as_mut()) {
            Some(p) => matches!(p.poll(), Ok(None)),
            None => false,
        }
    }

    /// Stops etcd, every member (SIGTERM, then SIGKILL after 3 s), keeping the data dirs for
    /// [`Testbed::restart_etcd`]. Ok if it is not running.
    pub fn stop_etcd(&mut self) -> io::Result<()> {
        let Some(etcd) = self.etcd.as_mut() else {
            return Ok(());
        };
        let mut procs: Vec<Proc> = etcd
            .members
            .iter_mut()
            .filter_map(|m| m.proc.take())
            .collect();
        let mut refs: Vec<&mut Proc> = procs.iter_mut().collect();
        terminate(&mut refs);
        Ok(())
    }

    /// Starts etcd again on the same data dirs (stopping it first if it runs) and waits
    /// until it is healthy. Its data survives.
    pub fn restart_etcd(&mut self) -> io::Result<()> {
        let Some(options) = self.etcd.as_ref().map(|e| e.options.clone()) else {
            return Err(io::Error::other("restart_etcd: etcd was never started"));
        };
        self.stop_etcd()?;
        self.start_etcd_with(options)
            .map(|_| ())
            .map_err(|e| ctx("restart etcd", e))
    }

    /// Kills member `i` (0-based) with SIGKILL, as a crash would, and reaps it.
    pub fn kill_etcd_member(&mut self, i: usize) -> io::Result<()> {
        let m = self.member(i)?;
        if let Some(mut p) = m.proc.take() {
            p.signal(libc::SIGKILL)?;
            let _ = p.child.wait();
        }
        Ok(())
    }

    /// Freezes member `i` with SIGSTOP (`true`) or wakes it with SIGCONT: while frozen its
    /// connections stay open and nothing answers, as with a host that hangs.
    pub fn freeze_etcd_member(&mut self, i: usize, frozen: bool) -> io::Result<()> {
        let sig = if frozen { libc::SIGSTOP } else { libc::SIGCONT };
        match self.member(i)?.proc.as_mut() {
            Some(p) => p.signal(sig),
            None => Err(io::Error::other(format!("etcd member {i} is not running"))),
        }
    }

    /// Starts member `i` again on its data dir and waits until it is healthy (it rejoins).
    pub fn restart_etcd_member(&mut self, i: usize) -> io::Result<()> {
        if self.member(i)?.proc.is_some() {
            return Ok(());
        }
        self.launch_member(i)?;
        self.wait_member(i)
    }

    /// The member (0-based) that leads the cluster now, from each running member's
    /// `etcd_server_is_leader` metric; `None` while there is none.
    pub fn etcd_leader(&mut self) -> io::Result<Option<usize>> {
        let underlay = self.underlay().to_owned();
        let etcd = self
            .etcd
            .as_ref()
            .ok_or_else(|| io::Error::other("etcd was never started"))?;
        let single = etcd.members.len() == 1;
        for (i, m) in etcd.members.iter().enumerate() {
            if m.proc.is_none() {
                continue;
            }
            let addr = if single {
                SocketAddr::from(([127, 0, 0, 1], ETCD_METRICS_PORT))
            } else {
                SocketAddr::from((m.ip, ETCD_METRICS_PORT))
            };
            if let Ok(Ok(text)) = in_netns(&underlay, || http_get(addr, "/metrics")) {
                if text.lines().any(|l| l.trim() == "etcd_server_is_leader 1") {
                    return Ok(Some(i));
                }
            }
        }
        Ok(None)
    }

    fn member(&mut self, i: usize) -> io::Result<&mut Member> {
        self.etcd
            .as_mut()
            .and_then(|e| e.members.get_mut(i))
            .ok_or_else(|| io::Error::other(format!("no etcd member {i}")))
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
            .filter(|e| e.members.iter().any(|m| m.proc.is_some()))
            .ok_or_else(|| io::Error::other("etcd is not running"))?;
        for m in &mut etcd.members {
            if let Some(p) = m.proc.as_mut() {
                p.signal(sig)?;
            }
        }
        Ok(())
    }

    /// Everything etcd has logged (all runs, all members).
    pub fn etcd_log(&self) -> io::Result<String> {
        let etcd = self
            .etcd
            .as_ref()
            .ok_or_else(|| io::Error::other("etcd was never started"))?;
        let mut all = String::new();
        for m in &etcd.members {
            all.push_str(&std::fs::read_to_string(&m.log)?);
        }
        Ok(all)
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
