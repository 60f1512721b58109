//! What the CNI tests share: a CNI runtime of their own ([`Runtime`]) that runs plugins exactly
//! as a runtime does (looked up by `type` in `CNI_PATH`, run in the host's network namespace,
//! the environment set and nothing else, the configuration on stdin, a result or error read
//! from stdout), and chains a configuration list the way libcni does (ADD in order with
//! `prevResult`, DEL in reverse with the final result, CHECK in order).

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ovnet_cluster::Cluster;
use serde_json::{json, Map, Value};

/// Debian's containernetworking-plugins put their binaries here.
pub const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";

/// The plugin under test, as cargo built it.
pub fn plugin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ovnet-cni"))
}

/// The configuration list shipped in `deploy/cni/`.
pub fn shipped_conflist() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/cni/10-ovnet.conflist");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// One plugin run: exit code and stdout.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
    /// What was run, for messages.
    pub what: String,
}

impl Run {
    /// The result printed by a successful ADD or VERSION.
    pub fn ok_json(&self) -> Value {
        assert_eq!(self.code, Some(0), "{} failed: {self:?}", self.what);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {self:?}", self.what))
    }

    /// Asserts a success with nothing on stdout (DEL, CHECK, GC, STATUS).
    pub fn ok_empty(&self) {
        assert_eq!(self.code, Some(0), "{} failed: {self:?}", self.what);
        assert_eq!(self.stdout.trim(), "", "{}: want no output", self.what);
    }

    /// The error result of a failed run, after asserting exit 1 and the four keys.
    pub fn err(&self) -> Value {
        assert_eq!(self.code, Some(1), "{} should fail: {self:?}", self.what);
        let v: Value = serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("{}: error is not JSON ({e}): {self:?}", self.what));
        assert!(v["cniVersion"].is_string(), "{}: {v}", self.what);
        assert!(v["code"].is_u64(), "{}: {v}", self.what);
        let msg = v["msg"].as_str().unwrap_or_default();
        assert!(!msg.is_empty(), "{}: want a msg: {v}", self.what);
        v
    }

    /// The error's code and message, after [`Run::err`]'s checks.
    pub fn err_code(&self) -> (u64, String) {
        let v = self.err();
        (
            v["code"].as_u64().unwrap(),
            v["msg"].as_str().unwrap().to_owned(),
        )
    }
}

/// Runs `bin` with exactly `env` (plus a `PATH`) and `stdin`, inside namespace `ns` (the
/// runtime's, i.e. a host's) or here.
pub fn exec(ns: Option<&str>, bin: &Path, env: &[(&str, String)], stdin: &[u8]) -> Run {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ovnet_testbed::ns_path(ns).display()))
                .arg("--")
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = format!(
        "{} {}",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        bin.display()
    );
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut pipe = child.stdin.take().expect("stdin");
    // A plugin may exit before reading all of stdin (a bad environment): ignore EPIPE.
    let _ = pipe.write_all(stdin);
    drop(pipe);
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait {what}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}

