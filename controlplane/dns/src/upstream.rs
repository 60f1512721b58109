//! Where forwarded queries go: the upstream resolvers, as `IP[:PORT]` strings from the caller
//! (the agent's `--dns-upstream`, repeatable) or, by default, the `nameserver` lines of the
//! host's `/etc/resolv.conf` (parsed with the `resolv-conf` crate).
//!
//! Loopback nameservers (systemd-resolved's 127.0.0.53, a local dnsmasq) are kept: the resolver
//! forwards from the host's own network namespace, where they are reachable. A resolver never
//! forwards to its own listening address ([`without_self`]).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::Error;

/// The DNS port (RFC 1035 section 4.2), for upstreams given without one.
pub const DNS_PORT: u16 = 53;

/// The host's resolver configuration, read for the default upstreams.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Parses one upstream: `IP` (port 53), `IPv4:PORT` or `[IPv6]:PORT`.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, Error> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DNS_PORT));
    }
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(Error::BadUpstream(s.to_string())),
    }
}

/// Parses every upstream of a repeatable option, in order.
pub fn parse_upstreams<S: AsRef<str>>(items: &[S]) -> Result<Vec<SocketAddr>, Error> {
    items.iter().map(|s| parse_upstream(s.as_ref())).collect()
}

/// The `nameserver` addresses of resolv.conf text `text`, port 53 each, in file order. A file
/// without any is, as for glibc, 127.0.0.1 and ::1.
pub fn upstreams_from_resolv_conf(text: &[u8]) -> Result<Vec<SocketAddr>, Error> {
    let conf = resolv_conf::Config::parse(text).map_err(|e| Error::ResolvConf(e.to_string()))?;
    Ok(conf
        .get_nameservers_or_local()
        .into_iter()
        .map(|ip| SocketAddr::new(IpAddr::from(ip), DNS_PORT))
        .collect())
}

/// The default upstreams: the nameservers of the host's [`HOST_RESOLV_CONF`].
pub fn host_upstreams() -> Result<Vec<SocketAddr>, Error> {
    upstreams_from_file(Path::new(HOST_RESOLV_CONF))
}

/// The nameservers of the resolv.conf at `path`.
pub fn upstreams_from_file(path: &Path) -> Result<Vec<SocketAddr>, Error> {
    let text = std::fs::read(path).map_err(|source| Error::ReadResolvConf {
        path: path.to_path_buf(),
        source,
    })?;
    upstreams_from_resolv_conf(&text).map_err(|e| match e {
        Error::ResolvConf(msg) => Error::ResolvConf(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// `upstreams` without `me` (the resolver's own address: forwarding to it would loop) and
/// without repeats, in order.
pub fn without_self(upstreams: &[SocketAddr], me: SocketAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(upstreams.len());
    for u in upstreams {
        if *u != me && !out.contains(u) {
            out.push(*u);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ip_and_ip_port() {
        assert_eq!(parse_upstream("192.0.2.1").unwrap(), sa("192.0.2.1:53"));
        assert_eq!(
            parse_upstream(" 192.0.2.1:5353 ").unwrap(),
            sa("192.0.2.1:5353")
        );
        assert_eq!(
            parse_upstream("2001:db8::1").unwrap(),
            sa("[2001:db8::1]:53")
        );
        assert_eq!(
            parse_upstream("[2001:db8::1]:54").unwrap(),
            sa("[2001:db8::1]:54")
        );
        for bad in ["", "dns.example", "192.0.2.1:0", "192.0.2.1:99999", "1.2.3"] {
            let e = parse_upstream(bad).unwrap_err().to_string();
            assert!(e.contains("IP[:PORT]"), "{bad}: {e}");
        }
        let all = parse_upstreams(&["192.0.2.1", "192.0.2.2:54"]).unwrap();
        assert_eq!(all, vec![sa("192.0.2.1:53"), sa("192.0.2.2:54")]);
    }

    #[test]
    fn reads_resolv_conf() {
        let text = b"# generated\nsearch example.com\nnameserver 192.0.2.53\nnameserver 127.0.0.53\noptions edns0\nnameserver fe80::1%eth0\n";
        let ups = upstreams_from_resolv_conf(text).unwrap();
        assert_eq!(ups[..2], [sa("192.0.2.53:53"), sa("127.0.0.53:53")]);
        assert_eq!(ups.len(), 3);
        let none = upstreams_from_resolv_conf(b"search example.com\n").unwrap();
        assert_eq!(none, vec![sa("127.0.0.1:53"), sa("[::1]:53")]);
        assert!(upstreams_from_resolv_conf(b"nameserver not-an-ip\n").is_err());
    }

    #[test]
    fn reads_a_file_and_names_it_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 198.51.100.7\n").unwrap();
        assert_eq!(
            upstreams_from_file(&path).unwrap(),
            vec![sa("198.51.100.7:53")]
        );
        let missing = dir.path().join("missing");
        let e = upstreams_from_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn drops_self_and_repeats() {
        let me = sa("10.0.0.1:53");
        let ups = [
            sa("10.0.0.1:53"),
            sa("10.0.0.1:5353"),
            sa("192.0.2.1:53"),
            sa("192.0.2.1:53"),
        ];
        assert_eq!(
            without_self(&ups, me),
            vec![sa("10.0.0.1:5353"), sa("192.0.2.1:53")]
        );
    }
}
