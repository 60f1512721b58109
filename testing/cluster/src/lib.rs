//! Test harness for ovnet's end-to-end tests: a [`Cluster`] is a test bed
//! ([`ovnet_testbed`]) with etcd and one real `ovnet-agent` per host, driven the way an
//! operator drives it, through `ovctl`. The agent's tests use it for the multi-host scenarios,
//! `ovctl`'s tests to check the CLI against the real API service.
//!
//! It runs the workspace's built binaries (`target/<profile>/ovnet-agent` and `ovctl`, found
//! beside the test executable): `cargo test --workspace` builds them, `cargo test -p <crate>`
//! alone may not (then run `cargo build --workspace` first).
//!
//! Everything waits with bounded polling ([`wait_until`]), never a fixed sleep; every child
//! process belongs to the test bed, so a failing test still kills the agents and deletes the
//! namespaces (and prints each agent's last log lines; set [`SHOW_LOGS`] to see whole logs of
//! passing tests too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use ovnet_testbed::{EtcdOptions, EtcdTls, Host, Pid, Testbed};
use serde_json::Value;

pub mod docker;
pub use docker::{DockerCluster, Dockerd};

/// How long an agent gets to open its socket and answer `node ls`.
pub const AGENT_READY: Duration = Duration::from_secs(20);
/// Upper bound on one `ovctl` run (a hung CLI fails the test instead of blocking CI).
const OVCTL_TIMEOUT: &str = "30";
/// Name prefix of the agent's uplink TAP, `ovu<port>` (the only `ov` device not per network).
const UPLINK_PREFIX: &str = "ovu";
/// The key prefix the agents use (their default).
pub const PREFIX: &str = "/ovnet/";

/// Set this environment variable (to anything) to print every agent's log when a cluster is
/// dropped, also when the test passed. (On a failure the test bed prints their tails anyway.)
pub const SHOW_LOGS: &str = "OVNET_E2E_LOGS";

/// Path of a binary the workspace built, beside the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (the end-to-end tests run the \
         agent and the CLI as binaries)",
        path.display()
    );
    path
}

/// Polls `f` every 50 ms until it returns `Ok`, for at most `timeout`; panics naming `what`
/// and the last thing `f` said otherwise.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What one `ovctl` run did.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
    /// The command, for messages.
    pub cmd: String,
}

