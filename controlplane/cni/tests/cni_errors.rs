//! The binary as a runtime runs it, where no agent is needed: VERSION, and every way an
//! invocation can be wrong (environment, JSON, configuration, version), plus an agent that is
//! not there. Each gives exit 1 and the error result with the specification's code and a
//! message that says what is wrong. (Errors that need an agent to be found are in
//! `cni_story.rs` and `cni_gc_status.rs`.)

mod common;

use std::os::unix::net::UnixListener;
use std::path::Path;

use common::{exec, plugin_binary, Run};
use ovnet_testbed::Testbed;
use serde_json::{json, Value};

fn conf(version: &str) -> Value {
    json!({"cniVersion": version, "name": "pods", "type": "ovnet-cni", "network": "pods",
           "agent": "/nonexistent/ovnet-cni-test.sock"})
}

/// Runs the plugin here with `env` and `stdin`.
fn run(env: &[(&str, &str)], stdin: &[u8]) -> Run {
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    exec(None, &plugin_binary(), &env, stdin)
}

/// A full ADD environment for namespace path `netns`.
fn add_env(netns: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
}

/// A namespace path for the errors found before the namespace is looked at.
const UNUSED_NS: &str = "/var/run/netns/ovnet-cni-unused";

fn code(r: &Run) -> u64 {
    r.err_code().0
}

fn msg(r: &Run) -> String {
    r.err_code().1
}

#[test]
fn version_lists_what_the_plugin_speaks() {
    for stdin in [&b""[..], br#"{"cniVersion":"1.0.0"}"#] {
        let v = run(&[("CNI_COMMAND", "VERSION")], stdin).ok_json();
        assert_eq!(
            v["supportedVersions"],
            json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
        );
        let want = if stdin.is_empty() { "1.1.0" } else { "1.0.0" };
        assert_eq!(v["cniVersion"], want);
    }
}

