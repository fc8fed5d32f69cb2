//! `deployment.etcd` (with `apisix.ssl.ssl_trusted_certificate` as the CA): where etcd is, how
//! long to wait for it, and how to prove who we are to it (TLS, client certificate, user and
//! password). The password is kept in a type that never prints it.

use std::path::PathBuf;
use std::time::Duration;

use super::tree::Node;
use super::{capped_seconds, ConfigError};

/// `deployment.etcd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `http://` or `https://` endpoints of the members (a bare `host:port` is `http://`).
    pub hosts: Vec<String>,
    pub prefix: String,
    /// The bound on one request (`timeout`, 30 s).
    pub timeout: Duration,
    /// A watch that stays silent this long is created again (`watch_timeout`, 50 s).
    pub watch_timeout: Duration,
    /// How many times start-up tries to load from etcd before giving up (`startup_retry`, 2),
    /// each time over every host.
    pub startup_retry: u32,
    /// `user` and `password`: etcd's v3 authentication.
    pub auth: Option<EtcdAuth>,
    pub tls: EtcdTls,
}

/// etcd's user and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdAuth {
    pub user: String,
    pub password: Password,
}

/// A password: shown as `<redacted>` by `Debug` and `Display`, so it cannot reach a log line,
/// an error or an answer by accident; [`Password::reveal`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(password.into())
    }

    /// The password itself, for the one request that sends it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS to `https://` hosts: `deployment.etcd.tls` and the CA of `apisix.ssl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// `tls.cert` and `tls.key`: the client certificate (PEM files) presented to etcd.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `tls.verify` (true): whether etcd's certificate is checked at all.
    pub verify: bool,
    /// `tls.sni`: the name sent and verified instead of the host's.
    pub sni: Option<String>,
    /// Whom etcd's certificate must chain to (`apisix.ssl.ssl_trusted_certificate`).
    pub trusted: Vec<TrustedCa>,
}

/// One entry of `ssl_trusted_certificate`, a comma-separated list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedCa {
    /// `system`: the operating system's roots (the default).
    System,
    /// A PEM file of CA certificates.
    File(PathBuf),
}

impl Default for EtcdSettings {
    fn default() -> Self {
        EtcdSettings {
            hosts: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/apisix".to_owned(),
            timeout: Duration::from_secs(30),
            watch_timeout: Duration::from_secs(50),
            startup_retry: 2,
            auth: None,
            tls: EtcdTls {
                client_cert: None,
                verify: true,
                sni: None,
                trusted: vec![TrustedCa::System],
            },
        }
    }
}

/// `deployment.etcd`, and `apisix.ssl.ssl_trusted_certificate` (`trusted_ca`).
pub(super) fn parse(node: &Node<'_>, trusted_ca: &Node<'_>) -> Result<EtcdSettings, ConfigError> {
    let defaults = EtcdSettings::default();
    let host = node.child("host");
    let hosts = match host.value() {
        None => defaults.hosts,
        Some(_) => host
            .items()?
            .iter()
            .map(|h| h.str().map(str::to_owned))
            .collect::<Result<_, _>>()?,
    };
    let prefix = node.child("prefix").str_or("/apisix")?.to_owned();
    if !prefix.starts_with('/') {
        return Err(node.child("prefix").error("must start with '/'"));
    }
    let seconds = |name: &str, default: Duration| {
        node.child(name)
            .positive_number_or(default.as_secs_f64())
            .map(capped_seconds)
    };
    let retry = node.child("startup_retry");
    let startup_retry = match retry.value() {
        None => defaults.startup_retry,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| retry.error("expected a positive integer"))?,
    };
    let auth = match node.child("user").opt_str()? {
        None => None,
        Some(user) => Some(EtcdAuth {
            user: user.to_owned(),
            password: Password::new(node.child("password").str_or("")?),
        }),
    };
    Ok(EtcdSettings {
        hosts,
        prefix,
        timeout: seconds("timeout", defaults.timeout)?,
        watch_timeout: seconds("watch_timeout", defaults.watch_timeout)?,
        startup_retry,
        auth,
        tls: parse_tls(&node.child("tls"), trusted_ca)?,
    })
}

fn parse_tls(tls: &Node<'_>, trusted_ca: &Node<'_>) -> Result<EtcdTls, ConfigError> {
    let path = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
        Ok(tls
            .child(name)
            .opt_str()?
            .filter(|p| !p.is_empty())
            .map(PathBuf::from))
    };
    let client_cert = match (path("cert")?, path("key")?) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => return Err(tls.child("key").error("required with `tls.cert`")),
        (None, Some(_)) => return Err(tls.child("cert").error("required with `tls.key`")),
    };
    let trusted = trusted_ca
        .str_or("system")?
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part {
            "system" => TrustedCa::System,
            file => TrustedCa::File(PathBuf::from(file)),
        })
        .collect();
    Ok(EtcdTls {
        client_cert,
        verify: tls.child("verify").bool_or(true)?,
        sni: tls
            .child("sni")
            .opt_str()?
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        trusted,
    })
}
