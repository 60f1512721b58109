//! Harness for the end-to-end tests: a [`Cluster`] is a test bed with etcd and one
//! `ovnet-agent` per host, driven the way an operator drives it, through `ovctl`.
//!
//! Everything waits with bounded polling ([`wait_until`]), never a fixed sleep; every child
//! process belongs to the test bed, so a failing test still kills the agents and deletes the
//! namespaces (and prints each agent's last log lines; set [`SHOW_LOGS`] to see whole logs of
//! passing tests too).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ovnet_testbed::{Host, Pid, Testbed};
use serde_json::Value;

/// How long an agent gets to open its socket and answer `node ls`.
pub const AGENT_READY: Duration = Duration::from_secs(10);
/// Upper bound on one `ovctl` run (a hung CLI fails the test instead of blocking CI).
const OVCTL_TIMEOUT: &str = "30";
/// Name prefix of the agent's uplink TAP, `ovu<port>` (the only `ov` device not per network).
const UPLINK_PREFIX: &str = "ovu";

/// Path of a binary built by the workspace next to `ovnet-agent`.
fn sibling_binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ovnet-agent")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first (the tests drive the CLI binary)",
        path.display()
    );
    path
}

/// `ovctl`, built by `cargo build --workspace` (the project's test command builds it).
pub fn ovctl_bin() -> PathBuf {
    sibling_binary("ovctl")
}

/// The agent binary under test.
pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ovnet-agent")
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`; panics naming `what`
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
    pub stdout: String,
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

    /// Stdout, after asserting exit 0.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code,
            Some(0),
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
    pub tb: Testbed,
    pub hosts: Vec<Host>,
    agents: Vec<Option<Pid>>,
    /// Every agent ever started, with its host number, for [`SHOW_LOGS`].
    started: Vec<(usize, Pid)>,
    ovctl: PathBuf,
}

/// Set this environment variable (to anything) to print every agent's log when a cluster is
/// dropped, also when the test passed. (On a failure the test bed prints their tails anyway.)
pub const SHOW_LOGS: &str = "OVNET_E2E_LOGS";

impl Drop for Cluster {
    fn drop(&mut self) {
        // Agents first, while etcd still runs, so they leave the cluster the normal way.
        for pid in self.agents.iter_mut().filter_map(Option::take) {
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
        let ovctl = ovctl_bin();
        let mut tb = Testbed::new().expect("test bed (needs root and iproute2)");
        tb.start_etcd().expect("etcd");
        let hosts: Vec<Host> = (1..=n).map(|i| tb.add_host(i).expect("add host")).collect();
        let mut c = Cluster {
            tb,
            hosts,
            agents: vec![None; usize::from(n)],
            started: Vec::new(),
            ovctl,
        };
        for h in 1..=usize::from(n) {
            c.start_agent(h);
        }
        for h in 1..=usize::from(n) {
            c.wait_agent_ready(h);
        }
        c
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

    /// Starts (or restarts) the agent of host `h` with the contract's arguments.
    pub fn start_agent(&mut self, h: usize) {
        let host = self.host(h).clone();
        let sock = self.sock(h);
        let etcd = self.tb.etcd_url();
        let (node, vtep, sock) = (
            Self::node(h),
            host.underlay_ip.to_string(),
            sock.to_string_lossy().into_owned(),
        );
        let args = [
            agent_bin(),
            "--node",
            &node,
            "--etcd",
            &etcd,
            "--vtep-ip",
            &vtep,
            "--api",
            &sock,
        ];
        let pid = self
            .tb
            .spawn(&host.ns, &args, &[("RUST_LOG", "info")])
            .expect("spawn agent");
        self.agents[h - 1] = Some(pid);
        self.started.push((h, pid));
    }

    /// Waits until host `h`'s agent has its socket, answers `node ls` and lists itself.
    pub fn wait_agent_ready(&mut self, h: usize) {
        let pid = self.agents[h - 1].expect("agent started");
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
                if out.code == Some(0) && out.stdout.contains(&node) {
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
    pub fn stop_agent(&mut self, h: usize) -> std::process::ExitStatus {
        let pid = self.agents[h - 1].take().expect("agent running");
        self.tb.stop(pid).expect("stop agent")
    }

    /// Kills host `h`'s agent with `signal` and waits until it is gone.
    pub fn kill_agent(&mut self, h: usize, signal: i32) {
        let pid = self.agents[h - 1].take().expect("agent running");
        self.tb.kill(pid, signal).expect("kill agent");
        let st = self
            .tb
            .wait_timeout(pid, Duration::from_secs(10))
            .expect("wait agent");
        assert!(st.is_some(), "agent of host{h} survived signal {signal}");
    }

    fn ovctl_command(&self, h: usize, sock: &Path, args: &[&str]) -> (Command, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(h).ns])
            .args(["timeout", "-k", "5", OVCTL_TIMEOUT])
            .arg(&self.ovctl)
            .arg("--agent")
            .arg(sock)
            .args(args)
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

    /// Runs `args` in namespace `ns` and returns stdout (panics on failure).
    pub fn sh(&self, ns: &str, args: &[&str]) -> String {
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

    /// Keys in etcd under `prefix` (e.g. `/ovnet/endpoints/`), read through the test bed's
    /// relay from this process.
    pub fn etcd_keys(&self, prefix: &str) -> BTreeSet<String> {
        let url = self.tb.etcd_local_url().expect("etcd started");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(async {
            let mut client = tokio::time::timeout(
                Duration::from_secs(10),
                etcd_client::Client::connect([url.as_str()], None),
            )
            .await
            .expect("etcd connect timed out")
            .expect("etcd connect");
            let resp = tokio::time::timeout(
                Duration::from_secs(10),
                client.get(
                    prefix,
                    Some(
                        etcd_client::GetOptions::new()
                            .with_prefix()
                            .with_keys_only(),
                    ),
                ),
            )
            .await
            .expect("etcd get timed out")
            .expect("etcd get");
            resp.kvs()
                .iter()
                .map(|kv| kv.key_str().expect("utf-8 key").to_owned())
                .collect()
        })
    }
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
pub fn containers(net: &Value) -> std::collections::BTreeMap<String, Value> {
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