/// An attachment's parameters.
#[derive(Debug, Clone)]
pub struct Attach {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`, a path.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: String,
}

impl Attach {
    /// `eth0` of namespace `ns` (a test bed name) for container `container_id`.
    pub fn new(container_id: &str, ns: &str) -> Attach {
        Attach {
            container_id: container_id.to_owned(),
            netns: ovnet_testbed::ns_path(ns).to_string_lossy().into_owned(),
            ifname: "eth0".to_owned(),
            args: String::new(),
        }
    }

    /// The same with `CNI_ARGS`.
    pub fn args(mut self, args: &str) -> Attach {
        self.args = args.to_owned();
        self
    }

    fn env(&self, command: &str, cni_path: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", self.container_id.clone()),
            ("CNI_NETNS", self.netns.clone()),
            ("CNI_IFNAME", self.ifname.clone()),
            ("CNI_ARGS", self.args.clone()),
            ("CNI_PATH", cni_path.to_owned()),
        ]
    }
}

/// A container runtime on one host of a cluster.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The host's namespace, where the plugins run.
    pub ns: String,
    /// `CNI_PATH`: the directory of the plugin under test, then Debian's.
    pub cni_path: String,
    /// The capability arguments this runtime passes (e.g. `portMappings`).
    pub capability_args: Map<String, Value>,
}

impl Runtime {
    /// The runtime of host `h`.
    pub fn on(c: &Cluster, h: usize) -> Runtime {
        let dir = plugin_binary()
            .parent()
            .expect("a directory")
            .to_string_lossy()
            .into_owned();
        Runtime {
            ns: c.host(h).ns.clone(),
            cni_path: format!("{dir}:{DEBIAN_CNI_DIR}"),
            capability_args: Map::new(),
        }
    }

    /// The plugin binary of `type`, looked up in `CNI_PATH` as a runtime does.
    pub fn find(&self, kind: &str) -> PathBuf {
        self.cni_path
            .split(':')
            .map(|d| Path::new(d).join(kind))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("plugin {kind:?} not found in CNI_PATH {}", self.cni_path))
    }

    /// Runs plugin `conf` (one plugin's configuration, already derived) for `command`.
    pub fn run_plugin(&self, command: &str, a: &Attach, conf: &Value) -> Run {
        let kind = conf["type"].as_str().expect("a type");
        exec(
            Some(&self.ns),
            &self.find(kind),
            &a.env(command, &self.cni_path),
            conf.to_string().as_bytes(),
        )
    }

    /// Runs a command that is not about one attachment (GC, STATUS).
    pub fn run_network(&self, command: &str, conf: &Value) -> Run {
        let kind = conf["type"].as_str().expect("a type");
        exec(
            Some(&self.ns),
            &self.find(kind),
            &[
                ("CNI_COMMAND", command.to_owned()),
                ("CNI_PATH", self.cni_path.clone()),
            ],
            conf.to_string().as_bytes(),
        )
    }

    /// The request configuration of plugin `i` of `list` (SPEC.md section 3): the plugin's
    /// keys, `cniVersion` and `name` from the list, `runtimeConfig` from the capabilities it
    /// declares and this runtime provides, `prevResult` if given; `capabilities` removed.
    pub fn derive(&self, list: &Value, i: usize, prev: Option<&Value>) -> Value {
        let mut conf = list["plugins"][i].clone();
        let obj = conf.as_object_mut().expect("a plugin object");
        obj.insert("cniVersion".into(), list["cniVersion"].clone());
        obj.insert("name".into(), list["name"].clone());
        if let Some(caps) = obj.remove("capabilities") {
            let mut rc = Map::new();
            for (k, on) in caps.as_object().into_iter().flatten() {
                if on == &json!(true) {
                    if let Some(v) = self.capability_args.get(k) {
                        rc.insert(k.clone(), v.clone());
                    }
                }
            }
            if !rc.is_empty() {
                obj.insert("runtimeConfig".into(), Value::Object(rc));
            }
        }
        if let Some(p) = prev {
            obj.insert("prevResult".into(), p.clone());
        }
        conf
    }

    /// ADD of a configuration list: each plugin in order, each given the previous result.
    /// Returns the final result, or the failed run.
    pub fn add_list(&self, list: &Value, a: &Attach) -> Result<Value, Run> {
        let mut prev: Option<Value> = None;
        for i in 0..plugins(list) {
            let run = self.run_plugin("ADD", a, &self.derive(list, i, prev.as_ref()));
            if run.code != Some(0) {
                return Err(run);
            }
            prev = Some(run.ok_json());
        }
        Ok(prev.expect("at least one plugin"))
    }

    /// DEL of a configuration list: each plugin in reverse order, given the final ADD result.
    pub fn del_list(&self, list: &Value, a: &Attach, result: Option<&Value>) -> Result<(), Run> {
        for i in (0..plugins(list)).rev() {
            let run = self.run_plugin("DEL", a, &self.derive(list, i, result));
            if run.code != Some(0) {
                return Err(run);
            }
        }
        Ok(())
    }

    /// CHECK of a configuration list: each plugin in order, given the final ADD result;
    /// nothing at all when the list says `disableCheck`.
    pub fn check_list(&self, list: &Value, a: &Attach, result: &Value) -> Result<(), Run> {
        if list["disableCheck"] == json!(true) {
            return Ok(());
        }
        for i in 0..plugins(list) {
            let run = self.run_plugin("CHECK", a, &self.derive(list, i, Some(result)));
            if run.code != Some(0) {
                return Err(run);
            }
        }
        Ok(())
    }
}

fn plugins(list: &Value) -> usize {
    list["plugins"].as_array().expect("plugins").len()
}

/// A list with the ovnet plugin alone, at protocol version `version`, for network `network`
/// and the agent of host `h`.
pub fn ovnet_list(c: &Cluster, h: usize, version: &str, network: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": "ovnet",
        "plugins": [{
            "type": "ovnet-cni",
            "network": network,
            "agent": c.sock(h).to_string_lossy(),
        }]
    })
}

/// The one plugin configuration of [`ovnet_list`], derived (for GC and STATUS, and for runs
/// with a hand-made configuration).
pub fn ovnet_conf(c: &Cluster, h: usize, version: &str, network: &str) -> Value {
    let list = ovnet_list(c, h, version, network);
    let rt = Runtime::on(c, h);
    rt.derive(&list, 0, None)
}

/// `/etc/netns/NS/resolv.conf` with the name servers of an ADD result, as a runtime writes the
/// container's resolv.conf from `dns`; `ip netns exec NS` reads it there. Removed on drop.
#[derive(Debug)]
pub struct ResolvConf {
    dir: PathBuf,
}

impl ResolvConf {
    /// Writes it for namespace `ns` (a test bed name) from `result["dns"]`.
    pub fn from_result(ns: &str, result: &Value) -> ResolvConf {
        let servers: Vec<&str> = result["dns"]["nameservers"]
            .as_array()
            .unwrap_or_else(|| panic!("no dns.nameservers in {result}"))
            .iter()
            .map(|s| s.as_str().expect("a name server"))
            .collect();
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NS");
        let text: String = servers
            .iter()
            .map(|s| format!("nameserver {s}\n"))
            .collect();
        std::fs::write(dir.join("resolv.conf"), text).expect("write resolv.conf");
        ResolvConf { dir }
    }
}

impl Drop for ResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
