//! `conf/config.yaml`, APISIX's file: read once at start into typed settings.
//!
//! Keys that matter to the stream side are validated (an invalid value names its key); keys that
//! only matter to APISIX's HTTP side are ignored with one warning each.

mod admin;
mod control;
mod etcd;
mod listen;
mod nginx;
mod tree;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use admin::{AdminKey, AdminRole, AdminSettings, WELL_KNOWN_ADMIN_KEY};
pub use control::ControlSettings;
pub use etcd::{EtcdAuth, EtcdSettings, EtcdTls, Password, TrustedCa};
pub use listen::{ProxyProtocolVersion, StreamListener, DEFAULT_UDP_MAX_SESSIONS};
use tree::Node;

use crate::keyring::Keyring;

/// An invalid configuration value: the key it was found at and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Which protocols APISIX proxies (`apisix.proxy_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Http,
    Stream,
    HttpAndStream,
}

impl ProxyMode {
    /// Whether stream routes may be managed and stream ports are opened.
    pub fn stream_enabled(self) -> bool {
        !matches!(self, ProxyMode::Http)
    }
}

/// `deployment.role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Traditional,
    DataPlane,
    ControlPlane,
}

/// Where objects are stored: `config_provider` of the active role (`role_traditional`,
/// `role_data_plane` or `role_control_plane`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigProvider {
    Embedded,
    Etcd,
    Yaml,
}

/// Everything streamgate reads from `config.yaml`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub proxy_mode: ProxyMode,
    pub stream_listeners: Vec<StreamListener>,
    /// `apisix.stream_proxy.udp`: one UDP socket per address.
    pub udp_listeners: Vec<std::net::SocketAddr>,
    /// The most UDP sessions open at once, over every UDP listener
    /// (`apisix.stream_proxy.udp_max_sessions`, a streamgate extension).
    pub udp_max_sessions: usize,
    /// How long established connections may run after SIGTERM (`apisix.stream_proxy.drain_timeout`).
    pub drain_timeout: Duration,
    /// The most client bytes read before choosing an upstream (`preread_buffer_size`, nginx's 16 KiB).
    pub preread_buffer: usize,
    /// How long a client may take to send them (`preread_timeout`, nginx's 30 s).
    pub preread_timeout: Duration,
    /// How long a TLS client may take to complete its handshake (`ssl_handshake_timeout`, 10 s).
    pub handshake_timeout: Duration,
    /// Connect-storm protection, checked before any other work on a new connection.
    pub storm: StormLimits,
    /// Sessions closed per second when their node leaves its upstream, and after SIGTERM
    /// (`apisix.stream_proxy.drain_rate`); 0 (the default) never closes a session early.
    pub drain_rate: f64,
    pub fallback_sni: Option<String>,
    /// Stateless TLS session tickets (`apisix.ssl.ssl_session_tickets`, off as in APISIX).
    pub ssl_session_tickets: bool,
    pub keyring: Keyring,
    pub role: Role,
    pub config_provider: ConfigProvider,
    pub embedded_path: PathBuf,
    /// The standalone file (`config_provider: yaml`): `apisix.yaml` beside the config file.
    pub standalone_path: PathBuf,
    pub admin: AdminSettings,
    pub etcd: EtcdSettings,
    /// APISIX's control API (`apisix.enable_control`, `apisix.control`); `None` when disabled.
    pub control: Option<ControlSettings>,
    /// Where Prometheus metrics are served (`plugin_attr.prometheus.export_addr`).
    pub prometheus_addr: std::net::SocketAddr,
    /// The log filter: `nginx_config.error_log_level` (APISIX's `warn` by default), plus the
    /// per-session access lines when `nginx_config.stream.enable_access_log` is true.
    pub log_filter: String,
    /// Data-plane worker threads (`nginx_config.worker_processes`): `None` is `auto`, one per
    /// available core.
    pub workers: Option<std::num::NonZeroUsize>,
    /// One line per ignored key, to be logged at start.
    pub warnings: Vec<String>,
}

