//! End to end, etcd security and node identity: real agents against Debian's etcd with TLS
//! client-certificate authentication (certificates made here with rcgen), and with users, a
//! role limited to the agents' prefix and `auth enable`; a second host claiming a live
//! host's name, the same host restarting, and a dead host's name taken with
//! `--replace-node`. Each test builds its own cluster ([`ovnet_cluster`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ovnet_cluster::{wait_until, Cluster, EtcdOptions, EtcdTls, PREFIX};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// How long a refused agent may take to say so and exit: "within seconds".
const REFUSED_WITHIN: Duration = Duration::from_secs(20);

/// A CA that signs certificates into PEM files in a directory.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ovnet test {name}"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// A certificate for `sans` (server and client use), as (cert, key) files.
    fn issue(&self, file: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Starts host `h`'s agent with `args` and waits for it to be refused: a non-zero exit
/// within seconds, with an error line containing `want`. Returns that line.
fn refused(c: &mut Cluster, h: usize, args: &[&str], want: &str) -> String {
    c.set_agent_args(h, args);
    c.start_agent(h);
    let (code, log) = c.wait_agent_exit(h, REFUSED_WITHIN);
    assert!(
        code.is_some_and(|c| c != 0),
        "want a non-zero exit, got {code:?}:\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.starts_with("ovnet-agent: error: "))
        .unwrap_or_else(|| panic!("no error line:\n{log}"))
        .to_owned();
    assert!(line.contains(want), "want {want:?} in {line:?}");
    line
}

/// etcd with TLS and client-certificate authentication: a wrong CA, a missing client
/// certificate and a certificate from another CA each stop the agent at once with a message
/// that says which; the right files let two agents build a network and talk over it.
#[test]
fn etcd_with_tls_client_certificates() {
    let certs = tempfile::tempdir().unwrap();
    let ca = Ca::new(certs.path(), "ca");
    let other = Ca::new(certs.path(), "other-ca");
    let (server, server_key) = ca.issue("etcd", &["192.168.50.254", "127.0.0.1"]);
    let (client, client_key) = ca.issue("agent", &["agent"]);
    let (rogue, rogue_key) = other.issue("rogue", &["rogue"]);
    let tls = EtcdTls {
        ca: ca.pem(),
        cert: server,
        key: server_key,
        client_cert_auth: true,
    };
    let mut c = Cluster::bed_with(
        2,
        EtcdOptions {
            three: false,
            tls: Some(tls),
        },
    );
    let (ca_s, other_s) = (s(&ca.pem()), s(&other.pem()));
    let (client_s, client_key_s) = (s(&client), s(&client_key));
    let (rogue_s, rogue_key_s) = (s(&rogue), s(&rogue_key));

    let line = refused(
        &mut c,
        1,
        &[
            "--etcd-cafile",
            &other_s,
            "--etcd-certfile",
            &client_s,
            "--etcd-keyfile",
            &client_key_s,
        ],
        "not signed by the CA of --etcd-cafile",
    );
    eprintln!("wrong CA: {line}");
    let line = refused(
        &mut c,
        1,
        &["--etcd-cafile", &ca_s],
        "requires a client certificate: pass --etcd-certfile and --etcd-keyfile",
    );
    eprintln!("no client certificate: {line}");
    let line = refused(
        &mut c,
        1,
        &[
            "--etcd-cafile",
            &ca_s,
            "--etcd-certfile",
            &rogue_s,
            "--etcd-keyfile",
            &rogue_key_s,
        ],
        "refused our client certificate",
    );
    eprintln!("certificate of another CA: {line}");
    refused(
        &mut c,
        1,
        &["--etcd-cafile", "/nonexistent/ca.pem"],
        "reading --etcd-cafile /nonexistent/ca.pem",
    );

    let good = [
        "--etcd-cafile",
        &ca_s,
        "--etcd-certfile",
        &client_s,
        "--etcd-keyfile",
        &client_key_s,
    ];
    for h in [1, 2] {
        c.set_agent_args(h, &good);
        c.start_agent(h);
    }
    for h in [1, 2] {
        c.wait_agent_ready(h);
    }
    c.create(1, "demo", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    c.wait_ping(&a, "10.0.0.3", Duration::from_secs(20));
    c.assert_ping(&b, "10.0.0.2");
    assert!(c
        .etcdctl(&["get", PREFIX, "--prefix", "--keys-only"])
        .contains("/ovnet/networks/demo"));
}

/// etcd with users and `auth enable`: a wrong password, no user, and a user whose role may
/// not touch the prefix each stop the agent with a message that says which; the right user,
/// its password given in the environment (not on the command line), works.
#[test]
fn etcd_with_users_and_a_role_limited_to_the_prefix() {
    let mut c = Cluster::bed(2);
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["user", "add", "ovnet:s3cret"],
        &["user", "add", "stranger:pw"],
        &["role", "add", "ovnet"],
        &[
            "role",
            "grant-permission",
            "ovnet",
            "readwrite",
            PREFIX,
            "--prefix",
        ],
        &["user", "grant-role", "ovnet", "ovnet"],
        &["role", "add", "other"],
        &[
            "role",
            "grant-permission",
            "other",
            "readwrite",
            "/other/",
            "--prefix",
        ],
        &["user", "grant-role", "stranger", "other"],
        &["user", "add", "reader:pw"],
        &["role", "add", "reader"],
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            PREFIX,
            "--prefix",
        ],
        &["user", "grant-role", "reader", "reader"],
        &["auth", "enable"],
    ] {
        c.etcdctl(args);
    }
    c.set_etcdctl_user("root:rootpw");

    let line = refused(
        &mut c,
        1,
        &["--etcd-username", "ovnet", "--etcd-password", "wrong"],
        "refused user \"ovnet\": wrong --etcd-username or --etcd-password",
    );
    eprintln!("wrong password: {line}");
    let line = refused(&mut c, 1, &[], "requires a user: pass --etcd-username");
    eprintln!("no user: {line}");
    let line = refused(
        &mut c,
        1,
        &["--etcd-username", "stranger", "--etcd-password", "pw"],
        "may not read the keys under /ovnet/",
    );
    eprintln!("no permission: {line}");
    let line = refused(
        &mut c,
        1,
        &["--etcd-username", "reader", "--etcd-password", "pw"],
        "may not write the keys under /ovnet/",
    );
    eprintln!("read only: {line}");
    refused(
        &mut c,
        1,
        &["--etcd-username", "ovnet"],
        "--etcd-username needs a password",
    );

    for h in [1, 2] {
        c.set_agent_args(h, &["--etcd-username", "ovnet"]);
        c.set_agent_env(h, &[("OVNET_ETCD_PASSWORD", "s3cret")]);
        c.start_agent(h);
    }
    for h in [1, 2] {
        c.wait_agent_ready(h);
    }
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", c.agent(1))).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("s3cret"),
        "the password shows in ps"
    );
    c.create(1, "demo", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    c.wait_ping(&a, "10.0.0.3", Duration::from_secs(20));
}

/// The node id kept in host `h`'s state directory.
fn node_id(c: &Cluster, h: usize) -> String {
    std::fs::read_to_string(c.state_dir(h).join("node-id"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A node name is claimed by a host: another host starting with a live host's name is
/// refused and changes nothing; the same host restarting (after SIGKILL) gets it back and
/// keeps its container; a dead host's name is taken only with `--replace-node`, which
/// releases the old host's endpoints.
#[test]
fn a_node_name_belongs_to_one_host() {
    let mut c = Cluster::start(3);
    c.create(1, "demo", &[]);
    let (a, b) = (c.netns("a"), c.netns("b"));
    c.connect(1, "demo", "a", &a);
    c.connect(2, "demo", "b", &b);
    c.assert_ping(&b, "10.0.0.2");
    let id1 = node_id(&c, 1);
    let record = |c: &Cluster| c.etcdctl(&["get", "/ovnet/nodes/host1", "--print-value-only"]);
    let before = record(&c);
    assert!(before.contains(&id1), "the record names host1's node id");

    // Host 3 claims host1's name while host 1 runs.
    c.stop_agent(3);
    let line = refused(
        &mut c,
        3,
        &["--node", "host1"],
        "node name host1 is held by a running agent on another host",
    );
    assert!(
        line.contains(&id1) && line.contains("192.168.50.1:4789"),
        "{line}"
    );
    assert_eq!(
        record(&c),
        before,
        "the refused agent changed host1's record"
    );
    assert_eq!(c.alive(2, "host1"), Some(true));
    c.assert_ping(&b, "10.0.0.2");

    // Host 1 crashes and comes back: recognised, its container adopted.
    c.kill_agent(1);
    c.set_agent_args(1, &[]);
    c.start_agent(1);
    c.wait_agent_ready(1);
    assert_eq!(node_id(&c, 1), id1);
    let log = c.agent_log(1);
    assert!(
        !log.contains("vanished"),
        "host1 released its own container:\n{log}"
    );
    c.wait_ping(&b, "10.0.0.2", Duration::from_secs(20));

    // Host 1's agent stops for good; host 3 may take the name only when told to.
    c.stop_agent(1);
    wait_until("host1 to be down", Duration::from_secs(20), || {
        match c.alive(2, "host1") {
            Some(false) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let line = refused(&mut c, 3, &["--node", "host1"], "pass --replace-node");
    eprintln!("dead holder: {line}");
    assert_eq!(
        c.etcd_keys("/ovnet/endpoints/").len(),
        2,
        "a refused agent released endpoints"
    );
    c.set_agent_args(3, &["--node", "host1", "--replace-node"]);
    c.start_agent(3);
    // The name is host1's, so the harness's readiness check (node host3) does not apply.
    wait_until(
        "host3 to hold host1's name",
        Duration::from_secs(30),
        || {
            let r = record(&c);
            if r.contains(&node_id(&c, 3)) {
                Ok(())
            } else {
                Err(r)
            }
        },
    );
    wait_until(
        "host1's old container to be released",
        Duration::from_secs(30),
        || {
            let keys = c.etcd_keys("/ovnet/endpoints/");
            if keys.len() == 1 {
                Ok(())
            } else {
                Err(format!("{keys:?}"))
            }
        },
    );
    // A second agent on host 3 with the same state directory would be the same node: refused.
    refused(
        &mut c,
        3,
        &["--node", "host1"],
        "another ovnet-agent runs with the state directory",
    );
}