#[test]
fn missing_or_invalid_environment_is_code_4_naming_the_variables() {
    let c = conf("1.1.0").to_string();
    let c = c.as_bytes();
    let r = run(&[], c);
    assert_eq!(
        (code(&r), msg(&r)),
        (
            4,
            "required environment variable CNI_COMMAND is missing".into()
        )
    );
    let r = run(&[("CNI_COMMAND", "ATTACH")], c);
    assert_eq!(code(&r), 4);
    assert!(msg(&r).contains("ATTACH"), "{r:?}");
    let r = run(&[("CNI_COMMAND", "ADD")], c);
    assert_eq!(code(&r), 4);
    assert_eq!(
        msg(&r),
        "required environment variables CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME missing for ADD"
    );
    let r = run(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c1")], c);
    assert_eq!(
        msg(&r),
        "required environment variable CNI_IFNAME missing for DEL"
    );
    let mut env = add_env("/var/run/netns/x");
    env[3] = ("CNI_IFNAME", "eth0:1");
    let r = run(&env, c);
    assert_eq!(code(&r), 4);
    assert!(msg(&r).contains("CNI_IFNAME \"eth0:1\""), "{r:?}");
    let mut env = add_env("/var/run/netns/x");
    env.push(("CNI_ARGS", "K8S_POD_NAME"));
    let r = run(&env, c);
    assert_eq!(code(&r), 4);
    assert!(msg(&r).contains("CNI_ARGS"), "{r:?}");
    // A namespace that is not there, a file that is not a namespace, the runtime's own.
    let r = run(&add_env("/var/run/netns/ovnet-cni-no-such-ns"), c);
    assert_eq!(code(&r), 4);
    assert!(msg(&r).starts_with("invalid CNI_NETNS"), "{r:?}");
    let r = run(&add_env("/proc/self/ns/net"), c);
    assert_eq!(code(&r), 4);
    assert!(
        msg(&r).contains("the runtime's own network namespace"),
        "{r:?}"
    );
}

#[test]
fn bad_json_is_code_6_and_bad_configuration_code_7_2_or_1() {
    let env = add_env(UNUSED_NS);
    for bad in [&b"{not json"[..], b"", b"[1,2]", br#"{"name": 5}"#] {
        let r = run(&env, bad);
        assert_eq!(code(&r), 6, "{r:?}");
        assert!(msg(&r).contains("not valid JSON"), "{r:?}");
    }
    let big = vec![b' '; 2 << 20];
    let r = run(&env, &big);
    assert_eq!(code(&r), 6, "{r:?}");
    assert!(msg(&r).contains("larger than"), "{r:?}");

    let without = |key: &str| {
        let mut c = conf("1.1.0");
        c.as_object_mut().unwrap().remove(key);
        c.to_string()
    };
    let r = run(&env, without("network").as_bytes());
    assert_eq!(code(&r), 7);
    assert!(msg(&r).contains("no \"network\""), "{r:?}");
    let r = run(&env, without("name").as_bytes());
    assert_eq!(code(&r), 7);

    let mut typo = conf("1.1.0");
    typo["netwrok"] = json!("pods");
    let r = run(&env, typo.to_string().as_bytes());
    assert_eq!(code(&r), 2);
    assert!(msg(&r).contains("\"netwrok\" = \"pods\""), "{r:?}");
    let mut ipam = conf("1.1.0");
    ipam["ipam"] = json!({"type": "host-local"});
    let r = run(&env, ipam.to_string().as_bytes());
    assert_eq!(code(&r), 2);

    for v in ["0.2.0", "2.0.0", "banana"] {
        let r = run(&env, conf(v).to_string().as_bytes());
        assert_eq!(code(&r), 1, "{r:?}");
        assert!(
            msg(&r).contains(&format!("{v:?} is not supported")),
            "{r:?}"
        );
        // An error answers in the latest version when the input's is not one it speaks.
        assert_eq!(r.err()["cniVersion"], "1.1.0");
    }
    // GC and STATUS exist from 1.1.0, CHECK from 0.4.0.
    for cmd in ["GC", "STATUS"] {
        let r = run(
            &[("CNI_COMMAND", cmd)],
            conf("1.0.0").to_string().as_bytes(),
        );
        assert_eq!(code(&r), 1, "{r:?}");
        assert_eq!(r.err()["cniVersion"], "1.0.0");
    }
    let mut check = add_env(UNUSED_NS);
    check[0] = ("CNI_COMMAND", "CHECK");
    let r = run(&check, conf("0.3.1").to_string().as_bytes());
    assert_eq!(code(&r), 1, "{r:?}");
    let r = run(&check, conf("1.1.0").to_string().as_bytes());
    assert_eq!(code(&r), 7, "{r:?}");
    assert!(msg(&r).contains("prevResult"), "{r:?}");
}

#[test]
fn an_agent_that_is_not_there_is_try_again_later() {
    // A real container namespace, so that ADD gets as far as calling the agent.
    let mut tb = Testbed::new().expect("test bed (needs root and iproute2)");
    let ns = tb.add_netns("pod").expect("namespace");
    let netns = ovnet_testbed::ns_path(&ns).to_string_lossy().into_owned();
    // A socket nobody serves any more (an agent killed), and one that was never there.
    let stale = tb.dir().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    for sock in [stale.as_path(), Path::new("/nonexistent/agent.sock")] {
        let mut c = conf("1.1.0");
        c["agent"] = json!(sock);
        let c = c.to_string();
        for cmd in ["ADD", "DEL", "GC"] {
            let mut env = add_env(&netns);
            env[0] = ("CNI_COMMAND", cmd);
            let r = run(&env, c.as_bytes());
            assert_eq!(code(&r), 11, "{cmd} {r:?}");
            assert!(
                msg(&r).starts_with(&format!(
                    "cannot reach the ovnet agent at {}",
                    sock.display()
                )),
                "{r:?}"
            );
            assert!(
                !r.err()["details"].as_str().unwrap_or("").is_empty(),
                "{r:?}"
            );
        }
        let r = run(&[("CNI_COMMAND", "STATUS")], c.as_bytes());
        assert_eq!(code(&r), 51, "{r:?}");
    }
    // Nothing was made in the namespace.
    let links = tb.exec(&ns, &["ip", "-o", "link", "show"]).unwrap();
    assert_eq!(links.lines().count(), 1, "only lo: {links}");
}