impl Out {
    fn from_output(cmd: String, out: Output) -> Out {
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmd,
        }
    }

    /// Stdout, after asserting exit 0 and nothing on stderr.
    pub fn ok(self) -> String {
        assert!(
            self.code == Some(0) && self.stderr.is_empty(),
            "`{}` failed:\nstdout: {}\nstderr: {}",
            self.cmd,
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// The message of the one `Error: <message>` line on stderr, after asserting exit 1 and
    /// that stdout has nothing (or, as `docker network inspect` prints, an empty array `[]`).
    pub fn err(self) -> String {
        assert_eq!(
            self.code,
            Some(1),
            "`{}` should fail with exit 1:\nstdout: {}\nstderr: {}",
            self.cmd,
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(
            lines.len() == 1 && lines[0].starts_with("Error: ") && lines[0].len() > 8,
            "`{}`: want exactly one line `Error: <message>` on stderr, got {:?}",
            self.cmd,
            self.stderr
        );
        assert!(
            matches!(self.stdout.trim(), "" | "[]"),
            "`{}` failed but printed on stdout: {:?}",
            self.cmd,
            self.stdout
        );
        lines[0]["Error: ".len()..].to_owned()
    }
}

/// A test bed with etcd, `n` hosts (`host1`.. at 192.168.50.1..) and one agent on each.
#[derive(Debug)]
pub struct Cluster {
    /// The test bed, for namespaces, processes and etcd.
    pub tb: Testbed,
    /// The hosts, `host1` first.
    pub hosts: Vec<Host>,
    agents: Vec<Option<Pid>>,
    /// Extra arguments of each host's agent, kept for restarts.
    extra: Vec<Vec<String>>,
    /// Extra environment of each host's agent.
    env: Vec<Vec<(String, String)>>,
    /// `--user` of [`Cluster::etcdctl`], once etcd has users.
    etcdctl_user: Option<String>,
    /// Every agent ever started, with its host number, for [`SHOW_LOGS`].
    started: Vec<(usize, Pid)>,
    agent_bin: PathBuf,
    ovctl_bin: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents first, while etcd still runs, so they leave the cluster the normal way (a
        // paused one is woken to hear SIGTERM).
        for pid in self.agents.iter_mut().filter_map(Option::take) {
            let _ = self.tb.kill(pid, libc::SIGCONT);
            let _ = self.tb.stop(pid);
        }
        if std::env::var_os(SHOW_LOGS).is_none() {
            return;
        }
        for (h, pid) in self.started.clone() {
            let log = self.tb.log(pid).unwrap_or_default();
            eprintln!(
                "---- agent of host{h} (pid {pid}), test bed {}:\n{log}",
                self.tb.id()
            );
        }
    }
}

impl Cluster {
    /// Starts etcd, `n` hosts and their agents, and waits until every agent answers and is
    /// registered.
    pub fn start(n: u8) -> Cluster {
        let mut c = Cluster::bed(n);
        for h in 1..=usize::from(n) {
            c.start_agent(h);
        }
        for h in 1..=usize::from(n) {
            c.wait_agent_ready(h);
        }
        c
    }

    /// Etcd and `n` hosts, no agent yet (start them with [`Cluster::start_agent`]).
    pub fn bed(n: u8) -> Cluster {
        Cluster::bed_with(n, EtcdOptions::default())
    }

    /// [`Cluster::bed`] with etcd run as `etcd` says (three members, TLS).
    pub fn bed_with(n: u8, etcd: EtcdOptions) -> Cluster {
        let agent_bin = workspace_binary("ovnet-agent");
        let ovctl_bin = workspace_binary("ovctl");
        let mut tb = Testbed::new().expect("test bed (needs root and iproute2)");
        tb.start_etcd_with(etcd).expect("etcd");
        let hosts: Vec<Host> = (1..=n).map(|i| tb.add_host(i).expect("add host")).collect();
        Cluster {
            tb,
            hosts,
            agents: vec![None; usize::from(n)],
            extra: vec![Vec::new(); usize::from(n)],
            env: vec![Vec::new(); usize::from(n)],
            etcdctl_user: None,
            started: Vec::new(),
            agent_bin,
            ovctl_bin,
        }
    }

    /// Host `h` (1-based).
    pub fn host(&self, h: usize) -> &Host {
        &self.hosts[h - 1]
    }

    /// Node name of host `h`.
    pub fn node(h: usize) -> String {
        format!("host{h}")
    }

    /// API socket of host `h`'s agent.
    pub fn sock(&self, h: usize) -> PathBuf {
        self.tb.dir().join(format!("host{h}.sock"))
    }

    /// The state directory of host `h`'s agent (its node id), kept across its restarts.
    pub fn state_dir(&self, h: usize) -> PathBuf {
        self.tb.dir().join(format!("state-host{h}"))
    }

    /// Starts (or restarts) the agent of host `h`, with its extra arguments and environment.
    pub fn start_agent(&mut self, h: usize) {
        let host = self.host(h).clone();
        let (node, vtep, sock, etcd, state) = (
            Self::node(h),
            host.underlay_ip.to_string(),
            self.sock(h).to_string_lossy().into_owned(),
            self.tb.etcd_urls().join(","),
            self.state_dir(h).to_string_lossy().into_owned(),
        );
        let agent = self.agent_bin.to_string_lossy().into_owned();
        let extra = self.extra[h - 1].clone();
        // `--node` or `--vtep-ip` among the extra arguments replaces the host's own name or
        // address (`eth0`'s).
        let given = |flag: &str| extra.iter().any(|a| a == flag);
        let mut args = vec![agent.as_str()];
        for (flag, value) in [("--node", &node), ("--vtep-ip", &vtep)] {
            if !given(flag) {
                args.extend([flag, value.as_str()]);
            }
        }
        args.extend(["--etcd", &etcd, "--api", &sock, "--state-dir", &state]);
        args.extend(extra.iter().map(String::as_str));
        let mut env = vec![("RUST_LOG", "info")];
        env.extend(
            self.env[h - 1]
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let pid = self.tb.spawn(&host.ns, &args, &env).expect("spawn agent");
        self.agents[h - 1] = Some(pid);
        self.started.push((h, pid));
    }

    /// Sets the extra arguments host `h`'s agent gets from its next start on.
    pub fn set_agent_args(&mut self, h: usize, extra: &[&str]) {
        self.extra[h - 1] = extra.iter().map(|s| (*s).to_owned()).collect();
    }

    /// Sets the extra environment host `h`'s agent gets from its next start on.
    pub fn set_agent_env(&mut self, h: usize, env: &[(&str, &str)]) {
        self.env[h - 1] = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Has [`Cluster::etcdctl`] log in as `user` (`name:password`) from now on.
    pub fn set_etcdctl_user(&mut self, user: &str) {
        self.etcdctl_user = Some(user.to_owned());
    }

    /// Waits up to `timeout` for host `h`'s agent to exit, and returns its exit code and log;
    /// panics if it is still running then.
    pub fn wait_agent_exit(&mut self, h: usize, timeout: Duration) -> (Option<i32>, String) {
        let pid = self.agents[h - 1].expect("agent started");
        let st = self.tb.wait_timeout(pid, timeout).expect("wait agent");
        let log = self.tb.log(pid).unwrap_or_default();
        let Some(st) = st else {
            panic!("agent of host{h} still runs after {timeout:?}:\n{log}");
        };
        self.agents[h - 1] = None;
        (st.code(), log)
    }

    /// The running agent of host `h`.
    pub fn agent(&self, h: usize) -> Pid {
        self.agents[h - 1].expect("agent running")
    }

    /// Everything host `h`'s running agent has logged.
    pub fn agent_log(&mut self, h: usize) -> String {
        let pid = self.agent(h);
        self.tb.log(pid).unwrap_or_default()
    }

    /// Waits until host `h`'s agent has its socket, answers `node ls` and lists itself alive.
    pub fn wait_agent_ready(&mut self, h: usize) {
        let pid = self.agent(h);
        let sock = self.sock(h);
        let node = Self::node(h);
        let deadline = Instant::now() + AGENT_READY;
        let mut last = String::from("socket not there yet");
        loop {
            if let Some(st) = self.tb.try_wait(pid).expect("agent status") {
                panic!(
                    "agent of host{h} exited ({st}) while starting:\n{}",
                    self.tb.log(pid).unwrap_or_default()
                );
            }
            if sock.exists() {
                let out = self.ovctl(h, &["node", "ls"]);
                if out.code == Some(0) && node_alive(&out.stdout, &node) == Some(true) {
                    return;
                }
                last = format!("{out:?}");
            }
            assert!(
                Instant::now() < deadline,
                "agent of host{h} not ready within {AGENT_READY:?}; last: {last}\nlog:\n{}",
                self.tb.log(pid).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops host `h`'s agent with SIGTERM (SIGKILL after 3 s) and returns how it exited.
    pub fn stop_agent(&mut self, h: usize) -> ExitStatus {
        let pid = self.agents[h - 1].take().expect("agent running");
        self.tb.stop(pid).expect("stop agent")
    }

    /// Kills host `h`'s agent with SIGKILL and waits until it is gone.
    pub fn kill_agent(&mut self, h: usize) {
        let pid = self.agents[h - 1].take().expect("agent running");
        self.tb.kill(pid, libc::SIGKILL).expect("kill agent");
        let st = self
            .tb
            .wait_timeout(pid, Duration::from_secs(10))
            .expect("wait agent");
        assert!(st.is_some(), "agent of host{h} survived SIGKILL");
    }

    /// Freezes host `h`'s agent with SIGSTOP: its sockets stay open, nothing is read or
    /// renewed. [`Cluster::resume_agent`] undoes it.
    pub fn pause_agent(&mut self, h: usize) {
        let pid = self.agent(h);
        self.tb.kill(pid, libc::SIGSTOP).expect("SIGSTOP agent");
    }

    /// Wakes host `h`'s agent frozen by [`Cluster::pause_agent`].
    pub fn resume_agent(&mut self, h: usize) {
        let pid = self.agent(h);
        self.tb.kill(pid, libc::SIGCONT).expect("SIGCONT agent");
    }

    fn ovctl_command(&self, h: usize, sock: &Path, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(h).ns])
            .args(["timeout", "-k", "5", OVCTL_TIMEOUT])
            .arg(&self.ovctl_bin)
            .arg("--agent")
            .arg(sock)
            .args(args)
            .env_remove("OVNET_AGENT")
            .stdin(Stdio::null());
        let text = format!("host{h}: ovctl {}", args.join(" "));
        (cmd, text)
    }

    /// Runs `ovctl --agent <host h's socket> ARGS` inside host `h`.
    pub fn ovctl(&self, h: usize, args: &[&str]) -> Out {
        self.ovctl_sock(h, &self.sock(h), args)
    }

    /// Runs `ovctl --agent SOCK ARGS` inside host `h` (e.g. with a socket that is not there).
    pub fn ovctl_sock(&self, h: usize, sock: &Path, args: &[&str]) -> Out {
        let (mut cmd, text) = self.ovctl_command(h, sock, args);
        let out = cmd.output().unwrap_or_else(|e| panic!("run `{text}`: {e}"));
        Out::from_output(text, out)
    }

    /// Starts `ovctl ARGS` on host `h` without waiting, for races; see [`Cluster::finish`].
    pub fn ovctl_spawn(&self, h: usize, args: &[&str]) -> (Child, String) {
        let (mut cmd, text) = self.ovctl_command(h, &self.sock(h), args);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn `{text}`: {e}"));
        (child, text)
    }

    /// Waits for an `ovctl` started with [`Cluster::ovctl_spawn`].
    pub fn finish((child, text): (Child, String)) -> Out {
        let out = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait `{text}`: {e}"));
        Out::from_output(text, out)
    }

    /// `network create -d overlay EXTRA.. NAME` on host `h`; returns the printed id.
    pub fn create(&self, h: usize, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["network", "create", "-d", "overlay"];
        args.extend_from_slice(extra);
        args.push(name);
        let id = self.ovctl(h, &args).ok().trim().to_owned();
        assert!(
            is_hex_id(&id),
            "create {name} printed {id:?}, want a 64-hex id"
        );
        id
    }

    /// A bare namespace for a container, `ov{id}n{label}`.
    pub fn netns(&mut self, label: &str) -> String {
        self.tb.add_netns(label).expect("add namespace")
    }

    /// `network connect NET CONTAINER --netns NS` on host `h`, which must succeed.
    pub fn connect(&self, h: usize, net: &str, container: &str, ns: &str) {
        self.ovctl(h, &["network", "connect", net, container, "--netns", ns])
            .ok();
    }

    /// `network disconnect NET CONTAINER` on host `h`, which must succeed.
    pub fn disconnect(&self, h: usize, net: &str, container: &str) {
        self.ovctl(h, &["network", "disconnect", net, container])
            .ok();
    }

    /// `network inspect NET` on host `h`: the one object of the JSON array.
    pub fn inspect(&self, h: usize, net: &str) -> Value {
        let out = self.ovctl(h, &["network", "inspect", net]).ok();
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("inspect {net}: not JSON ({e}): {out}"));
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("inspect {net}: want a JSON array, got {v}"));
        assert_eq!(arr.len(), 1, "inspect {net}: want one network, got {v}");
        arr[0].clone()
    }

    /// `network ls` on host `h`, as sorted non-empty lines.
    pub fn ls(&self, h: usize) -> Vec<String> {
        let out = self.ovctl(h, &["network", "ls"]).ok();
        let mut lines: Vec<String> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    /// Whether `node ls` on host `h` says node `node` is alive (`None`: not listed).
    pub fn alive(&self, h: usize, node: &str) -> Option<bool> {
        node_alive(&self.ovctl(h, &["node", "ls"]).ok(), node)
    }

    /// Runs `args` in namespace `ns` and returns stdout (panics on failure).
    pub fn sh<S: AsRef<str>>(&self, ns: &str, args: &[S]) -> String {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let args = args.as_slice();
        self.tb
            .exec(ns, args)
            .unwrap_or_else(|e| panic!("in {ns}: {e}"))
    }

    /// Links of namespace `ns` whose names start with `prefix`.
    pub fn links(&self, ns: &str, prefix: &str) -> BTreeSet<String> {
        self.sh(ns, &["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    }

    /// The agent's own device in `ns`: the uplink TAP `ovu<port>` that carries TCP super-frames
    /// whole (UDP tunnel GSO), there for as long as the agent runs where the kernel has the
    /// feature, and never per network. Empty where the agent runs without it.
    pub fn uplink(&self, ns: &str) -> BTreeSet<String> {
        self.links(ns, UPLINK_PREFIX)
    }

    /// The devices the agent made for networks and endpoints in `ns` (`ovbr*`, `ovtap*`,
    /// `ovv*`): every `ov` device but the agent's uplink.
    pub fn network_links(&self, ns: &str) -> BTreeSet<String> {
        let mut links = self.links(ns, "ov");
        links.retain(|l| !l.starts_with(UPLINK_PREFIX));
        links
    }

    /// Received replies of `ping -c count -i 0.2 -W 1 to` from `ns`; 0 when ping cannot even
    /// send (no route), which for these tests is the same as "not reachable".
    pub fn ping_received(&self, ns: &str, to: &str, count: u32) -> u32 {
        match ovnet_testbed::ping(&self.tb, ns, to, count) {
            Ok(st) => st.received,
            Err(e) if e.to_string().contains("unreachable") => 0,
            Err(e) => panic!("ping {to} from {ns}: {e}"),
        }
    }

    /// Asserts that `ping -c 3` from `ns` to `to` gets every reply, the first one included.
    pub fn assert_ping(&self, ns: &str, to: &str) {
        let st = ovnet_testbed::ping(&self.tb, ns, to, 3)
            .unwrap_or_else(|e| panic!("ping {to} from {ns}: {e}"));
        assert!(
            st.no_loss(),
            "ping {to} from {ns}: {}/{} replies",
            st.received,
            st.transmitted
        );
    }

    /// Waits until a single ping from `ns` to `to` gets its reply.
    pub fn wait_ping(&self, ns: &str, to: &str, timeout: Duration) {
        wait_until(&format!("{ns} to reach {to}"), timeout, || {
            match self.ping_received(ns, to, 1) {
                1 => Ok(()),
                n => Err(format!("{n} replies")),
            }
        });
    }

    /// Asserts `ns` holds no interface but `lo`.
    pub fn assert_only_lo(&self, ns: &str) {
        assert_eq!(self.links(ns, ""), set(&["lo"]), "{ns} should have only lo");
    }

    /// Asserts `eth0` of `ns` is up with `cidr`, `mac` and MTU 1450.
    pub fn assert_eth0(&self, ns: &str, cidr: &str, mac: &str) {
        let addr = self.sh(ns, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
        assert!(
            addr.contains(&format!("inet {cidr} ")),
            "{ns}: want {cidr} on eth0, got {addr}"
        );
        let link = self.sh(ns, &["ip", "-o", "link", "show", "eth0"]);
        assert!(link.contains(" mtu 1450 "), "{ns}: want mtu 1450: {link}");
        assert!(
            link.contains(&format!("link/ether {mac} ")),
            "{ns}: want MAC {mac}: {link}"
        );
        assert!(
            link.contains("state UP") || link.contains(",UP"),
            "{ns}: eth0 down: {link}"
        );
    }

    /// Endpoint records of the network with id `net_id`, as `{p}endpoints/{id}/{name}` keys.
    pub fn endpoint_keys(&self, net_id: &str) -> BTreeSet<String> {
        self.etcd_keys(&format!("{PREFIX}endpoints/{net_id}/"))
    }

    /// Address claims of the network with id `net_id`, as `{p}ips/{id}/{address}` keys.
    pub fn ip_keys(&self, net_id: &str) -> BTreeSet<String> {
        self.etcd_keys(&format!("{PREFIX}ips/{net_id}/"))
    }

    /// Runs `etcdctl ARGS` against the cluster's etcd (every member, with its TLS and the
    /// user of [`Cluster::set_etcdctl_user`]), from the underlay namespace.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        self.sh(self.tb.underlay(), &self.etcdctl_args(args))
    }

    /// Like [`Cluster::etcdctl`], but returns etcdctl's error instead of panicking.
    pub fn try_etcdctl(&self, args: &[&str]) -> Result<String, String> {
        let full = self.etcdctl_args(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.tb
            .exec(self.tb.underlay(), &full)
            .map_err(|e| e.to_string())
    }

    fn etcdctl_args(&self, args: &[&str]) -> Vec<String> {
        let mut full = vec![
            "etcdctl".to_owned(),
            "--endpoints".to_owned(),
            self.tb.etcd_urls().join(","),
        ];
        if let Some(tls) = self.tb.etcd_tls() {
            for (flag, path) in [
                ("--cacert", tls.ca),
                ("--cert", tls.cert),
                ("--key", tls.key),
            ] {
                full.push(flag.to_owned());
                full.push(path.to_string_lossy().into_owned());
            }
        }
        if let Some(user) = &self.etcdctl_user {
            full.push("--user".to_owned());
            full.push(user.clone());
        }
        full.extend(args.iter().map(|s| (*s).to_owned()));
        full
    }

    /// Keys in etcd under `prefix` (e.g. `/ovnet/endpoints/`).
    pub fn etcd_keys(&self, prefix: &str) -> BTreeSet<String> {
        self.etcdctl(&["get", prefix, "--prefix", "--keys-only"])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// Whether `node ls` output `table` says `node` is alive (`None`: not listed): its third
/// column (`ALIVE`) is `yes`.
pub fn node_alive(table: &str, node: &str) -> Option<bool> {
    table.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            [name, _, alive, ..] if *name == node => Some(*alive == "yes"),
            _ => None,
        }
    })
}

/// A set of strings, for comparing with the harness's sets of links and keys.
pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Whether `s` is 64 lowercase hex characters.
pub fn is_hex_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `v[key]` as a string, panicking with the whole value if it is not one.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("want string field {key:?} in {v}"))
}

/// The entries of `Containers` of an inspect object, keyed by their `Name`.
pub fn containers(net: &Value) -> BTreeMap<String, Value> {
    let obj = net["Containers"]
        .as_object()
        .unwrap_or_else(|| panic!("want an object Containers in {net}"));
    obj.values()
        .map(|c| (s(c, "Name").to_owned(), c.clone()))
        .collect()
}

/// Parses iputils ping's summary line into (transmitted, received).
pub fn ping_summary(out: &str) -> Option<(u32, u32)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(',')
        .map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()));
    Some((nums.next()??, nums.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_table_is_read_by_column() {
        let t = "NAME      VTEP                  ALIVE\n\
                 host1     192.168.50.1:4789     yes\n\
                 host12    192.168.50.12:4789    no\n";
        assert_eq!(node_alive(t, "host1"), Some(true));
        assert_eq!(node_alive(t, "host12"), Some(false));
        assert_eq!(node_alive(t, "host2"), None);
    }

    #[test]
    fn ping_summaries() {
        let out = "3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms";
        assert_eq!(ping_summary(out), Some((3, 2)));
        assert_eq!(ping_summary("nothing"), None);
    }
}
