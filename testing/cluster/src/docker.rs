//! A dockerd of the test's own on each host of a [`Cluster`], with the host's agent as its
//! network and IPAM plugin ([`DockerCluster`]).
//!
//! Each dockerd runs in its host's network namespace (`nsenter --net`, not `ip netns exec`,
//! which remounts /sys and leaves dockerd without the devices cgroup) and in a mount namespace
//! of its own, where the test's directory is mounted over `/etc/docker` (so
//! `/etc/docker/plugins/ovnet.spec` names this host's agent socket, and the host's own plugin
//! directories are never touched) and an empty tmpfs over `/run/docker` (so a real plugin
//! socket of the machine's is not seen). Its data root, exec root, API socket and pid file
//! are the test's; `--iptables=false --bridge=none` keep it off the host's firewall and out of
//! docker0 unless a test asks for Docker's firewall (in the host's namespace only).
//!
//! There is no registry: the image is busybox-static's binary with its applets as symlinks,
//! imported from a tarball. Dropping a [`Dockerd`] removes its containers, stops it (SIGTERM,
//! then SIGKILL) and kills, by pid, the container shims it left (found by its own exec root in
//! their command line).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{wait_until, Cluster, Out};

/// dockerd, from Debian's docker.io (not whatever `docker` is first on PATH).
pub const DOCKERD: &str = "/usr/sbin/dockerd";
/// The docker CLI of the same package.
pub const DOCKER: &str = "/usr/bin/docker";
/// busybox-static's binary, the test image's only file.
pub const BUSYBOX: &str = "/bin/busybox";
/// The test image.
pub const IMAGE: &str = "ovnet-busybox:test";
/// The plugin's name: the agent's plugin socket is `ovnet.sock`.
pub const PLUGIN: &str = "ovnet";
/// How long a dockerd gets to answer after it starts.
const READY: Duration = Duration::from_secs(90);
/// Upper bound on one docker CLI call.
const DOCKER_TIMEOUT: &str = "120";
/// The applets the image links to busybox.
const APPLETS: [&str; 16] = [
    "sh", "ping", "ip", "cat", "sleep", "hostname", "nslookup", "wget", "ls", "nc", "true", "echo",
    "ifconfig", "route", "httpd", "mkdir",
];

/// Why Docker tests cannot run on this machine (`None`: they can).
pub fn unavailable() -> Option<String> {
    for (path, package) in [
        (DOCKERD, "docker.io"),
        (DOCKER, "docker.io"),
        (BUSYBOX, "busybox-static"),
        ("/etc/docker", "docker.io"),
    ] {
        if !Path::new(path).exists() {
            return Some(format!(
                "{path} is missing: install {package} (deploy/deps.sh test)"
            ));
        }
    }
    None
}

/// One dockerd in a host's namespace.
#[derive(Debug)]
pub struct Dockerd {
    ns: String,
    dir: PathBuf,
    iptables: bool,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd in namespace `ns` with its files under `dir`, the ovnet plugin at
    /// socket `plugin`, and waits until it answers.
    pub fn start(dir: &Path, ns: &str, plugin: &Path, iptables: bool) -> Dockerd {
        std::fs::create_dir_all(dir.join("etc/plugins")).expect("dockerd directories");
        std::fs::write(
            dir.join(format!("etc/plugins/{PLUGIN}.spec")),
            format!("unix://{}\n", plugin.display()),
        )
        .expect("plugin spec file");
        let mut d = Dockerd {
            ns: ns.to_owned(),
            dir: dir.to_owned(),
            iptables,
            child: None,
        };
        d.restart();
        d
    }