/// Top-level and `apisix.*` / `deployment.*` keys streamgate reads.
const KNOWN: &[&str] = &[
    "plugin_attr",
    "nginx_config",
    "apisix",
    "deployment",
    "apisix.proxy_mode",
    "apisix.stream_proxy",
    "apisix.proxy_protocol",
    "apisix.ssl",
    "apisix.data_encryption",
    "apisix.enable_control",
    "apisix.control",
    "deployment.role",
    "deployment.role_traditional",
    "deployment.role_data_plane",
    "deployment.role_control_plane",
    "deployment.embedded",
    "deployment.admin",
    "deployment.etcd",
];

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path.display().to_string(), e.to_string()))?;
        let mut settings = Settings::parse(&text)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        settings.standalone_path = dir.join("apisix.yaml");
        Ok(settings)
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Settings, ConfigError> {
        let doc: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_saphyr::from_str(text)
                .map_err(|e| ConfigError::new("config.yaml", e.to_string()))?
        };
        let root = Node::root(&doc)?;
        let mut warnings = Vec::new();
        root.warn_unknown(KNOWN, &mut warnings);
        let apisix = root.child("apisix");
        let deployment = root.child("deployment");
        apisix.warn_unknown(KNOWN, &mut warnings);
        deployment.warn_unknown(KNOWN, &mut warnings);

        // Before `proxy_mode` (APISIX 3.x), `stream_proxy.only` chose stream-only or both.
        let legacy_mode = match apisix.child("stream_proxy").child("only").value() {
            None => "http",
            Some(_) if apisix.child("stream_proxy").child("only").bool_or(true)? => "stream",
            Some(_) => "http&stream",
        };
        let proxy_mode = match apisix.child("proxy_mode").str_or(legacy_mode)? {
            "http" => ProxyMode::Http,
            "stream" => ProxyMode::Stream,
            "http&stream" => ProxyMode::HttpAndStream,
            other => {
                return Err(apisix.child("proxy_mode").error(format!(
                    "expected one of http, stream, http&stream, got {other:?}"
                )))
            }
        };
        let stream_proxy = apisix.child("stream_proxy");
        let pp = listen::ProxyProtocolDefaults::parse(&apisix.child("proxy_protocol"))?;
        let stream_listeners = listen::parse_tcp(&stream_proxy.child("tcp"), pp)?;
        let udp_listeners = listen::parse_udp(&stream_proxy.child("udp"))?;
        let udp_max_sessions = listen::parse_max_sessions(&stream_proxy.child("udp_max_sessions"))?;
        let drain_timeout = capped_seconds(
            stream_proxy
                .child("drain_timeout")
                .positive_number_or(30.0)?,
        );
        let preread_node = stream_proxy.child("preread_buffer_size");
        let preread_buffer = preread_node.positive_number_or(16384.0)?;
        if preread_buffer.fract() != 0.0 || preread_buffer > 1_048_576.0 {
            return Err(preread_node.error("expected a whole number of bytes up to 1048576"));
        }
        let storm = parse_storm(&stream_proxy)?;
        let rate_node = stream_proxy.child("drain_rate");
        let drain_rate = match rate_node.value() {
            None => 0.0,
            Some(v) => v
                .as_f64()
                .filter(|r| *r >= 0.0 && r.is_finite())
                .ok_or_else(|| rate_node.error("expected a number of sessions per second >= 0"))?,
        };
        let handshake_timeout = capped_seconds(
            stream_proxy
                .child("ssl_handshake_timeout")
                .positive_number_or(10.0)?,
        );
        let preread_timeout = capped_seconds(
            stream_proxy
                .child("preread_timeout")
                .positive_number_or(30.0)?,
        );
        let fallback_sni = apisix
            .child("ssl")
            .child("fallback_sni")
            .opt_str()?
            .map(str::to_owned);
        let ssl_session_tickets = apisix
            .child("ssl")
            .child("ssl_session_tickets")
            .bool_or(false)?;
        let keyring = parse_keyring(&apisix.child("data_encryption").child("keyring"))?;

        let role_node = deployment.child("role");
        let role = match role_node.str_or("traditional")? {
            "traditional" => Role::Traditional,
            "data_plane" => Role::DataPlane,
            "control_plane" => Role::ControlPlane,
            other => {
                return Err(role_node.error(format!(
                    "expected one of traditional, data_plane, control_plane, got {other:?}"
                )))
            }
        };
        // As APISIX: the active role's provider; a data plane reads etcd unless told otherwise.
        let (role_key, default_provider) = match role {
            Role::Traditional => ("role_traditional", "embedded"),
            Role::DataPlane => ("role_data_plane", "etcd"),
            Role::ControlPlane => ("role_control_plane", "etcd"),
        };
        let provider_node = deployment.child(role_key).child("config_provider");
        let config_provider = match provider_node.str_or(default_provider)? {
            "embedded" => ConfigProvider::Embedded,
            "etcd" => ConfigProvider::Etcd,
            "yaml" => ConfigProvider::Yaml,
            other => {
                return Err(provider_node.error(format!(
                    "expected one of embedded, etcd, yaml, got {other:?}"
                )))
            }
        };
        let embedded_path = PathBuf::from(
            deployment
                .child("embedded")
                .child("path")
                .str_or("data/streamgate.db")?,
        );
        let admin = admin::parse(&deployment.child("admin"), &mut warnings)?;
        let etcd = etcd::parse(
            &deployment.child("etcd"),
            &apisix.child("ssl").child("ssl_trusted_certificate"),
        )?;
        let control = control::parse(&apisix)?;
        let prometheus_addr = parse_export_addr(
            &root
                .child("plugin_attr")
                .child("prometheus")
                .child("export_addr"),
        )?;
        let log_filter = nginx::parse_log_filter(&root.child("nginx_config"))?;
        let workers = nginx::parse_workers(&root.child("nginx_config").child("worker_processes"))?;
        if root
            .child("nginx_config")
            .child("busy_polling")
            .value()
            .is_some()
        {
            warnings.push(
                "ignoring `nginx_config.busy_polling`: removed (polling before sleeping won nothing beyond measurement noise)".to_owned(),
            );
        }
        Ok(Settings {
            log_filter,
            workers,
            prometheus_addr,
            proxy_mode,
            stream_listeners,
            udp_listeners,
            udp_max_sessions,
            drain_timeout,
            preread_buffer: preread_buffer as usize,
            preread_timeout,
            handshake_timeout,
            storm,
            drain_rate,
            fallback_sni,
            ssl_session_tickets,
            keyring,
            role,
            config_provider,
            embedded_path,
            standalone_path: PathBuf::from("conf/apisix.yaml"),
            admin,
            etcd,
            control,
            warnings,
        })
    }

    /// Whether this node serves the Admin API (`role: data_plane` does not).
    pub fn admin_enabled(&self) -> bool {
        self.role != Role::DataPlane
    }
}

