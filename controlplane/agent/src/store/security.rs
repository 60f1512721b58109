//! etcd security: TLS (a CA to check etcd's certificate by, a client certificate to show it)
//! and etcd's own users, with flannel's flag names (`--etcd-cafile`, `--etcd-certfile`,
//! `--etcd-keyfile`, `--etcd-username`, `--etcd-password`); turned into the client's options
//! here, and each way etcd can refuse them turned into an [`AccessError`] that says which
//! part is wrong ([`access_error`]).
//!
//! TLS is used with `https://` URLs, all of them or none; etcd's certificate is checked against
//! `--etcd-cafile` (the host's own trust store is not read: without the flag no certificate is
//! trusted). An `http://` URL beside certificate flags is refused, so that a typo cannot turn
//! TLS off silently.

use std::path::{Path, PathBuf};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};

use crate::error::AccessError;

/// How the agent proves itself to etcd, and how it checks etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdSecurity {
    /// PEM file of the CA that signed etcd's certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this agent's client certificate.
    pub cert_file: Option<PathBuf>,
    /// PEM file of that certificate's private key.
    pub key_file: Option<PathBuf>,
    /// etcd user to log in as.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, AccessError> {
    std::fs::read(path).map_err(|e| AccessError::File {
        flag,
        path: path.display().to_string(),
        cause: e.to_string(),
    })
}

impl EtcdSecurity {
    /// Whether any TLS flag is given.
    fn wants_tls(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// The user and password, if a user is configured.
    pub(crate) fn user(&self) -> Result<Option<(String, String)>, AccessError> {
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => Ok(Some((u.clone(), p.clone()))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(AccessError::UserWithoutPassword),
            (None, Some(_)) => Err(AccessError::PasswordWithoutUser),
        }
    }

    /// Adds TLS to `options` for `urls`: reads the files, checks that they go together and
    /// with the URLs' schemes.
    pub(crate) fn apply(
        &self,
        urls: &[String],
        mut options: ConnectOptions,
    ) -> Result<ConnectOptions, AccessError> {
        let https = urls.iter().filter(|u| u.starts_with("https://")).count();
        if self.wants_tls() {
            if let Some(plain) = urls.iter().find(|u| !u.starts_with("https://")) {
                return Err(AccessError::TlsOverPlain { url: plain.clone() });
            }
        } else if https == 0 {
            return Ok(options);
        }
        if https != urls.len() {
            let plain = urls.iter().find(|u| !u.starts_with("https://"));
            return Err(AccessError::TlsOverPlain {
                url: plain.cloned().unwrap_or_default(),
            });
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read("--etcd-cafile", ca)?));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let cert = read("--etcd-certfile", cert)?;
                let key = read("--etcd-keyfile", key)?;
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            (None, None) => {}
            _ => return Err(AccessError::CertWithoutKey),
        }
        options = options.with_tls(tls);
        Ok(options)
    }
}

/// The access problem an etcd error shows, if it is one: a TLS handshake that failed (etcd's
/// certificate is not trusted, ours is refused or missing, etcd does not speak TLS), a login
/// refused, a user without permission. `None` for everything else (etcd unreachable, a
/// refusal of the request itself).
pub(crate) fn access_error(
    e: &etcd_client::Error,
    url: &str,
    security: &EtcdSecurity,
) -> Option<AccessError> {
    let mut chain = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        chain.push_str(&c.to_string());
        chain.push_str(": ");
        cause = c.source();
    }
    let url = url.to_owned();
    let has = |s: &str| chain.contains(s);
    let user = security.username.clone().unwrap_or_default();
    if has("UnknownIssuer") || has("BadSignature") || has("unknown issuer") {
        return Some(AccessError::UntrustedServer {
            url,
            ca: security.ca_file.as_ref().map(|p| p.display().to_string()),
            cause: "signed by an unknown CA".to_owned(),
        });
    }
    if has("NotValidForName") || has("not valid for name") {
        return Some(AccessError::BadServerCertificate {
            url,
            cause: "not issued for this address".to_owned(),
        });
    }
    if has("Expired") || has("NotValidYet") {
        return Some(AccessError::BadServerCertificate {
            url,
            cause: "expired or not valid yet".to_owned(),
        });
    }
    if has("CertificateRequired") || has("BadCertificate") || has("UnknownCA") || has("alert") {
        return Some(client_refused(url, security));
    }
    if has("InvalidContentType") || has("corrupt message") || has("CorruptMessage") {
        return Some(AccessError::NotTls { url });
    }
    if has("authentication failed") || has("invalid user ID or password") {
        return Some(AccessError::LoginRefused { url, user });
    }
    if has("user name is empty") {
        return Some(AccessError::LoginRequired { url });
    }
    None
}

/// etcd refused the client certificate given, or wants one.
fn client_refused(url: String, security: &EtcdSecurity) -> AccessError {
    match &security.cert_file {
        Some(cert) => AccessError::ClientCertificateRefused {
            url,
            cert: cert.display().to_string(),
        },
        None => AccessError::ClientCertificateRequired { url },
    }
}

/// At the first contact over TLS, a connection that etcd closes right after the handshake:
/// with TLS 1.3 the client may see that instead of etcd's alert when etcd refuses (or wants)
/// a client certificate. (Later, the same is a member going away, and is not read so.)
pub(crate) fn refused_at_first_contact(
    e: &crate::error::AgentError,
    url: &str,
    security: &EtcdSecurity,
) -> Option<AccessError> {
    let tls = security.ca_file.is_some() || security.cert_file.is_some();
    let text = format!("{e:?}");
    let dropped = [
        "BrokenPipe",
        "broken pipe",
        "ConnectionReset",
        "connection reset",
        "connection closed",
    ]
    .iter()
    .any(|m| text.contains(m));
    (tls && dropped).then(|| client_refused(url.to_owned(), security))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_that_go_together() {
        let urls = |u: &[&str]| u.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let none = EtcdSecurity::default();
        assert!(none
            .apply(&urls(&["http://a:2379"]), ConnectOptions::new())
            .is_ok());
        let ca = EtcdSecurity {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = ca
            .apply(&urls(&["http://a:2379"]), ConnectOptions::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--etcd-cafile, --etcd-certfile and --etcd-keyfile need https:// etcd URLs, not \
             http://a:2379"
        );
        let e = ca
            .apply(&urls(&["https://a:2379"]), ConnectOptions::new())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading --etcd-cafile /nonexistent/ca.pem: "),
            "{e}"
        );
        let half = EtcdSecurity {
            cert_file: Some("/c.pem".into()),
            ..Default::default()
        };
        let e = half
            .apply(&urls(&["https://a:2379"]), ConnectOptions::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--etcd-certfile and --etcd-keyfile go together: pass both"
        );
        let user = EtcdSecurity {
            username: Some("ovnet".into()),
            ..Default::default()
        };
        assert_eq!(
            user.user().unwrap_err().to_string(),
            "--etcd-username needs a password: pass --etcd-password or set OVNET_ETCD_PASSWORD"
        );
    }
}