    /// dockerd's API socket.
    pub fn sock(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// The last lines dockerd logged.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn spawn(&mut self) {
        let script = format!(
            "set -e\n\
             mount --bind {etc} /etc/docker\n\
             if [ -d /run/docker ]; then mount -t tmpfs tmpfs /run/docker; fi\n\
             exec {DOCKERD} --data-root {data} --exec-root {exec} -H unix://{sock} \
             --pidfile {pid} --iptables={iptables} {bridge} --log-level info\n",
            etc = self.dir.join("etc").display(),
            data = self.dir.join("data").display(),
            exec = self.exec_root().display(),
            sock = self.sock().display(),
            pid = self.dir.join("docker.pid").display(),
            iptables = self.iptables,
            bridge = if self.iptables { "" } else { "--bridge=none" },
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("dockerd log");
        let net = format!("--net={}", ovnet_testbed::ns_path(&self.ns).display());
        // nsenter, unshare and sh all exec: the child's pid is dockerd's.
        let child = Command::new("nsenter")
            .args([
                net.as_str(),
                "unshare",
                "--mount",
                "--propagation",
                "private",
            ])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        self.child = Some(child);
    }

    /// Waits until dockerd answers `docker version`.
    pub fn wait_ready(&mut self) {
        if let Err(e) = self.try_ready() {
            panic!("{e}");
        }
    }

    /// Waits until dockerd answers `docker version`, or says why it will not.
    fn try_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "dockerd in {} exited ({st}) while starting:\n{}",
                    self.ns,
                    self.log_tail()
                ));
            }
            if self.sock().exists() && self.docker(&["version"]).code == Some(0) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "dockerd in {} not ready within {READY:?}:\n{}",
                    self.ns,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `docker -H <this dockerd> ARGS`.
    pub fn docker(&self, args: &[&str]) -> Out {
        let host = format!("unix://{}", self.sock().display());
        let out = Command::new("timeout")
            .args(["-k", "5", DOCKER_TIMEOUT, DOCKER, "-H", &host])
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .expect("run docker");
        Out::from_output(format!("{}: docker {}", self.ns, args.join(" ")), out)
    }

    /// Runs `docker ARGS`, which must succeed; its stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.code == Some(0),
            "`{}` failed:\nstdout: {}\nstderr: {}\ndockerd:\n{}",
            out.cmd,
            out.stdout,
            out.stderr,
            self.log_tail()
        );
        out.stdout.trim().to_owned()
    }

    /// Imports the busybox image as [`IMAGE`].
    pub fn import_busybox(&self) {
        let root = self.dir.join("image");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("image dir");
        if !bin.join("busybox").exists() {
            std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
            for a in APPLETS {
                std::os::unix::fs::symlink("busybox", bin.join(a)).expect("applet link");
            }
        }
        let tar = self.dir.join("image.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(st.success(), "tar of the image failed");
        self.ok(&["import", &tar.to_string_lossy(), IMAGE]);
    }

    /// `docker run -d [EXTRA..] --name NAME IMAGE sleep 100000`; the container's ID.
    pub fn run(&self, name: &str, extra: &[&str]) -> String {
        self.ok(&Self::run_args(name, extra, &["sleep", "100000"]))
    }

    /// The arguments of `docker run -d --name NAME [EXTRA..] IMAGE CMD..`.
    pub fn run_args<'a>(name: &'a str, extra: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.push(IMAGE);
        args.extend_from_slice(cmd);
        args
    }

    /// The address of container `name` on network `net`.
    pub fn ip(&self, name: &str, net: &str) -> String {
        let fmt = format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}");
        self.ok(&["inspect", "-f", &fmt, name])
    }

    /// Sends SIGKILL to dockerd and waits until it is gone (its containers keep running
    /// until it comes back).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops dockerd with SIGTERM (it stops its containers first), SIGKILL after 60 s.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        signal(c.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts dockerd again (after [`Dockerd::kill`] or [`Dockerd::stop`]) and waits until it
    /// answers. A dockerd killed with running containers restarts its containerd, which
    /// first reconnects to the containers' shims; on a loaded machine that can take longer
    /// than dockerd waits for it (15 s), and dockerd exits: it is started again then, as
    /// systemd would.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..3 {
            self.spawn();
            match self.try_ready() {
                Ok(()) => return,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    /// Pids of processes whose command line names this dockerd's exec root: the container
    /// shims (and their containers' init) it started, which outlive a killed dockerd.
    fn leftovers(&self) -> Vec<u32> {
        let root = self.exec_root().to_string_lossy().into_owned();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&root))
                    .unwrap_or(false)
            })
            .collect()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.docker(&["ps", "-aq"]).stdout;
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        self.stop();
        for pid in self.leftovers() {
            signal(pid, "KILL");
        }
    }
}

/// Sends signal `sig` (`TERM`, `KILL`) to `pid`: a process this harness started, directly or
/// through its dockerd.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A [`Cluster`] whose agents serve the Docker plugin, with a dockerd on each host using it.
#[derive(Debug)]
pub struct DockerCluster {
    /// Each host's dockerd, `host1`'s first (dropped before the cluster: dockerd gives its
    /// endpoints back to the agents as it stops).
    pub docker: Vec<Dockerd>,
    /// The cluster.
    pub c: Cluster,
}

impl DockerCluster {
    /// `n` hosts with agents serving the plugin and dockerds using it (the hosts in
    /// `iptables` get a dockerd with Docker's firewall on), the test image imported on each.
    pub fn start(n: u8, iptables: &[usize]) -> DockerCluster {
        let mut c = Cluster::bed(n);
        for h in 1..=usize::from(n) {
            let plugin = Self::plugin_path(&c, h);
            let dockerd = format!(
                "unix://{}",
                Self::dockerd_dir(&c, h).join("docker.sock").display()
            );
            c.set_agent_args(
                h,
                &[
                    "--docker-plugin",
                    &plugin.to_string_lossy(),
                    "--docker-host",
                    &dockerd,
                ],
            );
            c.start_agent(h);
        }
        for h in 1..=usize::from(n) {
            c.wait_agent_ready(h);
        }
        let mut docker = Vec::new();
        for h in 1..=usize::from(n) {
            let ns = c.host(h).ns.clone();
            let d = Dockerd::start(
                &Self::dockerd_dir(&c, h),
                &ns,
                &Self::plugin_path(&c, h),
                iptables.contains(&h),
            );
            d.import_busybox();
            docker.push(d);
        }
        DockerCluster { docker, c }
    }

    fn dockerd_dir(c: &Cluster, h: usize) -> PathBuf {
        c.tb.dir().join(format!("dockerd{h}"))
    }

    fn plugin_path(c: &Cluster, h: usize) -> PathBuf {
        c.tb.dir()
            .join(format!("plugins{h}"))
            .join(format!("{PLUGIN}.sock"))
    }

    /// Host `h`'s plugin socket.
    pub fn plugin(&self, h: usize) -> PathBuf {
        Self::plugin_path(&self.c, h)
    }

    /// Host `h`'s dockerd (1-based).
    pub fn d(&self, h: usize) -> &Dockerd {
        &self.docker[h - 1]
    }

    /// Host `h`'s dockerd, to stop or restart it.
    pub fn d_mut(&mut self, h: usize) -> &mut Dockerd {
        &mut self.docker[h - 1]
    }

    /// Waits until `ping -c 1` from container `name` on host `h` to `to` is answered.
    pub fn wait_container_ping(&self, h: usize, name: &str, to: &str, timeout: Duration) {
        wait_until(&format!("{name} on host{h} to reach {to}"), timeout, || {
            let out = self
                .d(h)
                .docker(&["exec", name, "ping", "-c", "1", "-W", "1", to]);
            if out.code == Some(0) {
                Ok(())
            } else {
                Err(format!("{}{}", out.stdout, out.stderr))
            }
        });
    }
}
