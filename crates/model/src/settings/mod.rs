//! `conf/config.yaml`, APISIX's file: read once at start into typed settings.
//!
//! Keys that matter to the stream side are validated (an invalid value names its key); keys that
//! only matter to APISIX's HTTP side are ignored with one warning each.

mod admin;
mod listen;
mod tree;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use admin::{AdminKey, AdminRole, AdminSettings, WELL_KNOWN_ADMIN_KEY};
pub use listen::StreamListener;
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

/// Where objects are stored (`deployment.role_traditional.config_provider`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigProvider {
    Embedded,
    Etcd,
    Yaml,
}

/// `deployment.etcd`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    pub hosts: Vec<String>,
    pub prefix: String,
    pub timeout: Duration,
}

/// Everything streamgate reads from `config.yaml`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub proxy_mode: ProxyMode,
    pub stream_listeners: Vec<StreamListener>,
    /// How long established connections may run after SIGTERM (`apisix.stream_proxy.drain_timeout`).
    pub drain_timeout: Duration,
    pub fallback_sni: Option<String>,
    pub keyring: Keyring,
    pub role: Role,
    pub config_provider: ConfigProvider,
    pub embedded_path: PathBuf,
    pub admin: AdminSettings,
    pub etcd: EtcdSettings,
    /// One line per ignored key, to be logged at start.
    pub warnings: Vec<String>,
}

/// Top-level and `apisix.*` / `deployment.*` keys streamgate reads.
const KNOWN: &[&str] = &[
    "apisix",
    "deployment",
    "apisix.proxy_mode",
    "apisix.stream_proxy",
    "apisix.ssl",
    "apisix.data_encryption",
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
        Settings::parse(&text)
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

        let proxy_mode = match apisix.child("proxy_mode").str_or("http")? {
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
        let stream_listeners = listen::parse_tcp(&stream_proxy.child("tcp"))?;
        let drain_timeout = Duration::from_secs_f64(
            stream_proxy
                .child("drain_timeout")
                .positive_number_or(30.0)?,
        );
        let fallback_sni = apisix
            .child("ssl")
            .child("fallback_sni")
            .opt_str()?
            .map(str::to_owned);
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
        let provider_node = deployment
            .child("role_traditional")
            .child("config_provider");
        let config_provider = match provider_node.str_or("embedded")? {
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
        let etcd = parse_etcd(&deployment.child("etcd"))?;
        Ok(Settings {
            proxy_mode,
            stream_listeners,
            drain_timeout,
            fallback_sni,
            keyring,
            role,
            config_provider,
            embedded_path,
            admin,
            etcd,
            warnings,
        })
    }

    /// Whether this node serves the Admin API (`role: data_plane` does not).
    pub fn admin_enabled(&self) -> bool {
        self.role != Role::DataPlane
    }
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

fn parse_etcd(node: &Node<'_>) -> Result<EtcdSettings, ConfigError> {
    let host = node.child("host");
    let hosts = match host.value() {
        None => vec!["http://127.0.0.1:2379".to_owned()],
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
    let timeout = node.child("timeout").positive_number_or(30.0)?;
    Ok(EtcdSettings {
        hosts,
        prefix,
        timeout: Duration::from_secs_f64(timeout),
    })
}

#[cfg(test)]
mod tests;