/// Limits that protect the gateway from connect storms (all off by default).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StormLimits {
    /// New connections per second accepted from one client IP (`client_conn_rate`); 0: no limit.
    pub client_rate: f64,
    /// Connections one client IP may open at once above the rate (`client_conn_burst`).
    pub client_burst: f64,
    /// TLS handshakes in progress at once (`max_concurrent_handshakes`); 0: no limit.
    pub max_handshakes: usize,
}

fn parse_storm(stream_proxy: &Node<'_>) -> Result<StormLimits, ConfigError> {
    let number = |name: &str| -> Result<f64, ConfigError> {
        let node = stream_proxy.child(name);
        match node.value() {
            None => Ok(0.0),
            Some(v) => v
                .as_f64()
                .filter(|n| *n >= 0.0 && n.is_finite())
                .ok_or_else(|| node.error("expected a number >= 0")),
        }
    };
    let client_rate = number("client_conn_rate")?;
    let client_burst = match number("client_conn_burst")? {
        0.0 => client_rate,
        burst => burst,
    };
    Ok(StormLimits {
        client_rate,
        client_burst,
        max_handshakes: number("max_concurrent_handshakes")? as usize,
    })
}

/// `{ip, port}` of the Prometheus exporter, APISIX's 127.0.0.1:9091 by default.
fn parse_export_addr(node: &Node<'_>) -> Result<std::net::SocketAddr, ConfigError> {
    let ip_node = node.child("ip");
    let ip: std::net::IpAddr = ip_node
        .str_or("127.0.0.1")?
        .parse()
        .map_err(|_| ip_node.error("expected an IP address"))?;
    let port_node = node.child("port");
    let port = match port_node.value() {
        None => 9091,
        Some(v) => v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| port_node.error("expected a port number in 1-65535"))?,
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

fn parse_keyring(node: &Node<'_>) -> Result<Keyring, ConfigError> {
    let keys = match node.value() {
        None => return Ok(Keyring::apisix_default()),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(_) => node
            .items()?
            .iter()
            .map(|item| item.str().map(str::to_owned))
            .collect::<Result<_, _>>()?,
    };
    Keyring::new(keys).map_err(|e| node.error(e.to_string()))
}

/// A configured number of seconds (positive, finite), capped as stored durations are.
fn capped_seconds(secs: f64) -> Duration {
    crate::resource::Seconds::from_f64(secs).map_or(crate::resource::MAX_DURATION, |s| s.get())
}

#[cfg(test)]
mod tests;
